#include "common/rpc/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "common/logging.h"

namespace lumen::rpc {

Server::Server(EventLoop* loop, const Dispatcher* dispatcher, std::string token, std::string name)
    : loop_(loop), dispatcher_(dispatcher), token_(std::move(token)), name_(std::move(name)) {}

Server::~Server() { Stop(); }

StatusOr<std::string> Server::ListenUnix(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    return InvalidArgumentError("socket path too long (" + std::to_string(path.size()) +
                                " bytes): " + path);
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return UnavailableError(std::string("socket: ") + std::strerror(errno));
  mode_t old = ::umask(0177);  // socket file 0600: same-user processes only
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  ::umask(old);
  if (rc != 0 || ::listen(fd, 1024) != 0) {
    Status st = UnavailableError("listen on " + path + ": " + std::strerror(errno));
    ::close(fd);
    return st;
  }
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.push_back({fd, 0, path});
  size_t idx = listeners_.size() - 1;
  loop_->Dispatch([this, fd, idx] {
    uint64_t id = loop_->Watch(fd, EPOLLIN, [this, fd](uint32_t) { Accept(fd, true); });
    std::lock_guard<std::mutex> lock(mu_);
    if (idx < listeners_.size()) listeners_[idx].watch_id = id;
  });
  return "unix:" + path;
}

StatusOr<std::string> Server::ListenTcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0) return InvalidArgumentError("cannot resolve bind address " + host);
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    return UnavailableError(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  rc = ::bind(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0 || ::listen(fd, 1024) != 0) {
    Status st =
        UnavailableError("cannot listen on " + host + ":" + port_str + ": " + std::strerror(errno));
    ::close(fd);
    return st;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  int bound_port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.push_back({fd, 0, ""});
  size_t idx = listeners_.size() - 1;
  loop_->Dispatch([this, fd, idx] {
    uint64_t id = loop_->Watch(fd, EPOLLIN, [this, fd](uint32_t) { Accept(fd, false); });
    std::lock_guard<std::mutex> lock(mu_);
    if (idx < listeners_.size()) listeners_[idx].watch_id = id;
  });
  return host + ":" + std::to_string(bound_port);
}

void Server::Accept(int listen_fd, bool is_unix) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd =
        ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        LUMEN_LOG(WARNING) << name_ << ": accept: " << std::strerror(errno);
      }
      return;
    }
    std::string peer = name_ + " peer";
    if (!is_unix) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      char host[NI_MAXHOST], serv[NI_MAXSERV];
      if (::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof(host), serv,
                        sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        peer = std::string(host) + ":" + serv;
      }
    }
    auto conn = Connection::Create(loop_, fd, Connection::Role::kServer, dispatcher_, token_, peer,
                                   is_unix);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      connections_.insert(conn);
    }
    conn->set_close_callback([this](const ConnectionPtr& c, const Status& reason) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        connections_.erase(c);
      }
      if (on_close_) on_close_(c, reason);
    });
    if (on_accept_) on_accept_(conn);
    conn->Start();
  }
}

void Server::Stop() {
  std::vector<Listener> listeners;
  std::set<ConnectionPtr> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    listeners.swap(listeners_);
    conns.swap(connections_);
  }
  auto close_all = [this, listeners, conns] {
    for (const auto& l : listeners) {
      if (l.watch_id) loop_->Unwatch(l.watch_id);
      ::close(l.fd);
      if (!l.unix_path.empty()) ::unlink(l.unix_path.c_str());
    }
    for (const auto& c : conns) c->Close(CancelledError(name_ + " stopped"));
  };
  if (loop_->InLoopThread()) {
    close_all();
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  bool posted = loop_->Post([close_all, done] {
    close_all();
    done->set_value();
  });
  if (posted) {
    fut.wait();
    return;
  }
  // The loop is stopped: nothing runs on it any more, close synchronously.
  for (const auto& l : listeners) {
    ::close(l.fd);
    if (!l.unix_path.empty()) ::unlink(l.unix_path.c_str());
  }
  for (const auto& c : conns) c->Close(CancelledError(name_ + " stopped"));
}

}  // namespace lumen::rpc
