#include "node/log_monitor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "common/logging.h"

namespace lumen::node {

namespace {

int OpenForReading(const std::string& path) { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }

}  // namespace

LogMonitor::LogMonitor(std::string node, Sink sink)
    : node_(std::move(node)), sink_(std::move(sink)) {}

LogMonitor::~LogMonitor() {
  for (auto& [id, w] : workers_) Close(w);
}

void LogMonitor::Add(const WorkerID& id, const JobID& job, pid_t pid, const std::string& out_path,
                     const std::string& err_path) {
  if (workers_.count(id)) return;
  Followed& w = workers_[id];
  w.job = job;
  w.pid = pid;
  w.out.fd = OpenForReading(out_path);
  w.err.fd = OpenForReading(err_path);
}

void LogMonitor::Close(Followed& w) {
  if (w.out.fd >= 0) ::close(w.out.fd);
  if (w.err.fd >= 0) ::close(w.err.fd);
  w.out.fd = w.err.fd = -1;
}

void LogMonitor::Exited(const WorkerID& id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  Followed& w = it->second;
  proto::WorkerLogs logs;
  size_t budget = kMaxFinalBytes;
  ReadUpTo(w, w.out, false, true, &budget, &logs);
  ReadUpTo(w, w.err, true, true, &budget, &logs);
  if (logs.stdout_lines_size() + logs.stderr_lines_size() > 0) sink_(w.job, std::move(logs));
  Close(w);
  workers_.erase(it);
}

void LogMonitor::Poll() {
  std::unordered_map<JobID, proto::WorkerLogs> by_job;
  for (auto& [id, w] : workers_) {
    proto::WorkerLogs& logs = by_job[w.job];
    Read(w, w.out, false, kMaxReadPerFile, false, &logs);
    Read(w, w.err, true, kMaxReadPerFile, false, &logs);
  }
  for (auto& [job, logs] : by_job) {
    if (logs.stdout_lines_size() + logs.stderr_lines_size() > 0) sink_(job, std::move(logs));
  }
}

proto::WorkerLogs LogMonitor::Flush(const JobID& job) {
  proto::WorkerLogs logs;
  size_t budget = kMaxFinalBytes;
  for (auto& [id, w] : workers_) {
    if (w.job != job) continue;
    ReadUpTo(w, w.out, false, false, &budget, &logs);
    ReadUpTo(w, w.err, true, false, &budget, &logs);
  }
  return logs;
}

void LogMonitor::ReadUpTo(Followed& w, Stream& s, bool is_err, bool final, size_t* budget,
                          proto::WorkerLogs* logs) {
  while (*budget > 0) {
    const size_t n = Read(w, s, is_err, std::min(kMaxReadPerFile, *budget), final, logs);
    if (n == 0) return;
    *budget -= std::min(n, *budget);
  }
}

size_t LogMonitor::Read(Followed& w, Stream& s, bool is_err, size_t limit, bool final,
                        proto::WorkerLogs* logs) {
  if (s.fd < 0) return 0;
  struct stat st {};
  const int64_t size = ::fstat(s.fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
  if (size < s.offset) s.offset = size;  // truncated: follow from its new end
  ssize_t n = 0;
  std::string buf;
  if (size > s.offset) {
    buf.resize(std::min(limit, static_cast<size_t>(size - s.offset)));
    n = ::pread(s.fd, buf.data(), buf.size(), s.offset);
  }
  if (n <= 0) {
    if (final && !s.partial.empty()) {  // the last line, without its newline
      std::string last = std::move(s.partial);
      s.partial.clear();
      Line(w, last, is_err, logs);
    }
    return 0;
  }
  s.offset += n;
  buf.resize(static_cast<size_t>(n));
  size_t start = 0;
  for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view piece(buf.data() + start, nl - start);
    if (!s.partial.empty()) {
      s.partial.append(piece);
      std::string line = std::move(s.partial);
      s.partial.clear();
      Line(w, line, is_err, logs);
    } else {
      Line(w, piece, is_err, logs);
    }
  }
  s.partial.append(buf, start, std::string::npos);
  while (s.partial.size() >= kMaxLine) {  // a line without end: sent in pieces
    Line(w, std::string_view(s.partial).substr(0, kMaxLine), is_err, logs);
    s.partial.erase(0, kMaxLine);
  }
  return static_cast<size_t>(n);
}

void LogMonitor::Line(Followed& w, std::string_view line, bool is_err, proto::WorkerLogs* logs) {
  const size_t marker = std::strlen(kTaskOutputMarker);
  if (line.substr(0, marker) == kTaskOutputMarker) {
    w.name = std::string(line.substr(marker));
    return;
  }
  std::string text = "(" + (w.name.empty() ? std::string("worker") : w.name) +
                     " pid=" + std::to_string(w.pid) + " node=" + node_ + ") ";
  text.append(line);
  (is_err ? logs->add_stderr_lines() : logs->add_stdout_lines())->swap(text);
}

}  // namespace lumen::node
