// Actors: stateful workers. A registered factory (a function returning T* or
// std::unique_ptr<T>) creates the actor in its own worker process; calls on its handle run
// there, in submission order per caller (max_concurrency > 1 runs them on a thread pool).
//
// @code
//   class Counter {
//    public:
//     static Counter* Create(int start) { return new Counter(start); }
//     int Incr(int by) { return value_ += by; }
//    private:
//     explicit Counter(int v) : value_(v) {}
//     int value_;
//   };
//   LUMEN_REMOTE(Counter::Create, &Counter::Incr);
//
//   lumen::ActorHandle<Counter> c = lumen::Actor(Counter::Create).Remote(10);
//   int n = lumen::Get(c.Task(&Counter::Incr).Remote(5));   // 15
// @endcode
//
// A class with a public constructor needs no factory: register the constructor by its
// parameter types with LUMEN_ACTOR and create the actor with lumen::Actor<T>():
//
// @code
//   LUMEN_ACTOR(Counter, int);
//   LUMEN_REMOTE(&Counter::Incr);
//   auto c = lumen::Actor<Counter>().Options({.name = "counter"}).Remote(10);
// @endcode
//
// Handles are cheap to copy and may be passed to tasks and other actors. An unnamed actor
// whose handles never left its creator stops when the creator's last handle is dropped; other
// actors live until lumen::Kill or the end of the job that created them (detached actors,
// `.lifetime = lumen::ActorLifetime::kDetached`, outlive it).
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lumen/errors.h"
#include "lumen/ids.h"
#include "lumen/internal/runtime.h"
#include "lumen/object_ref.h"
#include "lumen/options.h"
#include "lumen/remote.h"

namespace lumen {

// A handle's class when the caller has no declaration of it (lumen::GetActor(name)): only
// calls by name (handle.TaskByName<R>("Incr")) are possible.
struct AnyActor {};

template <class T = AnyActor>
class ActorHandle;

// A call of an actor method by its registered name, with run-time checked arguments (as
// lumen::TaskByName): errors (no such method, wrong arity, undecodable argument) come back
// from Get as FunctionNotFoundError or TypeError.
template <class R>
class ActorTaskByName {
 public:
  ActorTaskByName(ActorID actor, std::string method) : actor_(actor), method_(std::move(method)) {}

  ActorTaskByName& Options(ActorCallOptions options) {
    options_ = std::move(options);
    return *this;
  }

  template <class... A>
  ObjectRef<R> Remote(A&&... args) {
    auto ids = internal::SubmitActorTaskByName(actor_, method_,
                                               internal::PackAsGiven(std::forward<A>(args)...),
                                               options_.concurrency_group);
    return ObjectRef<R>::FromAdopted(ids[0]);
  }

 private:
  ActorID actor_;
  std::string method_;
  ActorCallOptions options_;
};

template <class T, class M>
class ActorTaskCaller {
  using Traits = internal::FunctionTraits<M>;

 public:
  using Return = std::decay_t<typename Traits::Return>;

  ActorTaskCaller(ActorID actor, M method) : actor_(actor), method_(method) {}

  ActorTaskCaller& Options(ActorCallOptions options) {
    options_ = std::move(options);
    return *this;
  }

  // A method with a lumen::Yield<T>& first parameter streams: an ObjectRefStream<T>.
  template <class... A>
  auto Remote(A&&... args) {
    const internal::RemoteFunction& fn = internal::LookupRemote(method_);
    if constexpr (internal::kIsGenerator<M>) {
      using G = internal::GeneratorOf<typename Traits::Args>;
      static_assert(sizeof...(A) + 1 == Traits::arity,
                    "handle.Task(&Class::Method).Remote(...): wrong number of arguments (its "
                    "lumen::Yield<T>& is not passed)");
      auto packed = internal::PackArgs<typename G::Rest>(std::forward<A>(args)...);
      return ObjectRefStream<typename G::type>(internal::SubmitActorStreamingTask(
          actor_, fn, std::move(packed), options_.concurrency_group,
          options_.generator_backpressure_num_objects));
    } else {
      static_assert(sizeof...(A) == Traits::arity,
                    "handle.Task(&Class::Method).Remote(...): wrong number of arguments");
      auto packed = internal::PackArgs<typename Traits::Args>(std::forward<A>(args)...);
      auto ids =
          internal::SubmitActorTask(actor_, fn, std::move(packed), options_.concurrency_group);
      return ObjectRef<Return>::FromAdopted(ids[0]);
    }
  }

