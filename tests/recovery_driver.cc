// The driver of the recovery suite (recovery_test.cc): a user program on a cluster of three node
// daemons started with the `lumen` CLI (zones a = head, b and c; node b also offers side=1)
// that loses node b mid-job. `recovery_driver CHECK` runs one check, prints what it saw and
// exits non-zero with the reason on any mismatch. VICTIM_PID is node b's daemon: the driver
// kills it (SIGKILL; its workers die with it) at the point the check needs.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "chaos_workload.h"
#include "lumen/lumen.h"

namespace {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void Expect(bool ok, const std::string& what) {
  if (!ok) throw Failure(what);
}

std::string Short(const std::string& id) { return id.substr(0, 8); }

std::string WhereAmI() { return lumen::GetRuntimeContext().node_id(); }

// Every run of a task appends "<name> <seed> <node>" to `log` (one write: lines never mix).
void LogRun(const std::string& log, const std::string& name, int seed) {
  std::string line = name + " " + std::to_string(seed) + " " + WhereAmI() + "\n";
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + log);
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + log);
}

uint8_t PatternByte(int seed, size_t i) { return static_cast<uint8_t>(seed + i * 31); }

// A blob large enough to live in the object store (not inline in its owner).
lumen::Buffer Make(std::string log, int seed, int64_t n) {
  LogRun(log, "Make", seed);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = PatternByte(seed, i);
  return lumen::Buffer::FromVector(std::move(v));
}

void AwaitFile(const std::string& path);

// A streaming task: yields `count` blobs of `n` bytes (seeds seed, seed + 1, ...); before the
// one at `pause_at` it waits for the file `go`.
void Blocks(lumen::Yield<lumen::Buffer>& out, std::string log, int seed, int count, int64_t n,
            int pause_at, std::string go) {
  LogRun(log, "Blocks", seed);
  for (int k = 0; k < count; ++k) {
    if (k == pause_at) AwaitFile(go);
    std::vector<uint8_t> v(static_cast<size_t>(n));
    for (size_t i = 0; i < v.size(); ++i) v[i] = PatternByte(seed + k, i);
    out(lumen::Buffer::FromVector(std::move(v)));
  }
}

lumen::Buffer AddOne(std::string log, int seed, lumen::Buffer in) {
  LogRun(log, "AddOne", seed);
  std::vector<uint8_t> v(in.data(), in.data() + in.size());
  for (auto& b : v) ++b;
  return lumen::Buffer::FromVector(std::move(v));
}

uint64_t Digest(const lumen::Buffer& b) {
  uint64_t d = 1469598103934665603ull;
  for (size_t i = 0; i < b.size(); ++i) d = (d ^ b.data()[i]) * 1099511628211ull;
  return d;
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Spins until `path` exists (a minute at most): another process says it may go on.
void AwaitFile(const std::string& path) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!Exists(path)) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error(path + " never came");
    std::this_thread::yield();
  }
}

// A borrower: learns where the object's copy is (without reading it), says so in `waited`,
// and reads it once `go` exists — after that copy's node was killed.
uint64_t ReadLater(std::string waited, std::string go,
                   std::vector<lumen::ObjectRef<lumen::Buffer>> refs) {
  auto ready = lumen::Wait(refs, {.num_returns = 1, .fetch_local = false});
  if (ready.ready.size() != 1) throw std::runtime_error("the object never became ready");
  ::close(::open(waited.c_str(), O_CREAT | O_WRONLY, 0644));
  AwaitFile(go);
  return Digest(lumen::Get(refs[0]));
}

