// lumen::data: blocks, transforms, sources and sinks, exchanges, actor pools, errors,
// exactly-once writes, streaming, memory budget. On an embedded cluster.
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
namespace fs = std::filesystem;

namespace {

// ---- functions used by the pipelines ------------------------------------------------------
ld::Batch Double(const ld::Batch& in) {
  std::vector<int64_t> out;
  for (int64_t v : in.Int64("id")) out.push_back(2 * v);
  return ld::BatchBuilder().AddInt64("id", std::move(out)).Build();
}
// 4 MB out per row in: a decode-like expansion the read's file sizes do not predict.
ld::Batch Inflate(const ld::Batch& in) {
  return ld::BatchBuilder()
      .AddBinary("big", std::vector<std::string>(static_cast<size_t>(in.NumRows()),
                                                 std::string(4 << 20, 'x')))
      .Build();
}
ld::Row AddOne(const ld::Row& r) {
  ld::Row out = r;
  out.Set("id", r.GetInt64("id") + 1);
  return out;
}
bool IsEven(const ld::Row& r) { return r.GetInt64("id") % 2 == 0; }
std::vector<ld::Row> Twice(const ld::Row& r) { return {r, r}; }
ld::Batch Squares(const ld::Batch& in) {
  std::vector<int64_t> out;
  for (int64_t v : in.Int64("id")) out.push_back(v * v);
  return ld::BatchBuilder().AddInt64("sq", std::move(out)).Build();
}
ld::Batch CountRows(const ld::Batch& in) {
  return ld::BatchBuilder().AddInt64("rows", {in.NumRows()}).Build();
}
ld::Batch UpperBytes(const ld::Batch& in) {
  auto bytes = in.Binary("bytes");
  std::vector<std::string> out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string s(bytes[i]);
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out.push_back(std::move(s));
  }
  return ld::BatchBuilder(in).AddBinary("bytes", std::move(out)).Build();
}
ld::Batch FailOn7(const ld::Batch& in) {
  for (int64_t v : in.Int64("id")) {
    if (v == 7) throw std::runtime_error("bad record 7");
  }
  return in;
}
// Kills its own worker the first time it sees id 30 (the marker file in the `marker` column
// remembers that it did).
ld::Batch KillOnce(const ld::Batch& in) {
  auto ids = in.Int64("id");
  auto markers = in.String("marker");
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string marker(markers[i]);
    if (ids[i] == 30 && !std::filesystem::exists(marker)) {
      std::ofstream(marker) << "killed";
      ::kill(::getpid(), SIGKILL);
    }
  }
  return in.DropColumns({"marker"});
}

