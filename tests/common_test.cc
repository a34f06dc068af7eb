#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.pb.h"
#include "common/dir_archive.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/resources.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/reconnecting_client.h"
#include "common/rpc/server.h"
#include "common/status.h"
#include "lumen/ids.h"

namespace lumen {
namespace {

TEST(Status, CarriesCodeAndMessage) {
  Status st = NotFoundError("no such thing");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_EQ(st.ToString(), "NotFound: no such thing");
  EXPECT_EQ(st.WithContext("looking").message(), "looking: no such thing");
  StatusOr<int> v = 5;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 5);
  StatusOr<int> e = InternalError("x");
  EXPECT_FALSE(e.ok());
}

TEST(Ids, NestAsDocumented) {
  JobID job = JobID::FromInt(7);
  TaskID driver = TaskID::ForDriver(job);
  TaskID t1 = TaskID::ForNormalTask(job, driver, 1);
  TaskID t1again = TaskID::ForNormalTask(job, driver, 1);
  TaskID t2 = TaskID::ForNormalTask(job, driver, 2);
  EXPECT_EQ(t1, t1again);  // deterministic: lineage re-execution relies on it
  EXPECT_NE(t1, t2);
  EXPECT_EQ(t1.Job(), job);
  ObjectID ret = ObjectID::ForReturn(t1, 0);
  EXPECT_EQ(ret.Task(), t1);
  EXPECT_FALSE(ret.IsPut());
  ObjectID put = ObjectID::ForPut(t1, 3);
  EXPECT_TRUE(put.IsPut());
  EXPECT_EQ(put.Task(), t1);
  ActorID actor = ActorID::Of(job, driver, 9);
  EXPECT_EQ(actor.Job(), job);
  EXPECT_EQ(TaskID::ForActorTask(actor, driver, 1).Actor(), actor);
}

TEST(Ids, HexRoundTripAndNil) {
  ObjectID id = ObjectID::FromRandom();
  EXPECT_EQ(ObjectID::FromHex(id.Hex()), id);
  EXPECT_EQ(id.Hex().size(), 2 * ObjectID::kSize);
  EXPECT_TRUE(ObjectID::FromHex("zz").IsNil());
  EXPECT_TRUE(ObjectID::FromBinary("short").IsNil());
  EXPECT_FALSE(id.IsNil());
}

TEST(Resources, FixedPointArithmetic) {
  ResourceSet node = ResourceSet::FromDoubles({{"CPU", 2}, {"GPU", 1}});
  ResourceSet half = ResourceSet::FromDoubles({{"GPU", 0.5}});
  EXPECT_TRUE(half.IsSubsetOf(node));
  node.Subtract(half);
  node.Subtract(half);
  EXPECT_EQ(node.Get("GPU"), 0);
  EXPECT_FALSE(half.IsSubsetOf(node));
  EXPECT_EQ(ResourceSet::FromDoubles({{"CPU", 1.5}}).ToString(), "{CPU: 1.5}");
  EXPECT_EQ(ResourceSet::FromDoubles({{"CPU", 1}}).Key(),
            ResourceSet::FromDoubles({{"CPU", 1}}).Key());
}

// Timers run in deadline order, posted work first, cancelled timers never. The loop is held
// until every deadline has passed, so the order cannot depend on how fast this machine is.
TEST(EventLoop, RunsPostedWorkAndTimersInOrder) {
  rpc::EventLoop loop("test");
  loop.Start();
  auto order = std::make_shared<std::vector<int>>();
  std::promise<std::vector<int>> done;
  std::promise<std::chrono::steady_clock::time_point> armed;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  loop.Post([order] { order->push_back(1); });
  // On the loop thread, so that nothing can fire between arming and cancelling.
  loop.Post([&, order] {
    loop.RunAfter(std::chrono::milliseconds(3), [&, order] {
      order->push_back(3);
      done.set_value(*order);
    });
    loop.RunAfter(std::chrono::milliseconds(2), [order] { order->push_back(2); });
    uint64_t cancelled =
        loop.RunAfter(std::chrono::milliseconds(1), [order] { order->push_back(99); });
    loop.CancelTimer(cancelled);
    armed.set_value(std::chrono::steady_clock::now());
  });
  loop.Post([released] { released.wait(); });  // the loop is busy until released
  const auto start = armed.get_future().get();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(4)) {
    std::this_thread::yield();  // every deadline passes while the loop is held
  }
  release.set_value();
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(fut.get(), (std::vector<int>{1, 2, 3}));
  loop.Stop();
  EXPECT_FALSE(loop.Post([] {}));
}

