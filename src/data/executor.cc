#include "data/executor.h"

#include "data/keys.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "common/thread_annotations.h"
#include "data/keys.h"
#include "data/progress.h"

namespace lumen::data::internal {

struct EventQueue {
  Mutex mu;
  CondVar cv;
  std::deque<uint64_t> done LUMEN_GUARDED_BY(mu);
};

namespace {
using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

// ---- PhysicalOp ------------------------------------------------------------------------------

void PhysicalOp::UpstreamDone(Executor& ex, size_t upstream) { ++upstreams_done_; }

int64_t PhysicalOp::HeldBytes() const {
  int64_t n = 0;
  for (const auto& b : inputs_) n += b.meta.bytes;
  for (const auto& b : outputs_) n += b.meta.bytes;
  return n;
}

namespace {
// `bytes` scaled by out / in (in > 0).
int64_t Proportion(int64_t bytes, int64_t out, int64_t in) {
  return static_cast<int64_t>(static_cast<double>(bytes) * static_cast<double>(out) /
                              static_cast<double>(in));
}
}  // namespace

int64_t PhysicalOp::EstimateFor(int64_t input_bytes) const {
  if (stats_.tasks == 0) return input_bytes;
  if (stats_.bytes_in > 0 && input_bytes > 0) {
    return Proportion(input_bytes, stats_.bytes_out, stats_.bytes_in);
  }
  return stats_.bytes_out / stats_.tasks;
}

int64_t PhysicalOp::EstimateOutputBytes() const {
  if (!inputs_.empty()) return EstimateFor(inputs_.front().meta.bytes);
  if (stats_.tasks > 0) return stats_.bytes_out / stats_.tasks;
  return 1 << 20;
}

void PhysicalOp::Emit(RefBundle b) {
  outputs_.push_back(std::move(b));
  stats_.peak_bytes_held = std::max(stats_.peak_bytes_held, HeldBytes());
}

void PhysicalOp::OnOutput(Executor& ex, uint64_t token, RefBundle out) {
  stats_.rows_in += out.meta.exec.rows_in;
  stats_.bytes_in += out.meta.exec.bytes_in;
  stats_.rows_out += out.meta.rows;
  stats_.bytes_out += out.meta.bytes;
  stats_.task_wall_s += static_cast<double>(out.meta.exec.wall_us) / 1e6;
  stats_.task_cpu_s += static_cast<double>(out.meta.exec.cpu_us) / 1e6;
  stats_.user_code_s += static_cast<double>(out.meta.user_code_us) / 1e6;
  last_end = Clock::now();
  Emit(std::move(out));
}

void PhysicalOp::OnTaskEnd(Executor& ex, uint64_t token) {
  ++stats_.tasks;
  ++blocks_done;
  last_end = Clock::now();
}

void PhysicalOp::OnTaskDone(Executor& ex, uint64_t token, RefBundle out) {
  OnOutput(ex, token, std::move(out));
  OnTaskEnd(ex, token);
}

namespace {
void Lower(std::optional<BlockKey>& bound, const std::optional<BlockKey>& k) {
  if (k && (!bound || *k < *bound)) bound = k;
}
}  // namespace

std::optional<BlockKey> PhysicalOp::LowestFutureKey(const Executor& ex) const {
  std::optional<BlockKey> bound = ex.LowestRunningKey(this);
  for (const auto& b : inputs_) Lower(bound, b.meta.key);
  for (const PhysicalOp* u : upstreams) Lower(bound, u->LowestFutureKey(ex));
  return bound;
}

// ---- SourceOp --------------------------------------------------------------------------------

SourceOp::SourceOp(std::string name, std::vector<ReadSpec> reads, Chain chain,
                   lumen::TaskOptions options, int concurrency)
    : PhysicalOp(std::move(name)),
      reads_(std::move(reads)),
      chain_(std::move(chain)),
      options_(std::move(options)),
      concurrency_(concurrency) {
  // Reads use the whole cluster, as Ray Data's do: round-robin over the nodes (the paths must
  // be readable on each, as on shared storage), so that the blocks start out spread.
  options_.scheduling = lumen::SpreadScheduling{};
}

SourceOp::SourceOp(std::string name, std::vector<RefBundle> existing)
    : PhysicalOp(std::move(name)), existing_(std::move(existing)) {}

namespace {
// ", 0 CPUs per task" for Explain: the CPUs a task reserves, when not the usual one.
std::string CpusOtherThanOne(const lumen::TaskOptions& o) {
  if (o.num_cpus == 1) return "";
  char buf[48];
  std::snprintf(buf, sizeof(buf), ", %g CPUs per task", o.num_cpus);
  return buf;
}
}  // namespace

std::string SourceOp::Describe() const {
  std::string d = name_ + " [" + std::to_string(TotalBlocks()) + " blocks";
  if (!reads_.empty()) d += ", read tasks" + CpusOtherThanOne(options_);
  if (concurrency_ > 0) d += ", concurrency " + std::to_string(concurrency_);
  return d + "]";
}

void SourceOp::Start(Executor& ex) {
  for (auto& b : existing_) {
    ++blocks_done;
    stats_.rows_in += b.meta.rows;
    stats_.bytes_in += b.meta.bytes;
    stats_.rows_out += b.meta.rows;
    stats_.bytes_out += b.meta.bytes;
    Emit(b);
  }
  existing_.clear();
}

bool SourceOp::WantsToLaunch() const {
  return !stopped_ && next_ < reads_.size() && (concurrency_ <= 0 || running_ < concurrency_);
}

namespace {
int64_t ListedBytes(const ReadSpec& spec) {
  int64_t bytes = 0;
  for (int64_t size : spec.sizes) bytes += std::max<int64_t>(size, 0);
  return bytes;
}
}  // namespace

void SourceOp::LaunchOne(Executor& ex) {
  const BlockKey key = BlockKey::Of(static_cast<int64_t>(next_));
  const int64_t est = EstimateOutputBytes();
  const ReadSpec& spec = reads_[next_++];
  uint64_t token = 0;
  ex.SubmitStream(this, lumen::Task(ReadBlocksTask).Options(options_).Remote(spec, chain_, key),
                  key, est, {}, &token);
  running_reads_[token] = {ListedBytes(spec), 0};
}

void SourceOp::OnOutput(Executor& ex, uint64_t token, RefBundle out) {
  if (auto it = running_reads_.find(token); it != running_reads_.end()) {
    it->second.bytes_out += out.meta.bytes;
  }
  PhysicalOp::OnOutput(ex, token, std::move(out));
}

void SourceOp::OnTaskEnd(Executor& ex, uint64_t token) {
  if (auto it = running_reads_.find(token); it != running_reads_.end()) {
    ended_listed_bytes_ += it->second.listed_bytes;
    ended_bytes_out_ += it->second.bytes_out;
    running_reads_.erase(it);
  }
  PhysicalOp::OnTaskEnd(ex, token);
}

std::optional<BlockKey> SourceOp::LowestFutureKey(const Executor& ex) const {
  std::optional<BlockKey> bound = ex.LowestRunningKey(this);
  if (!stopped_ && next_ < reads_.size()) Lower(bound, BlockKey::Of(static_cast<int64_t>(next_)));
  return bound;
}

int64_t SourceOp::EstimateOutputBytes() const {
  const int64_t files = next_ < reads_.size() ? ListedBytes(reads_[next_]) : 0;
  if (ended_listed_bytes_ > 0 && files > 0) {
    return Proportion(files, ended_bytes_out_, ended_listed_bytes_);
  }
  if (stats_.tasks > 0) return stats_.bytes_out / stats_.tasks;
  if (files > 0) return files;
  return reads_.empty() ? 0
                        : std::max<int64_t>(input_bytes / static_cast<int64_t>(reads_.size()), 1);
}

bool SourceOp::Finished() const {
  return (stopped_ || next_ >= reads_.size()) && running_ == 0 && existing_.empty();
}

int64_t SourceOp::TotalBlocks() const {
  return reads_.empty() ? blocks_done : static_cast<int64_t>(reads_.size());
}

namespace {
std::map<std::string, double> ResourcesOf(const lumen::TaskOptions& o) {
  std::map<std::string, double> r;
  if (o.num_cpus > 0) r["CPU"] = o.num_cpus;
  if (o.num_gpus > 0) r["GPU"] = o.num_gpus;
  if (o.memory > 0) r["memory"] = static_cast<double>(o.memory);
  for (const auto& [k, v] : o.resources) r[k] = v;
  return r;
}
}  // namespace

std::map<std::string, double> SourceOp::PerTask() const {
  return reads_.empty() ? std::map<std::string, double>{} : ResourcesOf(options_);
}

// ---- MapOp -----------------------------------------------------------------------------------

MapOp::MapOp(std::string name, Chain chain, lumen::TaskOptions options, int concurrency)
    : PhysicalOp(std::move(name)),
      chain_(std::move(chain)),
      options_(std::move(options)),
      concurrency_(concurrency) {}

std::string MapOp::Describe() const {
  std::string d = name_ + " [tasks" + CpusOtherThanOne(options_);
  if (concurrency_ > 0) d += ", concurrency " + std::to_string(concurrency_);
  return d + "]";
}

bool MapOp::WantsToLaunch() const {
  return !stopped_ && !inputs_.empty() && (concurrency_ <= 0 || running_ < concurrency_);
}

void MapOp::LaunchOne(Executor& ex) {
  RefBundle in = std::move(inputs_.front());
  inputs_.pop_front();
  ex.SubmitStream(
      this, lumen::Task(RunChainTask).Options(options_).Remote(chain_, in.meta.key, in.ref),
      in.meta.key, EstimateFor(in.meta.bytes), {.bytes = in.meta.bytes, .node = in.meta.node});
}

std::map<std::string, double> MapOp::PerTask() const { return ResourcesOf(options_); }

int64_t MapOp::TotalBlocks() const { return upstreams.empty() ? -1 : upstreams[0]->TotalBlocks(); }

// ---- ActorPoolOp -----------------------------------------------------------------------------

ActorPoolOp::ActorPoolOp(std::string name, std::string callable, std::string ctor_args, Chain chain,
                         MapBatchesOptions options)
    : PhysicalOp(std::move(name)),
      callable_(std::move(callable)),
      ctor_args_(std::move(ctor_args)),
      chain_(std::move(chain)),
      options_(std::move(options)) {
  int conc = std::max(1, options_.max_concurrency);
  max_in_flight_ = options_.max_tasks_in_flight_per_actor > 0
                       ? options_.max_tasks_in_flight_per_actor
                       : 2 * conc;
}

std::string ActorPoolOp::Describe() const {
  const std::string size = autoscaling() ? std::to_string(std::max(1, options_.concurrency.min())) +
                                               " to " + std::to_string(options_.concurrency.max())
                                         : std::to_string(std::max(1, options_.concurrency.max()));
  return name_ + " [actor pool of " + size + ", " + std::to_string(max_in_flight_) +
         " in flight per actor]";
}

void ActorPoolOp::Start(Executor& ex) {
  actor_options_.num_cpus = options_.num_cpus;
  actor_options_.num_gpus = options_.num_gpus;
  actor_options_.memory = options_.memory;
  actor_options_.max_concurrency = std::max(1, options_.max_concurrency);
  actor_options_.max_restarts = options_.max_actor_restarts;
  actor_options_.max_task_retries = 0;  // the pool re-runs interrupted blocks itself
  actor_options_.scheduling = lumen::SpreadScheduling{};  // one pool over the cluster's nodes
  actors_.resize(static_cast<size_t>(std::max(1, options_.concurrency.min())));
  for (auto& a : actors_) CreateActor(a);
}

int ActorPoolOp::actor_count() const {
  return static_cast<int>(std::count_if(actors_.begin(), actors_.end(), [](const PoolActor& a) {
    return a.state == ActorState::kLive || a.state == ActorState::kRestarting;
  }));
}

void ActorPoolOp::Adjust(Executor& /*ex*/) {
  RefreshActors();  // every pool: notes actors that came up (and when, within a tick)
  if (!autoscaling() || stopped_) return;
  const auto now = Clock::now();
  const int held = actor_count();
  // Grow: blocks wait that no actor can take now. As many actors at once as the waiting blocks
  // would keep busy and the cluster has room for (checked at most every 0.2 s).
  if (!inputs_.empty() && held < options_.concurrency.max() && Pick().second < 0 &&
      now - last_scale_check_ >= std::chrono::milliseconds(200)) {
    last_scale_check_ = now;
    int want =
        std::min<int>(options_.concurrency.max() - held,
                      static_cast<int>((inputs_.size() + static_cast<size_t>(max_in_flight_) - 1) /
                                       static_cast<size_t>(max_in_flight_)));
    const lumen::ClusterResourceSummary cluster = lumen::GetClusterResources();
    auto room_for = [&](const char* name, double need, double keep) {
      if (need <= 0) return want;
      auto it = cluster.available.find(name);
      const double free = it == cluster.available.end() ? 0 : it->second - keep;
      return static_cast<int>(std::floor(std::max(0.0, free) / need + 1e-9));
    };
    // While upstream work remains, a CPU is left for it: the pool must not starve its input.
    const bool upstream_busy = !AllUpstreamsDone();
    want = std::min(want, room_for("CPU", options_.num_cpus, upstream_busy ? 1.0 : 0.0));
    want = std::min(want, room_for("GPU", options_.num_gpus, 0));
    for (int i = 0; i < want; ++i) {
      auto slot = std::find_if(actors_.begin(), actors_.end(),
                               [](const PoolActor& a) { return a.state == ActorState::kRetired; });
      if (slot == actors_.end()) slot = actors_.insert(actors_.end(), PoolActor());
      CreateActor(*slot);
      slot->idle_since = now;
      ++stats_.actors_added;
    }
  }
  // Shrink: an actor idle for autoscale_idle_s goes while the pool is above its minimum and
  // nothing waits.
  if (!inputs_.empty()) return;
  const auto idle_for = std::chrono::duration<double>(options_.autoscale_idle_s);
  int count = held;
  for (auto& a : actors_) {
    if (count <= std::max(1, options_.concurrency.min())) break;
    if (a.state != ActorState::kLive || a.in_flight > 0 || now - a.idle_since < idle_for) continue;
    lumen::Kill(a.handle);
    a.state = ActorState::kRetired;
    a.node = NodeID::Nil();
    ++stats_.actors_retired;
    --count;
  }
}

void ActorPoolOp::CreateActor(PoolActor& a) {
  a.handle = lumen::Actor(UdfActor::Create)
                 .Options(actor_options_)
                 .Remote(callable_, ctor_args_, options_.num_cpus, options_.num_gpus);
  a.state = ActorState::kLive;
  a.node = NodeID::Nil();
  a.deaths = 0;
  a.finished_a_block = false;
  a.asked = std::chrono::steady_clock::now();
}

bool ActorPoolOp::IsUp(const PoolActor& a) const {
  if (a.state == ActorState::kLive) return true;
  return a.state == ActorState::kRestarting &&
         !lumen::internal::ActorLocation(a.handle.ID()).IsNil();
}

void ActorPoolOp::RefreshActors() {
  for (auto& a : actors_) {
    if (a.state == ActorState::kRestarting && IsUp(a)) a.state = ActorState::kLive;
    if (a.state == ActorState::kLive && a.node.IsNil()) {
      a.node = lumen::internal::ActorLocation(a.handle.ID());
      if (!a.node.IsNil() && a.deaths == 0) {  // up for the first time: how long that took
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - a.asked).count();
        stats_.actor_start_s = std::max(stats_.actor_start_s, s);
        ++stats_.actors_started;
      }
    }
  }
}

bool ActorPoolOp::AllDropped() const {
  return std::all_of(actors_.begin(), actors_.end(), [](const PoolActor& a) {
    return a.state == ActorState::kDropped || a.state == ActorState::kRetired;
  });
}

std::pair<size_t, int> ActorPoolOp::Pick() const {
  // Blocks go to live actors; only when none is live do they queue at restarting ones (the
  // core holds the calls until the restart, or fails them at once if the actor is gone).
  bool any_up =
      std::any_of(actors_.begin(), actors_.end(), [this](const PoolActor& a) { return IsUp(a); });
  std::vector<int> room;  // actors that can take a block now
  for (size_t i = 0; i < actors_.size(); ++i) {
    const PoolActor& a = actors_[i];
    if (a.state == ActorState::kDropped || a.state == ActorState::kRetired ||
        a.in_flight >= max_in_flight_) {
      continue;
    }
    if (any_up && !IsUp(a)) continue;
    room.push_back(static_cast<int>(i));
  }
  if (room.empty() || inputs_.empty()) return {0, -1};
  if (!options_.locality_aware) {
    // At random among the idle actors when there are any (no actor waits while another
    // queues), else among all with room. The same draw set for the same state, so a launch
    // that LaunchesOverBudget allowed for an idle actor goes to an idle actor.
    std::vector<int> idle;
    for (int i : room) {
      if (actors_[static_cast<size_t>(i)].in_flight == 0) idle.push_back(i);
    }
    const std::vector<int>& from = idle.empty() ? room : idle;
    return {0, from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng_)]};
  }
  auto least_loaded = [&](auto&& eligible) {
    int best = -1;
    for (int i : room) {
      const PoolActor& a = actors_[static_cast<size_t>(i)];
      if (eligible(a) && (best < 0 || a.in_flight < actors_[static_cast<size_t>(best)].in_flight)) {
        best = i;
      }
    }
    return best;
  };
  const size_t window = std::min(inputs_.size(), kLocalityWindow);
  // A queued block whose node has an actor with room goes to it (per-actor queues + locality).
  for (size_t k = 0; k < window; ++k) {
    const NodeID& node = inputs_[k].meta.node;
    if (node.IsNil()) continue;
    int best = least_loaded([&](const PoolActor& a) { return a.node == node; });
    if (best >= 0) return {k, best};
  }
  // An idle actor takes the oldest block from wherever it is: no actor waits while work does.
  int idle = least_loaded([](const PoolActor& a) { return a.in_flight == 0; });
  if (idle >= 0) return {0, idle};
  // A block that no actor of the pool is near goes to any actor with room; the others wait
  // for their node's actor.
  for (size_t k = 0; k < window; ++k) {
    const NodeID& node = inputs_[k].meta.node;
    bool near =
        !node.IsNil() && std::any_of(actors_.begin(), actors_.end(), [&](const PoolActor& a) {
          return a.state != ActorState::kDropped && a.node == node;
        });
    if (!near) return {k, least_loaded([](const PoolActor&) { return true; })};
  }
  return {0, -1};
}

