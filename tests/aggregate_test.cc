// lumen::data aggregation: multi-key GroupBy with Ray Data's aggregations and names, global
// aggregates, MapGroups — checked against plain C++ loops over the same rows, nulls included;
// partial aggregates combined within each block before the exchange.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include <gtest/gtest.h>
#include "data/aggregate.h"
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;

namespace {

// The row with the highest `v` of each group (ties: the first), as a MapGroups function.
ld::Batch TopOfGroup(const ld::Batch& group) {
  auto v = group.Int64("v");
  int64_t best = 0;
  for (int64_t i = 1; i < group.NumRows(); ++i) {
    if (v[static_cast<size_t>(i)] > v[static_cast<size_t>(best)]) best = i;
  }
  return group.Slice(best, 1);
}
// Fails on the group of key 5.
ld::Batch FailOnFive(const ld::Batch& group) {
  if (group.Int64("k")[0] == 5) throw std::runtime_error("group 5 is bad");
  return group.Slice(0, 1);
}
LUMEN_REMOTE(TopOfGroup, FailOnFive);

using lumen::testing::Quiet;

class AggregateTest : public lumen::testing::DataFixture {};

struct Item {
  std::string a;
  int64_t b;
  std::optional<int64_t> x;
  double y;
  std::optional<std::string> u;
};

// `spread(i)`: how many values key b of row i draws from (few: blocks combine into partial
// aggregates; many: nearly every key is unique and blocks cross the exchange as rows).
std::vector<Item> MakeItems(
    int n, uint64_t seed, const std::function<uint64_t(int)>& spread = [](int) { return 4; }) {
  std::mt19937_64 rng(seed);
  std::vector<Item> items;
  for (int i = 0; i < n; ++i) {
    Item it;
    it.a = std::string(1, static_cast<char>('p' + rng() % 3));
    it.b = static_cast<int64_t>(rng() % spread(i));
    if (rng() % 5 != 0) it.x = static_cast<int64_t>(rng() % 100) - 30;
    it.y = static_cast<double>(rng() % 1000) / 7.0;
    if (rng() % 4 != 0) it.u = "u" + std::to_string(rng() % 6);
    items.push_back(it);
  }
  return items;
}

std::vector<ld::Row> Rows(const std::vector<Item>& items) {
  std::vector<ld::Row> rows;
  for (const auto& it : items) {
    ld::Row r{{"a", it.a}, {"b", it.b}, {"y", it.y}};
    r.Set("x", it.x ? ld::Value(*it.x) : ld::Value());
    r.Set("u", it.u ? ld::Value(*it.u) : ld::Value());
    rows.push_back(r);
  }
  return rows;
}

void ExpectPlainLoopResults(const std::vector<Item>& items) {
  struct Want {
    int64_t count = 0, sum_x = 0, n_x = 0;
    std::optional<int64_t> min_x, max_x;
    double sum_y = 0;
    std::vector<double> ys;
    std::set<std::string> us;
  };
  std::map<std::pair<std::string, int64_t>, Want> want;
  for (const auto& it : items) {
    Want& w = want[{it.a, it.b}];
    ++w.count;
    if (it.x) {
      w.sum_x += *it.x;
      ++w.n_x;
      w.min_x = w.min_x ? std::min(*w.min_x, *it.x) : *it.x;
      w.max_x = w.max_x ? std::max(*w.max_x, *it.x) : *it.x;
    }
    w.sum_y += it.y;
    w.ys.push_back(it.y);
    if (it.u) w.us.insert(*it.u);
  }
  auto ds = ld::FromItems(Rows(items), {.num_blocks = 7})
                .GroupBy({"a", "b"})
                .Aggregate({ld::Sum("x"), ld::Mean("y"), ld::Count(), ld::Min("x"), ld::Max("x"),
                            ld::Std("y"), ld::CountDistinct("u"), ld::Count("x"),
                            ld::Sum("y").As("total_y")})
                .WithOptions(Quiet());
  const auto rows = ds.TakeAll();
  ASSERT_EQ(rows.size(), want.size());
  std::vector<std::string> names;
  for (const auto& [k, v] : rows[0].fields()) names.push_back(k);
  EXPECT_EQ(names,
            (std::vector<std::string>{"a", "b", "sum(x)", "mean(y)", "count()", "min(x)", "max(x)",
                                      "std(y)", "count_distinct(u)", "count(x)", "total_y"}));
  std::pair<std::string, int64_t> previous{"", -1};
  for (const auto& r : rows) {
    std::pair<std::string, int64_t> key{r.GetString("a"), r.GetInt64("b")};
    EXPECT_LT(previous, key);  // sorted by the keys
    previous = key;
    const Want& w = want.at(key);
    EXPECT_EQ(r.GetInt64("count()"), w.count);
    EXPECT_EQ(r.GetInt64("count(x)"), w.n_x);
    if (w.n_x > 0) {
      EXPECT_EQ(r.GetInt64("sum(x)"), w.sum_x);
      EXPECT_EQ(r.GetInt64("min(x)"), *w.min_x);
      EXPECT_EQ(r.GetInt64("max(x)"), *w.max_x);
    } else {
      EXPECT_TRUE(r.IsNull("sum(x)"));
      EXPECT_TRUE(r.IsNull("min(x)"));
    }
    const double mean = w.sum_y / static_cast<double>(w.count);
    EXPECT_NEAR(r.GetDouble("mean(y)"), mean, 1e-9 * std::abs(mean) + 1e-12);
    EXPECT_NEAR(r.GetDouble("total_y"), w.sum_y, 1e-9 * std::abs(w.sum_y));
    double m2 = 0;
    for (double y : w.ys) m2 += (y - mean) * (y - mean);
    if (w.count > 1) {
      const double sd = std::sqrt(m2 / static_cast<double>(w.count - 1));
      EXPECT_NEAR(r.GetDouble("std(y)"), sd, 1e-9 * sd + 1e-12);
    } else {
      EXPECT_TRUE(r.IsNull("std(y)"));
    }
    EXPECT_EQ(r.GetInt64("count_distinct(u)"), static_cast<int64_t>(w.us.size()));
  }
}

TEST_F(AggregateTest, MultiKeyAggregationsMatchAPlainLoop) {
  ExpectPlainLoopResults(MakeItems(3000, 11));
}

TEST_F(AggregateTest, NearlyUniqueKeysCrossAsRowsAndStillMatchAPlainLoop) {
  // The first blocks' keys are nearly all distinct (sent as rows), the last ones' few (sent
  // as partial aggregates): reducers combine both kinds.
  ExpectPlainLoopResults(MakeItems(3000, 12, [](int i) { return i < 1800 ? 1000000 : 3; }));
}

TEST_F(AggregateTest, MinAndMaxOfStringsAreInByteOrderAndSkipNulls) {
  const auto items = MakeItems(2000, 13);
  std::map<std::string, std::pair<std::optional<std::string>, std::optional<std::string>>> want;
  for (const auto& it : items) {
    auto& [lo, hi] = want[it.a];
    if (!it.u) continue;
    if (!lo || *it.u < *lo) lo = *it.u;
    if (!hi || *it.u > *hi) hi = *it.u;
  }
  auto rows = ld::FromItems(Rows(items), {.num_blocks = 5})
                  .GroupBy("a")
                  .Aggregate({ld::Min("u"), ld::Max("u"), ld::Max("a").As("self")})
                  .WithOptions(Quiet())
                  .TakeAll();
  ASSERT_EQ(rows.size(), want.size());
  for (const auto& r : rows) {
    const auto& [lo, hi] = want.at(r.GetString("a"));
    ASSERT_TRUE(lo.has_value());
    EXPECT_EQ(r.GetString("min(u)"), *lo);
    EXPECT_EQ(r.GetString("max(u)"), *hi);
    EXPECT_EQ(r.GetString("self"), r.GetString("a"));
  }
  // A group whose values are all null: null, as SQL.
  auto nulls = ld::FromItems({ld::Row{{"k", 1}, {"s", ld::Value()}}, ld::Row{{"k", 2}, {"s", "x"}}})
                   .GroupBy("k")
                   .Max("s")
                   .WithOptions(Quiet())
                   .TakeAll();
  ASSERT_EQ(nulls.size(), 2u);
  EXPECT_TRUE(nulls[0].IsNull("max(s)"));
  EXPECT_EQ(nulls[1].GetString("max(s)"), "x");
}

TEST_F(AggregateTest, GlobalAggregatesGiveOneRowEvenWhenEmpty) {
  const auto items = MakeItems(500, 3);
  int64_t sum = 0, n = 0;
  for (const auto& it : items) {
    if (it.x) {
      sum += *it.x;
      ++n;
    }
  }
  auto rows = ld::FromItems(Rows(items), {.num_blocks = 5})
                  .Aggregate({ld::Count(), ld::Sum("x"), ld::Count("x")})
                  .WithOptions(Quiet())
                  .TakeAll();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].GetInt64("count()"), 500);
  EXPECT_EQ(rows[0].GetInt64("sum(x)"), sum);
  EXPECT_EQ(rows[0].GetInt64("count(x)"), n);

  auto empty = ld::Range(100)
                   .Filter(ld::Col("id") > 1000)
                   .Aggregate({ld::Count(), ld::Sum("id"), ld::Max("id")})
                   .WithOptions(Quiet())
                   .TakeAll();
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0].GetInt64("count()"), 0);
  EXPECT_TRUE(empty[0].IsNull("sum(id)"));
  EXPECT_TRUE(empty[0].IsNull("max(id)"));
}

