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
#include "server_process.h"

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
    gcs::RedisOptions o;
    o.address = address();
    o.password = password_;
    return process_.Start(
        so, "redis-server", [&] { return gcs::RedisGcsStore::Connect(o).ok(); }, error,
        std::chrono::seconds(20));
  }

  // Freezes the server (SIGSTOP): it accepts nothing and answers nothing until Resume().
  void Pause() { process_.Pause(); }
  void Resume() { process_.Resume(); }
  void Stop() { process_.Stop(); }

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
  ServerProcess process_;
};

}  // namespace lumen::testing
