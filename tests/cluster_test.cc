// A real cluster of three node daemons started with the `lumen` CLI (distinct ports, session
// directories, resources and labels), and a user program (cluster_driver.cc) run against it
// for each behaviour: scheduling across nodes, strategies, labels, infeasible requests, the
// cluster API. The cluster is started once for the suite.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "shell.h"

namespace {

using lumen::testing::FreePort;
using lumen::testing::Shell;

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(::testing::TempDir() + "/lumen-cluster-" + std::to_string(::getpid()));
    std::filesystem::remove_all(*root_);
    std::filesystem::create_directories(*root_ + "/rendezvous");
    env_ = new std::string("LUMEN_SESSION_ROOT=" + *root_ + " ");
    address_ = new std::string("127.0.0.1:" + std::to_string(FreePort()));
    const std::string common =
        " --token " + std::string(kToken) + " --num-cpus 1 --object-store-memory 1536M";
    auto head = Shell(*env_ + LUMEN_CLI + " start --head --port " +
                      address_->substr(address_->find(':') + 1) + " --labels zone=a" + common);
    ASSERT_EQ(head.code, 0) << head.out;
    auto b = Shell(*env_ + LUMEN_CLI + " start --address " + *address_ +
                   " --resources side=1 --labels zone=b" + common);
    ASSERT_EQ(b.code, 0) << b.out;
    auto c =
        Shell(*env_ + LUMEN_CLI + " start --address " + *address_ + " --labels zone=c" + common);
    ASSERT_EQ(c.code, 0) << c.out;
  }
  static void TearDownTestSuite() {
    Shell(*env_ + LUMEN_CLI + " stop");
    std::filesystem::remove_all(*root_);
  }

  // Runs one check of cluster_driver against the cluster.
  static lumen::testing::ShellResult Driver(const std::string& check, const std::string& env = "") {
    return Shell(*env_ + env + "RENDEZVOUS_DIR=" + *root_ + "/rendezvous LUMEN_ADDRESS=" +
                 *address_ + " LUMEN_TOKEN=" + kToken + " " + CLUSTER_DRIVER + " " + check);
  }

  static constexpr const char* kToken = "0123456789abcdef0123456789abcdef";
  static inline std::string* root_ = nullptr;
  static inline std::string* env_ = nullptr;
  static inline std::string* address_ = nullptr;
};

TEST_F(ClusterTest, NodesAndTheRuntimeContextDescribeTheCluster) {
  auto r = Driver("nodes");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("3 nodes alive"), std::string::npos) << r.out;
}

TEST_F(ClusterTest, ATaskNeedingAResourceOfAnotherNodeRunsThere) {
  auto r = Driver("custom_resource");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, ABusyNodeSpillsTasksBackToIdleNodes) {
  auto r = Driver("spillback");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("ran at once on 3 nodes"), std::string::npos) << r.out;
}

TEST_F(ClusterTest, SpreadSchedulingUsesEveryNode) {
  auto r = Driver("spread");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, NodeAffinityIsHardOrSoft) {
  auto r = Driver("affinity");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, LabelSelectorsChooseTheNodes) {
  auto r = Driver("labels");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, TasksAreLeasedFromTheNodeHoldingTheirArguments) {
  auto r = Driver("locality");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, WaitWithFetchLocalPullsACopyFromAnotherNode) {
  auto r = Driver("wait_fetch_local");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("fetch_local waited for the copy"), std::string::npos) << r.out;
}

// The object-transfer figures of one node in `lumen status`: bytes sent (in MiB) and pulls
// redirected, from the block of the node labelled `zone`.
std::pair<double, int> Transfers(const std::string& status, const std::string& zone) {
  size_t at = status.find("labels: zone=" + zone);
  if (at == std::string::npos) return {-1, -1};
  at = status.find("transfers: ", at);
  if (at == std::string::npos) return {-1, -1};
  const char* p = status.c_str() + at + std::strlen("transfers: ");
  char* end = nullptr;
  double sent = std::strtod(p, &end);
  if (std::strncmp(end, " GiB", 4) == 0) sent *= 1024;
  if (std::strncmp(end, " B", 2) == 0) sent /= 1 << 20;
  size_t redirected_at = status.find(" received, ", at);
  int redirected = std::atoi(status.c_str() + redirected_at + std::strlen(" received, "));
  return {sent, redirected};
}

TEST_F(ClusterTest, AGibibyteObjectReachesTwoNodesAndItsSourceSendsItOnce) {
  auto r = Driver("broadcast");
  ASSERT_EQ(r.code, 0) << r.out;
  auto status = Shell(*env_ + LUMEN_CLI + " status");
  ASSERT_EQ(status.code, 0) << status.out;
  auto [c_sent, c_redirected] = Transfers(status.out, "c");
  auto [a_sent, a_redirected] = Transfers(status.out, "a");
  auto [b_sent, b_redirected] = Transfers(status.out, "b");
  // Node c sent the GiB once; the node that asked second was sent on to the first, which
  // forwarded it as it arrived.
  EXPECT_GE(c_sent, 1024) << status.out;
  EXPECT_LT(c_sent, 1024 + 512) << status.out;
  EXPECT_EQ(a_redirected + b_redirected, 1) << status.out;
  EXPECT_GE(a_sent + b_sent, 1024) << status.out;
}