// Waits until `path` exists; false if it has not appeared within `timeout` (so that a test
// whose expectation is broken fails instead of hanging).
bool WaitForFile(const std::string& path,
                 std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// The block holding id 99 waits until the file named in its `go` column exists (the consumer
// makes it once it has a first batch). Column `released`: 1 if it appeared, 0 on timeout.
ld::Batch WaitForGo(const ld::Batch& in) {
  auto ids = in.Int64("id");
  bool last = std::find(ids.begin(), ids.end(), 99) != ids.end();
  bool released = !last || WaitForFile(std::string(in.String("go")[0]), std::chrono::seconds(30));
  return ld::BatchBuilder(in.DropColumns({"go"}))
      .AddInt64("released", std::vector<int64_t>(ids.size(), released ? 1 : 0))
      .Build();
}

std::string ReadFileText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Batches of 10 of the lines "<row>\t<progress log>" of one block. The first batch stands
// for a model's work on a batch (0.2 s); the second waits until the driver's progress, written
// to the log, counts the first batch's 10 rows as consumed — while the block is still being
// worked on. Column `seen`: 1 if it did (or need not wait), 0 on timeout.
ld::Batch WaitForBatchProgress(const ld::Batch& in) {
  const std::string line(in.String("text")[0]);
  const size_t tab = line.find('\t');
  const int64_t first = std::stoll(line.substr(0, tab));
  const std::string log = line.substr(tab + 1);
  bool seen = true;
  if (first == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  if (first == 10) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!(seen = ReadFileText(log).find(" in 10 rows") != std::string::npos) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return ld::BatchBuilder()
      .AddInt64("seen", std::vector<int64_t>(static_cast<size_t>(in.NumRows()), seen ? 1 : 0))
      .Build();
}

// Appends a line per call to the file named in the `log` column (counts executions).
ld::Batch LogCall(const ld::Batch& in) {
  if (in.NumRows() > 0) std::ofstream(std::string(in.String("log")[0]), std::ios::app) << "x\n";
  return in.DropColumns({"log"});
}

class Scaler {
 public:
  Scaler(int64_t factor, std::string tag) : factor_(factor), tag_(std::move(tag)) {
    std::ofstream(tag_ + "." + std::to_string(::getpid()), std::ios::app) << "x";
  }
  ld::Batch operator()(const ld::Batch& in) {
    std::vector<int64_t> out;
    for (int64_t v : in.Int64("id")) out.push_back(v * factor_);
    std::vector<int64_t> pid(out.size(), ::getpid());
    return ld::BatchBuilder()
        .AddInt64("id", std::move(out))
        .AddInt64("pid", std::move(pid))
        .Build();
  }

 private:
  int64_t factor_;
  std::string tag_;
};

// An actor-pool model for failure tests. It records each block it finishes (its first id) in
// `<dir>/calls.<pid>`, its constructions in `<dir>/ctor.<pid>`, adds a `pid` column, and from
// id `gate_from` on waits for `<dir>/killed` — made once the test has killed a pool actor —
// so that the job cannot end before the kill and the killed actor dies holding blocks.
class GatedModel {
 public:
  GatedModel(std::string dir, int64_t gate_from) : dir_(std::move(dir)), gate_from_(gate_from) {
    std::ofstream(dir_ + "/ctor." + std::to_string(::getpid()), std::ios::app) << "x\n";
  }
  ld::Batch operator()(const ld::Batch& in) {
    auto ids = in.Int64("id");
    if (!ids.empty() && ids[0] >= gate_from_) {
      std::ofstream(dir_ + "/gated." + std::to_string(::getpid())) << ids[0];
      WaitForFile(dir_ + "/killed");
    }
    std::ofstream(dir_ + "/calls." + std::to_string(::getpid()), std::ios::app)
        << (ids.empty() ? -1 : ids[0]) << "\n";
    return ld::BatchBuilder(in)
        .AddInt64("pid", std::vector<int64_t>(ids.size(), ::getpid()))
        .Build();
  }

 private:
  std::string dir_;
  int64_t gate_from_;
};

// Each call waits (up to a minute) until `want` actors of its pool have made a call: it ends
// only if the pool grew. Column `met`: 1 if they did, 0 on timeout.
class Rendezvous {
 public:
  Rendezvous(std::string dir, int64_t want) : dir_(std::move(dir)), want_(want) {}
  ld::Batch operator()(const ld::Batch& in) {
    std::ofstream(dir_ + "/actor." + std::to_string(::getpid())) << "x";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool met = false;
    while (!met && std::chrono::steady_clock::now() < deadline) {
      int64_t actors = 0;
      for (const auto& e : std::filesystem::directory_iterator(dir_)) {
        actors += e.path().filename().string().starts_with("actor.");
      }
      met = actors >= want_;
      if (!met) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const size_t n = static_cast<size_t>(in.NumRows());
    return ld::BatchBuilder(in)
        .AddInt64("pid", std::vector<int64_t>(n, ::getpid()))
        .AddInt64("met", std::vector<int64_t>(n, met))
        .Build();
  }

 private:
  std::string dir_;
  int64_t want_;
};

// What a dataset of Rendezvous calls returned: rows, those whose call timed out, the actors.
struct RendezvousRows {
  int64_t rows = 0;
  int64_t unmet = 0;
  std::set<int64_t> pids;
};
RendezvousRows RunRendezvous(const ld::Dataset& ds) {
  RendezvousRows out;
  for (const ld::Batch& b : ds.IterBatches()) {
    for (int64_t r = 0; r < b.NumRows(); ++r) {
      out.unmet += b.Int64("met")[static_cast<size_t>(r)] != 1;
      out.pids.insert(b.Int64("pid")[static_cast<size_t>(r)]);
    }
    out.rows += b.NumRows();
  }
  return out;
}

// Whether process `pid` has exited (gone, or a zombie not yet reaped).
bool Exited(int64_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto close = line.rfind(')');
  return close == std::string::npos || line.substr(close + 2, 1) == "Z";
}

// A pool actor of an autoscaling pool: the blocks before row 20 wait until two actors are
// registered (so the pool grows to two), and the block starting at row `last` waits until
// another actor of the pool has exited (it can only if the pool retires its idle actor).
// Column `ok` is 1 when the wait ended that way, 0 after a minute without.
class Retiree {
 public:
  Retiree(std::string dir, int64_t last) : dir_(std::move(dir)), last_(last) {}
  ld::Batch operator()(const ld::Batch& in) {
    std::ofstream(dir_ + "/actor." + std::to_string(::getpid())) << "x";
    const int64_t first = in.Int64("id")[0];
    auto others = [&](auto&& count) {
      int64_t n = 0;
      for (const auto& e : std::filesystem::directory_iterator(dir_)) {
        const std::string name = e.path().filename().string();
        if (!name.starts_with("actor.")) continue;
        const int64_t pid = std::stoll(name.substr(6));
        if (pid != ::getpid()) n += count(pid);
      }
      return n;
    };
    std::function<bool()> done = [] { return true; };
    if (first < 20) done = [&] { return others([](int64_t) { return 1; }) >= 1; };
    if (first == last_) done = [&] { return others(Exited) >= 1; };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool ok = done();
    while (!ok && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling the condition
      ok = done();
    }
    const size_t n = static_cast<size_t>(in.NumRows());
    return ld::BatchBuilder(in).AddInt64("ok", std::vector<int64_t>(n, ok)).Build();
  }

 private:
  std::string dir_;
  int64_t last_;
};

// Constructed in `ms` milliseconds (a model loading); each call takes 20 ms in user code.
class SlowStart {
 public:
  explicit SlowStart(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
  ld::Batch operator()(const ld::Batch& in) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return in;
  }
};

class BrokenModel {
 public:
  BrokenModel() { throw std::runtime_error("model weights not found"); }
  ld::Batch operator()(const ld::Batch& in) { return in; }
};

LUMEN_REMOTE(Double, Inflate, AddOne, IsEven, Twice, Squares, CountRows, UpperBytes, FailOn7,
             KillOnce, WaitForGo, WaitForBatchProgress, LogCall);
LUMEN_DATA_CALLABLE(Scaler, int64_t, std::string);
LUMEN_DATA_CALLABLE(GatedModel, std::string, int64_t);
LUMEN_DATA_CALLABLE(BrokenModel);
LUMEN_DATA_CALLABLE(Rendezvous, std::string, int64_t);
LUMEN_DATA_CALLABLE(Retiree, std::string, int64_t);
LUMEN_DATA_CALLABLE(SlowStart, int64_t);

// Regular files under `dir`, not counting a write's records (manifest, _SUCCESS, lock).
int OutputFiles(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (lumen::testing::IsWriteRecord(e.path().filename().string())) continue;
    n += e.is_regular_file();
  }
  return n;
}

int CountLines(const std::string& path) {
  std::ifstream f(path);
  return static_cast<int>(
      std::count(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>(), '\n'));
}

// Once some GatedModel actor has finished `blocks` blocks (its `calls.<pid>` file in `dir`)
// and waits at the gate holding the next (`gated.<pid>`), SIGKILLs its process — once — and
// makes `<dir>/killed`. Returns the pid killed, or 0 if no actor got that far within a minute
// (the gate opens anyway, so that the job ends). The pool learns of a death from the calls it
// interrupts: an actor killed while idle is restarted by the core before its next call.
pid_t KillOnePoolActor(const std::filesystem::path& dir, int blocks) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  pid_t victim = 0;
  while (victim == 0 && std::chrono::steady_clock::now() < deadline) {
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      std::string name = e.path().filename().string();
      if (name.rfind("calls.", 0) != 0 || CountLines(e.path().string()) < blocks) continue;
      if (!std::filesystem::exists(dir / ("gated." + name.substr(6)))) continue;
      victim = static_cast<pid_t>(std::stol(name.substr(6)));
      break;
    }
    if (victim == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (victim != 0) ::kill(victim, SIGKILL);
  std::ofstream(dir / "killed") << "killed";
  return victim;
}

// The first operator whose name starts with `prefix`.
std::optional<ld::OperatorStats> FindOperator(const ld::DatasetStats& stats,
                                              const std::string& prefix) {
  for (const auto& o : stats.operators) {
    if (o.name.rfind(prefix, 0) == 0) return o;
  }
  return std::nullopt;
}

std::vector<int64_t> Ids(const std::vector<ld::Row>& rows, const std::string& col = "id") {
  std::vector<int64_t> v;
  for (const auto& r : rows) v.push_back(r.GetInt64(col));
  return v;
}

std::vector<int64_t> Sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int64_t> Iota(int64_t n, int64_t step = 1, int64_t from = 0) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(from + i * step);
  return v;
}

ld::ExecutionOptions Quiet() {
  ld::ExecutionOptions o;
  o.progress = false;
  return o;
}

// ---- blocks -----------------------------------------------------------------------------------

TEST(Batch, BuildsAndReadsColumnsInPlace) {
  ld::Batch b = ld::BatchBuilder()
                    .AddInt64("i", {1, 2, 3})
                    .AddFloat64("f", {0.5, 1.5, 2.5})
                    .AddBool("b", {1, 0, 1})
                    .AddString("s", {"a", "", "ccc"})
                    .AddBinary("bin", std::vector<std::string>{"x", "yy", std::string("\0z", 2)})
                    .AddTensorFloat32("t", {2, 2}, std::vector<float>(12, 1.5f))
                    .Build();
  EXPECT_EQ(b.NumRows(), 3);
  EXPECT_EQ(b.NumColumns(), 6u);
  EXPECT_EQ(b.Int64("i")[2], 3);
  EXPECT_EQ(b.Float64("f")[1], 1.5);
  EXPECT_EQ(b.Bool("b")[1], 0);
  EXPECT_EQ(b.String("s")[2], "ccc");
  EXPECT_EQ(b.Binary("bin")[2], std::string_view("\0z", 2));
  EXPECT_EQ(b.TensorFloat32("t").shape(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(b.TensorFloat32("t")[2][3], 1.5f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.Int64("i").data()) % 64, 0u);  // 64-byte aligned
  EXPECT_THROW(b.Int64("f"), lumen::TypeError);
  EXPECT_THROW(b.Int64("missing"), lumen::TypeError);
  // Round trip through raw bytes (as in the object store).
  ld::Batch again =
      ld::Batch::FromBuffer(lumen::Buffer::Copy(b.buffer().data(), b.buffer().size()));
  EXPECT_EQ(again.String("s")[0], "a");
}

TEST(Batch, AFloatTensorColumnIsFilledInPlaceWhenBuilt) {
  int fills = 0;
  ld::BatchBuilder builder;
  builder.AddInt64("i", {1, 2, 3}).AddTensorFloat32("t", {2, 2}, 3, [&](std::span<float> out) {
    ++fills;
    ASSERT_EQ(out.size(), 12u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(out.data()) % 64, 0u);
    for (size_t k = 0; k < out.size(); ++k) out[k] = static_cast<float>(k);
  });
  ld::Batch b = builder.Build();
  EXPECT_EQ(fills, 1);
  EXPECT_EQ(b.TensorFloat32("t").shape(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(b.TensorFloat32("t")[2][3], 11.0f);
  // The column inside the encoded batch is what was filled.
  EXPECT_GE(reinterpret_cast<const uint8_t*>(b.TensorFloat32("t")[0].data()), b.buffer().data());
  EXPECT_LT(reinterpret_cast<const uint8_t*>(b.TensorFloat32("t")[0].data()),
            b.buffer().data() + b.buffer().size());
  // Null rows come out zeroed whatever the fill wrote.
  ld::Batch with_null =
      ld::BatchBuilder(b.SelectColumns({"i"}))
          .AddTensorFloat32("t", {2}, 3,
                            [](std::span<float> out) { std::fill(out.begin(), out.end(), 7.0f); })
          .SetValidity("t", {1, 0, 1})
          .Build();
  EXPECT_EQ(with_null.TensorFloat32("t")[1][0], 0.0f);
  EXPECT_EQ(with_null.TensorFloat32("t")[2][1], 7.0f);
  // Bad shapes are refused when added.
  auto nothing = [](std::span<float>) {};
  EXPECT_THROW(ld::BatchBuilder().AddTensorFloat32("t", {0, 2}, 3, nothing), lumen::TypeError);
  EXPECT_THROW(ld::BatchBuilder().AddTensorFloat32("t", {2}, -1, nothing), lumen::TypeError);
  EXPECT_THROW(ld::BatchBuilder().AddTensorFloat32("t", {2}, 3, nullptr), lumen::TypeError);
  // A fill that throws leaves Build with its exception.
  EXPECT_THROW(
      ld::BatchBuilder()
          .AddTensorFloat32("t", {2}, 1, [](std::span<float>) { throw std::runtime_error("no"); })
          .Build(),
      std::runtime_error);
}

TEST(Batch, SliceConcatTakeSelect) {
  ld::Batch b = ld::BatchBuilder()
                    .AddInt64("i", Iota(10))
                    .AddString("s", std::vector<std::string>(10, "v"))
                    .Build();
  ld::Batch s = b.Slice(3, 4);
  EXPECT_EQ(std::vector<int64_t>(s.Int64("i").begin(), s.Int64("i").end()),
            (std::vector<int64_t>{3, 4, 5, 6}));
  ld::Batch c = ld::Batch::Concat({s, b.Slice(0, 2)});
  EXPECT_EQ(c.NumRows(), 6);
  EXPECT_EQ(c.Int64("i")[4], 0);
  ld::Batch t = b.TakeRows({9, 0, 9});
  EXPECT_EQ(t.Int64("i")[0], 9);
  EXPECT_EQ(t.NumRows(), 3);
  EXPECT_EQ(b.SelectColumns({"s"}).ColumnNames(), std::vector<std::string>{"s"});
  EXPECT_EQ(b.DropColumns({"s"}).ColumnNames(), std::vector<std::string>{"i"});
  EXPECT_THROW(ld::BatchBuilder().AddInt64("a", {1}).AddInt64("b", {1, 2}).Build(),
               lumen::TypeError);
}

// Values, rows and stats print with operator<< (as their ToString()), without a user's help.
TEST(Row, ValuesRowsAndStatsPrintWithTheStreamOperator) {
  const ld::Row row{{"city", "Oslo"}, {"qty", 3}, {"price", 2.5}, {"gone", ld::Value()}};
  std::ostringstream out;
  out << row << " | " << row.Get("city") << " | " << ld::DatasetStats{};
  EXPECT_EQ(out.str(), row.ToString() + " | " + row.Get("city").ToString() + " | " +
                           ld::DatasetStats{}.ToString());
  EXPECT_NE(out.str().find("Oslo"), std::string::npos) << out.str();
}

TEST(Batch, MalformedBytesAreRejected) {
  EXPECT_THROW(ld::Batch::FromBuffer(lumen::Buffer::FromString("not a block")), lumen::TypeError);
  ld::Batch b = ld::BatchBuilder().AddString("s", {"abc"}).Build();
  const std::string good(b.buffer().view());
  // Every single corrupted byte is either rejected as an invalid block, or (padding, stats,
  // string contents) yields a block whose values all lie inside it.
  int rejected = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bytes = good;
    bytes[i] ^= 0x7f;
    try {
      ld::Batch c = ld::Batch::FromBuffer(lumen::Buffer::FromString(bytes));
      for (const auto& name : c.ColumnNames()) {
        if (c.ColumnType(name) != ld::DataType::kString) continue;
        for (int64_t r = 0; r < c.NumRows(); ++r) {
          std::string_view v = c.String(name)[static_cast<size_t>(r)];
          ASSERT_LE(v.size(), bytes.size()) << "byte " << i;
        }
      }
    } catch (const lumen::TypeError& e) {
      ++rejected;
      EXPECT_EQ(std::string(e.what()).rfind("not a valid lumen::data block: ", 0), 0u)
          << "byte " << i << ": " << e.what();
    }
  }
  EXPECT_GT(rejected, 0);  // the header and column table are checked
  std::string bytes = good;
  bytes.resize(bytes.size() - 1);
  EXPECT_THROW(ld::Batch::FromBuffer(lumen::Buffer::FromString(bytes)), lumen::TypeError);
}

// ---- pipelines --------------------------------------------------------------------------------

class DataTest : public lumen::testing::DataFixture {
 protected:
  static void SetUpTestSuite() {  // 512 MiB of store, twice the fixture's
    lumen::InitOptions o;
    o.num_cpus = 2;
    o.object_store_memory = 512ll << 20;
    lumen::Init(o);
  }
};

TEST_F(DataTest, RangeCountAndMapBatches) {
  auto ds = ld::Range(1000, {.num_blocks = 7}).WithOptions(Quiet());
  EXPECT_EQ(ds.Count(), 1000);
  auto rows = ds.MapBatches(Double, {.batch_size = 10}).TakeAll();
  EXPECT_EQ(Sorted(Ids(rows)), Iota(1000, 2));
}

TEST_F(DataTest, RowTransformsChain) {
  auto rows =
      ld::Range(100).Map(AddOne).Filter(IsEven).FlatMap(Twice).WithOptions(Quiet()).TakeAll();
  std::vector<int64_t> expect;
  for (int64_t i = 1; i <= 100; ++i) {
    if (i % 2 == 0) expect.insert(expect.end(), {i, i});
  }
  EXPECT_EQ(Sorted(Ids(rows)), expect);
}

TEST_F(DataTest, ColumnsAddSelectDrop) {
  auto ds = ld::Range(10).AddColumn("square", Squares).WithOptions(Quiet());
  auto rows = ds.TakeAll();
  ASSERT_EQ(rows.size(), 10u);
  for (const auto& r : rows) EXPECT_EQ(r.GetInt64("square"), r.GetInt64("id") * r.GetInt64("id"));
  auto only = ds.SelectColumns({"square"}).TakeAll();
  EXPECT_FALSE(only[0].Has("id"));
  auto dropped = ds.DropColumns({"square"}).TakeAll();
  EXPECT_FALSE(dropped[0].Has("square"));
  EXPECT_THROW(ds.SelectColumns({"nope"}).Count(), ld::DataError);
}

TEST_F(DataTest, LimitTakesOnlyWhatIsNeeded) {
  // A small budget keeps few read tasks in flight, so that a satisfied limit stops the reads.
  const ld::ExecutionOptions small{.memory_budget_bytes = 64 << 10, .progress = false};
  auto ds = ld::Range(100000, {.num_blocks = 50}).Map(AddOne).WithOptions(small);
  ASSERT_EQ(ds.Count(), 100000);
  const ld::DatasetStats all = ds.Stats();
  ASSERT_EQ(all.operators.front().tasks, 50) << all.ToString();
  auto rows = ds.Take(5);
  EXPECT_EQ(rows.size(), 5u);
  const ld::DatasetStats limited = ds.Stats();
  // The limit moved below the row-preserving Map: the Map transformed exactly the 5 rows
  // kept, where without the pushdown it runs fused into the read on whole 2,000-row blocks.
  const std::optional<ld::OperatorStats> map = FindOperator(limited, "Map(AddOne)");
  ASSERT_TRUE(map.has_value()) << limited.ToString();
  EXPECT_EQ(map->rows_in, 5) << limited.ToString();
  EXPECT_EQ(map->rows_out, 5) << limited.ToString();
  // And the limit stopped the source: fewer blocks were read than without it.
  const std::optional<ld::OperatorStats> read = FindOperator(limited, "Range(100000)");
  ASSERT_TRUE(read.has_value()) << limited.ToString();
  EXPECT_LT(read->tasks, all.operators.front().tasks) << limited.ToString();
  EXPECT_LT(read->rows_out, 100000) << limited.ToString();
}

TEST_F(DataTest, ReadMapFusesIntoOneOperator) {
  std::string explain = ld::Range(10).Map(AddOne).Filter(IsEven).Explain();
  EXPECT_NE(explain.find("Range(10)->Map(AddOne)->Filter(IsEven)"), std::string::npos) << explain;
}

TEST_F(DataTest, RepartitionShuffleSort) {
  auto base = ld::Range(1000, {.num_blocks = 4}).WithOptions(Quiet());
  auto rep = base.Repartition(10);
  EXPECT_EQ(rep.Count(), 1000);
  EXPECT_EQ(rep.Stats().operators.back().tasks, 10);
  auto shuffled = Ids(base.RandomShuffle(42).TakeAll());
  EXPECT_EQ(Sorted(shuffled), Iota(1000));
  EXPECT_NE(shuffled, Iota(1000));
  auto sorted = base.RandomShuffle(7)
                    .Sort("id")
                    .WithOptions({.progress = false, .preserve_order = true})
                    .TakeAll();
  EXPECT_EQ(Ids(sorted), Iota(1000));
  auto desc =
      base.Sort("id", true).WithOptions({.progress = false, .preserve_order = true}).TakeAll();
  auto want = Iota(1000);
  std::reverse(want.begin(), want.end());
  EXPECT_EQ(Ids(desc), want);
}

TEST_F(DataTest, GroupByAggregates) {
  std::vector<ld::Row> items;
  for (int i = 0; i < 100; ++i) items.push_back(ld::Row{{"k", i % 3}, {"v", i}});
  auto ds = ld::FromItems(items, {.num_blocks = 4});
  auto order = ld::ExecutionOptions{.progress = false, .preserve_order = true};
  auto counts = ds.GroupBy("k").Count().WithOptions(order).TakeAll();
  ASSERT_EQ(counts.size(), 3u);
  EXPECT_EQ(counts[0].GetInt64("k"), 0);
  EXPECT_EQ(counts[0].GetInt64("count()"), 34);
  auto sums = ds.GroupBy("k").Sum("v").WithOptions(order).TakeAll();
  EXPECT_EQ(sums[1].GetInt64("sum(v)"), 1617);  // 1 + 4 + ... + 97: 33 values
  auto means = ds.GroupBy("k").Mean("v").WithOptions(order).TakeAll();
  EXPECT_DOUBLE_EQ(means[2].GetDouble("mean(v)"), 50.0);
  auto mins = ds.GroupBy("k").Min("v").WithOptions(order).TakeAll();
  EXPECT_EQ(mins[2].GetInt64("min(v)"), 2);
  auto maxs = ds.GroupBy("k").Max("v").WithOptions(order).TakeAll();
  EXPECT_EQ(maxs[0].GetInt64("max(v)"), 99);
}

TEST_F(DataTest, UnionKeepsAllRows) {
  auto a = ld::Range(10), b = ld::Range(5).Map(AddOne);
  EXPECT_EQ(Sorted(Ids(a.Union({b}).WithOptions(Quiet()).TakeAll())),
            Sorted(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5}));
}

TEST_F(DataTest, BinaryFilesCopyExactlyOnce) {
  std::map<std::string, std::string> files;
  for (int i = 0; i < 50; ++i) {
    std::string rel = "class" + std::to_string(i % 4) + "/img" + std::to_string(i) + ".bin";
    files[rel] = std::string(static_cast<size_t>(100 + i * 37), static_cast<char>('a' + i % 26));
    WriteFile("in/" + rel, files[rel]);
  }
  auto ds = ld::ReadBinaryFiles(Path("in"), {.max_files_per_block = 8}).WithOptions(Quiet());
  auto upper = ds.MapBatches(UpperBytes, {.batch_size = 4});
  auto r = upper.WriteFiles(Path("out"), {.path_column = "path", .data_column = "bytes"});
  EXPECT_EQ(r.files_written, 50);
  EXPECT_EQ(r.files_skipped, 0);
  for (const auto& [rel, content] : files) {
    std::string upper = content;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(ReadFile(Path("out/" + rel)), upper) << rel;
  }
  EXPECT_EQ(OutputFiles(Path("out")), 50);  // no temporary or duplicate files
  EXPECT_FALSE(fs::exists(Path("out/.lumen-staging")));
  EXPECT_TRUE(fs::exists(Path("out/_SUCCESS")));
  EXPECT_TRUE(fs::exists(Path("out/_lumen_manifest.json")));
  // Re-running the same write skips what is committed.
  auto again = upper.WriteFiles(Path("out"));
  EXPECT_EQ(again.files_written, 0);
  EXPECT_EQ(again.files_skipped, 50);
  // A partial earlier run: only the missing file is written.
  auto resume = upper.WriteFiles(Path("out2"));
  EXPECT_EQ(resume.files_written, 50);
  fs::remove(Path("out2/class1/img1.bin"));
  auto resumed = upper.WriteFiles(Path("out2"));
  EXPECT_EQ(resumed.files_written, 1);
  EXPECT_EQ(resumed.files_skipped, 49);
}

// Captures what the library writes to stderr while `body` runs, with stderr a terminal (a
// pseudo-terminal read by a thread, so that a full buffer never blocks the writer). Worker
// processes started meanwhile inherit the terminal and keep it open, so the end of the
// capture is a marker written after `body`, not the end of file.
std::string StderrOnTerminal(const std::function<void()>& body) {
  int master = -1, slave = -1;
  if (::openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) {
    ADD_FAILURE() << "openpty failed";
    return "";
  }
  const std::string marker = "<<end of captured stderr " + std::to_string(::getpid()) + ">>";
  std::string out;
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while (out.find(marker) == std::string::npos && (n = ::read(master, buf, sizeof(buf))) > 0) {
      out.append(buf, static_cast<size_t>(n));
    }
  });
  std::fflush(stderr);
  int saved = ::dup(STDERR_FILENO);
  ::dup2(slave, STDERR_FILENO);
  std::exception_ptr failure;
  try {
    body();
  } catch (...) {
    failure = std::current_exception();
  }
  std::fprintf(stderr, "%s\n", marker.c_str());
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(slave);
  reader.join();
  ::close(master);
  if (failure) std::rethrow_exception(failure);
  return out.substr(0, out.find(marker));
}

