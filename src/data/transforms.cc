// Applying a chain of fused steps to a block, and row <-> batch conversion.
#include <algorithm>
#include <chrono>
#include <map>

#include "data/chain.h"
#include "lumen/errors.h"
#include "lumen/internal/runtime.h"
#include "lumen/serialization.h"

namespace lumen::data::internal {

namespace {

thread_local int64_t t_user_code_us = 0;

// Runs `f` (a call into user code), adding its time to this thread's UserCodeUs.
template <class F>
auto InUserCode(F&& f) {
  struct Clock {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    ~Clock() {
      t_user_code_us += std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
    }
  } clock;
  return f();
}

template <class F>
F LookupFn(const std::string& name) {
  const lumen::internal::RemoteFunction* fn = lumen::internal::FindRemoteByName(name);
  if (!fn || !fn->raw) {
    throw FunctionNotFoundError(
        "function '" + name + "' is not registered in this worker; add LUMEN_REMOTE(" + name + ")");
  }
  std::string want = lumen::internal::TypeName<F>();
  if (fn->signature != want) {
    throw TypeError(name + " has type " + fn->signature + ", but this step needs " + want);
  }
  return reinterpret_cast<F>(fn->raw);
}

// `f` over `block` in batches of `batch_size` rows; `done(fraction)` after each batch but the
// last.
template <class F, class D>
Batch InBatches(const Batch& block, int64_t batch_size, F&& f, D&& done) {
  const int64_t rows = block.NumRows();
  if (batch_size <= 0 || rows <= batch_size) return f(block);
  std::vector<Batch> out;
  for (int64_t off = 0; off < rows; off += batch_size) {
    out.push_back(f(block.Slice(off, batch_size)));
    if (off + batch_size < rows) {
      done(static_cast<double>(off + batch_size) / static_cast<double>(rows));
    }
  }
  return Batch::Concat(out);
}

Batch AddColumn(const Batch& block, const Batch& column, const std::string& name,
                const std::string& fn) {
  if (column.NumColumns() != 1) {
    throw DataError("AddColumn(" + name + "): " + fn + " returned " +
                    std::to_string(column.NumColumns()) + " columns, expected 1");
  }
  if (column.NumRows() != block.NumRows()) {
    throw DataError("AddColumn(" + name + "): " + fn + " returned " +
                    std::to_string(column.NumRows()) + " rows for a batch of " +
                    std::to_string(block.NumRows()));
  }
  return BatchBuilder(block).AddColumnFrom(column, column.ColumnNames()[0], name).Build();
}

}  // namespace

BatchFn LookupBatchFn(const std::string& name) { return LookupFn<BatchFn>(name); }

int64_t UserCodeUs() { return t_user_code_us; }

Batch ApplyChain(const Chain& chain, const BlockKey& key, Batch block, void* instance,
                 const CallableInfo* callable, const ChainProgress& progress) {
  const double steps = static_cast<double>(chain.steps.size());
  for (size_t i = 0; i < chain.steps.size(); ++i) {
    const Step& s = chain.steps[i];
    const auto step_done = [&](double fraction) {
      if (progress) progress((static_cast<double>(i) + fraction) / steps);
    };
    switch (s.kind) {
      case kStepMapBatches: {
        BatchFn fn = LookupFn<BatchFn>(s.fn);
        block = InBatches(
            block, s.batch_size, [&](const Batch& b) { return InUserCode([&] { return fn(b); }); },
            step_done);
        break;
      }
      case kStepCallable: {
        if (!instance || !callable) throw DataError("callable step outside an actor pool");
        block = InBatches(
            block, s.batch_size,
            [&](const Batch& b) { return InUserCode([&] { return callable->call(instance, b); }); },
            step_done);
        break;
      }
      case kStepMapRows: {
        RowFn fn = LookupFn<RowFn>(s.fn);
        std::vector<Row> rows = BatchToRows(block);
        InUserCode([&] {
          for (auto& r : rows) r = fn(r);
        });
        block = RowsToBatch(rows);
        break;
      }
      case kStepFlatMap: {
        FlatRowFn fn = LookupFn<FlatRowFn>(s.fn);
        std::vector<Row> out;
        const std::vector<Row> rows = BatchToRows(block);
        InUserCode([&] {
          for (const auto& r : rows) {
            auto more = fn(r);
            out.insert(out.end(), std::make_move_iterator(more.begin()),
                       std::make_move_iterator(more.end()));
          }
        });
        block = RowsToBatch(out);
        break;
      }
      case kStepFilter: {
        RowPredicate fn = LookupFn<RowPredicate>(s.fn);
        std::vector<Row> rows = BatchToRows(block);
        std::vector<int64_t> keep;
        InUserCode([&] {
          for (size_t i = 0; i < rows.size(); ++i) {
            if (fn(rows[i])) keep.push_back(static_cast<int64_t>(i));
          }
        });
        if (keep.size() != rows.size()) block = block.TakeRows(keep);
        break;
      }
      case kStepSelect:
        block = block.SelectColumns(s.columns);
        break;
      case kStepDrop:
        block = block.DropColumns(s.columns);
        break;
      case kStepAddColumn: {
        BatchFn fn = LookupFn<BatchFn>(s.fn);
        Batch column = InUserCode([&] { return fn(block); });
        block = AddColumn(block, column, s.column, s.fn);
        break;
      }
      case kStepWrite:
        block = WriteBlock(s.write, key, block);
        break;
      case kStepWithColumn:
        block = WithColumnOf(block, s.column, s.expr);
        break;
      case kStepFilterExpr:
        block = FilterBy(block, s.expr);
        break;
      case kStepCountValid: {
        if (block.NumColumns() == 0 && block.NumRows() == 0) {  // an empty block: no schema
          block = BatchBuilder().AddInt64("count", {0}).Build();
          break;
        }
        if (!block.HasColumn(s.column)) {
          block.ColumnType(s.column);  // throws, listing the columns
        }
        block =
            BatchBuilder().AddInt64("count", {block.NumRows() - block.NullCount(s.column)}).Build();
        break;
      }
      default:
        throw DataError("unknown step " + std::to_string(s.kind) + " in " + chain.op_name);
    }
  }
  return block;
}

std::vector<Row> BatchToRows(const Batch& b) {
  const int64_t n = b.NumRows();
  std::vector<Row> rows(static_cast<size_t>(n));
  for (const auto& name : b.ColumnNames()) {
    switch (b.ColumnType(name)) {
      case DataType::kInt64: {
        auto v = b.Int64(name);
        for (int64_t i = 0; i < n; ++i)
          rows[static_cast<size_t>(i)].Set(name, Value(v[static_cast<size_t>(i)]));
        break;
      }
      case DataType::kFloat64: {
        auto v = b.Float64(name);
        for (int64_t i = 0; i < n; ++i)
          rows[static_cast<size_t>(i)].Set(name, Value(v[static_cast<size_t>(i)]));
        break;
      }
      case DataType::kBool: {
        auto v = b.Bool(name);
        for (int64_t i = 0; i < n; ++i)
          rows[static_cast<size_t>(i)].Set(name, Value(v[static_cast<size_t>(i)] != 0));
        break;
      }
      case DataType::kString: {
        auto v = b.String(name);
        for (int64_t i = 0; i < n; ++i) {
          rows[static_cast<size_t>(i)].Set(name, Value(std::string(v[static_cast<size_t>(i)])));
        }
        break;
      }
      case DataType::kBinary: {
        auto v = b.Binary(name);
        for (int64_t i = 0; i < n; ++i)
          rows[static_cast<size_t>(i)].Set(name, Value(v.Value(static_cast<size_t>(i))));
        break;
      }
      default: {  // tensors: one row's raw bytes
        throw TypeError("column '" + name + "' is a tensor; use MapBatches to process tensors");
      }
    }
    std::span<const uint8_t> valid = b.Validity(name);
    for (size_t i = 0; i < valid.size(); ++i) {
      if (!valid[i]) rows[i].Set(name, Value());
    }
  }
  return rows;
}

Batch RowsToBatch(const std::vector<Row>& rows) {
  std::vector<std::string> order;
  std::map<std::string, Value::Kind> kinds;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (const auto& [name, v] : rows[r].fields()) {
      auto it = kinds.find(name);
      if (it == kinds.end()) {
        order.push_back(name);
        kinds[name] = v.kind();
        continue;
      }
      Value::Kind& k = it->second;
      if (v.is_null() || v.kind() == k) continue;
      if (k == Value::Kind::kNull) {
        k = v.kind();
      } else if ((k == Value::Kind::kInt64 && v.kind() == Value::Kind::kFloat64) ||
                 (k == Value::Kind::kFloat64 && v.kind() == Value::Kind::kInt64)) {
        k = Value::Kind::kFloat64;
      } else {
        throw TypeError("field '" + name + "' is " + Value::KindName(k) + " in earlier rows but " +
                        Value::KindName(v.kind()) + " in row " + std::to_string(r));
      }
    }
  }
  BatchBuilder b;
  const size_t n = rows.size();
  auto field = [&](size_t r, const std::string& name) -> const Value* {
    for (const auto& [k, v] : rows[r].fields()) {
      if (k == name) return &v;
    }
    return nullptr;
  };
  for (const auto& name : order) {
    // A field missing from a row, or null there, is a null of the column.
    std::vector<uint8_t> valid(n, 1);
    bool any_null = false;
    for (size_t r = 0; r < n; ++r) {
      const Value* x = field(r, name);
      if (x == nullptr || x->is_null()) {
        valid[r] = 0;
        any_null = true;
      }
    }
    switch (kinds[name]) {
      case Value::Kind::kNull:
      case Value::Kind::kInt64: {
        std::vector<int64_t> v(n, 0);
        for (size_t r = 0; r < n; ++r) {
          const Value* x = field(r, name);
          if (x && !x->is_null()) v[r] = x->AsInt64();
        }
        b.AddInt64(name, std::move(v));
        break;
      }
      case Value::Kind::kFloat64: {
        std::vector<double> v(n, 0);
        for (size_t r = 0; r < n; ++r) {
          const Value* x = field(r, name);
          if (x && !x->is_null()) v[r] = x->AsDouble();
        }
        b.AddFloat64(name, std::move(v));
        break;
      }
      case Value::Kind::kBool: {
        std::vector<uint8_t> v(n, 0);
        for (size_t r = 0; r < n; ++r) {
          const Value* x = field(r, name);
          if (x && !x->is_null()) v[r] = x->AsBool();
        }
        b.AddBool(name, std::move(v));
        break;
      }
      case Value::Kind::kString: {
        std::vector<std::string> v(n);
        for (size_t r = 0; r < n; ++r) {
          const Value* x = field(r, name);
          if (x && !x->is_null()) v[r] = x->AsString();
        }
        b.AddString(name, std::move(v));
        break;
      }
      case Value::Kind::kBinary: {
        std::vector<Buffer> v(n);
        for (size_t r = 0; r < n; ++r) {
          const Value* x = field(r, name);
          if (x && !x->is_null()) v[r] = x->AsBinary();
        }
        b.AddBinary(name, v);
        break;
      }
    }
    if (any_null) b.SetValidity(name, std::move(valid));
  }
  return b.Build();
}

}  // namespace lumen::data::internal
