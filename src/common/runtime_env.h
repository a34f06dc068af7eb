// A runtime environment as the text of LUMEN_RUNTIME_ENV: node daemons start workers with it,
// and a worker's own submissions inherit it (core_worker/runtime_envs.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common.pb.h"
#include "lumen/ids.h"

namespace lumen {

inline std::string EncodeRuntimeEnv(const proto::RuntimeEnv& env) {
  const std::string bytes = env.SerializeAsString();
  return internal::BytesToHex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Null when `text` is empty or malformed.
inline std::shared_ptr<const proto::RuntimeEnv> DecodeRuntimeEnv(const std::string& text) {
  if (text.empty() || text.size() % 2 != 0) return nullptr;
  std::string bytes(text.size() / 2, '\0');
  if (!internal::HexToBytes(text, reinterpret_cast<uint8_t*>(bytes.data()), bytes.size())) {
    return nullptr;
  }
  auto env = std::make_shared<proto::RuntimeEnv>();
  if (!env->ParseFromString(bytes) || env->key().empty()) return nullptr;
  return env;
}

}  // namespace lumen
