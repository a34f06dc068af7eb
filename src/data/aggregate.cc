#include "data/aggregate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <unordered_set>

#include "data/keys.h"

namespace lumen::data::internal {

namespace {

// State columns of aggregation i: "__a<i>_n" (values counted), "_s" (sum), "_m" (min / max),
// "_mean" and "_m2" (std, Chan's parallel variance), "_d" (distinct values, length-prefixed).
std::string StateName(size_t i, const char* part) { return "__a" + std::to_string(i) + "_" + part; }

bool Numeric(DataType t) { return t == DataType::kInt64 || t == DataType::kFloat64; }

[[noreturn]] void Fail(const AggregateFn& a, const std::string& why) {
  throw DataError(a.name() + ": " + why);
}

// The input column of `a` in `b`: its type, checked for what the aggregation takes.
DataType InputType(const AggregateFn& a, const Batch& b) {
  if (!b.HasColumn(a.column())) {
    std::string cols;
    for (const auto& c : b.ColumnNames()) cols += (cols.empty() ? "" : ", ") + c;
    Fail(a, "no column '" + a.column() + "' (columns: " + cols + ")");
  }
  DataType t = b.ColumnType(a.column());
  const std::string& op = a.op();
  if ((op == "sum" || op == "mean" || op == "std") && !Numeric(t)) {
    Fail(a, std::string("the column holds ") + DataTypeName(t) + ", not numbers");
  }
  if ((op == "min" || op == "max") && !Numeric(t) && t != DataType::kString) {
    Fail(a, std::string("the column holds ") + DataTypeName(t) + ", not numbers or strings");
  }
  if (op == "count_distinct" && !Numeric(t) && t != DataType::kString && t != DataType::kBool) {
    Fail(a, std::string("cannot count distinct ") + DataTypeName(t) + " values");
  }
  return t;
}

// Per-group state of one aggregation (sum, mean, min, max or std) over raw values.
struct State {
  enum class Op { kSum, kMean, kMin, kMax, kStd };
  Op op = Op::kSum;
  bool ints = false;  // si holds the values (int64 input), else sd
  std::vector<int64_t> n;
  std::vector<int64_t> si;  // sum of int64 / min or max of int64
  std::vector<double> sd;   // sum of float64 (and mean's sum) / min or max of float64
  std::vector<double> mean, m2;

