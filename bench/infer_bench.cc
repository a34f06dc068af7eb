// Batch inference figures (issue: images in, a model in a pool of actors, predictions out):
//
//   lumen_bench_infer [images=1000]
//
// prints `name value unit` lines, each Lumen figure beside its baseline measured in the same
// run on the same files. The two decoders (5 rounds), the ceiling and the warm pipelines (3
// rounds) are measured in turns — the machine's speed drifts by ±10 % over minutes: each ratio
// is taken within its round, and a figure is the median over the rounds, with `name`_min and
// `name`_max beside the ratios.
//   decode_resize_images_per_s_per_core      Lumen's decoder + resize to 224 x 224, one thread
//   decode_resize_pillow_images_per_s_per_core  Pillow (Debian's python3-pil), one process
//   infer_model_only_images_per_s            the model on preloaded tensors in as many workers
//                                            as the pool has actors (one thread each, at once):
//                                            the ceiling
//   infer_dataset_images_per_s               files -> predictions on disk (JSON) with lumen::data,
//                                            on a warm cluster (below)
//   infer_dataset_4x_vs_model_only           the warm pipeline over 4 x the images, against
//                                            the ceiling (start-up paid once for more images)
//   infer_dataset_cold_images_per_s          the same as the session's first data job: its
//                                            actors and read tasks start worker processes
//   infer_handwritten_core_images_per_s      the same on the core API, as the reference
//                                            measurements' hand-written pipeline: decode tasks,
//                                            a fixed pool of model actors, 2 calls in flight each
//   infer_torch_dataloader_images_per_s      PyTorch's DataLoader with Pillow
//                                            (bench/torch_infer.py)
//   infer_model_busy_fraction                time each model actor spends in forward / wall
//   infer_cpu_bound_vs_model_only            the most of the ceiling a pipeline can reach when
//                                            the model and the decoding share the CPUs:
//                                            model / (model + decode + normalise), CPU per image
//   infer_dataset_vs_cpu_bound               the dataset's rate against that bound
//   infer_forward_vs_model_only              a pool actor's forward per image once warm, against
//                                            model-only's
//   infer_peak_rss_bytes, infer_peak_pss_bytes  peak memory of every Lumen process during the
//                                            dataset run (summed resident / proportional set
//                                            sizes: PSS counts shared memory once), with
//                                            `images` and with 4 x `images` images; *_job_*
//                                            is the peak PSS less the PSS before the run
// Every pipeline runs one model: torchvision's ResNet-18 saved as TorchScript by
// bench/torch_infer.py (seeded weights), or without python3-torch, ResNet-18 built in C++.
// Images are generated once (photo-like JPEGs of 500 x 375, ~110 KB) under
// $LUMEN_BENCH_DIR/infer (default /tmp/lumen-bench).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_inputs.h"
#include "bench_report.h"
#include "common/fs.h"
#include "data/image_codec.h"
#include "lumen/data/dataset.h"
#include "lumen/data/image.h"
#include "lumen/data/torch.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using lumen::bench::Median;
using lumen::bench::ProcessCpuSeconds;
using lumen::bench::ProcessTree;

namespace {

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void Print(const char* name, double value, const char* unit) {
  std::printf("%s %.4g %s\n", name, value, unit);
  std::fflush(stdout);
}

// `name`_min and `name`_max: the spread of a figure measured in several rounds.
void PrintSpread(const std::string& name, const std::vector<double>& v, const char* unit) {
  if (v.empty()) return;
  Print((name + "_min").c_str(), *std::min_element(v.begin(), v.end()), unit);
  Print((name + "_max").c_str(), *std::max_element(v.begin(), v.end()), unit);
}

constexpr int64_t kBatch = 32;
constexpr int kThreads = 2;  // this machine's cores
// The model runs in kActors actors of one thread each (SetUpTorchForActor: lround(0.75) = 1),
// leaving half a CPU of the scheduler's for decoding: on 2 cores two single-threaded models
// served ~1.6 x the images of one model on two threads (whose every layer waits at a barrier
// for a thread a decode task has preempted).
constexpr int kActors = 2;
constexpr double kActorCpus = 0.75;
constexpr int64_t kBudget = int64_t{256} << 20;  // the dataset's memory budget
constexpr int kWarmUpForwards = 3;               // model-only's untimed first forwards
constexpr int kRounds = 3;  // of the ceiling and the warm pipelines, measured in turns

}  // namespace

