// The node daemon on its own (with a control service beside it): lease validation, the
// object store service, client registration, status. Real servers, real connections.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "api/local_cluster.h"
#include "common.pb.h"
#include "common/logging.h"
#include "common/rpc/connection.h"
#include "common/rpc/message_types.h"
#include "common/session.h"
#include "lumen/ids.h"
#include "node.pb.h"
#include "node/bundle_table.h"
#include "node/log_monitor.h"
#include "node/memory_monitor.h"

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

// ---- the log monitor (no processes: files a "worker" wrote) --------------------------------

class LogMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/log-monitor-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Append(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name, std::ios::app) << text;
  }
  std::string dir_;
  std::vector<proto::WorkerLogs> sent_;
  node::LogMonitor monitor_{
      "abcd1234", [this](const JobID&, proto::WorkerLogs l) { sent_.push_back(std::move(l)); }};
};

TEST_F(LogMonitorTest, LinesArePrefixedWithTheTaskThatPrintedThemAndMarkersAreDropped) {
  const WorkerID w = WorkerID::FromRandom();
  Append("w.out", "before any task\n" + std::string(kTaskOutputMarker) + "Square\nfirst\nsec");
  Append("w.err", std::string(kTaskOutputMarker) + "Square\noops\n");
  monitor_.Add(w, JobID::FromInt(1), 42, dir_ + "/w.out", dir_ + "/w.err");
  monitor_.Poll();
  ASSERT_EQ(sent_.size(), 1u);
  ASSERT_EQ(sent_[0].stdout_lines_size(), 2);
  EXPECT_EQ(sent_[0].stdout_lines(0), "(worker pid=42 node=abcd1234) before any task");
  EXPECT_EQ(sent_[0].stdout_lines(1), "(Square pid=42 node=abcd1234) first");
  ASSERT_EQ(sent_[0].stderr_lines_size(), 1);
  EXPECT_EQ(sent_[0].stderr_lines(0), "(Square pid=42 node=abcd1234) oops");
  // The rest of a line comes later; a new marker switches the name.
  Append("w.out", "ond\n" + std::string(kTaskOutputMarker) + "Probe\nfrom the actor\n");
  monitor_.Poll();
  ASSERT_EQ(sent_.size(), 2u);
  ASSERT_EQ(sent_[1].stdout_lines_size(), 2);
  EXPECT_EQ(sent_[1].stdout_lines(0), "(Square pid=42 node=abcd1234) second");
  EXPECT_EQ(sent_[1].stdout_lines(1), "(Probe pid=42 node=abcd1234) from the actor");
  // An unterminated last line is sent when the worker exits.
  Append("w.out", "last words");
  monitor_.Exited(w);
  ASSERT_EQ(sent_.size(), 3u);
  ASSERT_EQ(sent_[2].stdout_lines_size(), 1);
  EXPECT_EQ(sent_[2].stdout_lines(0), "(Probe pid=42 node=abcd1234) last words");
  EXPECT_FALSE(monitor_.Has(w));
}

TEST_F(LogMonitorTest, AFloodIsReadABoundedAmountAtATime) {
  const WorkerID w = WorkerID::FromRandom();
  const std::string line(999, 'x');
  std::string text;
  for (int i = 0; i < 3000; ++i) text += line + "\n";  // 3 MB
  Append("w.out", text);
  Append("w.err", "");
  monitor_.Add(w, JobID::FromInt(1), 7, dir_ + "/w.out", dir_ + "/w.err");
  size_t bytes = 0;
  int polls = 0;
  while (bytes < text.size() && polls < 10) {
    sent_.clear();
    monitor_.Poll();
    ++polls;
    size_t got = 0;
    for (const auto& l : sent_) {
      for (const auto& s : l.stdout_lines()) got += s.size() - s.find(") ") - 2 + 1;
    }
    // At most one look's bytes, plus the unfinished line the previous look kept.
    EXPECT_LE(got, node::LogMonitor::kMaxReadPerFile + node::LogMonitor::kMaxLine)
        << "poll " << polls;
    bytes += got;
  }
  EXPECT_EQ(bytes, text.size());
  EXPECT_GE(polls, 3) << "3 MB in fewer than three 1 MiB looks";
  // A line without an end is cut, not kept whole.
  sent_.clear();
  Append("w.out", std::string(node::LogMonitor::kMaxLine * 2 + 5, 'y'));
  monitor_.Poll();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].stdout_lines_size(), 2);
}

}  // namespace
}  // namespace lumen