// Regression: an accept loop out of descriptors wrote the same line ~10 million times.
TEST(Logging, RepeatedLinesFromOnePlaceAreWrittenOncePerWindow) {
  const std::string path = ::testing::TempDir() + "/lumen-log-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  InitLogging(path, LogLevel::kInfo, LogLevel::kFatal);
  for (int i = 0; i < 1000; ++i) LUMEN_LOG_EVERY_WINDOW(WARNING) << "accept: flood " << i;
  LUMEN_LOG(WARNING) << "a different line";
  ShutdownLogging();
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("accept: flood 0"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("a different line"), std::string::npos) << lines[1];
  ::unlink(path.c_str());
}

constexpr uint16_t kEcho = 500;

class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_.Start();
    dispatcher_.Register(kEcho, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      proto::Hello msg;
      ASSERT_TRUE(rpc::ParsePayload(f.payload, &msg));
      ++handled_;
      if (f.kind == rpc::FrameKind::kRequest) c->Reply(f, msg);
    });
    server_ = std::make_unique<rpc::Server>(&loop_, &dispatcher_, "secret-token", "test");
    auto addr = server_->ListenTcp("127.0.0.1", 0);
    ASSERT_TRUE(addr.ok()) << addr.status();
    address_ = *addr;
  }
  void TearDown() override {
    server_->Stop();
    loop_.Stop();
  }
  // A reconnecting client of the server, retrying every 10 ms (doubling).
  rpc::ReconnectingClient::Options ReconnectingOptions(int64_t reconnect_timeout_ms) {
    rpc::ReconnectingClient::Options o;
    o.address = address_;
    o.token = "secret-token";
    o.dispatcher = &no_handlers_;
    o.reconnect_timeout_ms = reconnect_timeout_ms;
    o.retry_ms = 10;
    return o;
  }
  rpc::EventLoop loop_{"rpc-test"};
  rpc::Dispatcher dispatcher_;
  rpc::Dispatcher no_handlers_;
  std::unique_ptr<rpc::Server> server_;
  std::string address_;
  std::atomic<int> handled_{0};
};

TEST_F(RpcTest, CallWithTheTokenGetsAReply) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req, reply;
  req.set_peer("hello world");
  ASSERT_TRUE((*conn)->CallSync(kEcho, req, &reply, 5000).ok());
  EXPECT_EQ(reply.peer(), "hello world");
  // Large payloads cross intact.
  req.set_peer(std::string(5 << 20, 'x'));
  ASSERT_TRUE((*conn)->CallSync(kEcho, req, &reply, 5000).ok());
  EXPECT_EQ(reply.peer().size(), 5u << 20);
}

