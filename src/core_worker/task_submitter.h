// Submits normal tasks: leases workers from the node daemon per resource shape, pushes tasks
// straight to them over long-lived connections (several in flight per worker, batched), keeps
// idle leases briefly for the next tasks, retries tasks whose worker died.
//
// Thread safety: thread-safe. Completion work (storing results, waking dependents) runs
// outside the submitter's lock.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.pb.h"
#include "common/resources.h"
#include "common/rpc/connection.h"
#include "common/thread_annotations.h"
#include "core_worker.pb.h"
#include "lumen/ids.h"
#include "node.pb.h"

namespace lumen::core {

class CoreWorker;

struct TaskEntry {
  proto::TaskSpec spec;
  std::string wire;  // spec serialized (cleared when the spec changes, e.g. on retry)
  std::vector<ObjectID> returns;
  std::vector<ObjectID> held_refs;  // submitted-task references released at completion
  int retries_left = 0;
  ResourceSet resources;
  proto::SchedulingStrategy strategy;
  // Locality-aware leasing: the node holding most of the arguments' bytes, when another than
  // this process's (nil: lease from the local node).
  NodeID lease_node;
  std::string shape_key;          // resources and strategy
  std::string key;                // shape and lease node: tasks of one key share leases
  double* avg_exec_us = nullptr;  // the submitter's running average for this function
  int memory_kills = 0;           // attempts killed by a node's memory monitor
  std::shared_ptr<const proto::RuntimeEnv> runtime_env;  // null: none (part of shape_key)
};

// Where `spec`'s arguments in shared memory live: the node with most of their bytes, when it is
// not `local` and holds at least `min_bytes` (else nil).
NodeID LocalityNode(const proto::TaskSpec& spec, const NodeID& local, int64_t min_bytes);

// Whether a task takes an argument in shared memory (a retry must look where it is now).
bool HasPlasmaArgs(const proto::TaskSpec& spec);

// Appends a task to a PushTasksRequest payload as one `tasks` entry (serialized once).
void AppendTask(TaskEntry& task, std::string* payload);
// Header of a PushTasksRequest: lease, GPUs and the caller shared by its tasks.
std::string PushHeader(uint64_t lease_id, const std::vector<int>& gpus,
                       const proto::Address& caller);

class TaskSubmitter {
 public:
  explicit TaskSubmitter(CoreWorker& cw);

  // Blocks while the owner has too many unfinished tasks (submission backpressure). A blocked
  // submitter resumes once the count has fallen by an eighth of the limit, so that a driver
  // streaming far more tasks than the limit is woken once per batch of completions, not once
  // per completion.
  void AcquireSlot();
  // Releases a slot taken by AcquireSlot or TakeSlot (task finished or failed before
  // submission).
  void ReleaseSlot();
  // Takes a slot without waiting (a re-run to re-create lost objects: never blocked).
  void TakeSlot();

  // Queues a task whose dependencies are resolved.
  void Submit(std::shared_ptr<TaskEntry> task);
  void HandleResults(const rpc::ConnectionPtr& conn, proto::TaskResults& results);
  void OnConnectionClosed(const rpc::ConnectionPtr& conn, const Status& reason);
  // lumen::Cancel (CoreWorker::CancelTask has recorded it): a task queued here ends with
  // TaskCancelledError; one pushed to a worker is cancelled there. Not here (being resolved, or
  // done): nothing to do.
  void Cancel(const TaskID& task, bool force, bool recursive);
  // The node daemon needs resources back: return every idle lease now.
  void ReleaseIdleLeases();
  void Shutdown();

  size_t NumPending() const;

 private:
  struct LeasedWorker {
    uint64_t lease_id = 0;
    rpc::ConnectionPtr daemon;  // the node daemon that granted it (gets it back)
    proto::Address address;
    WorkerID worker;
    rpc::ConnectionPtr conn;
    std::vector<int> gpus;
    int in_flight = 0;
    int not_short_in_flight = 0;  // in-flight tasks not known to be short: nothing queues behind
    std::deque<TaskID> order;     // pushed tasks, oldest first: the worker runs them in order
    uint64_t idle_timer = 0;
    std::string key;
  };
  struct KeyState {
    ResourceSet resources;
    proto::SchedulingStrategy strategy;
    NodeID lease_node;
    bool retriable = false;  // its tasks have max_retries > 0 (part of the key)
    std::shared_ptr<const proto::RuntimeEnv> runtime_env;  // (part of the key)
    std::deque<std::shared_ptr<TaskEntry>> queue;
    std::vector<uint64_t> leases;
    int lease_requests = 0;
  };
  struct InFlight {
    std::shared_ptr<TaskEntry> task;
    uint64_t lease_id;
    bool short_task;  // known short when pushed (counted apart from not_short_in_flight)
  };
  struct Completion {
    std::shared_ptr<TaskEntry> task;
    proto::TaskResult result;  // success or application error
    proto::ErrorInfo error;    // when failed_by_system
    bool failed_by_system = false;
  };

