// Bounded spin-then-block. On virtual machines a blocked thread costs ~60 µs to wake (the idle
// vCPU halts and needs an inter-processor interrupt), so threads on the per-task path poll for a
// short window, yielding the CPU to runnable threads, before they block. The window is
// Config::spin_wait_us(); 0 disables spinning.
#pragma once

#include <sched.h>

#include <chrono>
#include <cstdint>

namespace lumen {

// Polls `ready` (yielding between polls) for up to `budget_us`. Returns the last result.
template <class Pred>
bool SpinUntil(Pred&& ready, int64_t budget_us) {
  if (ready()) return true;
  if (budget_us <= 0) return false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  while (std::chrono::steady_clock::now() < deadline) {
    sched_yield();
    if (ready()) return true;
  }
  return false;
}

}  // namespace lumen