// How many nodes `lumen status` (run by `status_command`) shows with an empty store.
int EmptyStores(const std::string& status_command) {
  FILE* p = ::popen(status_command.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run lumen status");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  int empty = 0;
  for (size_t at = out.find("(0 objects"); at != std::string::npos;
       at = out.find("(0 objects", at + 1)) {
    ++empty;
  }
  return empty;
}

// A borrower that keeps a ref past its owner's death and reads it when asked.
class Keeper {
 public:
  static Keeper* Create() { return new Keeper(); }
  bool Keep(std::vector<lumen::ObjectRef<lumen::Buffer>> refs) {
    kept_ = std::move(refs);
    return true;
  }
  std::string ReadKept() {
    try {
      lumen::Get(kept_.at(0));
      return "read the object of a dead owner";
    } catch (const lumen::OwnerDiedError& e) {
      return std::string("OwnerDiedError: ") + e.what();
    } catch (const std::exception& e) {
      return std::string("another error: ") + e.what();
    }
  }

 private:
  std::vector<lumen::ObjectRef<lumen::Buffer>> kept_;
};

// A worker that owns an object on node `b`, lends it to `keeper`, and dies (SIGKILL) once the
// nodes' reports show it (so that "nothing left" afterwards is news, not an old report).
int OwnAndDie(std::string log, std::string b, std::string status_command,
              lumen::ActorHandle<Keeper> keeper) {
  auto held = lumen::Task(Make)
                  .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = b}})
                  .Remote(log, 31, int64_t{32} << 20);
  lumen::Wait(std::vector<lumen::ObjectRef<lumen::Buffer>>{held}, {.fetch_local = false});
  lumen::Get(keeper.Task(&Keeper::Keep).Remote(std::vector<lumen::ObjectRef<lumen::Buffer>>{held}));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (EmptyStores(status_command) == 3) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("never showed");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::raise(SIGKILL);
  return 0;
}

// Takes memory 64 MiB at a time (written, so really in use), up to 8 GiB, and keeps it until
// the node's memory monitor kills it — on its first run of `seed` only: a retry (the node has
// memory again) returns at once.
std::string Hog(std::string log, int seed) {
  const std::string marker = log + ".hog" + std::to_string(seed);
  const bool first = !Exists(marker);
  ::close(::open(marker.c_str(), O_CREAT | O_WRONLY, 0644));
  LogRun(log, "Hog", seed);
  if (!first) return "done";
  constexpr size_t kChunk = size_t{64} << 20;
  std::vector<std::unique_ptr<char[]>> held;
  for (int i = 0; i < 128; ++i) {
    held.push_back(std::make_unique<char[]>(kChunk));
    std::memset(held.back().get(), i + 1, kChunk);
  }
  std::this_thread::sleep_for(std::chrono::seconds(60));
  return "held 8 GiB for a minute without being killed";
}

// An actor that says where it lives and how many calls its instance has had.
class Where {
 public:
  static Where* Create() { return new Where(); }
  std::string Node() {
    ++calls_;
    return WhereAmI();
  }
  int Calls() { return ++calls_; }
  // Says it started (creates `started`), waits for `go`, then answers where it runs.
  std::string NodeOnceToldTo(std::string started, std::string go) {
    ::close(::open(started.c_str(), O_CREAT | O_WRONLY, 0644));
    AwaitFile(go);
    return Node();
  }

 private:
  int calls_ = 0;
};

class Maker {
 public:
  static Maker* Create() { return new Maker(); }
  lumen::Buffer Make(int64_t n) { return lumen::Buffer::FromVector(std::vector<uint8_t>(n, 5)); }
};

}  // namespace

LUMEN_REMOTE(WhereAmI, Make, Blocks, AddOne, ReadLater, OwnAndDie, Hog);
LUMEN_REMOTE(Maker::Create, &Maker::Make);
LUMEN_REMOTE(Keeper::Create, &Keeper::Keep, &Keeper::ReadKept);
LUMEN_REMOTE(Where::Create, &Where::Node, &Where::Calls, &Where::NodeOnceToldTo);

