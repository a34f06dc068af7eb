// Fault tests: workers that crash (kill -9, segfault, abort) mid-task.
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cluster_fixture.h"

namespace {

// Crashes the first time (marker file absent), succeeds on the retry.
int CrashOnce(const std::string& marker, int how) {
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "crashed";
    if (how == 0) ::kill(::getpid(), SIGKILL);
    if (how == 1) std::raise(SIGSEGV);
    std::abort();
  }
  return 7;
}

int AlwaysSegfault() {
  std::raise(SIGSEGV);
  return 0;
}

int FailsTwice(const std::string& marker) {
  int n = 0;
  if (std::filesystem::exists(marker)) std::ifstream(marker) >> n;
  std::ofstream(marker) << n + 1;
  if (n < 2) throw std::runtime_error("attempt " + std::to_string(n + 1));
  return n + 1;
}

// Writes its pid to `pid_file`, then waits to be killed from outside.
int WaitToBeKilled(const std::string& pid_file) {
  std::ofstream(pid_file + ".tmp") << ::getpid();
  std::filesystem::rename(pid_file + ".tmp", pid_file);
  std::this_thread::sleep_for(std::chrono::seconds(60));
  return 0;
}

// The worker's score for the kernel's OOM killer.
int OomScoreAdj() {
  int v = 0;
  std::ifstream("/proc/self/oom_score_adj") >> v;
  return v;
}

LUMEN_REMOTE(CrashOnce, AlwaysSegfault, FailsTwice, WaitToBeKilled, OomScoreAdj);

class FaultTest : public lumen::testing::EmbeddedCluster {
 protected:
  std::string Temp(const std::string& name) {
    std::string dir = ::testing::TempDir();
    return dir + "/lumen-fault-" + std::to_string(::getpid()) + "-" + name;
  }
};

// Under memory pressure the kernel's OOM killer takes workers first (the node daemon sets its
// own score to -1000 when it may: cli_test checks it).
TEST_F(FaultTest, WorkersAreTheOomKillersFirstChoice) {
  EXPECT_EQ(lumen::Get(lumen::Task(OomScoreAdj).Remote()), 1000);
}

TEST_F(FaultTest, TaskRetriesAfterItsWorkerIsKilled) {
  for (int how : {0, 1, 2}) {  // SIGKILL, segfault, abort
    std::string marker = Temp("crash-once-" + std::to_string(how));
    std::filesystem::remove(marker);
    EXPECT_EQ(lumen::Get(lumen::Task(CrashOnce).Remote(marker, how), 60000), 7) << how;
  }
}

TEST_F(FaultTest, ExhaustedRetriesNameTheFunctionAndTheSignal) {
  lumen::TaskOptions o;
  o.max_retries = 1;
  try {
    lumen::Get(lumen::Task(AlwaysSegfault).Options(o).Remote(), 60000);
    FAIL();
  } catch (const lumen::WorkerCrashedError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("AlwaysSegfault"), std::string::npos) << what;
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer reports the segfault and aborts the process.
    EXPECT_NE(what.find("SIGABRT"), std::string::npos) << what;
#else
    EXPECT_NE(what.find("SIGSEGV"), std::string::npos) << what;
#endif
    EXPECT_NE(what.find("2 attempts"), std::string::npos) << what;
  }
}

TEST_F(FaultTest, KillMinus9FromOutsideMidTask) {
  std::string pid_file = Temp("victim-pid");
  std::filesystem::remove(pid_file);
  lumen::TaskOptions o;
  o.max_retries = 0;
  auto ref = lumen::Task(WaitToBeKilled).Options(o).Remote(pid_file);
  // Wait for the task to start (an external event: the file it writes), then kill it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!std::filesystem::exists(pid_file) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(std::filesystem::exists(pid_file));
  int pid = 0;
  std::ifstream(pid_file) >> pid;
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  try {
    lumen::Get(ref, 30000);
    FAIL();
  } catch (const lumen::WorkerCrashedError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("WaitToBeKilled"), std::string::npos) << what;
    EXPECT_NE(what.find("SIGKILL"), std::string::npos) << what;
  }
}

TEST_F(FaultTest, RetryExceptionsReRunsUserErrors) {
  std::string marker = Temp("fails-twice");
  std::filesystem::remove(marker);
  lumen::TaskOptions o;
  o.retry_exceptions = true;
  o.max_retries = 3;
  EXPECT_EQ(lumen::Get(lumen::Task(FailsTwice).Options(o).Remote(marker), 60000), 3);
  std::filesystem::remove(marker);
  EXPECT_THROW(lumen::Get(lumen::Task(FailsTwice).Remote(marker), 60000), lumen::TaskError);
}

TEST_F(FaultTest, TheClusterKeepsWorkingAfterCrashes) {
  std::vector<lumen::ObjectRef<int>> refs;
  for (int i = 0; i < 8; ++i) {
    std::string marker = Temp("many-" + std::to_string(i));
    std::filesystem::remove(marker);
    refs.push_back(lumen::Task(CrashOnce).Remote(marker, i % 3));
  }
  for (int v : lumen::Get(refs, 120000)) EXPECT_EQ(v, 7);
}

}  // namespace
