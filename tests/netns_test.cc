// Three hosts in network namespaces of their own (ip netns, veth pairs on a bridge in a fourth
// namespace, addresses 10.77.0.1-3): a cluster whose processes can only reach each other at
// those addresses — loopback inside a namespace is that namespace's own — so every address a
// process advertises has to be its host's. Each host also runs in a mount namespace that hides
// the other hosts' directories: the two non-head hosts run a copy of the `lumen` binary only
// they can see, with the build tree hidden, and none of them can see the job's program, which
// exists only on the head. A job submitted on the head runs tasks on both other hosts, whose
// workers get the program from the cluster.
//
// Needs root (network namespaces); CI runs as root, so there it runs rather than skips.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "shell.h"

namespace {

using lumen::testing::Shell;
using lumen::testing::ShellResult;

constexpr const char* kToken = "fedcba9876543210fedcba9876543210";
constexpr const char* kHead = "10.77.0.1:6380";

class NetnsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
    tag_ = std::to_string(::getpid());
    base_ = std::filesystem::path(::testing::TempDir() + "/lumen-netns-" + tag_)
                .lexically_normal()
                .string();
    std::filesystem::remove_all(base_);
    for (const char* h : {"a", "b", "c"}) {
      std::filesystem::create_directories(Dir(h) + "/root");
    }
    // Only the two joining hosts have the `lumen` binary, each its own copy.
    for (const char* h : {"b", "c"}) {
      std::filesystem::create_directories(Dir(h) + "/bin");
      std::filesystem::copy_file(LUMEN_CLI, Dir(h) + "/bin/lumen");
    }
    // The job's program exists only on the head.
    std::filesystem::copy_file(CLUSTER_DRIVER, Dir("a") + "/my-job");

    std::string net = "set -e\nip netns add " + Ns("sw") + "\n" + "ip -n " + Ns("sw") +
                      " link add br0 type bridge\nip -n " + Ns("sw") + " link set br0 up\n";
    int i = 1;
    for (const char* h : {"a", "b", "c"}) {
      const std::string ns = Ns(h), in = "lm" + tag_ + h, out = "lm" + tag_ + h + "s";
      net += "ip netns add " + ns + "\n";
      net += "ip link add " + in + " netns " + ns + " type veth peer name " + out + " netns " +
             Ns("sw") + "\n";
      net += "ip -n " + Ns("sw") + " link set " + out + " master br0 up\n";
      net += "ip -n " + ns + " addr add 10.77.0." + std::to_string(i++) + "/24 dev " + in + "\n";
      net += "ip -n " + ns + " link set " + in + " up\nip -n " + ns + " link set lo up\n";
    }
    made_namespaces_ = true;
    auto r = Shell(net);
    ASSERT_EQ(r.code, 0) << "setting up the network namespaces:\n" << r.out;
  }

  void TearDown() override {
    if (!made_namespaces_) return;
    // The head's control service stops every node; each host's own stop is the fallback.
    On("a", Env("a") + LUMEN_CLI + " stop");
    for (const char* h : {"b", "c"}) Shell(Env(h) + Dir(h) + "/bin/lumen stop");
    for (const char* h : {"a", "b", "c", "sw"}) Shell("ip netns del " + Ns(h));
    std::filesystem::remove_all(base_);
  }

  std::string Ns(const std::string& host) const { return "lumen-" + tag_ + "-" + host; }
  std::string Dir(const std::string& host) const { return base_ + "/" + host; }
  std::string Env(const std::string& host) const {
    return "LUMEN_SESSION_ROOT=" + Dir(host) + "/root ";
  }

  // Runs `cmd` on `host`: in its network namespace, and in a mount namespace where the other
  // hosts' directories (and, for the joining hosts, the build tree) are empty.
  ShellResult On(const std::string& host, const std::string& cmd) const {
    std::string hide;
    for (const char* h : {"a", "b", "c"}) {
      if (h != host) hide += "mount -t tmpfs -o size=1m tmpfs " + Dir(h) + " && ";
    }
    if (host != "a") hide += "mount -t tmpfs -o size=1m tmpfs " + std::string(BUILD_DIR) + " && ";
    return Shell("ip netns exec " + Ns(host) + " unshare --mount --propagation private sh -c '" +
                 "cd / && " + hide + cmd + "'");
  }

  std::string tag_, base_;
  bool made_namespaces_ = false;
};

// The path printed after `line` in `out`.
std::string After(const std::string& out, const std::string& line) {
  size_t at = out.find(line);
  if (at == std::string::npos) return "";
  std::string rest = out.substr(at + line.size());
  return rest.substr(0, rest.find('\n'));
}

TEST_F(NetnsClusterTest, AJobRunsOnHostsThatGetItsProgramFromTheCluster) {
  const std::string common =
      std::string(" --token ") + kToken + " --num-cpus 1 --object-store-memory 256M";
  auto head = On("a", Env("a") + LUMEN_CLI +
                          " start --head --port 6380 --node-ip 10.77.0.1 --labels zone=a" + common);
  ASSERT_EQ(head.code, 0) << head.out;
  // No --node-ip: a joining host advertises the address that routes to the head.
  for (const char* h : {"b", "c"}) {
    auto node = On(h, Env(h) + Dir(h) + "/bin/lumen start --address " + kHead +
                          " --labels zone=" + h + common);
    ASSERT_EQ(node.code, 0) << "host " << h << ":\n" << node.out;
  }

  auto status = On("a", Env("a") + LUMEN_CLI + " status");
  ASSERT_EQ(status.code, 0) << status.out;
  EXPECT_NE(status.out.find("3 nodes alive"), std::string::npos) << status.out;
  for (const char* address : {"10.77.0.1:", "10.77.0.2:", "10.77.0.3:"}) {
    EXPECT_NE(status.out.find(address), std::string::npos) << address << "\n" << status.out;
  }
  EXPECT_EQ(status.out.find("127.0.0.1"), std::string::npos) << status.out;

  // The joining hosts see neither the job's program nor the build tree.
  for (const char* h : {"b", "c"}) {
    auto hidden = On(h, "test ! -e " + Dir("a") + "/my-job && test ! -e " + LUMEN_CLI +
                            " && test ! -e " + CLUSTER_DRIVER);
    EXPECT_EQ(hidden.code, 0) << "host " << h << " sees the head's files: " << hidden.out;
  }

  auto job = On("a", Env("a") + LUMEN_CLI + " job submit --address " + kHead + " --token " +
                         kToken + " -- " + Dir("a") + "/my-job job");
  ASSERT_EQ(job.code, 0) << job.out;
  EXPECT_NE(job.out.find("hello from a job's task on b"), std::string::npos) << job.out;
  EXPECT_NE(job.out.find("hello from a job's task on c"), std::string::npos) << job.out;
  EXPECT_NE(job.out.find("SUCCEEDED"), std::string::npos) << job.out;
  // Each host ran the program from its own session's store of binaries.
  const std::string driver = After(job.out, "driver binary: ");
  EXPECT_EQ(driver.rfind(Dir("a") + "/root/", 0), 0u) << driver << "\n" << job.out;
  EXPECT_NE(driver.find("/binaries/"), std::string::npos) << driver;
  for (const char* h : {"b", "c"}) {
    const std::string worker = After(job.out, std::string("worker binary on ") + h + ": ");
    EXPECT_EQ(worker.rfind(Dir(h) + "/root/", 0), 0u) << worker << "\n" << job.out;
    EXPECT_NE(worker.find("/binaries/"), std::string::npos) << worker;
  }
}

}  // namespace
