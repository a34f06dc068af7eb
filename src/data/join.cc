// Hash joins (Dataset::Join): both sides hash-partitioned on their keys, each partition joined
// in a task with a hash table over its right rows.
#include <algorithm>
#include <functional>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>

#include "data/int64_map.h"
#include "data/keys.h"
#include "data/tasks.h"

namespace lumen::data::internal {

namespace {

bool IsTensor(DataType t) {
  return t == DataType::kTensorFloat32 || t == DataType::kTensorFloat64 ||
         t == DataType::kTensorInt64 || t == DataType::kTensorUInt8;
}

// `rows` of `b` (-1: a row of nulls) as a new batch; `b` may have no rows (only columns).
Batch TakeOrNull(const Batch& b, const std::vector<int64_t>& rows) {
  const bool any_missing = std::find(rows.begin(), rows.end(), -1) != rows.end();
  if (!any_missing) return b.TakeRows(rows);
  std::vector<uint8_t> present(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) present[k] = rows[k] >= 0;
  Batch taken;
  if (b.NumRows() > 0) {
    std::vector<int64_t> safe(rows);
    for (auto& r : safe) r = std::max<int64_t>(r, 0);
    taken = b.TakeRows(safe);
  } else {  // nothing to take from: zero values of each column's type
    BatchBuilder zero;
    const size_t n = rows.size();
    for (const auto& name : b.ColumnNames()) {
      switch (b.ColumnType(name)) {
        case DataType::kInt64:
          zero.AddInt64(name, std::vector<int64_t>(n, 0));
          break;
        case DataType::kFloat64:
          zero.AddFloat64(name, std::vector<double>(n, 0));
          break;
        case DataType::kBool:
          zero.AddBool(name, std::vector<uint8_t>(n, 0));
          break;
        case DataType::kString:
          zero.AddString(name, std::vector<std::string>(n));
          break;
        case DataType::kBinary:
          zero.AddBinary(name, std::vector<std::string>(n));
          break;
        default:
          throw DataError("join: tensor column '" + name +
                          "' cannot be filled with nulls for rows without a match");
      }
    }
    taken = zero.Build();
  }
  BatchBuilder out(taken);
  for (const auto& name : taken.ColumnNames()) {
    if (IsTensor(taken.ColumnType(name))) {
      throw DataError("join: tensor column '" + name +
                      "' cannot be filled with nulls for rows without a match");
    }
    std::vector<uint8_t> valid(present);
    std::span<const uint8_t> had = taken.Validity(name);
    for (size_t k = 0; k < valid.size() && !had.empty(); ++k) valid[k] = valid[k] && had[k];
    out.SetValidity(name, std::move(valid));
  }
  return out.Build();
}

// This partition's rows of one side: the slices of every map output, and (when none has
// rows) a column-only batch from any map output that has columns.
Batch Gather(const std::vector<lumen::ObjectRef<Buffer>>& outs, int64_t partition,
             TaskTimer& timer) {
  PartitionSlices slices = SlicesOf(outs, partition);
  if (slices.ranges.empty()) {
    if (slices.schema.NumColumns() == 0) return Batch();
    return slices.schema.Slice(0, 0).DropColumns({"__partition"});
  }
  Batch rows = ConcatRanges(slices.ranges, {"__partition"});
  timer.Consumed(rows);
  return rows;
}

}  // namespace

Buffer HashPartitionTask(const std::vector<std::string>& keys, int64_t partitions,
                         const Buffer& block) {
  Batch b = Batch::FromBuffer(block);
  const int64_t n = b.NumRows();
  if (n == 0) return Batch().buffer();
  KeyColumns key_cols(b, keys);
  std::vector<int64_t> part(static_cast<size_t>(n));
  std::hash<std::string> hash;
  for (int64_t i = 0; i < n; ++i) {
    const size_t r = static_cast<size_t>(i);
    part[r] = key_cols.HasNull(r)
                  ? 0
                  : static_cast<int64_t>(hash(key_cols.Bytes(r)) %
                                         static_cast<uint64_t>(std::max<int64_t>(1, partitions)));
  }
  return WithPartitions(b, part).buffer();
}

Buffer JoinTask(const JoinSpec& spec, int64_t partition,
                const std::vector<lumen::ObjectRef<Buffer>>& left_outs,
                const std::vector<lumen::ObjectRef<Buffer>>& right_outs) {
  TaskTimer timer;
  const Batch left = Gather(left_outs, partition, timer);
  const Batch right = Gather(right_outs, partition, timer);
  const auto how = static_cast<JoinType>(spec.how);
  const size_t nl = static_cast<size_t>(left.NumRows()), nr = static_cast<size_t>(right.NumRows());
  if (left.NumColumns() == 0 &&
      (nr == 0 || how == JoinType::kInner || how == JoinType::kLeftOuter ||
       how == JoinType::kSemi || how == JoinType::kAnti)) {
    return Batch().buffer();  // no left rows, and none wanted from the right alone
  }
  // Match: a hash table over the right rows (a null key matches nothing).
  std::optional<KeyColumns> lk, rk;
  if (left.NumColumns() > 0) lk.emplace(left, spec.left_keys);
  if (right.NumColumns() > 0) rk.emplace(right, spec.right_keys);
  if (lk && rk && !lk->SameTypes(*rk)) {
    throw DataError("join: the keys differ in type between the sides (left " +
                    std::string(DataTypeName(left.ColumnType(spec.left_keys[0]))) + " " +
                    spec.left_keys[0] + ", right " +
                    DataTypeName(right.ColumnType(spec.right_keys[0])) + " " + spec.right_keys[0] +
                    ", ...): cast one side with WithColumn first");
  }
  // Each key's first right row, and for each right row the next one of its key (ascending).
  std::vector<int64_t> next(nr, -1);
  Int64Map int_head;  // one int64 key: no bytes built per row
  std::unordered_map<std::string, int64_t> bytes_head;
  const auto rints = rk ? rk->SoleInt64() : std::nullopt;
  const auto lints = lk ? lk->SoleInt64() : std::nullopt;
  const bool ints = rints && lints;
  auto chain = [&next](int64_t& head, bool added, size_t r) {
    if (!added) {
      next[r] = head;
      head = static_cast<int64_t>(r);
    }
  };
  if (ints) {
    int_head = Int64Map(nr);
  } else {
    bytes_head.reserve(nr);
  }
  for (size_t r = nr; r-- > 0;) {
    if (rk->HasNull(r)) continue;
    if (ints) {
      bool added;
      int64_t& head = int_head.TryEmplace((*rints)[r], static_cast<int64_t>(r), &added);
      chain(head, added, r);
    } else {
      auto [it, added] = bytes_head.try_emplace(rk->Bytes(r), static_cast<int64_t>(r));
      chain(it->second, added, r);
    }
  }
  auto first_match = [&](size_t l) -> int64_t {
    if (nr == 0 || lk->HasNull(l)) return -1;
    if (ints) {
      const int64_t* head = int_head.Find((*lints)[l]);
      return head ? *head : -1;
    }
    auto it = bytes_head.find(lk->Bytes(l));
    return it == bytes_head.end() ? -1 : it->second;
  };
  std::vector<int64_t> li, ri;
  std::vector<uint8_t> right_matched(nr, 0);
  for (size_t l = 0; l < nl; ++l) {
    const int64_t match = first_match(l);
    if (how == JoinType::kSemi || how == JoinType::kAnti) {
      if ((match >= 0) == (how == JoinType::kSemi)) li.push_back(static_cast<int64_t>(l));
      continue;
    }
    if (match >= 0) {
      for (int64_t r = match; r >= 0; r = next[static_cast<size_t>(r)]) {
        li.push_back(static_cast<int64_t>(l));
        ri.push_back(r);
        right_matched[static_cast<size_t>(r)] = 1;
      }
    } else if (how == JoinType::kLeftOuter || how == JoinType::kFullOuter) {
      li.push_back(static_cast<int64_t>(l));
      ri.push_back(-1);
    }
  }
  if (how == JoinType::kSemi || how == JoinType::kAnti) {
    return timer.Finish(left.TakeRows(li));
  }
  if (how == JoinType::kRightOuter || how == JoinType::kFullOuter) {
    for (size_t r = 0; r < nr; ++r) {
      if (!right_matched[r]) {
        li.push_back(-1);
        ri.push_back(static_cast<int64_t>(r));
      }
    }
  }
  if (li.empty()) return Batch().buffer();
  // Output columns: the left ones, then the right ones (without shared keys), renamed where
  // names clash.
  const std::vector<std::string> lcols = left.ColumnNames(), rcols = right.ColumnNames();
  std::set<std::string> right_keys(spec.right_keys.begin(), spec.right_keys.end());
  auto is_shared_key = [&](const std::string& c) {
    return spec.shared_keys && right_keys.count(c);
  };
  std::set<std::string> left_names(lcols.begin(), lcols.end()), right_names;
  for (const auto& c : rcols) {
    if (!is_shared_key(c)) right_names.insert(c);
  }
  Batch lt = left.NumColumns() > 0 ? TakeOrNull(left, li) : Batch();
  Batch rt = right.NumColumns() > 0 ? TakeOrNull(right, ri) : Batch();
  BatchBuilder out;
  for (const auto& c : lcols) {
    const bool key =
        std::find(spec.left_keys.begin(), spec.left_keys.end(), c) != spec.left_keys.end();
    if (key && spec.shared_keys && rt.NumColumns() > 0 &&
        std::find(li.begin(), li.end(), -1) != li.end()) {
      // A shared key: from the right where the left has no row.
      const std::string& rc = spec.right_keys[static_cast<size_t>(
          std::find(spec.left_keys.begin(), spec.left_keys.end(), c) - spec.left_keys.begin())];
      Batch both =
          Batch::Concat({lt.SelectColumns({c}), BatchBuilder().AddColumnFrom(rt, rc, c).Build()});
      std::vector<int64_t> pick(li.size());
      for (size_t k = 0; k < li.size(); ++k) {
        pick[k] = li[k] >= 0 ? static_cast<int64_t>(k) : static_cast<int64_t>(li.size() + k);
      }
      out.AddColumnFrom(both.TakeRows(pick), c);
      continue;
    }
    const bool clash = !key && right_names.count(c);
    out.AddColumnFrom(lt, c, clash ? c + spec.left_suffix : c);
  }
  for (const auto& c : rcols) {
    if (is_shared_key(c)) continue;
    const bool clash = left_names.count(c) > 0;
    out.AddColumnFrom(rt, c, clash ? c + spec.right_suffix : c);
  }
  Batch result;
  try {
    result = out.Build();
  } catch (const TypeError& e) {
    throw DataError(std::string("join: ") + e.what() +
                    " (set JoinOptions::left_suffix / right_suffix so that names differ)");
  }
  return timer.Finish(std::move(result));
}

}  // namespace lumen::data::internal
