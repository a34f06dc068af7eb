// The driver of the cluster suite (cluster_test.cc): a user program run against a cluster of
// three node daemons started with the `lumen` CLI —
//   head:   1 CPU, labels zone=a
//   node b: 1 CPU, resources side=1, labels zone=b
//   node c: 1 CPU, labels zone=c
// `cluster_driver CHECK` runs one check, prints what it saw and exits non-zero with the reason
// on any mismatch.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace {

std::string WhereAmI() { return lumen::GetRuntimeContext().node_id(); }

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

// Checks in under `dir` and spins (holding its CPU: no blocking call) until `n` tasks have:
// it returns only if `n` of these run at the same time. Returns where it ran.
std::string Rendezvous(std::string dir, int n) {
  std::string me =
      dir + "/" + std::to_string(::getpid()) + "-" + lumen::GetRuntimeContext().task_id();
  ::close(::open(me.c_str(), O_CREAT | O_WRONLY, 0644));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (CountEntries(dir) < static_cast<size_t>(n)) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("only " + std::to_string(CountEntries(dir)) + " of " +
                               std::to_string(n) + " tasks ran at once");
    }
  }
  return WhereAmI();
}

// The program this process runs (a submitted job's workers run the uploaded one).
std::string MyBinary() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
}
// Prints a line (reaching the driver's output) and says which program runs it.
std::string SayAndTellBinary(std::string text) {
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  return MyBinary();
}

// Where a task that reads `b` ran.
std::string WhereIsItRead(const lumen::Buffer& b) { return b.size() > 0 ? WhereAmI() : ""; }

// Prints `text` to stdout and to stderr (as a user's task would), returns its pid.
int Say(std::string text) {
  std::printf("%s on stdout\n", text.c_str());
  std::fprintf(stderr, "%s on stderr\n", text.c_str());
  return static_cast<int>(::getpid());
}

// Bytes whose every 8-byte word says where it belongs, and a digest that notices any word out
// of place: a chunk copied to the wrong offset, or twice, changes it.
lumen::Buffer Pattern(int64_t n) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i + 8 <= v.size(); i += 8) {
    uint64_t w = i * 0x9E3779B97F4A7C15ull;
    std::memcpy(v.data() + i, &w, 8);
  }
  return lumen::Buffer::FromVector(std::move(v));
}
uint64_t Digest(const lumen::Buffer& b) {
  uint64_t d = 0;
  for (size_t i = 0; i + 8 <= b.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    d += w * (i | 1);
  }
  return d ^ b.size();
}
// Waits until `n` such tasks run, then reads the object behind `ref` (so the readers pull it
// at the same time) and returns its digest.
uint64_t DigestTogether(std::string dir, int n, std::vector<lumen::ObjectRef<lumen::Buffer>> ref) {
  Rendezvous(std::move(dir), n);
  return Digest(lumen::Get(ref[0]));
}

class Probe {
 public:
  static Probe* Create() { return new Probe(); }
  std::string Node() { return WhereAmI(); }
  lumen::Buffer Make(int64_t n) { return lumen::Buffer::FromVector(std::vector<uint8_t>(n, 7)); }
  std::string ActorId() { return lumen::GetRuntimeContext().actor_id(); }
  int Say(std::string text) {
    std::printf("%s\n", text.c_str());
    return static_cast<int>(::getpid());
  }
  std::string JobId() { return lumen::GetRuntimeContext().job_id(); }
};

}  // namespace

LUMEN_REMOTE(WhereAmI, Rendezvous, WhereIsItRead, Say, Pattern, Digest, DigestTogether,
             SayAndTellBinary);
LUMEN_REMOTE(Probe::Create, &Probe::Node, &Probe::Make, &Probe::ActorId, &Probe::JobId,
             &Probe::Say);

namespace {
// The map of the data pipeline check: passes its blocks on.
class Passthrough {
 public:
  Passthrough() = default;
  lumen::data::Batch operator()(const lumen::data::Batch& in) { return in; }
};
}  // namespace
LUMEN_DATA_CALLABLE(Passthrough);

namespace {
// The map of the split check, fused into the read: 100 ms of decoding, and each row tagged
// with the node that read it (and so holds its block).
lumen::data::Batch TagNode(const lumen::data::Batch& in) {
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return lumen::data::BatchBuilder(in)
      .AddString("node", std::vector<std::string>(static_cast<size_t>(in.NumRows()), WhereAmI()))
      .Build();
}

// A trainer of the split check: reads its share, 50 ms of work per block, and counts the rows
// that were read on its own node. Returns {rows on its node, rows, distinct paths seen}.
class SplitTrainer {
 public:
  static SplitTrainer* Create() { return new SplitTrainer(); }
  std::vector<std::string> Train(lumen::data::SplitIterator it) {
    const std::string here = WhereAmI();
    int64_t local = 0, rows = 0;
    std::vector<std::string> paths;
    for (const lumen::data::Batch& b : it) {
      const auto nodes = b.String("node");
      const auto path = b.String("path");
      for (size_t r = 0; r < nodes.size(); ++r) {
        local += nodes[r] == here;
        paths.emplace_back(path[r]);
      }
      rows += b.NumRows();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the training step
    }
    std::vector<std::string> out = {std::to_string(local), std::to_string(rows)};
    out.insert(out.end(), paths.begin(), paths.end());
    return out;
  }
};
}  // namespace
LUMEN_REMOTE(TagNode, SplitTrainer::Create, &SplitTrainer::Train);

