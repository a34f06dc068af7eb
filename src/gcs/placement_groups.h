// Placement groups in the control service: creation, waiting, removal, and what becomes of
// them when their job ends or a node dies. Where bundles go is scheduling::PlaceBundles over
// the nodes' latest reports; reserving them is two-phase so a group holds all of its bundles or
// none:
//   1. Prepare on every chosen node (each takes its bundles' resources out of what leases can
//      use, or refuses);
//   2. when all prepared, Commit on each (the bundles become the group's resources, see
//      scheduling/bundles.h; the node's reply updates the view before the group counts as
//      created, so the first task inside finds its bundle);
//   if a node refuses, fails or does not answer in placement_group_rpc_timeout_ms, Return on
//   the others and try again when resources change (at most every placement_group_retry_ms).
// A group that no set of alive nodes could ever hold fails (after LUMEN_INFEASIBLE_WAIT_S, as
// tasks do) with the reason; Wait reports it. Bundles lost with a dead node are placed again
// (the others stay where they are and keep running).
//
// Thread safety: owned by the control service's loop thread; every method runs there.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "gcs.pb.h"
#include "lumen/ids.h"
#include "node.pb.h"
#include "scheduling/policy.h"

namespace lumen::gcs {

class PlacementGroups {
 public:
  struct Hooks {
    std::function<scheduling::ClusterView()> view;  // the alive nodes as last reported
    // A connection to a node daemon; null when it is dead or unreachable.
    std::function<rpc::ConnectionPtr(const NodeID&)> node;
    // A node's resources right after a commit or return (as a heartbeat would report them).
    std::function<void(const proto::NodeStats&)> on_node_stats;
    // Some group's state changed: node daemons need a new view, waiting actors a new try.
    std::function<void()> on_change;
    // A group is being removed: what runs inside dies (actors first, so none restarts).
    std::function<void(const PlacementGroupID&, const std::string& why)> on_removed;
    // Writes a group's state to the control service's store (null: nothing is kept), or
    // erases it once removed: a restarted control service Restore()s them.
    std::function<void(const proto::PlacementGroupInfo&)> persist;
    std::function<void(const PlacementGroupID&)> erase;
  };

  PlacementGroups(rpc::EventLoop* loop, Hooks hooks);
  ~PlacementGroups();
  PlacementGroups(const PlacementGroups&) = delete;
  PlacementGroups& operator=(const PlacementGroups&) = delete;

  void HandleCreate(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleWait(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleRemove(const rpc::ConnectionPtr& c, rpc::Frame& f);

  // Nodes' resources changed (a report, a join): pending groups try again.
  void OnResourcesChanged();
  // Groups of a finished job are removed (Ray's non-detached groups).
  void OnJobFinished(const JobID& job);
  // Bundles on a dead node are placed again.
  void OnNodeDead(const NodeID& node);
  // Waiters get their answer now (state as it is); timers stop.
  void Stop();
  // A restarted control service: the groups its previous incarnation stored. Placed groups
  // stay where their bundles are (the nodes kept them); Resume() places the others again.
  void Restore(const proto::PlacementGroupInfo& info);
  // Once the nodes can be reached: a group that was being placed when the previous
  // incarnation stopped gives back whatever any node holds of it, then is placed anew.
  void Resume();

  // The group (not removed), or nullptr.
  const proto::PlacementGroupInfo* Find(const PlacementGroupID& id) const;
  // Every group not removed.
  void AddTo(google::protobuf::RepeatedPtrField<proto::PlacementGroupInfo>* out) const;
  // Takes the bundles being reserved right now out of `view` (nodes do not report them yet).
  void SubtractInFlight(scheduling::ClusterView* view) const;

 private:
  struct Waiter {
    std::weak_ptr<rpc::Connection> conn;
    rpc::Frame reply_to;
    uint64_t timer = 0;
  };
  struct Group {
    proto::PlacementGroupInfo info;
    uint64_t attempt = 0;                          // reservation in flight; 0: none
    std::map<NodeID, std::vector<int>> in_flight;  // node -> bundle indexes being reserved
    std::map<NodeID, bool> prepared;               // of the attempt: node -> said yes
    size_t replies = 0;
    std::chrono::steady_clock::time_point infeasible_deadline{};
    uint64_t retry_timer = 0;
    std::map<uint64_t, Waiter> waiters;
  };

  void TrySchedule(const PlacementGroupID& id);
  void OnPrepared(const PlacementGroupID& id, uint64_t attempt, const NodeID& node, bool ok,
                  const std::string& error);
  void Commit(Group& g);
  // The attempt failed: bundles in flight go back; retry after placement_group_retry_ms.
  void AbandonAttempt(Group& g, const std::string& why);
  void RetryLater(Group& g);
  void Fail(Group& g, const std::string& error);
  void Created(Group& g);
  // `done` runs once every node holding a bundle answered (or could not be reached).
  void Remove(const PlacementGroupID& id, const std::string& why,
              std::function<void()> done = nullptr);
  // Returns the group's bundles on `node` (prepared or committed); the node's stats update the
  // view; then `done`.
  void ReturnOn(const NodeID& node, const PlacementGroupID& id,
                std::function<void()> done = nullptr);
  void AnswerWaiters(Group& g);
  void Save(const Group& g);
  void Answer(Waiter& w, const proto::PlacementGroupInfo& info);

  rpc::EventLoop* const loop_;
  const Hooks hooks_;
  std::map<PlacementGroupID, Group> groups_;
  std::map<std::string, PlacementGroupID> names_;
  uint64_t next_attempt_ = 1;
  uint64_t next_waiter_ = 1;
  bool stopped_ = false;
};

}  // namespace lumen::gcs
