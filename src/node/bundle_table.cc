#include "node/bundle_table.h"

#include "scheduling/bundles.h"

namespace lumen::node {

bool BundleTable::Prepare(const PlacementGroupID& group,
                          const std::vector<std::pair<int, ResourceSet>>& bundles,
                          ResourceSet* available, std::string* error) {
  auto existing = groups_.find(group);
  ResourceSet need;
  for (const auto& [index, resources] : bundles) {
    if (existing != groups_.end() && existing->second.count(index)) continue;  // a repeat
    need.Add(resources);
  }
  if (!need.IsSubsetOf(*available)) {
    *error =
        "bundles need " + need.ToString() + " but this node has " + available->ToString() + " free";
    return false;
  }
  available->Subtract(need);
  auto& mine = groups_[group];
  for (const auto& [index, resources] : bundles) mine.emplace(index, Bundle{resources, false});
  return true;
}

void BundleTable::Commit(const PlacementGroupID& group, ResourceSet* total,
                         ResourceSet* available) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return;
  for (auto& [index, bundle] : it->second) {
    if (bundle.committed) continue;
    bundle.committed = true;
    ResourceSet added = scheduling::CommittedBundleResources(bundle.resources, group, index);
    total->Add(added);
    available->Add(added);
  }
}

void BundleTable::Return(const PlacementGroupID& group, ResourceSet* total,
                         ResourceSet* available) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return;
  for (auto& [index, bundle] : it->second) {
    if (bundle.committed) {
      ResourceSet added = scheduling::CommittedBundleResources(bundle.resources, group, index);
      total->Subtract(added);
      available->Subtract(added);
    }
    available->Add(bundle.resources);
  }
  groups_.erase(it);
  // Whatever a lease still held of the group (none once its leases ended) must not linger.
  for (ResourceSet* set : {total, available}) {
    std::vector<std::string> stale;
    for (const auto& [name, amount] : set->amounts()) {
      if (scheduling::GroupOfResource(name) == group) stale.push_back(name);
    }
    for (const auto& name : stale) set->Set(name, 0);
  }
}

std::vector<int> BundleTable::Committed(const PlacementGroupID& group) const {
  std::vector<int> out;
  auto it = groups_.find(group);
  if (it == groups_.end()) return out;
  for (const auto& [index, bundle] : it->second) {
    if (bundle.committed) out.push_back(index);
  }
  return out;
}

std::vector<PlacementGroupID> BundleTable::Groups() const {
  std::vector<PlacementGroupID> out;
  for (const auto& [id, bundles] : groups_) out.push_back(id);
  return out;
}

}  // namespace lumen::node
