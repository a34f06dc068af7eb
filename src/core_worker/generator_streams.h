// The owner's side of streaming tasks (lumen::Yield / ObjectRefStream): the values each one
// has sent, in order, until the caller takes them; the end of the stream; back-pressure acks
// to the worker producing them; cancellation when the caller drops the stream.
//
// A value is an owned object like a task's return (ObjectID::ForReturn(task, index)); the
// stream holds one local reference to it until the caller takes it (that reference goes to
// the caller's ObjectRef). A retried task sends its values again: those already here are
// dropped by index, those lost with their node meanwhile are kept. A finished stream's values
// have lineage like returns (ObjectRecovery): a re-run sends them again with no stream open,
// and the lost ones are kept.
//
// Thread safety: thread-safe. OnItem/OnEnd run on the I/O thread; Next blocks the caller.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/thread_annotations.h"
#include "core_worker.pb.h"
#include "lumen/ids.h"

namespace lumen::core {

class CoreWorker;

class GeneratorStreams {
 public:
  explicit GeneratorStreams(CoreWorker& cw) : cw_(cw) {}

  // A streaming task was submitted; `backpressure` <= 0: no acks needed.
  void Add(const TaskID& task, int64_t backpressure);
  // A value from the worker running it (`from`: where acks go).
  void OnItem(const rpc::ConnectionPtr& from, proto::GeneratorItem& item);
  // The task ended: with its final result (the stream's length; its error as the last value),
  // or, when it failed without one (worker died, cancelled before it ran), with `error`.
  // False when no stream was open for it (a re-run re-creating lost values).
  bool OnEnd(const TaskID& task, proto::TaskResult* result, const proto::ErrorInfo* error);
  // Whether `task`'s stream is still receiving values.
  bool IsOpen(const TaskID& task);
  // Values received so far (-1: no stream).
  int64_t Received(const TaskID& task);
  // The caller's next value (an ID carrying one local reference), waiting for it; nil at the
  // end. Throws GetTimeoutError after `timeout_ms` (>= 0).
  ObjectID Next(const TaskID& task, int64_t timeout_ms);
  // The caller dropped the stream: unread values are released, a running task is cancelled.
  void Release(const TaskID& task);
  // Whether Next would return at once (a value waits, or the stream ended or is unknown).
  bool Ready(const TaskID& task);
  // Runs `callback` once when Next would return at once (here, now, if it already would;
  // otherwise on the I/O thread; never if the stream is released first).
  void OnReady(const TaskID& task, std::function<void()> callback);

 private:
  struct Stream {
    int64_t backpressure = 0;
    int64_t received = 0;  // values here so far (the next index expected)
    int64_t consumed = 0;  // taken by the caller
    int64_t length = -1;   // known once ended
    std::deque<ObjectID> ready;
    bool ended = false;
    bool released = false;
    std::weak_ptr<rpc::Connection> producer;
    std::vector<std::function<void()>> waiters;  // OnReady callbacks
  };
  // The callbacks to run now that `task`'s stream has something (or ended).
  std::vector<std::function<void()>> TakeWaitersLocked(const TaskID& task) LUMEN_REQUIRES(mu_);
  // Stores value `ro` as an owned object with one local reference (the stream's).
  void StoreItem(proto::ReturnObject& ro);

  CoreWorker& cw_;
  Mutex mu_;
  CondVar cv_;
  std::unordered_map<TaskID, Stream> streams_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::core
