// lumen::data write modes: stale output is never kept silently, an overwrite replaces the old
// files only once the new ones are complete, appends add beside, resume goes on only with the
// same plan and inputs. On an embedded cluster.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
namespace fs = std::filesystem;

namespace {

// Fails the block holding id 7 while the file named in its `marker` column does not exist
// (and creates it): the first run of a job fails there, the next one gets through.
ld::Batch FailOnceOn7(const ld::Batch& in) {
  auto ids = in.Int64("id");
  auto markers = in.String("marker");
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string marker(markers[i]);
    if (ids[i] == 7 && !fs::exists(marker)) {
      std::ofstream(marker) << "failed once";
      throw std::runtime_error("record 7 failed (first run)");
    }
  }
  return in.DropColumns({"marker"});
}
// Fails every block holding id 7.
ld::Batch AlwaysFailOn7(const ld::Batch& in) {
  for (int64_t v : in.Int64("id")) {
    if (v == 7) throw std::runtime_error("record 7 is bad");
  }
  return in;
}
ld::Batch Tenfold(const ld::Batch& in) {
  std::vector<int64_t> out;
  for (int64_t v : in.Int64("id")) out.push_back(10 * v);
  return ld::BatchBuilder().AddInt64("id", std::move(out)).Build();
}
LUMEN_REMOTE(FailOnceOn7, AlwaysFailOn7, Tenfold);

using lumen::testing::Quiet;

using lumen::testing::IsWriteRecord;

// Output file name -> content, not counting a write's records (manifest, _SUCCESS, lock).
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    const fs::directory_entry& e = *it;
    std::string rel = fs::relative(e.path(), dir).string();
    if (IsWriteRecord(e.path().filename().string())) {
      if (e.is_directory()) it.disable_recursion_pending();  // an overwrite's staging
      continue;
    }
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    files[rel] = ss.str();
  }
  return files;
}

// Every entry of `dir` whose name starts with `prefix`.
std::vector<std::string> Named(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.starts_with(prefix)) names.push_back(name);
  }
  return names;
}

std::map<std::string, double> Totals(const std::vector<ld::Row>& rows) {
  std::map<std::string, double> t;
  for (const auto& r : rows) t[r.GetString("city")] = r.GetDouble("sum(qty)");
  return t;
}

class WriteModesTest : public lumen::testing::DataFixture {
 protected:
  // `rows` sales rows for `city` with qty 1, 2, ... as a CSV file under in/.
  void Sales(const std::string& name, const std::string& city, int rows) const {
    std::string csv = "city,qty\n";
    for (int i = 1; i <= rows; ++i) csv += city + "," + std::to_string(i) + "\n";
    WriteFile("in/" + name, csv);
  }
  ld::Dataset TotalsByCity() const {
    return ld::ReadCsv(Path("in")).GroupBy("city").Sum("qty").WithOptions(Quiet());
  }
  std::vector<ld::Row> ReadBack(const std::string& rel) const {
    return ld::ReadCsv(Path(rel)).WithOptions(Quiet()).TakeAll();
  }
};

// The report: an input file added, the same GroupBy -> WriteCsv re-run. Before, the
// re-run wrote nothing and kept the old totals without a word.
TEST_F(WriteModesTest, AReRunAfterAnInputChangedFailsSayingWhatChangedAndKeepsTheOutput) {
  Sales("a.csv", "Oslo", 100);
  Sales("b.csv", "Bergen", 50);
  auto first = TotalsByCity().WriteCsv(Path("out"));
  EXPECT_GE(first.files_written, 1);
  EXPECT_TRUE(fs::exists(Path("out/_SUCCESS")));
  const auto before = Snapshot(Path("out"));
  EXPECT_EQ(Totals(ReadBack("out")),
            (std::map<std::string, double>{{"Bergen", 1275}, {"Oslo", 5050}}));

  Sales("c.csv", "Oslo", 10);
  try {
    TotalsByCity().WriteCsv(Path("out"));
    FAIL() << "a re-run over changed inputs resumed the old output";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("1 input file added"), std::string::npos) << what;
    EXPECT_NE(what.find(Path("in/c.csv")), std::string::npos) << what;
    EXPECT_NE(what.find("WriteMode::kOverwrite"), std::string::npos) << what;
  }
  EXPECT_EQ(Snapshot(Path("out")), before);  // nothing lost, nothing mixed in

  // A changed file and a changed plan are named too.
  fs::remove(Path("in/c.csv"));
  Sales("b.csv", "Bergen", 60);
  try {
    TotalsByCity().WriteCsv(Path("out"));
    FAIL() << "a re-run over a changed input resumed the old output";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("1 input file changed (" + Path("in/b.csv")),
              std::string::npos)
        << e.what();
  }
  Sales("b.csv", "Bergen", 50);
  try {
    ld::ReadCsv(Path("in")).GroupBy("city").Max("qty").WithOptions(Quiet()).WriteCsv(Path("out"));
    FAIL() << "another plan resumed the old output";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("the plan changed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Snapshot(Path("out")), before);
}

TEST_F(WriteModesTest, OverwriteReplacesTheOldOutputOnlyOnceTheNewOneIsComplete) {
  Sales("a.csv", "Oslo", 100);
  TotalsByCity().WriteCsv(Path("out"));
  WriteFile("out/notes.txt", "an old file of the directory");
  const auto before = Snapshot(Path("out"));

  // A new output that fails half-way leaves the old one whole.
  std::vector<ld::Row> items;
  for (int64_t i = 0; i < 20; ++i) items.push_back(ld::Row{{"id", i}});
  auto failing = ld::FromItems(items, {.num_blocks = 4}).MapBatches(AlwaysFailOn7);
  EXPECT_THROW(
      failing.WithOptions(Quiet()).WriteCsv(Path("out"), {.mode = ld::WriteMode::kOverwrite}),
      ld::DataError);
  EXPECT_EQ(Snapshot(Path("out")), before);
  EXPECT_TRUE(fs::exists(Path("out/_SUCCESS")));

  // A complete one replaces it: only the new files remain.
  Sales("b.csv", "Bergen", 50);
  auto r = TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kOverwrite});
  EXPECT_GE(r.files_written, 1);
  EXPECT_FALSE(fs::exists(Path("out/notes.txt")));
  EXPECT_EQ(Totals(ReadBack("out")),
            (std::map<std::string, double>{{"Bergen", 1275}, {"Oslo", 5050}}));
  EXPECT_TRUE(fs::exists(Path("out/_SUCCESS")));
  EXPECT_TRUE(Named(Path("out"), ".lumen-overwrite-").empty());
  // The overwritten directory is resumable as the new write.
  auto again = TotalsByCity().WriteCsv(Path("out"));
  EXPECT_EQ(again.files_written, 0);
  EXPECT_EQ(again.files_skipped, r.files_written);
}

