// lumen::data nulls and fidelity: columns carry validity through every block operation, readers
// make nulls of missing JSON fields, JSON nulls and empty CSV fields, writers write them back,
// aggregations skip them; JSON keeps its field order and floats are written in their shortest
// exact form. Batch tests run without a cluster; the rest on an embedded one.
#include <algorithm>
#include <cmath>
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

// ---- blocks -------------------------------------------------------------------------------

ld::Batch WithNulls() {
  return ld::BatchBuilder()
      .AddInt64("n", {10, 20, 30, 40})
      .AddString("s", {"a", "b", "c", "d"})
      .AddFloat64("x", {1.5, 2.5, 3.5, 4.5})
      .SetValidity("n", {1, 0, 1, 0})
      .SetValidity("s", {0, 1, 1, 1})
      .Build();
}

std::vector<bool> Nulls(const ld::Batch& b, const std::string& col) {
  std::vector<bool> out;
  for (int64_t i = 0; i < b.NumRows(); ++i) out.push_back(b.IsNull(col, i));
  return out;
}

TEST(BatchNulls, ValidityIsReadAndNullSlotsAreCleared) {
  ld::Batch b = WithNulls();
  EXPECT_EQ(Nulls(b, "n"), (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(Nulls(b, "s"), (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(Nulls(b, "x"), (std::vector<bool>{false, false, false, false}));
  EXPECT_EQ(b.NullCount("n"), 2);
  EXPECT_EQ(b.NullCount("s"), 1);
  EXPECT_EQ(b.NullCount("x"), 0);
  EXPECT_TRUE(b.Validity("x").empty());
  ASSERT_EQ(b.Validity("n").size(), 4u);
  EXPECT_EQ(b.Int64("n")[1], 0);     // a null slot holds 0
  EXPECT_EQ(b.String("s")[0], "");   // or an empty value
  EXPECT_EQ(b.String("s")[1], "b");  // the others are untouched
  EXPECT_THROW(b.IsNull("nope", 0), lumen::TypeError);
  EXPECT_THROW(b.IsNull("n", 4), lumen::TypeError);
  // All valid: no validity at all.
  ld::Batch none = ld::BatchBuilder().AddInt64("n", {1, 2}).SetValidity("n", {1, 1}).Build();
  EXPECT_TRUE(none.Validity("n").empty());
  EXPECT_THROW(ld::BatchBuilder().AddInt64("n", {1}).SetValidity("n", {1, 0}), lumen::TypeError);
}

TEST(BatchNulls, SliceTakeConcatAndSelectKeepValidity) {
  ld::Batch b = WithNulls();
  EXPECT_EQ(Nulls(b.Slice(1, 2), "n"), (std::vector<bool>{true, false}));
  EXPECT_EQ(Nulls(b.TakeRows({3, 0, 1}), "n"), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(Nulls(b.SelectColumns({"s"}), "s"), (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(Nulls(b.DropColumns({"x"}), "n"), (std::vector<bool>{false, true, false, true}));
  ld::Batch plain =
      ld::BatchBuilder().AddInt64("n", {1}).AddString("s", {"z"}).AddFloat64("x", {0}).Build();
  ld::Batch both = ld::Batch::Concat({plain, b});
  EXPECT_EQ(Nulls(both, "n"), (std::vector<bool>{false, false, true, false, true}));
  EXPECT_EQ(both.NullCount("s"), 1);
  // A builder started from a batch keeps its validity; a column marked afterwards is cleared.
  ld::Batch more = ld::BatchBuilder(b).SetValidity("x", {1, 1, 0, 1}).Build();
  EXPECT_EQ(more.NullCount("n"), 2);
  EXPECT_EQ(more.Float64("x")[2], 0.0);
  EXPECT_EQ(more.Float64("x")[3], 4.5);
  // Through the encoded bytes, as between processes.
  ld::Batch again = ld::Batch::FromBuffer(b.buffer());
  EXPECT_EQ(Nulls(again, "n"), Nulls(b, "n"));
}

TEST(BatchNulls, CorruptValidityIsRejected) {
  ld::Batch b = WithNulls();
  std::string bytes(reinterpret_cast<const char*>(b.buffer().data()), b.buffer().size());
  // The column table starts after the 64-byte header; entries are 128 bytes, validity_offset
  // at 64 within each.
  int64_t huge = int64_t{1} << 40;
  std::memcpy(bytes.data() + 64 + 64, &huge, sizeof(huge));
  lumen::Buffer corrupt = lumen::Buffer::Copy(bytes.data(), bytes.size());
  EXPECT_THROW(ld::Batch::FromBuffer(corrupt), lumen::TypeError);
}

// ---- on a cluster -------------------------------------------------------------------------

ld::ExecutionOptions Quiet() {
  ld::ExecutionOptions o;
  o.progress = false;
  o.preserve_order = true;
  return o;
}

class NullsTest : public lumen::testing::DataFixture {
 protected:
  // The content of every output file of `dir` (not its records), in name order.
  std::string Output(const std::string& rel) const {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(Path(rel))) {
      std::string name = e.path().filename().string();
      if (e.is_regular_file() && !name.starts_with("_") && !name.starts_with(".")) {
        files.push_back(e.path());
      }
    }
    std::sort(files.begin(), files.end());
    std::string all;
    for (const auto& f : files) {
      std::ifstream in(f);
      std::stringstream ss;
      ss << in.rdbuf();
      all += ss.str();
    }
    return all;
  }
};

TEST_F(NullsTest, JsonMissingFieldsAndNullsAreNullsAndAreWrittenAsNull) {
  WriteFile("in/a.jsonl",
            "{\"z\": 1, \"name\": \"oslo\", \"qty\": 3}\n"
            "{\"z\": 2, \"qty\": null}\n"
            "{\"z\": 3, \"name\": \"\", \"qty\": 5}\n");
  auto rows = ld::ReadJson(Path("in")).WithOptions(Quiet()).TakeAll();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].IsNull("name"));
  EXPECT_TRUE(rows[1].IsNull("name"));  // missing from the row
  EXPECT_TRUE(rows[1].IsNull("qty"));   // null in the input
  EXPECT_FALSE(rows[2].IsNull("name"));
  EXPECT_EQ(rows[2].GetString("name"), "");  // an empty string is a value, not a null
  EXPECT_THROW(rows[0].IsNull("nope"), lumen::TypeError);

  ld::ReadJson(Path("in")).WithOptions(Quiet()).WriteJson(Path("out"));
  // Field order of the input (z before name before qty), nulls as null.
  EXPECT_EQ(Output("out"),
            "{\"z\":1,\"name\":\"oslo\",\"qty\":3}\n"
            "{\"z\":2,\"name\":null,\"qty\":null}\n"
            "{\"z\":3,\"name\":\"\",\"qty\":5}\n");
}

TEST_F(NullsTest, EmptyCsvFieldsAreNullsUnlessConfiguredOtherwise) {
  WriteFile("in/a.csv", "city,qty,note\nOslo,3,x\nBergen,,\nOslo,NA,y\n");
  auto rows = ld::ReadCsv(Path("in")).WithOptions(Quiet()).TakeAll();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_TRUE(rows[1].IsNull("qty"));
  EXPECT_TRUE(rows[1].IsNull("note"));
  EXPECT_EQ(rows[2].GetString("qty"), "NA");  // not a null value by default: qty is a string
  // "NA" as null too: qty is inferred as int64 from the other values.
  auto na = ld::ReadCsv(Path("in"), {.null_values = {"", "NA"}}).WithOptions(Quiet()).TakeAll();
  EXPECT_EQ(na[0].GetInt64("qty"), 3);
  EXPECT_TRUE(na[2].IsNull("qty"));
  // No null values: empty fields stay empty strings.
  auto raw = ld::ReadCsv(Path("in"), {.null_values = {}}).WithOptions(Quiet()).TakeAll();
  EXPECT_FALSE(raw[1].IsNull("note"));
  EXPECT_EQ(raw[1].GetString("note"), "");
  // Written back: a null is an empty field again.
  ld::ReadCsv(Path("in")).WithOptions(Quiet()).WriteCsv(Path("out"));
  EXPECT_EQ(Output("out"), "city,qty,note\nOslo,3,x\nBergen,,\nOslo,NA,y\n");
}

TEST_F(NullsTest, AggregationsSkipNullsAndCountOfAColumnCountsValues) {
  WriteFile("in/a.jsonl",
            "{\"k\": \"a\", \"v\": 1}\n"
            "{\"k\": \"a\", \"v\": null}\n"
            "{\"k\": \"a\", \"v\": 5}\n"
            "{\"k\": \"b\"}\n"
            "{\"k\": \"b\", \"v\": null}\n"
            "{\"v\": 7}\n");
  auto ds = ld::ReadJson(Path("in")).WithOptions(Quiet());
  EXPECT_EQ(ds.Count(), 6);
  EXPECT_EQ(ds.Count("v"), 3);
  EXPECT_EQ(ds.Count("k"), 5);
  EXPECT_THROW(ds.Count("nope"), lumen::Error);

  std::map<std::string, ld::Row> by_key;
  auto key = [](const ld::Row& r) {
    return r.IsNull("k") ? std::string("<null>") : r.GetString("k");
  };
  for (const auto& r : ds.GroupBy("k").Sum("v").TakeAll()) by_key[key(r)] = r;
  ASSERT_EQ(by_key.size(), 3u);  // nulls form one group, as in SQL
  EXPECT_EQ(by_key["a"].GetInt64("sum(v)"), 6);
  EXPECT_TRUE(by_key["b"].IsNull("sum(v)"));  // no value: null, not 0
  EXPECT_EQ(by_key["<null>"].GetInt64("sum(v)"), 7);
  by_key.clear();
  for (const auto& r : ds.GroupBy("k").Mean("v").TakeAll()) by_key[key(r)] = r;
  EXPECT_DOUBLE_EQ(by_key["a"].GetDouble("mean(v)"), 3.0);  // (1 + 5) / 2: the null is skipped
  EXPECT_TRUE(by_key["b"].IsNull("mean(v)"));
  by_key.clear();
  for (const auto& r : ds.GroupBy("k").Min("v").TakeAll()) by_key[key(r)] = r;
  EXPECT_EQ(by_key["a"].GetInt64("min(v)"), 1);
  by_key.clear();
  for (const auto& r : ds.GroupBy("k").Count().TakeAll()) by_key[key(r)] = r;
  EXPECT_EQ(by_key["a"].GetInt64("count()"), 3);  // rows, nulls included

  // Sorting puts nulls last.
  auto sorted = ds.Sort("v").TakeAll();
  ASSERT_EQ(sorted.size(), 6u);
  EXPECT_EQ(sorted[0].GetInt64("v"), 1);
  EXPECT_EQ(sorted[2].GetInt64("v"), 7);
  EXPECT_TRUE(sorted[3].IsNull("v"));
  EXPECT_TRUE(sorted[5].IsNull("v"));
}

TEST_F(NullsTest, RowFunctionsSeeAndMakeNulls) {
  std::vector<ld::Row> items = {ld::Row{{"id", 1}, {"x", 2.5}},
                                ld::Row{{"id", 2}, {"x", ld::Value()}}, ld::Row{{"id", 3}}};
  auto rows = ld::FromItems(items).WithOptions(Quiet()).TakeAll();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].IsNull("x"));
  EXPECT_TRUE(rows[1].IsNull("x"));
  EXPECT_TRUE(rows[2].IsNull("x"));  // missing from the item
  EXPECT_EQ(ld::FromItems(items).WithOptions(Quiet()).Count("x"), 1);
}

TEST_F(NullsTest, FloatsAreWrittenInTheirShortestExactForm) {
  std::vector<ld::Row> items = {ld::Row{{"x", 667622.6}}, ld::Row{{"x", 0.1}},
                                ld::Row{{"x", 1e-300}}, ld::Row{{"x", 2.0 / 3.0}}};
  auto ds = ld::FromItems(items).WithOptions(Quiet());
  ds.WriteCsv(Path("csv"));
  EXPECT_EQ(Output("csv"), "x\n667622.6\n0.1\n1e-300\n0.6666666666666666\n");
  ds.WriteJson(Path("json"));
  EXPECT_EQ(Output("json"),
            "{\"x\":667622.6}\n{\"x\":0.1}\n{\"x\":1e-300}\n{\"x\":0.6666666666666666}\n");
  // And they read back as the same doubles.
  auto back = ld::ReadCsv(Path("csv")).WithOptions(Quiet()).TakeAll();
  ASSERT_EQ(back.size(), 4u);
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(back[i].GetDouble("x"), items[i].GetDouble("x"));
  }
  EXPECT_EQ(ld::Value(667622.6).ToString(), "667622.6");
}

}  // namespace

