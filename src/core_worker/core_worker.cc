#include "core_worker/core_worker.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>

#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/resources.h"
#include "common/rpc/message_types.h"
#include "core_worker.pb.h"
#include "core_worker/actor_submitter.h"
#include "core_worker/borrowers.h"
#include "core_worker/dependency_resolver.h"
#include "core_worker/generator_streams.h"
#include "core_worker/object_recovery.h"
#include "core_worker/owner_fetch.h"
#include "core_worker/peer_connections.h"
#include "core_worker/runtime_envs.h"
#include "core_worker/task_executor.h"
#include "core_worker/task_spec.h"
#include "core_worker/task_submitter.h"
#include "gcs.pb.h"
#include "lumen/errors.h"
#include "lumen/serialization.h"
#include "node.pb.h"

namespace lumen::core {

namespace {

thread_local TaskContext* tls_context = nullptr;

[[noreturn]] void ThrowError(const proto::ErrorInfo& e) {
  switch (e.type()) {
    case proto::TASK_ERROR:
      throw TaskError(
          "task " + e.function_name() + " threw " + e.remote_type() + ": " + e.message(),
          e.function_name(), e.remote_type(), e.message());
    case proto::WORKER_CRASHED:
      throw WorkerCrashedError(e.message());
    case proto::OUT_OF_MEMORY:
      throw OutOfMemoryError(e.message());
    case proto::ACTOR_DIED:
      throw ActorDiedError(e.message());
    case proto::OBJECT_LOST:
      throw ObjectLostError(e.message());
    case proto::OWNER_DIED:
      throw OwnerDiedError(e.message());
    case proto::OBJECT_RECONSTRUCTION_FAILED:
      throw ObjectReconstructionFailedError(e.message());
    case proto::OBJECT_STORE_FULL:
      throw ObjectStoreFullError(e.message());
    case proto::TYPE_ERROR:
      throw TypeError(e.message());
    case proto::FUNCTION_NOT_FOUND:
      throw FunctionNotFoundError(e.message());
    case proto::CANCELLED:
      throw TaskCancelledError(e.message());
    default:
      throw Error(e.message());
  }
}

}  // namespace

// ---- construction ----------------------------------------------------------------------------

StatusOr<std::unique_ptr<CoreWorker>> CoreWorker::Create(CoreWorkerOptions options) {
  std::unique_ptr<CoreWorker> cw(new CoreWorker(std::move(options)));
  LUMEN_RETURN_IF_ERROR(cw->Connect());
  return cw;
}

CoreWorker::CoreWorker(CoreWorkerOptions options) : options_(std::move(options)), io_("core-io") {
  worker_id_ = options_.is_driver ? WorkerID::FromRandom() : options_.worker_id;
  job_id_ = options_.job_id;
  peers_ = std::make_unique<PeerConnections>(
      &io_, &dispatcher_, options_.token,
      [this](const rpc::ConnectionPtr& c, const Status& r) { OnPeerClosed(c, r); });
  references_ = std::make_unique<ReferenceCounter>(
      [this](const std::vector<ReferenceCounter::Release>& r) { OnReleases(r); });
  borrowers_ = std::make_unique<BorrowerProtocol>(references_.get(), peers_.get(), &address_);
  owner_fetch_ = std::make_unique<OwnerFetch>(
      &io_, &memory_store_, references_.get(), peers_.get(), &shutting_down_,
      [this](const std::vector<ObjectID>& ids, const proto::ErrorInfo& e) { StoreError(ids, e); });
  ObjectRecovery::Hooks hooks;
  hooks.store_error = [this](const std::vector<ObjectID>& ids, const proto::ErrorInfo& e) {
    StoreError(ids, e);
  };
  hooks.resolve_and_submit = [this](std::shared_ptr<TaskEntry> t) {
    ResolveAndSubmit(std::move(t));
  };
  hooks.take_slot = [this] { task_submitter_->TakeSlot(); };
  hooks.release_slot = [this] { task_submitter_->ReleaseSlot(); };
  hooks.forget_node = [this](const NodeID& node) { peers_->ForgetNode(node); };
  hooks.stream_open = [this](const TaskID& task) { return streams_->IsOpen(task); };
  hooks.list_nodes = [this](std::function<void(const proto::NodeList*)> done) {
    if (!gcs_ || gcs_->closed()) {
      done(nullptr);
      return;
    }
    gcs_->Call(
        rpc::kGetAllNodes, proto::Empty(),
        [done = std::move(done)](const Status& st, std::string_view payload) {
          proto::NodeList nodes;
          done(st.ok() && rpc::ParsePayload(payload, &nodes) ? &nodes : nullptr);
        },
        Config::Get().rpc_timeout_ms());
  };
  hooks.fetch_from_owner = [this](const ObjectID& id, const NodeID& lost) {
    owner_fetch_->Fetch(id, lost);
  };
  hooks.promote_copy = [this](const ObjectID& id, const NodeID& node,
                              std::function<void(Status)> done) {
    peers_->WithNodeAddress(gcs_, node, [this, id, done](bool found, const proto::Address& a) {
      if (!found) {
        done(NotFoundError("the node is not alive"));
        return;
      }
      auto conn = peers_->Connect(a);
      if (!conn.ok()) {
        done(conn.status());
        return;
      }
      proto::ObjectIdList req;
      req.add_object_ids(id.Binary());
      (*conn)->Call(
          rpc::kPromoteCopy, req, [done](const Status& st, std::string_view) { done(st); },
          Config::Get().rpc_timeout_ms());
    });
  };
  recovery_ = std::make_unique<ObjectRecovery>(&memory_store_, references_.get(), std::move(hooks),
                                               Config::Get().max_lineage_bytes());
  owner_fetch_->SetLostHook(
      [this](const ObjectID& id, const NodeID& node, std::function<void()> then) {
        recovery_->OnBorrowerLost(id, node, std::move(then));
      });
  resolver_ = std::make_unique<DependencyResolver>(*this);
  task_submitter_ = std::make_unique<TaskSubmitter>(*this);
  actor_submitter_ = std::make_unique<ActorSubmitter>(*this);
  streams_ = std::make_unique<GeneratorStreams>(*this);
  if (!options_.is_driver) executor_ = std::make_unique<TaskExecutor>(*this);
  RegisterHandlers();
}

namespace {

// Writes lines workers printed to this process's `fd` (stdout or stderr) in one write.
void PrintWorkerLines(const google::protobuf::RepeatedPtrField<std::string>& lines, int fd) {
  if (lines.empty()) return;
  std::string text;
  for (const auto& line : lines) {
    text += line;
    text += '\n';
  }
  if (fd == 1) std::fflush(stdout);  // after what the driver itself printed before
  for (size_t off = 0; off < text.size();) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

CoreWorker::~CoreWorker() {
  Shutdown();
  io_.Stop();
}

void CoreWorker::RegisterHandlers() {
  dispatcher_.Register(rpc::kPushTasks, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::PushTasksRequest req;
    if (!executor_ || !rpc::ParsePayload(f.payload, &req)) {
      LUMEN_LOG(WARNING) << "dropping a malformed or misdirected task push from " << c->peer_name();
      return;
    }
    executor_->HandlePush(c, req);
  });
  dispatcher_.Register(rpc::kGeneratorItem, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::GeneratorItem item;
    if (rpc::ParsePayload(f.payload, &item)) streams_->OnItem(c, item);
  });
  dispatcher_.Register(rpc::kGeneratorAck, [this](const rpc::ConnectionPtr&, rpc::Frame& f) {
    proto::GeneratorAck ack;
    if (executor_ && rpc::ParsePayload(f.payload, &ack) && ack.task_id().size() == TaskID::kSize) {
      executor_->OnGeneratorAck(TaskID::FromBinary(ack.task_id()), ack.consumed());
    }
  });
  dispatcher_.Register(rpc::kCancelTask, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::CancelTaskRequest req;
    if (!executor_ || !rpc::ParsePayload(f.payload, &req) ||
        req.task_id().size() != TaskID::kSize) {
      LUMEN_LOG(WARNING) << "dropping a malformed or misdirected cancel from " << c->peer_name();
      return;
    }
    executor_->Cancel(TaskID::FromBinary(req.task_id()), req.force(), req.recursive());
  });
  dispatcher_.Register(rpc::kTaskResults, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::TaskResults results;
    if (!rpc::ParsePayload(f.payload, &results)) return;
    // Every result of one message comes from one worker: a task worker or an actor.
    int actor_results = 0;
    for (const auto& r : results.results())
      actor_results += IsActorTask(TaskID::FromBinary(r.task_id()));
    if (actor_results == 0) {
      task_submitter_->HandleResults(c, results);
    } else if (actor_results == results.results_size()) {
      actor_submitter_->HandleResults(results);
    } else {
      proto::TaskResults normal, actor;
      for (auto& r : *results.mutable_results()) {
        (IsActorTask(TaskID::FromBinary(r.task_id())) ? actor : normal).add_results()->Swap(&r);
      }
      task_submitter_->HandleResults(c, normal);
      actor_submitter_->HandleResults(actor);
    }
  });
  dispatcher_.Register(rpc::kActorUpdate, [this](const rpc::ConnectionPtr&, rpc::Frame& f) {
    proto::ActorStateUpdate u;
    if (rpc::ParsePayload(f.payload, &u)) actor_submitter_->HandleUpdate(u);
  });
  dispatcher_.Register(rpc::kNodeDied, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::NodeInfo n;
    if (!gcs_->Owns(c) || !rpc::ParsePayload(f.payload, &n)) return;  // only the control service
    recovery_->OnNodeDead(NodeID::FromBinary(n.node_id()), n.death_cause());
  });
  dispatcher_.Register(rpc::kReleaseIdleLeases, [this](const rpc::ConnectionPtr&, rpc::Frame&) {
    task_submitter_->ReleaseIdleLeases();
  });
  dispatcher_.Register(rpc::kGetObjectStatus, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    owner_fetch_->HandleGetObjectStatus(c, f);
  });
  dispatcher_.Register(rpc::kObjectCopyAdded, [this](const rpc::ConnectionPtr&, rpc::Frame& f) {
    proto::ObjectCopyAdded note;
    if (!rpc::ParsePayload(f.payload, &note) || note.object_id().size() != ObjectID::kSize ||
        note.node_id().size() != NodeID::kSize) {
      return;
    }
    recovery_->OnCopyAdded(ObjectID::FromBinary(note.object_id()),
                           NodeID::FromBinary(note.node_id()));
  });
  dispatcher_.Register(rpc::kAddBorrower, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    borrowers_->HandleAddBorrower(c, f);
  });
  dispatcher_.Register(rpc::kRemoveBorrower, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    borrowers_->HandleRemoveBorrower(c, f);
  });
  dispatcher_.Register(rpc::kPinReturnedRefs, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    borrowers_->HandlePinReturnedRefs(c, f);
  });
  dispatcher_.Register(rpc::kWorkerExit, [this](const rpc::ConnectionPtr&, rpc::Frame&) {
    if (executor_) executor_->Stop();
  });
  dispatcher_.Register(rpc::kWorkerLogs, [this](const rpc::ConnectionPtr& c, rpc::Frame& f) {
    proto::WorkerLogs logs;
    if (!options_.is_driver || !gcs_->Owns(c) || !rpc::ParsePayload(f.payload, &logs)) return;
    PrintWorkerLines(logs.stdout_lines(), 1);
    PrintWorkerLines(logs.stderr_lines(), 2);
  });
}

