// lumen::Init / Shutdown and the entry points of lumen/internal/runtime.h, forwarding to this
// process's core worker.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "api/local_cluster.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/resources.h"
#include "common/rpc/connection.h"
#include "common/rpc/message_types.h"
#include "common/runtime_env.h"
#include "common/session.h"
#include "common/thread_annotations.h"
#include "core_worker/core_worker.h"
#include "core_worker/generator_streams.h"
#include "gcs.pb.h"
#include "lumen/lumen.h"
#include "node.pb.h"

namespace lumen {
namespace {

// Held by Init and Shutdown for their whole run.
Mutex g_mu;
std::unique_ptr<core::CoreWorker> g_worker LUMEN_GUARDED_BY(g_mu);
std::atomic<core::CoreWorker*> g_cw{nullptr};                    // fast path for the API
std::unique_ptr<LocalCluster> g_cluster LUMEN_GUARDED_BY(g_mu);  // embedded mode
std::string g_session_root LUMEN_GUARDED_BY(g_mu);
// Its own mutex, taken inside g_mu when Init sets it: SessionDir() may run on a thread that
// Shutdown (holding g_mu) waits for.
Mutex g_session_dir_mu;
std::string g_session_dir LUMEN_GUARDED_BY(g_session_dir_mu);

void SetSessionDir(std::string dir) LUMEN_EXCLUDES(g_session_dir_mu) {
  MutexLock lock(g_session_dir_mu);
  g_session_dir = std::move(dir);
}

std::string GetSessionDir() LUMEN_EXCLUDES(g_session_dir_mu) {
  MutexLock lock(g_session_dir_mu);
  return g_session_dir;
}

core::CoreWorker& CW() {
  core::CoreWorker* cw = g_cw.load(std::memory_order_acquire);
  if (!cw) throw Error("lumen: call lumen::Init() before using the API");
  return *cw;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string ArgValue(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc && argv; ++i) {
    std::string a = argv[i];
    if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
    if (a == flag && i + 1 < argc) return argv[i + 1];
  }
  return "";
}

// Workers' malloc is set by the node as it starts them (kWorkerMallocTunables in
// GLIBC_TUNABLES, common/process.h; glibc applied it as this process started). A worker
// removes Lumen's value so the programs its tasks run get glibc's defaults — first thing in
// the worker, before it starts any thread. A GLIBC_TUNABLES of the user's is left for its
// children.
void DropLumenMallocTunables() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strcmp(tunables, kWorkerMallocTunables) == 0) {
    ::unsetenv("GLIBC_TUNABLES");
  }
}

[[noreturn]] void RunWorker() {
  DropLumenMallocTunables();
  std::string parent = Env("LUMEN_PARENT_PID");
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (!parent.empty() && std::to_string(::getppid()) != parent) ::_exit(1);  // parent gone
  SetOomScoreAdj(1000).IgnoreError();  // the kernel's OOM killer takes workers, not daemons
  InitLogging("", ParseLogLevel(Env("LUMEN_LOG_LEVEL"), LogLevel::kWarning), LogLevel::kError);
  core::CoreWorkerOptions o;
  o.is_driver = false;
  o.node_address = Env("LUMEN_NODE_ADDRESS");
  o.gcs_address = Env("LUMEN_GCS_ADDRESS");
  o.token = Env("LUMEN_TOKEN");
  o.session_dir = Env("LUMEN_SESSION_DIR");
  if (!Env("LUMEN_NODE_IP").empty()) o.node_ip = Env("LUMEN_NODE_IP");
  o.min_port = std::atoi(Env("LUMEN_MIN_WORKER_PORT").c_str());
  o.max_port = std::atoi(Env("LUMEN_MAX_WORKER_PORT").c_str());
  o.worker_id = WorkerID::FromHex(Env("LUMEN_WORKER_ID"));
  o.job_id =
      JobID::FromInt(static_cast<uint32_t>(std::strtoul(Env("LUMEN_JOB_ID").c_str(), nullptr, 10)));
  o.runtime_env = DecodeRuntimeEnv(Env("LUMEN_RUNTIME_ENV"));
  // Programs this worker starts are not workers, and do not inherit the token.
  ::unsetenv("LUMEN_ROLE");
  ::unsetenv("LUMEN_TOKEN");
  auto cw = core::CoreWorker::Create(o);
  if (!cw.ok()) {
    LUMEN_LOG(ERROR) << "worker failed to start: " << cw.status();
    std::fflush(nullptr);
    ::_exit(1);
  }
  core::CoreWorker* worker;
  {
    MutexLock lock(g_mu);
    g_worker = std::move(*cw);
    worker = g_worker.get();
    g_cw = worker;
  }
  worker->RunTaskLoop();
  std::fflush(nullptr);
  ::_exit(0);
}