namespace {

TEST_F(NullsTest, SchemaColumnsAndShowDescribeTheData) {
  WriteFile("in/a.jsonl",
            "{\"city\": \"Oslo\", \"qty\": 3, \"price\": 2.5}\n"
            "{\"city\": \"a rather long name of a city that goes on and on\", \"qty\": null, "
            "\"price\": 0.1}\n");
  auto ds = ld::ReadJson(Path("in")).WithOptions(Quiet());
  const ld::Schema schema = ds.Schema();
  ASSERT_EQ(schema.Names(), (std::vector<std::string>{"city", "qty", "price"}));
  EXPECT_EQ(ds.Columns(), schema.Names());
  EXPECT_EQ(schema.Get("qty").type, ld::DataType::kInt64);
  EXPECT_TRUE(schema.Get("qty").nullable);
  EXPECT_FALSE(schema.Get("city").nullable);
  EXPECT_EQ(schema.Get("price").type, ld::DataType::kFloat64);
  EXPECT_THROW(schema.Get("nope"), lumen::TypeError);
  std::ostringstream printed;
  printed << schema;
  EXPECT_EQ(printed.str(), "city   string\nqty    int64 (nulls)\nprice  float64\n");

  std::ostringstream table;
  ds.Show(10, table);
  EXPECT_EQ(table.str(),
            "city                                      qty    price\n"
            "string                                    int64  float64\n"
            "----------------------------------------  -----  -------\n"
            "Oslo                                      3      2.5\n"
            "a rather long name of a city that goe...  null   0.1\n"
            "(2 rows)\n");

  // Tensors show their shape.
  auto tensors =
      ld::FromBatches(
          {ld::BatchBuilder().AddTensorFloat32("img", {2, 3}, std::vector<float>(12, 1)).Build()})
          .WithOptions(Quiet());
  EXPECT_EQ(tensors.Schema().Get("img").shape, (std::vector<int64_t>{2, 3}));
  std::ostringstream shown;
  tensors.Show(1, shown);
  EXPECT_NE(shown.str().find("<tensor [2, 3]>"), std::string::npos) << shown.str();
  EXPECT_NE(shown.str().find("(1 row)"), std::string::npos) << shown.str();
}

}  // namespace
