#include "core_worker/task_submitter.h"

#include <algorithm>

#include "common/config.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"
#include "core_worker/core_worker.h"
#include "core_worker/generator_streams.h"
#include "core_worker/object_recovery.h"
#include "core_worker/peer_connections.h"
#include "core_worker/task_spec.h"
#include "node.pb.h"

namespace lumen::core {

void AppendTask(TaskEntry& task, std::string* payload) {
  if (task.wire.empty()) task.wire = task.spec.SerializeAsString();
  payload->push_back(static_cast<char>((1 << 3) | 2));  // field 1, length-delimited
  uint64_t n = task.wire.size();
  while (n >= 0x80) {
    payload->push_back(static_cast<char>(n | 0x80));
    n >>= 7;
  }
  payload->push_back(static_cast<char>(n));
  payload->append(task.wire);
}

std::string PushHeader(uint64_t lease_id, const std::vector<int>& gpus,
                       const proto::Address& caller) {
  proto::PushTasksRequest header;
  header.set_lease_id(lease_id);
  for (int g : gpus) header.add_gpu_ids(g);
  *header.mutable_caller() = caller;
  // Room for the frame header in front: the batch is sent without another copy.
  std::string out(rpc::kHeaderSize, '\0');
  header.AppendToString(&out);
  return out;
}

TaskSubmitter::TaskSubmitter(CoreWorker& cw)
    : cw_(cw),
      max_in_flight_(
          static_cast<int>(std::max<int64_t>(1, Config::Get().max_tasks_in_flight_per_worker()))),
      max_pending_(std::max<int64_t>(1, Config::Get().max_pending_tasks())),
      resume_at_(max_pending_ - std::max<int64_t>(1, max_pending_ / 8)) {}

void TaskSubmitter::AcquireSlot() {
  MutexLock lock(slot_mu_);
  if (pending_ >= max_pending_) {
    ++slot_waiters_;
    slot_cv_.Wait(slot_mu_, [this]() LUMEN_REQUIRES(slot_mu_) { return pending_ <= resume_at_; });
    --slot_waiters_;
  }
  ++pending_;
}

void TaskSubmitter::ReleaseSlot() {
  bool wake;
  {
    MutexLock lock(slot_mu_);
    --pending_;
    // Counts fall one at a time, so a waiter's threshold is crossed exactly here.
    wake = slot_waiters_ > 0 && pending_ == resume_at_;
  }
  if (wake) slot_cv_.NotifyAll();
}

void TaskSubmitter::TakeSlot() {
  MutexLock lock(slot_mu_);
  ++pending_;
}

bool HasPlasmaArgs(const proto::TaskSpec& spec) {
  for (const auto& arg : spec.args()) {
    if (arg.has_ref()) return true;
  }
  return false;
}

size_t TaskSubmitter::NumPending() const {
  MutexLock lock(slot_mu_);
  return static_cast<size_t>(pending_);
}

void TaskSubmitter::Submit(std::shared_ptr<TaskEntry> task) {
  // Pushes happen on the I/O thread: tasks submitted meanwhile leave in one batch.
  bool post = false;
  {
    MutexLock lock(incoming_mu_);
    incoming_.push_back(std::move(task));
    if (!pump_scheduled_) post = pump_scheduled_ = true;
  }
  if (post) cw_.io()->Post([this] { DrainIncoming(); });
}

void TaskSubmitter::DrainIncoming() {
  std::vector<std::shared_ptr<TaskEntry>> batch;
  {
    MutexLock lock(incoming_mu_);
    batch.swap(incoming_);
    pump_scheduled_ = false;
  }
  std::vector<Completion> failed;
  {
    MutexLock lock(mu_);
    std::vector<std::string> keys;
    for (auto& task : batch) {
      if (cw_.IsCancelledTask(TaskID::FromBinary(task->spec.task_id()))) {
        failed.push_back(Cancelled(std::move(task)));
        continue;
      }
      if (shutdown_) {
        Completion c;
        c.task = std::move(task);
        c.failed_by_system = true;
        c.error.set_type(proto::RUNTIME_ERROR);
        c.error.set_message("lumen is shutting down");
        failed.push_back(std::move(c));
        continue;
      }
      KeyState& ks = keys_[task->key];
      if (ks.queue.empty() && std::find(keys.begin(), keys.end(), task->key) == keys.end()) {
        keys.push_back(task->key);
      }
      ks.resources = task->resources;
      ks.strategy = task->strategy;
      ks.lease_node = task->lease_node;
      ks.retriable = task->spec.max_retries() > 0;
      ks.runtime_env = task->runtime_env;
      ks.queue.push_back(std::move(task));
    }
    for (const auto& k : keys) PumpLocked(k);
  }
  Complete(failed);
}

void TaskSubmitter::DeferPumpLocked(const std::string& key) {
  if (std::find(deferred_keys_.begin(), deferred_keys_.end(), key) == deferred_keys_.end()) {
    deferred_keys_.push_back(key);
  }
  if (deferred_posted_) return;
  deferred_posted_ = true;
  cw_.io()->Post([this] {
    MutexLock lock(mu_);
    deferred_posted_ = false;
    std::vector<std::string> keys;
    keys.swap(deferred_keys_);
    for (const auto& k : keys) PumpLocked(k);
  });
}

void TaskSubmitter::RequeueFrontLocked(const std::shared_ptr<TaskEntry>& task,
                                       std::vector<std::string>* keys) {
  keys_[task->key].queue.push_front(task);
  if (std::find(keys->begin(), keys->end(), task->key) == keys->end()) keys->push_back(task->key);
}

int TaskSubmitter::DepthFor(TaskEntry& task) {
  constexpr double kShortTaskUs = 2000;
  if (!task.avg_exec_us) {
    auto it = avg_exec_us_.find(task.spec.function_name());
    if (it == avg_exec_us_.end()) return 1;
    task.avg_exec_us = &it->second;  // map nodes are stable
  }
  return *task.avg_exec_us != 0 && *task.avg_exec_us < kShortTaskUs ? max_in_flight_ : 1;
}

void TaskSubmitter::PumpLocked(const std::string& key) {
  auto kit = keys_.find(key);
  if (kit == keys_.end()) return;
  KeyState& ks = kit->second;
  if (!ks.queue.empty() && !ks.leases.empty()) {
    std::unordered_map<uint64_t, std::string> batches;
    while (!ks.queue.empty()) {
      const int depth = DepthFor(*ks.queue.front());
      LeasedWorker* best = nullptr;
      for (uint64_t id : ks.leases) {
        LeasedWorker& lw = leases_[id];
        // A short task may wait behind short ones only: never behind a task that may be long
        // (or whose length is not known yet) while another worker could take it.
        if (lw.in_flight < depth && lw.not_short_in_flight == 0 &&
            (!best || lw.in_flight < best->in_flight)) {
          best = &lw;
        }
      }
      if (!best) break;
      std::shared_ptr<TaskEntry> task = std::move(ks.queue.front());
      ks.queue.pop_front();
      ++best->in_flight;
      const bool short_task = depth > 1;
      if (!short_task) ++best->not_short_in_flight;
      best->order.push_back(TaskID::FromBinary(task->spec.task_id()));
      if (best->idle_timer) {
        cw_.io()->CancelTimer(best->idle_timer);
        best->idle_timer = 0;
      }
      std::string& batch = batches[best->lease_id];
      if (batch.empty()) batch = PushHeader(best->lease_id, best->gpus, cw_.address());
      AppendTask(*task, &batch);
      in_flight_[TaskID::FromBinary(task->spec.task_id())] =
          InFlight{task, best->lease_id, short_task};
    }
    for (auto& [lease_id, batch] : batches) {
      leases_[lease_id].conn->SendPrefixed(rpc::kPushTasks, std::move(batch));
    }
  }
  int64_t wanted = std::min<int64_t>(Config::Get().max_lease_requests_in_flight(),
                                     static_cast<int64_t>(ks.queue.size()));
  if (!ks.queue.empty() && DepthFor(*ks.queue.front()) > 1) {
    // Short tasks: a few workers keep up; more leases only while none is held.
    wanted = std::min<int64_t>(wanted, ks.leases.empty() ? wanted : 1);
  }
  if (ks.lease_requests < wanted) RequestLeaseLocked(key);
  if (ks.queue.empty()) {
    for (uint64_t id : ks.leases) {
      LeasedWorker& lw = leases_[id];
      if (lw.in_flight == 0) ScheduleIdleReturnLocked(lw);
    }
  }
}

NodeID LocalityNode(const proto::TaskSpec& spec, const NodeID& local, int64_t min_bytes) {
  std::unordered_map<NodeID, int64_t> bytes;
  for (const auto& arg : spec.args()) {
    if (arg.has_ref() && !arg.node_id().empty())
      bytes[NodeID::FromBinary(arg.node_id())] += arg.size();
  }
  NodeID best;
  int64_t most = 0;
  for (const auto& [node, n] : bytes) {
    if (n > most) {
      best = node;
      most = n;
    }
  }
  if (best == local || most < min_bytes) return NodeID::Nil();
  return best;
}

void TaskSubmitter::RequestLeaseLocked(const std::string& key) {
  KeyState& ks = keys_[key];
  ++ks.lease_requests;
  if (ks.lease_node.IsNil()) {
    SendLeaseRequestLocked(key, cw_.daemon(), /*spillback_count=*/0);
    return;
  }
  // The node that holds the arguments decides (it packs the task there while it has room, or
  // spills it back). Its address may need a question to the control service: off this lock.
  NodeID node = ks.lease_node;
  cw_.io()->Post([this, key, node] {
    cw_.peers().WithNodeAddress(
        cw_.gcs(), node, [this, key](bool found, const proto::Address& address) {
          rpc::ConnectionPtr daemon;
          if (found) {
            auto c = cw_.peers().Connect(address);
            if (c.ok()) daemon = *c;
          }
          MutexLock lock(mu_);
          if (shutdown_) {
            --keys_[key].lease_requests;
            return;
          }
          // A node that is gone or unreachable: the local node decides instead.
          SendLeaseRequestLocked(key, daemon ? daemon : cw_.daemon(), /*spillback_count=*/0);
        });
  });
}

void TaskSubmitter::SendLeaseRequestLocked(const std::string& key, const rpc::ConnectionPtr& daemon,
                                           int spillback_count) {
  KeyState& ks = keys_[key];
  proto::LeaseRequest req;
  req.set_job_id(cw_.job_id().Binary());
  ks.resources.ToProto(req.mutable_resources());
  *req.mutable_owner() = cw_.address();
  req.set_backlog(static_cast<int32_t>(ks.queue.size()));
  *req.mutable_strategy() = ks.strategy;
  req.set_spillback_count(spillback_count);
  req.set_retriable(ks.retriable);
  if (ks.runtime_env) *req.mutable_runtime_env() = *ks.runtime_env;
  if (!ks.queue.empty()) req.set_function_name(ks.queue.front()->spec.function_name());
  // The pending call lives in the connection: a strong reference back to it would make a cycle
  // that keeps both alive past shutdown when the call is still pending then.
  std::weak_ptr<rpc::Connection> weak = daemon;
  daemon->Call(rpc::kRequestLease, req,
               [this, key, weak, spillback_count](const Status& st, std::string_view payload) {
                 rpc::ConnectionPtr d = weak.lock();  // null: gone, as if it had closed
                 OnLeaseReply(key, d, spillback_count,
                              d ? st : UnavailableError("the node daemon's connection is gone"),
                              payload);
               });
}

void TaskSubmitter::OnLeaseReply(const std::string& key, const rpc::ConnectionPtr& daemon,
                                 int spillback_count, const Status& st, std::string_view payload) {
  proto::LeaseReply reply;
  bool parsed = st.ok() && rpc::ParsePayload(payload, &reply);
  std::vector<Completion> failed;
  rpc::ConnectionPtr conn;
  Status connect_status = Status::OK();
  if (parsed && reply.granted()) {
    auto c = cw_.peers().Connect(reply.worker());
    if (c.ok()) {
      conn = *c;
    } else {
      connect_status = c.status();
    }
  }
  // Spilled back: the request goes on to the node that can run it.
  rpc::ConnectionPtr next_daemon;
  if (parsed && !reply.granted() && reply.has_spillback()) {
    auto c = cw_.peers().Connect(reply.spillback());
    if (c.ok()) {
      next_daemon = *c;
    } else {
      connect_status =
          c.status().WithContext("reaching the node daemon at " + reply.spillback().tcp_address() +
                                 " the task was spilled back to");
    }
  }
  {
    MutexLock lock(mu_);
    KeyState& ks = keys_[key];
    if (next_daemon && !shutdown_) {
      SendLeaseRequestLocked(key, next_daemon, spillback_count + 1);  // still one request
      return;
    }
    --ks.lease_requests;
    if (!connect_status.ok() && !shutdown_) {
      LUMEN_LOG(WARNING) << "cannot reach leased worker: " << connect_status;
    }
    if (shutdown_) {
      if (parsed && reply.granted()) {
        proto::ReturnLeaseRequest ret;
        ret.set_lease_id(reply.lease_id());
        daemon->Send(rpc::kReturnLease, ret);
      }
      return;
    }
    const bool remote_daemon = daemon != cw_.daemon();
    if (!parsed && !remote_daemon) {
      FailQueuedLocked(key, "the node daemon did not grant a worker: " + st.ToString(), &failed);
    } else if (!parsed || reply.has_spillback()) {
      // The node it was spilled back to is unreachable or went away before answering: ask
      // the local daemon again shortly (its view drops that node once the control service
      // declares it dead).
      cw_.io()->RunAfter(std::chrono::milliseconds(100), [this, key] {
        MutexLock lock(mu_);
        if (!shutdown_) PumpLocked(key);
      });
    } else if (!reply.granted()) {
      FailQueuedLocked(key, "cannot schedule the task: " + reply.error(), &failed);
    } else if (!conn) {
      proto::ReturnLeaseRequest ret;
      ret.set_lease_id(reply.lease_id());
      ret.set_disconnect_worker(true);
      daemon->Send(rpc::kReturnLease, ret);
      PumpLocked(key);  // asks for another lease
    } else {
      LeasedWorker lw;
      lw.lease_id = reply.lease_id();
      lw.daemon = daemon;
      lw.address = reply.worker();
      lw.worker = WorkerID::FromBinary(reply.worker().worker_id());
      lw.conn = conn;
      lw.gpus.assign(reply.gpu_ids().begin(), reply.gpu_ids().end());
      lw.key = key;
      leases_[lw.lease_id] = lw;
      ks.leases.push_back(lw.lease_id);
      if (ks.queue.empty()) {
        ReturnLeaseLocked(lw.lease_id, false);  // nothing left to run: give it back now
      } else {
        PumpLocked(key);
      }
    }
  }
  Complete(failed);
}

void TaskSubmitter::ScheduleIdleReturnLocked(LeasedWorker& lw) {
  if (lw.idle_timer) return;
  uint64_t lease_id = lw.lease_id;
  lw.idle_timer = cw_.io()->RunAfter(
      std::chrono::milliseconds(Config::Get().lease_idle_timeout_ms()), [this, lease_id] {
        MutexLock lock(mu_);
        auto it = leases_.find(lease_id);
        if (it == leases_.end()) return;
        it->second.idle_timer = 0;
        const KeyState& ks = keys_[it->second.key];
        if (it->second.in_flight == 0 && ks.queue.empty()) ReturnLeaseLocked(lease_id, false);
      });
}

void TaskSubmitter::ReturnLeaseLocked(uint64_t lease_id, bool kill_worker) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  if (it->second.idle_timer) cw_.io()->CancelTimer(it->second.idle_timer);
  auto& list = keys_[it->second.key].leases;
  list.erase(std::remove(list.begin(), list.end(), lease_id), list.end());
  rpc::ConnectionPtr daemon = it->second.daemon ? it->second.daemon : cw_.daemon();
  leases_.erase(it);
  proto::ReturnLeaseRequest ret;
  ret.set_lease_id(lease_id);
  ret.set_disconnect_worker(kill_worker);
  daemon->Send(rpc::kReturnLease, ret);
}