namespace lumen::node {
namespace {

TEST(BundleTable, PreparesAllOrNothingCommitsAndReturns) {
  BundleTable table;
  const PlacementGroupID g = PlacementGroupID::FromRandom();
  ResourceSet total = ResourceSet::FromDoubles({{"CPU", 2}, {"GPU", 1}});
  ResourceSet available = total;
  const ResourceSet cpu = ResourceSet::FromDoubles({{"CPU", 1}});
  std::string error;
  // Three one-CPU bundles do not fit two CPUs: nothing is taken.
  EXPECT_FALSE(table.Prepare(g, {{0, cpu}, {1, cpu}, {2, cpu}}, &available, &error));
  EXPECT_NE(error.find("{CPU: 3}"), std::string::npos) << error;
  EXPECT_TRUE(available == total);
  EXPECT_FALSE(table.Has(g));
  ASSERT_TRUE(table.Prepare(g, {{0, cpu}, {1, cpu}}, &available, &error)) << error;
  EXPECT_EQ(available.Get("CPU"), 0);
  // A repeated request (a lost reply) takes nothing more.
  ASSERT_TRUE(table.Prepare(g, {{0, cpu}, {1, cpu}}, &available, &error)) << error;
  EXPECT_TRUE(table.Committed(g).empty());
  table.Commit(g, &total, &available);
  EXPECT_EQ(table.Committed(g), (std::vector<int>{0, 1}));
  EXPECT_EQ(available.Get("CPU_group_" + g.Hex()), ToFixed(2));
  EXPECT_EQ(total.Get("CPU_group_1_" + g.Hex()), ToFixed(1));
  EXPECT_EQ(total.Get("CPU"), ToFixed(2));
  table.Commit(g, &total, &available);  // again: unchanged
  EXPECT_EQ(available.Get("CPU_group_" + g.Hex()), ToFixed(2));
  table.Return(g, &total, &available);
  EXPECT_TRUE(total == ResourceSet::FromDoubles({{"CPU", 2}, {"GPU", 1}}));
  EXPECT_TRUE(available == total);
  EXPECT_FALSE(table.Has(g));
  table.Return(g, &total, &available);  // unknown now: nothing happens
  EXPECT_TRUE(available == total);
}

TEST(BundleTable, ReturningPreparedBundlesGivesTheirResourcesBack) {
  BundleTable table;
  const PlacementGroupID g = PlacementGroupID::FromRandom();
  ResourceSet total = ResourceSet::FromDoubles({{"CPU", 4}});
  ResourceSet available = total;
  std::string error;
  ASSERT_TRUE(table.Prepare(g, {{3, ResourceSet::FromDoubles({{"CPU", 3}})}}, &available, &error));
  EXPECT_EQ(available.Get("CPU"), ToFixed(1));
  table.Return(g, &total, &available);
  EXPECT_TRUE(available == total);
}

TEST(MemoryMonitor, MeminfoGivesWhatIsNotAvailableAsUsed) {
  auto u = ParseMeminfo(
      "MemTotal:       16000 kB\nMemFree:          1000 kB\nMemAvailable:     4000 kB\n");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->total, 16000 * 1024);
  EXPECT_EQ(u->used, 12000 * 1024);
  EXPECT_DOUBLE_EQ(u->Fraction(), 0.75);
  EXPECT_FALSE(ParseMeminfo("MemTotal: 16000 kB\n").has_value());
  EXPECT_FALSE(ParseMeminfo("garbage").has_value());
}

TEST(MemoryMonitor, ACgroupLimitCountsItsUseWithoutInactiveFilePages) {
  auto u = ParseCgroupMemory("1000000\n", "800000\n",
                             "anon 500000\nfile 300000\ninactive_file 200000\n");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->total, 1000000);
  EXPECT_EQ(u->used, 600000);
  EXPECT_FALSE(ParseCgroupMemory("max\n", "800000\n", "").has_value());
  EXPECT_FALSE(ParseCgroupMemory("12x\n", "800000\n", "").has_value());
  EXPECT_GT(ReadMemoryUsage().total, 0);  // this machine's
}