bool ActorPoolOp::WantsToLaunch() const {
  if (stopped_ || inputs_.empty()) return false;
  return AllDropped() || Pick().second >= 0;
}

bool ActorPoolOp::LaunchesOverBudget() const {
  const int best = Pick().second;
  return best >= 0 && actors_[static_cast<size_t>(best)].in_flight == 0;
}

void ActorPoolOp::LaunchOne(Executor& ex) {
  if (AllDropped()) {
    RefBundle in = std::move(inputs_.front());
    inputs_.pop_front();
    ++blocks_done;
    ex.RecordError(this, in.meta.key,
                   "no actor of the pool can run it: all " + std::to_string(actors_.size()) +
                       " actors died for good (last: " + last_death_ + ")");
    return;
  }
  RefreshActors();
  const auto [k, best] = Pick();
  if (best < 0) return;  // an actor came back since WantsToLaunch and the live ones are full
  RefBundle in = std::move(inputs_[k]);
  inputs_.erase(inputs_.begin() + static_cast<std::ptrdiff_t>(k));
  const size_t i = static_cast<size_t>(best);
  PoolActor& a = actors_[i];
  ++a.in_flight;
  uint64_t token = 0;
  auto passed = passed_.find(in.meta.key);
  ex.SubmitStream(this, a.handle.Task(&UdfActor::Process).Remote(chain_, in.meta.key, in.ref),
                  in.meta.key, EstimateFor(in.meta.bytes),
                  {.bytes = in.meta.bytes, .node = in.meta.node}, &token,
                  passed == passed_.end() ? 0 : passed->second);
  calls_.emplace(token, Call{i, a.generation, std::move(in)});
}

