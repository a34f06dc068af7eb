// lumen_bench_faults: what a node failure costs on a cluster of node daemons on this machine
// (started with the `lumen` CLI), beside the same work without the failure, in the same run.
// Prints `name value unit` lines (README.md here).
//
//   lumen_bench_faults [--quick]
//
// Sections (each a driver run of this program against a fresh three-node cluster, node b of
// which it kills):
// - detect: a frozen node (SIGSTOP: connections stay open, heartbeats stop) and a killed one
//   (SIGKILL): time from the signal until the owner of an object held there is told (its Get
//   fails with ObjectReconstructionFailedError: the task has max_retries=0);
// - reconstruct: a 1 GiB result made on node b and read on node c (task_1gib_s), beside another
//   made there, node b killed before anything read it, and the same read on node c
//   (reconstruct_1gib_s: detection, the re-run from lineage elsewhere, the transfer);
// - tree: map -> all-to-all -> reduce over the three nodes, once undisturbed and once with node
//   b killed when half of the maps are done; the results must be exact both times;
// - chaos: rounds of a task tree and a lumen::data pipeline (tests/chaos_workload.h) while
//   node b or c is killed every 1-2 s (fixed seed) and started again (tests/chaos_killer.h);
//   every round must be exact.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_cluster.h"
#include "bench_report.h"
#include "chaos_killer.h"
#include "chaos_workload.h"
#include "lumen/lumen.h"

namespace {

using lumen::bench::Cluster;
using lumen::bench::Now;
using lumen::bench::Report;

constexpr int64_t kGiB = 1ll << 30;

uint8_t PatternByte(int seed, size_t i) { return static_cast<uint8_t>(seed * 131 + i * 7); }

// A block of `n` pattern bytes; every byte is written (and `rounds` more passes of work done).
lumen::Buffer MakeBlock(int seed, int64_t n, int rounds) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = PatternByte(seed, i);
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 1; i < v.size(); ++i) v[i] = static_cast<uint8_t>(v[i] ^ (v[i - 1] >> 1));
  }
  return lumen::Buffer::FromVector(std::move(v));
}

// Reducer `part` of `parts`: the sum of its slice of every block.
uint64_t ReduceSlice(int part, int parts, std::vector<lumen::ObjectRef<lumen::Buffer>> blocks) {
  uint64_t sum = 0;
  for (auto& ref : blocks) {
    lumen::Buffer b = lumen::Get(ref);
    size_t slice = b.size() / static_cast<size_t>(parts);
    size_t from = slice * static_cast<size_t>(part);
    for (size_t i = from; i < from + slice; ++i) sum += b.data()[i];
  }
  return sum;
}

// Reads every page of `b` on node c; returns the first byte of every page xor-ed.
uint8_t ReadOnC(std::vector<lumen::ObjectRef<lumen::Buffer>> ref) {
  lumen::Buffer b = lumen::Get(ref[0]);
  uint8_t x = 0;
  for (size_t i = 0; i < b.size(); i += 4096) x ^= b.data()[i];
  return x;
}

}  // namespace

LUMEN_REMOTE(MakeBlock, ReduceSlice, ReadOnC);

namespace {

std::string NodeInZone(const std::string& zone) {
  for (const auto& n : lumen::Nodes()) {
    if (n.alive && n.labels.count("zone") && n.labels.at("zone") == zone) return n.node_id;
  }
  std::fprintf(stderr, "no node in zone %s\n", zone.c_str());
  std::exit(1);
}

void Signal(int sig) {
  const char* pid = std::getenv("VICTIM_PID");
  if (!pid || ::kill(std::atoi(pid), sig) != 0) {
    std::fprintf(stderr, "cannot signal node b's daemon (VICTIM_PID=%s)\n", pid ? pid : "");
    std::exit(1);
  }
}

// ---- driver sections (run inside the cluster) ------------------------------------------------

// Signal `sig` to node b → the owner of an object there learns it is gone.
void DriverDetect(int sig, const std::string& figure) {
  auto ref = lumen::Task(MakeBlock)
                 .Options({.max_retries = 0,
                           .scheduling = lumen::NodeAffinityScheduling{.node_id = NodeInZone("b")}})
                 .Remote(1, 1 << 20, 0);
  lumen::Wait(std::vector<lumen::ObjectRef<lumen::Buffer>>{ref}, {.fetch_local = false});
  double t0 = Now();
  Signal(sig);
  try {
    lumen::Get(ref);
    std::fprintf(stderr, "the object on the dead node was read\n");
    std::exit(1);
  } catch (const lumen::ObjectReconstructionFailedError&) {
  }
  Report(figure, (Now() - t0) * 1000, "ms");
  if (sig == SIGSTOP) Signal(SIGKILL);
}

// A result made on node b and read on node c, measured from submission; then another made
// there, node b killed before anything read it, and the same read on node c, measured from
// the kill: detection, the re-run elsewhere and the transfer.
void DriverReconstruct(bool quick) {
  const int64_t n = quick ? kGiB / 8 : kGiB;
  auto on_b = lumen::TaskOptions{
      .scheduling = lumen::NodeAffinityScheduling{.node_id = NodeInZone("b"), .soft = true}};
  auto on_c =
      lumen::TaskOptions{.scheduling = lumen::NodeAffinityScheduling{.node_id = NodeInZone("c")}};
  uint8_t want = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); i += 4096) want ^= PatternByte(2, i);
  double t0 = Now();
  auto first = lumen::Task(MakeBlock).Options(on_b).Remote(2, n, 0);
  bool exact = lumen::Get(lumen::Task(ReadOnC).Options(on_c).Remote(
                   std::vector<lumen::ObjectRef<lumen::Buffer>>{first})) == want;
  double task_s = Now() - t0;
  auto lost = lumen::Task(MakeBlock).Options(on_b).Remote(2, n, 0);
  lumen::Wait(std::vector<lumen::ObjectRef<lumen::Buffer>>{lost}, {.fetch_local = false});
  t0 = Now();
  Signal(SIGKILL);
  exact = exact && lumen::Get(lumen::Task(ReadOnC).Options(on_c).Remote(
                       std::vector<lumen::ObjectRef<lumen::Buffer>>{lost})) == want;
  double reconstruct_s = Now() - t0;
  const std::string size = quick ? "128mib" : "1gib";
  Report("task_" + size + "_s", task_s, "s");
  Report("reconstruct_" + size + "_s", reconstruct_s, "s");
  Report("reconstruct_vs_task", reconstruct_s / task_s, "x");
  Report("reconstruct_exact", exact ? 1 : 0, "bool");
}

