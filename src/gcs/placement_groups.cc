#include "gcs/placement_groups.h"

#include <algorithm>
#include <set>

#include "common/config.h"
#include "common/logging.h"
#include "common/resources.h"
#include "common/rpc/message_types.h"
#include "scheduling/bundles.h"

namespace lumen::gcs {

namespace {

std::string Describe(const proto::PlacementGroupInfo& info) {
  std::string out = "placement group " + PlacementGroupID::FromBinary(info.id()).Hex();
  if (!info.name().empty()) out += " ('" + info.name() + "')";
  return out;
}

ResourceSet BundleResources(const proto::Bundle& b) {
  return ResourceSet::FromProto(b.resources().amounts());
}

}  // namespace

PlacementGroups::PlacementGroups(rpc::EventLoop* loop, Hooks hooks)
    : loop_(loop), hooks_(std::move(hooks)) {}

PlacementGroups::~PlacementGroups() { Stop(); }

void PlacementGroups::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& [id, g] : groups_) {
    if (g.retry_timer) loop_->CancelTimer(g.retry_timer);
    g.retry_timer = 0;
    AnswerWaiters(g);
  }
}

// ---- requests ------------------------------------------------------------------------------

void PlacementGroups::HandleCreate(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::CreatePlacementGroupRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.group().id().size() != PlacementGroupID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed CreatePlacementGroup"));
    return;
  }
  proto::CreatePlacementGroupReply reply;
  proto::PlacementGroupInfo info = std::move(*req.mutable_group());
  const auto id = PlacementGroupID::FromBinary(info.id());
  auto refuse = [&](const std::string& why) {
    reply.set_error(why);
    c->Reply(f, reply);
  };
  if (groups_.count(id)) return refuse("a placement group with id " + id.Hex() + " exists");
  if (info.strategy() < 0 ||
      info.strategy() > static_cast<int>(scheduling::BundleStrategy::kStrictSpread)) {
    return refuse("unknown placement strategy " + std::to_string(info.strategy()));
  }
  if (info.bundles_size() == 0) return refuse("a placement group needs at least one bundle");
  for (int i = 0; i < info.bundles_size(); ++i) {
    proto::Bundle* b = info.mutable_bundles(i);
    b->set_index(i);
    b->clear_node_id();
    ResourceSet r = BundleResources(*b);
    if (r.Empty()) return refuse("bundle " + std::to_string(i) + " asks for no resources");
    for (const auto& [name, amount] : r.amounts()) {
      if (amount < 0 || name.empty() || !scheduling::GroupOfResource(name).IsNil()) {
        return refuse("bundle " + std::to_string(i) + " has a bad resource: " + r.ToString());
      }
    }
  }
  if (!info.name().empty() && names_.count(info.name())) {
    return refuse("a placement group named '" + info.name() + "' already exists");
  }
  info.set_state(proto::PG_PENDING);
  info.clear_error();
  if (!info.name().empty()) names_[info.name()] = id;
  Group& g = groups_[id];
  g.info = std::move(info);
  LUMEN_LOG(INFO) << Describe(g.info) << " created ("
                  << scheduling::BundleStrategyName(
                         static_cast<scheduling::BundleStrategy>(g.info.strategy()))
                  << ", " << g.info.bundles_size() << " bundles)";
  reply.set_ok(true);
  c->Reply(f, reply);
  Save(g);
  TrySchedule(id);
  if (hooks_.on_change) hooks_.on_change();
}

