#include "core_worker/reference_counter.h"

#include <algorithm>

#include "common/logging.h"

namespace lumen::core {

void ReferenceCounter::Flush(std::vector<Release>& out) {
  if (!out.empty()) on_release_(out);
}

void ReferenceCounter::AddOwned(const ObjectID& id, int local_refs, bool pending) {
  MutexLock lock(mu_);
  Ref& r = refs_[id];
  r.owned = true;
  r.pending = pending;
  r.local += local_refs;
}

bool ReferenceCounter::AddBorrowed(const ObjectID& id, const proto::Address& owner) {
  MutexLock lock(mu_);
  auto [it, inserted] = refs_.try_emplace(id);
  if (inserted) {
    it->second.owned = false;
    it->second.More().owner = owner;
  }
  return inserted;
}

void ReferenceCounter::AddRegistration(const ObjectID& id) {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  if (it != refs_.end() && !it->second.owned) ++it->second.registrations;
}

void ReferenceCounter::AddLocalRef(const ObjectID& id) {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  if (it != refs_.end()) ++it->second.local;
}

void ReferenceCounter::RemoveLocalRef(const ObjectID& id) {
  std::vector<Release> out;
  {
    MutexLock lock(mu_);
    auto it = refs_.find(id);
    if (it == refs_.end()) return;
    if (it->second.local > 0) --it->second.local;
    MaybeRelease(id, &out);
  }
  Flush(out);
}

void ReferenceCounter::AddSubmittedRefs(const std::vector<ObjectID>& ids) {
  MutexLock lock(mu_);
  for (const auto& id : ids) {
    auto it = refs_.find(id);
    if (it != refs_.end()) ++it->second.submitted;
  }
}

void ReferenceCounter::RemoveSubmittedRefs(const std::vector<ObjectID>& ids) {
  std::vector<Release> out;
  {
    MutexLock lock(mu_);
    for (const auto& id : ids) {
      auto it = refs_.find(id);
      if (it == refs_.end()) continue;
      if (it->second.submitted > 0) --it->second.submitted;
      MaybeRelease(id, &out);
    }
  }
  Flush(out);
}

void ReferenceCounter::AddContained(const ObjectID& outer, const std::vector<ObjectID>& inner) {
  if (inner.empty()) return;
  MutexLock lock(mu_);
  auto o = refs_.find(outer);
  if (o == refs_.end()) return;
  for (const auto& id : inner) {
    auto it = refs_.find(id);
    if (it == refs_.end()) continue;
    ++it->second.contained_in;
    o->second.More().contains.push_back(id);
  }
}

void ReferenceCounter::SetReady(const ObjectID& id, bool in_plasma, const NodeID& node) {
  std::vector<Release> out;
  {
    MutexLock lock(mu_);
    auto it = refs_.find(id);
    if (it == refs_.end()) return;
    it->second.pending = false;
    it->second.in_plasma = in_plasma;
    it->second.node = node;
    MaybeRelease(id, &out);
  }
  Flush(out);
}

void ReferenceCounter::AddBorrower(const ObjectID& id, const WorkerID& borrower) {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  if (it != refs_.end()) ++it->second.More().borrowers[borrower];
}

void ReferenceCounter::RemoveBorrower(const ObjectID& id, const WorkerID& borrower,
                                      int32_t registrations) {
  std::vector<Release> out;
  {
    MutexLock lock(mu_);
    auto it = refs_.find(id);
    if (it == refs_.end() || !it->second.extra) return;
    auto& borrowers = it->second.extra->borrowers;
    auto b = borrowers.find(borrower);
    if (b == borrowers.end()) return;
    b->second -= std::max<int32_t>(registrations, 1);
    if (b->second > 0) return;
    borrowers.erase(b);
    MaybeRelease(id, &out);
  }
  Flush(out);
}

void ReferenceCounter::RemoveBorrowerEverywhere(const WorkerID& borrower) {
  std::vector<Release> out;
  {
    MutexLock lock(mu_);
    std::vector<ObjectID> touched;
    for (auto& [id, r] : refs_) {
      if (r.extra && r.extra->borrowers.erase(borrower)) touched.push_back(id);
    }
    for (const auto& id : touched) MaybeRelease(id, &out);
  }
  Flush(out);
}

void ReferenceCounter::MaybeRelease(const ObjectID& id, std::vector<Release>* out) {
  std::vector<ObjectID> work{id};
  while (!work.empty()) {
    ObjectID cur = work.back();
    work.pop_back();
    auto it = refs_.find(cur);
    if (it == refs_.end()) continue;
    Ref& r = it->second;
    if (r.local > 0 || r.submitted > 0 || r.contained_in > 0 || r.HasBorrowers()) continue;
    if (r.owned && r.pending) continue;  // freed when the producing task reports
    if (r.value_released && r.lineage > 0) continue;
    Release rel;
    rel.id = cur;
    rel.owned = r.owned;
    rel.in_plasma = r.in_plasma;
    rel.node = r.node;
    if (r.extra) rel.owner = r.extra->owner;
    rel.registrations = r.registrations;
    rel.value = !r.value_released;
    rel.forgotten = r.lineage == 0;
    out->push_back(std::move(rel));
    std::vector<ObjectID> contains;
    if (r.extra) contains = std::move(r.extra->contains);
    if (r.lineage == 0) {
      refs_.erase(it);
    } else {
      r.value_released = true;
      r.in_plasma = false;
      r.node = NodeID::Nil();
    }
    for (const auto& inner : contains) {
      auto in = refs_.find(inner);
      if (in == refs_.end()) continue;
      if (in->second.contained_in > 0) --in->second.contained_in;
      work.push_back(inner);
    }
  }
}

std::vector<ObjectID> ReferenceCounter::AddLineageRefs(const std::vector<ObjectID>& ids) {
  std::vector<ObjectID> pinned;
  MutexLock lock(mu_);
  for (const auto& id : ids) {
    auto it = refs_.find(id);
    if (it == refs_.end() || !it->second.owned) continue;
    ++it->second.lineage;
    pinned.push_back(id);
  }
  return pinned;
}

void ReferenceCounter::RemoveLineageRefs(const std::vector<ObjectID>& ids) {
  std::vector<Release> out;
  {
    MutexLock lock(mu_);
    for (const auto& id : ids) {
      auto it = refs_.find(id);
      if (it == refs_.end()) continue;
      if (it->second.lineage > 0) --it->second.lineage;
      MaybeRelease(id, &out);
    }
  }
  Flush(out);
}

bool ReferenceCounter::Resurrect(const ObjectID& id) {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  if (it == refs_.end() || !it->second.owned) return false;
  it->second.value_released = false;
  it->second.pending = true;
  return true;
}

bool ReferenceCounter::HasValue(const ObjectID& id) const {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  return it != refs_.end() && !it->second.value_released;
}

bool ReferenceCounter::Has(const ObjectID& id) const {
  MutexLock lock(mu_);
  return refs_.count(id) > 0;
}

bool ReferenceCounter::IsOwned(const ObjectID& id) const {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  return it != refs_.end() && it->second.owned;
}

std::optional<proto::Address> ReferenceCounter::OwnerOf(const ObjectID& id) const {
  MutexLock lock(mu_);
  auto it = refs_.find(id);
  if (it == refs_.end() || it->second.owned) return std::nullopt;
  return it->second.extra ? it->second.extra->owner : proto::Address();
}

size_t ReferenceCounter::NumObjects() const {
  MutexLock lock(mu_);
  size_t n = 0;
  for (const auto& [id, r] : refs_) n += !r.value_released;
  return n;
}

}  // namespace lumen::core