proto::RegisterJobRequest CoreWorker::JobRegistration(const JobID& again) const {
  proto::RegisterJobRequest req;
  *req.mutable_driver() = address_;
  req.set_binary(options_.binary);
  req.set_log_to_driver(options_.log_to_driver);
  req.set_actor_namespace(options_.actor_namespace);
  proto::StartJobRequest* start = req.mutable_start();
  start->set_binary(options_.binary);
  start->set_binary_hash(options_.binary_hash);
  for (const auto& a : options_.argv) start->add_argv(a);
  start->set_cwd(options_.cwd);
  if (!again.IsNil()) req.set_job_id(again.Binary());
  return req;
}

void CoreWorker::SubscribeNodeDeaths() {
  // Node deaths: objects whose copies were there are re-created or failed (ObjectRecovery).
  gcs_->Call(
      rpc::kSubscribeNodeDeaths, proto::Empty(),
      [this](const Status& st, std::string_view payload) {
        proto::NodeList dead;
        if (!st.ok() || !rpc::ParsePayload(payload, &dead)) return;
        for (const auto& n : dead.nodes())
          recovery_->OnNodeDead(NodeID::FromBinary(n.node_id()), n.death_cause());
      },
      Config::Get().rpc_timeout_ms());
}

void CoreWorker::Resubscribe() {
  SubscribeNodeDeaths();  // and learns the deaths it missed
  actor_submitter_->Resubscribe();
}

StatusOr<std::string> CoreWorker::ListenInRange() {
  if (options_.min_port <= 0) return server_->ListenTcp(options_.node_ip, 0);
  // Pinned ports (firewalls): the first free one of the node's worker range.
  Status last = Status::OK();
  for (int port = options_.min_port; port <= options_.max_port; ++port) {
    auto addr = server_->ListenTcp(options_.node_ip, port);
    if (addr.ok()) return addr;
    last = addr.status();
  }
  return UnavailableError("no free port in the node's worker range " +
                          std::to_string(options_.min_port) + "-" +
                          std::to_string(options_.max_port) + " (--min-worker-port/" +
                          "--max-worker-port) on " + options_.node_ip + ": " + last.message());
}