// The link to a restarting server (the control service on Redis): the client notices the
// loss, connects again, re-registers (on_connected) before anything else, then sends what
// waited meanwhile — here a call made while the server was down.
TEST_F(RpcTest, AReconnectingClientRegistersAgainThenSendsWhatWaited) {
  std::mutex mu;
  std::vector<std::string> seen;  // what the server received, in order
  dispatcher_.Register(kEcho + 1, [&](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::Hello msg;
    ASSERT_TRUE(rpc::ParsePayload(f.payload, &msg));
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(msg.peer());
    }
    c->Reply(f, msg);
  });
  std::atomic<int> registrations{0};
  rpc::ReconnectingClient::Options o = ReconnectingOptions(60000);
  o.on_connected = [&](const rpc::ConnectionPtr& c, std::function<void(const Status&)> done) {
    ++registrations;
    proto::Hello reg;
    reg.set_peer("register");
    c->Call(kEcho + 1, reg, [done](const Status& st, std::string_view) { done(st); });
  };
  auto client = rpc::ReconnectingClient::Connect(&loop_, std::move(o));
  ASSERT_TRUE(client.ok()) << client.status();
  proto::Hello req, reply;
  req.set_peer("first");
  ASSERT_TRUE((*client)->CallSync(kEcho + 1, req, &reply, 5000).ok());

  const int port = std::atoi(address_.substr(address_.rfind(':') + 1).c_str());
  server_->Stop();
  auto waited = std::async(std::launch::async, [&] {
    proto::Hello r, out;
    r.set_peer("while down");
    Status st = (*client)->CallSync(kEcho + 1, r, &out, 5000);
    return st.ok() ? out.peer() : st.ToString();
  });
  // Nothing can answer it now; it waits for the server to come back.
  EXPECT_EQ(waited.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  server_ = std::make_unique<rpc::Server>(&loop_, &dispatcher_, "secret-token", "test");
  ASSERT_TRUE(server_->ListenTcp("127.0.0.1", port).ok());
  EXPECT_EQ(waited.get(), "while down");
  EXPECT_EQ(registrations.load(), 1);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"first", "register", "while down"}));
  EXPECT_TRUE((*client)->connected());
  (*client)->Close(Status::OK());
}

// A server that stays away past the reconnect timeout: waiting and later calls fail with an
// error naming the address and the setting, and the owner hears of it once.
TEST_F(RpcTest, AReconnectingClientGivesUpAfterItsTimeout) {
  std::promise<Status> lost;
  rpc::ReconnectingClient::Options o = ReconnectingOptions(200);
  o.on_lost = [&](const Status& why) { lost.set_value(why); };
  auto client = rpc::ReconnectingClient::Connect(&loop_, std::move(o));
  ASSERT_TRUE(client.ok()) << client.status();
  server_->Stop();
  proto::Hello req;
  req.set_peer("never answered");
  Status st = (*client)->CallSync(kEcho, req, nullptr, 5000);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find(address_), std::string::npos) << st;
  EXPECT_NE(st.message().find("LUMEN_GCS_RECONNECT_TIMEOUT_S"), std::string::npos) << st;
  EXPECT_EQ(lost.get_future().get().code(), StatusCode::kUnavailable);
  EXPECT_TRUE((*client)->closed());
  EXPECT_EQ((*client)->CallSync(kEcho, req, nullptr, 5000).code(), StatusCode::kUnavailable);
}

// A TCP socket bound to a free loopback port (its address in `sa`), or -1.
int BindLoopback(sockaddr_in* sa) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  *sa = sockaddr_in{};
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(*sa);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(sa), sizeof(*sa)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(sa), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

TEST_F(RpcTest, ABackgroundConnectCarriesCallsQueuedWhileItConnects) {
  rpc::Dispatcher none;
  auto conn = rpc::ConnectInBackground(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok()) << conn.status();
  proto::Hello req, reply;
  req.set_peer("queued before the connect finished");
  ASSERT_TRUE((*conn)->CallSync(kEcho, req, &reply, 5000).ok());
  EXPECT_EQ(reply.peer(), req.peer());
}

// A listener whose accept queue is full drops further SYNs: a connect to it stays in
// progress. The background connect returns at once and fails after its timeout, failing the
// call queued on it with the reason.
TEST_F(RpcTest, ABackgroundConnectThatNeverCompletesFailsItsCallsAfterTheTimeout) {
  sockaddr_in sa{};
  int listener = BindLoopback(&sa);
  ASSERT_GE(listener, 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  // Fill the accept queue (never accepted).
  std::vector<int> fillers;
  for (int i = 0; i < 2; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    fillers.push_back(fd);
  }
  rpc::Dispatcher none;
  std::promise<Status> closed;
  auto conn = rpc::ConnectInBackground(
      &loop_, address, &none, "secret-token", /*timeout_ms=*/300,
      [&closed](const rpc::ConnectionPtr&, const Status& why) { closed.set_value(why); });
  ASSERT_TRUE(conn.ok()) << conn.status();
  proto::Hello req, reply;
  Status st = (*conn)->CallSync(kEcho, req, &reply, 60000);
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("connect to " + address + " timed out after 300 ms"),
            std::string::npos)
      << st;
  EXPECT_EQ(closed.get_future().get().code(), StatusCode::kDeadlineExceeded);
  for (int fd : fillers) ::close(fd);
  ::close(listener);
}

