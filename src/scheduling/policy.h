// Where a task or actor runs: the scheduling policies over a view of the cluster's nodes. No
// I/O and no clock: node daemons (and the control service, for actors) call them with the
// resource view they hold, tests with a fake one.
//
//   scheduling::ClusterScheduler policy;
//   scheduling::Decision d = policy.Schedule(
//       {.resources = need, .local_node = me}, view);
//   if (d.kind == scheduling::Decision::kRun && d.node != me) { /* spill back to d.node */ }
//
// Policies (Ray's, with its defaults):
// - Hybrid (the default): among nodes that can run the request now, the local (or preferred)
//   node while its utilisation stays below `spread_threshold`, else the least-utilised one.
//   If none can run it now, it queues at the local node when that can ever hold it, else at
//   the least-utilised node that can.
// - Spread: round-robin over the nodes that can run it now (else over those that can hold it).
// - Node affinity: that node; when it is dead or unknown, an error (hard) or hybrid (soft).
// - Label selectors restrict every policy to nodes whose labels match.
//
// Thread safety: thread-compatible (ClusterScheduler remembers where spreading left off).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/resources.h"
#include "lumen/ids.h"

namespace lumen::scheduling {

struct NodeView {
  NodeID id;
  ResourceSet total;
  ResourceSet available;
  std::map<std::string, std::string> labels;
  bool alive = true;
  std::string address;  // for messages only
};
using ClusterView = std::vector<NodeView>;

enum class Strategy { kHybrid, kSpread, kNodeAffinity };

struct Request {
  ResourceSet resources{};
  // The node that asks (hybrid packs here first) or, with locality-aware leasing, the node
  // holding most of the arguments' bytes.
  NodeID local_node{};
  Strategy strategy = Strategy::kHybrid;
  NodeID affinity_node{};      // kNodeAffinity
  bool affinity_soft = false;  // kNodeAffinity: fall back to hybrid when that node is gone
  std::map<std::string, std::string> label_selector{};
};

struct Decision {
  enum Kind {
    kRun,         // `node` can run it now
    kQueue,       // `node` can hold it but is busy: wait there
    kInfeasible,  // no alive node that matches can ever hold it (`error` says why)
  };
  Kind kind = kInfeasible;
  NodeID node;
  std::string error;
};

// Utilisation of the busiest of the requested resources (CPU counts always): 0 idle, 1 full.
double Utilisation(const NodeView& node, const ResourceSet& request);
// The labels of `node` include every key=value of `selector`.
bool LabelsMatch(const std::map<std::string, std::string>& labels,
                 const std::map<std::string, std::string>& selector);
// "zone=b, disk=ssd"
std::string LabelsToString(const std::map<std::string, std::string>& labels);

class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  virtual Decision Schedule(const Request& request, const ClusterView& view) = 0;
};

class ClusterScheduler : public SchedulingPolicy {
 public:
  explicit ClusterScheduler(double spread_threshold = 0.5) : spread_threshold_(spread_threshold) {}
  Decision Schedule(const Request& request, const ClusterView& view) override;

 private:
  Decision Hybrid(const Request& request, const std::vector<const NodeView*>& feasible);
  Decision Spread(const std::vector<const NodeView*>& feasible, const ResourceSet& need);

  const double spread_threshold_;
  NodeID last_spread_node_;
};

}  // namespace lumen::scheduling
