#include "node/memory_monitor.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "common/fs.h"
#include "common/logging.h"

namespace lumen::node {

namespace {

// A killed worker whose death was never reported (the daemon lost track of the process) stops
// the monitor only this long.
constexpr auto kMaxDeathWait = std::chrono::seconds(30);
// "Nothing to kill" is logged at most this often while memory stays past the threshold.
constexpr auto kNothingToKillLogPeriod = std::chrono::seconds(10);
// How many kills KilledForMemory remembers (owners ask soon after the death).
constexpr size_t kKillsRemembered = 10000;

std::optional<int64_t> ParseInt(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// The value of "<key><separator><number>..." at the start of a line of `text`.
std::optional<int64_t> Field(std::string_view text, std::string_view key) {
  size_t at = 0;
  while (at < text.size()) {
    size_t eol = text.find('\n', at);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(at, eol - at);
    if (line.size() > key.size() && line.substr(0, key.size()) == key &&
        (line[key.size()] == ':' || line[key.size()] == ' ')) {
      line.remove_prefix(key.size() + 1);
      while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      line = line.substr(0, line.find(' '));
      return ParseInt(line);
    }
    at = eol + 1;
  }
  return std::nullopt;
}

}  // namespace

std::optional<MemoryUsage> ParseMeminfo(std::string_view meminfo) {
  auto total = Field(meminfo, "MemTotal");
  auto available = Field(meminfo, "MemAvailable");
  if (!total || !available || *total == 0) return std::nullopt;
  MemoryUsage u;
  u.total = *total * 1024;  // kB
  u.used = std::max<int64_t>(0, (*total - *available) * 1024);
  return u;
}

std::optional<MemoryUsage> ParseCgroupMemory(std::string_view max, std::string_view current,
                                             std::string_view stat) {
  auto limit = ParseInt(max);  // "max": no limit
  auto in_use = ParseInt(current);
  if (!limit || !in_use || *limit == 0) return std::nullopt;
  // Like the kernel's own accounting of what can be reclaimed: inactive file pages go first.
  const int64_t inactive = Field(stat, "inactive_file").value_or(0);
  MemoryUsage u;
  u.total = *limit;
  u.used = std::max<int64_t>(0, *in_use - inactive);
  return u;
}

MemoryUsage ReadMemoryUsage() {
  MemoryUsage best;
  if (auto text = ReadFile("/proc/meminfo"); text.ok()) {
    if (auto u = ParseMeminfo(*text)) best = *u;
  }
  // cgroup v2: "0::/path" in /proc/self/cgroup; the tightest limit on the way up counts.
  auto self = ReadFile("/proc/self/cgroup");
  if (!self.ok()) return best;
  size_t at = self->find("0::");
  if (at == std::string::npos) return best;
  std::string group = self->substr(at + 3, self->find('\n', at) - at - 3);
  while (true) {
    const std::string dir = "/sys/fs/cgroup" + (group == "/" ? "" : group);
    auto max = ReadFile(dir + "/memory.max");
    auto current = ReadFile(dir + "/memory.current");
    auto stat = ReadFile(dir + "/memory.stat");
    if (max.ok() && current.ok() && stat.ok()) {
      auto u = ParseCgroupMemory(*max, *current, *stat);
      if (u && (best.total == 0 || u->total < best.total)) best = *u;
    }
    if (group.empty() || group == "/") break;
    group = group.substr(0, group.rfind('/'));
    if (group.empty()) group = "/";
  }
  return best;
}

std::string DescribeMemoryUsage(const MemoryUsage& usage) {
  constexpr double kGiB = 1024.0 * 1024 * 1024;
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%.2f GiB of %.2f GiB (%.2f)", usage.used / kGiB,
                usage.total / kGiB, usage.Fraction());
  return buf;
}

std::optional<size_t> ChooseWorkerToKill(const std::vector<KillCandidate>& candidates) {
  std::optional<size_t> best;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const KillCandidate& c = candidates[i];
    if (!best) {
      best = i;
      continue;
    }
    const KillCandidate& b = candidates[*best];
    if (c.kind < b.kind || (c.kind == b.kind && c.started > b.started)) best = i;
  }
  return best;
}

MemoryMonitor::MemoryMonitor(rpc::EventLoop* loop, std::string node, double threshold,
                             std::chrono::milliseconds period, Hooks hooks)
    : loop_(loop),
      node_(std::move(node)),
      threshold_(threshold),
      period_(period),
      hooks_(std::move(hooks)) {}

MemoryMonitor::~MemoryMonitor() { Stop(); }

void MemoryMonitor::Start() {
  if (period_.count() <= 0 || threshold_ >= 1) return;
  Schedule();
}

void MemoryMonitor::Stop() {
  if (timer_) loop_->CancelTimer(timer_);
  timer_ = 0;
}

void MemoryMonitor::Schedule() {
  timer_ = loop_->RunAfter(period_, [this] {
    timer_ = 0;
    Check();
    Schedule();
  });
}

void MemoryMonitor::OnWorkerDied(const WorkerID& worker) {
  if (dying_ && *dying_ == worker) dying_.reset();
}

void MemoryMonitor::Check() {
  if (dying_) {
    if (std::chrono::steady_clock::now() - dying_since_ < kMaxDeathWait) return;  // not free yet
    dying_.reset();
  }
  const MemoryUsage usage = hooks_.read_usage();
  if (usage.total <= 0 || usage.Fraction() <= threshold_) return;
  const std::vector<KillCandidate> candidates = hooks_.candidates();
  const std::optional<size_t> chosen = ChooseWorkerToKill(candidates);
  char threshold[32];
  std::snprintf(threshold, sizeof(threshold), "%.2f", threshold_);
  const std::string over = "memory use on node " + node_ + " was " + DescribeMemoryUsage(usage) +
                           ", past LUMEN_MEMORY_USAGE_THRESHOLD=" + threshold;
  if (!chosen) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_nothing_to_kill_log_ > kNothingToKillLogPeriod) {
      last_nothing_to_kill_log_ = now;
      LUMEN_LOG(WARNING) << over << ", and no worker of this node runs a task or an actor";
    }
    return;
  }
  const KillCandidate& victim = candidates[*chosen];
  const char* what = victim.kind == KillCandidate::Kind::kRetriableTask ? "retriable tasks"
                     : victim.kind == KillCandidate::Kind::kTask ? "tasks that cannot be retried"
                                                                 : "actors";
  const std::string reason = "killed by the memory monitor: " + over +
                             "; it was the most recently started of the workers running " + what;
  LUMEN_LOG(WARNING) << "worker " << victim.worker.Hex() << " " << reason;
  dying_ = victim.worker;
  dying_since_ = std::chrono::steady_clock::now();
  if (killed_.insert(victim.worker).second) {
    kill_order_.push_back(victim.worker);
    if (kill_order_.size() > kKillsRemembered) {
      killed_.erase(kill_order_.front());
      kill_order_.pop_front();
    }
  }
  hooks_.kill(victim.worker, reason);
}

}  // namespace lumen::node