struct ClusterTarget {
  std::string gcs_address;
  std::string node_address;
  std::string session_dir;
  std::string node_ip;  // the node's advertised address: the driver listens there too
  int min_port = 0;
  int max_port = 0;
};

// Finds the node daemon on this machine of the cluster at `gcs_address`.
StatusOr<ClusterTarget> FindLocalNode(const std::string& gcs_address, const std::string& token) {
  rpc::EventLoop loop("init");
  loop.Start();
  rpc::Dispatcher none;
  // A control service that does not answer may be restarting (a head on Redis): a new job
  // waits for it, as nodes and drivers do, up to LUMEN_GCS_RECONNECT_TIMEOUT_S. A refused
  // token or a malformed address fails at once.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::seconds(Config::Get().gcs_reconnect_timeout_s());
  proto::NodeList nodes;
  for (bool told = false;; told = true) {
    Status st = Status::OK();
    auto conn = rpc::Connect(&loop, gcs_address, &none, token);
    if (conn.ok()) {
      st = (*conn)->CallSync(rpc::kGetAllNodes, proto::Empty(), &nodes,
                             Config::Get().rpc_timeout_ms());
      (*conn)->Close(Status::OK());
    } else {
      st = conn.status();
    }
    if (st.ok()) break;
    if (st.code() != StatusCode::kUnavailable || std::chrono::steady_clock::now() >= deadline) {
      return st.WithContext("asking the control service at " + gcs_address +
                            (told ? " (waited LUMEN_GCS_RECONNECT_TIMEOUT_S=" +
                                        std::to_string(Config::Get().gcs_reconnect_timeout_s()) +
                                        " s)"
                                  : ""));
    }
    if (!told) {
      std::fprintf(stderr,
                   "lumen::Init: the control service at %s does not answer (%s); waiting up to "
                   "%lld s for it (LUMEN_GCS_RECONNECT_TIMEOUT_S)\n",
                   gcs_address.c_str(), st.message().c_str(),
                   static_cast<long long>(Config::Get().gcs_reconnect_timeout_s()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ClusterTarget t;
  t.gcs_address = gcs_address;
  // LUMEN_NODE_ID (a node id, or a unique prefix of one, as `lumen status` shows them) picks
  // the node among several on this machine; otherwise the head's, else any.
  const std::string wanted = Env("LUMEN_NODE_ID");
  for (const auto& n : nodes.nodes()) {
    if (!n.alive()) continue;
    const std::string& path = n.address().unix_path();
    if (path.empty() || !PathExists(path)) continue;
    if (!wanted.empty() && NodeID::FromBinary(n.node_id()).Hex().rfind(wanted, 0) != 0) continue;
    if (t.node_address.empty() || (wanted.empty() && n.is_head())) {
      t.node_address = "unix:" + path;
      const std::string& tcp = n.address().tcp_address();
      t.node_ip = tcp.substr(0, tcp.rfind(':'));
      t.min_port = n.min_worker_port();
      t.max_port = n.max_worker_port();
      // <session>/sockets/node-x
      std::string sockets = path.substr(0, path.rfind('/'));
      t.session_dir = sockets.substr(0, sockets.rfind('/'));
    }
  }
  if (t.node_address.empty() && !wanted.empty()) {
    return NotFoundError("the cluster at " + gcs_address + " has no alive node " + wanted +
                         " (LUMEN_NODE_ID) on this machine");
  }
  if (t.node_address.empty()) {
    return UnavailableError("the cluster at " + gcs_address +
                            " has no node on this machine; start one with `lumen start "
                            "--address=" +
                            gcs_address + "`");
  }
  return t;
}

}  // namespace

void Init(const InitOptions& options) { Init(0, nullptr, options); }

void Init(int argc, char** argv, const InitOptions& options) {
  RaiseOpenFileLimit();  // inherited by the workers this process starts
  if (Env("LUMEN_ROLE") == "worker") RunWorker();
  // A submitted job's driver writes to a log file that `lumen job logs --follow` streams:
  // line by line, as on a terminal, rather than in 4 KiB blocks.
  if (!Env("LUMEN_SUBMISSION_ID").empty()) std::setvbuf(stdout, nullptr, _IOLBF, 0);
  MutexLock lock(g_mu);
  if (g_worker) throw Error("lumen::Init: already initialized (call lumen::Shutdown() first)");

  std::string address = options.address;
  if (address.empty()) address = ArgValue(argc, argv, "--lumen-address");
  if (address.empty()) address = Env("LUMEN_ADDRESS");
  std::string level_text = !options.log_level.empty() ? options.log_level : Env("LUMEN_LOG_LEVEL");
  LogLevel level = ParseLogLevel(level_text, LogLevel::kWarning);

  core::CoreWorkerOptions o;
  o.is_driver = true;
  o.log_to_driver = Env("LUMEN_LOG_TO_DRIVER") != "0";
  o.actor_namespace = !options.namespace_.empty() ? options.namespace_ : Env("LUMEN_NAMESPACE");
  o.binary = SelfExecutable();
  o.binary_hash = Env("LUMEN_JOB_BINARY_HASH");
  if (argv) {
    for (int i = 0; i < argc; ++i) o.argv.push_back(argv[i]);
  } else {
    o.argv.push_back(o.binary);
  }
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd))) o.cwd = cwd;
  g_session_root = options.session_root;
  if (!Env("LUMEN_SESSION_ROOT").empty() && options.session_root == InitOptions().session_root) {
    g_session_root = Env("LUMEN_SESSION_ROOT");
  }
  if (g_session_root.empty()) g_session_root = "/tmp/lumen";

  if (address.empty()) {
    auto session = CreateSession(g_session_root, /*make_latest=*/false);
    if (!session.ok()) throw Error("lumen::Init: " + session.status().ToString());
    SetSessionDir(session->dir);
    InitLogging(
        JoinPath(JoinPath(session->dir, "logs"), "driver-" + std::to_string(::getpid()) + ".log"),
        std::min(level, LogLevel::kInfo), level);
    double cpus = options.num_cpus;
    if (cpus < 0) cpus = std::max(1u, std::thread::hardware_concurrency());
    LocalClusterOptions co;
    co.session_dir = session->dir;
    co.token = session->token;
    co.resources = options.resources;
    co.resources["CPU"] = cpus;
    if (options.num_gpus > 0) co.resources["GPU"] = options.num_gpus;
    co.object_store_memory = options.object_store_memory;
    auto cluster = LocalCluster::Start(co);
    if (!cluster.ok()) {
      throw Error("lumen::Init: cannot start the embedded cluster: " + cluster.status().ToString());
    }
    g_cluster = std::move(*cluster);
    o.gcs_address = g_cluster->gcs_local_address();
    o.node_address = g_cluster->node_unix_address();
    o.token = session->token;
    o.session_dir = session->dir;
    o.prestart_workers = static_cast<int>(cpus);
  } else {
    std::string token = options.token;
    if (token.empty()) token = Env("LUMEN_TOKEN");
    if (token.empty()) {
      std::string latest = LatestSessionDir(g_session_root);
      auto t =
          latest.empty() ? StatusOr<std::string>(NotFoundError("no session")) : ReadToken(latest);
      if (!t.ok()) {
        throw Error(
            "lumen::Init: no cluster token: set LUMEN_TOKEN or InitOptions::token "
            "(the head node keeps it in " +
            g_session_root + "/session_latest/token)");
      }
      token = *t;
    }
    auto target = FindLocalNode(address, token);
    if (!target.ok()) throw Error("lumen::Init: " + target.status().ToString());
    SetSessionDir(target->session_dir);
    InitLogging(JoinPath(JoinPath(target->session_dir, "logs"),
                         "driver-" + std::to_string(::getpid()) + ".log"),
                std::min(level, LogLevel::kInfo), level);
    o.gcs_address = target->gcs_address;
    o.node_address = target->node_address;
    if (!target->node_ip.empty()) o.node_ip = target->node_ip;
    o.min_port = target->min_port;
    o.max_port = target->max_port;
    o.token = token;
    o.session_dir = target->session_dir;
    o.prestart_workers = 0;
  }
  auto cw = core::CoreWorker::Create(o);
  if (!cw.ok()) {
    if (g_cluster) {
      g_cluster->Stop();
      g_cluster.reset();
    }
    throw Error("lumen::Init: " + cw.status().ToString());
  }
  g_worker = std::move(*cw);
  g_cw.store(g_worker.get(), std::memory_order_release);
  // A driver that returns from main without lumen::Shutdown() shuts down in order (as Ray's
  // atexit hook does): otherwise the embedded cluster's static teardown could stop the control
  // service under a live driver, which would then wait for it to come back.
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit([] { Shutdown(); }); });
}

