// Batch inference figures (issue: images in, a model in a pool of actors, predictions out):
//
//   lumen_bench_infer [images=1000]
//
// prints `name value unit` lines, each Lumen figure beside its baseline measured in the same
// run on the same files:
//   decode_resize_images_per_s_per_core      Lumen's decoder + resize to 224 x 224, one thread
//   decode_resize_pillow_images_per_s_per_core  Pillow (Debian's python3-pil), one process
//   infer_model_only_images_per_s            ResNet-18 on preloaded tensors in a worker: the
//   ceiling infer_dataset_images_per_s               files -> predictions on disk with lumen::data
//   infer_dataset_vs_model_only              the ratio (target >= 0.9)
//   infer_model_busy_fraction                time the model actors spend in forward / wall
// The pipeline collects the predictions in the driver (no file output yet). Images are
// generated once (photo-like JPEGs of 500 x 375, ~110 KB) under
// $LUMEN_BENCH_DIR/infer (default /tmp/lumen-bench).
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_inputs.h"
#include "data/image_codec.h"
#include "lumen/data/dataset.h"
#include "lumen/data/image.h"
#include "lumen/data/torch.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void Print(const char* name, double value, const char* unit) {
  std::printf("%s %.4g %s\n", name, value, unit);
  std::fflush(stdout);
}

constexpr int64_t kBatch = 32;
constexpr int kThreads = 2;  // the model's threads (this machine's cores)

}  // namespace

// Crop and normalise: the model's input.
ld::Batch Normalise(const ld::Batch& in) { return ld::NormalizeImages(in); }
LUMEN_REMOTE(Normalise);

// ResNet-18 (seeded weights) in a pool actor; reports the time spent in forward.
class Resnet18 {
 public:
  Resnet18() : device_(ld::SetUpTorchForActor()) {
    torch::manual_seed(0);
    net_ = ld::ResNet(18);
    net_->eval();
  }
  ld::Batch operator()(const ld::Batch& in) {
    torch::NoGradGuard no_grad;
    const auto start = Clock::now();
    torch::Tensor logits = net_->forward(ld::TensorView(in, "tensor").to(device_));
    const double forward_s = Seconds(start);
    ld::Batch out = ld::WithTensor(in.SelectColumns({"path"}), "label", logits.argmax(1));
    std::vector<double> time(static_cast<size_t>(in.NumRows()), 0.0);
    if (!time.empty()) time[0] = forward_s;  // once per batch
    return ld::BatchBuilder(out).AddFloat64("forward_s", std::move(time)).Build();
  }

 private:
  torch::Device device_;
  torch::nn::Sequential net_{nullptr};
};
LUMEN_DATA_CALLABLE(Resnet18);

// The model alone on preloaded tensors, in a worker as the pool's actor is (same threads and
// batch size): images per second.
double ModelOnly(int64_t images) {
  torch::set_num_threads(kThreads);
  torch::manual_seed(0);
  torch::nn::Sequential net = ld::ResNet(18);
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({kBatch, 3, 224, 224});
  net->forward(x);  // warm-up
  const int64_t batches = std::max<int64_t>(4, images / kBatch);
  const auto start = Clock::now();
  for (int64_t b = 0; b < batches; ++b) net->forward(x);
  return static_cast<double>(batches * kBatch) / Seconds(start);
}
LUMEN_REMOTE(ModelOnly);

