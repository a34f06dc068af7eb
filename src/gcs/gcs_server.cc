#include "gcs/gcs_server.h"

#include <unistd.h>

#include <algorithm>
#include <future>

#include "common/config.h"
#include "common/logging.h"
#include "common/resources.h"
#include "common/rpc/message_types.h"
#include "core_worker.pb.h"
#include "node.pb.h"
#include "scheduling/wire.h"

namespace lumen::gcs {

namespace {
constexpr char kActorTable[] = "actors";
constexpr char kNodeTable[] = "nodes";
constexpr char kJobTable[] = "jobs";
constexpr char kPlacementGroupTable[] = "placement_groups";

std::string KvTable(const std::string& ns) { return "kv:" + ns; }

// Calls fn(id, key, message) for each well-formed entry of `table`; a malformed one is logged
// and skipped. Returns how many entries the table held.
template <class Id, class Msg, class Fn>
StatusOr<size_t> LoadTable(GcsStore& store, const std::string& table, Fn&& fn) {
  LUMEN_ASSIGN_OR_RETURN(auto entries, store.GetAll(table));
  for (const auto& [key, value] : entries) {
    Id id = Id::FromBinary(key);
    Msg msg;
    if (id.IsNil() || !msg.ParseFromString(value)) {
      LUMEN_LOG(WARNING) << "ignoring a malformed " << table
                         << " entry in the control service's store";
      continue;
    }
    fn(id, key, msg);
  }
  return entries.size();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

GcsServer::GcsServer(rpc::EventLoop* loop, GcsOptions options, std::unique_ptr<GcsStore> store)
    : loop_(loop),
      options_(std::move(options)),
      store_(std::move(store)),
      store_queue_(std::make_unique<StoreQueue>(store_.get())) {
  PlacementGroups::Hooks hooks;
  hooks.view = [this] { return scheduling::ViewFromProto(View()); };
  hooks.node = [this](const NodeID& id) { return NodeConnection(id); };
  hooks.on_node_stats = [this](const proto::NodeStats& stats) { UpdateNodeStats(stats); };
  hooks.on_change = [this] { OnPlacementGroupsChanged(); };
  hooks.on_removed = [this](const PlacementGroupID& id, const std::string& why) {
    OnPlacementGroupRemoved(id, why);
  };
  hooks.persist = [this](const proto::PlacementGroupInfo& info) {
    Persist(kPlacementGroupTable, info.id(), info.SerializeAsString());
  };
  hooks.erase = [this](const PlacementGroupID& id) {
    store_queue_->Run([key = id.Binary()](GcsStore& store) {
      Status st = store.Delete(kPlacementGroupTable, key);
      if (!st.ok()) LUMEN_LOG(WARNING) << "cannot erase a placement group entry: " << st;
    });
  };
  groups_ = std::make_unique<PlacementGroups>(loop_, std::move(hooks));
  JobSubmissions::Hooks job_hooks;
  job_hooks.head = [this] {
    for (const auto& [id, n] : nodes_) {
      if (n.info.alive() && n.info.is_head()) return id;
    }
    return NodeID::Nil();
  };
  job_hooks.node = [this](const NodeID& id) { return NodeConnection(id); };
  job_hooks.address = [this] { return tcp_address_; };
  submissions_ = std::make_unique<JobSubmissions>(std::move(job_hooks));
  RegisterHandlers();
}

GcsServer::~GcsServer() { Stop(); }

void GcsServer::RegisterHandlers() {
  auto bind = [this](uint16_t type, void (GcsServer::*fn)(const rpc::ConnectionPtr&, rpc::Frame&)) {
    dispatcher_.Register(
        type, [this, fn](const rpc::ConnectionPtr& c, rpc::Frame& f) { (this->*fn)(c, f); });
  };
  bind(rpc::kRegisterNode, &GcsServer::HandleRegisterNode);
  bind(rpc::kHeartbeat, &GcsServer::HandleHeartbeat);
  bind(rpc::kGetAllNodes, &GcsServer::HandleGetAllNodes);
  bind(rpc::kRegisterJob, &GcsServer::HandleRegisterJob);
  bind(rpc::kGcsJobFinished, &GcsServer::HandleJobFinished);
  bind(rpc::kCreateActor, &GcsServer::HandleCreateActor);
  bind(rpc::kGetActor, &GcsServer::HandleGetActor);
  bind(rpc::kSubscribeActor, &GcsServer::HandleSubscribeActor);
  bind(rpc::kSubscribeNodeDeaths, &GcsServer::HandleSubscribeNodeDeaths);
  bind(rpc::kKillActor, &GcsServer::HandleKillActor);
  bind(rpc::kWorkerDied, &GcsServer::HandleWorkerDied);
  bind(rpc::kKVPut, &GcsServer::HandleKV);
  bind(rpc::kKVGet, &GcsServer::HandleKV);
  bind(rpc::kKVDel, &GcsServer::HandleKV);
  bind(rpc::kKVKeys, &GcsServer::HandleKV);
  bind(rpc::kClusterStatus, &GcsServer::HandleClusterStatus);
  bind(rpc::kGetClusterView, &GcsServer::HandleGetClusterView);
  bind(rpc::kGetJob, &GcsServer::HandleGetJob);
  bind(rpc::kWorkerLogs, &GcsServer::HandleWorkerLogs);
  bind(rpc::kFlushWorkerLogs, &GcsServer::HandleFlushWorkerLogs);
  bind(rpc::kGcsShutdown, &GcsServer::HandleShutdown);
  auto bind_groups = [this](uint16_t type,
                            void (PlacementGroups::*fn)(const rpc::ConnectionPtr&, rpc::Frame&)) {
    dispatcher_.Register(type, [this, fn](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      (groups_.get()->*fn)(c, f);
    });
  };
  bind_groups(rpc::kCreatePlacementGroup, &PlacementGroups::HandleCreate);
  bind_groups(rpc::kWaitPlacementGroup, &PlacementGroups::HandleWait);
  bind_groups(rpc::kRemovePlacementGroup, &PlacementGroups::HandleRemove);
  auto bind_jobs = [this](uint16_t type,
                          void (JobSubmissions::*fn)(const rpc::ConnectionPtr&, rpc::Frame&)) {
    dispatcher_.Register(type, [this, fn](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      (submissions_.get()->*fn)(c, f);
    });
  };
  bind_jobs(rpc::kSubmitJob, &JobSubmissions::HandleSubmit);
  bind_jobs(rpc::kListSubmittedJobs, &JobSubmissions::HandleList);
  bind_jobs(rpc::kGetSubmittedJob, &JobSubmissions::HandleGet);
  bind_jobs(rpc::kJobLogs, &JobSubmissions::HandleLogs);
  bind_jobs(rpc::kStopSubmittedJob, &JobSubmissions::HandleStop);
  bind_jobs(rpc::kDriverExited, &JobSubmissions::HandleDriverExited);
  client_dispatcher_.Register(
      rpc::kTaskResults,
      [this](const rpc::ConnectionPtr& c, rpc::Frame& f) { HandleCreationResult(c, f); });
}

Status GcsServer::Start() {
  LUMEN_RETURN_IF_ERROR(Recover());
  server_ = std::make_unique<rpc::Server>(loop_, &dispatcher_, options_.token, "gcs");
  server_->set_on_close(
      [this](const rpc::ConnectionPtr& c, const Status&) { OnConnectionClosed(c); });
  LUMEN_ASSIGN_OR_RETURN(std::string bound, server_->ListenTcp(options_.bind_host, options_.port));
  std::string host = rpc::AdvertisableHost(
      !options_.advertise_host.empty() ? options_.advertise_host : options_.bind_host);
  tcp_address_ = host + bound.substr(bound.rfind(':'));
  if (!options_.unix_path.empty()) {
    LUMEN_ASSIGN_OR_RETURN(unix_address_, server_->ListenUnix(options_.unix_path));
  }
  loop_->Post([this] {
    if (stopping_) return;
    ScheduleHeartbeatCheck();
    ResumeAfterRecovery();
  });
  LUMEN_LOG(INFO) << "control service listening on " << tcp_address_;
  return Status::OK();
}

void GcsServer::Stop() {
  stopping_ = true;
  if (server_) {
    // Placement-group waiters get their answer, and the timers go (the loop may outlive this);
    // that runs on the loop, which owns them (or here when the loop has stopped: nothing else
    // runs then).
    auto on_loop = [this] {
      groups_->Stop();
      for (uint64_t* timer : {&heartbeat_timer_, &grace_timer_}) {
        if (*timer) loop_->CancelTimer(*timer);
        *timer = 0;
      }
    };
    if (loop_->InLoopThread()) {
      on_loop();
    } else {
      auto done = std::make_shared<std::promise<void>>();
      auto fut = done->get_future();
      if (loop_->Post([on_loop, done] {
            on_loop();
            done->set_value();
          })) {
        fut.wait();
      } else {
        on_loop();
      }
    }
    server_->Stop();
    server_.reset();
  }
}

// ---- recovery ----------------------------------------------------------------------------

// The tables may hold a previous incarnation's state (a persistent store and a restarted head).
// The cluster it ran goes on without it: nodes, drivers and workers reconnect and register
// again (rpc::ReconnectingClient), so what was alive is taken as alive — nodes until they miss
// the heartbeat timeout counted from now, jobs until their drivers have had as long to return,
// actors with their workers where they were. The previous head's node is dead (its daemon ran in
// the previous control service's process); an actor whose creation the restart cut off is
// created again. Job IDs continue after the highest one used and the KV store is untouched.
Status GcsServer::Recover() {
  const auto now = std::chrono::steady_clock::now();
  LUMEN_ASSIGN_OR_RETURN(auto jobs, store_->GetAll(kJobTable));
  size_t alive_jobs = 0;
  for (const auto& [key, value] : jobs) {
    JobID job = JobID::FromBinary(key);
    proto::JobTableEntry entry;
    if (job.IsNil() || !entry.ParseFromString(value)) {
      LUMEN_LOG(WARNING) << "ignoring a malformed job entry in the control service's store";
      continue;
    }
    JobState& j = jobs_[job];
    j = JobState{entry.job().driver(),
                 !entry.finished(),
                 entry.job().start(),
                 {},
                 entry.job().log_to_driver()};
    j.actor_namespace = entry.job().actor_namespace();
    j.awaiting_driver = j.alive;
    alive_jobs += j.alive;
    next_job_ = std::max(next_job_, job.ToInt() + 1);
  }
  auto load_node = [&](const NodeID& id, const std::string&, proto::NodeInfo& info) {
    NodeState& n = nodes_[id];
    n.info = std::move(info);
    n.last_heartbeat = now;
    n.awaiting_reconnect = n.info.alive();
    if (n.info.alive() && n.info.is_head()) previous_heads_.push_back(id);
  };
  auto load_actor = [&](const ActorID& id, const std::string&, proto::ActorTableEntry& entry) {
    ActorState& a = actors_[id];
    a.info = std::move(*entry.mutable_info());
    a.creation = std::move(*entry.mutable_creation());
    a.node = NodeID::FromBinary(entry.node_id());
    a.worker = WorkerID::FromBinary(entry.worker_id());
    if (a.info.state() == proto::DEAD) return;
    if (!a.info.name().empty()) names_[{a.info.actor_namespace(), a.info.name()}] = id;
    if (a.info.state() != proto::ALIVE) interrupted_creations_.push_back(id);
  };
  LUMEN_ASSIGN_OR_RETURN(size_t nodes,
                         (LoadTable<NodeID, proto::NodeInfo>(*store_, kNodeTable, load_node)));
  LUMEN_ASSIGN_OR_RETURN(size_t actors, (LoadTable<ActorID, proto::ActorTableEntry>(
                                            *store_, kActorTable, load_actor)));
  auto load_group = [&](const PlacementGroupID&, const std::string&,
                        proto::PlacementGroupInfo& info) { groups_->Restore(info); };
  LUMEN_ASSIGN_OR_RETURN(size_t groups, (LoadTable<PlacementGroupID, proto::PlacementGroupInfo>(
                                            *store_, kPlacementGroupTable, load_group)));
  if (!jobs.empty() || nodes > 0 || actors > 0 || groups > 0) {
    LUMEN_LOG(INFO) << "recovered " << jobs.size() << " jobs (" << alive_jobs << " running), "
                    << nodes << " nodes, " << actors << " actors and " << groups
                    << " placement groups from the store; waiting up to " << ReconnectGraceMs()
                    << " ms for nodes and drivers to register again; next job is " << next_job_;
  }
  return Status::OK();
}

void GcsServer::ResumeAfterRecovery() {
  for (const auto& id : previous_heads_) {
    MarkNodeDead(id,
                 "it was the head node of the control service's previous incarnation (its "
                 "daemon ran in that process)");
  }
  previous_heads_.clear();
  // Groups of jobs that ended before (or with) the previous incarnation go; the rest resume.
  for (const auto& [id, j] : jobs_) {
    if (!j.alive) groups_->OnJobFinished(id);
  }
  groups_->Resume();
  for (const auto& id : interrupted_creations_) {
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.info.state() == proto::DEAD) continue;
    // A worker leased before the restart may be running the constructor: it goes first.
    KillActorWorker(it->second, "its creation was cut off by a control-service restart");
    it->second.worker = WorkerID::Nil();
    ScheduleActor(id);
  }
  interrupted_creations_.clear();
  grace_timer_ = loop_->RunAfter(std::chrono::milliseconds(ReconnectGraceMs()), [this] {
    grace_timer_ = 0;
    std::vector<JobID> gone;
    for (const auto& [id, j] : jobs_) {
      if (j.alive && j.awaiting_driver) gone.push_back(id);
    }
    for (const auto& id : gone) {
      FinishJob(id, "its driver did not register again within " +
                        std::to_string(ReconnectGraceMs()) +
                        " ms of the control service's restart");
    }
  });
}

void GcsServer::PersistActor(const ActorState& a) {
  proto::ActorTableEntry entry;
  *entry.mutable_info() = a.info;
  *entry.mutable_creation() = a.creation;
  if (!a.node.IsNil()) entry.set_node_id(a.node.Binary());
  if (!a.worker.IsNil()) entry.set_worker_id(a.worker.Binary());
  Persist(kActorTable, a.info.actor_id(), entry.SerializeAsString());
}

void GcsServer::PersistJob(const JobID& job) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return;
  proto::JobTableEntry entry;
  proto::RegisterJobRequest* req = entry.mutable_job();
  *req->mutable_driver() = it->second.driver;
  *req->mutable_start() = it->second.start;
  req->set_log_to_driver(it->second.log_to_driver);
  req->set_actor_namespace(it->second.actor_namespace);
  entry.set_finished(!it->second.alive);
  Persist(kJobTable, job.Binary(), entry.SerializeAsString());
}

void GcsServer::Persist(const char* table, const std::string& key, const std::string& value) {
  store_queue_->Run([table, key, value](GcsStore& store) {
    Status st = store.Put(table, key, value);
    if (!st.ok()) {
      LUMEN_LOG(WARNING) << "cannot persist " << table << " entry: " << st
                         << " (a restart of the control service would lose it)";
    }
  });
}

// ---- nodes -------------------------------------------------------------------------------

void GcsServer::HandleRegisterNode(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::RegisterNodeRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed RegisterNode"));
    return;
  }
  NodeID id = NodeID::FromBinary(req.node().node_id());
  auto known = nodes_.find(id);
  if (known != nodes_.end() && !known->second.info.alive()) {
    // Declared dead while it was cut off (the cluster re-ran its work): it may not come back
    // under the same id. FailedPrecondition: its reconnecting client gives up, and it stops.
    c->ReplyError(f, FailedPreconditionError("node " + id.Hex() + " was declared dead (" +
                                             known->second.info.death_cause() +
                                             "); start it again to join as a new node"));
    return;
  }
  const bool again = known != nodes_.end();
  NodeState& n = nodes_[id];
  const int64_t started = n.info.start_time_ms();
  n.info = req.node();
  n.info.set_alive(true);
  n.info.set_start_time_ms(again && started > 0 ? started : NowMs());
  n.last_heartbeat = std::chrono::steady_clock::now();
  n.awaiting_reconnect = false;
  n.conn.reset();
  n.registration = c;
  auto role = std::make_shared<ConnRole>();
  role->is_node = true;
  role->node = id;
  c->set_context(role);
  Persist(kNodeTable, id.Binary(), n.info.SerializeAsString());
  LUMEN_LOG(INFO) << "node " << id.Hex() << (again ? " registered again at " : " registered at ")
                  << n.info.address().tcp_address() << " with "
                  << ResourceSet::FromProto(n.info.total().amounts()).ToString();
  proto::RegisterNodeReply reply;
  reply.set_heartbeat_period_ms(HeartbeatPeriodMs());
  c->Reply(f, reply);
  BroadcastView();  // membership: at once, so that the next request can use the new node
  groups_->OnResourcesChanged();
}

