#include "core_worker/task_spec.h"

#include <variant>

#include "lumen/errors.h"
#include "scheduling/bundles.h"

namespace lumen::core {

bool IsActorTask(const TaskID& id) {
  ActorID actor = id.Actor();  // all 0xff unique bytes for normal tasks
  for (size_t i = 0; i < ActorID::kUniqueBytes; ++i) {
    if (actor.Data()[i] != 0xff) return true;
  }
  return false;
}

proto::ErrorInfo TaskCancelledInfo(const proto::TaskSpec& spec) {
  proto::ErrorInfo e;
  e.set_type(proto::CANCELLED);
  e.set_function_name(spec.function_name());
  e.set_message("task " + spec.function_name() + " was cancelled (lumen::Cancel)");
  return e;
}

void FillSpecHeader(const TaskID& id, const JobID& job, proto::TaskType type,
                    const std::string& function_name, uint64_t signature_hash,
                    proto::TaskSpec* spec) {
  spec->set_task_id(id.Binary());
  spec->set_job_id(job.Binary());
  spec->set_type(type);
  spec->set_function_name(function_name);
  spec->set_signature_hash(signature_hash);
  spec->set_num_returns(1);
}

ResourceSet ResourcesOf(double cpus, double gpus, int64_t memory,
                        const std::map<std::string, double>& custom) {
  std::map<std::string, double> r;
  if (cpus > 0) r["CPU"] = cpus;
  if (gpus > 0) r["GPU"] = gpus;
  if (memory > 0) r["memory"] = static_cast<double>(memory);
  for (const auto& [k, v] : custom) r[k] = v;
  return ResourceSet::FromDoubles(r);
}

proto::SchedulingStrategy StrategyOf(const SchedulingStrategy& strategy,
                                     const LabelSelector& labels) {
  proto::SchedulingStrategy out;
  if (std::holds_alternative<SpreadScheduling>(strategy)) {
    out.set_kind(proto::SchedulingStrategy::SPREAD);
  } else if (const auto* a = std::get_if<NodeAffinityScheduling>(&strategy)) {
    NodeID node = NodeID::FromHex(a->node_id);
    if (node.IsNil() || a->node_id.size() != 2 * NodeID::kSize) {
      throw Error("NodeAffinityScheduling: '" + a->node_id +
                  "' is not a node id (32 hex digits, from lumen::Nodes() or "
                  "GetRuntimeContext().node_id())");
    }
    out.set_kind(proto::SchedulingStrategy::NODE_AFFINITY);
    out.set_node_id(node.Binary());
    out.set_soft(a->soft);
  }
  for (const auto& [k, v] : labels) (*out.mutable_label_selector())[k] = v;
  return out;
}

void InPlacementGroup(const PlacementGroup& group, int bundle_index, const char* what,
                      ResourceSet* resources, proto::SchedulingStrategy* strategy) {
  if (!group.valid()) {
    if (bundle_index != -1) {
      throw Error(std::string(what) + ": bundle_index " + std::to_string(bundle_index) +
                  " given without a placement_group");
    }
    return;
  }
  const PlacementGroupID id = PlacementGroupID::FromHex(group.id());
  if (id.IsNil())
    throw Error(std::string(what) + ": '" + group.id() + "' is not a placement group id");
  if (bundle_index < -1 || bundle_index >= group.bundle_count()) {
    throw Error(std::string(what) + ": bundle_index " + std::to_string(bundle_index) +
                " is out of range for placement group " + group.id() + " with " +
                std::to_string(group.bundle_count()) + " bundles (-1: any bundle)");
  }
  bool fits = false;
  for (int i = 0; i < group.bundle_count() && !fits; ++i) {
    if (bundle_index >= 0 && i != bundle_index) continue;
    fits = resources->IsSubsetOf(ResourceSet::FromDoubles(group.bundles()[static_cast<size_t>(i)]));
  }
  if (!fits) {
    std::string bundles;
    for (const auto& b : group.bundles()) {
      bundles += (bundles.empty() ? "" : ", ") + ResourceSet::FromDoubles(b).ToString();
    }
    throw Error(std::string(what) + ": it requires " + resources->ToString() + ", more than " +
                (bundle_index >= 0 ? "bundle " + std::to_string(bundle_index) : "any bundle") +
                " of placement group " + group.id() + " holds (bundles: " + bundles +
                "); ask for what the bundle has (num_cpus defaults to 1)");
  }
  *resources = scheduling::GroupRequest(*resources, id, bundle_index);
  strategy->set_kind(proto::SchedulingStrategy::HYBRID);
  strategy->clear_node_id();
  strategy->set_placement_group_id(id.Binary());
  strategy->set_bundle_index(bundle_index);
}

}  // namespace lumen::core