// The value after `key` ("pid=" ...) on the line of `out` that starts with `line_start`.
std::string Field(const std::string& out, const std::string& line_start, const std::string& key) {
  size_t at = out.find(line_start);
  if (at == std::string::npos) return "";
  at = out.find(key, at) + key.size();
  return out.substr(at, out.find_first_of(" \n", at) - at);
}

TEST_F(ClusterTest, WhatWorkersPrintReachesTheDriverWithWhereItCameFrom) {
  auto r = Driver("output");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string task = "(Say pid=" + Field(r.out, "task pid=", "pid=") +
                           " node=" + Field(r.out, "task pid=", "node=") + ") hello from a task";
  EXPECT_NE(r.out.find(task + " on stdout\n"), std::string::npos) << task << "\n" << r.out;
  EXPECT_NE(r.out.find(task + " on stderr\n"), std::string::npos) << task << "\n" << r.out;
  const std::string actor = "(Probe pid=" + Field(r.out, "actor pid=", "pid=") +
                            " node=" + Field(r.out, "actor pid=", "node=") +
                            ") hello from an actor";
  EXPECT_NE(r.out.find(actor + "\n"), std::string::npos) << actor << "\n" << r.out;
  EXPECT_EQ(r.out.find("lumen-task"), std::string::npos) << "a marker line leaked:\n" << r.out;

  // Turned off, the driver prints none of it; the workers' files still hold it.
  auto quiet = Shell(*env_ + "LUMEN_LOG_TO_DRIVER=0 RENDEZVOUS_DIR=" + *root_ +
                     "/rendezvous LUMEN_ADDRESS=" + *address_ + " LUMEN_TOKEN=" + kToken + " " +
                     CLUSTER_DRIVER + " output");
  ASSERT_EQ(quiet.code, 0) << quiet.out;
  EXPECT_EQ(quiet.out.find("hello from"), std::string::npos) << quiet.out;
  int files_with_it = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(*root_)) {
    if (e.path().extension() != ".out") continue;
    std::ifstream in(e.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    files_with_it += text.find("hello from a task on stdout") != std::string::npos;
  }
  EXPECT_GE(files_with_it, 2) << "the workers' .out files in the session directories";
}

TEST_F(ClusterTest, ActorsCreatedAtOnceSpreadOverTheNodesThatHaveRoom) {
  auto r = Driver("actor_burst");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, PlacementGroupsOfEveryStrategyReserveBundlesAcrossTheNodes) {
  auto r = Driver("placement_groups");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("SPREAD on 3; removal freed the CPUs"), std::string::npos) << r.out;
}

// The program is submitted from a copy only this test has: the head runs what was uploaded,
// and the workers on the other nodes run it too, each from its own session's copy.
TEST_F(ClusterTest, JobsAreSubmittedFollowedListedAndStopped) {
  const std::string program = *root_ + "/my-job";
  std::filesystem::copy_file(CLUSTER_DRIVER, program,
                             std::filesystem::copy_options::overwrite_existing);
  const std::string job = *env_ + LUMEN_CLI + " job ";
  const std::string at = " --address " + *address_ + " --token " + kToken;
  auto r = Shell(job + "submit --submission-id hello-1" + at + " -- " + program + " job");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("hello from a job's task on b"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hello from a job's task on c"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("SUCCEEDED"), std::string::npos) << r.out;
  for (const char* line : {"driver binary: ", "worker binary on b: ", "worker binary on c: "}) {
    size_t at_line = r.out.find(line);
    ASSERT_NE(at_line, std::string::npos) << line << "\n" << r.out;
    std::string path = r.out.substr(at_line + std::strlen(line));
    path = path.substr(0, path.find('\n'));
    EXPECT_NE(path.find("/binaries/"), std::string::npos) << line << path;
    EXPECT_NE(path, program);
  }
  // The driver's exit code is the command's.
  r = Shell(job + "submit" + at + " -- " + program + " exit_3");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("exiting with 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAILED"), std::string::npos) << r.out;
  // --no-wait prints the id; list, status, stop, logs find the job by it.
  r = Shell(job + "submit --no-wait --submission-id forever-1" + at + " -- " + program +
            " run_forever");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("forever-1"), std::string::npos) << r.out;
  r = Shell(job + "list" + at);
  EXPECT_NE(r.out.find("forever-1: RUNNING"), std::string::npos) << r.out;
  r = Shell(job + "stop forever-1" + at);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("forever-1: STOPPED"), std::string::npos) << r.out;
  r = Shell(job + "status forever-1" + at);
  EXPECT_NE(r.out.find("STOPPED"), std::string::npos) << r.out;
  r = Shell(job + "submit --no-wait --submission-id forever-1" + at + " -- " + program + " job");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("submitted already"), std::string::npos) << r.out;
  r = Shell(job + "status no-such-job" + at);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("no job no-such-job"), std::string::npos) << r.out;
  r = Shell(job + "submit" + at + " -- " + *root_ + "/not-there");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("cannot read the program"), std::string::npos) << r.out;
  // The first job's output stays readable.
  r = Shell(job + "logs hello-1" + at);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("driver binary: "), std::string::npos) << r.out;
}

