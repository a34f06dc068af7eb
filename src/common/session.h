// Session directories: one per cluster (or embedded driver) under a root such as /tmp/lumen:
//   <root>/session_<time>_<pid>/{token, logs/, sockets/, spill/}
// The token file (mode 0600) holds the cluster token every RPC must carry.
#pragma once

#include <string>

#include "common/status.h"

namespace lumen {

struct Session {
  std::string dir;
  std::string token;
};

// Creates a new session directory with a fresh random token. With `make_latest`, points
// <root>/session_latest at it (clusters started by the CLI).
StatusOr<Session> CreateSession(const std::string& root, bool make_latest);
std::string NewToken();
StatusOr<std::string> ReadToken(const std::string& session_dir);
// <root>/session_latest resolved, or empty.
std::string LatestSessionDir(const std::string& root);
// Removes sockets/ and spill/ of a finished session and all but the newest `keep` embedded
// sessions under `root` (their logs are kept until then).
void CleanupSession(const std::string& session_dir, const std::string& root, int keep);

}  // namespace lumen
