#include "node/worker_pool.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/fs.h"
#include "common/logging.h"
#include "common/process.h"

namespace lumen::node {
namespace {

// True when the kernel is already tearing `pid` down (PF_EXITING in /proc/<pid>/stat), e.g. a
// worker SIGKILLed from outside whose sockets closed before it became a zombie.
bool ProcessIsExiting(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return true;  // gone
  size_t close = stat.rfind(')');            // the command name may hold spaces
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 2));
  std::string state;
  unsigned long ppid, pgrp, session, tty, tpgid, flags;
  if (!(fields >> state >> ppid >> pgrp >> session >> tty >> tpgid >> flags)) return false;
  constexpr unsigned long kPfExiting = 0x4;
  return state == "Z" || state == "X" || (flags & kPfExiting) != 0;
}

}  // namespace

WorkerPool::WorkerPool(rpc::EventLoop* loop, Env env, DeathCallback on_death)
    : loop_(loop), env_(std::move(env)), on_death_(std::move(on_death)) {}

WorkerPool::~WorkerPool() {
  KillAll();
  for (auto& [id, p] : pidfds_) ::close(p.first);
}

void WorkerPool::AddJob(JobConfig config) {
  JobID job = config.job;
  jobs_[job] = std::move(config);
}

std::set<WorkerID> WorkerPool::RemoveJob(const JobID& job) {
  std::vector<WorkerID> ids;
  std::set<WorkerID> detached;
  for (const auto& [id, w] : workers_) {
    if (w->job != job || w->state == WorkerProc::State::kDead) continue;
    if (w->detached) {
      detached.insert(id);
    } else {
      ids.push_back(id);
    }
  }
  if (detached.empty()) jobs_.erase(job);
  for (const auto& id : ids) Kill(id, "its job finished");
  return detached;
}

StatusOr<WorkerProc*> WorkerPool::StartWorker(const JobID& job, const std::string& devices,
                                              const WorkerEnv& worker_env) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) {
    return FailedPreconditionError("job " + std::to_string(job.ToInt()) +
                                   " has not been started on this node");
  }
  const JobConfig& cfg = it->second;
  auto w = std::make_unique<WorkerProc>();
  w->id = WorkerID::FromRandom();
  w->job = job;
  w->devices = devices;
  w->env_key = worker_env.key;
  w->since = std::chrono::steady_clock::now();
  // Lumen's malloc settings first (process.h), unless the daemon's environment has its own;
  // the job's and the runtime_env's variables replace them.
  std::vector<std::string> overrides;
  if (std::getenv("GLIBC_TUNABLES") == nullptr) {
    overrides.push_back(std::string("GLIBC_TUNABLES=") + kWorkerMallocTunables);
  }
  overrides.insert(overrides.end(), cfg.env.begin(), cfg.env.end());
  // The runtime_env's variables, then Lumen's own (which they cannot replace).
  overrides.insert(overrides.end(), worker_env.vars.begin(), worker_env.vars.end());
  if (!worker_env.encoded.empty()) overrides.push_back("LUMEN_RUNTIME_ENV=" + worker_env.encoded);
  // Set once at start, never per task: setenv in a running multi-threaded worker is undefined
  // behaviour and would race with its actor threads.
  if (env_.has_gpus) overrides.push_back("CUDA_VISIBLE_DEVICES=" + devices);
  overrides.push_back("LUMEN_ROLE=worker");
  overrides.push_back("LUMEN_NODE_ADDRESS=" + env_.node_address);
  overrides.push_back("LUMEN_GCS_ADDRESS=" + env_.gcs_address);
  overrides.push_back("LUMEN_TOKEN=" + env_.token);
  overrides.push_back("LUMEN_SESSION_DIR=" + env_.session_dir);
  overrides.push_back("LUMEN_NODE_ID=" + env_.node_id.Hex());
  overrides.push_back("LUMEN_NODE_IP=" + env_.node_ip);
  overrides.push_back("LUMEN_MIN_WORKER_PORT=" + std::to_string(env_.min_worker_port));
  overrides.push_back("LUMEN_MAX_WORKER_PORT=" + std::to_string(env_.max_worker_port));
  overrides.push_back("LUMEN_WORKER_ID=" + w->id.Hex());
  overrides.push_back("LUMEN_JOB_ID=" + std::to_string(job.ToInt()));
  overrides.push_back("LUMEN_PARENT_PID=" + std::to_string(::getpid()));
  SpawnOptions opts;
  opts.argv = cfg.argv;
  if (opts.argv.empty()) opts.argv.push_back(cfg.binary);
  opts.argv[0] = cfg.binary;
  opts.env = EnvironmentWith(overrides);
  opts.cwd = worker_env.cwd.empty() ? cfg.cwd : worker_env.cwd;
  const std::string stem =
      JoinPath(JoinPath(env_.session_dir, "logs"),
               "worker-" + std::to_string(job.ToInt()) + "-" + w->id.Hex().substr(0, 8));
  w->out_path = stem + ".out";
  w->err_path = stem + ".err";
  opts.log_path = w->out_path;
  opts.err_path = w->err_path;
  LUMEN_ASSIGN_OR_RETURN(ChildProcess child, SpawnProcess(opts));
  w->pid = child.pid;
  WorkerID id = w->id;
  if (child.pidfd >= 0) {
    uint64_t watch = loop_->Watch(child.pidfd, EPOLLIN, [this, id](uint32_t) { OnExit(id); });
    pidfds_[id] = {child.pidfd, watch};
  } else if (!poll_timer_) {
    poll_timer_ = loop_->RunAfter(std::chrono::milliseconds(100), [this] { PollExits(); });
  }
  LUMEN_LOG(INFO) << "started worker " << id.Hex() << " pid " << child.pid << " for job "
                  << job.ToInt();
  WorkerProc* raw = w.get();
  workers_[id] = std::move(w);
  if (on_start_) on_start_(*raw);
  return raw;
}

