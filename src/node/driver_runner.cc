#include "node/driver_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/binary_store.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/rpc/message_types.h"

namespace lumen::node {

namespace {
constexpr int64_t kMaxLogRead = 1 << 20;
}  // namespace

DriverRunner::DriverRunner(rpc::EventLoop* loop, std::string session_dir, std::string token,
                           std::function<rpc::ConnectionPtr()> gcs)
    : loop_(loop),
      session_dir_(std::move(session_dir)),
      token_(std::move(token)),
      gcs_(std::move(gcs)) {}

DriverRunner::~DriverRunner() { StopAll(); }

void DriverRunner::StopAll() {
  for (auto& [id, d] : drivers_) {
    if (d.exited) continue;
    ::kill(d.pid, SIGKILL);
    if (d.watch) loop_->Unwatch(d.watch);
    if (d.kill_timer) loop_->CancelTimer(d.kill_timer);
    if (d.pidfd >= 0) ::close(d.pidfd);
    ::waitpid(d.pid, nullptr, 0);
    d.exited = true;
  }
}

std::string DriverRunner::LogPath(const std::string& id) const {
  return JoinPath(JoinPath(session_dir_, "logs"), "job-" + id + ".log");
}

void DriverRunner::HandleStart(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::StartDriverRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.job().submission_id().empty() ||
      req.job().submission_id().find('/') != std::string::npos ||
      req.job().submission_id()[0] == '.') {
    c->ReplyError(f, InvalidArgumentError("malformed StartDriver"));
    return;
  }
  if (drivers_.count(req.job().submission_id())) {
    proto::StartDriverReply reply;
    reply.set_error("a driver for " + req.job().submission_id() + " was started already");
    c->Reply(f, reply);
    return;
  }
  std::weak_ptr<rpc::Connection> weak = c;
  binaries::Materialize(
      gcs_(), req.job().binary_hash(), JoinPath(session_dir_, "binaries"),
      [this, req, weak, reply_to = rpc::ReplyHandle(f)](StatusOr<std::string> binary) {
        auto c = weak.lock();
        if (!c) return;
        if (!binary.ok()) {
          proto::StartDriverReply reply;
          reply.set_error(binary.status().message());
          c->Reply(reply_to, reply);
          return;
        }
        Spawn(req, *binary, c, reply_to);
      });
}

void DriverRunner::Spawn(const proto::StartDriverRequest& req, const std::string& binary,
                         const rpc::ConnectionPtr& c, const rpc::Frame& reply_to) {
  const proto::SubmittedJob& job = req.job();
  const std::string& id = job.submission_id();
  proto::StartDriverReply reply;
  const std::string cwd = JoinPath(JoinPath(session_dir_, "jobs"), id);
  Status st = MakeDirs(cwd);
  if (!st.ok()) {
    reply.set_error("cannot create " + cwd + ": " + st.message());
    c->Reply(reply_to, reply);
    return;
  }
  std::vector<std::string> env(job.env().begin(), job.env().end());
  env.push_back("LUMEN_ADDRESS=" + req.gcs_address());
  env.push_back("LUMEN_TOKEN=" + token_);
  env.push_back("LUMEN_JOB_BINARY_HASH=" + job.binary_hash());
  env.push_back("LUMEN_SUBMISSION_ID=" + id);
  SpawnOptions so;
  so.argv.push_back(binary);
  so.argv.insert(so.argv.end(), job.args().begin(), job.args().end());
  so.env = EnvironmentWith(env);
  so.cwd = cwd;
  so.log_path = LogPath(id);
  so.new_session = true;  // its own process group: stopping it stops what it started
  auto child = SpawnProcess(so);
  if (!child.ok()) {
    reply.set_error("cannot start " + job.binary_name() + ": " + child.status().message());
    c->Reply(reply_to, reply);
    return;
  }
  Driver& d = drivers_[id];
  d.pid = child->pid;
  d.pidfd = child->pidfd;
  if (d.pidfd >= 0) {
    d.watch = loop_->Watch(d.pidfd, EPOLLIN, [this, id](uint32_t) { OnExit(id); });
  } else {
    // No pidfds on this kernel: look every 100 ms.
    auto tick = std::make_shared<std::function<void()>>();
    *tick = [this, id, tick] {
      auto it = drivers_.find(id);
      if (it == drivers_.end() || it->second.exited) return;
      OnExit(id);
      if (!drivers_[id].exited) loop_->RunAfter(std::chrono::milliseconds(100), *tick);
    };
    loop_->RunAfter(std::chrono::milliseconds(100), *tick);
  }
  LUMEN_LOG(INFO) << "job " << id << ": driver " << job.binary_name() << " started, pid " << d.pid;
  reply.set_ok(true);
  reply.set_pid(d.pid);
  c->Reply(reply_to, reply);
}