TEST_F(AggregateTest, MistakesAreReportedWithTheAggregationsName) {
  auto ds = ld::FromItems(Rows(MakeItems(50, 5))).WithOptions(Quiet());
  try {
    ds.GroupBy("a").Aggregate({ld::Sum("x"), ld::Sum("x")});
    FAIL() << "two outputs named sum(x)";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(".As("), std::string::npos) << e.what();
  }
  try {
    ds.GroupBy("a").Aggregate({ld::Mean("u")}).Count();
    FAIL() << "a mean of strings";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("mean(u): the column holds string"), std::string::npos)
        << e.what();
  }
  try {
    ds.GroupBy({"a", "nope"}).Aggregate({ld::Count()}).Count();
    FAIL() << "grouped by a missing column";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("no column 'nope'"), std::string::npos) << e.what();
  }
  try {
    ds.GroupBy("a").Aggregate({ld::Sum("nope")}).Count();
    FAIL() << "a missing column";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("sum(nope): no column 'nope'"), std::string::npos)
        << e.what();
  }
}

TEST_F(AggregateTest, MapGroupsRunsAFunctionOverEachGroup) {
  std::vector<ld::Row> rows;
  std::map<int64_t, int64_t> best;
  std::mt19937_64 rng(9);
  for (int i = 0; i < 400; ++i) {
    int64_t k = static_cast<int64_t>(rng() % 13), v = static_cast<int64_t>(rng() % 1000);
    rows.push_back(ld::Row{{"k", k}, {"v", v}});
    best[k] = std::max(best.count(k) ? best[k] : v, v);
  }
  auto out = ld::FromItems(rows, {.num_blocks = 4})
                 .GroupBy("k")
                 .MapGroups(TopOfGroup)
                 .WithOptions(Quiet())
                 .TakeAll();
  ASSERT_EQ(out.size(), best.size());
  for (const auto& r : out) EXPECT_EQ(r.GetInt64("v"), best.at(r.GetInt64("k")));
}