void PlacementGroups::HandleWait(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::WaitPlacementGroupRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed WaitPlacementGroup"));
    return;
  }
  PlacementGroupID id = PlacementGroupID::FromBinary(req.id());
  if (req.id().empty()) {
    auto n = names_.find(req.name());
    id = n == names_.end() ? PlacementGroupID::Nil() : n->second;
  }
  auto it = id.IsNil() ? groups_.end() : groups_.find(id);
  if (it == groups_.end()) {
    c->Reply(f, proto::WaitPlacementGroupReply());  // not found
    return;
  }
  Group& g = it->second;
  Waiter w{c, rpc::ReplyHandle(f), 0};
  if (g.info.state() != proto::PG_PENDING || req.timeout_ms() <= 0 || stopped_) {
    Answer(w, g.info);
    return;
  }
  const uint64_t key = next_waiter_++;
  // Clients wait in slices (a hostile huge timeout must not overflow the clock either).
  const int64_t timeout_ms = std::min<int64_t>(req.timeout_ms(), 3600 * 1000);
  w.timer = loop_->RunAfter(std::chrono::milliseconds(timeout_ms), [this, id, key] {
    auto it = groups_.find(id);
    if (it == groups_.end()) return;
    auto w = it->second.waiters.find(key);
    if (w == it->second.waiters.end()) return;
    w->second.timer = 0;
    Answer(w->second, it->second.info);
    it->second.waiters.erase(w);
  });
  g.waiters.emplace(key, std::move(w));
}

void PlacementGroups::HandleRemove(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::RemovePlacementGroupRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.id().size() != PlacementGroupID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed RemovePlacementGroup"));
    return;
  }
  // The reply waits for the nodes: once the caller sees it, the bundles are free.
  std::weak_ptr<rpc::Connection> weak = c;
  Remove(PlacementGroupID::FromBinary(req.id()), "removed by lumen::RemovePlacementGroup",
         [weak, reply_to = rpc::ReplyHandle(f)] {
           if (auto conn = weak.lock()) conn->Reply(reply_to, proto::Empty());
         });
}

// ---- events --------------------------------------------------------------------------------

void PlacementGroups::OnResourcesChanged() {
  if (stopped_) return;
  std::vector<PlacementGroupID> pending;
  for (const auto& [id, g] : groups_) {
    if (g.info.state() == proto::PG_PENDING && !g.attempt && !g.retry_timer) pending.push_back(id);
  }
  for (const auto& id : pending) TrySchedule(id);
}

void PlacementGroups::OnJobFinished(const JobID& job) {
  std::vector<PlacementGroupID> ids;
  for (const auto& [id, g] : groups_) {
    if (JobID::FromBinary(g.info.job_id()) == job) ids.push_back(id);
  }
  for (const auto& id : ids) Remove(id, "the job that created it finished");
}

void PlacementGroups::OnNodeDead(const NodeID& node) {
  std::vector<PlacementGroupID> affected;
  for (auto& [id, g] : groups_) {
    bool lost = false;
    for (auto& b : *g.info.mutable_bundles()) {
      if (!b.node_id().empty() && NodeID::FromBinary(b.node_id()) == node) {
        b.clear_node_id();
        lost = true;
      }
    }
    if (lost && g.info.state() == proto::PG_CREATED) {
      LUMEN_LOG(WARNING) << Describe(g.info) << " lost bundles with node " << node.Hex()
                         << "; placing them again";
      g.info.set_state(proto::PG_PENDING);
      affected.push_back(id);
      Save(g);
    }
  }
  for (const auto& id : affected) TrySchedule(id);
  if (!affected.empty() && hooks_.on_change) hooks_.on_change();
}

// ---- reservation ---------------------------------------------------------------------------

