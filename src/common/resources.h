// Fixed-point resource quantities (1 unit == 10000) keyed by name: "CPU", "GPU", "memory",
// "object_store_memory" and custom names. Value type; thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "google/protobuf/map.h"

namespace lumen {

constexpr int64_t kResourceUnit = 10000;

inline int64_t ToFixed(double amount) {
  return static_cast<int64_t>(amount * kResourceUnit + (amount >= 0 ? 0.5 : -0.5));
}
inline double FromFixed(int64_t fixed) { return static_cast<double>(fixed) / kResourceUnit; }

class ResourceSet {
 public:
  ResourceSet() = default;
  explicit ResourceSet(std::map<std::string, int64_t> amounts);
  static ResourceSet FromDoubles(const std::map<std::string, double>& amounts);
  static ResourceSet FromProto(const google::protobuf::Map<std::string, int64_t>& m);
  void ToProto(google::protobuf::Map<std::string, int64_t>* m) const;

  int64_t Get(const std::string& name) const;
  void Set(const std::string& name, int64_t fixed);
  bool Empty() const { return amounts_.empty(); }
  // Every quantity in *this is available in `other`.
  bool IsSubsetOf(const ResourceSet& other) const;
  void Add(const ResourceSet& other);
  void Subtract(const ResourceSet& other);  // may go negative (oversubscription)
  const std::map<std::string, int64_t>& amounts() const { return amounts_; }
  // "{CPU: 1, GPU: 0.5}"
  std::string ToString() const;
  // Scheduling key: a canonical string of the shape.
  std::string Key() const;

  bool operator==(const ResourceSet& o) const { return amounts_ == o.amounts_; }

 private:
  std::map<std::string, int64_t> amounts_;  // zero entries are dropped
};

}  // namespace lumen
