#include "core_worker/task_executor.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <typeinfo>

#include "common/config.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/rpc/message_types.h"
#include "common/spin.h"
#include "core_worker/borrowers.h"
#include "core_worker/core_worker.h"
#include "core_worker/task_spec.h"
#include "lumen/serialization.h"

namespace lumen::core {

namespace {

// Thrown by Yield once the stream's task is cancelled: unwinds the generator (user code that
// catches std::exception does not stop it).
struct StreamStopped {};

// The task the calling executor thread runs (Yield finds its stream through it).
thread_local void* tls_work = nullptr;

// The name worker output is shown under on the driver: the function, or the actor's class.
std::string OutputName(const proto::TaskSpec& spec) {
  std::string name = spec.function_name();
  if (!name.empty() && name[0] == '&') name.erase(0, 1);
  if (spec.type() == proto::ACTOR_CREATION_TASK && !spec.actor_creation().class_name().empty()) {
    return spec.actor_creation().class_name();
  }
  if (spec.type() != proto::NORMAL_TASK) {
    size_t colons = name.rfind("::");
    if (colons != std::string::npos) name.resize(colons);
  }
  return name;
}

Mutex g_output_mu;
// The function (and task type) of the task that wrote the last marker, and the name it gave.
std::string g_output_function LUMEN_GUARDED_BY(g_output_mu);
int g_output_type LUMEN_GUARDED_BY(g_output_mu) = -1;
std::string g_output_name LUMEN_GUARDED_BY(g_output_mu);

// Tells the node's log monitor (src/node/log_monitor.h) whose output follows: when a task of
// another name starts, what earlier tasks printed is flushed and a marker line goes to both
// streams. Another task of the same function (the common case) costs a compare.
void MarkOutput(const proto::TaskSpec& spec) {
  MutexLock lock(g_output_mu);
  if (spec.type() == g_output_type && spec.function_name() == g_output_function) return;
  g_output_type = spec.type();
  g_output_function = spec.function_name();
  std::string name = OutputName(spec);
  if (name == g_output_name) return;  // another method of the same actor class
  g_output_name = name;
  std::fflush(stdout);
  std::fflush(stderr);
  const std::string marker = std::string(kTaskOutputMarker) + name + "\n";
  for (int fd : {1, 2}) {
    if (::write(fd, marker.data(), marker.size()) < 0) {
      // Nowhere to write (closed stream): output is not forwarded either.
    }
  }
}

// What a task printed is in the files before its result leaves, so that a driver that got the
// result and flushes the logs sees it.
struct FlushOutputAtEnd {
  ~FlushOutputAtEnd() {
    std::fflush(stdout);
    std::fflush(stderr);
  }
};

}  // namespace

TaskExecutor::~TaskExecutor() {
  Stop();
  for (auto& t : pool_) {
    if (t.joinable()) t.join();
  }
  std::vector<std::thread*> lane_threads;
  {
    MutexLock lock(mu_);
    for (auto& [name, lane] : lanes_) {
      for (auto& t : lane->threads) lane_threads.push_back(&t);
    }
  }
  for (auto* t : lane_threads) {
    if (t->joinable()) t->join();
  }
}

std::string TaskExecutor::GroupOf(const proto::TaskSpec& spec) const {
  if (!spec.concurrency_group().empty() || spec.type() != proto::ACTOR_TASK) {
    return spec.concurrency_group();
  }
  const internal::RemoteFunction* fn =
      internal::FindMethodByName(class_name_, spec.function_name());
  return fn ? fn->concurrency_group : std::string();
}

void TaskExecutor::StartLanes(const proto::ActorCreationSpec& creation) {
  if (creation.concurrency_groups().empty()) return;
  MutexLock lock(mu_);
  for (const auto& [name, threads] : creation.concurrency_groups()) {
    auto lane = std::make_unique<Lane>();
    Lane* raw = lane.get();
    for (int i = 0; i < std::max(1, threads); ++i) {
      lane->threads.emplace_back([this, raw] { LaneMain(raw); });
    }
    lanes_[name] = std::move(lane);
  }
  has_lanes_.store(true, std::memory_order_release);
}

bool TaskExecutor::HasLane(const std::string& group) {
  MutexLock lock(mu_);
  return lanes_.count(group) > 0;
}

void TaskExecutor::LaneMain(Lane* lane) {
  while (true) {
    std::shared_ptr<Work> work;
    {
      MutexLock lock(mu_);
      lane->cv.Wait(mu_, [&]() LUMEN_REQUIRES(mu_) { return stop_ || !lane->queue.empty(); });
      if (stop_) return;
      work = TakeLocked(lane->queue);
    }
    Execute(work);
  }
}

void TaskExecutor::HandlePush(const rpc::ConnectionPtr& from, proto::PushTasksRequest& request) {
  auto caller = std::make_shared<const proto::Address>(request.caller());
  // Groups are looked up outside the lock (the registry has its own).
  const bool lanes = has_lanes_.load(std::memory_order_acquire);
  std::vector<std::string> groups;
  if (lanes) {
    for (const auto& spec : request.tasks()) groups.push_back(GroupOf(spec));
  }
  // Built before taking the lock the executor threads pop with.
  std::vector<std::shared_ptr<Work>> works;
  works.reserve(static_cast<size_t>(request.tasks_size()));
  for (auto& spec : *request.mutable_tasks()) {
    auto work = std::make_shared<Work>();
    work->spec.Swap(&spec);
    work->reply_to = from;
    work->caller = work->spec.has_caller()
                       ? std::make_shared<const proto::Address>(work->spec.caller())
                       : caller;
    works.push_back(std::move(work));
  }
  {
    MutexLock lock(mu_);
    for (size_t i = 0; i < works.size(); ++i) {
      // A group the actor does not declare goes to the default pool, which fails the call.
      if (lanes && !groups[i].empty()) {
        if (auto lane = lanes_.find(groups[i]); lane != lanes_.end()) {
          lane->second->queue.push_back(std::move(works[i]));
          lane->second->cv.NotifyOne();
          continue;
        }
      }
      queue_.push_back(std::move(works[i]));
    }
    queued_.store(queue_.size(), std::memory_order_release);
  }
  if (pool_threads_.load(std::memory_order_acquire) == 0) {
    cv_.NotifyOne();
  } else {
    cv_.NotifyAll();
  }
}

void TaskExecutor::Run() {
  ThreadMain();
  for (auto& t : pool_) {
    if (t.joinable()) t.join();
  }
}

void TaskExecutor::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    for (auto& [name, lane] : lanes_) lane->cv.NotifyAll();
  }
  cv_.NotifyAll();
}

