// A hash map from int64 keys to int64 values for the hot loops of group-by and joins: open
// addressing with linear probing over flat arrays, no allocation per key (std::unordered_map
// allocates a node per key, which dominates a group-by over a million keys). Internal to
// src/data; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace lumen::data::internal {

class Int64Map {
 public:
  // Sized for `expected` keys without growing (it grows past them).
  explicit Int64Map(size_t expected = 0) { Rehash(Capacity(expected)); }

  // The value of `key`, inserting `value` when absent; `inserted` says which happened.
  int64_t& TryEmplace(int64_t key, int64_t value, bool* inserted) {
    if ((size_ + 1) * 2 > keys_.size()) Rehash(keys_.size() * 2);
    size_t i = Slot(key);
    while (used_[i]) {
      if (keys_[i] == key) {
        *inserted = false;
        return values_[i];
      }
      i = (i + 1) & mask_;
    }
    used_[i] = 1;
    keys_[i] = key;
    values_[i] = value;
    ++size_;
    *inserted = true;
    return values_[i];
  }

  // The value of `key`, or null.
  const int64_t* Find(int64_t key) const {
    for (size_t i = Slot(key); used_[i]; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &values_[i];
    }
    return nullptr;
  }

  size_t size() const { return size_; }

 private:
  static size_t Capacity(size_t expected) {
    size_t c = 16;
    while (c < expected * 2) c *= 2;
    return c;
  }
  // Fibonacci hashing: the multiply spreads sequential and strided keys over the table.
  size_t Slot(int64_t key) const {
    return static_cast<size_t>((static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void Rehash(size_t capacity) {
    std::vector<int64_t> keys = std::move(keys_), values = std::move(values_);
    std::vector<uint8_t> used = std::move(used_);
    keys_.assign(capacity, 0);
    values_.assign(capacity, 0);
    used_.assign(capacity, 0);
    mask_ = capacity - 1;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) continue;
      size_t j = Slot(keys[i]);
      while (used_[j]) j = (j + 1) & mask_;
      used_[j] = 1;
      keys_[j] = keys[i];
      values_[j] = values[i];
      ++size_;
    }
  }

  std::vector<int64_t> keys_;
  std::vector<int64_t> values_;
  std::vector<uint8_t> used_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

}  // namespace lumen::data::internal
