#include "scheduling/policy.h"

#include <algorithm>

namespace lumen::scheduling {

double Utilisation(const NodeView& node, const ResourceSet& request) {
  double worst = 0;
  auto consider = [&](const std::string& name) {
    int64_t total = node.total.Get(name);
    if (total <= 0) return;
    double used = 1.0 - static_cast<double>(node.available.Get(name)) / static_cast<double>(total);
    worst = std::max(worst, used);
  };
  consider("CPU");
  for (const auto& [name, amount] : request.amounts()) {
    if (name != "CPU") consider(name);
  }
  return worst;
}

bool LabelsMatch(const std::map<std::string, std::string>& labels,
                 const std::map<std::string, std::string>& selector) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

std::string LabelsToString(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ", ") + k + "=" + v;
  return out;
}

namespace {

// The node with the most CPU (then the most kinds of resources): what an infeasible request
// is compared with in its error.
const NodeView* Largest(const std::vector<const NodeView*>& nodes) {
  const NodeView* best = nullptr;
  for (const NodeView* n : nodes) {
    if (!best || n->total.Get("CPU") > best->total.Get("CPU") ||
        (n->total.Get("CPU") == best->total.Get("CPU") &&
         n->total.amounts().size() > best->total.amounts().size())) {
      best = n;
    }
  }
  return best;
}

std::string InfeasibleMessage(const Request& request, const std::vector<const NodeView*>& alive,
                              const std::vector<const NodeView*>& matching) {
  std::string need = request.resources.ToString();
  if (alive.empty()) return "no alive node in the cluster to run " + need;
  if (matching.empty()) {
    return "no alive node has the labels {" + LabelsToString(request.label_selector) +
           "} (requested with " + need + ")";
  }
  const NodeView* largest = Largest(matching);
  return "infeasible: requires " + need + " but the largest node " +
         (request.label_selector.empty() ? "" : "matching the labels ") + "has " +
         largest->total.ToString() + " (" + std::to_string(matching.size()) +
         (matching.size() == 1 ? " node" : " nodes") + " considered)";
}

}  // namespace

Decision ClusterScheduler::Schedule(const Request& request, const ClusterView& view) {
  std::vector<const NodeView*> alive, matching, feasible;
  for (const NodeView& n : view) {
    if (!n.alive) continue;
    alive.push_back(&n);
    if (!LabelsMatch(n.labels, request.label_selector)) continue;
    matching.push_back(&n);
    if (request.resources.IsSubsetOf(n.total)) feasible.push_back(&n);
  }
  if (request.strategy == Strategy::kNodeAffinity) {
    auto it = std::find_if(alive.begin(), alive.end(),
                           [&](const NodeView* n) { return n->id == request.affinity_node; });
    if (it == alive.end()) {
      if (!request.affinity_soft) {
        Decision d;
        d.error = "node " + request.affinity_node.Hex() +
                  " (hard node affinity) is dead or not part of the cluster";
        return d;
      }
    } else {
      const NodeView* n = *it;
      if (request.resources.IsSubsetOf(n->total) &&
          LabelsMatch(n->labels, request.label_selector)) {
        Decision d;
        d.kind = request.resources.IsSubsetOf(n->available) ? Decision::kRun : Decision::kQueue;
        d.node = n->id;
        return d;
      }
      if (!request.affinity_soft) {
        Decision d;
        d.error = "infeasible: requires " + request.resources.ToString() + " but node " +
                  n->id.Hex() + " (hard node affinity) has " + n->total.ToString();
        return d;
      }
    }
  }
  if (feasible.empty()) {
    Decision d;
    d.error = InfeasibleMessage(request, alive, matching);
    return d;
  }
  if (request.strategy == Strategy::kSpread) return Spread(feasible, request.resources);
  return Hybrid(request, feasible);
}

Decision ClusterScheduler::Hybrid(const Request& request,
                                  const std::vector<const NodeView*>& feasible) {
  // Scores below the threshold count as 0, so that an underused local node wins over an idle
  // remote one (packing); above it the least-utilised node wins (spreading).
  auto score = [&](const NodeView* n) {
    double u = Utilisation(*n, request.resources);
    return u < spread_threshold_ ? 0.0 : u;
  };
  const NodeView* best = nullptr;
  double best_score = 0, best_raw = 0;
  for (const NodeView* n : feasible) {
    if (!request.resources.IsSubsetOf(n->available)) continue;
    double s = score(n), raw = Utilisation(*n, request.resources);
    bool local = n->id == request.local_node;
    bool better = !best || s < best_score ||
                  (s == best_score && local && best->id != request.local_node) ||
                  (s == best_score && best->id != request.local_node && !local && raw < best_raw);
    if (better) {
      best = n;
      best_score = s;
      best_raw = raw;
    }
  }
  Decision d;
  if (best) {
    d.kind = Decision::kRun;
    d.node = best->id;
    return d;
  }
  d.kind = Decision::kQueue;
  for (const NodeView* n : feasible) {
    if (n->id == request.local_node) {
      d.node = n->id;
      return d;
    }
  }
  for (const NodeView* n : feasible) {
    double u = Utilisation(*n, request.resources);
    if (!best || u < best_raw) {
      best = n;
      best_raw = u;
    }
  }
  d.node = best->id;
  return d;
}

Decision ClusterScheduler::Spread(const std::vector<const NodeView*>& feasible,
                                  const ResourceSet& need) {
  // Round-robin in view order: the first node after the last one chosen, preferring nodes
  // that can run it now.
  size_t start = 0;
  for (size_t i = 0; i < feasible.size(); ++i) {
    if (feasible[i]->id == last_spread_node_) start = i + 1;
  }
  const NodeView* chosen = nullptr;
  for (size_t k = 0; k < feasible.size() && !chosen; ++k) {
    const NodeView* n = feasible[(start + k) % feasible.size()];
    if (need.IsSubsetOf(n->available)) chosen = n;
  }
  Decision d;
  d.kind = chosen ? Decision::kRun : Decision::kQueue;
  if (!chosen) chosen = feasible[start % feasible.size()];
  d.node = chosen->id;
  last_spread_node_ = chosen->id;
  return d;
}

}  // namespace lumen::scheduling
