// Write modes (WriteOptions::mode): what a write finds in its output directory, the manifest
// that makes resuming safe, and the commit (the _SUCCESS marker, an overwrite's replacement of
// the old files). Runs in the driver; the files themselves are committed by tasks (writers.cc).
//
// Layout of an output directory (a local directory or an S3 prefix, see output_store.h):
//   _lumen_manifest.json        the writes that made the directory's files: for each its plan
//                               (one line per operator, with parameters), its inputs and
//                               whether it completed; appends add entries
//   _SUCCESS                    every recorded write completed
//   .lumen-write.lock           held (flock) by the write running there
//   .lumen-overwrite-<hash>/    an overwrite's new output until it replaces the old files
//
// Thread safety: an OutputDir is used by one thread; two writes to one directory at once are
// refused (the lock), across processes too.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/executor.h"
#include "data/output_store.h"
#include "data/plan.h"
#include "lumen/data/dataset.h"

namespace lumen::data::internal {

struct InputFile {
  std::string path;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  std::string etag;  // S3 objects: what their content is (an object replaced by another changes it)
  bool operator==(const InputFile&) const = default;
};

// One write as a manifest records it.
struct WriteRecord {
  std::string id;                 // appends: the prefix of their file names; else ""
  std::string mode;               // "resume", "error", "overwrite", "append", "ignore"
  std::vector<std::string> plan;  // DescribeWrite
  std::vector<InputFile> inputs;  // every file read, sorted by path
  bool complete = false;
  // Same plan and inputs (the id, mode and completion aside).
  bool SameWork(const WriteRecord& o) const { return plan == o.plan && inputs == o.inputs; }
};

// The plan of `root` followed by the sink (`sink_line`), one line per operator with the
// parameters that shape the output (not concurrency or resources); in-memory blocks by their
// content's hash.
std::vector<std::string> DescribeWrite(const std::shared_ptr<LogicalNode>& root,
                                       const std::string& sink_line);
// The files the planned sources will read (their listing), sorted by path.
std::vector<InputFile> ListedInputs(const std::vector<std::unique_ptr<PhysicalOp>>& ops);

// Where and under which names the tasks write.
struct WriteTarget {
  bool ignore = false;  // kIgnore found output: write nothing
  std::string dir;      // the directory tasks write to (an overwrite's staging directory)
  std::string run_id;   // appends: the name prefix
  bool fresh = false;   // nothing was there: tasks need not look for files already written
};

class OutputDir {
 public:
  // Creates `dir`, takes its lock (local directories; S3 has none) and finishes an overwrite
  // that was interrupted while replacing the old files. `label` names the write in errors
  // ("WriteCsv(out/)"); `s3` reaches an s3:// dir.
  OutputDir(std::string dir, std::string label, const S3Options& s3 = {});
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  // Decides what `mode` does here for the write `now` (its plan and inputs) and records it in
  // the manifest before anything is written. Throws DataError (saying what is there, what
  // changed and which mode to pick) when the mode refuses the directory.
  WriteTarget Prepare(WriteMode mode, WriteRecord now);
  // Every task succeeded: marks the write complete, writes _SUCCESS when every recorded write
  // is, and for an overwrite replaces the old files with the new ones.
  void Commit();

 private:
  struct Manifest;
  std::string label_;
  std::string dir_;
  std::unique_ptr<OutputStore> store_;
  int lock_fd_ = -1;
  WriteMode mode_ = WriteMode::kResume;
  WriteRecord record_;
  std::string staging_;  // overwrite
};

}  // namespace lumen::data::internal
