// The streaming executor (driver side, internal to src/data).
//
// A physical plan is a DAG of operators (usually a line): sources, task-pool maps (fused
// chains), actor-pool maps, limits, exchanges (repartition / shuffle / sort / group-by) and
// unions. Each operator has an input queue and an output queue of block references; the
// executor moves blocks downstream as soon as they exist and launches tasks, downstream
// operators first, while the bytes held in queues plus the expected output of running tasks
// stay within the memory budget. It is event-driven: task completions arrive through
// object-ready callbacks; the consumer's thread wakes only for them (or to redraw progress).
//
// Thread safety: Executor methods run on the consuming thread; only the event queue is
// shared with the callback thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/chain.h"
#include "data/tasks.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace lumen::data::internal {

struct BlockMeta {
  BlockKey key;  // its place in the dataset's order (and the name of what is written from it)
  int64_t rows = 0;
  int64_t bytes = 0;
  NodeID node;
  Batch::ExecStats exec;
  int64_t user_code_us = 0;  // of exec.wall_us, in the user's functions
};

struct RefBundle {
  lumen::ObjectRef<Buffer> ref;
  BlockMeta meta;
};

class Executor;

// What an operator did with one of its tasks that failed.
enum class FailureAction {
  kRecord,   // nothing: the executor records the block as failed (or aborts the job)
  kHandled,  // the operator re-queued the block, or recorded the failure itself
};

class PhysicalOp {
 public:
  explicit PhysicalOp(std::string name) : name_(std::move(name)) {}
  virtual ~PhysicalOp() = default;

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  // One line for Explain().
  virtual std::string Describe() const { return name_; }

  virtual void Start(Executor& ex) {}
  virtual void AddInput(RefBundle b, size_t upstream) { inputs_.push_back(std::move(b)); }
  virtual void UpstreamDone(Executor& ex, size_t upstream);
  // Whether a task could start now (memory aside).
  // Called before each round of launches: an operator may adjust itself (pool size).
  virtual void Adjust(Executor& ex) {}
  virtual bool WantsToLaunch() const { return false; }
  // Whether the next launch goes ahead even when the memory budget is spent: it puts capacity
  // to work that is held for the whole run and would otherwise idle with its input waiting in
  // memory (an actor pool's idle actor). Each such launch overruns the budget by at most one
  // task's output.
  virtual bool LaunchesOverBudget() const { return false; }
  // How many tasks it may run before one has ended and told the size of its output: one wave,
  // as many as the cluster has CPUs (the estimate before that, the input's bytes, can be far
  // off: a decode or a FlatMap makes many times more).
  virtual int FirstWave(int cluster_cpus) const { return cluster_cpus; }
  virtual void LaunchOne(Executor& ex) {}
  // Expected output bytes of one more task.
  virtual int64_t EstimateOutputBytes() const;
  // Expected output bytes of a task given `input_bytes`: in the proportion of output to input
  // seen so far (a per-task average is wrong when blocks differ in size, as a read's split
  // first and last ones do); the average per task when no input bytes were seen; before any
  // task ended, `input_bytes`.
  int64_t EstimateFor(int64_t input_bytes) const;
  // A task started by this op made block `out` (a streaming task may make several).
  virtual void OnOutput(Executor& ex, uint64_t token, RefBundle out);
  // A task started by this op finished successfully (after its outputs).
  virtual void OnTaskEnd(Executor& ex, uint64_t token);
  // A single-result task finished; `out` is its block (metadata read): OnOutput + OnTaskEnd.
  virtual void OnTaskDone(Executor& ex, uint64_t token, RefBundle out);
  // The lowest key this op may still output (nullopt: none), for ordered output.
  virtual std::optional<BlockKey> LowestFutureKey(const Executor& ex) const;
  // The chain its tasks run, if any (the executor sets its max_block_bytes).
  virtual Chain* chain_ptr() { return nullptr; }
  // A task failed with `error` (the typed error its result holds).
  virtual FailureAction OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) {
    return FailureAction::kRecord;
  }
  // Stop launching (a downstream limit is satisfied).
  virtual void Stop() {
    stopped_ = true;
    inputs_.clear();
  }
  virtual bool Finished() const { return AllUpstreamsDone() && inputs_.empty() && running_ == 0; }
  // Blocks this op will output in total, when known (-1 otherwise).
  virtual int64_t TotalBlocks() const { return -1; }
  // Resources held for the whole run (actor pools), and needed by one task (task ops).
  virtual std::map<std::string, double> Reserved() const { return {}; }
  virtual std::map<std::string, double> PerTask() const { return {}; }

  bool AllUpstreamsDone() const { return upstreams_done_ >= upstreams.size(); }
  int64_t HeldBytes() const;
  std::deque<RefBundle>& outputs() { return outputs_; }
  std::deque<RefBundle>& inputs() { return inputs_; }
  int running() const { return running_; }
  bool stopped() const { return stopped_; }
  OperatorStats& stats() { return stats_; }
  const OperatorStats& stats() const { return stats_; }

  std::vector<PhysicalOp*> upstreams;
  PhysicalOp* downstream = nullptr;

  // Progress figures. live_rows_in: rows of the input of running tasks that their progress
  // records say are done but no block of theirs has counted in stats().rows_in yet.
  int64_t blocks_done = 0;
  int64_t live_rows_in = 0;
  std::chrono::steady_clock::time_point first_start{}, last_end{};
  bool started = false;

 protected:
  friend class Executor;
  void Emit(RefBundle b);

  std::string name_;
  std::deque<RefBundle> inputs_;
  std::deque<RefBundle> outputs_;
  size_t upstreams_done_ = 0;
  int running_ = 0;
  bool stopped_ = false;
  OperatorStats stats_;
};

