// The core worker: the library inside every driver and worker process. It owns objects
// (reference counts, values, locations), submits tasks to leased workers and calls to actors,
// executes tasks pushed to it (workers), and reads large objects zero-copy from the node's
// shared-memory store.
//
// Threads: one I/O loop thread ("core-io") runs every connection; user threads call the API;
// workers execute tasks on their main thread (and an actor's thread pool).
// Thread safety: all public methods are thread-safe unless noted.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/reconnecting_client.h"
#include "common/rpc/server.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "core_worker/memory_store.h"
#include "core_worker/reference_counter.h"
#include "gcs.pb.h"
#include "lumen/ids.h"
#include "lumen/internal/runtime.h"
#include "lumen/options.h"
#include "node.pb.h"
#include "object_store/store_client.h"

namespace lumen::core {

class TaskSubmitter;
class ActorSubmitter;
class RuntimeEnvs;
class GeneratorStreams;
class TaskExecutor;
class DependencyResolver;
class PeerConnections;
class BorrowerProtocol;
class OwnerFetch;
class ObjectRecovery;
struct TaskEntry;

struct CoreWorkerOptions {
  bool is_driver = true;
  // Driver: print what the job's workers print, prefixed with where (LUMEN_LOG_TO_DRIVER).
  bool log_to_driver = true;
  std::string node_address;  // unix:<path> of the local node daemon
  std::string gcs_address;
  std::string token;
  std::string session_dir;
  std::string node_ip = "127.0.0.1";  // listen on and advertise it (the node's address)
  int min_port = 0;                   // listen in [min_port, max_port]; 0: any free port
  int max_port = 0;
  WorkerID worker_id;  // workers: from the environment
  JobID job_id;        // workers: from the environment
  std::string binary;  // driver: executable workers run
  // Driver of a submitted job: the program's content hash; every node runs that exact binary
  // (node/driver_runner.h sets LUMEN_JOB_BINARY_HASH).
  std::string binary_hash;
  std::vector<std::string> argv;
  std::string cwd;
  int prestart_workers = 0;
  std::string actor_namespace;  // driver: of the job's named actors ("": the job's own)
  // Worker: the runtime environment it was started in (LUMEN_RUNTIME_ENV): what the tasks it
  // submits inherit.
  std::shared_ptr<const proto::RuntimeEnv> runtime_env;
};

// Per-thread submission context: IDs of nested tasks and puts derive from the running task.
struct TaskContext {
  TaskID task_id;
  std::atomic<uint64_t> submit_counter{0};
  std::atomic<uint32_t> put_counter{0};
  // Borrowed refs this task deserialized whose owner was asked to register it (task thread).
  std::vector<ObjectID> borrow_registrations;
  // lumen::Cancel asked this task to stop (set by the I/O thread, read by lumen::IsCancelled).
  std::atomic<bool> cancelled{false};
  // Each task and actor call it submitted: cancelled with it (recursive).
  Mutex children_mu;
  std::vector<TaskID> children LUMEN_GUARDED_BY(children_mu);
};

class CoreWorker {
 public:
  static StatusOr<std::unique_ptr<CoreWorker>> Create(CoreWorkerOptions options);
  ~CoreWorker();

  // Stops submitting, tells the cluster the job ended (drivers), closes connections.
  void Shutdown();

  // ---- API (see lumen/internal/runtime.h) ----
  ObjectID Put(internal::SerializedValue value);
  // Throws typed lumen errors.
  std::vector<internal::ValueView> Get(const std::vector<ObjectID>& ids, int64_t timeout_ms);
  std::vector<bool> Wait(const std::vector<ObjectID>& ids, size_t num_returns, int64_t timeout_ms,
                         bool fetch_local);
  void OnObjectReady(const ObjectID& id, std::function<void()> cb);
  std::vector<ObjectID> SubmitTask(const std::string& function_name, uint64_t signature_hash,
                                   std::vector<internal::TaskArgument> args,
                                   const TaskOptions& options, int num_returns = 1);
  ActorID CreateActor(const internal::RemoteFunction& factory,
                      std::vector<internal::TaskArgument> args, const ActorOptions& options);
  // A call of `function_name` (signature checked when `signature_hash` is not 0) in the
  // actor's `concurrency_group` (empty: the method's or the default).
  std::vector<ObjectID> SubmitActorCall(const ActorID& actor, const std::string& function_name,
                                        uint64_t signature_hash,
                                        std::vector<internal::TaskArgument> args,
                                        const std::string& concurrency_group = "",
                                        bool streaming = false, int64_t backpressure = 0,
                                        TaskID* task_out = nullptr);
  void KillActor(const ActorID& actor, bool no_restart);
  // lumen::Cancel: see lumen/object_ref.h. Throws lumen::Error for a task this process did not
  // submit, and for `force` on an actor call.
  void CancelTask(const ObjectID& id, bool force, bool recursive);
  // The same by task (a stream dropped, a cancelled task's children).
  void CancelTaskById(const TaskID& task, bool force, bool recursive);
  // A streaming task (lumen::Yield), read through streams().
  TaskID SubmitStreamingTask(const internal::RemoteFunction& fn,
                             std::vector<internal::TaskArgument> args, const TaskOptions& options);
  // Inside a streaming task: its next value.
  void YieldValue(internal::SerializedValue value);
  // Whether lumen::Cancel was called for `task` (not finished yet): it must not run or retry.
  bool IsCancelledTask(const TaskID& task) const;
  // `task` finished (its results or error stored): forgets that it was cancelled.
  void ForgetCancelled(const TaskID& task);
  // lumen::ExitActor() in this worker's actor: dead for good with `why`.
  Status EndActor(const ActorID& actor, const std::string& why);
  // This worker hosts an actor (and it is a restart of it).
  bool InActor() const;
  bool ActorWasRestarted() const;
  ActorID GetNamedActor(const std::string& name, const std::string& actor_namespace,
                        const std::string& class_name);
  NodeID ActorNode(const ActorID& actor);
  void AddActorHandleRef(const ActorID& actor);
  void RemoveActorHandleRef(const ActorID& actor);
  std::string PackActorHandle(const ActorID& actor);
  ActorID UnpackActorHandle(std::string_view packed);
  std::string PackRef(const ObjectID& id);
  ObjectID UnpackRef(std::string_view packed);

