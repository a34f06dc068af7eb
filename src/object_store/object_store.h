// The node's shared-memory object store (daemon side).
//
// One memfd of `capacity` bytes holds every resident object; clients map it once (the fd is
// passed over their Unix socket) and read objects in place. Objects go Create -> write ->
// Seal and are immutable afterwards. A client's Get pins an object until it Releases it (or
// disconnects); pinned objects are never spilled or deleted. When a create does not fit,
// unpinned sealed objects are spilled to files in `spill_dir` (many objects fused into one
// file, written by a background thread) and restored on the next Get; a create that still
// does not fit after `full_timeout_ms` fails with an error that names the sizes involved.
//
// Memory: a page of the memfd stays in RAM once written, also after its object is freed (fast
// to reuse, but a burst would hold its peak for the node's life). Once a second the store gives
// back (fallocate PUNCH_HOLE) the pages of free ranges, highest offsets first, while it holds
// more than it needed lately: the peak in use over the last `trim_window_ms`, plus a quarter,
// and at least `min_warm_bytes`. The allocator packs objects at low offsets, so what is given
// back is what the store is least likely to need soon.
//
// Thread safety: not thread-safe. Every method must run on `loop`'s thread; callbacks run on
// it too. Spill and restore I/O run on an internal thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/rpc/event_loop.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "lumen/ids.h"
#include "object_store/allocator.h"

namespace lumen::object_store {

using ClientId = uint64_t;

struct StoreOptions {
  int64_t capacity = 0;
  std::string spill_dir;
  int64_t full_timeout_ms = 10000;
  int64_t min_spill_bytes = 64 << 20;
  int64_t trim_window_ms = 10000;  // 0: never give memory back
  int64_t min_warm_bytes = 64 << 20;
};

struct CreateResult {
  Status status;
  int64_t offset = -1;
  bool already_exists = false;
};

struct GetEntry {
  ObjectID id;
  bool found = false;
  int64_t offset = -1;
  int64_t data_size = 0;
  int32_t format = 0;
  std::string error;
};

struct StoreStats {
  int64_t capacity = 0;
  int64_t used = 0;
  int64_t peak_used = 0;
  int64_t pinned = 0;
  int64_t num_objects = 0;
  int64_t spilled_bytes = 0;
  int64_t num_spilled = 0;
  int64_t restored_bytes_total = 0;
  int64_t spilled_bytes_total = 0;
  int64_t resident = 0;        // bytes of the memfd in RAM (objects and warm free pages)
  int64_t released_total = 0;  // bytes of free pages given back to the kernel so far
};

class ObjectStore {
 public:
  using CreateCallback = std::function<void(const CreateResult&)>;
  using GetCallback = std::function<void(std::vector<GetEntry>)>;

  static StatusOr<std::unique_ptr<ObjectStore>> Open(rpc::EventLoop* loop, StoreOptions options);
  ~ObjectStore();

  int fd() const { return fd_; }
  int64_t capacity() const { return allocator_.capacity(); }
  uint8_t* base() const { return base_; }

  // Allocates `size` bytes for `id`, waiting for spilling if needed. `owner` is the worker
  // whose reference count decides when the object is freed.
  void Create(ClientId client, const ObjectID& id, int64_t size, int32_t format,
              const WorkerID& owner, CreateCallback cb);
  // Seals an object `client` created. Another client's object, an unknown one or one already
  // sealed is refused (PermissionDenied / NotFound / FailedPrecondition) and left as it is.
  Status Seal(ClientId client, const ObjectID& id);
  // Drops an unsealed object its creator `client` gave up on; refused like Seal otherwise.
  Status Abort(ClientId client, const ObjectID& id);
  // Waits until every object is sealed and resident (restoring spilled ones), or until
  // `timeout_ms` (< 0: forever). Found objects are pinned for `client`.
  void Get(ClientId client, std::vector<ObjectID> ids, int64_t timeout_ms, GetCallback cb);
  void Release(ClientId client, const ObjectID& id);
  // The owner dropped its last reference: delete now, or once the last pin is released.
  void Free(const std::vector<ObjectID>& ids);
  // `id` is a copy of an object whose primary lives on another node: under memory pressure it
  // is dropped (it can be fetched again) instead of spilled.
  void MarkSecondary(const ObjectID& id);
  // The primary copy's node died and the owner keeps this copy instead: it is spilled, not
  // dropped, under memory pressure. False if no sealed copy of `id` is here.
  bool MarkPrimary(const ObjectID& id);
  // A client disconnected: drop its pins and unsealed creates.
  void ClientGone(ClientId client);
  // An owner died: free every object it owned. Returns their IDs.
  std::vector<ObjectID> OwnerGone(const WorkerID& owner);
  // A job ended: free every object it made (on any node, whoever owns it) but those owned by
  // `survivors` (its detached actors). Returns their IDs.
  std::vector<ObjectID> JobGone(const JobID& job, const std::set<WorkerID>& survivors = {});