Status CoreWorker::Connect() {
  io_.Start();
  auto on_close = [this](const rpc::ConnectionPtr& c, const Status& reason) {
    OnPeerClosed(c, reason);
  };
  // Listen for owners pushing tasks and borrowers asking about objects.
  server_ = std::make_unique<rpc::Server>(&io_, &dispatcher_, options_.token, "core-worker");
  server_->set_on_close(on_close);
  std::string sockets = JoinPath(options_.session_dir, "sockets");
  LUMEN_RETURN_IF_ERROR(MakeDirs(sockets));
  LUMEN_ASSIGN_OR_RETURN(
      std::string unix_addr,
      server_->ListenUnix(JoinPath(sockets, "w-" + worker_id_.Hex().substr(0, 12))));
  LUMEN_ASSIGN_OR_RETURN(std::string tcp_addr, ListenInRange());
  address_.set_worker_id(worker_id_.Binary());
  address_.set_unix_path(unix_addr.substr(5));
  address_.set_tcp_address(tcp_addr);
  address_.set_pid(::getpid());

  // The control service may restart (on Redis) while this process runs: its client
  // reconnects, and on each new connection registers this driver's job again and renews the
  // subscriptions before anything queued meanwhile is sent.
  rpc::ReconnectingClient::Options gcs_options;
  gcs_options.address = options_.gcs_address;
  gcs_options.token = options_.token;
  gcs_options.dispatcher = &dispatcher_;
  gcs_options.reconnect_timeout_ms = Config::Get().gcs_reconnect_timeout_s() * 1000;
  gcs_options.on_connected = [this](const rpc::ConnectionPtr& c,
                                    std::function<void(const Status&)> done) {
    Resubscribe();  // queued: sent once `done` has let the client go on
    const uint32_t job = registered_job_.load();
    if (!options_.is_driver || job == 0) {  // a worker; or the first registration is queued
      done(Status::OK());
      return;
    }
    c->Call(
        rpc::kRegisterJob, JobRegistration(JobID::FromInt(job)),
        [done](const Status& st, std::string_view) { done(st); }, Config::Get().rpc_timeout_ms());
  };
  gcs_options.on_lost = [this](const Status& why) {
    if (shutting_down_) return;
    LUMEN_LOG(ERROR) << "lost the control service for good (" << why
                     << "); what needs it (actors, names, placement groups) fails from now on";
  };
  LUMEN_ASSIGN_OR_RETURN(gcs_, rpc::ReconnectingClient::Connect(&io_, std::move(gcs_options)));
  SubscribeNodeDeaths();
  runtime_envs_ =
      std::make_unique<RuntimeEnvs>(options_.runtime_env, [this] { return gcs_->connection(); });
  if (options_.is_driver) {
    proto::RegisterJobReply reply;
    LUMEN_RETURN_IF_ERROR(gcs_->CallSync(rpc::kRegisterJob, JobRegistration(JobID::Nil()), &reply,
                                         Config::Get().rpc_timeout_ms())
                              .WithContext("registering the job with the control service at " +
                                           options_.gcs_address));
    job_id_ = JobID::FromBinary(reply.job_id());
    registered_job_ = job_id_.ToInt();
  }
  driver_context_.task_id = options_.is_driver ? TaskID::ForDriver(job_id_) : TaskID::FromRandom();

  LUMEN_ASSIGN_OR_RETURN(daemon_, rpc::Connect(&io_, options_.node_address, &dispatcher_,
                                               options_.token, /*timeout_ms=*/-1, on_close));
  proto::RegisterClientRequest reg;
  reg.set_kind(options_.is_driver ? proto::DRIVER : proto::WORKER);
  reg.set_worker_id(worker_id_.Binary());
  reg.set_job_id(job_id_.Binary());
  reg.set_pid(::getpid());
  *reg.mutable_address() = address_;
  reg.set_want_store(true);
  proto::RegisterClientReply reg_reply;
  int store_fd = -1;
  LUMEN_RETURN_IF_ERROR(
      daemon_
          ->CallSync(rpc::kRegisterClient, reg, &reg_reply, Config::Get().rpc_timeout_ms(),
                     &store_fd)
          .WithContext("registering with the node daemon at " + options_.node_address));
  if (store_fd < 0) return UnavailableError("the node daemon did not share its object store");
  node_id_ = NodeID::FromBinary(reg_reply.node_id());
  peers_->SetLocalNode(node_id_);
  address_.set_node_id(node_id_.Binary());
  LUMEN_ASSIGN_OR_RETURN(
      store_, object_store::StoreClient::Map(daemon_, store_fd, reg_reply.store_capacity()));
  if (options_.is_driver) {
    proto::StartJobRequest job;
    job.set_job_id(job_id_.Binary());
    job.set_binary(options_.binary);
    job.set_binary_hash(options_.binary_hash);
    for (const auto& a : options_.argv) job.add_argv(a);
    job.set_cwd(options_.cwd);
    job.set_prestart_workers(options_.prestart_workers);
    proto::Empty empty;
    LUMEN_RETURN_IF_ERROR(
        daemon_->CallSync(rpc::kStartJob, job, &empty, Config::Get().rpc_timeout_ms())
            .WithContext("starting the job on the node"));
  }
  return Status::OK();
}

void CoreWorker::Shutdown() {
  if (shutting_down_.exchange(true)) return;
  task_submitter_->Shutdown();
  actor_submitter_->Shutdown();
  if (executor_) executor_->Stop();
  if (options_.is_driver && options_.log_to_driver && gcs_ && !gcs_->closed()) {
    // What the workers printed before the job ends reaches this driver first.
    proto::FlushWorkerLogsRequest req;
    req.set_job_id(job_id_.Binary());
    proto::Empty empty;
    gcs_->CallSync(rpc::kFlushWorkerLogs, req, &empty, Config::Get().shutdown_rpc_timeout_ms())
        .IgnoreError();
  }
  if (options_.is_driver && gcs_ && !gcs_->closed()) {
    proto::JobFinishedRequest req;
    req.set_job_id(job_id_.Binary());
    proto::Empty empty;
    gcs_->CallSync(rpc::kGcsJobFinished, req, &empty, Config::Get().shutdown_rpc_timeout_ms())
        .IgnoreError();
  }
  if (server_) server_->Stop();
  peers_->CloseAll(CancelledError("shutting down"));
  if (daemon_) daemon_->Close(CancelledError("shutting down"));
  if (gcs_) gcs_->Close(CancelledError("shutting down"));
}

void CoreWorker::RunTaskLoop() {
  if (executor_) executor_->Run();
}

// ---- connections -----------------------------------------------------------------------------

void CoreWorker::OnPeerClosed(const rpc::ConnectionPtr& conn, const Status& reason) {
  if (conn == daemon_ && !shutting_down_) {
    if (!options_.is_driver) {
      // Our node daemon is gone: nothing can reach this worker any more.
      LUMEN_LOG(ERROR) << "lost the node daemon (" << reason << "); exiting";
      ::_exit(1);
    }
    LUMEN_LOG(ERROR) << "lost the node daemon: " << reason;
  }
  peers_->Forget(conn);
  task_submitter_->OnConnectionClosed(conn, reason);
  actor_submitter_->OnConnectionClosed(conn, reason);
  borrowers_->OnPeerClosed(conn);
}

TaskContext& CoreWorker::CurrentContext() { return tls_context ? *tls_context : driver_context_; }

void CoreWorker::SetThreadContext(TaskContext* ctx) { tls_context = ctx; }

void CoreWorker::NotifyBlocked(bool blocked) {
  proto::NotifyBlockedRequest req;
  req.set_blocked(blocked);
  daemon_->Send(rpc::kNotifyBlocked, req);
}

// ---- objects ---------------------------------------------------------------------------------

void CoreWorker::OnReleases(const std::vector<ReferenceCounter::Release>& releases) {
  std::vector<std::pair<ObjectID, NodeID>> plasma_frees;
  for (const auto& r : releases) {
    if (r.owned && r.forgotten) recovery_->OnForgotten(r.id);
    if (!r.value) continue;  // freed earlier; the entry stayed for lineage
    memory_store_.Delete(r.id);
    if (r.owned) {
      if (r.in_plasma) plasma_frees.emplace_back(r.id, r.node);
      // Copies the owner heard of (the primary's node forwards its frees to the nodes that
      // pulled from it, but not after that node died and a copy was kept instead).
      for (const NodeID& copy : recovery_->TakeCopies(r.id)) plasma_frees.emplace_back(r.id, copy);
    } else {
      borrowers_->Release(r.id, r.owner, r.registrations, /*connect=*/!shutting_down_);
    }
  }
  if (!plasma_frees.empty()) FreePlasma(plasma_frees);
}

