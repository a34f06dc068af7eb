// Dataset::StreamingSplit: the driver runs the plan (SplitPump) and offers each block to a
// coordinator actor (SplitCoordinator), which deals blocks to the n consumers as they ask.
// Internal to src/data.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lumen/actor.h"
#include "lumen/buffer.h"
#include "lumen/object_ref.h"
#include "lumen/serialization.h"

namespace lumen::data::internal {

class ExecutionHandle;

// What a consumer gets: rows [offset, offset + rows) of a block, the end, or the job's error.
struct SplitItem {
  enum State : int { kBlock = 0, kEnd = 1, kError = 2 };
  int state = kEnd;
  lumen::ObjectRef<Buffer> ref;
  int64_t offset = 0;
  int64_t rows = 0;
  std::string error;
  LUMEN_SERIALIZE(state, ref, offset, rows, error);
};

// A block the pump offers: `rows` > 0, held on node `node` (hex). (A struct: an ObjectRef
// given as a task's own argument would be read, not passed on.)
struct OfferedBlock {
  lumen::ObjectRef<Buffer> ref;
  int64_t rows = 0;
  std::string node;
  LUMEN_SERIALIZE(ref, rows, node);
};

// The actor. Its calls run on a thread pool (a Next waits for a block; Offer waits for room),
// all state under one mutex.
class SplitCoordinator {
 public:
  static SplitCoordinator* Create(int n, bool equal);

  // The pump's next block. Waits while the coordinator holds enough blocks and no consumer
  // waits. False once stopped.
  bool Offer(const OfferedBlock& block);
  // The stream ended / failed / was abandoned by the driver.
  void Finish();
  void Fail(const std::string& error);
  void Stop();
  // Share `index`'s next block for a consumer on `node` (hex): one held on that node first,
  // else one no waiting consumer on its own node could take; with neither, it waits (the
  // blocks go to the consumers on their nodes, and it gets the next).
  SplitItem Next(int index, const std::string& node);
  // Next calls waiting now (tests).
  int Waiting();

 private:
  SplitCoordinator(int n, bool equal) : n_(n), equal_(equal), given_(static_cast<size_t>(n), 0) {}
  struct Held {
    lumen::ObjectRef<Buffer> ref;
    int64_t offset;
    int64_t rows;
    std::string node;
  };
  // The held block a consumer on `node` should get: its own node's first, else one that no
  // waiting consumer on its own node could take; nullopt if every held block has one.
  std::optional<size_t> Pick(const std::string& node) const;

  const int n_;
  const bool equal_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Held> held_;
  std::vector<int64_t> given_;         // rows dealt to each share
  int64_t offered_ = 0;                // rows offered in all
  int waiting_ = 0;                    // Next calls that found nothing to take
  std::multiset<std::string> takers_;  // the nodes of those that could take a block
  bool finished_ = false;
  bool stopped_ = false;
  std::string error_;
};

// In the driver: runs the plan on its own thread and offers the blocks. Destroying it stops
// the stream (the coordinator answers consumers with an error from then on).
class SplitPump {
 public:
  SplitPump(std::unique_ptr<ExecutionHandle> exec,
            lumen::ActorHandle<SplitCoordinator> coordinator);
  ~SplitPump();

 private:
  void Run();
  std::unique_ptr<ExecutionHandle> exec_;
  lumen::ActorHandle<SplitCoordinator> coordinator_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace lumen::data::internal
