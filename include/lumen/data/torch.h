// LibTorch for lumen::data model stages: the optional library lumen::lumen_torch (built when
// LibTorch is found; Debian's libtorch-dev). Link it to use this header.
//
// @code
//   class Classifier {                        // LUMEN_DATA_CALLABLE(Classifier, std::string)
//    public:
//     explicit Classifier(const std::string& model_file)
//         : device_(ld::SetUpTorchForActor()), model_(ld::LoadTorchScript(model_file, device_)) {}
//     ld::Batch operator()(const ld::Batch& in) {
//       torch::NoGradGuard no_grad;
//       torch::Tensor x = ld::TensorView(in, "tensor").to(device_);   // no copy on the CPU
//       torch::Tensor logits = model_.forward({x}).toTensor();
//       return ld::WithTensor(in.SelectColumns({"path"}), "logits", logits);
//     }
//    private:
//     torch::Device device_;
//     torch::jit::Module model_;
//   };
// @endcode
//
// Thread-safety: the functions are thread-safe; tensors follow LibTorch's rules.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <string>
#include <string_view>

#include "lumen/data/batch.h"

namespace lumen::data {

// A torch::Tensor over tensor column `column` of `batch` without copying: shape {rows, row
// shape...} and the column's dtype (float32, float64, int64, uint8). The tensor keeps the
// batch's memory alive. It is read-only — the block may be mapped read-only from the object
// store — so clone() it before changing it in place. Throws lumen::TypeError when the column
// is missing or not a tensor column.
torch::Tensor TensorView(const Batch& batch, std::string_view column);

// `batch` with `tensor` added as the tensor column `name`: its first dimension must be the
// batch's rows; it is moved to the CPU and made contiguous first. float32, float64, int64 and
// uint8 keep their type, other dtypes become float32. Throws lumen::TypeError on a row count or
// shape the column cannot hold (1 to 3 dimensions per row).
Batch WithTensor(const Batch& batch, const std::string& name, const torch::Tensor& tensor);

// Readies LibTorch in a pool actor and returns the device its model should use: CUDA when
// the actor holds a GPU (PoolActorResources().num_gpus > 0, CUDA_VISIBLE_DEVICES set by
// Lumen) and LibTorch was built with CUDA, else the CPU. Sets torch::set_num_threads to the
// actor's CPUs (at least 1), so actors on one node do not oversubscribe its cores. Call once,
// in the callable's constructor.
torch::Device SetUpTorchForActor();

// LoadTorchScript.
struct TorchScriptOptions {
  // After loading, torch::jit::optimize_for_inference: the module is frozen (parameters become
  // constants; only `forward` is kept), batch norms are folded into the convolutions before
  // them and, on the CPU, convolutions use oneDNN's layouts. For ResNet-18 on this project's
  // machine a batch runs about twice as fast (0.34-0.52 s for 32 images against 0.76-1.0 s)
  // and the first calls no longer pay ~2 s for the JIT's profiling. Outputs differ from the
  // unoptimised module's in float rounding (the folded weights). Not for a module whose
  // attributes change between calls; a module without a `training` attribute (scripted
  // nn.Modules have one) is taken as frozen already, as LibTorch does.
  bool optimize_for_inference = false;
};

// torch::jit::load(path) onto `device`, in eval mode, optimised as `options` says. Throws
// lumen::data::DataError naming the path and LibTorch's message when the file does not load
// or cannot be optimised.
torch::jit::Module LoadTorchScript(const std::string& path, torch::Device device,
                                   const TorchScriptOptions& options = {});

// ResNet-18, -34 (basic blocks) or -50 (bottlenecks) for 3 x H x W float inputs, with
// weights drawn from LibTorch's generator (seed them with torch::manual_seed for the same
// weights in every process). For examples and benchmarks when no trained model is at hand:
// nothing is downloaded. Throws lumen::TypeError for another depth.
torch::nn::Sequential ResNet(int depth, int64_t num_classes = 1000);

}  // namespace lumen::data
