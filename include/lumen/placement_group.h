// Placement groups: resources reserved together on the cluster's nodes (Ray's
// placement_group), for gang scheduling — every bundle is reserved or none is.
//
//   lumen::PlacementGroup pg = lumen::CreatePlacementGroup(
//       {.bundles = {{{"CPU", 1}}, {{"CPU", 1}, {"GPU", 1}}},
//        .strategy = lumen::PlacementStrategy::kStrictSpread,
//        .name = "pg"});
//   if (!pg.Wait(10000)) { /* not placed within 10 s: still pending */ }
//   auto r = lumen::Task(Train).Options({.placement_group = pg, .bundle_index = 1}).Remote();
//   lumen::RemovePlacementGroup(pg);  // frees the bundles, stops what runs inside
//
// A task or actor inside a group uses only the resources of its bundle (.bundle_index, -1:
// any bundle with room) and waits while the group is pending. A group lives until it is
// removed or the job that created it ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lumen/internal/timeout.h"

namespace lumen {

// Where the bundles go.
enum class PlacementStrategy {
  kPack,         // as few nodes as possible (one when it fits)
  kSpread,       // different nodes as far as they go
  kStrictPack,   // all on one node, or not at all
  kStrictSpread  // each on its own node, or not at all
};

struct PlacementGroupOptions {
  // Each bundle: resource name -> amount ("CPU", "GPU", "memory" in bytes, custom names).
  std::vector<std::map<std::string, double>> bundles{};
  PlacementStrategy strategy = PlacementStrategy::kPack;
  // Optional; unique among the cluster's groups (lumen::GetPlacementGroup finds it).
  std::string name{};
};

// A handle to a placement group; copyable. A default-constructed handle names no group (a
// task option left at it means "not in a group").
class PlacementGroup {
 public:
  PlacementGroup() = default;

  // The group's id (hex); empty for a default-constructed handle.
  const std::string& id() const { return id_; }
  const std::string& name() const { return name_; }
  PlacementStrategy strategy() const { return strategy_; }
  const std::vector<std::map<std::string, double>>& bundles() const { return bundles_; }
  int bundle_count() const { return static_cast<int>(bundles_.size()); }
  bool valid() const { return !id_.empty(); }

  // Blocks until every bundle is reserved (true) or timeout_ms passes (false: still pending;
  // 0 checks without waiting). Throws lumen::Error when the group can never be placed (the
  // message says why), was removed, or the handle names no group.
  bool Wait(int64_t timeout_ms) const;
  bool Wait(std::chrono::nanoseconds timeout) const { return Wait(internal::TimeoutMs(timeout)); }

 private:
  friend PlacementGroup CreatePlacementGroup(const PlacementGroupOptions& options);
  friend PlacementGroup GetPlacementGroup(const std::string& name);
  std::string id_;
  std::string name_;
  PlacementStrategy strategy_ = PlacementStrategy::kPack;
  std::vector<std::map<std::string, double>> bundles_;
};

// Asks the cluster to reserve the bundles; returns at once (Wait for the reservation). Throws
// lumen::Error on bad bundles (none, an empty or negative one) or a name already in use.
PlacementGroup CreatePlacementGroup(const PlacementGroupOptions& options);
// The group named `name`; throws lumen::Error when there is none.
PlacementGroup GetPlacementGroup(const std::string& name);
// Frees the group's bundles; tasks and actors running inside are stopped (their callers see
// the error), and ones still waiting for it fail. Removing a removed group does nothing.
void RemovePlacementGroup(const PlacementGroup& group);

}  // namespace lumen
