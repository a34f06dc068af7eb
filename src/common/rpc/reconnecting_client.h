// A client connection that outlives its server's restarts: the link from node daemons, drivers
// and workers to the control service (which may restart on a persistent store, Redis).
//
// When the connection drops, the client connects again every `retry_ms` (growing to a second)
// until `reconnect_timeout_ms` has passed since the loss. Each new connection first runs the
// owner's `on_connected` (re-registering what the owner holds: its node, its job, its
// subscriptions); only when that reports success does the client count as connected again.
// Meanwhile calls and messages wait in a queue and go out, in order, once it is; a call in
// flight when the connection dropped is sent again on the next one — so every request sent
// through this client must be safe to repeat (the control service's are: creations carry
// their ids, the rest are lookups, subscriptions or idempotent updates). When the timeout
// passes without a connection, the client gives up for good: waiting and later calls fail
// with an Unavailable error naming the address and the timeout, and `on_lost` runs.
//
// Thread safety: every method may be called from any thread (CallSync not from the loop
// thread). Callbacks, `on_connected` and `on_lost` run on the loop thread.
#pragma once

#include <google/protobuf/message_lite.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace lumen::rpc {

class ReconnectingClient : public std::enable_shared_from_this<ReconnectingClient> {
 public:
  struct Options {
    std::string address;
    std::string token;
    const Dispatcher* dispatcher = nullptr;  // handles what the server sends; must outlive this
    // How long the server may be unreachable before the client gives up (<= 0: at once,
    // the behaviour of a plain connection).
    int64_t reconnect_timeout_ms = 60000;
    int64_t retry_ms = 100;  // the first reconnect attempt's delay (doubling up to 1 s)
    // What the server must hear first on a new connection (not the first one, which the owner
    // sets up itself after Connect). Calls `done` with OK when the connection may carry the
    // queued requests; an error closes it and the client tries again, or, when the error is
    // final (`FailedPrecondition`: the server refuses this client for good), gives up.
    std::function<void(const ConnectionPtr&, std::function<void(const Status&)> done)> on_connected;
    std::function<void(const Status&)> on_lost;  // gave up (not after Close())
  };

  // Connects (blocking up to `connect_timeout_ms`, < 0: the config's) and returns the client.
  static StatusOr<std::shared_ptr<ReconnectingClient>> Connect(EventLoop* loop, Options options,
                                                               int64_t connect_timeout_ms = -1);
  ~ReconnectingClient();

  using ResponseCallback = Connection::ResponseCallback;
  // `timeout_ms` bounds each attempt once sent; the wait for a connection is bounded by the
  // reconnect timeout.
  void Call(uint16_t type, const google::protobuf::MessageLite& req, ResponseCallback cb,
            int64_t timeout_ms = -1);
  Status CallSync(uint16_t type, const google::protobuf::MessageLite& req,
                  google::protobuf::MessageLite* reply, int64_t timeout_ms = -1);
  // One-way: queued while disconnected (and sent once connected), dropped after giving up.
  void Send(uint16_t type, const google::protobuf::MessageLite& msg);
  // One-way, only if connected now (heartbeats and reports that a later one replaces).
  void SendIfConnected(uint16_t type, const google::protobuf::MessageLite& msg);

  // Stops for good: queued calls fail with `reason`; no reconnects.
  void Close(const Status& reason);
  // True once closed or given up.
  bool closed() const;
  bool connected() const;
  // Whether `c` is (or was) one of this client's connections: frames from the server arrive
  // on it.
  bool Owns(const ConnectionPtr& c) const;
  // The current connection (null while reconnecting): for code that needs a plain connection
  // for a single exchange and handles its failure.
  ConnectionPtr connection() const;
  const std::string& address() const { return options_.address; }

 private:
  ReconnectingClient(EventLoop* loop, Options options);

  struct Queued {
    uint16_t type = 0;
    std::shared_ptr<google::protobuf::MessageLite> msg;
    ResponseCallback cb;  // null: one-way
    int64_t timeout_ms = -1;
  };
  enum class State { kConnected, kReconnecting, kClosed };

  void Attach(const ConnectionPtr& conn);
  void OnClosed(const ConnectionPtr& conn, const Status& why);  // loop thread
  void TryReconnect();                                          // loop thread
  void OnReconnected(const ConnectionPtr& conn, const Status& st);
  void GiveUp(const Status& why);
  void Enqueue(Queued q);
  void SendQueued(Queued q, const ConnectionPtr& conn);
  void FailAll(std::deque<Queued> calls, const Status& why);
  Status LostError() const;

  EventLoop* const loop_;
  const Options options_;
  // Every connection of this client carries it as its context (Owns()).
  const std::shared_ptr<int> tag_ = std::make_shared<int>(0);
  mutable Mutex mu_;
  State state_ LUMEN_GUARDED_BY(mu_) = State::kConnected;
  ConnectionPtr conn_ LUMEN_GUARDED_BY(mu_);
  std::deque<Queued> queue_ LUMEN_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point lost_at_ LUMEN_GUARDED_BY(mu_);
  // Reconnected without an `on_connected` exchange, and no reply has come on it yet.
  bool unconfirmed_ LUMEN_GUARDED_BY(mu_) = false;
  int64_t delay_ms_ LUMEN_GUARDED_BY(mu_) = 0;
  uint64_t retry_timer_ LUMEN_GUARDED_BY(mu_) = 0;
  Status final_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::rpc