void Shutdown() {
  MutexLock lock(g_mu);
  if (!g_worker) return;
  g_cw.store(nullptr, std::memory_order_release);
  g_worker->Shutdown();
  g_worker.reset();
  if (g_cluster) {
    g_cluster->Stop();
    g_cluster.reset();
    CleanupSession(GetSessionDir(), g_session_root, /*keep=*/20);
  }
  ShutdownLogging();
}

bool IsInitialized() { return g_cw.load() != nullptr; }

TaskID CurrentTaskID() { return CW().CurrentContext().task_id; }

std::string SessionDir() {
  CW();  // throws when not initialized
  return GetSessionDir();
}

ObjectStoreStats GetObjectStoreStats() {
  proto::NodeStats s;
  Status st =
      CW().daemon()->CallSync(rpc::kNodeStats, proto::Empty(), &s, Config::Get().rpc_timeout_ms());
  if (!st.ok()) throw Error("lumen::GetObjectStoreStats: " + st.ToString());
  ObjectStoreStats out;
  out.capacity = s.store_capacity();
  out.used = s.store_used();
  out.peak_used = s.store_peak_used();
  out.resident = s.store_resident();
  out.released_bytes = s.store_released_bytes();
  out.pinned = s.store_pinned();
  out.num_objects = s.num_objects();
  out.spilled_bytes = s.spilled_bytes();
  out.num_spilled = s.num_spilled();
  out.restored_bytes = s.restored_bytes();
  return out;
}

