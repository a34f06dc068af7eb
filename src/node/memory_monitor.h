#pragma once

// The node's memory monitor (Ray's): when the memory in use on the machine (or in the node's
// cgroup, when that is the smaller limit) passes LUMEN_MEMORY_USAGE_THRESHOLD, the node daemon
// kills one worker — the most recently started one running retriable tasks, before tasks that
// cannot be retried, before actors — so that the kernel's OOM killer never has to choose. Its
// owner retries the task later with back-off; after the last retry the error says the task was
// killed for memory and how much the node used.
//
// The functions below read memory use and choose the worker; MemoryMonitor runs the check on
// the daemon's loop and asks the daemon (through hooks) for candidates and to kill.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/rpc/event_loop.h"

#include "lumen/ids.h"

namespace lumen::node {

struct MemoryUsage {
  int64_t used = 0;   // bytes in use (not reclaimable page cache)
  int64_t total = 0;  // bytes the node may use
  double Fraction() const { return total > 0 ? static_cast<double>(used) / total : 0; }
};

// "/proc/meminfo" text -> used = MemTotal - MemAvailable; nullopt when either is missing.
std::optional<MemoryUsage> ParseMeminfo(std::string_view meminfo);
// A cgroup v2 group's memory.max, memory.current and memory.stat -> used = current minus its
// inactive file pages; nullopt when the group has no limit ("max") or a file is malformed.
std::optional<MemoryUsage> ParseCgroupMemory(std::string_view max, std::string_view current,
                                             std::string_view stat);
// The machine's memory use, or its cgroup's when this process's cgroup v2 group (or a parent)
// sets a smaller limit. Reads /proc and /sys; total = 0 when nothing could be read.
MemoryUsage ReadMemoryUsage();
// "21.3 GiB of 23.5 GiB (0.91)".
std::string DescribeMemoryUsage(const MemoryUsage& usage);

// A worker the monitor may kill.
struct KillCandidate {
  enum class Kind { kRetriableTask, kTask, kActor };  // the order in which they are chosen
  WorkerID worker;
  Kind kind = Kind::kRetriableTask;
  std::chrono::steady_clock::time_point started;  // when it got its lease (its work)
};

// The index of the worker to kill: of the first kind that has any candidate, the most
// recently started (it has done the least work). nullopt when `candidates` is empty.
std::optional<size_t> ChooseWorkerToKill(const std::vector<KillCandidate>& candidates);

// Checks the node's memory use every `period` and, past `threshold`, kills one worker (chosen
// by ChooseWorkerToKill) and waits for its death before it may kill another: memory is freed
// only when the process is gone. Not thread-safe: the daemon's loop thread calls everything
// (tests may call Check() directly without Start()).
class MemoryMonitor {
 public:
  struct Hooks {
    std::function<MemoryUsage()> read_usage;                 // ReadMemoryUsage, or a test's
    std::function<std::vector<KillCandidate>()> candidates;  // workers running tasks, actors
    std::function<void(const WorkerID& worker, const std::string& reason)> kill;
  };
  // `node` names the node in the reasons and logs.
  MemoryMonitor(rpc::EventLoop* loop, std::string node, double threshold,
                std::chrono::milliseconds period, Hooks hooks);
  ~MemoryMonitor();
  MemoryMonitor(const MemoryMonitor&) = delete;
  MemoryMonitor& operator=(const MemoryMonitor&) = delete;

  // Checks every period until Stop() (nothing when the period is 0 or the threshold >= 1).
  void Start();
  void Stop();
  // One check: reads memory use and kills a worker when it is past the threshold.
  void Check();
  // Every worker death, from the daemon: the death of the worker killed last allows the next.
  void OnWorkerDied(const WorkerID& worker);
  // Whether this monitor killed `worker` (remembered for the last 10,000 kills).
  bool KilledForMemory(const WorkerID& worker) const { return killed_.count(worker) > 0; }

 private:
  void Schedule();

  rpc::EventLoop* const loop_;
  const std::string node_;
  const double threshold_;
  const std::chrono::milliseconds period_;
  const Hooks hooks_;

  uint64_t timer_ = 0;
  std::optional<WorkerID> dying_;  // killed, not yet reported dead
  std::chrono::steady_clock::time_point dying_since_{};
  std::unordered_set<WorkerID> killed_;
  std::deque<WorkerID> kill_order_;  // bounds killed_
  std::chrono::steady_clock::time_point last_nothing_to_kill_log_{};
};

}  // namespace lumen::node