TEST_F(RpcTest, ABackgroundConnectToAClosedPortFailsWithTheRefusal) {
  sockaddr_in sa{};
  int fd = BindLoopback(&sa);
  ASSERT_GE(fd, 0);
  ::close(fd);  // bound, never listened: nothing accepts there
  rpc::Dispatcher none;
  auto conn = rpc::ConnectInBackground(&loop_, "127.0.0.1:" + std::to_string(ntohs(sa.sin_port)),
                                       &none, "secret-token");
  Status st = conn.status();
  if (conn.ok()) {  // the refusal arrives on the loop
    proto::Hello req, reply;
    st = (*conn)->CallSync(kEcho, req, &reply, 60000);
  }
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("refused"), std::string::npos) << st;
}

TEST_F(RpcTest, WrongTokenIsRefusedWithAClearMessage) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "not-the-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req, reply;
  Status st = (*conn)->CallSync(kEcho, req, &reply, 5000);
  EXPECT_EQ(st.code(), StatusCode::kUnauthenticated) << st;
  EXPECT_NE(st.message().find("cluster token"), std::string::npos) << st;
  EXPECT_EQ(handled_.load(), 0);
}

TEST_F(RpcTest, GarbageBytesCloseTheConnectionAndTheServerSurvives) {
  for (const std::string& garbage :
       {std::string("GET / HTTP/1.1\r\n\r\n"), std::string(100000, '\xff'),
        std::string(
            "\x10\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00junkjunkjunkjunk",
            32)}) {
    auto colon = address_.rfind(':');
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address_.substr(colon + 1))));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    ::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
    char buf[4096];
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n;
    std::string got;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
    EXPECT_LE(n, 0);  // the server closed the connection
    ::close(fd);
  }
  EXPECT_EQ(handled_.load(), 0);
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req, reply;
  EXPECT_TRUE((*conn)->CallSync(kEcho, req, &reply, 5000).ok());
}

int ConnectTcp(const std::string& address) {
  auto colon = address.rfind(':');
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// 0: the server closed it; -1: still open after `wait_ms`.
int WaitForClose(int fd, int wait_ms) {
  timeval tv{wait_ms / 1000, (wait_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[256];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
  }
  return n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : -1;
}

// Regression: a connection that never completed the Hello was never timed out, so ~20,000 of
// them exhausted a daemon's file descriptors.
TEST_F(RpcTest, AConnectionThatNeverSendsAHelloIsClosedAtTheHandshakeDeadline) {
  rpc::Server strict(&loop_, &dispatcher_, "secret-token", "strict");
  strict.set_handshake_limits(/*timeout_ms=*/300, /*max_handshaking=*/100);
  auto addr = strict.ListenTcp("127.0.0.1", 0);
  ASSERT_TRUE(addr.ok()) << addr.status();
  int fd = ConnectTcp(*addr);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "\x10\x00", 2, MSG_NOSIGNAL), 2);  // the start of a header, no more
  EXPECT_EQ(WaitForClose(fd, 30000), 0) << "the half-open connection was never closed";
  ::close(fd);
  // A client that authenticates is not affected by the deadline.
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, *addr, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req, reply;
  EXPECT_TRUE((*conn)->CallSync(kEcho, req, &reply, 5000).ok());
  (*conn)->Close(Status::OK());
  strict.Stop();
}