namespace {

proto::ClusterStatus QueryClusterStatus(const char* what) {
  proto::ClusterStatus status;
  Status st = CW().gcs()->CallSync(rpc::kClusterStatus, proto::Empty(), &status,
                                   Config::Get().rpc_timeout_ms());
  if (!st.ok()) throw Error(std::string("lumen::") + what + ": " + st.ToString());
  return status;
}

std::map<std::string, double> ToDoubles(const google::protobuf::Map<std::string, int64_t>& m) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : m) out[k] = FromFixed(v);
  return out;
}

}  // namespace

std::vector<NodeInfo> Nodes() {
  std::vector<NodeInfo> out;
  const proto::ClusterStatus status = QueryClusterStatus("Nodes");
  for (const auto& n : status.nodes()) {
    NodeInfo info;
    info.node_id = NodeID::FromBinary(n.node_id()).Hex();
    info.address = n.address().tcp_address();
    info.alive = n.alive();
    info.is_head = n.is_head();
    info.labels.insert(n.labels().begin(), n.labels().end());
    // The latest report: it has the placement-group resources the node gained since it joined.
    info.resources_total =
        ToDoubles(n.has_stats() ? n.stats().total().amounts() : n.total().amounts());
    info.resources_available =
        n.alive() ? ToDoubles(n.has_stats() ? n.stats().available().amounts() : n.total().amounts())
                  : std::map<std::string, double>{};
    out.push_back(std::move(info));
  }
  return out;
}

