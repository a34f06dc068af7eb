// lumen::lumen_torch: tensor columns seen by LibTorch without a copy, results back into
// batches, a model in an actor pool giving the predictions LibTorch gives when called
// directly, device and thread set-up from the pool's resources (declared GPUs: nothing here
// needs a real one), and a model file that does not load.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/data/torch.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;

namespace {

// A ResNet-18 with weights drawn after manual_seed(seed): the same in every process.
torch::nn::Sequential SeededResNet(int64_t seed) {
  torch::manual_seed(static_cast<uint64_t>(seed));
  torch::nn::Sequential net = ld::ResNet(18, 10);
  net->eval();
  return net;
}

class TorchClassifier {
 public:
  explicit TorchClassifier(int64_t seed)
      : device_(ld::SetUpTorchForActor()), net_(SeededResNet(seed)) {}
  ld::Batch operator()(const ld::Batch& in) {
    torch::NoGradGuard no_grad;
    torch::Tensor logits = net_->forward(ld::TensorView(in, "tensor").to(device_));
    ld::Batch out = ld::WithTensor(in.SelectColumns({"id"}), "logits", logits);
    return ld::WithTensor(out, "threads",
                          torch::full({in.NumRows()}, torch::get_num_threads(), torch::kInt64));
  }

 private:
  torch::Device device_;
  torch::nn::Sequential net_;
};

// Reports what a GPU actor sees.
class GpuProbe {
 public:
  GpuProbe() : cuda_(ld::SetUpTorchForActor().is_cuda()) {}
  ld::Batch operator()(const ld::Batch& in) {
    const char* devices = std::getenv("CUDA_VISIBLE_DEVICES");
    const size_t n = static_cast<size_t>(in.NumRows());
    return ld::BatchBuilder()
        .AddString("devices", std::vector<std::string>(n, devices ? devices : "<unset>"))
        .AddInt64("pid", std::vector<int64_t>(n, ::getpid()))
        .AddFloat64("num_gpus", std::vector<double>(n, ld::PoolActorResources().num_gpus))
        .AddBool("cuda", std::vector<uint8_t>(n, cuda_))
        .Build();
  }

 private:
  bool cuda_;
};

// A TorchScript model from a file, applied to the float value of column `id`: column `y`.
class ScriptedModel {
 public:
  explicit ScriptedModel(const std::string& path)
      : model_(ld::LoadTorchScript(path, ld::SetUpTorchForActor())) {}
  ld::Batch operator()(const ld::Batch& in) {
    std::vector<int64_t> ids(in.Int64("id").begin(), in.Int64("id").end());
    torch::Tensor x = torch::tensor(ids).to(torch::kFloat32);
    torch::NoGradGuard no_grad;
    return ld::WithTensor(in, "y", model_.forward({x}).toTensor());
  }

