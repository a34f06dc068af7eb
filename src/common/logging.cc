#include "common/logging.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <utility>

#include "common/config.h"
#include "common/thread_annotations.h"

namespace lumen {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kWarning)};
std::atomic<int> g_stderr_level{static_cast<int>(LogLevel::kWarning)};
std::atomic<int> g_fd{-1};
Mutex g_init_mu;  // serialises InitLogging and ShutdownLogging

const char* LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "D";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kWarning:
      return "W";
    case LogLevel::kError:
      return "E";
    case LogLevel::kFatal:
      return "F";
  }
  return "?";
}

// Reads LUMEN_LOG_LEVEL once so that logging before InitLogging honours it.
struct EnvLevel {
  EnvLevel() {
    if (const char* env = std::getenv("LUMEN_LOG_LEVEL")) {
      g_level = static_cast<int>(ParseLogLevel(env, LogLevel::kWarning));
    }
  }
} g_env_level;

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Rate-limited call sites: when each last wrote, and how many lines it dropped since.
struct RepeatState {
  std::chrono::steady_clock::time_point last_written{};
  uint64_t dropped = 0;
};
Mutex g_repeat_mu;
// Keyed by __FILE__, __LINE__.
std::map<std::pair<const char*, int>, RepeatState> g_repeat LUMEN_GUARDED_BY(g_repeat_mu);

}  // namespace

LogLevel ParseLogLevel(const std::string& text, LogLevel fallback) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "debug" || t == "trace") return LogLevel::kDebug;
  if (t == "info") return LogLevel::kInfo;
  if (t == "warning" || t == "warn") return LogLevel::kWarning;
  if (t == "error") return LogLevel::kError;
  if (t == "fatal") return LogLevel::kFatal;
  return fallback;
}

void InitLogging(const std::string& log_file, LogLevel level, LogLevel stderr_level) {
  MutexLock lock(g_init_mu);
  g_level = static_cast<int>(level);
  g_stderr_level = static_cast<int>(stderr_level);
  int old = g_fd.exchange(-1);
  if (old >= 0) ::close(old);
  if (!log_file.empty()) {
    int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g_fd = fd;
  }
}

void ShutdownLogging() {
  MutexLock lock(g_init_mu);
  int old = g_fd.exchange(-1);
  if (old >= 0) ::close(old);
}

LogLevel CurrentLogLevel() { return static_cast<LogLevel>(g_level.load()); }

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= std::min(g_level.load(), g_stderr_level.load());
}

LogMessage::LogMessage(LogLevel level, const char* file, int line, Repeat repeat) : level_(level) {
  if (repeat == Repeat::kOncePerWindow) {
    const auto window = std::chrono::milliseconds(Config::Get().log_repeat_window_ms());
    const auto steady = std::chrono::steady_clock::now();
    MutexLock lock(g_repeat_mu);
    RepeatState& site = g_repeat[{file, line}];
    if (site.last_written.time_since_epoch().count() != 0 && steady - site.last_written < window) {
      ++site.dropped;
      dropped_ = true;
      return;
    }
    site.last_written = steady;
    repeated_ = std::exchange(site.dropped, 0);
  }
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
            1000000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char head[64];
  std::strftime(head, sizeof(head), "%m%d %H:%M:%S", &tm);
  const char* base = file;
  for (const char* p = file; *p; ++p) {
    if (*p == '/') base = p + 1;
  }
  char prefix[160];
  std::snprintf(prefix, sizeof(prefix), "[%s%s.%06lld %d %ld %s:%d] ", LevelLetter(level), head,
                static_cast<long long>(us), static_cast<int>(::getpid()),
                static_cast<long>(::syscall(SYS_gettid)), base, line);
  stream_ << prefix;
}

LogMessage::~LogMessage() {
  if (dropped_) return;
  if (repeated_ > 0) stream_ << " (repeated " << repeated_ << " times)";
  stream_ << '\n';
  std::string line = stream_.str();
  int fd = g_fd.load();
  if (static_cast<int>(level_) >= g_level.load() && fd >= 0) WriteAll(fd, line);
  if (static_cast<int>(level_) >= g_stderr_level.load() ||
      (fd < 0 && static_cast<int>(level_) >= g_level.load())) {
    WriteAll(2, line);
  }
  if (level_ == LogLevel::kFatal) std::abort();
}

}  // namespace lumen
