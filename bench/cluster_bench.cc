// lumen_bench_cluster: Lumen across node daemons on this machine, started with the `lumen` CLI,
// beside baselines measured in the same run. Prints `name value unit` lines (README.md here).
//
//   lumen_bench_cluster [--quick]
//
// Sections (each a driver run of this same program against the cluster it needs):
// - tasks: no-op tasks from one driver on a one-node cluster and on a three-node cluster;
// - spillback: submit -> start latency of a task its node must spill back once, beside one
//   that starts on the driver's node (every task takes a fresh lease);
// - transfer: a 1 GiB object made on another node, read by the driver (pulled into its store),
//   beside a plain TCP socket copying 1 GiB between two processes;
// - broadcast: the same object read on two other nodes at once, beside a single transfer.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench_cluster.h"
#include "bench_report.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace {

using lumen::bench::Cluster;
using lumen::bench::Median;
using lumen::bench::Now;
using lumen::bench::Report;

constexpr int64_t kGiB = 1ll << 30;

// ---- remote functions -------------------------------------------------------------------------

int Noop(int x) { return x; }

// When (steady clock, shared by every process of this machine) the task started.
double StartedAt() { return Now(); }

// Reads every page of `b` (the bytes arrived), returns where it ran.
volatile uint64_t g_sink = 0;
std::string Touch(const lumen::Buffer& b) {
  uint64_t sum = 0;
  for (size_t i = 0; i < b.size(); i += 4096) sum += b.data()[i];
  g_sink = sum;
  return lumen::GetRuntimeContext().node_id();
}

lumen::Buffer MakeBytes(int64_t n) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); i += 4096) v[i] = static_cast<uint8_t>(i >> 12);
  return lumen::Buffer::FromVector(std::move(v));
}

}  // namespace

LUMEN_REMOTE(Noop, StartedAt, Touch, MakeBytes);

// The map of the locality experiment: reads every byte of its block (a model would), passes
// it on.
class ByteSum {
 public:
  ByteSum() = default;
  lumen::data::Batch operator()(const lumen::data::Batch& in) {
    auto bytes = in.Binary("bytes");
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (unsigned char c : bytes[i]) sum_ += c;
    }
    return in;
  }

 private:
  uint64_t sum_ = 0;
};
LUMEN_DATA_CALLABLE(ByteSum);

namespace {

std::string NodeInZone(const std::string& zone) {
  for (const auto& n : lumen::Nodes()) {
    if (n.alive && n.labels.count("zone") && n.labels.at("zone") == zone) return n.node_id;
  }
  std::fprintf(stderr, "no node in zone %s\n", zone.c_str());
  std::exit(1);
}

lumen::TaskOptions On(const std::string& zone, double cpus = 1) {
  lumen::TaskOptions o;
  o.num_cpus = cpus;
  o.scheduling = lumen::NodeAffinityScheduling{.node_id = NodeInZone(zone)};
  return o;
}

// ---- driver sections (run inside the cluster) ------------------------------------------------

double AsyncTaskRate(int n, const lumen::TaskOptions& o) {
  lumen::Get(lumen::Task(Noop).Options(o).Remote(0));
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<lumen::ObjectRef<int>> refs;
    refs.reserve(static_cast<size_t>(n));
    double t0 = Now();
    for (int i = 0; i < n; ++i) refs.push_back(lumen::Task(Noop).Options(o).Remote(i));
    lumen::Get(refs);
    best = std::max(best, n / (Now() - t0));
  }
  return best;
}

// On three nodes the tasks are spread (SPREAD: leases round-robin over the nodes), so that
// they do run on all three rather than pipelined on the driver's idle node.
void DriverTasks(bool quick, const std::string& name, bool spread) {
  lumen::TaskOptions o;
  if (spread) o.scheduling = lumen::SpreadScheduling{};
  Report(name, AsyncTaskRate(quick ? 20000 : 200000, o), "tasks/s");
  std::map<std::string, int> per_node;
  std::vector<lumen::ObjectRef<std::string>> where;
  for (int i = 0; i < 200; ++i) {
    where.push_back(
        lumen::Task(Touch).Options(o).Remote(lumen::Buffer::FromVector(std::vector<uint8_t>(1))));
  }
  for (auto& w : lumen::Get(where)) ++per_node[w];
  Report(name + "_nodes_used", static_cast<double>(per_node.size()), "nodes");
}

void DriverSpillback(bool quick) {
  const int n = quick ? 20 : 200;
  auto latency = [&](const lumen::TaskOptions& o) {
    lumen::Get(lumen::Task(StartedAt).Options(o).Remote());  // a worker is up there
    std::vector<double> us;
    for (int i = 0; i < n; ++i) {
      double t0 = Now();
      double started = lumen::Get(lumen::Task(StartedAt).Options(o).Remote());
      us.push_back((started - t0) * 1e6);
    }
    return Median(us);
  };
  lumen::TaskOptions local;
  double here = latency(local);
  lumen::TaskOptions spilled;
  spilled.label_selector = {{"zone", "b"}};  // the driver's node (zone a) spills it to b
  double there = latency(spilled);
  Report("local_task_latency_us", here, "us");
  Report("spillback_task_latency_us", there, "us");
  Report("spillback_vs_local_latency", there / here, "x");
}