// Read tasks (with a fused chain), or blocks that already exist.
class SourceOp : public PhysicalOp {
 public:
  SourceOp(std::string name, std::vector<ReadSpec> reads, Chain chain, lumen::TaskOptions options,
           int concurrency);
  SourceOp(std::string name, std::vector<RefBundle> existing);
  std::string Describe() const override;
  void Start(Executor& ex) override;
  bool WantsToLaunch() const override;
  void LaunchOne(Executor& ex) override;
  // The next read's files' listed bytes times the output per listed byte of the reads that
  // ended (a decode makes more than the files; blocks differ in size).
  int64_t EstimateOutputBytes() const override;
  void OnOutput(Executor& ex, uint64_t token, RefBundle out) override;
  void OnTaskEnd(Executor& ex, uint64_t token) override;
  bool Finished() const override;
  int64_t TotalBlocks() const override;
  std::optional<BlockKey> LowestFutureKey(const Executor& ex) const override;
  Chain* chain_ptr() override { return &chain_; }
  Chain& chain() { return chain_; }
  lumen::TaskOptions& options() { return options_; }
  int& concurrency() { return concurrency_; }
  bool fusable() const { return existing_.empty() && !reads_.empty(); }
  std::map<std::string, double> PerTask() const override;
  // Total bytes of the files to read (progress).
  int64_t input_bytes = 0;
  int64_t input_files = 0;
  std::vector<FileEntry> listed_files;  // what the listing found (write manifests)

 private:
  struct Running {
    int64_t listed_bytes = 0;  // of its files
    int64_t bytes_out = 0;     // made so far
  };
  std::vector<ReadSpec> reads_;
  std::vector<RefBundle> existing_;
  size_t next_ = 0;
  std::map<uint64_t, Running> running_reads_;  // by task token
  int64_t ended_listed_bytes_ = 0, ended_bytes_out_ = 0;
  Chain chain_;
  lumen::TaskOptions options_;
  int concurrency_ = 0;
};