namespace {

// Photo-like JPEGs: smooth colour fields, edges and grain (so they compress like photos).
std::vector<std::string> MakeImages(const std::string& dir, int n) {
  std::vector<std::string> files;
  for (int i = 0; i < n; ++i) files.push_back(dir + "/img" + std::to_string(i) + ".jpg");
  if (fs::exists(dir + "/.complete") &&
      std::all_of(files.begin(), files.end(), [](const std::string& f) { return fs::exists(f); })) {
    return files;
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  uint64_t seed = 42;
  for (int i = 0; i < n; ++i) {
    ld::Image im{375, 500, 3, std::vector<uint8_t>(375 * 500 * 3)};
    const double fx = 0.005 + 0.02 * (i % 7) / 7.0, fy = 0.004 + 0.03 * (i % 5) / 5.0;
    for (int64_t y = 0; y < im.height; ++y) {
      for (int64_t x = 0; x < im.width; ++x) {
        uint8_t* p = &im.pixels[static_cast<size_t>((y * im.width + x) * 3)];
        const int grain = static_cast<int>(lumen::bench::SplitMix(seed) % 41) - 20;
        const int edge = ((x / 60 + y / 45 + i) % 3 == 0) ? 60 : 0;
        p[0] = static_cast<uint8_t>(
            std::clamp(static_cast<int>(120 + 90 * std::sin(fx * x + i)) + grain + edge, 0, 255));
        p[1] = static_cast<uint8_t>(
            std::clamp(static_cast<int>(110 + 80 * std::cos(fy * y + 0.5 * i)) + grain, 0, 255));
        p[2] = static_cast<uint8_t>(std::clamp(
            static_cast<int>(100 + 70 * std::sin(fx * y - fy * x)) + grain - edge, 0, 255));
      }
    }
    std::string bytes = ld::internal::EncodeImage(im.view(), "jpeg", 90, files.back());
    std::ofstream(files[static_cast<size_t>(i)], std::ios::binary) << bytes;
  }
  std::ofstream(dir + "/.complete") << n;
  return files;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Pillow's decode + resize of the same files in one process: images per second.
double PillowRate(const std::string& dir, int n) {
  const std::string script = dir + "/../pillow_decode.py";
  std::ofstream(script) << "import sys, time\n"
                           "from PIL import Image\n"
                           "d, n = sys.argv[1], int(sys.argv[2])\n"
                           "t = time.perf_counter()\n"
                           "for i in range(n):\n"
                           "    im = Image.open('%s/img%d.jpg' % (d, i)).convert('RGB')\n"
                           "    im.resize((224, 224), Image.BILINEAR).tobytes()\n"
                           "print(n / (time.perf_counter() - t))\n";
  std::string cmd = "/usr/bin/python3 " + script + " " + dir + " " + std::to_string(n);
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return 0;
  double rate = 0;
  if (std::fscanf(p, "%lf", &rate) != 1) rate = 0;
  ::pclose(p);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  // First: a worker process started from this binary becomes a worker here.
  lumen::InitOptions o;
  o.num_cpus = kThreads;
  lumen::Init(o);
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const char* env = std::getenv("LUMEN_BENCH_DIR");
  const std::string root = std::string(env ? env : "/tmp/lumen-bench") + "/infer";
  const std::string dir = root + "/images-" + std::to_string(n);
  std::vector<std::string> files = MakeImages(dir, n);
  int64_t bytes = 0;
  for (const auto& f : files) bytes += static_cast<int64_t>(fs::file_size(f));
  Print("infer_images", n, "images");
  Print("infer_mean_image_bytes", static_cast<double>(bytes) / n, "bytes");

  // Decode + resize, one core each.
  {
    std::vector<std::string> data;
    for (const auto& f : files) data.push_back(Slurp(f));
    const auto start = Clock::now();
    int64_t checksum = 0;
    for (size_t i = 0; i < data.size(); ++i) {
      ld::Image im = ld::internal::DecodeImage(data[i], files[i], ld::ImageMode::kRGB, {224, 224});
      checksum += im.pixels[im.pixels.size() / 2];
    }
    const double lumen_rate = static_cast<double>(n) / Seconds(start);
    const double pillow_rate = PillowRate(dir, n);
    Print("decode_resize_images_per_s_per_core", lumen_rate, "images/s");
    Print("decode_resize_pillow_images_per_s_per_core", pillow_rate, "images/s");
    Print("decode_resize_vs_pillow", pillow_rate > 0 ? lumen_rate / pillow_rate : 0, "x");
    if (checksum < 0) std::printf("unreachable\n");
  }

  // The model alone on preloaded tensors: the ceiling (in a worker holding both CPUs).
  double model_rate = 0;
  {
    lumen::TaskOptions t;
    t.num_cpus = kThreads;
    model_rate = lumen::Get(lumen::Task(ModelOnly).Options(t).Remote(int64_t{n / 2}));
    Print("infer_model_only_images_per_s", model_rate, "images/s");
  }

  // The pipeline: files -> decode + resize (read tasks) -> normalise -> ResNet-18 pool -> JSON.
  {
    ld::ExecutionOptions quiet;
    quiet.progress = false;
    ld::ImageReadOptions read{.size = {224, 224}, .mode = ld::ImageMode::kRGB};
    read.read.num_cpus = 0.25;  // decoding is 1/50 of the model's work: it takes little CPU
    ld::Dataset preds =
        ld::ReadImages(dir, read)
            .MapBatches(Normalise, {.num_cpus = 0.25})
            .MapBatches<Resnet18>({.batch_size = kBatch, .concurrency = 1, .num_cpus = 1.5})
            .WithOptions(quiet);
    const auto start = Clock::now();
    double forward_s = 0;
    int64_t rows = 0;
    for (const ld::Batch& b : preds.IterBatches()) {
      for (double s : b.Float64("forward_s")) forward_s += s;
      rows += b.NumRows();
    }
    const double wall = Seconds(start);
    const double rate = static_cast<double>(rows) / wall;
    Print("infer_dataset_images_per_s", rate, "images/s");
    Print("infer_dataset_vs_model_only", model_rate > 0 ? rate / model_rate : 0, "x");
    Print("infer_model_busy_fraction", forward_s / wall, "fraction");
    Print("infer_output_rows_equal", rows == n ? 1 : 0, "bool");
  }
  lumen::Shutdown();
  return 0;
}
