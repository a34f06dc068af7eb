#include "node/node_daemon.h"

#include <unistd.h>

#include <cmath>
#include <future>
#include <set>
#include <string>
#include <unordered_set>

#include "common/binary_store.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"
#include "common/runtime_env.h"
#include "gcs.pb.h"
#include "scheduling/bundles.h"
#include "scheduling/wire.h"

namespace lumen::node {

namespace {
int64_t PhysicalMemory() {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page = ::sysconf(_SC_PAGESIZE);
  return static_cast<int64_t>(pages) * page;
}
}  // namespace

NodeDaemon::NodeDaemon(rpc::EventLoop* loop, NodeOptions options)
    : loop_(loop),
      options_(std::move(options)),
      node_id_(NodeID::FromRandom()),
      next_lease_id_(NodeID::FromRandom().Hash() << 16 | 1),
      policy_(Config::Get().scheduler_spread_threshold()) {
  RegisterHandlers();
}

NodeDaemon::~NodeDaemon() { Stop(); }

void NodeDaemon::RegisterHandlers() {
  auto bind = [this](uint16_t type,
                     void (NodeDaemon::*fn)(const rpc::ConnectionPtr&, rpc::Frame&)) {
    dispatcher_.Register(type, [this, fn](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      if (stopped_) return;
      (this->*fn)(c, f);
    });
  };
  bind(rpc::kRegisterClient, &NodeDaemon::HandleRegisterClient);
  bind(rpc::kStartJob, &NodeDaemon::HandleStartJob);
  bind(rpc::kJobFinished, &NodeDaemon::HandleJobFinished);
  bind(rpc::kRequestLease, &NodeDaemon::HandleRequestLease);
  bind(rpc::kReturnLease, &NodeDaemon::HandleReturnLease);
  bind(rpc::kNotifyBlocked, &NodeDaemon::HandleNotifyBlocked);
  bind(rpc::kWorkerExitStatus, &NodeDaemon::HandleWorkerExitStatus);
  bind(rpc::kKillWorker, &NodeDaemon::HandleKillWorker);
  bind(rpc::kStoreCreate, &NodeDaemon::HandleStoreCreate);
  bind(rpc::kStoreSeal, &NodeDaemon::HandleStoreSeal);
  bind(rpc::kStoreAbort, &NodeDaemon::HandleStoreAbort);
  bind(rpc::kStoreGet, &NodeDaemon::HandleStoreGet);
  bind(rpc::kStoreRelease, &NodeDaemon::HandleStoreRelease);
  bind(rpc::kStoreFree, &NodeDaemon::HandleStoreFree);
  auto bind_objects = [this](uint16_t type,
                             void (ObjectManager::*fn)(const rpc::ConnectionPtr&, rpc::Frame&)) {
    dispatcher_.Register(type, [this, fn](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      if (stopped_ || !objects_) return;
      (objects_.get()->*fn)(c, f);
    });
  };
  auto bind_drivers = [this](uint16_t type,
                             void (DriverRunner::*fn)(const rpc::ConnectionPtr&, rpc::Frame&)) {
    dispatcher_.Register(type, [this, fn](const rpc::ConnectionPtr& c, rpc::Frame& f) {
      if (stopped_ || !drivers_) return;
      (drivers_.get()->*fn)(c, f);
    });
  };
  bind_drivers(rpc::kStartDriver, &DriverRunner::HandleStart);
  bind_drivers(rpc::kReadDriverLog, &DriverRunner::HandleReadLog);
  bind_drivers(rpc::kStopDriver, &DriverRunner::HandleStop);
  bind_objects(rpc::kPullObject, &ObjectManager::HandlePull);
  bind_objects(rpc::kReadObjectChunk, &ObjectManager::HandleReadChunk);
  bind_objects(rpc::kPromoteCopy, &ObjectManager::HandlePromoteCopy);
  bind_objects(rpc::kReadObjectDone, &ObjectManager::HandleReadDone);
  bind(rpc::kNodeStats, &NodeDaemon::HandleNodeStats);
  bind(rpc::kFlushWorkerLogs, &NodeDaemon::HandleFlushWorkerLogs);
  bind(rpc::kPrepareBundles, &NodeDaemon::HandlePrepareBundles);
  bind(rpc::kCommitBundles, &NodeDaemon::HandleCommitBundles);
  bind(rpc::kReturnBundles, &NodeDaemon::HandleReturnBundles);
  bind(rpc::kNodeShutdown, &NodeDaemon::HandleShutdown);
  gcs_dispatcher_.Register(rpc::kClusterView, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    if (!stopped_) OnClusterView(c, f);
  });
  // A driver or worker on another node exited: what it owned here is freed (and the copies
  // pulled from here).
  gcs_dispatcher_.Register(rpc::kOwnerGone, [this](const rpc::ConnectionPtr&, rpc::Frame& f) {
    proto::WorkerDiedRequest req;
    if (stopped_ || !rpc::ParsePayload(f.payload, &req) ||
        req.worker_id().size() != WorkerID::kSize) {
      return;
    }
    objects_->ForwardFree(store_->OwnerGone(WorkerID::FromBinary(req.worker_id())));
  });
}

