#include "common/rpc/connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <future>

#include "common.pb.h"
#include "common/config.h"
#include "common/logging.h"

namespace lumen::rpc {

namespace {

bool TokensEqual(const std::string& a, const std::string& b) {
  // Constant time in the length of the expected token.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    unsigned char ca = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= static_cast<unsigned char>(ca ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

void PutHeader(char* out, uint32_t len, uint16_t type, FrameKind kind, uint8_t flags,
               uint64_t request_id) {
  std::memcpy(out, &len, 4);
  std::memcpy(out + 4, &type, 2);
  out[6] = static_cast<char>(kind);
  out[7] = static_cast<char>(flags);
  std::memcpy(out + 8, &request_id, 8);
}

constexpr uint32_t kEventsRead = EPOLLIN | EPOLLRDHUP;
constexpr uint32_t kEventsReadWrite = EPOLLIN | EPOLLRDHUP | EPOLLOUT;

}  // namespace

bool ParsePayload(std::string_view payload, google::protobuf::MessageLite* msg) {
  return msg->ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

std::string Connection::BuildFrame(uint16_t type, FrameKind kind, uint8_t flags,
                                   uint64_t request_id, const google::protobuf::MessageLite* msg,
                                   std::string_view raw) {
  size_t len = msg ? msg->ByteSizeLong() : raw.size();
  std::string out;
  out.resize(kHeaderSize + len);
  PutHeader(out.data(), static_cast<uint32_t>(len), type, kind, flags, request_id);
  if (msg) {
    msg->SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + kHeaderSize));
  } else if (len > 0) {
    std::memcpy(out.data() + kHeaderSize, raw.data(), len);
  }
  return out;
}

ConnectionPtr Connection::Create(EventLoop* loop, int fd, Role role, const Dispatcher* dispatcher,
                                 std::string token, std::string peer_name, bool is_unix) {
  return ConnectionPtr(
      new Connection(loop, fd, role, dispatcher, std::move(token), std::move(peer_name), is_unix));
}

Connection::Connection(EventLoop* loop, int fd, Role role, const Dispatcher* dispatcher,
                       std::string token, std::string peer_name, bool is_unix)
    : loop_(loop),
      fd_(fd),
      role_(role),
      dispatcher_(dispatcher),
      token_(std::move(token)),
      peer_name_(std::move(peer_name)),
      is_unix_(is_unix) {
  if (role_ == Role::kClient) {
    proto::Hello hello;
    hello.set_token(token_);
    hello.set_peer(std::to_string(::getpid()));
    out_.push_back({BuildFrame(kMsgHello, FrameKind::kOneWay, 0, 0, &hello), 0, -1});
  }
}

Connection::~Connection() {
  if (!closed_.exchange(true)) ::close(fd_);
  for (auto& e : out_) {
    if (e.fd >= 0) ::close(e.fd);
  }
  for (int f : in_fds_) ::close(f);
  std::free(in_data_);
}

void Connection::Start() {
  auto self = shared_from_this();
  loop_->Dispatch([self] {
    if (self->closed_) return;
    MutexLock lock(self->write_mu_);
    // A connect in progress: EPOLLOUT says it finished; nothing is written before.
    self->watch_id_ =
        self->loop_->Watch(self->fd_, self->connecting_ ? kEventsReadWrite : kEventsRead,
                           [self](uint32_t events) { self->OnEvents(events); });
    self->started_ = true;
    if (self->connecting_) {
      self->want_write_ = true;
      const int64_t connect_ms = self->connect_timeout_ms_;
      std::weak_ptr<Connection> weak = self;
      self->connect_timer_ =
          self->loop_->RunAfter(std::chrono::milliseconds(connect_ms), [weak, connect_ms] {
            auto conn = weak.lock();
            if (!conn || conn->closed_ || !conn->connecting_) return;
            conn->connect_timer_ = 0;
            conn->CloseInLoop(DeadlineExceededError("connect to " + conn->peer_name_ +
                                                    " timed out after " +
                                                    std::to_string(connect_ms) + " ms"));
          });
      return;
    }
    const int64_t handshake_ms = self->handshake_timeout_ms_ >= 0
                                     ? self->handshake_timeout_ms_
                                     : Config::Get().handshake_timeout_ms();
    if (self->role_ == Role::kServer && handshake_ms > 0) {
      std::weak_ptr<Connection> weak = self;
      self->handshake_timer_ =
          self->loop_->RunAfter(std::chrono::milliseconds(handshake_ms), [weak, handshake_ms] {
            auto conn = weak.lock();
            if (!conn || conn->closed_) return;
            conn->handshake_timer_ = 0;
            if (conn->authenticated_) return;
            LUMEN_LOG_EVERY_WINDOW(WARNING) << "closed connection " << conn->peer_name_
                                            << ": no valid Hello within " << handshake_ms << " ms";
            conn->CloseInLoop(DeadlineExceededError("no valid Hello within " +
                                                    std::to_string(handshake_ms) + " ms"));
          });
    }
    if (!self->out_.empty()) {
      if (!self->FlushLocked()) {
        self->loop_->Post([self] { self->CloseInLoop(UnavailableError("write failed")); });
        return;
      }
      if (!self->out_.empty()) {
        self->want_write_ = true;
        self->loop_->SetEvents(self->fd_, self->watch_id_, kEventsReadWrite);
      }
    }
  });
}

void Connection::Enqueue(std::string data, int fd) {
  OutEntry e;
  e.data = std::move(data);
  e.fd = fd;
  Enqueue(std::move(e));
}

void Connection::Enqueue(OutEntry entry) {
  MutexLock lock(write_mu_);
  if (closed_) {
    if (entry.fd >= 0) ::close(entry.fd);
    return;
  }
  out_.push_back(std::move(entry));
  if (!started_) return;  // Start() flushes
  if (out_.size() == 1 && !want_write_) {
    if (!FlushLocked()) {
      auto self = shared_from_this();
      loop_->Post([self] { self->CloseInLoop(UnavailableError("write to peer failed")); });
      return;
    }
  }
  if (!out_.empty() && !want_write_) {
    want_write_ = true;
    loop_->SetEvents(fd_, watch_id_, kEventsReadWrite);
  }
}

bool Connection::FlushLocked() {
  while (!out_.empty()) {
    OutEntry& front = out_.front();
    if (front.fd >= 0 && front.offset == 0) {
      // Send the descriptor with the first bytes of its frame.
      iovec iov{front.data.data(), front.data.size()};
      char cbuf[CMSG_SPACE(sizeof(int))];
      std::memset(cbuf, 0, sizeof(cbuf));
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof(cbuf);
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &front.fd, sizeof(int));
      ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
        return false;
      }
      ::close(front.fd);
      front.fd = -1;
      front.offset = static_cast<size_t>(n);
      if (front.offset == front.data.size()) out_.pop_front();
      continue;
    }
    iovec iov[64];
    int cnt = 0;
    bool file_next = false;  // the last bytes gathered precede a file range
    for (auto it = out_.begin(); it != out_.end() && cnt < 64; ++it) {
      if (it->fd >= 0 && it->offset == 0 && cnt > 0) break;  // fd entries go alone
      if (it->offset < it->data.size()) {
        iov[cnt].iov_base = it->data.data() + it->offset;
        iov[cnt].iov_len = it->data.size() - it->offset;
        ++cnt;
      }
      if (it->file_left > 0) {  // its file bytes go with sendfile, after these
        file_next = true;
        break;
      }
    }
    if (cnt > 0) {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(cnt);
      ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT | (file_next ? MSG_MORE : 0));
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
        return false;
      }
      size_t left = static_cast<size_t>(n);
      while (left > 0 && !out_.empty()) {
        OutEntry& e = out_.front();
        size_t rem = e.data.size() - e.offset;
        if (left >= rem) {
          left -= rem;
          e.offset = e.data.size();
          if (e.file_left > 0) break;
          out_.pop_front();
        } else {
          e.offset += left;
          left = 0;
        }
      }
      if (!out_.empty() && out_.front().offset < out_.front().data.size()) {
        return true;  // socket buffer full
      }
    }
    if (!out_.empty() && out_.front().file_left > 0 &&
        out_.front().offset == out_.front().data.size()) {
      OutEntry& e = out_.front();
      off_t off = static_cast<off_t>(e.file_offset);
      ssize_t n = ::sendfile(fd_, e.file_fd, &off, e.file_left);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
        return false;
      }
      if (n == 0) return false;  // the file is shorter than the range
      e.file_offset += n;
      e.file_left -= static_cast<size_t>(n);
      if (e.file_left == 0) out_.pop_front();
    }
  }
  return true;
}