TEST(MemoryMonitor, TheMostRecentRetriableTaskGoesFirstAndActorsLast) {
  using Kind = KillCandidate::Kind;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<KillCandidate> c = {
      {WorkerID::FromRandom(), Kind::kActor, t0 + std::chrono::seconds(9)},
      {WorkerID::FromRandom(), Kind::kRetriableTask, t0 + std::chrono::seconds(1)},
      {WorkerID::FromRandom(), Kind::kTask, t0 + std::chrono::seconds(8)},
      {WorkerID::FromRandom(), Kind::kRetriableTask, t0 + std::chrono::seconds(2)},
  };
  EXPECT_EQ(ChooseWorkerToKill(c), 3u);
  c.erase(c.begin() + 1);  // no retriable task but the one at 2 s
  c.erase(c.begin() + 2);
  EXPECT_EQ(ChooseWorkerToKill(c), 1u);  // a task that cannot be retried, before the actor
  c.erase(c.begin() + 1);
  EXPECT_EQ(ChooseWorkerToKill(c), 0u);  // only the actor is left
  EXPECT_FALSE(ChooseWorkerToKill({}).has_value());
}

TEST(MemoryMonitor, KillsOneWorkerPastTheThresholdAndWaitsForItsDeath) {
  MemoryUsage usage{.used = 50, .total = 100};
  const auto t0 = std::chrono::steady_clock::now();
  const WorkerID old_task = WorkerID::FromRandom(), new_task = WorkerID::FromRandom();
  std::vector<KillCandidate> candidates = {
      {old_task, KillCandidate::Kind::kRetriableTask, t0},
      {new_task, KillCandidate::Kind::kRetriableTask, t0 + std::chrono::seconds(1)}};
  std::vector<std::pair<WorkerID, std::string>> kills;
  MemoryMonitor::Hooks hooks;
  hooks.read_usage = [&] { return usage; };
  hooks.candidates = [&] { return candidates; };
  hooks.kill = [&](const WorkerID& w, const std::string& why) { kills.emplace_back(w, why); };
  MemoryMonitor monitor(nullptr, "n1", 0.6, std::chrono::milliseconds(0), std::move(hooks));

  monitor.Check();  // 0.50: below the threshold
  EXPECT_TRUE(kills.empty());
  usage.used = 70;
  monitor.Check();
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_EQ(kills[0].first, new_task);
  EXPECT_NE(kills[0].second.find("memory use on node n1 was"), std::string::npos)
      << kills[0].second;
  EXPECT_NE(kills[0].second.find("(0.70), past LUMEN_MEMORY_USAGE_THRESHOLD=0.60"),
            std::string::npos)
      << kills[0].second;
  EXPECT_TRUE(monitor.KilledForMemory(new_task));
  EXPECT_FALSE(monitor.KilledForMemory(old_task));

  monitor.Check();  // the killed worker has not died yet: its memory is not free
  EXPECT_EQ(kills.size(), 1u);
  candidates.pop_back();
  monitor.OnWorkerDied(old_task);  // another's death does not count
  monitor.Check();
  EXPECT_EQ(kills.size(), 1u);
  monitor.OnWorkerDied(new_task);
  monitor.Check();  // still past the threshold: the next one goes
  ASSERT_EQ(kills.size(), 2u);
  EXPECT_EQ(kills[1].first, old_task);
}

}  // namespace
}  // namespace lumen::node