void ActorPoolOp::OnOutput(Executor& ex, uint64_t token, RefBundle out) {
  // Parts come in order, and a re-run's first ones (passed before) do not come here.
  if (auto it = calls_.find(token); it != calls_.end()) ++passed_[it->second.input.meta.key];
  PhysicalOp::OnOutput(ex, token, std::move(out));
}

void ActorPoolOp::OnTaskEnd(Executor& ex, uint64_t token) {
  if (auto it = calls_.find(token); it != calls_.end()) {
    PoolActor& a = actors_[it->second.actor];
    if (--a.in_flight == 0) a.idle_since = Clock::now();
    if (it->second.generation == a.generation) a.finished_a_block = true;
    passed_.erase(it->second.input.meta.key);
    calls_.erase(it);
    if (a.node.IsNil()) RefreshActors();  // up, whether or not a tick saw it come up
  }
  PhysicalOp::OnTaskEnd(ex, token);
}

FailureAction ActorPoolOp::OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) {
  auto it = calls_.find(token);
  if (it == calls_.end()) return FailureAction::kRecord;
  Call call = std::move(it->second);
  calls_.erase(it);
  PoolActor& a = actors_[call.actor];
  --a.in_flight;
  // An exception thrown by the callable fails the block: running it again would throw again.
  if (dynamic_cast<const lumen::ActorDiedError*>(&error) == nullptr) return FailureAction::kRecord;
  if (call.generation == a.generation) OnActorDied(a, error.what());
  if (stopped_) return FailureAction::kHandled;  // a satisfied limit: the block is not needed
  const BlockKey key = call.input.meta.key;
  int& retries = retries_[key];
  if (retries >= options_.max_block_retries) {
    ++blocks_done;
    passed_.erase(key);
    ex.RecordError(this, key,
                   std::string(error.what()) + " (the block was re-run " + std::to_string(retries) +
                       " times after actor deaths: MapBatchesOptions::max_block_retries)");
    return FailureAction::kHandled;
  }
  ++retries;
  ++stats_.blocks_retried;
  inputs_.push_front(std::move(call.input));
  return FailureAction::kHandled;
}

