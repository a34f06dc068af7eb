// lumen::data: blocks, transforms, sources and sinks, exchanges, actor pools, errors,
// exactly-once writes, streaming, memory budget. On an embedded cluster.
#include <pty.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
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
ld::Batch SlowMark(const ld::Batch& in) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return in;
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

LUMEN_REMOTE(Double, AddOne, IsEven, Twice, Squares, CountRows, UpperBytes, FailOn7, SlowMark,
             KillOnce);
LUMEN_DATA_CALLABLE(Scaler, int64_t, std::string);

std::vector<int64_t> Ids(const std::vector<ld::Row>& rows, const std::string& col = "id") {
  std::vector<int64_t> v;
  for (const auto& r : rows) v.push_back(r.GetInt64(col));
  return v;
}

std::vector<int64_t> Sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int64_t> Iota(int64_t n, int64_t step = 1) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(i * step);
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

TEST(Batch, MalformedBytesAreRejected) {
  EXPECT_THROW(ld::Batch::FromBuffer(lumen::Buffer::FromString("not a block")), lumen::TypeError);
  ld::Batch b = ld::BatchBuilder().AddString("s", {"abc"}).Build();
  std::string bytes(b.buffer().view());
  bytes[bytes.size() / 2] ^= 0x7f;  // may or may not hit metadata; must never crash
  try {
    ld::Batch::FromBuffer(lumen::Buffer::FromString(bytes));
  } catch (const lumen::TypeError&) {
  }
  bytes = std::string(b.buffer().view());
  bytes.resize(bytes.size() - 1);
  EXPECT_THROW(ld::Batch::FromBuffer(lumen::Buffer::FromString(bytes)), lumen::TypeError);
}

// ---- pipelines --------------------------------------------------------------------------------

class DataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen::InitOptions o;
    o.num_cpus = 2;
    o.object_store_memory = 512ll << 20;
    lumen::Init(o);
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("lumen-data-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }
  void WriteFile(const std::string& rel, const std::string& content) const {
    fs::create_directories(fs::path(Path(rel)).parent_path());
    std::ofstream(Path(rel), std::ios::binary) << content;
  }
  static std::string ReadFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  fs::path dir_;
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
  auto ds = ld::Range(100000, {.num_blocks = 50}).Map(AddOne).WithOptions(Quiet());
  auto rows = ds.Take(5);
  EXPECT_EQ(rows.size(), 5u);
  // The limit moved below the row-preserving Map: far fewer rows were transformed than exist.
  auto explain = ds.Limit(5).Explain();
  EXPECT_NE(explain.find("Limit(5)"), std::string::npos) << explain;
  auto stats = ds.Stats();
  int64_t mapped = 0;
  for (const auto& o : stats.operators) {
    if (o.name.find("Map(") != std::string::npos) mapped = std::max(mapped, o.rows_out);
  }
  EXPECT_LT(mapped, 100000);
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
  auto r = ds.MapBatches(UpperBytes, {.batch_size = 4})
               .WriteFiles(Path("out"), {.path_column = "path", .data_column = "bytes"});
  EXPECT_EQ(r.files_written, 50);
  EXPECT_EQ(r.files_skipped, 0);
  for (const auto& [rel, content] : files) {
    std::string upper = content;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(ReadFile(Path("out/" + rel)), upper) << rel;
  }
  int count = 0;
  for (const auto& e : fs::recursive_directory_iterator(Path("out"))) count += e.is_regular_file();
  EXPECT_EQ(count, 50);  // no temporary or duplicate files
  EXPECT_FALSE(fs::exists(Path("out/.lumen-staging")));
  // Re-running skips what is committed.
  auto again = ds.WriteFiles(Path("out"));
  EXPECT_EQ(again.files_written, 0);
  EXPECT_EQ(again.files_skipped, 50);
  // A partial earlier run: only the missing file is written.
  fs::remove(Path("out/class1/img1.bin"));
  auto resume = ds.WriteFiles(Path("out2"));
  EXPECT_EQ(resume.files_written, 50);
  fs::remove(Path("out2/class1/img1.bin"));
  auto resumed = ds.WriteFiles(Path("out2"));
  EXPECT_EQ(resumed.files_written, 1);
  EXPECT_EQ(resumed.files_skipped, 49);
}

