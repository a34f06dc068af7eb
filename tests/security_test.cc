// Every listening endpoint of a cluster (control service, node daemon, workers; TCP and Unix)
// refuses connections without the token with a clear message, and survives garbage bytes.
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cluster_fixture.h"
#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/message_types.h"

namespace {

int Double(int x) { return 2 * x; }
int Pid() { return static_cast<int>(::getpid()); }
LUMEN_REMOTE(Double, Pid);

std::set<std::string> SocketInodes(int pid) {
  std::set<std::string> inodes;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  return inodes;
}

// TCP ports in LISTEN state owned by any of `pids`.
std::vector<int> ListeningTcpPorts(const std::vector<int>& pids) {
  std::set<std::string> inodes;
  for (int pid : pids) {
    auto s = SocketInodes(pid);
    inodes.insert(s.begin(), s.end());
  }
  std::vector<int> ports;
  std::ifstream f("/proc/net/tcp");
  std::string line;
  std::getline(f, line);
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string sl, local, remote, state, queues, tr, retr, uid, timeout, inode;
    in >> sl >> local >> remote >> state >> queues >> tr >> retr >> uid >> timeout >> inode;
    if (state != "0A" || !inodes.count(inode)) continue;
    ports.push_back(std::stoi(local.substr(local.find(':') + 1), nullptr, 16));
    EXPECT_EQ(local.substr(0, 8), "0100007F") << "service bound beyond loopback: " << line;
  }
  return ports;
}

int ConnectRaw(const std::string& endpoint) {
  if (endpoint.rfind("unix:", 0) == 0) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::string path = endpoint.substr(5);
    std::memcpy(sa.sun_path, path.data(), path.size());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return -1;
    return fd;
  }
  int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return -1;
  return fd;
}

// Sends `bytes`, then reads until the peer closes (or 5 s pass). Returns what came back.
std::string SendAndDrain(int fd, const std::string& bytes, bool* closed) {
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
  *closed = n == 0 || (n < 0 && errno == ECONNRESET);
  ::close(fd);
  return got;
}

using SecurityTest = lumen::testing::EmbeddedCluster;

TEST_F(SecurityTest, EveryEndpointRefusesStrangersAndSurvivesGarbage) {
  // Make sure workers exist and listen.
  std::vector<lumen::ObjectRef<int>> pids;
  for (int i = 0; i < 4; ++i) pids.push_back(lumen::Task(Pid).Remote());
  std::set<int> worker_pids;
  for (int p : lumen::Get(pids)) worker_pids.insert(p);

  std::vector<std::string> endpoints;
  for (const auto& e : std::filesystem::directory_iterator(lumen::SessionDir() + "/sockets")) {
    endpoints.push_back("unix:" + e.path().string());
  }
  std::vector<int> all_pids{static_cast<int>(::getpid())};
  all_pids.insert(all_pids.end(), worker_pids.begin(), worker_pids.end());
  for (int port : ListeningTcpPorts(all_pids)) {
    endpoints.push_back("127.0.0.1:" + std::to_string(port));
  }
  // gcs, node, driver, and each worker: on Unix sockets and TCP.
  ASSERT_GE(endpoints.size(), 2 * (3 + worker_pids.size()))
      << "endpoints found: " << endpoints.size();

  const std::vector<std::string> garbage = {
      std::string("GET / HTTP/1.0\r\n\r\n"),
      std::string(70000, '\x7f'),
      std::string("\xff\xff\xff\x7f\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16),
      std::string("\x05\x00\x00\x00\x2c\x01\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00hello", 21),
  };
  for (const auto& ep : endpoints) {
    for (const auto& g : garbage) {
      int fd = ConnectRaw(ep);
      ASSERT_GE(fd, 0) << ep;
      bool closed = false;
      std::string reply = SendAndDrain(fd, g, &closed);
      EXPECT_TRUE(closed) << ep << " kept a connection that sent garbage open";
    }
    // A well-formed client with the wrong token gets a readable refusal.
    lumen::rpc::EventLoop loop("probe");
    loop.Start();
    lumen::rpc::Dispatcher none;
    auto conn = lumen::rpc::Connect(&loop, ep, &none, "wrong-token");
    ASSERT_TRUE(conn.ok()) << ep;
    lumen::proto::Empty empty;
    lumen::Status st = (*conn)->CallSync(lumen::rpc::kNodeStats, empty, nullptr, 5000);
    EXPECT_EQ(st.code(), lumen::StatusCode::kUnauthenticated) << ep << ": " << st;
    EXPECT_NE(st.message().find("cluster token"), std::string::npos) << ep << ": " << st;
    loop.Stop();
  }
  // Nobody crashed: the same workers still answer.
  std::vector<lumen::ObjectRef<int>> after;
  for (int i = 0; i < 20; ++i) after.push_back(lumen::Task(Double).Remote(i));
  auto values = lumen::Get(after, 30000);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(values[static_cast<size_t>(i)], 2 * i);
  for (int p : worker_pids) EXPECT_EQ(::kill(p, 0), 0) << "worker " << p << " died";
}

TEST_F(SecurityTest, TheTokenFileIsPrivate) {
  struct stat st;
  ASSERT_EQ(::stat((lumen::SessionDir() + "/token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

}  // namespace