// Regression: nothing bounded the connections still in the handshake.
TEST_F(RpcTest, HalfOpenConnectionsBeyondTheCapDropTheOldestAndClientsStillGetIn) {
  rpc::Server capped(&loop_, &dispatcher_, "secret-token", "capped");
  capped.set_handshake_limits(/*timeout_ms=*/0, /*max_handshaking=*/16);  // no deadline
  auto addr = capped.ListenTcp("127.0.0.1", 0);
  ASSERT_TRUE(addr.ok()) << addr.status();
  std::vector<int> fds;
  for (int i = 0; i < 48; ++i) {
    int fd = ConnectTcp(*addr);
    ASSERT_GE(fd, 0);
    ::send(fd, "\x10\x00", 2, MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  // Accepts are in connect order: once this client got its reply, all 48 were accepted.
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, *addr, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req, reply;
  EXPECT_TRUE((*conn)->CallSync(kEcho, req, &reply, 5000).ok());
  std::promise<size_t> in_handshake;
  loop_.Post([&] { in_handshake.set_value(capped.num_handshaking()); });
  EXPECT_LE(in_handshake.get_future().get(), 16u);
  EXPECT_EQ(WaitForClose(fds.front(), 10000), 0) << "the oldest half-open connection stayed";
  EXPECT_EQ(WaitForClose(fds.back(), 200), -1) << "the newest half-open connection was dropped";
  for (int fd : fds) ::close(fd);
  (*conn)->Close(Status::OK());
  capped.Stop();
}

TEST_F(RpcTest, UnknownMessageTypeGetsAnErrorReply) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req, reply;
  Status st = (*conn)->CallSync(12345, req, &reply, 5000);
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented) << st;
}

TEST_F(RpcTest, CallTimesOutWhenNoReplyComes) {
  dispatcher_.Register(501, [](const rpc::ConnectionPtr&, rpc::Frame&) {});  // never replies
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req;
  Status st = (*conn)->CallSync(501, req, nullptr, 100);
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
}

TEST_F(RpcTest, PendingCallsFailWhenThePeerGoesAway) {
  dispatcher_.Register(502, [](const rpc::ConnectionPtr& c, rpc::Frame&) {
    c->Close(UnavailableError("going away"));
  });
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  proto::Hello req;
  Status st = (*conn)->CallSync(502, req, nullptr, 5000);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st;
}

TEST_F(RpcTest, ManyConcurrentCallersAllGetTheirOwnReplies) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        proto::Hello req, reply;
        req.set_peer(std::to_string(t * 1000 + i));
        if ((*conn)->CallSync(kEcho, req, &reply, 5000).ok() && reply.peer() == req.peer()) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 800);
}

// ---- replies whose bytes come from a file and land in the caller's buffer ----------------

constexpr uint16_t kFileRange = 510;

class RawReplyTest : public RpcTest {
 protected:
  void SetUp() override {
    RpcTest::SetUp();
    fd_ = ::memfd_create("raw-reply-test", MFD_CLOEXEC);
    ASSERT_GE(fd_, 0);
    bytes_.resize(kFileBytes);
    for (size_t i = 0; i < bytes_.size(); ++i)
      bytes_[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
    ASSERT_EQ(::pwrite(fd_, bytes_.data(), bytes_.size(), 0), static_cast<ssize_t>(bytes_.size()));
    // Request: peer = "offset:length"; the head echoes it.
    dispatcher_.Register(kFileRange, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      proto::Hello req;
      ASSERT_TRUE(rpc::ParsePayload(f.payload, &req));
      size_t colon = req.peer().find(':');
      int64_t offset = std::stoll(req.peer().substr(0, colon));
      size_t length = std::stoull(req.peer().substr(colon + 1));
      c->ReplyWithFileRange(f, req, fd_, offset, length);
    });
  }
  void TearDown() override {
    RpcTest::TearDown();
    ::close(fd_);
  }
  struct Result {
    Status status;
    std::string head;
    size_t raw = 0;
  };
  // CallInto on `conn`; waits for the callback.
  static Result CallInto(const rpc::ConnectionPtr& conn, uint16_t type, const std::string& peer,
                         char* dest, size_t capacity) {
    proto::Hello req;
    req.set_peer(peer);
    std::promise<Result> done;
    conn->CallInto(
        type, req, dest, capacity,
        [&done](const Status& st, std::string_view head, size_t raw) {
          done.set_value({st, std::string(head), raw});
        },
        10000);
    return done.get_future().get();
  }
  static constexpr size_t kFileBytes = 24 << 20;
  int fd_ = -1;
  std::string bytes_;
};