 private:
  torch::jit::Module model_;
};

LUMEN_DATA_CALLABLE(TorchClassifier, int64_t);
LUMEN_DATA_CALLABLE(GpuProbe);
LUMEN_DATA_CALLABLE(ScriptedModel, std::string);

TEST(TorchView, ATensorColumnIsSeenWithoutACopyAndResultsComeBack) {
  std::vector<float> values(2 * 3 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f;
  ld::Batch b = ld::BatchBuilder().AddTensorFloat32("x", {3, 4}, values).Build();
  torch::Tensor t = ld::TensorView(b, "x");
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_EQ(t.data_ptr<float>(), b.TensorFloat32("x").values().data());  // the block's memory
  EXPECT_FLOAT_EQ(t[1][2][3].item<float>(), values[23]);
  // The tensor keeps the block alive after the batch is gone.
  torch::Tensor kept =
      ld::TensorView(ld::BatchBuilder().AddTensorFloat32("x", {3, 4}, values).Build(), "x");
  EXPECT_FLOAT_EQ(kept.sum().item<float>(), t.sum().item<float>());
  // Back into a batch: tensors per row, and one value per row as a plain column.
  ld::Batch out = ld::WithTensor(b, "doubled", t * 2);
  EXPECT_EQ(out.TensorFloat32("doubled").shape(), (std::vector<int64_t>{3, 4}));
  EXPECT_FLOAT_EQ(out.TensorFloat32("doubled")[1][11], values[23] * 2);
  out = ld::WithTensor(out, "label", t.flatten(1).argmax(1));
  EXPECT_EQ(out.Int64("label")[0], 11);
  ld::Batch pixels = ld::BatchBuilder().AddTensorUInt8("p", {2}, {1, 2, 3, 4}).Build();
  EXPECT_EQ(ld::TensorView(pixels, "p").scalar_type(), torch::kUInt8);
  EXPECT_THROW(ld::TensorView(ld::BatchBuilder().AddInt64("n", {1}).Build(), "n"),
               lumen::TypeError);
  EXPECT_THROW(ld::WithTensor(b, "wrong", torch::zeros({3, 2})), lumen::TypeError);  // 3 rows
  EXPECT_THROW(ld::ResNet(20), lumen::TypeError);
}

class TorchPoolTest : public lumen::testing::DataFixture {};

TEST_F(TorchPoolTest, APoolGivesThePredictionsOfTheModelCalledDirectly) {
  torch::manual_seed(7);
  torch::Tensor inputs = torch::randn({12, 3, 64, 64});
  std::vector<int64_t> ids(12);
  for (int64_t i = 0; i < 12; ++i) ids[static_cast<size_t>(i)] = i;
  const float* p = inputs.data_ptr<float>();
  std::vector<ld::Batch> blocks;
  for (int64_t start = 0; start < 12; start += 6) {  // two blocks of six
    blocks.push_back(
        ld::BatchBuilder()
            .AddInt64("id", std::vector<int64_t>(ids.begin() + start, ids.begin() + start + 6))
            .AddTensorFloat32(
                "tensor", {3, 64, 64},
                std::vector<float>(p + start * 3 * 64 * 64, p + (start + 6) * 3 * 64 * 64))
            .Build());
  }
  std::map<int64_t, torch::Tensor> got;
  std::set<int64_t> threads;
  for (const ld::Batch& b : ld::FromBatches(blocks)
                                .MapBatches<TorchClassifier>(
                                    {.batch_size = 4, .concurrency = 1, .num_cpus = 2}, int64_t{11})
                                .WithOptions(lumen::testing::Quiet())
                                .IterBatches()) {
    torch::Tensor logits = ld::TensorView(b, "logits");
    for (int64_t r = 0; r < b.NumRows(); ++r) {
      got[b.Int64("id")[static_cast<size_t>(r)]] = logits[r].clone();
      threads.insert(b.Int64("threads")[static_cast<size_t>(r)]);
    }
  }
  ASSERT_EQ(got.size(), 12u);
  EXPECT_EQ(threads, (std::set<int64_t>{2}));  // torch::set_num_threads(num_cpus)
  torch::NoGradGuard no_grad;
  torch::Tensor direct = SeededResNet(11)->forward(inputs);
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_TRUE(torch::allclose(got[i], direct[i], 1e-4, 1e-4))
        << "row " << i << ": " << got[i] << " vs " << direct[i];
    EXPECT_EQ(got[i].argmax().item<int64_t>(), direct[i].argmax().item<int64_t>());
  }
}

TEST_F(TorchPoolTest, AModelFileThatDoesNotLoadFailsAtActorStartWithItsPath) {
  try {
    ld::Range(20)
        .MapBatches<ScriptedModel>({.concurrency = 2, .num_cpus = 0},
                                   std::string("/no/such/model.pt"))
        .WithOptions(lumen::testing::Quiet())
        .Count();
    ADD_FAILURE() << "the pool ran without its model";
  } catch (const ld::DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot load the TorchScript model /no/such/model.pt"), std::string::npos)
        << what;
    EXPECT_NE(what.find("MapBatches(ScriptedModel)"), std::string::npos) << what;
  }
}

// A TorchScript file (saved here by LibTorch's own scripting) loads once per actor and serves
// every batch.
TEST_F(TorchPoolTest, ATorchScriptFileIsLoadedAndServesEveryBatch) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lumen-scripted-" + std::to_string(::getpid()) + ".pt"))
                               .string();
  torch::jit::Module m("Affine");
  m.register_parameter("w", torch::tensor({2.0f}), /*is_buffer=*/false);
  m.define(R"(
def forward(self, x):
    return x * self.w + 1.0
)");
  m.save(path);
  int64_t rows = 0;
  for (const ld::Batch& b : ld::Range(200, {.num_blocks = 8})
                                .MapBatches<ScriptedModel>({.concurrency = 2, .num_cpus = 0}, path)
                                .WithOptions(lumen::testing::Quiet())
                                .IterBatches()) {
    for (int64_t r = 0; r < b.NumRows(); ++r) {  // one value per row: a plain column
      const auto i = static_cast<size_t>(r);
      EXPECT_DOUBLE_EQ(b.Float64("y")[i], 2.0 * static_cast<double>(b.Int64("id")[i]) + 1.0);
      ++rows;
    }
  }
  EXPECT_EQ(rows, 200);
  std::filesystem::remove(path);
}

