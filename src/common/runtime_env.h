// A runtime environment as the text of LUMEN_RUNTIME_ENV: node daemons start workers with it,
// and a worker's own submissions inherit it (core_worker/runtime_envs.h).
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include "common.pb.h"

namespace lumen {

inline std::string EncodeRuntimeEnv(const proto::RuntimeEnv& env) {
  static const char* digits = "0123456789abcdef";
  const std::string bytes = env.SerializeAsString();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Null when `text` is empty or malformed.
inline std::shared_ptr<const proto::RuntimeEnv> DecodeRuntimeEnv(const std::string& text) {
  if (text.empty() || text.size() % 2 != 0) return nullptr;
  std::string bytes;
  bytes.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    const std::string pair = text.substr(i, 2);
    char* end = nullptr;
    const long v = std::strtol(pair.c_str(), &end, 16);
    if (end != pair.c_str() + 2) return nullptr;
    bytes.push_back(static_cast<char>(v));
  }
  auto env = std::make_shared<proto::RuntimeEnv>();
  if (!env->ParseFromString(bytes) || env->key().empty()) return nullptr;
  return env;
}

}  // namespace lumen