void PlacementGroups::TrySchedule(const PlacementGroupID& id) {
  auto it = groups_.find(id);
  if (it == groups_.end() || stopped_) return;
  Group& g = it->second;
  if (g.info.state() != proto::PG_PENDING || g.attempt) return;
  const auto strategy = static_cast<scheduling::BundleStrategy>(g.info.strategy());
  // The bundles without a node (all of them but for those surviving a node's death).
  std::vector<int> missing;
  std::vector<ResourceSet> bundles;
  std::set<NodeID> holding;
  for (const auto& b : g.info.bundles()) {
    if (b.node_id().empty()) {
      missing.push_back(b.index());
      bundles.push_back(BundleResources(b));
    } else {
      holding.insert(NodeID::FromBinary(b.node_id()));
    }
  }
  if (missing.empty()) return Created(g);
  scheduling::ClusterView view = hooks_.view();
  SubtractInFlight(&view);
  if (!holding.empty()) {  // keep the strategy's promise with the bundles already placed
    std::erase_if(view, [&](const scheduling::NodeView& n) {
      if (strategy == scheduling::BundleStrategy::kStrictSpread) return holding.count(n.id) > 0;
      if (strategy == scheduling::BundleStrategy::kStrictPack) return holding.count(n.id) == 0;
      return false;
    });
  }
  scheduling::BundlePlan plan = scheduling::PlaceBundles(bundles, strategy, view);
  if (plan.kind == scheduling::BundlePlan::kWait) return;  // until resources change
  if (plan.kind == scheduling::BundlePlan::kInfeasible) {
    const int64_t wait_s = Config::Get().infeasible_wait_s();
    const auto now = std::chrono::steady_clock::now();
    if (wait_s > 0) {
      if (g.infeasible_deadline == std::chrono::steady_clock::time_point{}) {
        g.infeasible_deadline = now + std::chrono::seconds(wait_s);
        loop_->RunAfter(std::chrono::seconds(wait_s), [this, id] { TrySchedule(id); });
      }
      if (now < g.infeasible_deadline) return;  // a node that can hold it may join
      plan.error += " (waited " + std::to_string(wait_s) +
                    " s, LUMEN_INFEASIBLE_WAIT_S, for nodes that can hold it)";
    }
    return Fail(g, plan.error);
  }
  g.infeasible_deadline = {};
  g.attempt = next_attempt_++;
  g.in_flight.clear();
  g.prepared.clear();
  g.replies = 0;
  for (size_t i = 0; i < missing.size(); ++i) g.in_flight[plan.nodes[i]].push_back(missing[i]);
  std::vector<std::pair<NodeID, rpc::ConnectionPtr>> targets;
  for (const auto& [node, indexes] : g.in_flight) {
    auto conn = hooks_.node(node);
    if (!conn) return AbandonAttempt(g, "node " + node.Hex() + " is unreachable");
    targets.emplace_back(node, std::move(conn));
  }
  const uint64_t attempt = g.attempt;
  for (auto& [node, conn] : targets) {
    proto::PrepareBundlesRequest req;
    req.set_placement_group_id(id.Binary());
    for (int index : g.in_flight[node]) *req.add_bundles() = g.info.bundles(index);
    conn->Call(
        rpc::kPrepareBundles, req,
        [this, id, attempt, node = node](const Status& st, std::string_view payload) {
          proto::PrepareBundlesReply reply;
          bool ok = st.ok() && rpc::ParsePayload(payload, &reply) && reply.ok();
          OnPrepared(id, attempt, node, ok, st.ok() ? reply.error() : st.ToString());
        },
        Config::Get().placement_group_rpc_timeout_ms());
  }
}

void PlacementGroups::OnPrepared(const PlacementGroupID& id, uint64_t attempt, const NodeID& node,
                                 bool ok, const std::string& error) {
  auto it = groups_.find(id);
  if (it == groups_.end()) {  // removed meanwhile: Remove returned what it could; make sure
    if (ok) ReturnOn(node, id);
    return;
  }
  Group& g = it->second;
  if (g.attempt != attempt) {
    if (ok) ReturnOn(node, id);
    return;
  }
  g.prepared[node] = ok;
  if (!ok) {
    LUMEN_LOG(INFO) << Describe(g.info) << ": node " << node.Hex().substr(0, 8)
                    << " could not reserve its bundles (" << error << "); trying again";
  }
  if (++g.replies < g.in_flight.size()) return;
  for (const auto& [n, yes] : g.prepared) {
    if (!yes) return AbandonAttempt(g, error);
  }
  Commit(g);
}