  // Workers: serves pushed tasks on the calling (main) thread; returns when told to exit.
  void RunTaskLoop();

  // ---- services for the submitters and the executor ----
  rpc::EventLoop* io() { return &io_; }
  const rpc::Dispatcher* dispatcher() const { return &dispatcher_; }
  const proto::Address& address() const { return address_; }
  const WorkerID& worker_id() const { return worker_id_; }
  const JobID& job_id() const { return job_id_; }
  const NodeID& node_id() const { return node_id_; }
  bool is_driver() const { return options_.is_driver; }
  const std::string& token() const { return options_.token; }
  MemoryStore& memory_store() { return memory_store_; }
  ReferenceCounter& references() { return *references_; }
  object_store::StoreClient& store() { return *store_; }
  const rpc::ConnectionPtr& daemon() const { return daemon_; }
  // The control service: reconnects after its restarts (requests wait meanwhile).
  const std::shared_ptr<rpc::ReconnectingClient>& gcs() const { return gcs_; }
  DependencyResolver& resolver() { return *resolver_; }
  TaskSubmitter& task_submitter() { return *task_submitter_; }
  GeneratorStreams& streams() { return *streams_; }

  // Connections to other core workers and node daemons, and the daemons' addresses.
  PeerConnections& peers() { return *peers_; }
  // Frees owned plasma objects on every node that may hold them.
  void FreePlasma(const std::vector<std::pair<ObjectID, NodeID>>& objects);
  // Frees objects in node `node`'s store only.
  void FreeOnNode(const NodeID& node, proto::ObjectIdList list);

  TaskContext& CurrentContext();
  void SetThreadContext(TaskContext* ctx);

  // Stores an error as the value of `ids`.
  void StoreError(const std::vector<ObjectID>& ids, const proto::ErrorInfo& error);
  // Stores the returns of a finished task (owner side); takes the inline values out of it.
  void StoreReturns(proto::TaskResult* result);
  // Stores `error` as the value of those `ids` still referenced that have none (deleted to be
  // re-made by a task that ended without making them).
  void FailUnmade(const std::vector<ObjectID>& ids, const proto::ErrorInfo& error);
  // A submitted task or actor call ended, with `result` or failed with `error` (exactly one
  // given): stores its returns, or ends its stream; it is no longer a cancelled task.
  void StoreOutcome(const TaskEntry& task, proto::TaskResult* result,
                    const proto::ErrorInfo* error);
  // Asking owners for the values of borrowed objects.
  OwnerFetch& owner_fetch() { return *owner_fetch_; }
  // Lineage and the re-creation of lost objects.
  ObjectRecovery& recovery() { return *recovery_; }
  // Waits for a normal task's arguments (looking where they are now), then submits it (its
  // slot and argument references are taken); a failed argument fails its results.
  void ResolveAndSubmit(std::shared_ptr<TaskEntry> entry);
  // Makes the plasma object `id`, whose primary copy is on `node`, readable from this node's
  // store: the node daemon pulls a copy. Blocking; not on the I/O thread.
  // Has the local node daemon pull `id` from `node` and tells its owner of the copy (`owner`,
  // or the one this process's references name).
  Status PullToLocal(const ObjectID& id, const NodeID& node, int64_t timeout_ms,
                     const proto::Address* owner = nullptr);
  // Reads a ready value (fetching plasma objects from the local store, pulling them first when
  // they live on another node).
  StatusOr<internal::ValueView> ReadValue(const ObjectID& id, const StoredObjectPtr& obj,
                                          int64_t timeout_ms);
  // Blocks the calling worker thread on `wait`, releasing the worker's CPU meanwhile.
  template <class F>
  auto WhileBlocked(F&& wait) -> decltype(wait());