void TaskExecutor::StartPool(int threads) {
  for (int i = 0; i < threads; ++i) pool_.emplace_back([this] { ThreadMain(); });
  pool_threads_.store(static_cast<int>(pool_.size()), std::memory_order_release);
}

void TaskExecutor::ThreadMain() {
  const int64_t spin_us = Config::Get().spin_wait_us();
  while (true) {
    std::shared_ptr<Work> work;
    SpinUntil([this] { return queued_.load(std::memory_order_acquire) > 0; }, spin_us);
    {
      MutexLock lock(mu_);
      cv_.Wait(mu_, [this]() LUMEN_REQUIRES(mu_) { return stop_ || !queue_.empty(); });
      if (stop_) return;
      work = TakeLocked(queue_);
      queued_.store(queue_.size(), std::memory_order_release);
    }
    Execute(work);
  }
}

std::shared_ptr<TaskExecutor::Work> TaskExecutor::RunningWork(const TaskID& task) {
  const std::string wire_id = task.Binary();
  MutexLock lock(mu_);
  for (const auto& w : running_) {
    if (w->spec.task_id() == wire_id && !w->finished.load(std::memory_order_acquire)) return w;
  }
  return nullptr;
}

void TaskExecutor::OnGeneratorAck(const TaskID& task, int64_t consumed) {
  std::shared_ptr<Work> work = RunningWork(task);
  if (!work) return;  // ended meanwhile
  {
    MutexLock lock(work->gen_mu);
    work->acked = std::max(work->acked, consumed);
  }
  work->gen_cv.NotifyAll();
}

