// Best-fit allocator over a fixed range [0, capacity) of the shared-memory region. Blocks are
// 64-byte aligned (the layout lumen::data blocks rely on); freed neighbours coalesce. Among
// free blocks of the best size the lowest offset wins, so live objects pack towards the start
// of the region and the pages at its end stay untouched (or can be given back: free_blocks()).
// Not thread-safe: owned by the object store's loop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace lumen::object_store {

class Allocator {
 public:
  static constexpr int64_t kAlignment = 64;

  explicit Allocator(int64_t capacity);

  // Returns the offset of a block of at least `size` bytes, or nullopt if no free block fits.
  std::optional<int64_t> Allocate(int64_t size);
  // Frees a block returned by Allocate with the same `size`.
  void Free(int64_t offset, int64_t size);

  int64_t capacity() const { return capacity_; }
  int64_t used() const { return used_; }
  int64_t largest_free_block() const;
  static int64_t Rounded(int64_t size) { return (size + kAlignment - 1) / kAlignment * kAlignment; }
  // Free blocks, offset -> size, in offset order.
  const std::map<int64_t, int64_t>& free_blocks() const { return by_offset_; }

 private:
  void Insert(int64_t offset, int64_t size);
  void Erase(std::map<int64_t, int64_t>::iterator it);

  const int64_t capacity_;
  int64_t used_ = 0;
  std::map<int64_t, int64_t> by_offset_;           // offset -> size
  std::set<std::pair<int64_t, int64_t>> by_size_;  // (size, offset)
};

}  // namespace lumen::object_store
