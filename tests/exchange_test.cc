// The building blocks of lumen::data's exchanges (group-by, sort, join), checked against plain
// loops: the int64 hash map, partition assignment and ordering, and gathering a partition's
// rows from map outputs. No cluster: these run inside tasks.
#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include "data/block_format.h"
#include "data/int64_map.h"
#include "data/tasks.h"
#include "lumen/data/batch.h"

namespace {

namespace ld = lumen::data;
using ld::internal::Int64Map;

TEST(Int64Map, AgreesWithStdMapThroughGrowth) {
  Int64Map m(4);  // sized small: it must grow many times
  std::map<int64_t, int64_t> want;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    // Keys that collide under a poor hash: multiples of a power of two, negatives, extremes.
    int64_t key = static_cast<int64_t>(rng() % 50000) * 1024 - 25000 * 1024;
    if (i % 1000 == 0) key = i % 2000 == 0 ? INT64_MIN : INT64_MAX;
    bool inserted = false;
    int64_t& v = m.TryEmplace(key, i, &inserted);
    auto [it, added] = want.try_emplace(key, i);
    ASSERT_EQ(inserted, added) << key;
    ASSERT_EQ(v, it->second) << key;
    if (i % 3 == 0) {  // values are updated in place
      ++v;
      ++it->second;
    }
  }
  EXPECT_EQ(m.size(), want.size());
  for (const auto& [k, v] : want) {
    const int64_t* got = m.Find(k);
    ASSERT_NE(got, nullptr) << k;
    EXPECT_EQ(*got, v);
  }
  EXPECT_EQ(m.Find(3), nullptr);  // not a multiple of 1024: never inserted
}

TEST(WithPartitions, GroupsRowsByPartitionKeepingTheirOrder) {
  std::vector<int64_t> part = {2, 0, 1, 0, 2, 2, 0, 1};
  std::vector<int64_t> id = {0, 1, 2, 3, 4, 5, 6, 7};
  ld::Batch b = ld::BatchBuilder()
                    .AddInt64("id", id)
                    .AddString("s", {"a", "b", "c", "d", "e", "f", "g", "h"})
                    .Build();
  ld::Batch out = ld::internal::WithPartitions(b, part);
  auto p = out.Int64("__partition");
  auto ids = out.Int64("id");
  std::vector<int64_t> got_p(p.begin(), p.end()), got_ids(ids.begin(), ids.end());
  EXPECT_EQ(got_p, (std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2, 2}));
  EXPECT_EQ(got_ids, (std::vector<int64_t>{1, 3, 6, 2, 7, 0, 4, 5}));  // stable
  EXPECT_EQ(out.String("s")[0], "b");
  EXPECT_EQ(out.String("s")[7], "f");
}

// The partition of every row of a sort exchange, by running the map task.
std::vector<int64_t> SortPartitions(const ld::Batch& block, const ld::Batch& bounds,
                                    bool descending) {
  ld::internal::ExchangeSpec spec;
  spec.kind = "sort";
  spec.keys = {"k"};
  spec.partitions = static_cast<int>(bounds.NumRows()) + 1;
  spec.descending = descending;
  spec.boundaries = bounds.buffer();
  ld::Batch out = ld::Batch::FromBuffer(
      ld::internal::PartitionTask(spec, 0, 0, block.NumRows(), block.buffer()));
  // Back to the input's order: (k, partition) pairs sorted by k then partition.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < out.NumRows(); ++i) {
    pairs.push_back(
        {out.Int64("k")[static_cast<size_t>(i)], out.Int64("__partition")[static_cast<size_t>(i)]});
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<int64_t> parts;
  for (const auto& pr : pairs) parts.push_back(pr.second);
  return parts;
}

TEST(RangePartitions, AnInt64KeyLandsWhereAPlainSearchPutsIt) {
  std::vector<int64_t> keys;
  for (int64_t k = -50; k < 150; ++k) keys.push_back(k);
  std::vector<int64_t> shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(3));
  const std::vector<int64_t> bounds = {-10, 0, 0, 42, 99};  // a repeated boundary too
  ld::Batch block = ld::BatchBuilder().AddInt64("k", shuffled).Build();
  ld::Batch bound_rows = ld::BatchBuilder().AddInt64("k", bounds).Build();
  for (bool descending : {false, true}) {
    std::vector<int64_t> got = SortPartitions(block, bound_rows, descending);
    ASSERT_EQ(got.size(), keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      // Partition: how many boundaries are <= the key (reversed when descending).
      int64_t le =
          std::count_if(bounds.begin(), bounds.end(), [&](int64_t b) { return b <= keys[i]; });
      int64_t want = descending ? static_cast<int64_t>(bounds.size()) - le : le;
      EXPECT_EQ(got[i], want) << "key " << keys[i] << (descending ? " descending" : "");
    }
  }
  // The same keys with a null among them take the general path and agree on the rest.
  ld::Batch with_null = ld::BatchBuilder()
                            .AddInt64("k", shuffled)
                            .SetValidity("k", std::vector<uint8_t>(shuffled.size(), 1))
                            .Build();
  EXPECT_EQ(SortPartitions(with_null, bound_rows, false), SortPartitions(block, bound_rows, false));
}

TEST(ConcatRanges, GathersSlicesOfEveryColumnInOneCopy) {
  ld::Batch a = ld::BatchBuilder()
                    .AddInt64("__partition", {0, 0, 1, 1, 1})
                    .AddInt64("x", {1, 2, 3, 4, 5})
                    .AddString("s", {"a", "bb", "ccc", "", "eeeee"})
                    .SetValidity("x", {1, 1, 0, 1, 1})
                    .Build();
  ld::Batch b = ld::BatchBuilder()
                    .AddInt64("__partition", {1, 2})
                    .AddInt64("x", {6, 7})
                    .AddString("s", {"ff", "g"})
                    .Build();
  ld::Batch out = ld::internal::ConcatRanges({{&a, 2, 3}, {&b, 0, 1}}, {"__partition"});
  ASSERT_EQ(out.NumRows(), 4);
  EXPECT_EQ(out.ColumnNames(), (std::vector<std::string>{"x", "s"}));
  EXPECT_TRUE(out.IsNull("x", 0));  // a's row 2
  EXPECT_EQ(out.Int64("x")[1], 4);
  EXPECT_EQ(out.Int64("x")[3], 6);
  EXPECT_FALSE(out.IsNull("x", 3));  // b has no validity: its rows are valid
  EXPECT_EQ(out.NullCount("x"), 1);
  std::vector<std::string> s;
  for (size_t i = 0; i < 4; ++i) s.emplace_back(out.String("s")[i]);
  EXPECT_EQ(s, (std::vector<std::string>{"ccc", "", "eeeee", "ff"}));
  // Batches whose columns differ are refused, as by Batch::Concat.
  ld::Batch other = ld::BatchBuilder().AddInt64("y", {1}).Build();
  EXPECT_THROW(ld::internal::ConcatRanges({{&a, 0, 1}, {&other, 0, 1}}, {}), lumen::TypeError);
}

}  // namespace
