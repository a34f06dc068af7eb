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

}  // namespace lumen::scheduling
