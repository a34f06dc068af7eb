#include "common/config.h"

#include <cctype>
#include <cstdlib>

#include "common/logging.h"

namespace lumen {
namespace {

std::string EnvName(const char* name) {
  std::string out = "LUMEN_";
  for (const char* p = name; *p; ++p) out += static_cast<char>(std::toupper(*p));
  return out;
}

void Parse(const char* name, int64_t* out) {
  if (const char* v = std::getenv(EnvName(name).c_str())) {
    char* end = nullptr;
    long long x = std::strtoll(v, &end, 10);
    if (end && *end == '\0') {
      *out = x;
    } else {
      LUMEN_LOG(WARNING) << "ignoring " << EnvName(name) << "=" << v << " (not an integer)";
    }
  }
}

void Parse(const char* name, double* out) {
  if (const char* v = std::getenv(EnvName(name).c_str())) {
    char* end = nullptr;
    double x = std::strtod(v, &end);
    if (end && *end == '\0') {
      *out = x;
    } else {
      LUMEN_LOG(WARNING) << "ignoring " << EnvName(name) << "=" << v << " (not a number)";
    }
  }
}

}  // namespace

Config::Config() {
#define LUMEN_CONFIG(type, name, default_value, comment) Parse(#name, &name##_);
#include "common/config_def.h"
#undef LUMEN_CONFIG
}

const Config& Config::Get() {
  static const Config* config = new Config();
  return *config;
}

}  // namespace lumen