void CoreWorker::FillInlineValue(internal::SerializedValue& value, proto::InlineValue* out) {
  out->set_format(static_cast<proto::ValueFormat>(value.format));
  out->set_data(reinterpret_cast<const char*>(value.bytes()), value.size());
}

ObjectID CoreWorker::Put(internal::SerializedValue value) {
  TaskContext& ctx = CurrentContext();
  ObjectID id = ObjectID::ForPut(ctx.task_id, ++ctx.put_counter);
  references_->AddOwned(id, /*local_refs=*/1, /*pending=*/false);
  const int64_t size = static_cast<int64_t>(value.size());
  if (size <= Config::Get().max_inline_object_bytes()) {
    auto obj = std::make_shared<StoredObject>();
    obj->format = value.format;
    obj->data = value.format == internal::ValueFormat::kRaw ? std::string(value.raw.view())
                                                            : std::move(value.data);
    memory_store_.Put(id, obj);
    references_->SetReady(id, false, NodeID::Nil());
  } else {
    auto created = store_->Create(id, size, static_cast<int32_t>(value.format), address_);
    if (!created.ok()) {
      references_->RemoveSubmittedRefs(value.nested_refs);
      references_->RemoveLocalRef(id);
      if (created.status().code() == StatusCode::kResourceExhausted) {
        throw ObjectStoreFullError("lumen::Put: " + created.status().message());
      }
      throw Error("lumen::Put: " + created.status().message());
    }
    if (!created->already_exists) {
      std::memcpy(created->data, value.bytes(), static_cast<size_t>(size));
      store_->Seal(id);
    }
    auto obj = std::make_shared<StoredObject>();
    obj->format = value.format;
    obj->in_plasma = true;
    obj->node = node_id_;
    obj->size = size;
    memory_store_.Put(id, obj);
    references_->SetReady(id, true, node_id_);
  }
  references_->AddContained(id, value.nested_refs);
  references_->RemoveSubmittedRefs(value.nested_refs);
  return id;
}

void CoreWorker::StoreError(const std::vector<ObjectID>& ids, const proto::ErrorInfo& error) {
  std::string data = error.SerializeAsString();
  for (const auto& id : ids) {
    auto obj = std::make_shared<StoredObject>();
    obj->format = internal::ValueFormat::kError;
    obj->data = data;
    memory_store_.Put(id, obj);
    references_->SetReady(id, false, NodeID::Nil());
  }
}

void CoreWorker::StoreReturns(proto::TaskResult* result) {
  std::vector<ObjectID> on_dead_nodes;
  for (auto& ro : *result->mutable_returns()) {
    ObjectID id = ObjectID::FromBinary(ro.object_id());
    if (result->attempt() > 0 && !KeepReturn(id, ro)) {
      DropHandedRefs(ro);
      continue;
    }
    auto obj = std::make_shared<StoredObject>();
    if (ro.in_plasma()) {
      obj->in_plasma = true;
      obj->node = NodeID::FromBinary(ro.node_id());
      obj->size = ro.size();
    } else {
      obj->format = static_cast<internal::ValueFormat>(ro.value().format());
      obj->data = std::move(*ro.mutable_value()->mutable_data());
    }
    memory_store_.Put(id, obj);
    references_->AddContained(id, AdoptHandedRefs(ro));
    references_->SetReady(id, ro.in_plasma(), obj->node);
    if (obj->in_plasma && recovery_->IsNodeDead(obj->node)) on_dead_nodes.push_back(id);
  }
  // Made on a node that died before the report arrived (its death handled already).
  for (const auto& id : on_dead_nodes) recovery_->OnArrivedFromDeadNode(id);
}

std::vector<ObjectID> CoreWorker::AdoptHandedRefs(const proto::ReturnObject& ro) {
  std::vector<ObjectID> nested;
  for (const auto& info : ro.nested_refs()) {
    ObjectID inner = ObjectID::FromBinary(info.object_id());
    if (WorkerID::FromBinary(info.owner().worker_id()) != worker_id_) {
      references_->AddBorrowed(inner, info.owner());
      // The executing worker registered us with the owner: our release must end it.
      if (info.registered()) references_->AddRegistration(inner);
    }
    nested.push_back(inner);
  }
  return nested;
}

void CoreWorker::DropHandedRefs(const proto::ReturnObject& ro) {
  for (const ObjectID& inner : AdoptHandedRefs(ro)) {
    references_->AddLocalRef(inner);
    references_->RemoveLocalRef(inner);  // released here unless held otherwise
  }
}

void CoreWorker::FailUnmade(const std::vector<ObjectID>& ids, const proto::ErrorInfo& error) {
  for (const auto& id : ids) {
    if (!memory_store_.Get(id) && references_->HasValue(id)) StoreError({id}, error);
  }
}

void CoreWorker::StoreOutcome(const TaskEntry& task, proto::TaskResult* result,
                              const proto::ErrorInfo* error) {
  const TaskID id = TaskID::FromBinary(task.spec.task_id());
  if (task.spec.streaming()) {  // its values came before; this ends the stream
    if (!streams_->OnEnd(id, result, error)) {
      // A re-run re-creating lost values (its `returns`): those it did not send again fail.
      proto::ErrorInfo failed;
      failed.set_type(proto::OBJECT_RECONSTRUCTION_FAILED);
      failed.set_message(
          "the value was lost, and re-running streaming task " + task.spec.function_name() +
          " to re-create it " +
          (error ? "failed: " + error->message() : std::string("ended without yielding it again")));
      FailUnmade(task.returns, failed);
    }
  } else if (error) {
    StoreError(task.returns, *error);
  } else {
    StoreReturns(result);
  }
  ForgetCancelled(id);
  // Refs the task handed back to us were kept alive for this moment: the value holding them
  // is stored (or the task failed).
  borrowers_->UnpinReturned(id);
}

bool CoreWorker::KeepReturn(const ObjectID& id, const proto::ReturnObject& ro) {
  // A re-run (retry or re-creation) makes every result again, also those still alive from an
  // earlier run and those nobody needs any more: only lost or awaited ones are stored.
  const NodeID node = NodeID::FromBinary(ro.node_id());
  StoredObjectPtr cur = memory_store_.Get(id);
  bool wanted =
      references_->HasValue(id) && (!cur || (cur->in_plasma && recovery_->IsNodeDead(cur->node)));
  if (wanted || !ro.in_plasma()) return wanted;
  if (!cur) {
    FreePlasma({{id, node}});  // nobody needs it
  } else if (node != node_id_ && !(cur->in_plasma && cur->node == node)) {
    // The kept value lives elsewhere (or here, where a copy of it may be read): only the new
    // copy's node frees it.
    proto::ObjectIdList list;
    list.add_object_ids(id.Binary());
    FreeOnNode(node, std::move(list));
  }
  return false;
}

std::string CoreWorker::PackRef(const ObjectID& id) {
  // Hold the object until the value carrying it is consumed (see SerializedValue).
  references_->AddSubmittedRefs({id});
  if (auto* ctx = internal::CurrentSerializeContext()) ctx->refs.push_back(id);
  proto::ObjectRefInfo info;
  info.set_object_id(id.Binary());
  auto owner = references_->OwnerOf(id);
  *info.mutable_owner() = owner ? *owner : address_;
  return info.SerializeAsString();
}

