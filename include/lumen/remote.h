// Remote functions: register with LUMEN_REMOTE at namespace scope, call with lumen::Task.
//
// @code
//   int Add(int a, int b) { return a + b; }
//   LUMEN_REMOTE(Add);
//
//   lumen::ObjectRef<int> r = lumen::Task(Add).Remote(1, 2);      // runs in a worker process
//   auto s = lumen::Task(Add).Options({.num_cpus = 2}).Remote(r, 5);  // ObjectRef args: values
// @endcode
//
// Registration happens at static-initialisation time in every process running the binary, so
// only the function's name crosses the wire. Argument types are checked at compile time; an
// ObjectRef<U> argument must convert to the parameter type. Parameters are received by value
// (const T& and T are fine; non-const references are rejected).
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "lumen/errors.h"
#include "lumen/generator.h"
#include "lumen/internal/runtime.h"
#include "lumen/object_ref.h"
#include "lumen/options.h"
#include "lumen/serialization.h"

namespace lumen {
namespace internal {

template <class F>
struct FunctionTraits;

template <class R, class... A>
struct FunctionTraits<R (*)(A...)> {
  using Return = R;
  using Args = std::tuple<A...>;
  using Class = void;
  static constexpr size_t arity = sizeof...(A);
  static constexpr bool is_method = false;
};
template <class R, class... A>
struct FunctionTraits<R (*)(A...) noexcept> : FunctionTraits<R (*)(A...)> {};
template <class R, class C, class... A>
struct FunctionTraits<R (C::*)(A...)> {
  using Return = R;
  using Args = std::tuple<A...>;
  using Class = C;
  static constexpr size_t arity = sizeof...(A);
  static constexpr bool is_method = true;
};
template <class R, class C, class... A>
struct FunctionTraits<R (C::*)(A...) const> : FunctionTraits<R (C::*)(A...)> {};
template <class R, class C, class... A>
struct FunctionTraits<R (C::*)(A...) noexcept> : FunctionTraits<R (C::*)(A...)> {};
template <class R, class C, class... A>
struct FunctionTraits<R (C::*)(A...) const noexcept> : FunctionTraits<R (C::*)(A...)> {};

template <class F>
concept RemoteCallable = requires {
  typename FunctionTraits<std::decay_t<F>>::Return;
};

// What an actor factory (a function returning T* or std::unique_ptr<T>) produces.
template <class R>
struct FactoryProduct {
  using type = void;
};
template <class T>
requires std::is_class_v<T>
struct FactoryProduct<T*> {
  using type = T;
};
template <class T>
struct FactoryProduct<std::unique_ptr<T>> {
  using type = T;
};
template <class R>
constexpr bool kIsFactory = !std::is_void_v<typename FactoryProduct<R>::type>;

// A streaming function's parameters: lumen::Yield<T>& first, then the caller's arguments.
template <class Args>
struct GeneratorOf {
  using type = void;
};
template <class T, class... A>
struct GeneratorOf<std::tuple<Yield<T>&, A...>> {
  using type = T;
  using Rest = std::tuple<A...>;
};
template <class F>
constexpr bool kIsGenerator =
    !std::is_void_v<typename GeneratorOf<typename FunctionTraits<F>::Args>::type>;

template <class F>
std::string KeyOf(F f) {
  std::string key(sizeof(F), '\0');
  std::memcpy(key.data(), &f, sizeof(F));
  return key;
}

std::vector<std::string> SplitRemoteNames(const char* names);

template <class A>
constexpr bool kNoMutableRef =
    !std::is_lvalue_reference_v<A> || std::is_const_v<std::remove_reference_t<A>>;

template <class P>
std::decay_t<P> DecodeArg(ValueView& view, size_t index) {
  try {
    return Deserialize<std::decay_t<P>>(view);
  } catch (const lumen::Error& e) {
    throw ArgumentDecodeError{index, e.what()};
  }
}

template <class Tuple, size_t... I>
auto DecodeArgs(std::vector<ValueView>& args, std::index_sequence<I...>) {
  return std::tuple<std::decay_t<std::tuple_element_t<I, Tuple>>...>{
      DecodeArg<std::tuple_element_t<I, Tuple>>(args[I], I)...};
}

template <class T>
inline constexpr bool kIsTuple = false;
template <class... T>
inline constexpr bool kIsTuple<std::tuple<T...>> = true;

// Each element of a tuple result as a value of its own (num_returns).
template <class... T>
std::vector<SerializedValue> SerializeElements(std::tuple<T...>&& result) {
  std::vector<SerializedValue> out;
  out.reserve(sizeof...(T));
  std::apply([&](auto&... e) { (out.push_back(Serialize<std::decay_t<decltype(e)>>(e)), ...); },
             result);
  return out;
}

template <class R, class Call>
SerializedValue RunAndSerialize(Call&& call) {
  if constexpr (std::is_void_v<R>) {
    call();
    return SerializeNil();
  } else {
    return Serialize<std::decay_t<R>>(call());
  }
}

template <class F>
RemoteFunction MakeRemote(const std::string& name, F f) {
  using Traits = FunctionTraits<F>;
  using R = typename Traits::Return;
  using Args = typename Traits::Args;
  constexpr size_t N = Traits::arity;
  constexpr size_t kFirst = kIsGenerator<F> ? 1 : 0;  // a generator's Yield<T>& is Lumen's
  static_assert(
      []<size_t... I>(std::index_sequence<I...>) {
        return ((I < kFirst || kNoMutableRef<std::tuple_element_t<I, Args>>)&&...);
      }(std::make_index_sequence<N>{}),
      "LUMEN_REMOTE: parameters must be values or const references "
      "(a remote function cannot write to the caller's variables)");
  RemoteFunction fn;
  fn.name = name;
  fn.signature = TypeName<F>();
  fn.num_args = N;
  if constexpr (kIsGenerator<F>) {     // a streaming function or actor method
    using C = typename Traits::Class;  // void for free functions
    using G = GeneratorOf<Args>;
    using Rest = typename G::Rest;
    constexpr size_t M = N - 1;
    static_assert(std::is_void_v<R>,
                  "a streaming function (lumen::Yield<T>& first parameter) returns void: its "
                  "values are what it yields");
    fn.is_generator = true;
    fn.num_args = M;
    if constexpr (Traits::is_method) {
      fn.is_method = true;
      fn.class_name = TypeName<C>();
    } else {
      fn.raw = reinterpret_cast<void*>(f);
    }
    fn.invoke = [f](void* instance, std::vector<ValueView>& args) {
      auto decoded = DecodeArgs<Rest>(args, std::make_index_sequence<M>{});
      Yield<typename G::type> out;
      std::apply(
          [&](auto&&... a) {
            if constexpr (Traits::is_method) {
              (static_cast<C*>(instance)->*f)(out, std::move(a)...);
            } else {
              f(out, std::move(a)...);
            }
          },
          std::move(decoded));
      return SerializeNil();
    };
  } else if constexpr (Traits::is_method) {
    using C = typename Traits::Class;
    fn.is_method = true;
    fn.class_name = TypeName<C>();
    fn.invoke = [f](void* instance, std::vector<ValueView>& args) {
      auto decoded = DecodeArgs<Args>(args, std::make_index_sequence<N>{});
      C* self = static_cast<C*>(instance);
      return RunAndSerialize<R>([&]() -> decltype(auto) {
        return std::apply(
            [&](auto&&... a) -> decltype(auto) { return (self->*f)(std::move(a)...); },
            std::move(decoded));
      });
    };
  } else if constexpr (kIsFactory<R>) {
    using T = typename FactoryProduct<R>::type;
    fn.class_name = TypeName<T>();
    fn.create = [f](std::vector<ValueView>& args) -> std::shared_ptr<void> {
      auto decoded = DecodeArgs<Args>(args, std::make_index_sequence<N>{});
      if constexpr (std::is_pointer_v<R>) {
        T* p = std::apply(f, std::move(decoded));
        return std::shared_ptr<void>(static_cast<void*>(p),
                                     [](void* q) { delete static_cast<T*>(q); });
      } else {
        std::unique_ptr<T> p = std::apply(f, std::move(decoded));
        return std::shared_ptr<void>(static_cast<void*>(p.release()),
                                     [](void* q) { delete static_cast<T*>(q); });
      }
    };
  } else {
    fn.raw = reinterpret_cast<void*>(f);
    fn.invoke = [f](void*, std::vector<ValueView>& args) {
      auto decoded = DecodeArgs<Args>(args, std::make_index_sequence<N>{});
      return RunAndSerialize<R>(
          [&]() -> decltype(auto) { return std::apply(f, std::move(decoded)); });
    };
    if constexpr (kIsTuple<std::decay_t<R>>) {
      fn.tuple_size = std::tuple_size_v<std::decay_t<R>>;
      fn.invoke_split = [f](std::vector<ValueView>& args) {
        auto decoded = DecodeArgs<Args>(args, std::make_index_sequence<N>{});
        return SerializeElements(std::apply(f, std::move(decoded)));
      };
    }
  }
  return fn;
}

template <class F>
void RegisterOne(const std::string& name, F f) {
  RegisterRemote(KeyOf(f), MakeRemote(name, f));
}

// The value type an argument passes: U for an ObjectRef<U>, else the decayed type.
template <class A>
struct ArgValue {
  using type = std::decay_t<A>;
};
template <class A>
requires IsObjectRef<std::decay_t<A>>::value struct ArgValue<A> {
  using type = typename std::decay_t<A>::value_type;
};
template <class A>
using ArgValueT = typename ArgValue<A>::type;

// LUMEN_ACTOR's factory: T built by its constructor from the registered parameter types.
template <class T, class... P>
T* ConstructActor(P... args) {
  return new T(std::forward<P>(args)...);
}

// Registers T's constructor taking P... as an actor factory named `name` ("Counter(int)").
template <class T, class... P>
bool RegisterActorConstructor(const char* name) {
  static_assert(std::is_class_v<T>, "LUMEN_ACTOR(Class, parameter types...) takes a class");
  static_assert(std::is_constructible_v<T, P...>,
                "LUMEN_ACTOR(Class, types...): the class has no such (public) constructor");
  auto f = &ConstructActor<T, P...>;
  RemoteFunction fn = MakeRemote(name, f);
  fn.is_constructor = true;
  fn.param_types = {TypeName<std::decay_t<P>>()...};
  RegisterRemote(KeyOf(f), std::move(fn));
  return true;
}

template <class... Ms>
bool PutInConcurrencyGroup(const char* group, Ms... methods) {
  static_assert((FunctionTraits<Ms>::is_method && ...),
                "LUMEN_CONCURRENCY_GROUP takes actor methods: &Class::Method");
  (SetConcurrencyGroup(KeyOf(methods), group), ...);
  return true;
}

template <class... Fs>
bool RegisterRemoteFunctions(const char* names, Fs... fs) {
  static_assert((RemoteCallable<Fs> && ...),
                "LUMEN_REMOTE takes free functions, static member functions and &Class::Method");
  std::vector<std::string> split = SplitRemoteNames(names);
  size_t i = 0;
  (RegisterOne(i < split.size() ? split[i++] : std::string("?"), fs), ...);
  return true;
}

template <class P, class A>
TaskArgument PackArg(A&& a) {
  using D = std::decay_t<A>;
  using PD = std::decay_t<P>;
  TaskArgument t;
  if constexpr (IsObjectRef<D>::value) {
    using U = typename D::value_type;
    static_assert(std::is_same_v<U, PD> || std::is_convertible_v<U, PD>,
                  "an ObjectRef<U> argument must hold a type that converts to the parameter");
    t.is_ref = true;
    t.ref = a.ID();
  } else {
    static_assert(std::is_constructible_v<PD, A&&>,
                  "argument type does not convert to the remote function's parameter type");
    if constexpr (std::is_same_v<D, PD>) {
      t.value = Serialize<PD>(a);
    } else {
      t.value = Serialize<PD>(PD(std::forward<A>(a)));
    }
  }
  return t;
}

template <class Tuple, class... A, size_t... I>
std::vector<TaskArgument> PackArgsImpl(std::index_sequence<I...>, A&&... a) {
  std::vector<TaskArgument> out;
  out.reserve(sizeof...(A));
  (out.push_back(PackArg<std::tuple_element_t<I, Tuple>>(std::forward<A>(a))), ...);
  return out;
}

template <class Tuple, class... A>
std::vector<TaskArgument> PackArgs(A&&... a) {
  return PackArgsImpl<Tuple>(std::index_sequence_for<A...>{}, std::forward<A>(a)...);
}

// The arguments of a call checked when it runs (by name, or a LUMEN_ACTOR constructor): each
// serialised as its own type, an ObjectRef<U> as a reference to a U.
template <class... A>
std::vector<TaskArgument> PackAsGiven(A&&... a) {
  return PackArgs<std::tuple<ArgValueT<A>...>>(std::forward<A>(a)...);
}

template <class F>
const RemoteFunction& LookupRemote(F f) {
  const RemoteFunction* fn = FindRemoteByKey(KeyOf(f));
  if (!fn) {
    throw FunctionNotFoundError("a function of type " + TypeName<F>() +
                                " is not registered; add LUMEN_REMOTE(<its name>) at namespace "
                                "scope in the program");
  }
  return *fn;
}

// Submits registered free function `f` with `args` as a task of `num_returns` returns.
template <class F, class... A>
std::vector<ObjectID> SubmitCall(F f, const TaskOptions& options, int num_returns, A&&... args) {
  using Traits = FunctionTraits<F>;
  static_assert(sizeof...(A) == Traits::arity,
                "lumen::Task(f).Remote(...): wrong number of arguments for f");
  const RemoteFunction& fn = LookupRemote(f);
  auto packed = PackArgs<typename Traits::Args>(std::forward<A>(args)...);
  return SubmitTask(fn, std::move(packed), options, num_returns);
}

}  // namespace internal

// A task whose std::tuple result is split into one object per element (kSplitTuple).
template <class F>
class SplitTaskCaller {
  using Traits = internal::FunctionTraits<F>;
  using Return = std::decay_t<typename Traits::Return>;

