#include "scheduling/wire.h"

namespace lumen::scheduling {

ClusterView ViewFromProto(const proto::ClusterView& view) {
  ClusterView out;
  for (const auto& n : view.nodes()) {
    NodeView v;
    v.id = NodeID::FromBinary(n.node_id());
    if (v.id.IsNil()) continue;
    v.address = n.address();
    v.total = ResourceSet::FromProto(n.total().amounts());
    v.available = ResourceSet::FromProto(n.available().amounts());
    v.labels.insert(n.labels().begin(), n.labels().end());
    v.alive = n.alive();
    out.push_back(std::move(v));
  }
  return out;
}

Request RequestFromProto(const proto::SchedulingStrategy& strategy, ResourceSet resources,
                         const NodeID& local_node) {
  Request r;
  r.resources = std::move(resources);
  r.local_node = local_node;
  r.label_selector.insert(strategy.label_selector().begin(), strategy.label_selector().end());
  switch (strategy.kind()) {
    case proto::SchedulingStrategy::SPREAD:
      r.strategy = Strategy::kSpread;
      break;
    case proto::SchedulingStrategy::NODE_AFFINITY:
      r.strategy = Strategy::kNodeAffinity;
      r.affinity_node = NodeID::FromBinary(strategy.node_id());
      r.affinity_soft = strategy.soft();
      break;
    default:
      break;
  }
  return r;
}

}  // namespace lumen::scheduling