void PlacementGroups::Commit(Group& g) {
  const PlacementGroupID id = PlacementGroupID::FromBinary(g.info.id());
  const uint64_t attempt = g.attempt;
  auto remaining = std::make_shared<size_t>(g.in_flight.size());
  auto failed = std::make_shared<bool>(false);
  proto::PlacementGroupRequest req;
  req.set_placement_group_id(id.Binary());
  for (const auto& [node, indexes] : g.in_flight) {
    auto conn = hooks_.node(node);
    auto done = [this, id, attempt, remaining, failed](const Status& st, std::string_view payload) {
      proto::NodeStats stats;
      if (st.ok() && rpc::ParsePayload(payload, &stats)) {
        if (hooks_.on_node_stats) hooks_.on_node_stats(stats);
      } else {
        *failed = true;
      }
      if (--*remaining > 0) return;
      auto it = groups_.find(id);
      if (it == groups_.end() || it->second.attempt != attempt) return;
      Group& g = it->second;
      if (*failed) return AbandonAttempt(g, "a node did not confirm its bundles");
      for (const auto& [n, indexes] : g.in_flight) {
        for (int index : indexes) g.info.mutable_bundles(index)->set_node_id(n.Binary());
      }
      g.in_flight.clear();
      g.attempt = 0;
      Created(g);
    };
    if (!conn) {
      done(UnavailableError("node " + node.Hex() + " is unreachable"), {});
      continue;
    }
    conn->Call(rpc::kCommitBundles, req, done, Config::Get().placement_group_rpc_timeout_ms());
  }
}

void PlacementGroups::AbandonAttempt(Group& g, const std::string& why) {
  const PlacementGroupID id = PlacementGroupID::FromBinary(g.info.id());
  LUMEN_LOG(INFO) << Describe(g.info) << ": reservation attempt failed (" << why << ")";
  for (const auto& [node, indexes] : g.in_flight) ReturnOn(node, id);
  // ReturnOn gives back every bundle of the group on a node, also those that survived a
  // node's death there; they are placed again with the rest.
  for (auto& b : *g.info.mutable_bundles()) {
    if (!b.node_id().empty() && g.in_flight.count(NodeID::FromBinary(b.node_id()))) {
      b.clear_node_id();
    }
  }
  g.in_flight.clear();
  g.prepared.clear();
  g.attempt = 0;
  RetryLater(g);
}

void PlacementGroups::RetryLater(Group& g) {
  if (g.retry_timer || stopped_) return;
  const PlacementGroupID id = PlacementGroupID::FromBinary(g.info.id());
  g.retry_timer = loop_->RunAfter(
      std::chrono::milliseconds(Config::Get().placement_group_retry_ms()), [this, id] {
        auto it = groups_.find(id);
        if (it == groups_.end()) return;
        it->second.retry_timer = 0;
        TrySchedule(id);
      });
}

void PlacementGroups::ReturnOn(const NodeID& node, const PlacementGroupID& id,
                               std::function<void()> done) {
  auto conn = hooks_.node(node);
  if (!conn) {  // a dead node's resources went with it
    if (done) done();
    return;
  }
  proto::PlacementGroupRequest req;
  req.set_placement_group_id(id.Binary());
  conn->Call(
      rpc::kReturnBundles, req,
      [this, done = std::move(done)](const Status& st, std::string_view payload) {
        proto::NodeStats stats;
        if (!stopped_ && st.ok() && rpc::ParsePayload(payload, &stats) && hooks_.on_node_stats) {
          hooks_.on_node_stats(stats);
        }
        if (done) done();
      },
      Config::Get().placement_group_rpc_timeout_ms());
}

void PlacementGroups::Created(Group& g) {
  g.info.set_state(proto::PG_CREATED);
  Save(g);
  LUMEN_LOG(INFO) << Describe(g.info) << " is placed";
  AnswerWaiters(g);
  if (hooks_.on_change) hooks_.on_change();
}

void PlacementGroups::Fail(Group& g, const std::string& error) {
  g.info.set_state(proto::PG_FAILED);
  g.info.set_error(error);
  Save(g);
  LUMEN_LOG(WARNING) << Describe(g.info) << " cannot be placed: " << error;
  AnswerWaiters(g);
  if (hooks_.on_change) hooks_.on_change();
}

