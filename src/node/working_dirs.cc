#include "node/working_dirs.h"

#include "common/binary_store.h"
#include "common/dir_archive.h"
#include "common/fs.h"
#include "common/logging.h"

namespace lumen::node {

WorkingDirs::WorkingDirs(rpc::EventLoop* loop, std::string session_dir,
                         std::function<rpc::ConnectionPtr()> gcs, std::function<void()> on_change)
    : loop_(loop),
      root_(JoinPath(JoinPath(session_dir, "runtime_resources"), "working_dirs")),
      gcs_(std::move(gcs)),
      on_change_(std::move(on_change)) {}

WorkingDirs::~WorkingDirs() {
  shared_->alive = false;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

Status WorkingDirs::Get(const std::string& hash, std::string* path) {
  Entry& e = shared_->entries[hash];
  if (e.ready) {
    *path = e.path;
    return Status::OK();
  }
  if (!e.error.ok()) {
    if (std::chrono::steady_clock::now() - e.failed_at < kRetryAfter) return e.error;
    e.error = Status::OK();
  }
  if (e.pending) return UnavailableError("being prepared");
  const std::string dest = JoinPath(root_, hash);
  if (!binaries::IsContentHash(hash)) {  // a peer's bad message must not become a path
    Finish(hash, InvalidArgumentError("'" + hash + "' is not a working_dir's content hash"),
           /*notify=*/false);
    return e.error;
  }
  if (PathExists(dest)) {  // unpacked by this node before (Unpack renames complete trees only)
    Finish(hash, Status::OK(), /*notify=*/false);
    *path = dest;
    return Status::OK();
  }
  e.pending = true;
  binaries::Materialize(
      gcs_(), hash, JoinPath(root_, "archives"),
      [this, hash, dest, shared = shared_](StatusOr<std::string> archive) {
        if (!shared->alive) return;
        if (!archive.ok()) {  // (possibly called from within Get: report from the loop)
          loop_->Post([this, hash, st = archive.status(), shared] {
            if (shared->alive) Finish(hash, st, /*notify=*/true);
          });
          return;
        }
        threads_.emplace_back([this, hash, dest, shared, file = *archive] {
          Status st = Status::OK();
          auto bytes = ReadFile(file);
          st = bytes.ok() ? dir_archive::Unpack(*bytes, dest) : bytes.status();
          loop_->Post([this, hash, st, shared] {
            if (shared->alive) Finish(hash, st, /*notify=*/true);
          });
        });
      });
  return UnavailableError("being prepared");
}

void WorkingDirs::Finish(const std::string& hash, Status st, bool notify) {
  Entry& e = shared_->entries[hash];
  e.pending = false;
  if (st.ok()) {
    e.ready = true;
    e.path = JoinPath(root_, hash);
  } else {
    e.error = Status(st.code(), "cannot prepare runtime_env.working_dir " + hash.substr(0, 12) +
                                    " on this node: " + st.message());
    e.failed_at = std::chrono::steady_clock::now();
    LUMEN_LOG(WARNING) << e.error;
  }
  if (notify && on_change_) on_change_();
}

}  // namespace lumen::node