void DriverTree(bool quick, bool kill) {
  const int maps = quick ? 12 : 24, parts = 4;
  const int64_t block = 8 << 20;
  double t0 = Now();
  std::vector<lumen::ObjectRef<lumen::Buffer>> blocks;
  for (int m = 0; m < maps; ++m) blocks.push_back(lumen::Task(MakeBlock).Remote(m, block, 4));
  if (kill) {
    lumen::Wait(blocks, {.num_returns = static_cast<size_t>(maps / 2), .fetch_local = false});
    Signal(SIGKILL);
  }
  std::vector<lumen::ObjectRef<uint64_t>> sums;
  for (int p = 0; p < parts; ++p) sums.push_back(lumen::Task(ReduceSlice).Remote(p, parts, blocks));
  std::vector<uint64_t> got = lumen::Get(sums);
  double s = Now() - t0;
  // The same sums computed here.
  bool exact = true;
  for (int p = 0; p < parts; ++p) {
    uint64_t want = 0;
    for (int m = 0; m < maps; ++m) {
      lumen::Buffer b = MakeBlock(m, block, 4);
      size_t slice = b.size() / parts;
      for (size_t i = slice * p; i < slice * (p + 1); ++i) want += b.data()[i];
    }
    exact = exact && want == got[p];
  }
  Report(kill ? "tree_one_node_killed_s" : "tree_s", s, "s");
  Report(kill ? "tree_one_node_killed_exact" : "tree_exact", exact ? 1 : 0, "bool");
}

void DriverChaos(bool quick) {
  const int rounds = quick ? 4 : 12;
  const std::string dir =
      std::filesystem::temp_directory_path() / ("lumen-bench-chaos-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const int exact = chaos::RunRounds(rounds, dir, chaos::Sizes{});
  std::filesystem::remove_all(dir);
  Report("chaos_runs", rounds, "count");
  Report("chaos_runs_exact", exact, "count");
}

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
    if (section == "detect_hang") DriverDetect(SIGSTOP, "node_death_detect_ms");
    if (section == "detect_kill") DriverDetect(SIGKILL, "node_death_detect_killed_ms");
    if (section == "reconstruct") DriverReconstruct(quick);
    if (section == "tree") DriverTree(quick, false);
    if (section == "tree_kill") DriverTree(quick, true);
    if (section == "chaos") DriverChaos(quick);
    lumen::Shutdown();
    return 0;
  }

  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  bool ok = true;
  auto with_victim = [](const Cluster& c) {
    return "VICTIM_PID=" + std::to_string(c.DaemonPid("b"));
  };
  const std::vector<std::string> zones{"a", "b", "c"};
  for (const std::string section : {"detect_hang", "detect_kill"}) {
    Cluster c("faults", zones, "1G", 1);
    c.Drive(self, section, quick, &ok, with_victim(c));
  }
  {
    Cluster c("faults", zones, quick ? "1G" : "3G", 1);
    c.Drive(self, "reconstruct", quick, &ok, with_victim(c));
  }
  std::string tree, killed;
  {
    Cluster c("faults", zones, "1G", 1);
    tree = c.Drive(self, "tree", quick, &ok);
  }
  {
    Cluster c("faults", zones, "1G", 1);
    killed = c.Drive(self, "tree_kill", quick, &ok, with_victim(c));
  }
  double base = Figure(tree, "tree_s");
  Report("job_slowdown_one_node_killed",
         base > 0 ? Figure(killed, "tree_one_node_killed_s") / base : 0, "x");
  {
    Cluster c("faults", zones, "1G", 1);
    std::atomic<bool> done{false};
    std::thread driver([&] {
      c.Drive(self, "chaos", quick, &ok);
      done = true;
    });
    const int kills = chaos::KillUntilDone(
        [&] { return done.load(); },
        [&](const std::string& zone) { return c.KillAndRestart(zone); }, {"b", "c"},
        /*seed=*/20261205, std::chrono::milliseconds(1000), std::chrono::milliseconds(2000),
        std::chrono::seconds(120));
    driver.join();
    Report("chaos_node_kills", kills, "count");
  }
  return ok ? 0 : 1;
}
