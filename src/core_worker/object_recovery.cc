#include "core_worker/object_recovery.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <thread>
#include <utility>

#include "common/config.h"
#include "common/logging.h"
#include "core_worker/task_spec.h"
#include "gcs.pb.h"

namespace lumen::core {

namespace {

proto::ErrorInfo ErrorOf(proto::ErrorType type, std::string message) {
  proto::ErrorInfo e;
  e.set_type(type);
  e.set_message(std::move(message));
  return e;
}

std::string Short(const NodeID& node) { return node.Hex().substr(0, 12); }

}  // namespace

ObjectRecovery::ObjectRecovery(MemoryStore* memory_store, ReferenceCounter* references, Hooks hooks,
                               int64_t max_lineage_bytes)
    : memory_store_(*memory_store),
      references_(*references),
      hooks_(std::move(hooks)),
      max_bytes_(max_lineage_bytes) {}

void ObjectRecovery::RecordLineage(const std::shared_ptr<TaskEntry>& task) {
  const TaskID tid = TaskID::FromBinary(task->spec.task_id());
  std::vector<ObjectID> unpin;
  {
    MutexLock lock(mu_);
    auto it = lineage_.find(tid);
    if (it != lineage_.end()) {  // a re-run finished: its copy carries the retries left
      it->second.running = false;
      if (it->second.task) {
        it->second.task->retries_left = std::min(it->second.task->retries_left, task->retries_left);
      }
      return;
    }
    Lineage l;
    l.returns = task->returns;
    // Results already forgotten (every handle dropped before the task finished) are counted
    // now; later ones arrive through OnForgotten, which needs the lock held here.
    for (const auto& r : l.returns) l.forgotten += !references_.Has(r);
    if (l.forgotten == l.returns.size()) return;
    std::vector<ObjectID> args;
    for (const auto& arg : task->spec.args()) {
      if (arg.has_ref()) args.push_back(ObjectID::FromBinary(arg.ref().object_id()));
    }
    l.pinned = references_.AddLineageRefs(args);
    l.task = task;  // its held_refs are the caller's to release (a re-run holds `pinned`)
    l.bytes = static_cast<int64_t>(task->spec.ByteSizeLong() +
                                   sizeof(ObjectID) * (l.returns.size() + l.pinned.size()) + 128);
    bytes_ += l.bytes;
    lineage_.emplace(tid, std::move(l));
    order_.push_back(tid);
    EvictLocked(&unpin);
    if (order_.size() > 2 * lineage_.size() + 64) {  // drop names of tasks already gone
      std::deque<TaskID> live;
      for (const auto& t : order_) {
        auto l2 = lineage_.find(t);
        if (l2 != lineage_.end() && l2->second.task) live.push_back(t);
      }
      order_.swap(live);
    }
  }
  if (!unpin.empty()) references_.RemoveLineageRefs(unpin);
}

void ObjectRecovery::EvictLocked(std::vector<ObjectID>* unpin) {
  while (bytes_ > max_bytes_ && !order_.empty()) {
    TaskID tid = order_.front();
    order_.pop_front();
    auto it = lineage_.find(tid);
    if (it == lineage_.end() || !it->second.task) continue;
    if (it->second.running) {  // a re-run needs it: keep it, look at the next oldest
      order_.push_back(tid);
      if (order_.front() == tid) break;
      continue;
    }
    Lineage& l = it->second;
    bytes_ -= l.bytes;
    l.bytes = 0;
    l.task.reset();  // the entry stays, so that a loss can say why it is final
    unpin->insert(unpin->end(), l.pinned.begin(), l.pinned.end());
    l.pinned.clear();
  }
}

void ObjectRecovery::DropLocked(const TaskID& task, std::vector<ObjectID>* unpin) {
  auto it = lineage_.find(task);
  if (it == lineage_.end()) return;
  bytes_ -= it->second.bytes;
  unpin->insert(unpin->end(), it->second.pinned.begin(), it->second.pinned.end());
  lineage_.erase(it);
}

void ObjectRecovery::OnForgotten(const ObjectID& id) {
  if (id.IsPut()) return;
  std::vector<ObjectID> unpin;
  {
    MutexLock lock(mu_);
    auto it = lineage_.find(id.Task());
    if (it == lineage_.end()) return;
    if (++it->second.forgotten >= it->second.returns.size()) DropLocked(id.Task(), &unpin);
  }
  if (!unpin.empty()) references_.RemoveLineageRefs(unpin);
}

void ObjectRecovery::OnCopyAdded(const ObjectID& id, const NodeID& node) {
  if (node.IsNil() || !references_.IsOwned(id) || !references_.HasValue(id)) return;
  MutexLock lock(mu_);
  if (dead_.count(node)) return;
  auto& nodes = copies_[id];
  // A few copies are as good as many (a peer's flood of notes must not grow this).
  constexpr size_t kMaxCopies = 16;
  if (nodes.size() < kMaxCopies && std::find(nodes.begin(), nodes.end(), node) == nodes.end()) {
    nodes.push_back(node);
  }
}

std::vector<NodeID> ObjectRecovery::TakeCopies(const ObjectID& id) {
  MutexLock lock(mu_);
  auto it = copies_.find(id);
  if (it == copies_.end()) return {};
  std::vector<NodeID> out = std::move(it->second);
  copies_.erase(it);
  return out;
}

void ObjectRecovery::Promote(Actions::Promotion p) {
  NodeID node;
  Actions a;
  {
    MutexLock lock(mu_);
    DropDeadLocked(&p.candidates);
    if (p.candidates.empty()) {  // no copy left: as if it never had one
      RecoverLocked(p.id, p.why, &a);
      ExpandLocked(&a, 0);
    } else {
      node = p.candidates.front();
      p.candidates.erase(p.candidates.begin());
    }
  }
  if (node.IsNil()) {
    Run(a);
    return;
  }
  hooks_.promote_copy(p.id, node, [this, p = std::move(p), node](Status st) mutable {
    if (st.ok()) {
      bool alive;
      {
        MutexLock lock(mu_);
        alive = !dead_.count(node);
        if (alive) {
          auto& nodes = copies_[p.id];
          std::erase(nodes, node);  // the primary now
          if (nodes.empty()) copies_.erase(p.id);
        }
      }
      if (alive) {
        auto kept = std::make_shared<StoredObject>(*p.was);
        kept->node = node;
        memory_store_.Put(p.id, std::move(kept));
        references_.SetReady(p.id, /*in_plasma=*/true, node);
        LUMEN_LOG(WARNING) << "object " << p.id.Hex() << " lost its primary copy (" << p.why
                           << "); keeping the copy on node " << Short(node) << " instead";
        return;
      }
      st = UnavailableError("node " + Short(node) + " died too");
    }
    LUMEN_LOG(INFO) << "object " << p.id.Hex() << ": cannot keep the copy on node " << Short(node)
                    << " (" << st << ")";
    Promote(std::move(p));
  });
}

bool ObjectRecovery::IsNodeDead(const NodeID& node) const {
  MutexLock lock(mu_);
  return dead_.count(node) > 0;
}

void ObjectRecovery::DropDeadLocked(std::vector<NodeID>* nodes) const {
  // A loop, not erase_if with a lambda: the thread-safety analysis does not see mu_ inside one.
  size_t kept = 0;
  for (const NodeID& n : *nodes) {
    if (dead_.count(n) == 0) (*nodes)[kept++] = n;
  }
  nodes->resize(kept);
}

bool ObjectRecovery::IsLostLocked(const StoredObjectPtr& obj) const {
  return obj && obj->in_plasma && dead_.count(obj->node) > 0;
}

void ObjectRecovery::RecoverLocked(const ObjectID& id, const std::string& why, Actions* out) {
  auto fail = [&](proto::ErrorType type, const std::string& message) {
    references_.Resurrect(id);  // the error is its value now
    out->errors.emplace_back(id, ErrorOf(type, message));
  };
  const std::string what = "object " + id.Hex() + " was lost (" + why + ")";
  if (id.IsPut()) {
    fail(proto::OBJECT_LOST,
         what + " and cannot be re-created: it was made by lumen::Put, which has no lineage");
    return;
  }
  const TaskID tid = id.Task();
  auto it = lineage_.find(tid);
  if (it == lineage_.end() && hooks_.stream_open && hooks_.stream_open(tid)) {
    // A value of a streaming task still running: the task's worker was on the dead node, so
    // the task is retried and sends its values again (GeneratorStreams keeps the lost ones;
    // if it ends without doing so, they fail).
    if (references_.Resurrect(id)) out->deleted.push_back(id);
    return;
  }
  if (it == lineage_.end()) {
    fail(proto::OBJECT_LOST,
         what + (!IsActorTask(tid) ? " and cannot be re-created: its owner kept no lineage for it"
                                   : " and cannot be re-created: it is the result of an actor "
                                     "method, which depends on the actor's state"));
    return;
  }
  Lineage& l = it->second;
  if (!l.task) {
    fail(proto::OBJECT_RECONSTRUCTION_FAILED,
         what +
             " and cannot be re-created: the lineage of the task that made it was evicted to "
             "stay within LUMEN_MAX_LINEAGE_BYTES=" +
             std::to_string(max_bytes_));
    return;
  }
  const std::string& fn = l.task->spec.function_name();
  if (l.running) {  // a re-run is on its way: this result comes with it
    if (references_.Resurrect(id)) out->deleted.push_back(id);
    return;
  }
  if (l.task->retries_left <= 0) {
    fail(proto::OBJECT_RECONSTRUCTION_FAILED, what + " and re-running task " + fn +
                                                  " to re-create it would exceed its max_retries=" +
                                                  std::to_string(l.task->spec.max_retries()));
    return;
  }
  --l.task->retries_left;
  auto attempt = std::make_shared<TaskEntry>(*l.task);
  attempt->spec.set_attempt(l.task->spec.attempt() + 1);
  l.task->spec.set_attempt(attempt->spec.attempt());
  attempt->wire.clear();
  attempt->returns.clear();
  attempt->spec.set_backpressure(0);  // a streaming re-run has no reader to wait for
  for (const auto& r : l.returns) {
    StoredObjectPtr cur = memory_store_.Get(r);
    if (cur && !IsLostLocked(cur)) continue;  // alive: the re-run's copy is not needed
    if (!references_.Resurrect(r)) continue;  // forgotten
    out->deleted.push_back(r);
    attempt->returns.push_back(r);
  }
  attempt->held_refs = l.pinned;
  l.running = true;
  LUMEN_LOG(WARNING) << what << "; re-running task " << fn << " (attempt "
                     << attempt->spec.attempt() + 1
                     << ", max_retries=" << attempt->spec.max_retries() << ")";
  out->resubmit.push_back(std::move(attempt));
}

bool ObjectRecovery::RecoverArgsLocked(const TaskEntry& task, Actions* out) {
  for (const auto& arg : task.spec.args()) {
    if (!arg.has_ref()) continue;
    ObjectID id = ObjectID::FromBinary(arg.ref().object_id());
    StoredObjectPtr cur = memory_store_.Get(id);
    if (!cur && !references_.Has(id)) {
      // Forgotten: its own lineage was evicted and nothing else kept it.
      out->failure = "its argument " + id.Hex() + " is gone and cannot be re-created";
      return false;
    }
    if (!references_.IsOwned(id)) {
      if (IsLostLocked(cur)) {  // its owner is asked again
        out->deleted.push_back(id);
        out->refetch.emplace_back(id, cur->node);
      }
      continue;
    }
    if (cur && !IsLostLocked(cur)) continue;
    if (!cur && references_.HasValue(id)) continue;  // being made (or re-made) now
    RecoverLocked(id,
                  cur ? "its copy was on node " + Short(cur->node) + ", which died"
                      : "it was freed, and task " + task.spec.function_name() +
                            " that takes it is being re-run",
                  out);
  }
  return true;
}

void ObjectRecovery::ExpandLocked(Actions* out, size_t from) {
  for (size_t i = from; i < out->resubmit.size(); ++i) {
    if (RecoverArgsLocked(*out->resubmit[i], out)) continue;
    // This re-run cannot happen: its results fail (and so do re-runs waiting for them).
    auto attempt = out->resubmit[i];
    auto it = lineage_.find(TaskID::FromBinary(attempt->spec.task_id()));
    if (it != lineage_.end()) it->second.running = false;
    for (const auto& r : attempt->returns) {
      out->errors.emplace_back(r, ErrorOf(proto::OBJECT_RECONSTRUCTION_FAILED,
                                          "object " + r.Hex() + " was lost, and re-running task " +
                                              attempt->spec.function_name() +
                                              " to re-create it failed: " + out->failure));
    }
    out->resubmit[i] = nullptr;
  }
  std::erase(out->resubmit, nullptr);
}

void ObjectRecovery::Run(Actions& a) {
  for (const auto& id : a.deleted) memory_store_.Delete(id);
  // A reader that saw the entry just before it went may already be waiting for it to come
  // back (having found nothing to ask for): the owner is asked now, whoever reads it.
  for (const auto& [id, node] : a.refetch) {
    if (hooks_.fetch_from_owner && references_.Has(id)) hooks_.fetch_from_owner(id, node);
  }
  for (auto& p : a.promote) Promote(std::move(p));
  for (const auto& [id, err] : a.errors) hooks_.store_error({id}, err);
  for (auto& task : a.resubmit) {
    references_.AddSubmittedRefs(task->held_refs);
    hooks_.take_slot();
    hooks_.resolve_and_submit(std::move(task));
  }
}

void ObjectRecovery::LostLocked(const ObjectID& id, const std::string& why, Actions* a) {
  if (!references_.IsOwned(id)) {
    a->deleted.push_back(id);  // a borrower asks the owner again
    const StoredObjectPtr cur = memory_store_.Get(id);
    a->refetch.emplace_back(id, cur ? cur->node : NodeID::Nil());
    return;
  }
  std::vector<NodeID> alive;
  if (auto c = copies_.find(id); c != copies_.end()) alive = c->second;
  DropDeadLocked(&alive);
  if (alive.empty()) {
    RecoverLocked(id, why, a);
    return;
  }
  // Readers wait (the entry goes, the value is pending) until a copy is kept.
  references_.Resurrect(id);
  a->deleted.push_back(id);
  a->promote.push_back({id, memory_store_.Get(id), std::move(alive), why});
}

void ObjectRecovery::OnArrivedFromDeadNode(const ObjectID& id) {
  const StoredObjectPtr obj = memory_store_.Get(id);
  if (!obj || !obj->in_plasma || obj->node.IsNil()) return;
  Actions a;
  {
    MutexLock lock(mu_);
    auto dead = dead_.find(obj->node);
    if (dead == dead_.end()) return;
    LostLocked(id,
               "its copy was on node " + Short(obj->node) +
                   ", which had died by the time the value was reported: " + dead->second,
               &a);
    ExpandLocked(&a, 0);
  }
  Run(a);
}

void ObjectRecovery::OnNodeDead(const NodeID& node, const std::string& cause) {
  {
    MutexLock lock(mu_);
    if (!dead_.emplace(node, cause).second) return;
  }
  hooks_.forget_node(node);
  const std::string why = "its copy was on node " + Short(node) + ", which died: " + cause;
  Actions a;
  {
    MutexLock lock(mu_);
    for (const auto& id : memory_store_.InPlasmaOn(node)) LostLocked(id, why, &a);
    ExpandLocked(&a, 0);
  }
  if (!a.errors.empty() || !a.resubmit.empty() || !a.promote.empty()) {
    LUMEN_LOG(WARNING) << "node " << Short(node) << " died (" << cause << "): re-running "
                       << a.resubmit.size() << " task(s) to re-create what was lost there, "
                       << a.promote.size() << " object(s) kept from copies elsewhere, "
                       << a.errors.size() << " object(s) lost for good";
  }
  Run(a);
  MutexLock lock(mu_);
  handled_.insert(node);
  handled_cv_.NotifyAll();
}

void ObjectRecovery::HandleNodeList(const proto::NodeList& nodes) {
  for (const auto& n : nodes.nodes()) {
    if (!n.alive()) OnNodeDead(NodeID::FromBinary(n.node_id()), n.death_cause());
  }
}

void ObjectRecovery::RefreshNodeDeaths(std::function<void()> then) {
  hooks_.list_nodes([this, then = std::move(then)](const proto::NodeList* nodes) {
    if (nodes) HandleNodeList(*nodes);
    then();
  });
}

bool ObjectRecovery::OnReadFailed(const ObjectID& id, const StoredObjectPtr& obj,
                                  const Status& why) {
  if (!obj || !obj->in_plasma || obj->node.IsNil()) return false;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(why.code() == StatusCode::kUnavailable
                                                      ? Config::Get().node_death_timeout_ms() +
                                                            Config::Get().heartbeat_period_ms()
                                                      : 0);
  while (!IsNodeDead(obj->node)) {
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    RefreshNodeDeaths([done] { done->set_value(); });
    future.wait();
    if (IsNodeDead(obj->node)) break;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(Config::Get().lost_copy_recheck_ms()));
  }
  {
    // The death may have been learnt (on another thread) a moment ago: its objects' entries
    // change only once it is handled.
    MutexLock lock(mu_);
    handled_cv_.Wait(mu_, [&]() LUMEN_REQUIRES(mu_) { return handled_.count(obj->node) > 0; });
  }
  if (memory_store_.Get(id) != obj) return true;  // re-created or failed meanwhile
  if (references_.IsOwned(id)) {
    // Stored after the death was handled (a late report): handled now.
    OnArrivedFromDeadNode(id);
    return memory_store_.Get(id) != obj;
  }
  // Borrowed, and the owner still names the dead node: it is told, and answers once it knows.
  memory_store_.Delete(id);
  hooks_.fetch_from_owner(id, obj->node);
  return true;
}

