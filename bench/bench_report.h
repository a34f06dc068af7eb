// What both benchmark programs share: a monotonic clock, the `name value unit` output line
// and the process's peak resident memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace lumen::bench {

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One figure, flushed at once so that a long run shows its progress.
inline void Report(const std::string& name, double value, const std::string& unit) {
  std::printf("%s %.6g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

// Peak resident set size of this process (VmHWM), in bytes.
inline int64_t PeakRssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

// Starts a new peak: the next PeakRssBytes() counts from the current resident size.
inline void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace lumen::bench