void GcsServer::HandleHeartbeat(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::HeartbeatRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  auto it = nodes_.find(NodeID::FromBinary(req.stats().node_id()));
  if (it == nodes_.end()) return;
  if (!it->second.info.alive()) {
    // A node declared dead that still beats (it was frozen or cut off, and the view sent when
    // it died was lost with its connection): the view tells it that it is dead, and it stops.
    c->Send(rpc::kClusterView, View());
    return;
  }
  it->second.last_heartbeat = std::chrono::steady_clock::now();
  UpdateNodeStats(req.stats());
}

void GcsServer::UpdateNodeStats(const proto::NodeStats& stats) {
  auto it = nodes_.find(NodeID::FromBinary(stats.node_id()));
  if (it == nodes_.end() || !it->second.info.alive()) return;
  const proto::NodeStats* old = it->second.info.has_stats() ? &it->second.info.stats() : nullptr;
  if (old && stats.report_seq() < old->report_seq()) return;  // overtaken by a newer report
  const bool changed = !old ||
                       !(ResourceSet::FromProto(old->available().amounts()) ==
                         ResourceSet::FromProto(stats.available().amounts())) ||
                       !(ResourceSet::FromProto(old->total().amounts()) ==
                         ResourceSet::FromProto(stats.total().amounts()));
  *it->second.info.mutable_stats() = stats;
  for (auto p = placing_.begin(); p != placing_.end();) {  // this report shows them
    p = p->second.granted && p->second.node == it->first ? placing_.erase(p) : std::next(p);
  }
  if (changed) {
    BroadcastViewSoon();
    groups_->OnResourcesChanged();
  }
}

