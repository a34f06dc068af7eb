// The scheduling policies over fake node views: no processes.
#include "scheduling/bundles.h"
#include "scheduling/policy.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace lumen::scheduling {
namespace {

NodeID Id(int i) {
  std::string hex(32, '0');
  hex[31] = static_cast<char>('0' + i);
  return NodeID::FromHex(hex);
}

NodeView Node(int i, std::map<std::string, double> total, std::map<std::string, double> used = {},
              std::map<std::string, std::string> labels = {}) {
  NodeView n;
  n.id = Id(i);
  n.total = ResourceSet::FromDoubles(total);
  n.available = n.total;
  n.available.Subtract(ResourceSet::FromDoubles(used));
  n.labels = std::move(labels);
  return n;
}

ResourceSet Cpu(double n) { return ResourceSet::FromDoubles({{"CPU", n}}); }

TEST(SchedulingPolicy, HybridPacksOnTheLocalNodeBelowTheThreshold) {
  ClusterView view = {Node(1, {{"CPU", 4}}, {{"CPU", 1}}), Node(2, {{"CPU", 4}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule({.resources = Cpu(1), .local_node = Id(1)}, view);
  EXPECT_EQ(d.kind, Decision::kRun);
  EXPECT_EQ(d.node, Id(1)) << "25% used is below the 50% threshold: stay local";
}

TEST(SchedulingPolicy, HybridSpreadsToTheLeastLoadedNodeAboveTheThreshold) {
  ClusterView view = {Node(1, {{"CPU", 4}}, {{"CPU", 3}}), Node(2, {{"CPU", 4}}, {{"CPU", 2}}),
                      Node(3, {{"CPU", 4}}, {{"CPU", 3}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule({.resources = Cpu(1), .local_node = Id(1)}, view);
  EXPECT_EQ(d.kind, Decision::kRun);
  EXPECT_EQ(d.node, Id(2));
}

TEST(SchedulingPolicy, HybridQueuesLocallyWhenEveryNodeIsBusy) {
  ClusterView view = {Node(1, {{"CPU", 2}}, {{"CPU", 2}}), Node(2, {{"CPU", 2}}, {{"CPU", 2}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule({.resources = Cpu(1), .local_node = Id(1)}, view);
  EXPECT_EQ(d.kind, Decision::kQueue);
  EXPECT_EQ(d.node, Id(1));
}

TEST(SchedulingPolicy, ARequestTheLocalNodeCannotHoldGoesWhereItFits) {
  ClusterView view = {Node(1, {{"CPU", 1}}), Node(2, {{"CPU", 1}, {"side", 1}}, {{"CPU", 1}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule(
      {.resources = ResourceSet::FromDoubles({{"CPU", 1}, {"side", 1}}), .local_node = Id(1)},
      view);
  EXPECT_EQ(d.kind, Decision::kQueue) << "node 2 can hold it but is busy";
  EXPECT_EQ(d.node, Id(2));
}

TEST(SchedulingPolicy, InfeasibleNamesTheRequestAndTheLargestNode) {
  ClusterView view = {Node(1, {{"CPU", 2}}), Node(2, {{"CPU", 8}, {"GPU", 1}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule({.resources = Cpu(16), .local_node = Id(1)}, view);
  EXPECT_EQ(d.kind, Decision::kInfeasible);
  EXPECT_NE(d.error.find("{CPU: 16}"), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("{CPU: 8, GPU: 1}"), std::string::npos) << d.error;
}

TEST(SchedulingPolicy, DeadNodesAreNeverChosen) {
  ClusterView view = {Node(1, {{"CPU", 1}}, {{"CPU", 1}}), Node(2, {{"CPU", 4}})};
  view[1].alive = false;
  ClusterScheduler policy;
  Decision d = policy.Schedule({.resources = Cpu(1), .local_node = Id(1)}, view);
  EXPECT_EQ(d.kind, Decision::kQueue);
  EXPECT_EQ(d.node, Id(1));
  d = policy.Schedule({.resources = Cpu(2), .local_node = Id(1)}, view);
  EXPECT_EQ(d.kind, Decision::kInfeasible) << "only the dead node could hold 2 CPUs";
}

TEST(SchedulingPolicy, SpreadGoesRoundRobinOverNodesThatCanRunIt) {
  ClusterView view = {Node(1, {{"CPU", 4}}), Node(2, {{"CPU", 4}}), Node(3, {{"CPU", 4}}),
                      Node(4, {{"CPU", 4}}, {{"CPU", 4}})};
  ClusterScheduler policy;
  std::vector<NodeID> order;
  for (int i = 0; i < 6; ++i) {
    Decision d = policy.Schedule(
        {.resources = Cpu(1), .local_node = Id(1), .strategy = Strategy::kSpread}, view);
    ASSERT_EQ(d.kind, Decision::kRun);
    order.push_back(d.node);
  }
  EXPECT_EQ(order, (std::vector<NodeID>{Id(1), Id(2), Id(3), Id(1), Id(2), Id(3)}))
      << "node 4 is full: skipped while others can run it now";
}

TEST(SchedulingPolicy, HardAffinityRunsOnlyOnThatNodeAndFailsWhenItIsGone) {
  ClusterView view = {Node(1, {{"CPU", 4}}), Node(2, {{"CPU", 4}}, {{"CPU", 4}})};
  ClusterScheduler policy;
  Request r{.resources = Cpu(1),
            .local_node = Id(1),
            .strategy = Strategy::kNodeAffinity,
            .affinity_node = Id(2)};
  Decision d = policy.Schedule(r, view);
  EXPECT_EQ(d.kind, Decision::kQueue) << "busy, but hard affinity waits for it";
  EXPECT_EQ(d.node, Id(2));
  view[1].alive = false;
  d = policy.Schedule(r, view);
  EXPECT_EQ(d.kind, Decision::kInfeasible);
  EXPECT_NE(d.error.find(Id(2).Hex()), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("dead"), std::string::npos) << d.error;
}

TEST(SchedulingPolicy, SoftAffinityFallsBackToAnyNode) {
  ClusterView view = {Node(1, {{"CPU", 4}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule({.resources = Cpu(1),
                                .local_node = Id(1),
                                .strategy = Strategy::kNodeAffinity,
                                .affinity_node = Id(7),
                                .affinity_soft = true},
                               view);
  EXPECT_EQ(d.kind, Decision::kRun);
  EXPECT_EQ(d.node, Id(1));
}

TEST(SchedulingPolicy, LabelSelectorsKeepWorkOnMatchingNodes) {
  ClusterView view = {Node(1, {{"CPU", 4}}, {}, {{"zone", "a"}}),
                      Node(2, {{"CPU", 4}}, {{"CPU", 3}}, {{"zone", "b"}, {"disk", "ssd"}})};
  ClusterScheduler policy;
  Decision d = policy.Schedule(
      {.resources = Cpu(1), .local_node = Id(1), .label_selector = {{"zone", "b"}}}, view);
  EXPECT_EQ(d.kind, Decision::kRun);
  EXPECT_EQ(d.node, Id(2)) << "the idle local node is in zone a";
  d = policy.Schedule({.resources = Cpu(1), .local_node = Id(1), .label_selector = {{"zone", "c"}}},
                      view);
  EXPECT_EQ(d.kind, Decision::kInfeasible);
  EXPECT_NE(d.error.find("zone=c"), std::string::npos) << d.error;
}

TEST(SchedulingPolicy, UtilisationIsThatOfTheBusiestRequestedResource) {
  NodeView n = Node(1, {{"CPU", 4}, {"GPU", 2}}, {{"CPU", 1}, {"GPU", 2}});
  EXPECT_DOUBLE_EQ(Utilisation(n, Cpu(1)), 0.25) << "GPUs do not count for a CPU task";
  EXPECT_DOUBLE_EQ(Utilisation(n, ResourceSet::FromDoubles({{"GPU", 1}})), 1.0);
}

// ---- placement group bundles -------------------------------------------------------------

std::set<NodeID> Distinct(const BundlePlan& p) { return {p.nodes.begin(), p.nodes.end()}; }

TEST(Bundles, StrictPackPutsEveryBundleOnOneNodeOrWaits) {
  ClusterView view = {Node(1, {{"CPU", 2}}), Node(2, {{"CPU", 4}}, {{"CPU", 1}})};
  BundlePlan p = PlaceBundles({Cpu(1), Cpu(2)}, BundleStrategy::kStrictPack, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced) << p.error;
  EXPECT_EQ(p.nodes, (std::vector<NodeID>{Id(2), Id(2)}));  // only node 2 has 3 CPUs free
  // Node 2 busy: it fits its total, so the group waits rather than failing.
  view[1].available = Cpu(0);
  EXPECT_EQ(PlaceBundles({Cpu(1), Cpu(2)}, BundleStrategy::kStrictPack, view).kind,
            BundlePlan::kWait);
  // More than any node has: infeasible, with the reason.
  p = PlaceBundles({Cpu(3), Cpu(3)}, BundleStrategy::kStrictPack, view);
  EXPECT_EQ(p.kind, BundlePlan::kInfeasible);
  EXPECT_NE(p.error.find("STRICT_PACK"), std::string::npos) << p.error;
  EXPECT_NE(p.error.find("largest node: {CPU: 4}"), std::string::npos) << p.error;
}

TEST(Bundles, PackUsesOneNodeWhenItCanAndFewNodesWhenItCannot) {
  ClusterView view = {Node(1, {{"CPU", 2}}), Node(2, {{"CPU", 2}}), Node(3, {{"CPU", 2}})};
  BundlePlan p = PlaceBundles({Cpu(1), Cpu(1)}, BundleStrategy::kPack, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced);
  EXPECT_EQ(Distinct(p).size(), 1u);
  p = PlaceBundles({Cpu(1), Cpu(1), Cpu(1), Cpu(1)}, BundleStrategy::kPack, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced);
  EXPECT_EQ(Distinct(p).size(), 2u) << "four 1-CPU bundles on 2-CPU nodes need two of them";
}

TEST(Bundles, StrictSpreadNeedsANodePerBundle) {
  ClusterView view = {Node(1, {{"CPU", 4}}), Node(2, {{"CPU", 4}})};
  BundlePlan p = PlaceBundles({Cpu(1), Cpu(1)}, BundleStrategy::kStrictSpread, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced);
  EXPECT_EQ(Distinct(p).size(), 2u);
  p = PlaceBundles({Cpu(1), Cpu(1), Cpu(1)}, BundleStrategy::kStrictSpread, view);
  EXPECT_EQ(p.kind, BundlePlan::kInfeasible);
  EXPECT_NE(p.error.find("needs a node per bundle"), std::string::npos) << p.error;
  // A dead node does not count.
  view.push_back(Node(3, {{"CPU", 4}}));
  view.back().alive = false;
  EXPECT_EQ(PlaceBundles({Cpu(1), Cpu(1), Cpu(1)}, BundleStrategy::kStrictSpread, view).kind,
            BundlePlan::kInfeasible);
}

TEST(Bundles, StrictSpreadPlacesTheLargestBundleWhereOnlyItFits) {
  // In order, the CPU bundle would take the emptier GPU node and leave the GPU bundle nowhere.
  ClusterView view = {Node(1, {{"CPU", 8}, {"GPU", 1}}), Node(2, {{"CPU", 4}})};
  ResourceSet gpu = ResourceSet::FromDoubles({{"CPU", 1}, {"GPU", 1}});
  BundlePlan p = PlaceBundles({Cpu(1), gpu}, BundleStrategy::kStrictSpread, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced) << p.error;
  EXPECT_EQ(p.nodes, (std::vector<NodeID>{Id(2), Id(1)}));
}

TEST(Bundles, SpreadUsesDistinctNodesThenDoublesUp) {
  ClusterView view = {Node(1, {{"CPU", 2}}), Node(2, {{"CPU", 2}})};
  BundlePlan p = PlaceBundles({Cpu(1), Cpu(1)}, BundleStrategy::kSpread, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced);
  EXPECT_EQ(Distinct(p).size(), 2u);
  p = PlaceBundles({Cpu(1), Cpu(1), Cpu(1)}, BundleStrategy::kSpread, view);
  ASSERT_EQ(p.kind, BundlePlan::kPlaced) << "SPREAD doubles up where STRICT_SPREAD cannot";
  EXPECT_EQ(Distinct(p).size(), 2u);
}

TEST(Bundles, AGroupWithoutBundlesIsRefused) {
  BundlePlan p = PlaceBundles({}, BundleStrategy::kPack, {Node(1, {{"CPU", 1}})});
  EXPECT_EQ(p.kind, BundlePlan::kInfeasible);
  EXPECT_NE(p.error.find("at least one bundle"), std::string::npos);
}

}  // namespace
}  // namespace lumen::scheduling

namespace lumen::scheduling {
namespace {

TEST(BundleResources, ACommittedBundleIsTheGroupsResourcesByIndexAndInAll) {
  const PlacementGroupID g = PlacementGroupID::FromRandom();
  ResourceSet added =
      CommittedBundleResources(ResourceSet::FromDoubles({{"CPU", 2}, {"GPU", 1}}), g, 1);
  EXPECT_EQ(added.Get("CPU_group_1_" + g.Hex()), ToFixed(2));
  EXPECT_EQ(added.Get("CPU_group_" + g.Hex()), ToFixed(2));
  EXPECT_EQ(added.Get("GPU_group_1_" + g.Hex()), ToFixed(1));
  EXPECT_EQ(added.Get("bundle_group_1_" + g.Hex()), ToFixed(1000));
  EXPECT_EQ(added.Get("CPU"), 0);
  for (const auto& [name, amount] : added.amounts()) EXPECT_EQ(GroupOfResource(name), g) << name;
  EXPECT_TRUE(GroupOfResource("CPU").IsNil());
  EXPECT_TRUE(GroupOfResource("my_group_thing").IsNil());
}

TEST(BundleResources, ARequestInsideABundleFitsOnlyThatBundle) {
  const PlacementGroupID g = PlacementGroupID::FromRandom();
  const ResourceSet one_cpu = ResourceSet::FromDoubles({{"CPU", 1}});
  ResourceSet node = CommittedBundleResources(one_cpu, g, 0);
  node.Add(CommittedBundleResources(one_cpu, g, 1));
  EXPECT_TRUE(GroupRequest(one_cpu, g, 0).IsSubsetOf(node));
  EXPECT_FALSE(GroupRequest(ResourceSet::FromDoubles({{"CPU", 2}}), g, 0).IsSubsetOf(node));
  EXPECT_FALSE(GroupRequest(one_cpu, g, 2).IsSubsetOf(node));  // no bundle 2 here
  EXPECT_FALSE(GroupRequest(one_cpu, PlacementGroupID::FromRandom(), 0).IsSubsetOf(node));
  // Any bundle: the unindexed names, then the granting node picks one.
  ResourceSet any = GroupRequest(one_cpu, g, -1);
  EXPECT_EQ(any.Get("CPU_group_0_" + g.Hex()), 0);
  EXPECT_TRUE(any.IsSubsetOf(node));
  EXPECT_TRUE(ForBundle(any, g, 1) == GroupRequest(one_cpu, g, 1));
  // Nothing asked: the marker still keeps it inside the group.
  EXPECT_FALSE(GroupRequest(ResourceSet(), g, 0).Empty());
  EXPECT_TRUE(GroupRequest(ResourceSet(), g, 0).IsSubsetOf(node));
}

TEST(BundleResources, GpusAndCpusAreCountedInsideGroupsToo) {
  const PlacementGroupID g = PlacementGroupID::FromRandom();
  EXPECT_EQ(GpusOf(GroupRequest(ResourceSet::FromDoubles({{"GPU", 2}}), g, 3)), ToFixed(2));
  EXPECT_EQ(GpusOf(ResourceSet::FromDoubles({{"GPU", 0.5}})), ToFixed(0.5));
  EXPECT_TRUE(IsCpuResource("CPU"));
  EXPECT_TRUE(IsCpuResource("CPU_group_0_" + g.Hex()));
  EXPECT_FALSE(IsCpuResource("GPU_group_" + g.Hex()));
}

}  // namespace
}  // namespace lumen::scheduling