// Pulls an object of `size` made on node b into the driver's node; returns the seconds.
double TransferOnce(int64_t size) {
  auto big = lumen::Task(MakeBytes).Options(On("b")).Remote(size);
  lumen::Wait(std::vector<lumen::ObjectRef<lumen::Buffer>>{big}, 1, -1);
  double t0 = Now();
  lumen::Buffer b = lumen::Get(big);
  double secs = Now() - t0;
  if (static_cast<int64_t>(b.size()) != size) std::exit(1);
  return secs;
}

void DriverTransfer(bool quick) {
  const int64_t size = quick ? kGiB / 8 : kGiB;
  // The first object into a fresh store also pays for the kernel allocating its pages (slow
  // on virtual machines); the plain-socket baseline receives into a buffer already zeroed, so
  // the figure compared with it is the second transfer, into pages the store has used.
  double cold = TransferOnce(size);  // freed on return: the next copy reuses its pages
  double secs = TransferOnce(size);
  Report("transfer_cold_seconds", cold, "s");
  Report("transfer_cold_gigabytes_per_s", static_cast<double>(size) / cold / 1e9, "GB/s");
  Report("transfer_seconds", secs, "s");
  Report("transfer_gigabytes_per_s", static_cast<double>(size) / secs / 1e9, "GB/s");
}

// CPU seconds this machine spent busy (all processes, all cores) since boot: /proc/stat.
double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return (user + nice + system + irq + softirq + steal) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

void DriverBroadcast(bool quick) {
  const int64_t size = quick ? kGiB / 8 : kGiB;
  // Made here (zone a). First (not timed) b and c each read one, so both stores have pages
  // in use; then b alone reads one, then b and c read one at once.
  {
    auto warm = lumen::Put(MakeBytes(size));
    lumen::Get(lumen::Task(Touch).Options(On("b", 0)).Remote(warm));
    lumen::Get(lumen::Task(Touch).Options(On("c", 0)).Remote(warm));
  }
  auto single = lumen::Put(MakeBytes(size));
  double t0 = Now(), cpu0 = MachineBusySeconds();
  lumen::Get(lumen::Task(Touch).Options(On("b", 0)).Remote(single));
  double one = Now() - t0, one_cpu = MachineBusySeconds() - cpu0;
  single = lumen::ObjectRef<lumen::Buffer>();
  auto shared = lumen::Put(MakeBytes(size));
  t0 = Now();
  cpu0 = MachineBusySeconds();
  auto on_b = lumen::Task(Touch).Options(On("b", 0)).Remote(shared);
  auto on_c = lumen::Task(Touch).Options(On("c", 0)).Remote(shared);
  lumen::Get(on_b);
  lumen::Get(on_c);
  double both = Now() - t0, both_cpu = MachineBusySeconds() - cpu0;
  // Why the ratio is what it is on a small machine: a transfer is CPU-bound copying (the
  // sender's kernel into the socket, the receiver out of it); two receivers copy twice as many
  // bytes, and when one transfer already keeps every core busy, two cannot take the same time.
  Report("single_transfer_cores_busy", one_cpu / one, "cores");
  Report("broadcast_cores_busy", both_cpu / both, "cores");
  Report("broadcast_cpu_vs_single_transfer", one_cpu > 0 ? both_cpu / one_cpu : 0, "x");
  Report("single_transfer_1gib_s", one * static_cast<double>(kGiB) / static_cast<double>(size),
         "s");
  Report("broadcast_1gib_to_2_nodes_s",
         both * static_cast<double>(kGiB) / static_cast<double>(size), "s");
  Report("broadcast_vs_single_transfer", both / one, "x");
}

// ---- baselines ---------------------------------------------------------------------------

// A plain socket: one process writes `size` bytes to another over loopback TCP.
double TcpLoopbackGigabytesPerSecond(int64_t size) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  socklen_t len = sizeof(sa);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len);
  ::listen(listener, 1);
  pid_t child = ::fork();
  if (child == 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) ::_exit(1);
    std::vector<char> chunk(1 << 20, 'x');
    for (int64_t sent = 0; sent < size;) {
      ssize_t n = ::send(fd, chunk.data(),
                         static_cast<size_t>(std::min<int64_t>(size - sent, chunk.size())), 0);
      if (n <= 0) ::_exit(1);
      sent += n;
    }
    ::close(fd);
    ::_exit(0);
  }
  int fd = ::accept(listener, nullptr, nullptr);
  std::vector<char> into(static_cast<size_t>(size));  // received into one buffer, as a store
  double t0 = Now();
  int64_t got = 0;
  while (got < size) {
    ssize_t n = ::recv(fd, into.data() + got, static_cast<size_t>(size - got), 0);
    if (n <= 0) break;
    got += n;
  }
  double secs = Now() - t0;
  ::close(fd);
  ::close(listener);
  ::waitpid(child, nullptr, 0);
  return static_cast<double>(got) / secs / 1e9;
}

