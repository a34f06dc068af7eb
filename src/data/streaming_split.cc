#include "data/streaming_split.h"

#include <algorithm>

#include "data/executor.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace lumen::data::internal {

SplitCoordinator* SplitCoordinator::Create(int n, bool equal) {
  return new SplitCoordinator(n, equal);
}

bool SplitCoordinator::Offer(const OfferedBlock& block) {
  std::unique_lock lock(mu_);
  // A few blocks per share are enough to choose local ones; more only for a waiting consumer
  // (with `equal`, what is held may be too little to deal anyone a row).
  const size_t enough = static_cast<size_t>(2 * n_);
  cv_.wait(lock, [&] { return stopped_ || held_.size() < enough || waiting_ > 0; });
  if (stopped_) return false;
  held_.push_back({block.ref, 0, block.rows, block.node});
  offered_ += block.rows;
  cv_.notify_all();
  return true;
}

void SplitCoordinator::Finish() {
  std::lock_guard lock(mu_);
  finished_ = true;
  cv_.notify_all();
}

void SplitCoordinator::Fail(const std::string& error) {
  std::lock_guard lock(mu_);
  error_ = error;
  cv_.notify_all();
}

void SplitCoordinator::Stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

std::optional<size_t> SplitCoordinator::Pick(const std::string& node) const {
  for (size_t i = 0; i < held_.size(); ++i) {
    if (held_[i].node == node) return i;
  }
  for (size_t i = 0; i < held_.size(); ++i) {
    if (!takers_.contains(held_[i].node)) return i;
  }
  return std::nullopt;
}

int SplitCoordinator::Waiting() {
  std::lock_guard lock(mu_);
  return waiting_;
}

SplitItem SplitCoordinator::Next(int index, const std::string& node) {
  SplitItem item;
  std::unique_lock lock(mu_);
  if (index < 0 || index >= n_) {
    item.state = SplitItem::kError;
    item.error = "StreamingSplit: no share " + std::to_string(index);
    return item;
  }
  int64_t& given = given_[static_cast<size_t>(index)];
  for (;;) {
    if (!error_.empty()) {
      item.state = SplitItem::kError;
      item.error = error_;
      return item;
    }
    if (stopped_) {
      item.state = SplitItem::kError;
      item.error =
          "StreamingSplit: the stream was stopped (no iterator of the split is left in the "
          "driver that created it)";
      return item;
    }
    // With `equal`, a share never gets more than offered / n rows: the final share (total / n)
    // is at least that, so what is held always covers what every share is still owed.
    const int64_t room = equal_ ? offered_ / n_ - given : std::numeric_limits<int64_t>::max();
    const std::optional<size_t> at = room > 0 ? Pick(node) : std::nullopt;
    if (at) {
      Held& h = held_[*at];
      const int64_t take = std::min(room, h.rows);
      item.state = SplitItem::kBlock;
      item.ref = h.ref;
      item.offset = h.offset;
      item.rows = take;
      given += take;
      if (take == h.rows) {
        held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(*at));
      } else {
        h.offset += take;
        h.rows -= take;
      }
      cv_.notify_all();  // room for the pump
      return item;
    }
    if (finished_ && (held_.empty() || room <= 0)) {
      item.state = SplitItem::kEnd;  // (with `equal`: the fewer than n rows left are dropped)
      return item;
    }
    // Nothing for this consumer now (blocks held are for consumers waiting on their nodes).
    ++waiting_;
    const auto taker = room > 0 ? takers_.insert(node) : takers_.end();
    cv_.notify_all();  // the pump may offer past `enough` now
    cv_.wait(lock);
    if (taker != takers_.end()) takers_.erase(taker);
    --waiting_;
  }
}

SplitPump::SplitPump(std::unique_ptr<ExecutionHandle> exec,
                     lumen::ActorHandle<SplitCoordinator> coordinator)
    : exec_(std::move(exec)), coordinator_(std::move(coordinator)) {
  thread_ = std::thread([this] { Run(); });
}

SplitPump::~SplitPump() {
  stop_ = true;
  try {  // wakes an Offer the pump waits in; consumers hear the stream stopped
    lumen::Get(coordinator_.Task(&SplitCoordinator::Stop).Remote());
  } catch (const std::exception&) {
    // The coordinator is gone (its node died, or the runtime shut down): nothing to wake.
  }
  if (thread_.joinable()) thread_.join();
}

void SplitPump::Run() {
  try {
    while (!stop_) {
      std::optional<RefBundle> b = exec_->Next();
      if (!b) break;
      if (b->meta.rows == 0) continue;
      OfferedBlock offered{b->ref, b->meta.rows, b->meta.node.Hex()};
      const bool taken =
          lumen::Get(coordinator_.Task(&SplitCoordinator::Offer).Remote(std::move(offered)));
      if (!taken) return;
    }
    if (!stop_) lumen::Get(coordinator_.Task(&SplitCoordinator::Finish).Remote());
  } catch (const std::exception& e) {
    if (stop_) return;
    try {
      lumen::Get(coordinator_.Task(&SplitCoordinator::Fail).Remote(std::string(e.what())));
    } catch (const std::exception&) {
      // The coordinator is gone too: consumers get that error from their own calls.
    }
  }
}

}  // namespace lumen::data::internal

namespace lumen::data {

SplitIterator::SplitIterator() = default;

std::optional<Batch> SplitIterator::Next() {
  using internal::SplitCoordinator;
  using internal::SplitItem;
  if (coordinator_.IsNil()) {
    throw DataError("StreamingSplit: this iterator was not made by Dataset::StreamingSplit");
  }
  SplitItem item;
  try {
    item = lumen::Get(coordinator_.Task(&SplitCoordinator::Next)
                          .Remote(index_, lumen::GetRuntimeContext().node_id()));
  } catch (const DataError&) {
    throw;
  } catch (const lumen::Error& e) {
    throw DataError("StreamingSplit: share " + std::to_string(index_) +
                    " cannot reach its coordinator: " + e.what());
  }
  if (item.state == SplitItem::kError) throw DataError(item.error);
  if (item.state == SplitItem::kEnd) return std::nullopt;
  Batch b = Batch::FromBuffer(lumen::Get(item.ref));
  if (item.offset == 0 && item.rows == b.NumRows()) return b;
  return b.Slice(item.offset, item.rows);
}

}  // namespace lumen::data

LUMEN_REMOTE(lumen::data::internal::SplitCoordinator::Create,
             &lumen::data::internal::SplitCoordinator::Offer,
             &lumen::data::internal::SplitCoordinator::Finish,
             &lumen::data::internal::SplitCoordinator::Fail,
             &lumen::data::internal::SplitCoordinator::Stop,
             &lumen::data::internal::SplitCoordinator::Next);
