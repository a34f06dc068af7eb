// Helpers the `lumen` subcommands share: where the cluster is and its token.
#pragma once

#include <cstdlib>
#include <string>

#include "common/fs.h"
#include "common/session.h"

namespace lumen::cli {

inline std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// --token, else LUMEN_TOKEN, else the token of the newest session under `root`.
inline std::string ResolveToken(const std::string& flag, const std::string& root) {
  if (!flag.empty()) return flag;
  if (!Env("LUMEN_TOKEN").empty()) return Env("LUMEN_TOKEN");
  auto t = ReadToken(LatestSessionDir(root));
  return t.ok() ? *t : "";
}

// --address, else LUMEN_ADDRESS, else the address of the newest session under `root`.
inline std::string ResolveAddress(const std::string& flag, const std::string& root) {
  if (!flag.empty()) return flag;
  if (!Env("LUMEN_ADDRESS").empty()) return Env("LUMEN_ADDRESS");
  auto a = ReadFile(JoinPath(LatestSessionDir(root), "address"));
  if (!a.ok()) return "";
  std::string s = *a;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace lumen::cli