 private:
  ActorID actor_;
  M method_;
  ActorCallOptions options_;
};

template <class T>
class ActorHandle {
 public:
  ActorHandle() = default;
  // Internal: wraps an actor ID whose handle reference the caller hands over.
  static ActorHandle FromAdopted(const ActorID& id) {
    ActorHandle h;
    h.id_ = id;
    h.valid_ = true;
    return h;
  }
  ActorHandle(const ActorHandle& o) : id_(o.id_), valid_(o.valid_) {
    if (valid_) internal::AddActorHandleRef(id_);
  }
  ActorHandle(ActorHandle&& o) noexcept : id_(o.id_), valid_(o.valid_) { o.valid_ = false; }
  ActorHandle& operator=(ActorHandle o) noexcept {
    std::swap(id_, o.id_);
    std::swap(valid_, o.valid_);
    return *this;
  }
  ~ActorHandle() {
    if (valid_) internal::RemoveActorHandleRef(id_);
  }

  const ActorID& ID() const { return id_; }
  bool IsNil() const { return !valid_; }

  // Prepares a call of a registered method of T (or of a base class of T).
  template <class M>
  requires internal::RemoteCallable<M> ActorTaskCaller<T, M> Task(M method)
  const {
    using Traits = internal::FunctionTraits<M>;
    static_assert(!std::is_same_v<T, AnyActor>,
                  "a handle from lumen::GetActor(name) without a class takes calls by name: "
                  "handle.TaskByName<R>(\"Method\")");
    static_assert(Traits::is_method, "handle.Task takes a member function: &Class::Method");
    static_assert(std::is_base_of_v<typename Traits::Class, T>,
                  "this method belongs to another class than the actor's");
    if (!valid_) throw Error("lumen: Task() called on an empty ActorHandle");
    return ActorTaskCaller<T, M>(id_, method);
  }

  // Prepares a call of a method by the name it was registered under ("Counter::Incr", or
  // "Incr"), returning an R: for handles whose class the caller does not know.
  template <class R>
  ActorTaskByName<R> TaskByName(std::string method) const {
    if (!valid_) throw Error("lumen: TaskByName() called on an empty ActorHandle");
    return ActorTaskByName<R>(id_, std::move(method));
  }

 private:
  ActorID id_;
  bool valid_ = false;
};

template <class F>
class ActorCreator {
  using Traits = internal::FunctionTraits<F>;

 public:
  using Product = typename internal::FactoryProduct<typename Traits::Return>::type;

  explicit ActorCreator(F factory) : factory_(factory) {}

  ActorCreator& Options(ActorOptions options) {
    options_ = std::move(options);
    return *this;
  }

  // Creates the actor; returns at once (calls queue until it is up). A constructor that
  // throws makes every call fail with ActorDiedError carrying its message.
  template <class... A>
  ActorHandle<Product> Remote(A&&... args) {
    static_assert(sizeof...(A) == Traits::arity,
                  "lumen::Actor(f).Remote(...): wrong number of arguments for f");
    const internal::RemoteFunction& fn = internal::LookupRemote(factory_);
    auto packed = internal::PackArgs<typename Traits::Args>(std::forward<A>(args)...);
    return ActorHandle<Product>::FromAdopted(
        internal::CreateActor(fn, std::move(packed), options_));
  }

 private:
  F factory_;
  ActorOptions options_;
};

// Creates an actor of class T from one of its LUMEN_ACTOR constructors, chosen by the
// arguments' types (the only one with that many parameters, else the exact match).
template <class T>
class ConstructorCreator {
 public:
  ConstructorCreator& Options(ActorOptions options) {
    options_ = std::move(options);
    return *this;
  }