namespace {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void Expect(bool ok, const std::string& what) {
  if (!ok) throw Failure(what);
}

std::string Short(const std::string& id) { return id.substr(0, 8); }

// zone label -> node id, from lumen::Nodes().
std::map<std::string, std::string> NodesByZone() {
  std::map<std::string, std::string> out;
  for (const auto& n : lumen::Nodes()) {
    if (n.alive && n.labels.count("zone")) out[n.labels.at("zone")] = n.node_id;
  }
  Expect(out.size() == 3,
         "expected three alive nodes with zone labels, saw " + std::to_string(out.size()));
  return out;
}

std::string MakeDir(const std::string& name) {
  std::string dir =
      std::string(std::getenv("RENDEZVOUS_DIR") ? std::getenv("RENDEZVOUS_DIR") : "/tmp") + "/" +
      name + "-" + std::to_string(::getpid());
  std::string cmd = "mkdir -p '" + dir + "'";
  Expect(std::system(cmd.c_str()) == 0, "cannot create " + dir);
  return dir;
}

// Get must throw lumen::Error whose message contains every one of `parts`.
template <class Ref>
void ExpectError(Ref ref, const std::vector<std::string>& parts, const std::string& what) {
  try {
    lumen::Get(ref);
  } catch (const lumen::Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) {
      Expect(msg.find(p) != std::string::npos, what + ": the error lacks \"" + p + "\": " + msg);
    }
    std::printf("%s: %s\n", what.c_str(), msg.c_str());
    return;
  }
  throw Failure(what + ": Get returned a value");
}

void CheckNodes() {
  auto zones = NodesByZone();
  auto nodes = lumen::Nodes();
  int heads = 0;
  for (const auto& n : nodes) {
    if (!n.alive) continue;
    heads += n.is_head;
    Expect(!n.address.empty(), "node " + Short(n.node_id) + " has no address");
    Expect(n.resources_total.at("CPU") == 1, "node " + Short(n.node_id) + " should have 1 CPU");
  }
  Expect(heads == 1, "expected one head");
  auto total = lumen::ClusterResources();
  Expect(total["CPU"] == 3, "ClusterResources()[CPU] = " + std::to_string(total["CPU"]));
  Expect(total["side"] == 1, "ClusterResources()[side] = " + std::to_string(total["side"]));
  Expect(lumen::AvailableResources().count("CPU") == 1, "AvailableResources() has no CPU");
  std::printf("3 nodes alive, zones a/b/c, %g CPUs in the cluster\n", total["CPU"]);

  lumen::RuntimeContext ctx = lumen::GetRuntimeContext();
  Expect(ctx.node_id() == zones["a"], "the driver runs on the head (zone a)");
  Expect(ctx.job_id().size() > 0 && ctx.worker_id().size() > 0 && ctx.task_id().size() > 0,
         "the driver's context has empty ids");
  Expect(ctx.actor_id().empty(), "the driver is no actor");
  auto probe = lumen::Actor(Probe::Create).Remote();
  std::string actor_id = lumen::Get(probe.Task(&Probe::ActorId).Remote());
  Expect(!actor_id.empty(), "an actor's context has no actor id");
  Expect(lumen::Get(probe.Task(&Probe::JobId).Remote()) == ctx.job_id(),
         "the actor runs in another job");
  std::printf("driver on node %s (job %s), actor %s\n", Short(ctx.node_id()).c_str(),
              ctx.job_id().c_str(), Short(actor_id).c_str());
}

void CheckCustomResource() {
  auto zones = NodesByZone();
  lumen::TaskOptions o;
  o.resources = {{"side", 1}};
  std::string where = lumen::Get(lumen::Task(WhereAmI).Options(o).Remote());
  Expect(where == zones["b"], "a task needing side=1 ran on " + Short(where) + ", not node b");
  std::printf("a task needing side=1 ran on node b, the only node offering it\n");
}

