// A head under a flood of half-open, unauthenticated connections from the same machine: each
// sends two bytes of a frame header and never the Hello. Measures how long `lumen status` takes
// with and without the flood (same run), the daemon's CPU while the flood is held, how much its
// log grew, and how many flood connections the daemon closed at its handshake deadline.
//
//   lumen_bench_flood [--connections N] [--lumen PATH]
//
// Prints `name value unit` lines (see README.md here).
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_report.h"

namespace {

using lumen::bench::Now;
using lumen::bench::ProcessCpuSeconds;
using lumen::bench::Report;

struct Shell {
  int code = -1;
  std::string out;
};

Shell Run(const std::string& cmd) {
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

int FreePort() {
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

int ConnectHalfOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  ::send(fd, "\x10\x00", 2, MSG_NOSIGNAL);
  return fd;
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

// Seconds one `lumen status` takes (the best of three: the figure is a latency, not a load).
double TimeStatus(const std::string& cli_env) {
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    double t0 = Now();
    Shell s = Run(cli_env + " status");
    double t = Now() - t0;
    if (s.code != 0) {
      std::fprintf(stderr, "lumen status failed: %s\n", s.out.c_str());
      return -1;
    }
    best = std::min(best, t);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int connections = 20000;
  std::string lumen = LUMEN_CLI;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--connections") == 0) connections = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--lumen") == 0) lumen = argv[i + 1];
  }
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  connections = std::min<int>(connections, static_cast<int>(lim.rlim_cur) - 64);

  const std::string root = "/tmp/lumen-bench-flood-" + std::to_string(::getpid());
  std::filesystem::remove_all(root);
  const std::string cli = "LUMEN_SESSION_ROOT=" + root + " " + lumen;
  const int port = FreePort();
  Shell start = Run(cli + " start --head --port " + std::to_string(port) + " --num-cpus 1");
  if (start.code != 0) {
    std::fprintf(stderr, "lumen start failed: %s\n", start.out.c_str());
    return 1;
  }
  const std::string session = std::filesystem::read_symlink(root + "/session_latest").string();
  const std::string session_dir =
      session.empty() || session[0] == '/' ? session : root + "/" + session;
  std::ifstream pid_file(session_dir + "/pid");
  int pid = 0;
  pid_file >> pid;
  const std::string log = session_dir + "/logs/lumen-daemon.log";

  const double idle_status = TimeStatus(cli);
  Report("flood_status_idle", idle_status * 1e3, "ms");

  const int64_t log_before = FileSize(log);
  const double cpu_before = ProcessCpuSeconds(pid);
  const double t0 = Now();
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(connections));
  int refused = 0;
  for (int i = 0; i < connections; ++i) {
    int fd = ConnectHalfOpen(port);
    if (fd < 0) {
      ++refused;
      continue;
    }
    fds.push_back(fd);
  }
  const double open_s = Now() - t0;
  Report("flood_connections_opened", static_cast<double>(fds.size()), "connections");
  Report("flood_connections_refused", refused, "connections");
  Report("flood_open_time", open_s, "s");

  const double flood_status = TimeStatus(cli);
  Report("flood_status_under_flood", flood_status * 1e3, "ms");
  if (idle_status > 0 && flood_status > 0) {
    Report("flood_status_ratio", flood_status / idle_status, "x_idle");
  }
  // Hold the flood past the handshake deadline, then count what the daemon closed.
  std::this_thread::sleep_for(std::chrono::seconds(7));
  int closed = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    char c;
    if (::poll(&p, 1, 0) == 1 && ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) ++closed;
  }
  const double held_s = Now() - t0;
  const double cpu = ProcessCpuSeconds(pid) - cpu_before;
  Report("flood_closed_by_daemon", closed, "connections");
  Report("flood_daemon_cpu", 100.0 * cpu / held_s, "percent_of_a_core");
  Report("flood_daemon_log_growth", static_cast<double>(FileSize(log) - log_before) / 1e6, "MB");
  const double after_status = TimeStatus(cli);
  Report("flood_status_after", after_status * 1e3, "ms");
  for (int fd : fds) ::close(fd);
  Run(cli + " stop");
  std::filesystem::remove_all(root);
  return flood_status > 0 && after_status > 0 ? 0 : 1;
}