  bool Contains(const ObjectID& id) const;  // sealed
  // Being created or sealed: a Get of it will find it once its creator seals it.
  bool Known(const ObjectID& id) const { return objects_.count(id) > 0; }
  StoreStats Stats() const;
  // Bytes of the memfd held in RAM now.
  int64_t ResidentBytes() const;
  // Gives back the pages of free ranges, highest offsets first, until at most `keep_bytes`
  // are resident (or no free range is left). Objects' pages are never touched. Returns the
  // bytes given back.
  int64_t Trim(int64_t keep_bytes);

 private:
  enum class State { kCreating, kSealed };
  struct Entry {
    ObjectID id;
    int64_t data_size = 0;
    int32_t format = 0;
    int64_t offset = -1;  // -1: not resident
    State state = State::kCreating;
    bool spilling = false;
    bool restoring = false;
    bool freed = false;
    bool secondary = false;
    int pins = 0;
    ClientId creator = 0;
    WorkerID owner;
    int64_t spill_file = -1;  // >= 0: a copy exists on disk
    int64_t spill_offset = 0;
    uint64_t last_use = 0;
    std::string restore_error;
  };
  using EntryIt = std::unordered_map<ObjectID, Entry>::iterator;
  // The entry of `id` if `client` created it and it is not sealed yet.
  StatusOr<EntryIt> CreatingBy(ClientId client, const ObjectID& id, const char* action);
  struct PendingAlloc {
    uint64_t seq;
    int64_t size;
    std::string what;  // for error messages
    std::function<void(Status, int64_t offset)> done;
    uint64_t timer = 0;
  };
  struct GetRequest {
    ClientId client;
    std::vector<ObjectID> ids;
    GetCallback cb;
    uint64_t timer = 0;
    bool done = false;
  };
  struct SpillFile {
    std::string path;
    int64_t live = 0;
  };
  struct IoJob {
    bool is_spill;
    std::string path;
    std::vector<std::pair<ObjectID, std::pair<int64_t, int64_t>>> objects;  // id, (offset, size)
    int64_t file_index = -1;
    int64_t file_offset = 0;  // restore: where in the file
  };
  struct IoResult {
    IoJob job;
    Status status;
    std::vector<int64_t> file_offsets;  // spill: where each object landed
  };

  ObjectStore(rpc::EventLoop* loop, StoreOptions options, int fd, uint8_t* base);

  bool Available(const Entry& e) const {
    return e.state == State::kSealed && e.offset >= 0 && !e.restoring;
  }
  void AllocateOrWait(int64_t size, std::string what,
                      std::function<void(Status, int64_t offset)> done);
  void ProcessPendingAllocs();
  void MaybeSpill();
  void StartRestore(Entry& e);
  void OnIoDone(IoResult result);
  void DeleteEntry(std::unordered_map<ObjectID, Entry>::iterator it);
  void MaybeDelete(const ObjectID& id);
  void DropSpilledCopy(Entry& e);
  void WakeGetters(const ObjectID& id);
  void TryCompleteGet(const std::shared_ptr<GetRequest>& req, bool timed_out);
  std::string FullMessage(int64_t size, const std::string& what) const;
  void IoThreadMain();
  void NoteUsed();      // after an allocation: peaks
  void ScheduleTrim();  // TrimTick once a second
  void TrimTick();      // Trim what was not needed lately

  rpc::EventLoop* const loop_;
  const StoreOptions options_;
  const int fd_;
  uint8_t* const base_;
  Allocator allocator_;

  std::unordered_map<ObjectID, Entry> objects_;
  std::unordered_map<ClientId, std::unordered_map<ObjectID, int>> client_pins_;
  std::unordered_map<ObjectID, std::vector<std::shared_ptr<GetRequest>>> getters_;
  std::deque<PendingAlloc> pending_allocs_;
  uint64_t next_alloc_seq_ = 1;
  uint64_t tick_ = 0;
  int64_t peak_used_ = 0;
  // Peak `used` in the current and the previous half of the trim window.
  int64_t window_peak_ = 0;
  int64_t previous_window_peak_ = 0;
  int64_t window_start_ms_ = 0;
  int64_t released_total_ = 0;
  uint64_t trim_timer_ = 0;
  int64_t pinned_bytes_ = 0;
  int64_t spilled_bytes_ = 0;
  int64_t num_spilled_ = 0;
  int64_t spilled_total_ = 0;
  int64_t restored_total_ = 0;
  int64_t bytes_being_spilled_ = 0;
  int restores_in_flight_ = 0;
  std::vector<SpillFile> spill_files_;

  // Spill/restore I/O thread.
  Mutex io_mu_;
  CondVar io_cv_;
  std::deque<IoJob> io_jobs_ LUMEN_GUARDED_BY(io_mu_);
  bool io_stop_ LUMEN_GUARDED_BY(io_mu_) = false;
  std::thread io_thread_;
};

}  // namespace lumen::object_store
