// Ownership-based reference counting (see docs/design/ownership.md).
//
// For every object this process knows, counts the references that keep it alive:
//   local      ObjectRef handles in this process,
//   submitted  pending tasks that take it as an argument (top-level or nested),
//   contained  objects held here whose values contain it,
//   borrowers  (owner only) other processes that hold it.
// The owner frees an object everywhere once all four are zero; a borrower tells the owner when
// its own counts reach zero. Objects whose producing task is still running are freed when the
// result arrives.
//
// Lineage: an owned object may also be an argument of a task whose lineage is kept (its results
// are still referenced and may have to be re-created). Such an object's value is freed as usual,
// but its entry stays while the lineage needs it, so that it can be re-created in turn
// (Resurrect); the entry is forgotten once neither its value nor any lineage needs it.
//
// Thread safety: thread-safe. The release callback runs outside the lock on the thread that
// dropped the last reference.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.pb.h"
#include "common/thread_annotations.h"
#include "lumen/ids.h"

namespace lumen::core {

class ReferenceCounter {
 public:
  struct Release {
    ObjectID id;
    bool owned = false;
    bool in_plasma = false;  // owned: free the shared-memory copy on `node`
    NodeID node;
    proto::Address owner;       // borrowed: tell this owner we are done
    int32_t registrations = 0;  // borrowed: how many registrations with the owner that ends
    // false: the value was freed earlier (the entry stayed for lineage); only `forgotten` news.
    bool value = true;
    // The entry is gone: the object can no longer be re-created (owned: drop its lineage).
    bool forgotten = true;
  };
  using ReleaseCallback = std::function<void(const std::vector<Release>&)>;

  explicit ReferenceCounter(ReleaseCallback on_release) : on_release_(std::move(on_release)) {}

  // An object this process owns. `pending`: a task will produce it.
  void AddOwned(const ObjectID& id, int local_refs, bool pending);
  // A reference to an object owned elsewhere (no-op if known). Returns true when new.
  bool AddBorrowed(const ObjectID& id, const proto::Address& owner);
  // Borrowed `id`: one more registration of this process with its owner (its own AddBorrower,
  // or one a process handing it the ref made for it). Its release ends them all at once.
  void AddRegistration(const ObjectID& id);

  void AddLocalRef(const ObjectID& id);
  void RemoveLocalRef(const ObjectID& id);
  void AddSubmittedRefs(const std::vector<ObjectID>& ids);
  void RemoveSubmittedRefs(const std::vector<ObjectID>& ids);
  // The value of `outer` contains `inner` refs: they live at least as long as `outer`.
  void AddContained(const ObjectID& outer, const std::vector<ObjectID>& inner);

  // Owner: the producing task finished; the value is inline or in plasma on `node`.
  void SetReady(const ObjectID& id, bool in_plasma, const NodeID& node);
  // Lineage kept by the owner names these owned objects as arguments (see above). Returns the
  // ones it pins (known and owned), which RemoveLineageRefs must get back.
  std::vector<ObjectID> AddLineageRefs(const std::vector<ObjectID>& ids);
  void RemoveLineageRefs(const std::vector<ObjectID>& ids);
  // The owned object's value is being made again (reconstruction): it is pending, and an entry
  // kept only for lineage counts as live again. False when the entry is gone.
  bool Resurrect(const ObjectID& id);
  // An owned object whose value is alive (not only kept for lineage).
  bool HasValue(const ObjectID& id) const;
  // Borrowers are counted per registration: a borrower's release may cross a registration a
  // third process made for it later (they come on different connections), and must end only
  // the `registrations` it knew of.
  void AddBorrower(const ObjectID& id, const WorkerID& borrower);
  void RemoveBorrower(const ObjectID& id, const WorkerID& borrower, int32_t registrations);
  // A borrower process died: drop it from every object.
  void RemoveBorrowerEverywhere(const WorkerID& borrower);

  bool Has(const ObjectID& id) const;
  bool IsOwned(const ObjectID& id) const;
  std::optional<proto::Address> OwnerOf(const ObjectID& id) const;
  // Objects with a live value (entries kept only for lineage are not counted).
  size_t NumObjects() const;

 private:
  // Fields most objects never use, allocated on first need (a driver may hold millions of
  // plain results).
  struct Extra {
    std::map<WorkerID, int32_t> borrowers;  // owned: registrations not yet ended
    std::vector<ObjectID> contains;
    proto::Address owner;  // borrowed objects
  };
  struct Ref {
    int32_t local = 0;
    int32_t submitted = 0;
    int32_t contained_in = 0;
    bool owned = false;
    bool pending = false;
    bool in_plasma = false;
    int32_t registrations = 0;    // borrowed: see AddRegistration
    bool value_released = false;  // freed; the entry stays for lineage
    int32_t lineage = 0;          // kept lineage entries naming it as an argument
    NodeID node;
    std::unique_ptr<Extra> extra;
    Extra& More() {
      if (!extra) extra = std::make_unique<Extra>();
      return *extra;
    }
    bool HasBorrowers() const { return extra && !extra->borrowers.empty(); }
  };

  // Removes `it` if nothing references it, appending release actions.
  void MaybeRelease(const ObjectID& id, std::vector<Release>* out) LUMEN_REQUIRES(mu_);
  // Runs the release callback (never under mu_).
  void Flush(std::vector<Release>& out) LUMEN_EXCLUDES(mu_);

  const ReleaseCallback on_release_;
  mutable Mutex mu_;
  std::unordered_map<ObjectID, Ref> refs_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::core
