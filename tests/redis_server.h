// A real `redis-server` for tests: started on a Unix socket in its own directory, no
// persistence, stopped (SIGTERM, reaped) on destruction.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "common/process.h"
#include "gcs/redis_gcs_store.h"

namespace lumen::testing {

class RedisServer {
 public:
  // `dir` must be short enough for a socket path (< 108 bytes).
  explicit RedisServer(std::string dir, std::string password = "")
      : dir_(std::move(dir)), password_(std::move(password)) {
    std::filesystem::create_directories(dir_);
  }
  ~RedisServer() { Stop(); }

  // Starts the server and waits until it answers; false (with `error`) if it does not.
  bool Start(std::string* error) {
    SpawnOptions so;
    so.argv = {FindInPath("redis-server"),
               "--port",
               "0",
               "--unixsocket",
               socket_path(),
               "--unixsocketperm",
               "700",
               "--save",
               "",
               "--appendonly",
               "no",
               "--dir",
               dir_};
    if (!password_.empty()) so.argv.insert(so.argv.end(), {"--requirepass", password_});
    so.env = EnvironmentWith({});
    so.log_path = dir_ + "/redis.log";
    auto child = SpawnProcess(so);
    if (!child.ok()) {
      *error = child.status().ToString();
      return false;
    }
    pid_ = child->pid;
    if (child->pidfd >= 0) ::close(child->pidfd);
    gcs::RedisOptions o;
    o.address = address();
    o.password = password_;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (gcs::RedisGcsStore::Connect(o).ok()) return true;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *error = "redis-server " + DescribeExit(status) + "; see " + so.log_path;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling for readiness
    }
    *error = "redis-server did not answer within 20 s; see " + so.log_path;
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

  // Full path of `name` found in $PATH (SpawnProcess does not search it); `name` if absent.
  static std::string FindInPath(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string candidate = dirs.substr(start, end - start) + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      start = end + 1;
    }
    return name;
  }

  std::string socket_path() const { return dir_ + "/redis.sock"; }
  std::string address() const { return "unix:" + socket_path(); }

 private:
  std::string dir_;
  std::string password_;
  pid_t pid_ = -1;
};

}  // namespace lumen::testing
