// lumen::Buffer — an immutable byte buffer that moves through Lumen without copies.
//
// Put(buffer) writes the bytes once into the node's shared-memory store; Get<Buffer>(ref), or a
// task parameter of type Buffer, returns a view straight into shared memory: no copy, whatever
// the size. Copying a Buffer shares the bytes (cheap); the memory stays valid while any copy
// lives. Thread-safe for concurrent reads.
//
// @code
//   lumen::Buffer b = lumen::Buffer::Allocate(1 << 30);
//   std::memset(b.mutable_data(), 7, b.size());
//   auto ref = lumen::Put(b);
//   lumen::Buffer view = lumen::Get(ref);   // maps the object, no copy
// @endcode
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace lumen {

class Buffer {
 public:
  Buffer() = default;

  // Owning buffers. Allocate's memory is 64-byte aligned (columnar data relies on it).
  static Buffer Allocate(size_t size) {
    constexpr std::align_val_t kAlign{64};
    auto* mem = static_cast<uint8_t*>(::operator new[](size > 0 ? size : 1, kAlign));
    Buffer b;
    b.data_ = mem;
    b.size_ = size;
    b.writable_ = true;
    b.owner_ = std::shared_ptr<const void>(mem, [](const void* p) {
      ::operator delete[](const_cast<void*>(p), std::align_val_t{64});
    });
    return b;
  }
  static Buffer Copy(const void* data, size_t size) {
    Buffer b = Allocate(size);
    if (size > 0) std::memcpy(b.writable_data(), data, size);
    b.writable_ = false;
    return b;
  }
  static Buffer FromString(std::string s) {
    auto holder = std::make_shared<std::string>(std::move(s));
    return Buffer(reinterpret_cast<const uint8_t*>(holder->data()), holder->size(), holder);
  }
  static Buffer FromVector(std::vector<uint8_t> v) {
    auto holder = std::make_shared<std::vector<uint8_t>>(std::move(v));
    return Buffer(holder->data(), holder->size(), holder);
  }

  // A view of `size` bytes at `data`, kept valid by `owner`.
  Buffer(const uint8_t* data, size_t size, std::shared_ptr<const void> owner)
      : owner_(std::move(owner)), data_(data), size_(size) {}

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const {
    return std::string_view(reinterpret_cast<const char*>(data_), size_);
  }
  std::string ToString() const { return std::string(view()); }

  // Writable access for a buffer made by Allocate() (before it is shared through Lumen);
  // nullptr for views.
  uint8_t* mutable_data() { return writable_ ? writable_data() : nullptr; }

  // A sub-range sharing this buffer's memory.
  Buffer Slice(size_t offset, size_t length) const {
    if (offset > size_) offset = size_;
    if (length > size_ - offset) length = size_ - offset;
    return Buffer(data_ + offset, length, owner_);
  }

  // What keeps the bytes alive (for zero-copy adapters).
  const std::shared_ptr<const void>& owner() const { return owner_; }

  bool operator==(const Buffer& o) const {
    return size_ == o.size_ && (size_ == 0 || std::memcmp(data_, o.data_, size_) == 0);
  }

 private:
  uint8_t* writable_data() { return const_cast<uint8_t*>(data_); }

  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool writable_ = false;
};

}  // namespace lumen
