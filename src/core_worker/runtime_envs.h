// The runtime environments (lumen::RuntimeEnv) a process submits work with, resolved once each:
// environment variables as given, the working_dir packed (common/dir_archive.h) and stored by
// content in the control service (common/binary_store.h) so that every node can unpack it, and
// a key that tells workers of different environments apart. Work without an environment of its
// own gets this process's (a worker's, from LUMEN_RUNTIME_ENV; none in a driver).
//
// Thread safety: thread-safe; Resolve blocks while it uploads a working_dir (first use only).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "lumen/options.h"

namespace lumen::core {

class RuntimeEnvs {
 public:
  // At most this much file content is sent for a working_dir (Ray's limit).
  static constexpr uint64_t kMaxWorkingDirBytes = 500ull << 20;

  // `inherited`: this process's environment (null: none). `gcs` gives the control-service
  // connection to upload through.
  RuntimeEnvs(std::shared_ptr<const proto::RuntimeEnv> inherited,
              std::function<rpc::ConnectionPtr()> gcs);

  // The environment to run work with; null when it has none. Fails (InvalidArgument) for a
  // working_dir that is not a readable directory or is too large, and when the upload fails.
  StatusOr<std::shared_ptr<const proto::RuntimeEnv>> Resolve(const RuntimeEnv& env);

 private:
  const std::shared_ptr<const proto::RuntimeEnv> inherited_;
  const std::function<rpc::ConnectionPtr()> gcs_;
  Mutex mu_;
  // The options as given (canonical text) -> resolved.
  std::map<std::string, std::shared_ptr<const proto::RuntimeEnv>> resolved_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::core
