// The control service on its own: nodes and their death, jobs, KV, actor names and placement
// failures. Real server, real connections.
#include <gtest/gtest.h>

#include <thread>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/message_types.h"
#include "core_worker.pb.h"
#include "gcs.pb.h"
#include "gcs/gcs_server.h"
#include "lumen/ids.h"

namespace lumen::gcs {
namespace {

class GcsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_.Start();
    GcsOptions o;
    o.token = "tok";
    o.node_death_timeout_ms = 300;
    server_ = std::make_unique<GcsServer>(&loop_, o, std::make_unique<InMemoryGcsStore>());
    ASSERT_TRUE(server_->Start().ok());
    client_loop_.Start();
    dispatcher_.Register(rpc::kActorUpdate, [this](const rpc::ConnectionPtr&, rpc::Frame& f) {
      proto::ActorStateUpdate u;
      ASSERT_TRUE(rpc::ParsePayload(f.payload, &u));
      std::lock_guard<std::mutex> lock(mu_);
      updates_.push_back(u);
      cv_.notify_all();
    });
    auto c = rpc::Connect(&client_loop_, server_->address(), &dispatcher_, "tok");
    ASSERT_TRUE(c.ok());
    conn_ = *c;
  }
  void TearDown() override {
    conn_->Close(Status::OK());
    client_loop_.Stop();
    server_->Stop();
    loop_.Stop();
  }
  proto::KVReply KV(uint16_t type, const std::string& key, const std::string& value = "",
                    bool overwrite = false) {
    proto::KVRequest req;
    req.set_ns("test");
    req.set_key(key);
    req.set_value(value);
    req.set_overwrite(overwrite);
    proto::KVReply reply;
    EXPECT_TRUE(conn_->CallSync(type, req, &reply, 5000).ok());
    return reply;
  }
  proto::NodeList Nodes() {
    proto::NodeList nodes;
    EXPECT_TRUE(conn_->CallSync(rpc::kGetAllNodes, proto::Empty(), &nodes, 5000).ok());
    return nodes;
  }

  rpc::EventLoop loop_{"gcs"};
  rpc::EventLoop client_loop_{"client"};
  rpc::Dispatcher dispatcher_;
  std::unique_ptr<GcsServer> server_;
  rpc::ConnectionPtr conn_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<proto::ActorStateUpdate> updates_;
};

TEST_F(GcsTest, KeyValueStore) {
  EXPECT_FALSE(KV(rpc::kKVGet, "a").found());
  EXPECT_FALSE(KV(rpc::kKVPut, "a", "1").found());
  EXPECT_TRUE(KV(rpc::kKVPut, "a", "2").found());  // exists: kept without overwrite
  EXPECT_EQ(KV(rpc::kKVGet, "a").value(), "1");
  KV(rpc::kKVPut, "a", "3", /*overwrite=*/true);
  EXPECT_EQ(KV(rpc::kKVGet, "a").value(), "3");
  KV(rpc::kKVPut, "ab", "x");
  KV(rpc::kKVPut, "b", "y");
  EXPECT_EQ(KV(rpc::kKVKeys, "a").keys_size(), 2);
  EXPECT_TRUE(KV(rpc::kKVDel, "a").found());
  EXPECT_FALSE(KV(rpc::kKVGet, "a").found());
}

TEST_F(GcsTest, NodesWithoutHeartbeatsAreDeclaredDead) {
  proto::RegisterNodeRequest req;
  req.mutable_node()->set_node_id(NodeID::FromRandom().Binary());
  req.mutable_node()->mutable_address()->set_tcp_address("127.0.0.1:1");
  (*req.mutable_node()->mutable_total()->mutable_amounts())["CPU"] = 40000;
  ASSERT_TRUE(conn_->CallSync(rpc::kRegisterNode, req, nullptr, 5000).ok());
  ASSERT_EQ(Nodes().nodes_size(), 1);
  EXPECT_TRUE(Nodes().nodes(0).alive());
  bool dead = false;
  for (int i = 0; i < 100 && !dead; ++i) {
    dead = !Nodes().nodes(0).alive();
    if (!dead) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(dead);
  EXPECT_NE(Nodes().nodes(0).death_cause().find("no heartbeat"), std::string::npos);
}

TEST_F(GcsTest, JobsGetIncreasingIds) {
  proto::RegisterJobRequest req;
  proto::RegisterJobReply a, b;
  ASSERT_TRUE(conn_->CallSync(rpc::kRegisterJob, req, &a, 5000).ok());
  ASSERT_TRUE(conn_->CallSync(rpc::kRegisterJob, req, &b, 5000).ok());
  EXPECT_LT(JobID::FromBinary(a.job_id()).ToInt(), JobID::FromBinary(b.job_id()).ToInt());
}

TEST_F(GcsTest, ActorThatFitsNowhereDiesWithTheReasonAndFreesItsName) {
  proto::CreateActorRequest req;
  proto::TaskSpec* spec = req.mutable_creation_task();
  spec->set_type(proto::ACTOR_CREATION_TASK);
  ActorID id = ActorID::FromRandom();
  spec->mutable_actor_creation()->set_actor_id(id.Binary());
  spec->mutable_actor_creation()->set_name("solo");
  (*spec->mutable_resources())["GPU"] = 80000;
  proto::CreateActorReply reply;
  ASSERT_TRUE(conn_->CallSync(rpc::kCreateActor, req, &reply, 5000).ok());
  ASSERT_TRUE(reply.ok());
  {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(5), [&] { return !updates_.empty(); }));
    EXPECT_EQ(updates_.back().state(), proto::DEAD);
    EXPECT_NE(updates_.back().death_cause().find("GPU: 8"), std::string::npos)
        << updates_.back().death_cause();
  }
  proto::GetActorRequest get;
  get.set_name("solo");
  proto::GetActorReply info;
  ASSERT_TRUE(conn_->CallSync(rpc::kGetActor, get, &info, 5000).ok());
  EXPECT_FALSE(info.found());  // a dead actor's name is free again
  // Malformed creation requests get an error, not a crash.
  proto::CreateActorRequest bad;
  EXPECT_EQ(conn_->CallSync(rpc::kCreateActor, bad, nullptr, 5000).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lumen::gcs
