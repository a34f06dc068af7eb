// Accepts connections on Unix-domain and TCP listeners and serves them with one Dispatcher.
//
// Thread safety: Listen*() before or after the loop starts (from any thread); Stop() from any
// thread except the loop's. Connection callbacks run on the loop thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/rpc/connection.h"

namespace lumen::rpc {

class Server {
 public:
  using ConnectionCallback = std::function<void(const ConnectionPtr&)>;

  Server(EventLoop* loop, const Dispatcher* dispatcher, std::string token, std::string name);
  ~Server();

  // Listens on a Unix socket at `path` (mode 0600). Returns the address "unix:<path>".
  StatusOr<std::string> ListenUnix(const std::string& path);
  // Listens on TCP host:port (port 0 picks one). Returns "host:port" with the bound port.
  StatusOr<std::string> ListenTcp(const std::string& host, int port);

  // Called on the loop thread for each accepted connection (before any frame is handled) and
  // when it closes.
  void set_on_accept(ConnectionCallback cb) { on_accept_ = std::move(cb); }
  void set_on_close(std::function<void(const ConnectionPtr&, const Status&)> cb) {
    on_close_ = std::move(cb);
  }

  // Closes the listeners and every accepted connection.
  void Stop();

 private:
  void Accept(int listen_fd, bool is_unix);

  EventLoop* const loop_;
  const Dispatcher* const dispatcher_;
  const std::string token_;
  const std::string name_;
  ConnectionCallback on_accept_;
  std::function<void(const ConnectionPtr&, const Status&)> on_close_;

  std::mutex mu_;
  struct Listener {
    int fd;
    uint64_t watch_id;
    std::string unix_path;
  };
  std::vector<Listener> listeners_;
  std::set<ConnectionPtr> connections_;
  bool stopped_ = false;
};

}  // namespace lumen::rpc