void TaskExecutor::Yield(internal::SerializedValue value) {
  Work* work = static_cast<Work*>(tls_work);
  if (!work || !work->spec.streaming()) {
    throw Error(
        "lumen::Yield: not inside a streaming task (a function whose first parameter is "
        "lumen::Yield<T>&, called with lumen::Task)");
  }
  if (work->ctx.cancelled.load(std::memory_order_acquire)) throw StreamStopped{};
  const TaskID task = TaskID::FromBinary(work->spec.task_id());
  const int64_t index = work->yielded;
  proto::TaskResult stored;
  if (!StoreReturn(*work, ObjectID::ForReturn(task, static_cast<uint32_t>(index)), std::move(value),
                   &stored)) {
    proto::ErrorInfo e;  // e.g. the object store is full: the generator fails with it
    e.ParseFromString(stored.returns(0).value().data());
    throw Error("lumen::Yield: value " + std::to_string(index) + ": " + e.message());
  }
  ++work->yielded;
  proto::GeneratorItem item;
  item.set_task_id(work->spec.task_id());
  item.set_index(index);
  *item.mutable_item() = std::move(*stored.mutable_returns(0));
  if (!work->reply_to->closed()) work->reply_to->Send(rpc::kGeneratorItem, item);
  if (const int64_t limit = work->spec.backpressure(); limit > 0) {
    MutexLock lock(work->gen_mu);
    while (!work->gen_cv.WaitFor(work->gen_mu, std::chrono::milliseconds(100),
                                 [&]() LUMEN_REQUIRES(work->gen_mu) {
                                   return work->yielded - work->acked < limit ||
                                          work->ctx.cancelled.load(std::memory_order_acquire);
                                 })) {
      if (work->reply_to->closed()) break;  // the owner is gone: nothing will take them
    }
  }
  if (work->ctx.cancelled.load(std::memory_order_acquire)) throw StreamStopped{};
}

std::shared_ptr<TaskExecutor::Work> TaskExecutor::TakeLocked(
    std::deque<std::shared_ptr<Work>>& queue) {
  std::shared_ptr<Work> work = std::move(queue.front());
  queue.pop_front();
  size_t kept = 0;  // (a loop: the lock analysis does not see mu_ inside a lambda)
  for (auto& w : running_) {
    if (!w->finished.load(std::memory_order_acquire)) running_[kept++] = std::move(w);
  }
  running_.resize(kept);
  running_.push_back(work);
  return work;
}