proto::ClusterView GcsServer::View() const {
  proto::ClusterView view;
  for (const auto& [id, n] : nodes_) {
    proto::NodeResources* r = view.add_nodes();
    r->set_node_id(id.Binary());
    r->set_address(n.info.address().tcp_address());
    // Reports carry the placement-group resources a node gained after it registered.
    *r->mutable_total() = n.info.has_stats() ? n.info.stats().total() : n.info.total();
    *r->mutable_available() = n.info.has_stats() ? n.info.stats().available() : n.info.total();
    *r->mutable_labels() = n.info.labels();
    r->set_alive(n.info.alive());
  }
  groups_->AddTo(view.mutable_placement_groups());
  return view;
}

void GcsServer::BroadcastViewSoon() {
  if (view_broadcast_pending_ || stopping_) return;
  view_broadcast_pending_ = true;
  loop_->RunAfter(std::chrono::milliseconds(Config::Get().resource_report_period_ms()), [this] {
    view_broadcast_pending_ = false;
    BroadcastView();
  });
}

void GcsServer::BroadcastView() {
  if (stopping_) return;
  std::string payload = View().SerializeAsString();
  for (auto& [id, n] : nodes_) {
    if (!n.info.alive()) continue;
    if (auto c = n.registration.lock()) c->SendRaw(rpc::kClusterView, payload);
  }
}

