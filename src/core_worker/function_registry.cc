// The process-wide registry of LUMEN_REMOTE functions and the serialization helpers that the
// public templates need.
#include <cxxabi.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/thread_annotations.h"
#include "lumen/errors.h"
#include "lumen/internal/runtime.h"
#include "lumen/serialization.h"

namespace lumen::internal {
namespace {

struct Registry {
  Mutex mu;
  std::unordered_map<std::string, std::unique_ptr<RemoteFunction>> by_key LUMEN_GUARDED_BY(mu);
  std::unordered_map<std::string, RemoteFunction*> by_name LUMEN_GUARDED_BY(mu);
  // Class name -> its LUMEN_ACTOR constructors.
  std::unordered_map<std::string, std::vector<const RemoteFunction*>> constructors
      LUMEN_GUARDED_BY(mu);
  // LUMEN_CONCURRENCY_GROUP: key -> group (applied whenever the method registers).
  std::unordered_map<std::string, std::string> groups LUMEN_GUARDED_BY(mu);
};

std::string Joined(const std::vector<std::string>& types) {
  std::string out;
  for (const auto& t : types) out += (out.empty() ? "" : ", ") + t;
  return out;
}

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
  if (auto g = r.groups.find(key); g != r.groups.end()) fn.concurrency_group = g->second;
  auto owned = std::make_unique<RemoteFunction>(std::move(fn));
  r.by_name[owned->name] = owned.get();
  if (owned->is_constructor) r.constructors[owned->class_name].push_back(owned.get());
  r.by_key[std::move(key)] = std::move(owned);
}

const RemoteFunction& FindConstructor(const std::string& class_name,
                                      const std::vector<std::string>& arg_types) {
  Registry& r = GetRegistry();
  MutexLock lock(r.mu);
  std::vector<const RemoteFunction*> same_arity;
  auto it = r.constructors.find(class_name);
  if (it != r.constructors.end()) {
    for (const RemoteFunction* fn : it->second) {
      if (fn->param_types == arg_types) return *fn;
      if (fn->param_types.size() == arg_types.size()) same_arity.push_back(fn);
    }
  }
  if (same_arity.size() == 1) return *same_arity[0];
  const std::string call = class_name + "(" + Joined(arg_types) + ")";
  if (same_arity.empty()) {
    throw FunctionNotFoundError("lumen::Actor<" + class_name + ">(): no constructor for " + call +
                                " is registered; add LUMEN_ACTOR(" + class_name +
                                (arg_types.empty() ? "" : ", " + Joined(arg_types)) +
                                ") at namespace scope in the program");
  }
  std::string names;
  for (const RemoteFunction* fn : same_arity) names += (names.empty() ? "" : ", ") + fn->name;
  throw TypeError("lumen::Actor<" + class_name + ">(): the call " + call +
                  " could mean any of the registered constructors " + names +
                  "; pass arguments of exactly one of their types");
}

const RemoteFunction* FindMethodByName(const std::string& class_name, const std::string& name) {
  Registry& r = GetRegistry();
  MutexLock lock(r.mu);
  if (auto it = r.by_name.find(name); it != r.by_name.end()) {
    return it->second->is_method && it->second->class_name == class_name ? it->second : nullptr;
  }
  // Without the class: the method of this class whose registered name ends in "::name".
  const std::string suffix = "::" + name;
  for (const auto& [n, fn] : r.by_name) {
    if (fn->is_method && fn->class_name == class_name && n.size() > suffix.size() &&
        n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return fn;
    }
  }
  return nullptr;
}

bool SetConcurrencyGroup(const std::string& key, const std::string& group) {
  Registry& r = GetRegistry();
  MutexLock lock(r.mu);
  r.groups[key] = group;
  // Registered already: set it now. (Static initialisation: nothing reads it concurrently.)
  if (auto it = r.by_key.find(key); it != r.by_key.end()) it->second->concurrency_group = group;
  return true;
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