void TaskExecutor::Cancel(const TaskID& task, bool force, bool recursive) {
  const std::string wire_id = task.Binary();
  auto matches = [&](const std::shared_ptr<Work>& w) { return w->spec.task_id() == wire_id; };
  std::shared_ptr<Work> dropped, running;
  {
    MutexLock lock(mu_);
    std::vector<std::deque<std::shared_ptr<Work>>*> queues{&queue_};
    for (auto& [name, lane] : lanes_) queues.push_back(&lane->queue);
    for (auto* q : queues) {
      auto it = std::find_if(q->begin(), q->end(), matches);
      if (it == q->end()) continue;
      dropped = std::move(*it);
      q->erase(it);
      queued_.store(queue_.size(), std::memory_order_release);
      break;
    }
    if (!dropped) {
      auto it = std::find_if(running_.begin(), running_.end(), matches);
      if (it == running_.end() || (*it)->finished.load(std::memory_order_acquire)) {
        return;  // finished: it keeps its result
      }
      running = *it;
    }
  }
  if (dropped) {  // never started
    proto::TaskResults results;
    proto::TaskResult* r = results.add_results();
    r->set_task_id(dropped->spec.task_id());
    r->set_attempt(dropped->spec.attempt());
    const proto::ErrorInfo e = TaskCancelledInfo(dropped->spec);
    SetError(r, dropped->spec, e.type(), e.message());
    if (!dropped->reply_to->closed()) dropped->reply_to->Send(rpc::kTaskResults, results);
    return;
  }
  running->ctx.cancelled.store(true, std::memory_order_release);
  {
    MutexLock lock(running->gen_mu);  // a generator waiting for back-pressure stops now
  }
  running->gen_cv.NotifyAll();
  if (recursive) {
    std::vector<TaskID> children;
    {
      MutexLock lock(running->ctx.children_mu);
      children = running->ctx.children;
    }
    for (const auto& child : children) {
      try {
        cw_.CancelTaskById(child, force && !IsActorTask(child), /*recursive=*/true);
      } catch (const std::exception& e) {
        LUMEN_LOG(WARNING) << "cancelling a task of cancelled " << running->spec.function_name()
                           << ": " << e.what();
      }
    }
  }
  if (force && !is_actor()) {
    // The owner knows it asked: the death of this process ends the task as cancelled.
    LUMEN_LOG(INFO) << "task " << running->spec.function_name() << " cancelled with force";
    std::fflush(nullptr);
    ::_exit(1);
  }
}

void TaskExecutor::Execute(const std::shared_ptr<Work>& work) {
  proto::TaskResults results;
  auto start = std::chrono::steady_clock::now();
  proto::TaskResult* r = results.add_results();
  *r = RunTask(work);
  if (work->ctx.cancelled.load(std::memory_order_acquire)) {
    // Cancelled while it ran: whatever it returned, its result is the cancellation.
    std::vector<ObjectID> stored;
    // Refs inside what it returned: the caller was registered as their borrower when they were
    // packed, so they ride along in the error value and the caller lets go of them with it.
    google::protobuf::RepeatedPtrField<proto::ObjectRefInfo> nested;
    for (auto& ro : *r->mutable_returns()) {
      if (ro.in_plasma()) stored.push_back(ObjectID::FromBinary(ro.object_id()));
      for (auto& info : *ro.mutable_nested_refs()) *nested.Add() = std::move(info);
    }
    if (!stored.empty()) cw_.store().Free(stored);
    const proto::ErrorInfo e = TaskCancelledInfo(work->spec);
    SetError(r, work->spec, e.type(), e.message());
    if (!nested.empty() && r->returns_size() > 0) {
      *r->mutable_returns(0)->mutable_nested_refs() = std::move(nested);
    }
    r->set_application_error(false);
    r->set_system_error(false);
  }
  if (work->spec.streaming()) {
    // Its values went out as it made them; an error is the stream's last value.
    const TaskID task = TaskID::FromBinary(work->spec.task_id());
    if (r->returns_size() == 1) {  // (num_returns is 0: an error fills one)
      r->mutable_returns(0)->set_object_id(
          ObjectID::ForReturn(task, static_cast<uint32_t>(work->yielded)).Binary());
    }
    r->set_stream_items(work->yielded + r->returns_size());
  }
  r->set_exec_us(std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count());
  // Written before the next task starts: if that one crashes the process, this result is
  // already on its way and the owner charges the crash to the right task.
  work->finished.store(true, std::memory_order_release);
  if (!work->reply_to->closed()) work->reply_to->Send(rpc::kTaskResults, results);
  if (work->exit_actor) {
    ExitActor("it exited with lumen::ExitActor() in " + work->spec.function_name());
  }
}

void TaskExecutor::ExitActor(const std::string& why) {
  Stop();
  Status st = cw_.EndActor(actor_id_, why);
  if (!st.ok()) LUMEN_LOG(WARNING) << "lumen::ExitActor: " << st << "; exiting anyway";
  std::fflush(nullptr);
  ::_exit(0);
}

