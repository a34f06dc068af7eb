// The `lumen` command: start, inspect and stop clusters.
//
//   lumen start --head [--port P] [--num-cpus N] [--num-gpus N] [--resources a=1,b=2]
//                      [--object-store-memory BYTES] [--bind HOST] [--block]
//   lumen start --address HOST:PORT [...]     join a cluster as another node
//   lumen status [--address HOST:PORT]
//   lumen stop
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "api/local_cluster.h"
#include "cli/actor_commands.h"
#include "cli/cli_common.h"
#include "cli/job_commands.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/resources.h"
#include "common/rpc/connection.h"
#include "common/rpc/message_types.h"
#include "common/rpc/server.h"
#include "common/session.h"
#include "common/thread_annotations.h"
#include "gcs.pb.h"
#include "lumen/ids.h"
#include "node.pb.h"
#include "scheduling/bundles.h"
#include "scheduling/policy.h"

namespace lumen::cli {
namespace {

constexpr char kDefaultRoot[] = "/tmp/lumen";

struct StartFlags {
  bool head = false;
  std::string address;
  int port = 6379;
  double num_cpus = -1;
  double num_gpus = 0;
  std::string resources;
  std::string labels;
  std::string object_store_memory;  // bytes, or with a unit: 512M, 2G, 1.5GiB
  std::string bind;                 // empty: the node's address
  std::string node_ip;              // empty: loopback, or the address that routes to the head
  int node_manager_port = 0;        // 0: any free port
  int min_worker_port = 0;
  int max_worker_port = 0;
  std::string token_file;
  bool block = false;
  std::string token;
  std::string redis_address;  // head: keep the control service's tables in this Redis
  std::string redis_namespace = "lumen";
  std::string root = kDefaultRoot;
  std::string serve_session;  // internal: run the daemon in this session
};

// "a=1,,b=2" -> {"a=1", "b=2"}: the non-empty comma-separated items of a flag's value.
std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string item =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    if (!item.empty()) items.push_back(std::move(item));
  }
  return items;
}

StatusOr<std::map<std::string, double>> ParseResources(const std::string& text) {
  std::map<std::string, double> out;
  for (const std::string& item : SplitList(text)) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgumentError("--resources wants name=amount[,name=amount], got '" + item +
                                  "'");
    }
    char* end = nullptr;
    double v = std::strtod(item.c_str() + eq + 1, &end);
    if (!end || *end != '\0' || v < 0) {
      return InvalidArgumentError("--resources: '" + item + "' has no valid amount");
    }
    out[item.substr(0, eq)] = v;
  }
  return out;
}

// "2G" -> 2 << 30. Units K, M, G, T (powers of 1024; "KB", "KiB", "GB" read the same), or
// none for bytes.
StatusOr<int64_t> ParseBytes(const std::string& text, const std::string& flag) {
  if (text.empty()) return int64_t{0};
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  static const std::map<std::string, double> kUnits = {
      {"", 1}, {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}, {"T", 1099511627776.0}};
  auto it = kUnits.find(unit);
  if (end == text.c_str() || it == kUnits.end() || v < 0) {
    return InvalidArgumentError(flag + " wants bytes or a size such as 512M or 2G, got '" + text +
                                "'");
  }
  return static_cast<int64_t>(v * it->second);
}

// The local address that routes to `address` (host:port): what a joining node advertises.
// `host` as a numeric address (itself when it is one; a name's first IPv4 address).
StatusOr<std::string> NumericAddress(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {
    ::freeaddrinfo(res);
    return host;
  }
  hints.ai_family = AF_INET;
  hints.ai_flags = 0;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res)
    return InvalidArgumentError(std::string("cannot resolve: ") + ::gai_strerror(rc));
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof(buf));
  ::freeaddrinfo(res);
  return std::string(buf);
}

