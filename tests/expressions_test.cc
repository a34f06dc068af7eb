// lumen::data expressions: computed columns and filters, their types and null rules, errors
// that name the expression, Explain, and Filter pushdown into CSV / JSON reads. Results are
// checked against plain C++ loops over the same input.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
namespace fs = std::filesystem;

namespace {

// ---- on a batch, without a cluster ----------------------------------------------------------

ld::Batch Sales() {
  return ld::BatchBuilder()
      .AddString("city", {"Oslo", "Bergen", "Oslo", "Tromso", "Oslo"})
      .AddInt64("qty", {4, 7, 2, 0, 9})
      .AddFloat64("price", {2.5, 1.0, 10.0, 3.0, 0.5})
      .AddString("note", {"ok: fine", "", "late", "ok", ""})
      .SetValidity("note", {1, 0, 1, 1, 0})
      .SetValidity("qty", {1, 1, 1, 1, 1})
      .Build();
}

TEST(Expressions, ArithmeticMakesTypedColumns) {
  ld::Batch b = Sales();
  ld::Batch out = ld::internal::WithColumnOf(b, "total", ld::Col("qty") * ld::Col("price") + 1.0);
  ASSERT_EQ(out.ColumnType("total"), ld::DataType::kFloat64);
  auto qty = b.Int64("qty");
  auto price = b.Float64("price");
  for (size_t i = 0; i < qty.size(); ++i) {
    EXPECT_DOUBLE_EQ(out.Float64("total")[i], static_cast<double>(qty[i]) * price[i] + 1.0);
  }
  // int64 stays int64 for + - * %; / is float64.
  ld::Batch ints =
      ld::internal::WithColumnOf(b, "x", (ld::Col("qty") + 1) * 2 - ld::Col("qty") % 3);
  ASSERT_EQ(ints.ColumnType("x"), ld::DataType::kInt64);
  for (size_t i = 0; i < qty.size(); ++i) {
    EXPECT_EQ(ints.Int64("x")[i], (qty[i] + 1) * 2 - qty[i] % 3);
  }
  ld::Batch div = ld::internal::WithColumnOf(b, "x", ld::Col("qty") / 2);
  ASSERT_EQ(div.ColumnType("x"), ld::DataType::kFloat64);
  EXPECT_DOUBLE_EQ(div.Float64("x")[1], 3.5);
  // x % 0 is null; strings join with +; a literal fills the column.
  ld::Batch mod = ld::internal::WithColumnOf(b, "x", ld::Col("qty") % ld::Col("qty"));
  EXPECT_TRUE(mod.IsNull("x", 3));
  EXPECT_EQ(mod.Int64("x")[0], 0);
  ld::Batch joined = ld::internal::WithColumnOf(b, "x", ld::Col("city") + "!");
  EXPECT_EQ(joined.String("x")[1], "Bergen!");
  ld::Batch lit = ld::internal::WithColumnOf(b, "x", ld::Lit(7));
  EXPECT_EQ(lit.Int64("x")[4], 7);
  // A column of that name is replaced.
  ld::Batch replaced = ld::internal::WithColumnOf(b, "qty", -ld::Col("qty"));
  EXPECT_EQ(replaced.NumColumns(), b.NumColumns());
  EXPECT_EQ(replaced.Int64("qty")[4], -9);
}

TEST(Expressions, ComparisonsAndLogicSelectRows) {
  ld::Batch b = Sales();
  auto rows = [&](const ld::Expr& e) { return ld::internal::RowsWhere(b, e); };
  EXPECT_EQ(rows(ld::Col("city") == "Oslo" && ld::Col("qty") > 3), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(rows(ld::Col("city") != "Oslo" || ld::Col("price") >= 10),
            (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(rows(!(ld::Col("qty") < 5)), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(rows(ld::Col("qty") <= ld::Col("price")),
            (std::vector<int64_t>{2, 3}));                                     // int vs float
  EXPECT_EQ(rows(ld::Col("city") < "P"), (std::vector<int64_t>{0, 1, 2, 4}));  // text order
  EXPECT_EQ(rows(ld::Col("city").StartsWith("O")), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(rows(ld::Col("city").EndsWith("so")), (std::vector<int64_t>{3}));
  EXPECT_EQ(rows(ld::Col("city").Contains("erg")), (std::vector<int64_t>{1}));
  EXPECT_EQ(rows(ld::Lit(true)), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(Expressions, NullsFollowSql) {
  ld::Batch b = Sales();  // note is null in rows 1 and 4
  auto rows = [&](const ld::Expr& e) { return ld::internal::RowsWhere(b, e); };
  EXPECT_EQ(rows(ld::Col("note").IsNull()), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(rows(ld::Col("note").IsNotNull()), (std::vector<int64_t>{0, 2, 3}));
  // A comparison with a null is null: the row is not kept, by either the condition or its
  // negation.
  EXPECT_EQ(rows(ld::Col("note") == ""), (std::vector<int64_t>{}));
  EXPECT_EQ(rows(!(ld::Col("note") == "")), (std::vector<int64_t>{0, 2, 3}));
  // Three-valued logic: null || true is true, null && false is false.
  EXPECT_EQ(rows(ld::Col("note").StartsWith("ok") || ld::Col("qty") > 8),
            (std::vector<int64_t>{0, 3, 4}));
  ld::Batch and_false =
      ld::internal::WithColumnOf(b, "x", ld::Col("note").StartsWith("ok") && ld::Col("qty") > 100);
  EXPECT_FALSE(and_false.IsNull("x", 1));  // null && false
  EXPECT_EQ(and_false.Bool("x")[1], 0);
  ld::Batch and_true =
      ld::internal::WithColumnOf(b, "x", ld::Col("note").StartsWith("ok") && ld::Col("qty") > 0);
  EXPECT_TRUE(and_true.IsNull("x", 1));  // null && true
  // Arithmetic with a null is null.
  ld::Batch sum = ld::internal::WithColumnOf(b, "x", ld::Col("qty") + ld::Lit(ld::Value()));
  EXPECT_EQ(sum.NullCount("x"), 5);
}

TEST(Expressions, CastsConvertOrFailNamingTheValue) {
  ld::Batch b = ld::BatchBuilder()
                    .AddString("s", {"12", "-3"})
                    .AddFloat64("f", {2.9, -2.9})
                    .AddBool("ok", {1, 0})
                    .Build();
  ld::Batch i = ld::internal::WithColumnOf(b, "x", ld::Col("s").Cast(ld::DataType::kInt64) + 1);
  EXPECT_EQ(i.Int64("x")[0], 13);
  ld::Batch t = ld::internal::WithColumnOf(b, "x", ld::Col("f").Cast(ld::DataType::kInt64));
  EXPECT_EQ(t.Int64("x")[1], -2);  // toward zero
  ld::Batch s = ld::internal::WithColumnOf(b, "x", ld::Col("f").Cast(ld::DataType::kString));
  EXPECT_EQ(s.String("x")[0], "2.9");
  ld::Batch o = ld::internal::WithColumnOf(b, "x", ld::Col("ok").Cast(ld::DataType::kInt64));
  EXPECT_EQ(o.Int64("x")[0], 1);
  ld::Batch bad = ld::BatchBuilder().AddString("s", {"12", "twelve"}).Build();
  try {
    ld::internal::WithColumnOf(bad, "x", ld::Col("s").Cast(ld::DataType::kInt64));
    FAIL() << "converted \"twelve\"";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("\"twelve\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(ld::Col("s").Cast(ld::DataType::kTensorFloat32), lumen::TypeError);
}

TEST(Expressions, MistakesFailNamingTheExpression) {
  ld::Batch b = Sales();
  try {
    ld::internal::RowsWhere(b, ld::Col("city") > 3);
    FAIL();
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("cannot compare string with int64"), std::string::npos) << what;
    EXPECT_NE(what.find("(col(city) > 3)"), std::string::npos) << what;
  }
  try {
    ld::internal::RowsWhere(b, ld::Col("qty") + 1);
    FAIL();
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("needs a condition"), std::string::npos) << e.what();
  }
  try {
    ld::internal::RowsWhere(b, ld::Col("qyt") > 1);
    FAIL();
  } catch (const ld::DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("qyt"), std::string::npos) << what;
    EXPECT_NE(what.find("qty"), std::string::npos) << what;  // the columns that exist
  }
  EXPECT_EQ((ld::Col("a") * 2 + ld::Col("b").Cast(ld::DataType::kFloat64)).ToString(),
            "((col(a) * 2) + col(b).Cast(float64))");
}

// ---- on a cluster ------------------------------------------------------------------------

using lumen::testing::Quiet;

class ExpressionsTest : public lumen::testing::DataFixture {};

struct Sale {
  std::string city;
  int64_t qty;
  double price;
};

TEST_F(ExpressionsTest, FilterAndWithColumnOverCsvMatchAPlainLoopAndArePushedIntoTheRead) {
  const std::vector<std::string> cities = {"Oslo", "Bergen", "Tromso", "Bodo"};
  std::vector<Sale> sales;
  std::mt19937_64 rng(7);
  fs::create_directories(Path("in"));
  for (int f = 0; f < 4; ++f) {
    std::ofstream out(Path("in/part" + std::to_string(f) + ".csv"));
    out << "city,qty,price,comment\n";
    for (int i = 0; i < 500; ++i) {
      Sale s{cities[rng() % cities.size()], static_cast<int64_t>(rng() % 10),
             static_cast<double>(rng() % 1000) / 8.0};
      sales.push_back(s);
      out << s.city << "," << s.qty << "," << s.price << ",row " << i << "\n";
    }
  }
  // Expected, by hand.
  std::map<std::string, double> want;
  int64_t want_rows = 0;
  for (const auto& s : sales) {
    if (s.city == "Oslo" && s.qty > 3) {
      want[s.city + "/" + std::to_string(s.qty)] += s.qty * s.price + 1.0;
      ++want_rows;
    }
  }
  auto ds = ld::ReadCsv(Path("in"))
                .Filter(ld::Col("city") == "Oslo" && ld::Col("qty") > 3)
                .WithColumn("total", ld::Col("qty") * ld::Col("price") + ld::Lit(1.0))
                .SelectColumns({"city", "qty", "total"})
                .WithOptions(Quiet());
  std::map<std::string, double> got;
  int64_t got_rows = 0;
  for (const auto& r : ds.TakeAll()) {
    got[r.GetString("city") + "/" + std::to_string(r.GetInt64("qty"))] += r.GetDouble("total");
    ++got_rows;
    EXPECT_EQ(r.size(), 3u);  // the selection: no comment, no price
  }
  EXPECT_EQ(got_rows, want_rows);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, v] : want) EXPECT_NEAR(got[k], v, 1e-9 * std::abs(v)) << k;

  // The plan: the filter runs in the read; reading a projection with the filter's columns.
  std::string explain = ds.Explain();
  EXPECT_NE(explain.find("Filter(((col(city) == \"Oslo\") && (col(qty) > 3)))"), std::string::npos)
      << explain;
  EXPECT_NE(explain.find("[pushed into the read: columns city,qty,price; ((col(city) == "),
            std::string::npos)
      << explain;  // not `comment`: never parsed
  EXPECT_NE(explain.find("WithColumn(total = ((col(qty) * col(price)) + 1))"), std::string::npos)
      << explain;
  // Count matches the filtered rows; the operators' stats show the read produced only them.
  auto counted = ld::ReadCsv(Path("in"))
                     .Filter(ld::Col("city") == "Oslo" && ld::Col("qty") > 3)
                     .WithOptions(Quiet());
  EXPECT_EQ(counted.Count(), want_rows);
  int64_t read_out = 0;
  for (const auto& op : counted.Stats().operators) read_out += op.rows_out;
  EXPECT_EQ(read_out, want_rows);
}

TEST_F(ExpressionsTest, FilterOverJsonKeepsNullRulesAndAnErrorNamesTheExpression) {
  {
    std::ofstream out(Path("a.jsonl"));
    out << "{\"k\": 1, \"v\": 5}\n{\"k\": 2}\n{\"k\": 3, \"v\": 1}\n";
  }
  auto kept = ld::ReadJson(Path("a.jsonl")).Filter(ld::Col("v") > 2).WithOptions(Quiet()).TakeAll();
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].GetInt64("k"), 1);
  auto nulls =
      ld::ReadJson(Path("a.jsonl")).Filter(ld::Col("v").IsNull()).WithOptions(Quiet()).TakeAll();
  ASSERT_EQ(nulls.size(), 1u);
  EXPECT_EQ(nulls[0].GetInt64("k"), 2);
  try {
    ld::ReadJson(Path("a.jsonl")).Filter(ld::Col("v") == "x").WithOptions(Quiet()).Count();
    FAIL();
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("(col(v) == \"x\")"), std::string::npos) << e.what();
  }
  // After a non-read operator the expression runs as a step of its own (not pushed down).
  auto later = ld::Range(100)
                   .WithColumn("sq", ld::Col("id") * ld::Col("id"))
                   .Filter(ld::Col("sq") % 7 == 1)
                   .WithOptions(Quiet());
  int64_t want = 0;
  for (int64_t i = 0; i < 100; ++i) want += (i * i) % 7 == 1;
  EXPECT_EQ(later.Count(), want);
}

}  // namespace
