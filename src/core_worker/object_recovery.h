// Lineage reconstruction, the owner's side (Ray's object recovery). The owner keeps the spec of
// every finished normal task whose results live in shared memory while those results are
// referenced (the lineage, bounded by max_lineage_bytes, oldest evicted first), and learns from
// the control service which nodes died. When every copy of an owned object is gone it re-runs
// the task that made it — re-creating lost arguments first, recursively — counting against
// that task's max_retries, or stores the typed error that says why it cannot. A streaming
// task's values have lineage once it ended (a re-run sends them all; the lost ones are kept);
// while it runs, a value lost with its node comes again with the task's retry.
//   ObjectLostError                  a Put object or an actor task's result (no lineage),
//   ObjectReconstructionFailedError  retries used up, lineage evicted, an argument that
//                                    cannot be re-created.
// Every wait on a lost object therefore ends with a value or one of these errors.
//
// Lost objects are found three ways: the control service announces a node's death (every
// owned object whose copy was there is handled at once), a read of a copy fails and the
// control service confirms the node is dead, and a borrower reports that the copy it was told
// about is gone (GetObjectStatus with lost_node).
//
// Thread safety: thread-safe. Work that calls out (memory store, resolver, submitter) runs
// outside the lock; OnNodeDead may run on any thread, ConfirmDeadSync never on the I/O thread.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common.pb.h"
#include "common/thread_annotations.h"
#include "core_worker/memory_store.h"
#include "core_worker/reference_counter.h"
#include "core_worker/task_submitter.h"
#include "gcs.pb.h"
#include "lumen/ids.h"

namespace lumen::core {

class ObjectRecovery {
 public:
  // What recovery needs of the rest of the core worker (CoreWorker wires them; tests fake
  // them). Each may be called on any thread, never under this module's lock.
  struct Hooks {
    // Stores `error` as the value of `ids` (and marks them ready).
    std::function<void(const std::vector<ObjectID>& ids, const proto::ErrorInfo& error)>
        store_error;
    // Waits for the task's arguments where they are now, then submits it; a failed argument
    // fails its results, releasing its held refs and its slot.
    std::function<void(std::shared_ptr<TaskEntry> task)> resolve_and_submit;
    std::function<void()> take_slot;                      // a re-run counts as a pending task
    std::function<void()> release_slot;                   // a retry that cannot happen
    std::function<void(const NodeID& node)> forget_node;  // nothing more is sent there
    // Whether streaming task `task` is still sending values (its retry sends lost ones again).
    std::function<bool(const TaskID& task)> stream_open;
    // Asks the control service for every node; `done` gets null when it cannot answer.
    std::function<void(std::function<void(const proto::NodeList* nodes)> done)> list_nodes;
    // Asks the owner of borrowed `id` again, telling it the copy on `lost_node` is gone.
    std::function<void(const ObjectID& id, const NodeID& lost_node)> fetch_from_owner;
    // Asks `node`'s daemon to keep its copy of `id` as the primary; `done` (any thread) gets
    // OK, or why not (no copy there, node unreachable).
    std::function<void(const ObjectID& id, const NodeID& node, std::function<void(Status)> done)>
        promote_copy;
  };
  // `memory_store` and `references` must outlive this.
  ObjectRecovery(MemoryStore* memory_store, ReferenceCounter* references, Hooks hooks,
                 int64_t max_lineage_bytes);

  // A normal task finished successfully: keeps its lineage while a result in shared memory is
  // referenced (a re-run of a kept task refreshes it).
  void RecordLineage(const std::shared_ptr<TaskEntry>& task) LUMEN_EXCLUDES(mu_);
  // The reference counter forgot owned object `id`: once every result of its task is
  // forgotten, the task's lineage (and its pins on the task's arguments) goes.
  void OnForgotten(const ObjectID& id) LUMEN_EXCLUDES(mu_);
  // A process pulled a copy of owned `id` to `node`: when the primary copy's node dies, that
  // copy is kept instead (no re-run, and objects without lineage survive).
  void OnCopyAdded(const ObjectID& id, const NodeID& node) LUMEN_EXCLUDES(mu_);
  // The owner frees owned `id`: the copies it knew of, to be freed as well (forgotten here).
  std::vector<NodeID> TakeCopies(const ObjectID& id) LUMEN_EXCLUDES(mu_);

  // The control service declared `node` dead: every object whose copy this process knows to be
  // there is re-created (owned, with lineage), failed with its reason (owned, without), or
  // forgotten so that its owner is asked again (borrowed).
  void OnNodeDead(const NodeID& node, const std::string& cause) LUMEN_EXCLUDES(mu_);
  bool IsNodeDead(const NodeID& node) const LUMEN_EXCLUDES(mu_);
  // `id`'s entry was just stored (a task's result, a stream's value) naming a node already
  // known dead — its death was handled before the report arrived: handled now as that death
  // would have (re-created, kept from a copy, failed, or forgotten if borrowed). Without this
  // the entry would send every reader to the dead node for ever.
  void OnArrivedFromDeadNode(const ObjectID& id) LUMEN_EXCLUDES(mu_);
  // Asks the control service which nodes are dead and handles the ones this process had not
  // heard of; then runs `then` (on the I/O thread, or here when the question cannot be sent).
  void RefreshNodeDeaths(std::function<void()> then);
  // Reading `id` from the copy `obj` names failed with `why`. When the copy's node is dead
  // (confirmed with the control service; blocking, never on the I/O thread) the death is
  // handled. A read cut off by a lost connection (Unavailable) is often the first sign of the
  // node's death, ahead of the control service: it is asked again every
  // LUMEN_LOST_COPY_RECHECK_MS until the node death timeout has passed. True when the memory
  // store's entry for `id` is no longer `obj`: the caller looks again.
  bool OnReadFailed(const ObjectID& id, const StoredObjectPtr& obj, const Status& why);
  // A borrower could not read owned `id` from `node`: when its copy was there and the node is
  // dead, handles the death; then runs `then`.
  void OnBorrowerLost(const ObjectID& id, const NodeID& node, std::function<void()> then);

