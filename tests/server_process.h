// A server process a test starts (redis-server, s3rver): spawned with its output in a log,
// waited for until it answers, frozen and thawed on demand, stopped (SIGTERM, reaped) on
// destruction. Test-only code.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "common/process.h"

namespace lumen::testing {

class ServerProcess {
 public:
  ~ServerProcess() { Stop(); }

  // Spawns `so` (`name` in messages) and polls `answers` until it is true; false (with
  // `error`) when the process exits first or `limit` passes.
  bool Start(const SpawnOptions& so, const std::string& name, const std::function<bool()>& answers,
             std::string* error, std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto child = SpawnProcess(so);
    if (!child.ok()) {
      *error = child.status().ToString();
      return false;
    }
    pid_ = child->pid;
    if (child->pidfd >= 0) ::close(child->pidfd);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (answers()) return true;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *error = name + " " + DescribeExit(status) + "; see " + so.log_path;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling for readiness
    }
    *error =
        name + " did not answer within " + std::to_string(limit.count()) + " s; see " + so.log_path;
    return false;
  }

  // Freezes the server (SIGSTOP): it accepts nothing and answers nothing until Resume().
  void Pause() { ::kill(pid_, SIGSTOP); }
  void Resume() { ::kill(pid_, SIGCONT); }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace lumen::testing
