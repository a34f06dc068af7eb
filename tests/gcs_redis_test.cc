// The control service's Redis store against a real redis-server: tables round-trip binary
// values, bad addresses and passwords are clear errors, a restarted Redis is reconnected, and a
// restarted control service continues from what the previous one stored.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>
#include <tuple>
#include <utility>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/message_types.h"
#include "gcs.pb.h"
#include "gcs/gcs_server.h"
#include "gcs/redis_gcs_store.h"
#include "lumen/ids.h"
#include "redis_server.h"

namespace lumen::gcs {
namespace {

std::string TestDir(const std::string& name) {
  return "/tmp/lumen-redis-" + std::to_string(::getpid()) + "-" + name;
}

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(redis_.Start(&error)) << error;
  }
  void TearDown() override {
    redis_.Stop();
    std::filesystem::remove_all(TestDir("store"));
  }
  std::unique_ptr<RedisGcsStore> Connect(const std::string& ns = "lumen") {
    RedisOptions o;
    o.address = redis_.address();
    o.ns = ns;
    auto s = RedisGcsStore::Connect(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  lumen::testing::RedisServer redis_{TestDir("store")};
};

TEST_F(RedisStoreTest, TablesRoundTripBinaryValuesPerNamespace) {
  auto store = Connect();
  ASSERT_TRUE(store);
  const std::string binary("a\0b\xff\n", 5);
  ASSERT_TRUE(store->Put("t", "k1", binary).ok());
  ASSERT_TRUE(store->Put("t", std::string("k\0 2", 4), "v2").ok());
  ASSERT_TRUE(store->Put("other", "k1", "x").ok());
  auto v = store->Get("t", "k1");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, binary);
  EXPECT_EQ(store->Get("t", "missing").status().code(), StatusCode::kNotFound);
  auto all = store->GetAll("t");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  ASSERT_TRUE(store->Delete("t", "k1").ok());
  EXPECT_EQ(store->Get("t", "k1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->GetAll("t")->size(), 1u);
  EXPECT_TRUE(store->GetAll("never-written")->empty());

  // Another namespace on the same server sees none of it.
  auto other = Connect("cluster2");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->Get("other", "k1").status().code(), StatusCode::kNotFound);
}

TEST_F(RedisStoreTest, ReconnectsWhenRedisRestarts) {
  auto store = Connect();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Put("t", "k", "before").ok());
  redis_.Stop();
  EXPECT_EQ(store->Put("t", "k", "down").code(), StatusCode::kUnavailable);
  std::string error;
  ASSERT_TRUE(redis_.Start(&error)) << error;
  // A new server (no persistence): the store reconnects by itself and works again.
  ASSERT_TRUE(store->Put("t", "k", "after").ok());
  EXPECT_EQ(*store->Get("t", "k"), "after");
}

TEST(RedisStoreErrors, BadAddressesAndPasswordsAreClearErrors) {
  RedisOptions o;
  o.address = "unix:/nonexistent/redis.sock";
  auto s = RedisGcsStore::Connect(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(s.status().message().find("cannot reach Redis at unix:/nonexistent/redis.sock"),
            std::string::npos)
      << s.status();
  for (const char* bad : {"localhost", "localhost:0", "localhost:http", ":6379"}) {
    o.address = bad;
    EXPECT_EQ(RedisGcsStore::Connect(o).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  o.address = "unix:/tmp/x";
  o.ns = "a:b";
  EXPECT_EQ(RedisGcsStore::Connect(o).status().code(), StatusCode::kInvalidArgument);

  lumen::testing::RedisServer locked(TestDir("auth"), "s3cret-password");
  std::string error;
  ASSERT_TRUE(locked.Start(&error)) << error;
  RedisOptions a;
  a.address = locked.address();
  auto none = RedisGcsStore::Connect(a);  // no password
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("NOAUTH"), std::string::npos) << none.status();
  a.password = "wrong";
  auto wrong = RedisGcsStore::Connect(a);
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnauthenticated) << wrong.status();
  a.password = "s3cret-password";
  EXPECT_TRUE(RedisGcsStore::Connect(a).ok());
  locked.Stop();
  std::filesystem::remove_all(TestDir("auth"));
}

// A control service on a Redis store, restarted: the KV store survives, job IDs continue, and
// the cluster the previous incarnation ran goes on — a node and a driver that register again
// keep their node and job, an actor stays alive where it was — while what does not come back
// within the node death timeout is declared dead (nodes, with their actors) or finished (jobs),
// and the previous head's node is dead at once.
class RestartTest : public RedisStoreTest {
 protected:
  static constexpr int64_t kDeathTimeoutMs = 1000;
  std::unique_ptr<GcsServer> StartGcs() {
    GcsOptions o;
    o.token = "tok";
    o.node_death_timeout_ms = kDeathTimeoutMs;
    auto store = Connect();
    auto server = std::make_unique<GcsServer>(&loop_, o, std::move(store));
    Status st = server->Start();
    EXPECT_TRUE(st.ok()) << st;
    return server;
  }
  rpc::ConnectionPtr Client(GcsServer* server) {
    auto c = rpc::Connect(&client_loop_, server->address(), &dispatcher_, "tok");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }
  static proto::RegisterNodeRequest Node(const NodeID& id, bool head) {
    proto::RegisterNodeRequest reg;
    reg.mutable_node()->set_node_id(id.Binary());
    reg.mutable_node()->set_is_head(head);
    reg.mutable_node()->mutable_address()->set_tcp_address("127.0.0.1:1");
    return reg;
  }
  static proto::NodeInfo FindNode(const rpc::ConnectionPtr& c, const NodeID& id) {
    proto::NodeList nodes;
    Status st = c->CallSync(rpc::kGetAllNodes, proto::Empty(), &nodes, 5000);
    EXPECT_TRUE(st.ok()) << st;
    for (const auto& n : nodes.nodes()) {
      if (n.node_id() == id.Binary()) return n;
    }
    ADD_FAILURE() << "node " << id.Hex() << " is not in the table";
    return proto::NodeInfo();
  }
  static proto::ActorInfo FindActor(const rpc::ConnectionPtr& c, const ActorID& id) {
    proto::GetActorRequest req;
    req.set_actor_id(id.Binary());
    proto::GetActorReply reply;
    EXPECT_TRUE(c->CallSync(rpc::kGetActor, req, &reply, 5000).ok());
    EXPECT_TRUE(reply.found());
    return reply.info();
  }
  static bool JobAlive(const rpc::ConnectionPtr& c, uint32_t job) {
    proto::GetJobRequest req;
    req.set_job_id(JobID::FromInt(job).Binary());
    proto::GetJobReply reply;
    EXPECT_TRUE(c->CallSync(rpc::kGetJob, req, &reply, 5000).ok());
    EXPECT_TRUE(reply.found());
    return reply.alive();
  }
  // Polls `done` (the control service's timers decide) for up to ten death timeouts.
  template <class Fn>
  static bool Eventually(Fn done) {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(10 * kDeathTimeoutMs + 5000);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  void SetUp() override {
    RedisStoreTest::SetUp();
    loop_.Start();
    client_loop_.Start();
  }
  void TearDown() override {
    client_loop_.Stop();
    loop_.Stop();
    RedisStoreTest::TearDown();
  }
  rpc::EventLoop loop_{"gcs"};
  rpc::EventLoop client_loop_{"client"};
  rpc::Dispatcher dispatcher_;
};

TEST_F(RestartTest, RestartedControlServiceContinuesFromRedis) {
  const NodeID returning = NodeID::FromRandom(), vanishing = NodeID::FromRandom(),
               head = NodeID::FromRandom();
  const ActorID kept = ActorID::FromRandom(), lost = ActorID::FromRandom();
  uint32_t last_job = 0;
  {
    auto gcs = StartGcs();
    auto c = Client(gcs.get());
    ASSERT_TRUE(c);
    proto::KVRequest put;
    put.set_ns("app");
    put.set_key("model");
    put.set_value(std::string("weights\0v1", 10));
    ASSERT_TRUE(c->CallSync(rpc::kKVPut, put, nullptr, 5000).ok());
    for (const auto& [id, is_head] :
         {std::pair{returning, false}, {vanishing, false}, {head, true}}) {
      auto n = Client(gcs.get());
      ASSERT_TRUE(n->CallSync(rpc::kRegisterNode, Node(id, is_head), nullptr, 5000).ok());
    }
    for (int i = 0; i < 2; ++i) {
      proto::RegisterJobReply job;
      ASSERT_TRUE(c->CallSync(rpc::kRegisterJob, proto::RegisterJobRequest(), &job, 5000).ok());
      last_job = JobID::FromBinary(job.job_id()).ToInt();
    }
    gcs->Stop();  // as if it died: nothing more reaches the store
  }
  {
    // Two actors the previous incarnation had running (written as that incarnation would
    // have): one on the node that comes back, one on the node that does not.
    for (const auto& [id, node, name] :
         {std::tuple{kept, returning, "svc"}, {lost, vanishing, "gone"}}) {
      proto::ActorTableEntry entry;
      entry.mutable_info()->set_actor_id(id.Binary());
      entry.mutable_info()->set_name(name);
      entry.mutable_info()->set_state(proto::ALIVE);
      entry.set_node_id(node.Binary());
      entry.set_worker_id(WorkerID::FromRandom().Binary());
      ASSERT_TRUE(Connect()->Put("actors", id.Binary(), entry.SerializeAsString()).ok());
    }
    // Garbage in the store is skipped, not fatal.
    ASSERT_TRUE(Connect()->Put("actors", "short", "garbage").ok());
  }

  auto gcs = StartGcs();
  auto c = Client(gcs.get());
  ASSERT_TRUE(c);
  proto::KVRequest get;
  get.set_ns("app");
  get.set_key("model");
  proto::KVReply kv;
  ASSERT_TRUE(c->CallSync(rpc::kKVGet, get, &kv, 5000).ok());
  EXPECT_TRUE(kv.found());
  EXPECT_EQ(kv.value(), std::string("weights\0v1", 10));

  // The previous head's node is dead at once; the others are alive, waiting for their daemons.
  ASSERT_TRUE(Eventually([&] { return !FindNode(c, head).alive(); }));
  EXPECT_NE(FindNode(c, head).death_cause().find("previous incarnation"), std::string::npos);
  EXPECT_TRUE(FindNode(c, returning).alive());
  EXPECT_EQ(FindActor(c, kept).state(), proto::ALIVE);

  // The returning node and the last job's driver register again under their ids.
  auto node_conn = Client(gcs.get());
  ASSERT_TRUE(node_conn->CallSync(rpc::kRegisterNode, Node(returning, false), nullptr, 5000).ok());
  proto::RegisterJobRequest again;
  again.set_job_id(JobID::FromInt(last_job).Binary());
  auto driver = Client(gcs.get());
  proto::RegisterJobReply rejoined;
  ASSERT_TRUE(driver->CallSync(rpc::kRegisterJob, again, &rejoined, 5000).ok());
  EXPECT_EQ(JobID::FromBinary(rejoined.job_id()).ToInt(), last_job);
  proto::RegisterJobReply job;
  ASSERT_TRUE(c->CallSync(rpc::kRegisterJob, proto::RegisterJobRequest(), &job, 5000).ok());
  EXPECT_EQ(JobID::FromBinary(job.job_id()).ToInt(), last_job + 1);

  EXPECT_EQ(FindActor(c, kept).state(), proto::ALIVE);

  // What did not come back: the vanishing node is declared dead with its actor, the other
  // job ends.
  ASSERT_TRUE(Eventually([&] { return !FindNode(c, vanishing).alive(); }));
  EXPECT_NE(FindNode(c, vanishing).death_cause().find("did not register again"), std::string::npos)
      << FindNode(c, vanishing).death_cause();
  ASSERT_TRUE(Eventually([&] { return FindActor(c, lost).state() == proto::DEAD; }));
  EXPECT_NE(FindActor(c, lost).death_cause().find("lost with its node"), std::string::npos)
      << FindActor(c, lost).death_cause();
  ASSERT_TRUE(Eventually([&] { return !JobAlive(c, last_job - 1); }));
  EXPECT_TRUE(JobAlive(c, last_job));

  // A node declared dead may not come back under its id; nor may a finished job.
  Status refused =
      Client(gcs.get())->CallSync(rpc::kRegisterNode, Node(vanishing, false), nullptr, 5000);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  again.set_job_id(JobID::FromInt(last_job - 1).Binary());
  refused = Client(gcs.get())->CallSync(rpc::kRegisterJob, again, nullptr, 5000);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  c->Close(Status::OK());
  gcs->Stop();
}

// Regression: the KV Get and Del handlers reported a Redis failure as "not found", so a caller
// could conclude that a key it had written was gone.
TEST_F(RestartTest, KvReportsAStorageFailureNotNotFound) {
  auto gcs = StartGcs();
  auto c = Client(gcs.get());
  ASSERT_TRUE(c);
  proto::KVRequest put;
  put.set_ns("app");
  put.set_key("k");
  put.set_value("v");
  ASSERT_TRUE(c->CallSync(rpc::kKVPut, put, nullptr, 5000).ok());
  redis_.Stop();
  proto::KVRequest key;
  key.set_ns("app");
  key.set_key("k");
  for (uint16_t type : {rpc::kKVGet, rpc::kKVDel, rpc::kKVPut, rpc::kKVKeys}) {
    proto::KVReply reply;
    Status st = c->CallSync(type, key, &reply, 5000);
    EXPECT_FALSE(st.ok()) << "message type " << type << " answered found=" << reply.found();
    EXPECT_NE(st.message().find("Redis"), std::string::npos) << st;
  }
  c->Close(Status::OK());
  gcs->Stop();
}

// A Redis that stops answering holds up only the calls that need it: the KV request queued
// behind it waits, while the control service's loop goes on answering everything else.
TEST_F(RestartTest, AStalledRedisDoesNotStallTheControlService) {
  auto gcs = StartGcs();
  auto c = Client(gcs.get());
  ASSERT_TRUE(c);
  redis_.Pause();
  proto::KVRequest put;
  put.set_ns("app");
  put.set_key("k");
  put.set_value("v");
  std::promise<Status> kv_done;
  c->Call(rpc::kKVPut, put,
          [&kv_done](const Status& st, std::string_view) { kv_done.set_value(st); });
  // Sent after the KV request on the same connection; answered first.
  proto::NodeList nodes;
  Status st = c->CallSync(rpc::kGetAllNodes, proto::Empty(), &nodes, 60000);
  auto kv = kv_done.get_future();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(kv.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the KV request was answered before a request sent after it";
  redis_.Resume();
  EXPECT_TRUE(kv.get().ok());
  c->Close(Status::OK());
  gcs->Stop();
}

}  // namespace
}  // namespace lumen::gcs
