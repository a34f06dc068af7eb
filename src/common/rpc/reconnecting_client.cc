#include "common/rpc/reconnecting_client.h"

#include <algorithm>
#include <future>
#include <utility>

#include "common/config.h"
#include "common/logging.h"

namespace lumen::rpc {

namespace {
constexpr int64_t kMaxRetryMs = 1000;

std::shared_ptr<google::protobuf::MessageLite> Copy(const google::protobuf::MessageLite& m) {
  std::shared_ptr<google::protobuf::MessageLite> c(m.New());
  c->CheckTypeAndMergeFrom(m);
  return c;
}
}  // namespace

ReconnectingClient::ReconnectingClient(EventLoop* loop, Options options)
    : loop_(loop), options_(std::move(options)) {}

ReconnectingClient::~ReconnectingClient() = default;

StatusOr<std::shared_ptr<ReconnectingClient>> ReconnectingClient::Connect(
    EventLoop* loop, Options options, int64_t connect_timeout_ms) {
  std::shared_ptr<ReconnectingClient> client(new ReconnectingClient(loop, std::move(options)));
  std::weak_ptr<ReconnectingClient> weak = client;
  LUMEN_ASSIGN_OR_RETURN(ConnectionPtr conn,
                         rpc::Connect(loop, client->options_.address, client->options_.dispatcher,
                                      client->options_.token, connect_timeout_ms,
                                      [weak](const ConnectionPtr& c, const Status& why) {
                                        if (auto self = weak.lock()) self->OnClosed(c, why);
                                      }));
  conn->set_context(client->tag_);
  client->Attach(conn);
  return client;
}

void ReconnectingClient::Attach(const ConnectionPtr& conn) {
  {
    MutexLock lock(mu_);
    conn_ = conn;
  }
  // Closed before it was attached: its close callback found another connection current.
  if (conn->closed()) {
    Status why = conn->close_reason();
    loop_->Post([self = shared_from_this(), conn, why] { self->OnClosed(conn, why); });
  }
}

Status ReconnectingClient::LostError() const {
  const int64_t ms = options_.reconnect_timeout_ms;
  return UnavailableError(
      "the control service at " + options_.address + " has been unreachable for " +
      (ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms") +
      " (LUMEN_GCS_RECONNECT_TIMEOUT_S)");
}

void ReconnectingClient::OnClosed(const ConnectionPtr& conn, const Status& why) {
  bool new_outage = false;
  {
    MutexLock lock(mu_);
    if (conn_ != conn || state_ != State::kConnected) return;
    conn_.reset();
    if (options_.reconnect_timeout_ms <= 0) {
      state_ = State::kClosed;
      final_ = why.ok() ? UnavailableError("connection to " + options_.address + " closed") : why;
    } else {
      state_ = State::kReconnecting;
      // A connection made without a registration and lost before anything came back on it
      // (its connect failed) does not end the outage: its clock and back-off go on.
      new_outage = !unconfirmed_;
      unconfirmed_ = false;
      if (new_outage) {
        lost_at_ = std::chrono::steady_clock::now();
        delay_ms_ = std::max<int64_t>(options_.retry_ms, 1);
      }
    }
  }
  if (options_.reconnect_timeout_ms <= 0) {
    GiveUp(why);
    return;
  }
  if (new_outage) {
    LUMEN_LOG(WARNING) << "lost the control service at " << options_.address << " (" << why
                       << "); reconnecting for up to " << options_.reconnect_timeout_ms
                       << " ms (LUMEN_GCS_RECONNECT_TIMEOUT_S)";
  }
  MutexLock lock(mu_);
  retry_timer_ = loop_->RunAfter(std::chrono::milliseconds(delay_ms_),
                                 [self = shared_from_this()] { self->TryReconnect(); });
}

void ReconnectingClient::TryReconnect() {
  int64_t delay;
  {
    MutexLock lock(mu_);
    retry_timer_ = 0;
    if (state_ != State::kReconnecting) return;
    if (std::chrono::steady_clock::now() - lost_at_ >=
        std::chrono::milliseconds(options_.reconnect_timeout_ms)) {
      state_ = State::kClosed;
      final_ = LostError();
    }
    delay = delay_ms_;
    delay_ms_ = std::min(delay_ms_ * 2, kMaxRetryMs);
  }
  if (closed()) {
    GiveUp(LostError());
    return;
  }
  std::weak_ptr<ReconnectingClient> weak = shared_from_this();
  auto retry = [this, delay] {
    MutexLock lock(mu_);
    if (state_ != State::kReconnecting || retry_timer_) return;
    retry_timer_ = loop_->RunAfter(std::chrono::milliseconds(delay),
                                   [self = shared_from_this()] { self->TryReconnect(); });
  };
  // A connection that fails before it is registered: try again after the delay.
  auto conn = ConnectInBackground(loop_, options_.address, options_.dispatcher, options_.token,
                                  /*timeout_ms=*/-1,
                                  [weak, retry](const ConnectionPtr& c, const Status& why) {
                                    auto self = weak.lock();
                                    if (!self) return;
                                    bool current;
                                    {
                                      MutexLock lock(self->mu_);
                                      current = self->conn_ == c;
                                    }
                                    if (current) {
                                      self->OnClosed(c, why);
                                    } else {
                                      retry();
                                    }
                                  });
  if (!conn.ok()) {
    retry();
    return;
  }
  ConnectionPtr c = *conn;
  c->set_context(tag_);
  if (!options_.on_connected) {
    OnReconnected(c, Status::OK());
    return;
  }
  options_.on_connected(c, [weak, c](const Status& st) {
    if (auto self = weak.lock()) {
      self->loop_->Post([self, c, st] { self->OnReconnected(c, st); });
    }
  });
}

void ReconnectingClient::OnReconnected(const ConnectionPtr& conn, const Status& st) {
  if (!st.ok()) {
    if (st.code() == StatusCode::kFailedPrecondition) {
      {
        MutexLock lock(mu_);
        if (state_ != State::kReconnecting) return;
        state_ = State::kClosed;
        final_ = st;
      }
      conn->Close(Status::OK());
      GiveUp(st);
      return;
    }
    LUMEN_LOG(WARNING) << "re-registering with the control service at " << options_.address << ": "
                       << st << "; trying again";
    conn->Close(st);  // its close callback schedules the next attempt
    return;
  }
  if (conn->closed()) return;  // its close callback already scheduled the next attempt
  std::deque<Queued> queued;
  {
    MutexLock lock(mu_);
    if (state_ != State::kReconnecting) {
      conn->Close(Status::OK());
      return;
    }
    state_ = State::kConnected;
    conn_ = conn;
    unconfirmed_ = !options_.on_connected;
    queued.swap(queue_);
  }
  LUMEN_LOG(INFO) << "reconnected to the control service at " << options_.address;
  for (auto& q : queued) SendQueued(std::move(q), conn);
}

void ReconnectingClient::GiveUp(const Status& why) {
  std::deque<Queued> queued;
  {
    MutexLock lock(mu_);
    queued.swap(queue_);
  }
  FailAll(std::move(queued), options_.reconnect_timeout_ms > 0 ? LostError() : why);
  // Without reconnecting (a link that ends with its server, as the head's own daemon's) the
  // owner's on_lost says whatever is worth saying.
  if (options_.reconnect_timeout_ms > 0) {
    LUMEN_LOG(ERROR) << "gave up on the control service at " << options_.address << ": " << why;
  }
  if (options_.on_lost) options_.on_lost(why);
}

void ReconnectingClient::FailAll(std::deque<Queued> calls, const Status& why) {
  for (auto& q : calls) {
    if (q.cb) q.cb(why, {});
  }
}

void ReconnectingClient::SendQueued(Queued q, const ConnectionPtr& conn) {
  if (!q.cb) {
    conn->Send(q.type, *q.msg);
    return;
  }
  std::weak_ptr<ReconnectingClient> weak = shared_from_this();
  auto msg = q.msg;
  auto cb = q.cb;
  const uint16_t type = q.type;
  const int64_t timeout = q.timeout_ms;
  conn->Call(
      type, *msg,
      [weak, conn, type, msg, cb, timeout](const Status& st, std::string_view payload) {
        auto self = weak.lock();
        if (st.ok() && self) {
          MutexLock lock(self->mu_);
          self->unconfirmed_ = false;
        }
        // Lost with its connection (not an answer, not a timeout): sent again on the next.
        if (!st.ok() && conn->closed() && self && !self->closed()) {
          self->Enqueue(Queued{type, msg, cb, timeout});
          return;
        }
        cb(st, payload);
      },
      timeout);
}

void ReconnectingClient::Enqueue(Queued q) {
  ConnectionPtr conn;
  Status final;
  {
    MutexLock lock(mu_);
    switch (state_) {
      case State::kConnected:
        conn = conn_;
        break;
      case State::kReconnecting:
        queue_.push_back(std::move(q));
        return;
      case State::kClosed:
        final = final_;
        break;
    }
  }
  if (conn) {
    SendQueued(std::move(q), conn);
  } else if (q.cb) {
    q.cb(final, {});
  }
}

void ReconnectingClient::Call(uint16_t type, const google::protobuf::MessageLite& req,
                              ResponseCallback cb, int64_t timeout_ms) {
  Enqueue(Queued{type, Copy(req), std::move(cb), timeout_ms});
}

Status ReconnectingClient::CallSync(uint16_t type, const google::protobuf::MessageLite& req,
                                    google::protobuf::MessageLite* reply, int64_t timeout_ms) {
  LUMEN_CHECK(!loop_->InLoopThread()) << "CallSync on the loop thread would deadlock";
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  Call(
      type, req,
      [promise, reply](const Status& st, std::string_view payload) {
        if (st.ok() && reply && !ParsePayload(payload, reply)) {
          promise->set_value(InternalError("malformed reply"));
          return;
        }
        promise->set_value(st);
      },
      timeout_ms);
  return future.get();
}

void ReconnectingClient::Send(uint16_t type, const google::protobuf::MessageLite& msg) {
  Enqueue(Queued{type, Copy(msg), nullptr, -1});
}

void ReconnectingClient::SendIfConnected(uint16_t type, const google::protobuf::MessageLite& msg) {
  if (ConnectionPtr c = connection()) c->Send(type, msg);
}

void ReconnectingClient::Close(const Status& reason) {
  ConnectionPtr conn;
  std::deque<Queued> queued;
  Status why;
  {
    MutexLock lock(mu_);
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    final_ =
        reason.ok() ? UnavailableError("connection to " + options_.address + " closed") : reason;
    why = final_;
    conn = std::move(conn_);
    queued.swap(queue_);
    if (retry_timer_) loop_->CancelTimer(retry_timer_);
    retry_timer_ = 0;
  }
  if (conn) conn->Close(reason);
  if (!queued.empty()) {
    loop_->Post([this, queued = std::move(queued), why, self = shared_from_this()]() mutable {
      FailAll(std::move(queued), why);
    });
  }
}

bool ReconnectingClient::closed() const {
  MutexLock lock(mu_);
  return state_ == State::kClosed;
}

bool ReconnectingClient::connected() const {
  MutexLock lock(mu_);
  return state_ == State::kConnected && conn_ && !conn_->closed();
}

bool ReconnectingClient::Owns(const ConnectionPtr& c) const {
  return c && c->context<int>() == tag_;
}

ConnectionPtr ReconnectingClient::connection() const {
  MutexLock lock(mu_);
  return state_ == State::kConnected ? conn_ : nullptr;
}

}  // namespace lumen::rpc