void CheckSpillback() {
  // Three one-CPU tasks that can only finish together, from a driver on a one-CPU head: the
  // head runs one and spills the others back to the idle nodes.
  std::string dir = MakeDir("spill");
  std::vector<lumen::ObjectRef<std::string>> refs;
  for (int i = 0; i < 3; ++i) refs.push_back(lumen::Task(Rendezvous).Remote(dir, 3));
  std::set<std::string> nodes;
  for (auto& r : refs) nodes.insert(lumen::Get(r));
  Expect(nodes.size() == 3, "3 concurrent tasks ran on " + std::to_string(nodes.size()) + " nodes");
  std::printf("3 one-CPU tasks ran at once on 3 nodes\n");
}

void CheckSpread() {
  // Zero-CPU tasks fit anywhere; the default keeps them on the driver's node, SPREAD sends
  // them round-robin over the nodes.
  std::string dir = MakeDir("spread");
  std::vector<lumen::ObjectRef<std::string>> refs;
  for (int i = 0; i < 3; ++i) {
    refs.push_back(lumen::Task(Rendezvous)
                       .Options({.num_cpus = 0, .scheduling = lumen::SpreadScheduling{}})
                       .Remote(dir, 3));
  }
  std::set<std::string> nodes;
  for (auto& r : refs) nodes.insert(lumen::Get(r));
  Expect(nodes.size() == 3, "SPREAD put 3 tasks on " + std::to_string(nodes.size()) + " nodes");
  std::string here = lumen::Get(lumen::Task(WhereAmI).Options({.num_cpus = 0}).Remote());
  Expect(here == lumen::GetRuntimeContext().node_id(),
         "a zero-CPU task with the default strategy left the idle driver's node");
  std::printf("SPREAD placed 3 tasks on 3 nodes; the default kept one local\n");
}

void CheckAffinity() {
  auto zones = NodesByZone();
  for (int i = 0; i < 3; ++i) {
    std::string where = lumen::Get(
        lumen::Task(WhereAmI)
            .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["c"]}})
            .Remote());
    Expect(where == zones["c"], "hard affinity to node c ran on " + Short(where));
  }
  const std::string nowhere(32, 'e');
  ExpectError(lumen::Task(WhereAmI)
                  .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = nowhere}})
                  .Remote(),
              {nowhere, "dead or not part of the cluster"}, "hard affinity to an unknown node");
  std::string where = lumen::Get(
      lumen::Task(WhereAmI)
          .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = nowhere, .soft = true}})
          .Remote());
  Expect(!where.empty(), "soft affinity to an unknown node did not run");
  // Actors too.
  auto probe = lumen::Actor(Probe::Create)
                   .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["b"]}})
                   .Remote();
  Expect(lumen::Get(probe.Task(&Probe::Node).Remote()) == zones["b"],
         "an actor with affinity to node b lives elsewhere");
  std::printf("hard affinity ran on node c, failed for an unknown node, soft ran anywhere\n");
}

void CheckLabels() {
  auto zones = NodesByZone();
  std::string where =
      lumen::Get(lumen::Task(WhereAmI).Options({.label_selector = {{"zone", "b"}}}).Remote());
  Expect(where == zones["b"], "label zone=b ran on " + Short(where));
  ExpectError(lumen::Task(WhereAmI).Options({.label_selector = {{"zone", "z"}}}).Remote(),
              {"zone=z"}, "a label no node has");
  auto probe = lumen::Actor(Probe::Create).Options({.label_selector = {{"zone", "c"}}}).Remote();
  Expect(lumen::Get(probe.Task(&Probe::Node).Remote()) == zones["c"],
         "an actor selecting zone=c lives elsewhere");
  std::printf("label selectors kept a task on zone b and an actor on zone c\n");
}

void CheckLocality() {
  // An 8 MiB object made on node c: a task reading it is leased from node c, which holds it,
  // although the driver's node is idle.
  auto zones = NodesByZone();
  auto maker = lumen::Actor(Probe::Create)
                   .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["c"]}})
                   .Remote();
  auto big = maker.Task(&Probe::Make).Remote(int64_t{8 << 20});
  lumen::Wait(std::vector<lumen::ObjectRef<lumen::Buffer>>{big}, 1, 60000);
  for (int i = 0; i < 3; ++i) {
    std::string where = lumen::Get(lumen::Task(WhereIsItRead).Remote(big));
    Expect(where == zones["c"], "a task reading 8 MiB held by node c ran on " + Short(where));
  }
  // A small argument does not move the task.
  auto small = maker.Task(&Probe::Make).Remote(int64_t{1000});
  std::string where = lumen::Get(lumen::Task(WhereIsItRead).Remote(small));
  Expect(where == zones["a"], "a task with a 1000-byte argument left the driver's node");
  std::printf("tasks reading an 8 MiB object ran on the node that holds it\n");
}