TEST_F(WriteModesTest, AnOverwriteInterruptedWhileReplacingIsFinishedByTheNextWrite) {
  Sales("a.csv", "Oslo", 100);
  TotalsByCity().WriteCsv(Path("out"));
  Sales("b.csv", "Bergen", 50);
  TotalsByCity().WriteCsv(Path("new"), {.mode = ld::WriteMode::kOverwrite});
  const auto want = Snapshot(Path("new"));
  // The state an overwrite leaves when killed after its output was complete and some old files
  // were already gone: its staging directory (complete manifest, files), the rest of the old.
  const fs::path staging = Path("out/.lumen-overwrite-0123456789abcdef");
  fs::create_directories(staging);
  for (const auto& e : fs::directory_iterator(Path("new"))) {
    if (e.path().filename() != ".lumen-write.lock")
      fs::copy(e.path(), staging / e.path().filename());
  }
  fs::remove(Path("out/_SUCCESS"));
  // The next write to the directory, whatever its mode, completes the replacement first.
  auto r = TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kIgnore});
  EXPECT_TRUE(r.ignored);
  EXPECT_EQ(Snapshot(Path("out")), want);
  EXPECT_FALSE(fs::exists(staging));
  EXPECT_TRUE(fs::exists(Path("out/_SUCCESS")));
}

TEST_F(WriteModesTest, ErrorModeWritesOnlyIntoAnEmptyDirectory) {
  Sales("a.csv", "Oslo", 10);
  auto r = TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kError});
  EXPECT_GE(r.files_written, 1);
  const auto before = Snapshot(Path("out"));
  try {
    TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kError});
    FAIL() << "kError wrote into a directory with files";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(Path("out") + " holds"), std::string::npos) << what;
    EXPECT_NE(what.find("kError"), std::string::npos) << what;
  }
  EXPECT_EQ(Snapshot(Path("out")), before);
}

TEST_F(WriteModesTest, IgnoreModeKeepsExistingOutputAndWritesAnEmptyDirectory) {
  Sales("a.csv", "Oslo", 10);
  auto r = TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kIgnore});
  EXPECT_FALSE(r.ignored);
  EXPECT_GE(r.files_written, 1);
  const auto before = Snapshot(Path("out"));
  Sales("b.csv", "Bergen", 10);
  auto again = TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kIgnore});
  EXPECT_TRUE(again.ignored);
  EXPECT_EQ(again.files_written, 0);
  EXPECT_EQ(Snapshot(Path("out")), before);
}