void TaskSubmitter::ReleaseIdleLeases() {
  MutexLock lock(mu_);
  std::vector<uint64_t> idle;
  for (const auto& [id, lw] : leases_) {
    if (lw.in_flight == 0) idle.push_back(id);
  }
  for (uint64_t id : idle) ReturnLeaseLocked(id, false);
}

void TaskSubmitter::FailQueuedLocked(const std::string& key, const std::string& message,
                                     std::vector<Completion>* out) {
  KeyState& ks = keys_[key];
  while (!ks.queue.empty()) {
    Completion c;
    c.task = std::move(ks.queue.front());
    ks.queue.pop_front();
    c.failed_by_system = true;
    c.error.set_type(proto::RUNTIME_ERROR);
    c.error.set_function_name(c.task->spec.function_name());
    c.error.set_message("task " + c.task->spec.function_name() + ": " + message);
    out->push_back(std::move(c));
  }
}

void TaskSubmitter::HandleResults(const rpc::ConnectionPtr& conn, proto::TaskResults& results) {
  std::vector<Completion> done;
  std::vector<std::shared_ptr<TaskEntry>> relocate;  // retries whose arguments may have moved
  {
    MutexLock lock(mu_);
    std::vector<std::string> keys;
    for (auto& r : *results.mutable_results()) {
      auto it = in_flight_.find(TaskID::FromBinary(r.task_id()));
      if (it == in_flight_.end()) continue;
      std::shared_ptr<TaskEntry> task = std::move(it->second.task);
      auto lw = leases_.find(it->second.lease_id);
      const bool short_task = it->second.short_task;
      in_flight_.erase(it);
      if (lw != leases_.end()) {
        auto& order = lw->second.order;
        auto pos = std::find(order.begin(), order.end(), TaskID::FromBinary(r.task_id()));
        if (pos != order.end()) order.erase(pos);
      }
      if (!task->avg_exec_us) task->avg_exec_us = &avg_exec_us_[task->spec.function_name()];
      double& avg = *task->avg_exec_us;
      avg = avg == 0 ? static_cast<double>(r.exec_us()) : 0.8 * avg + 0.2 * r.exec_us();
      if (lw != leases_.end()) {
        --lw->second.in_flight;
        if (!short_task) --lw->second.not_short_in_flight;
        if (std::find(keys.begin(), keys.end(), lw->second.key) == keys.end()) {
          keys.push_back(lw->second.key);
        }
      }
      bool retry = task->retries_left > 0 &&
                   ((r.application_error() && task->spec.retry_exceptions()) || r.system_error()) &&
                   !cw_.IsCancelledTask(TaskID::FromBinary(task->spec.task_id()));
      if (retry) {
        --task->retries_left;
        task->spec.set_attempt(task->spec.attempt() + 1);
        task->wire.clear();
        LUMEN_LOG(INFO) << "retrying task " << task->spec.function_name() << " (attempt "
                        << task->spec.attempt() + 1 << ")";
        if (r.system_error() && HasPlasmaArgs(task->spec)) {
          relocate.push_back(std::move(task));
        } else {
          RequeueFrontLocked(task, &keys);
        }
        continue;
      }
      Completion c;
      c.task = std::move(task);
      c.result.Swap(&r);
      done.push_back(std::move(c));
    }
    for (const auto& k : keys) DeferPumpLocked(k);
  }
  for (auto& task : relocate) cw_.recovery().Retry(std::move(task));
  Complete(done);
}

