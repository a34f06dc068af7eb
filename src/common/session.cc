#include "common/session.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <vector>

#include "common/fs.h"
#include "lumen/ids.h"

namespace lumen {

std::string NewToken() {
  uint8_t bytes[32];
  internal::FillRandom(bytes, sizeof(bytes));
  return internal::BytesToHex(bytes, sizeof(bytes));
}

StatusOr<Session> CreateSession(const std::string& root, bool make_latest) {
  LUMEN_RETURN_IF_ERROR(MakeDirs(root, 0700));
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[64];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d_%H-%M-%S", &tm);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
            1000000;
  Session s;
  s.dir = JoinPath(root, std::string("session_") + stamp + "_" + std::to_string(us) + "_" +
                             std::to_string(::getpid()));
  LUMEN_RETURN_IF_ERROR(MakeDirs(s.dir, 0700));
  LUMEN_RETURN_IF_ERROR(MakeDirs(JoinPath(s.dir, "logs"), 0700));
  LUMEN_RETURN_IF_ERROR(MakeDirs(JoinPath(s.dir, "sockets"), 0700));
  s.token = NewToken();
  LUMEN_RETURN_IF_ERROR(WriteFileAtomic(JoinPath(s.dir, "token"), s.token + "\n", 0600));
  if (make_latest) {
    std::string link = JoinPath(root, "session_latest");
    std::string tmp = link + ".tmp." + std::to_string(::getpid());
    ::unlink(tmp.c_str());
    if (::symlink(s.dir.c_str(), tmp.c_str()) == 0) ::rename(tmp.c_str(), link.c_str());
  }
  return s;
}

StatusOr<std::string> ReadToken(const std::string& session_dir) {
  LUMEN_ASSIGN_OR_RETURN(std::string t, ReadFile(JoinPath(session_dir, "token")));
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.empty()) return NotFoundError("empty token file in " + session_dir);
  return t;
}

std::string LatestSessionDir(const std::string& root) {
  std::error_code ec;
  auto target = std::filesystem::read_symlink(JoinPath(root, "session_latest"), ec);
  if (ec) return "";
  return target.string();
}

void CleanupSession(const std::string& session_dir, const std::string& root, int keep) {
  RemoveAll(JoinPath(session_dir, "sockets")).IgnoreError();
  RemoveAll(JoinPath(session_dir, "spill")).IgnoreError();
  std::error_code ec;
  std::vector<std::filesystem::path> sessions;
  std::string latest = LatestSessionDir(root);
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("session_", 0) != 0 || name == "session_latest" || e.is_symlink()) continue;
    if (e.path().string() == latest) continue;
    // Only finished sessions (no sockets left) are candidates.
    if (PathExists(JoinPath(e.path().string(), "sockets"))) continue;
    sessions.push_back(e.path());
  }
  std::sort(sessions.begin(), sessions.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < sessions.size(); ++i) {
    std::filesystem::remove_all(sessions[i], ec);
  }
}

}  // namespace lumen
