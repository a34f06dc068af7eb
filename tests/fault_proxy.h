// A TCP proxy on loopback that injects faults between a client and a server (the S3 tests):
// each new connection is either refused with a canned HTTP answer (after the request's
// headers arrived), or piped to the server and, in cut mode, closed after a number of bytes
// have gone upstream (a server that stops answering mid-transfer). Test-only code.
//
// Thread safety: Start/Stop from one thread; the counters may be read from any.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lumen::testing {

class FaultProxy {
 public:
  struct Faults {
    // The first `refuse_first` connections get a 503 SlowDown (S3's throttling), or with
    // `internal_error` a 500 InternalError, instead of the server.
    int refuse_first = 0;
    bool internal_error = false;
    // Piped connections are cut once this many bytes went upstream (0: never).
    int64_t cut_after_bytes = 0;
  };

  explicit FaultProxy(int upstream_port, Faults faults)
      : upstream_port_(upstream_port), faults_(std::move(faults)) {}
  ~FaultProxy() { Stop(); }

  // Listens on a free loopback port; false if it cannot.
  bool Start() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      return false;
    }
    socklen_t len = sizeof(sa);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
    return true;
  }

  void Stop() {
    if (listen_fd_ < 0) return;
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    listen_fd_ = -1;
    std::vector<std::thread> pipes;
    {
      std::lock_guard lock(mu_);
      pipes.swap(pipes_);
    }
    for (auto& t : pipes) t.join();
  }

  int port() const { return port_; }
  int refused() const { return refused_; }
  int cut() const { return cut_; }

 private:
  void Accept() {
    while (!stopping_) {
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (stopping_) return;
        continue;
      }
      const int n = accepted_++;
      std::lock_guard lock(mu_);
      pipes_.emplace_back([this, client, n] { Serve(client, n); });
    }
  }

  void Serve(int client, int n) {
    if (n < faults_.refuse_first) {
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos && !stopping_) {
        if (!Readable(client)) continue;
        const ssize_t got = ::recv(client, buf, sizeof(buf), 0);
        if (got <= 0) break;
        head.append(buf, static_cast<size_t>(got));
      }
      const std::string body =
          faults_.internal_error
              ? "<Error><Code>InternalError</Code><Message>We encountered an internal error. "
                "Please try again.</Message></Error>"
              : "<Error><Code>SlowDown</Code><Message>Please reduce your request rate."
                "</Message></Error>";
      const std::string refusal =
          std::string(faults_.internal_error ? "HTTP/1.1 500 Internal Server Error"
                                             : "HTTP/1.1 503 Slow Down") +
          "\r\nContent-Type: application/xml\r\nContent-Length: " + std::to_string(body.size()) +
          "\r\nConnection: close\r\n\r\n" + body;
      ++refused_;  // counted before the client can see it
      ::send(client, refusal.data(), refusal.size(), MSG_NOSIGNAL);
      ::close(client);
      return;
    }
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    if (::connect(server, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      ::close(server);
      ::close(client);
      return;
    }
    int64_t upstream = 0;
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    char buf[65536];
    while (!stopping_) {
      if (::poll(fds, 2, 100) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::recv(fds[i].fd, buf, sizeof(buf), 0);
        if (got <= 0) {
          closed = true;
          break;
        }
        if (i == 0 && faults_.cut_after_bytes > 0 && upstream + got > faults_.cut_after_bytes) {
          ++cut_;
          closed = true;  // the server "stops answering" in the middle of the request
          break;
        }
        if (i == 0) upstream += got;
        ::send(fds[1 - i].fd, buf, static_cast<size_t>(got), MSG_NOSIGNAL);
      }
      if (closed) break;
    }
    ::close(server);
    ::close(client);
  }

  bool Readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 100) > 0;
  }

  const int upstream_port_;
  const Faults faults_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> refused_{0};
  std::atomic<int> cut_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pipes_;
};

}  // namespace lumen::testing
