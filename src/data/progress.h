// Per-operator progress: live bars on a terminal, plain periodic lines otherwise (stderr).
// Internal to src/data; used by the executor's thread only.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace lumen::data::internal {

class PhysicalOp;

class ProgressReporter {
 public:
  // `interval_ms`: ExecutionOptions::progress_interval_ms.
  ProgressReporter(std::vector<PhysicalOp*> ops, bool enabled, int64_t interval_ms);
  // How long the executor may wait for events between Ticks.
  std::chrono::milliseconds TickEvery() const;
  // Redraws if enough time has passed since the last drawing (or `force`).
  void Tick(int64_t held_bytes, int64_t budget, bool force = false);
  // Final state: every bar at its end.
  void Finish(int64_t held_bytes, int64_t budget);

 private:
  std::string Line(const PhysicalOp* op, bool final) const;
  void Draw(int64_t held_bytes, int64_t budget, bool final);

  std::vector<PhysicalOp*> ops_;
  bool enabled_;
  bool tty_;
  std::chrono::milliseconds every_;
  int lines_drawn_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
};

std::string HumanBytes(int64_t bytes);
// "1 actor restart", "2 actor restarts".
std::string Plural(int64_t n, const std::string& what);

}  // namespace lumen::data::internal