namespace {

// zone label -> node id.
std::map<std::string, std::string> NodesByZone() {
  std::map<std::string, std::string> out;
  for (const auto& n : lumen::Nodes()) {
    if (n.alive && n.labels.count("zone")) out[n.labels.at("zone")] = n.node_id;
  }
  Expect(out.size() == 3,
         "expected three alive nodes with zone labels, saw " + std::to_string(out.size()));
  return out;
}

std::string NewLog(const std::string& name) {
  const char* dir = std::getenv("RENDEZVOUS_DIR");
  std::string path =
      std::string(dir ? dir : "/tmp") + "/" + name + "-" + std::to_string(::getpid()) + ".log";
  ::unlink(path.c_str());
  return path;
}

struct Run {
  std::string name;
  int seed;
  std::string node;
};

std::vector<Run> ReadRuns(const std::string& log) {
  std::vector<Run> runs;
  std::ifstream in(log);
  Run r;
  while (in >> r.name >> r.seed >> r.node) runs.push_back(r);
  return runs;
}

// The runs of `name`/`seed`, oldest first.
std::vector<std::string> NodesThatRan(const std::vector<Run>& runs, const std::string& name,
                                      int seed) {
  std::vector<std::string> out;
  for (const auto& r : runs) {
    if (r.name == name && r.seed == seed) out.push_back(r.node);
  }
  return out;
}

void ExpectPattern(const lumen::Buffer& b, int seed, int added, size_t n, const std::string& what) {
  Expect(b.size() == n,
         what + ": " + std::to_string(b.size()) + " bytes, expected " + std::to_string(n));
  for (size_t i = 0; i < n; ++i) {
    if (b.data()[i] != static_cast<uint8_t>(PatternByte(seed, i) + added)) {
      throw Failure(what + ": byte " + std::to_string(i) + " differs");
    }
  }
}

void SignalVictim(int sig) {
  const char* pid = std::getenv("VICTIM_PID");
  Expect(pid && std::atoi(pid) > 0, "VICTIM_PID is not set");
  Expect(::kill(std::atoi(pid), sig) == 0,
         "cannot signal node b's daemon (pid " + std::string(pid) + ")");
}

void KillVictim() { SignalVictim(SIGKILL); }

// Whether every thread of node b's daemon has exited within `limit` (its process gone, or left
// a zombie). The main thread alone turning zombie is not enough: the others may still be
// exiting, and a worker's parent-death signal comes only when the thread that started it exits.
bool VictimExits(std::chrono::seconds limit) {
  const std::string task_dir = "/proc/" + std::string(std::getenv("VICTIM_PID")) + "/task";
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    bool running = false;
    std::error_code ec;
    for (const auto& t : std::filesystem::directory_iterator(task_dir, ec)) {
      std::ifstream stat(t.path() / "stat");
      std::string line;
      if (!std::getline(stat, line)) continue;  // exited meanwhile
      auto state = line.rfind(") ");
      running = running || state == std::string::npos || line[state + 2] != 'Z';
    }
    if (!running) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Objects whose only copies were on node b come back from lineage after b is killed: a chain
// of three tasks whose first two results were already dropped by the driver (re-created
// because the third needs them), a plain result, one a borrower on node c was told lives on b,
// and nothing else runs twice. Objects that cannot come back say why, with their types: a task
// with max_retries=0, an actor's result.
void CheckLineage() {
  auto zones = NodesByZone();
  const std::string b = zones["b"];
  const std::string log = NewLog("runs");
  const int64_t n = 2 << 20;
  lumen::TaskOptions on_b{.scheduling = lumen::NodeAffinityScheduling{.node_id = b, .soft = true}};
  lumen::TaskOptions on_b_no_retries{
      .max_retries = 0, .scheduling = lumen::NodeAffinityScheduling{.node_id = b, .soft = true}};
  const lumen::NodeAffinityScheduling on_c{.node_id = zones["c"]};

  lumen::ObjectRef<lumen::Buffer> chain;
  {
    auto first = lumen::Task(Make).Options(on_b).Remote(log, 7, n);
    auto second = lumen::Task(AddOne).Options(on_b).Remote(log, 7, first);
    chain = lumen::Task(AddOne).Options(on_b).Remote(log, 8, second);
  }  // the driver holds only the end of the chain
  auto held = lumen::Task(Make).Options(on_b).Remote(log, 9, n);
  auto no_retries = lumen::Task(Make).Options(on_b_no_retries).Remote(log, 11, n);
  auto maker = lumen::Actor(Maker::Create).Options({.resources = {{"side", 1}}}).Remote();
  auto from_actor = maker.Task(&Maker::Make).Remote(n);
  auto borrowed = lumen::Task(Make).Options(on_b).Remote(log, 13, n);
  // A result that cannot be re-run, read by a task on node c: c's copy is kept when b dies.
  auto copied = lumen::Task(Make).Options(on_b_no_retries).Remote(log, 15, n);
  ExpectPattern(
      lumen::Get(lumen::Task(AddOne).Options({.scheduling = on_c}).Remote(log, 15, copied)), 15, 1,
      n, "the copy read on node c");
  const std::string waited = log + ".waited", go = log + ".go";
  auto reader = lumen::Task(ReadLater)
                    .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["c"]}})
                    .Remote(waited, go, std::vector<lumen::ObjectRef<lumen::Buffer>>{borrowed});
  // A streaming task that ended (its values have lineage), and one still running when b dies
  // (its retry sends the lost values again).
  std::vector<lumen::ObjectRef<lumen::Buffer>> streamed, live_values;
  for (auto ref : lumen::Task(Blocks).Options(on_b).Remote(log, 21, 3, n, -1, std::string())) {
    streamed.push_back(ref);
  }
  const std::string go_stream = log + ".go-stream";
  auto live = lumen::Task(Blocks).Options(on_b).Remote(log, 31, 4, n, 2, go_stream);
  for (int k = 0; k < 2; ++k) live_values.push_back(*live.Next());
  std::vector<lumen::AnyRef> all{chain, held, no_retries, from_actor, borrowed};
  all.insert(all.end(), streamed.begin(), streamed.end());
  all.insert(all.end(), live_values.begin(), live_values.end());
  auto ready = lumen::Wait(all, {.num_returns = all.size(), .fetch_local = false});
  Expect(ready.ready.size() == all.size(), "the first runs did not finish");
  for (const auto& r : ReadRuns(log)) {
    if (r.name == "AddOne" && r.seed == 15) continue;  // the reader on node c
    Expect(r.node == b, r.name + " " + std::to_string(r.seed) + " first ran on node " +
                            Short(r.node) + ", not on node b");
  }

  AwaitFile(waited);  // the borrower knows the copy is on b

  auto killed = std::chrono::steady_clock::now();
  KillVictim();
  ::close(::open(go.c_str(), O_CREAT | O_WRONLY, 0644));
  ::close(::open(go_stream.c_str(), O_CREAT | O_WRONLY, 0644));

  ExpectPattern(lumen::Get(chain), 7, 2, n, "the end of the chain");
  ExpectPattern(lumen::Get(held), 9, 0, n, "the plain result");
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  killed)
                .count();
  std::printf("re-created the chain of three and the plain result %lld ms after the kill\n",
              static_cast<long long>(ms));
  try {
    lumen::Get(no_retries);
    throw Failure("a lost result of a task with max_retries=0 was read");
  } catch (const lumen::ObjectReconstructionFailedError& e) {
    Expect(std::string(e.what()).find("max_retries=0") != std::string::npos,
           std::string("the error does not name max_retries: ") + e.what());
    std::printf("max_retries=0: %s\n", e.what());
  }
  try {
    lumen::Get(from_actor);
    throw Failure("a lost actor result was read");
  } catch (const lumen::ObjectReconstructionFailedError& e) {
    throw Failure(std::string("an actor result is not re-created, it is lost: ") + e.what());
  } catch (const lumen::ObjectLostError& e) {
    Expect(std::string(e.what()).find("actor") != std::string::npos,
           std::string("the error does not say it was an actor's result: ") + e.what());
    std::printf("actor result: %s\n", e.what());
  }

  ExpectPattern(lumen::Get(copied), 15, 0, n, "the result with a copy on node c");
  Expect(NodesThatRan(ReadRuns(log), "Make", 15).size() == 1,
         "the result with a copy on node c was re-run instead of kept from the copy");
  std::printf("a result of a task with max_retries=0 read on node c was kept from c's copy\n");

  Expect(lumen::Get(reader) == Digest(lumen::Get(borrowed)),
         "the borrower on node c read other bytes than the owner");
  ExpectPattern(lumen::Get(borrowed), 13, 0, n, "the borrowed result");
  std::printf("the borrower on node c read the re-created copy\n");

  for (int k = 0; k < 3; ++k) {
    ExpectPattern(lumen::Get(streamed[k]), 21 + k, 0, n, "streamed value " + std::to_string(k));
  }
  while (auto ref = live.Next()) live_values.push_back(*ref);
  Expect(live_values.size() == 4,
         "the running stream gave " + std::to_string(live_values.size()) + " values, not 4");
  for (int k = 0; k < 4; ++k) {
    ExpectPattern(lumen::Get(live_values[k]), 31 + k, 0, n,
                  "value " + std::to_string(k) + " of the stream running when its node died");
  }
  std::printf(
      "the values of a finished stream came back from lineage, and those of a running "
      "one with its retry\n");

  auto runs = ReadRuns(log);
  for (auto [name, seed] : std::vector<std::pair<std::string, int>>{{"Make", 7},
                                                                    {"AddOne", 7},
                                                                    {"AddOne", 8},
                                                                    {"Make", 9},
                                                                    {"Make", 13},
                                                                    {"Blocks", 21},
                                                                    {"Blocks", 31}}) {
    auto nodes = NodesThatRan(runs, name, seed);
    Expect(nodes.size() == 2, name + " " + std::to_string(seed) + " ran " +
                                  std::to_string(nodes.size()) + " times, expected twice");
    Expect(nodes[1] != b, name + " " + std::to_string(seed) + " was re-run on the dead node");
  }
  Expect(NodesThatRan(runs, "Make", 11).size() == 1, "the max_retries=0 task ran again");
  std::string where = lumen::Get(lumen::Task(WhereAmI).Remote());
  Expect(where != b, "a new task ran on the dead node");
  std::printf(
      "every lost object came back from lineage or failed with its reason; the cluster "
      "runs new tasks on node %s\n",
      Short(where).c_str());
}

