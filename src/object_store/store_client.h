// Client side of the node's shared-memory object store, used by every driver and worker.
//
// The store's memfd is mapped once; Get returns a PlasmaBuffer pointing into that mapping —
// no copy, whatever the object's size. A buffer pins its object in the store while it lives
// and unpins it on destruction (Release). Buffers of the same object share one pin.
//
// Thread safety: all methods are thread-safe. Create/Get block on the daemon's reply; do not
// call them from the connection's loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/rpc/connection.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "lumen/ids.h"

namespace lumen::proto {
class Address;
}

namespace lumen::object_store {

struct Mapping;  // the mmap'ed region; lives while any buffer does

// A sealed object mapped read-only in this process; unpinned when the last copy is destroyed.
class PlasmaBuffer {
 public:
  ~PlasmaBuffer();
  PlasmaBuffer(const PlasmaBuffer&) = delete;
  PlasmaBuffer& operator=(const PlasmaBuffer&) = delete;

  const ObjectID& id() const { return id_; }
  const uint8_t* data() const { return data_; }
  int64_t size() const { return size_; }
  int32_t format() const { return format_; }

 private:
  friend class StoreClient;
  PlasmaBuffer(std::shared_ptr<Mapping> mapping, ObjectID id, const uint8_t* data, int64_t size,
               int32_t format);

  std::shared_ptr<Mapping> mapping_;
  ObjectID id_;
  const uint8_t* data_;
  int64_t size_;
  int32_t format_;
};

class StoreClient {
 public:
  // Maps the store whose memfd `fd` was received at registration (takes ownership of `fd`).
  static StatusOr<std::unique_ptr<StoreClient>> Map(rpc::ConnectionPtr daemon, int fd,
                                                    int64_t capacity);
  ~StoreClient();

  struct Created {
    uint8_t* data = nullptr;
    bool already_exists = false;  // another attempt already sealed it: do not write
  };
  // Allocates `size` bytes for `id`. Waits while the store spills to make room; fails with
  // ResourceExhausted (the store's message names the sizes) when it cannot.
  StatusOr<Created> Create(const ObjectID& id, int64_t size, int32_t format,
                           const proto::Address& owner);
  void Seal(const ObjectID& id);
  void Abort(const ObjectID& id);

  // Waits up to `timeout_ms` (< 0: forever) for the objects; entries are null where an object
  // was not available in time. A per-object failure (e.g. a lost spill file) is an error.
  StatusOr<std::vector<std::shared_ptr<PlasmaBuffer>>> Get(const std::vector<ObjectID>& ids,
                                                           int64_t timeout_ms);
  // Asks the store to delete objects this process owns (once no reader pins them).
  void Free(const std::vector<ObjectID>& ids);

  int64_t capacity() const { return capacity_; }

 private:
  StoreClient(rpc::ConnectionPtr daemon, std::shared_ptr<Mapping> mapping, int64_t capacity);

  const rpc::ConnectionPtr daemon_;
  const std::shared_ptr<Mapping> mapping_;
  const int64_t capacity_;
  Mutex mu_;
  std::unordered_map<ObjectID, std::weak_ptr<PlasmaBuffer>> cache_ LUMEN_GUARDED_BY(mu_);
};

}  // namespace lumen::object_store