void ObjectRecovery::OnBorrowerLost(const ObjectID& id, const NodeID& node,
                                    std::function<void()> then) {
  StoredObjectPtr cur = memory_store_.Get(id);
  if (cur && cur->in_plasma && cur->node == node && IsNodeDead(node)) {
    // Still naming a node whose death was handled (a late report): re-created, kept from a
    // copy or failed now, so the borrower is not sent back to the dead node.
    OnArrivedFromDeadNode(id);
    then();
    return;
  }
  if (!cur || !cur->in_plasma || cur->node != node) {
    then();
    return;
  }
  RefreshNodeDeaths(std::move(then));  // never on a borrower's word alone
}

void ObjectRecovery::Retry(std::shared_ptr<TaskEntry> task) {
  RefreshNodeDeaths([this, task = std::move(task)]() mutable {
    Actions a;
    std::optional<proto::ErrorInfo> failed;
    {
      MutexLock lock(mu_);
      if (!RecoverArgsLocked(*task, &a)) {
        proto::ErrorInfo err =
            ErrorOf(proto::OBJECT_RECONSTRUCTION_FAILED,
                    "task " + task->spec.function_name() + " cannot be retried: " + a.failure);
        failed = std::move(err);  // re-runs already begun for other arguments go on
      }
      ExpandLocked(&a, 0);
    }
    Run(a);
    if (failed) {
      references_.RemoveSubmittedRefs(task->held_refs);
      hooks_.store_error(task->returns, *failed);
      hooks_.release_slot();
      return;
    }
    hooks_.resolve_and_submit(std::move(task));
  });
}

size_t ObjectRecovery::NumLineageEntries() const {
  MutexLock lock(mu_);
  size_t n = 0;
  for (const auto& [tid, l] : lineage_) n += l.task != nullptr;
  return n;
}

int64_t ObjectRecovery::LineageBytes() const {
  MutexLock lock(mu_);
  return bytes_;
}

}  // namespace lumen::core