void ActorPoolOp::OnActorDied(PoolActor& a, const std::string& why) {
  ++a.generation;
  ++a.deaths;
  a.node = NodeID::Nil();
  last_death_ = why;
  if (options_.max_actor_restarts < 0 || a.deaths <= options_.max_actor_restarts) {
    a.state = ActorState::kRestarting;
    ++stats_.actor_restarts;
    return;
  }
  // Dead for good. A fresh actor helps unless this one never worked (its constructor throws,
  // or it dies on every block): then the others carry on without it.
  if (a.finished_a_block && replacements_ < static_cast<int>(actors_.size())) {
    lumen::Kill(a.handle);  // frees its resources if it is not quite dead yet
    CreateActor(a);
    ++replacements_;
    ++stats_.actor_restarts;
    return;
  }
  a.state = ActorState::kDropped;
}

int64_t ActorPoolOp::TotalBlocks() const {
  return upstreams.empty() ? -1 : upstreams[0]->TotalBlocks();
}

std::map<std::string, double> ActorPoolOp::Reserved() const {
  std::map<std::string, double> r;
  double n = std::max(1, options_.concurrency.min());  // an autoscaling pool's floor
  if (options_.num_cpus > 0) r["CPU"] = options_.num_cpus * n;
  if (options_.num_gpus > 0) r["GPU"] = options_.num_gpus * n;
  if (options_.memory > 0) r["memory"] = static_cast<double>(options_.memory) * n;
  return r;
}

ActorPoolOp::ActorCounts ActorPoolOp::CountActors() const {
  ActorCounts c;
  for (const auto& a : actors_) {
    if (a.state != ActorState::kLive && a.state != ActorState::kRestarting) continue;
    if (lumen::internal::ActorLocation(a.handle.ID()).IsNil()) {
      ++c.starting;
    } else {
      ++(a.in_flight > 0 ? c.busy : c.ready);
    }
  }
  return c;
}

std::string ActorPoolOp::ActorSummary() const {
  std::string s;
  for (size_t i = 0; i < actors_.size(); ++i) {
    const PoolActor& a = actors_[i];
    s += (i ? ", " : "") + std::string("actor ") + std::to_string(i) + ": " +
         std::to_string(a.in_flight) + " in flight";
    if (a.state == ActorState::kRestarting) s += ", restarting";
    if (a.state == ActorState::kDropped) s += ", dead";
    if (a.state == ActorState::kRetired) s += ", retired";
  }
  return s;
}

// ---- LimitOp / UnionOp -----------------------------------------------------------------------

void LimitOp::AddInput(RefBundle b, size_t upstream) {
  if (done_) return;
  stats_.rows_in += b.meta.rows;
  stats_.bytes_in += b.meta.bytes;
  if (b.meta.rows > remaining_) {
    Batch sliced = Batch::FromBuffer(lumen::Get(b.ref)).Slice(0, remaining_);
    b.ref = lumen::Put(sliced.buffer());
    b.meta.rows = sliced.NumRows();
    b.meta.bytes = sliced.SizeBytes();
  }
  remaining_ -= b.meta.rows;
  ++blocks_done;
  stats_.rows_out += b.meta.rows;
  stats_.bytes_out += b.meta.bytes;
  Emit(std::move(b));
  if (remaining_ <= 0) done_ = true;
}

void LimitOp::UpstreamDone(Executor& ex, size_t upstream) {
  PhysicalOp::UpstreamDone(ex, upstream);
  if (AllUpstreamsDone()) done_ = true;
}

int64_t UnionOp::Offset(size_t upstream) const {
  int64_t offset = 0;
  for (size_t i = 0; i < upstream; ++i) {
    int64_t t = upstreams[i]->TotalBlocks();
    offset += t >= 0 ? t : (int64_t{1} << 32);
  }
  return offset;
}

std::optional<BlockKey> UnionOp::LowestFutureKey(const Executor& ex) const {
  std::optional<BlockKey> bound;
  for (size_t i = 0; i < upstreams.size(); ++i) {
    std::optional<BlockKey> k = upstreams[i]->LowestFutureKey(ex);
    if (k && !k->path.empty()) k->path[0] += Offset(i);
    Lower(bound, k);
  }
  return bound;
}

void UnionOp::AddInput(RefBundle b, size_t upstream) {
  if (!b.meta.key.path.empty()) b.meta.key.path[0] += Offset(upstream);
  ++blocks_done;
  stats_.rows_in += b.meta.rows;
  stats_.bytes_in += b.meta.bytes;
  stats_.rows_out += b.meta.rows;
  stats_.bytes_out += b.meta.bytes;
  Emit(std::move(b));
}

int64_t UnionOp::TotalBlocks() const {
  int64_t total = 0;
  for (const PhysicalOp* u : upstreams) {
    int64_t t = u->TotalBlocks();
    if (t < 0) return -1;
    total += t;
  }
  return total;
}

namespace {
// The lowest key an all-to-all operator may still output: 0 until its reducers start, then the
// lowest running or not yet launched partition.
std::optional<BlockKey> ReducerLowestKey(const Executor& ex, const PhysicalOp* op, bool finished,
                                         bool reducing, bool done, size_t next, int partitions) {
  if (finished) return std::nullopt;
  if (!reducing && !done) return BlockKey::Of(0);
  std::optional<BlockKey> bound = ex.LowestRunningKey(op);
  if (reducing && next < static_cast<size_t>(partitions)) {
    Lower(bound, BlockKey::Of(static_cast<int64_t>(next)));
  }
  return bound;
}
}  // namespace

// ---- JoinOp ----------------------------------------------------------------------------------

JoinOp::JoinOp(std::string name, JoinSpec spec)
    : PhysicalOp(std::move(name)), spec_(std::move(spec)) {
  explicit_partitions_ = spec_.partitions > 0;
  if (!explicit_partitions_) spec_.partitions = 1;
}

std::string JoinOp::Describe() const {
  return name_ + " [exchange: hash-partition both sides, join each partition]";
}

void JoinOp::AddInput(RefBundle b, size_t upstream) {
  inputs_.push_back(std::move(b));  // held (and counted) until the map phase
  input_sides_.push_back(upstream);
}

void JoinOp::UpstreamDone(Executor& ex, size_t upstream) {
  PhysicalOp::UpstreamDone(ex, upstream);
  if (!AllUpstreamsDone() || phase_ != Phase::kCollect) return;
  Advance();
  while (phase_ != Phase::kDone && outstanding_ == 0 && !WantsToLaunch()) Advance();
}

