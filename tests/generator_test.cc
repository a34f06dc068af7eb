// Streaming generators (lumen::Yield / ObjectRefStream) on an embedded cluster: values in
// order as they are made, an error at the point it happened, back-pressure, cancellation when
// the stream is dropped, large values, misuse.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "cluster_fixture.h"

namespace {

using lumen::testing::AwaitFile;
using lumen::testing::Touch;

int CountFiles(const std::string& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    n += e.path().filename().string().rfind(prefix, 0) == 0;
  }
  return n;
}

void Squares(lumen::Yield<int>& out, int n) {
  for (int i = 0; i < n; ++i) out(i * i);
}

void FailsAfterThree(lumen::Yield<std::string>& out) {
  out("a");
  out("b");
  out("c");
  throw std::runtime_error("the fourth record is corrupt");
}

// Yields n values; after each, notes how far it is ahead of what the caller took (the caller
// writes taken-K files), and the most at the end.
void Counted(lumen::Yield<int>& out, std::string dir, int n) {
  int most_ahead = 0;
  for (int i = 0; i < n; ++i) {
    out(i);
    most_ahead = std::max(most_ahead, i + 1 - CountFiles(dir, "taken-"));
  }
  Touch(dir + "/done-" + std::to_string(most_ahead));
}

// Yields forever; notes (while unwinding) that it was stopped.
void Endless(lumen::Yield<int>& out, std::string dir) {
  struct Note {
    std::string path;
    ~Note() { Touch(path); }
  } note{dir + "/stopped"};
  for (int i = 0;; ++i) out(i);
}

void Blocks(lumen::Yield<std::vector<int64_t>>& out, int n) {
  for (int i = 0; i < n; ++i) out(std::vector<int64_t>(1 << 17, i));  // 1 MiB each
}