  void PumpLocked(const std::string& key) LUMEN_REQUIRES(mu_);
  // Puts a task back at the front of its queue; records its key in `keys` (to pump).
  void RequeueFrontLocked(const std::shared_ptr<TaskEntry>& task, std::vector<std::string>* keys)
      LUMEN_REQUIRES(mu_);
  int DepthFor(TaskEntry& task) LUMEN_REQUIRES(mu_);
  void DrainIncoming();
  // Pumps `key` once the I/O thread has handled what is readable now (one batch, not one
  // push per finished task).
  void DeferPumpLocked(const std::string& key) LUMEN_REQUIRES(mu_);
  // Asks `daemon` (the local node daemon unless a node spilled the request back to another)
  // for a lease for `key`'s shape.
  void RequestLeaseLocked(const std::string& key) LUMEN_REQUIRES(mu_);
  void SendLeaseRequestLocked(const std::string& key, const rpc::ConnectionPtr& daemon,
                              int spillback_count) LUMEN_REQUIRES(mu_);
  void OnLeaseReply(const std::string& key, const rpc::ConnectionPtr& daemon, int spillback_count,
                    const Status& st, std::string_view payload);
  void ReturnLeaseLocked(uint64_t lease_id, bool kill_worker) LUMEN_REQUIRES(mu_);
  void ScheduleIdleReturnLocked(LeasedWorker& lw) LUMEN_REQUIRES(mu_);
  void FailQueuedLocked(const std::string& key, const std::string& message,
                        std::vector<Completion>* out) LUMEN_REQUIRES(mu_);
  // `tasks[0]` was running when the worker died; the others had not started and are retried
  // without using up an attempt. `daemon` granted the worker's lease: it says why it died.
  void HandleWorkerFailure(std::vector<std::shared_ptr<TaskEntry>> tasks, WorkerID worker,
                           rpc::ConnectionPtr daemon, const Status& reason);
  // Sends a task whose worker died off again: where its arguments now are when it has any in
  // shared memory, else to the front of its queue (`keys` collects what to pump).
  void RetryLocked(std::shared_ptr<TaskEntry> task, std::vector<std::string>* keys,
                   std::vector<std::shared_ptr<TaskEntry>>* relocate) LUMEN_REQUIRES(mu_);
  void Complete(std::vector<Completion>& done);
  // A task ended by lumen::Cancel.
  static Completion Cancelled(std::shared_ptr<TaskEntry> task);

  CoreWorker& cw_;
  const int max_in_flight_;
  const int64_t max_pending_;

  mutable Mutex mu_;
  std::unordered_map<std::string, KeyState> keys_ LUMEN_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, LeasedWorker> leases_ LUMEN_GUARDED_BY(mu_);
  std::unordered_map<TaskID, InFlight> in_flight_ LUMEN_GUARDED_BY(mu_);
  // Moving average of execution time per function: only short tasks are pipelined, so that
  // a quick task never waits behind a long one while a CPU is free.
  std::unordered_map<std::string, double> avg_exec_us_ LUMEN_GUARDED_BY(mu_);
  std::vector<std::string> deferred_keys_ LUMEN_GUARDED_BY(mu_);
  bool deferred_posted_ LUMEN_GUARDED_BY(mu_) = false;
  bool shutdown_ LUMEN_GUARDED_BY(mu_) = false;

  // Submitted tasks waiting for the I/O thread (kept apart from mu_ so that submitting never
  // waits for a batch being sent).
  Mutex incoming_mu_;
  std::vector<std::shared_ptr<TaskEntry>> incoming_ LUMEN_GUARDED_BY(incoming_mu_);
  bool pump_scheduled_ LUMEN_GUARDED_BY(incoming_mu_) = false;

  mutable Mutex slot_mu_;
  CondVar slot_cv_;
  int64_t pending_ LUMEN_GUARDED_BY(slot_mu_) = 0;
  int slot_waiters_ LUMEN_GUARDED_BY(slot_mu_) = 0;
  const int64_t resume_at_;  // a blocked submitter resumes at this many pending tasks
};

}  // namespace lumen::core