// ResNet-18: the TorchScript file at `path`, or (empty path) built in C++ with seeded weights.
class Model {
 public:
  Model(const std::string& path, torch::Device device) : device_(device) {
    if (!path.empty()) {
      script_ = ld::LoadTorchScript(path, device, {.optimize_for_inference = true});
    } else {
      torch::manual_seed(0);
      net_ = ld::ResNet(18);
      net_->eval();
      net_->to(device);
    }
  }
  // Logits of a {n, 3, 224, 224} float batch.
  torch::Tensor Forward(const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    if (script_) return script_->forward({x.to(device_)}).toTensor();
    return net_->forward(x.to(device_));
  }

 private:
  torch::Device device_;
  std::optional<torch::jit::Module> script_;
  torch::nn::Sequential net_{nullptr};
};

// Crop and normalise: the model's input.
ld::Batch Normalise(const ld::Batch& in) { return ld::NormalizeImages(in); }
LUMEN_REMOTE(Normalise);

// The dataset's pool actor; reports the time spent in forward.
class Resnet18 {
 public:
  explicit Resnet18(std::string path) : model_(path, ld::SetUpTorchForActor()) {}
  ld::Batch operator()(const ld::Batch& in) {
    const auto start = Clock::now();
    torch::Tensor labels = model_.Forward(ld::TensorView(in, "tensor")).argmax(1);
    const double forward_s = Seconds(start);
    ld::Batch out = ld::WithTensor(in.SelectColumns({"path"}), "label", labels);
    std::vector<double> time(static_cast<size_t>(in.NumRows()), 0.0);
    if (!time.empty()) time[0] = forward_s;  // once per batch
    // This actor's call number on every row: its first calls pay the JIT's profiling runs.
    std::vector<int64_t> call(static_cast<size_t>(in.NumRows()), calls_++);
    return ld::BatchBuilder(out)
        .AddFloat64("forward_s", std::move(time))
        .AddInt64("call", std::move(call))
        .Build();
  }

 private:
  Model model_;
  int64_t calls_ = 0;
};
LUMEN_DATA_CALLABLE(Resnet18, std::string);

// The model alone on preloaded tensors, in a worker as a pool actor is (one thread, same batch
// size): images per second.
double ModelOnly(std::string path, int64_t images) {
  torch::set_num_threads(1);
  Model model(path, torch::kCPU);
  // Distinct batches, 77 MB in all (more than the caches hold), as the pipeline's inputs come
  // fresh from memory: one batch over and over would stay partly in the L3 cache.
  std::vector<torch::Tensor> inputs;
  for (int i = 0; i < 4; ++i) inputs.push_back(torch::randn({kBatch, 3, 224, 224}));
  // Warm-up: the JIT profiles, optimises.
  for (int i = 0; i < kWarmUpForwards; ++i) model.Forward(inputs[0]);
  // The better of two passes: a ceiling, not a sample of the machine's noise.
  const int64_t batches = std::max<int64_t>(4, images / kBatch);
  double best = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const auto start = Clock::now();
    for (int64_t b = 0; b < batches; ++b) model.Forward(inputs[static_cast<size_t>(b % 4)]);
    best = std::max(best, static_cast<double>(batches * kBatch) / Seconds(start));
  }
  return best;
}
LUMEN_REMOTE(ModelOnly);

// Holds its worker for `ms` milliseconds (WarmPool's tasks).
int HoldWorker(int64_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 0;
}
LUMEN_REMOTE(HoldWorker);

