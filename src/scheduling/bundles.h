// Where the bundles of a placement group go: a pure function over a view of the nodes, like
// the task policies in policy.h (no I/O, no clock; tests call it with fake views).
//
//   BundlePlan plan = PlaceBundles(bundles, BundleStrategy::kStrictSpread, view);
//   if (plan.kind == BundlePlan::kPlaced) { /* reserve bundle i on plan.nodes[i] */ }
//
// Strategies (Ray's placement_group semantics):
// - kStrictPack: every bundle on one node.
// - kPack: on one node if one can hold them all, else on as few nodes as it takes (a bundle
//   goes to a node the group already uses when it fits there).
// - kStrictSpread: every bundle on a different node.
// - kSpread: on different nodes as far as they go, then doubling up.
// Against the nodes' available resources a group is placed now; if it could only be placed
// against their totals it waits (kWait); if not even that, it is infeasible and `error` says
// why. Among equal choices the least-utilised node wins, then the first in the view.
//
// Thread safety: a pure function.
#pragma once

#include <string>
#include <vector>

#include "common/resources.h"
#include "lumen/ids.h"
#include "scheduling/policy.h"

namespace lumen::scheduling {

enum class BundleStrategy { kPack, kSpread, kStrictPack, kStrictSpread };

const char* BundleStrategyName(BundleStrategy s);

struct BundlePlan {
  enum Kind { kPlaced, kWait, kInfeasible };
  Kind kind = kInfeasible;
  std::vector<NodeID> nodes;  // kPlaced: the node of each bundle, in the bundles' order
  std::string error;          // kInfeasible
};

BundlePlan PlaceBundles(const std::vector<ResourceSet>& bundles, BundleStrategy strategy,
                        const ClusterView& view);

}  // namespace lumen::scheduling