void TaskSubmitter::OnConnectionClosed(const rpc::ConnectionPtr& conn, const Status& reason) {
  struct Failure {
    WorkerID worker;
    rpc::ConnectionPtr daemon;
    std::vector<std::shared_ptr<TaskEntry>> tasks;
  };
  std::vector<Failure> failures;
  {
    MutexLock lock(mu_);
    std::vector<uint64_t> dead;
    for (const auto& [id, lw] : leases_) {
      if (lw.conn == conn) dead.push_back(id);
    }
    for (uint64_t id : dead) {
      LeasedWorker lw = leases_[id];
      std::vector<std::shared_ptr<TaskEntry>> tasks;
      for (const TaskID& tid : lw.order) {  // oldest (the running one) first
        auto it = in_flight_.find(tid);
        if (it == in_flight_.end()) continue;
        tasks.push_back(std::move(it->second.task));
        in_flight_.erase(it);
      }
      // The daemon frees a dead worker's lease itself; for a live one this kills it.
      ReturnLeaseLocked(id, /*kill_worker=*/true);
      if (!tasks.empty()) {
        failures.push_back({lw.worker, lw.daemon ? lw.daemon : cw_.daemon(), std::move(tasks)});
      }
    }
  }
  for (auto& f : failures) HandleWorkerFailure(std::move(f.tasks), f.worker, f.daemon, reason);
}