Status NodeDaemon::Start() {
  total_ = ResourceSet::FromDoubles(options_.resources);
  if (total_.Get("CPU") <= 0 && !options_.resources.count("CPU")) {
    return InvalidArgumentError("a node needs a CPU count");
  }
  int64_t store_bytes = options_.object_store_memory;
  if (store_bytes <= 0) {
    store_bytes = static_cast<int64_t>(static_cast<double>(PhysicalMemory()) *
                                       Config::Get().object_store_memory_fraction());
  }
  if (!options_.resources.count("memory")) {
    total_.Set("memory",
               ToFixed(static_cast<double>(std::max<int64_t>(PhysicalMemory() - store_bytes, 0))));
  }
  total_.Set("object_store_memory", ToFixed(static_cast<double>(store_bytes)));
  available_ = total_;
  int64_t gpus = total_.Get("GPU");
  gpu_free_.assign(static_cast<size_t>((gpus + kResourceUnit - 1) / kResourceUnit), kResourceUnit);

  std::string short_id = node_id_.Hex().substr(0, 8);
  LUMEN_RETURN_IF_ERROR(MakeDirs(JoinPath(options_.session_dir, "sockets")));
  LUMEN_RETURN_IF_ERROR(MakeDirs(JoinPath(options_.session_dir, "logs")));
  object_store::StoreOptions so;
  so.capacity = store_bytes;
  so.spill_dir = JoinPath(JoinPath(options_.session_dir, "spill"), short_id);
  so.full_timeout_ms = Config::Get().object_store_full_timeout_ms();
  so.min_spill_bytes = Config::Get().min_spill_bytes();
  LUMEN_ASSIGN_OR_RETURN(store_, object_store::ObjectStore::Open(loop_, so));

  server_ = std::make_unique<rpc::Server>(loop_, &dispatcher_, options_.token, "node");
  server_->set_on_close([this](const rpc::ConnectionPtr& c, const Status&) { OnClientClosed(c); });
  LUMEN_ASSIGN_OR_RETURN(
      unix_address_,
      server_->ListenUnix(JoinPath(JoinPath(options_.session_dir, "sockets"), "node-" + short_id)));
  LUMEN_ASSIGN_OR_RETURN(std::string bound, server_->ListenTcp(options_.bind_host, options_.port));
  // Peers are told the node's address, never a wildcard such as 0.0.0.0.
  tcp_address_ = AdvertisedHost() + bound.substr(bound.rfind(':'));
  objects_ = std::make_unique<ObjectManager>(loop_, store_.get(), options_.token, tcp_address_);

  WorkerPool::Env env;
  env.node_address = unix_address_;
  env.gcs_address = options_.gcs_address;
  env.token = options_.token;
  env.session_dir = options_.session_dir;
  env.node_id = node_id_;
  env.node_ip = AdvertisedHost();
  env.min_worker_port = options_.min_worker_port;
  env.max_worker_port = options_.max_worker_port;
  env.has_gpus = !gpu_free_.empty();
  pool_ = std::make_unique<WorkerPool>(
      loop_, env, [this](const WorkerProc& w, const std::string& d) { OnWorkerDied(w, d); });

  logs_ = std::make_unique<LogMonitor>(short_id, [this](const JobID& job, proto::WorkerLogs l) {
    if (!gcs_ || gcs_->closed()) return;
    l.set_job_id(job.Binary());
    gcs_->Send(rpc::kWorkerLogs, l);
  });
  pool_->set_on_start(
      [this](const WorkerProc& w) { logs_->Add(w.id, w.job, w.pid, w.out_path, w.err_path); });
  drivers_ = std::make_unique<DriverRunner>(loop_, options_.session_dir, options_.token,
                                            [this] { return gcs_ ? gcs_->connection() : nullptr; });
  working_dirs_ = std::make_unique<WorkingDirs>(
      loop_, options_.session_dir, [this] { return gcs_ ? gcs_->connection() : nullptr; },
      [this] {
        if (!stopped_) ProcessLeaseQueue();
      });
  MemoryMonitor::Hooks memory_hooks;
  memory_hooks.read_usage = ReadMemoryUsage;
  memory_hooks.candidates = [this] { return MemoryKillCandidates(); };
  memory_hooks.kill = [this](const WorkerID& w, const std::string& why) { pool_->Kill(w, why); };
  memory_ = std::make_unique<MemoryMonitor>(
      loop_, short_id, Config::Get().memory_usage_threshold(),
      std::chrono::milliseconds(Config::Get().memory_monitor_refresh_ms()),
      std::move(memory_hooks));

  LUMEN_RETURN_IF_ERROR(ConnectGcs());
  loop_->Post([this] {
    log_timer_ = loop_->RunAfter(std::chrono::milliseconds(Config::Get().log_monitor_period_ms()),
                                 [this] { ForwardWorkerLogs(); });
    heartbeat_timer_ =
        loop_->RunAfter(std::chrono::milliseconds(heartbeat_period_ms_), [this] { Heartbeat(); });
    memory_->Start();
  });
  LUMEN_LOG(INFO) << "node " << node_id_.Hex() << " up: " << total_.ToString() << ", store "
                  << store_bytes << " bytes, listening on " << unix_address_ << " and "
                  << tcp_address_;
  return Status::OK();
}

void NodeDaemon::Stop() {
  auto cleanup = [this] {
    if (stopped_) return;
    stopped_ = true;
    if (pool_) pool_->KillAll();
    if (drivers_) drivers_->StopAll();
    if (server_) server_->Stop();
    if (objects_) objects_->Stop();
    if (gcs_) gcs_->Close(CancelledError("node stopping"));
    if (heartbeat_timer_) loop_->CancelTimer(heartbeat_timer_);
    if (log_timer_) loop_->CancelTimer(log_timer_);
    if (report_timer_) loop_->CancelTimer(report_timer_);
    if (memory_) memory_->Stop();
  };
  if (loop_->InLoopThread()) {
    cleanup();
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  if (loop_->Post([cleanup, done] {
        cleanup();
        done->set_value();
      })) {
    fut.wait();
  } else {
    cleanup();
  }
}

proto::RegisterNodeRequest NodeDaemon::Registration() const {
  proto::RegisterNodeRequest req;
  proto::NodeInfo* info = req.mutable_node();
  info->set_node_id(node_id_.Binary());
  info->mutable_address()->set_node_id(node_id_.Binary());
  info->mutable_address()->set_unix_path(unix_address_.substr(5));
  info->mutable_address()->set_tcp_address(tcp_address_);
  info->mutable_address()->set_pid(::getpid());
  total_.ToProto(info->mutable_total()->mutable_amounts());
  info->set_is_head(options_.is_head);
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  info->set_hostname(host);
  for (const auto& [k, v] : options_.labels) (*info->mutable_labels())[k] = v;
  info->set_min_worker_port(options_.min_worker_port);
  info->set_max_worker_port(options_.max_worker_port);
  return req;
}

Status NodeDaemon::ConnectGcs() {
  // A node that joined a cluster keeps working while its control service restarts (on Redis):
  // it reconnects for up to LUMEN_GCS_RECONNECT_TIMEOUT_S and registers again under its id.
  // Past that, or when the control service says it was declared dead meanwhile, it stops with
  // the reason rather than staying orphaned. The head's daemon shares its control service's
  // process: there is nothing to reconnect to. Hooks run on the loop thread; Stop() closes the
  // client with stopped_ already set.
  rpc::ReconnectingClient::Options o;
  o.address = options_.gcs_address;
  o.token = options_.token;
  o.dispatcher = &gcs_dispatcher_;
  o.reconnect_timeout_ms = options_.is_head ? 0 : Config::Get().gcs_reconnect_timeout_s() * 1000;
  o.on_connected = [this](const rpc::ConnectionPtr& c, std::function<void(const Status&)> done) {
    c->Call(
        rpc::kRegisterNode, Registration(),
        [this, c, done](const Status& st, std::string_view payload) {
          proto::RegisterNodeReply reply;
          if (!st.ok() || !rpc::ParsePayload(payload, &reply)) {
            done(st.ok() ? InternalError("malformed RegisterNode reply") : st);
            return;
          }
          if (reply.heartbeat_period_ms() > 0) heartbeat_period_ms_ = reply.heartbeat_period_ms();
          LUMEN_LOG(INFO) << "registered again with the restarted control service at "
                          << options_.gcs_address;
          done(Status::OK());
          c->Call(rpc::kGetClusterView, proto::Empty(),
                  [this](const Status& st, std::string_view payload) {
                    proto::ClusterView view;
                    if (st.ok() && !stopped_ && rpc::ParsePayload(payload, &view)) {
                      SetClusterView(view);
                    }
                  });
        },
        Config::Get().rpc_timeout_ms());
  };
  o.on_lost = [this](const Status& why) {
    if (options_.is_head || stopped_) return;
    LUMEN_LOG(ERROR) << "lost the control service at " << options_.gcs_address << " (" << why
                     << "); this node stops. Start it again with `lumen start --address "
                     << options_.gcs_address << "` once the head is back.";
    on_shutdown_.Run();
  };
  LUMEN_ASSIGN_OR_RETURN(gcs_, rpc::ReconnectingClient::Connect(loop_, std::move(o), 5000));
  proto::RegisterNodeReply reply;
  Status st =
      gcs_->CallSync(rpc::kRegisterNode, Registration(), &reply, Config::Get().rpc_timeout_ms());
  LUMEN_RETURN_IF_ERROR(
      st.WithContext("registering with the control service at " + options_.gcs_address));
  heartbeat_period_ms_ = reply.heartbeat_period_ms() > 0 ? reply.heartbeat_period_ms()
                                                         : Config::Get().heartbeat_period_ms();
  // The nodes that joined before this one: spillback works from the first request.
  proto::ClusterView view;
  if (gcs_->CallSync(rpc::kGetClusterView, proto::Empty(), &view, Config::Get().rpc_timeout_ms())
          .ok()) {
    loop_->Post([this, view = std::move(view)] { SetClusterView(view); });
  }
  return Status::OK();
}

std::string NodeDaemon::AdvertisedHost() const {
  return !options_.node_ip.empty() ? options_.node_ip : rpc::AdvertisableHost(options_.bind_host);
}

std::shared_ptr<NodeDaemon::Client> NodeDaemon::ClientOf(const rpc::ConnectionPtr& c) {
  auto ctx = c->context<Client>();
  if (!ctx) {
    ctx = std::make_shared<Client>();
    ctx->id = next_client_id_++;
    c->set_context(ctx);
  }
  return ctx;
}

// ---- clients and jobs ----------------------------------------------------------------------

void NodeDaemon::HandleRegisterClient(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::RegisterClientRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed RegisterClient"));
    return;
  }
  auto client = ClientOf(c);
  client->kind = req.kind();
  client->worker_id = WorkerID::FromBinary(req.worker_id());
  client->job = JobID::FromBinary(req.job_id());
  client->registered = true;
  if (req.kind() == proto::WORKER) {
    proto::Address address = req.address();
    address.set_node_id(node_id_.Binary());  // the worker learns it from the reply
    WorkerProc* w = pool_->Register(client->worker_id, c, address);
    if (!w) {
      c->ReplyError(f, FailedPreconditionError("unknown worker " + client->worker_id.Hex()));
      return;
    }
    LUMEN_LOG(INFO) << "worker " << client->worker_id.Hex() << " pid " << req.pid()
                    << " registered, listening on " << address.tcp_address();
  }
  proto::RegisterClientReply reply;
  reply.set_node_id(node_id_.Binary());
  reply.set_store_capacity(store_->capacity());
  reply.set_session_dir(options_.session_dir);
  reply.set_gcs_address(options_.gcs_address);
  total_.ToProto(reply.mutable_total_resources()->mutable_amounts());
  if (req.want_store() && c->is_unix()) {
    reply.set_store_fd_attached(true);
    c->SendWithFd(f.type, rpc::FrameKind::kResponse, f.request_id, reply, store_->fd());
  } else {
    c->Reply(f, reply);
  }
  if (req.kind() == proto::WORKER) ProcessLeaseQueue();
}