ObjectID CoreWorker::UnpackRef(std::string_view packed) {
  proto::ObjectRefInfo info;
  if (!info.ParseFromArray(packed.data(), static_cast<int>(packed.size())) ||
      info.object_id().size() != ObjectID::kSize) {
    throw TypeError("malformed ObjectRef inside a value");
  }
  ObjectID id = ObjectID::FromBinary(info.object_id());
  WorkerID owner = WorkerID::FromBinary(info.owner().worker_id());
  if (owner == worker_id_) {
    if (references_->Has(id)) {
      references_->AddLocalRef(id);
    } else {
      // Our own object, already freed: reading it reports the loss.
      references_->AddOwned(id, 1, false);
      proto::ErrorInfo err;
      err.set_type(proto::OBJECT_LOST);
      err.set_message("object " + id.Hex() + " was freed before this reference arrived");
      StoreError({id}, err);
    }
    return id;
  }
  bool is_new = references_->AddBorrowed(id, info.owner());
  references_->AddLocalRef(id);
  if (is_new) {
    // A task waits for the owner's acknowledgement before it finishes and fails if it did not
    // come; outside a task (a driver thread) a failure is logged.
    borrowers_->Register(id, info.owner(),
                         tls_context ? &tls_context->borrow_registrations : nullptr);
  }
  return id;
}

Status CoreWorker::WaitForBorrowRegistrations() {
  if (!tls_context) return Status::OK();
  std::vector<ObjectID> ids;
  ids.swap(tls_context->borrow_registrations);
  return borrowers_->WaitForRegistrations(ids);
}

Status CoreWorker::PullToLocal(const ObjectID& id, const NodeID& node, int64_t timeout_ms,
                               const proto::Address* owner) {
  auto promise = std::make_shared<std::promise<std::pair<bool, proto::Address>>>();
  auto future = promise->get_future();
  peers_->WithNodeAddress(gcs_, node, [promise](bool found, const proto::Address& a) {
    promise->set_value({found, a});
  });
  auto [found, address] = future.get();
  if (!found) {
    return NotFoundError("object " + id.Hex() + " lives on node " + node.Hex() +
                         ", which is not alive in the cluster");
  }
  proto::PullObjectRequest req;
  req.set_object_id(id.Binary());
  req.set_source_address(address.tcp_address());
  if (owner && !owner->worker_id().empty()) {
    *req.mutable_owner() = *owner;
  } else if (auto known = references_->OwnerOf(id)) {
    *req.mutable_owner() = *known;
  } else {
    *req.mutable_owner() = address_;
  }
  proto::Empty reply;
  Status st =
      WhileBlocked([&] { return daemon_->CallSync(rpc::kPullObject, req, &reply, timeout_ms); });
  if (!st.ok()) return st.WithContext("reading object " + id.Hex() + " from node " + node.Hex());
  // The owner hears of the copy: it keeps it if the primary's node dies.
  if (req.owner().worker_id() == address_.worker_id()) {
    recovery_->OnCopyAdded(id, node_id_);
  } else if (auto conn = peers_->Connect(req.owner()); conn.ok()) {
    proto::ObjectCopyAdded note;
    note.set_object_id(id.Binary());
    note.set_node_id(node_id_.Binary());
    (*conn)->Send(rpc::kObjectCopyAdded, note);
  }
  return st;
}

void CoreWorker::FreePlasma(const std::vector<std::pair<ObjectID, NodeID>>& objects) {
  std::vector<ObjectID> local;
  std::unordered_map<NodeID, proto::ObjectIdList> remote;
  for (const auto& [id, node] : objects) {
    local.push_back(id);  // the primary, or a copy pulled here
    if (!node.IsNil() && node != node_id_) remote[node].add_object_ids(id.Binary());
  }
  if (!local.empty() && store_) store_->Free(local);
  // The primary's node forwards the free to the nodes that pulled copies.
  for (auto& [node, list] : remote) FreeOnNode(node, std::move(list));
}

void CoreWorker::FreeOnNode(const NodeID& node, proto::ObjectIdList list) {
  peers_->WithNodeAddress(gcs_, node,
                          [this, list = std::move(list)](bool found, const proto::Address& a) {
                            if (!found || shutting_down_)
                              return;  // a dead node's store is gone with it
                            auto conn = peers_->Connect(a);
                            if (conn.ok()) (*conn)->Send(rpc::kStoreFree, list);
                          });
}

StatusOr<internal::ValueView> CoreWorker::ReadValue(const ObjectID& id, const StoredObjectPtr& obj,
                                                    int64_t timeout_ms) {
  internal::ValueView v;
  if (!obj->in_plasma) {
    v.format = obj->format;
    v.data = reinterpret_cast<const uint8_t*>(obj->data.data());
    v.size = obj->data.size();
    v.holder = obj;
    return v;
  }
  if (!obj->node.IsNil() && obj->node != node_id_) {
    LUMEN_RETURN_IF_ERROR(PullToLocal(id, obj->node, timeout_ms));
  }
  // An object already in the local store (the common case: its owner saw it sealed) is read
  // without handing the CPU back: a reduce task reading forty ready blocks must not make the
  // node start forty workers. Only a real wait (a restore from spill) blocks.
  LUMEN_ASSIGN_OR_RETURN(auto bufs, store_->Get({id}, 0));
  if (!bufs[0] && timeout_ms != 0) {
    LUMEN_ASSIGN_OR_RETURN(bufs, WhileBlocked([&] { return store_->Get({id}, timeout_ms); }));
  }
  if (!bufs[0]) {
    return DeadlineExceededError("object " + id.Hex() + " is not in the local object store");
  }
  v.format = static_cast<internal::ValueFormat>(bufs[0]->format());
  v.data = bufs[0]->data();
  v.size = static_cast<size_t>(bufs[0]->size());
  v.holder = bufs[0];
  return v;
}

