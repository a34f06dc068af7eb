// Where a write's output and its records live: a local directory or an S3 prefix. The write
// modes (write_commit.h) and the writers (writers.cc) reach both through this. Internal to
// src/data.
//
// Paths are the output directory (a local path or s3://bucket/prefix) joined with '/'-separated
// names. On S3 a "folder" is every key under its name and '/': moving or removing one moves
// or removes each object (S3 has no renames), and nothing is locked.
//
// Thread safety: the methods are const and may be called from several threads at once.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lumen/data/s3.h"

namespace lumen::data::internal {

class OutputStore {
 public:
  // The store of `dir`: S3 for s3:// URIs (with `s3`), else the local filesystem.
  static std::unique_ptr<OutputStore> For(const std::string& dir, const S3Options& s3);
  virtual ~OutputStore() = default;

  virtual bool is_s3() const = 0;
  // Makes `dir` exist (nothing to do on S3). Throws DataError.
  virtual void MakeDir(const std::string& dir) const = 0;
  // The names directly in `dir` (files and folders), sorted; none if it does not exist.
  virtual std::vector<std::string> Entries(const std::string& dir) const = 0;
  virtual bool Exists(const std::string& path) const = 0;
  // The file's bytes; nullopt if there is no such file.
  virtual std::optional<std::string> Read(const std::string& path) const = 0;
  // Replaces `path` with `data` as a whole: a reader sees the old bytes or the new ones.
  virtual void Replace(const std::string& path, std::string_view data) const = 0;
  // Creates `path` with `data` unless it exists (false then). The file appears only complete:
  // a killed or retried writer never leaves a partial or second copy. `may_exist = false`
  // skips the check when the caller knows its folder is new.
  virtual bool CreateOnce(const std::string& path, std::string_view data,
                          bool may_exist = true) const = 0;
  // Removes a file, or a folder with everything in it; nothing if absent.
  virtual void RemoveAll(const std::string& path) const = 0;
  // Moves a file or a folder to `to` (which must not exist).
  virtual void Move(const std::string& from, const std::string& to) const = 0;
};

}  // namespace lumen::data::internal
