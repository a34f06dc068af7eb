// A single-threaded epoll event loop with cross-thread posting and timers.
//
// Thread safety: Post(), RunAfter(), CancelTimer(), SetEvents() may be called from any thread.
// Watch()/Unwatch() and all callbacks run on the loop thread (Watch/Unwatch may also be called
// before Start()). Handlers posted after Stop() are dropped.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/thread_annotations.h"

namespace lumen::rpc {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;

  explicit EventLoop(std::string name);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs the loop on a new thread.
  void Start();
  // Stops the loop and joins its thread. Idempotent. Must not be called from the loop thread.
  void Stop();

  // Queues `fn` for the loop thread. False (and `fn` dropped) once the loop is stopping.
  bool Post(std::function<void()> fn);
  // Runs `fn` on the loop thread now if called from it, else posts it.
  void Dispatch(std::function<void()> fn);

  uint64_t RunAfter(std::chrono::milliseconds delay, std::function<void()> fn);
  void CancelTimer(uint64_t timer_id);

  // Registers `fd`; returns a watch id. The callback gets the epoll event mask.
  uint64_t Watch(int fd, uint32_t events, FdCallback cb);
  void Unwatch(uint64_t watch_id);
  // Changes the event mask of a watched fd (thread-safe: only touches the kernel).
  void SetEvents(int fd, uint64_t watch_id, uint32_t events);

  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_.load(); }
  const std::string& name() const { return name_; }

 private:
  void Run();
  void Wake();
  void RunPosted();
  int NextTimeoutMs();
  void RunTimers();

  const std::string name_;
  const int epoll_fd_;
  const int wake_fd_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> stopping_{false};
  const int64_t spin_us_;
  std::chrono::steady_clock::time_point last_activity_{};

  // Loop thread only.
  std::unordered_map<uint64_t, std::shared_ptr<FdCallback>> watchers_;
  uint64_t next_watch_id_ = 1;

  Mutex mu_;
  std::vector<std::function<void()>> posted_ LUMEN_GUARDED_BY(mu_);
  bool wake_pending_ LUMEN_GUARDED_BY(mu_) = false;
  struct TimerKey {
    std::chrono::steady_clock::time_point when;
    uint64_t id;
    bool operator<(const TimerKey& o) const {
      return when < o.when || (when == o.when && id < o.id);
    }
  };
  std::map<TimerKey, std::function<void()>> timers_ LUMEN_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> timer_index_
      LUMEN_GUARDED_BY(mu_);
  uint64_t next_timer_id_ LUMEN_GUARDED_BY(mu_) = 1;
};

}  // namespace lumen::rpc