void NodeDaemon::HandleStartJob(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::StartJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.binary().empty()) {
    c->ReplyError(f, InvalidArgumentError("malformed StartJob"));
    return;
  }
  StartJobLocally(req);
  JobID job = JobID::FromBinary(req.job_id());
  int cpus = static_cast<int>(total_.Get("CPU") / kResourceUnit);
  // (A job whose program is still being fetched starts its workers when they are asked for.)
  int prestart = pool_->HasJob(job) ? std::min(req.prestart_workers(), cpus) : 0;
  for (int i = 0; i < prestart; ++i) {
    auto w = pool_->StartWorker(job);
    if (!w.ok()) {
      c->ReplyError(f, w.status());
      return;
    }
  }
  c->Reply(f, proto::Empty());
  ProcessLeaseQueue();
}

void NodeDaemon::StartJobLocally(const proto::StartJobRequest& req) {
  const JobID job = JobID::FromBinary(req.job_id());
  if (pool_->HasJob(job)) return;
  JobConfig cfg;
  cfg.job = job;
  cfg.binary = req.binary();
  cfg.argv.assign(req.argv().begin(), req.argv().end());
  cfg.cwd = req.cwd();
  cfg.env.assign(req.env().begin(), req.env().end());
  if (req.binary_hash().empty()) {
    pool_->AddJob(cfg);
    return;
  }
  // A submitted job: its workers run the program stored by content, which this node may
  // have to fetch first; its lease requests wait meanwhile.
  if (!job_fetches_.insert(job).second) return;
  binaries::Materialize(
      gcs_->connection(), req.binary_hash(), JoinPath(options_.session_dir, "binaries"),
      [this, cfg, job](StatusOr<std::string> binary) mutable {
        job_fetches_.erase(job);
        if (stopped_) return;
        if (!binary.ok()) {
          const std::string why = "job " + std::to_string(job.ToInt()) +
                                  ": cannot start its workers: " + binary.status().message();
          LUMEN_LOG(ERROR) << why;
          RefuseJobLeases(job, why);
          return;
        }
        cfg.binary = *binary;
        // The cwd of a driver on another machine may not exist here.
        if (!cfg.cwd.empty() && ::access(cfg.cwd.c_str(), X_OK) != 0) cfg.cwd.clear();
        if (!pool_->HasJob(job)) pool_->AddJob(cfg);
        ProcessLeaseQueue();
      });
}

void NodeDaemon::HandleJobFinished(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::JobFinishedRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  FinishJob(JobID::FromBinary(req.job_id()));
}

