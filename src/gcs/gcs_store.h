// Storage behind the control service's tables (nodes, jobs, actors, KV). One interface; the
// in-memory implementation is the default. Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace lumen::gcs {

class GcsStore {
 public:
  virtual ~GcsStore() = default;
  virtual Status Put(const std::string& table, const std::string& key,
                     const std::string& value) = 0;
  // NotFound when absent.
  virtual StatusOr<std::string> Get(const std::string& table, const std::string& key) = 0;
  virtual Status Delete(const std::string& table, const std::string& key) = 0;
  virtual StatusOr<std::vector<std::pair<std::string, std::string>>> GetAll(
      const std::string& table) = 0;
  // True when a call may wait on something outside the process (a server): the control
  // service then makes its calls off its event loop (StoreQueue).
  virtual bool MayBlock() const { return false; }
};

class InMemoryGcsStore : public GcsStore {
 public:
  Status Put(const std::string& table, const std::string& key, const std::string& value) override;
  StatusOr<std::string> Get(const std::string& table, const std::string& key) override;
  Status Delete(const std::string& table, const std::string& key) override;
  StatusOr<std::vector<std::pair<std::string, std::string>>> GetAll(
      const std::string& table) override;

 private:
  Mutex mu_;
  std::map<std::string, std::map<std::string, std::string>> tables_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::gcs