std::vector<internal::ValueView> CoreWorker::Get(const std::vector<ObjectID>& ids,
                                                 int64_t timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  // What is left of the timeout (-1: none).
  auto left = [&]() -> int64_t {
    if (timeout_ms < 0) return -1;
    auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count();
    return std::max<int64_t>(timeout_ms - spent, 0);
  };
  std::vector<bool> present = memory_store_.SpinWait(ids, ids.size(), 0);
  size_t absent = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (present[i]) continue;
    ++absent;
    const ObjectID& id = ids[i];
    if (!references_->Has(id)) {
      throw ObjectLostError("lumen::Get: object " + id.Hex() +
                            " is unknown to this process (its references were all dropped)");
    }
    if (!references_->IsOwned(id)) owner_fetch_->Fetch(id);
  }
  // Spin only for a few objects; a store lookup pass over many is not worth repeating.
  std::vector<bool> ready =
      absent == 0 || absent > MemoryStore::kMaxSpinMissing
          ? std::move(present)
          : memory_store_.SpinWait(ids, ids.size(),
                                   timeout_ms < 0 ? Config::Get().spin_wait_us()
                                                  : std::min<int64_t>(Config::Get().spin_wait_us(),
                                                                      timeout_ms * 1000));
  size_t have = 0;
  for (bool r : ready) have += r;
  if (have < ids.size()) {
    // A borrowed ref that is ready is usually known within the owner's answer: the CPU is
    // handed back (and the node may start another worker for it) only when the wait lasts
    // longer than that. A reduce task reading forty ready blocks must not start forty workers.
    constexpr int64_t kBlockGraceMs = 20;
    if (timeout_ms < 0 || timeout_ms > kBlockGraceMs) {
      ready = memory_store_.Wait(ids, ids.size(), kBlockGraceMs);
      have = 0;
      for (bool r : ready) have += r;
    }
  }
  if (have < ids.size()) {
    ready = WhileBlocked([&] { return memory_store_.Wait(ids, ids.size(), left()); });
    size_t missing = 0;
    ObjectID first;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!ready[i]) {
        if (missing++ == 0) first = ids[i];
      }
    }
    if (missing > 0) {
      throw GetTimeoutError("lumen::Get timed out after " + std::to_string(timeout_ms) + " ms: " +
                            std::to_string(missing) + " of " + std::to_string(ids.size()) +
                            " objects not ready (first: " + first.Hex() + ")");
    }
  }
  // One store round trip for the objects already in this node's store, not one per object:
  // the reads below find them in the client's cache while `pinned` holds them.
  std::vector<std::shared_ptr<object_store::PlasmaBuffer>> pinned;
  if (ids.size() > 1 && store_) {
    std::vector<ObjectID> local;
    for (const auto& id : ids) {
      StoredObjectPtr obj = memory_store_.Get(id);
      if (obj && obj->in_plasma && (obj->node.IsNil() || obj->node == node_id_)) {
        local.push_back(id);
      }
    }
    if (local.size() > 1) {
      if (auto got = store_->Get(local, 0); got.ok()) pinned = std::move(*got);
    }
  }
  std::vector<internal::ValueView> out;
  out.reserve(ids.size());
  for (const auto& id : ids) {
    // Loops while the object is being re-created: its copy was on a node that died.
    for (;;) {
      StoredObjectPtr obj = memory_store_.Get(id);
      if (!obj) {
        if (!references_->HasValue(id)) {
          throw ObjectLostError("lumen::Get: object " + id.Hex() + " was freed");
        }
        if (!references_->IsOwned(id)) owner_fetch_->Fetch(id);
        if (!WhileBlocked([&] { return memory_store_.Wait({id}, 1, left()); })[0]) {
          throw GetTimeoutError("lumen::Get timed out after " + std::to_string(timeout_ms) +
                                " ms: object " + id.Hex() + " is being re-created (its node died)");
        }
        continue;
      }
      if (obj->is_error()) {
        proto::ErrorInfo err;
        err.ParseFromString(obj->data);
        ThrowError(err);
      }
      auto v = ReadValue(id, obj, left());
      if (v.ok()) {
        out.push_back(std::move(*v));
        break;
      }
      if (v.status().code() == StatusCode::kDeadlineExceeded && timeout_ms >= 0) {
        throw GetTimeoutError("lumen::Get: " + v.status().message());
      }
      if (recovery_->OnReadFailed(id, obj, v.status())) continue;
      throw ObjectLostError("lumen::Get: " + v.status().message());
    }
  }
  return out;
}

std::vector<bool> CoreWorker::Wait(const std::vector<ObjectID>& ids, size_t num_returns,
                                   int64_t timeout_ms, bool fetch_local) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (const auto& id : ids) {
    if (!memory_store_.Contains(id) && references_->Has(id) && !references_->IsOwned(id)) {
      owner_fetch_->Fetch(id);
    }
  }
  std::vector<bool> ready =
      WhileBlocked([&] { return memory_store_.Wait(ids, num_returns, timeout_ms); });
  if (!fetch_local) return ready;
  // Ready here: the first `num_returns` ready objects held only on another node are pulled
  // within what is left of the timeout. One that does not arrive in time is not ready (its
  // pull goes on, so a later wait finds it); one that cannot be pulled at all counts as ready,
  // and the Get that follows reports why.
  size_t here = 0;
  for (size_t i = 0; i < ids.size() && here < num_returns; ++i) {
    if (!ready[i]) continue;
    StoredObjectPtr obj = memory_store_.Get(ids[i]);
    if (obj && obj->in_plasma && !obj->node.IsNil() && obj->node != node_id_) {
      int64_t left = -1;
      if (timeout_ms >= 0) {
        left = std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                        deadline - std::chrono::steady_clock::now())
                                        .count());
      }
      if (left == 0) {  // no time to wait: only a copy already here counts
        auto local = store_->Get({ids[i]}, 0);
        if (!local.ok() || !(*local)[0]) {
          PullToLocal(ids[i], obj->node, 0).IgnoreError();  // starts the pull
          ready[i] = false;
          continue;
        }
      } else if (PullToLocal(ids[i], obj->node, left).code() == StatusCode::kDeadlineExceeded) {
        ready[i] = false;
        continue;
      }
    }
    ++here;
  }
  return ready;
}

void CoreWorker::OnObjectReady(const ObjectID& id, std::function<void()> cb) {
  if (!references_->IsOwned(id)) owner_fetch_->Fetch(id);
  memory_store_.OnReady(id, [cb = std::move(cb)](const StoredObjectPtr&) { cb(); });
}

// ---- tasks -----------------------------------------------------------------------------------

namespace {

// Fills a TaskArg from an argument; large values go to the object store first.
void BuildArgs(CoreWorker& cw, std::vector<internal::TaskArgument>& args, proto::TaskSpec* spec,
               std::vector<ObjectID>* held, std::vector<ObjectID>* temporary_puts) {
  for (auto& a : args) {
    proto::TaskArg* arg = spec->add_args();
    if (!a.is_ref &&
        static_cast<int64_t>(a.value.size()) > Config::Get().max_inline_object_bytes()) {
      // Large by-value argument: store it once, pass it by reference.
      ObjectID id = cw.Put(std::move(a.value));
      a.is_ref = true;
      a.ref = id;
      temporary_puts->push_back(id);
    }
    if (a.is_ref) {
      proto::ObjectRefInfo* ref = arg->mutable_ref();
      ref->set_object_id(a.ref.Binary());
      auto owner = cw.references().OwnerOf(a.ref);
      *ref->mutable_owner() = owner ? *owner : cw.address();
      held->push_back(a.ref);
      cw.references().AddSubmittedRefs({a.ref});
    } else {
      cw.FillInlineValue(a.value, arg->mutable_value());
      // PackRef already took one hold per nested ref; the task releases them.
      held->insert(held->end(), a.value.nested_refs.begin(), a.value.nested_refs.end());
    }
  }
}

}  // namespace

std::shared_ptr<const proto::RuntimeEnv> CoreWorker::ResolveRuntimeEnv(const RuntimeEnv& env,
                                                                       const char* what) {
  auto resolved = runtime_envs_->Resolve(env);
  if (!resolved.ok()) throw Error(std::string(what) + ": " + resolved.status().message());
  return *resolved;
}

std::vector<ObjectID> CoreWorker::SubmitTask(const std::string& function_name,
                                             uint64_t signature_hash,
                                             std::vector<internal::TaskArgument> args,
                                             const TaskOptions& options, int num_returns) {
  return SubmitNormalTask(function_name, signature_hash, std::move(args), options, num_returns,
                          /*streaming=*/false, nullptr);
}

TaskID CoreWorker::SubmitStreamingTask(const internal::RemoteFunction& fn,
                                       std::vector<internal::TaskArgument> args,
                                       const TaskOptions& options) {
  TaskID task;
  SubmitNormalTask(fn.name, fn.signature_hash, std::move(args), options, /*num_returns=*/0,
                   /*streaming=*/true, &task);
  return task;
}