void NodeDaemon::FinishJob(const JobID& job) {
  // Detached actors outlive their job, with what they own.
  std::set<WorkerID> detached;
  if (pool_->HasJob(job)) {
    LUMEN_LOG(INFO) << "job " << job.ToInt() << " finished: stopping its workers";
    detached = pool_->RemoveJob(job);
  }
  // Objects live as long as their job: copies pulled by nodes that ran none of its workers too.
  // (Copies of a detached actor's objects elsewhere go too: a reader pulls them again.)
  objects_->ForwardFree(store_->JobGone(job, detached));
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (JobID::FromBinary(it->req.job_id()) == job && !it->req.detached()) {
      if (auto r = it->requester.lock()) {
        proto::LeaseReply reply;
        reply.set_error("job finished");
        r->Reply(it->reply_to, reply);
      }
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void NodeDaemon::OnClientClosed(const rpc::ConnectionPtr& c) {
  if (stopped_) return;
  if (objects_) objects_->PeerClosed(c);
  auto client = c->context<Client>();
  if (client) {
    store_->ClientGone(client->id);
    if (client->kind == proto::DRIVER || client->kind == proto::WORKER) {
      objects_->ForwardFree(store_->OwnerGone(client->worker_id));  // and the copies elsewhere
      if (gcs_ && !gcs_->closed()) {  // and what it owns on other nodes
        proto::WorkerDiedRequest req;
        req.set_node_id(node_id_.Binary());
        req.set_worker_id(client->worker_id.Binary());
        req.set_cause("its process exited");
        gcs_->Send(rpc::kWorkerDied, req);
      }
    }
    if (client->kind == proto::DRIVER) FinishJob(client->job);
  }
  std::vector<uint64_t> orphaned;
  for (const auto& [id, lease] : leases_) {
    if (lease.for_actor) continue;  // actors live until the GCS says otherwise
    auto holder = lease.holder.lock();
    if (!holder || holder == c) orphaned.push_back(id);
  }
  for (uint64_t id : orphaned) EndLease(id, /*kill_worker=*/false);
}

// ---- leases ------------------------------------------------------------------------------

void NodeDaemon::HandleRequestLease(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::LeaseRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed LeaseRequest"));
    return;
  }
  ResourceSet need = ResourceSet::FromProto(req.resources());
  proto::LeaseReply reply;
  for (const auto& [name, amount] : need.amounts()) {
    if (amount < 0) {
      reply.set_error("negative resource request " + need.ToString());
      c->Reply(f, reply);
      return;
    }
  }
  int64_t gpu = scheduling::GpusOf(need);
  if (gpu > kResourceUnit && gpu % kResourceUnit != 0) {
    reply.set_error("GPU requests above 1 must be whole numbers, got " + need.ToString());
    c->Reply(f, reply);
    return;
  }
  auto p = std::make_shared<PendingLease>();
  p->seq = next_pending_seq_++;
  p->req = std::move(req);
  p->need = std::move(need);
  p->requester = c;
  p->reply_to = rpc::ReplyHandle(f);
  ScheduleLease(std::move(p), /*view_is_fresh=*/false);
}

// ---- scheduling across nodes -------------------------------------------------------------

void NodeDaemon::OnClusterView(const rpc::ConnectionPtr&, rpc::Frame& f) {
  proto::ClusterView view;
  if (!rpc::ParsePayload(f.payload, &view)) return;
  SetClusterView(view);
}

void NodeDaemon::SetClusterView(const proto::ClusterView& view) {
  std::unordered_set<NodeID> was_alive;
  for (const auto& n : view_) {
    if (n.alive && n.id != node_id_) was_alive.insert(n.id);
  }
  view_ = scheduling::ViewFromProto(view);
  for (const auto& n : view_) {
    if (n.id != node_id_ || n.alive || options_.is_head || stopped_) continue;
    // Declared dead (frozen, or cut off from the head past the node death timeout): the
    // cluster has already re-run this node's tasks and given up its objects elsewhere.
    LUMEN_LOG(ERROR) << "the control service at " << options_.gcs_address
                     << " declared this node dead (no heartbeat within "
                        "LUMEN_NODE_DEATH_TIMEOUT_MS); it stops. Start it again to rejoin the "
                        "cluster as a new node.";
    on_shutdown_.Run();
    return;
  }
  // Transfers from a node declared dead fail now. Not when a node alive now has its address:
  // a node started again can take the port of one killed moments before whose death is only
  // now declared, and the connection to that address is the new node's (the old one's closed
  // when its process died).
  std::set<std::string> alive_addresses;
  for (const auto& n : view_) {
    if (n.alive) alive_addresses.insert(n.address);
  }
  for (const auto& n : view_) {
    if (!n.alive && was_alive.count(n.id) && !alive_addresses.count(n.address) && objects_) {
      objects_->NodeDied(n.address);
    }
  }
  groups_.clear();
  for (const auto& g : view.placement_groups()) {
    if (g.id().size() == PlacementGroupID::kSize) {
      groups_[PlacementGroupID::FromBinary(g.id())] = g;
    }
  }
  ProcessLeaseQueue();  // waiting requests may fit elsewhere now
}

const scheduling::ClusterView& NodeDaemon::View() {
  auto self = std::find_if(view_.begin(), view_.end(),
                           [&](const scheduling::NodeView& n) { return n.id == node_id_; });
  if (self == view_.end()) {
    view_.emplace_back();
    self = std::prev(view_.end());
    self->id = node_id_;
  }
  self->total = total_;
  self->available = available_;
  self->labels = options_.labels;
  self->address = tcp_address_;
  self->alive = true;
  return view_;
}

scheduling::Decision NodeDaemon::Decide(const PendingLease& p, bool stay_if_it_fits) {
  scheduling::Request r =
      scheduling::RequestFromProto(p.req.strategy(), p.need, /*local_node=*/node_id_);
  const bool fits_here = p.need.IsSubsetOf(total_) &&
                         scheduling::LabelsMatch(options_.labels, r.label_selector) &&
                         (r.strategy != scheduling::Strategy::kNodeAffinity ||
                          r.affinity_node == node_id_ || r.affinity_soft);
  // Sent here by another node (or placed here by the control service): stay when this node
  // can hold it, so that requests never bounce between nodes with stale views of each other.
  if (fits_here && stay_if_it_fits && (p.req.spillback_count() > 0 || p.req.for_actor())) {
    scheduling::Decision d;
    d.kind =
        p.need.IsSubsetOf(available_) ? scheduling::Decision::kRun : scheduling::Decision::kQueue;
    d.node = node_id_;
    return d;
  }
  return policy_.Schedule(r, View());
}

void NodeDaemon::ScheduleLease(std::shared_ptr<PendingLease> p, bool view_is_fresh) {
  auto requester = p->requester.lock();
  if (!requester || requester->closed() || stopped_) return;
  scheduling::Decision d = Decide(*p);
  if (d.kind == scheduling::Decision::kInfeasible) {
    if (!view_is_fresh && gcs_ && !gcs_->closed()) {
      // The broadcast view may not have the node that joined a moment ago: ask once more.
      gcs_->Call(rpc::kGetClusterView, proto::Empty(),
                 [this, p](const Status& st, std::string_view payload) {
                   proto::ClusterView view;
                   if (st.ok() && rpc::ParsePayload(payload, &view)) SetClusterView(view);
                   ScheduleLease(p, /*view_is_fresh=*/true);
                 });
      return;
    }
    if (!p->req.strategy().placement_group_id().empty()) {
      std::string why = GroupRefusal(*p, d.error);
      if (why.empty()) {
        p->infeasible = true;
        p->waiting_for_group = true;
        pending_.push_back(std::move(*p));
        ReportResourcesSoon();
      } else {
        RefuseLease(*p, why, /*infeasible=*/true);
      }
      return;
    }
    const int64_t wait_s = Config::Get().infeasible_wait_s();
    if (wait_s > 0 && !p->req.for_actor()) {
      p->infeasible = true;
      p->infeasible_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
      pending_.push_back(std::move(*p));
      ReportResourcesSoon();
      return;
    }
    RefuseLease(*p, d.error, /*infeasible=*/true);
    return;
  }
  if (d.node != node_id_ && p->req.spillback_count() < Config::Get().max_spillbacks() &&
      !p->req.for_actor()) {
    SpillBack(*p, d.node);
    return;
  }
  if (!p->need.IsSubsetOf(total_)) {
    RefuseLease(
        *p,
        "infeasible: requires " + p->need.ToString() + " but this node has " + total_.ToString(),
        /*infeasible=*/true);
    return;
  }
  pending_.push_back(std::move(*p));
  ProcessLeaseQueue();
}

void NodeDaemon::SpillBack(PendingLease& p, const NodeID& node) {
  auto requester = p.requester.lock();
  if (!requester) return;
  proto::LeaseReply reply;
  for (auto& n : view_) {
    if (n.id != node) continue;
    reply.mutable_spillback()->set_node_id(node.Binary());
    reply.mutable_spillback()->set_tcp_address(n.address);
    // Until the next view arrives, count the request as running there: the next requests
    // spread over the other nodes instead of all following this one.
    n.available.Subtract(p.need);
  }
  requester->Reply(p.reply_to, reply);
}

void NodeDaemon::RefuseLease(PendingLease& p, const std::string& error, bool infeasible) {
  auto requester = p.requester.lock();
  if (!requester) return;
  proto::LeaseReply reply;
  reply.set_error(error);
  reply.set_infeasible(infeasible);
  requester->Reply(p.reply_to, reply);
}

bool NodeDaemon::FitsNow(const PendingLease& p, ResourceSet* need) const {
  const auto& strategy = p.req.strategy();
  if (strategy.placement_group_id().size() != PlacementGroupID::kSize ||
      strategy.bundle_index() >= 0) {
    *need = p.need;
    return p.need.IsSubsetOf(available_);
  }
  const PlacementGroupID group = PlacementGroupID::FromBinary(strategy.placement_group_id());
  for (int index : bundles_.Committed(group)) {
    ResourceSet candidate = scheduling::ForBundle(p.need, group, index);
    if (candidate.IsSubsetOf(available_)) {
      *need = std::move(candidate);
      return true;
    }
  }
  return false;
}

std::string NodeDaemon::GroupRefusal(const PendingLease& p,
                                     const std::string& infeasible_error) const {
  const auto& strategy = p.req.strategy();
  const PlacementGroupID group = PlacementGroupID::FromBinary(strategy.placement_group_id());
  const std::string name = "placement group " + group.Hex();
  auto it = groups_.find(group);
  if (it == groups_.end() || it->second.state() == proto::PG_REMOVED) {
    return name + " was removed (or never existed)";
  }
  const proto::PlacementGroupInfo& g = it->second;
  switch (g.state()) {
    case proto::PG_PENDING:
      return "";
    case proto::PG_FAILED:
      return name + " cannot be placed: " + g.error();
    default:
      break;
  }
  std::string where = strategy.bundle_index() >= 0
                          ? "bundle " + std::to_string(strategy.bundle_index()) + " of " + name
                          : "no bundle of " + name;
  for (const auto& b : g.bundles()) {
    if (b.index() == strategy.bundle_index()) {
      where += " (" + ResourceSet::FromProto(b.resources().amounts()).ToString() + ")";
    }
  }
  return "infeasible: " + where + (strategy.bundle_index() >= 0 ? " cannot" : " can") +
         " hold the request (" + infeasible_error + ")";
}

void NodeDaemon::HandlePrepareBundles(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::PrepareBundlesRequest req;
  if (!rpc::ParsePayload(f.payload, &req) ||
      req.placement_group_id().size() != PlacementGroupID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed PrepareBundles"));
    return;
  }
  std::vector<std::pair<int, ResourceSet>> bundles;
  for (const auto& b : req.bundles()) {
    ResourceSet r = ResourceSet::FromProto(b.resources().amounts());
    for (const auto& [name, amount] : r.amounts()) {
      if (amount < 0 || !scheduling::GroupOfResource(name).IsNil()) {
        c->ReplyError(f, InvalidArgumentError("bad bundle resources " + r.ToString()));
        return;
      }
    }
    bundles.emplace_back(b.index(), std::move(r));
  }
  proto::PrepareBundlesReply reply;
  std::string error;
  const auto group = PlacementGroupID::FromBinary(req.placement_group_id());
  reply.set_ok(bundles_.Prepare(group, bundles, &available_, &error));
  reply.set_error(error);
  if (reply.ok()) ReportResourcesSoon();
  c->Reply(f, reply);
}

void NodeDaemon::HandleCommitBundles(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::PlacementGroupRequest req;
  if (!rpc::ParsePayload(f.payload, &req) ||
      req.placement_group_id().size() != PlacementGroupID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed CommitBundles"));
    return;
  }
  bundles_.Commit(PlacementGroupID::FromBinary(req.placement_group_id()), &total_, &available_);
  c->Reply(f, Stats());  // the control service's view has the bundles before anyone uses them
  ReportResourcesSoon();
  ProcessLeaseQueue();
}

void NodeDaemon::HandleReturnBundles(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::PlacementGroupRequest req;
  if (!rpc::ParsePayload(f.payload, &req) ||
      req.placement_group_id().size() != PlacementGroupID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed ReturnBundles"));
    return;
  }
  const auto group = PlacementGroupID::FromBinary(req.placement_group_id());
  std::vector<uint64_t> inside;
  for (const auto& [id, lease] : leases_) {
    if (lease.group == group) inside.push_back(id);
  }
  for (uint64_t id : inside) {
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;
    WorkerID worker = it->second.worker;
    ReleaseLeaseResources(it->second);
    leases_.erase(it);
    if (pool_->Find(worker)) {
      pool_->Kill(worker, "its placement group " + group.Hex() + " was removed");
    }
  }
  bundles_.Return(group, &total_, &available_);
  // Requests queued for the group's bundles here are decided again (the group may be
  // retried elsewhere, or be gone).
  std::vector<std::shared_ptr<PendingLease>> again;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->req.strategy().placement_group_id() == req.placement_group_id() &&
        !it->waiting_for_group) {
      again.push_back(std::make_shared<PendingLease>(std::move(*it)));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  c->Reply(f, Stats());
  ReportResourcesSoon();
  for (auto& p : again) ScheduleLease(std::move(p), /*view_is_fresh=*/false);
  ProcessLeaseQueue();
}

void NodeDaemon::RefuseJobLeases(const JobID& job, const std::string& why) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (JobID::FromBinary(it->req.job_id()) != job) {
      ++it;
      continue;
    }
    RefuseLease(*it, why, /*infeasible=*/false);
    it = pending_.erase(it);
  }
}