void Connection::Send(uint16_t type, const google::protobuf::MessageLite& msg) {
  Enqueue(BuildFrame(type, FrameKind::kOneWay, 0, 0, &msg));
}

void Connection::SendAsync(uint16_t type, const google::protobuf::MessageLite& msg) {
  std::string frame = BuildFrame(type, FrameKind::kOneWay, 0, 0, &msg);
  MutexLock lock(write_mu_);
  if (closed_) return;
  out_.push_back({std::move(frame), 0, -1});
  if (!started_ || want_write_ || flush_posted_) return;  // a flush is already coming
  flush_posted_ = true;
  auto self = shared_from_this();
  loop_->Post([self] {
    MutexLock lock(self->write_mu_);
    self->flush_posted_ = false;
    if (self->closed_ || self->want_write_) return;
    if (!self->FlushLocked()) {
      self->loop_->Post([self] { self->CloseInLoop(UnavailableError("write to peer failed")); });
      return;
    }
    if (!self->out_.empty()) {
      self->want_write_ = true;
      self->loop_->SetEvents(self->fd_, self->watch_id_, kEventsReadWrite);
    }
  });
}

void Connection::SendPrefixed(uint16_t type, std::string frame) {
  PutHeader(frame.data(), static_cast<uint32_t>(frame.size() - kHeaderSize), type,
            FrameKind::kOneWay, 0, 0);
  Enqueue(std::move(frame));
}