// Runs a fused chain on every input block as tasks.
class MapOp : public PhysicalOp {
 public:
  MapOp(std::string name, Chain chain, lumen::TaskOptions options, int concurrency);
  std::string Describe() const override;
  bool WantsToLaunch() const override;
  void LaunchOne(Executor& ex) override;
  int64_t TotalBlocks() const override;
  std::map<std::string, double> PerTask() const override;
  Chain* chain_ptr() override { return &chain_; }
  Chain& chain() { return chain_; }
  lumen::TaskOptions& options() { return options_; }
  int& concurrency() { return concurrency_; }

 private:
  Chain chain_;
  lumen::TaskOptions options_;
  int concurrency_;
};

// A pool of actors hosting a callable class, spread over the cluster's nodes; per-actor
// queues, a block going to an actor on the node that holds it (MapBatchesOptions::
// locality_aware), least-loaded first.
//
// Surviving actor deaths: the pool, not the core, re-runs calls interrupted by a death
// (actors are created with max_task_retries = 0), so that the block goes to a live actor at
// once instead of waiting for the dead one's restart. A death is noticed when a call fails
// with ActorDiedError; every call carries the generation of its actor slot, and only a
// failure of the current generation is a new death (the other calls in flight die with it).
// The core restarts the actor up to max_actor_restarts times; then the pool replaces it or,
// if it never finished a block (a constructor that throws), drops it. Driver thread only.
class ActorPoolOp : public PhysicalOp {
 public:
  ActorPoolOp(std::string name, std::string callable, std::string ctor_args, Chain chain,
              MapBatchesOptions options);
  std::string Describe() const override;
  void Start(Executor& ex) override;
  // Notes the actors that came up; autoscaling pools (a concurrency range) add actors while
  // blocks wait and the cluster has room, and retire idle ones down to the minimum.
  void Adjust(Executor& ex) override;
  bool WantsToLaunch() const override;
  // Its actors and their calls in flight bound it already; all of them may be needed at once.
  int FirstWave(int /*cluster_cpus*/) const override { return std::numeric_limits<int>::max(); }
  // When the next block would go to an actor with nothing to do. Upstream tasks in flight can
  // hold the whole budget (their outputs estimated, this pool's output guessed as large as
  // its input until a call has ended): an actor must not wait for that memory while the block
  // it would consume is already made.
  bool LaunchesOverBudget() const override;
  void LaunchOne(Executor& ex) override;
  void OnOutput(Executor& ex, uint64_t token, RefBundle out) override;
  void OnTaskEnd(Executor& ex, uint64_t token) override;
  FailureAction OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) override;
  int64_t TotalBlocks() const override;
  Chain* chain_ptr() override { return &chain_; }
  // Actors, their state and queue depths, for stall reports.
  std::string ActorSummary() const;
  // The pool's actors by state (progress shows them): not yet placed and started, started and
  // idle, started with calls in flight.
  struct ActorCounts {
    int starting = 0;
    int ready = 0;
    int busy = 0;
  };
  ActorCounts CountActors() const;
  // Actors the pool holds now (not retired or dead for good).
  int actor_count() const;
  bool autoscaling() const { return !options_.concurrency.fixed(); }
  const Concurrency& concurrency() const { return options_.concurrency; }
  std::map<std::string, double> Reserved() const override;

 private:
  enum class ActorState {
    kLive,        // created (maybe still starting): gets blocks
    kRestarting,  // died; the core restarts it. Gets blocks only when no actor is live
    kDropped,     // dead for good and not replaced
    kRetired,     // an autoscaling pool let it go (idle)
  };
  struct PoolActor {
    lumen::ActorHandle<UdfActor> handle;
    ActorState state = ActorState::kLive;
    NodeID node;  // where it runs; nil until known
    int in_flight = 0;
    uint64_t generation = 0;  // bumped at every death of the slot's actor; never reset
    int deaths = 0;           // of the current actor, as the pool saw them
    bool finished_a_block = false;
    std::chrono::steady_clock::time_point idle_since;  // when in_flight last became 0
    std::chrono::steady_clock::time_point asked;       // when CreateActor asked for it
  };
  struct Call {
    size_t actor;
    uint64_t generation;
    RefBundle input;  // re-queued if the actor dies
  };
  // Blocks of an interrupted call already passed on: a re-run skips that many of its outputs.
  std::map<BlockKey, int64_t> passed_;

  void CreateActor(PoolActor& a);
  // The actor of `a` died (first failure of its generation): restart, replace or drop it.
  void OnActorDied(PoolActor& a, const std::string& why);
  // A restarting actor that is up again becomes live.
  bool IsUp(const PoolActor& a) const;
  void RefreshActors();
  // Which queued block goes to which actor now: {its index in inputs_, the actor}; actor -1:
  // none now. With locality, a block waits for an actor on its node unless another actor is
  // idle; only the first kLocalityWindow queued blocks are considered.
  std::pair<size_t, int> Pick() const;
  static constexpr size_t kLocalityWindow = 64;
  mutable std::mt19937_64 rng_{std::random_device{}()};  // routing without locality
  bool AllDropped() const;

  std::string callable_;
  std::string ctor_args_;
  Chain chain_;
  MapBatchesOptions options_;
  lumen::ActorOptions actor_options_;
  int max_in_flight_ = 2;
  std::vector<PoolActor> actors_;
  std::unordered_map<uint64_t, Call> calls_;  // by executor token
  std::map<BlockKey, int> retries_;           // block -> re-runs so far
  int replacements_ = 0;
  std::string last_death_;
  std::chrono::steady_clock::time_point last_scale_check_{};
};

