// GcsStore backed by a Redis server, so that the control service's tables (jobs, actors, nodes,
// KV) outlive a restart of the head. Each table is one Redis hash named "<namespace>:<table>";
// several clusters can share one Redis server under different namespaces.
//
// Thread safety: every method may be called from any thread (one connection, one mutex).
// A broken connection is re-established once per call before the call fails.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "gcs/gcs_store.h"

struct redisContext;

namespace lumen::gcs {

struct RedisOptions {
  // "HOST:PORT" or "unix:/path/to/redis.sock".
  std::string address;
  std::string password;  // AUTH when not empty
  std::string ns = "lumen";
  int timeout_ms = 5000;  // connect and per-command timeout
};

class RedisGcsStore : public GcsStore {
 public:
  // Connects (and authenticates) now: an unreachable server, a wrong password or a malformed
  // address is an error naming the address.
  static StatusOr<std::unique_ptr<RedisGcsStore>> Connect(RedisOptions options);
  ~RedisGcsStore() override;

  Status Put(const std::string& table, const std::string& key, const std::string& value) override;
  StatusOr<std::string> Get(const std::string& table, const std::string& key) override;
  Status Delete(const std::string& table, const std::string& key) override;
  StatusOr<std::vector<std::pair<std::string, std::string>>> GetAll(
      const std::string& table) override;
  bool MayBlock() const override { return true; }

 private:
  explicit RedisGcsStore(RedisOptions options);
  struct Reply {
    bool nil = false;
    std::string str;                 // string / status replies
    long long integer = 0;           // integer replies
    std::vector<std::string> array;  // array replies (strings only)
  };

  // Runs one command given as binary-safe arguments; reconnects once on a broken connection.
  StatusOr<Reply> Command(const std::vector<std::string>& args) LUMEN_EXCLUDES(mu_);
  Status ConnectLocked() LUMEN_REQUIRES(mu_);
  std::string HashName(const std::string& table) const { return options_.ns + ":" + table; }

  const RedisOptions options_;
  Mutex mu_;
  redisContext* ctx_ LUMEN_GUARDED_BY(mu_) = nullptr;
};

}  // namespace lumen::gcs