// A read's first and last blocks are split smaller (so what follows starts sooner and ends
// together), and a read of one row per file groups its files in whole batches of the
// transform reading them: every batch keeps its size.
TEST_F(DataTest, AReadSplitsItsFirstAndLastBlocksInWholeBatches) {
  for (int i = 0; i < 90; ++i) WriteFile("in/f" + std::to_string(100 + i), "x");
  auto per_call = [](const ld::Dataset& ds) {
    std::vector<int64_t> rows;
    for (ld::Batch b : ds.WithOptions(lumen::testing::Quiet()).IterBatches()) {
      for (int64_t n : b.Int64("rows")) rows.push_back(n);
    }
    return rows;
  };
  // 10 blocks of 9 files; the first and last four are split in quarters (3 files, rounded
  // up): 8 x 3 + 2 = 26 blocks, one call each.
  std::vector<int64_t> blocks =
      per_call(ld::ReadBinaryFiles(Path("in"), {.max_files_per_block = 9}).MapBatches(CountRows));
  EXPECT_EQ(blocks.size(), 8u * 3 + 2);
  EXPECT_EQ(std::count(blocks.begin(), blocks.end(), 9), 2);
  EXPECT_EQ(std::count(blocks.begin(), blocks.end(), 3), 24);
  // Batches of 4: blocks end on whole batches (8 files, not 9) and the quarters are whole
  // batches too, so every batch but the very last (90 = 22 x 4 + 2) has 4 rows.
  std::vector<int64_t> batches =
      per_call(ld::ReadBinaryFiles(Path("in"), {.max_files_per_block = 9})
                   .MapBatches(CountRows, {.batch_size = 4}));
  EXPECT_EQ(std::count(batches.begin(), batches.end(), 4), 22);
  EXPECT_EQ(std::count(batches.begin(), batches.end(), 2), 1);
  EXPECT_EQ(batches.size(), 23u);
  // Blocks cut by bytes (2 one-byte files) are extended to a whole batch of 3 files: 30
  // batches of 3, where blocks of 2 files would make 45 of 2.
  batches = per_call(ld::ReadBinaryFiles(Path("in"), {.target_block_bytes = 2})
                         .MapBatches(CountRows, {.batch_size = 3}));
  EXPECT_EQ(std::count(batches.begin(), batches.end(), 3), 30);
  EXPECT_EQ(batches.size(), 30u);
}