void DriverRunner::OnExit(const std::string& id) {
  auto it = drivers_.find(id);
  if (it == drivers_.end() || it->second.exited) return;
  Driver& d = it->second;
  // Looked at without reaping it: until it is reaped its process group id cannot be reused,
  // so what is left of the group (it was started in a session of its own) can be killed.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(d.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid == 0) {
    return;  // still running
  }
  ::kill(-d.pid, SIGKILL);
  int status = 0;
  pid_t r = ::waitpid(d.pid, &status, WNOHANG);
  if (r == 0) return;  // (cannot happen: it has exited)
  d.exited = true;
  if (d.watch) loop_->Unwatch(d.watch);
  if (d.kill_timer) loop_->CancelTimer(d.kill_timer);
  if (d.pidfd >= 0) ::close(d.pidfd);
  d.watch = d.kill_timer = 0;
  d.pidfd = -1;
  proto::DriverExited exited;
  exited.set_submission_id(id);
  exited.set_stopped(d.stop_requested);
  int code = -1;
  if (r > 0 && WIFEXITED(status)) {
    code = WEXITSTATUS(status);
  } else if (r > 0 && WIFSIGNALED(status)) {
    code = 128 + WTERMSIG(status);
  }
  exited.set_exit_code(code);
  if (code != 0) {
    exited.set_message(r < 0 ? "exited (status unknown)" : "the driver " + DescribeExit(status));
  }
  LUMEN_LOG(INFO) << "job " << id << ": driver pid " << d.pid << " "
                  << (r < 0 ? "exited" : DescribeExit(status));
  if (auto gcs = gcs_()) gcs->Send(rpc::kDriverExited, exited);
}

void DriverRunner::HandleReadLog(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::JobLogsRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.offset() < 0 ||
      !drivers_.count(req.submission_id())) {
    c->ReplyError(f, InvalidArgumentError("malformed or unknown ReadDriverLog"));
    return;
  }
  proto::JobLogsReply reply;
  const int64_t max = req.max_bytes() > 0 ? std::min(req.max_bytes(), kMaxLogRead) : kMaxLogRead;
  int fd = ::open(LogPath(req.submission_id()).c_str(), O_RDONLY | O_CLOEXEC);
  int64_t size = 0;
  if (fd >= 0) {
    struct stat sb;
    if (::fstat(fd, &sb) == 0) size = sb.st_size;
    if (req.offset() < size) {
      std::string data(static_cast<size_t>(std::min(max, size - req.offset())), '\0');
      ssize_t n = ::pread(fd, data.data(), data.size(), req.offset());
      data.resize(n > 0 ? static_cast<size_t>(n) : 0);
      reply.set_data(std::move(data));
    }
    ::close(fd);
  }
  reply.set_next_offset(req.offset() + static_cast<int64_t>(reply.data().size()));
  reply.set_eof(reply.next_offset() >= size);
  c->Reply(f, reply);
}

void DriverRunner::HandleStop(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::SubmittedJobRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed StopDriver"));
    return;
  }
  auto it = drivers_.find(req.submission_id());
  if (it != drivers_.end() && !it->second.exited && !it->second.stop_requested) {
    Driver& d = it->second;
    d.stop_requested = true;
    LUMEN_LOG(INFO) << "job " << req.submission_id() << ": stopping driver pid " << d.pid;
    ::kill(-d.pid, SIGTERM);
    const std::string id = req.submission_id();
    d.kill_timer =
        loop_->RunAfter(std::chrono::milliseconds(Config::Get().job_stop_grace_ms()), [this, id] {
          auto it = drivers_.find(id);
          if (it == drivers_.end() || it->second.exited) return;
          it->second.kill_timer = 0;
          ::kill(-it->second.pid, SIGKILL);
        });
  }
  c->Reply(f, proto::Empty());
}

}  // namespace lumen::node
