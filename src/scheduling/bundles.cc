#include "scheduling/bundles.h"

#include <algorithm>
#include <numeric>
#include <optional>
#include <set>
#include <utility>

namespace lumen::scheduling {

namespace {

// Nodes with what is left of them as bundles are placed (`available` counts down).
using Capacity = std::vector<NodeView>;

// The least-utilised node of `nodes` (by index) that can hold `need` and passes `allowed`.
template <class Allowed>
std::optional<size_t> Best(const Capacity& nodes, const ResourceSet& need, Allowed allowed) {
  std::optional<size_t> best;
  double best_util = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!allowed(i) || !need.IsSubsetOf(nodes[i].available)) continue;
    const double util = Utilisation(nodes[i], need);
    if (!best || util < best_util) {
      best = i;
      best_util = util;
    }
  }
  return best;
}

std::optional<std::vector<size_t>> Place(const std::vector<ResourceSet>& bundles,
                                         BundleStrategy strategy, Capacity nodes) {
  std::vector<size_t> where(bundles.size());
  auto any = [](size_t) { return true; };
  if (strategy == BundleStrategy::kStrictPack || strategy == BundleStrategy::kPack) {
    ResourceSet all;
    for (const auto& b : bundles) all.Add(b);
    if (auto node = Best(nodes, all, any)) {
      std::fill(where.begin(), where.end(), *node);
      return where;
    }
    if (strategy == BundleStrategy::kStrictPack) return std::nullopt;
  }
  // Bundles asking for more kinds of resource, then more of them, first: they have the
  // fewest nodes to choose from.
  auto weight = [&](size_t i) {
    int64_t sum = 0;
    for (const auto& [name, amount] : bundles[i].amounts()) sum += amount;
    return std::make_pair(bundles[i].amounts().size(), sum);
  };
  std::vector<size_t> order(bundles.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return weight(a) > weight(b); });
  std::set<size_t> used;
  for (size_t i : order) {
    const ResourceSet& need = bundles[i];
    std::optional<size_t> node;
    switch (strategy) {
      case BundleStrategy::kPack:  // a node the group uses already, else the emptiest
        node = Best(nodes, need, [&](size_t n) { return used.count(n) > 0; });
        if (!node) node = Best(nodes, need, any);
        break;
      case BundleStrategy::kSpread:  // a node the group does not use yet, else any
        node = Best(nodes, need, [&](size_t n) { return used.count(n) == 0; });
        if (!node) node = Best(nodes, need, any);
        break;
      case BundleStrategy::kStrictSpread:
        node = Best(nodes, need, [&](size_t n) { return used.count(n) == 0; });
        break;
      case BundleStrategy::kStrictPack:
        break;
    }
    if (!node) return std::nullopt;
    where[i] = *node;
    used.insert(*node);
    nodes[*node].available.Subtract(need);
  }
  return where;
}

std::string BundlesToString(const std::vector<ResourceSet>& bundles) {
  std::string out;
  for (const auto& b : bundles) out += (out.empty() ? "" : ", ") + b.ToString();
  return out;
}

}  // namespace

const char* BundleStrategyName(BundleStrategy s) {
  switch (s) {
    case BundleStrategy::kPack:
      return "PACK";
    case BundleStrategy::kSpread:
      return "SPREAD";
    case BundleStrategy::kStrictPack:
      return "STRICT_PACK";
    case BundleStrategy::kStrictSpread:
      return "STRICT_SPREAD";
  }
  return "?";
}