// On a terminal each operator gets a live bar with its blocks done of the known total (and
// the files it lists), what it consumed and what it produced; the bars end full exactly when
// the job ends. Stats() carries the same rows in and out.
TEST_F(DataTest, ProgressBarsCountWhatWasConsumedAndEndFull) {
  int64_t file_bytes = 0;
  for (int i = 0; i < 30; ++i) {
    std::string content(static_cast<size_t>(200 + i), 'x');
    file_bytes += static_cast<int64_t>(content.size());
    WriteFile("in/f" + std::to_string(i) + ".bin", content);
  }
  auto ds = ld::ReadBinaryFiles(Path("in"), {.max_files_per_block = 8})
                .MapBatches(UpperBytes, {.batch_size = 4});
  ld::WriteResult r;
  std::string screen = StderrOnTerminal(
      [&] { r = ds.WriteFiles(Path("out"), {.path_column = "path", .data_column = "bytes"}); });
  ASSERT_EQ(r.files_written, 30);
  ASSERT_NE(screen.find(", done"), std::string::npos) << screen;
  std::string final_bars = screen.substr(screen.rfind("ReadBinaryFiles"));
  // Blocks of 8, 8, 8 and 6 files, each split in whole batches of 4 (a read's first and last
  // blocks are: RampBlocks): 8 blocks.
  EXPECT_NE(final_bars.find("[====================] 8/8 blocks (30 files, "), std::string::npos)
      << screen;
  EXPECT_NE(final_bars.find("in 30 rows"), std::string::npos) << screen;
  EXPECT_NE(final_bars.find("out 8 rows"), std::string::npos) << screen;  // a summary per block
  EXPECT_NE(final_bars.find(", done"), std::string::npos) << screen;
  const ld::DatasetStats stats = ds.Stats();
  const ld::OperatorStats& write = stats.operators.back();
  EXPECT_EQ(write.rows_in, 30);
  EXPECT_GE(write.bytes_in, file_bytes);
  EXPECT_EQ(write.rows_out, 8);
  EXPECT_NE(stats.ToString().find("in 30 rows"), std::string::npos) << stats.ToString();
}

// A block worked on in batches shows its progress batch by batch: the rows of the batches
// done count as consumed before the block is over (WaitForBatchProgress waits to see it in the
// progress the driver writes, here to a log every 50 ms).
TEST_F(DataTest, ProgressCountsRowsBatchByBatchWithinABlock) {
  const std::string log = Path("progress.log");
  std::string lines;
  for (int i = 0; i < 40; ++i) lines += std::to_string(i) + "\t" + log + "\n";
  WriteFile("in/rows.txt", lines);
  auto ds = ld::ReadText(Path("in"))
                .MapBatches(WaitForBatchProgress, {.batch_size = 10})
                .WithOptions({.progress = true, .progress_interval_ms = 50});
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ::dup2(fd, STDERR_FILENO);
  std::vector<ld::Row> rows;
  try {
    rows = ds.TakeAll();
  } catch (...) {
    ::dup2(saved, STDERR_FILENO);
    throw;
  }
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fd);
  ASSERT_EQ(rows.size(), 40u);
  for (const auto& r : rows) EXPECT_EQ(r.GetInt64("seen"), 1) << ReadFile(log);
  EXPECT_EQ(ds.Stats().operators.back().rows_in, 40) << ds.Stats();
  EXPECT_NE(ReadFile(log).find(" in 40 rows"), std::string::npos) << ReadFile(log);
}

