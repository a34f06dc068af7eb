#include "gcs/gcs_store.h"

namespace lumen::gcs {

Status InMemoryGcsStore::Put(const std::string& table, const std::string& key,
                             const std::string& value) {
  MutexLock lock(mu_);
  tables_[table][key] = value;
  return Status::OK();
}

StatusOr<std::string> InMemoryGcsStore::Get(const std::string& table, const std::string& key) {
  MutexLock lock(mu_);
  auto t = tables_.find(table);
  if (t == tables_.end()) return NotFoundError(key);
  auto it = t->second.find(key);
  if (it == t->second.end()) return NotFoundError(key);
  return it->second;
}

Status InMemoryGcsStore::Delete(const std::string& table, const std::string& key) {
  MutexLock lock(mu_);
  auto t = tables_.find(table);
  if (t != tables_.end()) t->second.erase(key);
  return Status::OK();
}

StatusOr<std::vector<std::pair<std::string, std::string>>> InMemoryGcsStore::GetAll(
    const std::string& table) {
  MutexLock lock(mu_);
  std::vector<std::pair<std::string, std::string>> out;
  auto t = tables_.find(table);
  if (t == tables_.end()) return out;
  for (const auto& kv : t->second) out.push_back(kv);
  return out;
}

}  // namespace lumen::gcs