void Connection::SendRaw(uint16_t type, std::string_view payload) {
  Enqueue(BuildFrame(type, FrameKind::kOneWay, 0, 0, nullptr, payload));
}

void Connection::SendWithFd(uint16_t type, FrameKind kind, uint64_t request_id,
                            const google::protobuf::MessageLite& msg, int fd) {
  int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) {
    LUMEN_LOG(ERROR) << "dup of fd " << fd << " failed: " << std::strerror(errno);
    return;
  }
  Enqueue(BuildFrame(type, kind, kFlagHasFd, request_id, &msg), dup_fd);
}

void Connection::Reply(const Frame& request, const google::protobuf::MessageLite& msg) {
  Enqueue(BuildFrame(request.type, FrameKind::kResponse, 0, request.request_id, &msg));
}

void Connection::ReplyError(const Frame& request, const Status& status) {
  Enqueue(BuildFrame(static_cast<uint16_t>(status.code()), FrameKind::kErrorResponse, 0,
                     request.request_id, nullptr, status.message()));
}

void Connection::ReplyWithFileRange(const Frame& request, const google::protobuf::MessageLite& head,
                                    int fd, int64_t offset, size_t length) {
  const size_t head_len = head.ByteSizeLong();
  const size_t len = 4 + head_len + length;
  LUMEN_CHECK(len <= kMaxPayload) << "file range of " << length << " bytes is too large a reply";
  OutEntry e;
  e.data.resize(kHeaderSize + 4 + head_len);
  PutHeader(e.data.data(), static_cast<uint32_t>(len), request.type, FrameKind::kResponse,
            kFlagRawTail, request.request_id);
  const uint32_t h32 = static_cast<uint32_t>(head_len);
  std::memcpy(e.data.data() + kHeaderSize, &h32, 4);
  head.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(e.data.data() + kHeaderSize + 4));
  e.file_fd = fd;
  e.file_offset = offset;
  e.file_left = length;
  Enqueue(std::move(e));
}

void Connection::Call(uint16_t type, const google::protobuf::MessageLite& req, ResponseCallback cb,
                      int64_t timeout_ms) {
  Pending p;
  p.cb = std::move(cb);
  CallImpl(type, req, std::move(p), timeout_ms);
}

void Connection::CallInto(uint16_t type, const google::protobuf::MessageLite& req, char* dest,
                          size_t capacity, RawResponseCallback cb, int64_t timeout_ms) {
  Pending p;
  p.raw_cb = std::move(cb);
  p.raw_dest = dest;
  p.raw_capacity = capacity;
  CallImpl(type, req, std::move(p), timeout_ms);
}

