// Helpers for the targets that talk to Lumen's transport (fuzz_frame, fuzz_handlers): process
// set-up, raw frames, and a raw socket peer. Test-only code.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <google/protobuf/stubs/logging.h>

#include "common/logging.h"
#include "common/rpc/connection.h"
#include "fuzz_util.h"

namespace lumen::fuzz {

// Quiets logging (a fuzzer would print millions of "malformed frame" warnings, and protobuf
// one "invalid UTF-8" line per garbage string field) unless LUMEN_LOG_LEVEL asks for it, and
// stops event loops from spinning between events: the fuzzer, its loops and the machine's
// other work share two cores. Call from LLVMFuzzerInitialize, before any EventLoop exists.
inline void InitFuzzProcess() {
  ::setenv("LUMEN_SPIN_WAIT_US", "0", /*overwrite=*/0);
  if (!std::getenv("LUMEN_LOG_LEVEL")) {
    InitLogging("", LogLevel::kFatal, LogLevel::kFatal);
    google::protobuf::SetLogHandler(nullptr);
  }
}

// One frame as the wire carries it (docs/design/wire.md), for peers that write raw bytes.
inline std::string RawFrame(uint16_t type, uint8_t kind, uint8_t flags, uint64_t request_id,
                            std::string_view payload) {
  std::string out(rpc::kHeaderSize + payload.size(), '\0');
  uint32_t len = static_cast<uint32_t>(payload.size());
  std::memcpy(out.data(), &len, 4);
  std::memcpy(out.data() + 4, &type, 2);
  out[6] = static_cast<char>(kind);
  out[7] = static_cast<char>(flags);
  std::memcpy(out.data() + 8, &request_id, 8);
  if (!payload.empty()) std::memcpy(out.data() + rpc::kHeaderSize, payload.data(), payload.size());
  return out;
}

// Writes all of `data` to a blocking socket; stops quietly when the peer has closed (a server
// may drop the connection half-way through a fuzz input). With `pass_fd` >= 0 (and `data` not
// empty), the descriptor travels (SCM_RIGHTS) with the first bytes.
inline bool WriteAll(int fd, std::string_view data, int pass_fd = -1) {
  size_t off = 0;
  while (off < data.size()) {
    iovec iov{const_cast<char*>(data.data()) + off, data.size() - off};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char cbuf[CMSG_SPACE(sizeof(int))];
    if (pass_fd >= 0) {
      std::memset(cbuf, 0, sizeof(cbuf));
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof(cbuf);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;  // EPIPE / ECONNRESET: the server closed the connection
    }
    pass_fd = -1;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads from a socket until `done(buffer)` says enough, EOF, or the deadline (returns false
// then). Descriptors the server sends along are closed. `done` may be null: read to EOF.
template <class Done>
bool ReadUntil(int fd, std::string* buffer, std::chrono::milliseconds timeout, Done&& done) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char chunk[64 * 1024];
  while (true) {
    if (done(*buffer)) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    iovec iov{chunk, sizeof(chunk)};
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < nfds; ++i) {
        int f;
        std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(f);
      }
    }
    if (n <= 0) return true;  // EOF or reset: the server closed
    buffer->append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace lumen::fuzz