 public:
  SplitTaskCaller(F f, TaskOptions options) : f_(f), options_(std::move(options)) {}

  template <class... A>
  auto Remote(A&&... args) {
    constexpr size_t n = std::tuple_size_v<Return>;
    static_assert(n > 0, "num_returns = lumen::kSplitTuple of an empty tuple");
    auto ids = internal::SubmitCall(f_, options_, static_cast<int>(n), std::forward<A>(args)...);
    return [&]<size_t... I>(std::index_sequence<I...>) {
      return std::tuple<ObjectRef<std::tuple_element_t<I, Return>>...>{
          ObjectRef<std::tuple_element_t<I, Return>>::FromAdopted(ids[I])...};
    }
    (std::make_index_sequence<n>{});
  }

 private:
  F f_;
  TaskOptions options_;
};

template <class F>
class TaskCaller {
  using Traits = internal::FunctionTraits<F>;

 public:
  using Return = std::decay_t<typename Traits::Return>;

  explicit TaskCaller(F f) : f_(f) {}

  TaskCaller& Options(TaskOptions options) {
    options_ = std::move(options);
    return *this;
  }
  // Ray's num_returns: `.Options({.num_returns = lumen::kSplitTuple, ...})` makes Remote()
  // return one ObjectRef per element of the function's std::tuple result.
  SplitTaskCaller<F> Options(SplitTaskOptions options) {
    static_assert(internal::kIsTuple<Return>,
                  "num_returns = lumen::kSplitTuple needs a function that returns std::tuple");
    return SplitTaskCaller<F>(f_, options.task_options());
  }