// A frozen node (SIGSTOP: its connections stay open, its heartbeats stop) is declared dead
// after LUMEN_NODE_DEATH_TIMEOUT_MS; a read of an object held there, stuck on the frozen
// node, gives up then and gets the copy re-created elsewhere.
void CheckFrozen() {
  auto zones = NodesByZone();
  const std::string b = zones["b"];
  const std::string log = NewLog("frozen");
  const int64_t n = 2 << 20;
  auto held =
      lumen::Task(Make)
          .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = b, .soft = true}})
          .Remote(log, 21, n);
  lumen::Wait(std::vector<lumen::ObjectRef<lumen::Buffer>>{held}, {.fetch_local = false});
  SignalVictim(SIGSTOP);
  ExpectPattern(lumen::Get(held), 21, 0, n, "the result held on the frozen node");
  auto nodes = NodesThatRan(ReadRuns(log), "Make", 21);
  // Resumed, the node learns that it was declared dead and stops by itself.
  SignalVictim(SIGCONT);
  const bool stopped = VictimExits(std::chrono::seconds(30));
  if (!stopped) SignalVictim(SIGKILL);
  Expect(stopped, "node b kept running after it was resumed, though it had been declared dead");
  Expect(nodes.size() == 2 && nodes[0] == b && nodes[1] != b,
         "Make 21 should have run on node b and then once elsewhere");
  bool dead = false;
  for (const auto& node : lumen::Nodes()) dead |= node.node_id == b && !node.alive;
  Expect(dead, "the frozen node is not reported dead");
  std::printf("the frozen node was declared dead and its result re-created elsewhere\n");
}

