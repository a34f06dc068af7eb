// The node daemon: one per node. Registers the node with the control service and heartbeats;
// grants worker leases against the node's resources (CPU, GPU instances, memory, custom);
// runs the worker pool; serves the shared-memory object store to local processes and moves
// objects between nodes (ObjectManager).
// The daemon is not on the per-task path: owners push tasks straight to leased workers.
//
// Thread safety: all state is owned by `loop`; Start()/Stop() from another thread.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.pb.h"
#include "common/resources.h"
#include "common/rpc/connection.h"
#include "common/rpc/reconnecting_client.h"
#include "common/rpc/server.h"
#include "common/thread_annotations.h"
#include "gcs.pb.h"
#include "lumen/ids.h"
#include "node.pb.h"
#include "node/bundle_table.h"
#include "node/driver_runner.h"
#include "node/log_monitor.h"
#include "node/memory_monitor.h"
#include "node/object_manager.h"
#include "node/worker_pool.h"
#include "node/working_dirs.h"
#include "object_store/object_store.h"
#include "scheduling/policy.h"

namespace lumen::node {

struct NodeOptions {
  std::string session_dir;
  std::string token;
  std::string gcs_address;
  std::string bind_host = "127.0.0.1";
  // The address this node's processes advertise (and workers listen on); empty: bind_host, or
  // 127.0.0.1 when that is a wildcard.
  std::string node_ip;
  int port = 0;
  int min_worker_port = 0;  // workers listen in [min, max]; 0: any free port
  int max_worker_port = 0;
  std::map<std::string, double> resources;  // must contain CPU; GPU optional
  int64_t object_store_memory = 0;
  bool is_head = false;
  std::map<std::string, std::string> labels;  // matched by label selectors
};

class NodeDaemon {
 public:
  NodeDaemon(rpc::EventLoop* loop, NodeOptions options);
  ~NodeDaemon();

  // Opens the store, listens, registers with the control service.
  Status Start();
  void Stop();

  const NodeID& node_id() const { return node_id_; }
  const std::string& unix_address() const { return unix_address_; }
  const std::string& tcp_address() const { return tcp_address_; }

  // Runs when a client asks the service to shut down. Thread-safe: may be set after start.
  void set_on_shutdown(std::function<void()> cb) { on_shutdown_.Set(std::move(cb)); }

 private:
  struct Client {
    uint64_t id = 0;
    proto::ClientKind kind = proto::OTHER;
    WorkerID worker_id;
    JobID job;
    bool registered = false;
  };
  struct Lease {
    uint64_t id;
    WorkerID worker;
    ResourceSet resources;
    std::vector<int> gpus;
    std::weak_ptr<rpc::Connection> holder;
    bool for_actor = false;
    ResourceSet released;    // CPU handed back while the worker is blocked
    PlacementGroupID group;  // Nil: not in a placement group
    bool retriable = false;  // its holder may retry its tasks (the memory monitor kills it first)
    std::chrono::steady_clock::time_point granted;
  };
  struct PendingLease {
    uint64_t seq;
    proto::LeaseRequest req;
    ResourceSet need;
    std::weak_ptr<rpc::Connection> requester;
    rpc::Frame reply_to;  // type + request id
    bool worker_started = false;
    // No alive node can hold it; waits (LUMEN_INFEASIBLE_WAIT_S) for one to join until then.
    bool infeasible = false;
    std::chrono::steady_clock::time_point infeasible_deadline{};
    // Inside a placement group that is not placed yet: waits (no deadline) until it is
    // created, fails or is removed.
    bool waiting_for_group = false;
  };

  void RegisterHandlers();
  std::shared_ptr<Client> ClientOf(const rpc::ConnectionPtr& c);
  void OnClientClosed(const rpc::ConnectionPtr& c);

