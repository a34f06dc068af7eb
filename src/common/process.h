// Starting and describing child processes. Thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace lumen {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the executable path
  std::vector<std::string> env;   // complete environment, KEY=VALUE
  std::string cwd;                // empty: inherit
  std::string log_path;           // stdout and stderr appended here; empty: inherit
  std::string err_path;           // with log_path: stderr appended here instead
  bool new_session = false;       // setsid(): detach from the terminal (daemons)
};

struct ChildProcess {
  pid_t pid = -1;
  int pidfd = -1;  // readable when the child exits; -1 if the kernel lacks pidfd_open
};

// Starts a process with posix_spawn (no fork of the caller's address space).
StatusOr<ChildProcess> SpawnProcess(const SpawnOptions& options);

// The current environment as KEY=VALUE strings, with `overrides` (KEY=VALUE) replacing or
// adding entries.
std::vector<std::string> EnvironmentWith(const std::vector<std::string>& overrides);

// glibc's malloc settings a node starts its workers with, as the value of GLIBC_TUNABLES (read
// by glibc when a process starts). Workers allocate and free block-sized buffers all day;
// glibc would hand such memory back to the kernel (and serve large requests with fresh
// mappings), so each task would fault its pages in again — on a virtual machine every first
// touch exits to the hypervisor. One arena that keeps up to 256 MiB of freed memory reuses
// warm pages. And the heap is marked for transparent huge pages (madvise; nothing changes
// where the kernel's THP setting is "never"): a model's weights and activations behind 2 MiB
// pages take fewer TLB misses — ResNet-18 on one thread ran its first three forwards ~20 %
// faster and no steady forward slower than the best of 4 KiB pages, whose runs ranged 20–34 ms
// per image on this VM. Every worker gets it (or the user's GLIBC_TUNABLES); a worker removes
// Lumen's value once started (RunWorker), so the programs its tasks run get glibc's defaults.
inline constexpr char kWorkerMallocTunables[] =
    "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=67108864:"
    "glibc.malloc.trim_threshold=268435456:glibc.malloc.hugetlb=1";

// "exited with code 3", "killed by signal 9 (SIGKILL)", ...
std::string DescribeExit(int wait_status);
std::string SignalName(int sig);

// Sets this process's /proc/self/oom_score_adj (-1000: the kernel's OOM killer never picks
// it, 1000: it picks it first). Lowering it needs CAP_SYS_RESOURCE; raising it does not.
Status SetOomScoreAdj(int value);

// Raises this process's soft RLIMIT_NOFILE to its hard limit (services hold one descriptor
// per connection, worker and mapped object). Returns the soft limit now in force.
int64_t RaiseOpenFileLimit();

// Path of the running executable (/proc/self/exe resolved).
std::string SelfExecutable();

}  // namespace lumen