void NodeDaemon::FetchJob(const JobID& job) {
  if (!gcs_ || gcs_->closed() || !job_fetches_.insert(job).second) return;
  proto::GetJobRequest req;
  req.set_job_id(job.Binary());
  gcs_->Call(rpc::kGetJob, req, [this, job](const Status& st, std::string_view payload) {
    job_fetches_.erase(job);
    if (stopped_) return;
    proto::GetJobReply reply;
    std::string why;
    if (!st.ok() || !rpc::ParsePayload(payload, &reply)) {
      why = "cannot learn how job " + std::to_string(job.ToInt()) +
            " starts from the control service: " + st.ToString();
    } else if (!reply.found() || !reply.alive() || reply.start().binary().empty()) {
      why = "job " + std::to_string(job.ToInt()) + " is not running in this cluster";
    }
    if (why.empty()) {
      if (!pool_->HasJob(job)) StartJobLocally(reply.start());
    } else {
      RefuseJobLeases(job, why);
    }
    ProcessLeaseQueue();
  });
}

void NodeDaemon::ReportResourcesSoon() {
  if (report_timer_ || stopped_) return;
  report_timer_ =
      loop_->RunAfter(std::chrono::milliseconds(Config::Get().resource_report_period_ms()), [this] {
        report_timer_ = 0;
        if (stopped_ || !gcs_) return;
        proto::HeartbeatRequest req;
        *req.mutable_stats() = Stats();
        gcs_->SendIfConnected(rpc::kHeartbeat, req);
      });
}