StatusOr<std::string> AddressRoutingTo(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return InvalidArgumentError("'" + address + "' is not HOST:PORT");
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  std::string host = address.substr(0, colon);
  if (::getaddrinfo(host.c_str(), address.substr(colon + 1).c_str(), &hints, &res) != 0 || !res) {
    return InvalidArgumentError("cannot resolve " + host);
  }
  // Connecting a UDP socket sends nothing; it only picks the route and so the source address.
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int rc = fd < 0 ? -1 : ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  if (rc != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return UnavailableError("no route to " + address + ": " + std::strerror(errno));
  }
  ::close(fd);
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf));
  return std::string(buf);
}

// "zone=b,disk=ssd" -> {{"zone","b"},{"disk","ssd"}}
StatusOr<std::map<std::string, std::string>> ParseLabels(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const std::string& item : SplitList(text)) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      return InvalidArgumentError("--labels wants key=value[,key=value], got '" + item + "'");
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

Mutex g_stop_mu;
CondVar g_stop_cv;
bool g_stop LUMEN_GUARDED_BY(g_stop_mu) = false;

void RequestStop() {
  MutexLock lock(g_stop_mu);
  g_stop = true;
  g_stop_cv.NotifyAll();
}

// Runs the services in this process until `lumen stop` or a signal.
int Serve(const StartFlags& f) {
  std::string session_dir = f.serve_session;
  InitLogging(JoinPath(JoinPath(session_dir, "logs"), "lumen-daemon.log"), LogLevel::kInfo,
              LogLevel::kError);
  LUMEN_LOG(INFO) << "open-file limit " << RaiseOpenFileLimit();
  // Under memory pressure the kernel kills workers (oom_score_adj 1000), never the daemon;
  // without the privilege to lower its own score the daemon still goes after its workers.
  if (Status st = SetOomScoreAdj(-1000); !st.ok()) {
    LUMEN_LOG(INFO) << "the node daemon keeps its OOM score (" << st.message() << ")";
  }
  auto token = ReadToken(session_dir);
  if (!token.ok()) {
    std::cerr << "lumen: " << token.status() << "\n";
    return 1;
  }
  auto resources = ParseResources(f.resources);
  if (!resources.ok()) {
    std::cerr << "lumen: " << resources.status().message() << "\n";
    return 1;
  }
  auto labels = ParseLabels(f.labels);
  if (!labels.ok()) {
    std::cerr << "lumen: " << labels.status().message() << "\n";
    return 1;
  }
  LocalClusterOptions o;
  o.session_dir = session_dir;
  o.token = *token;
  o.resources = *resources;
  o.labels = *labels;
  o.resources["CPU"] =
      f.num_cpus >= 0 ? f.num_cpus : std::max(1u, std::thread::hardware_concurrency());
  if (f.num_gpus > 0) o.resources["GPU"] = f.num_gpus;
  auto store_bytes = ParseBytes(f.object_store_memory, "--object-store-memory");
  if (!store_bytes.ok()) {
    std::cerr << "lumen: " << store_bytes.status().message() << "\n";
    return 1;
  }
  o.object_store_memory = *store_bytes;
  o.node_ip = f.node_ip;
  o.bind_host = f.bind.empty() ? f.node_ip : f.bind;
  o.gcs_port = f.head ? f.port : 0;
  o.node_port = f.node_manager_port;
  o.min_worker_port = f.min_worker_port;
  o.max_worker_port = f.max_worker_port;
  o.gcs_address = f.head ? "" : f.address;
  o.redis.address = f.redis_address;
  o.redis.ns = f.redis_namespace;
  o.redis.password = Env("LUMEN_REDIS_PASSWORD");
  auto cluster = LocalCluster::Start(o);
  if (!cluster.ok()) {
    std::cerr << "lumen: cannot start: " << cluster.status() << "\n";
    WriteFileAtomic(JoinPath(session_dir, "failed"), cluster.status().ToString() + "\n")
        .IgnoreError();
    return 1;
  }
  (*cluster)->set_on_shutdown([] { RequestStop(); });
  WriteFileAtomic(JoinPath(session_dir, "pid"), std::to_string(::getpid()) + "\n").IgnoreError();
  WriteFileAtomic(JoinPath(session_dir, "address"), (*cluster)->gcs_address() + "\n").IgnoreError();

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread sig([set] {
    int s;
    sigwait(&set, &s);
    RequestStop();
  });
  sig.detach();
  {
    MutexLock lock(g_stop_mu);
    g_stop_cv.Wait(g_stop_mu, []() LUMEN_REQUIRES(g_stop_mu) { return g_stop; });
  }
  (*cluster)->Stop();
  ::unlink(JoinPath(session_dir, "pid").c_str());
  RemoveAll(JoinPath(session_dir, "sockets")).IgnoreError();
  return 0;
}