std::vector<ObjectID> CoreWorker::SubmitNormalTask(const std::string& function_name,
                                                   uint64_t signature_hash,
                                                   std::vector<internal::TaskArgument> args,
                                                   const TaskOptions& options, int num_returns,
                                                   bool streaming, TaskID* task_out) {
  if (shutting_down_) throw Error("lumen is shut down");
  TaskContext& ctx = CurrentContext();
  TaskID task_id = TaskID::ForNormalTask(job_id_, ctx.task_id, ++ctx.submit_counter);
  auto entry = std::make_shared<TaskEntry>();
  proto::TaskSpec& spec = entry->spec;
  FillSpecHeader(task_id, job_id_, proto::NORMAL_TASK, function_name, signature_hash, &spec);
  spec.set_num_returns(num_returns);
  if (streaming) {
    spec.set_streaming(true);
    spec.set_backpressure(std::max<int64_t>(0, options.generator_backpressure_num_objects));
  }
  spec.set_max_retries(options.max_retries);
  spec.set_retry_exceptions(options.retry_exceptions);
  spec.set_name(options.name);
  entry->resources =
      ResourcesOf(options.num_cpus, options.num_gpus, options.memory, options.resources);
  entry->strategy = StrategyOf(options.scheduling, options.label_selector);
  InPlacementGroup(options.placement_group, options.bundle_index, "lumen::Task", &entry->resources,
                   &entry->strategy);
  entry->retries_left = std::max(options.max_retries, 0);
  entry->runtime_env = ResolveRuntimeEnv(options.runtime_env, "lumen::Task");
  // Tasks share leases only with tasks of the same shape, placement and environment, and
  // retriable ones only with retriable ones: their workers are the memory monitor's first
  // choice.
  entry->shape_key = entry->resources.Key() + "|" + entry->strategy.SerializeAsString() +
                     (entry->retries_left > 0 ? "|r" : "") +
                     (entry->runtime_env ? "|env:" + entry->runtime_env->key() : "");
  std::vector<ObjectID> temporary;
  BuildArgs(*this, args, &spec, &entry->held_refs, &temporary);
  for (int i = 0; i < num_returns; ++i) {
    ObjectID ret = ObjectID::ForReturn(task_id, static_cast<uint32_t>(i));
    entry->returns.push_back(ret);
    references_->AddOwned(ret, /*local_refs=*/1, /*pending=*/true);
  }
  for (const auto& id : temporary) references_->RemoveLocalRef(id);
  const std::vector<ObjectID> returns = entry->returns;  // the entry is the submitter's now
  RecordChild(ctx, task_id);
  if (streaming) streams_->Add(task_id, spec.backpressure());
  if (task_out) *task_out = task_id;

  task_submitter_->AcquireSlot();
  ResolveAndSubmit(std::move(entry));
  return returns;
}

void CoreWorker::ResolveAndSubmit(std::shared_ptr<TaskEntry> entry) {
  auto spec_ptr = std::shared_ptr<proto::TaskSpec>(entry, &entry->spec);
  resolver_->Resolve(spec_ptr, [this, entry](const proto::ErrorInfo* dep_error) {
    const TaskID task = TaskID::FromBinary(entry->spec.task_id());
    if (dep_error || IsCancelledTask(task)) {
      references_->RemoveSubmittedRefs(entry->held_refs);
      const proto::ErrorInfo error = dep_error ? *dep_error : TaskCancelledInfo(entry->spec);
      StoreOutcome(*entry, nullptr, &error);
      task_submitter_->ReleaseSlot();
      return;
    }
    // Locality-aware leasing (default strategy only: the others name their nodes).
    entry->key = entry->shape_key;
    entry->lease_node = NodeID::Nil();
    if (entry->strategy.kind() == proto::SchedulingStrategy::HYBRID &&
        entry->strategy.placement_group_id().empty()) {
      entry->lease_node = LocalityNode(entry->spec, node_id_, Config::Get().locality_min_bytes());
      if (!entry->lease_node.IsNil()) entry->key += "@" + entry->lease_node.Hex();
    }
    task_submitter_->Submit(entry);
  });
}

ActorID CoreWorker::CreateActor(const internal::RemoteFunction& factory,
                                std::vector<internal::TaskArgument> args,
                                const ActorOptions& options) {
  if (shutting_down_) throw Error("lumen is shut down");
  if (!options.name.empty()) {
    proto::GetActorRequest req;
    req.set_name(options.name);
    req.set_actor_namespace(options.namespace_);
    req.set_job_id(job_id_.Binary());
    proto::GetActorReply reply;
    Status st = gcs_->CallSync(rpc::kGetActor, req, &reply, Config::Get().rpc_timeout_ms());
    if (!st.ok()) throw Error("lumen::Actor: cannot reach the control service: " + st.ToString());
    if (reply.found() && reply.info().state() != proto::DEAD) {
      throw Error("lumen::Actor: an actor named '" + options.name + "' already exists" +
                  (options.namespace_.empty() ? "" : " in namespace '" + options.namespace_ + "'"));
    }
  }
  TaskContext& ctx = CurrentContext();
  ActorID actor_id = ActorID::Of(job_id_, ctx.task_id, ++ctx.submit_counter);
  auto spec = std::make_shared<proto::TaskSpec>();
  FillSpecHeader(TaskID::ForActorCreation(actor_id), job_id_, proto::ACTOR_CREATION_TASK,
                 factory.name, factory.signature_hash, spec.get());
  *spec->mutable_caller() = address_;
  ResourceSet resources =
      ResourcesOf(options.num_cpus, options.num_gpus, options.memory, options.resources);
  *spec->mutable_strategy() = StrategyOf(options.scheduling, options.label_selector);
  InPlacementGroup(options.placement_group, options.bundle_index, "lumen::Actor", &resources,
                   spec->mutable_strategy());
  resources.ToProto(spec->mutable_resources());
  if (auto env = ResolveRuntimeEnv(options.runtime_env, "lumen::Actor")) {
    *spec->mutable_runtime_env() = *env;
  }
  auto* ac = spec->mutable_actor_creation();
  ac->set_actor_id(actor_id.Binary());
  ac->set_name(options.name);
  ac->set_max_restarts(options.max_restarts);
  ac->set_max_task_retries(options.max_task_retries);
  ac->set_max_concurrency(std::max(1, options.max_concurrency));
  ac->set_class_name(factory.class_name);
  ac->set_actor_namespace(options.namespace_);
  ac->set_detached(options.lifetime == ActorLifetime::kDetached);
  for (const auto& [group, threads] : options.concurrency_groups) {
    if (group.empty() || threads < 1) {
      throw Error("lumen::Actor: concurrency group '" + group +
                  "' needs a name and at least 1 "
                  "thread (it has " +
                  std::to_string(threads) + ")");
    }
    (*ac->mutable_concurrency_groups())[group] = threads;
  }
  std::vector<ObjectID> held, temporary;
  BuildArgs(*this, args, spec.get(), &held, &temporary);
  for (const auto& id : temporary) references_->RemoveLocalRef(id);
  // A named or detached actor is not stopped when its creator drops its handles.
  actor_submitter_->AddOwnedActor(actor_id, factory.class_name, options.max_task_retries,
                                  options.max_concurrency, held,
                                  !options.name.empty() || ac->detached());
  actor_submitter_->AddHandleRef(actor_id);
  resolver_->Resolve(spec, [this, spec, actor_id](const proto::ErrorInfo* dep_error) {
    if (dep_error) {
      actor_submitter_->FailActor(actor_id,
                                  "an argument of its factory failed: " + dep_error->message());
      return;
    }
    proto::CreateActorRequest req;
    *req.mutable_creation_task() = *spec;
    gcs_->Call(rpc::kCreateActor, req, [this, actor_id](const Status& st, std::string_view p) {
      proto::CreateActorReply reply;
      if (!st.ok() || !rpc::ParsePayload(p, &reply)) {
        actor_submitter_->FailActor(actor_id,
                                    "the control service did not accept it: " + st.ToString());
      } else if (!reply.ok()) {
        actor_submitter_->FailActor(actor_id, reply.error());
      }
    });
  });
  return actor_id;
}