  template <class... A>
  ActorHandle<T> Remote(A&&... args) {
    static_assert(std::is_constructible_v<T, internal::ArgValueT<A>...>,
                  "lumen::Actor<T>().Remote(...): T has no constructor taking these arguments");
    const internal::RemoteFunction& fn = internal::FindConstructor(
        internal::TypeName<T>(), {internal::TypeName<internal::ArgValueT<A>>()...});
    return ActorHandle<T>::FromAdopted(
        internal::CreateActor(fn, internal::PackAsGiven(std::forward<A>(args)...), options_));
  }

 private:
  ActorOptions options_;
};

// Prepares the creation of an actor of class T from a constructor registered with
// LUMEN_ACTOR(T, parameter types...).
template <class T>
requires std::is_class_v<T> ConstructorCreator<T> Actor() { return {}; }

// Prepares the creation of an actor from a registered factory.
template <class F>
requires internal::RemoteCallable<F> ActorCreator<std::decay_t<F>> Actor(F factory) {
  using Traits = internal::FunctionTraits<std::decay_t<F>>;
  static_assert(internal::kIsFactory<typename Traits::Return>,
                "lumen::Actor takes a factory returning T* or std::unique_ptr<T>");
  return ActorCreator<std::decay_t<F>>(factory);
}

struct GetActorOptions {
  // The namespace the actor was named in; empty: this job's (lumen::InitOptions::namespace_).
  std::string namespace_{};
};

// The live actor named `name`, or std::nullopt when there is none (not found is not an error).
// Throws TypeError when it is not a T. Without T the handle takes calls by name only.
template <class T = AnyActor>
std::optional<ActorHandle<T>> GetActor(const std::string& name,
                                       const GetActorOptions& options = {}) {
  constexpr bool kTyped = !std::is_same_v<T, AnyActor>;
  ActorID id = internal::GetNamedActor(name, options.namespace_,
                                       kTyped ? internal::TypeName<T>() : std::string());
  if (id.IsNil()) return std::nullopt;
  return ActorHandle<T>::FromAdopted(id);
}

// Ends the actor this code runs in; call it from one of its methods. The call's result and
// every call queued behind it fail with ActorDiedError saying the actor exited; it does not
// restart. Throws lumen::Error outside an actor.
[[noreturn]] inline void ExitActor() {
  if (!internal::InActor()) throw Error("lumen::ExitActor: not called inside an actor");
  throw internal::ExitActorSignal{};
}

// Whether the actor this code runs in is a restart (max_restarts) rather than its first
// instance; false outside actors.
inline bool WasCurrentActorRestarted() {
  return internal::InActor() && internal::ActorWasRestarted();
}

// Stops the actor's process. With no_restart (the default) the actor is dead for good and
// every pending and later call fails with ActorDiedError; otherwise it restarts if it has
// restarts left.
template <class T>
void Kill(const ActorHandle<T>& actor, bool no_restart = true) {
  internal::KillActor(actor.ID(), no_restart);
}

}  // namespace lumen

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  // An ActorHandle inside a value travels as msgpack ext type 2.
  template <class T>
  struct pack<lumen::ActorHandle<T>> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const lumen::ActorHandle<T>& h) const {
      std::string packed = lumen::internal::PackActorHandle(h.ID());
      o.pack_ext(packed.size(), 2);
      o.pack_ext_body(packed.data(), static_cast<uint32_t>(packed.size()));
      return o;
    }
  };
  template <class T>
  struct convert<lumen::ActorHandle<T>> {
    const msgpack::object& operator()(const msgpack::object& o, lumen::ActorHandle<T>& h) const {
      if (o.type != msgpack::type::EXT || o.via.ext.type() != 2) throw msgpack::type_error();
      h = lumen::ActorHandle<T>::FromAdopted(
          lumen::internal::UnpackActorHandle(std::string_view(o.via.ext.data(), o.via.ext.size)));
      return o;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE
}  // namespace msgpack
