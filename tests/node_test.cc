// The node daemon on its own (with a control service beside it): lease validation, the
// object store service, client registration, status. Real servers, real connections.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "api/local_cluster.h"
#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/message_types.h"
#include "common/session.h"
#include "lumen/ids.h"
#include "node.pb.h"

namespace lumen {
namespace {

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/lumen-node-test-" + std::to_string(::getpid());
    auto session = CreateSession(root_, false);
    ASSERT_TRUE(session.ok());
    session_ = *session;
    LocalClusterOptions o;
    o.session_dir = session_.dir;
    o.token = session_.token;
    o.resources = {{"CPU", 2}, {"GPU", 1}};
    o.object_store_memory = 64 << 20;
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    loop_.Start();
    auto conn = rpc::Connect(&loop_, cluster_->node_unix_address(), &none_, session_.token);
    ASSERT_TRUE(conn.ok());
    conn_ = *conn;
  }
  void TearDown() override {
    conn_->Close(Status::OK());
    loop_.Stop();
    cluster_->Stop();
    std::filesystem::remove_all(root_);
  }
  proto::LeaseReply Lease(std::map<std::string, int64_t> resources, const JobID& job) {
    proto::LeaseRequest req;
    req.set_job_id(job.Binary());
    for (const auto& [k, v] : resources) (*req.mutable_resources())[k] = v;
    proto::LeaseReply reply;
    EXPECT_TRUE(conn_->CallSync(rpc::kRequestLease, req, &reply, 5000).ok());
    return reply;
  }

  std::string root_;
  Session session_;
  std::unique_ptr<LocalCluster> cluster_;
  rpc::EventLoop loop_{"node-test"};
  rpc::Dispatcher none_;
  rpc::ConnectionPtr conn_;
};