void PlacementGroups::Remove(const PlacementGroupID& id, const std::string& why,
                             std::function<void()> done) {
  auto it = groups_.find(id);
  if (it == groups_.end()) {
    if (done) done();
    return;
  }
  Group& g = it->second;
  LUMEN_LOG(INFO) << Describe(g.info) << " removed: " << why;
  if (hooks_.on_removed) hooks_.on_removed(id, why);
  std::set<NodeID> nodes;
  for (const auto& b : g.info.bundles()) {
    if (!b.node_id().empty()) nodes.insert(NodeID::FromBinary(b.node_id()));
  }
  for (const auto& [node, indexes] : g.in_flight) nodes.insert(node);
  auto left = std::make_shared<size_t>(nodes.size());
  if (nodes.empty() && done) done();
  for (const auto& node : nodes) {
    ReturnOn(node, id, [left, done] {
      if (--*left == 0 && done) done();
    });
  }
  if (g.retry_timer) loop_->CancelTimer(g.retry_timer);
  g.info.set_state(proto::PG_REMOVED);
  g.info.set_error(why);
  AnswerWaiters(g);
  if (!g.info.name().empty()) {
    auto n = names_.find(g.info.name());
    if (n != names_.end() && n->second == id) names_.erase(n);
  }
  groups_.erase(it);
  if (hooks_.erase) hooks_.erase(id);
  if (hooks_.on_change) hooks_.on_change();
}

// ---- persistence -----------------------------------------------------------------------------

void PlacementGroups::Save(const Group& g) {
  if (hooks_.persist) hooks_.persist(g.info);
}

void PlacementGroups::Restore(const proto::PlacementGroupInfo& info) {
  const auto id = PlacementGroupID::FromBinary(info.id());
  if (id.IsNil() || info.state() == proto::PG_REMOVED) return;
  Group& g = groups_[id];
  g.info = info;
  if (!info.name().empty()) names_[info.name()] = id;
}

void PlacementGroups::Resume() {
  for (auto& [id, g] : groups_) {
    if (g.info.state() != proto::PG_PENDING || g.attempt) continue;
    // A reservation may have been half done (prepared on some nodes, never committed): every
    // node gives back what it holds of the group, and the whole group is placed again.
    std::set<NodeID> nodes;
    for (const auto& n : hooks_.view()) nodes.insert(n.id);
    for (auto& b : *g.info.mutable_bundles()) b.clear_node_id();
    auto left = std::make_shared<size_t>(nodes.size() + 1);
    auto then = [this, left, id = id] {
      if (--*left == 0) TrySchedule(id);
    };
    for (const auto& node : nodes) ReturnOn(node, id, then);
    then();
  }
}

// ---- answers -------------------------------------------------------------------------------

void PlacementGroups::AnswerWaiters(Group& g) {
  for (auto& [key, w] : g.waiters) {
    if (w.timer) loop_->CancelTimer(w.timer);
    Answer(w, g.info);
  }
  g.waiters.clear();
}

void PlacementGroups::Answer(Waiter& w, const proto::PlacementGroupInfo& info) {
  auto conn = w.conn.lock();
  if (!conn || conn->closed()) return;
  proto::WaitPlacementGroupReply reply;
  reply.set_found(true);
  *reply.mutable_group() = info;
  conn->Reply(w.reply_to, reply);
}

const proto::PlacementGroupInfo* PlacementGroups::Find(const PlacementGroupID& id) const {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : &it->second.info;
}

void PlacementGroups::AddTo(
    google::protobuf::RepeatedPtrField<proto::PlacementGroupInfo>* out) const {
  for (const auto& [id, g] : groups_) *out->Add() = g.info;
}

void PlacementGroups::SubtractInFlight(scheduling::ClusterView* view) const {
  for (const auto& [id, g] : groups_) {
    for (const auto& [node, indexes] : g.in_flight) {
      for (auto& n : *view) {
        if (n.id != node) continue;
        for (int index : indexes) n.available.Subtract(BundleResources(g.info.bundles(index)));
      }
    }
  }
}

}  // namespace lumen::gcs
