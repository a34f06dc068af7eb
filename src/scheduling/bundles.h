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

// ---- a group's resources (Ray's naming) ---------------------------------------------------
// A node that commits bundle i of group G holding {CPU: 1} has, instead of that CPU,
//   CPU_group_i_G: 1, CPU_group_G: 1, bundle_group_i_G: 1000, bundle_group_G: 1000
// (G in hex; the unindexed names sum the node's bundles of G). A task of bundle i asking
// {CPU: 1} asks {CPU_group_i_G: 1, CPU_group_G: 1, bundle_group_i_G: 0.001, bundle_group_G:
// 0.001}; of any bundle (index -1) only the unindexed names, and the node that grants it picks
// one of its bundles (ForBundle). The marker bundle_group_* lets a task that asks for nothing
// be placed in a bundle too. Scheduling and accounting then need nothing else: the names are
// ordinary resources in every node's view.

// What committing `bundle` as bundle `index` of `group` adds to its node.
ResourceSet CommittedBundleResources(const ResourceSet& bundle, const PlacementGroupID& group,
                                     int index);
// A task's or actor's `need` inside bundle `index` (-1: any bundle) of `group`.
ResourceSet GroupRequest(const ResourceSet& need, const PlacementGroupID& group, int index);
// A request for any bundle of `group` (GroupRequest with -1) made one for bundle `index`.
ResourceSet ForBundle(const ResourceSet& any_bundle_request, const PlacementGroupID& group,
                      int index);
// The group that `name` belongs to, or Nil for an ordinary resource.
PlacementGroupID GroupOfResource(const std::string& name);
// The GPUs a request takes from its node's devices: GPU, or inside a group its GPU_group_G.
int64_t GpusOf(const ResourceSet& need);
// Whether `name` is CPU, inside a group or not (a worker blocked in Get hands these back).
bool IsCpuResource(const std::string& name);

}  // namespace lumen::scheduling