void GcsServer::HandleGetClusterView(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  c->Reply(f, View());
}

void GcsServer::HandleGetJob(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::GetJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed GetJobRequest"));
    return;
  }
  proto::GetJobReply reply;
  auto it = jobs_.find(JobID::FromBinary(req.job_id()));
  if (it != jobs_.end()) {
    reply.set_found(true);
    // A finished job whose detached actors live on still starts workers for their restarts.
    reply.set_alive(it->second.alive || HasDetachedActors(it->first));
    *reply.mutable_start() = it->second.start;
  }
  c->Reply(f, reply);
}

void GcsServer::HandleGetAllNodes(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::NodeList list;
  for (const auto& [id, n] : nodes_) *list.add_nodes() = n.info;
  c->Reply(f, list);
}

void GcsServer::CheckHeartbeats() {
  heartbeat_timer_ = 0;
  if (stopping_) return;
  auto now = std::chrono::steady_clock::now();
  std::vector<NodeID> dead;
  for (const auto& [id, n] : nodes_) {
    // The head's node daemon runs in this process, on this loop: it lives as long as the
    // control service does, and its heartbeats are only late when this loop is (a busy
    // machine). Declaring it dead would cut the cluster off from the head's own node.
    if (n.info.address().pid() == ::getpid()) continue;
    if (n.info.alive() &&
        now - n.last_heartbeat > std::chrono::milliseconds(options_.node_death_timeout_ms)) {
      dead.push_back(id);
    }
  }
  for (const auto& id : dead) {
    MarkNodeDead(
        id, nodes_[id].awaiting_reconnect
                ? "it did not register again within " +
                      std::to_string(options_.node_death_timeout_ms) +
                      " ms of the control service's restart"
                : "no heartbeat for " + std::to_string(options_.node_death_timeout_ms) + " ms");
  }
  ScheduleHeartbeatCheck();
}

int64_t GcsServer::HeartbeatPeriodMs() const {
  // Four heartbeats per timeout: one late or lost heartbeat never kills a node.
  const int64_t configured = std::max<int64_t>(Config::Get().heartbeat_period_ms(), 10);
  return std::clamp<int64_t>(options_.node_death_timeout_ms / 4, 10, configured);
}

void GcsServer::ScheduleHeartbeatCheck() {
  // Checked often enough that a silent node is declared dead within an eighth of the timeout
  // past it.
  auto period = std::clamp<int64_t>(options_.node_death_timeout_ms / 8, 20, 1000);
  heartbeat_timer_ =
      loop_->RunAfter(std::chrono::milliseconds(period), [this] { CheckHeartbeats(); });
}

void GcsServer::HandleSubscribeNodeDeaths(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  // One entry per connection; closed ones are dropped whenever the list has doubled.
  bool already = false;
  for (auto& w : node_death_subscribers_) already |= w.lock() == c;
  if (!already) {
    node_death_subscribers_.push_back(c);
    if (node_death_subscribers_.size() >= 64 &&
        (node_death_subscribers_.size() & (node_death_subscribers_.size() - 1)) == 0) {
      std::erase_if(node_death_subscribers_, [](const std::weak_ptr<rpc::Connection>& w) {
        auto s = w.lock();
        return !s || s->closed();
      });
    }
  }
  proto::NodeList dead;
  for (const auto& [id, n] : nodes_) {
    if (!n.info.alive()) *dead.add_nodes() = n.info;
  }
  c->Reply(f, dead);
}

void GcsServer::EnsureJobOnNode(const JobID& job, const NodeID& node,
                                const rpc::ConnectionPtr& conn) {
  auto j = jobs_.find(job);
  auto n = nodes_.find(node);
  if (j == jobs_.end() || n == nodes_.end() || j->second.start.binary().empty()) return;
  if (NodeID::FromBinary(j->second.driver.node_id()) == node) return;
  if (!n->second.jobs_started.insert(job).second) return;
  // Sent on the connection the lease request follows: the node handles it first.
  conn->Call(rpc::kStartJob, j->second.start, [job, node](const Status& st, std::string_view) {
    if (!st.ok()) {
      LUMEN_LOG(WARNING) << "starting job " << job.ToInt() << " on node " << node.Hex() << ": "
                         << st;
    }
  });
}

void GcsServer::MarkNodeDead(const NodeID& id, const std::string& cause) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.info.alive()) return;
  LUMEN_LOG(WARNING) << "node " << id.Hex() << " is dead: " << cause;
  for (auto p = placing_.begin(); p != placing_.end();) {
    p = p->second.node == id ? placing_.erase(p) : std::next(p);
  }
  it->second.info.set_alive(false);
  it->second.info.set_death_cause(cause);
  if (it->second.conn) it->second.conn->Close(UnavailableError("node dead"));
  it->second.conn.reset();
  BroadcastView();
  // The node itself, if it is still there (frozen, or cut off and back): seeing itself dead in
  // the view, it stops, as the rest of the cluster already treats it as gone.
  if (auto c = it->second.registration.lock()) c->Send(rpc::kClusterView, View());
  std::vector<ActorID> lost;
  for (const auto& [aid, a] : actors_) {
    if (a.node == id && a.info.state() != proto::DEAD) lost.push_back(aid);
  }
  for (const auto& aid : lost) {
    OnActorWorkerDied(aid, "was lost with its node " + id.Hex().substr(0, 12) + " (" + cause + ")");
  }
  groups_->OnNodeDead(id);
  submissions_->OnNodeDead(id);
  auto dead = nodes_.find(id);  // the handlers above may have touched the table
  if (dead == nodes_.end()) return;
  std::erase_if(node_death_subscribers_, [&](const std::weak_ptr<rpc::Connection>& w) {
    auto s = w.lock();
    if (!s || s->closed()) return true;
    s->Send(rpc::kNodeDied, dead->second.info);
    return false;
  });
}

rpc::ConnectionPtr GcsServer::NodeConnection(const NodeID& id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.info.alive()) return nullptr;
  NodeState& n = it->second;
  if (n.conn && !n.conn->closed()) return n.conn;
  const proto::Address& a = n.info.address();
  std::string addr = !a.unix_path().empty() ? "unix:" + a.unix_path() : a.tcp_address();
  auto conn = rpc::ConnectInBackground(loop_, addr, &client_dispatcher_, options_.token);
  if (!conn.ok()) {
    // A unix path from another host does not exist here: fall back to TCP.
    conn = rpc::ConnectInBackground(loop_, a.tcp_address(), &client_dispatcher_, options_.token);
  }
  if (!conn.ok()) {
    LUMEN_LOG(WARNING) << "cannot reach node " << id.Hex() << ": " << conn.status();
    return nullptr;
  }
  n.conn = *conn;
  return n.conn;
}

