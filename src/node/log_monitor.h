// Streams what a node's workers print to the drivers of their jobs (Ray's log monitor).
//
// Each worker's stdout and stderr go to files in the session's logs directory (they stay
// there). The monitor reads what was appended since its last look, splits it into lines and
// hands them, prefixed with "(Name pid=N node=abcd1234) ", to `sink` by job. `Name` is the
// function, or the actor class, whose task the worker was running: the worker writes a marker
// line (kTaskOutputMarker + name, common/logging.h) to both streams when it starts a task of
// another name, and the marker itself is not forwarded.
//
// Memory stays bounded whatever a worker prints: at most kMaxReadPerFile bytes are read per
// file per Poll (the rest waits in the file), kMaxFinalBytes when a worker exits or a driver
// flushes (what is beyond stays in the files only), and a line longer than kMaxLine is cut
// into pieces.
//
// Thread safety: not thread-safe; the node daemon calls it on its loop thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gcs.pb.h"
#include "lumen/ids.h"

namespace lumen::node {

class LogMonitor {
 public:
  static constexpr size_t kMaxReadPerFile = 1 << 20;
  static constexpr size_t kMaxLine = 64 << 10;
  // At most this much is read at once when a worker exits or a job's driver flushes (the rest
  // stays in the files).
  static constexpr size_t kMaxFinalBytes = 16 << 20;

  using Sink = std::function<void(const JobID& job, proto::WorkerLogs logs)>;
  // `node`: the short node id shown in prefixes.
  LogMonitor(std::string node, Sink sink);
  ~LogMonitor();

  // Starts following a worker's two files, from their start (each worker has its own). A
  // worker followed already is left as it is.
  void Add(const WorkerID& id, const JobID& job, pid_t pid, const std::string& out_path,
           const std::string& err_path);
  bool Has(const WorkerID& id) const { return workers_.count(id) > 0; }
  // The worker exited: what it printed last is sent, then it is forgotten.
  void Exited(const WorkerID& id);
  // Sends what every worker appended since the last Poll (bounded per file).
  void Poll();
  // Everything the workers of `job` have written since the last look (returned, not sent).
  proto::WorkerLogs Flush(const JobID& job);

 private:
  struct Stream {
    int fd = -1;
    int64_t offset = 0;
    std::string partial;  // an unterminated last line
  };
  struct Followed {
    JobID job;
    pid_t pid = -1;
    std::string name;  // of the task running, from the last marker
    Stream out, err;
  };
  // Reads up to `limit` new bytes of `s` into `logs`; returns how many it read.
  size_t Read(Followed& w, Stream& s, bool is_err, size_t limit, bool final,
              proto::WorkerLogs* logs);
  // Reads `s` until it has no more or `*budget` bytes were read (counted down).
  void ReadUpTo(Followed& w, Stream& s, bool is_err, bool final, size_t* budget,
                proto::WorkerLogs* logs);
  void Line(Followed& w, std::string_view line, bool is_err, proto::WorkerLogs* logs);
  void Close(Followed& w);

  const std::string node_;
  Sink sink_;
  std::map<WorkerID, Followed> workers_;
};

}  // namespace lumen::node