bool NodeDaemon::AcquireGpus(int64_t amount, std::vector<int>* out) {
  out->clear();
  if (amount <= 0) return true;
  if (amount < kResourceUnit) {
    for (size_t i = 0; i < gpu_free_.size(); ++i) {
      if (gpu_free_[i] >= amount) {
        gpu_free_[i] -= amount;
        out->push_back(static_cast<int>(i));
        return true;
      }
    }
    return false;
  }
  int64_t whole = amount / kResourceUnit;
  std::vector<int> ids;
  for (size_t i = 0; i < gpu_free_.size() && static_cast<int64_t>(ids.size()) < whole; ++i) {
    if (gpu_free_[i] == kResourceUnit) ids.push_back(static_cast<int>(i));
  }
  if (static_cast<int64_t>(ids.size()) < whole) return false;
  for (int i : ids) gpu_free_[static_cast<size_t>(i)] = 0;
  *out = ids;
  return true;
}

void NodeDaemon::ReleaseGpus(const std::vector<int>& gpus, int64_t amount) {
  if (gpus.empty()) return;
  if (amount < kResourceUnit) {
    gpu_free_[static_cast<size_t>(gpus[0])] += amount;
    return;
  }
  for (int i : gpus) gpu_free_[static_cast<size_t>(i)] = kResourceUnit;
}

void NodeDaemon::ProcessLeaseQueue() {
  if (stopped_) return;
  bool short_of_resources = false;
  // By job, devices and runtime environment.
  std::map<std::pair<JobID, std::string>, int> workers_wanted;
  const int64_t cpus = std::max<int64_t>(1, total_.Get("CPU") / kResourceUnit);
  const int64_t max_workers = Config::Get().max_workers_per_cpu() * cpus;
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<PendingLease>> reschedule;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto requester = it->requester.lock();
    if (!requester || requester->closed()) {
      it = pending_.erase(it);
      continue;
    }
    if (it->infeasible) {
      scheduling::Decision d = Decide(*it);
      if (d.kind != scheduling::Decision::kInfeasible ||
          (it->waiting_for_group && !GroupRefusal(*it, d.error).empty())) {
        // A node that can hold it joined: schedule it like a new request.
        auto p = std::make_shared<PendingLease>(std::move(*it));
        p->infeasible = false;
        p->waiting_for_group = false;
        it = pending_.erase(it);
        reschedule.push_back(std::move(p));
        continue;
      }
      if (!it->waiting_for_group && now >= it->infeasible_deadline) {
        RefuseLease(*it,
                    d.error + " (waited " + std::to_string(Config::Get().infeasible_wait_s()) +
                        " s, LUMEN_INFEASIBLE_WAIT_S, for a node that can hold it)",
                    /*infeasible=*/true);
        it = pending_.erase(it);
        continue;
      }
      ++it;
      continue;
    }
    JobID job = JobID::FromBinary(it->req.job_id());
    if (!pool_->HasJob(job)) {
      FetchJob(job);  // a job this node has not run yet: learn how its workers start
      ++it;
      continue;
    }
    std::vector<int> gpus;
    ResourceSet need;
    if (!FitsNow(*it, &need) || !AcquireGpus(scheduling::GpusOf(need), &gpus)) {
      // Busy here: another node may be able to run it now. Also when another node sent it
      // here (its view of this node was stale), up to max_spillbacks hops.
      if (it->req.spillback_count() < Config::Get().max_spillbacks() && !it->req.for_actor()) {
        scheduling::Decision d = Decide(*it, /*stay_if_it_fits=*/false);
        if (d.kind == scheduling::Decision::kRun && d.node != node_id_) {
          SpillBack(*it, d.node);
          it = pending_.erase(it);
          continue;
        }
      }
      short_of_resources = true;
      ++it;
      continue;
    }
    ReleaseGpus(gpus, scheduling::GpusOf(need));  // only probing; GrantLease takes the same ones
    std::string devices;
    for (int g : gpus) devices += (devices.empty() ? "" : ",") + std::to_string(g);
    WorkerEnv env;
    if (Status ready = WorkerEnvOf(it->req.runtime_env(), &env); !ready.ok()) {
      if (ready.code() != StatusCode::kUnavailable) {  // else: being prepared; waits
        proto::LeaseReply reply;
        reply.set_error(ready.message());
        requester->Reply(it->reply_to, reply);
        it = pending_.erase(it);
        continue;
      }
      ++it;
      continue;
    }
    WorkerProc* w = pool_->PopIdle(job, devices, env.key);
    if (!w) {
      int wanted = ++workers_wanted[{job, devices + "|" + env.key}];
      bool may_start = it->req.for_actor() || pool_->NumNonActorWorkers() < max_workers;
      if (pool_->NumStarting(job, devices, env.key) < wanted && may_start) {
        auto started = pool_->StartWorker(job, devices, env);
        if (!started.ok()) {
          proto::LeaseReply reply;
          reply.set_error(started.status().message());
          requester->Reply(it->reply_to, reply);
          it = pending_.erase(it);
          continue;
        }
      }
      ++it;
      continue;
    }
    it->need = std::move(need);  // for "any bundle": the bundle it got
    GrantLease(*it, w);
    it = pending_.erase(it);
  }
  if (short_of_resources) AskIdleLeasesBack();
  // A node that can hold these joined: schedule them like new requests.
  for (auto& p : reschedule) ScheduleLease(std::move(p), /*view_is_fresh=*/true);
}

Status NodeDaemon::WorkerEnvOf(const proto::RuntimeEnv& runtime_env, WorkerEnv* out) {
  if (runtime_env.key().empty()) return Status::OK();
  out->key = runtime_env.key();
  if (!runtime_env.working_dir().empty()) {
    LUMEN_RETURN_IF_ERROR(working_dirs_->Get(runtime_env.working_dir(), &out->cwd));
  }
  for (const auto& [k, v] : runtime_env.env_vars()) out->vars.push_back(k + "=" + v);
  out->encoded = EncodeRuntimeEnv(runtime_env);
  return Status::OK();
}

void NodeDaemon::GrantLease(PendingLease& p, WorkerProc* w) {
  Lease lease;
  lease.id = next_lease_id_++;
  lease.worker = w->id;
  lease.resources = p.need;
  AcquireGpus(scheduling::GpusOf(p.need), &lease.gpus);
  lease.holder = p.requester;
  lease.for_actor = p.req.for_actor();
  lease.retriable = p.req.retriable();
  lease.granted = std::chrono::steady_clock::now();
  if (p.req.strategy().placement_group_id().size() == PlacementGroupID::kSize) {
    lease.group = PlacementGroupID::FromBinary(p.req.strategy().placement_group_id());
  }
  available_.Subtract(p.need);
  w->state = lease.for_actor ? WorkerProc::State::kActor : WorkerProc::State::kLeased;
  w->lease_id = lease.id;
  if (lease.for_actor) w->actor = ActorID::FromBinary(p.req.actor_id());
  w->detached = p.req.detached();
  proto::LeaseReply reply;
  reply.set_granted(true);
  reply.set_lease_id(lease.id);
  *reply.mutable_worker() = w->address;
  for (int g : lease.gpus) reply.add_gpu_ids(g);
  leases_.emplace(lease.id, std::move(lease));
  if (auto r = p.requester.lock()) r->Reply(p.reply_to, reply);
  ReportResourcesSoon();
}

void NodeDaemon::EndLease(uint64_t lease_id, bool kill_worker) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  ReleaseLeaseResources(lease);
  if (WorkerProc* w = pool_->Find(lease.worker)) {
    if (kill_worker) {
      pool_->Kill(w->id, "its lease holder gave the lease back with the worker to be stopped");
    } else if (w->lease_id == lease_id) {
      pool_->MakeIdle(w);
    }
  }
  ProcessLeaseQueue();
}