namespace {

// Leaves the node with at least kPoolWorkers idle workers, as the first warm run found it:
// a pipeline's actors take their worker processes with them when they exit, and the next
// pipeline would start new ones (each loads LibTorch, ~0.7 s of CPU here) while it runs.
// kPoolWorkers tasks at once, each holding its worker longer than a worker takes to start,
// make the pool start any it is short of.
constexpr int kPoolWorkers = 4;
void WarmPool() {
  lumen::TaskOptions t;
  t.num_cpus = static_cast<double>(kThreads) / kPoolWorkers;
  std::vector<lumen::ObjectRef<int>> held;
  for (int i = 0; i < kPoolWorkers; ++i) {
    held.push_back(lumen::Task(HoldWorker).Options(t).Remote(int64_t{1500}));
  }
  for (const auto& h : held) lumen::Get(h);
}

// The ceiling: ModelOnly in as many workers as the pool has actors, at once (one CPU each),
// their rates summed.
double ModelOnlyRate(const std::string& model, int64_t images) {
  lumen::TaskOptions t;
  t.num_cpus = 1;
  std::vector<lumen::ObjectRef<double>> rates;
  for (int a = 0; a < kActors; ++a) {
    rates.push_back(lumen::Task(ModelOnly).Options(t).Remote(model, images / kActors));
  }
  double rate = 0;
  for (const auto& r : rates) rate += lumen::Get(r);
  return rate;
}

}  // namespace

// ---- the hand-written pipeline on the core API ----------------------------------------------

