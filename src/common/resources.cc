#include "common/resources.h"

#include <cstdio>

namespace lumen {

ResourceSet::ResourceSet(std::map<std::string, int64_t> amounts) {
  for (auto& [k, v] : amounts) {
    if (v != 0) amounts_[k] = v;
  }
}

ResourceSet ResourceSet::FromDoubles(const std::map<std::string, double>& amounts) {
  ResourceSet r;
  for (const auto& [k, v] : amounts) r.Set(k, ToFixed(v));
  return r;
}

ResourceSet ResourceSet::FromProto(const google::protobuf::Map<std::string, int64_t>& m) {
  ResourceSet r;
  for (const auto& [k, v] : m) r.Set(k, v);
  return r;
}

void ResourceSet::ToProto(google::protobuf::Map<std::string, int64_t>* m) const {
  m->clear();
  for (const auto& [k, v] : amounts_) (*m)[k] = v;
}

int64_t ResourceSet::Get(const std::string& name) const {
  auto it = amounts_.find(name);
  return it == amounts_.end() ? 0 : it->second;
}

void ResourceSet::Set(const std::string& name, int64_t fixed) {
  if (fixed == 0) {
    amounts_.erase(name);
  } else {
    amounts_[name] = fixed;
  }
}

bool ResourceSet::IsSubsetOf(const ResourceSet& other) const {
  for (const auto& [k, v] : amounts_) {
    if (v > other.Get(k)) return false;
  }
  return true;
}

void ResourceSet::Add(const ResourceSet& other) {
  for (const auto& [k, v] : other.amounts_) Set(k, Get(k) + v);
}

void ResourceSet::Subtract(const ResourceSet& other) {
  for (const auto& [k, v] : other.amounts_) Set(k, Get(k) - v);
}

std::string ResourceSet::ToString() const {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : amounts_) {
    if (!first) out += ", ";
    first = false;
    char buf[64];
    if (k == "memory" || k == "object_store_memory") {
      std::snprintf(buf, sizeof(buf), "%.0f", FromFixed(v));
    } else {
      std::snprintf(buf, sizeof(buf), "%g", FromFixed(v));
    }
    out += k + ": " + buf;
  }
  return out + "}";
}

std::string ResourceSet::Key() const {
  std::string out;
  for (const auto& [k, v] : amounts_) out += k + "=" + std::to_string(v) + ";";
  return out;
}

}  // namespace lumen
