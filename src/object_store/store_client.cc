#include "object_store/store_client.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common.pb.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"
#include "node.pb.h"

namespace lumen::object_store {

struct Mapping {
  uint8_t* base = nullptr;
  int64_t size = 0;
  int fd = -1;
  rpc::ConnectionPtr daemon;
  ~Mapping() {
    if (base) ::munmap(base, static_cast<size_t>(size));
    if (fd >= 0) ::close(fd);
  }
};

PlasmaBuffer::PlasmaBuffer(std::shared_ptr<Mapping> mapping, ObjectID id, const uint8_t* data,
                           int64_t size, int32_t format)
    : mapping_(std::move(mapping)), id_(id), data_(data), size_(size), format_(format) {}

PlasmaBuffer::~PlasmaBuffer() {
  proto::ObjectIdList release;
  release.add_object_ids(id_.Binary());
  mapping_->daemon->Send(rpc::kStoreRelease, release);
}

StatusOr<std::unique_ptr<StoreClient>> StoreClient::Map(rpc::ConnectionPtr daemon, int fd,
                                                        int64_t capacity) {
  void* base =
      ::mmap(nullptr, static_cast<size_t>(capacity), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    Status st =
        UnavailableError(std::string("cannot map the object store: ") + std::strerror(errno));
    ::close(fd);
    return st;
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->base = static_cast<uint8_t*>(base);
  mapping->size = capacity;
  mapping->fd = fd;
  mapping->daemon = daemon;
  return std::unique_ptr<StoreClient>(new StoreClient(std::move(daemon), mapping, capacity));
}

StoreClient::StoreClient(rpc::ConnectionPtr daemon, std::shared_ptr<Mapping> mapping,
                         int64_t capacity)
    : daemon_(std::move(daemon)), mapping_(std::move(mapping)), capacity_(capacity) {}

StoreClient::~StoreClient() = default;

namespace {

// The creator writes every byte of a new object. A large one gets its page-table entries in
// one call instead of one fault per 4 KiB page on the first write: half the cost of the first
// touch on a virtual machine, where each fault also exits to the hypervisor. Best effort (the
// call needs Linux 5.14; without it the pages fault in as they are written).
void PrepareForWrite(uint8_t* data, int64_t size) {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  constexpr int64_t kMinBytes = 256 << 10;
  if (size < kMinBytes) return;
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(size)) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
}

}  // namespace

StatusOr<StoreClient::Created> StoreClient::Create(const ObjectID& id, int64_t size, int32_t format,
                                                   const proto::Address& owner) {
  proto::StoreCreateRequest req;
  req.set_object_id(id.Binary());
  req.set_data_size(size);
  req.set_format(format);
  *req.mutable_owner() = owner;
  proto::StoreCreateReply reply;
  LUMEN_RETURN_IF_ERROR(daemon_->CallSync(rpc::kStoreCreate, req, &reply));
  if (!reply.error().empty()) {
    if (reply.full()) return ResourceExhaustedError(reply.error());
    return UnavailableError(reply.error());
  }
  if (reply.offset() < 0 || reply.offset() + size > capacity_) {
    if (reply.already_exists()) return Created{nullptr, true};
    return InternalError("store returned an out-of-range offset");
  }
  uint8_t* data = mapping_->base + reply.offset();
  if (!reply.already_exists()) PrepareForWrite(data, size);
  return Created{data, reply.already_exists()};
}

void StoreClient::Seal(const ObjectID& id) {
  proto::StoreSealRequest req;
  req.set_object_id(id.Binary());
  daemon_->Send(rpc::kStoreSeal, req);
}

void StoreClient::Abort(const ObjectID& id) {
  proto::StoreSealRequest req;
  req.set_object_id(id.Binary());
  daemon_->Send(rpc::kStoreAbort, req);
}

void StoreClient::Free(const std::vector<ObjectID>& ids) {
  if (ids.empty()) return;
  proto::ObjectIdList req;
  for (const auto& id : ids) req.add_object_ids(id.Binary());
  daemon_->Send(rpc::kStoreFree, req);
}

StatusOr<std::vector<std::shared_ptr<PlasmaBuffer>>> StoreClient::Get(
    const std::vector<ObjectID>& ids, int64_t timeout_ms) {
  std::vector<std::shared_ptr<PlasmaBuffer>> out(ids.size());
  proto::StoreGetRequest req;
  std::vector<size_t> asked;
  {
    MutexLock lock(mu_);
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = cache_.find(ids[i]);
      if (it != cache_.end()) {
        out[i] = it->second.lock();
        if (out[i]) continue;
      }
      req.add_object_ids(ids[i].Binary());
      asked.push_back(i);
    }
  }
  if (asked.empty()) return out;
  req.set_timeout_ms(timeout_ms);
  proto::StoreGetReply reply;
  LUMEN_RETURN_IF_ERROR(daemon_->CallSync(rpc::kStoreGet, req, &reply));
  if (reply.entries_size() != static_cast<int>(asked.size())) {
    return InternalError("store answered a different number of objects");
  }
  MutexLock lock(mu_);
  Status first_error;
  for (size_t k = 0; k < asked.size(); ++k) {
    const auto& e = reply.entries(static_cast<int>(k));
    size_t i = asked[k];
    if (!e.found()) {
      if (!e.error().empty() && first_error.ok()) {
        first_error = DataLossError("object " + ids[i].Hex() + ": " + e.error());
      }
      continue;
    }
    if (e.offset() < 0 || e.offset() + e.data_size() > capacity_) {
      return InternalError("store returned an out-of-range object");
    }
    auto buf = std::shared_ptr<PlasmaBuffer>(
        new PlasmaBuffer(mapping_, ids[i], mapping_->base + e.offset(), e.data_size(), e.format()));
    auto& slot = cache_[ids[i]];
    if (auto existing = slot.lock()) {
      out[i] = existing;  // raced with another Get: keep one pin (buf releases its own)
    } else {
      slot = buf;
      out[i] = buf;
    }
  }
  if (!first_error.ok()) return first_error;
  if (cache_.size() > 4096) {  // drop expired entries now and then
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second.expired() ? cache_.erase(it) : std::next(it);
    }
  }
  return out;
}

}  // namespace lumen::object_store