TEST_F(RawReplyTest, FileBytesLandInTheCallersBufferBetweenOrdinaryReplies) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  // Several ranges in flight at once on one connection, with ordinary calls between them.
  struct Range {
    int64_t offset;
    size_t length;
    std::string into;
    std::promise<Result> done;
  };
  std::vector<Range> ranges(6);
  for (size_t i = 0; i < ranges.size(); ++i) {
    ranges[i].offset = static_cast<int64_t>(i * 3 * (1 << 20) + i);
    ranges[i].length = (4 << 20) - i * 1000;
    ranges[i].into.assign(ranges[i].length, '\0');
  }
  std::vector<std::future<Result>> futures;
  for (auto& r : ranges) {
    proto::Hello req;
    req.set_peer(std::to_string(r.offset) + ":" + std::to_string(r.length));
    futures.push_back(r.done.get_future());
    (*conn)->CallInto(
        kFileRange, req, r.into.data(), r.length,
        [&r](const Status& st, std::string_view head, size_t raw) {
          r.done.set_value({st, std::string(head), raw});
        },
        10000);
    proto::Hello echo, reply;
    echo.set_peer("between");
    ASSERT_TRUE((*conn)->CallSync(kEcho, echo, &reply, 5000).ok());
    EXPECT_EQ(reply.peer(), "between");
  }
  for (size_t i = 0; i < ranges.size(); ++i) {
    Result res = futures[i].get();
    ASSERT_TRUE(res.status.ok()) << res.status;
    EXPECT_EQ(res.raw, ranges[i].length);
    proto::Hello head;
    ASSERT_TRUE(rpc::ParsePayload(res.head, &head));
    EXPECT_EQ(head.peer(),
              std::to_string(ranges[i].offset) + ":" + std::to_string(ranges[i].length));
    EXPECT_TRUE(ranges[i].into == bytes_.substr(ranges[i].offset, ranges[i].length))
        << "range " << i << " arrived corrupted";
  }
}

TEST_F(RawReplyTest, AnOrdinaryReplyToCallIntoArrivesAsTheHead) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  char unused[16];
  Result res = CallInto(*conn, kEcho, "plain", unused, sizeof(unused));
  ASSERT_TRUE(res.status.ok()) << res.status;
  EXPECT_EQ(res.raw, 0u);
  proto::Hello head;
  ASSERT_TRUE(rpc::ParsePayload(res.head, &head));
  EXPECT_EQ(head.peer(), "plain");
}

TEST_F(RawReplyTest, ARawReplyLongerThanAskedForClosesTheConnection) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  std::string small(1000, '\0');
  Result res = CallInto(*conn, kFileRange, "0:5000", small.data(), small.size());
  EXPECT_EQ(res.status.code(), StatusCode::kInvalidArgument) << res.status;
  EXPECT_NE(res.status.message().find("exceeds"), std::string::npos) << res.status;
  EXPECT_TRUE(small == std::string(1000, '\0')) << "bytes were written past the refusal";
  EXPECT_TRUE((*conn)->closed());
}

TEST_F(RawReplyTest, ARangePastTheEndOfTheFileFailsTheCallInsteadOfHanging) {
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop_, address_, &none, "secret-token");
  ASSERT_TRUE(conn.ok());
  std::string into(2 << 20, '\0');
  // The file ends 1 MiB into the range: the server cannot send the rest and drops the
  // connection; the caller learns it at once.
  Result res = CallInto(*conn, kFileRange,
                        std::to_string(kFileBytes - (1 << 20)) + ":" + std::to_string(into.size()),
                        into.data(), into.size());
  EXPECT_EQ(res.status.code(), StatusCode::kUnavailable) << res.status;
}

}  // namespace
}  // namespace lumen

