// The borrower protocol (Ray's ownership model) of one core worker, in both roles:
//  - as a borrower: a reference to another process's object, deserialized here, is registered
//    with its owner (AddBorrower) before the task that received it finishes, and released
//    (RemoveBorrower) when the last local reference goes;
//  - as an owner: borrowers are counted per object and per registration (a release ends the
//    registrations the borrower knew of), and a borrower whose connection closes (it died)
//    stops counting;
//  - handing refs on: before a value carrying refs leaves for another process, that process is
//    registered with each ref's owner, so no owner frees an object in flight.
//
// Thread safety: every method is thread-safe. Handlers run on the I/O loop thread.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "core_worker/peer_connections.h"
#include "core_worker/reference_counter.h"
#include "lumen/ids.h"

namespace lumen::core {

class BorrowerProtocol {
 public:
  // `self` is this worker's address (filled in before the first call); all must outlive this.
  BorrowerProtocol(ReferenceCounter* references, PeerConnections* peers,
                   const proto::Address* self);

  // Borrower side. `id` was just borrowed from `owner`: asks the owner to count this worker.
  // With `registrations` (the running task's list), the task later waits for the answer in
  // WaitForRegistrations; without (a driver thread), a failure is only logged.
  void Register(const ObjectID& id, const proto::Address& owner,
                std::vector<ObjectID>* registrations) LUMEN_EXCLUDES(mu_);
  // Waits until the owners of `ids` acknowledged (bounded by `borrower_ack_timeout_ms`). An
  // error (owner unreachable, refused, or silent) means an owner may free an object the task
  // still holds: the task must fail.
  Status WaitForRegistrations(const std::vector<ObjectID>& ids) LUMEN_EXCLUDES(mu_);
  // The last local reference to borrowed `id` is gone: tells its owner, ending the
  // `registrations` counted for this worker (nothing to tell when none).
  void Release(const ObjectID& id, const proto::Address& owner, int32_t registrations,
               bool connect);

  // Registers `borrower` with the owner of each ref before a value containing them leaves
  // (this worker, for refs it owns). Refs going back to their own owner (`borrower` owns
  // them) are pinned there for task `task` instead: this worker's release of its borrow may
  // reach the owner before the reply does, and must not free them on the way. Fails when an
  // owner could not be reached or did not acknowledge. `registered[i]`: `borrower` was
  // registered for refs[i] (the receiver counts each one, and its release ends them).
  // Blocking; not on the I/O thread.
  Status HandOff(const std::vector<ObjectID>& refs, const proto::Address& borrower,
                 const TaskID& task, std::vector<bool>* registered) LUMEN_EXCLUDES(mu_);

  // Owner side.
  void HandleAddBorrower(const rpc::ConnectionPtr& c, rpc::Frame& f) LUMEN_EXCLUDES(mu_);
  void HandleRemoveBorrower(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Pins refs a task hands back (kPinReturnedRefs) until UnpinReturned(task): called once the
  // task's outcome (its value, or its error) has been processed.
  void HandlePinReturnedRefs(const rpc::ConnectionPtr& c, rpc::Frame& f) LUMEN_EXCLUDES(mu_);
  void UnpinReturned(const TaskID& task) LUMEN_EXCLUDES(mu_);
  // A peer's connection closed: a borrower there no longer holds anything.
  void OnPeerClosed(const rpc::ConnectionPtr& conn) LUMEN_EXCLUDES(mu_);

 private:
  // Counts `borrower` for an owned object and watches its connection.
  void AddBorrower(const ObjectID& id, const proto::Address& borrower) LUMEN_EXCLUDES(mu_);

  ReferenceCounter* const references_;
  PeerConnections* const peers_;
  const proto::Address* const self_;

  Mutex mu_;
  CondVar cv_;
  // AddBorrower sent, not acknowledged / registrations that failed (borrower side).
  std::unordered_map<ObjectID, int> pending_ LUMEN_GUARDED_BY(mu_);
  std::unordered_map<ObjectID, std::string> failed_ LUMEN_GUARDED_BY(mu_);
  // Borrowers of owned objects: the address to reach them, to watch their death.
  std::unordered_map<WorkerID, proto::Address> borrower_addresses_ LUMEN_GUARDED_BY(mu_);
  // Owned objects pinned for the tasks handing them back (owner side).
  std::unordered_map<TaskID, std::vector<ObjectID>> return_pins_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::core
