// Values of objects known to this process: small values inline, large ones as a marker saying
// which node's shared-memory store holds them, failures as serialized errors. Threads block
// here in Get/Wait until a value arrives; callbacks fire when it does.
//
// Thread safety: thread-safe. Callbacks run on the thread that calls Put (or on the caller of
// OnReady when the value is already present), never under the store's lock.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/thread_annotations.h"
#include "lumen/ids.h"
#include "lumen/internal/runtime.h"

namespace lumen::core {

struct StoredObject {
  internal::ValueFormat format = internal::ValueFormat::kMsgpack;
  std::string data;  // inline bytes (value or serialized ErrorInfo)
  bool in_plasma = false;
  NodeID node;       // in_plasma: the node holding the primary copy
  int64_t size = 0;  // in_plasma: data size

  bool is_error() const { return format == internal::ValueFormat::kError; }
};
using StoredObjectPtr = std::shared_ptr<const StoredObject>;

class MemoryStore {
 public:
  using ReadyCallback = std::function<void(const StoredObjectPtr&)>;

  // Stores the value (replacing an earlier one) and wakes waiters.
  void Put(const ObjectID& id, StoredObjectPtr object);
  StoredObjectPtr Get(const ObjectID& id) const;
  bool Contains(const ObjectID& id) const;
  // Blocks until at least `num_required` of `ids` are present or `timeout_ms` passes
  // (< 0: forever). Returns which are present.
  std::vector<bool> Wait(const std::vector<ObjectID>& ids, size_t num_required, int64_t timeout_ms);
  // Waiting for more than this many objects is a throughput job: SpinWait does not spin for it.
  static constexpr size_t kMaxSpinMissing = 64;
  // Like Wait, but polls (yielding the CPU) for at most `spin_us` and never blocks.
  std::vector<bool> SpinWait(const std::vector<ObjectID>& ids, size_t num_required,
                             int64_t spin_us);
  void OnReady(const ObjectID& id, ReadyCallback cb);
  void Delete(const ObjectID& id);
  // Objects whose value is a shared-memory copy on `node` (a scan: for rare events).
  std::vector<ObjectID> InPlasmaOn(const NodeID& node) const;
  size_t Size() const;

 private:
  // Wait for all of `ids`: waits for them a chunk at a time, so that a Get of many objects
  // neither builds a set of all of them nor holds the lock for a scan of all of them.
  std::vector<bool> WaitAll(const std::vector<ObjectID>& ids, int64_t timeout_ms);

  // A blocked Wait call's state, on its stack. `missing` and `remaining` are touched only with
  // mu_ held (the analysis cannot check it: a nested struct cannot name its owner's mutex).
  struct Waiter {
    CondVar cv;
    std::unordered_set<ObjectID> missing;
    size_t remaining = 0;  // how many more must arrive
  };

  mutable Mutex mu_;
  std::atomic<uint64_t> version_{0};  // bumped by every Put
  std::unordered_map<ObjectID, StoredObjectPtr> objects_ LUMEN_GUARDED_BY(mu_);
  // Blocked Wait calls (few: one per blocked thread).
  std::vector<Waiter*> waiters_ LUMEN_GUARDED_BY(mu_);
  std::unordered_map<ObjectID, std::vector<ReadyCallback>> callbacks_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::core