void Connection::Complete(Pending& p, const Status& st, std::string_view payload, size_t raw) {
  if (p.raw_cb) {
    p.raw_cb(st, payload, raw);
  } else {
    p.cb(st, payload);
  }
}

void Connection::CallImpl(uint16_t type, const google::protobuf::MessageLite& req, Pending p,
                          int64_t timeout_ms) {
  uint64_t id;
  {
    MutexLock lock(call_mu_);
    if (closed_) {
      Status reason = close_reason_;
      auto shared = std::make_shared<Pending>(std::move(p));
      loop_->Post([shared, reason] { Complete(*shared, reason, {}, 0); });
      return;
    }
    id = next_request_id_++;
    if (timeout_ms >= 0) {
      std::weak_ptr<Connection> weak = shared_from_this();
      p.timer_id = loop_->RunAfter(std::chrono::milliseconds(timeout_ms), [weak, id, type] {
        auto self = weak.lock();
        if (!self) return;
        Status late = DeadlineExceededError("request " + std::to_string(type) + " to " +
                                            self->peer_name_ + " timed out");
        if (self->raw_.active && self->raw_.request_id == id) {
          // Its bytes are arriving into the caller's buffer: stop reading before failing it.
          self->CloseInLoop(late);
          return;
        }
        Pending timed_out;
        {
          MutexLock lock(self->call_mu_);
          auto it = self->pending_.find(id);
          if (it == self->pending_.end()) return;
          timed_out = std::move(it->second);
          self->pending_.erase(it);
        }
        Complete(timed_out, late, {}, 0);
      });
    }
    pending_.emplace(id, std::move(p));
  }
  Enqueue(BuildFrame(type, FrameKind::kRequest, 0, id, &req));
}

Status Connection::CallSync(uint16_t type, const google::protobuf::MessageLite& req,
                            google::protobuf::MessageLite* reply, int64_t timeout_ms, int* fd) {
  LUMEN_CHECK(!loop_->InLoopThread()) << "CallSync on the loop thread would deadlock";
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  auto received_fd = std::make_shared<int>(-1);
  Pending p;
  if (fd) p.fd_sink = [received_fd](int f) { *received_fd = f; };
  p.cb = [promise, reply](const Status& st, std::string_view payload) {
    if (st.ok() && reply && !ParsePayload(payload, reply)) {
      promise->set_value(InternalError("malformed reply"));
      return;
    }
    promise->set_value(st);
  };
  CallImpl(type, req, std::move(p), timeout_ms);
  Status st = future.get();
  if (fd) {
    *fd = *received_fd;
  } else if (*received_fd >= 0) {
    ::close(*received_fd);
  }
  return st;
}

Status Connection::close_reason() const {
  MutexLock lock(call_mu_);
  return close_reason_;
}

void Connection::Close(const Status& reason) {
  auto self = shared_from_this();
  loop_->Dispatch([self, reason] { self->CloseInLoop(reason); });
}

void Connection::CloseInLoop(const Status& reason) {
  {
    MutexLock lock(write_mu_);
    if (closed_) return;
    {
      MutexLock clock(call_mu_);
      close_reason_ = reason;
      closed_ = true;
    }
    if (started_) loop_->Unwatch(watch_id_);
    ::close(fd_);
    for (auto& e : out_) {
      if (e.fd >= 0) ::close(e.fd);
    }
    out_.clear();
  }
  for (int f : in_fds_) ::close(f);
  in_fds_.clear();
  if (handshake_timer_) {
    loop_->CancelTimer(handshake_timer_);
    handshake_timer_ = 0;
  }
  if (connect_timer_) {
    loop_->CancelTimer(connect_timer_);
    connect_timer_ = 0;
  }
  auth_cb_ = nullptr;
  std::unordered_map<uint64_t, Pending> pending;
  {
    MutexLock lock(call_mu_);
    pending.swap(pending_);
  }
  Status failure =
      reason.ok() ? UnavailableError("connection to " + peer_name_ + " closed") : reason;
  raw_ = RawReceive();
  for (auto& [id, p] : pending) {
    if (p.timer_id) loop_->CancelTimer(p.timer_id);
    Complete(p, failure, {}, 0);
  }
  if (close_cb_) {
    auto cb = std::move(close_cb_);
    cb(shared_from_this(), failure);
  }
}