void NodeDaemon::ReleaseLeaseResources(const Lease& lease) {
  ResourceSet give_back = lease.resources;
  // CPU handed back while the worker was blocked is already available.
  give_back.Subtract(lease.released);
  available_.Add(give_back);
  ReleaseGpus(lease.gpus, scheduling::GpusOf(lease.resources));
  ReportResourcesSoon();
}

void NodeDaemon::AskIdleLeasesBack() {
  auto now = std::chrono::steady_clock::now();
  if (now - last_release_ask_ < std::chrono::milliseconds(20)) return;
  last_release_ask_ = now;
  std::vector<rpc::ConnectionPtr> holders;
  for (const auto& [id, lease] : leases_) {
    if (lease.for_actor) continue;
    if (auto h = lease.holder.lock()) {
      if (std::find(holders.begin(), holders.end(), h) == holders.end()) holders.push_back(h);
    }
  }
  for (auto& h : holders) h->Send(rpc::kReleaseIdleLeases, proto::Empty());
}

void NodeDaemon::HandleReturnLease(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ReturnLeaseRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  EndLease(req.lease_id(), req.disconnect_worker());
}

void NodeDaemon::HandleNotifyBlocked(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::NotifyBlockedRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  auto client = c->context<Client>();
  if (!client || client->kind != proto::WORKER) return;
  WorkerProc* w = pool_->Find(client->worker_id);
  if (!w || !w->lease_id) return;
  auto it = leases_.find(w->lease_id);
  if (it == leases_.end()) return;
  Lease& lease = it->second;
  if (req.blocked() && !w->blocked) {
    w->blocked = true;
    // CPU inside a placement group too: a task waiting for its children in the same bundle
    // must not starve them.
    lease.released = ResourceSet();
    for (const auto& [name, amount] : lease.resources.amounts()) {
      if (scheduling::IsCpuResource(name)) lease.released.Set(name, amount);
    }
    available_.Add(lease.released);
    ProcessLeaseQueue();
  } else if (!req.blocked() && w->blocked) {
    w->blocked = false;
    available_.Subtract(lease.released);
    lease.released = ResourceSet();
  }
}

void NodeDaemon::ForwardWorkerLogs() {
  log_timer_ = 0;
  if (stopped_) return;
  logs_->Poll();
  log_timer_ = loop_->RunAfter(std::chrono::milliseconds(Config::Get().log_monitor_period_ms()),
                               [this] { ForwardWorkerLogs(); });
}

void NodeDaemon::HandleFlushWorkerLogs(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::FlushWorkerLogsRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.job_id().size() != JobID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed FlushWorkerLogs"));
    return;
  }
  const JobID job = JobID::FromBinary(req.job_id());
  proto::WorkerLogs logs = logs_->Flush(job);  // in the reply: it reaches the driver first
  logs.set_job_id(job.Binary());
  c->Reply(f, logs);
}

void NodeDaemon::OnWorkerDied(const WorkerProc& w, const std::string& description) {
  if (stopped_) return;
  logs_->Exited(w.id);  // what it printed last (a crash message, say) still reaches its driver
  memory_->OnWorkerDied(w.id);
  if (w.lease_id) {
    auto it = leases_.find(w.lease_id);
    if (it != leases_.end()) {
      ReleaseLeaseResources(it->second);
      leases_.erase(it);
    }
  }
  auto waiters = exit_waiters_.find(w.id);
  if (waiters != exit_waiters_.end()) {
    proto::WorkerExitStatusReply reply;
    reply.set_known(true);
    reply.set_exited(true);
    reply.set_description(description);
    reply.set_killed_for_memory(memory_->KilledForMemory(w.id));
    for (auto& [conn, frame] : waiters->second) conn->Reply(frame, reply);
    exit_waiters_.erase(waiters);
  }
  if (w.state == WorkerProc::State::kActor && gcs_) {
    proto::WorkerDiedRequest req;
    req.set_node_id(node_id_.Binary());
    req.set_worker_id(w.id.Binary());
    req.set_actor_id(w.actor.Binary());
    req.set_job_id(w.job.Binary());
    req.set_cause(description);
    gcs_->Send(rpc::kWorkerDied, req);
  }
  // (A starting worker this daemon stopped itself, e.g. at its job's end, did not fail.)
  if (w.state == WorkerProc::State::kStarting && w.kill_reason.empty()) {
    LUMEN_LOG(ERROR) << "worker " << w.id.Hex() << " for job " << w.job.ToInt()
                     << " died before registering: " << description << " (see its log in "
                     << options_.session_dir << "/logs)";
    // Fail the job's waiting lease requests instead of restarting a crashing binary forever.
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (JobID::FromBinary(it->req.job_id()) == w.job) {
        if (auto r = it->requester.lock()) {
          proto::LeaseReply reply;
          reply.set_error("a worker process for this job " + description + " during startup; see " +
                          options_.session_dir + "/logs");
          r->Reply(it->reply_to, reply);
        }
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  ProcessLeaseQueue();
}

std::vector<KillCandidate> NodeDaemon::MemoryKillCandidates() const {
  std::vector<KillCandidate> out;
  for (const auto& [id, lease] : leases_) {
    if (!pool_->Find(lease.worker)) continue;
    KillCandidate c;
    c.worker = lease.worker;
    c.kind = lease.for_actor   ? KillCandidate::Kind::kActor
             : lease.retriable ? KillCandidate::Kind::kRetriableTask
                               : KillCandidate::Kind::kTask;
    c.started = lease.granted;
    out.push_back(c);
  }
  return out;
}

void NodeDaemon::HandleWorkerExitStatus(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::WorkerExitStatusRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed WorkerExitStatus"));
    return;
  }
  WorkerID id = WorkerID::FromBinary(req.worker_id());
  proto::WorkerExitStatusReply reply;
  std::string desc = pool_->ExitDescription(id);
  if (!desc.empty()) {
    reply.set_known(true);
    reply.set_exited(true);
    reply.set_description(desc);
    reply.set_killed_for_memory(memory_->KilledForMemory(id));
    c->Reply(f, reply);
    return;
  }
  if (!pool_->Find(id)) {
    c->Reply(f, reply);  // unknown
    return;
  }
  // Still alive (or not yet reaped): answer when it exits, or after a grace period.
  rpc::Frame handle = rpc::ReplyHandle(f);
  exit_waiters_[id].push_back({c, handle});
  std::weak_ptr<rpc::Connection> weak = c;
  loop_->RunAfter(std::chrono::milliseconds(Config::Get().worker_exit_status_wait_ms()),
                  [this, id, weak, handle] {
                    auto it = exit_waiters_.find(id);
                    if (it == exit_waiters_.end()) return;
                    auto& v = it->second;
                    for (auto w = v.begin(); w != v.end(); ++w) {
                      if (w->first == weak.lock() && w->second.request_id == handle.request_id) {
                        proto::WorkerExitStatusReply reply;
                        reply.set_known(true);
                        reply.set_exited(false);
                        w->first->Reply(w->second, reply);
                        v.erase(w);
                        break;
                      }
                    }
                    if (v.empty()) exit_waiters_.erase(it);
                  });
}

void NodeDaemon::HandleKillWorker(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::KillWorkerRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed KillWorker"));
    return;
  }
  pool_->Kill(WorkerID::FromBinary(req.worker_id()), req.reason());
  c->Reply(f, proto::Empty());
}

