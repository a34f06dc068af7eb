// Runs the control service's storage calls off its event loop. A store that may block (Redis:
// a slow or unreachable server, reconnects, per-command timeouts) gets one helper thread that
// takes the calls in the order they were queued, so the loop never waits on it and writes land
// in the order the loop made them. A store that never blocks (in memory) runs them inline.
//
// Thread ownership: Run() may be called from any thread; the calls run on the helper thread
// (or the caller's, inline). A call may reply on a connection directly (replies are
// thread-safe); one that touches the control service's tables must post to its loop.
#pragma once

#include <deque>
#include <functional>
#include <thread>

#include "common/thread_annotations.h"
#include "gcs/gcs_store.h"

namespace lumen::gcs {

class StoreQueue {
 public:
  using Call = std::function<void(GcsStore&)>;

  // `store` must outlive this.
  explicit StoreQueue(GcsStore* store);
  // Runs what is queued, then stops the helper thread.
  ~StoreQueue();
  StoreQueue(const StoreQueue&) = delete;
  StoreQueue& operator=(const StoreQueue&) = delete;

  void Run(Call call) LUMEN_EXCLUDES(mu_);

 private:
  void Loop() LUMEN_EXCLUDES(mu_);

  GcsStore* const store_;
  Mutex mu_;
  CondVar cv_;
  std::deque<Call> calls_ LUMEN_GUARDED_BY(mu_);
  bool stopping_ LUMEN_GUARDED_BY(mu_) = false;
  std::thread thread_;  // not started for a store that never blocks
};

}  // namespace lumen::gcs
