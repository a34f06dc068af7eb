// Running independent pieces of one task's I/O at once (S3 requests). Internal to src/data.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lumen::data::internal {

// Calls fn(i) for every i in [0, n) on up to `threads` threads of its own. The first exception
// stops handing out indices; it is rethrown here once every thread has ended.
template <class F>
void ParallelFor(int64_t n, int64_t threads, const F& fn) {
  std::atomic<int64_t> next{0};
  std::mutex mu;
  std::exception_ptr failure;
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < std::min(n, std::max<int64_t>(threads, 1)); ++t) {
    pool.emplace_back([&] {
      for (int64_t i; (i = next++) < n;) {
        try {
          fn(i);
        } catch (...) {
          std::lock_guard lock(mu);
          if (!failure) failure = std::current_exception();
          next = n;
          return;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace lumen::data::internal