void GcsServer::OnConnectionClosed(const rpc::ConnectionPtr& conn) {
  if (stopping_) return;
  auto role = conn->context<ConnRole>();
  if (!role) return;
  if (role->is_driver) {
    FinishJob(role->job, "its driver disconnected");
  }
  if (role->is_node) {
    MarkNodeDead(role->node, "its daemon disconnected");
  }
}

// ---- jobs --------------------------------------------------------------------------------

void GcsServer::HandleRegisterJob(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::RegisterJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed RegisterJob"));
    return;
  }
  JobID job;
  if (!req.job_id().empty()) {
    // A driver back after a restart of this service: its job goes on if it was still running.
    job = JobID::FromBinary(req.job_id());
    auto it = jobs_.find(job);
    if (it == jobs_.end() || !it->second.alive) {
      c->ReplyError(f, FailedPreconditionError(
                           "job " + std::to_string(job.ToInt()) +
                           (it == jobs_.end() ? " is unknown to the restarted control service "
                                                "(it keeps no state without --redis-address)"
                                              : " ended while the control service restarted")));
      return;
    }
    it->second.driver = req.driver();
    it->second.driver_conn = c;
    it->second.awaiting_driver = false;
    LUMEN_LOG(INFO) << "job " << job.ToInt() << ": its driver (pid " << req.driver().pid()
                    << ") registered again";
  } else {
    job = JobID::FromInt(next_job_++);
    JobState& j = jobs_[job];
    j = JobState{req.driver(), true, req.start(), c, req.log_to_driver()};
    j.start.set_job_id(job.Binary());
    j.start.set_prestart_workers(0);
    // Ray's anonymous namespace: one no other job names (a user's cannot start with '\0').
    j.actor_namespace = !req.actor_namespace().empty()
                            ? req.actor_namespace()
                            : std::string(1, '\0') + "job-" + std::to_string(job.ToInt());
    PersistJob(job);
    LUMEN_LOG(INFO) << "job " << job.ToInt() << " started (driver pid " << req.driver().pid()
                    << ")";
  }
  auto role = std::make_shared<ConnRole>();
  role->is_driver = true;
  role->job = job;
  c->set_context(role);
  proto::RegisterJobReply reply;
  reply.set_job_id(job.Binary());
  reply.set_actor_namespace(jobs_[job].actor_namespace);
  c->Reply(f, reply);
}

void GcsServer::HandleWorkerLogs(const rpc::ConnectionPtr&, rpc::Frame& f) {
  proto::WorkerLogs logs;
  if (!rpc::ParsePayload(f.payload, &logs) || logs.job_id().size() != JobID::kSize) return;
  auto it = jobs_.find(JobID::FromBinary(logs.job_id()));
  if (it == jobs_.end() || !it->second.alive || !it->second.log_to_driver) return;
  if (auto driver = it->second.driver_conn.lock()) driver->SendRaw(rpc::kWorkerLogs, f.payload);
}

void GcsServer::HandleFlushWorkerLogs(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::FlushWorkerLogsRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.job_id().size() != JobID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed FlushWorkerLogs"));
    return;
  }
  // Each node answers with what it read; that goes to the driver before the reply does.
  struct Flush {
    std::weak_ptr<rpc::Connection> driver;
    rpc::Frame handle;
    int waiting = 0;
  };
  auto flush = std::make_shared<Flush>();
  flush->driver = c;
  flush->handle = rpc::ReplyHandle(f);
  std::vector<rpc::ConnectionPtr> nodes;
  for (const auto& [id, n] : nodes_) {
    if (!n.info.alive()) continue;
    if (auto conn = NodeConnection(id)) nodes.push_back(conn);
  }
  flush->waiting = static_cast<int>(nodes.size());
  if (nodes.empty()) {
    c->Reply(f, proto::Empty());
    return;
  }
  for (const auto& conn : nodes) {
    conn->Call(
        rpc::kFlushWorkerLogs, req,
        [flush](const Status& st, std::string_view payload) {
          auto driver = flush->driver.lock();
          if (driver && st.ok() && !payload.empty()) driver->SendRaw(rpc::kWorkerLogs, payload);
          if (--flush->waiting == 0 && driver) driver->Reply(flush->handle, proto::Empty());
        },
        2000);
  }
}

void GcsServer::HandleJobFinished(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::JobFinishedRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed JobFinished"));
    return;
  }
  FinishJob(JobID::FromBinary(req.job_id()), "its driver shut down");
  c->Reply(f, proto::Empty());
}

void GcsServer::FinishJob(const JobID& job, const std::string& why) {
  auto it = jobs_.find(job);
  if (it == jobs_.end() || !it->second.alive) return;
  it->second.alive = false;
  it->second.awaiting_driver = false;
  PersistJob(job);
  LUMEN_LOG(INFO) << "job " << job.ToInt() << " finished: " << why;
  proto::JobFinishedRequest note;
  note.set_job_id(job.Binary());
  for (auto& [aid, a] : actors_) {
    if (JobID::FromBinary(a.info.job_id()) != job || a.info.state() == proto::DEAD) continue;
    if (a.info.detached()) continue;  // lives on: its node keeps its worker (LeaseRequest)
    SetActorDead(a, "the job that created it finished");
    KillActorWorker(a, "job finished");
  }
  groups_->OnJobFinished(job);
  for (auto& [nid, n] : nodes_) {
    if (!n.info.alive()) continue;
    if (auto conn = NodeConnection(nid)) conn->Send(rpc::kJobFinished, note);
  }
}

// ---- actors ------------------------------------------------------------------------------

bool GcsServer::HasDetachedActors(const JobID& job) const {
  for (const auto& [id, a] : actors_) {
    if (a.info.detached() && a.info.state() != proto::DEAD && id.Job() == job) return true;
  }
  return false;
}

std::string GcsServer::JobNamespace(const std::string& job_id) const {
  auto it = jobs_.find(JobID::FromBinary(job_id));
  return it == jobs_.end() ? std::string() : it->second.actor_namespace;
}

proto::ActorStateUpdate GcsServer::ToUpdate(const proto::ActorInfo& info) {
  proto::ActorStateUpdate u;
  u.set_actor_id(info.actor_id());
  u.set_state(info.state());
  *u.mutable_address() = info.address();
  u.set_incarnation(info.incarnation());
  u.set_death_cause(info.death_cause());
  if (info.has_creation_error()) *u.mutable_creation_error() = info.creation_error();
  return u;
}

void GcsServer::Publish(ActorState& a) {
  PersistActor(a);
  proto::ActorStateUpdate u = ToUpdate(a.info);
  std::vector<std::weak_ptr<rpc::Connection>> live;
  for (auto& w : a.subscribers) {
    if (auto c = w.lock()) {
      if (c->closed()) continue;
      c->Send(rpc::kActorUpdate, u);
      live.push_back(w);
    }
  }
  a.subscribers.swap(live);
}