bool TaskExecutor::StreamingAgrees(const proto::TaskSpec& spec, const internal::RemoteFunction& fn,
                                   const std::string& name, const char* kind, const char* where,
                                   proto::TaskResult* result) {
  if (spec.streaming() == fn.is_generator) return true;
  SetError(result, spec, proto::TYPE_ERROR,
           name + (fn.is_generator ? " is a streaming " : " is not a streaming ") + kind +
               (fn.is_generator ? " (lumen::Yield<T>&)" : "") + " in " + where +
               " but not for its caller; rebuild so that both run the same program");
  return false;
}

void TaskExecutor::SetError(proto::TaskResult* result, const proto::TaskSpec& spec,
                            proto::ErrorType type, const std::string& message,
                            const std::string& remote_type) {
  proto::ErrorInfo err;
  err.set_type(type);
  err.set_message(message);
  err.set_remote_type(remote_type);
  err.set_function_name(spec.function_name());
  result->clear_returns();
  const std::string data = err.SerializeAsString();
  const TaskID task = TaskID::FromBinary(spec.task_id());
  for (int i = 0; i < std::max(1, spec.num_returns()); ++i) {
    proto::ReturnObject* ro = result->add_returns();
    ro->set_object_id(ObjectID::ForReturn(task, static_cast<uint32_t>(i)).Binary());
    ro->mutable_value()->set_format(proto::ERROR);
    ro->mutable_value()->set_data(data);
  }
}

Status TaskExecutor::ResolveArgs(const std::shared_ptr<Work>& work,
                                 std::vector<internal::ValueView>* out) {
  out->clear();
  out->reserve(static_cast<size_t>(work->spec.args_size()));
  for (const auto& arg : work->spec.args()) {
    internal::ValueView v;
    if (arg.has_value()) {
      v.format = static_cast<internal::ValueFormat>(arg.value().format());
      v.data = reinterpret_cast<const uint8_t*>(arg.value().data().data());
      v.size = arg.value().data().size();
      v.holder = std::shared_ptr<const void>(work, v.data);
    } else if (arg.has_ref()) {
      ObjectID id = ObjectID::FromBinary(arg.ref().object_id());
      NodeID holder = NodeID::FromBinary(arg.node_id());
      if (!holder.IsNil() && holder != cw_.node_id()) {
        LUMEN_RETURN_IF_ERROR(
            cw_.PullToLocal(id, holder, /*timeout_ms=*/60000, &arg.ref().owner()));
      }
      auto bufs = cw_.store().Get({id}, /*timeout_ms=*/60000);
      if (!bufs.ok()) return bufs.status();
      if (!(*bufs)[0]) {
        return NotFoundError("argument object " + id.Hex() + " is not in this node's object store");
      }
      auto buf = (*bufs)[0];
      v.format = static_cast<internal::ValueFormat>(buf->format());
      v.data = buf->data();
      v.size = static_cast<size_t>(buf->size());
      v.holder = buf;
    } else {
      return InvalidArgumentError("empty task argument");
    }
    out->push_back(std::move(v));
  }
  return Status::OK();
}

bool TaskExecutor::BorrowsRegistered(const proto::TaskSpec& spec, proto::TaskResult* result) {
  Status st = cw_.WaitForBorrowRegistrations();
  if (st.ok()) return true;
  SetError(result, spec, proto::OWNER_DIED, "task " + spec.function_name() + ": " + st.message());
  return false;
}