namespace {

TEST(DirArchiveTest, ATreeRoundTripsWithItsModes) {
  const std::string base = ::testing::TempDir() + "/lumen-archive-" + std::to_string(::getpid());
  lumen::RemoveAll(base).IgnoreError();
  ASSERT_TRUE(lumen::MakeDirs(base + "/src/a/b", 0755).ok());
  ASSERT_TRUE(lumen::MakeDirs(base + "/src/empty", 0755).ok());
  ASSERT_TRUE(lumen::WriteFileAtomic(base + "/src/top.txt", "top", 0644).ok());
  ASSERT_TRUE(lumen::WriteFileAtomic(base + "/src/a/b/run.sh", "#!/bin/sh\n", 0755).ok());
  ASSERT_EQ(::symlink("/etc/passwd", (base + "/src/link").c_str()), 0);
  auto packed = lumen::dir_archive::Pack(base + "/src", 1 << 20);
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_TRUE(lumen::dir_archive::Unpack(*packed, base + "/dst").ok());
  EXPECT_EQ(*lumen::ReadFile(base + "/dst/top.txt"), "top");
  EXPECT_EQ(*lumen::ReadFile(base + "/dst/a/b/run.sh"), "#!/bin/sh\n");
  EXPECT_EQ(::access((base + "/dst/a/b/run.sh").c_str(), X_OK), 0);
  EXPECT_TRUE(lumen::PathExists(base + "/dst/empty"));
  EXPECT_FALSE(lumen::PathExists(base + "/dst/link"));  // links are not followed or kept
  // Too large: the limit is named.
  auto big = lumen::dir_archive::Pack(base + "/src", 4);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("MiB"), std::string::npos);
  EXPECT_FALSE(lumen::dir_archive::Pack(base + "/src/top.txt", 1 << 20).ok());  // not a directory
  lumen::RemoveAll(base).IgnoreError();
}

TEST(DirArchiveTest, HostileArchivesWriteNothingOutsideTheirDestination) {
  const std::string base = ::testing::TempDir() + "/lumen-hostile-" + std::to_string(::getpid());
  lumen::RemoveAll(base).IgnoreError();
  ASSERT_TRUE(lumen::MakeDirs(base, 0700).ok());
  auto entry = [](const std::string& path, const std::string& data) {
    std::string e = "f";
    uint32_t len = static_cast<uint32_t>(path.size());
    for (int i = 0; i < 4; ++i) e.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
    e += path;
    uint32_t mode = 0644;
    for (int i = 0; i < 4; ++i) e.push_back(static_cast<char>((mode >> (8 * i)) & 0xff));
    uint64_t size = data.size();
    for (int i = 0; i < 8; ++i) e.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
    return e + data;
  };
  const std::string magic = "LUMENDIR1\n";
  for (const std::string& path : {std::string("../escaped"), std::string("/tmp/abs"),
                                  std::string("a/../../escaped"), std::string("")}) {
    lumen::Status st = lumen::dir_archive::Unpack(magic + entry(path, "x"), base + "/dst");
    EXPECT_FALSE(st.ok()) << path;
    EXPECT_FALSE(lumen::PathExists(base + "/dst")) << path;
  }
  EXPECT_FALSE(lumen::PathExists(base + "/escaped"));
  std::string truncated = magic + entry("file", "hello");
  truncated.resize(truncated.size() - 2);
  EXPECT_FALSE(lumen::dir_archive::Unpack(truncated, base + "/dst").ok());
  EXPECT_FALSE(lumen::dir_archive::Unpack("not an archive", base + "/dst").ok());
  EXPECT_FALSE(lumen::PathExists(base + "/dst"));
  lumen::RemoveAll(base).IgnoreError();
}

}  // namespace
