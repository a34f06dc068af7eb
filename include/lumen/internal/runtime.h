// The non-template entry points that Lumen's public templates call. Implemented by the core
// worker of this process (src/api). Not for direct use: the stable API is in <lumen/lumen.h>.
//
// Reference convention: every function returning an ObjectID hands the caller one local
// reference, which the ObjectRef built from it adopts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lumen/buffer.h"
#include "lumen/ids.h"
#include "lumen/options.h"

namespace lumen::internal {

enum class ValueFormat : int32_t { kMsgpack = 0, kRaw = 1, kError = 2 };

// A value ready to be stored or sent: msgpack bytes, or (kRaw) the bytes of a Buffer, which
// are not copied until they reach the object store.
struct SerializedValue {
  ValueFormat format = ValueFormat::kMsgpack;
  std::string data;
  Buffer raw;
  std::vector<ObjectID> nested_refs;  // ObjectRefs inside the value

  size_t size() const { return format == ValueFormat::kRaw ? raw.size() : data.size(); }
  const uint8_t* bytes() const {
    return format == ValueFormat::kRaw ? raw.data() : reinterpret_cast<const uint8_t*>(data.data());
  }
};

// A stored value as read back. `data` stays valid while `holder` lives (for large objects
// `holder` pins the object in shared memory).
struct ValueView {
  ValueFormat format = ValueFormat::kMsgpack;
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> holder;
};

// ---- registry of remote functions ------------------------------------------------------------

using Invoker = std::function<SerializedValue(void* instance, std::vector<ValueView>& args)>;
using Factory = std::function<std::shared_ptr<void>(std::vector<ValueView>& args)>;
// Runs a function returning std::tuple and serialises each element on its own.
using SplitInvoker = std::function<std::vector<SerializedValue>(std::vector<ValueView>& args)>;

struct RemoteFunction {
  std::string name;             // as written in LUMEN_REMOTE (without '&')
  std::string signature;        // demangled C++ type, checked by the executor
  uint64_t signature_hash = 0;  // set at registration
  size_t num_args = 0;
  Invoker invoke;             // functions and methods
  SplitInvoker invoke_split;  // free functions returning std::tuple: one value per element
  size_t tuple_size = 0;      // their number of elements
  Factory create;             // set for factories returning T* / unique_ptr<T> (actor creation)
  std::string class_name;     // actor class of a factory's product or of a method
  bool is_method = false;
  std::string concurrency_group;  // methods: LUMEN_CONCURRENCY_GROUP's (empty: the default)
  bool is_generator = false;      // its first parameter is a lumen::Yield<T>& (not counted)
  // LUMEN_ACTOR constructors: registered per class, chosen by their parameter types.
  bool is_constructor = false;
  std::vector<std::string> param_types;  // demangled, decayed
  void* raw = nullptr;  // free functions: the function pointer (libraries call it directly)
};

// Registers `fn` under `key` (the bytes of the function or member pointer). Aborts with a clear
// message when two different functions claim one name.
void RegisterRemote(std::string key, RemoteFunction fn);
const RemoteFunction* FindRemoteByKey(const std::string& key);
const RemoteFunction* FindRemoteByName(const std::string& name);
// LUMEN_CONCURRENCY_GROUP: the method registered (before or after) under `key` runs in `group`.
bool SetConcurrencyGroup(const std::string& key, const std::string& group);
// The LUMEN_ACTOR constructor of `class_name` for arguments of `arg_types` (decayed, ObjectRef<U>
// as U): the only one with that many parameters, else the one whose types match exactly.
// Throws FunctionNotFoundError when none is registered and TypeError when the choice is
// ambiguous.
const RemoteFunction& FindConstructor(const std::string& class_name,
                                      const std::vector<std::string>& arg_types);
// A method of the actor class `class_name` by its name as registered ("Counter::Incr") or
// without the class ("Incr"); nullptr when there is none.
const RemoteFunction* FindMethodByName(const std::string& class_name, const std::string& name);

// Thrown by lumen::ExitActor(); the executor ends the actor. Not a std::exception, so that user
// code catching those does not stop the exit.
struct ExitActorSignal {};
// Whether the calling code runs in an actor, and whether that actor was restarted.
bool InActor();
bool ActorWasRestarted();

// Thrown by invokers when an argument cannot be decoded as the parameter type.
struct ArgumentDecodeError {
  size_t index;
  std::string message;
};

// ---- objects ----------------------------------------------------------------------------------

bool IsInitialized();
void AddLocalRef(const ObjectID& id);
void RemoveLocalRef(const ObjectID& id);

ObjectID PutValue(SerializedValue value);
// Throws the typed error stored for an object, GetTimeoutError, ObjectLostError, ...
std::vector<ValueView> GetValues(const std::vector<ObjectID>& ids, int64_t timeout_ms);
// ready[i] tells whether ids[i] is ready; returns once `num_returns` are, or at the timeout.
// With `fetch_local`, an object held only on another node counts once it is pulled here.
std::vector<bool> WaitObjects(const std::vector<ObjectID>& ids, size_t num_returns,
                              int64_t timeout_ms, bool fetch_local);
// Calls `callback` (on an internal thread) once the object is ready or failed.
void OnObjectReady(const ObjectID& id, std::function<void()> callback);

// The node holding an object's shared-memory copy (nil when inline or not known here).
NodeID ObjectLocation(const ObjectID& id);
// The node an actor runs on (nil while it is not alive).
NodeID ActorLocation(const ActorID& id);

// Serialising an ObjectRef inside a value: records it for borrower accounting.
std::string PackRef(const ObjectID& id);
// Deserialising one: registers this process as a borrower; returns an adopted local ref.
ObjectID UnpackRef(std::string_view packed);

// ---- tasks and actors -----------------------------------------------------------------------

struct TaskArgument {
  bool is_ref = false;
  ObjectID ref;           // is_ref: a dependency (the callee receives its value)
  SerializedValue value;  // !is_ref
};

// `num_returns` > 1: `fn` returns a tuple of that many elements, one object each.
std::vector<ObjectID> SubmitTask(const RemoteFunction& fn, std::vector<TaskArgument> args,
                                 const TaskOptions& options, int num_returns = 1);
// Calls by name (no compile-time types); the executor checks arity and decodes at run time.
std::vector<ObjectID> SubmitTaskByName(const std::string& name, std::vector<TaskArgument> args,
                                       const TaskOptions& options);

ActorID CreateActor(const RemoteFunction& factory, std::vector<TaskArgument> args,
                    const ActorOptions& options);
// `concurrency_group`: empty for the method's (LUMEN_CONCURRENCY_GROUP) or the default.
std::vector<ObjectID> SubmitActorTask(const ActorID& actor, const RemoteFunction& method,
                                      std::vector<TaskArgument> args,
                                      const std::string& concurrency_group = "");
// A call of the method registered as `method` ("Counter::Incr" or "Incr"), checked by the actor.
std::vector<ObjectID> SubmitActorTaskByName(const ActorID& actor, const std::string& method,
                                            std::vector<TaskArgument> args,
                                            const std::string& concurrency_group = "");
// A streaming task (lumen::Yield<T>& first parameter): its values are read with NextStreamItem,
// each an ObjectID carrying one local reference; nil once the stream ended (GetTimeoutError
// after `timeout_ms` >= 0). ReleaseStream: the caller dropped the stream (cancels the task when
// it has not ended).
TaskID SubmitStreamingTask(const RemoteFunction& fn, std::vector<TaskArgument> args,
                           const TaskOptions& options);
TaskID SubmitActorStreamingTask(const ActorID& actor, const RemoteFunction& method,
                                std::vector<TaskArgument> args,
                                const std::string& concurrency_group, int64_t backpressure);
ObjectID NextStreamItem(const TaskID& task, int64_t timeout_ms);
void ReleaseStream(const TaskID& task);
// lumen::Cancel (not forced, recursive) of a streaming task of this process, the stream kept:
// it ends with TaskCancelledError unless it ended before.
void CancelStream(const TaskID& task);
// Whether NextStreamItem would return at once (a value is waiting, or the stream ended), and a
// one-shot `callback` (any thread) for when it would: at once if it already would.
bool StreamReady(const TaskID& task);
void OnStreamReady(const TaskID& task, std::function<void()> callback);
// Inside a streaming task: the next value (lumen::Yield).
void YieldValue(SerializedValue value);

void KillActor(const ActorID& actor, bool no_restart);
// lumen::Cancel of the task making `id`, and lumen::IsCancelled in the running task.
void CancelTask(const ObjectID& id, bool force, bool recursive);
bool CurrentTaskCancelled();
// The live actor named `name` in `actor_namespace` (empty: the job's namespace); nil when there
// is none. TypeError when `class_name` is given and the actor's class differs.
ActorID GetNamedActor(const std::string& name, const std::string& actor_namespace,
                      const std::string& class_name);
void AddActorHandleRef(const ActorID& actor);
void RemoveActorHandleRef(const ActorID& actor);
std::string PackActorHandle(const ActorID& actor);
ActorID UnpackActorHandle(std::string_view packed);

}  // namespace lumen::internal
