// Dataset::StreamingSplit: n consumers (actors, as trainers are) read one stream at once.
#include <algorithm>
#include <future>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include "data/streaming_split.h"
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

// The coordinator's dealing, without a cluster (blocks by their node and size only).
using ld::internal::SplitCoordinator;
using ld::internal::SplitItem;

ld::internal::OfferedBlock Block(int64_t rows, const std::string& node) {
  return {lumen::ObjectRef<lumen::Buffer>(), rows, node};
}

TEST(SplitCoordinator, AConsumerGetsABlockOnItsOwnNodeFirst) {
  std::unique_ptr<SplitCoordinator> c(SplitCoordinator::Create(2, false));
  ASSERT_TRUE(c->Offer(Block(10, "a")));
  ASSERT_TRUE(c->Offer(Block(20, "b")));
  ASSERT_TRUE(c->Offer(Block(30, "a")));
  EXPECT_EQ(c->Next(1, "b").rows, 20);  // not the older block on node a
  EXPECT_EQ(c->Next(0, "a").rows, 10);
  EXPECT_EQ(c->Next(0, "c").rows, 30);  // nothing on its node: the oldest
  c->Finish();
  EXPECT_EQ(c->Next(1, "b").state, SplitItem::kEnd);
}

// Consumers waiting on nodes a and b: a block made on b goes to b's consumer, whoever asked
// first; a's consumer goes on waiting and gets the next block made on a.
TEST(SplitCoordinator, ABlockGoesToTheConsumerWaitingOnItsNode) {
  std::unique_ptr<SplitCoordinator> c(SplitCoordinator::Create(2, false));
  auto on_a = std::async(std::launch::async, [&] { return c->Next(0, "a"); });
  while (c->Waiting() < 1) std::this_thread::yield();
  auto on_b = std::async(std::launch::async, [&] { return c->Next(1, "b"); });
  while (c->Waiting() < 2) std::this_thread::yield();
  ASSERT_TRUE(c->Offer(Block(20, "b")));
  EXPECT_EQ(on_b.get().rows, 20);
  ASSERT_TRUE(c->Offer(Block(10, "a")));
  EXPECT_EQ(on_a.get().rows, 10);
  // A block of a node no consumer waits on goes to whoever waits.
  auto any = std::async(std::launch::async, [&] { return c->Next(1, "b"); });
  while (c->Waiting() < 1) std::this_thread::yield();
  ASSERT_TRUE(c->Offer(Block(5, "c")));
  EXPECT_EQ(any.get().rows, 5);
  c->Finish();
  EXPECT_EQ(c->Next(0, "a").state, SplitItem::kEnd);
}

TEST(SplitCoordinator, EqualSharesAreCutFromBlocksAndTheRemainderDropped) {
  std::unique_ptr<SplitCoordinator> c(SplitCoordinator::Create(3, true));
  ASSERT_TRUE(c->Offer(Block(7, "a")));
  // 7 rows offered: no share may have more than 7 / 3 = 2 yet.
  SplitItem first = c->Next(0, "a");
  EXPECT_EQ(first.state, SplitItem::kBlock);
  EXPECT_EQ(first.offset, 0);
  EXPECT_EQ(first.rows, 2);
  ASSERT_TRUE(c->Offer(Block(4, "a")));  // 11 rows: 3 each in the end, 2 dropped
  c->Finish();
  int64_t total[3] = {2, 0, 0};
  for (int share = 0; share < 3; ++share) {
    for (;;) {
      SplitItem item = c->Next(share, "a");
      if (item.state == SplitItem::kEnd) break;
      ASSERT_EQ(item.state, SplitItem::kBlock);
      total[share] += item.rows;
    }
  }
  EXPECT_EQ(total[0], 3);
  EXPECT_EQ(total[1], 3);
  EXPECT_EQ(total[2], 3);
}

TEST(SplitCoordinator, FailureStopAndBadSharesAnswerWithAnError) {
  std::unique_ptr<SplitCoordinator> c(SplitCoordinator::Create(2, false));
  EXPECT_EQ(c->Next(5, "a").state, SplitItem::kError);
  c->Fail("operator X failed on block 3: boom");
  SplitItem failed = c->Next(0, "a");
  EXPECT_EQ(failed.state, SplitItem::kError);
  EXPECT_EQ(failed.error, "operator X failed on block 3: boom");
  std::unique_ptr<SplitCoordinator> d(SplitCoordinator::Create(1, false));
  d->Stop();
  EXPECT_FALSE(d->Offer(Block(1, "a")));
  EXPECT_NE(d->Next(0, "a").error.find("stopped"), std::string::npos);
}

}  // namespace