// Passes the first `limit` rows.
class LimitOp : public PhysicalOp {
 public:
  LimitOp(int64_t limit) : PhysicalOp("Limit(" + std::to_string(limit) + ")"), remaining_(limit) {}
  void AddInput(RefBundle b, size_t upstream) override;
  void UpstreamDone(Executor& ex, size_t upstream) override;
  bool Finished() const override { return done_ || PhysicalOp::Finished(); }
  bool reached() const { return remaining_ <= 0; }

 private:
  int64_t remaining_;
  bool done_ = false;
};

// Blocks of several inputs, one after the other.
class UnionOp : public PhysicalOp {
 public:
  UnionOp() : PhysicalOp("Union") {}
  void AddInput(RefBundle b, size_t upstream) override;
  int64_t TotalBlocks() const override;
  std::optional<BlockKey> LowestFutureKey(const Executor& ex) const override;

 private:
  // What is added to the first element of upstream `i`'s keys.
  int64_t Offset(size_t upstream) const;
};

// All-to-all: sample (sort, group-by) -> partition every block -> reduce each partition.
// A hash join of its two upstreams (0: left, 1: right): once both are complete, every block is
// hash-partitioned on its side's keys, then each partition joined in a task.
class JoinOp : public PhysicalOp {
 public:
  JoinOp(std::string name, JoinSpec spec);
  std::string Describe() const override;
  void AddInput(RefBundle b, size_t upstream) override;
  void UpstreamDone(Executor& ex, size_t upstream) override;
  bool WantsToLaunch() const override;
  void LaunchOne(Executor& ex) override;
  void OnTaskDone(Executor& ex, uint64_t token, RefBundle out) override;
  FailureAction OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) override;
  bool Finished() const override;
  std::optional<BlockKey> LowestFutureKey(const Executor& ex) const override;
  int64_t TotalBlocks() const override { return spec_.partitions; }
  std::map<std::string, double> PerTask() const override { return {{"CPU", 1}}; }

 private:
  enum class Phase { kCollect, kMap, kReduce, kDone };
  void Advance();

  JoinSpec spec_;
  bool explicit_partitions_;
  Phase phase_ = Phase::kCollect;
  std::deque<size_t> input_sides_;  // the side of each block in inputs_
  std::vector<RefBundle> sides_[2];
  std::vector<std::pair<size_t, size_t>> map_jobs_;  // (side, block)
  std::vector<lumen::ObjectRef<Buffer>> map_outputs_[2];
  std::map<uint64_t, std::pair<size_t, size_t>> map_tokens_;
  size_t next_ = 0;
  int outstanding_ = 0;
};