BundlePlan PlaceBundles(const std::vector<ResourceSet>& bundles, BundleStrategy strategy,
                        const ClusterView& view) {
  BundlePlan plan;
  Capacity now, ever;
  for (const auto& n : view) {
    if (!n.alive) continue;
    now.push_back(n);
    ever.push_back(n);
    ever.back().available = n.total;
  }
  if (bundles.empty()) {
    plan.error = "a placement group needs at least one bundle";
    return plan;
  }
  if (auto where = Place(bundles, strategy, now)) {
    plan.kind = BundlePlan::kPlaced;
    for (size_t i : *where) plan.nodes.push_back(now[i].id);
    return plan;
  }
  if (Place(bundles, strategy, ever)) {
    plan.kind = BundlePlan::kWait;
    return plan;
  }
  plan.error = "the bundles " + BundlesToString(bundles) + " cannot be placed " +
               BundleStrategyName(strategy) + " on the " + std::to_string(ever.size()) +
               " alive node" + (ever.size() == 1 ? "" : "s");
  if (strategy == BundleStrategy::kStrictSpread && bundles.size() > ever.size()) {
    plan.error += " (STRICT_SPREAD needs a node per bundle)";
  } else if (!ever.empty()) {
    const NodeView* largest = &ever.front();
    for (const auto& n : ever) {
      if (n.total.Get("CPU") > largest->total.Get("CPU")) largest = &n;
    }
    plan.error += " (largest node: " + largest->total.ToString() + ")";
  }
  return plan;
}

namespace {

constexpr const char* kGroupInfix = "_group_";
constexpr const char* kMarker = "bundle";
constexpr double kMarkerTotal = 1000;
constexpr double kMarkerRequest = 0.001;

std::string Wildcard(const std::string& resource, const PlacementGroupID& group) {
  return resource + kGroupInfix + group.Hex();
}
std::string Indexed(const std::string& resource, const PlacementGroupID& group, int index) {
  return resource + kGroupInfix + std::to_string(index) + "_" + group.Hex();
}

}  // namespace

ResourceSet CommittedBundleResources(const ResourceSet& bundle, const PlacementGroupID& group,
                                     int index) {
  ResourceSet out;
  for (const auto& [name, amount] : bundle.amounts()) {
    out.Set(Wildcard(name, group), amount);
    out.Set(Indexed(name, group, index), amount);
  }
  out.Set(Wildcard(kMarker, group), ToFixed(kMarkerTotal));
  out.Set(Indexed(kMarker, group, index), ToFixed(kMarkerTotal));
  return out;
}

ResourceSet GroupRequest(const ResourceSet& need, const PlacementGroupID& group, int index) {
  ResourceSet out;
  for (const auto& [name, amount] : need.amounts()) {
    out.Set(Wildcard(name, group), amount);
    if (index >= 0) out.Set(Indexed(name, group, index), amount);
  }
  out.Set(Wildcard(kMarker, group), ToFixed(kMarkerRequest));
  if (index >= 0) out.Set(Indexed(kMarker, group, index), ToFixed(kMarkerRequest));
  return out;
}

ResourceSet ForBundle(const ResourceSet& any_bundle_request, const PlacementGroupID& group,
                      int index) {
  ResourceSet out = any_bundle_request;
  const std::string suffix = kGroupInfix + group.Hex();
  for (const auto& [name, amount] : any_bundle_request.amounts()) {
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    out.Set(Indexed(name.substr(0, name.size() - suffix.size()), group, index), amount);
  }
  return out;
}

PlacementGroupID GroupOfResource(const std::string& name) {
  const size_t hex = 2 * PlacementGroupID::kSize;
  if (name.size() <= hex + 1 || name[name.size() - hex - 1] != '_' ||
      name.find(kGroupInfix) == std::string::npos) {
    return PlacementGroupID::Nil();
  }
  return PlacementGroupID::FromHex(std::string_view(name).substr(name.size() - hex));
}

int64_t GpusOf(const ResourceSet& need) {
  int64_t gpus = need.Get("GPU");
  const std::string prefix = std::string("GPU") + kGroupInfix;
  for (const auto& [name, amount] : need.amounts()) {
    // The unindexed name only: GPU_group_<hex>, not GPU_group_<i>_<hex>.
    if (name.size() == prefix.size() + 2 * PlacementGroupID::kSize &&
        name.compare(0, prefix.size(), prefix) == 0) {
      gpus += amount;
    }
  }
  return gpus;
}

bool IsCpuResource(const std::string& name) {
  return name == "CPU" || name.rfind(std::string("CPU") + kGroupInfix, 0) == 0;
}

}  // namespace lumen::scheduling