void JoinOp::Advance() {
  if (phase_ == Phase::kCollect) {
    while (!inputs_.empty()) {
      sides_[input_sides_.front()].push_back(std::move(inputs_.front()));
      inputs_.pop_front();
      input_sides_.pop_front();
    }
    for (auto& side : sides_) {
      std::sort(side.begin(), side.end(),
                [](const RefBundle& a, const RefBundle& b) { return a.meta.key < b.meta.key; });
    }
    if (!explicit_partitions_) {
      spec_.partitions =
          static_cast<int>(std::max<size_t>(1, std::max(sides_[0].size(), sides_[1].size())));
    }
    for (size_t side = 0; side < 2; ++side) {
      map_outputs_[side].assign(sides_[side].size(), lumen::ObjectRef<Buffer>());
      for (size_t i = 0; i < sides_[side].size(); ++i) map_jobs_.emplace_back(side, i);
    }
    next_ = 0;
    phase_ = Phase::kMap;
  } else if (phase_ == Phase::kMap) {
    sides_[0].clear();  // the inputs are no longer needed: freed
    sides_[1].clear();
    next_ = 0;
    phase_ = Phase::kReduce;
  } else if (phase_ == Phase::kReduce) {
    map_outputs_[0].clear();
    map_outputs_[1].clear();
    phase_ = Phase::kDone;
  }
}

bool JoinOp::WantsToLaunch() const {
  if (stopped_) return false;
  if (phase_ == Phase::kMap) return next_ < map_jobs_.size();
  if (phase_ == Phase::kReduce) return next_ < static_cast<size_t>(spec_.partitions);
  return false;
}

void JoinOp::LaunchOne(Executor& ex) {
  const size_t i = next_++;
  ++outstanding_;
  uint64_t token = 0;
  if (phase_ == Phase::kMap) {
    const auto [side, block] = map_jobs_[i];
    const RefBundle& b = sides_[side][block];
    auto ref = lumen::Task(HashPartitionTask)
                   .Remote(side == 0 ? spec_.left_keys : spec_.right_keys,
                           int64_t{spec_.partitions}, b.ref);
    ex.Submit(this, ref, static_cast<int64_t>(i), b.meta.bytes, &token);
    map_tokens_[token] = {side, block};
    return;
  }
  std::vector<lumen::ObjectRef<Buffer>> outs[2];
  for (size_t side = 0; side < 2; ++side) {
    for (const auto& r : map_outputs_[side]) {
      if (!r.IsNil()) outs[side].push_back(r);
    }
  }
  auto ref = lumen::Task(JoinTask).Remote(spec_, static_cast<int64_t>(i), outs[0], outs[1]);
  ex.Submit(this, ref, static_cast<int64_t>(i), 1 << 20);
}

void JoinOp::OnTaskDone(Executor& ex, uint64_t token, RefBundle out) {
  --outstanding_;
  if (auto it = map_tokens_.find(token); it != map_tokens_.end()) {
    map_outputs_[it->second.first][it->second.second] = out.ref;
    map_tokens_.erase(it);
  } else {
    PhysicalOp::OnTaskDone(ex, token, std::move(out));
  }
  while (outstanding_ == 0 && !WantsToLaunch() && phase_ != Phase::kDone &&
         phase_ != Phase::kCollect) {
    Advance();
  }
}

FailureAction JoinOp::OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) {
  --outstanding_;
  map_tokens_.erase(token);
  while (outstanding_ == 0 && !WantsToLaunch() && phase_ != Phase::kDone &&
         phase_ != Phase::kCollect) {
    Advance();
  }
  return FailureAction::kRecord;
}

bool JoinOp::Finished() const { return phase_ == Phase::kDone && running_ == 0; }

std::optional<BlockKey> JoinOp::LowestFutureKey(const Executor& ex) const {
  return ReducerLowestKey(ex, this, Finished(), phase_ == Phase::kReduce, phase_ == Phase::kDone,
                          next_, spec_.partitions);
}

// ---- ExchangeOp ------------------------------------------------------------------------------

ExchangeOp::ExchangeOp(std::string name, ExchangeSpec spec)
    : PhysicalOp(std::move(name)), spec_(std::move(spec)) {
  explicit_partitions_ = spec_.partitions > 0;
  if (!explicit_partitions_) spec_.partitions = 1;
}

std::string ExchangeOp::Describe() const {
  std::string how =
      spec_.RangePartitioned() ? "sample, range-partition, reduce" : "partition, reduce";
  if (spec_.kind == "aggregate") how = "combine per block, " + how;
  return name_ + " [exchange: " + how + "]";
}

void ExchangeOp::UpstreamDone(Executor& ex, size_t upstream) {
  PhysicalOp::UpstreamDone(ex, upstream);
  if (AllUpstreamsDone() && phase_ == Phase::kCollect) Advance(ex);
}

void ExchangeOp::Advance(Executor& ex) {
  if (phase_ == Phase::kCollect) {
    collected_.assign(std::make_move_iterator(inputs_.begin()),
                      std::make_move_iterator(inputs_.end()));
    inputs_.clear();
    std::sort(collected_.begin(), collected_.end(),
              [](const RefBundle& a, const RefBundle& b) { return a.meta.key < b.meta.key; });
    if (!explicit_partitions_)
      spec_.partitions = std::max<int>(1, static_cast<int>(collected_.size()));
    if (spec_.kind == "aggregate" && spec_.keys.empty()) spec_.partitions = 1;  // one row
    first_rows_.clear();
    total_rows_ = 0;
    for (const auto& b : collected_) {
      first_rows_.push_back(total_rows_);
      total_rows_ += b.meta.rows;
    }
    if (spec_.rows_per_partition > 0) {  // exactly that many rows per output block
      spec_.partitions = static_cast<int>(std::max<int64_t>(
          1, (total_rows_ + spec_.rows_per_partition - 1) / spec_.rows_per_partition));
    }
    next_ = 0;
    phase_ = spec_.RangePartitioned() ? Phase::kSample : Phase::kMap;
    if (spec_.RangePartitioned()) samples_.assign(collected_.size(), RefBundle());
    map_outputs_.assign(collected_.size(), lumen::ObjectRef<Buffer>());
  } else if (phase_ == Phase::kSample) {
    // Boundaries: partitions - 1 evenly spaced keys of the sorted samples.
    std::vector<Batch> parts;
    for (const auto& s : samples_) {
      if (!s.ref.IsNil()) parts.push_back(Batch::FromBuffer(lumen::Get(s.ref)));
    }
    Batch all = Batch::Concat(parts);
    Batch bounds;
    if (all.NumRows() > 0 && spec_.partitions > 1) {
      // Sort the samples by key with the same code the reducers use.
      std::vector<int64_t> order = KeyColumns(all, spec_.keys).SortedOrder(false);
      std::vector<int64_t> picks;
      for (int p = 1; p < spec_.partitions; ++p) {
        picks.push_back(
            order[static_cast<size_t>(p) * order.size() / static_cast<size_t>(spec_.partitions)]);
      }
      bounds = all.TakeRows(picks);
    } else if (all.NumRows() > 0) {
      bounds = all.Slice(0, 0);
    }
    spec_.boundaries = bounds.buffer();
    samples_.clear();
    next_ = 0;
    phase_ = Phase::kMap;
  } else if (phase_ == Phase::kMap) {
    collected_.clear();  // the inputs are no longer needed: freed
    next_ = 0;
    phase_ = Phase::kReduce;
  } else if (phase_ == Phase::kReduce) {
    map_outputs_.clear();
    phase_ = Phase::kDone;
  }
}

bool ExchangeOp::WantsToLaunch() const {
  if (stopped_) return false;
  switch (phase_) {
    case Phase::kSample:
    case Phase::kMap:
      return next_ < collected_.size();
    case Phase::kReduce:
      return next_ < static_cast<size_t>(spec_.partitions);
    default:
      return false;
  }
}

