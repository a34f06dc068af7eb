// ObjectRef<T>: a distributed future. A cheap, copyable handle to a value that a task will
// produce or that Put() stored; its owner (the process that created it) keeps the value alive
// while any handle exists anywhere in the cluster, and frees it everywhere after the last one
// is dropped.
//
// Thread safety: handles may be copied and destroyed from any thread. Do not destroy handles
// concurrently with lumen::Shutdown().
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lumen/ids.h"
#include "lumen/internal/runtime.h"
#include "lumen/serialization.h"

namespace lumen {

namespace internal {

// Counts one local reference to an object while it lives.
class RefHandle {
 public:
  RefHandle() = default;
  static RefHandle Adopt(const ObjectID& id) {
    RefHandle h;
    h.id_ = id;
    h.valid_ = true;
    return h;
  }
  RefHandle(const RefHandle& o) : id_(o.id_), valid_(o.valid_) {
    if (valid_) AddLocalRef(id_);
  }
  RefHandle(RefHandle&& o) noexcept : id_(o.id_), valid_(o.valid_) { o.valid_ = false; }
  RefHandle& operator=(const RefHandle& o) {
    if (this != &o) {
      RefHandle copy(o);
      *this = std::move(copy);
    }
    return *this;
  }
  RefHandle& operator=(RefHandle&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = o.id_;
      valid_ = o.valid_;
      o.valid_ = false;
    }
    return *this;
  }
  ~RefHandle() { Reset(); }
  void Reset() {
    if (valid_) RemoveLocalRef(id_);
    valid_ = false;
  }
  const ObjectID& id() const { return id_; }
  bool valid() const { return valid_; }

 private:
  ObjectID id_;
  bool valid_ = false;
};

}  // namespace internal

template <class T>
class ObjectRef {
 public:
  using value_type = T;

  ObjectRef() = default;

  const ObjectID& ID() const { return handle_.id(); }
  std::string Hex() const { return handle_.id().Hex(); }
  bool IsNil() const { return !handle_.valid(); }

  // Internal: wraps an ID whose local reference the caller hands over.
  static ObjectRef FromAdopted(const ObjectID& id) {
    ObjectRef r;
    r.handle_ = internal::RefHandle::Adopt(id);
    return r;
  }

  bool operator==(const ObjectRef& o) const { return ID() == o.ID(); }

 private:
  internal::RefHandle handle_;
};

template <class T>
struct IsObjectRef : std::false_type {};
template <class T>
struct IsObjectRef<ObjectRef<T>> : std::true_type {};

// Stores `value` in the cluster and returns a reference to it. Small values live in this
// process's memory; large ones (> ~100 KiB) in the node's shared-memory store. A Buffer is
// copied once, into shared memory.
template <class T>
ObjectRef<std::decay_t<T>> Put(const T& value) {
  static_assert(!IsObjectRef<std::decay_t<T>>::value, "Put of an ObjectRef: pass the ref itself");
  return ObjectRef<std::decay_t<T>>::FromAdopted(internal::PutValue(internal::Serialize(value)));
}

// Waits for the value (timeout_ms < 0: forever). Throws GetTimeoutError when not ready in time,
// TaskError when the task threw, WorkerCrashedError, ActorDiedError, ObjectLostError, ...
template <class T>
T Get(const ObjectRef<T>& ref, int64_t timeout_ms = -1) {
  auto views = internal::GetValues({ref.ID()}, timeout_ms);
  return internal::Deserialize<T>(views[0]);
}

inline void Get(const ObjectRef<void>& ref, int64_t timeout_ms = -1) {
  internal::GetValues({ref.ID()}, timeout_ms);
}

template <class T>
std::vector<T> Get(const std::vector<ObjectRef<T>>& refs, int64_t timeout_ms = -1) {
  std::vector<ObjectID> ids;
  ids.reserve(refs.size());
  for (const auto& r : refs) ids.push_back(r.ID());
  auto views = internal::GetValues(ids, timeout_ms);
  std::vector<T> out;
  out.reserve(views.size());
  for (auto& v : views) out.push_back(internal::Deserialize<T>(v));
  return out;
}

// Splits `refs` into (ready, pending) once `num_returns` are ready or after `timeout_ms`
// (< 0: no timeout). At most `num_returns` refs are reported ready; order is preserved.
template <class T>
std::pair<std::vector<ObjectRef<T>>, std::vector<ObjectRef<T>>> Wait(
    const std::vector<ObjectRef<T>>& refs, size_t num_returns, int64_t timeout_ms = -1) {
  std::vector<ObjectID> ids;
  ids.reserve(refs.size());
  for (const auto& r : refs) ids.push_back(r.ID());
  if (num_returns > refs.size()) num_returns = refs.size();
  std::vector<bool> ready = internal::WaitObjects(ids, num_returns, timeout_ms);
  std::pair<std::vector<ObjectRef<T>>, std::vector<ObjectRef<T>>> out;
  for (size_t i = 0; i < refs.size(); ++i) {
    if (ready[i] && out.first.size() < num_returns) {
      out.first.push_back(refs[i]);
    } else {
      out.second.push_back(refs[i]);
    }
  }
  return out;
}

}  // namespace lumen

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  // An ObjectRef inside a value travels as msgpack ext type 1: its ID and owner.
  template <class T>
  struct pack<lumen::ObjectRef<T>> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const lumen::ObjectRef<T>& r) const {
      std::string packed = lumen::internal::PackRef(r.ID());
      o.pack_ext(packed.size(), 1);
      o.pack_ext_body(packed.data(), static_cast<uint32_t>(packed.size()));
      return o;
    }
  };
  template <class T>
  struct convert<lumen::ObjectRef<T>> {
    const msgpack::object& operator()(const msgpack::object& o, lumen::ObjectRef<T>& r) const {
      if (o.type != msgpack::type::EXT || o.via.ext.type() != 1) throw msgpack::type_error();
      r = lumen::ObjectRef<T>::FromAdopted(
          lumen::internal::UnpackRef(std::string_view(o.via.ext.data(), o.via.ext.size)));
      return o;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE
}  // namespace msgpack
