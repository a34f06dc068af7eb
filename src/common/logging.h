// Per-process logging: one file per process in the session's logs/ directory, level set by
// LUMEN_LOG_LEVEL (debug, info, warning, error). Thread-safe: each line is one write(2).
//
//   LUMEN_LOG(INFO) << "started " << n << " workers";
//   LUMEN_CHECK(ptr != nullptr) << "broken invariant";   // aborts with the message
//   LUMEN_LOG_EVERY_WINDOW(WARNING) << "accept: " << err;  // at most once per window per site
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

namespace lumen {

// A worker writes this, then the name of the function or actor class, as a line on stdout and
// stderr when it starts a task of another name; the node's log monitor (src/node/log_monitor.h)
// prefixes the output that follows with it and does not forward the marker.
inline constexpr const char* kTaskOutputMarker = "\x1flumen-task:";

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Parses "debug", "info", "warning"/"warn", "error" (case-insensitive); `fallback` otherwise.
LogLevel ParseLogLevel(const std::string& text, LogLevel fallback);

// Directs log output of this process. `log_file` empty: stderr only. Messages at or above
// `stderr_level` are also copied to stderr. May be called again (e.g. after fork).
void InitLogging(const std::string& log_file, LogLevel level, LogLevel stderr_level);

// Closes the log file (lines go to stderr afterwards).
void ShutdownLogging();

LogLevel CurrentLogLevel();
bool LogEnabled(LogLevel level);

class LogMessage {
 public:
  enum class Repeat { kAlways, kOncePerWindow };
  // kOncePerWindow: a line from this file:line is written at most once per
  // `log_repeat_window_ms` (config); the next one written ends with "(repeated N times)", N
  // being the lines dropped since. A peer that floods a service cannot flood its log.
  LogMessage(LogLevel level, const char* file, int line, Repeat repeat = Repeat::kAlways);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  bool dropped_ = false;
  uint64_t repeated_ = 0;
  std::ostringstream stream_;
};

// Swallows the stream in the disabled branch of LUMEN_LOG.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace lumen

#define LUMEN_LOG_LEVEL_DEBUG ::lumen::LogLevel::kDebug
#define LUMEN_LOG_LEVEL_INFO ::lumen::LogLevel::kInfo
#define LUMEN_LOG_LEVEL_WARNING ::lumen::LogLevel::kWarning
#define LUMEN_LOG_LEVEL_ERROR ::lumen::LogLevel::kError
#define LUMEN_LOG_LEVEL_FATAL ::lumen::LogLevel::kFatal

#define LUMEN_LOG(level)                        \
  !::lumen::LogEnabled(LUMEN_LOG_LEVEL_##level) \
      ? (void)0                                 \
      : ::lumen::LogVoidify() &                 \
            ::lumen::LogMessage(LUMEN_LOG_LEVEL_##level, __FILE__, __LINE__).stream()

#define LUMEN_LOG_EVERY_WINDOW(level)                                                            \
  !::lumen::LogEnabled(LUMEN_LOG_LEVEL_##level)                                                  \
      ? (void)0                                                                                  \
      : ::lumen::LogVoidify() & ::lumen::LogMessage(LUMEN_LOG_LEVEL_##level, __FILE__, __LINE__, \
                                                    ::lumen::LogMessage::Repeat::kOncePerWindow) \
                                    .stream()

#define LUMEN_CHECK(cond)                                                                  \
  (cond) ? (void)0                                                                         \
         : ::lumen::LogVoidify() &                                                         \
               ::lumen::LogMessage(::lumen::LogLevel::kFatal, __FILE__, __LINE__).stream() \
                   << "Check failed: " #cond " "