WorkerProc* WorkerPool::Register(const WorkerID& id, const rpc::ConnectionPtr& conn,
                                 const proto::Address& address) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second->state != WorkerProc::State::kStarting) return nullptr;
  WorkerProc* w = it->second.get();
  w->conn = conn;
  w->address = address;
  w->state = WorkerProc::State::kIdle;
  w->since = std::chrono::steady_clock::now();
  return w;
}

WorkerProc* WorkerPool::PopIdle(const JobID& job, const std::string& devices,
                                const std::string& env_key) {
  WorkerProc* best = nullptr;
  for (auto& [id, w] : workers_) {
    if (w->job == job && w->devices == devices && w->env_key == env_key &&
        w->state == WorkerProc::State::kIdle && w->conn && !w->conn->closed()) {
      if (!best || w->since > best->since) best = w.get();  // most recently used: warm caches
    }
  }
  return best;
}

void WorkerPool::MakeIdle(WorkerProc* w) {
  if (w->state == WorkerProc::State::kDead) return;
  w->state = WorkerProc::State::kIdle;
  w->lease_id = 0;
  w->blocked = false;
  w->since = std::chrono::steady_clock::now();
}

WorkerProc* WorkerPool::Find(const WorkerID& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

void WorkerPool::Kill(const WorkerID& id, const std::string& reason) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second->state == WorkerProc::State::kDead) return;
  if (OnExit(id)) return;  // already dead on its own: keep its real cause
  // Dying but not yet reaped: whatever killed it, it was not us.
  if (!ProcessIsExiting(it->second->pid)) it->second->kill_reason = reason;
  ::kill(it->second->pid, SIGKILL);
}

void WorkerPool::KillAll() {
  for (auto& [id, w] : workers_) {
    if (w->state != WorkerProc::State::kDead) {
      w->kill_reason = "node shutting down";
      ::kill(w->pid, SIGKILL);
    }
  }
  // Reap synchronously so no zombie outlives the daemon.
  for (auto& [id, w] : workers_) {
    if (w->state != WorkerProc::State::kDead) {
      int status;
      ::waitpid(w->pid, &status, 0);
      w->state = WorkerProc::State::kDead;
    }
  }
}

bool WorkerPool::OnExit(const WorkerID& id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return true;
  WorkerProc& w = *it->second;
  int status = 0;
  pid_t r = ::waitpid(w.pid, &status, WNOHANG);
  if (r == 0) return false;  // still running
  auto fd = pidfds_.find(id);
  if (fd != pidfds_.end()) {
    loop_->Unwatch(fd->second.second);
    ::close(fd->second.first);
    pidfds_.erase(fd);
  }
  std::string desc = r < 0 ? "exited (status unknown)" : DescribeExit(status);
  if (!w.kill_reason.empty()) desc += " (killed by the node: " + w.kill_reason + ")";
  LUMEN_LOG(INFO) << "worker " << id.Hex() << " pid " << w.pid << " " << desc;
  exits_[id] = desc;
  exit_order_.push_back(id);
  while (exit_order_.size() > 10000) {
    exits_.erase(exit_order_.front());
    exit_order_.pop_front();
  }
  WorkerProc copy = w;
  w.state = WorkerProc::State::kDead;
  workers_.erase(id);
  on_death_(copy, desc);
  return true;
}

void WorkerPool::PollExits() {
  poll_timer_ = 0;
  std::vector<WorkerID> ids;
  for (const auto& [id, w] : workers_) {
    if (!pidfds_.count(id)) ids.push_back(id);
  }
  for (const auto& id : ids) OnExit(id);
  bool any = false;
  for (const auto& [id, w] : workers_) any |= !pidfds_.count(id);
  if (any) poll_timer_ = loop_->RunAfter(std::chrono::milliseconds(100), [this] { PollExits(); });
}

std::string WorkerPool::ExitDescription(const WorkerID& id) const {
  auto it = exits_.find(id);
  return it == exits_.end() ? "" : it->second;
}

int WorkerPool::NumStarting(const JobID& job, const std::string& devices,
                            const std::string& env_key) const {
  int n = 0;
  for (const auto& [id, w] : workers_)
    n += w->job == job && w->devices == devices && w->env_key == env_key &&
         w->state == WorkerProc::State::kStarting;
  return n;
}

int WorkerPool::NumNonActorWorkers() const {
  int n = 0;
  for (const auto& [id, w] : workers_) {
    // Workers blocked in Get/Wait do not count: their tasks wait for new ones.
    n += w->state != WorkerProc::State::kActor && w->state != WorkerProc::State::kDead &&
         !w->blocked;
  }
  return n;
}

std::vector<const WorkerProc*> WorkerPool::All() const {
  std::vector<const WorkerProc*> out;
  for (const auto& [id, w] : workers_) out.push_back(w.get());
  return out;
}

void WorkerPool::TrimIdle(size_t keep, std::chrono::milliseconds idle_for) {
  std::vector<WorkerProc*> idle;
  for (auto& [id, w] : workers_) {
    if (w->state == WorkerProc::State::kIdle) idle.push_back(w.get());
  }
  if (idle.size() <= keep) return;
  std::sort(idle.begin(), idle.end(),
            [](const WorkerProc* a, const WorkerProc* b) { return a->since < b->since; });
  auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i + keep < idle.size(); ++i) {
    if (now - idle[i]->since > idle_for) Kill(idle[i]->id, "idle");
  }
}

}  // namespace lumen::node