TEST_F(DataTest, TextCsvJsonSourcesAndSinks) {
  WriteFile("t/a.txt", "one\ntwo\r\nthree");
  EXPECT_EQ(ld::ReadText(Path("t")).WithOptions(Quiet()).Count(), 3);
  WriteFile("c/1.csv", "name,age,score\nann,31,1.5\n\"bob, jr\",42,2\n");
  WriteFile("c/2.csv", "name,age,score\ncy,7,3.25\n");
  auto csv =
      ld::ReadCsv(Path("c")).WithOptions({.progress = false, .preserve_order = true}).TakeAll();
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_EQ(csv[1].GetString("name"), "bob, jr");
  EXPECT_EQ(csv[1].GetInt64("age"), 42);
  EXPECT_DOUBLE_EQ(csv[2].GetDouble("score"), 3.25);
  auto projected = ld::ReadCsv(Path("c")).SelectColumns({"age"}).WithOptions(Quiet()).TakeAll();
  EXPECT_EQ(projected[0].size(), 1u);
  WriteFile("j/x.jsonl", "{\"a\": 1, \"b\": \"x\"}\n\n{\"a\": 2.5, \"b\": \"y\", \"c\": true}\n");
  auto json =
      ld::ReadJson(Path("j")).WithOptions({.progress = false, .preserve_order = true}).TakeAll();
  ASSERT_EQ(json.size(), 2u);
  EXPECT_DOUBLE_EQ(json[1].GetDouble("a"), 2.5);
  EXPECT_TRUE(json[1].GetBool("c"));
  // Sinks: JSON lines and CSV, split by rows_per_file across blocks, deterministic names.
  auto r = ld::Range(25, {.num_blocks = 2})
               .WithOptions(Quiet())
               .WriteJson(Path("oj"), {.rows_per_file = 10});
  EXPECT_EQ(r.files_written, 3);  // blocks of 12 and 13 rows -> files of 10, 10 and 5
  EXPECT_TRUE(fs::exists(Path("oj/part-000000-0000.jsonl")));
  EXPECT_EQ(ld::ReadJson(Path("oj")).WithOptions(Quiet()).Count(), 25);
  ld::Range(25).WithOptions(Quiet()).WriteCsv(Path("oc"));
  EXPECT_EQ(ld::ReadCsv(Path("oc")).WithOptions(Quiet()).Count(), 25);
}

// Reference engines write fewer files than asked for (517 of 1,000) because they cut each block
// on its own: here files hold exactly rows_per_file rows, across many uneven blocks, in order.
TEST_F(DataTest, RowsPerFileMakesExactlyTheCeilingOfRowsOverNFiles) {
  auto uneven = ld::Range(1000, {.num_blocks = 37}).Filter(ld::Col("id") % 7 != 3);  // 857 rows
  auto quiet = uneven.WithOptions(Quiet());
  auto r = quiet.WriteJson(Path("j"), {.rows_per_file = 100});
  EXPECT_EQ(r.files_written, 9) << quiet.Stats();  // ⌈857 ÷ 100⌉
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(Path("j"))) {
    if (!lumen::testing::IsWriteRecord(e.path().filename().string())) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 9u);
  int64_t expect = 0;  // every id but those = 3 mod 7, in order across the files
  for (size_t f = 0; f < files.size(); ++f) {
    std::ifstream in(files[f]);
    std::string line;
    int64_t lines = 0;
    while (std::getline(in, line)) {
      if (expect % 7 == 3) ++expect;
      EXPECT_EQ(line, "{\"id\":" + std::to_string(expect) + "}") << files[f];
      ++expect;
      ++lines;
    }
    EXPECT_EQ(lines, f + 1 < files.size() ? 100 : 57) << files[f];
  }
  // CSV alike, and a file per row.
  auto csv = ld::Range(10, {.num_blocks = 4})
                 .WithOptions(Quiet())
                 .WriteCsv(Path("c"), {.rows_per_file = 1});
  EXPECT_EQ(csv.files_written, 10);
  EXPECT_THROW(ld::Range(3).WriteCsv(Path("bad"), {.rows_per_file = -1}), ld::DataError);
}

TEST_F(DataTest, BadInputNamesTheFileAndLine) {
  WriteFile("bad/ok.csv", "a,b\n1,2\n");
  WriteFile("bad/broken.csv", "a,b\n1,2\n3\n4,5\n");
  try {
    ld::ReadCsv(Path("bad")).WithOptions(Quiet()).Count();
    FAIL();
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("broken.csv line 3"), std::string::npos) << what;
    EXPECT_NE(what.find("ReadCsv"), std::string::npos) << what;
  }
  WriteFile("badj/x.jsonl", "{\"a\": 1}\n{oops\n");
  try {
    ld::ReadJson(Path("badj")).WithOptions(Quiet()).Count();
    FAIL();
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("x.jsonl line 2"), std::string::npos) << e.what();
  }
  try {
    ld::ReadBinaryFiles(Path("does-not-exist")).WithOptions(Quiet()).Count();
    FAIL();
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist"), std::string::npos) << e.what();
  }
}

TEST_F(DataTest, UdfErrorsFailTheJobOrAreSkipped) {
  auto ds = ld::Range(20, {.num_blocks = 20}).MapBatches(FailOn7);
  try {
    ds.WithOptions(Quiet()).Count();
    FAIL();
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("bad record 7"), std::string::npos) << what;
    EXPECT_NE(what.find("MapBatches(FailOn7)"), std::string::npos) << what;
  }
  auto skipping = ds.WithOptions({.progress = false, .max_errored_blocks = 1});
  EXPECT_EQ(skipping.Count(), 19);
  auto stats = skipping.Stats();
  bool listed = false;
  for (const auto& o : stats.operators) listed |= !o.errored_blocks.empty();
  EXPECT_TRUE(listed) << stats.ToString();
}

TEST_F(DataTest, CallableClassRunsInAnActorPoolConstructedOncePerActor) {
  std::string tag = Path("scaler");
  auto rows =
      ld::Range(400, {.num_blocks = 20})
          .MapBatches<Scaler>({.batch_size = 7, .concurrency = 2, .num_cpus = 0.5}, int64_t{3}, tag)
          .WithOptions(Quiet())
          .TakeAll();
  EXPECT_EQ(Sorted(Ids(rows)), Iota(400, 3));
  std::set<int64_t> pids;
  for (const auto& r : rows) pids.insert(r.GetInt64("pid"));
  EXPECT_EQ(pids.size(), 2u);  // both actors used
  int constructions = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().filename().string().rfind("scaler.", 0) == 0) {
      EXPECT_EQ(ReadFile(e.path().string()), "x");  // once per actor process
      ++constructions;
    }
  }
  EXPECT_EQ(constructions, 2);
}

TEST_F(DataTest, IterBatchesStreamsBeforeTheEnd) {
  // The block holding id 99 is produced only after the consumer, holding its first batch,
  // makes the `go` file: the first batch must arrive while that block is still unproduced.
  const std::string go = Path("go");
  std::vector<ld::Row> items;
  for (int64_t i = 0; i < 100; ++i) items.push_back(ld::Row{{"id", i}, {"go", go}});
  auto ds = ld::FromItems(items, {.num_blocks = 10}).MapBatches(WaitForGo).WithOptions(Quiet());
  auto it = ds.IterBatches();
  auto first = it.Next();
  ASSERT_TRUE(first.has_value());
  auto first_ids = first->Int64("id");
  EXPECT_EQ(std::find(first_ids.begin(), first_ids.end(), 99), first_ids.end());
  std::ofstream(go) << "go";
  std::vector<int64_t> ids(first_ids.begin(), first_ids.end());
  int64_t released = 0;
  for (int64_t r : first->Int64("released")) released += r;
  for (const auto& b : it) {
    for (int64_t v : b.Int64("id")) ids.push_back(v);
    for (int64_t r : b.Int64("released")) released += r;
  }
  EXPECT_EQ(Sorted(ids), Iota(100));
  EXPECT_EQ(released, 100);  // the last block saw `go`: it did not run before the first batch
}

TEST_F(DataTest, MemoryBudgetBoundsWhatIsHeld) {
  const int64_t budget = 2 << 20;
  auto ds = ld::Range(2000000, {.num_blocks = 40})  // 16 MB of ids in 400 KB blocks
                .MapBatches(Double)
                .WithOptions({.memory_budget_bytes = budget, .progress = false});
  int64_t rows = 0;
  for (const auto& b : ds.IterBatches()) rows += b.NumRows();
  EXPECT_EQ(rows, 2000000);
  auto stats = ds.Stats();
  EXPECT_LE(stats.peak_memory_bytes, budget + (1 << 20)) << stats.ToString();
}

// Before any read task has ended, its output size is estimated from the files (10 KB each)
// while each makes 4 MB: the first reads run in one wave (the cluster's CPUs), not all 40 at
// once, so what the object store holds stays near the budget. Checked in the store itself.
TEST_F(DataTest, AnUnderestimatedExpansionStillKeepsTheStoreNearTheBudget) {
  for (int i = 0; i < 40; ++i)
    WriteFile("small/" + std::to_string(100 + i) + ".bin", std::string(10000, 'a'));
  const int64_t budget = 8 << 20;
  auto ds = ld::ReadBinaryFiles(Path("small"), {.max_files_per_block = 1})
                .MapBatches(Inflate)
                .WithOptions({.memory_budget_bytes = budget, .progress = false});
  const auto [most, rows] = lumen::testing::IterateSamplingTheStore(ds);
  EXPECT_EQ(rows, 40);
  const int64_t cpus = lumen::testing::ClusterCpus();
  // The budget, one block more that a task may make beyond it, and the first wave.
  EXPECT_LE(most, budget + (4 << 20) + cpus * (4 << 20) + (1 << 20)) << ds.Stats();
}

// A read's first blocks are split small; the bigger ones after them are estimated by their
// input bytes, not by the small ones' average (which launched 4 x the budget at once).
TEST_F(DataTest, BlocksOfDifferentSizesStayWithinTheBudget) {
  for (int i = 0; i < 480; ++i)
    WriteFile("files/" + std::to_string(1000 + i) + ".bin", std::string(20000, 'a'));
  // 24 blocks of 400 KB; the first and last four in quarters of 100 KB.
  const int64_t budget = 1 << 20;
  auto ds = ld::ReadBinaryFiles(Path("files"), {.max_files_per_block = 20})
                .WithOptions({.memory_budget_bytes = budget, .progress = false});
  const auto [most, rows] = lumen::testing::IterateSamplingTheStore(ds);
  EXPECT_EQ(rows, 480);
  const int64_t cpus = lumen::testing::ClusterCpus();
  // The budget, a block more that a task may make beyond it, the first wave of small ones.
  EXPECT_LE(most, budget + 450000 + cpus * 110000) << ds.Stats();
}