  // Waits until the owners of the borrowed refs the current task deserialized acknowledged it
  // as a borrower (bounded by `borrower_ack_timeout_ms`). An error (owner unreachable, refused,
  // or silent) means an owner may free an object this task still holds: the task must fail.
  Status WaitForBorrowRegistrations();
  // The borrower protocol (registering borrows, handing refs on to other processes).
  BorrowerProtocol& borrowers() { return *borrowers_; }
  // Serialises an inline value from a SerializedValue; registers nested refs as contained.
  void FillInlineValue(internal::SerializedValue& value, proto::InlineValue* out);

 private:
  explicit CoreWorker(CoreWorkerOptions options);
  Status Connect();
  // Listens on the node's address, in its worker port range when it has one.
  StatusOr<std::string> ListenInRange();
  // What a driver tells the control service about its job (`again`: the job's id, when it
  // registers again after a restart of that service).
  proto::RegisterJobRequest JobRegistration(const JobID& again) const;
  void SubscribeNodeDeaths();
  // On every new connection to a restarted control service.
  void Resubscribe();
  void RegisterHandlers();
  void OnPeerClosed(const rpc::ConnectionPtr& conn, const Status& reason);
  void OnReleases(const std::vector<ReferenceCounter::Release>& releases);
  // Whether a re-run's result `ro` is stored (see StoreReturns); frees an unwanted copy.
  bool KeepReturn(const ObjectID& id, const proto::ReturnObject& ro);
  // Refs inside a returned value: borrowed ones are known from now on, with the registration
  // the executing worker made for us (if any). Returns all of them, to be tied to the value.
  std::vector<ObjectID> AdoptHandedRefs(const proto::ReturnObject& ro);
  // A returned value that is not kept: what it handed us is let go at once.
  void DropHandedRefs(const proto::ReturnObject& ro);

  void NotifyBlocked(bool blocked);
  // SubmitTask and SubmitStreamingTask (num_returns 0; the task's id in `task_out`).
  std::vector<ObjectID> SubmitNormalTask(const std::string& function_name, uint64_t signature_hash,
                                         std::vector<internal::TaskArgument> args,
                                         const TaskOptions& options, int num_returns,
                                         bool streaming, TaskID* task_out);
  // Remembers a task submitted from `ctx` (a running task's) for recursive cancellation.
  void RecordChild(TaskContext& ctx, const TaskID& child);
  // The environment of work submitted with `env` (null: none); throws lumen::Error naming
  // `what` when it cannot be prepared.
  std::shared_ptr<const proto::RuntimeEnv> ResolveRuntimeEnv(const RuntimeEnv& env,
                                                             const char* what);

  const CoreWorkerOptions options_;
  WorkerID worker_id_;
  JobID job_id_;
  // The driver's job once registered (0: not yet): read by the control-service client's
  // reconnect hook on the I/O thread.
  std::atomic<uint32_t> registered_job_{0};
  NodeID node_id_;
  proto::Address address_;

  rpc::EventLoop io_;
  rpc::Dispatcher dispatcher_;
  std::unique_ptr<rpc::Server> server_;
  rpc::ConnectionPtr daemon_;
  std::shared_ptr<rpc::ReconnectingClient> gcs_;
  std::unique_ptr<PeerConnections> peers_;
  std::unique_ptr<object_store::StoreClient> store_;
  MemoryStore memory_store_;
  std::unique_ptr<ReferenceCounter> references_;
  std::unique_ptr<BorrowerProtocol> borrowers_;
  std::unique_ptr<OwnerFetch> owner_fetch_;
  std::unique_ptr<ObjectRecovery> recovery_;
  std::unique_ptr<DependencyResolver> resolver_;
  std::unique_ptr<TaskSubmitter> task_submitter_;
  std::unique_ptr<ActorSubmitter> actor_submitter_;
  std::unique_ptr<TaskExecutor> executor_;
  std::unique_ptr<RuntimeEnvs> runtime_envs_;
  std::unique_ptr<GeneratorStreams> streams_;
  // Tasks lumen::Cancel was called for and that have not finished; `num_cancelled_` lets the
  // per-task checks skip the lock when there are none.
  mutable Mutex cancel_mu_;
  std::unordered_set<TaskID> cancelled_ LUMEN_GUARDED_BY(cancel_mu_);
  std::atomic<size_t> num_cancelled_{0};

  TaskContext driver_context_;
  std::atomic<bool> shutting_down_{false};

  std::atomic<int> blocked_depth_{0};
};

template <class F>
auto CoreWorker::WhileBlocked(F&& wait) -> decltype(wait()) {
  // A worker blocked in Get/Wait hands its CPU back so that the tasks it waits for can run.
  if (!options_.is_driver && blocked_depth_.fetch_add(1) == 0) NotifyBlocked(true);
  struct Unblock {
    CoreWorker* self;
    ~Unblock() {
      if (!self->options_.is_driver && self->blocked_depth_.fetch_sub(1) == 1) {
        self->NotifyBlocked(false);
      }
    }
  } unblock{this};
  return wait();
}

}  // namespace lumen::core