// A worker on node c that owns an object on node b is killed: node b frees the object (the
// worker's node tells the control service, which tells every node), while the job goes on.
void CheckOwnerDies() {
  auto zones = NodesByZone();
  const char* status = std::getenv("STATUS_COMMAND");
  Expect(status != nullptr, "STATUS_COMMAND is not set");
  auto keeper = lumen::Actor(Keeper::Create).Remote();
  auto died = lumen::Task(OwnAndDie)
                  .Options({.max_retries = 0,
                            .scheduling = lumen::NodeAffinityScheduling{.node_id = zones["c"]}})
                  .Remote(NewLog("owner"), zones["b"], std::string(status), keeper);
  try {
    lumen::Get(died);
    throw Failure("the owner that killed itself returned");
  } catch (const lumen::WorkerCrashedError&) {
  }
  // The store figures in `lumen status` come with the nodes' periodic reports.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (EmptyStores(status) != 3) {
    Expect(std::chrono::steady_clock::now() < deadline,
           "node b still holds the object of the dead owner");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("the dead owner's object was freed on node b\n");
  // A borrower that kept a ref learns that its owner died (not a hang, not a plain loss).
  const std::string read = lumen::Get(keeper.Task(&Keeper::ReadKept).Remote());
  Expect(read.rfind("OwnerDiedError: ", 0) == 0, "the borrower's Get gave: " + read);
  Expect(read.find("owner") != std::string::npos, "the error does not name the owner: " + read);
  std::printf("the borrower got %s\n", read.c_str());
}