TEST_F(DataTest, MaterializeKeepsBlocks) {
  const std::string log = Path("calls.log");
  std::vector<ld::Row> items;
  for (int64_t i = 0; i < 100; ++i) items.push_back(ld::Row{{"id", i}, {"log", log}});
  auto m = ld::FromItems(items, {.num_blocks = 4}).MapBatches(LogCall).WithOptions(Quiet());
  auto kept = m.Materialize();
  EXPECT_EQ(CountLines(log), 4);  // one call per block
  EXPECT_EQ(kept.Count(), 100);
  EXPECT_EQ(Sorted(Ids(kept.TakeAll())), Iota(100));
  EXPECT_EQ(kept.Map(AddOne).Count(), 100);
  EXPECT_EQ(CountLines(log), 4);  // consumers start from the kept blocks: no re-run
}

TEST_F(DataTest, UnregisteredFunctionsAreRejectedAtPlanTime) {
  ld::BatchFn unregistered = [](const ld::Batch& b) { return b; };
  EXPECT_THROW(ld::Range(10).MapBatches(unregistered), lumen::FunctionNotFoundError);
}

}  // namespace

namespace {
TEST_F(DataTest, PlansThatCanNeverRunFailWithTheReason) {
  // Two one-CPU actors on a two-CPU cluster leave nothing for the write tasks.
  try {
    ld::Range(100)
        .MapBatches<Scaler>({.concurrency = 2, .num_cpus = 1}, int64_t{1}, Path("s"))
        .WithOptions(Quiet())
        .WriteJson(Path("out"));
    FAIL();
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("MapBatches(Scaler)"), std::string::npos) << what;
    EXPECT_NE(what.find("could never run"), std::string::npos) << what;
  }
  // The advice can be followed: reads and writes that reserve no CPU run beside the pool.
  auto r = ld::Range(100, {.num_cpus = 0})
               .MapBatches<Scaler>({.concurrency = 2, .num_cpus = 1}, int64_t{1}, Path("s"))
               .WithOptions(Quiet())
               .WriteJson(Path("out"), {.num_cpus = 0});
  EXPECT_GE(r.files_written, 1);
  EXPECT_EQ(ld::ReadJson(Path("out")).WithOptions(Quiet()).Count(), 100);
}
}  // namespace

namespace {
TEST_F(DataTest, AWorkerKilledMidPipelineIsRetriedAndTheOutputIsExact) {
  std::string marker = Path("killed");
  std::vector<ld::Row> items;
  for (int64_t i = 0; i < 100; ++i) items.push_back(ld::Row{{"id", i}, {"marker", marker}});
  auto r = ld::FromItems(items, {.num_blocks = 10})
               .MapBatches(KillOnce)
               .WithOptions(Quiet())
               .WriteJson(Path("out"));
  EXPECT_TRUE(fs::exists(marker));  // the kill happened
  EXPECT_EQ(r.files_written, 10);
  EXPECT_EQ(OutputFiles(Path("out")), 10);
  EXPECT_EQ(ld::ReadJson(Path("out")).WithOptions(Quiet()).Count(), 100);
}

TEST_F(DataTest, GlobsSelectFiles) {
  WriteFile("g/a.csv", "x\n1\n");
  WriteFile("g/b.csv", "x\n2\n");
  WriteFile("g/c.txt", "not csv\n");
  EXPECT_EQ(ld::ReadCsv(Path("g") + "/*.csv").WithOptions(Quiet()).Count(), 2);
  EXPECT_THROW(ld::ReadCsv(Path("g") + "/*.parquet").WithOptions(Quiet()).Count(), ld::DataError);
}
}  // namespace

// ---- actor pools survive their actors' deaths ----------------------------------------------

namespace {

// Runs `body` (which may throw) while `side` runs on another thread; joins both.
template <class Body, class Side>
void WithSideThread(Body&& body, Side&& side) {
  std::thread t(std::forward<Side>(side));
  try {
    body();
  } catch (...) {
    t.join();
    throw;
  }
  t.join();
}

std::vector<int64_t> CsvIds(const std::string& dir) {
  return Sorted(Ids(ld::ReadCsv(dir).WithOptions(Quiet()).TakeAll()));
}

int CountPrefixed(const fs::path& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    n += e.path().filename().string().rfind(prefix, 0) == 0;
  }
  return n;
}

TEST_F(DataTest, APoolActorKilledMidRunIsRestartedAndTheOutputIsExact) {
  ld::WriteResult r;
  pid_t victim = 0;
  auto ds =
      ld::Range(20000, {.num_blocks = 200})
          .MapBatches<GatedModel>({.concurrency = 2, .num_cpus = 0}, dir_.string(), int64_t{1000});
  std::string screen = StderrOnTerminal([&] {
    WithSideThread([&] { r = ds.WriteCsv(Path("out")); },
                   [&] { victim = KillOnePoolActor(dir_, /*blocks=*/3); });
  });
  ASSERT_NE(victim, 0) << "no pool actor finished 3 blocks";
  EXPECT_EQ(r.files_written, 200);
  EXPECT_EQ(CsvIds(Path("out")), Iota(20000));  // every row exactly once
  const ld::DatasetStats stats = ds.Stats();
  const std::optional<ld::OperatorStats> pool = FindOperator(stats, "MapBatches(GatedModel)");
  ASSERT_TRUE(pool.has_value()) << stats.ToString();
  EXPECT_EQ(pool->actor_restarts, 1) << stats.ToString();
  EXPECT_GE(pool->blocks_retried, 1) << stats.ToString();  // it died holding a block
  EXPECT_EQ(pool->rows_out, 20000) << stats.ToString();
  EXPECT_NE(stats.ToString().find("1 actor restart,"), std::string::npos) << stats.ToString();
  ASSERT_NE(screen.rfind("MapBatches(GatedModel)"), std::string::npos) << screen;
  std::string final_bar = screen.substr(screen.rfind("MapBatches(GatedModel)"));
  final_bar = final_bar.substr(0, final_bar.find('\n'));
  EXPECT_NE(final_bar.find("200/200 blocks (1 actor restart, "), std::string::npos) << screen;
  // Once the read is done its rate stays what it was (it does not decay while others work).
  std::set<std::string> done_rates;
  for (size_t at = screen.find("Range(20000)"); at != std::string::npos;
       at = screen.find("Range(20000)", at + 1)) {
    std::string line = screen.substr(at, screen.find('\n', at) - at);
    if (line.find("200/200 blocks") == std::string::npos) continue;
    size_t end = line.find(" rows/s");
    size_t start = line.rfind(", ", end);
    done_rates.insert(line.substr(start + 2, end - start - 2));
  }
  EXPECT_EQ(done_rates.size(), 1u) << screen;
}

TEST_F(DataTest, APoolActorWhoseRestartsAreUsedUpIsReplacedByAFreshOne) {
  // One actor and no restarts: without a replacement nothing could run the other blocks.
  ld::WriteResult r;
  pid_t victim = 0;
  auto ds = ld::Range(4000, {.num_blocks = 40})
                .MapBatches<GatedModel>({.concurrency = 1, .num_cpus = 0, .max_actor_restarts = 0},
                                        dir_.string(), int64_t{1000})
                .WithOptions(Quiet());
  WithSideThread([&] { r = ds.WriteCsv(Path("out")); },
                 [&] { victim = KillOnePoolActor(dir_, /*blocks=*/3); });
  ASSERT_NE(victim, 0) << "the pool actor did not finish 3 blocks";
  EXPECT_EQ(r.files_written, 40);
  EXPECT_EQ(CsvIds(Path("out")), Iota(4000));
  EXPECT_EQ(CountPrefixed(dir_, "ctor."), 2);  // the first actor and its replacement
  const std::optional<ld::OperatorStats> pool = FindOperator(ds.Stats(), "MapBatches(GatedModel)");
  ASSERT_TRUE(pool.has_value());
  EXPECT_EQ(pool->actor_restarts, 1);
}

// `.concurrency = {1, 3}` starts one actor and adds more while blocks wait for one: every call
// waits for a second actor, so the job ends only if the pool grew (with a fixed pool of one, each
// call times out and `met` is 0).
TEST_F(DataTest, AnAutoscalingPoolAddsActorsWhileBlocksWait) {
  fs::create_directories(Path("rv"));
  ld::Dataset ds =
      ld::Range(120, {.num_blocks = 12})
          .MapBatches<Rendezvous>({.concurrency = {1, 3}, .num_cpus = 0.5}, Path("rv"), int64_t{2})
          .WithOptions(Quiet());
  const RendezvousRows out = RunRendezvous(ds);
  EXPECT_EQ(out.rows, 120);
  EXPECT_EQ(out.unmet, 0);
  EXPECT_GE(out.pids.size(), 2u);
  int64_t added = 0;
  for (const auto& op : ds.Stats().operators) added += op.actors_added;
  EXPECT_GE(added, 1) << ds.Stats();
  EXPECT_LE(out.pids.size(), 3u);  // never above the maximum
  // The plan says what the pool may do; an autoscale written as Autoscale reads the same.
  EXPECT_NE(ld::Range(1)
                .MapBatches<Rendezvous>({.concurrency = ld::Autoscale{.min = 1, .max = 8}},
                                        Path("rv"), int64_t{1})
                .Explain()
                .find("actor pool of 1 to 8"),
            std::string::npos);
}

