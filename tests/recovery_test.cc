// Failures across a real cluster started with the `lumen` CLI: three node daemons (zones a =
// head, b and c), and a user program (recovery_driver.cc) that kills node b — its daemon with
// SIGKILL, its workers with it — in the middle of its job. Every test starts its own cluster:
// each loses a node.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "chaos_killer.h"
#include "common/fs.h"
#include "node/memory_monitor.h"
#include "redis_server.h"
#include "shell.h"

namespace {

using lumen::testing::FreePort;
using lumen::testing::Shell;

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCluster(""); }
  // Starts the cluster with `env` ("NAME=value ...") in its daemons' environment.
  void StartCluster(const std::string& env) {
    root_ = ::testing::TempDir() + "/lumen-recovery-" + std::to_string(::getpid());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ + "/rendezvous");
    env_ = env + " LUMEN_SESSION_ROOT=" + root_ + " ";
    address_ = "127.0.0.1:" + std::to_string(FreePort());
    const std::string common =
        " --token " + std::string(kToken) + " --num-cpus 1 --object-store-memory 512M";
    start_["a"] = " start --head --port " + address_.substr(address_.find(':') + 1) +
                  " --labels zone=a" + common + head_args_;
    start_["b"] = " start --address " + address_ + " --resources side=1 --labels zone=b" + common;
    start_["c"] = " start --address " + address_ + " --labels zone=c" + common;
    for (const char* zone : {"a", "b", "c"}) {
      ASSERT_TRUE(StartNode(zone)) << "starting node " << zone;
    }
    victim_pid_ = pids_["b"];
  }
  // Starts (or starts again) the node of `zone`; records its daemon's pid.
  bool StartNode(const std::string& zone) {
    auto run = Shell(env_ + LUMEN_CLI + start_[zone]);
    pids_[zone] = PidOf(run.out);
    if (run.code != 0 || pids_[zone] <= 0) {
      ADD_FAILURE() << run.out;
      return false;
    }
    return true;
  }
  void TearDown() override {
    Shell(env_ + LUMEN_CLI + " stop");
    std::filesystem::remove_all(root_);
  }

  // "Lumen node started (pid N) ..." -> N.
  static int PidOf(const std::string& out) {
    auto at = out.find("(pid ");
    return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 5);
  }

  std::string Status() const {
    return env_ + LUMEN_CLI + " status --address " + address_ + " --token " + kToken;
  }

  // Runs the driver's `check` with `env` added to its environment; `limit_s` > 0 kills it
  // after that many seconds (its output so far is kept).
  lumen::testing::ShellResult Driver(const std::string& check, const std::string& env = "",
                                     int limit_s = 0) {
    return Shell(env_ + env + " " + "RENDEZVOUS_DIR=" + root_ +
                 "/rendezvous LUMEN_ADDRESS=" + address_ + " LUMEN_TOKEN=" + kToken +
                 " VICTIM_PID=" + std::to_string(victim_pid_) + " " +
                 (limit_s > 0 ? "timeout -s KILL " + std::to_string(limit_s) + " " : "") +
                 RECOVERY_DRIVER + " " + check);
  }

  // The last `lines` lines of every driver log and daemon log of the cluster's sessions: what
  // a failed test shows of the cluster's side.
  std::string LogTails(size_t lines) const {
    std::string out;
    std::error_code ec;
    for (const auto& session : std::filesystem::directory_iterator(root_, ec)) {
      for (const auto& log : std::filesystem::directory_iterator(session.path() / "logs", ec)) {
        const std::string name = log.path().filename().string();
        // Drivers, daemons, and what workers wrote to stderr (their warnings: a task stuck on
        // an object says so there).
        const bool worker = name.rfind("worker-", 0) == 0 && name.ends_with(".err");
        if (name.rfind("driver-", 0) != 0 && name != "lumen-daemon.log" && !worker) continue;
        auto text = lumen::ReadFile(log.path().string());
        if (!text.ok() || text->empty()) continue;
        size_t at = text->size();
        for (size_t n = 0; n <= lines && at > 0; ++n) at = text->rfind('\n', at - 1);
        out += "--- " + log.path().string() + "\n" +
               text->substr(at == std::string::npos ? 0 : at + 1);
      }
    }
    return out;
  }

  static constexpr const char* kToken = "0123456789abcdef0123456789abcdef";
  std::string root_, env_, address_;
  std::map<std::string, std::string> start_;  // zone -> arguments of `lumen start`
  std::map<std::string, int> pids_;           // zone -> its daemon now
  std::string head_args_;                     // more arguments of the head's `lumen start`
  int victim_pid_ = -1;                       // node b's first daemon
};

