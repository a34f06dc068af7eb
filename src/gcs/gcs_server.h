// The control service (GCS): node membership and health, job table, actor directory (creation,
// placement, restarts, names), key-value store, cluster status. One per cluster; never on the
// per-task path.
//
// With a persistent store (Redis) a restarted control service continues where the previous one
// stopped: see Recover().
//
// Thread safety: all state is owned by `loop`; Start()/Stop() from any other thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/server.h"
#include "common/thread_annotations.h"
#include "core_worker.pb.h"
#include "gcs.pb.h"
#include "gcs/gcs_store.h"
#include "gcs/job_submissions.h"
#include "gcs/placement_groups.h"
#include "gcs/store_queue.h"
#include "lumen/ids.h"
#include "scheduling/policy.h"

namespace lumen::gcs {

struct GcsOptions {
  std::string token;
  std::string bind_host = "127.0.0.1";
  std::string advertise_host;  // what address() reports; empty: bind_host (never a wildcard)
  int port = 0;                // 0: any free port
  std::string unix_path;       // also listen here when set
  int64_t node_death_timeout_ms = 10000;
};

class GcsServer {
 public:
  GcsServer(rpc::EventLoop* loop, GcsOptions options, std::unique_ptr<GcsStore> store);
  ~GcsServer();

  Status Start();
  void Stop();

  // "host:port" of the TCP listener (valid after Start).
  const std::string& address() const { return tcp_address_; }
  const std::string& unix_address() const { return unix_address_; }

  // Called (on the loop thread) when a client asks the cluster to shut down. Thread-safe: may
  // be set after start.
  void set_on_shutdown(std::function<void()> cb) { on_shutdown_.Set(std::move(cb)); }

 private:
  struct NodeState {
    proto::NodeInfo info;
    std::set<JobID> jobs_started;  // jobs this service started there (for their actors)
    rpc::ConnectionPtr conn;       // GCS -> node daemon
    std::weak_ptr<rpc::Connection> registration;  // node daemon -> GCS: cluster views go here
    std::chrono::steady_clock::time_point last_heartbeat;
    // Known from the store after a restart, and not registered again yet: the heartbeat
    // timeout counts from the restart.
    bool awaiting_reconnect = false;
  };
  struct ActorState {
    proto::ActorInfo info;
    proto::TaskSpec creation;
    NodeID node;
    WorkerID worker;
    WorkerID killed_worker;          // killed by lumen::Kill to restart: its death is not news
    rpc::ConnectionPtr worker_conn;  // used to push the creation task
    std::vector<std::weak_ptr<rpc::Connection>> subscribers;
    uint64_t schedule_attempt = 0;
  };
  struct JobState {
    proto::Address driver;
    bool alive = true;
    proto::StartJobRequest start;                // how its workers start
    std::weak_ptr<rpc::Connection> driver_conn;  // where its workers' output goes
    bool log_to_driver = false;
    bool awaiting_driver = false;   // after a restart, until its driver registers again
    std::string actor_namespace{};  // of its named actors
  };
  struct ConnRole {  // what a server-side connection belongs to
    NodeID node;
    JobID job;
    bool is_node = false;
    bool is_driver = false;
  };

  void RegisterHandlers();
  // The namespace of job `job`'s named actors ("" when the job is unknown).
  std::string JobNamespace(const std::string& job_id) const;
  bool HasDetachedActors(const JobID& job) const;
  // Loads the tables a previous incarnation left in the store (see the .cc for what survives).
  Status Recover();
  // After Recover, on the loop once listening: the previous head's node is dead, creations
  // cut off by the restart start again, and a timer ends the jobs whose drivers do not return.
  void ResumeAfterRecovery();
  // The grace a restart gives nodes and drivers to register again (the node death timeout).
  int64_t ReconnectGraceMs() const { return options_.node_death_timeout_ms; }
  void PersistActor(const ActorState& a);
  void PersistJob(const JobID& job);
  // Writes one table entry; a failing store is logged, never fatal to the request.
  void Persist(const char* table, const std::string& key, const std::string& value);
  void OnConnectionClosed(const rpc::ConnectionPtr& conn);