void Connection::OnEvents(uint32_t events) {
  if (closed_) return;
  if (connecting_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0 && !(events & EPOLLOUT)) err = ECONNREFUSED;
    if (err != 0) {
      CloseInLoop(UnavailableError("connect to " + peer_name_ + ": " + std::strerror(err)));
      return;
    }
    connecting_ = false;
    if (connect_timer_) {
      loop_->CancelTimer(connect_timer_);
      connect_timer_ = 0;
    }
    events |= EPOLLOUT;  // write what was queued meanwhile, the Hello first
  }
  if (events & EPOLLOUT) {
    MutexLock lock(write_mu_);
    if (!FlushLocked()) {
      auto self = shared_from_this();
      loop_->Post([self] { self->CloseInLoop(UnavailableError("write to peer failed")); });
      return;
    }
    if (out_.empty() && want_write_) {
      want_write_ = false;
      loop_->SetEvents(fd_, watch_id_, kEventsRead);
    }
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) OnReadable();
}

void Connection::ReserveRead(size_t free_bytes) {
  if (in_start_ == in_end_) in_start_ = in_end_ = 0;
  if (in_cap_ - in_end_ >= free_bytes) return;
  if (in_start_ > 0) {
    std::memmove(in_data_, in_data_ + in_start_, in_end_ - in_start_);
    in_end_ -= in_start_;
    in_start_ = 0;
  }
  if (in_cap_ - in_end_ >= free_bytes) return;
  size_t cap = std::max(in_cap_ * 2, in_end_ + free_bytes);
  char* p = static_cast<char*>(std::realloc(in_data_, cap));
  LUMEN_CHECK(p != nullptr) << "out of memory for a " << cap << "-byte read buffer";
  in_data_ = p;
  in_cap_ = cap;
}

Connection::RecvResult Connection::OnRecv(ssize_t n) {
  if (n > 0) return RecvResult::kData;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return RecvResult::kDrained;
  if (n < 0 && errno == EINTR) return RecvResult::kAgain;
  CloseInLoop(
      n < 0 ? UnavailableError("connection to " + peer_name_ + " lost: " + std::strerror(errno))
            : UnavailableError("connection to " + peer_name_ + " closed by peer"));
  return RecvResult::kClosed;
}

void Connection::OnReadable() {
  constexpr size_t kReadChunk = 256 * 1024;
  for (int round = 0; round < 32 && !closed_; ++round) {
    if (raw_.active) {  // a raw reply's bytes go straight to the caller's buffer
      const size_t want = raw_.total - raw_.got;
      ssize_t n = ::recv(fd_, raw_.dest + raw_.got, want, MSG_DONTWAIT);
      RecvResult r = OnRecv(n);
      if (r == RecvResult::kAgain) continue;
      if (r != RecvResult::kData) return;
      raw_.got += static_cast<size_t>(n);
      if (raw_.got == raw_.total) FinishRawReceive();
      continue;
    }
    size_t want = kReadChunk;
    // When a large frame is partially read, make room for the rest of it at once.
    if (in_end_ - in_start_ >= kHeaderSize) {
      uint32_t len;
      std::memcpy(&len, in_data_ + in_start_, 4);
      size_t need = kHeaderSize + len - (in_end_ - in_start_);
      if (len <= kMaxPayload && need > want) want = need;
    }
    ReserveRead(want);
    want = in_cap_ - in_end_;
    ssize_t n;
    if (is_unix_) {
      iovec iov{in_data_ + in_end_, want};
      char cbuf[CMSG_SPACE(sizeof(int) * 8)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof(cbuf);
      n = ::recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n > 0) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfds; ++i) {
              int f;
              std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
              in_fds_.push_back(f);
            }
          }
        }
      }
    } else {
      n = ::recv(fd_, in_data_ + in_end_, want, MSG_DONTWAIT);
    }
    RecvResult r = OnRecv(n);
    if (r == RecvResult::kAgain) continue;
    if (r != RecvResult::kData) return;
    in_end_ += static_cast<size_t>(n);
    if (!ProcessFrames()) return;
    if (in_start_ == in_end_ && in_cap_ > (8u << 20)) {  // drop a buffer grown by a large frame
      std::free(in_data_);
      in_data_ = nullptr;
      in_cap_ = in_start_ = in_end_ = 0;
    }
    if (static_cast<size_t>(n) < want) return;  // drained
  }
}