void ExchangeOp::LaunchOne(Executor& ex) {
  size_t i = next_++;
  ++outstanding_;
  if (phase_ == Phase::kSample) {
    auto ref = lumen::Task(SampleTask).Remote(spec_.keys, int64_t{64}, collected_[i].ref);
    ex.Submit(this, ref, static_cast<int64_t>(i), 4096);
  } else if (phase_ == Phase::kMap) {
    const RefBundle& b = collected_[i];
    auto ref = lumen::Task(PartitionTask)
                   .Remote(spec_, static_cast<int64_t>(i), first_rows_[i], total_rows_, b.ref);
    ex.Submit(this, ref, static_cast<int64_t>(i), b.meta.bytes);
  } else {
    std::vector<lumen::ObjectRef<Buffer>> outs;
    for (size_t k = 0; k < map_outputs_.size(); ++k) {
      if (map_outputs_[k].IsNil()) continue;
      if (spec_.rows_per_partition > 0) {  // only the blocks that hold rows of partition i
        const int64_t begin = first_rows_[k];
        const int64_t end = k + 1 < first_rows_.size() ? first_rows_[k + 1] : total_rows_;
        const int64_t lo = static_cast<int64_t>(i) * spec_.rows_per_partition;
        const int64_t hi = lo + spec_.rows_per_partition;
        if (end <= lo || begin >= hi) continue;
      }
      outs.push_back(map_outputs_[k]);
    }
    auto ref = lumen::Task(ReduceTask).Remote(spec_, static_cast<int64_t>(i), outs);
    int64_t est = total_rows_ > 0 ? 1 << 20 : 0;
    uint64_t token = 0;
    ex.Submit(this, ref, static_cast<int64_t>(i), est, &token);
    reduce_tokens_[token] = i;
  }
}

void ExchangeOp::OnTaskDone(Executor& ex, uint64_t token, RefBundle out) {
  --outstanding_;
  size_t i = static_cast<size_t>(out.meta.key.path.at(0));
  if (phase_ == Phase::kSample) {
    samples_[i] = std::move(out);
  } else if (phase_ == Phase::kMap) {
    map_outputs_[i] = out.ref;
  } else {
    reduce_tokens_.erase(token);
    PhysicalOp::OnTaskEnd(ex, token);
    Release(ex, token, i, std::move(out));
  }
  if (outstanding_ == 0 && !WantsToLaunch() && phase_ != Phase::kDone) Advance(ex);
}

void ExchangeOp::Release(Executor& ex, uint64_t token, size_t partition,
                         std::optional<RefBundle> out) {
  held_.emplace(partition, std::move(out));
  for (auto it = held_.find(next_out_); it != held_.end(); it = held_.find(++next_out_)) {
    if (it->second) PhysicalOp::OnOutput(ex, token, std::move(*it->second));
    held_.erase(it);
  }
}

FailureAction ExchangeOp::OnTaskFailed(Executor& ex, uint64_t token, const lumen::Error& error) {
  --outstanding_;
  if (auto it = reduce_tokens_.find(token); it != reduce_tokens_.end()) {
    const size_t partition = it->second;
    reduce_tokens_.erase(it);
    Release(ex, token, partition, std::nullopt);  // the partitions after it go on
  }
  if (outstanding_ == 0 && !WantsToLaunch() && phase_ != Phase::kDone) Advance(ex);
  return FailureAction::kRecord;
}

bool ExchangeOp::Finished() const { return phase_ == Phase::kDone && running_ == 0; }

std::optional<BlockKey> ExchangeOp::LowestFutureKey(const Executor& ex) const {
  return ReducerLowestKey(ex, this, Finished(), phase_ == Phase::kReduce, phase_ == Phase::kDone,
                          next_, spec_.partitions);
}

// ---- Executor --------------------------------------------------------------------------------

Executor::Executor(std::vector<std::unique_ptr<PhysicalOp>> ops, ExecutionOptions options)
    : ops_(std::move(ops)), options_(std::move(options)), events_(std::make_shared<EventQueue>()) {
  budget_ = options_.memory_budget_bytes;
  if (budget_ <= 0) {
    int64_t capacity = lumen::GetObjectStoreStats().capacity;
    budget_ = std::max<int64_t>(capacity / 4, 64 << 20);
  }
  std::vector<PhysicalOp*> raw;
  for (auto& op : ops_) raw.push_back(op.get());
  progress_ =
      std::make_unique<ProgressReporter>(raw, options_.progress, options_.progress_interval_ms);
  start_ = last_progress_ = Clock::now();
  for (auto& op : ops_) {
    if (Chain* c = op->chain_ptr()) c->max_block_bytes = options_.target_max_block_bytes;
  }
  const lumen::ClusterResourceSummary cluster = lumen::GetClusterResources();
  CheckResources(cluster);
  auto cpus = cluster.total.find("CPU");
  cluster_cpus_ = std::max(1, static_cast<int>(cpus == cluster.total.end() ? 1 : cpus->second));
  if (options_.progress) ReportIgnoredFiles();
  for (auto& op : ops_) op->Start(*this);
}

Executor::~Executor() {
  // Late callbacks find the queue but nobody to wake: harmless.
  MutexLock lock(events_->mu);
  events_->done.clear();
}

uint64_t Executor::AddPending(Pending p, uint64_t* token_out) {
  uint64_t token = NewToken();
  if (token_out) *token_out = token;
  PhysicalOp* op = p.op;
  if (!op->started) {
    op->started = true;
    op->first_start = Clock::now();
  }
  ++op->running_;
  p.started = Clock::now();
  pending_.emplace(token, std::move(p));
  return token;
}

std::function<void()> Executor::Notifier(uint64_t token) const {
  std::weak_ptr<EventQueue> weak = events_;
  return [weak, token] {
    auto q = weak.lock();
    if (!q) return;  // the executor is gone
    MutexLock lock(q->mu);
    q->done.push_back(token);
    q->cv.NotifyOne();
  };
}

void Executor::Submit(PhysicalOp* op, const lumen::ObjectRef<Buffer>& ref, int64_t index,
                      int64_t est_bytes, uint64_t* token_out) {
  Pending p;
  p.op = op;
  p.ref = ref;
  p.key = BlockKey::Of(index);
  p.est_bytes = est_bytes;
  lumen::internal::OnObjectReady(ref.ID(), Notifier(AddPending(std::move(p), token_out)));
}

void Executor::SubmitStream(PhysicalOp* op, lumen::ObjectRefStream<Buffer> stream,
                            const BlockKey& key, int64_t est_bytes, const TaskInput& input,
                            uint64_t* token_out, int64_t skip) {
  Pending p;
  p.op = op;
  p.key = key;
  p.est_bytes = est_bytes;
  p.input = input;
  p.stream = std::make_shared<lumen::ObjectRefStream<Buffer>>(std::move(stream));
  p.skip = skip;
  const TaskID task = p.stream->task_id();
  lumen::internal::OnStreamReady(task, Notifier(AddPending(std::move(p), token_out)));
}

void Executor::WatchStream(uint64_t token, const Pending& p) {
  lumen::internal::OnStreamReady(p.stream->task_id(), Notifier(token));
}

BlockMeta Executor::ReadMeta(const lumen::ObjectRef<Buffer>& ref, const BlockKey& key) {
  Buffer buf = lumen::Get(ref);
  Batch b = Batch::FromBuffer(buf);
  BlockMeta m;
  m.key = key;
  m.rows = b.NumRows();
  m.bytes = b.SizeBytes();
  m.exec = b.exec_stats();
  m.node = lumen::internal::ObjectLocation(ref.ID());
  return m;
}