void CheckBroadcast() {
  // 1 GiB made on node c, read at the same moment on nodes a and b: each gets every byte in
  // place (cluster_test then checks in `lumen status` that node c sent it about once).
  auto zones = NodesByZone();
  auto on = [&](const char* zone) {
    return lumen::TaskOptions{.num_cpus = 0,
                              .scheduling = lumen::NodeAffinityScheduling{.node_id = zones[zone]}};
  };
  auto big = lumen::Task(Pattern).Options(on("c")).Remote(int64_t{1} << 30);
  const uint64_t expected = lumen::Get(lumen::Task(Digest).Options(on("c")).Remote(big));
  std::string dir = MakeDir("broadcast");
  std::vector<lumen::ObjectRef<lumen::Buffer>> nested{big};
  auto on_a = lumen::Task(DigestTogether).Options(on("a")).Remote(dir, 2, nested);
  auto on_b = lumen::Task(DigestTogether).Options(on("b")).Remote(dir, 2, nested);
  Expect(lumen::Get(on_a) == expected, "node a read 1 GiB made on node c with a wrong digest");
  Expect(lumen::Get(on_b) == expected, "node b read 1 GiB made on node c with a wrong digest");
  std::printf("1 GiB made on node c arrived intact on nodes a and b\n");
}

void CheckWaitFetchLocal() {
  // Wait's fetch_local: an object made on node b is ready anywhere at once, but ready here (the
  // driver's node, a) only once Wait has pulled a copy here.
  auto zones = NodesByZone();
  auto big = lumen::Task(Pattern)
                 .Options({.num_cpus = 0,
                           .scheduling = lumen::NodeAffinityScheduling{.node_id = zones["b"]}})
                 .Remote(int64_t{8} << 20);
  std::vector<lumen::ObjectRef<lumen::Buffer>> refs{big};
  auto made = lumen::Wait(refs, {.fetch_local = false});
  Expect(made.ready.size() == 1, "the object made on node b was not reported ready");
  const auto now = std::chrono::milliseconds(0);
  auto before = lumen::Wait(refs, {.timeout = now, .fetch_local = true});
  Expect(before.ready.empty(), "an object only node b holds was ready here with no copy here");
  auto fetched = lumen::Wait(refs, {.fetch_local = true});
  Expect(fetched.ready.size() == 1, "Wait with fetch_local did not end once the copy came");
  auto after = lumen::Wait(refs, {.timeout = now, .fetch_local = true});
  Expect(after.ready.size() == 1, "the copy Wait pulled is not here");
  Expect(lumen::Get(big).size() == size_t{8} << 20, "the pulled copy has the wrong size");
  std::printf("fetch_local waited for the copy from node b\n");
}

void CheckOutput() {
  // A task on node b and an actor on node c print; cluster_test looks for the lines, with
  // where they came from, in what this driver printed. The pids and nodes go to stdout here.
  auto zones = NodesByZone();
  int task_pid = lumen::Get(lumen::Task(Say)
                                .Options({.label_selector = {{"zone", "b"}}})
                                .Remote(std::string("hello from a task")));
  auto probe = lumen::Actor(Probe::Create).Options({.label_selector = {{"zone", "c"}}}).Remote();
  int actor_pid = lumen::Get(probe.Task(&Probe::Say).Remote(std::string("hello from an actor")));
  std::printf("task pid=%d node=%s\nactor pid=%d node=%s\n", task_pid, Short(zones["b"]).c_str(),
              actor_pid, Short(zones["c"]).c_str());
  std::fflush(stdout);
}

void CheckActorBurst() {
  // Three one-CPU actors created at once on three one-CPU nodes: the control service counts
  // each it placed before the nodes report, so they land on three nodes and all come up.
  std::vector<lumen::ActorHandle<Probe>> probes;
  for (int i = 0; i < 3; ++i) {
    probes.push_back(lumen::Actor(Probe::Create).Options({.num_cpus = 1}).Remote());
  }
  std::vector<lumen::ObjectRef<std::string>> nodes;
  for (auto& p : probes) nodes.push_back(p.Task(&Probe::Node).Remote());
  auto [ready, waiting] = lumen::Wait(nodes, 3, 60000);
  Expect(ready.size() == 3, std::to_string(waiting.size()) + " of 3 actors never came up");
  std::set<std::string> where;
  for (auto& n : nodes) where.insert(lumen::Get(n));
  Expect(where.size() == 3,
         "3 one-CPU actors made at once share " + std::to_string(where.size()) + " nodes");
  std::printf("3 actors made at once run on 3 nodes\n");
}

void CheckInfeasible() {
  ExpectError(lumen::Task(WhereAmI).Options({.num_cpus = 64}).Remote(),
              {"{CPU: 64}", "largest node", "CPU: 1"}, "a task asking 64 CPUs");
  auto probe = lumen::Actor(Probe::Create).Options({.resources = {{"nowhere", 1}}}).Remote();
  ExpectError(probe.Task(&Probe::Node).Remote(), {"nowhere: 1"}, "an actor asking for nowhere=1");
}