  // A function with a lumen::Yield<T>& first parameter streams: Remote() returns an
  // ObjectRefStream<T> (lumen/generator.h); the others an ObjectRef of their result.
  template <class... A>
  auto Remote(A&&... args) {
    if constexpr (internal::kIsGenerator<F>) {
      using G = internal::GeneratorOf<typename Traits::Args>;
      static_assert(sizeof...(A) + 1 == Traits::arity,
                    "lumen::Task(f).Remote(...): wrong number of arguments for f (its "
                    "lumen::Yield<T>& is not passed)");
      const internal::RemoteFunction& fn = internal::LookupRemote(f_);
      auto packed = internal::PackArgs<typename G::Rest>(std::forward<A>(args)...);
      return ObjectRefStream<typename G::type>(
          internal::SubmitStreamingTask(fn, std::move(packed), options_));
    } else {
      auto ids = internal::SubmitCall(f_, options_, 1, std::forward<A>(args)...);
      return ObjectRef<Return>::FromAdopted(ids[0]);
    }
  }

 private:
  F f_;
  TaskOptions options_;
};

// Prepares a call of a registered free function (or static member function) as a task.
template <class F>
requires internal::RemoteCallable<F> TaskCaller<std::decay_t<F>> Task(F f) {
  using Traits = internal::FunctionTraits<std::decay_t<F>>;
  static_assert(!Traits::is_method, "use handle.Task(&Class::Method) to call an actor method");
  static_assert(!internal::kIsFactory<typename Traits::Return>,
                "this function returns an object pointer: create an actor with lumen::Actor(f)");
  return TaskCaller<std::decay_t<F>>(f);
}

// Calls a registered function by name with run-time checked arguments (each argument is
// serialised as its own type). Errors (unknown name, wrong arity, undecodable argument) come
// back from Get as FunctionNotFoundError or TypeError.
template <class R>
class TaskByName {
 public:
  explicit TaskByName(std::string name) : name_(std::move(name)) {}
  TaskByName& Options(TaskOptions options) {
    options_ = std::move(options);
    return *this;
  }
  template <class... A>
  ObjectRef<R> Remote(A&&... args) {
    auto ids = internal::SubmitTaskByName(name_, internal::PackAsGiven(std::forward<A>(args)...),
                                          options_);
    return ObjectRef<R>::FromAdopted(ids[0]);
  }