void TaskExecutor::StoreReturns(const Work& work, std::vector<internal::SerializedValue> values,
                                proto::TaskResult* result) {
  const TaskID task = TaskID::FromBinary(work.spec.task_id());
  std::vector<ObjectID> in_store;
  for (size_t i = 0; i < values.size(); ++i) {
    const ObjectID id = ObjectID::ForReturn(task, static_cast<uint32_t>(i));
    if (!StoreReturn(work, id, std::move(values[i]), result)) {
      for (size_t j = i + 1; j < values.size(); ++j) {
        cw_.references().RemoveSubmittedRefs(values[j].nested_refs);
      }
      if (!in_store.empty()) cw_.store().Free(in_store);
      return;
    }
    if (result->returns(result->returns_size() - 1).in_plasma()) in_store.push_back(id);
  }
}

bool TaskExecutor::StoreReturn(const Work& work, const ObjectID& id,
                               internal::SerializedValue value, proto::TaskResult* result) {
  const proto::TaskSpec& spec = work.spec;
  // The caller must be a registered borrower of every ref inside the value before it leaves.
  std::vector<bool> registered;
  if (!value.nested_refs.empty()) {
    Status handed = cw_.borrowers().HandOff(value.nested_refs, *work.caller,
                                            TaskID::FromBinary(spec.task_id()), &registered);
    if (!handed.ok()) {
      SetError(result, spec, proto::OWNER_DIED,
               "returning the value of " + spec.function_name() + ": " + handed.message());
      cw_.references().RemoveSubmittedRefs(value.nested_refs);
      return false;
    }
  }
  proto::ReturnObject* ro = result->add_returns();
  ro->set_object_id(id.Binary());
  const int64_t size = static_cast<int64_t>(value.size());
  if (size <= Config::Get().max_inline_object_bytes()) {
    ro->mutable_value()->set_format(static_cast<proto::ValueFormat>(value.format));
    ro->mutable_value()->set_data(reinterpret_cast<const char*>(value.bytes()),
                                  static_cast<size_t>(size));
  } else {
    auto created = cw_.store().Create(id, size, static_cast<int32_t>(value.format), *work.caller);
    if (!created.ok() && cw_.daemon() && cw_.daemon()->closed()) {
      // The node daemon (and its store) is gone, and this worker with it: reporting the failure
      // as the task's error would fail its caller for good; dying lets the owner retry the task.
      LUMEN_LOG(ERROR) << "lost the node daemon while storing the result of "
                       << spec.function_name() << " (" << created.status() << "); exiting";
      ::_exit(1);
    }
    if (!created.ok()) {
      SetError(result, spec,
               created.status().code() == StatusCode::kResourceExhausted ? proto::OBJECT_STORE_FULL
                                                                         : proto::RUNTIME_ERROR,
               "storing the result of " + spec.function_name() + ": " + created.status().message());
      cw_.references().RemoveSubmittedRefs(value.nested_refs);
      return false;
    }
    if (!created->already_exists) {
      std::memcpy(created->data, value.bytes(), static_cast<size_t>(size));
      cw_.store().Seal(id);
    }
    ro->set_in_plasma(true);
    ro->set_node_id(cw_.node_id().Binary());
    ro->set_size(size);
  }
  if (!value.nested_refs.empty()) {
    for (size_t i = 0; i < value.nested_refs.size(); ++i) {
      const ObjectID& ref = value.nested_refs[i];
      proto::ObjectRefInfo* info = ro->add_nested_refs();
      info->set_object_id(ref.Binary());
      auto owner = cw_.references().OwnerOf(ref);
      *info->mutable_owner() = owner ? *owner : cw_.address();
      info->set_registered(registered[i]);
    }
    cw_.references().RemoveSubmittedRefs(value.nested_refs);
  }
  return true;
}

