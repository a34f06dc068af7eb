// What the cluster benchmarks share: a cluster of node daemons on this machine started with the
// `lumen` CLI (LUMEN_CLI, set by CMake), and runs of the benchmark program itself as a driver
// of it. Not thread-safe: one orchestrating thread (Drive may run on another thread while it
// calls KillAndRestart).
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace lumen::bench {

inline constexpr const char* kClusterToken = "benchbenchbenchbenchbenchbench00";

struct Shell {
  int code = -1;
  std::string out;  // stdout and stderr
};

// Runs `cmd` with /bin/sh and collects its output.
inline Shell Run(const std::string& cmd) {
  Shell r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  int port = ntohs(sa.sin_port);
  ::close(fd);
  return port;
}

class Cluster {
 public:
  // One node per entry of `zones` (labelled zone=<entry>; the first is the head), each with
  // `cpus` CPUs and an object store of `store` ("1G"); sessions under /tmp/lumen-bench-<name>-*.
  Cluster(const std::string& name, const std::vector<std::string>& zones, const std::string& store,
          int cpus) {
    root_ = "/tmp/lumen-bench-" + name + "-" + std::to_string(::getpid());
    std::filesystem::remove_all(root_);
    env_ = "LUMEN_SESSION_ROOT=" + root_ + " ";
    address_ = "127.0.0.1:" + std::to_string(FreePort());
    const std::string common = " --token " + std::string(kClusterToken) + " --num-cpus " +
                               std::to_string(cpus) + " --object-store-memory " + store;
    for (size_t i = 0; i < zones.size(); ++i) {
      std::string where = i == 0 ? " --head --port " + address_.substr(address_.find(':') + 1)
                                 : " --address " + address_;
      starts_[zones[i]] = " start" + where + " --labels zone=" + zones[i] + common;
      if (!Start(zones[i])) std::exit(1);
    }
  }
  ~Cluster() {
    Run(env_ + LUMEN_CLI + " stop");
    std::filesystem::remove_all(root_);
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // The daemon of the node in `zone` (-1 when its start did not say).
  int DaemonPid(const std::string& zone) const {
    auto it = pids_.find(zone);
    return it == pids_.end() ? -1 : it->second;
  }

  // Kills the node of `zone` (SIGKILL of its daemon; its workers die with it) and starts it
  // again at once (it joins as a new node). False when it could not be started.
  bool KillAndRestart(const std::string& zone) {
    ::kill(DaemonPid(zone), SIGKILL);
    return Start(zone);
  }

  // Runs this program as a driver of the cluster (`self --driver SECTION [--quick]`) with
  // `extra_env`; prints and returns what it printed; a failure clears *ok.
  std::string Drive(const std::string& self, const std::string& section, bool quick, bool* ok,
                    const std::string& extra_env = "") {
    Shell s =
        Run(env_ + extra_env + " LUMEN_ADDRESS=" + address_ + " LUMEN_TOKEN=" + kClusterToken +
            " " + self + " --driver " + section + (quick ? " --quick" : ""));
    std::fputs(s.out.c_str(), stdout);
    std::fflush(stdout);
    if (s.code != 0) *ok = false;
    return s.out;
  }

 private:
  bool Start(const std::string& zone) {
    Shell s = Run(env_ + LUMEN_CLI + starts_[zone]);
    if (s.code != 0) {
      std::fprintf(stderr, "lumen start failed:\n%s\n", s.out.c_str());
      return false;
    }
    auto at = s.out.find("(pid ");  // "Lumen node started (pid N)."
    pids_[zone] = at == std::string::npos ? -1 : std::atoi(s.out.c_str() + at + 5);
    return true;
  }

  std::string root_, env_, address_;
  std::map<std::string, std::string> starts_;  // zone -> arguments of `lumen start`
  std::map<std::string, int> pids_;
};

}  // namespace lumen::bench