// Where a task in each bundle of `group` runs (each asking `cpus`).
std::vector<std::string> BundleNodes(const lumen::PlacementGroup& group, double cpus) {
  std::vector<lumen::ObjectRef<std::string>> refs;
  for (int i = 0; i < group.bundle_count(); ++i) {
    refs.push_back(lumen::Task(WhereAmI)
                       .Options({.num_cpus = cpus, .placement_group = group, .bundle_index = i})
                       .Remote());
  }
  std::vector<std::string> out;
  for (auto& r : refs) out.push_back(lumen::Get(r));
  return out;
}

size_t Distinct(const std::vector<std::string>& v) {
  return std::set<std::string>(v.begin(), v.end()).size();
}

void CheckPlacementGroups() {
  using S = lumen::PlacementStrategy;
  auto zones = NodesByZone();
  // STRICT_SPREAD: a CPU on each of the three one-CPU nodes, all of the cluster's CPUs.
  auto strict_spread =
      lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}, {{"CPU", 1}}, {{"CPU", 1}}},
                                   .strategy = S::kStrictSpread,
                                   .name = "strict-spread"});
  Expect(strict_spread.Wait(60000), "STRICT_SPREAD of three one-CPU bundles was not placed");
  Expect(Distinct(BundleNodes(strict_spread, 1)) == 3, "STRICT_SPREAD bundles share a node");
  Expect(lumen::AvailableResources()["CPU"] == 0, "STRICT_SPREAD left CPUs unreserved");
  // Tasks for any bundle that must run at the same time: the group's bundles on the other
  // nodes take them (spillback inside the group).
  std::string dir = MakeDir("pg-any");
  std::vector<lumen::ObjectRef<std::string>> together;
  for (int i = 0; i < 3; ++i) {
    together.push_back(
        lumen::Task(Rendezvous).Options({.placement_group = strict_spread}).Remote(dir, 3));
  }
  std::vector<std::string> where;
  for (auto& r : together) where.push_back(lumen::Get(r));
  Expect(Distinct(where) == 3,
         "3 any-bundle tasks ran together on " + std::to_string(Distinct(where)) + " nodes");
  auto four = lumen::CreatePlacementGroup(
      {.bundles = {{{"CPU", 0.1}}, {{"CPU", 0.1}}, {{"CPU", 0.1}}, {{"CPU", 0.1}}},
       .strategy = S::kStrictSpread});
  try {
    four.Wait(60000);
    throw Failure("STRICT_SPREAD of four bundles on three nodes did not fail");
  } catch (const lumen::Error& e) {
    Expect(std::string(e.what()).find("needs a node per bundle") != std::string::npos,
           std::string("STRICT_SPREAD of four: ") + e.what());
  }
  lumen::RemovePlacementGroup(strict_spread);
  Expect(lumen::AvailableResources()["CPU"] == 3, "removing the group did not free its CPUs");
  // STRICT_PACK and PACK (it fits): one node; SPREAD: three.
  auto strict_pack = lumen::CreatePlacementGroup(
      {.bundles = {{{"CPU", 0.5}}, {{"CPU", 0.5}}}, .strategy = S::kStrictPack});
  Expect(strict_pack.Wait(60000), "STRICT_PACK was not placed");
  Expect(Distinct(BundleNodes(strict_pack, 0.5)) == 1, "STRICT_PACK bundles on several nodes");
  lumen::RemovePlacementGroup(strict_pack);
  auto pack = lumen::CreatePlacementGroup(
      {.bundles = {{{"CPU", 0.25}}, {{"CPU", 0.25}}}, .strategy = S::kPack});
  Expect(pack.Wait(60000), "PACK was not placed");
  Expect(Distinct(BundleNodes(pack, 0.25)) == 1, "PACK split bundles that fit on one node");
  lumen::RemovePlacementGroup(pack);
  auto spread = lumen::CreatePlacementGroup(
      {.bundles = {{{"CPU", 0.5}}, {{"CPU", 0.5}}, {{"CPU", 0.5}}}, .strategy = S::kSpread});
  Expect(spread.Wait(60000), "SPREAD was not placed");
  Expect(Distinct(BundleNodes(spread, 0.5)) == 3, "SPREAD doubled up with nodes to spare");
  lumen::RemovePlacementGroup(spread);
  // A bundle asking for what only node b has is reserved there; an actor inside lives there.
  auto side = lumen::CreatePlacementGroup({.bundles = {{{"side", 1}}}});
  Expect(side.Wait(60000), "a bundle asking for side=1 was not placed");
  auto probe = lumen::Actor(Probe::Create)
                   .Options({.resources = {{"side", 1}}, .placement_group = side})
                   .Remote();
  Expect(lumen::Get(probe.Task(&Probe::Node).Remote()) == zones["b"],
         "an actor in the side=1 bundle lives off node b");
  lumen::RemovePlacementGroup(side);
  std::printf(
      "placement groups: STRICT_SPREAD on 3 nodes, STRICT_PACK and PACK on 1, SPREAD on "
      "3; removal freed the CPUs\n");
}

