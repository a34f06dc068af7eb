// ObjectRef<T>: a distributed future. A cheap, copyable handle to a value that a task will
// produce or that Put() stored; its owner (the process that created it) keeps the value alive
// while any handle exists anywhere in the cluster, and frees it everywhere after the last one
// is dropped.
//
// Thread safety: handles may be copied and destroyed from any thread. Do not destroy handles
// concurrently with lumen::Shutdown().
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "lumen/errors.h"

#include "lumen/ids.h"
#include "lumen/internal/runtime.h"
#include "lumen/internal/timeout.h"
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
  friend class AnyRef;
  internal::RefHandle handle_;
};

// A reference to an object of any type, for waiting on refs of different types together.
// Keeps the object alive like the typed ref it came from; As<T>() gives the typed ref back (a
// wrong T shows as TypeError at Get).
class AnyRef {
 public:
  AnyRef() = default;
  template <class T>
  AnyRef(const ObjectRef<T>& ref) : handle_(ref.handle_) {}  // NOLINT: implicit on purpose

  const ObjectID& ID() const { return handle_.id(); }
  std::string Hex() const { return handle_.id().Hex(); }
  bool IsNil() const { return !handle_.valid(); }
  template <class T>
  ObjectRef<T> As() const {
    ObjectRef<T> r;
    r.handle_ = handle_;
    return r;
  }
  bool operator==(const AnyRef& o) const { return ID() == o.ID(); }

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
// Every Get also takes a std::chrono duration (`Get(ref, std::chrono::seconds(5))`).
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

template <class T>
T Get(const ObjectRef<T>& ref, std::chrono::nanoseconds timeout) {
  return Get(ref, internal::TimeoutMs(timeout));
}

inline void Get(const ObjectRef<void>& ref, std::chrono::nanoseconds timeout) {
  Get(ref, internal::TimeoutMs(timeout));
}

template <class T>
std::vector<T> Get(const std::vector<ObjectRef<T>>& refs, std::chrono::nanoseconds timeout) {
  return Get(refs, internal::TimeoutMs(timeout));
}

// Ray's `ray.wait` options.
struct WaitOptions {
  // How many refs must be ready; at most this many are reported ready.
  size_t num_returns = 1;
  // How long to wait for them; none: as long as it takes. Whatever is ready by then is reported.
  std::optional<std::chrono::nanoseconds> timeout{};
  // Ready means readable here: an object held only on another node is pulled to this one
  // first (so the Get that follows does not wait). False: ready wherever it is.
  bool fetch_local = true;
};

template <class Ref>
struct WaitResult {
  std::vector<Ref> ready;      // in the order of the refs given
  std::vector<Ref> not_ready;  // likewise
};

template <class Ref>
struct IsWaitable : std::false_type {};
template <class T>
struct IsWaitable<ObjectRef<T>> : std::true_type {};
template <>
struct IsWaitable<AnyRef> : std::true_type {};

// Returns once `num_returns` of `refs` are ready, or at the timeout: `{ready, not_ready}`, each
// in the input order. Refs of different types wait together as `std::vector<lumen::AnyRef>`.
// Throws lumen::Error for more `num_returns` than refs, a nil or repeated ref, or a negative
// timeout.
template <class Ref, class = std::enable_if_t<IsWaitable<Ref>::value>>
WaitResult<Ref> Wait(const std::vector<Ref>& refs, const WaitOptions& options = {}) {
  if (options.num_returns > refs.size()) {
    throw Error("lumen::Wait: num_returns " + std::to_string(options.num_returns) +
                " is more than the " + std::to_string(refs.size()) + " refs given");
  }
  std::vector<ObjectID> ids;
  ids.reserve(refs.size());
  std::unordered_set<ObjectID> seen;
  for (const auto& r : refs) {
    if (r.IsNil()) throw Error("lumen::Wait: a ref is nil (default-constructed or moved from)");
    if (!seen.insert(r.ID()).second) {
      throw Error("lumen::Wait: ref " + r.Hex() + " is given twice; refs must be unique");
    }
    ids.push_back(r.ID());
  }
  const int64_t timeout_ms = options.timeout ? internal::TimeoutMs(*options.timeout) : -1;
  std::vector<bool> ready =
      internal::WaitObjects(ids, options.num_returns, timeout_ms, options.fetch_local);
  WaitResult<Ref> out;
  for (size_t i = 0; i < refs.size(); ++i) {
    if (ready[i] && out.ready.size() < options.num_returns) {
      out.ready.push_back(refs[i]);
    } else {
      out.not_ready.push_back(refs[i]);
    }
  }
  return out;
}

struct CancelOptions {
  // Kill the worker process running it (normal tasks only), rather than asking it to stop.
  bool force = false;
  // Also cancel the tasks and actor calls it submitted (and theirs).
  bool recursive = true;
};

// Cancels the task (or actor call) that makes `ref` (Ray's ray.cancel); returns at once. A task
// still queued is removed; a running one is asked to stop — lumen::IsCancelled() turns true
// inside it — or, with `force`, its worker is killed; it is not retried. Get then throws
// lumen::TaskCancelledError. A task that already finished keeps its result. Actor calls that
// have not started are removed; a running one sees IsCancelled(); `force` is refused for them
// (it would kill the actor). Only the process that submitted the task may cancel it.
inline void Cancel(const AnyRef& ref, const CancelOptions& options = {}) {
  if (ref.IsNil()) throw Error("lumen::Cancel: the ref is nil (default-constructed or moved from)");
  internal::CancelTask(ref.ID(), options.force, options.recursive);
}

// Inside a task or actor call: whether it was cancelled (lumen::Cancel). Long-running work
// checks it and returns early; whatever it returns, Get throws TaskCancelledError. False
// outside tasks.
inline bool IsCancelled() { return internal::CurrentTaskCancelled(); }

// The earlier spelling: (ready, pending) once `num_returns` are ready or after `timeout_ms`
// (< 0: no timeout); `num_returns` beyond the refs given is clamped. Fetches like the default
// WaitOptions.
template <class T>
std::pair<std::vector<ObjectRef<T>>, std::vector<ObjectRef<T>>> Wait(
    const std::vector<ObjectRef<T>>& refs, size_t num_returns, int64_t timeout_ms = -1) {
  WaitOptions o;
  o.num_returns = std::min(num_returns, refs.size());
  if (timeout_ms >= 0) o.timeout = std::chrono::milliseconds(timeout_ms);
  WaitResult<ObjectRef<T>> r = Wait(refs, o);
  return {std::move(r.ready), std::move(r.not_ready)};
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
