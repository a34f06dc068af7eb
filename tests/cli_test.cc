// A cluster started with the `lumen` command: drivers join it with LUMEN_ADDRESS, `lumen
// status` reports it, connections without the token are refused, `lumen stop` ends it.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/message_types.h"
#include "redis_server.h"
#include "shell.h"

namespace {

using Result = lumen::testing::ShellResult;
using lumen::testing::FreePort;
using lumen::testing::Shell;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/lumen-cli-" + std::to_string(::getpid());
    std::filesystem::remove_all(root_);
    env_ = "LUMEN_SESSION_ROOT=" + root_ + " ";
  }
  void TearDown() override {
    Shell(env_ + LUMEN_CLI + " stop");
    std::filesystem::remove_all(root_);
  }
  std::string root_;
  std::string env_;
};

TEST_F(CliTest, StartRunStatusStop) {
  int port = FreePort();
  std::string address = "127.0.0.1:" + std::to_string(port);
  Result start = Shell(env_ + LUMEN_CLI + " start --head --port " + std::to_string(port) +
                       " --num-cpus 2 --object-store-memory 268435456 --resources dongle=3");
  ASSERT_EQ(start.code, 0) << start.out;
  EXPECT_NE(start.out.find(address), std::string::npos) << start.out;

  Result again = Shell(env_ + LUMEN_CLI + " start --head --port " + std::to_string(FreePort()));
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.out.find("already running"), std::string::npos) << again.out;

  // A driver joins the cluster; its token comes from the session directory.
  Result demo = Shell(env_ + "LUMEN_ADDRESS=" + address + " " + QUICKSTART);
  ASSERT_EQ(demo.code, 0) << demo.out;
  EXPECT_NE(demo.out.find("Add(1, 2) in a worker process          = 3"), std::string::npos)
      << demo.out;
  EXPECT_NE(demo.out.find("= 15"), std::string::npos) << demo.out;

  Result status = Shell(env_ + LUMEN_CLI + " status");
  ASSERT_EQ(status.code, 0) << status.out;
  EXPECT_NE(status.out.find("1 node alive"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("ALIVE"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("CPU 0/2"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("dongle 0/3"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("object store:"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("256.0 MiB"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("Demand: none"), std::string::npos) << status.out;

  // Without the token: refused with a message that says why.
  lumen::rpc::EventLoop loop("cli-test");
  loop.Start();
  lumen::rpc::Dispatcher none;
  auto conn = lumen::rpc::Connect(&loop, address, &none, "");
  ASSERT_TRUE(conn.ok());
  lumen::proto::Empty empty;
  lumen::Status st = (*conn)->CallSync(lumen::rpc::kClusterStatus, empty, nullptr, 5000);
  EXPECT_EQ(st.code(), lumen::StatusCode::kUnauthenticated) << st;
  EXPECT_NE(st.message().find("cluster token"), std::string::npos) << st;
  loop.Stop();
  Result no_token =
      Shell("LUMEN_SESSION_ROOT=/nonexistent LUMEN_ADDRESS=" + address + " " + QUICKSTART);
  EXPECT_NE(no_token.code, 0);
  EXPECT_NE(no_token.out.find("token"), std::string::npos) << no_token.out;

  Result stop = Shell(env_ + LUMEN_CLI + " stop");
  EXPECT_EQ(stop.code, 0) << stop.out;
  EXPECT_NE(stop.out.find("stopped"), std::string::npos) << stop.out;
  Result after = Shell(env_ + LUMEN_CLI + " status");
  EXPECT_NE(after.code, 0) << after.out;
  EXPECT_NE(after.out.find("no cluster is running"), std::string::npos) << after.out;
}

// Regression: half-open unauthenticated connections exhausted the daemon's descriptors; the
// accept loop then spun at 100 % logging "Too many open files" millions of times and `lumen
// status` timed out. Here the daemon cannot raise its limit (hard limit 256).
TEST_F(CliTest, ADaemonOutOfDescriptorsBacksOffAndStillAnswers) {
  int port = FreePort();
  Result start =
      Shell("ulimit -n 256 && " + env_ + LUMEN_CLI + " start --head --num-cpus 1 --port " +
            std::to_string(port) + " --object-store-memory 67108864");
  ASSERT_EQ(start.code, 0) << start.out;
  std::vector<int> fds;
  for (int i = 0; i < 600; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    ::send(fd, "\x10\x00", 2, MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  // Authenticated clients still get in while the flood is held.
  Result status = Shell(env_ + LUMEN_CLI + " status");
  EXPECT_EQ(status.code, 0) << status.out;
  EXPECT_NE(status.out.find("1 node alive"), std::string::npos) << status.out;
  for (int fd : fds) ::close(fd);
  std::string log;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root_)) {
    if (e.path().filename() == "lumen-daemon.log") {
      std::ifstream in(e.path());
      log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  size_t emfile_lines = 0;
  for (size_t at = log.find("Too many open files"); at != std::string::npos;
       at = log.find("Too many open files", at + 1)) {
    ++emfile_lines;
  }
  EXPECT_GE(emfile_lines, 1u) << "the flood never exhausted the daemon's descriptors";
  EXPECT_LE(emfile_lines, 20u) << "repeated accept errors were not rate-limited";
  Result stop = Shell(env_ + LUMEN_CLI + " stop");
  EXPECT_EQ(stop.code, 0) << stop.out;
}

TEST_F(CliTest, BadArgumentsGetClearErrors) {
  Result r = Shell(env_ + LUMEN_CLI + " start");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--head"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " start --head --resources bogus");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("name=amount"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " start --head --object-store-memory 2X");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("such as 512M or 2G"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " start --head --min-worker-port 20000");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("go together"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " start --head --node-ip 0.0.0.0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--bind 0.0.0.0"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " start --head --token-file /nonexistent/token");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("/nonexistent/token"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " start --head --labels zone");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("key=value"), std::string::npos) << r.out;
  r = Shell(env_ + LUMEN_CLI + " status --address 127.0.0.1:1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("no cluster is running at 127.0.0.1:1"), std::string::npos) << r.out;
}

// Ports pinned for firewalls and sizes with units: the node daemon listens on
// A driver returning from main without lumen::Shutdown(): its embedded cluster stops in
// order (before, static teardown stopped the control service under the live driver, which then
// waited 60 s for it to come back).
TEST_F(CliTest, ADriverThatReturnsWithoutShutdownStopsCleanly) {
  Result run = Shell(env_ + NO_SHUTDOWN_DRIVER + std::string(" 2>&1"));
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("42"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("lost the control service"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("lost the node daemon"), std::string::npos) << run.out;
}

// --node-manager-port, workers in [--min-worker-port, --max-worker-port]; the token comes from a
// file.
TEST_F(CliTest, PinnedPortsSizesWithUnitsAndATokenFile) {
  const int port = FreePort(), node_port = FreePort(), first = FreePort();
  const std::string token_file = root_ + "-token";
  { std::ofstream(token_file) << "abcdefabcdefabcdefabcdef\n"; }
  Result start =
      Shell(env_ + LUMEN_CLI + " start --head --port " + std::to_string(port) +
            " --num-cpus 1 --object-store-memory 0.25G --node-manager-port " +
            std::to_string(node_port) + " --min-worker-port " + std::to_string(first) +
            " --max-worker-port " + std::to_string(first + 9) + " --token-file " + token_file);
  ASSERT_EQ(start.code, 0) << start.out;
  std::string address = "127.0.0.1:" + std::to_string(port);
  Result demo = Shell(env_ + "LUMEN_ADDRESS=" + address + " LUMEN_TOKEN=abcdefabcdefabcdefabcdef " +
                      QUICKSTART);
  ASSERT_EQ(demo.code, 0) << demo.out;
  Result status = Shell(env_ + LUMEN_CLI + " status");
  EXPECT_NE(status.out.find("127.0.0.1:" + std::to_string(node_port)), std::string::npos)
      << status.out;
  EXPECT_NE(status.out.find("256.0 MiB"), std::string::npos) << status.out;
  // Every worker the demo started listened inside the range (the daemon logs where each one
  // registered; the workers themselves end with the job).
  size_t s = start.out.find("session:");
  ASSERT_NE(s, std::string::npos) << start.out;
  std::string session = start.out.substr(s + 8, start.out.find('\n', s) - s - 8);
  session.erase(0, session.find_first_not_of(' '));
  std::ifstream log(session + "/logs/lumen-daemon.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  const std::string marker = "registered, listening on 127.0.0.1:";
  int workers = 0;
  for (size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, at + 1)) {
    int p = std::atoi(text.c_str() + at + marker.size());
    EXPECT_GE(p, first) << text.substr(at, 80);
    EXPECT_LE(p, first + 9) << text.substr(at, 80);
    ++workers;
  }
  EXPECT_GE(workers, 1) << text;
  std::filesystem::remove(token_file);
}

// A node joins with `lumen start --address`; when its head dies and does not come back within
// LUMEN_GCS_RECONNECT_TIMEOUT_S (1 s here) the node stops by itself and says why, instead of
// lingering as an orphan.
TEST_F(CliTest, JoinedNodeStopsWithItsHead) {
  int port = FreePort();
  std::string address = "127.0.0.1:" + std::to_string(port);
  Result head = Shell(env_ + LUMEN_CLI + " start --head --num-cpus 1 --port " +
                      std::to_string(port) + " --object-store-memory 67108864");
  ASSERT_EQ(head.code, 0) << head.out;
  Result node = Shell(env_ + "LUMEN_GCS_RECONNECT_TIMEOUT_S=1 " + LUMEN_CLI + " start --address " +
                      address + " --num-cpus 1 --object-store-memory 67108864");
  ASSERT_EQ(node.code, 0) << node.out;
  auto pid_of = [](const std::string& out) {
    size_t at = out.find("(pid ");
    return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 5);
  };
  const pid_t head_pid = pid_of(head.out), pid = pid_of(node.out);
  ASSERT_GT(head_pid, 0) << head.out;
  ASSERT_GT(pid, 0) << node.out;
  size_t s = node.out.find("session:");
  ASSERT_NE(s, std::string::npos) << node.out;
  std::string session = node.out.substr(s + 8, node.out.find('\n', s) - s - 8);
  session.erase(0, session.find_first_not_of(' '));

  Result status = Shell(env_ + LUMEN_CLI + " status");
  EXPECT_NE(status.out.find("2 nodes alive"), std::string::npos) << status.out;

  ASSERT_EQ(::kill(head_pid, SIGKILL), 0);
  bool exited = false;
  for (int i = 0; i < 1500 && !exited; ++i) {  // polls up to 30 s for the daemon to exit
    exited = ::kill(pid, 0) != 0;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited) ::kill(pid, SIGKILL);
  ASSERT_TRUE(exited) << "the joined node kept running without its head";
  std::ifstream log(session + "/logs/lumen-daemon.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("lost the control service at " + address), std::string::npos) << text;
  EXPECT_NE(text.find("has been unreachable for 1 s (LUMEN_GCS_RECONNECT_TIMEOUT_S)"),
            std::string::npos)
      << text;
  Shell(env_ + LUMEN_CLI + " stop");  // the head's session files
}

// Two nodes on this machine: a head, and a node that joins it offering a custom resource. An
// actor needing that resource runs on the joined node; large objects move between the nodes'
// stores both ways and are freed on both (the driver checks; see multinode_driver.cc).
TEST_F(CliTest, ObjectsMoveBetweenNodes) {
  int port = FreePort();
  std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string token = "fedcba9876543210fedcba9876543210";
  Result head = Shell(env_ + LUMEN_CLI + " start --head --num-cpus 1 --port " +
                      std::to_string(port) + " --object-store-memory 268435456 --token " + token);
  ASSERT_EQ(head.code, 0) << head.out;
  Result node = Shell(env_ + LUMEN_CLI + " start --address " + address + " --token " + token +
                      " --num-cpus 1 --resources side=1 --object-store-memory 268435456");
  ASSERT_EQ(node.code, 0) << node.out;
  Result run =
      Shell(env_ + "LUMEN_ADDRESS=" + address + " LUMEN_TOKEN=" + token + " " + MULTINODE_DRIVER);
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("was read on the other node"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("was read here"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("no copy left on either node"), std::string::npos) << run.out;
  EXPECT_EQ(Shell(env_ + LUMEN_CLI + " stop").code, 0);  // the joined node follows its head
}

// With --redis-address the head keeps the cluster's state in Redis: a head stopped and started
// again on the same Redis reports the previous incarnation's node as stopped and runs programs.
TEST_F(CliTest, HeadRestartedOnRedisContinuesTheCluster) {
  lumen::testing::RedisServer redis("/tmp/lumen-cli-redis-" + std::to_string(::getpid()));
  std::string error;
  ASSERT_TRUE(redis.Start(&error)) << error;
  int port = FreePort();
  std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string token = "0123456789abcdef0123456789abcdef";
  const std::string start = env_ + LUMEN_CLI + " start --head --num-cpus 1 --port " +
                            std::to_string(port) + " --redis-address " + redis.address() +
                            " --token " + token;
  Result first = Shell(start);
  ASSERT_EQ(first.code, 0) << first.out;
  ASSERT_EQ(Shell(env_ + LUMEN_CLI + " stop").code, 0);

  Result second = Shell(start);
  ASSERT_EQ(second.code, 0) << second.out;
  Result status = Shell(env_ + LUMEN_CLI + " status");
  ASSERT_EQ(status.code, 0) << status.out;
  EXPECT_NE(status.out.find("1 node alive"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("DEAD: the cluster was stopped"), std::string::npos) << status.out;
  // The same token still admits drivers.
  Result demo = Shell("LUMEN_SESSION_ROOT=/nonexistent LUMEN_TOKEN=" + token +
                      " LUMEN_ADDRESS=" + address + " " + QUICKSTART);
  EXPECT_EQ(demo.code, 0) << demo.out;
  EXPECT_EQ(Shell(env_ + LUMEN_CLI + " stop").code, 0);

  // Bad Redis settings fail the start with the reason.
  Result unreachable =
      Shell(env_ + LUMEN_CLI + " start --head --port " + std::to_string(FreePort()) +
            " --redis-address unix:/nonexistent/redis.sock");
  EXPECT_NE(unreachable.code, 0);
  EXPECT_NE(unreachable.out.find("cannot reach Redis at unix:/nonexistent/redis.sock"),
            std::string::npos)
      << unreachable.out;
  Result not_head = Shell(env_ + LUMEN_CLI + " start --address " + address + " --redis-address " +
                          redis.address());
  EXPECT_EQ(not_head.code, 2) << not_head.out;
  Result short_token = Shell(env_ + LUMEN_CLI + " start --head --token abc");
  EXPECT_EQ(short_token.code, 2) << short_token.out;
  EXPECT_NE(short_token.out.find("at least 16"), std::string::npos) << short_token.out;
  redis.Stop();
  std::filesystem::remove_all("/tmp/lumen-cli-redis-" + std::to_string(::getpid()));
}

}  // namespace