// lumen::data on the cluster: reads spread over the nodes, an actor pool of one actor per node,
// blocks routed to the actor on their node; the output is exact and most blocks never cross
// the network.
void CheckDataLocality() {
  namespace ld = lumen::data;
  const std::string in = MakeDir("data-in"), out = MakeDir("data-out") + "/out";
  const int files = 24;
  int64_t total = 0;
  for (int f = 0; f < files; ++f) {
    std::string bytes(static_cast<size_t>(2 << 20), static_cast<char>('a' + f % 26));
    FILE* fp = std::fopen((in + "/f" + std::to_string(f)).c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), fp);
    std::fclose(fp);
    total += static_cast<int64_t>(bytes.size());
  }
  ld::ExecutionOptions eo;
  eo.progress = false;
  auto ds = ld::ReadBinaryFiles(in, {.target_block_bytes = 2 << 20})
                // (no CPU: the one-CPU nodes keep theirs for the read and write tasks)
                .MapBatches<Passthrough>({.concurrency = 3, .num_cpus = 0})
                .WithOptions(eo);
  auto written = ds.WriteFiles(out, {.path_column = "path", .data_column = "bytes"});
  Expect(written.files_written == files,
         "wrote " + std::to_string(written.files_written) + " of " + std::to_string(files));
  for (int f = 0; f < files; ++f) {
    std::string name = "/f" + std::to_string(f);
    std::string cmd = "cmp -s '" + in + name + "' '" + out + name + "'";
    Expect(std::system(cmd.c_str()) == 0, "output " + name + " differs from its input");
  }
  int64_t moved = -1;
  for (const auto& op : ds.Stats().operators) {
    if (op.name.find("Passthrough") != std::string::npos) moved = op.bytes_moved;
  }
  Expect(moved >= 0, "no stats for the actor pool");
  Expect(moved < total / 2, "the actor pool read " + std::to_string(moved) + " of " +
                                std::to_string(total) + " bytes from other nodes");
  std::printf("data pipeline: %d files exact, %lld of %lld bytes crossed nodes\n", files,
              static_cast<long long>(moved), static_cast<long long>(total));
}

// StreamingSplit on a cluster: three trainers, one per node, read one stream whose blocks
// are made on every node; each gets the blocks made on its own node first, so far more rows
// than the third a blind dealing would give are read where they lie. Every file reaches
// exactly one trainer.
void CheckSplitLocality() {
  namespace ld = lumen::data;
  const std::string in = MakeDir("split-in");
  const int files = 36;
  for (int f = 0; f < files; ++f) {
    std::string bytes(static_cast<size_t>(256 << 10), static_cast<char>('a' + f % 26));
    FILE* fp = std::fopen((in + "/f" + std::to_string(f)).c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), fp);
    std::fclose(fp);
  }
  ld::ExecutionOptions eo;
  eo.progress = false;
  auto its = ld::ReadBinaryFiles(in, {.target_block_bytes = 256 << 10})
                 .MapBatches(TagNode)
                 .WithOptions(eo)
                 .StreamingSplit(3);
  const auto zones = NodesByZone();
  std::vector<lumen::ActorHandle<SplitTrainer>> trainers;
  std::vector<lumen::ObjectRef<std::vector<std::string>>> results;
  int i = 0;
  for (const char* zone : {"a", "b", "c"}) {
    trainers.push_back(lumen::Actor(SplitTrainer::Create)
                           .Options({.num_cpus = 0, .label_selector = {{"zone", zone}}})
                           .Remote());
    results.push_back(trainers.back().Task(&SplitTrainer::Train).Remote(its[i++]));
  }
  int64_t local = 0, rows = 0;
  std::set<std::string> paths;
  for (const auto& r : lumen::Get(results)) {
    local += std::stoll(r[0]);
    rows += std::stoll(r[1]);
    for (size_t k = 2; k < r.size(); ++k) {
      Expect(paths.insert(r[k]).second, r[k] + " reached two trainers");
    }
  }
  Expect(rows == files && static_cast<int>(paths.size()) == files,
         "the trainers read " + std::to_string(rows) + " rows, " + std::to_string(paths.size()) +
             " distinct files, of " + std::to_string(files));
  std::printf("split: %lld of %lld rows read on the node that made them\n",
              static_cast<long long>(local), static_cast<long long>(rows));
  Expect(local * 3 >= rows * 2, "only " + std::to_string(local) + " of " + std::to_string(rows) +
                                    " rows were read on the node that made them");
}

