// The chaos killer, shared by the chaos test (recovery_test.cc) and lumen_bench_faults: run
// beside a driver of a cluster by whoever started its nodes, every few seconds (the gaps drawn
// from a fixed seed) it has a random non-head node killed — SIGKILL of its daemon, whose
// workers die with it — and started again at once (it rejoins as a new node).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace chaos {

// The killer: until `done()` or until `budget` has passed (the driver then finishes without
// losses: the run stays bounded in time however slow the build is), waits a gap drawn from
// [min_gap, max_gap] with `seed`, then calls `kill_and_restart(zone)` for a zone drawn from
// `zones`. Returns the number of kills.
inline int KillUntilDone(const std::function<bool()>& done,
                         const std::function<bool(const std::string& zone)>& kill_and_restart,
                         const std::vector<std::string>& zones, uint32_t seed,
                         std::chrono::milliseconds min_gap, std::chrono::milliseconds max_gap,
                         std::chrono::seconds budget) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> gap(min_gap.count(), max_gap.count());
  std::uniform_int_distribution<size_t> pick(0, zones.size() - 1);
  const auto end = std::chrono::steady_clock::now() + budget;
  int kills = 0;
  while (!done()) {
    const auto at = std::chrono::steady_clock::now() + std::chrono::milliseconds(gap(rng));
    if (at > end) break;
    // The chaos schedule, not a synchronisation: the driver may finish at any moment.
    while (!done() && std::chrono::steady_clock::now() < at) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (done()) break;
    if (!kill_and_restart(zones[pick(rng)])) break;
    ++kills;
  }
  return kills;
}

}  // namespace chaos
