#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "common.pb.h"
#include "common/resources.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
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

TEST(EventLoop, RunsPostedWorkAndTimersInOrder) {
  rpc::EventLoop loop("test");
  loop.Start();
  std::promise<std::vector<int>> done;
  auto order = std::make_shared<std::vector<int>>();
  loop.RunAfter(std::chrono::milliseconds(30), [&, order] {
    order->push_back(3);
    done.set_value(*order);
  });
  loop.RunAfter(std::chrono::milliseconds(10), [order] { order->push_back(2); });
  loop.Post([order] { order->push_back(1); });
  uint64_t cancelled =
      loop.RunAfter(std::chrono::milliseconds(5), [order] { order->push_back(99); });
  loop.CancelTimer(cancelled);
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(fut.get(), (std::vector<int>{1, 2, 3}));
  loop.Stop();
  EXPECT_FALSE(loop.Post([] {}));
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
  rpc::EventLoop loop_{"rpc-test"};
  rpc::Dispatcher dispatcher_;
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

}  // namespace
}  // namespace lumen