  void HandleRegisterNode(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleHeartbeat(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleGetAllNodes(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleGetClusterView(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleGetJob(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleRegisterJob(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleJobFinished(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleCreateActor(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleGetActor(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleSubscribeActor(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Owners learn of node deaths (their objects there are lost): the reply lists the nodes
  // already dead; kNodeDied follows for each later one.
  void HandleSubscribeNodeDeaths(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleKillActor(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleWorkerDied(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleKV(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleClusterStatus(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleShutdown(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleCreationResult(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Worker output from a node daemon: forwarded to the job's driver.
  void HandleWorkerLogs(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // From a driver: every node sends what the job's workers printed so far, then the reply.
  void HandleFlushWorkerLogs(const rpc::ConnectionPtr& c, rpc::Frame& f);

  void FinishJob(const JobID& job, const std::string& why);
  // A node's resources as it just reported them (heartbeat, or a bundle commit's reply).
  void UpdateNodeStats(const proto::NodeStats& stats);
  // Placement-group hooks: actors inside a removed group die; actors waiting for a group
  // that changed state are scheduled again.
  void OnPlacementGroupRemoved(const PlacementGroupID& id, const std::string& why);
  void OnPlacementGroupsChanged();
  void ScheduleActor(const ActorID& id);
  // The node for an actor: its strategy and labels over the latest reports of every node.
  scheduling::Decision PlaceActor(const ActorState& a);
  // Actors placed on a node whose reports do not show them yet: subtracted from that node's
  // available resources when placing more, so that a burst of actors does not all pick the
  // node that looked emptiest. Dropped on the node's first report after the lease was granted,
  // or when the attempt failed.
  struct Placing {
    NodeID node;
    ResourceSet resources;
    bool granted = false;
  };
  std::map<ActorID, Placing> placing_;
  // Before a node hosts an actor of `job` for the first time: tells it how the job's workers
  // start (the driver's own node already knows).
  void EnsureJobOnNode(const JobID& job, const NodeID& node, const rpc::ConnectionPtr& conn);
  void OnActorWorkerDied(const ActorID& id, const std::string& cause);
  void SetActorDead(ActorState& a, const std::string& cause);
  void Publish(ActorState& a);
  void KillActorWorker(ActorState& a, const std::string& reason);
  void MarkNodeDead(const NodeID& id, const std::string& cause);
  void CheckHeartbeats();
  void ScheduleHeartbeatCheck();
  // How often nodes heartbeat (told in the RegisterNode reply): a quarter of the node death
  // timeout, at most LUMEN_HEARTBEAT_PERIOD_MS.
  int64_t HeartbeatPeriodMs() const;
  // What node daemons schedule against: every node's address, labels and resources.
  proto::ClusterView View() const;
  // Sends the view to every alive node soon (coalesced: at most once per report period).
  void BroadcastViewSoon();
  void BroadcastView();
  rpc::ConnectionPtr NodeConnection(const NodeID& id);
  static proto::ActorStateUpdate ToUpdate(const proto::ActorInfo& info);

  rpc::EventLoop* const loop_;
  const GcsOptions options_;
  std::unique_ptr<GcsStore> store_;
  // Every storage call after recovery goes through here, off the loop when the store may block.
  std::unique_ptr<StoreQueue> store_queue_;
  rpc::Dispatcher dispatcher_;         // requests from clients
  rpc::Dispatcher client_dispatcher_;  // replies on GCS-initiated connections
  std::unique_ptr<rpc::Server> server_;
  std::string tcp_address_;
  std::string unix_address_;
  CallbackSlot on_shutdown_;
  uint64_t heartbeat_timer_ = 0;  // loop thread
  uint64_t grace_timer_ = 0;      // loop thread: ends jobs whose drivers did not return
  std::atomic<bool> stopping_{false};
  bool view_broadcast_pending_ = false;        // loop thread
  scheduling::ClusterScheduler actor_policy_;  // loop thread

  // Loop thread only.
  std::map<NodeID, NodeState> nodes_;
  std::unordered_map<JobID, JobState> jobs_;
  uint32_t next_job_ = 1;
  std::unordered_map<ActorID, ActorState> actors_;
  // (namespace, name) -> the live actor of that name.
  std::map<std::pair<std::string, std::string>, ActorID> names_;
  std::unordered_map<TaskID, ActorID> creating_;  // creation task -> actor
  std::set<ActorID> waiting_for_group_;           // actors of a pending placement group
  std::unique_ptr<PlacementGroups> groups_;
  std::unique_ptr<JobSubmissions> submissions_;  // `lumen job submit`
  std::vector<std::weak_ptr<rpc::Connection>> node_death_subscribers_;
  // Recover() -> ResumeAfterRecovery().
  std::vector<NodeID> previous_heads_;
  std::vector<ActorID> interrupted_creations_;
};

}  // namespace lumen::gcs
