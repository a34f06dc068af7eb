#include "cli/job_commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/cli_common.h"
#include "cli/gcs_session.h"
#include "common/binary_store.h"
#include "common/rpc/message_types.h"
#include "gcs.pb.h"
#include "lumen/ids.h"

namespace lumen::cli {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(100);

bool Terminal(proto::SubmittedJobState s) {
  return s == proto::JOB_SUCCEEDED || s == proto::JOB_FAILED || s == proto::JOB_STOPPED;
}

const char* StateName(proto::SubmittedJobState s) {
  switch (s) {
    case proto::JOB_PENDING:
      return "PENDING";
    case proto::JOB_RUNNING:
      return "RUNNING";
    case proto::JOB_SUCCEEDED:
      return "SUCCEEDED";
    case proto::JOB_FAILED:
      return "FAILED";
    case proto::JOB_STOPPED:
      return "STOPPED";
    default:
      return "?";
  }
}

// "lumen-job-1a2b: FAILED (exit code 3: the driver exited with code 3)"
std::string Describe(const proto::SubmittedJob& j) {
  std::string out = j.submission_id() + ": " + StateName(j.state());
  if (j.state() == proto::JOB_RUNNING) {
    out += " (" + j.binary_name() + ", driver pid " + std::to_string(j.pid()) + " on node " +
           NodeID::FromBinary(j.node_id()).Hex().substr(0, 12) + ")";
  } else if (Terminal(j.state())) {
    out += " (exit code " + std::to_string(j.exit_code()) +
           (j.message().empty() ? "" : ": " + j.message()) + ")";
  }
  return out;
}

// The exit code a job's command passes on: the driver's, or 1 when it has none.
int ExitCodeOf(const proto::SubmittedJob& j) {
  if (j.state() == proto::JOB_SUCCEEDED) return 0;
  return j.exit_code() > 0 && j.exit_code() < 256 ? j.exit_code() : 1;
}

// Prints the job's output from `offset` until it ends (follow) or until what exists now was
// printed; returns the job as last seen (submission_id empty when unknown).
proto::SubmittedJob PrintLogs(GcsSession& s, const std::string& id, bool follow) {
  proto::JobLogsRequest req;
  req.set_submission_id(id);
  req.set_max_bytes(1 << 20);
  while (true) {
    proto::JobLogsReply reply;
    if (!s.Call(rpc::kJobLogs, req, &reply)) return {};
    if (!reply.found()) {
      std::cerr << "lumen job: no job " << id << "\n";
      return {};
    }
    if (!reply.data().empty()) {
      std::fwrite(reply.data().data(), 1, reply.data().size(), stdout);
      std::fflush(stdout);
    }
    req.set_offset(reply.next_offset());
    if (reply.finished() || (!follow && reply.eof())) return reply.job();
    if (reply.eof()) std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace

JobCommands::JobCommands(CLI::App& app) {
  job_ = app.add_subcommand("job", "submit jobs to a cluster and follow them");
  job_->require_subcommand(1);
  job_->add_option("--address", address_, "control service HOST:PORT");
  job_->add_option("--token", token_, "cluster token");
  submit_ = job_->add_subcommand(
      "submit", "run a program as a driver on the cluster's head: -- ./program args...");
  submit_->add_option("--address", address_, "control service HOST:PORT");
  submit_->add_option("--token", token_, "cluster token");
  submit_->add_flag("--no-wait", no_wait_, "print the submission id and return at once");
  submit_->add_option("--submission-id", submission_id_, "the job's id (default: a new one)");
  submit_->add_option("--env", env_, "KEY=VALUE for the driver (repeatable)");
  submit_->add_option("command", command_, "the program and its arguments, after --")->required();
  list_ = job_->add_subcommand("list", "list submitted jobs");
  status_ = job_->add_subcommand("status", "show a job's state");
  logs_ = job_->add_subcommand("logs", "print what a job's driver printed");
  logs_->add_flag("--follow", follow_, "keep printing until the job ends");
  stop_ = job_->add_subcommand("stop", "stop a job's driver (SIGTERM, then SIGKILL)");
  for (CLI::App* sub : {status_, logs_, stop_}) {
    sub->add_option("submission_id", submission_id_, "the job's submission id")->required();
  }
  for (CLI::App* sub : {list_, status_, logs_, stop_}) {
    sub->add_option("--address", address_, "control service HOST:PORT");
    sub->add_option("--token", token_, "cluster token");
  }
}

int JobCommands::Run(const std::string& root) {
  const std::string address = ResolveAddress(address_, root);
  const std::string token = ResolveToken(token_, root);
  if (submit_->parsed()) return Submit(address, token);
  if (list_->parsed()) return List(address, token);
  if (status_->parsed()) return Status(address, token);
  if (logs_->parsed()) return Logs(address, token);
  if (stop_->parsed()) return Stop(address, token);
  return 2;
}

int JobCommands::Submit(const std::string& address, const std::string& token) {
  std::string program = command_.front();
  if (program.find('/') == std::string::npos) {  // like a shell: look it up in PATH
    for (std::string dirs = Env("PATH"); !dirs.empty();) {
      size_t colon = dirs.find(':');
      std::string candidate = JoinPath(dirs.substr(0, colon), program);
      if (::access(candidate.c_str(), X_OK) == 0) {
        program = candidate;
        break;
      }
      dirs = colon == std::string::npos ? "" : dirs.substr(colon + 1);
    }
  }
  auto bytes = ReadFile(program);
  if (!bytes.ok() || ::access(program.c_str(), X_OK) != 0) {
    std::cerr << "lumen job submit: cannot read the program " << program << ": "
              << (bytes.ok() ? "it is not executable" : bytes.status().message()) << "\n";
    return 1;
  }
  GcsSession s("lumen job submit");
  if (!s.Connect(address, token)) return 1;
  auto hash = binaries::Upload(s.conn(), *bytes);
  if (!hash.ok()) {
    std::cerr << "lumen job submit: cannot upload " << program << ": " << hash.status().message()
              << "\n";
    return 1;
  }
  proto::SubmitJobRequest req;
  proto::SubmittedJob* job = req.mutable_job();
  job->set_submission_id(submission_id_);
  job->set_binary_hash(*hash);
  job->set_binary_name(program.substr(program.rfind('/') + 1));
  for (size_t i = 1; i < command_.size(); ++i) job->add_args(command_[i]);
  for (const auto& kv : env_) job->add_env(kv);
  proto::SubmitJobReply reply;
  if (!s.Call(rpc::kSubmitJob, req, &reply)) return 1;
  if (!reply.ok()) {
    std::cerr << "lumen job submit: " << reply.error() << "\n";
    return 1;
  }
  if (no_wait_) {
    std::cout << reply.submission_id() << "\n";
    return 0;
  }
  std::cerr << "lumen job: " << reply.submission_id() << " submitted\n";
  proto::SubmittedJob last = PrintLogs(s, reply.submission_id(), /*follow=*/true);
  if (last.submission_id().empty()) return 1;
  std::cerr << "lumen job: " << Describe(last) << "\n";
  return ExitCodeOf(last);
}

int JobCommands::List(const std::string& address, const std::string& token) {
  GcsSession s("lumen job list");
  if (!s.Connect(address, token)) return 1;
  proto::SubmittedJobList list;
  if (!s.Call(rpc::kListSubmittedJobs, proto::Empty(), &list)) return 1;
  if (list.jobs().empty()) std::cout << "no jobs were submitted to this cluster\n";
  for (const auto& j : list.jobs()) std::cout << Describe(j) << "\n";
  return 0;
}

int JobCommands::Status(const std::string& address, const std::string& token) {
  GcsSession s("lumen job status");
  if (!s.Connect(address, token)) return 1;
  proto::SubmittedJobRequest req;
  req.set_submission_id(submission_id_);
  proto::SubmittedJobReply reply;
  if (!s.Call(rpc::kGetSubmittedJob, req, &reply)) return 1;
  if (!reply.found()) {
    std::cerr << "lumen job status: no job " << submission_id_ << "\n";
    return 1;
  }
  std::cout << Describe(reply.job()) << "\n";
  return 0;
}

int JobCommands::Logs(const std::string& address, const std::string& token) {
  GcsSession s("lumen job logs");
  if (!s.Connect(address, token)) return 1;
  return PrintLogs(s, submission_id_, follow_).submission_id().empty() ? 1 : 0;
}

int JobCommands::Stop(const std::string& address, const std::string& token) {
  GcsSession s("lumen job stop");
  if (!s.Connect(address, token)) return 1;
  proto::SubmittedJobRequest req;
  req.set_submission_id(submission_id_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  proto::SubmittedJobReply reply;
  if (!s.Call(rpc::kStopSubmittedJob, req, &reply)) return 1;
  if (!reply.found()) {
    std::cerr << "lumen job stop: no job " << submission_id_ << "\n";
    return 1;
  }
  // Until the driver is gone (its grace period, then SIGKILL).
  while (!Terminal(reply.job().state()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(kPollInterval);
    if (!s.Call(rpc::kGetSubmittedJob, req, &reply)) return 1;
  }
  std::cout << Describe(reply.job()) << "\n";
  return Terminal(reply.job().state()) ? 0 : 1;
}

}  // namespace lumen::cli