ClusterResourceSummary GetClusterResources() {
  ClusterResourceSummary out;
  for (const auto& n : Nodes()) {
    if (!n.alive) continue;
    ++out.num_nodes;
    for (const auto& [k, v] : n.resources_total) out.total[k] += v;
    for (const auto& [k, v] : n.resources_available) out.available[k] += v;
  }
  return out;
}

std::map<std::string, double> ClusterResources() { return GetClusterResources().total; }

std::map<std::string, double> AvailableResources() { return GetClusterResources().available; }

// ---- placement groups ----------------------------------------------------------------------

namespace {

PlacementStrategy StrategyFromWire(int32_t s) {
  return static_cast<PlacementStrategy>(s);  // the same order as scheduling::BundleStrategy
}

// One WaitPlacementGroup round trip; the control service answers at once when timeout_ms is 0.
proto::WaitPlacementGroupReply AskGroup(const proto::WaitPlacementGroupRequest& req,
                                        const char* what) {
  proto::WaitPlacementGroupReply reply;
  Status st = CW().gcs()->CallSync(rpc::kWaitPlacementGroup, req, &reply,
                                   req.timeout_ms() + Config::Get().rpc_timeout_ms());
  if (!st.ok()) {
    throw Error(std::string(what) + ": cannot reach the control service: " + st.ToString());
  }
  return reply;
}

}  // namespace

PlacementGroup CreatePlacementGroup(const PlacementGroupOptions& options) {
  core::CoreWorker& cw = CW();
  if (options.bundles.empty()) {
    throw Error("lumen::CreatePlacementGroup: a placement group needs at least one bundle");
  }
  PlacementGroup pg;
  const PlacementGroupID id = PlacementGroupID::FromRandom();
  proto::CreatePlacementGroupRequest req;
  proto::PlacementGroupInfo* info = req.mutable_group();
  info->set_id(id.Binary());
  info->set_name(options.name);
  info->set_strategy(static_cast<int32_t>(options.strategy));
  info->set_job_id(cw.job_id().Binary());
  for (size_t i = 0; i < options.bundles.size(); ++i) {
    for (const auto& [name, amount] : options.bundles[i]) {
      if (!(amount >= 0) || name.empty()) {
        throw Error("lumen::CreatePlacementGroup: bundle " + std::to_string(i) +
                    " has a bad resource '" + name + "': " + std::to_string(amount));
      }
    }
    proto::Bundle* b = info->add_bundles();
    b->set_index(static_cast<int32_t>(i));
    ResourceSet::FromDoubles(options.bundles[i]).ToProto(b->mutable_resources()->mutable_amounts());
  }
  proto::CreatePlacementGroupReply reply;
  Status st =
      cw.gcs()->CallSync(rpc::kCreatePlacementGroup, req, &reply, Config::Get().rpc_timeout_ms());
  if (!st.ok()) {
    throw Error("lumen::CreatePlacementGroup: cannot reach the control service: " + st.ToString());
  }
  if (!reply.ok()) throw Error("lumen::CreatePlacementGroup: " + reply.error());
  pg.id_ = id.Hex();
  pg.name_ = options.name;
  pg.strategy_ = options.strategy;
  pg.bundles_ = options.bundles;
  return pg;
}

PlacementGroup GetPlacementGroup(const std::string& name) {
  proto::WaitPlacementGroupRequest req;
  req.set_name(name);
  proto::WaitPlacementGroupReply reply = AskGroup(req, "lumen::GetPlacementGroup");
  if (!reply.found() || name.empty()) {
    throw Error("lumen::GetPlacementGroup: no placement group named '" + name + "'");
  }
  PlacementGroup pg;
  pg.id_ = PlacementGroupID::FromBinary(reply.group().id()).Hex();
  pg.name_ = reply.group().name();
  pg.strategy_ = StrategyFromWire(reply.group().strategy());
  for (const auto& b : reply.group().bundles()) {
    pg.bundles_.push_back(ToDoubles(b.resources().amounts()));
  }
  return pg;
}