 private:
  std::string name_;
  TaskOptions options_;
};

}  // namespace lumen

#define LUMEN_REMOTE_CONCAT_INNER(a, b) a##b
#define LUMEN_REMOTE_CONCAT(a, b) LUMEN_REMOTE_CONCAT_INNER(a, b)

// Registers functions, static member functions (actor factories) and &Class::Method (actor
// methods) for remote execution. Use once per function, at namespace scope:
//   LUMEN_REMOTE(Add, Sum, Counter::Create, &Counter::Incr);
#define LUMEN_REMOTE(...)                                                              \
  [[maybe_unused]] static const bool LUMEN_REMOTE_CONCAT(lumen_remote_, __COUNTER__) = \
      ::lumen::internal::RegisterRemoteFunctions(#__VA_ARGS__, __VA_ARGS__)

// Puts actor methods in a concurrency group (ActorOptions::concurrency_groups): their calls run
// on that group's threads. At namespace scope, like LUMEN_REMOTE (before or after it):
//   LUMEN_CONCURRENCY_GROUP("io", &Downloader::Fetch, &Downloader::Store);
#define LUMEN_CONCURRENCY_GROUP(group, ...)                                           \
  [[maybe_unused]] static const bool LUMEN_REMOTE_CONCAT(lumen_group_, __COUNTER__) = \
      ::lumen::internal::PutInConcurrencyGroup(group, __VA_ARGS__)

// Registers a constructor of an actor class, by its parameter types, so that
// lumen::Actor<Class>().Remote(args...) creates the actor without a factory function. Once per
// constructor, at namespace scope; methods are registered with LUMEN_REMOTE as usual:
//   LUMEN_ACTOR(Counter, int);
//   LUMEN_ACTOR(Counter);                       // the default constructor
//   LUMEN_REMOTE(&Counter::Incr);
#define LUMEN_ACTOR(Class, ...)                                                       \
  [[maybe_unused]] static const bool LUMEN_REMOTE_CONCAT(lumen_actor_, __COUNTER__) = \
      ::lumen::internal::RegisterActorConstructor<Class __VA_OPT__(, ) __VA_ARGS__>(  \
          #Class "(" #__VA_ARGS__ ")")