  State(const std::string& name, bool int_input, size_t groups) : ints(int_input) {
    op = name == "sum"    ? Op::kSum
         : name == "mean" ? Op::kMean
         : name == "min"  ? Op::kMin
         : name == "max"  ? Op::kMax
                          : Op::kStd;
    n.assign(groups, 0);
    if (ints && op != Op::kMean && op != Op::kStd) {
      si.assign(groups, 0);
    } else {
      sd.assign(groups, 0);
    }
    if (op == Op::kStd) {
      mean.assign(groups, 0);
      m2.assign(groups, 0);
    }
  }
  // Adds a value (as int64 or double) to group g.
  void Add(size_t g, int64_t iv, double dv) {
    const int64_t before = n[g]++;
    switch (op) {
      case Op::kSum:
        if (ints) {
          si[g] = static_cast<int64_t>(static_cast<uint64_t>(si[g]) + static_cast<uint64_t>(iv));
        } else {
          sd[g] += dv;
        }
        break;
      case Op::kMean:
        sd[g] += dv;
        break;
      case Op::kMin:
      case Op::kMax: {
        const bool lower = op == Op::kMin;
        if (ints) {
          if (before == 0 || (lower ? iv < si[g] : iv > si[g])) si[g] = iv;
        } else {
          if (before == 0 || (lower ? dv < sd[g] : dv > sd[g])) sd[g] = dv;
        }
        break;
      }
      case Op::kStd: {  // Welford
        const double delta = dv - mean[g];
        mean[g] += delta / static_cast<double>(n[g]);
        m2[g] += delta * (dv - mean[g]);
        break;
      }
    }
  }
};

std::string EncodeDistinct(const std::set<std::string>& values) {
  std::string out;
  for (const auto& v : values) {
    const uint32_t len = static_cast<uint32_t>(v.size());
    out.append(reinterpret_cast<const char*>(&len), 4);
    out.append(v);
  }
  return out;
}

void DecodeDistinct(std::string_view bytes, std::set<std::string>* into) {
  size_t at = 0;
  while (at + 4 <= bytes.size()) {
    uint32_t len;
    std::memcpy(&len, bytes.data() + at, 4);
    at += 4;
    if (len > bytes.size() - at) throw DataError("corrupt partial aggregate (distinct values)");
    into->emplace(bytes.substr(at, len));
    at += len;
  }
}

// One value of column `name` at row r as bytes, for distinct counting.
std::string ValueBytes(const Batch& b, const std::string& name, DataType t, size_t r) {
  switch (t) {
    case DataType::kInt64:
      return std::string(reinterpret_cast<const char*>(&b.Int64(name)[r]), 8);
    case DataType::kFloat64: {
      double d = b.Float64(name)[r];
      if (d == 0) d = 0;  // -0.0 and 0.0 are one value
      return std::string(reinterpret_cast<const char*>(&d), 8);
    }
    case DataType::kBool:
      return std::string(1, static_cast<char>(b.Bool(name)[r]));
    default:
      return std::string(b.String(name)[r]);
  }
}

// The key columns of `rows` at `first_rows`, in that order.
Batch KeysAt(const Batch& rows, const std::vector<std::string>& keys,
             const std::vector<int64_t>& first_rows) {
  if (keys.empty()) return Batch();
  return rows.SelectColumns(keys).TakeRows(first_rows);
}

}  // namespace

void CheckAggregations(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs) {
  if (aggs.empty()) throw DataError("Aggregate: no aggregation given");
  std::set<std::string> names(keys.begin(), keys.end());
  if (names.size() != keys.size()) throw DataError("GroupBy: a key column is named twice");
  for (const auto& a : aggs) {
    if (!names.insert(a.name()).second) {
      throw DataError("Aggregate: two outputs are named '" + a.name() +
                      "' (a key, or another aggregation): rename one with .As(\"...\")");
    }
  }
}

namespace {

// PartialAggregate over groups already found: `gid` of each row, `first_rows` of each group.
Batch PartialAggregateOf(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                         const Batch& block, const std::vector<uint32_t>& gid,
                         const std::vector<int64_t>& first_rows);

}  // namespace

Batch PartialAggregate(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                       const Batch& block) {
  if (block.NumRows() == 0) return Batch();
  std::vector<int64_t> first_rows;
  const std::vector<uint32_t> gid = KeyColumns(block, keys).Groups(&first_rows);
  return PartialAggregateOf(keys, aggs, block, gid, first_rows);
}

Batch CombineForExchange(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                         const Batch& block) {
  const int64_t rows = block.NumRows();
  if (rows == 0) return Batch();
  std::vector<int64_t> first_rows;
  const std::vector<uint32_t> gid = KeyColumns(block, keys).Groups(&first_rows);
  const int64_t groups = static_cast<int64_t>(first_rows.size());
  if (keys.empty() || groups * 4 <= rows * 3) {
    return PartialAggregateOf(keys, aggs, block, gid, first_rows);
  }
  std::vector<std::string> columns = keys;
  for (const auto& a : aggs) {
    if (a.column().empty()) continue;  // count()
    InputType(a, block);               // the same errors, from the same place, as combining
    if (std::find(columns.begin(), columns.end(), a.column()) == columns.end()) {
      columns.push_back(a.column());
    }
  }
  return block.SelectColumns(columns);
}

bool HoldsPartials(const std::vector<AggregateFn>& aggs, const Batch& b) {
  // Every aggregation's states start with its count, but count_distinct's ("_d").
  return !aggs.empty() && (b.HasColumn(StateName(0, "n")) || b.HasColumn(StateName(0, "d")));
}

namespace {

Batch PartialAggregateOf(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                         const Batch& block, const std::vector<uint32_t>& gid,
                         const std::vector<int64_t>& first_rows) {
  const size_t rows = static_cast<size_t>(block.NumRows());
  const size_t groups = first_rows.size();
  BatchBuilder out;
  if (!keys.empty()) out = BatchBuilder(KeysAt(block, keys, first_rows));
  for (size_t i = 0; i < aggs.size(); ++i) {
    const AggregateFn& a = aggs[i];
    if (a.op() == "count" && a.column().empty()) {
      std::vector<int64_t> n(groups, 0);
      for (size_t r = 0; r < rows; ++r) ++n[gid[r]];
      out.AddInt64(StateName(i, "n"), std::move(n));
      continue;
    }
    const DataType t = InputType(a, block);
    std::span<const uint8_t> valid = block.Validity(a.column());
    auto is_valid = [&](size_t r) { return valid.empty() || valid[r]; };
    if (a.op() == "count") {
      std::vector<int64_t> n(groups, 0);
      for (size_t r = 0; r < rows; ++r) n[gid[r]] += is_valid(r);
      out.AddInt64(StateName(i, "n"), std::move(n));
      continue;
    }
    if (a.op() == "count_distinct") {
      std::vector<std::set<std::string>> sets(groups);
      for (size_t r = 0; r < rows; ++r) {
        if (is_valid(r)) sets[gid[r]].insert(ValueBytes(block, a.column(), t, r));
      }
      std::vector<std::string> encoded;
      for (const auto& s : sets) encoded.push_back(EncodeDistinct(s));
      out.AddBinary(StateName(i, "d"), std::move(encoded));
      continue;
    }
    if (t == DataType::kString) {  // min / max of strings (byte order)
      const bool lower = a.op() == "min";
      StringColumn values = block.String(a.column());
      std::vector<int64_t> n(groups, 0);
      std::vector<std::string_view> best(groups);
      for (size_t r = 0; r < rows; ++r) {
        if (!is_valid(r)) continue;
        const size_t g = gid[r];
        if (n[g]++ == 0 || (lower ? values[r] < best[g] : values[r] > best[g])) best[g] = values[r];
      }
      out.AddInt64(StateName(i, "n"), std::move(n));
      out.AddString(StateName(i, "m"), std::vector<std::string>(best.begin(), best.end()));
      continue;
    }
    State st(a.op(), t == DataType::kInt64, groups);
    std::span<const int64_t> iv = st.ints ? block.Int64(a.column()) : std::span<const int64_t>();
    std::span<const double> dv = st.ints ? std::span<const double>() : block.Float64(a.column());
    for (size_t r = 0; r < rows; ++r) {
      if (!is_valid(r)) continue;
      const int64_t x = st.ints ? iv[r] : 0;
      const double y = st.ints ? static_cast<double>(iv[r]) : dv[r];
      st.Add(gid[r], x, y);
    }
    out.AddInt64(StateName(i, "n"), st.n);
    if (a.op() == "std") {
      out.AddFloat64(StateName(i, "mean"), std::move(st.mean));
      out.AddFloat64(StateName(i, "m2"), std::move(st.m2));
    } else if (st.ints && a.op() != "mean") {
      out.AddInt64(StateName(i, a.op() == "sum" ? "s" : "m"), std::move(st.si));
    } else {
      out.AddFloat64(StateName(i, a.op() == "sum" || a.op() == "mean" ? "s" : "m"),
                     std::move(st.sd));
    }
  }
  return out.Build();
}

}  // namespace

Batch FinalAggregate(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                     const Batch& partials) {
  const size_t rows = static_cast<size_t>(partials.NumRows());
  std::vector<int64_t> first_rows;
  std::vector<uint32_t> gid;
  if (rows > 0) gid = KeyColumns(partials, keys).Groups(&first_rows);
  size_t groups = first_rows.size();
  const bool global = keys.empty();
  if (global) groups = 1;  // one row, even over nothing (count() 0, the rest null)
  // The order of the groups: by key.
  std::vector<int64_t> order(groups);
  for (size_t g = 0; g < groups; ++g) order[g] = static_cast<int64_t>(g);
  Batch key_rows;
  if (!global && groups > 0) {
    key_rows = KeysAt(partials, keys, first_rows);
    order = KeyColumns(key_rows, keys).SortedOrder(false);
    key_rows = key_rows.TakeRows(order);
  }
  BatchBuilder out;
  if (!global) out = BatchBuilder(key_rows);
  if (!global && groups == 0) {  // no rows at all: the columns, no rows
    return Batch();
  }
  auto ordered = [&](auto values) {  // per-group values in key order
    decltype(values) sorted(values.size());
    for (size_t k = 0; k < order.size(); ++k) sorted[k] = values[static_cast<size_t>(order[k])];
    return sorted;
  };
  for (size_t i = 0; i < aggs.size(); ++i) {
    const AggregateFn& a = aggs[i];
    const std::string n_col = StateName(i, "n");
    std::vector<int64_t> n(groups, 0);
    if (rows > 0 && a.op() != "count_distinct") {
      auto pn = partials.Int64(n_col);
      for (size_t r = 0; r < rows; ++r) n[gid[r]] += pn[r];
    }
    std::vector<uint8_t> valid(groups, 1);
    bool any_null = false;
    auto null_unless = [&](bool has_value, size_t g) {
      if (!has_value) {
        valid[g] = 0;
        any_null = true;
      }
    };
    if (a.op() == "count") {
      out.AddInt64(a.name(), ordered(n));
      continue;
    }
    if (a.op() == "count_distinct") {
      std::vector<std::set<std::string>> sets(groups);
      if (rows > 0) {
        StringColumn d = partials.Binary(StateName(i, "d"));
        for (size_t r = 0; r < rows; ++r) DecodeDistinct(d[r], &sets[gid[r]]);
      }
      std::vector<int64_t> counts(groups);
      for (size_t g = 0; g < groups; ++g) counts[g] = static_cast<int64_t>(sets[g].size());
      out.AddInt64(a.name(), ordered(counts));
      continue;
    }
    if (a.op() == "std") {
      std::vector<double> mean(groups, 0), m2(groups, 0);
      std::vector<int64_t> seen(groups, 0);
      if (rows > 0) {
        auto pn = partials.Int64(n_col);
        auto pmean = partials.Float64(StateName(i, "mean"));
        auto pm2 = partials.Float64(StateName(i, "m2"));
        for (size_t r = 0; r < rows; ++r) {  // Chan et al.: combine (n, mean, M2)
          const size_t g = gid[r];
          if (pn[r] == 0) continue;
          const double na = static_cast<double>(seen[g]), nb = static_cast<double>(pn[r]);
          const double delta = pmean[r] - mean[g];
          mean[g] += delta * nb / (na + nb);
          m2[g] += pm2[r] + delta * delta * na * nb / (na + nb);
          seen[g] += pn[r];
        }
      }
      std::vector<double> result(groups, 0);
      for (size_t g = 0; g < groups; ++g) {
        const bool ok = n[g] > a.ddof();
        null_unless(ok, g);
        if (ok) result[g] = std::sqrt(m2[g] / static_cast<double>(n[g] - a.ddof()));
      }
      out.AddFloat64(a.name(), ordered(result));
    } else if ((a.op() == "min" || a.op() == "max") && rows > 0 &&
               partials.ColumnType(StateName(i, "m")) == DataType::kString) {
      const bool lower = a.op() == "min";
      auto pn = partials.Int64(n_col);
      StringColumn pm = partials.String(StateName(i, "m"));
      std::vector<std::string_view> best(groups);
      std::vector<int64_t> seen(groups, 0);
      for (size_t r = 0; r < rows; ++r) {
        const size_t g = gid[r];
        if (pn[r] == 0) continue;
        if (seen[g]++ == 0 || (lower ? pm[r] < best[g] : pm[r] > best[g])) best[g] = pm[r];
      }
      for (size_t g = 0; g < groups; ++g) null_unless(n[g] > 0, g);
      out.AddString(a.name(), ordered(std::vector<std::string>(best.begin(), best.end())));
    } else {
      const char* part = a.op() == "sum" || a.op() == "mean" ? "s" : "m";
      const bool ints = rows > 0 && partials.ColumnType(StateName(i, part)) == DataType::kInt64;
      std::vector<int64_t> vi(groups, 0);
      std::vector<double> vd(groups, 0);
      std::vector<int64_t> seen(groups, 0);
      if (rows > 0) {
        auto pn = partials.Int64(n_col);
        std::span<const int64_t> pi =
            ints ? partials.Int64(StateName(i, part)) : std::span<const int64_t>();
        std::span<const double> pd =
            ints ? std::span<const double>() : partials.Float64(StateName(i, part));
        const bool lower = a.op() == "min";
        for (size_t r = 0; r < rows; ++r) {
          const size_t g = gid[r];
          if (pn[r] == 0) continue;
          if (a.op() == "sum" || a.op() == "mean") {
            if (ints) {
              vi[g] =
                  static_cast<int64_t>(static_cast<uint64_t>(vi[g]) + static_cast<uint64_t>(pi[r]));
            } else {
              vd[g] += pd[r];
            }
          } else if (ints) {
            if (seen[g] == 0 || (lower ? pi[r] < vi[g] : pi[r] > vi[g])) vi[g] = pi[r];
          } else {
            if (seen[g] == 0 || (lower ? pd[r] < vd[g] : pd[r] > vd[g])) vd[g] = pd[r];
          }
          seen[g] += pn[r];
        }
      }
      for (size_t g = 0; g < groups; ++g) null_unless(n[g] > 0, g);
      if (a.op() == "mean") {
        for (size_t g = 0; g < groups; ++g) {
          vd[g] = n[g] > 0 ? vd[g] / static_cast<double>(n[g]) : 0;
        }
        out.AddFloat64(a.name(), ordered(vd));
      } else if (ints) {
        for (size_t g = 0; g < groups; ++g) vi[g] = n[g] > 0 ? vi[g] : 0;
        out.AddInt64(a.name(), ordered(vi));
      } else {
        for (size_t g = 0; g < groups; ++g) vd[g] = n[g] > 0 ? vd[g] : 0;
        out.AddFloat64(a.name(), ordered(vd));
      }
    }
    if (any_null) out.SetValidity(a.name(), ordered(valid));
  }
  return out.Build();
}

}  // namespace lumen::data::internal
