#include "data/keys.h"

#include "data/int64_map.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <unordered_map>

namespace lumen::data::internal {

KeyColumns::KeyColumns(const Batch& b, const std::vector<std::string>& names)
    : rows_(static_cast<size_t>(b.NumRows())) {
  for (const auto& name : names) {
    Column c;
    c.type = b.ColumnType(name);
    c.valid = b.Validity(name);
    switch (c.type) {
      case DataType::kInt64:
        c.ints = b.Int64(name);
        break;
      case DataType::kFloat64:
        c.dbls = b.Float64(name);
        break;
      case DataType::kString:
        c.strs = b.String(name);
        break;
      default:
        throw DataError("column '" + name + "' of type " + DataTypeName(c.type) +
                        " cannot be a sort or group key (use int64, float64 or string)");
    }
    cols_.push_back(c);
  }
}

bool KeyColumns::SameTypes(const KeyColumns& o) const {
  if (cols_.size() != o.cols_.size()) return false;
  for (size_t k = 0; k < cols_.size(); ++k) {
    if (cols_[k].type != o.cols_[k].type) return false;
  }
  return true;
}

int KeyColumns::Compare(size_t i, const KeyColumns& o, size_t j) const {
  for (size_t k = 0; k < cols_.size(); ++k) {
    const Column& a = cols_[k];
    const Column& b = o.cols_[k];
    const bool an = a.IsNull(i), bn = b.IsNull(j);
    if (an || bn) {
      if (an == bn) continue;
      return an ? 1 : -1;
    }
    int c;
    switch (a.type) {
      case DataType::kInt64:
        c = a.ints[i] < b.ints[j] ? -1 : a.ints[i] > b.ints[j] ? 1 : 0;
        break;
      case DataType::kFloat64:
        c = a.dbls[i] < b.dbls[j] ? -1 : a.dbls[i] > b.dbls[j] ? 1 : 0;
        break;
      default: {
        int s = a.strs[i].compare(b.strs[j]);
        c = s < 0 ? -1 : s > 0 ? 1 : 0;
      }
    }
    if (c != 0) return c;
  }
  return 0;
}

std::vector<uint32_t> KeyColumns::Groups(std::vector<int64_t>* first_rows) const {
  std::vector<uint32_t> gid(rows_);
  first_rows->clear();
  if (const auto ints = SoleInt64WithoutNulls()) {  // the common case
    Int64Map ids(rows_);
    for (size_t r = 0; r < rows_; ++r) {
      bool added;
      const int64_t id =
          ids.TryEmplace((*ints)[r], static_cast<int64_t>(first_rows->size()), &added);
      if (added) first_rows->push_back(static_cast<int64_t>(r));
      gid[r] = static_cast<uint32_t>(id);
    }
    return gid;
  }
  // Any keys: each row's key tuple as bytes.
  std::unordered_map<std::string, uint32_t> ids;
  for (size_t r = 0; r < rows_; ++r) {
    auto [it, added] = ids.try_emplace(Bytes(r), static_cast<uint32_t>(first_rows->size()));
    if (added) first_rows->push_back(static_cast<int64_t>(r));
    gid[r] = it->second;
  }
  return gid;
}

std::string KeyColumns::Bytes(size_t r) const {
  std::string key;  // per column: a null flag, then the value
  for (const Column& c : cols_) {
    if (c.IsNull(r)) {
      key += '\0';
      continue;
    }
    key += '\1';
    if (c.type == DataType::kInt64) {
      key.append(reinterpret_cast<const char*>(&c.ints[r]), 8);
    } else if (c.type == DataType::kFloat64) {
      double d = c.dbls[r] == 0 ? 0.0 : c.dbls[r];  // -0.0 and 0.0: one key
      key.append(reinterpret_cast<const char*>(&d), 8);
    } else {
      std::string_view s = c.strs[r];
      const uint32_t n = static_cast<uint32_t>(s.size());
      key.append(reinterpret_cast<const char*>(&n), 4);
      key.append(s);
    }
  }
  return key;
}

bool KeyColumns::HasNull(size_t r) const {
  for (const Column& c : cols_) {
    if (c.IsNull(r)) return true;
  }
  return false;
}

std::vector<int64_t> KeyColumns::SortedOrder(bool descending) const {
  std::vector<int64_t> order(rows_);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const int c = Compare(static_cast<size_t>(a), *this, static_cast<size_t>(b));
    return descending ? c > 0 : c < 0;
  });
  return order;
}

}  // namespace lumen::data::internal