// Reads, decodes, resizes and normalises `paths` into one float32 {n, 3, 224, 224} batch.
lumen::Buffer DecodeBatch(std::vector<std::string> paths) {
  constexpr int64_t kPlane = 3 * 224 * 224;
  lumen::Buffer out = lumen::Buffer::Allocate(paths.size() * kPlane * sizeof(float));
  auto* floats = reinterpret_cast<float*>(out.mutable_data());
  for (size_t i = 0; i < paths.size(); ++i) {
    std::ifstream f(paths[i], std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ld::Image im = ld::internal::DecodeImage(bytes, paths[i], ld::ImageMode::kRGB, {224, 224});
    ld::Normalize(im.view(), std::span<float>(floats + i * kPlane, kPlane));
  }
  return out;
}
LUMEN_REMOTE(DecodeBatch);

// A model actor: predicted labels of a DecodeBatch batch.
class Predictor {
 public:
  explicit Predictor(std::string path) : model_(ThreadsSet(std::move(path)), torch::kCPU) {}
  std::vector<int64_t> Predict(lumen::Buffer batch) {
    const int64_t n = static_cast<int64_t>(batch.size() / (3 * 224 * 224 * sizeof(float)));
    torch::Tensor x =
        torch::from_blob(const_cast<uint8_t*>(batch.data()), {n, 3, 224, 224}, torch::kFloat32);
    torch::Tensor labels = model_.Forward(x).argmax(1).contiguous();
    return std::vector<int64_t>(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + n);
  }

 private:
  static std::string ThreadsSet(std::string path) {  // before the model loads
    torch::set_num_threads(1);
    return path;
  }
  Model model_;
};
LUMEN_ACTOR(Predictor, std::string);
LUMEN_REMOTE(&Predictor::Predict);

namespace {

// Decode tasks feed a fixed pool of model actors, each with its own queue of at most two calls
// in flight (one running, one with its input ready); predictions are written as JSON lines by
// the driver. Images per second, files to predictions on disk.
double Handwritten(const std::vector<std::string>& files, const std::string& model,
                   const std::string& out_path, int64_t* rows) {
  constexpr int kInFlight = 2;
  lumen::ActorOptions actor;
  actor.num_cpus = kActorCpus;  // as the dataset's pool
  lumen::TaskOptions decode;
  decode.num_cpus = 0.25;
  std::vector<lumen::ActorHandle<Predictor>> pool;
  for (int a = 0; a < kActors; ++a) {
    pool.push_back(lumen::Actor<Predictor>().Options(actor).Remote(model));
  }
  const auto start = Clock::now();
  struct Call {
    std::vector<std::string> paths;
    lumen::ObjectRef<std::vector<int64_t>> labels;
  };
  std::vector<std::deque<Call>> queues(kActors);
  std::ofstream out(out_path);
  *rows = 0;
  auto drain_one = [&](std::deque<Call>& q) {
    Call c = std::move(q.front());
    q.pop_front();
    const std::vector<int64_t> labels = lumen::Get(c.labels);
    for (size_t i = 0; i < labels.size(); ++i) {
      out << "{\"path\":\"" << c.paths[i] << "\",\"label\":" << labels[i] << "}\n";
    }
    *rows += static_cast<int64_t>(labels.size());
  };
  for (size_t first = 0, k = 0; first < files.size(); first += kBatch, ++k) {
    std::vector<std::string> paths(
        files.begin() + static_cast<std::ptrdiff_t>(first),
        files.begin() + static_cast<std::ptrdiff_t>(std::min(files.size(), first + kBatch)));
    std::deque<Call>& q = queues[k % kActors];
    if (q.size() >= kInFlight) drain_one(q);
    auto batch = lumen::Task(DecodeBatch).Options(decode).Remote(paths);
    q.push_back({std::move(paths), pool[k % kActors].Task(&Predictor::Predict).Remote(batch)});
  }
  for (auto& q : queues) {
    while (!q.empty()) drain_one(q);
  }
  out.close();
  return static_cast<double>(*rows) / Seconds(start);
}

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

// The first line of `cmd`'s output ("" when it cannot run).
std::string FirstLine(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char line[512] = {0};
  if (std::fgets(line, sizeof(line), p) == nullptr) line[0] = 0;
  ::pclose(p);
  return line;
}

// Peak memory of this process and every process below it (the embedded cluster's daemons and
// workers), sampled every 0.5 s while it lives: the sum of their resident set sizes, and of
// their proportional set sizes (a page shared by k processes, such as the object store's,
// counts 1/k in each: the memory the job really holds; RSS counts shared pages once per
// process that maps them).
class PeakMemory {
 public:
  struct Bytes {
    int64_t rss = 0;
    int64_t pss = 0;
    int64_t store_used = 0;      // the object store's bytes in objects
    int64_t store_resident = 0;  // and in RAM (objects and warm free pages)
    int64_t processes = 0;       // at the peak PSS: the driver, daemons and workers
  };
  PeakMemory() : before_(OfTree()), sampler_([this] { Sample(); }) {}
  // The processes' memory when the sampler started.
  Bytes before() const { return before_; }
  ~PeakMemory() { Stop(); }
  Bytes Stop() {
    if (sampler_.joinable()) {
      stop_ = true;
      sampler_.join();
    }
    return peak_;
  }

 private:
  static Bytes OfProcess(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
    std::string key;
    Bytes b;
    int64_t kb = 0;
    while (f >> key) {
      if (key == "Rss:" && f >> kb) b.rss = kb * 1024;
      if (key == "Pss:" && f >> kb) b.pss = kb * 1024;
      f.ignore(1 << 20, '\n');
    }
    return b;
  }
  static Bytes OfTree() {
    Bytes total;
    for (int pid : ProcessTree()) {
      const Bytes b = OfProcess(pid);
      total.rss += b.rss;
      total.pss += b.pss;
      ++total.processes;
    }
    return total;
  }
  void Sample() {
    for (int64_t i = 0; !stop_; ++i) {
      // Reading smaps walks every page table of every process: kernel time taken from the
      // pipeline measured (4 % of the CPUs at twice a second, measured with perf), so the
      // processes' memory every 2 s — it moves slowly, the store's bounded blocks and the
      // models — and the store's, a cheap call, every 0.5 s.
      if (i % 4 == 0) {
        const Bytes now = OfTree();
        peak_.rss = std::max(peak_.rss, now.rss);
        if (now.pss > peak_.pss) {
          peak_.pss = now.pss;
          peak_.processes = now.processes;
        }
      }
      const lumen::ObjectStoreStats store = lumen::GetObjectStoreStats();
      peak_.store_used = std::max(peak_.store_used, store.used);
      peak_.store_resident = std::max(peak_.store_resident, store.resident);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  std::atomic<bool> stop_{false};
  const Bytes before_;
  Bytes peak_;  // written by the sampler, read once it has stopped
  std::thread sampler_;
};

// CPU seconds (user and system) of each process of ProcessTree, by process id.
std::map<int, double> ProcessCpu() {
  std::map<int, double> cpu;
  for (int pid : ProcessTree()) cpu[pid] = ProcessCpuSeconds(pid);
  return cpu;
}

// The CPU each process took since `before`, on stderr (LUMEN_BENCH_STATS=1: beside the
// operators' own figures, the workers' CPU outside their tasks and the driver's). A process
// gone by then (an actor retired) is missing.
void PrintCpuSince(const std::map<int, double>& before) {
  std::cerr << "cpu by process (s):";
  for (const auto& [pid, s] : ProcessCpu()) {
    auto it = before.find(pid);
    const double used = s - (it == before.end() ? 0 : it->second);
    if (used > 0)
      std::cerr << " " << pid << (pid == ::getpid() ? " (driver) " : " ") << used << ";";
  }
  std::cerr << "\n";
}

struct DatasetRun {
  double images_per_s = 0;
  double busy = 0;  // forward time / wall
  // The actors' forwards: their first kWarmUpForwards calls (those model-only leaves out of
  // its timing), and the rest with the images they served.
  double warm_up_forward_s = 0;
  double steady_forward_s = 0;
  int64_t steady_rows = 0;
  int64_t rows = 0;
  int64_t files = 0;
  PeakMemory::Bytes peak;
  PeakMemory::Bytes before;
};

// files -> decode + resize (read tasks) -> normalise -> ResNet-18 pool -> JSON lines on disk.
DatasetRun RunDataset(const std::string& dir, const std::string& model, const std::string& out) {
  ld::ExecutionOptions quiet;
  quiet.progress = false;
  // Blocks held and in flight stay under this whatever the number of images (the default, a
  // quarter of the object store, is more than 1,000 images take).
  quiet.memory_budget_bytes = kBudget;
  ld::ImageReadOptions read{.size = {224, 224}, .mode = ld::ImageMode::kRGB};
  read.read.num_cpus = 0.25;  // decoding is 1/50 of the model's work: it takes little CPU
  ld::WriteOptions write;
  write.mode = ld::WriteMode::kOverwrite;
  write.num_cpus = 0.25;  // writing a few lines of JSON
  DatasetRun r;
  PeakMemory memory;
  const std::map<int, double> cpu_before = ProcessCpu();
  const auto start = Clock::now();
  ld::Dataset ds =
      ld::ReadImages(dir, read)
          .MapBatches(Normalise, {.num_cpus = 0.25})
          .MapBatches<Resnet18>(
              {.batch_size = kBatch, .concurrency = kActors, .num_cpus = kActorCpus}, model)
          .WithOptions(quiet);
  ld::WriteResult written = ds.WriteJson(out, write);
  const double wall = Seconds(start);
  // LUMEN_BENCH_STATS=1: where the time went, per operator, on stderr.
  if (const char* s = std::getenv("LUMEN_BENCH_STATS"); s && *s == '1') {
    std::cerr << ds.Stats();
    PrintCpuSince(cpu_before);
  }
  r.peak = memory.Stop();
  r.before = memory.before();
  r.files = written.files_written;
  // The predictions as written: rows, and the forward time each batch recorded.
  double forward_s = 0;
  for (const ld::Batch& b : ld::ReadJson(out).WithOptions(quiet).IterBatches()) {
    const std::span<const double> time = b.Float64("forward_s");
    const std::span<const int64_t> call = b.Int64("call");
    for (size_t i = 0; i < time.size(); ++i) {
      forward_s += time[i];
      if (call[i] < kWarmUpForwards) {
        r.warm_up_forward_s += time[i];
      } else {
        r.steady_forward_s += time[i];
        ++r.steady_rows;
      }
    }
    r.rows += b.NumRows();
  }
  r.images_per_s = static_cast<double>(r.rows) / wall;
  r.busy = forward_s / wall / kActors;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  // First: a worker process started from this binary becomes a worker here.
  lumen::InitOptions o;
  o.num_cpus = kThreads;
  lumen::Init(o);
  int n = 1000;
  if (argc > 1) {
    char* end = nullptr;
    const long images = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || images < 1 || images > 1000000) {
      std::fprintf(stderr,
                   "lumen_bench_infer: images must be a whole number from 1 to 1000000, got "
                   "'%s'\nusage: lumen_bench_infer [images=1000]\n",
                   argv[1]);
      lumen::Shutdown();
      return 2;
    }
    n = static_cast<int>(images);
  }
  const char* env = std::getenv("LUMEN_BENCH_DIR");
  const std::string root = std::string(env ? env : "/tmp/lumen-bench") + "/infer";
  const std::string dir = root + "/images-" + std::to_string(n);
  std::vector<std::string> files = MakeImages(dir, n);
  int64_t bytes = 0;
  for (const auto& f : files) bytes += static_cast<int64_t>(fs::file_size(f));
  Print("infer_images", n, "images");
  Print("infer_mean_image_bytes", static_cast<double>(bytes) / n, "bytes");

  // Decode + resize, one core each; each side reads its files as it goes (page cache). The
  // best of three rounds each, taken in turns: the machine is shared.
  double pipeline_cpu_s = 0;  // decode, resize, normalise: CPU seconds per image
  {
    int64_t checksum = 0;
    // Into a buffer of whole images, as ReadImages decodes into its tensor column.
    std::vector<uint8_t> frames(224 * 224 * 3 * 32);
    // Five rounds of the two in turns, each ratio taken within its round (the machine's speed
    // drifts); the figures are the medians.
    std::vector<double> lumen_rates, pillow_rates, ratios;
    for (int round = 0; round < 5; ++round) {
      const auto start = Clock::now();
      for (size_t i = 0; i < files.size(); ++i) {
        lumen::StatusOr<std::string> bytes = lumen::ReadFile(files[i]);
        if (!bytes.ok()) {
          std::fprintf(stderr, "lumen_bench_infer: %s\n", bytes.status().ToString().c_str());
          return 1;
        }
        std::span<uint8_t> frame(frames.data() + (i % 32) * 224 * 224 * 3, 224 * 224 * 3);
        ld::internal::DecodeImageInto(*bytes, files[i], ld::ImageMode::kRGB, {224, 224}, frame);
        checksum += frame[frame.size() / 2];
      }
      lumen_rates.push_back(static_cast<double>(n) / Seconds(start));
      pillow_rates.push_back(PillowRate(dir, n));
      ratios.push_back(pillow_rates.back() > 0 ? lumen_rates.back() / pillow_rates.back() : 0);
    }
    const double lumen_rate = Median(lumen_rates);
    Print("decode_resize_images_per_s_per_core", lumen_rate, "images/s");
    Print("decode_resize_pillow_images_per_s_per_core", Median(pillow_rates), "images/s");
    Print("decode_resize_vs_pillow", Median(ratios), "x");
    PrintSpread("decode_resize_vs_pillow", ratios, "x");
    // Normalising the decoded images to the model's floats, as the pipeline's Normalise does:
    // with the decode, the least CPU an image costs the pipeline before the model sees it.
    std::vector<float> floats(224 * 224 * 3);
    double normalise_s = 1e9;
    for (int round = 0; round < 3; ++round) {
      const auto start = Clock::now();
      for (size_t i = 0; i < files.size(); ++i) {
        const std::span<const uint8_t> frame(frames.data() + (i % 32) * 224 * 224 * 3,
                                             224 * 224 * 3);
        ld::Normalize(ld::ImageView{224, 224, 3, frame}, floats);
        checksum += static_cast<int64_t>(floats[floats.size() / 2]);
      }
      normalise_s = std::min(normalise_s, Seconds(start) / n);
    }
    pipeline_cpu_s = 1 / lumen_rate + normalise_s;
    Print("infer_decode_normalise_cpu_ms_per_image", 1000 * pipeline_cpu_s, "ms");
    if (checksum < 0) std::printf("unreachable\n");
  }

  // The one model: torchvision's ResNet-18 as TorchScript (python3-torch), else built in C++.
  const std::string script = std::string(LUMEN_BENCH_SOURCE_DIR) + "/torch_infer.py";
  std::string model = root + "/resnet18.pt";
  if (!fs::exists(model) && std::system(("/usr/bin/python3 " + script + " script " + model +
                                         ".tmp 2>/dev/null && mv " + model + ".tmp " + model)
                                            .c_str()) != 0) {
    std::fprintf(stderr,
                 "python3-torch is missing: ResNet-18 built in C++ instead, no "
                 "DataLoader baseline\n");
    model.clear();
  }
  Print("infer_model_is_torchscript", model.empty() ? 0 : 1, "bool");

  // The model alone on preloaded tensors: the ceiling (ModelOnlyRate). Measured once before
  // the first data job and again in every round below: the machine is shared and its speed
  // drifts by ±10 % over minutes, so each pipeline is set against the ceiling measured next
  // to it.
  std::vector<double> model_rates{ModelOnlyRate(model, n)};
  // On a machine whose CPUs run both the model and the decoding (no GPU), every CPU second an
  // image's decoding takes is one the model does not get: of the ceiling, a pipeline reaches
  // at most model / (model + decode) — the rest of its own work (the store, batching, the
  // output) only lowers it.
  const double model_cpu_s = model_rates[0] > 0 ? kActors / model_rates[0] : 0;
  const double cpu_bound = model_cpu_s / (model_cpu_s + pipeline_cpu_s);
  Print("infer_model_cpu_ms_per_image", 1000 * model_cpu_s, "ms");
  Print("infer_cpu_bound_vs_model_only", cpu_bound, "x");

  // The session's first data job starts worker processes for its actors and read tasks (Init
  // started one per CPU, which model-only used): each loads LibTorch, ~0.7 s of CPU here,
  // while the others wait or share the cores with it. Measured as is, then again on the
  // cluster it leaves — idle workers ready, as a long-running cluster has them — for the
  // figures set against the ceiling. Each run still starts its own actors, loads the model and
  // pays its first forwards.
  const DatasetRun cold = RunDataset(dir, model, root + "/predictions-cold-" + std::to_string(n));
  Print("infer_dataset_cold_images_per_s", cold.images_per_s, "images/s");
  Print("infer_dataset_cold_vs_model_only",
        model_rates[0] > 0 ? cold.images_per_s / model_rates[0] : 0, "x");
  Print("infer_peak_pss_bytes_cold", static_cast<double>(cold.peak.pss), "bytes");
  Print("infer_peak_processes_cold", static_cast<double>(cold.peak.processes), "processes");

  // kRounds rounds of the ceiling, the warm dataset and the hand-written pipeline (the two
  // pipelines in alternating order, each on a pool of idle workers: WarmPool), each
  // pipeline's ratios taken within its round; the figures are the medians over the rounds,
  // with the least and the most beside them.
  std::vector<DatasetRun> runs;
  std::vector<double> handwritten, vs_model, vs_handwritten, dataset_rates;
  int64_t handwritten_rows = n;
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) model_rates.push_back(ModelOnlyRate(model, n));
    double hw = 0;
    int64_t rows = 0;
    const std::string out = root + "/predictions-" + std::to_string(n);
    if (round % 2 == 1) {
      WarmPool();
      hw = Handwritten(files, model, root + "/handwritten.jsonl", &rows);
    }
    WarmPool();
    runs.push_back(RunDataset(dir, model, out));
    if (round % 2 == 0) {
      WarmPool();
      hw = Handwritten(files, model, root + "/handwritten.jsonl", &rows);
    }
    if (rows != n) handwritten_rows = rows;
    handwritten.push_back(hw);
    dataset_rates.push_back(runs.back().images_per_s);
    vs_model.push_back(model_rates.back() > 0 ? runs.back().images_per_s / model_rates.back() : 0);
    vs_handwritten.push_back(hw > 0 ? runs.back().images_per_s / hw : 0);
  }
  const double model_rate = Median(model_rates);
  Print("infer_model_only_images_per_s", model_rate, "images/s");
  PrintSpread("infer_model_only_images_per_s", model_rates, "images/s");
  // The round whose dataset-to-ceiling ratio is the median gives the figures of one run.
  const size_t mid = static_cast<size_t>(
      std::find(vs_model.begin(), vs_model.end(), Median(vs_model)) - vs_model.begin());
  const DatasetRun& run = runs[std::min(mid, runs.size() - 1)];
  Print("infer_dataset_images_per_s", Median(dataset_rates), "images/s");
  PrintSpread("infer_dataset_images_per_s", dataset_rates, "images/s");
  Print("infer_dataset_vs_model_only", Median(vs_model), "x");
  PrintSpread("infer_dataset_vs_model_only", vs_model, "x");
  Print("infer_model_busy_fraction", run.busy, "fraction");
  Print("infer_dataset_vs_cpu_bound", cpu_bound > 0 ? Median(vs_model) / cpu_bound : 0, "x");
  // The actors' forwards against model-only's: per image once warm, and the warm-up forwards
  // model-only leaves out of its timing (per actor).
  const double forward_s =
      run.steady_rows > 0 ? run.steady_forward_s / static_cast<double>(run.steady_rows) : 0;
  const double model_round_cpu_s = model_rates[mid] > 0 ? kActors / model_rates[mid] : 0;
  Print("infer_forward_ms_per_image", 1000 * forward_s, "ms");
  Print("infer_forward_vs_model_only", model_round_cpu_s > 0 ? forward_s / model_round_cpu_s : 0,
        "x");
  Print("infer_warm_up_forwards_s_per_actor", run.warm_up_forward_s / kActors, "s");
  Print("infer_output_rows_equal",
        std::all_of(runs.begin(), runs.end(),
                    [&](const DatasetRun& r) { return r.rows == n && r.files > 0; })
            ? 1
            : 0,
        "bool");
  Print("infer_handwritten_core_images_per_s", Median(handwritten), "images/s");
  PrintSpread("infer_handwritten_core_images_per_s", handwritten, "images/s");
  Print("infer_dataset_vs_handwritten", Median(vs_handwritten), "x");
  PrintSpread("infer_dataset_vs_handwritten", vs_handwritten, "x");
  Print("infer_handwritten_rows_equal", handwritten_rows == n ? 1 : 0, "bool");

  // Memory, from the first warm run (right after the cold one, as the 4 x run below follows
  // the rounds).
  const DatasetRun& first = runs.front();
  Print("infer_peak_rss_bytes", static_cast<double>(first.peak.rss), "bytes");
  Print("infer_peak_pss_bytes", static_cast<double>(first.peak.pss), "bytes");
  Print("infer_peak_job_pss_bytes", static_cast<double>(first.peak.pss - first.before.pss),
        "bytes");
  Print("infer_peak_processes", static_cast<double>(first.peak.processes), "processes");
  Print("infer_peak_object_store_used_bytes", static_cast<double>(first.peak.store_used), "bytes");
  Print("infer_peak_object_store_resident_bytes", static_cast<double>(first.peak.store_resident),
        "bytes");
  Print("infer_memory_budget_bytes", static_cast<double>(kBudget), "bytes");

  // Memory does not grow with the input: the same pipeline over 4 x the images, right after
  // the rounds (the processes the DataLoader baseline starts would count otherwise).
  {
    const std::string more = root + "/images-" + std::to_string(4 * n);
    MakeImages(more, 4 * n);
    WarmPool();
    const DatasetRun big = RunDataset(more, model, root + "/predictions-" + std::to_string(4 * n));
    Print("infer_peak_rss_bytes_4x_images", static_cast<double>(big.peak.rss), "bytes");
    Print("infer_peak_pss_bytes_4x_images", static_cast<double>(big.peak.pss), "bytes");
    Print("infer_peak_job_pss_bytes_4x_images", static_cast<double>(big.peak.pss - big.before.pss),
          "bytes");
    Print("infer_peak_processes_4x_images", static_cast<double>(big.peak.processes), "processes");
    Print("infer_peak_object_store_used_bytes_4x_images", static_cast<double>(big.peak.store_used),
          "bytes");
    Print("infer_peak_object_store_resident_bytes_4x_images",
          static_cast<double>(big.peak.store_resident), "bytes");
    Print("infer_peak_pss_4x_vs_1x",
          first.peak.pss > 0
              ? static_cast<double>(big.peak.pss) / static_cast<double>(first.peak.pss)
              : 0,
          "x");
    Print("infer_dataset_4x_images_per_s", big.images_per_s, "images/s");
    // Against the ceiling of the last round: the actors' start-up (model load, first forwards),
    // which model-only leaves out of its clock, is paid once for four times the images.
    Print("infer_dataset_4x_vs_model_only",
          model_rates.back() > 0 ? big.images_per_s / model_rates.back() : 0, "x");
    Print("infer_output_rows_equal_4x", big.rows == 4 * n ? 1 : 0, "bool");
  }

  if (!model.empty()) {
    const std::string line =
        FirstLine("/usr/bin/python3 " + script + " dataloader " + dir + " " + std::to_string(n) +
                  " " + model + " " + std::to_string(kBatch) + " " + std::to_string(kThreads) +
                  " " + root + "/dataloader.jsonl");
    double rate = 0;
    int64_t rows = 0;
    std::istringstream(line) >> rate >> rows;
    Print("infer_torch_dataloader_images_per_s", rate, "images/s");
    Print("infer_dataset_vs_torch_dataloader", rate > 0 ? Median(dataset_rates) / rate : 0, "x");
    Print("infer_torch_dataloader_rows_equal", rows == n ? 1 : 0, "bool");
  }

  lumen::Shutdown();
  return 0;
}
