// Executes tasks pushed to this worker (worker processes only): normal tasks one at a time on
// the main thread; an actor's calls in arrival order, or on a pool of `max_concurrency`
// threads, and the calls of each of its concurrency groups on that group's own threads.
// Results go back to the caller on the connection the task came in on, each as soon as its
// task finishes.
//
// Thread safety: HandlePush runs on the I/O thread; Run on the main thread; thread-safe.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/thread_annotations.h"
#include "core_worker.pb.h"
#include "core_worker/core_worker.h"
#include "lumen/ids.h"
#include "lumen/internal/runtime.h"

namespace lumen::core {

class TaskExecutor {
 public:
  explicit TaskExecutor(CoreWorker& cw) : cw_(cw) {}
  ~TaskExecutor();

  void HandlePush(const rpc::ConnectionPtr& from, proto::PushTasksRequest& request);
  // lumen::Cancel from the task's owner: a task queued here is dropped (its result says it was
  // cancelled); a running one is flagged (lumen::IsCancelled), with `recursive` what it
  // submitted is cancelled too, and with `force` this process exits (its owner does not retry
  // it). A task not here (finished) is left alone. I/O thread.
  void Cancel(const TaskID& task, bool force, bool recursive);
  // lumen::Yield in the task running on this thread: sends the value to the owner, then waits
  // while the stream's back-pressure limit is reached. Throws lumen::Error outside a streaming
  // task, and stops the task (an internal signal) once it is cancelled or its stream dropped.
  void Yield(internal::SerializedValue value);
  // The caller took `consumed` values of streaming task `task` (I/O thread).
  void OnGeneratorAck(const TaskID& task, int64_t consumed);
  // Runs tasks until Stop(); the calling thread is the first executor thread.
  void Run();
  void Stop();

  // Whether this worker hosts an actor, and whether that is a restart (calls read these once
  // the creation task has set them).
  bool is_actor() const { return is_actor_.load(std::memory_order_acquire); }
  bool restarted() const { return restarted_; }

 private:
  struct Work {
    proto::TaskSpec spec;
    rpc::ConnectionPtr reply_to;
    std::shared_ptr<const proto::Address> caller;  // the spec's, or its batch's
    bool exit_actor = false;                       // it called lumen::ExitActor()
    TaskContext ctx;                               // while it runs (cancellation, nesting)
    std::atomic<bool> finished{false};             // its result is on its way
    // Streaming: values sent so far (task thread), and taken by the caller (acks).
    int64_t yielded = 0;
    Mutex gen_mu;
    CondVar gen_cv;
    int64_t acked LUMEN_GUARDED_BY(gen_mu) = 0;
  };

  // A concurrency group: its calls and the threads that run them.
  struct Lane {
    std::deque<std::shared_ptr<Work>> queue;
    CondVar cv;
    std::vector<std::thread> threads;
  };

  // The running task `task` (null when it is not running here).
  std::shared_ptr<Work> RunningWork(const TaskID& task);
  // Takes the next task of `queue` to run (and lists it as running).
  std::shared_ptr<Work> TakeLocked(std::deque<std::shared_ptr<Work>>& queue) LUMEN_REQUIRES(mu_);
  void ThreadMain();
  void LaneMain(Lane* lane);
  // The group a call runs in: the spec's, else its method's (LUMEN_CONCURRENCY_GROUP).
  std::string GroupOf(const proto::TaskSpec& spec) const;
  // Creation: the actor's groups start their threads.
  void StartLanes(const proto::ActorCreationSpec& creation);
  bool HasLane(const std::string& group);
  void Execute(const std::shared_ptr<Work>& work);
  proto::TaskResult RunTask(const std::shared_ptr<Work>& work);
  // Makes every return of the task (num_returns of them) the error.
  // Whether `fn` streams (lumen::Yield) exactly when its caller expects it to; otherwise
  // `result` is the TYPE_ERROR saying so (`kind`: "function" or "method"; `where`: this
  // process, as the message names it).
  static bool StreamingAgrees(const proto::TaskSpec& spec, const internal::RemoteFunction& fn,
                              const std::string& name, const char* kind, const char* where,
                              proto::TaskResult* result);
  static void SetError(proto::TaskResult* result, const proto::TaskSpec& spec,
                       proto::ErrorType type, const std::string& message,
                       const std::string& remote_type = "");
  Status ResolveArgs(const std::shared_ptr<Work>& work, std::vector<internal::ValueView>* out);
  // Adds one return to `result`; false when it could not be stored (the result is then the
  // error).
  bool StoreReturn(const Work& work, const ObjectID& id, internal::SerializedValue value,
                   proto::TaskResult* result);
  // num_returns > 1: the elements of a tuple result, one return each. A failure to store one
  // makes every return the error and frees the elements already put in the store.
  void StoreReturns(const Work& work, std::vector<internal::SerializedValue> values,
                    proto::TaskResult* result);
  // Waits for the owners of refs the task borrowed to acknowledge it; on failure the result
  // becomes an OWNER_DIED error (an owner may free what the task holds) and false is returned.
  bool BorrowsRegistered(const proto::TaskSpec& spec, proto::TaskResult* result);
  void StartPool(int threads);
  // lumen::ExitActor(): no further call starts; the actor is dead for good with `why`, and
  // this process exits.
  [[noreturn]] void ExitActor(const std::string& why);

  CoreWorker& cw_;
  Mutex mu_;
  CondVar cv_;
  std::deque<std::shared_ptr<Work>> queue_ LUMEN_GUARDED_BY(mu_);
  std::atomic<size_t> queued_{0};  // mirrors queue_.size() for lock-free polling
  bool stop_ LUMEN_GUARDED_BY(mu_) = false;
  std::vector<std::thread> pool_;     // the main executor thread starts and joins them
  std::atomic<int> pool_threads_{0};  // pool_.size(), read by the I/O thread to pick a wake-up
  // Taken by a thread (finished ones are dropped when that thread takes its next task, so that
  // a task costs one lock): at most one unfinished per thread.
  std::vector<std::shared_ptr<Work>> running_ LUMEN_GUARDED_BY(mu_);
  // The actor's concurrency groups, set by the creation task (before any call arrives).
  std::map<std::string, std::unique_ptr<Lane>> lanes_ LUMEN_GUARDED_BY(mu_);
  std::atomic<bool> has_lanes_{false};

  // Actor state (set by the creation task; read by calls).
  std::shared_ptr<void> instance_;
  std::string class_name_;
  ActorID actor_id_;
  std::atomic<bool> is_actor_{false};
  bool restarted_ = false;
};

}  // namespace lumen::core