TEST_F(NodeTest, LeasesThatCanNeverBeGrantedAreRefusedWithTheReason) {
  JobID job = JobID::FromInt(42);
  proto::LeaseReply r = Lease({{"CPU", 30000}}, job);  // 3 CPUs on a 2-CPU node
  EXPECT_FALSE(r.granted());
  EXPECT_NE(r.error().find("infeasible"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("CPU: 3"), std::string::npos) << r.error();
  EXPECT_TRUE(r.infeasible());
  r = Lease({{"GPU", 15000}}, job);
  EXPECT_NE(r.error().find("whole numbers"), std::string::npos) << r.error();
  r = Lease({{"CPU", -10000}}, job);
  EXPECT_NE(r.error().find("negative"), std::string::npos) << r.error();
  r = Lease({{"CPU", 10000}}, job);  // feasible, but the control service knows no such job
  EXPECT_NE(r.error().find("job 42 is not running in this cluster"), std::string::npos)
      << r.error();
  EXPECT_FALSE(r.infeasible());
}

TEST_F(NodeTest, StoreServiceCreatesSealsAndServesObjects) {
  proto::RegisterClientRequest reg;
  reg.set_kind(proto::OTHER);
  reg.set_want_store(true);
  proto::RegisterClientReply reply;
  int fd = -1;
  ASSERT_TRUE(conn_->CallSync(rpc::kRegisterClient, reg, &reply, 5000, &fd).ok());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(reply.store_capacity(), 64 << 20);
  auto* base = static_cast<uint8_t*>(::mmap(nullptr, static_cast<size_t>(reply.store_capacity()),
                                            PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(base, MAP_FAILED);
  ObjectID id = ObjectID::FromRandom();
  proto::StoreCreateRequest create;
  create.set_object_id(id.Binary());
  create.set_data_size(1000);
  proto::StoreCreateReply created;
  ASSERT_TRUE(conn_->CallSync(rpc::kStoreCreate, create, &created, 5000).ok());
  ASSERT_TRUE(created.error().empty()) << created.error();
  std::memset(base + created.offset(), 9, 1000);
  proto::StoreSealRequest seal;
  seal.set_object_id(id.Binary());
  conn_->Send(rpc::kStoreSeal, seal);
  proto::StoreGetRequest get;
  get.add_object_ids(id.Binary());
  get.set_timeout_ms(5000);
  proto::StoreGetReply got;
  ASSERT_TRUE(conn_->CallSync(rpc::kStoreGet, get, &got, 10000).ok());
  ASSERT_TRUE(got.entries(0).found());
  EXPECT_EQ(base[got.entries(0).offset() + 999], 9);
  // Too large: refused at once, naming the sizes.
  create.set_object_id(ObjectID::FromRandom().Binary());
  create.set_data_size(100 << 20);
  ASSERT_TRUE(conn_->CallSync(rpc::kStoreCreate, create, &created, 5000).ok());
  EXPECT_TRUE(created.full());
  EXPECT_NE(created.error().find("100.0 MiB"), std::string::npos) << created.error();
  proto::NodeStats stats;
  ASSERT_TRUE(conn_->CallSync(rpc::kNodeStats, proto::Empty(), &stats, 5000).ok());
  EXPECT_EQ(stats.num_objects(), 1);
  EXPECT_GT(stats.store_pinned(), 0);
  ::munmap(base, static_cast<size_t>(reply.store_capacity()));
  ::close(fd);
}

TEST_F(NodeTest, AnUnknownWorkerCannotRegister) {
  proto::RegisterClientRequest reg;
  reg.set_kind(proto::WORKER);
  reg.set_worker_id(WorkerID::FromRandom().Binary());
  Status st = conn_->CallSync(rpc::kRegisterClient, reg, nullptr, 5000);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("unknown worker"), std::string::npos) << st;
}

TEST_F(NodeTest, MalformedRequestsGetErrorsNotCrashes) {
  for (uint16_t type :
       {rpc::kRequestLease, rpc::kStoreCreate, rpc::kStoreGet, rpc::kStartJob,
        rpc::kWorkerExitStatus, rpc::kKillWorker, rpc::kPullObject, rpc::kReadObjectChunk}) {
    // Every request is answered, with an error or a reply whose error field says why; none is
    // dropped without an answer, and the daemon goes on answering.
    proto::Hello wrong;  // field 1 holds bytes that are no valid id or message
    wrong.set_token(std::string("\xff\xff\xff\xff\x0f", 5));
    Status st = conn_->CallSync(type, wrong, nullptr, 5000);
    EXPECT_NE(st.code(), StatusCode::kDeadlineExceeded) << "message " << type << ": no answer";
    proto::NodeStats stats;
    ASSERT_TRUE(conn_->CallSync(rpc::kNodeStats, proto::Empty(), &stats, 5000).ok())
        << "daemon stopped answering after message " << type;
  }
}

// The object transfer service refuses what it cannot serve with the reason: chunks of objects
// it does not hold, chunks larger than the protocol allows, pulls from nodes that do not exist.
TEST_F(NodeTest, ObjectTransferRefusesBadRequests) {
  proto::ReadChunkRequest read;
  read.set_object_id(ObjectID::FromRandom().Binary());
  read.set_length(1024);
  Status st = conn_->CallSync(rpc::kReadObjectChunk, read, nullptr, 5000);
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st;
  read.set_length(int64_t{1} << 40);
  st = conn_->CallSync(rpc::kReadObjectChunk, read, nullptr, 5000);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  read.set_length(1024);
  read.set_offset(-1);
  st = conn_->CallSync(rpc::kReadObjectChunk, read, nullptr, 5000);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;

  proto::PullObjectRequest pull;
  pull.set_object_id(ObjectID::FromRandom().Binary());
  pull.set_source_address("127.0.0.1:1");  // nothing listens there
  st = conn_->CallSync(rpc::kPullObject, pull, nullptr, 10000);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("127.0.0.1:1"), std::string::npos) << st;
  proto::NodeStats stats;
  ASSERT_TRUE(conn_->CallSync(rpc::kNodeStats, proto::Empty(), &stats, 5000).ok());
  EXPECT_EQ(stats.num_objects(), 0);
}

}  // namespace
}  // namespace lumen