void Executor::RecordError(PhysicalOp* op, const BlockKey& key, const std::string& message) {
  ++errors_;
  std::string what = "operator " + op->name() + " failed on block " + key.Label() + ": " + message;
  if (errors_ > options_.max_errored_blocks) {
    fatal_ = what + (options_.max_errored_blocks > 0
                         ? " (more than max_errored_blocks=" +
                               std::to_string(options_.max_errored_blocks) + " blocks failed)"
                         : "");
    return;
  }
  op->stats().errored_blocks.push_back("block " + key.Label() + ": " + message);
}

std::optional<BlockKey> Executor::LowestRunningKey(const PhysicalOp* op) const {
  std::optional<BlockKey> bound;
  for (const auto& [t, p] : pending_) {
    if (p.op != op) continue;
    BlockKey k = p.stream ? p.key.Part(p.parts) : p.key;  // parts come in order
    if (!bound || k < *bound) bound = std::move(k);
  }
  return bound;
}

void Executor::Failed(uint64_t token, Pending& p, const lumen::Error& e) {
  --p.op->running_;
  p.op->last_end = Clock::now();
  if (p.op->OnTaskFailed(*this, token, e) == FailureAction::kRecord) {
    ++p.op->blocks_done;
    RecordError(p.op, p.key, e.what());
  }
}

void Executor::ShowLive(Pending& p, bool over) {
  const int64_t live = over || p.skip > 0 ? 0 : std::max<int64_t>(0, p.rows_done - p.rows_counted);
  p.op->live_rows_in += live - p.live_shown;
  p.live_shown = live;
}

bool Executor::DrainStream(uint64_t token, Pending& p) {
  // Items come in pairs — a block, then its BlockInfo — and a failure ends the stream with
  // its error as one more item: in a block's place (known only when nothing follows it), or in
  // the info's place (reading it throws). A block is never fetched here.
  while (lumen::internal::StreamReady(p.stream->task_id())) {
    std::optional<lumen::ObjectRef<Buffer>> item;
    try {
      item = p.stream->Next();
    } catch (const lumen::Error& e) {
      Failed(token, p, e);
      return true;
    }
    if (!item) {
      if (p.block) {
        try {
          lumen::Get(*p.block);  // the error the task ended with
          throw DataError("a task's stream ended with a block and no figures");
        } catch (const lumen::Error& e) {
          Failed(token, p, e);
        }
        return true;
      }
      --p.op->running_;
      p.op->OnTaskEnd(*this, token);
      return true;
    }
    if (!p.block) {
      p.block = std::move(*item);
      continue;
    }
    BlockInfo info;
    std::string note;
    try {
      info = DecodeBlockInfo(lumen::Get(*item), &note);
    } catch (const lumen::Error& e) {
      Failed(token, p, e);
      return true;
    }
    if (info.rows == BlockInfo::kSkipRecord) {  // after an empty block, not a block
      p.block.reset();
      auto& skipped = p.op->stats().skipped_inputs;  // a re-run reports its skips again
      if (std::find(skipped.begin(), skipped.end(), note) == skipped.end()) {
        constexpr size_t kShown = 5;  // all of them are in Stats()
        if (skipped.size() < kShown) {
          std::fprintf(stderr, "lumen::data: %s skips %s (OnError::kSkip)\n", p.op->name().c_str(),
                       note.c_str());
        } else if (skipped.size() == kShown) {
          std::fprintf(stderr, "lumen::data: %s skips more inputs; Stats() lists them all\n",
                       p.op->name().c_str());
        }
        skipped.push_back(std::move(note));
      }
      continue;
    }
    if (info.rows == BlockInfo::kProgressRecord) {  // after an empty block, not a block
      p.block.reset();
      p.rows_done = std::max(p.rows_done, info.rows_in);
      ShowLive(p);
      continue;
    }
    RefBundle out;
    out.ref = std::move(*p.block);
    p.block.reset();
    out.meta.key = p.key.Part(p.parts);
    if (p.parts++ < p.skip) continue;  // passed on by an earlier run of the same work
    p.rows_counted += info.rows_in;
    ShowLive(p);
    out.meta.rows = info.rows;
    out.meta.bytes = info.bytes;
    out.meta.exec = {.wall_us = info.wall_us,
                     .cpu_us = info.cpu_us,
                     .rows_in = info.rows_in,
                     .bytes_in = info.bytes_in};
    out.meta.user_code_us = info.user_code_us;
    out.meta.node = lumen::internal::ObjectLocation(out.ref.ID());
    p.est_bytes = std::max<int64_t>(0, p.est_bytes - info.bytes);
    if (!p.input.node.IsNil() && !out.meta.node.IsNil() && p.input.node != out.meta.node) {
      p.op->stats().bytes_moved += p.input.bytes;  // made on another node than its input's
      p.input.node = NodeID::Nil();                // (counted once per task)
    }
    p.op->OnOutput(*this, token, std::move(out));
  }
  WatchStream(token, p);
  return false;
}

void Executor::ProcessEvents() {
  std::deque<uint64_t> done;
  {
    MutexLock lock(events_->mu);
    done.swap(events_->done);
  }
  for (uint64_t token : done) {
    auto it = pending_.find(token);
    if (it == pending_.end()) continue;
    last_progress_ = Clock::now();
    if (it->second.stream) {
      if (DrainStream(token, it->second)) {
        ShowLive(it->second, /*over=*/true);
        pending_.erase(token);
      }
      continue;
    }
    Pending p = std::move(it->second);
    pending_.erase(it);
    --p.op->running_;
    RefBundle out;
    try {
      out.meta = ReadMeta(p.ref, p.key);
      out.ref = p.ref;
    } catch (const lumen::Error& e) {
      ++p.op->running_;  // Failed counts it down
      Failed(token, p, e);
      continue;
    }
    p.op->OnTaskDone(*this, token, std::move(out));
  }
}

void Executor::StopUpstreamOf(PhysicalOp* op) {
  for (PhysicalOp* up : op->upstreams) {
    if (!up->stopped()) up->Stop();
    StopUpstreamOf(up);
  }
}

void Executor::MoveBlocks() {
  for (size_t i = 0; i + 1 < ops_.size(); ++i) {
    PhysicalOp* op = ops_[i].get();
    PhysicalOp* down = op->downstream;
    if (!down) continue;
    size_t slot = static_cast<size_t>(
        std::find(down->upstreams.begin(), down->upstreams.end(), op) - down->upstreams.begin());
    while (!op->outputs().empty()) {
      down->AddInput(std::move(op->outputs().front()), slot);
      op->outputs().pop_front();
      if (auto* limit = dynamic_cast<LimitOp*>(down); limit && limit->reached()) {
        StopUpstreamOf(limit);
      }
    }
    if (op->Finished() && !signaled_done_.count(op)) {
      signaled_done_.insert(op);
      down->UpstreamDone(*this, slot);
    }
  }
}

int64_t Executor::BudgetUsed() const {
  int64_t used = 0;
  for (const auto& op : ops_) used += op->HeldBytes();
  for (const auto& [t, p] : pending_) used += p.est_bytes + p.input.bytes;
  return used;
}