// Objects whose only copy was on the killed node are re-created from lineage (a chain of three
// whose first two the driver had dropped, and a plain result) on the surviving nodes, each
// task re-run once; a task with max_retries=0 fails with ObjectReconstructionFailedError and an
// actor's result with ObjectLostError, each saying why; new tasks avoid the dead node.
TEST_F(RecoveryTest, ObjectsLostWithTheirNodeAreRecreatedFromLineage) {
  auto run = Driver("lineage");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the values of a finished stream came back from lineage"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("every lost object came back from lineage"), std::string::npos) << run.out;
}

// The kernel's OOM killer never picks a node daemon: it sets its score to -1000 (which needs
// root, or CAP_SYS_RESOURCE), while its workers take 1000 (faults_test checks them).
TEST_F(RecoveryTest, NodeDaemonsAreNeverTheOomKillersChoice) {
  if (Shell("echo -1000 > /proc/self/oom_score_adj").code != 0) {
    GTEST_SKIP() << "this machine does not let processes lower their OOM score";
  }
  std::ifstream in("/proc/" + std::to_string(victim_pid_) + "/oom_score_adj");
  int score = 0;
  ASSERT_TRUE(in >> score);
  EXPECT_EQ(score, -1000);
}

// Node b dies under two actors: the one with max_restarts moves to another node with the call
// it was running; the other fails its calls with ActorDiedError naming node b.
TEST_F(RecoveryTest, AnActorWithRestartsMovesToAnotherNodeWhenItsNodeDies) {
  auto run = Driver("actor_moves");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the actor with max_restarts=1 moved to node"), std::string::npos)
      << run.out;
}

// A worker that owns an object on another node is killed: that node frees the object, and a
// borrower that kept a ref gets OwnerDiedError when it reads it.
TEST_F(RecoveryTest, ObjectsOfADeadOwnerAreFreedOnEveryNode) {
  auto run = Driver("owner_dies", "STATUS_COMMAND='" + Status() + "'");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the dead owner's object was freed"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("the borrower got OwnerDiedError"), std::string::npos) << run.out;
}

// A frozen node (SIGSTOP) keeps its connections open but stops its heartbeats: it is declared
// dead after the node death timeout (2 s here; heartbeats every 0.5 s), the read stuck on it gives
// up, and the object is re-created on another node.
class FrozenNodeTest : public RecoveryTest {
 protected:
  void SetUp() override { StartCluster("LUMEN_NODE_DEATH_TIMEOUT_MS=2000"); }
};

TEST_F(FrozenNodeTest, AFrozenNodeIsDeclaredDeadAndItsObjectsAreRecreated) {
  auto run = Driver("frozen");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the frozen node was declared dead"), std::string::npos) << run.out;
}

// A node's memory monitor kills the worker of a task that takes too much memory: the threshold
// is set 2 GiB above the machine's use before the cluster starts (the task takes up to 8).
class MemoryMonitorTest : public RecoveryTest {
 protected:
  void SetUp() override {
    const lumen::node::MemoryUsage usage = lumen::node::ReadMemoryUsage();
    ASSERT_GT(usage.total, 0);
    const double threshold =
        static_cast<double>(usage.used + (int64_t{2} << 30)) / static_cast<double>(usage.total);
    if (threshold > 0.9 || usage.total - usage.used < (int64_t{10} << 30)) {
      GTEST_SKIP() << "needs 10 GiB of free memory; " << lumen::node::DescribeMemoryUsage(usage)
                   << " in use";
    }
    StartCluster("LUMEN_MEMORY_USAGE_THRESHOLD=" + std::to_string(threshold));
  }
};

TEST_F(MemoryMonitorTest, ATaskThatTakesTooMuchMemoryIsKilledAndRetried) {
  auto run = Driver("memory");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the memory monitor killed the tasks that took too much memory"),
            std::string::npos)
      << run.out;
}

// Chaos (chaos_killer.h, chaos_workload.h): while the driver runs rounds of a task tree and a data
// pipeline, node b or c (drawn with a fixed seed) is killed every 1-2 s for at most a minute —
// its daemon and workers — and started again at once. Every round's results are exact.
TEST_F(RecoveryTest, ResultsStayExactWhileNodesAreKilledAndRestarted) {
  std::atomic<bool> done{false};
  lumen::testing::ShellResult run;
  std::thread driver([&] {
    // Rounds take about a second each: a driver still running after 4 minutes hangs, and is
    // stopped so that its output and the cluster's logs tell where.
    run = Driver("chaos", "CHAOS_ROUNDS=12", /*limit_s=*/240);
    done = true;
  });
  const int kills =
      chaos::KillUntilDone([&] { return done.load(); },
                           [&](const std::string& zone) {
                             ::kill(pids_[zone], SIGKILL);
                             return StartNode(zone);
                           },
                           {"b", "c"}, /*seed=*/20261205, std::chrono::milliseconds(1000),
                           std::chrono::milliseconds(2000), std::chrono::seconds(60));
  driver.join();
  std::printf("%s%d node kills during the run\n", run.out.c_str(), kills);
  EXPECT_GT(kills, 0) << run.out;
  EXPECT_EQ(run.code, 0) << run.out << LogTails(40);
  EXPECT_NE(run.out.find("chaos: 12 of 12 rounds exact"), std::string::npos) << run.out;
}