// Run as a submitted job (`lumen job submit`): a task on nodes b and c each prints a line and
// reports which program its worker runs; the driver prints them and its own.
void CheckJob() {
  std::printf("driver binary: %s\n", MyBinary().c_str());
  for (const char* zone : {"b", "c"}) {
    std::string binary = lumen::Get(lumen::Task(SayAndTellBinary)
                                        .Options({.label_selector = {{"zone", zone}}})
                                        .Remote(std::string("hello from a job's task on ") + zone));
    std::printf("worker binary on %s: %s\n", zone, binary.c_str());
  }
  const char* id = std::getenv("LUMEN_SUBMISSION_ID");
  std::printf("job %s done\n", id ? id : "?");
}

// Runs until stopped (`lumen job stop`).
void CheckRunForever() {
  std::printf("running until stopped\n");
  std::fflush(stdout);
  while (true) ::pause();
}

// Run with a head started with LUMEN_INFEASIBLE_WAIT_S: the task waits (shown in `lumen
// status`) until a node offering side=1 joins, then runs there.
void CheckWaitForANode() {
  lumen::TaskOptions o;
  o.resources = {{"side", 1}};
  std::string where = lumen::Get(lumen::Task(WhereAmI).Options(o).Remote());
  for (const auto& n : lumen::Nodes()) {
    if (n.node_id == where) {
      Expect(n.resources_total.count("side") == 1, "ran on a node without side");
      std::printf("the waiting task ran on the node that joined\n");
      return;
    }
  }
  throw Failure("ran on an unknown node " + where);
}

// runtime_env on other nodes: the working_dir travels to them by content.
std::string ReadConfig(std::string file) {
  FILE* f = std::fopen(file.c_str(), "r");
  if (!f) return "<missing>";
  char buf[256];
  size_t n = std::fread(buf, 1, sizeof(buf), f);
  std::fclose(f);
  const char* mode = std::getenv("PIPELINE_MODE");
  return std::string(buf, n) + "/" + (mode ? mode : "<unset>") + "@" + WhereAmI();
}
LUMEN_REMOTE(ReadConfig);

void CheckRuntimeEnv() {
  const std::string dir = MakeDir("working-dir");
  FILE* f = std::fopen((dir + "/config.txt").c_str(), "w");
  Expect(f != nullptr, "cannot write the working_dir");
  std::fputs("batch=64", f);
  std::fclose(f);
  const lumen::RuntimeEnv env{.env_vars = {{"PIPELINE_MODE", "fast"}}, .working_dir = dir};
  const auto zones = NodesByZone();
  for (const char* zone : {"b", "c"}) {
    std::string seen =
        lumen::Get(lumen::Task(ReadConfig)
                       .Options({.label_selector = {{"zone", zone}}, .runtime_env = env})
                       .Remote(std::string("config.txt")));
    Expect(seen == "batch=64/fast@" + zones.at(zone), "zone " + std::string(zone) + ": " + seen);
  }
  std::printf("the working_dir reached nodes b and c\n");
}

// An actor with state in its fields and in an object it put (detached and namespace checks).
class Keeper {
 public:
  explicit Keeper(std::string label) : label_(std::move(label)) {}
  int Add(int n) { return total_ += n; }
  int64_t Stash(int n) {
    stash_ = lumen::Put(std::vector<int>(static_cast<size_t>(n), 7));
    return n;
  }
  int64_t StashSum() {
    std::vector<int> v = lumen::Get(stash_);
    return std::accumulate(v.begin(), v.end(), int64_t{0});
  }
  std::string Label() const { return label_; }

 private:
  std::string label_;
  int total_ = 0;
  lumen::ObjectRef<std::vector<int>> stash_;
};
LUMEN_ACTOR(Keeper, std::string);
LUMEN_REMOTE(&Keeper::Add, &Keeper::Stash, &Keeper::StashSum, &Keeper::Label);

constexpr int kStash = 1 << 20;  // 4 MiB: in the object store, not inline

// Run with LUMEN_NAMESPACE=svc: a detached actor named "keeper" and an ordinary one named
// "ephemeral"; the job then ends.
void CheckDetachedCreate() {
  auto keeper = lumen::Actor<Keeper>()
                    .Options({.name = "keeper", .lifetime = lumen::ActorLifetime::kDetached})
                    .Remote(std::string("kept"));
  Expect(lumen::Get(keeper.Task(&Keeper::Stash).Remote(kStash)) == kStash, "stash");
  Expect(lumen::Get(keeper.Task(&Keeper::Add).Remote(5)) == 5, "add");
  auto ephemeral =
      lumen::Actor<Keeper>().Options({.name = "ephemeral"}).Remote(std::string("gone"));
  Expect(lumen::Get(ephemeral.Task(&Keeper::Add).Remote(1)) == 1, "ephemeral add");
  std::printf("created the detached actor\n");
}

