// What the benchmark programs share: a monotonic clock, the `name value unit` output line,
// the median of repeated measurements, and what /proc tells of this process and those below it
// (peak resident memory, CPU time, the process tree).
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

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

// The middle value (of an odd count; the upper middle of an even one): always one of `v`, 0
// for none.
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The fields of /proc/<pid>/stat after the command name (state, ppid, ...; utime and stime
// are [11] and [12]); empty when the process is gone.
inline std::vector<std::string> ProcessStatFields(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return {};
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// utime + stime of `pid`, in seconds (0 when it is gone).
inline double ProcessCpuSeconds(int pid) {
  const std::vector<std::string> f = ProcessStatFields(pid);
  if (f.size() < 13) return 0;
  return (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// This process and every process below it (an embedded cluster's daemons and workers).
inline std::vector<int> ProcessTree() {
  std::map<int, std::vector<int>> children;
  if (DIR* d = ::opendir("/proc")) {  // readdir, not directory_iterator: no throw as pids go
    while (dirent* e = ::readdir(d)) {
      const int pid = std::atoi(e->d_name);
      if (pid <= 0) continue;
      const std::vector<std::string> f = ProcessStatFields(pid);
      if (f.size() > 1) children[std::atoi(f[1].c_str())].push_back(pid);
    }
    ::closedir(d);
  }
  std::vector<int> tree, todo{::getpid()};
  while (!todo.empty()) {
    const int pid = todo.back();
    todo.pop_back();
    tree.push_back(pid);
    for (int c : children[pid]) todo.push_back(c);
  }
  return tree;
}

}  // namespace lumen::bench