// The head (control service and head node) is SIGKILLed while a job runs on nodes b and c, and
// started again on the same Redis: the job's tasks, transfers and actor calls go on while it is
// down, an actor created meanwhile waits for it, nodes and the driver register again, and
// `lumen status` shows b and c alive under their ids and the old head node dead.
class HeadRestartTest : public RecoveryTest {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(redis_.Start(&error)) << error;
    head_args_ = " --redis-address " + redis_.address();
    StartCluster("");
  }
  void TearDown() override {
    RecoveryTest::TearDown();
    redis_.Stop();
    std::filesystem::remove_all(redis_dir_);
  }
  // Waits for the driver to create `name` in the rendezvous directory; false if the driver
  // ended first or two minutes passed.
  bool AwaitDriver(const std::string& name, std::future<lumen::testing::ShellResult>& driver) {
    const std::string path = root_ + "/rendezvous/" + name;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (!std::filesystem::exists(path)) {
      if (std::chrono::steady_clock::now() > deadline ||
          driver.wait_for(std::chrono::milliseconds(20)) == std::future_status::ready) {
        return false;
      }
    }
    return true;
  }
  static std::string ReadAll(const std::string& path) {
    auto text = lumen::ReadFile(path);
    return text.ok() ? *text : "";
  }
  void Touch(const std::string& name) { std::ofstream(root_ + "/rendezvous/" + name).put('\n'); }

  const std::string redis_dir_ = "/tmp/lumen-hr-" + std::to_string(::getpid());
  lumen::testing::RedisServer redis_{redis_dir_};
};

TEST_F(HeadRestartTest, AJobGoesOnWhileTheHeadRestartsOnRedis) {
  const auto before = Shell(Status());
  ASSERT_NE(before.out.find("3 nodes alive"), std::string::npos) << before.out;
  auto driver = std::async(std::launch::async, [&] { return Driver("head_restart"); });
  ASSERT_TRUE(AwaitDriver("running", driver)) << driver.get().out;

  const int head = pids_["a"];
  ASSERT_EQ(::kill(head, SIGKILL), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (::kill(head, 0) == 0) {  // not our child: its parent (init) reaps it
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the head did not exit";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Touch("killed");
  ASSERT_TRUE(AwaitDriver("down", driver)) << driver.get().out;
  // A new program meanwhile waits in lumen::Init for the control service.
  const std::string new_job_out = root_ + "/rendezvous/new_job.out";
  auto new_job =
      std::async(std::launch::async, [&] { return Driver("new_job > " + new_job_out + " 2>&1"); });
  const auto waiting = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (ReadAll(new_job_out).find("does not answer") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), waiting) << ReadAll(new_job_out);
    ASSERT_EQ(new_job.wait_for(std::chrono::milliseconds(20)), std::future_status::timeout)
        << "the new job ended while the head was down: " << ReadAll(new_job_out);
  }
  ASSERT_TRUE(StartNode("a"));
  Touch("restarted");

  auto run = driver.get();
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the job went on through the head's restart"), std::string::npos)
      << run.out;
  EXPECT_EQ(new_job.get().code, 0) << ReadAll(new_job_out);
  EXPECT_NE(ReadAll(new_job_out).find("a new job ran"), std::string::npos) << ReadAll(new_job_out);
  const auto after = Shell(Status());
  EXPECT_NE(after.out.find("3 nodes alive"), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("head node of the control service's previous incarnation"),
            std::string::npos)
      << after.out;
  // Nodes b and c kept their ids: each line of theirs in the first status is in the second.
  for (const std::string zone : {"zone=b", "zone=c"}) {
    auto at = before.out.rfind("\nNode ", before.out.find(zone));
    ASSERT_NE(at, std::string::npos) << before.out;
    const std::string id = before.out.substr(at + 6, 12);
    auto line = after.out.find("Node " + id);
    ASSERT_NE(line, std::string::npos) << id << " is gone:\n" << after.out;
    EXPECT_NE(after.out.substr(line, after.out.find('\n', line) - line).find("ALIVE"),
              std::string::npos)
        << after.out;
  }
}

}  // namespace