int Start(StartFlags f) {
  if (!f.head && f.address.empty()) {
    std::cerr
        << "lumen start: pass --head to start a cluster, or --address=HOST:PORT to join one\n";
    return 2;
  }
  auto resources = ParseResources(f.resources);
  if (!resources.ok()) {
    std::cerr << "lumen start: " << resources.status().message() << "\n";
    return 2;
  }
  if (auto labels = ParseLabels(f.labels); !labels.ok()) {
    std::cerr << "lumen start: " << labels.status().message() << "\n";
    return 2;
  }
  if (auto bytes = ParseBytes(f.object_store_memory, "--object-store-memory"); !bytes.ok()) {
    std::cerr << "lumen start: " << bytes.status().message() << "\n";
    return 2;
  }
  if ((f.min_worker_port > 0) != (f.max_worker_port > 0) || f.min_worker_port > f.max_worker_port ||
      f.max_worker_port > 65535 || f.min_worker_port < 0) {
    std::cerr << "lumen start: --min-worker-port and --max-worker-port go together, as a range "
                 "of ports (1-65535, min <= max)\n";
    return 2;
  }
  if (!f.token_file.empty()) {
    if (!f.token.empty()) {
      std::cerr << "lumen start: give the token with --token or --token-file, not both\n";
      return 2;
    }
    auto text = ReadFile(f.token_file);
    if (!text.ok()) {
      std::cerr << "lumen start: --token-file: " << text.status().message() << "\n";
      return 2;
    }
    f.token = *text;
    while (!f.token.empty() && std::isspace(static_cast<unsigned char>(f.token.back()))) {
      f.token.pop_back();
    }
  }
  // Every process of the node listens on and advertises the node's address: given, or
  // loopback for a head on loopback, or the address that routes to the head.
  if (f.node_ip.empty()) {
    if (f.head) {
      f.node_ip = rpc::AdvertisableHost(f.bind);
    } else {
      auto ip = AddressRoutingTo(f.address);
      if (!ip.ok()) {
        std::cerr << "lumen start: --address " << f.address << ": " << ip.status().message()
                  << "\n";
        return 2;
      }
      f.node_ip = *ip;
    }
  } else if (rpc::IsWildcardHost(f.node_ip)) {
    std::cerr << "lumen start: --node-ip must be an address other nodes can reach, not "
              << f.node_ip << " (use --bind " << f.node_ip << " to listen everywhere)\n";
    return 2;
  } else {
    // Peers connect to the advertised address from their event loops, which never look a
    // name up: a host name given here is advertised as its address.
    auto ip = NumericAddress(f.node_ip);
    if (!ip.ok()) {
      std::cerr << "lumen start: --node-ip " << f.node_ip << ": " << ip.status().message() << "\n";
      return 2;
    }
    f.node_ip = *ip;
  }
  if (f.head) {
    std::string latest = LatestSessionDir(f.root);
    if (!latest.empty() && PathExists(JoinPath(latest, "pid"))) {
      auto pid = ReadFile(JoinPath(latest, "pid"));
      if (pid.ok() && ::kill(std::atoi(pid->c_str()), 0) == 0) {
        std::cerr << "lumen start: a cluster is already running (" << latest
                  << "); run `lumen stop` first\n";
        return 1;
      }
    }
  }
  if (!f.head && !f.redis_address.empty()) {
    std::cerr << "lumen start: --redis-address belongs to the head (--head)\n";
    return 2;
  }
  std::string token;
  if (f.head) {
    // A restarted head keeps its cluster's token when given it, so nodes and drivers that
    // hold it can reconnect.
    token = !f.token.empty() ? f.token : Env("LUMEN_TOKEN");
    if (!token.empty() && token.size() < 16) {
      std::cerr << "lumen start: the cluster token must be at least 16 characters\n";
      return 2;
    }
  } else {
    token = ResolveToken(f.token, f.root);
    if (token.empty()) {
      std::cerr << "lumen start: joining needs the cluster token: --token or LUMEN_TOKEN\n";
      return 2;
    }
  }
  auto session = CreateSession(f.root, /*make_latest=*/f.head);
  if (!session.ok()) {
    std::cerr << "lumen start: " << session.status() << "\n";
    return 1;
  }
  if (!token.empty()) {
    WriteFileAtomic(JoinPath(session->dir, "token"), token + "\n", 0600).IgnoreError();
  }
  f.serve_session = session->dir;
  if (f.block) return Serve(f);

  // Start the daemon detached, then wait until it is up.
  std::vector<std::string> argv = {SelfExecutable(),
                                   "start",
                                   "--_serve",
                                   session->dir,
                                   "--port",
                                   std::to_string(f.port),
                                   "--num-cpus",
                                   std::to_string(f.num_cpus),
                                   "--num-gpus",
                                   std::to_string(f.num_gpus),
                                   "--node-ip",
                                   f.node_ip,
                                   "--node-manager-port",
                                   std::to_string(f.node_manager_port),
                                   "--min-worker-port",
                                   std::to_string(f.min_worker_port),
                                   "--max-worker-port",
                                   std::to_string(f.max_worker_port)};
  if (!f.bind.empty()) argv.insert(argv.end(), {"--bind", f.bind});
  if (!f.object_store_memory.empty()) {
    argv.insert(argv.end(), {"--object-store-memory", f.object_store_memory});
  }
  if (f.head) argv.push_back("--head");
  if (!f.address.empty()) argv.insert(argv.end(), {"--address", f.address});
  if (!f.resources.empty()) argv.insert(argv.end(), {"--resources", f.resources});
  if (!f.labels.empty()) argv.insert(argv.end(), {"--labels", f.labels});
  if (!f.redis_address.empty()) {
    argv.insert(argv.end(),
                {"--redis-address", f.redis_address, "--redis-namespace", f.redis_namespace});
  }
  SpawnOptions so;
  so.argv = argv;
  so.env = EnvironmentWith({});
  so.log_path = JoinPath(JoinPath(session->dir, "logs"), "lumen-daemon.out");
  so.new_session = true;
  auto child = SpawnProcess(so);
  if (!child.ok()) {
    std::cerr << "lumen start: " << child.status() << "\n";
    return 1;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (PathExists(JoinPath(session->dir, "address"))) {
      std::string address = ResolveAddress("", f.root);
      if (!f.head) address = f.address;
      std::cout << "Lumen " << (f.head ? "head" : "node") << " started (pid " << child->pid
                << ").\n"
                << "  control service: " << address << "\n"
                << "  session:         " << session->dir << "\n"
                << "  cluster token:   " << session->dir << "/token (mode 0600)\n"
                << "Connect a program with: LUMEN_ADDRESS=" << address << " ./your_program\n"
                << "Inspect with `lumen status`; stop with `lumen stop`.\n";
      return 0;
    }
    if (PathExists(JoinPath(session->dir, "failed"))) {
      auto why = ReadFile(JoinPath(session->dir, "failed"));
      std::cerr << "lumen start: the daemon failed: " << (why.ok() ? *why : "see logs") << "\n";
      return 1;
    }
    int status;
    if (::waitpid(child->pid, &status, WNOHANG) == child->pid) {
      std::cerr << "lumen start: the daemon " << DescribeExit(status) << "; see " << so.log_path
                << "\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cerr << "lumen start: the daemon did not come up within 30 s; see " << so.log_path << "\n";
  return 1;
}

std::string Human(int64_t bytes) {
  char buf[64];
  if (bytes >= (1ll << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1ll << 30));
  } else if (bytes >= (1ll << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1ll << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
  }
  return buf;
}

int ShowStatus(const std::string& address_flag, const std::string& token_flag,
               const std::string& root) {
  std::string address = ResolveAddress(address_flag, root);
  if (address.empty()) {
    std::cerr << "lumen status: no cluster found (no --address, LUMEN_ADDRESS or running "
                 "`lumen start --head`)\n";
    return 1;
  }
  std::string token = ResolveToken(token_flag, root);
  rpc::EventLoop loop("cli");
  loop.Start();
  rpc::Dispatcher none;
  auto conn = rpc::Connect(&loop, address, &none, token);
  if (!conn.ok()) {
    std::cerr << "lumen status: no cluster is running at " << address << " ("
              << conn.status().message() << ")\n";
    return 1;
  }
  proto::ClusterStatus status;
  lumen::Status st = (*conn)->CallSync(rpc::kClusterStatus, proto::Empty(), &status, 10000);
  if (!st.ok()) {
    std::cerr << "lumen status: " << st.message() << "\n";
    return 1;
  }
  int alive = 0;
  for (const auto& n : status.nodes()) alive += n.alive();
  std::map<std::pair<std::string, bool>, int> demand;  // (shape, infeasible) -> requests
  std::cout << "Cluster at " << address << ": " << alive << " node" << (alive == 1 ? "" : "s")
            << " alive, " << status.num_jobs_running() << " job"
            << (status.num_jobs_running() == 1 ? "" : "s") << " running, "
            << status.num_actors_alive() << " actor" << (status.num_actors_alive() == 1 ? "" : "s")
            << " alive\n";
  for (const auto& n : status.nodes()) {
    proto::NodeStats s = n.stats();
    if (n.alive()) {  // ask the node itself for exact figures
      auto nc = rpc::Connect(&loop, n.address().tcp_address(), &none, token);
      if (nc.ok()) {
        proto::NodeStats fresh;
        if ((*nc)->CallSync(rpc::kNodeStats, proto::Empty(), &fresh, 5000).ok()) s = fresh;
        (*nc)->Close(lumen::Status::OK());
      }
    }
    std::cout << "\nNode " << NodeID::FromBinary(n.node_id()).Hex().substr(0, 12)
              << (n.is_head() ? " (head)" : "") << "  " << n.address().tcp_address() << "  "
              << (n.alive() ? "ALIVE" : "DEAD: " + n.death_cause()) << "\n";
    if (!n.labels().empty()) {
      std::map<std::string, std::string> labels(n.labels().begin(), n.labels().end());
      std::cout << "  labels: " << scheduling::LabelsToString(labels) << "\n";
    }
    ResourceSet total =
        ResourceSet::FromProto(s.has_total() ? s.total().amounts() : n.total().amounts());
    ResourceSet avail = ResourceSet::FromProto(s.available().amounts());
    std::cout << "  resources (used/total):";
    for (const auto& [name, amount] : total.amounts()) {
      // A placement group's resources are listed with the group; here its bundles count as
      // used resources of the node.
      if (!scheduling::GroupOfResource(name).IsNil()) continue;
      double used = FromFixed(amount - avail.Get(name));
      if (name == "memory" || name == "object_store_memory") {
        std::cout << "  " << name << " " << Human(static_cast<int64_t>(used)) << "/"
                  << Human(static_cast<int64_t>(FromFixed(amount)));
      } else {
        std::cout << "  " << name << " " << used << "/" << FromFixed(amount);
      }
    }
    std::cout << "\n  object store: " << Human(s.store_used()) << " used of "
              << Human(s.store_capacity()) << " (" << s.num_objects() << " objects, "
              << Human(s.store_pinned()) << " pinned, " << Human(s.spilled_bytes())
              << " spilled)\n";
    std::cout << "  transfers: " << Human(s.transfer_bytes_sent()) << " sent, "
              << Human(s.transfer_bytes_received()) << " received, " << s.pulls_redirected()
              << " pulls redirected\n";
    std::cout << "  workers: " << s.num_workers() << " (" << s.num_idle_workers() << " idle, "
              << s.num_leased_workers() << " leased, " << s.num_actor_workers()
              << " actors), pending leases: " << s.pending_leases() << "\n";
    for (const auto& d : s.demand()) {
      std::string shape = ResourceSet::FromProto(d.shape().amounts()).ToString();
      demand[{shape, d.infeasible()}] += d.count();
    }
  }
  // Work that waits: resource shapes no node can grant now, and those no node can ever hold.
  std::cout << "\nDemand:";
  if (demand.empty()) std::cout << " none (every request has been granted)";
  std::cout << "\n";
  for (const auto& [key, count] : demand) {
    std::cout << "  " << key.first << " x " << count
              << (key.second ? "  INFEASIBLE: no alive node can hold it (waiting for one to join)"
                             : "  pending: waiting for resources")
              << "\n";
  }
  if (status.placement_groups_size() > 0) {
    std::cout << "\nPlacement groups:\n";
    for (const auto& g : status.placement_groups()) {
      std::cout << "  " << PlacementGroupID::FromBinary(g.id()).Hex().substr(0, 12)
                << (g.name().empty() ? "" : " '" + g.name() + "'") << "  "
                << scheduling::BundleStrategyName(
                       static_cast<scheduling::BundleStrategy>(g.strategy()))
                << "  ";
      switch (g.state()) {
        case proto::PG_CREATED:
          std::cout << "CREATED";
          break;
        case proto::PG_FAILED:
          std::cout << "INFEASIBLE: " << g.error();
          break;
        default:
          std::cout << "PENDING: waiting for resources";
      }
      std::cout << "\n    bundles:";
      for (const auto& b : g.bundles()) {
        std::cout << " " << ResourceSet::FromProto(b.resources().amounts()).ToString();
        if (!b.node_id().empty()) {
          std::cout << "@" << NodeID::FromBinary(b.node_id()).Hex().substr(0, 8);
        }
      }
      std::cout << "\n";
    }
  }
  (*conn)->Close(lumen::Status::OK());
  return 0;
}

int Stop(const std::string& root) {
  std::string latest = LatestSessionDir(root);
  std::string address = ResolveAddress("", root);
  std::string token = ResolveToken("", root);
  auto pid_text = ReadFile(JoinPath(latest, "pid"));
  if (latest.empty() || !pid_text.ok()) {
    std::cout << "lumen stop: no running cluster\n";
    return 0;
  }
  pid_t pid = std::atoi(pid_text->c_str());
  bool asked = false;
  if (!address.empty()) {
    rpc::EventLoop loop("cli");
    loop.Start();
    rpc::Dispatcher none;
    auto conn = rpc::Connect(&loop, address, &none, token);
    if (conn.ok()) {
      asked = (*conn)->CallSync(rpc::kGcsShutdown, proto::Empty(), nullptr, 5000).ok();
      (*conn)->Close(Status::OK());
    }
  }
  if (!asked && pid > 0) ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (pid > 0 && ::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (pid > 0 && ::kill(pid, 0) == 0) {
    ::kill(pid, SIGKILL);
    std::cout << "lumen stop: the daemon (pid " << pid << ") did not stop in time; killed\n";
  } else {
    std::cout << "Lumen cluster stopped.\n";
  }
  ::unlink(JoinPath(latest, "pid").c_str());
  return 0;
}

}  // namespace
}  // namespace lumen::cli

int main(int argc, char** argv) {
  using namespace lumen::cli;
  CLI::App app{"lumen — start, inspect and stop Lumen clusters"};
  app.require_subcommand(1);
  StartFlags f;
  auto* start = app.add_subcommand("start", "start a head node, or join a cluster");
  start->add_flag("--head", f.head, "start a new cluster with this machine as head");
  start->add_option("--address", f.address, "join the cluster at HOST:PORT");
  start->add_option("--port", f.port, "control service port (head)")->capture_default_str();
  start->add_option("--num-cpus", f.num_cpus, "CPUs to offer (default: all)");
  start->add_option("--num-gpus", f.num_gpus, "GPUs to offer");
  start->add_option("--resources", f.resources, "custom resources: name=amount[,name=amount]");
  start->add_option("--labels", f.labels, "node labels for label selectors: key=value[,key=value]");
  start->add_option("--object-store-memory", f.object_store_memory,
                    "object store size: bytes or 512M, 2G, ... (default: 30% of RAM)");
  start->add_option("--node-ip", f.node_ip,
                    "this node's address, listened on and advertised by all its processes "
                    "(default: 127.0.0.1 for a head, else the address that routes to the head)");
  start->add_option("--bind", f.bind,
                    "address the services listen on (default: the node's address; 0.0.0.0: all)");
  start->add_option("--node-manager-port", f.node_manager_port,
                    "the node daemon's TCP port (default: any free one)");
  start->add_option("--min-worker-port", f.min_worker_port,
                    "lowest TCP port of workers and drivers on this node (with --max-worker-port)");
  start->add_option("--max-worker-port", f.max_worker_port, "highest TCP port of workers");
  start->add_option("--token-file", f.token_file, "read the cluster token from this file");
  start->add_flag("--block", f.block, "run in the foreground");
  start->add_option("--token", f.token,
                    "cluster token: the one to join with, or the head's own (default: a new one)");
  start->add_option("--redis-address", f.redis_address,
                    "head: keep cluster state in Redis at HOST:PORT or unix:PATH so that a "
                    "restarted head continues it (password: LUMEN_REDIS_PASSWORD)");
  start
      ->add_option("--redis-namespace", f.redis_namespace,
                   "key prefix in Redis, one per cluster sharing a server")
      ->capture_default_str();
  start->add_option("--_serve", f.serve_session)->group("");
  std::string status_address, status_token;
  auto* status = app.add_subcommand("status", "show nodes, resources, object store, workers");
  status->add_option("--address", status_address, "control service HOST:PORT");
  status->add_option("--token", status_token, "cluster token");
  auto* stop = app.add_subcommand("stop", "stop the cluster started on this machine");
  JobCommands jobs(app);
  ActorCommands actors(app);
  CLI11_PARSE(app, argc, argv);
  if (!Env("LUMEN_SESSION_ROOT").empty()) f.root = Env("LUMEN_SESSION_ROOT");
  if (start->parsed()) {
    if (!f.serve_session.empty()) return Serve(f);
    return Start(f);
  }
  std::string root = Env("LUMEN_SESSION_ROOT").empty() ? kDefaultRoot : Env("LUMEN_SESSION_ROOT");
  if (status->parsed()) return ShowStatus(status_address, status_token, root);
  if (stop->parsed()) return Stop(root);
  if (jobs.parsed()) return jobs.Run(root);
  if (actors.parsed()) return actors.Run(root);
  return 0;
}