void GcsServer::HandleCreateActor(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::CreateActorRequest req;
  proto::CreateActorReply reply;
  if (!rpc::ParsePayload(f.payload, &req) ||
      req.creation_task().type() != proto::ACTOR_CREATION_TASK) {
    c->ReplyError(f, InvalidArgumentError("malformed CreateActor"));
    return;
  }
  const auto& spec = req.creation_task();
  ActorID id = ActorID::FromBinary(spec.actor_creation().actor_id());
  if (actors_.count(id)) {
    reply.set_ok(true);  // a retried request
    c->Reply(f, reply);
    return;
  }
  const std::string& name = spec.actor_creation().name();
  const std::string ns = spec.actor_creation().actor_namespace().empty()
                             ? JobNamespace(spec.job_id())
                             : spec.actor_creation().actor_namespace();
  if (!name.empty()) {
    auto n = names_.find({ns, name});
    if (n != names_.end()) {
      reply.set_ok(false);
      reply.set_error("an actor named '" + name + "' already exists" +
                      (ns == JobNamespace(spec.job_id()) ? "" : " in namespace '" + ns + "'"));
      c->Reply(f, reply);
      return;
    }
    names_[{ns, name}] = id;
  }
  ActorState& a = actors_[id];
  a.creation = spec;
  a.creation.mutable_actor_creation()->set_actor_namespace(ns);
  a.info.set_actor_id(id.Binary());
  a.info.set_name(name);
  a.info.set_actor_namespace(ns);
  a.info.set_detached(spec.actor_creation().detached());
  a.info.set_class_name(spec.actor_creation().class_name());
  a.info.set_state(proto::PENDING_CREATION);
  a.info.set_max_restarts(spec.actor_creation().max_restarts());
  a.info.set_max_concurrency(spec.actor_creation().max_concurrency());
  a.info.set_max_task_retries(spec.actor_creation().max_task_retries());
  a.info.set_job_id(spec.job_id());
  // The creator is always subscribed.
  a.subscribers.push_back(c);
  reply.set_ok(true);
  c->Reply(f, reply);
  ScheduleActor(id);
}

void GcsServer::ScheduleActor(const ActorID& id) {
  auto it = actors_.find(id);
  if (it == actors_.end()) return;
  ActorState& a = it->second;
  uint64_t attempt = ++a.schedule_attempt;
  placing_.erase(id);  // an earlier attempt's
  waiting_for_group_.erase(id);
  if (const std::string& group = a.creation.strategy().placement_group_id(); !group.empty()) {
    const proto::PlacementGroupInfo* g = groups_->Find(PlacementGroupID::FromBinary(group));
    const std::string name = "placement group " + PlacementGroupID::FromBinary(group).Hex();
    if (!g) {
      SetActorDead(a, "its " + name + " was removed (or never existed)");
      return;
    }
    if (g->state() == proto::PG_FAILED) {
      SetActorDead(a, "its " + name + " cannot be placed: " + g->error());
      return;
    }
    if (g->state() == proto::PG_PENDING) {
      waiting_for_group_.insert(id);  // OnPlacementGroupsChanged tries again
      return;
    }
  }
  scheduling::Decision d = PlaceActor(a);
  if (d.kind == scheduling::Decision::kInfeasible) {
    SetActorDead(a, "cannot place the actor: " + d.error);
    return;
  }
  NodeID chosen = d.node;
  auto conn = NodeConnection(chosen);
  if (!conn) {
    loop_->RunAfter(std::chrono::milliseconds(Config::Get().actor_schedule_retry_ms()),
                    [this, id] { ScheduleActor(id); });
    return;
  }
  a.node = chosen;
  placing_[id] = {chosen, ResourceSet::FromProto(a.creation.resources()), false};
  EnsureJobOnNode(JobID::FromBinary(a.creation.job_id()), chosen, conn);
  proto::LeaseRequest lease;
  lease.set_job_id(a.creation.job_id());
  *lease.mutable_resources() = a.creation.resources();
  lease.set_for_actor(true);
  lease.set_actor_id(id.Binary());
  lease.set_max_concurrency(a.creation.actor_creation().max_concurrency());
  lease.set_detached(a.creation.actor_creation().detached());
  if (a.creation.has_runtime_env()) *lease.mutable_runtime_env() = a.creation.runtime_env();
  conn->Call(
      rpc::kRequestLease, lease, [this, id, attempt](const Status& st, std::string_view payload) {
        auto it = actors_.find(id);
        if (it == actors_.end() || it->second.schedule_attempt != attempt ||
            it->second.info.state() == proto::DEAD) {
          return;
        }
        ActorState& a = it->second;
        proto::LeaseReply reply;
        if (!st.ok() || !rpc::ParsePayload(payload, &reply) || !reply.granted()) {
          placing_.erase(id);
        } else if (auto p = placing_.find(id); p != placing_.end()) {
          p->second.granted = true;
        }
        if (!st.ok() || !rpc::ParsePayload(payload, &reply)) {
          LUMEN_LOG(WARNING) << "actor " << id.Hex() << " lease failed: " << st << "; retrying";
          loop_->RunAfter(std::chrono::milliseconds(Config::Get().actor_schedule_retry_ms()),
                          [this, id] { ScheduleActor(id); });
          return;
        }
        if (!reply.granted()) {
          SetActorDead(a, "cannot place the actor: " + reply.error());
          return;
        }
        a.worker = WorkerID::FromBinary(reply.worker().worker_id());
        const auto& w = reply.worker();
        std::string addr = !w.unix_path().empty() ? "unix:" + w.unix_path() : w.tcp_address();
        // The connect goes on in the background; a worker it cannot reach before the
        // constructor returns is killed, and its death report reschedules the actor.
        auto on_close = [this, id, worker = a.worker](const rpc::ConnectionPtr& c,
                                                      const Status& reason) {
          if (reason.ok() || stopping_) return;
          auto it = actors_.find(id);
          if (it == actors_.end()) return;
          ActorState& a = it->second;
          if (a.worker_conn != c || a.worker != worker || a.info.state() == proto::ALIVE ||
              a.info.state() == proto::DEAD) {
            return;
          }
          LUMEN_LOG(WARNING) << "cannot reach the worker of actor " << id.Hex() << ": " << reason;
          KillActorWorker(a, "unreachable: " + reason.message());
        };
        auto conn = rpc::ConnectInBackground(loop_, addr, &client_dispatcher_, options_.token,
                                             /*timeout_ms=*/-1, on_close);
        if (!conn.ok() && !w.tcp_address().empty()) {
          conn = rpc::ConnectInBackground(loop_, w.tcp_address(), &client_dispatcher_,
                                          options_.token, /*timeout_ms=*/-1, on_close);
        }
        if (!conn.ok()) {
          LUMEN_LOG(WARNING) << "cannot reach actor worker: " << conn.status();
          KillActorWorker(a, "unreachable");
          return;  // the worker's death report reschedules it
        }
        a.worker_conn = *conn;
        *a.info.mutable_address() = w;
        PersistActor(a);  // a restart meanwhile kills this worker before creating it again
        proto::PushTasksRequest push;
        proto::TaskSpec* spec = push.add_tasks();
        *spec = a.creation;
        spec->clear_gpu_ids();
        for (int g : reply.gpu_ids()) spec->add_gpu_ids(g);
        spec->set_attempt(static_cast<int32_t>(a.info.num_restarts()));
        creating_[TaskID::FromBinary(spec->task_id())] = id;
        a.worker_conn->Send(rpc::kPushTasks, push);
      });
}

