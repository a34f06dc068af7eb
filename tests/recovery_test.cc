// Failures across a real cluster started with the `lumen` CLI: three node daemons (zones a =
// head, b and c), and a user program (recovery_driver.cc) that kills node b — its daemon with
// SIGKILL, its workers with it — in the middle of its job. Every test starts its own cluster:
// each loses a node.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

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
    auto head = Shell(env_ + LUMEN_CLI + " start --head --port " +
                      address_.substr(address_.find(':') + 1) + " --labels zone=a" + common);
    ASSERT_EQ(head.code, 0) << head.out;
    auto b = Shell(env_ + LUMEN_CLI + " start --address " + address_ +
                   " --resources side=1 --labels zone=b" + common);
    ASSERT_EQ(b.code, 0) << b.out;
    victim_pid_ = PidOf(b.out);
    ASSERT_GT(victim_pid_, 0) << b.out;
    auto c = Shell(env_ + LUMEN_CLI + " start --address " + address_ + " --labels zone=c" + common);
    ASSERT_EQ(c.code, 0) << c.out;
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

  lumen::testing::ShellResult Driver(const std::string& check, const std::string& env = "") {
    return Shell(env_ + env + " " + "RENDEZVOUS_DIR=" + root_ +
                 "/rendezvous LUMEN_ADDRESS=" + address_ + " LUMEN_TOKEN=" + kToken +
                 " VICTIM_PID=" + std::to_string(victim_pid_) + " " + RECOVERY_DRIVER + " " +
                 check);
  }

  static constexpr const char* kToken = "0123456789abcdef0123456789abcdef";
  std::string root_, env_, address_;
  int victim_pid_ = -1;
};

// Objects whose only copy was on the killed node are re-created from lineage (a chain of three
// whose first two the driver had dropped, and a plain result) on the surviving nodes, each
// task re-run once; a task with max_retries=0 fails with ObjectReconstructionFailedError and an
// actor's result with ObjectLostError, each saying why; new tasks avoid the dead node.
TEST_F(RecoveryTest, ObjectsLostWithTheirNodeAreRecreatedFromLineage) {
  auto run = Driver("lineage");
  EXPECT_EQ(run.code, 0) << run.out;
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

// A worker that owns an object on another node is killed: that node frees the object.
TEST_F(RecoveryTest, ObjectsOfADeadOwnerAreFreedOnEveryNode) {
  auto run = Driver("owner_dies", "STATUS_COMMAND='" + Status() + "'");
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("the dead owner's object was freed"), std::string::npos) << run.out;
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

}  // namespace