// Actors on node b when it is killed: one with max_restarts moves to another node, and its call
// that was running there is re-sent to the new instance (max_task_retries); one without
// restarts fails its calls with ActorDiedError naming the node.
void CheckActorMoves() {
  auto zones = NodesByZone();
  const std::string b = zones["b"];
  const lumen::NodeAffinityScheduling on_b{.node_id = b, .soft = true};
  auto moving = lumen::Actor(Where::Create)
                    .Options({.max_restarts = 1, .max_task_retries = 1, .scheduling = on_b})
                    .Remote();
  auto staying = lumen::Actor(Where::Create).Options({.scheduling = on_b}).Remote();
  Expect(lumen::Get(moving.Task(&Where::Node).Remote()) == b, "the first actor is not on node b");
  Expect(lumen::Get(staying.Task(&Where::Node).Remote()) == b, "the second actor is not on b");

  const std::string started = NewLog("actor") + ".started", go = started + ".go";
  auto in_flight = moving.Task(&Where::NodeOnceToldTo).Remote(started, go);
  AwaitFile(started);  // running on node b
  KillVictim();
  // Node b's workers die with its daemon (their parent-death signal): only once the daemon has
  // exited is the call sure not to finish there, however soon the file appears.
  Expect(VictimExits(std::chrono::seconds(30)), "node b's daemon did not exit after SIGKILL");
  ::close(::open(go.c_str(), O_CREAT | O_WRONLY, 0644));

  const std::string now = lumen::Get(in_flight);
  Expect(now != b, "the call running when node b died was answered from node b");
  Expect(lumen::Get(moving.Task(&Where::Node).Remote()) == now, "the restarted actor moved again");
  // Its new instance has had the re-sent call and the one above: state starts afresh.
  Expect(lumen::Get(moving.Task(&Where::Calls).Remote()) == 3,
         "the restarted actor does not start from a new instance");
  std::printf("the actor with max_restarts=1 moved to node %s with its running call\n",
              Short(now).c_str());
  try {
    lumen::Get(staying.Task(&Where::Node).Remote());
    throw Failure("an actor without restarts answered after its node died");
  } catch (const lumen::ActorDiedError& e) {
    Expect(std::string(e.what()).find(Short(b)) != std::string::npos,
           std::string("the error does not name the dead node: ") + e.what());
    std::printf("the actor without restarts: %s\n", e.what());
  }
}

