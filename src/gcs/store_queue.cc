#include "gcs/store_queue.h"

#include <utility>

namespace lumen::gcs {

StoreQueue::StoreQueue(GcsStore* store) : store_(store) {
  if (store_->MayBlock()) thread_ = std::thread([this] { Loop(); });
}

StoreQueue::~StoreQueue() {
  if (!thread_.joinable()) return;
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  thread_.join();
}

void StoreQueue::Run(Call call) {
  if (!thread_.joinable()) {
    call(*store_);
    return;
  }
  {
    MutexLock lock(mu_);
    calls_.push_back(std::move(call));
  }
  cv_.NotifyAll();
}

void StoreQueue::Loop() {
  while (true) {
    Call call;
    {
      MutexLock lock(mu_);
      cv_.Wait(mu_, [this]() LUMEN_REQUIRES(mu_) { return stopping_ || !calls_.empty(); });
      if (calls_.empty()) return;  // stopping, and everything queued has run
      call = std::move(calls_.front());
      calls_.pop_front();
    }
    call(*store_);
  }
}

}  // namespace lumen::gcs