TEST_F(ClusterTest, DataPipelinesSpreadOverTheNodesAndKeepBlocksWhereTheyAre) {
  auto r = Driver("data_locality");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("files exact"), std::string::npos) << r.out;
}

TEST_F(ClusterTest, StreamingSplitDealsEachTrainerTheBlocksOfItsOwnNodeFirst) {
  auto r = Driver("split_locality");
  std::printf("%s", r.out.c_str());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("rows read on the node that made them"), std::string::npos) << r.out;
}

TEST_F(ClusterTest, ARuntimeEnvWorkingDirReachesEveryNodeThatRunsItsWork) {
  auto r = Driver("runtime_env");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("the working_dir reached nodes b and c"), std::string::npos) << r.out;
}

TEST_F(ClusterTest, ADetachedActorOutlivesItsJobUntilKilledWithTheCli) {
  auto created = Driver("detached_create", "LUMEN_NAMESPACE=svc ");
  ASSERT_EQ(created.code, 0) << created.out;
  auto found = Driver("detached_find", "LUMEN_NAMESPACE=svc ");
  EXPECT_EQ(found.code, 0) << found.out;
  auto elsewhere = Driver("detached_elsewhere");
  EXPECT_EQ(elsewhere.code, 0) << elsewhere.out;
  const std::string cli = *env_ + "LUMEN_ADDRESS=" + *address_ + " LUMEN_TOKEN=" + kToken + " " +
                          LUMEN_CLI + " actor kill keeper";
  auto killed = Shell(cli);
  EXPECT_EQ(killed.code, 0) << killed.out;
  EXPECT_NE(killed.out.find("killed actor 'keeper'"), std::string::npos) << killed.out;
  auto gone = Driver("detached_gone", "LUMEN_NAMESPACE=svc ");
  EXPECT_EQ(gone.code, 0) << gone.out;
  auto again = Shell(cli + " --namespace svc");
  EXPECT_EQ(again.code, 1) << again.out;
  EXPECT_NE(again.out.find("no live actor is named 'keeper' in namespace 'svc'"), std::string::npos)
      << again.out;
}

TEST_F(ClusterTest, NamespacesKeepTwoJobsSameNamedActorsApart) {
  auto r = Driver("namespace_outer", "LUMEN_NAMESPACE=team ");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("inner job: its own actor and team's"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("both jobs had their own actor named same"), std::string::npos) << r.out;
}

TEST_F(ClusterTest, InfeasibleRequestsFailWithTheLargestNode) {
  auto r = Driver("infeasible");
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(ClusterTest, StatusListsEveryNodeWithItsLabels) {
  auto r = Shell(*env_ + LUMEN_CLI + " status");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("3 nodes alive"), std::string::npos) << r.out;
  for (const char* zone : {"zone=a", "zone=b", "zone=c"}) {
    EXPECT_NE(r.out.find(zone), std::string::npos) << r.out;
  }
}

// With LUMEN_INFEASIBLE_WAIT_S a request no node can hold waits, shows as infeasible demand in
// `lumen status`, and runs once a node that can hold it joins.
TEST(ClusterJoinTest, AnInfeasibleTaskWaitsForANodeThatCanHoldIt) {
  const std::string root = ::testing::TempDir() + "/lumen-join-" + std::to_string(::getpid());
  std::filesystem::remove_all(root);
  const std::string env = "LUMEN_SESSION_ROOT=" + root + " ";
  const std::string address = "127.0.0.1:" + std::to_string(FreePort());
  const std::string token = " --token 00112233445566778899aabbccddeeff";
  auto head = Shell(env + "LUMEN_INFEASIBLE_WAIT_S=120 " + LUMEN_CLI + " start --head --port " +
                    address.substr(address.find(':') + 1) + " --num-cpus 1" + token);
  ASSERT_EQ(head.code, 0) << head.out;
  lumen::testing::ShellResult run;
  std::thread driver([&] {
    run =
        Shell(env + "LUMEN_ADDRESS=" + address + " LUMEN_TOKEN=00112233445566778899aabbccddeeff " +
              CLUSTER_DRIVER + " wait_for_a_node");
  });
  // Polls `lumen status` (up to 60 s) until the request shows as infeasible demand.
  lumen::testing::ShellResult status;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    status = Shell(env + LUMEN_CLI + " status");
    if (status.out.find("INFEASIBLE") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(status.out.find("{CPU: 1, side: 1} x 1  INFEASIBLE"), std::string::npos) << status.out;
  auto node = Shell(env + LUMEN_CLI + " start --address " + address +
                    " --num-cpus 1 --resources side=1" + token);
  EXPECT_EQ(node.code, 0) << node.out;
  driver.join();
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("ran on the node that joined"), std::string::npos) << run.out;
  Shell(env + LUMEN_CLI + " stop");
  std::filesystem::remove_all(root);
}

}  // namespace
