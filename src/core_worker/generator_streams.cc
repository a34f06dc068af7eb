#include "core_worker/generator_streams.h"

#include <chrono>
#include <string>
#include <vector>

#include "common/rpc/message_types.h"
#include "core_worker/core_worker.h"
#include "lumen/errors.h"

namespace lumen::core {

void GeneratorStreams::Add(const TaskID& task, int64_t backpressure) {
  MutexLock lock(mu_);
  streams_[task].backpressure = backpressure;
}

void GeneratorStreams::StoreItem(proto::ReturnObject& ro) {
  const ObjectID id = ObjectID::FromBinary(ro.object_id());
  cw_.references().AddOwned(id, /*local_refs=*/1, /*pending=*/true);
  proto::TaskResult one;
  *one.add_returns() = std::move(ro);
  cw_.StoreReturns(&one);
}

void GeneratorStreams::OnItem(const rpc::ConnectionPtr& from, proto::GeneratorItem& item) {
  if (item.task_id().size() != TaskID::kSize || !item.has_item()) return;  // a bad message
  const TaskID task = TaskID::FromBinary(item.task_id());
  if (item.index() < 0 ||
      item.item().object_id() !=
          ObjectID::ForReturn(task, static_cast<uint32_t>(item.index())).Binary()) {
    return;  // not one of this task's values
  }
  const ObjectID id = ObjectID::FromBinary(item.item().object_id());
  bool released = false;
  bool resent = false;
  rpc::ConnectionPtr ack_to;
  proto::GeneratorAck ack;
  {
    MutexLock lock(mu_);
    auto it = streams_.find(task);
    if (it == streams_.end() || it->second.ended) {
      resent = true;  // a re-run re-creating values lost after the stream ended
    } else {
      Stream& s = it->second;
      if (item.index() > s.received) return;  // not this stream's next value
      if (item.index() < s.received) {
        resent = true;  // a retry sends the values again from the first
        if (s.producer.lock() != from) {
          // A new producer: it waits for acks counted from zero — tell it what was taken.
          s.producer = from;
          if (s.backpressure > 0) {
            ack_to = from;
            ack.set_task_id(task.Binary());
            ack.set_consumed(s.consumed);
          }
        }
      } else {
        s.producer = from;
        ++s.received;
        released = s.released;
        if (released) s.consumed = s.received;
      }
    }
  }
  if (ack_to && !ack_to->closed()) ack_to->Send(rpc::kGeneratorAck, ack);
  if (resent) {
    // Kept only where the value is still referenced and its copy was lost with its node (or
    // deleted to be re-made); any other copy is freed (StoreReturns of a re-run).
    proto::TaskResult again;
    again.set_attempt(1);
    *again.add_returns() = std::move(*item.mutable_item());
    cw_.StoreReturns(&again);
    return;
  }
  StoreItem(*item.mutable_item());
  bool kept = false;
  if (!released) {
    MutexLock lock(mu_);
    auto it = streams_.find(task);
    if (it != streams_.end() && !it->second.released) {
      it->second.ready.push_back(id);
      kept = true;
    }
  }
  if (!kept) {
    cw_.references().RemoveLocalRef(id);  // nobody reads it: freed now
    return;
  }
  std::vector<std::function<void()>> waiters;
  {
    MutexLock lock(mu_);
    waiters = TakeWaitersLocked(task);
  }
  cv_.NotifyAll();
  for (auto& w : waiters) w();
}

std::vector<std::function<void()>> GeneratorStreams::TakeWaitersLocked(const TaskID& task) {
  auto it = streams_.find(task);
  if (it == streams_.end()) return {};
  std::vector<std::function<void()>> out;
  out.swap(it->second.waiters);
  return out;
}

bool GeneratorStreams::Ready(const TaskID& task) {
  MutexLock lock(mu_);
  auto it = streams_.find(task);
  return it == streams_.end() || !it->second.ready.empty() || it->second.ended;
}

void GeneratorStreams::OnReady(const TaskID& task, std::function<void()> callback) {
  {
    MutexLock lock(mu_);
    auto it = streams_.find(task);
    if (it != streams_.end() && it->second.ready.empty() && !it->second.ended) {
      it->second.waiters.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

bool GeneratorStreams::OnEnd(const TaskID& task, proto::TaskResult* result,
                             const proto::ErrorInfo* error) {
  int64_t index = 0;
  {
    MutexLock lock(mu_);
    auto it = streams_.find(task);
    if (it == streams_.end() || it->second.ended) return false;
    index = it->second.received;
  }
  // Values lost with their node while the task ran wait for its retry to send them again: a
  // task that ended without doing so leaves them lost for good.
  std::vector<ObjectID> sent;
  for (int64_t i = 0; i < index; ++i)
    sent.push_back(ObjectID::ForReturn(task, static_cast<uint32_t>(i)));
  proto::ErrorInfo lost;
  lost.set_type(proto::OBJECT_LOST);
  lost.set_message("the value was lost with its node while the streaming task ran, and the task " +
                   std::string(error ? "failed before it was sent again: " + error->message()
                                     : "ended without sending it again"));
  cw_.FailUnmade(sent, lost);
  // The last value: the generator's error (in its result), or the failure's.
  std::vector<ObjectID> last;
  if (result && result->returns_size() > 0) {
    for (auto& ro : *result->mutable_returns()) {
      last.push_back(ObjectID::FromBinary(ro.object_id()));
      StoreItem(ro);
    }
  } else if (error) {
    last.push_back(ObjectID::ForReturn(task, static_cast<uint32_t>(index)));
    cw_.references().AddOwned(last[0], /*local_refs=*/1, /*pending=*/true);
    cw_.StoreError(last, *error);
  }
  std::vector<ObjectID> drop;
  std::vector<std::function<void()>> waiters;
  {
    MutexLock lock(mu_);
    waiters = TakeWaitersLocked(task);
    auto it = streams_.find(task);
    if (it == streams_.end()) {
      drop = last;
    } else {
      Stream& s = it->second;
      s.ended = true;
      s.received += static_cast<int64_t>(last.size());
      if (s.released) {
        drop = last;
        streams_.erase(it);
      } else {
        for (const auto& id : last) s.ready.push_back(id);
      }
    }
  }
  for (const auto& id : drop) cw_.references().RemoveLocalRef(id);
  cv_.NotifyAll();
  for (auto& w : waiters) w();
  return true;
}

bool GeneratorStreams::IsOpen(const TaskID& task) {
  MutexLock lock(mu_);
  auto it = streams_.find(task);
  return it != streams_.end() && !it->second.ended;
}

int64_t GeneratorStreams::Received(const TaskID& task) {
  MutexLock lock(mu_);
  auto it = streams_.find(task);
  return it == streams_.end() ? -1 : it->second.received;
}

ObjectID GeneratorStreams::Next(const TaskID& task, int64_t timeout_ms) {
  ObjectID id;
  rpc::ConnectionPtr ack_to;
  proto::GeneratorAck ack;
  {
    MutexLock lock(mu_);
    if (!streams_.count(task)) return ObjectID::Nil();
    auto ready = [&]() LUMEN_REQUIRES(mu_) {
      auto it = streams_.find(task);
      return it == streams_.end() || !it->second.ready.empty() || it->second.ended;
    };
    if (timeout_ms < 0) {
      cv_.Wait(mu_, ready);
    } else if (!cv_.WaitUntil(
                   mu_, std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms),
                   ready)) {
      throw GetTimeoutError("lumen::ObjectRefStream::Next: no value within " +
                            std::to_string(timeout_ms) + " ms");
    }
    auto it = streams_.find(task);
    if (it == streams_.end() || it->second.ready.empty()) return ObjectID::Nil();  // the end
    Stream& s = it->second;
    id = s.ready.front();
    s.ready.pop_front();
    ++s.consumed;
    if (s.backpressure > 0 && !s.ended) {
      ack_to = s.producer.lock();
      ack.set_task_id(task.Binary());
      ack.set_consumed(s.consumed);
    }
  }
  if (ack_to && !ack_to->closed()) ack_to->Send(rpc::kGeneratorAck, ack);
  return id;
}

void GeneratorStreams::Release(const TaskID& task) {
  std::deque<ObjectID> unread;
  bool cancel = false;
  {
    MutexLock lock(mu_);
    auto it = streams_.find(task);
    if (it == streams_.end()) return;
    unread.swap(it->second.ready);
    it->second.waiters.clear();
    if (it->second.ended) {
      streams_.erase(it);
    } else {
      it->second.released = true;
      cancel = true;
    }
  }
  for (const auto& id : unread) cw_.references().RemoveLocalRef(id);
  if (cancel) cw_.CancelTaskById(task, /*force=*/false, /*recursive=*/true);
}

}  // namespace lumen::core
