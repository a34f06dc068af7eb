// Small filesystem helpers (POSIX). Thread-safe.
#pragma once

#include <string>

#include "common/status.h"

namespace lumen {

Status MakeDirs(const std::string& path, int mode = 0700);
StatusOr<std::string> ReadFile(const std::string& path);
// Writes to a temporary file in the same directory, then renames it over `path`.
Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0600);
// Removes a file or directory tree; OK if it does not exist.
Status RemoveAll(const std::string& path);
bool PathExists(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);

}  // namespace lumen
