#include "core_worker/runtime_envs.h"

#include <climits>
#include <cstdlib>

#include "common/binary_store.h"
#include "common/dir_archive.h"

namespace lumen::core {

RuntimeEnvs::RuntimeEnvs(std::shared_ptr<const proto::RuntimeEnv> inherited,
                         std::function<rpc::ConnectionPtr()> gcs)
    : inherited_(std::move(inherited)), gcs_(std::move(gcs)) {}

StatusOr<std::shared_ptr<const proto::RuntimeEnv>> RuntimeEnvs::Resolve(const RuntimeEnv& env) {
  if (env.env_vars.empty() && env.working_dir.empty()) return inherited_;
  std::string dir;
  if (!env.working_dir.empty()) {
    char real[PATH_MAX];
    if (!::realpath(env.working_dir.c_str(), real)) {
      return InvalidArgumentError("runtime_env.working_dir " + env.working_dir + " does not exist");
    }
    dir = real;
  }
  // The canonical text of the options: the cache key, and (with the directory's content hash
  // in place of its path) the environment's key.
  std::string vars;
  for (const auto& [k, v] : env.env_vars) {
    if (k.empty() || k.find('=') != std::string::npos) {
      return InvalidArgumentError("runtime_env.env_vars: '" + k + "' is not a variable name");
    }
    vars += k + "=" + v + '\0';
  }
  const std::string request = vars + "\ndir:" + dir;
  MutexLock lock(mu_);  // also makes concurrent first uses of one directory upload it once
  if (auto it = resolved_.find(request); it != resolved_.end()) return it->second;
  auto out = std::make_shared<proto::RuntimeEnv>();
  for (const auto& [k, v] : env.env_vars) (*out->mutable_env_vars())[k] = v;
  if (!dir.empty()) {
    auto archive = dir_archive::Pack(dir, kMaxWorkingDirBytes);
    if (!archive.ok()) return archive.status();
    rpc::ConnectionPtr gcs = gcs_();
    if (!gcs || gcs->closed()) {
      return UnavailableError("cannot upload runtime_env.working_dir " + dir +
                              ": no connection to the control service");
    }
    auto hash = binaries::Upload(*gcs, *archive);
    if (!hash.ok()) {
      return Status(hash.status().code(),
                    "uploading runtime_env.working_dir " + dir + ": " + hash.status().message());
    }
    out->set_working_dir(*hash);
  }
  out->set_key(binaries::ContentHash(vars + "\ndir:" + out->working_dir()).substr(0, 32));
  resolved_[request] = out;
  return std::shared_ptr<const proto::RuntimeEnv>(out);
}

}  // namespace lumen::core