void TaskSubmitter::RetryLocked(std::shared_ptr<TaskEntry> task, std::vector<std::string>* keys,
                                std::vector<std::shared_ptr<TaskEntry>>* relocate) {
  if (HasPlasmaArgs(task->spec)) {
    relocate->push_back(std::move(task));
  } else {
    RequeueFrontLocked(task, keys);
  }
}

void TaskSubmitter::HandleWorkerFailure(std::vector<std::shared_ptr<TaskEntry>> tasks,
                                        WorkerID worker, rpc::ConnectionPtr daemon,
                                        const Status& reason) {
  proto::WorkerExitStatusRequest req;
  req.set_worker_id(worker.Binary());
  auto shared = std::make_shared<std::vector<std::shared_ptr<TaskEntry>>>(std::move(tasks));
  daemon->Call(
      rpc::kWorkerExitStatus, req,
      [this, shared, reason](const Status& st, std::string_view payload) {
        proto::WorkerExitStatusReply reply;
        std::string why;
        bool for_memory = false;
        if (st.ok() && rpc::ParsePayload(payload, &reply) && reply.exited()) {
          why = reply.description();
          for_memory = reply.killed_for_memory();
        } else {
          why = "lost its connection (" + reason.message() + ")";
        }
        std::vector<Completion> failed;
        std::vector<std::string> keys;
        std::vector<std::shared_ptr<TaskEntry>> relocate;  // its node (and arguments) may be gone
        {
          MutexLock lock(mu_);
          for (size_t i = 0; i < shared->size(); ++i) {
            auto& task = (*shared)[i];
            if (cw_.IsCancelledTask(TaskID::FromBinary(task->spec.task_id()))) {
              // (force) its worker was killed to cancel it: not retried
              failed.push_back(Cancelled(task));
              continue;
            }
            if (i > 0 && !shutdown_) {  // never started: not its fault
              RequeueFrontLocked(task, &keys);
              continue;
            }
            if (task->retries_left > 0 && !shutdown_) {
              --task->retries_left;
              task->spec.set_attempt(task->spec.attempt() + 1);
              task->wire.clear();
              if (!for_memory) {
                LUMEN_LOG(WARNING)
                    << "task " << task->spec.function_name() << ": worker process " << why
                    << "; retrying (attempt " << task->spec.attempt() + 1 << ")";
                RetryLocked(task, &keys, &relocate);
                continue;
              }
              // The node ran short of memory: the retry waits for it to recover, longer after
              // each such kill (Ray's back-off for tasks its memory monitor killed).
              const int64_t delay = std::min<int64_t>(
                  Config::Get().memory_kill_retry_delay_ms() << std::min(task->memory_kills, 20),
                  Config::Get().memory_kill_retry_max_delay_ms());
              ++task->memory_kills;
              LUMEN_LOG(WARNING) << "task " << task->spec.function_name() << ": worker process "
                                 << why << "; retrying in " << delay << " ms (attempt "
                                 << task->spec.attempt() + 1 << ")";
              cw_.io()->RunAfter(std::chrono::milliseconds(delay), [this, task] {
                std::vector<std::string> later_keys;
                std::vector<std::shared_ptr<TaskEntry>> later_relocate;
                {
                  MutexLock lock(mu_);
                  if (shutdown_) return;
                  RetryLocked(task, &later_keys, &later_relocate);
                  for (const auto& k : later_keys) PumpLocked(k);
                }
                for (auto& t : later_relocate) cw_.recovery().Retry(std::move(t));
              });
              continue;
            }
            Completion c;
            c.task = task;
            c.failed_by_system = true;
            c.error.set_type(for_memory ? proto::OUT_OF_MEMORY : proto::WORKER_CRASHED);
            c.error.set_function_name(task->spec.function_name());
            int attempts = task->spec.attempt() + 1;
            c.error.set_message("task " + task->spec.function_name() +
                                " failed: its worker process " + why + " (" +
                                std::to_string(attempts) + " attempt" + (attempts == 1 ? "" : "s") +
                                ", max_retries=" + std::to_string(task->spec.max_retries()) + ")");
            failed.push_back(std::move(c));
          }
          for (const auto& k : keys) PumpLocked(k);
        }
        for (auto& task : relocate) cw_.recovery().Retry(std::move(task));
        Complete(failed);
      },
      Config::Get().worker_exit_status_wait_ms() + 3000);
}

