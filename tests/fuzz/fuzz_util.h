// Helpers shared by the libFuzzer targets in tests/fuzz: an input reader and the checks every
// target makes (no hang, no leaked descriptor). Standard library only. Test-only code.
#pragma once

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string_view>

namespace lumen::fuzz {

// Aborts (a finding for libFuzzer) with a message naming what did not happen in time.
[[noreturn]] inline void Hang(const char* what) {
  std::fprintf(stderr, "fuzz: HANG: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// Waits for `f` up to `timeout`; a service that never answers is a bug (a handler blocked its
// loop, or a frame was lost).
template <class T>
T WaitOrHang(std::future<T>& f, std::chrono::milliseconds timeout, const char* what) {
  if (f.wait_for(timeout) != std::future_status::ready) Hang(what);
  return f.get();
}

// Open descriptors of this process (to catch leaks across an iteration).
inline int CountOpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the directory stream itself
}

// Consumes a fuzz input front to back; reads past the end yield zeros / empty strings.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() {
    uint16_t lo = U8();
    return static_cast<uint16_t>(lo | (U8() << 8));
  }
  std::string_view Bytes(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string_view out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }
  std::string_view Rest() { return Bytes(size_); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace lumen::fuzz
