// The runtime_env working directories this node's workers run in: fetched by content hash from
// the control service (common/binary_store.h) and unpacked (common/dir_archive.h) once each,
// under <session>/runtime_resources/working_dirs/<hash>. Unpacking runs on a thread of its
// own (a directory may be hundreds of MiB); lease requests wait meanwhile.
//
// Thread safety: loop thread only (its helper threads report back through the loop).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/status.h"

namespace lumen::node {

class WorkingDirs {
 public:
  // `gcs` gives the control-service connection; `on_change` runs (on the loop) whenever a
  // directory became ready or failed.
  WorkingDirs(rpc::EventLoop* loop, std::string session_dir,
              std::function<rpc::ConnectionPtr()> gcs, std::function<void()> on_change);
  ~WorkingDirs();  // joins the unpacking threads
  WorkingDirs(const WorkingDirs&) = delete;
  WorkingDirs& operator=(const WorkingDirs&) = delete;

  // The directory of `hash` when ready (OK, `*path` set); Unavailable while it is being
  // prepared (started by the first call; `on_change` runs when that ends); the error when it
  // could not be — for kRetryAfter, then a request tries again. Never calls `on_change` itself.
  Status Get(const std::string& hash, std::string* path);

  static constexpr std::chrono::seconds kRetryAfter{10};

 private:
  struct Entry {
    bool ready = false;
    bool pending = false;
    Status error = Status::OK();
    std::chrono::steady_clock::time_point failed_at;
    std::string path;
  };
  // What helper threads reach through the loop: gone once the owner is.
  struct Shared {
    bool alive = true;
    std::map<std::string, Entry> entries;
  };
  // Records the outcome; `notify`: runs on_change (not from inside Get).
  void Finish(const std::string& hash, Status st, bool notify);

  rpc::EventLoop* const loop_;
  const std::string root_;
  const std::function<rpc::ConnectionPtr()> gcs_;
  const std::function<void()> on_change_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::vector<std::thread> threads_;
};

}  // namespace lumen::node