// The head (its control service and its node) is killed while this job runs on nodes b and c,
// and started again on the same Redis. This driver attaches to node b (its own node must
// outlive the head) and runs rounds of work — a task on c makes 1 MiB, a task on b adds one to
// it, an actor on c counts calls — before, during and after the head's absence; it creates an
// actor while the head is down (which waits until it is back) and looks it up by name after.
// Rendezvous files with the test: running (first rounds done) -> killed (by the test) ->
// down (rounds done while it was down) -> restarted (by the test, once the head is up).
void CheckHeadRestart() {
  if (std::getenv("LUMEN_NODE_ID") == nullptr) {  // attach to node b, then run
    const std::string b = NodesByZone()["b"];
    lumen::Shutdown();
    ::setenv("LUMEN_NODE_ID", b.c_str(), 1);
    lumen::Init();
  }
  auto zones = NodesByZone();
  Expect(WhereAmI() == zones["b"], "the driver is not on node b");
  const std::string dir = std::getenv("RENDEZVOUS_DIR");
  const std::string log = NewLog("head");
  const lumen::TaskOptions on_b{.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["b"]}};
  const lumen::TaskOptions on_c{.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["c"]}};
  // A placement group holding node b's custom resource: it survives the restart by name.
  auto group = lumen::CreatePlacementGroup({.bundles = {{{"side", 1}}}, .name = "kept"});
  Expect(group.Wait(std::chrono::seconds(60)), "the placement group was not placed");
  auto counter = lumen::Actor(Where::Create)
                     .Options({.scheduling = lumen::NodeAffinityScheduling{.node_id = zones["c"]}})
                     .Remote();
  constexpr int64_t n = int64_t{1} << 20;
  int calls = 0, round = 0;
  auto run_rounds = [&](int count) {
    for (int i = 0; i < count; ++i, ++round) {
      auto made = lumen::Task(Make).Options(on_c).Remote(log, round, n);
      auto added = lumen::Task(AddOne).Options(on_b).Remote(log, round, made);
      auto call = counter.Task(&Where::Calls).Remote();
      ExpectPattern(lumen::Get(added), round, 1, n, "round " + std::to_string(round));
      Expect(lumen::Get(call) == ++calls,
             "the actor on node c lost count in round " + std::to_string(round));
    }
  };
  auto touch = [&](const std::string& name) {
    ::close(::open((dir + "/" + name).c_str(), O_CREAT | O_WRONLY, 0644));
  };
  run_rounds(3);
  touch("running");
  AwaitFile(dir + "/killed");
  run_rounds(5);  // the control service is down: tasks, transfers and actor calls go on
  std::printf("5 rounds ran while the head was down\n");
  touch("down");
  // Creating a named actor needs the control service: this waits until it is back.
  auto late = lumen::Actor(Where::Create).Options({.name = "late"}).Remote();
  AwaitFile(dir + "/restarted");
  Expect(lumen::Get(late.Task(&Where::Calls).Remote()) == 1,
         "the actor created while the head was down");
  auto found = lumen::GetActor<Where>("late");  // a lookup by name, after the restart
  Expect(found.has_value(), "the named actor is not found after the restart");
  Expect(lumen::Get(found->Task(&Where::Calls).Remote()) == 2,
         "the named actor found after the restart is not the one created before");
  run_rounds(3);
  auto kept = lumen::GetPlacementGroup("kept");
  Expect(kept.id() == group.id() && kept.Wait(0), "the placement group did not survive");
  const std::string in_group =
      lumen::Get(lumen::Task(WhereAmI)
                     .Options({.num_cpus = 0, .resources = {{"side", 1}}, .placement_group = kept})
                     .Remote());
  Expect(in_group == zones["b"], "the task in the placement group ran off node b");
  std::printf("the job went on through the head's restart: %d rounds exact\n", round);
}

