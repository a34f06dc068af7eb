#include "common/rpc/event_loop.h"

#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/config.h"
#include "common/logging.h"

namespace lumen::rpc {

namespace {
constexpr uint64_t kWakeWatchId = 0;
}

EventLoop::EventLoop(std::string name)
    : name_(std::move(name)),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      spin_us_(Config::Get().spin_wait_us()) {
  LUMEN_CHECK(epoll_fd_ >= 0 && wake_fd_ >= 0) << "epoll/eventfd: " << std::strerror(errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeWatchId;
  LUMEN_CHECK(::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) == 0);
}

EventLoop::~EventLoop() {
  Stop();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void EventLoop::Start() {
  thread_ = std::thread([this] {
    thread_id_ = std::this_thread::get_id();
    Run();
  });
}

void EventLoop::Stop() {
  if (stopping_.exchange(true)) {
    if (thread_.joinable() && !InLoopThread()) thread_.join();
    return;
  }
  Wake();
  if (thread_.joinable()) {
    LUMEN_CHECK(!InLoopThread()) << "EventLoop::Stop called from its own thread";
    thread_.join();
  }
  // Drop remaining callbacks outside the lock (their captures may post again).
  std::vector<std::function<void()>> posted;
  std::map<TimerKey, std::function<void()>> timers;
  {
    MutexLock lock(mu_);
    posted.swap(posted_);
    timers.swap(timers_);
  }
  watchers_.clear();
}

void EventLoop::Wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  (void)n;
}

bool EventLoop::Post(std::function<void()> fn) {
  bool need_wake = false;
  {
    MutexLock lock(mu_);
    if (stopping_) return false;
    posted_.push_back(std::move(fn));
    if (!wake_pending_) {
      wake_pending_ = true;
      need_wake = !InLoopThread();
    }
  }
  if (need_wake) Wake();
  return true;
}

void EventLoop::Dispatch(std::function<void()> fn) {
  if (InLoopThread()) {
    fn();
  } else {
    Post(std::move(fn));
  }
}

uint64_t EventLoop::RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto when = std::chrono::steady_clock::now() + delay;
  uint64_t id;
  bool earliest;
  {
    MutexLock lock(mu_);
    if (stopping_) return 0;
    id = next_timer_id_++;
    timers_.emplace(TimerKey{when, id}, std::move(fn));
    timer_index_[id] = when;
    earliest = timers_.begin()->first.id == id;
  }
  if (earliest && !InLoopThread()) Wake();
  return id;
}

void EventLoop::CancelTimer(uint64_t timer_id) {
  std::function<void()> dropped;
  MutexLock lock(mu_);
  auto it = timer_index_.find(timer_id);
  if (it == timer_index_.end()) return;
  auto t = timers_.find(TimerKey{it->second, timer_id});
  if (t != timers_.end()) {
    dropped = std::move(t->second);
    timers_.erase(t);
  }
  timer_index_.erase(it);
}

uint64_t EventLoop::Watch(int fd, uint32_t events, FdCallback cb) {
  uint64_t id = next_watch_id_++;
  watchers_[id] = std::make_shared<FdCallback>(std::move(cb));
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    LUMEN_LOG(ERROR) << name_ << ": epoll_ctl ADD fd " << fd << ": " << std::strerror(errno);
  }
  return id;
}

void EventLoop::Unwatch(uint64_t watch_id) { watchers_.erase(watch_id); }

void EventLoop::SetEvents(int fd, uint64_t watch_id, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = watch_id;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

int EventLoop::NextTimeoutMs() {
  MutexLock lock(mu_);
  if (!posted_.empty()) return 0;
  if (timers_.empty()) return -1;
  auto now = std::chrono::steady_clock::now();
  auto when = timers_.begin()->first.when;
  if (when <= now) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count() + 1;
  return static_cast<int>(std::min<int64_t>(ms, 60000));
}

void EventLoop::RunTimers() {
  auto now = std::chrono::steady_clock::now();
  while (true) {
    std::function<void()> fn;
    {
      MutexLock lock(mu_);
      if (timers_.empty() || timers_.begin()->first.when > now) return;
      auto it = timers_.begin();
      fn = std::move(it->second);
      timer_index_.erase(it->first.id);
      timers_.erase(it);
    }
    fn();
  }
}

void EventLoop::RunPosted() {
  std::vector<std::function<void()>> batch;
  {
    MutexLock lock(mu_);
    batch.swap(posted_);
    wake_pending_ = false;
  }
  for (auto& fn : batch) fn();
}

void EventLoop::Run() {
  constexpr int kMaxEvents = 128;
  epoll_event events[kMaxEvents];
  while (!stopping_) {
    int timeout = NextTimeoutMs();
    // Shortly after activity, poll instead of blocking: more is likely to come at once.
    bool spinning =
        timeout != 0 && spin_us_ > 0 &&
        std::chrono::steady_clock::now() - last_activity_ < std::chrono::microseconds(spin_us_);
    if (spinning) timeout = 0;
    int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout);
    if (n > 0) {
      last_activity_ = std::chrono::steady_clock::now();
    } else if (spinning) {
      sched_yield();
    }
    if (n < 0 && errno != EINTR) {
      LUMEN_LOG(ERROR) << name_ << ": epoll_wait: " << std::strerror(errno);
      break;
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      uint64_t id = events[i].data.u64;
      if (id == kWakeWatchId) {
        uint64_t v;
        while (::read(wake_fd_, &v, sizeof(v)) > 0) {
        }
        continue;
      }
      auto it = watchers_.find(id);
      if (it == watchers_.end()) continue;
      std::shared_ptr<FdCallback> cb = it->second;  // survives Unwatch inside the callback
      (*cb)(events[i].events);
    }
    if (stopping_) break;
    RunPosted();
    RunTimers();
  }
}

}  // namespace lumen::rpc