scheduling::Decision GcsServer::PlaceActor(const ActorState& a) {
  // The owner's node first, as for its tasks.
  scheduling::Request req = scheduling::RequestFromProto(
      a.creation.strategy(), ResourceSet::FromProto(a.creation.resources()),
      NodeID::FromBinary(a.creation.caller().node_id()));
  scheduling::ClusterView view = scheduling::ViewFromProto(View());
  groups_->SubtractInFlight(&view);
  for (const auto& [actor, placing] : placing_) {
    for (auto& n : view) {
      if (n.id == placing.node) n.available.Subtract(placing.resources);
    }
  }
  return actor_policy_.Schedule(req, view);
}

void GcsServer::HandleCreationResult(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::TaskResults results;
  if (!rpc::ParsePayload(f.payload, &results)) return;
  for (const auto& r : results.results()) {
    auto cit = creating_.find(TaskID::FromBinary(r.task_id()));
    if (cit == creating_.end()) continue;
    ActorID id = cit->second;
    creating_.erase(cit);
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.info.state() == proto::DEAD) continue;
    ActorState& a = it->second;
    if (a.worker_conn.get() != c.get()) continue;  // a stale attempt
    a.worker_conn.reset();
    c->Close(Status::OK());
    if (r.returns_size() > 0 && r.returns(0).value().format() == proto::ERROR) {
      proto::ErrorInfo err;
      err.ParseFromString(r.returns(0).value().data());
      *a.info.mutable_creation_error() = err;
      SetActorDead(a, "its constructor failed: " + err.message());
      KillActorWorker(a, "constructor failed");
      continue;
    }
    a.info.set_state(proto::ALIVE);
    a.info.set_incarnation(a.info.incarnation() + 1);
    LUMEN_LOG(INFO) << "actor " << id.Hex() << " (" << a.info.class_name() << ") alive at pid "
                    << a.info.address().pid();
    Publish(a);
  }
}

void GcsServer::OnPlacementGroupRemoved(const PlacementGroupID& id, const std::string& why) {
  for (auto& [aid, a] : actors_) {
    if (a.info.state() == proto::DEAD ||
        a.creation.strategy().placement_group_id() != id.Binary()) {
      continue;
    }
    SetActorDead(a, "its placement group " + id.Hex() + " was " + why);
    // The node stops the workers of the group's bundles itself; an actor still being placed
    // may not have reached it yet.
    KillActorWorker(a, "its placement group was removed");
  }
}

void GcsServer::OnPlacementGroupsChanged() {
  BroadcastViewSoon();
  std::vector<ActorID> waiting(waiting_for_group_.begin(), waiting_for_group_.end());
  for (const auto& id : waiting) {
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.info.state() == proto::DEAD) {
      waiting_for_group_.erase(id);
      continue;
    }
    const auto* g = groups_->Find(
        PlacementGroupID::FromBinary(it->second.creation.strategy().placement_group_id()));
    if (!g || g->state() != proto::PG_PENDING) ScheduleActor(id);
  }
}

void GcsServer::SetActorDead(ActorState& a, const std::string& cause) {
  if (a.info.state() == proto::DEAD) return;
  placing_.erase(ActorID::FromBinary(a.info.actor_id()));
  a.info.set_state(proto::DEAD);
  a.info.set_death_cause(cause);
  if (!a.info.name().empty()) {
    auto n = names_.find({a.info.actor_namespace(), a.info.name()});
    if (n != names_.end() && n->second == ActorID::FromBinary(a.info.actor_id())) names_.erase(n);
  }
  LUMEN_LOG(INFO) << "actor " << ActorID::FromBinary(a.info.actor_id()).Hex() << " dead: " << cause;
  Publish(a);
}

void GcsServer::KillActorWorker(ActorState& a, const std::string& reason) {
  if (a.worker.IsNil()) return;
  if (auto conn = NodeConnection(a.node)) {
    proto::KillWorkerRequest req;
    req.set_worker_id(a.worker.Binary());
    req.set_reason(reason);
    conn->Call(rpc::kKillWorker, req, [](const Status&, std::string_view) {});
  }
}

void GcsServer::OnActorWorkerDied(const ActorID& id, const std::string& cause) {
  auto it = actors_.find(id);
  if (it == actors_.end()) return;
  ActorState& a = it->second;
  if (a.info.state() == proto::DEAD) return;
  a.worker = WorkerID::Nil();
  if (a.worker_conn) {
    a.worker_conn->Close(Status::OK());
    a.worker_conn.reset();
  }
  int32_t max = a.info.max_restarts();
  if (max < 0 || a.info.num_restarts() < max) {
    a.info.set_num_restarts(a.info.num_restarts() + 1);
    a.info.set_state(proto::RESTARTING);
    a.info.set_death_cause(cause);
    LUMEN_LOG(INFO) << "actor " << id.Hex() << " restarting (" << a.info.num_restarts() << "/"
                    << max << "): " << cause;
    Publish(a);
    ScheduleActor(id);
    return;
  }
  std::string why = "its worker process " + cause;
  if (max > 0)
    why += " after " + std::to_string(a.info.num_restarts()) +
           " restarts (max_restarts=" + std::to_string(max) + ")";
  SetActorDead(a, why);
}