// ---- orchestration ---------------------------------------------------------------------------

// ---- lumen::data on three nodes -----------------------------------------------------------

// The reference measurements' locality experiment: read on every node → a map in an actor
// pool with one actor per node (per-actor queues) → write, once routing blocks to actors at
// random and once to the actor on the block's node. Bytes moved are the pipeline's input
// bytes that its tasks read from another node (OperatorStats::bytes_moved).
void DriverLocality(bool quick) {
  namespace ld = lumen::data;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("lumen-locality-" + std::to_string(::getpid())))
          .string();
  const std::string in = root + "/in", out = root + "/out";
  std::filesystem::create_directories(in);
  const int files = quick ? 24 : 120;
  const size_t size = 4 << 20;
  std::string block(size, '\0');
  for (int f = 0; f < files; ++f) {
    for (size_t i = 0; i < size; i += 64) block[i] = static_cast<char>(f + i / 64);
    std::ofstream(in + "/part-" + std::to_string(f) + ".bin", std::ios::binary) << block;
  }
  ld::ExecutionOptions eo;
  eo.progress = false;
  double moved[2] = {0, 0};
  for (bool aware : {false, true}) {
    std::filesystem::remove_all(out);
    auto ds = ld::ReadBinaryFiles(in, {.target_block_bytes = static_cast<int64_t>(size)})
                  .MapBatches<ByteSum>({.concurrency = 3, .num_cpus = 1, .locality_aware = aware})
                  .WithOptions(eo);
    double t = Now();
    ds.WriteFiles(out, {.path_column = "path", .data_column = "bytes"});
    double s = Now() - t;
    int64_t bytes = 0;
    for (const auto& op : ds.Stats().operators) bytes += op.bytes_moved;
    moved[aware] = static_cast<double>(bytes);
    const std::string name = aware ? "locality_aware" : "locality_random";
    Report(name + "_s", s, "s");
    Report(name + "_bytes_moved", static_cast<double>(bytes), "bytes");
  }
  Report("locality_bytes_moved_reduction", moved[0] > 0 ? 1 - moved[1] / moved[0] : 0, "x");
  std::filesystem::remove_all(root);
}

// The value of figure `name` in a section's output (0 when missing).
double Figure(const std::string& text, const std::string& name) {
  size_t at = text.find(name + " ");
  return at == std::string::npos ? 0 : std::atof(text.c_str() + at + name.size() + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string section;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--driver" && i + 1 < argc) section = argv[++i];
    if (a == "--quick") quick = true;
  }
  if (!section.empty() || std::getenv("LUMEN_ROLE")) {  // a driver, or one of its workers
    lumen::Init(argc, argv);
    if (section == "tasks_1") DriverTasks(quick, "tasks_async_per_s", false);
    if (section == "tasks_3") DriverTasks(quick, "tasks_async_per_s_3_nodes", true);
    if (section == "spillback") DriverSpillback(quick);
    if (section == "transfer") DriverTransfer(quick);
    if (section == "broadcast") DriverBroadcast(quick);
    if (section == "locality") DriverLocality(quick);
    lumen::Shutdown();
    return 0;
  }

  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  bool ok = true;
  std::string one_node, three_nodes, transfer;
  {
    Cluster one("cluster", {"a"}, "1G", 2);
    one_node = one.Drive(self, "tasks_1", quick, &ok);
  }
  {
    Cluster three("cluster", {"a", "b", "c"}, quick ? "1G" : "3G", 2);
    three_nodes = three.Drive(self, "tasks_3", quick, &ok);
    // Every task takes a fresh lease: the spill happens each time, not only for the first.
    three.Drive(self, "spillback", quick, &ok, "LUMEN_LEASE_IDLE_TIMEOUT_MS=0");
    transfer = three.Drive(self, "transfer", quick, &ok);
    three.Drive(self, "broadcast", quick, &ok);
    three.Drive(self, "locality", quick, &ok);
  }
  double tcp = TcpLoopbackGigabytesPerSecond(quick ? kGiB / 8 : kGiB);
  Report("tcp_loopback_gigabytes_per_s", tcp, "GB/s");
  Report("transfer_vs_tcp_loopback", Figure(transfer, "transfer_gigabytes_per_s") / tcp, "x");
  double single = Figure(one_node, "tasks_async_per_s");
  Report("tasks_async_3_nodes_vs_1_node",
         single > 0 ? Figure(three_nodes, "tasks_async_per_s_3_nodes") / single : 0, "x");
  return ok ? 0 : 1;
}