bool Connection::ProcessFrames() {
  auto self = shared_from_this();  // a handler may drop the last external reference
  while (!closed_) {
    size_t avail = in_end_ - in_start_;
    if (avail < kHeaderSize) return true;
    const char* h = in_data_ + in_start_;
    Frame frame;
    uint32_t len;
    std::memcpy(&len, h, 4);
    std::memcpy(&frame.type, h + 4, 2);
    uint8_t kind = static_cast<uint8_t>(h[6]);
    frame.flags = static_cast<uint8_t>(h[7]);
    std::memcpy(&frame.request_id, h + 8, 8);
    uint32_t limit =
        authenticated_ || role_ == Role::kClient ? kMaxPayload : kMaxUnauthenticatedPayload;
    if (kind > static_cast<uint8_t>(FrameKind::kErrorResponse) || len > limit) {
      LUMEN_LOG(WARNING) << "malformed frame from " << peer_name_ << " (kind "
                         << static_cast<int>(kind) << ", length " << len << "); closing";
      CloseInLoop(InvalidArgumentError("malformed frame from " + peer_name_));
      return false;
    }
    if ((frame.flags & kFlagRawTail) && kind == static_cast<uint8_t>(FrameKind::kResponse) &&
        authenticated_ && len >= 4) {
      if (avail < kHeaderSize + 4) return true;
      uint32_t head_len;
      std::memcpy(&head_len, h + kHeaderSize, 4);
      if (head_len > len - 4) {
        CloseInLoop(InvalidArgumentError("malformed raw reply from " + peer_name_));
        return false;
      }
      if (avail < kHeaderSize + 4 + head_len) return true;
      if (StartRawReceive(frame.request_id, len, head_len)) {
        if (closed_) return false;
        if (raw_.active) return true;  // the rest of its bytes come from the socket
        continue;
      }
    }
    if (avail < kHeaderSize + len) return true;
    frame.kind = static_cast<FrameKind>(kind);
    frame.payload = std::string_view(h + kHeaderSize, len);
    if (frame.flags & kFlagHasFd) {
      if (in_fds_.empty()) {
        CloseInLoop(InvalidArgumentError("frame announced a descriptor that did not arrive"));
        return false;
      }
      frame.fd = in_fds_.front();
      in_fds_.pop_front();
    }
    bool keep = HandleFrame(frame);
    if (frame.fd >= 0) ::close(frame.fd);  // the handler did not take it
    if (!keep) return false;
    in_start_ += kHeaderSize + len;
  }
  return false;
}

bool Connection::StartRawReceive(uint64_t request_id, uint32_t len, uint32_t head_len) {
  const size_t raw_len = len - 4 - head_len;
  char* dest = nullptr;
  size_t capacity = 0;
  {
    MutexLock lock(call_mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end() || !it->second.raw_cb) return false;  // read whole, then dropped
    dest = it->second.raw_dest;
    capacity = it->second.raw_capacity;
  }
  if (raw_len > capacity) {
    CloseInLoop(InvalidArgumentError("raw reply of " + std::to_string(raw_len) + " bytes from " +
                                     peer_name_ + " exceeds the " + std::to_string(capacity) +
                                     " asked for"));
    return true;
  }
  raw_.dest = dest;
  const char* h = in_data_ + in_start_;
  raw_.active = true;
  raw_.request_id = request_id;
  raw_.total = raw_len;
  raw_.head.assign(h + kHeaderSize + 4, head_len);
  in_start_ += kHeaderSize + 4 + head_len;
  // Bytes already read with the header are copied; the rest are read into place.
  raw_.got = std::min(raw_len, in_end_ - in_start_);
  if (raw_.got > 0) std::memcpy(raw_.dest, in_data_ + in_start_, raw_.got);
  in_start_ += raw_.got;
  if (raw_.got == raw_.total) FinishRawReceive();
  return true;
}