bool PlacementGroup::Wait(int64_t timeout_ms) const {
  const std::string what = "lumen::PlacementGroup::Wait";
  if (!valid()) throw Error(what + ": the handle names no placement group");
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms));
  proto::WaitPlacementGroupRequest req;
  req.set_id(PlacementGroupID::FromHex(id_).Binary());
  while (true) {
    const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())
                             .count();
    req.set_timeout_ms(std::clamp<int64_t>(left, 0, 60000));  // long waits in slices
    proto::WaitPlacementGroupReply reply = AskGroup(req, what.c_str());
    if (!reply.found()) {
      throw Error(what + ": placement group " + id_ + " was removed (or never existed)");
    }
    switch (reply.group().state()) {
      case proto::PG_CREATED:
        return true;
      case proto::PG_FAILED:
        throw Error(what + ": placement group " + id_ +
                    " cannot be placed: " + reply.group().error());
      case proto::PG_REMOVED:
        throw Error(what + ": placement group " + id_ + " was " + reply.group().error());
      default:
        break;
    }
    if (left <= 0) return false;
  }
}

void RemovePlacementGroup(const PlacementGroup& group) {
  if (!group.valid())
    throw Error("lumen::RemovePlacementGroup: the handle names no placement group");
  proto::RemovePlacementGroupRequest req;
  req.set_id(PlacementGroupID::FromHex(group.id()).Binary());
  proto::Empty reply;
  Status st =
      CW().gcs()->CallSync(rpc::kRemovePlacementGroup, req, &reply, Config::Get().rpc_timeout_ms());
  if (!st.ok()) {
    throw Error("lumen::RemovePlacementGroup: cannot reach the control service: " + st.ToString());
  }
}

RuntimeContext GetRuntimeContext() {
  core::CoreWorker& cw = CW();
  RuntimeContext ctx;
  ctx.node_id_ = cw.node_id().Hex();
  ctx.worker_id_ = cw.worker_id().Hex();
  ctx.job_id_ = cw.job_id().Hex();
  TaskID task = cw.CurrentContext().task_id;
  ctx.task_id_ = task.Hex();
  ActorID actor = task.Actor();
  if (!actor.IsNil() && actor != ActorID::NilFromJob(cw.job_id())) ctx.actor_id_ = actor.Hex();
  return ctx;
}

