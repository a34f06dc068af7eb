// The process-wide registry of LUMEN_REMOTE functions and the serialization helpers that the
// public templates need.
#include <cxxabi.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/thread_annotations.h"
#include "lumen/internal/runtime.h"
#include "lumen/serialization.h"

namespace lumen::internal {
namespace {

struct Registry {
  Mutex mu;
  std::unordered_map<std::string, std::unique_ptr<RemoteFunction>> by_key LUMEN_GUARDED_BY(mu);
  std::unordered_map<std::string, RemoteFunction*> by_name LUMEN_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* r = new Registry();  // never destroyed: used during static destruction
  return *r;
}

}  // namespace

void RegisterRemote(std::string key, RemoteFunction fn) {
  Registry& r = GetRegistry();
  MutexLock lock(r.mu);
  if (r.by_key.count(key)) return;  // the same function registered twice: harmless
  auto named = r.by_name.find(fn.name);
  if (named != r.by_name.end()) {
    std::fprintf(stderr,
                 "lumen: LUMEN_REMOTE registers two different functions under the name '%s' "
                 "(%s and %s); give them distinct names\n",
                 fn.name.c_str(), named->second->signature.c_str(), fn.signature.c_str());
    std::abort();
  }
  fn.signature_hash = Hash64(fn.signature.data(), fn.signature.size());
  auto owned = std::make_unique<RemoteFunction>(std::move(fn));
  r.by_name[owned->name] = owned.get();
  r.by_key[std::move(key)] = std::move(owned);
}

const RemoteFunction* FindRemoteByKey(const std::string& key) {
  Registry& r = GetRegistry();
  MutexLock lock(r.mu);
  auto it = r.by_key.find(key);
  return it == r.by_key.end() ? nullptr : it->second.get();
}

const RemoteFunction* FindRemoteByName(const std::string& name) {
  Registry& r = GetRegistry();
  MutexLock lock(r.mu);
  auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : it->second;
}

std::vector<std::string> SplitRemoteNames(const char* names) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (const char* p = names; *p; ++p) {
    char c = *p;
    if (c == '<' || c == '(' || c == '[') ++depth;
    if (c == '>' || c == ')' || c == ']') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(cur);
      cur.clear();
      continue;
    }
    if (!std::isspace(static_cast<unsigned char>(c)) && !(c == '&' && cur.empty())) cur += c;
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string Demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(mangled);
}

SerializeContext*& CurrentSerializeContext() {
  thread_local SerializeContext* ctx = nullptr;
  return ctx;
}

DeserializeContext*& CurrentDeserializeContext() {
  thread_local DeserializeContext* ctx = nullptr;
  return ctx;
}

namespace {
struct ThreadZone {
  msgpack::zone zone;
  bool in_use = false;
};
ThreadZone& GetThreadZone() {
  thread_local ThreadZone z;
  return z;
}
}  // namespace

msgpack::zone* AcquireZone() {
  ThreadZone& z = GetThreadZone();
  if (z.in_use) return nullptr;
  z.in_use = true;
  return &z.zone;
}

void ReleaseZone(msgpack::zone* zone) {
  zone->clear();
  GetThreadZone().in_use = false;
}

}  // namespace lumen::internal