  // A task about to be retried (its worker died, or it could not fetch an argument): once the
  // node deaths are known and its lost arguments are being re-created, resolves its arguments
  // again (their copies may have moved) and submits it.
  void Retry(std::shared_ptr<TaskEntry> task);

  // For tests and stats.
  size_t NumLineageEntries() const LUMEN_EXCLUDES(mu_);
  int64_t LineageBytes() const LUMEN_EXCLUDES(mu_);

 private:
  struct Lineage {
    std::shared_ptr<TaskEntry> task;  // null once evicted
    std::vector<ObjectID> returns;    // every result of the task
    std::vector<ObjectID> pinned;     // owned plasma arguments whose entries it keeps
    int64_t bytes = 0;
    size_t forgotten = 0;  // results the reference counter has forgotten
    bool running = false;  // a re-run is in flight
  };
  // What to do after the lock is released.
  struct Actions {
    std::vector<std::pair<ObjectID, proto::ErrorInfo>> errors;
    std::vector<std::shared_ptr<TaskEntry>> resubmit;
    std::vector<ObjectID> deleted;  // entries to drop from the memory store
    // Borrowed entries among `deleted` (with the dead node they named): their owners are asked
    // again at once, so a reader waiting for the entry to come back is never left without a
    // question in flight.
    std::vector<std::pair<ObjectID, NodeID>> refetch;
    struct Promotion {
      ObjectID id;
      StoredObjectPtr was;  // the entry naming the dead node
      std::vector<NodeID> candidates;
      std::string why;
    };
    std::vector<Promotion> promote;  // lost primaries with copies on alive nodes
    std::string failure;             // why RecoverArgsLocked returned false
  };

  // Re-creates owned `id` (lost) or records the error that says why not.
  void RecoverLocked(const ObjectID& id, const std::string& why, Actions* out) LUMEN_REQUIRES(mu_);
  // `id`'s copy is gone with its node: owned, kept from a copy elsewhere or re-created;
  // borrowed, forgotten (its owner is asked again).
  void LostLocked(const ObjectID& id, const std::string& why, Actions* out) LUMEN_REQUIRES(mu_);
  // Makes sure the arguments of `task` will be there: lost owned ones are re-created, lost
  // borrowed ones forgotten (their owner is asked again). False (with out->failure) when one
  // is gone for good.
  bool RecoverArgsLocked(const TaskEntry& task, Actions* out) LUMEN_REQUIRES(mu_);
  // Looks after the arguments of the re-runs in out->resubmit from `from` on (adding re-runs
  // for lost ones); a re-run whose argument is gone for good fails its results instead.
  void ExpandLocked(Actions* out, size_t from) LUMEN_REQUIRES(mu_);
  bool IsLostLocked(const StoredObjectPtr& obj) const LUMEN_REQUIRES(mu_);
  // Removes the nodes known to be dead from `nodes`.
  void DropDeadLocked(std::vector<NodeID>* nodes) const LUMEN_REQUIRES(mu_);
  void EvictLocked(std::vector<ObjectID>* unpin) LUMEN_REQUIRES(mu_);
  void DropLocked(const TaskID& task, std::vector<ObjectID>* unpin) LUMEN_REQUIRES(mu_);
  void Run(Actions& actions) LUMEN_EXCLUDES(mu_);
  // Keeps the first copy of `p.id` that its node agrees to keep; with none left, re-creates
  // the object (or fails it) as if it had no copies.
  void Promote(Actions::Promotion p) LUMEN_EXCLUDES(mu_);
  // Handles the nodes a GetAllNodes reply lists as dead.
  void HandleNodeList(const proto::NodeList& nodes);

  MemoryStore& memory_store_;
  ReferenceCounter& references_;
  const Hooks hooks_;
  const int64_t max_bytes_;

  mutable Mutex mu_;
  std::unordered_map<TaskID, Lineage> lineage_ LUMEN_GUARDED_BY(mu_);
  std::deque<TaskID> order_ LUMEN_GUARDED_BY(mu_);  // oldest first (may name dropped tasks)
  int64_t bytes_ LUMEN_GUARDED_BY(mu_) = 0;
  std::unordered_map<NodeID, std::string> dead_ LUMEN_GUARDED_BY(mu_);  // node -> cause
  // Dead nodes whose OnNodeDead has finished: their objects' store entries are re-made, failed
  // or forgotten. A reader that found a copy on a dead node waits for this (handled_cv_).
  std::unordered_set<NodeID> handled_ LUMEN_GUARDED_BY(mu_);
  // Owned objects in shared memory -> nodes other than the primary's known to hold copies.
  std::unordered_map<ObjectID, std::vector<NodeID>> copies_ LUMEN_GUARDED_BY(mu_);
  CondVar handled_cv_;
};

}  // namespace lumen::core
