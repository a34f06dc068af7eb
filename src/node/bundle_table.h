// The placement-group bundles one node reserves, in the control service's two phases:
// Prepare takes the bundles' resources out of what leases can use (all of a request or
// none), Commit turns them into the group's resources (scheduling/bundles.h names them),
// Return gives prepared or committed bundles back. Requests are idempotent: the control
// service may repeat one after a lost reply.
//
//   BundleTable bundles;
//   if (bundles.Prepare(group, {{0, cpu1}}, &available, &error)) bundles.Commit(group, &total,
//   &available);
//
// Thread safety: thread-compatible (the node daemon's loop owns it).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/resources.h"
#include "lumen/ids.h"

namespace lumen::node {

class BundleTable {
 public:
  // Takes the resources of the bundles (index, resources) that are not prepared yet out of
  // `available`, if they all fit; otherwise takes nothing and says why in `error`.
  bool Prepare(const PlacementGroupID& group,
               const std::vector<std::pair<int, ResourceSet>>& bundles, ResourceSet* available,
               std::string* error);
  // The prepared bundles of `group` become its resources in `total` and `available`.
  void Commit(const PlacementGroupID& group, ResourceSet* total, ResourceSet* available);
  // Every bundle of `group` here goes back: its group resources leave `total` and `available`
  // and what it reserved returns to `available`. End the leases that use them first.
  void Return(const PlacementGroupID& group, ResourceSet* total, ResourceSet* available);
  // The committed bundle indexes of `group` on this node, ascending.
  std::vector<int> Committed(const PlacementGroupID& group) const;
  bool Has(const PlacementGroupID& group) const { return groups_.count(group) > 0; }
  std::vector<PlacementGroupID> Groups() const;

 private:
  struct Bundle {
    ResourceSet resources;
    bool committed = false;
  };
  std::map<PlacementGroupID, std::map<int, Bundle>> groups_;
};

}  // namespace lumen::node