TEST_F(AggregateTest, AFailedPartitionDoesNotHoldBackThePartitionsAfterIt) {
  std::vector<ld::Row> rows;
  for (int64_t i = 0; i < 400; ++i) rows.push_back(ld::Row{{"k", i % 20}, {"v", i}});
  ld::ExecutionOptions o = Quiet();
  o.max_errored_blocks = 1;
  auto ds =
      ld::FromItems(rows, {.num_blocks = 8}).GroupBy("k").MapGroups(FailOnFive).WithOptions(o);
  auto out = ds.TakeAll();
  std::set<int64_t> keys;
  for (const auto& r : out) keys.insert(r.GetInt64("k"));
  EXPECT_FALSE(keys.count(5));
  EXPECT_TRUE(keys.count(19)) << "the last partition was held back";  // after the failed one
  EXPECT_GE(keys.size(), 10u);
  size_t errored = 0;
  for (const auto& op : ds.Stats().operators) errored += op.errored_blocks.size();
  EXPECT_EQ(errored, 1u);
}

TEST(PartialAggregate, BlocksOfNearlyUniqueKeysCrossAsTheirRows) {
  const std::vector<ld::AggregateFn> aggs = {ld::Sum("v"), ld::Count()};
  ld::Batch unique = ld::BatchBuilder()
                         .AddInt64("k", {1, 2, 3, 4, 5, 6, 7, 1})
                         .AddFloat64("v", {1, 2, 3, 4, 5, 6, 7, 8})
                         .AddString("unused", {"a", "b", "c", "d", "e", "f", "g", "h"})
                         .Build();
  ld::Batch sent = ld::internal::CombineForExchange({"k"}, aggs, unique);
  EXPECT_FALSE(ld::internal::HoldsPartials(aggs, sent));
  EXPECT_EQ(sent.NumRows(), 8);
  EXPECT_EQ(sent.ColumnNames(), (std::vector<std::string>{"k", "v"}));  // projected
  ld::Batch repeated = ld::BatchBuilder()
                           .AddInt64("k", {1, 2, 1, 2, 1, 2, 1, 2})
                           .AddFloat64("v", {1, 2, 3, 4, 5, 6, 7, 8})
                           .Build();
  ld::Batch combined = ld::internal::CombineForExchange({"k"}, aggs, repeated);
  EXPECT_TRUE(ld::internal::HoldsPartials(aggs, combined));
  EXPECT_EQ(combined.NumRows(), 2);
  // A missing column fails at the map either way, naming the aggregation.
  EXPECT_THROW(ld::internal::CombineForExchange({"k"}, {ld::Sum("nope")}, unique), ld::DataError);
}

TEST(PartialAggregate, OneRowPerGroupCrossesTheExchange) {
  ld::Batch block = ld::BatchBuilder()
                        .AddInt64("k", {1, 2, 1, 1, 2, 3})
                        .AddFloat64("v", {1, 2, 3, 4, 5, 6})
                        .Build();
  ld::Batch partial = ld::internal::PartialAggregate({"k"}, {ld::Sum("v"), ld::Count()}, block);
  EXPECT_EQ(partial.NumRows(), 3);
  // Two partials of the same keys combine into the same totals as one pass.
  ld::Batch both = ld::Batch::Concat({partial, partial});
  ld::Batch final = ld::internal::FinalAggregate({"k"}, {ld::Sum("v"), ld::Count()}, both);
  ASSERT_EQ(final.NumRows(), 3);
  EXPECT_EQ(final.Int64("k")[0], 1);
  EXPECT_EQ(final.Float64("sum(v)")[0], 16.0);
  EXPECT_EQ(final.Int64("count()")[2], 2);
}

}  // namespace