void Executor::Schedule() {
  int64_t used = BudgetUsed();
  for (auto it = ops_.rbegin(); it != ops_.rend(); ++it) {  // downstream first: frees memory
    PhysicalOp* op = it->get();
    op->Adjust(*this);
    while (op->WantsToLaunch()) {
      // Until one of its tasks has ended its output size is a guess: a wrong one must not
      // launch the whole input at once.
      if (op->stats().tasks == 0 && op->running() >= op->FirstWave(cluster_cpus_)) break;
      int64_t est = op->EstimateOutputBytes();
      if (used + est > budget_ && !pending_.empty() && !op->LaunchesOverBudget()) break;
      op->LaunchOne(*this);
      used += est;
    }
  }
  peak_bytes_ = std::max(peak_bytes_, BudgetUsed());
}

std::optional<RefBundle> Executor::TakeOutput() {
  PhysicalOp* out = ops_.back().get();
  if (!options_.preserve_order) {
    if (out->outputs().empty()) return std::nullopt;
    RefBundle b = std::move(out->outputs().front());
    out->outputs().pop_front();
    return b;
  }
  while (!out->outputs().empty()) {
    RefBundle b = std::move(out->outputs().front());
    out->outputs().pop_front();
    BlockKey key = b.meta.key;
    reorder_.emplace(std::move(key), std::move(b));
  }
  auto it = reorder_.begin();
  if (it == reorder_.end()) return std::nullopt;
  // The lowest block held goes once nothing upstream can still make a lower one (a failed
  // block simply never comes).
  std::optional<BlockKey> bound = out->LowestFutureKey(*this);
  if (bound && *bound < it->first) return std::nullopt;
  RefBundle b = std::move(it->second);
  reorder_.erase(it);
  return b;
}

void Executor::ReportIgnoredFiles() const {
  constexpr size_t kShown = 5;
  for (const auto& op : ops_) {
    const auto& ignored = op->stats().ignored_files;
    if (ignored.empty()) continue;
    std::string msg = "lumen::data: " + op->name() + " skips " +
                      Plural(static_cast<int64_t>(ignored.size()), "input") +
                      " that cannot be read (ReadOptions::ignore_missing_files):";
    for (size_t i = 0; i < std::min(ignored.size(), kShown); ++i) msg += "\n  " + ignored[i];
    if (ignored.size() > kShown)
      msg += "\n  ... and " + std::to_string(ignored.size() - kShown) + " more";
    std::fprintf(stderr, "%s\n", msg.c_str());
  }
}

void Executor::CheckResources(lumen::ClusterResourceSummary cluster) const {
  std::map<std::string, double> reserved;
  std::string pools;
  for (const auto& op : ops_) {
    for (const auto& [k, v] : op->Reserved()) {
      reserved[k] += v;
      pools += (pools.empty() ? "" : ", ") + op->name();
    }
  }
  auto fmt = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", v);
    return std::string(buf);
  };
  for (const auto& [k, v] : reserved) {
    if (v > cluster.total[k] + 1e-9) {
      throw DataError("the actor pools (" + pools + ") need " + fmt(v) + " " + k +
                      " but the cluster has " + fmt(cluster.total[k]) +
                      ": lower their concurrency or num_cpus / num_gpus");
    }
  }
  for (const auto& op : ops_) {
    for (const auto& [k, need] : op->PerTask()) {
      double left = cluster.total[k] - reserved[k];
      if (need > left + 1e-9) {
        throw DataError("operator " + op->name() + " needs " + fmt(need) + " " + k +
                        " per task but only " + fmt(left) + " of the cluster's " +
                        fmt(cluster.total[k]) + " are left beside the actor pools (" + pools +
                        "): its tasks could never run. Lower the pools' concurrency or "
                        "num_cpus, or the operator's num_cpus");
      }
    }
  }
}

void Executor::CheckStall() {
  auto now = Clock::now();
  if (pending_.empty() ||
      now - last_progress_ < std::chrono::milliseconds(options_.stall_report_ms)) {
    return;
  }
  std::string report = "lumen::data: no progress for " +
                       std::to_string(static_cast<int>(Seconds(now - last_progress_))) +
                       " s; waiting on:";
  for (const auto& op : ops_) {
    if (op->running() == 0 && op->inputs().empty()) continue;
    double oldest = 0;
    for (const auto& [t, p] : pending_) {
      if (p.op == op.get()) oldest = std::max(oldest, Seconds(now - p.started));
    }
    report += "\n  " + op->name() + ": " + std::to_string(op->running()) +
              " tasks running (oldest for " + std::to_string(static_cast<int>(oldest)) + " s), " +
              std::to_string(op->inputs().size()) + " blocks queued";
    if (auto* pool = dynamic_cast<ActorPoolOp*>(op.get()))
      report += " (" + pool->ActorSummary() + ")";
  }
  report += "\n  memory: " + HumanBytes(BudgetUsed()) + " of " + HumanBytes(budget_) + " budget";
  std::fprintf(stderr, "%s\n", report.c_str());
  last_progress_ = now;  // report again after another interval
}

std::optional<RefBundle> Executor::Next() {
  while (true) {
    if (fatal_) throw DataError(*fatal_);
    ProcessEvents();
    if (fatal_) throw DataError(*fatal_);
    MoveBlocks();
    if (auto b = TakeOutput()) return b;
    Schedule();
    MoveBlocks();
    if (auto b = TakeOutput()) return b;
    PhysicalOp* out = ops_.back().get();
    if (out->Finished() && out->outputs().empty() && reorder_.empty() && pending_.empty()) {
      if (!finished_) {
        finished_ = true;
        progress_->Finish(0, budget_);
      }
      return std::nullopt;
    }
    {
      MutexLock lock(events_->mu);
      events_->cv.WaitFor(events_->mu, progress_->TickEvery(),
                          [this]() LUMEN_REQUIRES(events_->mu) { return !events_->done.empty(); });
    }
    progress_->Tick(BudgetUsed(), budget_);
    CheckStall();
  }
}

void Executor::CancelAndWait(std::chrono::milliseconds limit) {
  for (auto& [token, p] : pending_) {
    try {
      if (p.stream) {
        lumen::internal::CancelStream(p.stream->task_id());
      } else {
        lumen::Cancel(p.ref);
      }
    } catch (const lumen::Error&) {
      // Already over: its end is on its way to the event queue.
    }
  }
  const auto deadline = Clock::now() + limit;
  while (!pending_.empty() && Clock::now() < deadline) {
    ProcessEvents();  // failures only add to the error already being reported
    MutexLock lock(events_->mu);
    events_->cv.WaitFor(events_->mu, std::chrono::milliseconds(200),
                        [this]() LUMEN_REQUIRES(events_->mu) { return !events_->done.empty(); });
  }
}

DatasetStats Executor::Stats() const {
  DatasetStats s;
  for (const auto& op : ops_) {
    OperatorStats o = op->stats();
    o.name = op->name();
    if (op->started && op->last_end > op->first_start)
      o.wall_s = Seconds(op->last_end - op->first_start);
    s.operators.push_back(std::move(o));
  }
  s.wall_s = Seconds(Clock::now() - start_);
  s.peak_memory_bytes = peak_bytes_;
  return s;
}

ExecutionHandle::~ExecutionHandle() {
  if (ex_ && stats_sink_) *stats_sink_ = ex_->Stats();
}

std::optional<RefBundle> ExecutionHandle::Next() {
  auto b = ex_->Next();
  if (!b && stats_sink_) *stats_sink_ = ex_->Stats();
  return b;
}

}  // namespace lumen::data::internal