int64_t SumBlock(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

// Its first run dies after two values (the worker process aborts); the retry makes all four.
void CrashesOnce(lumen::Yield<int>& out, std::string marker) {
  for (int i = 0; i < 4; ++i) {
    out(i * 10);
    if (i == 1 && ::access(marker.c_str(), F_OK) != 0) {
      Touch(marker);
      std::_Exit(3);
    }
  }
}

// An actor whose method streams from its state.
class Reader {
 public:
  void Lines(lumen::Yield<std::string>& out, int n) {
    for (int i = 0; i < n; ++i) out("line " + std::to_string(next_++));
  }
  int Next() const { return next_; }

 private:
  int next_ = 0;
};
LUMEN_ACTOR(Reader);

LUMEN_REMOTE(Squares, FailsAfterThree, Counted, Endless, Blocks, SumBlock, CrashesOnce,
             &Reader::Lines, &Reader::Next);

using GeneratorTest = lumen::testing::EmbeddedClusterWithDir;

TEST_F(GeneratorTest, ARangeForTakesEveryValueInOrder) {
  lumen::ObjectRefStream<int> stream = lumen::Task(Squares).Remote(5);
  std::vector<int> got;
  for (lumen::ObjectRef<int> ref : stream) got.push_back(lumen::Get(ref));
  EXPECT_EQ(got, (std::vector<int>{0, 1, 4, 9, 16}));
  EXPECT_FALSE(stream.Next().has_value());  // stays at the end
  auto empty = lumen::Task(Squares).Remote(0);
  EXPECT_FALSE(empty.Next().has_value());
}

TEST_F(GeneratorTest, AnErrorArrivesAfterTheValuesYieldedBeforeIt) {
  auto stream = lumen::Task(FailsAfterThree).Remote();
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) {
    auto ref = stream.Next();
    ASSERT_TRUE(ref.has_value());
    got.push_back(lumen::Get(*ref));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
  auto failed = stream.Next();
  ASSERT_TRUE(failed.has_value());
  try {
    lumen::Get(*failed);
    ADD_FAILURE() << "no error";
  } catch (const lumen::TaskError& e) {
    EXPECT_NE(std::string(e.what()).find("the fourth record is corrupt"), std::string::npos);
  }
  EXPECT_FALSE(stream.Next().has_value());
}

TEST_F(GeneratorTest, BackPressureKeepsTheGeneratorFewValuesAhead) {
  auto stream =
      lumen::Task(Counted).Options({.generator_backpressure_num_objects = 2}).Remote(dir_, 10);
  int k = 0;
  for (auto ref : stream) {
    EXPECT_EQ(lumen::Get(ref), k);
    Touch(dir_ + "/taken-" + std::to_string(++k));
  }
  EXPECT_EQ(k, 10);
  // At most 2 ahead, plus the one whose ack it saw before the caller's file was written.
  int most_ahead = -1;
  for (int a = 0; a <= 10; ++a) {
    if (::access((dir_ + "/done-" + std::to_string(a)).c_str(), F_OK) == 0) most_ahead = a;
  }
  EXPECT_GE(most_ahead, 0) << "the generator did not finish";
  EXPECT_LE(most_ahead, 3);  // without back-pressure: 10 (next test)
}

TEST_F(GeneratorTest, WithoutBackPressureTheGeneratorRunsAhead) {
  auto stream = lumen::Task(Counted).Remote(dir_, 10);
  ASSERT_TRUE(AwaitFile(dir_ + "/done-10"));  // finished before anything was taken
  int k = 0;
  for (auto ref : stream) EXPECT_EQ(lumen::Get(ref), k++);
  EXPECT_EQ(k, 10);
}

TEST_F(GeneratorTest, DroppingTheStreamStopsTheGenerator) {
  {
    auto stream =
        lumen::Task(Endless).Options({.generator_backpressure_num_objects = 4}).Remote(dir_);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(lumen::Get(*stream.Next()), i);
  }  // dropped mid-stream
  EXPECT_TRUE(AwaitFile(dir_ + "/stopped"));
  // The worker serves other tasks.
  int k = 0;
  for (auto ref : lumen::Task(Squares).Remote(3)) k += lumen::Get(ref) >= 0;
  EXPECT_EQ(k, 3);
}

TEST_F(GeneratorTest, LargeValuesAreObjectsThatTasksTakeAsArguments) {
  auto stream = lumen::Task(Blocks).Remote(6);
  std::vector<lumen::ObjectRef<int64_t>> sums;
  for (auto ref : stream) sums.push_back(lumen::Task(SumBlock).Remote(ref));
  ASSERT_EQ(sums.size(), 6u);
  for (size_t i = 0; i < sums.size(); ++i) {
    EXPECT_EQ(lumen::Get(sums[i]), static_cast<int64_t>(i) * (1 << 17));
  }
}

TEST_F(GeneratorTest, ARetriedGeneratorDoesNotRepeatValues) {
  std::vector<int> got;
  for (auto ref : lumen::Task(CrashesOnce).Remote(dir_ + "/crashed"))
    got.push_back(lumen::Get(ref));
  EXPECT_TRUE(::access((dir_ + "/crashed").c_str(), F_OK) == 0);  // the first run did die
  EXPECT_EQ(got, (std::vector<int>{0, 10, 20, 30}));
}

TEST_F(GeneratorTest, AnActorMethodStreamsFromItsState) {
  auto reader = lumen::Actor<Reader>().Remote();
  std::vector<std::string> got;
  for (auto ref : reader.Task(&Reader::Lines).Remote(3)) got.push_back(lumen::Get(ref));
  auto more =
      reader.Task(&Reader::Lines).Options({.generator_backpressure_num_objects = 1}).Remote(2);
  for (auto ref : more) got.push_back(lumen::Get(ref));
  EXPECT_EQ(got, (std::vector<std::string>{"line 0", "line 1", "line 2", "line 3", "line 4"}));
  EXPECT_EQ(lumen::Get(reader.Task(&Reader::Next).Remote()), 5);
}

TEST_F(GeneratorTest, YieldOutsideAStreamingTaskIsAnError) {
  lumen::Yield<int> out;
  EXPECT_THROW(out(1), lumen::Error);
  auto stream = lumen::Task(Squares).Remote(2);
  EXPECT_THROW(
      {
        auto moved = std::move(stream);
        stream.Next();
      },
      lumen::Error);  // a moved-from stream
}

}  // namespace
