// fuzz_frame: rpc::Connection's frame decoder and authentication, through the real code path.
//
// Each input is written into one end of a Unix socketpair; the other end is a real Connection
// on a real EventLoop (one loop for the whole run), with a Dispatcher whose handlers reply,
// throw, defer, close, take and send descriptors, and call back. The writer then shuts its
// side down, and the Connection must close (EOF or a refused frame) within a deadline, with
// every descriptor it received closed again.
//
// Input: byte 0 chooses the setting, the rest goes onto the socket as is.
//   bit 0  prepend a valid kHello with the right token (so the rest is parsed after auth)
//   bit 1  the Connection is a client (it sent kHello and has calls 1..3 outstanding), so the
//          input plays a server: responses, error responses, kHelloOk, kAuthError
//   bit 2  pass a descriptor (/dev/null) with the first bytes
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "fuzz_net.h"

namespace lumen::fuzz {
namespace {

constexpr char kToken[] = "fuzz-token";
constexpr auto kDeadline = std::chrono::seconds(10);

// Service message types of the test dispatcher (services use ids >= 100).
enum : uint16_t {
  kEcho = 100,    // Hello -> Hello, or an InvalidArgument error reply
  kThrow = 101,   // the handler throws
  kTakeFd = 102,  // the handler keeps (and closes) the frame's descriptor
  kCloseInHandler = 103,
  kDeferredReply = 104,  // replies from a later loop turn
  kReplyError = 105,     // error reply; status code from the first payload byte
  kSendFd = 106,         // replies with a descriptor attached
  kCallPeer = 107,       // the server calls the peer back (100 ms timeout)
};

class Harness {
 public:
  Harness() : dev_null_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {
    dispatcher_.Register(kEcho, [](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      proto::Hello h;
      if (rpc::ParsePayload(f.payload, &h)) {
        c->Reply(f, h);
      } else {
        c->ReplyError(f, InvalidArgumentError("not a Hello"));
      }
    });
    dispatcher_.Register(kThrow, [](const rpc::ConnectionPtr&, rpc::Frame&) {
      throw std::runtime_error("fuzz handler threw");
    });
    dispatcher_.Register(kTakeFd, [](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      if (f.fd >= 0) {
        ::close(f.fd);
        f.fd = -1;
      }
      c->Reply(f, proto::Empty());
    });
    dispatcher_.Register(kCloseInHandler,
                         [](const rpc::ConnectionPtr& c, rpc::Frame&) { c->Close(Status::OK()); });
    dispatcher_.Register(kDeferredReply, [](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      rpc::Frame handle = rpc::ReplyHandle(f);
      c->loop()->Post([c, handle] { c->Reply(handle, proto::Empty()); });
    });
    dispatcher_.Register(kReplyError, [](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      int code = f.payload.empty() ? 2 : static_cast<uint8_t>(f.payload[0]) % 17;
      c->ReplyError(f, Status(static_cast<StatusCode>(code), std::string(f.payload)));
    });
    dispatcher_.Register(kSendFd, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      c->SendWithFd(kSendFd, rpc::FrameKind::kResponse, f.request_id, proto::Empty(), dev_null_);
    });
    dispatcher_.Register(kCallPeer, [](const rpc::ConnectionPtr& c, rpc::Frame&) {
      c->Call(
          kEcho, proto::Hello(),
          [](const Status&, std::string_view payload) {
            proto::Hello h;
            (void)rpc::ParsePayload(payload, &h);
          },
          /*timeout_ms=*/100);
    });
    loop_.Start();
  }

  void Run(const uint8_t* data, size_t size) {
    InputReader in(data, size);
    const uint8_t mode = in.U8();
    const bool hello = mode & 1, client = mode & 2, pass_fd = mode & 4;
    const int fds_before = CountOpenFds();

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    const int raw = sv[1];

    auto closed = std::make_shared<std::promise<void>>();
    auto closed_future = closed->get_future();
    auto conn = rpc::Connection::Create(
        &loop_, sv[0], client ? rpc::Connection::Role::kClient : rpc::Connection::Role::kServer,
        &dispatcher_, kToken, "fuzz-peer", /*is_unix=*/true);
    conn->set_close_callback(
        [closed](const rpc::ConnectionPtr&, const Status&) { closed->set_value(); });
    conn->Start();
    if (client) {
      for (int i = 0; i < 3; ++i) {  // request ids 1, 2, 3
        conn->Call(
            kEcho, proto::Hello(),
            [](const Status& st, std::string_view payload) {
              proto::Hello h;
              if (st.ok()) (void)rpc::ParsePayload(payload, &h);
            },
            /*timeout_ms=*/i == 0 ? 50 : -1);
      }
    }

    std::string bytes;
    if (hello) {
      proto::Hello h;
      h.set_token(kToken);
      h.set_peer("fuzz");
      bytes = RawFrame(rpc::kMsgHello, 0, 0, 0, h.SerializeAsString());
    }
    bytes.append(in.Rest());
    WriteAll(raw, bytes, pass_fd ? dev_null_ : -1);
    ::shutdown(raw, SHUT_WR);
    WaitOrHang(closed_future, kDeadline, "the connection did not close after EOF");
    std::string out;
    if (!ReadUntil(raw, &out, kDeadline, [](const std::string&) { return false; })) {
      Hang("the connection's socket stayed open after it closed");
    }
    ::close(raw);
    conn.reset();
    // The loop may still run a deferred reply of this connection: let it drain first.
    std::promise<void> drained;
    auto drained_future = drained.get_future();
    loop_.Post([&drained] { drained.set_value(); });
    WaitOrHang(drained_future, kDeadline, "the event loop stopped turning");
    const int fds_after = CountOpenFds();
    if (fds_after != fds_before) {
      std::fprintf(stderr, "fuzz: descriptor leak: %d open before, %d after\n", fds_before,
                   fds_after);
      std::abort();
    }
  }

 private:
  rpc::EventLoop loop_{"fuzz-frame"};
  rpc::Dispatcher dispatcher_;
  const int dev_null_;
};

}  // namespace
}  // namespace lumen::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lumen::fuzz::InitFuzzProcess();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* harness = new lumen::fuzz::Harness();  // lives for the run (its loop thread too)
  harness->Run(data, size);
  return 0;
}