TEST_F(WriteModesTest, AppendAddsFilesUnderNewNamesBesideTheOldOnes) {
  std::vector<ld::Row> items;
  for (int64_t i = 0; i < 30; ++i) items.push_back(ld::Row{{"id", i}});
  auto ds = ld::FromItems(items, {.num_blocks = 3}).WithOptions(Quiet());
  auto first = ds.WriteCsv(Path("out"));
  EXPECT_EQ(first.files_written, 3);
  auto added = ds.MapBatches(Tenfold).WriteCsv(Path("out"), {.mode = ld::WriteMode::kAppend});
  EXPECT_EQ(added.files_written, 3);
  auto again = ds.WriteCsv(Path("out"), {.mode = ld::WriteMode::kAppend});
  EXPECT_EQ(again.files_written, 3);  // an append adds what it is given, even the same rows
  std::vector<int64_t> ids;
  for (const auto& r : ReadBack("out")) ids.push_back(r.GetInt64("id"));
  std::vector<int64_t> want;
  for (int64_t i = 0; i < 30; ++i) want.insert(want.end(), {i, i, 10 * i});
  std::sort(ids.begin(), ids.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(ids, want);
  EXPECT_EQ(Snapshot(Path("out")).size(), 9u);
  for (const char* name : {"part-000000.csv", "part-000001.csv", "part-000002.csv"}) {
    EXPECT_TRUE(fs::exists(Path("out") + "/" + name)) << name;  // the first write's names
  }
  EXPECT_TRUE(fs::exists(Path("out/_SUCCESS")));
  // A directory of several writes is not resumed as one of them.
  try {
    ds.WriteCsv(Path("out"));
    FAIL() << "resumed a directory holding appended writes";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("appended"), std::string::npos) << e.what();
  }
}

TEST_F(WriteModesTest, AnInterruptedWriteIsResumedWithoutRewritingWhatItCommitted) {
  for (auto mode : {ld::WriteMode::kResume, ld::WriteMode::kAppend, ld::WriteMode::kOverwrite}) {
    SCOPED_TRACE(static_cast<int>(mode));
    const std::string marker = Path("failed-" + std::to_string(static_cast<int>(mode)));
    const std::string out = Path("out-" + std::to_string(static_cast<int>(mode)));
    std::vector<ld::Row> items;
    for (int64_t i = 0; i < 40; ++i) items.push_back(ld::Row{{"id", i}, {"marker", marker}});
    auto ds = ld::FromItems(items, {.num_blocks = 4}).MapBatches(FailOnceOn7).WithOptions(Quiet());
    EXPECT_THROW(ds.WriteCsv(out, {.mode = mode}), ld::DataError);
    EXPECT_FALSE(fs::exists(out + "/_SUCCESS"));
    int committed = 0;  // by the failed run (an overwrite's in its hidden directory)
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      committed += e.path().filename().string().starts_with("part-");
    }
    EXPECT_LE(committed, 3);
    auto r = ds.WriteCsv(out, {.mode = mode});
    EXPECT_EQ(r.files_skipped, committed);  // kept, not written again
    EXPECT_EQ(r.files_written, 4 - committed);
    EXPECT_TRUE(fs::exists(out + "/_SUCCESS"));
    std::vector<int64_t> ids;
    for (const auto& row : ld::ReadCsv(out).WithOptions(Quiet()).TakeAll()) {
      ids.push_back(row.GetInt64("id"));
    }
    std::sort(ids.begin(), ids.end());
    std::vector<int64_t> want(40);
    for (int64_t i = 0; i < 40; ++i) want[static_cast<size_t>(i)] = i;
    EXPECT_EQ(ids, want);  // every row once
  }
}

TEST_F(WriteModesTest, FilesNoWriteRecordedAreNotTakenForResumableOutput) {
  WriteFile("out/report.csv", "city,sum(qty)\nOslo,1\n");
  Sales("a.csv", "Oslo", 10);
  try {
    TotalsByCity().WriteCsv(Path("out"));
    FAIL() << "resumed into a directory of unknown files";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("report.csv"), std::string::npos) << what;
    EXPECT_NE(what.find("no Lumen write recorded"), std::string::npos) << what;
  }
  auto r = TotalsByCity().WriteCsv(Path("out"), {.mode = ld::WriteMode::kAppend});
  EXPECT_GE(r.files_written, 1);
  EXPECT_TRUE(fs::exists(Path("out/report.csv")));
}

TEST_F(WriteModesTest, AnAppendNeverReplacesAFileWithOtherBytes) {
  WriteFile("in/x/a.txt", "first");
  auto files = ld::ReadBinaryFiles(Path("in")).WithOptions(Quiet());
  files.WriteFiles(Path("out"));
  WriteFile("in/x/a.txt", "second, longer");
  try {
    files.WriteFiles(Path("out"), {.mode = ld::WriteMode::kAppend});
    FAIL() << "an append replaced or dropped a file";
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(Path("out/x/a.txt")), std::string::npos) << what;
    EXPECT_NE(what.find("other content"), std::string::npos) << what;
  }
  std::ifstream f(Path("out/x/a.txt"));
  std::string have((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(have, "first");
}

TEST_F(WriteModesTest, TwoWritesToOneDirectoryAtOnceAreRefused) {
  fs::create_directories(Path("out"));
  int fd = ::open(Path("out/.lumen-write.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);  // as a running write holds it
  Sales("a.csv", "Oslo", 10);
  try {
    TotalsByCity().WriteCsv(Path("out"));
    FAIL() << "wrote beside a running write";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("another write"), std::string::npos) << e.what();
  }
  ::close(fd);
  EXPECT_GE(TotalsByCity().WriteCsv(Path("out")).files_written, 1);
}

}  // namespace
