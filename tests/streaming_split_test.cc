// Dataset::StreamingSplit: n consumers (actors, as trainers are) read one stream at once.
#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;

namespace {

ld::Batch FailOn500(const ld::Batch& in) {
  for (int64_t v : in.Int64("id")) {
    if (v == 500) throw std::runtime_error("bad record 500");
  }
  return in;
}

// A trainer: reads its share to the end and returns the ids it saw (or the error).
class Reader {
 public:
  static Reader* Create() { return new Reader(); }
  std::vector<int64_t> Read(ld::SplitIterator it) {
    std::vector<int64_t> ids;
    for (const ld::Batch& b : it) {
      for (int64_t v : b.Int64("id")) ids.push_back(v);
    }
    return ids;
  }
  void Keep(ld::SplitIterator it) { kept_ = std::move(it); }
  std::string ReadKeptExpectingError() { return ReadExpectingError(kept_); }
  std::string ReadExpectingError(ld::SplitIterator it) {
    try {
      while (it.Next()) {
      }
    } catch (const ld::DataError& e) {
      return e.what();
    }
    return "";
  }

 private:
  ld::SplitIterator kept_;
};

}  // namespace

LUMEN_REMOTE(FailOn500, Reader::Create, &Reader::Read, &Reader::ReadExpectingError, &Reader::Keep,
             &Reader::ReadKeptExpectingError);

namespace {

using lumen::testing::Quiet;

class StreamingSplitTest : public lumen::testing::DataFixture {
 protected:
  // Each share read by its own actor, all at once.
  static std::vector<std::vector<int64_t>> ReadInActors(std::vector<ld::SplitIterator>& its) {
    std::vector<lumen::ActorHandle<Reader>> readers;
    std::vector<lumen::ObjectRef<std::vector<int64_t>>> refs;
    for (auto& it : its) {
      readers.push_back(lumen::Actor(Reader::Create).Remote());
      refs.push_back(readers.back().Task(&Reader::Read).Remote(it));
    }
    return lumen::Get(refs);
  }
};

TEST_F(StreamingSplitTest, ConcurrentConsumersGetDisjointSharesThatMakeTheWholeDataset) {
  auto ds = ld::Range(2000, {.num_blocks = 20}).WithOptions(Quiet());
  auto its = ds.StreamingSplit(3);
  ASSERT_EQ(its.size(), 3u);
  EXPECT_EQ(its[2].index(), 2);
  auto shares = ReadInActors(its);
  std::set<int64_t> seen;
  size_t total = 0;
  for (const auto& share : shares) {
    total += share.size();
    seen.insert(share.begin(), share.end());
  }
  EXPECT_EQ(total, 2000u);  // no row twice
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 1999);
}

TEST_F(StreamingSplitTest, EqualSharesHaveTheSameNumberOfRows) {
  // 1003 rows in blocks of uneven sizes, 4 shares: 250 rows each, 3 rows dropped.
  auto ds = ld::Range(1003, {.num_blocks = 7})
                .Filter(ld::Col("id") % 5 != 1 || ld::Col("id") < 800)
                .WithOptions(Quiet());
  const int64_t rows = ds.Count();
  auto its = ds.StreamingSplit(4, {.equal = true});
  auto shares = ReadInActors(its);
  std::set<int64_t> seen;
  for (const auto& share : shares) {
    EXPECT_EQ(static_cast<int64_t>(share.size()), rows / 4);
    for (int64_t v : share) EXPECT_TRUE(seen.insert(v).second) << "row " << v << " twice";
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), rows / 4 * 4);
}

TEST_F(StreamingSplitTest, SharesCanBeReadInTheDriverToo) {
  auto its = ld::Range(100, {.num_blocks = 10}).WithOptions(Quiet()).StreamingSplit(2);
  // One consumer first to its end, then the other: nothing waits on the slower one.
  int64_t n = 0;
  while (auto b = its[0].Next()) n += b->NumRows();
  while (auto b = its[1].Next()) n += b->NumRows();
  EXPECT_EQ(n, 100);
}

TEST_F(StreamingSplitTest, AFailedJobReachesEveryConsumer) {
  auto ds = ld::Range(1000, {.num_blocks = 10}).MapBatches(FailOn500).WithOptions(Quiet());
  auto its = ds.StreamingSplit(2);
  std::vector<lumen::ActorHandle<Reader>> readers;
  std::vector<lumen::ObjectRef<std::string>> errors;
  for (auto& it : its) {
    readers.push_back(lumen::Actor(Reader::Create).Remote());
    errors.push_back(readers.back().Task(&Reader::ReadExpectingError).Remote(it));
  }
  for (const auto& e : lumen::Get(errors))
    EXPECT_NE(e.find("bad record 500"), std::string::npos) << e;
}

TEST_F(StreamingSplitTest, AStreamWhoseDriverIteratorsAreGoneTellsTheConsumer) {
  auto its = ld::Range(1000, {.num_blocks = 10}).WithOptions(Quiet()).StreamingSplit(2);
  auto reader = lumen::Actor(Reader::Create).Remote();
  lumen::Get(reader.Task(&Reader::Keep).Remote(its[0]));
  its.clear();  // the last iterators in the driver: the stream stops
  const std::string error = lumen::Get(reader.Task(&Reader::ReadKeptExpectingError).Remote());
  EXPECT_NE(error.find("stream was stopped"), std::string::npos) << error;
  EXPECT_THROW(ld::SplitIterator().Next(), ld::DataError);  // not from a split
  EXPECT_THROW(ld::Range(1).StreamingSplit(0), ld::DataError);
}

}  // namespace
