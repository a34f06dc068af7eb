// Worker processes of one node: starts them (the job's own binary with a worker role in its
// environment), tracks registration, idleness and exit, and reaps them. Exit is detected
// through a pidfd watched by the loop, so a crash (segfault, abort, kill -9) is seen at once.
//
// Thread safety: not thread-safe; owned by the node daemon's loop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/status.h"
#include "lumen/ids.h"

namespace lumen::node {

struct JobConfig {
  JobID job;
  std::string binary;
  std::vector<std::string> argv;
  std::string cwd;
  std::vector<std::string> env;  // KEY=VALUE for workers
};

// How a worker's process differs from its job's defaults (a runtime_env).
struct WorkerEnv {
  std::string key;                // identifies it (empty: the job's defaults)
  std::vector<std::string> vars;  // KEY=VALUE set in its environment
  std::string cwd;                // its working directory (empty: the job's)
  std::string encoded;            // LUMEN_RUNTIME_ENV: what its own submissions inherit
};

struct WorkerProc {
  enum class State { kStarting, kIdle, kLeased, kActor, kDead };
  WorkerID id;
  pid_t pid = -1;
  JobID job;
  State state = State::kStarting;
  rpc::ConnectionPtr conn;  // its registration connection to this daemon
  proto::Address address;
  uint64_t lease_id = 0;
  bool blocked = false;
  ActorID actor;
  bool detached = false;  // hosts a detached actor: outlives its job
  // CUDA_VISIBLE_DEVICES it was started with (on a node with GPUs): fixed for its life, so a
  // worker only takes leases of the same GPU instances.
  std::string devices;
  std::string env_key;  // WorkerEnv::key it was started with: leases of that env only
  std::chrono::steady_clock::time_point since;  // start, or last became idle
  std::string kill_reason;                      // set when this daemon killed it
  std::string out_path, err_path;               // its stdout and stderr, in the session's logs
};

class WorkerPool {
 public:
  // Per-worker settings the daemon puts in every worker's environment.
  struct Env {
    std::string node_address;  // unix:<path>
    std::string gcs_address;
    std::string token;
    std::string session_dir;
    NodeID node_id;
    std::string node_ip;  // workers listen on and advertise it
    int min_worker_port = 0;
    int max_worker_port = 0;
    bool has_gpus = false;  // workers get CUDA_VISIBLE_DEVICES (empty: no GPU) at start
  };
  using DeathCallback = std::function<void(const WorkerProc& w, const std::string& description)>;

  WorkerPool(rpc::EventLoop* loop, Env env, DeathCallback on_death);
  ~WorkerPool();
  // Called (on the loop thread) for each worker process just started.
  void set_on_start(std::function<void(const WorkerProc& w)> cb) { on_start_ = std::move(cb); }

  void AddJob(JobConfig config);
  bool HasJob(const JobID& job) const { return jobs_.count(job) > 0; }
  // Kills every worker of the job but those of detached actors, which it returns; forgets the
  // job unless there are such (their restarts start workers of the job again).
  std::set<WorkerID> RemoveJob(const JobID& job);

  // Starts a worker that sees GPU instances `devices` ("0,1"; "" for none) for its whole life.
  StatusOr<WorkerProc*> StartWorker(const JobID& job, const std::string& devices = "",
                                    const WorkerEnv& env = {});
  // Matches a registering process to the worker started for it.
  WorkerProc* Register(const WorkerID& id, const rpc::ConnectionPtr& conn,
                       const proto::Address& address);
  // The most recently used idle worker of `job` started with `devices` in environment
  // `env_key`, or null.
  WorkerProc* PopIdle(const JobID& job, const std::string& devices,
                      const std::string& env_key = "");
  void MakeIdle(WorkerProc* w);
  WorkerProc* Find(const WorkerID& id);
  void Kill(const WorkerID& id, const std::string& reason);
  void KillAll();

  // Exit description of a worker that died recently ("killed by signal 9 (SIGKILL)"), or empty.
  std::string ExitDescription(const WorkerID& id) const;

  int NumStarting(const JobID& job, const std::string& devices,
                  const std::string& env_key = "") const;
  // Non-actor workers that are not blocked waiting for other tasks.
  int NumNonActorWorkers() const;
  std::vector<const WorkerProc*> All() const;
  // Stops idle workers above `keep` that have been idle longer than `idle_for`.
  void TrimIdle(size_t keep, std::chrono::milliseconds idle_for);

 private:
  // Reaps the worker if it exited; returns false if it is still running.
  bool OnExit(const WorkerID& id);
  void PollExits();

  rpc::EventLoop* const loop_;
  const Env env_;
  DeathCallback on_death_;
  std::function<void(const WorkerProc& w)> on_start_;
  std::unordered_map<JobID, JobConfig> jobs_;
  std::unordered_map<WorkerID, std::unique_ptr<WorkerProc>> workers_;
  std::unordered_map<WorkerID, std::pair<int, uint64_t>> pidfds_;  // id -> (pidfd, watch)
  std::map<WorkerID, std::string> exits_;                          // recent exit descriptions
  std::deque<WorkerID> exit_order_;
  uint64_t poll_timer_ = 0;
};

}  // namespace lumen::node