proto::TaskResult TaskExecutor::RunTask(const std::shared_ptr<Work>& work) {
  const proto::TaskSpec& spec = work->spec;
  proto::TaskResult result;
  result.set_task_id(spec.task_id());
  result.set_attempt(spec.attempt());
  TaskID task_id = TaskID::FromBinary(spec.task_id());
  TaskContext& ctx = work->ctx;
  ctx.task_id = task_id;
  cw_.SetThreadContext(&ctx);
  tls_work = work.get();
  struct ResetContext {
    CoreWorker& cw;
    ~ResetContext() {
      cw.SetThreadContext(nullptr);
      tls_work = nullptr;
    }
  } reset{cw_};

  MarkOutput(spec);
  FlushOutputAtEnd flush_output;
  const std::string& name = spec.function_name();
  // Consecutive tasks usually call the same function: skip the registry's lock and hash.
  thread_local std::string last_name;
  thread_local const internal::RemoteFunction* last_fn = nullptr;
  const internal::RemoteFunction* fn =
      last_fn && last_name == name ? last_fn : internal::FindRemoteByName(name);
  if (spec.type() == proto::ACTOR_TASK && is_actor_ &&
      (!fn || !fn->is_method || fn->class_name != class_name_)) {
    fn = internal::FindMethodByName(class_name_, name);  // a call by name ("Incr")
  }
  if (fn) {
    last_name = name;
    last_fn = fn;
  }
  if (!fn && spec.type() == proto::ACTOR_TASK && is_actor_) {
    SetError(&result, spec, proto::FUNCTION_NOT_FOUND,
             "the actor's class " + class_name_ + " has no method '" + name +
                 "' registered in its worker (pid " + std::to_string(::getpid()) +
                 "); register it with LUMEN_REMOTE(&" + class_name_ + "::" + name + ")");
    return result;
  }
  if (!fn) {
    SetError(&result, spec, proto::FUNCTION_NOT_FOUND,
             "function '" + name + "' is not registered in the worker (pid " +
                 std::to_string(::getpid()) + ", " + SelfExecutable() +
                 "); register it with LUMEN_REMOTE(" + name + ")");
    return result;
  }
  if (spec.signature_hash() != 0 && spec.signature_hash() != fn->signature_hash) {
    SetError(&result, spec, proto::TYPE_ERROR,
             "caller and worker disagree on the type of " + name + " (the worker has " +
                 fn->signature + "); rebuild so that both run the same program");
    return result;
  }
  std::vector<internal::ValueView> args;
  Status st = ResolveArgs(work, &args);
  if (!st.ok()) {
    SetError(&result, spec, proto::OBJECT_LOST, "task " + name + ": " + st.message());
    result.set_system_error(true);
    return result;
  }
  if (args.size() != fn->num_args) {
    SetError(&result, spec, proto::TYPE_ERROR,
             name + " takes " + std::to_string(fn->num_args) + " argument" +
                 (fn->num_args == 1 ? "" : "s") + " but the call passed " +
                 std::to_string(args.size()));
    return result;
  }
  ObjectID return_id = ObjectID::ForReturn(task_id, 0);
  try {
    switch (spec.type()) {
      case proto::ACTOR_CREATION_TASK: {
        if (!fn->create) {
          SetError(&result, spec, proto::TYPE_ERROR,
                   name + " is not an actor factory (it must return T* or std::unique_ptr<T>)");
          return result;
        }
        instance_ = fn->create(args);
        if (!BorrowsRegistered(spec, &result)) return result;
        class_name_ = fn->class_name;
        actor_id_ = ActorID::FromBinary(spec.actor_creation().actor_id());
        restarted_ = spec.attempt() > 0;
        is_actor_.store(true, std::memory_order_release);
        int threads = spec.actor_creation().max_concurrency();
        if (threads > 1 && pool_.empty()) StartPool(threads - 1);
        StartLanes(spec.actor_creation());
        StoreReturn(*work, return_id, internal::SerializeNil(), &result);
        break;
      }
      case proto::ACTOR_TASK: {
        if (!is_actor_) {
          SetError(&result, spec, proto::RUNTIME_ERROR, "this worker hosts no actor");
          return result;
        }
        // (fn is a method of class_name_: the lookup above made sure.)
        const std::string& group =
            spec.concurrency_group().empty() ? fn->concurrency_group : spec.concurrency_group();
        if (!group.empty() && !HasLane(group)) {
          SetError(&result, spec, proto::TYPE_ERROR,
                   name + " runs in concurrency group '" + group +
                       "', which the actor does not declare (ActorOptions::concurrency_groups)");
          return result;
        }
        if (!StreamingAgrees(spec, *fn, name, "method", "the actor", &result)) return result;
        internal::SerializedValue value = fn->invoke(instance_.get(), args);
        if (!BorrowsRegistered(spec, &result)) {
          cw_.references().RemoveSubmittedRefs(value.nested_refs);
          return result;
        }
        if (spec.streaming()) break;  // its values went out as it yielded them
        StoreReturn(*work, return_id, std::move(value), &result);
        break;
      }
      default: {
        if (!fn->invoke || fn->is_method) {
          SetError(&result, spec, proto::TYPE_ERROR,
                   name + (fn->is_method ? " is an actor method: call it on an actor handle"
                                         : " is an actor factory: create an actor with "
                                           "lumen::Actor(" +
                                               name + ")"));
          return result;
        }
        if (spec.num_returns() > 1) {  // kSplitTuple: one return per element
          if (!fn->invoke_split || fn->tuple_size != static_cast<size_t>(spec.num_returns())) {
            SetError(&result, spec, proto::TYPE_ERROR,
                     name + " does not return a std::tuple of " +
                         std::to_string(spec.num_returns()) + " elements (" + fn->signature +
                         "); rebuild so that caller and worker run the same program");
            return result;
          }
          std::vector<internal::SerializedValue> values = fn->invoke_split(args);
          if (!BorrowsRegistered(spec, &result)) {
            for (auto& v : values) cw_.references().RemoveSubmittedRefs(v.nested_refs);
            return result;
          }
          StoreReturns(*work, std::move(values), &result);
          break;
        }
        if (!StreamingAgrees(spec, *fn, name, "function", "the worker", &result)) return result;
        internal::SerializedValue value = fn->invoke(nullptr, args);
        if (!BorrowsRegistered(spec, &result)) {
          cw_.references().RemoveSubmittedRefs(value.nested_refs);
          return result;
        }
        if (spec.streaming()) break;  // its values went out as it yielded them
        StoreReturn(*work, return_id, std::move(value), &result);
        break;
      }
    }
  } catch (const StreamStopped&) {
    // Cancelled (or its stream dropped): Execute makes the result the cancellation.
  } catch (const internal::ExitActorSignal&) {
    SetError(&result, spec, proto::ACTOR_DIED,
             "the actor exited with lumen::ExitActor() in " + name +
                 (spec.type() == proto::ACTOR_CREATION_TASK ? " (its constructor)" : ""));
    work->exit_actor = spec.type() != proto::ACTOR_CREATION_TASK;
  } catch (const internal::ArgumentDecodeError& e) {
    SetError(&result, spec, proto::TYPE_ERROR,
             "argument " + std::to_string(e.index + 1) + " of " + name + ": " + e.message);
  } catch (const std::exception& e) {
    if (cw_.daemon() && cw_.daemon()->closed()) {
      // What the task threw is most likely the loss of its node (a Get or Put through the gone
      // daemon): it is not the task's own failure, and this worker goes with its node anyway.
      LUMEN_LOG(ERROR) << "lost the node daemon while running " << name << " (" << e.what()
                       << "); exiting";
      ::_exit(1);
    }
    SetError(&result, spec, proto::TASK_ERROR, e.what(), internal::Demangle(typeid(e).name()));
    result.set_application_error(true);
  } catch (...) {
    SetError(&result, spec, proto::TASK_ERROR, "an exception not derived from std::exception",
             "unknown");
    result.set_application_error(true);
  }
  args.clear();
  BorrowsRegistered(spec, &result);  // refs deserialized by a task that then threw
  return result;
}

}  // namespace lumen::core