// optimize_for_inference: a convolution and a batch norm (in TorchScript, saved and loaded as
// a user's file is) fold into one convolution; the outputs stay the unoptimised module's but
// for float rounding.
TEST(TorchScript, OptimisedForInferenceTheBatchNormIsFoldedAndTheOutputsKept) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lumen-convbn-" + std::to_string(::getpid()) + ".pt"))
                               .string();
  torch::manual_seed(3);
  torch::jit::Module m("ConvBn");
  m.register_attribute("training", c10::BoolType::get(), true);  // as a scripted nn.Module's
  m.register_parameter("w", torch::randn({4, 3, 3, 3}), false);
  m.register_parameter("gamma", torch::rand({4}) + 0.5, false);
  m.register_parameter("beta", torch::randn({4}), false);
  m.register_buffer("mean", torch::randn({4}));
  m.register_buffer("var", torch::rand({4}) + 0.5);
  m.define(R"(
def forward(self, x):
    y = torch.conv2d(x, self.w, None, [1, 1], [1, 1])
    y = torch.batch_norm(y, self.gamma, self.beta, self.mean, self.var, False, 0.1, 1e-5, False)
    return torch.relu(y)
)");
  m.save(path);
  torch::jit::Module plain = ld::LoadTorchScript(path, torch::kCPU);
  torch::jit::Module fast =
      ld::LoadTorchScript(path, torch::kCPU, {.optimize_for_inference = true});
  std::filesystem::remove(path);
  auto graph = [](torch::jit::Module& mod) {
    return mod.get_method("forward").graph()->toString();
  };
  EXPECT_NE(graph(plain).find("batch_norm"), std::string::npos);
  EXPECT_EQ(graph(fast).find("batch_norm"), std::string::npos) << graph(fast);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({2, 3, 16, 16});
  const torch::Tensor a = plain.forward({x}).toTensor();
  const torch::Tensor b = fast.forward({x}).toTensor();
  EXPECT_GT(a.abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-4)) << (a - b).abs().max();
  try {
    ld::LoadTorchScript("/no/such/model.pt", torch::kCPU, {.optimize_for_inference = true});
    ADD_FAILURE() << "a missing model loaded";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/model.pt"), std::string::npos) << e.what();
  }
}

// GPUs declared to the cluster, none present: placement and CUDA_VISIBLE_DEVICES are Lumen's.
class GpuPoolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen::InitOptions o;
    o.num_cpus = 2;
    o.num_gpus = 2;
    o.object_store_memory = 128ll << 20;
    lumen::Init(o);
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }

  // device list -> pids of the actors that saw it
  static std::map<std::string, std::set<int64_t>> Probe(double num_gpus) {
    std::map<std::string, std::set<int64_t>> seen;
    for (const ld::Batch& b :
         ld::Range(400, {.num_blocks = 40})
             .MapBatches<GpuProbe>({.concurrency = 2, .num_cpus = 0, .num_gpus = num_gpus})
             .WithOptions(lumen::testing::Quiet())
             .IterBatches()) {
      for (int64_t r = 0; r < b.NumRows(); ++r) {
        const auto i = static_cast<size_t>(r);
        seen[std::string(b.String("devices")[i])].insert(b.Int64("pid")[i]);
        EXPECT_DOUBLE_EQ(b.Float64("num_gpus")[i], num_gpus);
        EXPECT_FALSE(b.Bool("cuda")[i]);  // no CUDA here: the model runs on the CPU
      }
    }
    return seen;
  }
};

TEST_F(GpuPoolTest, WholeGpusGoToOneActorEachAndHalvesShareADevice) {
  auto whole = Probe(1);
  ASSERT_EQ(whole.size(), 2u);  // two actors, two devices
  EXPECT_TRUE(whole.count("0") && whole.count("1"));
  for (const auto& [devices, pids] : whole) EXPECT_EQ(pids.size(), 1u) << devices;
  auto halves = Probe(0.5);
  ASSERT_EQ(halves.size(), 1u);  // packed onto one device
  EXPECT_TRUE(halves.count("0") || halves.count("1"));
  EXPECT_EQ(halves.begin()->second.size(), 2u);  // by both actors
}

}  // namespace