namespace internal {

bool IsInitialized() { return lumen::IsInitialized(); }

void AddLocalRef(const ObjectID& id) {
  if (auto* cw = g_cw.load(std::memory_order_acquire)) cw->references().AddLocalRef(id);
}

void RemoveLocalRef(const ObjectID& id) {
  if (auto* cw = g_cw.load(std::memory_order_acquire)) cw->references().RemoveLocalRef(id);
}

ObjectID PutValue(SerializedValue value) { return CW().Put(std::move(value)); }

std::vector<ValueView> GetValues(const std::vector<ObjectID>& ids, int64_t timeout_ms) {
  return CW().Get(ids, timeout_ms);
}

std::vector<bool> WaitObjects(const std::vector<ObjectID>& ids, size_t num_returns,
                              int64_t timeout_ms, bool fetch_local) {
  return CW().Wait(ids, num_returns, timeout_ms, fetch_local);
}

void OnObjectReady(const ObjectID& id, std::function<void()> callback) {
  CW().OnObjectReady(id, std::move(callback));
}

NodeID ObjectLocation(const ObjectID& id) {
  auto obj = CW().memory_store().Get(id);
  return obj && obj->in_plasma ? obj->node : NodeID::Nil();
}

NodeID ActorLocation(const ActorID& id) { return CW().ActorNode(id); }

std::string PackRef(const ObjectID& id) { return CW().PackRef(id); }
ObjectID UnpackRef(std::string_view packed) { return CW().UnpackRef(packed); }

std::vector<ObjectID> SubmitTask(const RemoteFunction& fn, std::vector<TaskArgument> args,
                                 const TaskOptions& options, int num_returns) {
  return CW().SubmitTask(fn.name, fn.signature_hash, std::move(args), options, num_returns);
}

std::vector<ObjectID> SubmitTaskByName(const std::string& name, std::vector<TaskArgument> args,
                                       const TaskOptions& options) {
  return CW().SubmitTask(name, 0, std::move(args), options);
}

ActorID CreateActor(const RemoteFunction& factory, std::vector<TaskArgument> args,
                    const ActorOptions& options) {
  return CW().CreateActor(factory, std::move(args), options);
}

std::vector<ObjectID> SubmitActorTask(const ActorID& actor, const RemoteFunction& method,
                                      std::vector<TaskArgument> args,
                                      const std::string& concurrency_group) {
  return CW().SubmitActorCall(actor, method.name, method.signature_hash, std::move(args),
                              concurrency_group);
}

TaskID SubmitStreamingTask(const RemoteFunction& fn, std::vector<TaskArgument> args,
                           const TaskOptions& options) {
  return CW().SubmitStreamingTask(fn, std::move(args), options);
}

TaskID SubmitActorStreamingTask(const ActorID& actor, const RemoteFunction& method,
                                std::vector<TaskArgument> args,
                                const std::string& concurrency_group, int64_t backpressure) {
  TaskID task;
  CW().SubmitActorCall(actor, method.name, method.signature_hash, std::move(args),
                       concurrency_group, /*streaming=*/true, backpressure, &task);
  return task;
}

ObjectID NextStreamItem(const TaskID& task, int64_t timeout_ms) {
  return CW().streams().Next(task, timeout_ms);
}

void ReleaseStream(const TaskID& task) {
  // After Shutdown there is nothing to release.
  if (auto* cw = g_cw.load(std::memory_order_acquire)) cw->streams().Release(task);
}

void CancelStream(const TaskID& task) { CW().CancelTaskById(task, /*force=*/false, true); }

bool StreamReady(const TaskID& task) { return CW().streams().Ready(task); }

void OnStreamReady(const TaskID& task, std::function<void()> callback) {
  CW().streams().OnReady(task, std::move(callback));
}

void YieldValue(SerializedValue value) { CW().YieldValue(std::move(value)); }

void CancelTask(const ObjectID& id, bool force, bool recursive) {
  CW().CancelTask(id, force, recursive);
}

bool CurrentTaskCancelled() {
  auto* cw = g_cw.load(std::memory_order_acquire);
  return cw && cw->CurrentContext().cancelled.load(std::memory_order_acquire);
}

bool InActor() { return CW().InActor(); }

bool ActorWasRestarted() { return CW().ActorWasRestarted(); }

void KillActor(const ActorID& actor, bool no_restart) { CW().KillActor(actor, no_restart); }

std::vector<ObjectID> SubmitActorTaskByName(const ActorID& actor, const std::string& method,
                                            std::vector<TaskArgument> args,
                                            const std::string& concurrency_group) {
  return CW().SubmitActorCall(actor, method, /*signature_hash=*/0, std::move(args),
                              concurrency_group);
}

ActorID GetNamedActor(const std::string& name, const std::string& actor_namespace,
                      const std::string& class_name) {
  return CW().GetNamedActor(name, actor_namespace, class_name);
}

void AddActorHandleRef(const ActorID& actor) {
  if (auto* cw = g_cw.load(std::memory_order_acquire)) cw->AddActorHandleRef(actor);
}

void RemoveActorHandleRef(const ActorID& actor) {
  if (auto* cw = g_cw.load(std::memory_order_acquire)) cw->RemoveActorHandleRef(actor);
}

std::string PackActorHandle(const ActorID& actor) { return CW().PackActorHandle(actor); }
ActorID UnpackActorHandle(std::string_view packed) { return CW().UnpackActorHandle(packed); }

}  // namespace internal
}  // namespace lumen
