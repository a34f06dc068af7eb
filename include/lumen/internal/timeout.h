// std::chrono timeouts of the public API, as the milliseconds the runtime takes.
#pragma once

#include <chrono>
#include <cstdint>

#include "lumen/errors.h"

namespace lumen::internal {

// Whole milliseconds, rounded up (so a short wait is never none). Throws on a negative one.
inline int64_t TimeoutMs(std::chrono::nanoseconds timeout) {
  if (timeout.count() < 0) throw Error("a timeout must not be negative");
  return std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
}

}  // namespace lumen::internal