// Two materialized blocks of 10 rows into a pool of two Rendezvous actors (each call waits
// for both actors to be in a call) under a memory budget of 1 byte, which the blocks themselves
// spend: what the calls returned. `dir` is the rendezvous folder, made here.
RendezvousRows RendezvousWithTheBudgetSpent(const std::string& dir, bool locality_aware) {
  fs::create_directories(dir);
  ld::ExecutionOptions spent = Quiet();
  spent.memory_budget_bytes = 1;
  ld::MapBatchesOptions options{.concurrency = 2, .num_cpus = 0.5};
  options.locality_aware = locality_aware;
  return RunRendezvous(ld::Range(20, {.num_blocks = 2})
                           .Materialize()
                           .MapBatches<Rendezvous>(options, dir, int64_t{2})
                           .WithOptions(spent));
}

// An idle actor takes a waiting block even when the memory budget is spent: with one actor at
// a time the first call times out and its rows are not `met`.
TEST_F(DataTest, AnIdleActorTakesAWaitingBlockWhenTheBudgetIsSpent) {
  const RendezvousRows out = RendezvousWithTheBudgetSpent(Path("rv"), true);
  EXPECT_EQ(out.rows, 20);
  EXPECT_EQ(out.unmet, 0);
  EXPECT_EQ(out.pids.size(), 2u);
}

// The same with routing at random (locality_aware = false): the draw is among the idle actors,
// so the launch the budget allowed for an idle actor is not queued behind the busy one (which
// would happen in three of four runs drawing among all actors with room). Three runs, each with
// its own rendezvous.
TEST_F(DataTest, RandomRoutingGivesAWaitingBlockToTheIdleActorWhenTheBudgetIsSpent) {
  for (int run = 0; run < 3; ++run) {
    const RendezvousRows out =
        RendezvousWithTheBudgetSpent(Path("rv" + std::to_string(run)), false);
    EXPECT_EQ(out.rows, 20) << "run " << run;
    EXPECT_EQ(out.unmet, 0) << "run " << run;
    EXPECT_EQ(out.pids.size(), 2u) << "run " << run;
  }
}

// An actor left idle for autoscale_idle_s is retired (its process ends) while the pool is above
// its minimum: the last block waits for that, so without retirement its rows are not `ok`.
TEST_F(DataTest, AnAutoscalingPoolRetiresAnIdleActorDownToItsMinimum) {
  fs::create_directories(Path("rt"));
  ld::MapBatchesOptions options{.concurrency = {1, 2}, .num_cpus = 0.5};
  options.autoscale_idle_s = 0.5;
  ld::Dataset ds =
      ld::Range(120, {.num_blocks = 12}).MapBatches<Retiree>(options, Path("rt"), int64_t{110});
  int64_t rows = 0;
  const std::string screen = StderrOnTerminal([&] {
    for (const ld::Batch& b : ds.IterBatches()) {
      for (int64_t ok : b.Int64("ok")) EXPECT_EQ(ok, 1);
      rows += b.NumRows();
    }
  });
  EXPECT_EQ(rows, 120);
  // While the last block waits, its line shows the pool's actors by state and its range: one
  // busy and one idle before the idle one is retired (at least half a second of redraws).
  EXPECT_NE(screen.find("actors: 1 ready, 1 busy of 2 (1 to 2)"), std::string::npos) << screen;
  const std::optional<ld::OperatorStats> pool = FindOperator(ds.Stats(), "MapBatches(Retiree)");
  ASSERT_TRUE(pool.has_value());
  EXPECT_GE(pool->actors_added, 1);
  EXPECT_GE(pool->actors_retired, 1);
  EXPECT_NE(ds.Stats().ToString().find(" retired\n"), std::string::npos) << ds.Stats();
}

// Stats() tells how long the pool's actors took to come up (their constructors sleep 0.3 s)
// and how much of the tasks' time was spent in the user's code (each call sleeps 20 ms).
TEST_F(DataTest, StatsTellActorStartUpAndTimeInUserCode) {
  ld::Dataset ds = ld::Range(100, {.num_blocks = 5})
                       .MapBatches<SlowStart>({.concurrency = 2, .num_cpus = 0}, int64_t{300})
                       .WithOptions(Quiet());
  int64_t rows = 0;
  for (const ld::Batch& b : ds.IterBatches()) rows += b.NumRows();
  EXPECT_EQ(rows, 100);
  const ld::DatasetStats stats = ds.Stats();
  const std::optional<ld::OperatorStats> pool = FindOperator(stats, "MapBatches(SlowStart)");
  ASSERT_TRUE(pool.has_value());
  EXPECT_EQ(pool->actors_started, 2);
  EXPECT_GE(pool->actor_start_s, 0.3);  // at least its constructor's sleep
  EXPECT_GE(pool->user_code_s, 5 * 0.02);
  EXPECT_LE(pool->user_code_s, pool->task_wall_s);
  const std::optional<ld::OperatorStats> read = FindOperator(stats, "Range(100)");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->user_code_s, 0);  // Lumen's own work only
  EXPECT_NE(stats.ToString().find("2 actors started, the slowest in"), std::string::npos) << stats;
  EXPECT_NE(stats.ToString().find("in user code"), std::string::npos) << stats;
}

// num_cpus is -1 (resolved per source and sink) or a count; anything else is refused by name.
TEST_F(DataTest, ANegativeNumCpusOtherThanTheDefaultIsRefused) {
  try {
    ld::Range(10, {.num_cpus = -2}).WithOptions(Quiet()).Count();
    ADD_FAILURE() << "a read with num_cpus -2 ran";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("ReadOptions::num_cpus must be -1"), std::string::npos)
        << e.what();
  }
  ld::WriteOptions write;
  write.num_cpus = -0.5;
  try {
    ld::Range(10).WithOptions(Quiet()).WriteJson(Path("neg"), write);
    ADD_FAILURE() << "a write with num_cpus -0.5 ran";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("num_cpus must be -1"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(Path("neg/_SUCCESS")));
}

TEST_F(DataTest, APoolWhoseActorsCannotBeConstructedFailsWithTheConstructorsError) {
  try {
    ld::Range(100, {.num_blocks = 4})
        .MapBatches<BrokenModel>({.concurrency = 2, .num_cpus = 0})
        .WithOptions(Quiet())
        .Count();
    FAIL() << "the job succeeded without an actor";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("MapBatches(BrokenModel)"), std::string::npos) << what;
    EXPECT_NE(what.find("model weights not found"), std::string::npos) << what;
  }
}

// ---- inputs that are not regular files -------------------------------------------------------