class ExchangeOp : public PhysicalOp {
 public:
  ExchangeOp(std::string name, ExchangeSpec spec);
  std::string Describe() const override;
  void UpstreamDone(Executor& ex, size_t upstream) override;
  bool WantsToLaunch() const override;
  void LaunchOne(Executor& ex) override;
  void OnTaskDone(Executor& ex, uint64_t token, RefBundle out) override;
  FailureAction OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) override;
  bool Finished() const override;
  std::optional<BlockKey> LowestFutureKey(const Executor& ex) const override;
  int64_t TotalBlocks() const override { return spec_.partitions; }
  std::map<std::string, double> PerTask() const override { return {{"CPU", 1}}; }

 private:
  enum class Phase { kCollect, kSample, kMap, kReduce, kDone };
  void Advance(Executor& ex);

  ExchangeSpec spec_;
  bool explicit_partitions_;
  Phase phase_ = Phase::kCollect;
  std::vector<RefBundle> collected_;
  size_t next_ = 0;
  std::vector<RefBundle> samples_;
  std::vector<lumen::ObjectRef<Buffer>> map_outputs_;
  std::vector<int64_t> first_rows_;
  int64_t total_rows_ = 0;
  // Reduce outputs leave in partition order (sorted and grouped data reads in key order):
  // those that finished early wait here; a failed partition leaves a gap (nullopt).
  std::map<size_t, std::optional<RefBundle>> held_;
  size_t next_out_ = 0;
  std::map<uint64_t, size_t> reduce_tokens_;  // running reduce task -> its partition
  void Release(Executor& ex, uint64_t token, size_t partition, std::optional<RefBundle> out);
  int outstanding_ = 0;
};

class ProgressReporter;

class Executor {
 public:
  // `ops` in dependency order; the last one is the output.
  Executor(std::vector<std::unique_ptr<PhysicalOp>> ops, ExecutionOptions options);
  ~Executor();

  // Runs until the output operator has a block (returned) or the plan is finished (nullopt).
  // Throws DataError when a block fails beyond max_errored_blocks.
  std::optional<RefBundle> Next();
  DatasetStats Stats() const;
  // After a failure: cancels every task still running or queued (a data task stops at its next
  // part; one in the middle of committing a file finishes it) and waits up to `limit` for them
  // all to end, so that none of them writes after this returns. Launches nothing more.
  void CancelAndWait(std::chrono::milliseconds limit);

  // For operators.
  // Where a task's input lies, for the memory budget and the locality figures.
  struct TaskInput {
    int64_t bytes = 0;  // the block it reads, held in the object store until the task ends
    // Where it lies (Nil: unknown or several); an output made elsewhere counts the input's
    // bytes as moved (OperatorStats::bytes_moved).
    NodeID node;
  };
  // Registers a single-result task of `op` (exchanges) whose block takes key {index}.
  void Submit(PhysicalOp* op, const lumen::ObjectRef<Buffer>& ref, int64_t index, int64_t est_bytes,
              uint64_t* token = nullptr);
  // Registers a streaming task of `op` (ReadBlocksTask, RunChainTask, UdfActor::Process: each
  // block followed by its BlockInfo, progress records between them); its blocks take keys
  // key.Part(0), key.Part(1), ...; the
  // first `skip` are not passed on (an earlier run of the same work passed them).
  void SubmitStream(PhysicalOp* op, lumen::ObjectRefStream<Buffer> stream, const BlockKey& key,
                    int64_t est_bytes, const TaskInput& input, uint64_t* token = nullptr,
                    int64_t skip = 0);
  uint64_t NewToken() { return next_token_++; }
  // Reads a finished block's metadata (maps it briefly). Throws the task's error.
  static BlockMeta ReadMeta(const lumen::ObjectRef<Buffer>& ref, const BlockKey& key);
  const ExecutionOptions& options() const { return options_; }
  void RecordError(PhysicalOp* op, const BlockKey& key, const std::string& message);
  // The lowest key a running task of `op` may still output (nullopt: none running).
  std::optional<BlockKey> LowestRunningKey(const PhysicalOp* op) const;

