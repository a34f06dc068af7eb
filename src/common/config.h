// Process-wide tuning knobs (see config_def.h). Read once at first use from the environment;
// thread-safe to read afterwards.
#pragma once

#include <cstdint>
#include <string>

namespace lumen {

class Config {
 public:
  static const Config& Get();

#define LUMEN_CONFIG(type, name, default_value, comment) \
  type name() const { return name##_; }
#include "common/config_def.h"
#undef LUMEN_CONFIG

 private:
  Config();
#define LUMEN_CONFIG(type, name, default_value, comment) type name##_ = default_value;
#include "common/config_def.h"
#undef LUMEN_CONFIG
};

}  // namespace lumen