// ---- object store ------------------------------------------------------------------------

void NodeDaemon::HandleStoreCreate(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::StoreCreateRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.object_id().size() != ObjectID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed StoreCreate"));
    return;
  }
  auto client = ClientOf(c);
  rpc::Frame handle = rpc::ReplyHandle(f);
  std::weak_ptr<rpc::Connection> weak = c;
  store_->Create(client->id, ObjectID::FromBinary(req.object_id()), req.data_size(), req.format(),
                 WorkerID::FromBinary(req.owner().worker_id()),
                 [weak, handle](const object_store::CreateResult& r) {
                   auto conn = weak.lock();
                   if (!conn) return;
                   proto::StoreCreateReply reply;
                   reply.set_offset(r.offset);
                   reply.set_already_exists(r.already_exists);
                   if (!r.status.ok()) {
                     reply.set_error(r.status.message());
                     reply.set_full(r.status.code() == StatusCode::kResourceExhausted);
                   }
                   conn->Reply(handle, reply);
                 });
}

void NodeDaemon::HandleStoreSeal(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::StoreSealRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  Status st = store_->Seal(ClientOf(c)->id, ObjectID::FromBinary(req.object_id()));
  if (!st.ok()) LUMEN_LOG_EVERY_WINDOW(WARNING) << "store client " << c->peer_name() << ": " << st;
}

void NodeDaemon::HandleStoreAbort(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::StoreSealRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  Status st = store_->Abort(ClientOf(c)->id, ObjectID::FromBinary(req.object_id()));
  if (!st.ok()) LUMEN_LOG_EVERY_WINDOW(WARNING) << "store client " << c->peer_name() << ": " << st;
}

void NodeDaemon::HandleStoreGet(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::StoreGetRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed StoreGet"));
    return;
  }
  std::vector<ObjectID> ids;
  for (const auto& b : req.object_ids()) ids.push_back(ObjectID::FromBinary(b));
  rpc::Frame handle = rpc::ReplyHandle(f);
  std::weak_ptr<rpc::Connection> weak = c;
  store_->Get(ClientOf(c)->id, std::move(ids), req.timeout_ms(),
              [weak, handle](std::vector<object_store::GetEntry> entries) {
                auto conn = weak.lock();
                if (!conn) return;
                proto::StoreGetReply reply;
                for (const auto& e : entries) {
                  auto* out = reply.add_entries();
                  out->set_object_id(e.id.Binary());
                  out->set_found(e.found);
                  out->set_offset(e.offset);
                  out->set_data_size(e.data_size);
                  out->set_format(e.format);
                  out->set_error(e.error);
                }
                conn->Reply(handle, reply);
              });
}

void NodeDaemon::HandleStoreRelease(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ObjectIdList req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  auto client = ClientOf(c);
  for (const auto& b : req.object_ids()) store_->Release(client->id, ObjectID::FromBinary(b));
}

void NodeDaemon::HandleStoreFree(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ObjectIdList req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  std::vector<ObjectID> ids;
  for (const auto& b : req.object_ids()) ids.push_back(ObjectID::FromBinary(b));
  store_->Free(ids);
  objects_->ForwardFree(ids);
}

// ---- status and health -------------------------------------------------------------------

proto::NodeStats NodeDaemon::Stats() {
  proto::NodeStats s;
  s.set_node_id(node_id_.Binary());
  s.set_report_seq(next_report_seq_++);
  total_.ToProto(s.mutable_total()->mutable_amounts());
  available_.ToProto(s.mutable_available()->mutable_amounts());
  auto st = store_->Stats();
  s.set_store_capacity(st.capacity);
  s.set_store_used(st.used);
  s.set_store_peak_used(st.peak_used);
  s.set_store_resident(st.resident);
  s.set_store_released_bytes(st.released_total);
  s.set_transfer_bytes_sent(objects_ ? objects_->stats().bytes_sent : 0);
  s.set_transfer_bytes_received(objects_ ? objects_->stats().bytes_received : 0);
  s.set_pulls_redirected(objects_ ? objects_->stats().pulls_redirected : 0);
  s.set_store_pinned(st.pinned);
  s.set_num_objects(st.num_objects);
  s.set_spilled_bytes(st.spilled_bytes);
  s.set_num_spilled(st.num_spilled);
  s.set_restored_bytes(st.restored_bytes_total);
  for (const WorkerProc* w : pool_->All()) {
    if (w->state == WorkerProc::State::kDead) continue;
    s.set_num_workers(s.num_workers() + 1);
    if (w->state == WorkerProc::State::kIdle) s.set_num_idle_workers(s.num_idle_workers() + 1);
    if (w->state == WorkerProc::State::kLeased) {
      s.set_num_leased_workers(s.num_leased_workers() + 1);
    }
    if (w->state == WorkerProc::State::kActor) s.set_num_actor_workers(s.num_actor_workers() + 1);
  }
  s.set_pending_leases(static_cast<int32_t>(pending_.size()));
  std::map<std::pair<std::string, bool>, proto::ResourceDemand> demand;
  for (const PendingLease& p : pending_) {
    proto::ResourceDemand& d = demand[{p.need.Key(), p.infeasible}];
    if (d.count() == 0) {
      p.need.ToProto(d.mutable_shape()->mutable_amounts());
      d.set_infeasible(p.infeasible);
    }
    d.set_count(d.count() + 1);
  }
  for (auto& [key, d] : demand) *s.add_demand() = std::move(d);
  s.set_address(tcp_address_);
  return s;
}

void NodeDaemon::HandleNodeStats(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  c->Reply(f, Stats());
}

void NodeDaemon::HandleShutdown(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  c->Reply(f, proto::Empty());
  LUMEN_LOG(INFO) << "the cluster is stopping (asked by " << c->peer_name() << "); this node stops";
  on_shutdown_.Run();
}

void NodeDaemon::Heartbeat() {
  heartbeat_timer_ = 0;
  if (stopped_) return;
  if (gcs_) {  // none while reconnecting: the next one after is as good
    proto::HeartbeatRequest req;
    *req.mutable_stats() = Stats();
    gcs_->SendIfConnected(rpc::kHeartbeat, req);
  }
  int64_t cpus = total_.Get("CPU") / kResourceUnit;
  pool_->TrimIdle(static_cast<size_t>(std::max<int64_t>(cpus, 1)),
                  std::chrono::milliseconds(Config::Get().idle_worker_keep_ms()));
  // Kill workers that never registered.
  auto now = std::chrono::steady_clock::now();
  for (const WorkerProc* w : pool_->All()) {
    if (w->state == WorkerProc::State::kStarting &&
        now - w->since > std::chrono::milliseconds(Config::Get().worker_start_timeout_ms())) {
      pool_->Kill(w->id, "did not register in time");
    }
  }
  if (!pending_.empty()) ProcessLeaseQueue();  // deadlines of requests waiting for a node
  heartbeat_timer_ =
      loop_->RunAfter(std::chrono::milliseconds(heartbeat_period_ms_), [this] { Heartbeat(); });
}

}  // namespace lumen::node
