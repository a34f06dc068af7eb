#include "object_store/allocator.h"

#include "common/logging.h"

namespace lumen::object_store {

Allocator::Allocator(int64_t capacity) : capacity_(capacity / kAlignment * kAlignment) {
  if (capacity_ > 0) Insert(0, capacity_);
}

void Allocator::Insert(int64_t offset, int64_t size) {
  by_offset_.emplace(offset, size);
  by_size_.emplace(size, offset);
}

void Allocator::Erase(std::map<int64_t, int64_t>::iterator it) {
  by_size_.erase({it->second, it->first});
  by_offset_.erase(it);
}

std::optional<int64_t> Allocator::Allocate(int64_t size) {
  int64_t need = Rounded(std::max<int64_t>(size, 1));
  auto fit = by_size_.lower_bound({need, 0});
  if (fit == by_size_.end()) return std::nullopt;
  const int64_t block = fit->first;
  const int64_t offset = fit->second;
  Erase(by_offset_.find(offset));
  if (block > need) Insert(offset + need, block - need);
  used_ += need;
  return offset;
}

void Allocator::Free(int64_t offset, int64_t size) {
  int64_t len = Rounded(std::max<int64_t>(size, 1));
  used_ -= len;
  LUMEN_CHECK(used_ >= 0) << "allocator double free at " << offset;
  // Coalesce with the following and preceding free blocks.
  auto next = by_offset_.lower_bound(offset);
  if (next != by_offset_.end() && offset + len == next->first) {
    len += next->second;
    Erase(next);
  }
  auto after = by_offset_.lower_bound(offset);
  if (after != by_offset_.begin()) {
    auto prev = std::prev(after);
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      len += prev->second;
      Erase(prev);
    }
  }
  Insert(offset, len);
}

int64_t Allocator::largest_free_block() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first;
}

}  // namespace lumen::object_store