std::vector<ObjectID> CoreWorker::SubmitActorCall(
    const ActorID& actor, const std::string& function_name, uint64_t signature_hash,
    std::vector<internal::TaskArgument> args, const std::string& concurrency_group, bool streaming,
    int64_t backpressure, TaskID* task_out) {
  if (shutting_down_) throw Error("lumen is shut down");
  TaskContext& ctx = CurrentContext();
  TaskID task_id = TaskID::ForActorTask(actor, ctx.task_id, ++ctx.submit_counter);
  auto entry = std::make_shared<TaskEntry>();
  proto::TaskSpec& spec = entry->spec;
  FillSpecHeader(task_id, job_id_, proto::ACTOR_TASK, function_name, signature_hash, &spec);
  spec.set_actor_id(actor.Binary());
  if (!concurrency_group.empty()) spec.set_concurrency_group(concurrency_group);
  std::vector<ObjectID> temporary;
  BuildArgs(*this, args, &spec, &entry->held_refs, &temporary);
  ObjectID ret = ObjectID::ForReturn(task_id, 0);
  if (streaming) {  // its values are read through streams_
    spec.set_num_returns(0);
    spec.set_streaming(true);
    spec.set_backpressure(std::max<int64_t>(0, backpressure));
    streams_->Add(task_id, spec.backpressure());
  } else {
    entry->returns.push_back(ret);
    references_->AddOwned(ret, 1, true);
  }
  if (task_out) *task_out = task_id;
  for (const auto& id : temporary) references_->RemoveLocalRef(id);
  RecordChild(ctx, task_id);
  task_submitter_->AcquireSlot();
  auto call = actor_submitter_->Enqueue(actor, entry);
  auto spec_ptr = std::shared_ptr<proto::TaskSpec>(entry, &entry->spec);
  resolver_->Resolve(spec_ptr, [this, actor, call](const proto::ErrorInfo* dep_error) {
    actor_submitter_->OnResolved(actor, call, dep_error);
  });
  if (streaming) return {};
  return {ret};
}

void CoreWorker::KillActor(const ActorID& actor, bool no_restart) {
  proto::KillActorRequest req;
  req.set_actor_id(actor.Binary());
  req.set_no_restart(no_restart);
  proto::Empty empty;
  Status st = gcs_->CallSync(rpc::kKillActor, req, &empty, Config::Get().rpc_timeout_ms());
  if (!st.ok()) throw Error("lumen::Kill: " + st.ToString());
}

void CoreWorker::CancelTask(const ObjectID& id, bool force, bool recursive) {
  if (id.IsPut()) {
    throw Error("lumen::Cancel: object " + id.Hex() + " was made by lumen::Put, not by a task");
  }
  if (!references_->IsOwned(id)) {
    throw Error("lumen::Cancel: object " + id.Hex() +
                " is not the result of a task this process submitted (only the submitter "
                "can cancel a task)");
  }
  const TaskID task = id.Task();
  const bool actor_call = IsActorTask(task);
  if (actor_call && force) {
    throw Error(
        "lumen::Cancel: force is not allowed for actor calls (it would kill the actor; "
        "use lumen::Kill)");
  }
  if (memory_store_.Contains(id)) return;  // finished: it keeps its result
  CancelTaskById(task, force, recursive);
}

void CoreWorker::CancelTaskById(const TaskID& task, bool force, bool recursive) {
  {
    MutexLock lock(cancel_mu_);
    if (cancelled_.insert(task).second) num_cancelled_.fetch_add(1);
  }
  if (IsActorTask(task)) {
    actor_submitter_->Cancel(task);
  } else {
    task_submitter_->Cancel(task, force, recursive);
  }
}

bool CoreWorker::IsCancelledTask(const TaskID& task) const {
  if (num_cancelled_.load(std::memory_order_acquire) == 0) return false;
  MutexLock lock(cancel_mu_);
  return cancelled_.count(task) > 0;
}

void CoreWorker::ForgetCancelled(const TaskID& task) {
  if (num_cancelled_.load(std::memory_order_acquire) == 0) return;
  MutexLock lock(cancel_mu_);
  if (cancelled_.erase(task) > 0) num_cancelled_.fetch_sub(1);
}

void CoreWorker::RecordChild(TaskContext& ctx, const TaskID& child) {
  if (&ctx == &driver_context_) return;  // only running tasks are cancelled
  MutexLock lock(ctx.children_mu);
  ctx.children.push_back(child);
}

void CoreWorker::YieldValue(internal::SerializedValue value) {
  if (!executor_) throw Error("lumen::Yield: not inside a streaming task");
  executor_->Yield(std::move(value));
}

Status CoreWorker::EndActor(const ActorID& actor, const std::string& why) {
  proto::KillActorRequest req;
  req.set_actor_id(actor.Binary());
  req.set_no_restart(true);
  req.set_reason(why);
  proto::Empty empty;
  return gcs_->CallSync(rpc::kKillActor, req, &empty, Config::Get().rpc_timeout_ms());
}

bool CoreWorker::InActor() const { return executor_ && executor_->is_actor(); }

bool CoreWorker::ActorWasRestarted() const { return InActor() && executor_->restarted(); }

ActorID CoreWorker::GetNamedActor(const std::string& name, const std::string& actor_namespace,
                                  const std::string& class_name) {
  proto::GetActorRequest req;
  req.set_name(name);
  req.set_actor_namespace(actor_namespace);
  req.set_job_id(job_id_.Binary());
  proto::GetActorReply reply;
  Status st = gcs_->CallSync(rpc::kGetActor, req, &reply, Config::Get().rpc_timeout_ms());
  if (!st.ok()) throw Error("lumen::GetActor: cannot reach the control service: " + st.ToString());
  if (!reply.found() || reply.info().state() == proto::DEAD) return ActorID::Nil();
  if (!class_name.empty() && reply.info().class_name() != class_name) {
    throw TypeError("lumen::GetActor: the actor named '" + name + "' is a " +
                    reply.info().class_name() + ", not a " + class_name);
  }
  ActorID id = ActorID::FromBinary(reply.info().actor_id());
  actor_submitter_->EnsureKnown(id);
  actor_submitter_->AddHandleRef(id);
  return id;
}

void CoreWorker::AddActorHandleRef(const ActorID& actor) { actor_submitter_->AddHandleRef(actor); }

NodeID CoreWorker::ActorNode(const ActorID& actor) { return actor_submitter_->Node(actor); }

void CoreWorker::RemoveActorHandleRef(const ActorID& actor) {
  if (!shutting_down_) actor_submitter_->RemoveHandleRef(actor);
}

std::string CoreWorker::PackActorHandle(const ActorID& actor) {
  actor_submitter_->MarkExported(actor);
  return actor.Binary();
}

ActorID CoreWorker::UnpackActorHandle(std::string_view packed) {
  if (packed.size() != ActorID::kSize) throw TypeError("malformed ActorHandle inside a value");
  ActorID id = ActorID::FromBinary(packed);
  actor_submitter_->EnsureKnown(id);
  actor_submitter_->AddHandleRef(id);
  actor_submitter_->MarkExported(id);  // not the creator's to stop
  return id;
}

}  // namespace lumen::core
