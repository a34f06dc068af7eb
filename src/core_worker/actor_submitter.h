// Calls to actors (caller side). Calls from this process to one actor are sent in submission
// order over a direct connection to the actor's worker, even when earlier calls wait for
// ObjectRef arguments. Follows the actor's life through the control service: queues calls
// while it is being created or restarted, fails them with ActorDiedError once it is dead.
//
// Thread safety: thread-safe; every actor's state is guarded by mu_. Completion work (storing
// results, releasing refs) runs outside the lock.
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/thread_annotations.h"
#include "core_worker.pb.h"
#include "core_worker/task_submitter.h"
#include "lumen/ids.h"

namespace lumen::core {

class CoreWorker;

struct ActorCall {
  std::shared_ptr<TaskEntry> task;
  int resends = 0;  // times re-sent to a restarted instance (bounded by max_task_retries)
  bool resolved = false;
  bool dep_failed = false;
  proto::ErrorInfo dep_error;
};

class ActorSubmitter {
 public:
  explicit ActorSubmitter(CoreWorker& cw) : cw_(cw) {}

  // An actor created by this process; `creation_refs` stay held until it dies. Calls
  // interrupted by a restart (running or queued at the actor) are re-sent to the new instance
  // up to `max_task_retries` times each (-1: without limit), in submission order.
  void AddOwnedActor(const ActorID& id, const std::string& class_name, int max_task_retries,
                     int max_concurrency, std::vector<ObjectID> creation_refs, bool named);
  // lumen::Cancel of an actor call (CoreWorker::CancelTask has recorded it): removed when not
  // sent yet (TaskCancelledError); else the actor is asked to drop or stop it.
  void Cancel(const TaskID& task);
  // An actor known from a handle or a name: subscribe to its state.
  void EnsureKnown(const ActorID& id);
  // The control service restarted: subscribes again to every actor not known dead (the reply
  // brings any change missed meanwhile).
  void Resubscribe();
  // Queues a call in submission order; it is sent once resolved and the actor is alive.
  std::shared_ptr<ActorCall> Enqueue(const ActorID& id, std::shared_ptr<TaskEntry> task);
  void OnResolved(const ActorID& id, const std::shared_ptr<ActorCall>& call,
                  const proto::ErrorInfo* dep_error);

  void HandleUpdate(const proto::ActorStateUpdate& update);
  void HandleResults(proto::TaskResults& results);
  void OnConnectionClosed(const rpc::ConnectionPtr& conn, const Status& reason);
  // The creation request could not be accepted (e.g. the name is taken).
  void FailActor(const ActorID& id, const std::string& cause);

  // Handle accounting for automatic termination of unnamed actors.
  void AddHandleRef(const ActorID& id);
  void RemoveHandleRef(const ActorID& id);
  void MarkExported(const ActorID& id);
  std::string ClassName(const ActorID& id);
  NodeID Node(const ActorID& id);

  void Shutdown();

 private:
  struct Actor {
    ActorID id;
    std::string class_name;
    int state = 0;  // proto::ActorState
    uint64_t incarnation = 0;
    proto::Address address;
    rpc::ConnectionPtr conn;
    std::deque<std::shared_ptr<ActorCall>> queued;
    std::unordered_map<TaskID, std::shared_ptr<ActorCall>> in_flight;
    std::string death_cause;
    proto::ErrorInfo creation_error;
    bool has_creation_error = false;
    int max_task_retries = 0;
    int max_concurrency = 1;  // calls the actor runs at once: the rest of in_flight wait there
    uint64_t seq = 0;
    bool owned = false;
    bool subscribed = false;
    bool exported = false;
    bool named = false;
    int handles = 0;
    bool kill_when_idle = false;
    std::vector<ObjectID> creation_refs;
    uint64_t lost_timer = 0;
  };
  struct Completion {
    std::shared_ptr<TaskEntry> task;
    proto::TaskResult result;
    proto::ErrorInfo error;
    bool failed = false;
  };

  void SendReadyLocked(Actor& a, std::vector<Completion>* done) LUMEN_REQUIRES(mu_);
  void FailLocked(Actor& a, std::shared_ptr<ActorCall> call, const std::string& why,
                  std::vector<Completion>* done) LUMEN_REQUIRES(mu_);
  // The calls sent to the actor and not answered, in submission order, each with what it was
  // doing there: the first max_concurrency were running, the rest queued behind them.
  struct Interrupted {
    std::shared_ptr<ActorCall> call;
    std::string state;  // "while running it" / "before it started (queued behind N calls)"
  };
  std::vector<Interrupted> TakeInFlightLocked(Actor& a) LUMEN_REQUIRES(mu_);
  std::string DeathMessage(const Actor& a) const;
  void MaybeKillLocked(Actor& a) LUMEN_REQUIRES(mu_);
  void Complete(std::vector<Completion>& done);
  // A call ended by lumen::Cancel.
  static Completion Cancelled(std::shared_ptr<TaskEntry> task);
  void Subscribe(const ActorID& id);

  CoreWorker& cw_;
  Mutex mu_;
  std::unordered_map<ActorID, Actor> actors_ LUMEN_GUARDED_BY(mu_);
  bool shutdown_ LUMEN_GUARDED_BY(mu_) = false;
};

}  // namespace lumen::core