void Connection::FinishRawReceive() {
  RawReceive done = std::move(raw_);
  raw_ = RawReceive();
  Pending p;
  {
    MutexLock lock(call_mu_);
    auto it = pending_.find(done.request_id);
    if (it == pending_.end()) return;
    p = std::move(it->second);
    pending_.erase(it);
  }
  if (p.timer_id) loop_->CancelTimer(p.timer_id);
  Complete(p, Status::OK(), done.head, done.total);
}

bool Connection::HandleFrame(Frame& frame) {
  if (role_ == Role::kServer && !authenticated_) {
    proto::Hello hello;
    if (frame.type != kMsgHello || !ParsePayload(frame.payload, &hello)) {
      std::string msg = "lumen: connection refused: the first message must carry the cluster token";
      Enqueue(BuildFrame(kMsgAuthError, FrameKind::kOneWay, 0, 0, nullptr, msg));
      LUMEN_LOG_EVERY_WINDOW(WARNING) << "refused connection " << peer_name_ << ": no hello";
      CloseInLoop(UnauthenticatedError(msg));
      return false;
    }
    if (!TokensEqual(hello.token(), token_)) {
      std::string msg =
          "lumen: connection refused: cluster token missing or wrong (set LUMEN_TOKEN, or read it "
          "from the session directory's `token` file on the head node)";
      Enqueue(BuildFrame(kMsgAuthError, FrameKind::kOneWay, 0, 0, nullptr, msg));
      LUMEN_LOG_EVERY_WINDOW(WARNING) << "refused connection " << peer_name_ << ": wrong token";
      CloseInLoop(UnauthenticatedError(msg));
      return false;
    }
    authenticated_ = true;
    if (handshake_timer_) {
      loop_->CancelTimer(handshake_timer_);
      handshake_timer_ = 0;
    }
    Enqueue(BuildFrame(kMsgHelloOk, FrameKind::kOneWay, 0, 0, nullptr, {}));
    if (auth_cb_) {
      auto cb = std::move(auth_cb_);
      cb(shared_from_this());
    }
    return !closed_;
  }
  if (frame.type == kMsgAuthError && frame.kind == FrameKind::kOneWay) {
    CloseInLoop(UnauthenticatedError(std::string(frame.payload)));
    return false;
  }
  if (frame.type == kMsgHelloOk && frame.kind == FrameKind::kOneWay) {
    authenticated_ = true;
    return true;
  }
  if (frame.kind == FrameKind::kResponse || frame.kind == FrameKind::kErrorResponse) {
    Pending p;
    {
      MutexLock lock(call_mu_);
      auto it = pending_.find(frame.request_id);
      if (it == pending_.end()) return true;  // timed out already
      p = std::move(it->second);
      pending_.erase(it);
    }
    if (p.timer_id) loop_->CancelTimer(p.timer_id);
    if (p.fd_sink && frame.fd >= 0) {
      p.fd_sink(frame.fd);
      frame.fd = -1;
    }
    if (frame.kind == FrameKind::kResponse) {
      Complete(p, Status::OK(), frame.payload, 0);
    } else {
      auto code = static_cast<StatusCode>(frame.type);
      // An error response always fails the call: a peer sending code 0 (OK) must not turn
      // into a success with an empty reply.
      if (frame.type == 0 || frame.type > static_cast<uint16_t>(StatusCode::kUnauthenticated)) {
        code = StatusCode::kUnknown;
      }
      Complete(p, Status(code, std::string(frame.payload)), {}, 0);
    }
    return !closed_;
  }
  const Handler* handler = dispatcher_ ? dispatcher_->Find(frame.type) : nullptr;
  if (!handler) {
    if (frame.kind == FrameKind::kRequest) {
      ReplyError(frame, UnimplementedError("unknown message type " + std::to_string(frame.type)));
    } else {
      LUMEN_LOG(WARNING) << "ignoring unknown message type " << frame.type << " from "
                         << peer_name_;
    }
    return true;
  }
  try {
    (*handler)(shared_from_this(), frame);
  } catch (const std::exception& e) {
    LUMEN_LOG(ERROR) << "handler for message " << frame.type << " from " << peer_name_
                     << " threw: " << e.what();
    if (frame.kind == FrameKind::kRequest) ReplyError(frame, InternalError(e.what()));
  }
  return !closed_;
}

