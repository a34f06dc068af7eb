#include "common/rpc/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include "common/config.h"
#include "common/logging.h"

namespace lumen::rpc {

Server::Server(EventLoop* loop, const Dispatcher* dispatcher, std::string token, std::string name)
    : loop_(loop),
      dispatcher_(dispatcher),
      token_(std::move(token)),
      name_(std::move(name)),
      handshake_timeout_ms_(Config::Get().handshake_timeout_ms()),
      max_handshaking_(
          static_cast<size_t>(std::max<int64_t>(1, Config::Get().max_handshaking_connections()))) {}

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
  {
    MutexLock lock(mu_);
    listeners_.push_back({fd, 0, path});
  }
  loop_->Dispatch([this, fd] { Watch(fd, /*is_unix=*/true); });
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
  {
    MutexLock lock(mu_);
    listeners_.push_back({fd, 0, ""});
  }
  loop_->Dispatch([this, fd] { Watch(fd, /*is_unix=*/false); });
  return host + ":" + std::to_string(bound_port);
}

void Server::Watch(int listen_fd, bool is_unix) {
  MutexLock lock(mu_);
  for (auto& l : listeners_) {
    if (l.fd != listen_fd || l.watch_id != 0) continue;
    l.watch_id = loop_->Watch(listen_fd, EPOLLIN,
                              [this, listen_fd, is_unix](uint32_t) { Accept(listen_fd, is_unix); });
  }
}

void Server::PauseListener(int listen_fd) {
  // Descriptors held by peers that never authenticated are the first to give back.
  DropHandshaking(num_handshaking_ / 2, "the server ran out of file descriptors");
  const int64_t backoff_ms = Config::Get().accept_backoff_ms();
  MutexLock lock(mu_);
  for (auto& l : listeners_) {
    if (l.fd != listen_fd || l.resume_timer != 0) continue;
    loop_->SetEvents(listen_fd, l.watch_id, 0);  // stays registered, reports nothing
    l.resume_timer = loop_->RunAfter(std::chrono::milliseconds(backoff_ms), [this, listen_fd] {
      MutexLock lock(mu_);
      for (auto& l : listeners_) {
        if (l.fd != listen_fd) continue;
        l.resume_timer = 0;
        loop_->SetEvents(listen_fd, l.watch_id, EPOLLIN);
      }
    });
  }
}

void Server::DropHandshaking(size_t keep, const char* why) {
  while (num_handshaking_ > keep && !handshaking_.empty()) {
    ConnectionPtr oldest = handshaking_.front().lock();
    handshaking_.pop_front();
    if (!oldest || oldest->closed() || oldest->authenticated()) continue;
    LUMEN_LOG_EVERY_WINDOW(WARNING)
        << name_ << ": dropped unauthenticated connection " << oldest->peer_name() << ": " << why;
    oldest->Close(ResourceExhaustedError(std::string("dropped before authenticating: ") + why));
  }
}

void Server::Accept(int listen_fd, bool is_unix) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd =
        ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        LUMEN_LOG_EVERY_WINDOW(WARNING)
            << name_ << ": accept: " << std::strerror(err) << "; pausing the listener for "
            << Config::Get().accept_backoff_ms() << " ms";
        PauseListener(listen_fd);
        return;
      }
      // ECONNABORTED and friends concern one peer only: the next accept may succeed.
      LUMEN_LOG_EVERY_WINDOW(WARNING) << name_ << ": accept: " << std::strerror(err);
      continue;
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
      MutexLock lock(mu_);
      if (stopped_) return;
      connections_.insert(conn);
    }
    const size_t cap = max_handshaking_;
    DropHandshaking(cap - 1, "too many connections are still in the handshake");
    ++num_handshaking_;
    handshaking_.push_back(conn);
    if (handshaking_.size() > 2 * cap) {  // forget entries that authenticated or closed
      std::erase_if(handshaking_, [](const std::weak_ptr<Connection>& w) {
        auto c = w.lock();
        return !c || c->closed() || c->authenticated();
      });
    }
    conn->set_handshake_timeout_ms(handshake_timeout_ms_);
    conn->set_authenticated_callback([this](const ConnectionPtr&) { --num_handshaking_; });
    conn->set_close_callback([this](const ConnectionPtr& c, const Status& reason) {
      if (!c->authenticated()) --num_handshaking_;
      {
        MutexLock lock(mu_);
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
    MutexLock lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    listeners.swap(listeners_);
    conns.swap(connections_);
  }
  auto close_all = [this, listeners, conns] {
    for (const auto& l : listeners) {
      if (l.watch_id) loop_->Unwatch(l.watch_id);
      if (l.resume_timer) loop_->CancelTimer(l.resume_timer);
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

bool IsWildcardHost(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

std::string AdvertisableHost(const std::string& bind_host) {
  return bind_host.empty() || IsWildcardHost(bind_host) ? "127.0.0.1" : bind_host;
}

}  // namespace lumen::rpc
