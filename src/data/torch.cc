// lumen::lumen_torch: tensor columns as LibTorch tensors and back, device and thread set-up in
// pool actors, TorchScript loading, and a ResNet for examples (lumen/data/torch.h).
#include "lumen/data/torch.h"

#include <cmath>
#include <cstdlib>
#include <vector>

#include "lumen/data/dataset.h"
#include "lumen/errors.h"

namespace lumen::data {

namespace {

template <class T>
torch::Tensor View(const Batch& batch, const TensorColumn<T>& column, torch::Dtype dtype) {
  std::vector<int64_t> sizes{static_cast<int64_t>(column.size())};
  sizes.insert(sizes.end(), column.shape().begin(), column.shape().end());
  auto* keep = new Batch(batch);  // the tensor owns a reference to the block's memory
  return torch::from_blob(
      const_cast<T*>(column.values().data()), sizes, [keep](void*) { delete keep; },
      torch::TensorOptions().dtype(dtype));
}

template <class T>
std::vector<T> Values(const torch::Tensor& t) {
  const T* p = t.data_ptr<T>();
  return std::vector<T>(p, p + t.numel());
}

}  // namespace

torch::Tensor TensorView(const Batch& batch, std::string_view column) {
  switch (batch.ColumnType(column)) {
    case DataType::kTensorFloat32:
      return View(batch, batch.TensorFloat32(column), torch::kFloat32);
    case DataType::kTensorFloat64:
      return View(batch, batch.TensorFloat64(column), torch::kFloat64);
    case DataType::kTensorInt64:
      return View(batch, batch.TensorInt64(column), torch::kInt64);
    case DataType::kTensorUInt8:
      return View(batch, batch.TensorUInt8(column), torch::kUInt8);
    default:
      throw TypeError("TensorView: column '" + std::string(column) + "' holds " +
                      DataTypeName(batch.ColumnType(column)) + ", not a tensor");
  }
}

Batch WithTensor(const Batch& batch, const std::string& name, const torch::Tensor& tensor) {
  torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
  if (t.dim() < 1 || t.dim() > 4 || t.size(0) != batch.NumRows()) {
    throw TypeError("WithTensor(" + name + "): a tensor of " + std::to_string(t.dim()) +
                    " dimensions and " + (t.dim() > 0 ? std::to_string(t.size(0)) : "no") +
                    " rows for a batch of " + std::to_string(batch.NumRows()) +
                    " rows (1 to 4 dimensions, rows first)");
  }
  BatchBuilder b(batch);
  if (t.dim() == 1) {  // one value per row: a plain column
    if (t.is_floating_point()) {
      b.AddFloat64(name, Values<double>(t.to(torch::kFloat64)));
    } else {
      b.AddInt64(name, Values<int64_t>(t.to(torch::kInt64)));
    }
    return b.Build();
  }
  std::vector<int64_t> shape(t.sizes().begin() + 1, t.sizes().end());
  switch (t.scalar_type()) {
    case torch::kFloat64:
      b.AddTensorFloat64(name, shape, Values<double>(t));
      break;
    case torch::kInt64:
      b.AddTensorInt64(name, shape, Values<int64_t>(t));
      break;
    case torch::kUInt8:
      b.AddTensorUInt8(name, shape, Values<uint8_t>(t));
      break;
    default:
      b.AddTensorFloat32(name, shape, Values<float>(t.to(torch::kFloat32)));
  }
  return b.Build();
}

torch::Device SetUpTorchForActor() {
  const ActorResources r = PoolActorResources();
  torch::set_num_threads(std::max(1, static_cast<int>(std::lround(r.num_cpus))));
  const char* devices = std::getenv("CUDA_VISIBLE_DEVICES");
  if (r.num_gpus > 0 && devices != nullptr && *devices != '\0' && torch::cuda::is_available()) {
    return torch::Device(torch::kCUDA, 0);  // the first device the process sees: its own
  }
  return torch::Device(torch::kCPU);
}

torch::jit::Module LoadTorchScript(const std::string& path, torch::Device device,
                                   const TorchScriptOptions& options) {
  torch::jit::Module m;
  try {
    m = torch::jit::load(path, device);
    m.eval();
  } catch (const c10::Error& e) {
    throw DataError("cannot load the TorchScript model " + path + ": " +
                    e.what_without_backtrace());
  }
  if (!options.optimize_for_inference) return m;
  try {
    return torch::jit::optimize_for_inference(m);
  } catch (const c10::Error& e) {
    throw DataError("cannot optimise the TorchScript model " + path +
                    " for inference: " + e.what_without_backtrace());
  }
}

// ---- ResNet -------------------------------------------------------------------------------

namespace {

using torch::nn::BatchNorm2d;
using torch::nn::Conv2d;
using torch::nn::Conv2dOptions;

Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return Conv2d(Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// A residual block: basic (two 3 x 3) or bottleneck (1 x 1, 3 x 3, 1 x 1 with 4 x the width).
struct ResidualBlockImpl : torch::nn::Module {
  ResidualBlockImpl(int64_t in, int64_t width, int64_t stride, bool bottleneck) {
    const int64_t out = bottleneck ? width * 4 : width;
    if (bottleneck) {
      body = register_module(
          "body",
          torch::nn::Sequential(Conv(in, width, 1, 1), BatchNorm2d(width), torch::nn::ReLU(),
                                Conv(width, width, 3, stride), BatchNorm2d(width),
                                torch::nn::ReLU(), Conv(width, out, 1, 1), BatchNorm2d(out)));
    } else {
      body =
          register_module("body", torch::nn::Sequential(Conv(in, width, 3, stride),
                                                        BatchNorm2d(width), torch::nn::ReLU(),
                                                        Conv(width, out, 3, 1), BatchNorm2d(out)));
    }
    if (stride != 1 || in != out) {
      shortcut = register_module("shortcut",
                                 torch::nn::Sequential(Conv(in, out, 1, stride), BatchNorm2d(out)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor identity = shortcut ? shortcut->forward(x) : x;
    return torch::relu(body->forward(x) + identity);
  }
  torch::nn::Sequential body{nullptr};
  torch::nn::Sequential shortcut{nullptr};
};
TORCH_MODULE(ResidualBlock);

}  // namespace

torch::nn::Sequential ResNet(int depth, int64_t num_classes) {
  std::vector<int> blocks;
  bool bottleneck = false;
  switch (depth) {
    case 18:
      blocks = {2, 2, 2, 2};
      break;
    case 34:
      blocks = {3, 4, 6, 3};
      break;
    case 50:
      blocks = {3, 4, 6, 3};
      bottleneck = true;
      break;
    default:
      throw TypeError("ResNet: depth 18, 34 or 50, not " + std::to_string(depth));
  }
  torch::nn::Sequential net(
      Conv(3, 64, 7, 2), BatchNorm2d(64), torch::nn::ReLU(),
      torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
  int64_t in = 64;
  for (size_t stage = 0; stage < blocks.size(); ++stage) {
    const int64_t width = int64_t{64} << stage;
    for (int i = 0; i < blocks[stage]; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      net->push_back(ResidualBlock(in, width, stride, bottleneck));
      in = bottleneck ? width * 4 : width;
    }
  }
  net->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(1)));
  net->push_back(torch::nn::Flatten());
  net->push_back(torch::nn::Linear(in, num_classes));
  return net;
}

}  // namespace lumen::data