// Captures what the library writes to stderr while `body` runs, with stderr a terminal (a
// pseudo-terminal read by a thread, so that a full buffer never blocks the writer).
std::string StderrOnTerminal(const std::function<void()>& body) {
  int master = -1, slave = -1;
  if (::openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) {
    ADD_FAILURE() << "openpty failed";
    return "";
  }
  std::string out;
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(master, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  });
  std::fflush(stderr);
  int saved = ::dup(STDERR_FILENO);
  ::dup2(slave, STDERR_FILENO);
  body();
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(slave);  // the reader sees EOF (EIO) once the written data is drained
  reader.join();
  ::close(master);
  return out;
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
  EXPECT_NE(final_bars.find("[====================] 4/4 blocks (30 files, "), std::string::npos)
      << screen;
  EXPECT_NE(final_bars.find("in 30 rows"), std::string::npos) << screen;
  EXPECT_NE(final_bars.find("out 4 rows"), std::string::npos) << screen;  // a summary per block
  EXPECT_NE(final_bars.find(", done"), std::string::npos) << screen;
  const ld::DatasetStats stats = ds.Stats();
  const ld::OperatorStats& write = stats.operators.back();
  EXPECT_EQ(write.rows_in, 30);
  EXPECT_GE(write.bytes_in, file_bytes);
  EXPECT_EQ(write.rows_out, 4);
  EXPECT_NE(stats.ToString().find("in 30 rows"), std::string::npos) << stats.ToString();
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
  // Sinks: JSON lines and CSV, split by rows_per_file, deterministic names.
  auto r = ld::Range(25, {.num_blocks = 2})
               .WithOptions(Quiet())
               .WriteJson(Path("oj"), {.rows_per_file = 10});
  EXPECT_EQ(r.files_written, 4);  // blocks of 12 and 13 rows -> 2 files each
  EXPECT_TRUE(fs::exists(Path("oj/part-000000-0000.jsonl")));
  EXPECT_EQ(ld::ReadJson(Path("oj")).WithOptions(Quiet()).Count(), 25);
  ld::Range(25).WithOptions(Quiet()).WriteCsv(Path("oc"));
  EXPECT_EQ(ld::ReadCsv(Path("oc")).WithOptions(Quiet()).Count(), 25);
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
  auto ds = ld::Range(100, {.num_blocks = 10})
                .MapBatches(SlowMark, {.concurrency = 1})
                .WithOptions(Quiet());
  auto it = ds.IterBatches({.batch_size = 10});
  auto first = it.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->NumRows(), 10);
  // When the first batch arrives most blocks are still unprocessed (one task at a time).
  auto stats_so_far = ds.Stats();  // no finished execution yet
  EXPECT_TRUE(stats_so_far.operators.empty());
  int64_t total = first->NumRows();
  for (const auto& b : it) total += b.NumRows();
  EXPECT_EQ(total, 100);
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

TEST_F(DataTest, MaterializeKeepsBlocks) {
  auto m = ld::Range(100).Map(AddOne).WithOptions(Quiet()).Materialize();
  EXPECT_EQ(m.Count(), 100);
  EXPECT_EQ(
      Sorted(Ids(m.TakeAll())), Iota(101).empty() ? std::vector<int64_t>{} : [] {
        std::vector<int64_t> v;
        for (int64_t i = 1; i <= 100; ++i) v.push_back(i);
        return v;
      }());
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
  int files = 0;
  for (const auto& e : fs::directory_iterator(Path("out"))) files += e.is_regular_file();
  EXPECT_EQ(files, 10);
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
