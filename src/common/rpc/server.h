// Accepts connections on Unix-domain and TCP listeners and serves them with one Dispatcher.
// Unauthenticated peers cannot exhaust it: each connection must authenticate within
// `handshake_timeout_ms`; at most `max_handshaking_connections` may be in the handshake at once
// (the oldest is dropped for a new one); a listener out of descriptors (EMFILE/ENFILE) first
// drops handshaking connections, then pauses for `accept_backoff_ms` instead of spinning.
//
// Thread safety: Listen*() before or after the loop starts (from any thread); Stop() from any
// thread except the loop's. Connection callbacks run on the loop thread.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/rpc/connection.h"
#include "common/thread_annotations.h"

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

  // Overrides the handshake deadline (0: none) and the cap on connections in the handshake,
  // which default to `handshake_timeout_ms` and `max_handshaking_connections` (config). Call
  // before listening.
  void set_handshake_limits(int64_t timeout_ms, size_t max_handshaking) {
    handshake_timeout_ms_ = timeout_ms;
    max_handshaking_ = std::max<size_t>(1, max_handshaking);
  }

  // Called on the loop thread for each accepted connection (before any frame is handled) and
  // when it closes.
  void set_on_accept(ConnectionCallback cb) { on_accept_ = std::move(cb); }
  void set_on_close(std::function<void(const ConnectionPtr&, const Status&)> cb) {
    on_close_ = std::move(cb);
  }

  // Closes the listeners and every accepted connection.
  void Stop();

  // Loop thread only: connections accepted and not yet authenticated.
  size_t num_handshaking() const { return num_handshaking_; }

 private:
  void Accept(int listen_fd, bool is_unix);
  void Watch(int listen_fd, bool is_unix);
  // Out of descriptors: frees some held by unauthenticated peers, stops watching the listener
  // and watches it again after the back-off.
  void PauseListener(int listen_fd);
  // Closes the oldest connections still in the handshake until at most `keep` remain.
  void DropHandshaking(size_t keep, const char* why);

  EventLoop* const loop_;
  const Dispatcher* const dispatcher_;
  const std::string token_;
  const std::string name_;
  int64_t handshake_timeout_ms_;
  size_t max_handshaking_;
  ConnectionCallback on_accept_;
  std::function<void(const ConnectionPtr&, const Status&)> on_close_;

  Mutex mu_;
  struct Listener {
    int fd;
    uint64_t watch_id;
    std::string unix_path;
    uint64_t resume_timer = 0;  // set while paused
  };
  std::vector<Listener> listeners_ LUMEN_GUARDED_BY(mu_);
  std::set<ConnectionPtr> connections_ LUMEN_GUARDED_BY(mu_);
  bool stopped_ LUMEN_GUARDED_BY(mu_) = false;

  // Loop thread only.
  std::deque<std::weak_ptr<Connection>> handshaking_;  // in accept order; may hold stale entries
  size_t num_handshaking_ = 0;
};

// Whether `host` means every interface (0.0.0.0, ::): an address to bind, never to advertise.
bool IsWildcardHost(const std::string& host);
// The host peers are told for a service bound to `bind_host`: itself, or loopback when it is
// empty or a wildcard (a node's real address must then be given explicitly).
std::string AdvertisableHost(const std::string& bind_host);

}  // namespace lumen::rpc