void TaskSubmitter::Complete(std::vector<Completion>& done) {
  for (auto& c : done) {
    // Results in shared memory can be lost with their node: the task is kept to re-run, its
    // arguments' entries pinned before the task lets go of them.
    bool in_plasma = false;
    for (const auto& ro : c.result.returns()) in_plasma |= ro.in_plasma();
    if (c.task->spec.streaming() && !c.failed_by_system && !c.result.application_error()) {
      // Its values came before the end: they are its returns for lineage (a re-run of it,
      // re-creating lost values, ends here too and finds its entry).
      const TaskID tid = TaskID::FromBinary(c.task->spec.task_id());
      const int64_t sent = cw_.streams().Received(tid);
      for (int64_t i = 0; i < sent; ++i) {
        c.task->returns.push_back(ObjectID::ForReturn(tid, static_cast<uint32_t>(i)));
      }
      in_plasma = true;
    }
    if (!c.failed_by_system && in_plasma && !c.result.application_error()) {
      cw_.recovery().RecordLineage(c.task);
    }
    // Arguments first: once Get returns, the task no longer holds anything.
    cw_.references().RemoveSubmittedRefs(c.task->held_refs);
    cw_.StoreOutcome(*c.task, c.failed_by_system ? nullptr : &c.result,
                     c.failed_by_system ? &c.error : nullptr);
    ReleaseSlot();
  }
}