TEST_F(DataTest, ADanglingLinkInADirectoryFailsTheReadUnlessMissingFilesAreIgnored) {
  WriteFile("in/ok.txt", "one\ntwo\n");
  fs::create_symlink(Path("nowhere.txt"), Path("in/dangling.txt"));
  try {
    ld::ReadText(Path("in")).WithOptions(Quiet()).WriteJson(Path("out"));
    FAIL() << "read a directory with a dangling link";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(Path("in/dangling.txt")), std::string::npos) << what;
    EXPECT_NE(what.find("dangling symbolic link"), std::string::npos) << what;
    EXPECT_NE(what.find("ignore_missing_files"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(Path("out/part-000000.jsonl")));
  // Ignored on request: skipped, listed in Stats(), shown in the progress line and on stderr.
  auto ds = ld::ReadText(Path("in"), {.ignore_missing_files = true});
  int64_t n = 0;
  std::string screen = StderrOnTerminal([&] { n = ds.Count(); });
  EXPECT_EQ(n, 2);
  const std::optional<ld::OperatorStats> read = FindOperator(ds.Stats(), "ReadText");
  ASSERT_TRUE(read.has_value());
  ASSERT_EQ(read->ignored_files.size(), 1u);
  EXPECT_EQ(read->ignored_files[0].rfind(Path("in/dangling.txt") + ": ", 0), 0u)
      << read->ignored_files[0];
  EXPECT_NE(screen.find("skips 1 input that cannot be read"), std::string::npos) << screen;
  EXPECT_NE(screen.find("(1 files, 8 B, 1 skipped as missing)"), std::string::npos) << screen;
  // Nothing left to read at all is still an error.
  fs::remove(Path("in/ok.txt"));
  EXPECT_THROW(
      ld::ReadText(Path("in"), {.ignore_missing_files = true}).WithOptions(Quiet()).Count(),
      ld::DataError);
}

TEST_F(DataTest, AnEmptyDirectoryOrAPathThatMatchesNothingIsAnErrorNamingIt) {
  fs::create_directories(Path("empty"));
  auto expect_error = [](const ld::Dataset& ds, const std::string& names) {
    try {
      ds.WithOptions(Quiet()).Count();
      ADD_FAILURE() << "read " << names << " without an error";
    } catch (const ld::DataError& e) {
      EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << e.what();
    }
  };
  expect_error(ld::ReadText(Path("empty")), "directory '" + Path("empty") + "' contains no files");
  expect_error(ld::ReadCsv(Path("empty") + "/*.csv"), "no files match '" + Path("empty/*.csv"));
  expect_error(ld::ReadBinaryFiles(Path("missing")), "'" + Path("missing") + "' does not exist");
  // Ignoring missing paths does not make an empty directory a dataset.
  expect_error(ld::ReadText(Path("empty"), {.ignore_missing_files = true}), "contains no files");
  // A missing path beside one that has files is skipped only on request.
  WriteFile("in/a.txt", "x\n");
  expect_error(ld::ReadText(std::vector<std::string>{Path("in"), Path("missing")}),
               Path("missing"));
  EXPECT_EQ(ld::ReadText(std::vector<std::string>{Path("in"), Path("missing")},
                         {.ignore_missing_files = true})
                .WithOptions(Quiet())
                .Count(),
            1);
}

TEST_F(DataTest, AGlobMatchingADirectoryReadsTheDirectory) {
  WriteFile("g/a.csv", "x\n1\n");
  WriteFile("g/dir.csv/inner.csv", "x\n2\n");
  WriteFile("g/dir.csv/deeper/more.csv", "x\n3\n");
  WriteFile("g/skip.txt", "x\n4\n");
  auto rows = ld::ReadCsv(Path("g") + "/*.csv").WithOptions(Quiet()).TakeAll();
  EXPECT_EQ(Sorted(Ids(rows, "x")), (std::vector<int64_t>{1, 2, 3}));
  std::set<std::string> paths;
  for (const auto& r : ld::ReadBinaryFiles(Path("g") + "/*.csv").WithOptions(Quiet()).TakeAll())
    paths.insert(r.GetString("path"));
  EXPECT_EQ(paths,
            (std::set<std::string>{"a.csv", "dir.csv/deeper/more.csv", "dir.csv/inner.csv"}));
}

TEST_F(DataTest, AFifoSocketOrDeviceIsRefusedInsteadOfBlockingTheRead) {
  const std::string fifo = Path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // Counted on another thread: if the read blocked on the FIFO, a writer that opens and closes
  // it ends the read, so that the failure is reported instead of hanging the suite.
  auto count = [&](const ld::Dataset& ds) {
    auto f = std::async(std::launch::async, [ds] { return ds.WithOptions(Quiet()).Count(); });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      ADD_FAILURE() << "the read blocked on the FIFO";
      int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    }
    return f.get();
  };
  try {
    count(ld::ReadBinaryFiles(fifo));
    ADD_FAILURE() << "read a FIFO";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("'" + fifo + "' is a FIFO, not a regular file"), std::string::npos) << what;
  }
  // Inside a directory, and whether or not missing files are ignored.
  WriteFile("in/ok.bin", "ok");
  fs::rename(fifo, Path("in/fifo"));
  try {
    count(ld::ReadBinaryFiles(Path("in"), {.ignore_missing_files = true}));
    ADD_FAILURE() << "read a directory holding a FIFO";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(Path("in/fifo") + "' is a FIFO"), std::string::npos)
        << e.what();
  }
  // A socket and a device.
  const std::string sock = Path("sock");
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof(addr.sun_path));
  std::strcpy(addr.sun_path, sock.c_str());
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  EXPECT_THROW(
      {
        try {
          count(ld::ReadText(sock));
        } catch (const ld::DataError& e) {
          EXPECT_NE(std::string(e.what()).find("is a socket"), std::string::npos) << e.what();
          throw;
        }
      },
      ld::DataError);
  ::close(s);
  EXPECT_THROW(
      {
        try {
          count(ld::ReadBinaryFiles("/dev/null"));
        } catch (const ld::DataError& e) {
          EXPECT_NE(std::string(e.what()).find("is a character device"), std::string::npos)
              << e.what();
          throw;
        }
      },
      ld::DataError);
}

}  // namespace

// A read larger than ExecutionOptions::target_max_block_bytes goes through its chain in parts,
// each passed downstream as a block of its own while the task goes on (read and map tasks are
// streaming tasks): in order, with deterministic names for what is written from them.
TEST_F(DataTest, ALargeReadIsSplitIntoBlocksPassedOnInOrder) {
  std::string csv = "id,pad\n";
  for (int i = 0; i < 20000; ++i) csv += std::to_string(i) + ",abcdefghijabcdefghijabcdefghij\n";
  WriteFile("big/one.csv", csv);  // ~0.8 MB: one read task
  const ld::ExecutionOptions split{
      .progress = false, .preserve_order = true, .target_max_block_bytes = 64 << 10};
  auto doubled = ld::ReadCsv(Path("big")).MapBatches(Double).WithOptions(split);
  std::vector<int64_t> ids;
  int blocks = 0;
  for (const auto& b : doubled.IterBatches()) {
    ++blocks;
    EXPECT_LE(b.SizeBytes(), 2 * (64 << 10));
    for (int64_t v : b.Int64("id")) ids.push_back(v);
  }
  EXPECT_GE(blocks, 8);
  EXPECT_EQ(ids, Iota(20000, 2));  // every row once, in the file's order
  auto read = FindOperator(doubled.Stats(), "ReadCsv");
  ASSERT_TRUE(read.has_value()) << doubled.Stats().ToString();
  EXPECT_EQ(read->tasks, 1);
  EXPECT_EQ(read->rows_out, 20000);

  // Written: one file per part, named after the block and its part; a re-run finds them all.
  auto first = ld::ReadCsv(Path("big")).WithOptions(split).WriteCsv(Path("out"));
  EXPECT_GE(first.files_written, 8);
  EXPECT_TRUE(fs::exists(Path("out/part-000000.csv")));
  EXPECT_TRUE(fs::exists(Path("out/part-000000_0001.csv")));
  EXPECT_EQ(CsvIds(Path("out")), Iota(20000));
  auto again = ld::ReadCsv(Path("big")).WithOptions(split).WriteCsv(Path("out"));
  EXPECT_EQ(again.files_written, 0);
  EXPECT_EQ(again.files_skipped, first.files_written);
}

// An expanding map (FlatMap) leaves its task as several blocks, and an actor pool passes the
// parts of its outputs on in order too.
TEST_F(DataTest, ExpandingMapsAndActorPoolsPassOnBlocksOfTheTargetSize) {
  const ld::ExecutionOptions split{
      .progress = false, .preserve_order = true, .target_max_block_bytes = 16 << 10};
  auto twice = ld::Range(10000, {.num_blocks = 2}).FlatMap(Twice).WithOptions(split);
  int blocks = 0;
  std::vector<int64_t> ids;
  for (const auto& b : twice.IterBatches()) {
    ++blocks;
    for (int64_t v : b.Int64("id")) ids.push_back(v);
  }
  EXPECT_GE(blocks, 8);  // 160 KB of ids from two tasks
  ASSERT_EQ(ids.size(), 20000u);
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], static_cast<int64_t>(i / 2)) << i;

  auto scaled =
      ld::Range(20000, {.num_blocks = 2})
          .MapBatches<Scaler>({.concurrency = 2, .num_cpus = 0.5}, int64_t{3}, Path("scaler"))
          .WithOptions(split)
          .TakeAll();
  auto got = Ids(scaled);
  ASSERT_EQ(got.size(), 20000u);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<int64_t>(3 * i)) << i;
}

namespace {

TEST_F(DataTest, SplitAndTrainTestSplitPartitionTheRowsInOrder) {
  auto ds = ld::Range(1003, {.num_blocks = 10}).WithOptions(Quiet());
  // Equal: 1003 / 4 = 250 rows each, in order; the 3 left over are dropped (as Ray does).
  auto equal = ds.Split(4, /*equal=*/true);
  ASSERT_EQ(equal.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    auto ids = Ids(equal[static_cast<size_t>(i)].WithOptions(Quiet()).TakeAll());
    EXPECT_EQ(Sorted(ids), Iota(250, 1, 250 * i)) << "split " << i;
  }
  // Whole blocks: every row once, in order across the splits, none empty.
  auto blocks = ds.Split(3);
  std::vector<int64_t> all;
  for (auto& part : blocks) {
    auto ids = Sorted(Ids(part.WithOptions(Quiet()).TakeAll()));
    EXPECT_FALSE(ids.empty());
    if (!all.empty() && !ids.empty()) {
      EXPECT_LT(all.back(), ids.front());
    }
    all.insert(all.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(all, Iota(1003));
  // Train / test: the last quarter is the test set; shuffled, the same rows in other places.
  auto [train, test] = ds.TrainTestSplit(0.25);
  EXPECT_EQ(Sorted(Ids(train.WithOptions(Quiet()).TakeAll())), Iota(752));
  EXPECT_EQ(Sorted(Ids(test.WithOptions(Quiet()).TakeAll())), Iota(251, 1, 752));
  auto [strain, stest] = ds.TrainTestSplit(0.25, /*shuffle=*/true, 7);
  auto s1 = Ids(strain.WithOptions(Quiet()).TakeAll());
  auto s2 = Ids(stest.WithOptions(Quiet()).TakeAll());
  EXPECT_EQ(s1.size(), 752u);
  s1.insert(s1.end(), s2.begin(), s2.end());
  EXPECT_EQ(Sorted(s1), Iota(1003));
  EXPECT_THROW(ds.Split(0), ld::DataError);
  EXPECT_THROW(ds.TrainTestSplit(1.5), ld::DataError);
}

}  // namespace