// A program started while the head is down: lumen::Init waits for the control service (up to
// LUMEN_GCS_RECONNECT_TIMEOUT_S), then the job runs.
void CheckNewJob() {
  const std::string where = lumen::Get(lumen::Task(WhereAmI).Remote());
  std::printf("a new job ran on node %s\n", Short(where).c_str());
}

// LUMEN_MEMORY_USAGE_THRESHOLD is set (by the test) a little above the machine's memory use:
// a task that takes more is killed by its node's memory monitor and retried after a back-off
// (and then succeeds); one with max_retries=0 fails with OutOfMemoryError saying how much
// memory the node used.
void CheckMemory() {
  auto zones = NodesByZone();
  const std::string log = NewLog("memory");
  lumen::TaskOptions on_a{.max_retries = 1,
                          .scheduling = lumen::NodeAffinityScheduling{.node_id = zones["a"]}};
  const std::string result = lumen::Get(lumen::Task(Hog).Options(on_a).Remote(log, 1));
  Expect(result == "done", "the retriable task's first run: " + result);
  Expect(NodesThatRan(ReadRuns(log), "Hog", 1).size() == 2,
         "the task killed for memory should have run twice");
  std::printf("a task killed for memory was retried and finished\n");

  on_a.max_retries = 0;
  try {
    const std::string r = lumen::Get(lumen::Task(Hog).Options(on_a).Remote(log, 2));
    throw Failure("a task with max_retries=0 was not killed for memory: " + r);
  } catch (const lumen::OutOfMemoryError& e) {
    const std::string what = e.what();
    Expect(what.find("memory monitor") != std::string::npos &&
               what.find("LUMEN_MEMORY_USAGE_THRESHOLD") != std::string::npos &&
               what.find("GiB of") != std::string::npos,
           "the error does not say the task was killed for memory and how much was used: " + what);
    std::printf("max_retries=0: %s\n", e.what());
  }
  Expect(NodesThatRan(ReadRuns(log), "Hog", 2).size() == 1, "the max_retries=0 task ran again");
  std::printf("the memory monitor killed the tasks that took too much memory\n");
}

// Rounds of the chaos workload (chaos_workload.h; CHAOS_ROUNDS of them) while the test kills and
// restarts nodes b and c: every round's results must be exact.
void CheckChaos() {
  const char* rounds_env = std::getenv("CHAOS_ROUNDS");
  const int rounds = rounds_env ? std::atoi(rounds_env) : 4;
  const int exact = chaos::RunRounds(rounds, NewLog("chaos") + ".d", chaos::Sizes{});
  Expect(exact == rounds, std::to_string(rounds - exact) + " chaos rounds were not exact");
}

}  // namespace

int main(int argc, char** argv) {
  lumen::Init(argc, argv);
  std::map<std::string, std::function<void()>> checks{
      {"lineage", CheckLineage},          {"frozen", CheckFrozen},
      {"owner_dies", CheckOwnerDies},     {"memory", CheckMemory},
      {"actor_moves", CheckActorMoves},   {"chaos", CheckChaos},
      {"head_restart", CheckHeadRestart}, {"new_job", CheckNewJob}};
  int code = 0;
  std::string which = argc > 1 ? argv[1] : "";
  auto it = checks.find(which);
  if (it == checks.end()) {
    std::fprintf(stderr, "recovery_driver: unknown check '%s'\n", which.c_str());
    code = 2;
  } else {
    try {
      it->second();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "recovery_driver %s: %s\n", which.c_str(), e.what());
      code = 1;
    }
  }
  lumen::Shutdown();
  return code;
}