namespace {

Status WaitConnected(int fd, int64_t timeout_ms, const std::string& address) {
  pollfd p{fd, POLLOUT, 0};
  int r = ::poll(&p, 1, static_cast<int>(timeout_ms));
  if (r == 0) return DeadlineExceededError("connect to " + address + " timed out");
  if (r < 0) return UnavailableError("connect to " + address + ": " + std::strerror(errno));
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return UnavailableError("connect to " + address + ": " + std::strerror(err));
  return Status::OK();
}

// A connected (or, with `background`, connecting) non-blocking socket to `address`.
struct Socket {
  int fd = -1;
  bool is_unix = false;
  bool in_progress = false;  // the TCP connect goes on (background only)
};

StatusOr<Socket> OpenSocket(const std::string& address, int64_t timeout_ms, bool background) {
  Socket s;
  s.is_unix = address.rfind("unix:", 0) == 0;
  if (s.is_unix) {
    std::string path = address.substr(5);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof(sa.sun_path)) {
      return InvalidArgumentError("socket path too long: " + path);
    }
    std::memcpy(sa.sun_path, path.data(), path.size());
    s.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) return UnavailableError(std::string("socket: ") + std::strerror(errno));
    // A Unix connect completes or fails at once, unless the listener's backlog is full.
    if (::connect(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      Status st = errno == EAGAIN || errno == EINPROGRESS
                      ? WaitConnected(s.fd, background ? 0 : timeout_ms, address)
                      : UnavailableError("connect to " + address + ": " + std::strerror(errno));
      if (!st.ok()) {
        ::close(s.fd);
        return st;
      }
    }
    return s;
  }
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgumentError("bad address '" + address + "' (want host:port or unix:/path)");
  }
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc == EAI_NONAME) {  // a name, not an address: look it up
    hints.ai_flags = 0;
    rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  }
  if (rc != 0) return UnavailableError("cannot resolve " + address + ": " + ::gai_strerror(rc));
  Status last = UnavailableError("no address for " + address);
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    s.fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) continue;
    if (::connect(s.fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      last = Status::OK();
      break;
    }
    if (errno == EINPROGRESS && background) {
      s.in_progress = true;
      last = Status::OK();
      break;
    }
    last = errno == EINPROGRESS
               ? WaitConnected(s.fd, timeout_ms, address)
               : UnavailableError("connect to " + address + ": " + std::strerror(errno));
    if (last.ok()) break;
    ::close(s.fd);
    s.fd = -1;
  }
  ::freeaddrinfo(res);
  if (s.fd < 0) return last;
  int one = 1;
  ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return s;
}

StatusOr<ConnectionPtr> ConnectWith(EventLoop* loop, const std::string& address,
                                    const Dispatcher* dispatcher, const std::string& token,
                                    int64_t timeout_ms, Connection::CloseCallback on_close,
                                    bool background) {
  if (timeout_ms < 0) timeout_ms = Config::Get().connect_timeout_ms();
  LUMEN_ASSIGN_OR_RETURN(Socket s, OpenSocket(address, timeout_ms, background));
  auto conn = Connection::Create(loop, s.fd, Connection::Role::kClient, dispatcher, token, address,
                                 s.is_unix);
  if (s.in_progress) conn->set_connecting(timeout_ms);
  if (on_close) conn->set_close_callback(std::move(on_close));
  conn->Start();
  return conn;
}

}  // namespace

StatusOr<ConnectionPtr> Connect(EventLoop* loop, const std::string& address,
                                const Dispatcher* dispatcher, const std::string& token,
                                int64_t timeout_ms, Connection::CloseCallback on_close) {
  return ConnectWith(loop, address, dispatcher, token, timeout_ms, std::move(on_close),
                     /*background=*/false);
}

StatusOr<ConnectionPtr> ConnectInBackground(EventLoop* loop, const std::string& address,
                                            const Dispatcher* dispatcher, const std::string& token,
                                            int64_t timeout_ms,
                                            Connection::CloseCallback on_close) {
  return ConnectWith(loop, address, dispatcher, token, timeout_ms, std::move(on_close),
                     /*background=*/true);
}

}  // namespace lumen::rpc