void GcsServer::HandleWorkerDied(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::WorkerDiedRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  auto role = c->context<ConnRole>();
  if (!role || !role->is_node) return;  // only node daemons report their processes
  if (req.actor_id().empty()) {
    // A driver or worker exited: the other nodes free the objects it owned there.
    std::string payload = req.SerializeAsString();
    for (auto& [id, n] : nodes_) {
      if (!n.info.alive() || id.Binary() == req.node_id()) continue;
      if (auto conn = n.registration.lock()) conn->SendRaw(rpc::kOwnerGone, payload);
    }
    return;
  }
  ActorID id = ActorID::FromBinary(req.actor_id());
  auto it = actors_.find(id);
  if (it == actors_.end()) return;
  const WorkerID worker = WorkerID::FromBinary(req.worker_id());
  if (it->second.worker != worker && !it->second.worker.IsNil()) {
    return;  // an older incarnation
  }
  if (!worker.IsNil() && worker == it->second.killed_worker) return;  // restarted already
  OnActorWorkerDied(id, req.cause());
}

void GcsServer::HandleGetActor(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::GetActorRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed GetActor"));
    return;
  }
  proto::GetActorReply reply;
  ActorID id;
  if (!req.actor_id().empty()) {
    id = ActorID::FromBinary(req.actor_id());
  } else if (req.any_namespace()) {
    std::vector<std::string> namespaces;
    for (const auto& [key, actor] : names_) {
      if (key.second != req.name()) continue;
      id = actor;
      namespaces.push_back(key.first);
    }
    if (namespaces.size() > 1) {
      id = ActorID::Nil();
      for (auto& ns : namespaces) reply.add_ambiguous_namespaces(std::move(ns));
    }
  } else {
    const std::string ns =
        req.actor_namespace().empty() ? JobNamespace(req.job_id()) : req.actor_namespace();
    auto n = names_.find({ns, req.name()});
    if (n != names_.end()) id = n->second;
  }
  auto it = actors_.find(id);
  if (!id.IsNil() && it != actors_.end()) {
    reply.set_found(true);
    *reply.mutable_info() = it->second.info;
  }
  c->Reply(f, reply);
}

void GcsServer::HandleSubscribeActor(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::SubscribeActorRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed SubscribeActor"));
    return;
  }
  proto::GetActorReply reply;
  auto it = actors_.find(ActorID::FromBinary(req.actor_id()));
  if (it != actors_.end()) {
    bool already = false;
    for (auto& w : it->second.subscribers) already |= w.lock() == c;
    if (!already) it->second.subscribers.push_back(c);
    reply.set_found(true);
    *reply.mutable_info() = it->second.info;
  }
  c->Reply(f, reply);
}

void GcsServer::HandleKillActor(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::KillActorRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed KillActor"));
    return;
  }
  auto it = actors_.find(ActorID::FromBinary(req.actor_id()));
  if (it != actors_.end()) {
    ActorState& a = it->second;
    std::string reason = req.reason().empty() ? "killed by lumen::Kill" : req.reason();
    if (req.no_restart()) SetActorDead(a, reason);
    KillActorWorker(a, reason);
    if (!req.no_restart() && !a.worker.IsNil()) {
      // Restarting now, not when the node reports the death: the update reaches the caller
      // before this reply (one connection, in order), so calls it makes after lumen::Kill
      // returned wait for the new instance instead of reaching the one being killed.
      a.killed_worker = a.worker;
      OnActorWorkerDied(it->first, "its worker process was " + reason);
    }
  }
  c->Reply(f, proto::Empty());
}

// ---- KV and status -----------------------------------------------------------------------

void GcsServer::HandleKV(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::KVRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed KV request"));
    return;
  }
  // On the store's queue, in order with the writes the loop made before; answered from there.
  std::string table = KvTable(req.ns());
  store_queue_->Run([c, handle = rpc::ReplyHandle(f), type = f.type, req = std::move(req),
                     table = std::move(table)](GcsStore& store) {
    proto::KVReply reply;
    // A storage failure (Redis down) is an error for the caller, never "not found".
    auto lookup = [&](bool* found) -> StatusOr<std::string> {
      auto v = store.Get(table, req.key());
      *found = v.ok();
      if (!v.ok() && v.status().code() != StatusCode::kNotFound) return v.status();
      return v.ok() ? std::move(*v) : std::string();
    };
    Status st = Status::OK();
    bool found = false;
    switch (type) {
      case rpc::kKVPut: {
        auto existing = lookup(&found);
        st = existing.status();
        if (st.ok() && (!found || req.overwrite())) st = store.Put(table, req.key(), req.value());
        break;
      }
      case rpc::kKVGet: {
        auto v = lookup(&found);
        st = v.status();
        if (st.ok() && found) reply.set_value(std::move(*v));
        break;
      }
      case rpc::kKVDel: {
        auto v = lookup(&found);
        st = v.status();
        if (st.ok() && found) st = store.Delete(table, req.key());
        break;
      }
      case rpc::kKVKeys: {
        auto all = store.GetAll(table);
        st = all.status();
        if (all.ok()) {
          for (const auto& [k, v] : *all) {
            if (k.rfind(req.key(), 0) == 0) reply.add_keys(k);
          }
        }
        break;
      }
    }
    if (!st.ok()) {
      c->ReplyError(handle, st);
      return;
    }
    reply.set_found(found);
    c->Reply(handle, reply);
  });
}

void GcsServer::HandleClusterStatus(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ClusterStatus status;
  for (const auto& [id, n] : nodes_) *status.add_nodes() = n.info;
  for (const auto& [id, a] : actors_) {
    if (a.info.state() == proto::ALIVE) status.set_num_actors_alive(status.num_actors_alive() + 1);
  }
  for (const auto& [id, j] : jobs_) {
    if (j.alive) status.set_num_jobs_running(status.num_jobs_running() + 1);
  }
  groups_->AddTo(status.mutable_placement_groups());
  c->Reply(f, status);
}

void GcsServer::HandleShutdown(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  c->Reply(f, proto::Empty());
  LUMEN_LOG(INFO) << "shutdown requested by " << c->peer_name();
  // The joined nodes stop with the cluster (they would otherwise wait for this service to come
  // back), and the store says so: a head started again on it does not wait for them.
  auto waiting = std::make_shared<int>(1);
  auto done = [this, waiting] {
    if (--*waiting == 0) on_shutdown_.Run();
  };
  for (auto& [id, n] : nodes_) {
    if (!n.info.alive()) continue;
    // Not this process's own daemon, which stops with it.
    auto conn = n.info.address().pid() == ::getpid() ? nullptr : NodeConnection(id);
    n.info.set_alive(false);
    n.info.set_death_cause("the cluster was stopped");
    Persist(kNodeTable, id.Binary(), n.info.SerializeAsString());
    if (!conn) continue;
    ++*waiting;
    conn->Call(
        rpc::kNodeShutdown, proto::Empty(), [done](const Status&, std::string_view) { done(); },
        2000);
  }
  for (auto& [id, j] : jobs_) {
    if (!j.alive) continue;
    j.alive = false;
    PersistJob(id);
  }
  done();
}

}  // namespace lumen::gcs
