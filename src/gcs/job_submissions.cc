#include "gcs/job_submissions.h"

#include <chrono>

#include "common/binary_store.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"

namespace lumen::gcs {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Submission ids become file names on the head: letters, digits, '-', '_' only.
bool IsSubmissionId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

bool Terminal(proto::SubmittedJobState s) {
  return s == proto::JOB_SUCCEEDED || s == proto::JOB_FAILED || s == proto::JOB_STOPPED;
}

}  // namespace

void JobSubmissions::HandleSubmit(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::SubmitJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed SubmitJob"));
    return;
  }
  proto::SubmitJobReply reply;
  auto refuse = [&](const std::string& why) {
    reply.set_error(why);
    c->Reply(f, reply);
  };
  proto::SubmittedJob job = std::move(*req.mutable_job());
  if (job.submission_id().empty())
    job.set_submission_id("lumen-job-" + NodeID::FromRandom().Hex().substr(0, 12));
  if (!IsSubmissionId(job.submission_id())) {
    return refuse("a submission id is 1-64 letters, digits, '-' or '_', not '" +
                  job.submission_id() + "'");
  }
  if (jobs_.count(job.submission_id())) {
    return refuse("a job with submission id '" + job.submission_id() + "' was submitted already");
  }
  if (!binaries::IsContentHash(job.binary_hash())) return refuse("no program was uploaded");
  for (const auto& kv : job.env()) {
    if (kv.find('=') == std::string::npos || kv.front() == '=') {
      return refuse("--env wants KEY=VALUE, got '" + kv + "'");
    }
  }
  const NodeID head = hooks_.head();
  auto conn = head.IsNil() ? nullptr : hooks_.node(head);
  if (!conn) return refuse("the head node is not reachable");
  job.set_state(proto::JOB_PENDING);
  job.set_node_id(head.Binary());
  job.set_start_time_ms(NowMs());
  job.clear_exit_code();
  job.clear_message();
  const std::string id = job.submission_id();
  jobs_[id] = job;
  proto::StartDriverRequest start;
  *start.mutable_job() = job;
  start.set_gcs_address(hooks_.address());
  LUMEN_LOG(INFO) << "job " << id << " submitted: " << job.binary_name();
  std::weak_ptr<rpc::Connection> weak = c;
  conn->Call(
      rpc::kStartDriver, start,
      [this, id, weak, reply_to = rpc::ReplyHandle(f)](const Status& st, std::string_view payload) {
        proto::StartDriverReply started;
        proto::SubmitJobReply reply;
        reply.set_submission_id(id);
        auto it = jobs_.find(id);
        if (!st.ok() || !rpc::ParsePayload(payload, &started) || !started.ok()) {
          std::string why = !st.ok() ? st.ToString() : started.error();
          reply.set_error("the head node could not start the driver: " + why);
          if (it != jobs_.end()) Finish(it->second, -1, reply.error(), false);
        } else {
          reply.set_ok(true);
          if (it != jobs_.end() && it->second.state() == proto::JOB_PENDING) {
            it->second.set_state(proto::JOB_RUNNING);
            it->second.set_pid(started.pid());
          }
        }
        if (auto c = weak.lock()) c->Reply(reply_to, reply);
      });
}

void JobSubmissions::HandleList(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::SubmittedJobList list;
  for (const auto& [id, job] : jobs_) *list.add_jobs() = job;
  c->Reply(f, list);
}

void JobSubmissions::HandleGet(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::SubmittedJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed GetSubmittedJob"));
    return;
  }
  proto::SubmittedJobReply reply;
  auto it = jobs_.find(req.submission_id());
  if (it != jobs_.end()) {
    reply.set_found(true);
    *reply.mutable_job() = it->second;
  }
  c->Reply(f, reply);
}

void JobSubmissions::HandleLogs(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::JobLogsRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed JobLogs"));
    return;
  }
  auto it = jobs_.find(req.submission_id());
  if (it == jobs_.end()) {
    c->Reply(f, proto::JobLogsReply());  // not found
    return;
  }
  // Whether the job had ended before the read: then reaching the end of its output means
  // nothing more will come.
  const bool ended = Terminal(it->second.state());
  auto conn = hooks_.node(NodeID::FromBinary(it->second.node_id()));
  if (!conn) {
    proto::JobLogsReply reply;
    reply.set_found(true);
    reply.set_finished(ended);
    reply.set_next_offset(req.offset());
    *reply.mutable_job() = it->second;
    c->Reply(f, reply);
    return;
  }
  std::weak_ptr<rpc::Connection> weak = c;
  const std::string id = req.submission_id();
  conn->Call(rpc::kReadDriverLog, req,
             [this, id, ended, weak, reply_to = rpc::ReplyHandle(f)](const Status& st,
                                                                     std::string_view payload) {
               auto c = weak.lock();
               if (!c) return;
               proto::JobLogsReply reply;
               if (!st.ok() || !rpc::ParsePayload(payload, &reply)) {
                 c->ReplyError(reply_to, st.ok() ? InternalError("bad log reply") : st);
                 return;
               }
               reply.set_found(true);
               reply.set_finished(ended && reply.eof());
               if (auto it = jobs_.find(id); it != jobs_.end()) *reply.mutable_job() = it->second;
               c->Reply(reply_to, reply);
             });
}

void JobSubmissions::HandleStop(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::SubmittedJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed StopSubmittedJob"));
    return;
  }
  proto::SubmittedJobReply reply;
  auto it = jobs_.find(req.submission_id());
  if (it != jobs_.end()) {
    reply.set_found(true);
    if (!Terminal(it->second.state())) {
      if (auto conn = hooks_.node(NodeID::FromBinary(it->second.node_id()))) {
        conn->Call(rpc::kStopDriver, req, [](const Status&, std::string_view) {});
      }
    }
    *reply.mutable_job() = it->second;
  }
  c->Reply(f, reply);
}

void JobSubmissions::HandleDriverExited(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::DriverExited req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  auto it = jobs_.find(req.submission_id());
  if (it == jobs_.end() || Terminal(it->second.state())) return;
  Finish(it->second, req.exit_code(), req.message(), req.stopped());
}

void JobSubmissions::OnNodeDead(const NodeID& node) {
  for (auto& [id, job] : jobs_) {
    if (!Terminal(job.state()) && NodeID::FromBinary(job.node_id()) == node) {
      Finish(job, -1, "its node " + node.Hex().substr(0, 12) + " died", false);
    }
  }
}

void JobSubmissions::Finish(proto::SubmittedJob& job, int exit_code, const std::string& message,
                            bool stopped) {
  job.set_state(stopped                             ? proto::JOB_STOPPED
                : exit_code == 0 && message.empty() ? proto::JOB_SUCCEEDED
                                                    : proto::JOB_FAILED);
  if (stopped) job.set_state(proto::JOB_STOPPED);
  job.set_exit_code(exit_code);
  job.set_message(message);
  job.set_end_time_ms(NowMs());
  LUMEN_LOG(INFO) << "job " << job.submission_id() << " "
                  << proto::SubmittedJobState_Name(job.state())
                  << (message.empty() ? "" : ": " + message);
}

}  // namespace lumen::gcs
