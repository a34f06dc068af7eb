// Key columns of a batch, compared and grouped as sort, group-by and range partitioning need
// them: lexicographic over several columns, nulls equal to each other and after every value
// (SQL's NULLS LAST). Internal to src/data.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lumen/data/batch.h"
#include "lumen/data/dataset.h"

namespace lumen::data::internal {

class KeyColumns {
 public:
  // Throws DataError for a key of a type that cannot be compared (binary, tensors).
  KeyColumns(const Batch& b, const std::vector<std::string>& names);

  // -1, 0, 1: row i of these keys against row j of `o` (same names and types).
  int Compare(size_t i, const KeyColumns& o, size_t j) const;
  // Whether `o` has the same key types (blocks whose key changes type cannot be compared).
  bool SameTypes(const KeyColumns& o) const;
  // Group ids 0.. of every row, in order of first appearance (equal keys: one group; nulls
  // one group), and the first row of each group.
  std::vector<uint32_t> Groups(std::vector<int64_t>* first_rows) const;
  // Row i's key as bytes (equal keys of equal types: equal bytes), and whether it has a null.
  std::string Bytes(size_t i) const;
  bool HasNull(size_t i) const;
  // The values when the key is one int64 column (the common case joins take a fast path for).
  std::optional<std::span<const int64_t>> SoleInt64() const {
    if (cols_.size() != 1 || cols_[0].type != DataType::kInt64) return std::nullopt;
    return cols_[0].ints;
  }
  // The same, only when that column has no nulls (its values alone order and group the rows).
  std::optional<std::span<const int64_t>> SoleInt64WithoutNulls() const {
    if (cols_.size() != 1 || !cols_[0].valid.empty()) return std::nullopt;
    return SoleInt64();
  }
  // The rows in key order (stable); `descending`: the reverse order (nulls first, as in
  // PostgreSQL).
  std::vector<int64_t> SortedOrder(bool descending) const;

 private:
  struct Column {
    DataType type;
    std::span<const int64_t> ints;
    std::span<const double> dbls;
    StringColumn strs;
    std::span<const uint8_t> valid;  // empty: no nulls
    bool IsNull(size_t i) const { return !valid.empty() && !valid[i]; }
  };
  std::vector<Column> cols_;
  size_t rows_ = 0;
};

}  // namespace lumen::data::internal
