// Clang's thread-safety attributes behind macros, and a mutex, lock and condition variable
// annotated with them, so that `-Wthread-safety` (the clang build in CI) proves that state
// marked LUMEN_GUARDED_BY(mu_) is only touched with mu_ held. Other compilers see plain code.
//
//   Mutex mu_;
//   int pending_ LUMEN_GUARDED_BY(mu_) = 0;
//   void BumpLocked() LUMEN_REQUIRES(mu_);
//   ...
//   MutexLock lock(mu_);
//   ++pending_;
//
// Thread safety: Mutex and CondVar are thread-safe, as their std counterparts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <utility>

#if defined(__clang__)
#define LUMEN_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LUMEN_THREAD_ANNOTATION(x)
#endif

#define LUMEN_CAPABILITY(x) LUMEN_THREAD_ANNOTATION(capability(x))
#define LUMEN_SCOPED_CAPABILITY LUMEN_THREAD_ANNOTATION(scoped_lockable)
#define LUMEN_GUARDED_BY(x) LUMEN_THREAD_ANNOTATION(guarded_by(x))
#define LUMEN_PT_GUARDED_BY(x) LUMEN_THREAD_ANNOTATION(pt_guarded_by(x))
#define LUMEN_REQUIRES(...) LUMEN_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define LUMEN_EXCLUDES(...) LUMEN_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define LUMEN_ACQUIRE(...) LUMEN_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define LUMEN_RELEASE(...) LUMEN_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define LUMEN_TRY_ACQUIRE(...) LUMEN_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define LUMEN_ASSERT_CAPABILITY(x) LUMEN_THREAD_ANNOTATION(assert_capability(x))
#define LUMEN_NO_THREAD_SAFETY_ANALYSIS LUMEN_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace lumen {

class LUMEN_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() LUMEN_ACQUIRE() { mu_.lock(); }
  void unlock() LUMEN_RELEASE() { mu_.unlock(); }
  bool try_lock() LUMEN_TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class LUMEN_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) LUMEN_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() LUMEN_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A condition variable over a Mutex the caller holds (std::condition_variable's speed; the
// analysis sees the mutex held before and after every wait). Predicates run with it held.
class CondVar {
 public:
  template <class Predicate>
  void Wait(Mutex& mu, Predicate ready) LUMEN_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    cv_.wait(lock, ready);
    lock.release();
  }
  // False if `ready` still fails after `timeout`.
  template <class Rep, class Period, class Predicate>
  bool WaitFor(Mutex& mu, std::chrono::duration<Rep, Period> timeout, Predicate ready)
      LUMEN_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    bool ok = cv_.wait_for(lock, timeout, ready);
    lock.release();
    return ok;
  }
  template <class Clock, class Duration, class Predicate>
  bool WaitUntil(Mutex& mu, std::chrono::time_point<Clock, Duration> deadline, Predicate ready)
      LUMEN_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    bool ok = cv_.wait_until(lock, deadline, ready);
    lock.release();
    return ok;
  }
  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// A callback set from one thread and run from another (a service's "shut me down" hook,
// set after its loop started). Run() calls the callback outside the lock.
class CallbackSlot {
 public:
  void Set(std::function<void()> cb) {
    MutexLock lock(mu_);
    cb_ = std::move(cb);
  }
  void Run() {
    std::function<void()> cb;
    {
      MutexLock lock(mu_);
      cb = cb_;
    }
    if (cb) cb();
  }

 private:
  Mutex mu_;
  std::function<void()> cb_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen
