// Framed, authenticated message channel over a Unix-domain or TCP socket.
//
// Frame = 16-byte header (payload length u32, message type u16, kind u8, flags u8,
// request id u64; little-endian) + payload (a serialized protobuf message, or an error text).
// The first frame a client sends is kHello carrying the cluster token; a server refuses every
// other frame until the token matched, answers a wrong or missing token with kAuthError and a
// readable message, and closes the connection on any malformed frame. See docs/design/wire.md.
//
// Thread safety: all Send*/Call*/Close methods are thread-safe. Handlers, response callbacks
// and the close callback run on the owning EventLoop's thread.
#pragma once

#include <google/protobuf/message_lite.h>

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/rpc/event_loop.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace lumen::rpc {

enum class FrameKind : uint8_t { kOneWay = 0, kRequest = 1, kResponse = 2, kErrorResponse = 3 };

constexpr uint8_t kFlagHasFd = 1;
// The payload is [u32 head size][head][raw bytes]: a reply sent with ReplyWithFileRange. A
// caller that used CallInto receives the raw bytes straight into its buffer.
constexpr uint8_t kFlagRawTail = 2;
constexpr size_t kHeaderSize = 16;
constexpr uint32_t kMaxPayload = 512u << 20;  // after authentication
constexpr uint32_t kMaxUnauthenticatedPayload = 64u << 10;

// Message type ids used by the transport itself; services use ids >= 100.
enum : uint16_t { kMsgHello = 1, kMsgHelloOk = 2, kMsgAuthError = 3 };

struct Frame {
  uint16_t type = 0;
  FrameKind kind = FrameKind::kOneWay;
  uint8_t flags = 0;
  uint64_t request_id = 0;
  std::string_view payload;
  int fd = -1;  // a received file descriptor; the handler owns it if it keeps it (else closed)
};

// What a deferred reply needs of its request (the payload view does not outlive the handler).
inline Frame ReplyHandle(const Frame& request) {
  Frame handle;
  handle.type = request.type;
  handle.kind = request.kind;
  handle.request_id = request.request_id;
  return handle;
}

class Connection;
using ConnectionPtr = std::shared_ptr<Connection>;
using Handler = std::function<void(const ConnectionPtr&, Frame&)>;

// Maps message types to handlers. Filled before any connection uses it; read-only afterwards.
class Dispatcher {
 public:
  void Register(uint16_t type, Handler handler) { handlers_[type] = std::move(handler); }
  const Handler* Find(uint16_t type) const {
    auto it = handlers_.find(type);
    return it == handlers_.end() ? nullptr : &it->second;
  }

 private:
  std::unordered_map<uint16_t, Handler> handlers_;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using ResponseCallback = std::function<void(const Status&, std::string_view payload)>;
  using CloseCallback = std::function<void(const ConnectionPtr&, const Status& reason)>;

  enum class Role { kClient, kServer };

  // Takes ownership of the connected, non-blocking `fd`. `dispatcher` must outlive it.
  static ConnectionPtr Create(EventLoop* loop, int fd, Role role, const Dispatcher* dispatcher,
                              std::string token, std::string peer_name, bool is_unix);
  ~Connection();

  // Registers with the loop; a client also sends its kHello first.
  void Start();

  void Send(uint16_t type, const google::protobuf::MessageLite& msg);
  // Queues the message for the loop thread to write. Messages queued by busy threads in quick
  // succession leave in one write; the calling thread never makes the syscall.
  void SendAsync(uint16_t type, const google::protobuf::MessageLite& msg);
  void SendRaw(uint16_t type, std::string_view payload);
  // Sends `frame`, whose first kHeaderSize bytes are reserved for the header (filled here):
  // large payloads built by the caller are not copied again.
  void SendPrefixed(uint16_t type, std::string frame);
  // Sends `fd` (duplicated; the caller keeps its copy) with the message. Unix sockets only.
  void SendWithFd(uint16_t type, FrameKind kind, uint64_t request_id,
                  const google::protobuf::MessageLite& msg, int fd);
  void Reply(const Frame& request, const google::protobuf::MessageLite& msg);
  void ReplyError(const Frame& request, const Status& status);
  // Replies with `head` followed by `length` bytes of file `fd` from `offset`, sent with
  // sendfile(2) from the file's pages: the bytes are not copied through this process, and the
  // kernel may still read those pages after this returns, so the caller keeps the range
  // unchanged until the peer says it has the bytes. `fd` must stay open until the connection
  // has written them or closed (the loop thread owns this: call it there). TCP only.
  void ReplyWithFileRange(const Frame& request, const google::protobuf::MessageLite& head, int fd,
                          int64_t offset, size_t length);

  // Asynchronous request; `cb` runs on the loop thread with the reply payload or an error.
  // timeout_ms < 0: no timeout.
  void Call(uint16_t type, const google::protobuf::MessageLite& req, ResponseCallback cb,
            int64_t timeout_ms = -1);
  // Like Call, for a request answered with ReplyWithFileRange: the reply's raw bytes are read
  // from the socket straight into `dest` (never through the connection's buffer), and `cb`
  // gets the head and how many raw bytes were written there. A reply longer than `capacity`
  // closes the connection (a peer's bad message); an ordinary reply reaches `cb` as with Call
  // (raw count 0). `dest` must stay writable until `cb` has run. A timeout that fires while the
  // bytes are arriving closes the connection, so nothing is written to `dest` after `cb`.
  using RawResponseCallback =
      std::function<void(const Status&, std::string_view head, size_t raw_bytes)>;
  void CallInto(uint16_t type, const google::protobuf::MessageLite& req, char* dest,
                size_t capacity, RawResponseCallback cb, int64_t timeout_ms = -1);
  // Blocking request. Must not be called from the loop thread. With `fd`, a descriptor sent
  // with the reply is stored there (-1 if none; the caller owns it).
  Status CallSync(uint16_t type, const google::protobuf::MessageLite& req,
                  google::protobuf::MessageLite* reply, int64_t timeout_ms = -1, int* fd = nullptr);

  void Close(const Status& reason);
  bool closed() const { return closed_.load(); }
  // Why the connection closed (meaningful once closed()).
  Status close_reason() const;

  // Client role, before Start(): the socket's TCP connect is still in progress. Nothing is
  // written until it completes; if it fails, or has not completed after `timeout_ms`, the
  // connection closes with that reason (pending calls fail with it).
  void set_connecting(int64_t timeout_ms) {
    connecting_ = true;
    connect_timeout_ms_ = timeout_ms;
  }
  // Set before Start(); runs once on the loop thread when the connection closes.
  void set_close_callback(CloseCallback cb) { close_cb_ = std::move(cb); }
  // Server role. Set before Start(); runs once on the loop thread when the peer's Hello carried
  // the right token. A peer that has not authenticated within `handshake_timeout_ms` (config)
  // is disconnected.
  void set_authenticated_callback(std::function<void(const ConnectionPtr&)> cb) {
    auth_cb_ = std::move(cb);
  }
  // Server role, before Start(): overrides `handshake_timeout_ms` (config); 0 disables it.
  void set_handshake_timeout_ms(int64_t ms) { handshake_timeout_ms_ = ms; }
  // Loop thread only.
  bool authenticated() const { return authenticated_; }

  // Arbitrary per-connection state for the service (e.g. which client this is).
  void set_context(std::shared_ptr<void> ctx) {
    MutexLock lock(ctx_mu_);
    context_ = std::move(ctx);
  }
  template <class T>
  std::shared_ptr<T> context() const {
    MutexLock lock(ctx_mu_);
    return std::static_pointer_cast<T>(context_);
  }

  const std::string& peer_name() const { return peer_name_; }
  EventLoop* loop() const { return loop_; }
  bool is_unix() const { return is_unix_; }

 private:
  Connection(EventLoop* loop, int fd, Role role, const Dispatcher* dispatcher, std::string token,
             std::string peer_name, bool is_unix);

  struct OutEntry {
    std::string data;
    size_t offset = 0;
    int fd = -1;  // a descriptor to pass with the first bytes (Unix sockets)
    // After `data`: bytes of this file, written with sendfile (file_fd < 0: none).
    int file_fd = -1;
    int64_t file_offset = 0;
    size_t file_left = 0;
  };

  void Enqueue(std::string data, int fd = -1);
  void Enqueue(OutEntry entry);
  bool FlushLocked() LUMEN_REQUIRES(write_mu_);  // returns false on a fatal write error
  void OnEvents(uint32_t events);
  void OnReadable();
  // What a recv() result means: bytes, try again (EINTR), nothing more for now, or the peer is
  // gone (the connection is closed here).
  enum class RecvResult { kData, kAgain, kDrained, kClosed };
  RecvResult OnRecv(ssize_t n);
  void ReserveRead(size_t free_bytes);
  bool ProcessFrames();  // false: connection closed
  // A kFlagRawTail response whose head is buffered: starts receiving its raw bytes into the
  // caller's buffer. Returns false if the frame is not for a CallInto request (read it whole).
  bool StartRawReceive(uint64_t request_id, uint32_t len, uint32_t head_len);
  // The raw bytes of the current raw response have all arrived: runs its callback.
  void FinishRawReceive();
  bool HandleFrame(Frame& frame);
  void CloseInLoop(const Status& reason);
  static std::string BuildFrame(uint16_t type, FrameKind kind, uint8_t flags, uint64_t request_id,
                                const google::protobuf::MessageLite* msg,
                                std::string_view raw = {});

  EventLoop* const loop_;
  const int fd_;
  const Role role_;
  const Dispatcher* const dispatcher_;
  const std::string token_;
  const std::string peer_name_;
  const bool is_unix_;

  std::atomic<bool> closed_{false};
  std::atomic<bool> started_{false};
  CloseCallback close_cb_;

  std::function<void(const ConnectionPtr&)> auth_cb_;
  int64_t handshake_timeout_ms_ = -1;  // < 0: from the config

  // Loop thread only (set_connecting() runs before the loop sees the connection).
  bool authenticated_ = false;
  uint64_t handshake_timer_ = 0;
  bool connecting_ = false;
  int64_t connect_timeout_ms_ = 0;
  uint64_t connect_timer_ = 0;
  char* in_data_ = nullptr;  // [in_start_, in_end_) holds unparsed bytes
  size_t in_cap_ = 0;
  size_t in_start_ = 0;
  size_t in_end_ = 0;
  std::deque<int> in_fds_;

  Mutex write_mu_;
  // Set on the loop thread; read by any thread that enqueues (to ask for EPOLLOUT).
  uint64_t watch_id_ LUMEN_GUARDED_BY(write_mu_) = 0;
  std::deque<OutEntry> out_ LUMEN_GUARDED_BY(write_mu_);
  bool want_write_ LUMEN_GUARDED_BY(write_mu_) = false;
  bool flush_posted_ LUMEN_GUARDED_BY(write_mu_) = false;

  mutable Mutex call_mu_;
  struct Pending {
    ResponseCallback cb;
    uint64_t timer_id = 0;
    std::function<void(int)> fd_sink;  // takes a descriptor sent with the reply
    RawResponseCallback raw_cb;        // CallInto: set instead of cb
    char* raw_dest = nullptr;
    size_t raw_capacity = 0;
  };
  // Loop thread only: the raw response being received (active while its bytes arrive).
  struct RawReceive {
    bool active = false;
    uint64_t request_id = 0;
    char* dest = nullptr;
    size_t total = 0;
    size_t got = 0;
    std::string head;
  };
  RawReceive raw_;
  void CallImpl(uint16_t type, const google::protobuf::MessageLite& req, Pending p,
                int64_t timeout_ms);
  // Runs a finished call's callback (either kind).
  static void Complete(Pending& p, const Status& st, std::string_view payload, size_t raw);
  std::unordered_map<uint64_t, Pending> pending_ LUMEN_GUARDED_BY(call_mu_);
  uint64_t next_request_id_ LUMEN_GUARDED_BY(call_mu_) = 1;
  Status close_reason_ LUMEN_GUARDED_BY(call_mu_);

  mutable Mutex ctx_mu_;
  std::shared_ptr<void> context_ LUMEN_GUARDED_BY(ctx_mu_);
};

// Connects to "unix:/path" or "host:port" and starts the connection. Blocks up to
// `timeout_ms` (< 0: `connect_timeout_ms` of the config) for the TCP/Unix connect (not for
// authentication, which is pipelined). For callers that may wait: the CLI, a program's Init,
// a process's first connections to its node and the control service.
StatusOr<ConnectionPtr> Connect(EventLoop* loop, const std::string& address,
                                const Dispatcher* dispatcher, const std::string& token,
                                int64_t timeout_ms = -1,
                                Connection::CloseCallback on_close = nullptr);

// The same without waiting, for event-loop threads and code under locks: a TCP connect that
// has not completed at once goes on in the background (see Connection::set_connecting), so
// an unreachable peer costs nothing here; its failure arrives as the connection's close.
// Fails here only for what is known at once: a malformed address, a refused Unix socket.
// Numeric hosts need no lookup; a host name is still resolved here (blocking) — nodes and
// workers advertise numeric addresses, so peers of the cluster never need one.
StatusOr<ConnectionPtr> ConnectInBackground(EventLoop* loop, const std::string& address,
                                            const Dispatcher* dispatcher, const std::string& token,
                                            int64_t timeout_ms = -1,
                                            Connection::CloseCallback on_close = nullptr);

// Parses a protobuf payload; false on malformed input.
bool ParsePayload(std::string_view payload, google::protobuf::MessageLite* msg);

}  // namespace lumen::rpc