 private:
  struct Pending {
    PhysicalOp* op;
    lumen::ObjectRef<Buffer> ref;  // single-result tasks
    BlockKey key;
    int64_t est_bytes;
    TaskInput input;
    std::chrono::steady_clock::time_point started;
    // Streaming tasks: the stream, its last block while its BlockInfo is awaited, the blocks
    // it has made so far, and how many of the first are not passed on.
    std::shared_ptr<lumen::ObjectRefStream<Buffer>> stream;
    std::optional<lumen::ObjectRef<Buffer>> block;
    int64_t parts = 0;
    int64_t skip = 0;
    // Progress between blocks: the rows its last progress record said are done, the rows_in
    // its blocks have counted, and what it adds to its op's live_rows_in.
    int64_t rows_done = 0;
    int64_t rows_counted = 0;
    int64_t live_shown = 0;
  };
  // Sets what `p` adds to its op's live_rows_in (the rows done beyond those its blocks
  // counted; nothing once `over`, or for a re-run that skips blocks already counted).
  static void ShowLive(Pending& p, bool over = false);
  // Takes what `token`'s stream has ready; true when the task is over (ended or failed).
  bool DrainStream(uint64_t token, Pending& p);
  void Failed(uint64_t token, Pending& p, const lumen::Error& e);
  // Registers the callback that queues `token` when its stream has more.
  void WatchStream(uint64_t token, const Pending& p);
  // Registers a task (its start time set here); returns its token.
  uint64_t AddPending(Pending p, uint64_t* token_out);
  // A callback (any thread) that queues `token` for the consuming thread.
  std::function<void()> Notifier(uint64_t token) const;

  void ProcessEvents();
  void MoveBlocks();
  void StopUpstreamOf(PhysicalOp* op);
  void Schedule();
  int64_t BudgetUsed() const;
  void CheckStall();
  // Fails early when actor pools reserve what task operators need to run at all.
  void CheckResources(lumen::ClusterResourceSummary cluster) const;
  // Tells on stderr which inputs the sources skip under ReadOptions::ignore_missing_files.
  void ReportIgnoredFiles() const;
  std::optional<RefBundle> TakeOutput();

  std::vector<std::unique_ptr<PhysicalOp>> ops_;
  std::set<PhysicalOp*> signaled_done_;
  ExecutionOptions options_;
  int64_t budget_;
  int cluster_cpus_ = 1;  // for FirstWave
  std::unique_ptr<ProgressReporter> progress_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_progress_;
  int64_t peak_bytes_ = 0;
  int errors_ = 0;
  std::optional<std::string> fatal_;
  bool finished_ = false;

  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;  // consumer thread only

  // Ordered output (preserve_order): blocks held until no lower key can come.
  std::map<BlockKey, RefBundle> reorder_;

  // Shared with object-ready callbacks.
  std::shared_ptr<struct EventQueue> events_;
};

// Wraps an executor for BatchIterator.
class ExecutionHandle {
 public:
  ExecutionHandle(std::unique_ptr<Executor> ex, std::shared_ptr<DatasetStats> stats_sink)
      : ex_(std::move(ex)), stats_sink_(std::move(stats_sink)) {}
  ~ExecutionHandle();
  std::optional<RefBundle> Next();

 private:
  std::unique_ptr<Executor> ex_;
  std::shared_ptr<DatasetStats> stats_sink_;
};

}  // namespace lumen::data::internal