TaskSubmitter::Completion TaskSubmitter::Cancelled(std::shared_ptr<TaskEntry> task) {
  Completion c;
  c.error = TaskCancelledInfo(task->spec);
  c.task = std::move(task);
  c.failed_by_system = true;
  return c;
}

void TaskSubmitter::Cancel(const TaskID& task, bool force, bool recursive) {
  const std::string wire_id = task.Binary();
  std::vector<Completion> removed;
  {
    MutexLock lock(mu_);
    for (auto& [key, ks] : keys_) {
      auto it = std::find_if(ks.queue.begin(), ks.queue.end(),
                             [&](const auto& t) { return t->spec.task_id() == wire_id; });
      if (it == ks.queue.end()) continue;
      removed.push_back(Cancelled(std::move(*it)));
      ks.queue.erase(it);
      break;
    }
    if (removed.empty()) {
      auto it = in_flight_.find(task);
      if (it == in_flight_.end()) return;
      auto lw = leases_.find(it->second.lease_id);
      if (lw == leases_.end() || !lw->second.conn) return;
      proto::CancelTaskRequest req;
      req.set_task_id(wire_id);
      req.set_force(force);
      req.set_recursive(recursive);
      lw->second.conn->Send(rpc::kCancelTask, req);
      return;
    }
  }
  Complete(removed);
}

void TaskSubmitter::Shutdown() {
  MutexLock lock(mu_);
  shutdown_ = true;
  std::vector<uint64_t> all;
  for (const auto& [id, lw] : leases_) all.push_back(id);
  for (uint64_t id : all) ReturnLeaseLocked(id, false);
}

}  // namespace lumen::core
