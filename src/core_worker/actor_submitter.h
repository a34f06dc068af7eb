// Calls to actors (caller side). Calls from this process to one actor are sent in submission
// order over a direct connection to the actor's worker, even when earlier calls wait for
// ObjectRef arguments. Follows the actor's life through the control service: queues calls
// while it is being created or restarted, fails them with ActorDiedError once it is dead.
//
// Thread safety: thread-safe. Completion work runs outside the lock.
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "core_worker.pb.h"
#include "core_worker/task_submitter.h"
#include "lumen/ids.h"

namespace lumen::core {

class CoreWorker;

struct ActorCall {
  std::shared_ptr<TaskEntry> task;
  bool resolved = false;
  bool dep_failed = false;
  proto::ErrorInfo dep_error;
};

class ActorSubmitter {
 public:
  explicit ActorSubmitter(CoreWorker& cw) : cw_(cw) {}

  // An actor created by this process; `creation_refs` stay held until it dies.
  void AddOwnedActor(const ActorID& id, const std::string& class_name, int max_task_retries,
                     std::vector<ObjectID> creation_refs, bool named);
  // An actor known from a handle or a name: subscribe to its state.
  void EnsureKnown(const ActorID& id);
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

  void SendReadyLocked(Actor& a, std::vector<Completion>* done);
  void FailLocked(Actor& a, std::shared_ptr<ActorCall> call, const std::string& why,
                  std::vector<Completion>* done);
  std::string DeathMessage(const Actor& a) const;
  void MaybeKillLocked(Actor& a);
  void Complete(std::vector<Completion>& done);
  void Subscribe(const ActorID& id);

  CoreWorker& cw_;
  std::mutex mu_;
  std::unordered_map<ActorID, Actor> actors_;
  bool shutdown_ = false;
};

}  // namespace lumen::core