// A later job in namespace svc: the detached actor is there with its state and its object;
// the ordinary one ended with its job.
void CheckDetachedFind() {
  auto keeper = lumen::GetActor<Keeper>("keeper");
  Expect(keeper.has_value(), "the detached actor is not found by a new job");
  Expect(lumen::Get(keeper->Task(&Keeper::Add).Remote(1)) == 6, "its state was lost");
  Expect(lumen::Get(keeper->Task(&Keeper::StashSum).Remote()) == int64_t{7} * kStash,
         "the object it put was lost with its creator's job");
  auto untyped = lumen::GetActor("keeper");  // a caller that does not know the class
  Expect(untyped && lumen::Get(untyped->TaskByName<int>("Add").Remote(1)) == 7, "by name");
  Expect(!lumen::GetActor<Keeper>("ephemeral").has_value(), "the job's actor outlived its job");
  std::printf("found the detached actor\n");
}

// A job in its own namespace does not see svc's names unless it asks for that namespace.
void CheckDetachedElsewhere() {
  Expect(!lumen::GetActor<Keeper>("keeper").has_value(), "another namespace's actor was found");
  auto keeper = lumen::GetActor<Keeper>("keeper", {.namespace_ = "svc"});
  Expect(keeper && lumen::Get(keeper->Task(&Keeper::Label).Remote()) == "kept", "namespace svc");
  std::printf("found it in namespace svc\n");
}

void CheckDetachedGone() {
  Expect(!lumen::GetActor<Keeper>("keeper").has_value(), "the killed actor is still found");
  std::printf("the detached actor is gone\n");
}

// Run with LUMEN_NAMESPACE=team: names an actor "same", then runs `namespace_inner` (a job
// of its own namespace) while it lives; each finds its own under that name.
void CheckNamespaceOuter() {
  auto mine = lumen::Actor<Keeper>().Options({.name = "same"}).Remote(std::string("outer"));
  Expect(lumen::Get(mine.Task(&Keeper::Label).Remote()) == "outer", "outer label");
  const std::string inner = "env -u LUMEN_NAMESPACE " + MyBinary() + " namespace_inner";
  Expect(std::system(inner.c_str()) == 0, "the inner job failed");
  auto found = lumen::GetActor<Keeper>("same");
  Expect(found && lumen::Get(found->Task(&Keeper::Label).Remote()) == "outer", "outer lookup");
  std::printf("both jobs had their own actor named same\n");
}

void CheckNamespaceInner() {
  auto mine = lumen::Actor<Keeper>().Options({.name = "same"}).Remote(std::string("inner"));
  auto found = lumen::GetActor<Keeper>("same");
  Expect(found && lumen::Get(found->Task(&Keeper::Label).Remote()) == "inner", "inner lookup");
  auto theirs = lumen::GetActor<Keeper>("same", {.namespace_ = "team"});
  Expect(theirs && lumen::Get(theirs->Task(&Keeper::Label).Remote()) == "outer", "team lookup");
  std::printf("inner job: its own actor and team's\n");
}

}  // namespace

int main(int argc, char** argv) {
  lumen::Init(argc, argv);
  const std::map<std::string, std::function<void()>> checks = {
      {"nodes", CheckNodes},
      {"custom_resource", CheckCustomResource},
      {"spillback", CheckSpillback},
      {"spread", CheckSpread},
      {"affinity", CheckAffinity},
      {"labels", CheckLabels},
      {"infeasible", CheckInfeasible},
      {"locality", CheckLocality},
      {"broadcast", CheckBroadcast},
      {"wait_fetch_local", CheckWaitFetchLocal},
      {"output", CheckOutput},
      {"actor_burst", CheckActorBurst},
      {"placement_groups", CheckPlacementGroups},
      {"job", CheckJob},
      {"data_locality", CheckDataLocality},
      {"split_locality", CheckSplitLocality},
      {"run_forever", CheckRunForever},
      {"wait_for_a_node", CheckWaitForANode},
      {"runtime_env", CheckRuntimeEnv},
      {"detached_create", CheckDetachedCreate},
      {"detached_find", CheckDetachedFind},
      {"detached_elsewhere", CheckDetachedElsewhere},
      {"detached_gone", CheckDetachedGone},
      {"namespace_outer", CheckNamespaceOuter},
      {"namespace_inner", CheckNamespaceInner}};
  int code = 0;
  std::string which = argc > 1 ? argv[1] : "";
  if (which == "exit_3") {  // a job whose driver fails with its own exit code
    std::printf("exiting with 3\n");
    lumen::Shutdown();
    return 3;
  }
  auto it = checks.find(which);
  if (it == checks.end()) {
    std::fprintf(stderr, "cluster_driver: unknown check '%s'\n", which.c_str());
    code = 2;
  } else {
    try {
      it->second();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cluster_driver %s: %s\n", which.c_str(), e.what());
      code = 1;
    }
  }
  lumen::Shutdown();
  return code;
}