  void HandleRegisterClient(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStartJob(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleJobFinished(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleRequestLease(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleReturnLease(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleNotifyBlocked(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleWorkerExitStatus(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleKillWorker(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStoreCreate(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStoreSeal(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStoreAbort(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStoreGet(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStoreRelease(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStoreFree(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleNodeStats(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleShutdown(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Placement-group bundles (the control service's two phases; bundle_table.h).
  void HandlePrepareBundles(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleCommitBundles(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleReturnBundles(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // The resources `p` takes if granted now: its own, or for "any bundle" of a group those of
  // the first bundle here with room; false when nothing fits now.
  bool FitsNow(const PendingLease& p, ResourceSet* need) const;
  // A request of a placement group that no node can hold now: "" to wait (the group is
  // pending) or why it fails.
  std::string GroupRefusal(const PendingLease& p, const std::string& infeasible_error) const;

  // Where a lease request goes: granted here, spilled back to another node, or refused.
  // `view_is_fresh`: the cluster view was just fetched, so "infeasible" is final.
  void ScheduleLease(std::shared_ptr<PendingLease> p, bool view_is_fresh);
  // `stay_if_it_fits`: a request another node sent here (or an actor the control service
  // placed here) stays when this node can ever hold it.
  scheduling::Decision Decide(const PendingLease& p, bool stay_if_it_fits = true);
  // Replies to the requester: ask `node` instead.
  void SpillBack(PendingLease& p, const NodeID& node);
  void RefuseLease(PendingLease& p, const std::string& error, bool infeasible);
  // Refuses (and drops) every waiting request of `job` with `why`.
  void RefuseJobLeases(const JobID& job, const std::string& why);
  void OnClusterView(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void SetClusterView(const proto::ClusterView& view);
  // view_ with this node's entry brought up to date.
  const scheduling::ClusterView& View();
  // Asks the control service how `job`'s workers start (a job first seen in a lease request).
  void FetchJob(const JobID& job);
  void StartJobLocally(const proto::StartJobRequest& req);
  // Sends the node's resources to the control service soon (at most once per report period).
  void ReportResourcesSoon();
  void ProcessLeaseQueue();
  // How a lease's worker is started for `runtime_env` (the key empty: none). Unavailable while
  // its working_dir is being prepared on this node; another error when it cannot be.
  Status WorkerEnvOf(const proto::RuntimeEnv& runtime_env, WorkerEnv* out);
  void GrantLease(PendingLease& p, WorkerProc* w);
  void EndLease(uint64_t lease_id, bool kill_worker);
  // Gives a finished lease's resources (and GPU instances) back to the node.
  void ReleaseLeaseResources(const Lease& lease);
  bool AcquireGpus(int64_t amount, std::vector<int>* out);
  void ReleaseGpus(const std::vector<int>& gpus, int64_t amount);
  void AskIdleLeasesBack();
  void OnWorkerDied(const WorkerProc& w, const std::string& description);
  // The workers the memory monitor may kill: those holding leases (tasks and actors).
  std::vector<KillCandidate> MemoryKillCandidates() const;
  void FinishJob(const JobID& job);

  Status ConnectGcs();
  // What this node tells the control service when it registers (and again after a restart).
  proto::RegisterNodeRequest Registration() const;
  std::string AdvertisedHost() const;
  void Heartbeat();
  // Forwards what the workers printed since the last look (every log_monitor_period_ms).
  void ForwardWorkerLogs();
  void HandleFlushWorkerLogs(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Each call is a new report (report_seq increases).
  proto::NodeStats Stats();

  rpc::EventLoop* const loop_;
  const NodeOptions options_;
  const NodeID node_id_;
  rpc::Dispatcher dispatcher_;
  rpc::Dispatcher gcs_dispatcher_;
  std::unique_ptr<rpc::Server> server_;
  std::unique_ptr<object_store::ObjectStore> store_;
  std::unique_ptr<ObjectManager> objects_;  // transfers between nodes
  std::unique_ptr<LogMonitor> logs_;        // worker output, to the drivers
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<DriverRunner> drivers_;      // of submitted jobs (head)
  std::unique_ptr<WorkingDirs> working_dirs_;  // of runtime environments
  std::unique_ptr<MemoryMonitor> memory_;      // kills a worker when the node runs out of memory
  std::shared_ptr<rpc::ReconnectingClient> gcs_;
  std::string unix_address_;
  std::string tcp_address_;
  CallbackSlot on_shutdown_;

  // Loop thread only.
  ResourceSet total_;
  ResourceSet available_;
  std::vector<int64_t> gpu_free_;  // per GPU instance, fixed point
  uint64_t next_client_id_ = 1;
  // Owners hold leases of several nodes in one table: ids start at a random point per node.
  uint64_t next_lease_id_;
  uint64_t next_pending_seq_ = 1;
  uint64_t next_report_seq_ = 1;
  std::unordered_map<uint64_t, Lease> leases_;
  std::deque<PendingLease> pending_;
  std::unordered_map<WorkerID, std::vector<std::pair<rpc::ConnectionPtr, rpc::Frame>>>
      exit_waiters_;
  std::chrono::steady_clock::time_point last_release_ask_{};
  uint64_t heartbeat_timer_ = 0;
  // What the control service asked for when this node registered (set before the loop's
  // first heartbeat; read on the loop thread).
  int64_t heartbeat_period_ms_ = 1000;
  uint64_t log_timer_ = 0;
  uint64_t report_timer_ = 0;
  scheduling::ClusterScheduler policy_;
  scheduling::ClusterView view_;  // from the control service; this node's entry kept live
  // Placement groups not removed, from the same view.
  std::map<PlacementGroupID, proto::PlacementGroupInfo> groups_;
  BundleTable bundles_;          // the bundles reserved on this node
  std::set<JobID> job_fetches_;  // GetJob, or the fetch of the job's program, in flight
  bool stopped_ = false;
};

}  // namespace lumen::node
