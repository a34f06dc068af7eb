// The object-status protocol between a borrower and an owner: a borrower that needs the value
// of an object it does not own asks the owner (GetObjectStatus), which answers when the object
// is ready — its inline value, or where its plasma copy lives — or PENDING after a poll window,
// and the borrower asks again. A dead, unreachable or silent owner, and an object already
// freed, end every wait with a typed error in the memory store (OwnerDiedError, ObjectLost);
// nothing hangs on an owner.
//
// Thread safety: every method is thread-safe; replies and handlers run on the I/O loop thread.
#pragma once

#include <atomic>
#include <functional>
#include <unordered_set>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/thread_annotations.h"
#include "core_worker/memory_store.h"
#include "core_worker/peer_connections.h"
#include "core_worker/reference_counter.h"
#include "lumen/ids.h"

namespace lumen::core {

class OwnerFetch {
 public:
  // Stores `error` as the value of the objects (and marks them ready).
  using StoreErrorFn =
      std::function<void(const std::vector<ObjectID>& ids, const proto::ErrorInfo& error)>;
  // All must outlive this; `stopping` turns true when the process shuts down.
  OwnerFetch(rpc::EventLoop* io, MemoryStore* memory_store, ReferenceCounter* references,
             PeerConnections* peers, const std::atomic<bool>* stopping, StoreErrorFn store_error);

  // Borrower side: makes sure the owner of borrowed `id` will answer with its value (into the
  // memory store). One question per object at a time; nothing to do when the value is here.
  void Fetch(const ObjectID& id) LUMEN_EXCLUDES(mu_);
  // Like Fetch, telling the owner that the copy it named on `lost_node` could not be read.
  void Fetch(const ObjectID& id, const NodeID& lost_node) LUMEN_EXCLUDES(mu_);

  // Owner side: a borrower reports that owned `id`'s copy on `node` is gone; `then` answers
  // it once the owner has looked (ObjectRecovery::OnBorrowerLost).
  using LostHook =
      std::function<void(const ObjectID& id, const NodeID& node, std::function<void()> then)>;
  void SetLostHook(LostHook hook) { lost_hook_ = std::move(hook); }

  // Owner side: answers a borrower's GetObjectStatus.
  void HandleGetObjectStatus(const rpc::ConnectionPtr& c, rpc::Frame& f);

 private:
  // One status request to the owner; asks again while the owner says PENDING.
  void Ask(const ObjectID& id, const proto::Address& owner, const NodeID& lost_node)
      LUMEN_EXCLUDES(mu_);

  rpc::EventLoop* const io_;
  MemoryStore* const memory_store_;
  ReferenceCounter* const references_;
  PeerConnections* const peers_;
  const std::atomic<bool>* const stopping_;
  const StoreErrorFn store_error_;
  LostHook lost_hook_;  // set before the first request arrives

  Mutex mu_;
  std::unordered_set<ObjectID> asking_ LUMEN_GUARDED_BY(mu_);  // questions in flight
};

}  // namespace lumen::core
