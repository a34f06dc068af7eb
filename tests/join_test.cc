// lumen::data joins: every join type against a nested-loop join in plain C++ over the same
// rows (null keys included), different key names, suffixes for clashing names, bad options.
#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <tuple>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;

namespace {

using lumen::testing::Quiet;

class JoinTest : public lumen::testing::DataFixture {};

struct L {
  std::optional<int64_t> id;
  int64_t lv;
  std::string name;
};
struct R {
  std::optional<int64_t> id;
  double rv;
  std::string name;
};

std::vector<L> Lefts() {
  std::mt19937_64 rng(1);
  std::vector<L> v;
  for (int i = 0; i < 300; ++i) {
    L l{static_cast<int64_t>(rng() % 60), i, "l" + std::to_string(i)};
    if (rng() % 15 == 0) l.id.reset();
    v.push_back(l);
  }
  return v;
}
std::vector<R> Rights() {
  std::mt19937_64 rng(2);
  std::vector<R> v;
  for (int i = 0; i < 200; ++i) {
    R r{static_cast<int64_t>(rng() % 90) + 20, i * 0.5, "r" + std::to_string(i)};
    if (rng() % 15 == 0) r.id.reset();
    v.push_back(r);
  }
  return v;
}

ld::Dataset LeftDs(const std::vector<L>& ls) {
  std::vector<ld::Row> rows;
  for (const auto& l : ls) {
    ld::Row r;
    r.Set("id", l.id ? ld::Value(*l.id) : ld::Value());
    r.Set("lv", l.lv);
    r.Set("name", l.name);
    rows.push_back(r);
  }
  return ld::FromItems(rows, {.num_blocks = 4}).WithOptions(Quiet());
}
ld::Dataset RightDs(const std::vector<R>& rs) {
  std::vector<ld::Row> rows;
  for (const auto& x : rs) {
    ld::Row r;
    r.Set("id", x.id ? ld::Value(*x.id) : ld::Value());
    r.Set("rv", x.rv);
    r.Set("name", x.name);
    rows.push_back(r);
  }
  return ld::FromItems(rows, {.num_blocks = 3}).WithOptions(Quiet());
}

// A row of the result as comparable text: id, lv, name, rv, name_right (null as "-").
using Tuple = std::tuple<std::string, std::string, std::string, std::string, std::string>;
std::string Text(const ld::Row& r, const std::string& f) {
  if (!r.Has(f) || r.IsNull(f)) return "-";
  const ld::Value& v = r.Get(f);
  return v.kind() == ld::Value::Kind::kString ? v.AsString() : v.ToString();
}
std::vector<Tuple> Got(const ld::Dataset& ds) {
  std::vector<Tuple> out;
  for (const auto& r : ds.TakeAll()) {
    out.emplace_back(Text(r, "id"), Text(r, "lv"), Text(r, "name"), Text(r, "rv"),
                     Text(r, "name_right"));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Tuple> Expected(const std::vector<L>& ls, const std::vector<R>& rs, ld::JoinType how) {
  auto s = [](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : "-"; };
  std::vector<Tuple> out;
  std::vector<bool> right_used(rs.size());
  for (const auto& l : ls) {
    bool matched = false;
    for (size_t k = 0; k < rs.size(); ++k) {
      const R& r = rs[k];
      if (!l.id || !r.id || *l.id != *r.id) continue;  // a null key matches nothing
      matched = true;
      right_used[k] = true;
      if (how == ld::JoinType::kSemi || how == ld::JoinType::kAnti) continue;
      out.emplace_back(s(l.id), std::to_string(l.lv), l.name, ld::Value(r.rv).ToString(), r.name);
    }
    if (how == ld::JoinType::kSemi && matched) {
      out.emplace_back(s(l.id), std::to_string(l.lv), l.name, "-", "-");
    }
    if ((how == ld::JoinType::kAnti && !matched) ||
        (!matched && (how == ld::JoinType::kLeftOuter || how == ld::JoinType::kFullOuter))) {
      out.emplace_back(s(l.id), std::to_string(l.lv), l.name, "-", "-");
    }
  }
  if (how == ld::JoinType::kRightOuter || how == ld::JoinType::kFullOuter) {
    for (size_t k = 0; k < rs.size(); ++k) {
      if (right_used[k]) continue;
      out.emplace_back(s(rs[k].id), "-", "-", ld::Value(rs[k].rv).ToString(), rs[k].name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(JoinTest, EveryJoinTypeMatchesANestedLoopJoin) {
  const auto ls = Lefts();
  const auto rs = Rights();
  for (auto how : {ld::JoinType::kInner, ld::JoinType::kLeftOuter, ld::JoinType::kRightOuter,
                   ld::JoinType::kFullOuter, ld::JoinType::kSemi, ld::JoinType::kAnti}) {
    SCOPED_TRACE(static_cast<int>(how));
    auto joined = LeftDs(ls).Join(RightDs(rs), {.on = {"id"}, .how = how});
    const auto want = Expected(ls, rs, how);
    EXPECT_GT(want.size(), 0u);
    EXPECT_EQ(Got(joined), want);
  }
}

TEST_F(JoinTest, ColumnsAreNamedAsDocumented) {
  auto rows = LeftDs(Lefts()).Join(RightDs(Rights()), {.on = {"id"}}).Take(1);
  ASSERT_EQ(rows.size(), 1u);
  std::vector<std::string> names;
  for (const auto& [k, v] : rows[0].fields()) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"id", "lv", "name", "rv", "name_right"}));
  // Different key names: both kept; suffixes of one's choosing.
  auto other = LeftDs(Lefts())
                   .Join(RightDs(Rights()).WithColumn("rid", ld::Col("id")).DropColumns({"id"}),
                         {.left_on = {"id"},
                          .right_on = {"rid"},
                          .left_suffix = "_l",
                          .right_suffix = "_r",
                          .num_partitions = 3})
                   .Take(1);
  ASSERT_EQ(other.size(), 1u);
  names.clear();
  for (const auto& [k, v] : other[0].fields()) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"id", "lv", "name_l", "rv", "name_r", "rid"}));
  EXPECT_EQ(other[0].GetInt64("id"), other[0].GetInt64("rid"));
  auto semi = LeftDs(Lefts()).Join(RightDs(Rights()), {.on = {"id"}, .how = ld::JoinType::kSemi});
  EXPECT_EQ(semi.Take(1)[0].size(), 3u);  // left columns only
}

TEST_F(JoinTest, BadOptionsAndMismatchedKeysAreErrors) {
  auto l = LeftDs(Lefts());
  auto r = RightDs(Rights());
  EXPECT_THROW(l.Join(r, {}), ld::DataError);
  EXPECT_THROW(l.Join(r, {.on = {"id"}, .left_on = {"id"}}), ld::DataError);
  EXPECT_THROW(l.Join(r, {.left_on = {"id"}, .right_on = {}}), ld::DataError);
  try {
    l.Join(r, {.on = {"nope"}}).Count();
    FAIL() << "joined on a column neither side has";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("no column 'nope'"), std::string::npos) << e.what();
  }
  try {
    l.Join(r.WithColumn("id", ld::Col("rv")), {.on = {"id"}}).Count();  // float64 against int64
    FAIL() << "joined int64 keys with float64 ones";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("differ in type"), std::string::npos) << e.what();
  }
}

}  // namespace
