#include "core_worker/memory_store.h"

#include <algorithm>
#include <chrono>

#include "common/spin.h"

namespace lumen::core {

void MemoryStore::Put(const ObjectID& id, StoredObjectPtr object) {
  std::vector<ReadyCallback> cbs;
  {
    MutexLock lock(mu_);
    auto [it, inserted] = objects_.try_emplace(id, object);
    if (!inserted) it->second = object;
    version_.fetch_add(1, std::memory_order_release);
    if (inserted) {
      for (Waiter* waiter : waiters_) {
        if (waiter->missing.erase(id) && waiter->remaining > 0 && --waiter->remaining == 0) {
          waiter->cv.NotifyOne();
        }
      }
    }
    if (!callbacks_.empty()) {
      auto c = callbacks_.find(id);
      if (c != callbacks_.end()) {
        cbs = std::move(c->second);
        callbacks_.erase(c);
      }
    }
  }
  for (auto& cb : cbs) cb(object);
}

StoredObjectPtr MemoryStore::Get(const ObjectID& id) const {
  MutexLock lock(mu_);
  auto it = objects_.find(id);
  return it == objects_.end() ? nullptr : it->second;
}

bool MemoryStore::Contains(const ObjectID& id) const {
  MutexLock lock(mu_);
  return objects_.count(id) > 0;
}

std::vector<bool> MemoryStore::WaitAll(const std::vector<ObjectID>& ids, int64_t timeout_ms) {
  constexpr size_t kChunkMissing = 1024;  // objects waited for at once
  constexpr size_t kChunkScan = 4096;     // objects looked up per hold of the lock
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<bool> ready(ids.size(), false);
  Waiter waiter;
  size_t next = 0;
  while (next < ids.size()) {
    MutexLock lock(mu_);
    const size_t begin = next;
    waiter.missing.clear();
    while (next < ids.size() && next - begin < kChunkScan &&
           waiter.missing.size() < kChunkMissing) {
      if (objects_.count(ids[next])) {
        ready[next] = true;
      } else {
        waiter.missing.insert(ids[next]);
      }
      ++next;
    }
    if (waiter.missing.empty()) continue;
    waiter.remaining = waiter.missing.size();
    waiters_.push_back(&waiter);
    auto done = [&] { return waiter.remaining == 0; };
    bool all = true;
    if (timeout_ms < 0) {
      waiter.cv.Wait(mu_, done);
    } else {
      all = waiter.cv.WaitUntil(mu_, deadline, done);
    }
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &waiter));
    if (!all) {  // timed out: report what is there now
      for (size_t i = begin; i < ids.size(); ++i) ready[i] = objects_.count(ids[i]) > 0;
      return ready;
    }
    std::fill(ready.begin() + begin, ready.begin() + next, true);  // every one arrived
  }
  return ready;
}

std::vector<bool> MemoryStore::Wait(const std::vector<ObjectID>& ids, size_t num_required,
                                    int64_t timeout_ms) {
  if (num_required >= ids.size()) return WaitAll(ids, timeout_ms);
  std::vector<bool> ready(ids.size(), false);
  MutexLock lock(mu_);
  size_t have = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    ready[i] = objects_.count(ids[i]) > 0;
    have += ready[i];
  }
  if (have >= num_required) return ready;
  Waiter waiter;
  waiter.remaining = num_required - have;
  waiter.missing.reserve(ids.size() - have);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ready[i]) waiter.missing.insert(ids[i]);
  }
  waiters_.push_back(&waiter);
  auto done = [&] { return waiter.remaining == 0; };
  if (timeout_ms < 0) {
    waiter.cv.Wait(mu_, done);
  } else {
    waiter.cv.WaitFor(mu_, std::chrono::milliseconds(timeout_ms), done);
  }
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &waiter));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ready[i]) ready[i] = !waiter.missing.count(ids[i]);
  }
  return ready;
}

std::vector<bool> MemoryStore::SpinWait(const std::vector<ObjectID>& ids, size_t num_required,
                                        int64_t spin_us) {
  std::vector<bool> ready(ids.size(), false);
  std::vector<size_t> missing;
  size_t have = 0;
  {
    MutexLock lock(mu_);
    for (size_t i = 0; i < ids.size(); ++i) {
      ready[i] = objects_.count(ids[i]) > 0;
      if (ready[i]) {
        ++have;
      } else {
        missing.push_back(i);
      }
    }
  }
  if (have >= num_required || num_required - have > kMaxSpinMissing) return ready;
  uint64_t seen = version_.load(std::memory_order_acquire);
  auto check = [&] {
    uint64_t v = version_.load(std::memory_order_acquire);
    if (v == seen) return false;
    seen = v;
    MutexLock lock(mu_);
    for (auto it = missing.begin(); it != missing.end();) {
      if (objects_.count(ids[*it])) {
        ready[*it] = true;
        ++have;
        it = missing.erase(it);
      } else {
        ++it;
      }
    }
    return have >= num_required;
  };
  SpinUntil(check, spin_us);
  return ready;
}

void MemoryStore::OnReady(const ObjectID& id, ReadyCallback cb) {
  StoredObjectPtr obj;
  {
    MutexLock lock(mu_);
    auto it = objects_.find(id);
    if (it == objects_.end()) {
      callbacks_[id].push_back(std::move(cb));
      return;
    }
    obj = it->second;
  }
  cb(obj);
}

void MemoryStore::Delete(const ObjectID& id) {
  MutexLock lock(mu_);
  objects_.erase(id);
}

std::vector<ObjectID> MemoryStore::InPlasmaOn(const NodeID& node) const {
  std::vector<ObjectID> out;
  MutexLock lock(mu_);
  for (const auto& [id, obj] : objects_) {
    if (obj->in_plasma && obj->node == node) out.push_back(id);
  }
  return out;
}

size_t MemoryStore::Size() const {
  MutexLock lock(mu_);
  return objects_.size();
}

}  // namespace lumen::core
