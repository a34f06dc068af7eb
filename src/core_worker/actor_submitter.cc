#include "core_worker/actor_submitter.h"

#include <algorithm>

#include "common/config.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"
#include "core_worker/core_worker.h"
#include "core_worker/peer_connections.h"
#include "core_worker/task_spec.h"
#include "gcs.pb.h"

namespace lumen::core {

void ActorSubmitter::AddOwnedActor(const ActorID& id, const std::string& class_name,
                                   int max_task_retries, int max_concurrency,
                                   std::vector<ObjectID> creation_refs, bool named) {
  MutexLock lock(mu_);
  Actor& a = actors_[id];
  a.id = id;
  a.class_name = class_name;
  a.state = proto::PENDING_CREATION;
  a.max_task_retries = max_task_retries;
  a.max_concurrency = std::max(1, max_concurrency);
  a.owned = true;
  a.subscribed = true;  // the control service subscribes the creator
  a.named = named;
  a.creation_refs = std::move(creation_refs);
}

void ActorSubmitter::EnsureKnown(const ActorID& id) {
  {
    MutexLock lock(mu_);
    Actor& a = actors_[id];
    if (a.subscribed) return;
    a.id = id;
    a.subscribed = true;
    a.state = proto::PENDING_CREATION;
  }
  Subscribe(id);
}

void ActorSubmitter::Resubscribe() {
  std::vector<ActorID> ids;
  {
    MutexLock lock(mu_);
    for (const auto& [id, a] : actors_) {
      if (a.subscribed && a.state != proto::DEAD) ids.push_back(id);
    }
  }
  for (const auto& id : ids) Subscribe(id);
}

void ActorSubmitter::Subscribe(const ActorID& id) {
  proto::SubscribeActorRequest req;
  req.set_actor_id(id.Binary());
  cw_.gcs()->Call(rpc::kSubscribeActor, req, [this, id](const Status& st, std::string_view p) {
    proto::GetActorReply reply;
    if (!st.ok() || !rpc::ParsePayload(p, &reply)) {
      FailActor(id, "cannot reach the control service: " + st.ToString());
      return;
    }
    if (!reply.found()) {
      FailActor(id, "the control service does not know this actor");
      return;
    }
    {
      MutexLock lock(mu_);
      Actor& a = actors_[id];
      a.class_name = reply.info().class_name();
      a.max_task_retries = reply.info().max_task_retries();
      a.max_concurrency = std::max(1, reply.info().max_concurrency());
    }
    proto::ActorStateUpdate u;
    u.set_actor_id(reply.info().actor_id());
    u.set_state(reply.info().state());
    *u.mutable_address() = reply.info().address();
    u.set_incarnation(reply.info().incarnation());
    u.set_death_cause(reply.info().death_cause());
    if (reply.info().has_creation_error()) {
      *u.mutable_creation_error() = reply.info().creation_error();
    }
    HandleUpdate(u);
  });
}

std::shared_ptr<ActorCall> ActorSubmitter::Enqueue(const ActorID& id,
                                                   std::shared_ptr<TaskEntry> task) {
  bool subscribe = false;
  auto call = std::make_shared<ActorCall>();
  {
    MutexLock lock(mu_);
    Actor& a = actors_[id];
    if (!a.subscribed) {
      a.id = id;
      a.subscribed = true;
      subscribe = true;
    }
    task->spec.set_sequence_number(a.seq++);
    call->task = std::move(task);
    a.queued.push_back(call);
  }
  if (subscribe) Subscribe(id);
  return call;
}

void ActorSubmitter::OnResolved(const ActorID& id, const std::shared_ptr<ActorCall>& call,
                                const proto::ErrorInfo* dep_error) {
  std::vector<Completion> done;
  {
    MutexLock lock(mu_);
    call->resolved = true;
    if (dep_error) {
      call->dep_failed = true;
      call->dep_error = *dep_error;
    }
    auto it = actors_.find(id);
    if (it != actors_.end()) SendReadyLocked(it->second, &done);
  }
  Complete(done);
}

std::string ActorSubmitter::DeathMessage(const Actor& a) const {
  std::string who = "actor " + (a.class_name.empty() ? std::string("") : a.class_name + " ") +
                    a.id.Hex().substr(0, 12);
  if (a.has_creation_error) {
    return who + " could not be created: its factory " + a.creation_error.function_name() +
           " threw " + a.creation_error.remote_type() + ": " + a.creation_error.message();
  }
  return who + " is dead: " + (a.death_cause.empty() ? "unknown cause" : a.death_cause);
}

void ActorSubmitter::FailLocked(Actor& a, std::shared_ptr<ActorCall> call, const std::string& why,
                                std::vector<Completion>* done) {
  Completion c;
  c.task = call->task;
  c.failed = true;
  c.error.set_type(proto::ACTOR_DIED);
  c.error.set_function_name(call->task->spec.function_name());
  c.error.set_message("call " + call->task->spec.function_name() + " failed: " + why);
  done->push_back(std::move(c));
}

std::vector<ActorSubmitter::Interrupted> ActorSubmitter::TakeInFlightLocked(Actor& a) {
  std::vector<Interrupted> calls;
  calls.reserve(a.in_flight.size());
  for (auto& [tid, call] : a.in_flight) calls.push_back({call, ""});
  a.in_flight.clear();
  std::sort(calls.begin(), calls.end(), [](const Interrupted& x, const Interrupted& y) {
    return x.call->task->spec.sequence_number() < y.call->task->spec.sequence_number();
  });
  const size_t running = static_cast<size_t>(a.max_concurrency);
  for (size_t i = 0; i < calls.size(); ++i) {
    calls[i].state = i < running ? "while running it"
                                 : "before it started (queued behind " + std::to_string(i) +
                                       " earlier call" + (i == 1 ? "" : "s") + ")";
  }
  return calls;
}

void ActorSubmitter::SendReadyLocked(Actor& a, std::vector<Completion>* done) {
  if (a.state == proto::DEAD) {
    while (!a.queued.empty()) {
      FailLocked(a, a.queued.front(), DeathMessage(a), done);
      a.queued.pop_front();
    }
    return;
  }
  if (a.state == proto::ALIVE && !a.conn) {
    auto conn = cw_.peers().Connect(a.address);
    if (conn.ok()) a.conn = *conn;
  }
  std::string batch;
  while (!a.queued.empty() && a.queued.front()->resolved) {
    std::shared_ptr<ActorCall> call = a.queued.front();
    if (call->dep_failed) {
      a.queued.pop_front();
      Completion c;
      c.task = call->task;
      c.failed = true;
      c.error = call->dep_error;
      done->push_back(std::move(c));
      continue;
    }
    if (a.state != proto::ALIVE || !a.conn) break;
    a.queued.pop_front();
    if (batch.empty()) batch = PushHeader(0, {}, cw_.address());
    AppendTask(*call->task, &batch);
    a.in_flight[TaskID::FromBinary(call->task->spec.task_id())] = call;
  }
  if (!batch.empty()) a.conn->SendPrefixed(rpc::kPushTasks, std::move(batch));
}

void ActorSubmitter::HandleUpdate(const proto::ActorStateUpdate& u) {
  std::vector<Completion> done;
  {
    MutexLock lock(mu_);
    auto it = actors_.find(ActorID::FromBinary(u.actor_id()));
    if (it == actors_.end()) return;
    Actor& a = it->second;
    if (a.state == proto::DEAD) return;
    if (a.lost_timer) {
      cw_.io()->CancelTimer(a.lost_timer);
      a.lost_timer = 0;
    }
    switch (u.state()) {
      case proto::ALIVE:
        if (u.incarnation() > a.incarnation || !a.conn) {
          a.incarnation = u.incarnation();
          a.address = u.address();
          a.state = proto::ALIVE;
          a.conn.reset();
          auto conn = cw_.peers().Connect(a.address);
          if (conn.ok()) {
            a.conn = *conn;
          } else {
            LUMEN_LOG(WARNING) << "cannot reach actor " << a.id.Hex() << ": " << conn.status();
          }
        }
        break;
      case proto::RESTARTING: {
        a.state = proto::RESTARTING;
        a.conn.reset();
        // Ray's semantics: every call the old instance had not answered, running or queued
        // there, is re-sent to the new instance within max_task_retries, in caller order.
        std::vector<std::shared_ptr<ActorCall>> retry;
        for (auto& [call, state] : TakeInFlightLocked(a)) {
          if (cw_.IsCancelledTask(TaskID::FromBinary(call->task->spec.task_id()))) {
            done.push_back(Cancelled(call->task));  // not re-sent
            continue;
          }
          if (a.max_task_retries < 0 || call->resends < a.max_task_retries) {
            ++call->resends;
            call->task->spec.set_attempt(call->task->spec.attempt() + 1);
            call->task->wire.clear();
            retry.push_back(call);
          } else {
            FailLocked(a, call,
                       "the actor died " + state + " (" + u.death_cause() +
                           "); it is restarting, later calls will run on the new instance" +
                           (a.max_task_retries > 0
                                ? "; this call was already re-sent " +
                                      std::to_string(call->resends) + " time(s) (max_task_retries)"
                                : std::string("; set max_task_retries to re-send such calls")),
                       &done);
          }
        }
        for (auto r = retry.rbegin(); r != retry.rend(); ++r) a.queued.push_front(*r);
        break;
      }
      case proto::DEAD:
        a.state = proto::DEAD;
        a.death_cause = u.death_cause();
        if (u.has_creation_error() && !u.creation_error().message().empty()) {
          a.has_creation_error = true;
          a.creation_error = u.creation_error();
        }
        a.conn.reset();
        for (auto& [call, state] : TakeInFlightLocked(a)) {
          FailLocked(a, call, DeathMessage(a) + " (it died " + state + ")", &done);
        }
        cw_.references().RemoveSubmittedRefs(a.creation_refs);
        a.creation_refs.clear();
        break;
      default:
        break;
    }
    SendReadyLocked(a, &done);
  }
  Complete(done);
}

ActorSubmitter::Completion ActorSubmitter::Cancelled(std::shared_ptr<TaskEntry> task) {
  Completion c;
  c.error = TaskCancelledInfo(task->spec);
  c.task = std::move(task);
  c.failed = true;
  return c;
}

void ActorSubmitter::Cancel(const TaskID& task) {
  std::vector<Completion> done;
  {
    MutexLock lock(mu_);
    auto it = actors_.find(task.Actor());
    if (it == actors_.end()) return;
    Actor& a = it->second;
    const std::string wire_id = task.Binary();
    auto q = std::find_if(a.queued.begin(), a.queued.end(),
                          [&](const auto& call) { return call->task->spec.task_id() == wire_id; });
    if (q != a.queued.end()) {
      done.push_back(Cancelled((*q)->task));
      a.queued.erase(q);
    } else if (a.in_flight.count(task) && a.conn) {
      proto::CancelTaskRequest req;
      req.set_task_id(wire_id);
      req.set_recursive(true);
      a.conn->Send(rpc::kCancelTask, req);
    }
  }
  Complete(done);
}

void ActorSubmitter::HandleResults(proto::TaskResults& results) {
  std::vector<Completion> done;
  {
    MutexLock lock(mu_);
    for (auto& r : *results.mutable_results()) {
      TaskID tid = TaskID::FromBinary(r.task_id());
      auto it = actors_.find(tid.Actor());
      if (it == actors_.end()) continue;
      Actor& a = it->second;
      auto call = a.in_flight.find(tid);
      if (call == a.in_flight.end()) continue;
      Completion c;
      c.task = call->second->task;
      c.result.Swap(&r);
      a.in_flight.erase(call);
      done.push_back(std::move(c));
      MaybeKillLocked(a);
    }
  }
  Complete(done);
}

void ActorSubmitter::OnConnectionClosed(const rpc::ConnectionPtr& conn, const Status& reason) {
  MutexLock lock(mu_);
  for (auto& [id, a] : actors_) {
    if (a.conn != conn) continue;
    a.conn.reset();
    if (a.in_flight.empty() || a.lost_timer) continue;
    // The control service explains the death (restart or dead) in a moment; if it does not,
    // fail the interrupted calls with what we know.
    ActorID aid = id;
    std::string why = reason.message();
    a.lost_timer = cw_.io()->RunAfter(
        std::chrono::milliseconds(Config::Get().actor_death_info_wait_ms()), [this, aid, why] {
          std::vector<Completion> done;
          {
            MutexLock lock(mu_);
            auto it = actors_.find(aid);
            if (it == actors_.end()) return;
            Actor& a = it->second;
            a.lost_timer = 0;
            for (auto& [call, state] : TakeInFlightLocked(a)) {
              FailLocked(a, call, "lost the connection to the actor " + state + " (" + why + ")",
                         &done);
            }
          }
          Complete(done);
        });
  }
}

void ActorSubmitter::FailActor(const ActorID& id, const std::string& cause) {
  proto::ActorStateUpdate u;
  u.set_actor_id(id.Binary());
  u.set_state(proto::DEAD);
  u.set_death_cause(cause);
  HandleUpdate(u);
}

void ActorSubmitter::AddHandleRef(const ActorID& id) {
  MutexLock lock(mu_);
  ++actors_[id].handles;
}

void ActorSubmitter::RemoveHandleRef(const ActorID& id) {
  MutexLock lock(mu_);
  auto it = actors_.find(id);
  if (it == actors_.end()) return;
  Actor& a = it->second;
  if (--a.handles > 0) return;
  if (a.owned && !a.exported && !a.named && !shutdown_) {
    a.kill_when_idle = true;
    MaybeKillLocked(a);
  }
}

void ActorSubmitter::MarkExported(const ActorID& id) {
  MutexLock lock(mu_);
  actors_[id].exported = true;
}

std::string ActorSubmitter::ClassName(const ActorID& id) {
  MutexLock lock(mu_);
  auto it = actors_.find(id);
  return it == actors_.end() ? "" : it->second.class_name;
}

NodeID ActorSubmitter::Node(const ActorID& id) {
  MutexLock lock(mu_);
  auto it = actors_.find(id);
  if (it == actors_.end() || it->second.state != proto::ALIVE) return NodeID::Nil();
  return NodeID::FromBinary(it->second.address.node_id());
}

void ActorSubmitter::MaybeKillLocked(Actor& a) {
  if (!a.kill_when_idle || !a.queued.empty() || !a.in_flight.empty() || a.handles > 0) return;
  if (a.state == proto::DEAD) return;
  a.kill_when_idle = false;
  proto::KillActorRequest req;
  req.set_actor_id(a.id.Binary());
  req.set_no_restart(true);
  req.set_reason("all its handles were dropped");
  cw_.gcs()->Call(rpc::kKillActor, req, [](const Status&, std::string_view) {});
}

void ActorSubmitter::Complete(std::vector<Completion>& done) {
  for (auto& c : done) {
    cw_.references().RemoveSubmittedRefs(c.task->held_refs);
    cw_.StoreOutcome(*c.task, c.failed ? nullptr : &c.result, c.failed ? &c.error : nullptr);
    cw_.task_submitter().ReleaseSlot();
  }
}

void ActorSubmitter::Shutdown() {
  MutexLock lock(mu_);
  shutdown_ = true;
}

}  // namespace lumen::core
