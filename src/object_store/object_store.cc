#include "object_store/object_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/fs.h"
#include "common/logging.h"

namespace lumen::object_store {

namespace {

std::string Bytes(int64_t n) {
  char buf[64];
  if (n >= (1ll << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(n) / (1ll << 30));
  } else if (n >= (1ll << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(n) / (1ll << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld bytes", static_cast<long long>(n));
  }
  return buf;
}

Status WriteAll(int fd, const uint8_t* data, int64_t size) {
  int64_t off = 0;
  while (off < size) {
    ssize_t n =
        ::write(fd, data + off, static_cast<size_t>(std::min<int64_t>(size - off, 1 << 30)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError(std::strerror(errno));
    }
    off += n;
  }
  return Status::OK();
}

Status ReadAllAt(int fd, uint8_t* data, int64_t size, int64_t file_offset) {
  int64_t off = 0;
  while (off < size) {
    ssize_t n = ::pread(fd, data + off, static_cast<size_t>(std::min<int64_t>(size - off, 1 << 30)),
                        file_offset + off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return DataLossError(std::strerror(errno));
    }
    if (n == 0) return DataLossError("spill file is shorter than expected");
    off += n;
  }
  return Status::OK();
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

StatusOr<std::unique_ptr<ObjectStore>> ObjectStore::Open(rpc::EventLoop* loop,
                                                         StoreOptions options) {
  if (options.capacity <= 0) return InvalidArgumentError("object store capacity must be > 0");
  int fd = ::memfd_create("lumen-object-store", MFD_CLOEXEC);
  if (fd < 0) return UnavailableError(std::string("memfd_create: ") + std::strerror(errno));
  if (::ftruncate(fd, options.capacity) != 0) {
    Status st = UnavailableError("cannot size the object store to " + Bytes(options.capacity) +
                                 ": " + std::strerror(errno));
    ::close(fd);
    return st;
  }
  void* base = ::mmap(nullptr, static_cast<size_t>(options.capacity), PROT_READ | PROT_WRITE,
                      MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    Status st =
        UnavailableError(std::string("cannot map the object store: ") + std::strerror(errno));
    ::close(fd);
    return st;
  }
  return std::unique_ptr<ObjectStore>(
      new ObjectStore(loop, std::move(options), fd, static_cast<uint8_t*>(base)));
}

ObjectStore::ObjectStore(rpc::EventLoop* loop, StoreOptions options, int fd, uint8_t* base)
    : loop_(loop),
      options_(std::move(options)),
      fd_(fd),
      base_(base),
      allocator_(options_.capacity) {
  io_thread_ = std::thread([this] { IoThreadMain(); });
  window_start_ms_ = SteadyMs();
  ScheduleTrim();
}

ObjectStore::~ObjectStore() {
  if (trim_timer_ != 0) loop_->CancelTimer(trim_timer_);
  {
    MutexLock lock(io_mu_);
    io_stop_ = true;
  }
  io_cv_.NotifyAll();
  io_thread_.join();
  for (auto& f : spill_files_) {
    if (f.live > 0 || PathExists(f.path)) ::unlink(f.path.c_str());
  }
  ::munmap(base_, static_cast<size_t>(options_.capacity));
  ::close(fd_);
}

std::string ObjectStore::FullMessage(int64_t size, const std::string& what) const {
  return "object store full: cannot allocate " + Bytes(size) + " for " + what + " within " +
         std::to_string(options_.full_timeout_ms) + " ms: capacity " +
         Bytes(allocator_.capacity()) + ", in use " + Bytes(allocator_.used()) + " (" +
         Bytes(pinned_bytes_) + " pinned by readers and " +
         Bytes(allocator_.used() - pinned_bytes_) + " not yet spillable), largest free block " +
         Bytes(allocator_.largest_free_block()) + ", spilled " + Bytes(spilled_bytes_) +
         ". Release references to objects, or give the store more memory "
         "(object_store_memory / --object-store-memory)";
}

void ObjectStore::Create(ClientId client, const ObjectID& id, int64_t size, int32_t format,
                         const WorkerID& owner, CreateCallback cb) {
  if (size < 0) {
    cb({InvalidArgumentError("negative object size"), -1, false});
    return;
  }
  auto it = objects_.find(id);
  if (it != objects_.end()) {
    // A retried task re-creating its return value: the first copy stands.
    cb({Status::OK(), it->second.offset, true});
    return;
  }
  if (Allocator::Rounded(size) > allocator_.capacity()) {
    cb({ResourceExhaustedError("object " + id.Hex() + " of " + Bytes(size) +
                               " is larger than the whole object store (capacity " +
                               Bytes(allocator_.capacity()) +
                               "); start the cluster with more object_store_memory"),
        -1, false});
    return;
  }
  Entry e;
  e.id = id;
  e.data_size = size;
  e.format = format;
  e.creator = client;
  e.owner = owner;
  e.last_use = ++tick_;
  objects_.emplace(id, e);
  uint64_t creation_tick = e.last_use;
  AllocateOrWait(
      size, "object " + id.Hex(),
      [this, id, size, creation_tick, cb = std::move(cb)](Status st, int64_t off) {
        auto it = objects_.find(id);
        bool same = it != objects_.end() && it->second.last_use == creation_tick &&
                    it->second.state == State::kCreating && it->second.offset < 0;
        if (!same) {
          if (st.ok()) allocator_.Free(off, size);
          cb({AbortedError("object " + id.Hex() + " was aborted while waiting"), -1, false});
          ProcessPendingAllocs();
          return;
        }
        if (!st.ok()) {
          objects_.erase(it);
          cb({st, -1, false});
          return;
        }
        it->second.offset = off;
        cb({Status::OK(), off, false});
      });
}

StatusOr<ObjectStore::EntryIt> ObjectStore::CreatingBy(ClientId client, const ObjectID& id,
                                                       const char* action) {
  auto it = objects_.find(id);
  if (it == objects_.end()) {
    return NotFoundError(std::string("cannot ") + action + " object " + id.Hex() +
                         ": it is not in the store");
  }
  if (it->second.state != State::kCreating) {
    return FailedPreconditionError(std::string("cannot ") + action + " object " + id.Hex() +
                                   ": it is already sealed");
  }
  if (it->second.creator != client) {
    return PermissionDeniedError(std::string("cannot ") + action + " object " + id.Hex() +
                                 ": another client is creating it");
  }
  return it;
}

Status ObjectStore::Seal(ClientId client, const ObjectID& id) {
  LUMEN_ASSIGN_OR_RETURN(auto it, CreatingBy(client, id, "seal"));
  it->second.state = State::kSealed;
  it->second.last_use = ++tick_;
  WakeGetters(id);
  if (it->second.freed) MaybeDelete(id);
  return Status::OK();
}

Status ObjectStore::Abort(ClientId client, const ObjectID& id) {
  LUMEN_ASSIGN_OR_RETURN(auto it, CreatingBy(client, id, "abort"));
  DeleteEntry(it);
  return Status::OK();
}

void ObjectStore::AllocateOrWait(int64_t size, std::string what,
                                 std::function<void(Status, int64_t)> done) {
  if (pending_allocs_.empty()) {
    auto off = allocator_.Allocate(size);
    if (off) {
      NoteUsed();
      done(Status::OK(), *off);
      return;
    }
  }
  PendingAlloc p;
  p.seq = next_alloc_seq_++;
  p.size = size;
  p.what = std::move(what);
  p.done = std::move(done);
  uint64_t seq = p.seq;
  p.timer = loop_->RunAfter(std::chrono::milliseconds(options_.full_timeout_ms), [this, seq] {
    for (auto it = pending_allocs_.begin(); it != pending_allocs_.end(); ++it) {
      if (it->seq != seq) continue;
      PendingAlloc p = std::move(*it);
      pending_allocs_.erase(it);
      LUMEN_LOG(WARNING) << FullMessage(p.size, p.what);
      p.done(ResourceExhaustedError(FullMessage(p.size, p.what)), -1);
      ProcessPendingAllocs();
      return;
    }
  });
  pending_allocs_.push_back(std::move(p));
  MaybeSpill();
}

void ObjectStore::NoteUsed() {
  peak_used_ = std::max(peak_used_, allocator_.used());
  window_peak_ = std::max(window_peak_, allocator_.used());
}

void ObjectStore::ScheduleTrim() {
  if (options_.trim_window_ms <= 0) return;
  trim_timer_ = loop_->RunAfter(std::chrono::milliseconds(1000), [this] {
    trim_timer_ = 0;
    TrimTick();
    ScheduleTrim();
  });
}

void ObjectStore::TrimTick() {
  const int64_t now = SteadyMs();
  window_peak_ = std::max(window_peak_, allocator_.used());
  const int64_t needed = std::max(window_peak_, previous_window_peak_);
  if (now - window_start_ms_ >= options_.trim_window_ms / 2) {
    previous_window_peak_ = window_peak_;
    window_peak_ = allocator_.used();
    window_start_ms_ = now;
  }
  const int64_t keep = std::max(options_.min_warm_bytes, needed + needed / 4);
  // Hysteresis: a few MiB over are not worth the page faults of warming them again.
  if (ResidentBytes() > keep + (8 << 20)) Trim(keep);
}

int64_t ObjectStore::ResidentBytes() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return 0;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

int64_t ObjectStore::Trim(int64_t keep_bytes) {
  static const int64_t page = ::sysconf(_SC_PAGESIZE);
  int64_t resident = ResidentBytes();
  const int64_t before = resident;
  const auto& free = allocator_.free_blocks();
  for (auto it = free.rbegin(); it != free.rend() && resident > keep_bytes; ++it) {
    // Whole pages only: the partial pages at the ends belong to neighbouring objects too.
    const int64_t begin = (it->first + page - 1) / page * page;
    const int64_t end = (it->first + it->second) / page * page;
    if (end - begin < page) continue;
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, begin, end - begin) != 0) {
      LUMEN_LOG(WARNING) << "object store: cannot give back free memory: " << std::strerror(errno);
      break;
    }
    resident = ResidentBytes();
  }
  const int64_t released = std::max<int64_t>(0, before - resident);
  released_total_ += released;
  return released;
}

void ObjectStore::ProcessPendingAllocs() {
  while (!pending_allocs_.empty()) {
    auto off = allocator_.Allocate(pending_allocs_.front().size);
    if (!off) break;
    PendingAlloc p = std::move(pending_allocs_.front());
    pending_allocs_.pop_front();
    loop_->CancelTimer(p.timer);
    NoteUsed();
    p.done(Status::OK(), *off);
  }
  if (!pending_allocs_.empty()) MaybeSpill();
}

void ObjectStore::MaybeSpill() {
  if (pending_allocs_.empty()) return;
  int64_t wanted = 0;
  for (const auto& p : pending_allocs_) wanted += Allocator::Rounded(p.size);
  int64_t free_bytes = allocator_.capacity() - allocator_.used();
  int64_t need = wanted - free_bytes - bytes_being_spilled_;
  if (need <= 0 && allocator_.largest_free_block() >= pending_allocs_.front().size) return;
  if (need <= 0 && bytes_being_spilled_ > 0) return;  // wait for the spill in flight
  int64_t target = std::max<int64_t>(std::max<int64_t>(need, pending_allocs_.front().size),
                                     options_.min_spill_bytes);

  std::vector<Entry*> candidates;
  for (auto& [id, e] : objects_) {
    if (Available(e) && e.pins == 0 && !e.spilling && !e.restoring && !e.freed) {
      candidates.push_back(&e);
    }
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Entry* a, const Entry* b) { return a->last_use < b->last_use; });
  int64_t chosen = 0;
  bool dropped = false;
  std::vector<ObjectID> evicted;
  IoJob job;
  job.is_spill = true;
  for (Entry* e : candidates) {
    if (chosen >= target) break;
    chosen += Allocator::Rounded(e->data_size);
    if (e->secondary) {  // another node has the primary: drop this copy
      evicted.push_back(e->id);
      continue;
    }
    if (e->spill_file >= 0) {  // already on disk: just drop the memory copy
      allocator_.Free(e->offset, e->data_size);
      e->offset = -1;
      dropped = true;
      continue;
    }
    e->spilling = true;
    bytes_being_spilled_ += Allocator::Rounded(e->data_size);
    job.objects.push_back({e->id, {e->offset, e->data_size}});
  }
  if (!job.objects.empty()) {
    if (spill_files_.empty()) {
      Status st = MakeDirs(options_.spill_dir);
      if (!st.ok()) LUMEN_LOG(ERROR) << st;
    }
    job.file_index = static_cast<int64_t>(spill_files_.size());
    job.path = JoinPath(options_.spill_dir, "spill-" + std::to_string(job.file_index) + ".bin");
    spill_files_.push_back({job.path, 0});
    LUMEN_LOG(INFO) << "spilling " << job.objects.size() << " objects to " << job.path;
    {
      MutexLock lock(io_mu_);
      io_jobs_.push_back(std::move(job));
    }
    io_cv_.NotifyOne();
  }
  for (const ObjectID& id : evicted) {
    auto it = objects_.find(id);
    allocator_.Free(it->second.offset, it->second.data_size);
    objects_.erase(it);
    dropped = true;
  }
  if (dropped) ProcessPendingAllocs();
}

void ObjectStore::MarkSecondary(const ObjectID& id) {
  auto it = objects_.find(id);
  if (it != objects_.end()) it->second.secondary = true;
}

bool ObjectStore::MarkPrimary(const ObjectID& id) {
  auto it = objects_.find(id);
  if (it == objects_.end() || it->second.state != State::kSealed || it->second.freed) {
    return false;
  }
  it->second.secondary = false;
  return true;
}

void ObjectStore::StartRestore(Entry& e) {
  e.restoring = true;
  e.restore_error.clear();
  ++restores_in_flight_;
  ObjectID id = e.id;
  int64_t size = e.data_size;
  AllocateOrWait(size, "restoring object " + id.Hex(), [this, id, size](Status st, int64_t off) {
    auto it = objects_.find(id);
    if (it == objects_.end()) {
      if (st.ok()) allocator_.Free(off, size);
      --restores_in_flight_;
      return;
    }
    Entry& e = it->second;
    if (!st.ok()) {
      e.restoring = false;
      --restores_in_flight_;
      e.restore_error = st.message();
      WakeGetters(id);
      MaybeDelete(id);
      return;
    }
    e.offset = off;
    IoJob job;
    job.is_spill = false;
    job.path = spill_files_[static_cast<size_t>(e.spill_file)].path;
    job.file_index = e.spill_file;
    job.file_offset = e.spill_offset;
    job.objects.push_back({id, {off, e.data_size}});
    {
      MutexLock lock(io_mu_);
      io_jobs_.push_back(std::move(job));
    }
    io_cv_.NotifyOne();
  });
}

void ObjectStore::IoThreadMain() {
  while (true) {
    IoJob job;
    {
      MutexLock lock(io_mu_);
      io_cv_.Wait(io_mu_,
                  [this]() LUMEN_REQUIRES(io_mu_) { return io_stop_ || !io_jobs_.empty(); });
      if (io_stop_) return;
      job = std::move(io_jobs_.front());
      io_jobs_.pop_front();
    }
    IoResult result;
    if (job.is_spill) {
      int fd = ::open(job.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) {
        result.status =
            UnavailableError("cannot create spill file " + job.path + ": " + std::strerror(errno));
      } else {
        int64_t file_off = 0;
        for (const auto& [id, loc] : job.objects) {
          result.status = WriteAll(fd, base_ + loc.first, loc.second);
          if (!result.status.ok()) {
            result.status = result.status.WithContext("writing spill file " + job.path);
            break;
          }
          result.file_offsets.push_back(file_off);
          file_off += loc.second;
        }
        ::close(fd);
      }
    } else {
      int fd = ::open(job.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        result.status =
            DataLossError("cannot open spill file " + job.path + ": " + std::strerror(errno));
      } else {
        const auto& [off, size] = job.objects[0].second;
        result.status = ReadAllAt(fd, base_ + off, size, job.file_offset);
        if (!result.status.ok()) {
          result.status = result.status.WithContext("reading spill file " + job.path);
        }
        ::close(fd);
      }
    }
    result.job = std::move(job);
    loop_->Post([this, r = std::move(result)]() mutable { OnIoDone(std::move(r)); });
  }
}

void ObjectStore::OnIoDone(IoResult result) {
  IoJob& job = result.job;
  if (job.is_spill) {
    SpillFile& file = spill_files_[static_cast<size_t>(job.file_index)];
    for (size_t i = 0; i < job.objects.size(); ++i) {
      const ObjectID& id = job.objects[i].first;
      int64_t size = job.objects[i].second.second;
      bytes_being_spilled_ -= Allocator::Rounded(size);
      auto it = objects_.find(id);
      if (it == objects_.end()) continue;
      Entry& e = it->second;
      e.spilling = false;
      if (result.status.ok()) {
        e.spill_file = job.file_index;
        e.spill_offset = result.file_offsets[i];
        ++file.live;
        spilled_bytes_ += size;
        spilled_total_ += size;
        ++num_spilled_;
        if (e.pins == 0 && e.offset >= 0) {
          allocator_.Free(e.offset, e.data_size);
          e.offset = -1;
        }
      }
      if (e.freed) MaybeDelete(id);
    }
    if (!result.status.ok()) {
      LUMEN_LOG(ERROR) << "spilling failed: " << result.status;
      ::unlink(file.path.c_str());
    } else if (file.live == 0) {
      ::unlink(file.path.c_str());
    }
  } else {
    const ObjectID& id = job.objects[0].first;
    --restores_in_flight_;
    auto it = objects_.find(id);
    if (it != objects_.end()) {
      Entry& e = it->second;
      e.restoring = false;
      if (result.status.ok()) {
        restored_total_ += e.data_size;
        e.last_use = ++tick_;
      } else {
        LUMEN_LOG(ERROR) << "restoring " << id.Hex() << " failed: " << result.status;
        allocator_.Free(e.offset, e.data_size);
        e.offset = -1;
        e.restore_error = result.status.message();
      }
      WakeGetters(id);
      if (e.freed) MaybeDelete(id);
    }
  }
  ProcessPendingAllocs();
}

void ObjectStore::Get(ClientId client, std::vector<ObjectID> ids, int64_t timeout_ms,
                      GetCallback cb) {
  auto req = std::make_shared<GetRequest>();
  req->client = client;
  req->ids = std::move(ids);
  req->cb = std::move(cb);
  for (const auto& id : req->ids) {
    auto it = objects_.find(id);
    if (it != objects_.end()) {
      Entry& e = it->second;
      e.restore_error.clear();
      if (e.state == State::kSealed && e.offset < 0 && e.spill_file >= 0 && !e.restoring) {
        StartRestore(e);
      }
      if (Available(e)) continue;
    }
    getters_[id].push_back(req);
  }
  TryCompleteGet(req, false);
  if (!req->done && timeout_ms >= 0) {
    std::weak_ptr<GetRequest> weak = req;
    req->timer = loop_->RunAfter(std::chrono::milliseconds(timeout_ms), [this, weak] {
      if (auto r = weak.lock()) {
        r->timer = 0;
        TryCompleteGet(r, true);
      }
    });
  }
}

void ObjectStore::TryCompleteGet(const std::shared_ptr<GetRequest>& req, bool timed_out) {
  if (req->done) return;
  bool all = true;
  for (const auto& id : req->ids) {
    auto it = objects_.find(id);
    if (it == objects_.end() || (!Available(it->second) && it->second.restore_error.empty())) {
      all = false;
      break;
    }
  }
  if (!all && !timed_out) return;
  req->done = true;
  if (req->timer) loop_->CancelTimer(req->timer);
  std::vector<GetEntry> out;
  out.reserve(req->ids.size());
  for (const auto& id : req->ids) {
    GetEntry g;
    g.id = id;
    auto it = objects_.find(id);
    if (it != objects_.end()) {
      Entry& e = it->second;
      if (Available(e)) {
        g.found = true;
        g.offset = e.offset;
        g.data_size = e.data_size;
        g.format = e.format;
        if (e.pins++ == 0) pinned_bytes_ += Allocator::Rounded(e.data_size);
        ++client_pins_[req->client][id];
        e.last_use = ++tick_;
      } else {
        g.error = e.restore_error;
      }
    }
    out.push_back(std::move(g));
  }
  req->cb(std::move(out));
}

void ObjectStore::WakeGetters(const ObjectID& id) {
  auto it = getters_.find(id);
  if (it == getters_.end()) return;
  auto reqs = std::move(it->second);
  getters_.erase(it);
  std::vector<std::shared_ptr<GetRequest>> still_waiting;
  for (auto& r : reqs) {
    if (r->done) continue;
    TryCompleteGet(r, false);
    if (!r->done) still_waiting.push_back(r);
  }
  if (!still_waiting.empty()) {
    auto& v = getters_[id];
    v.insert(v.end(), still_waiting.begin(), still_waiting.end());
  }
}

void ObjectStore::Release(ClientId client, const ObjectID& id) {
  auto c = client_pins_.find(client);
  if (c == client_pins_.end()) return;
  auto p = c->second.find(id);
  if (p == c->second.end()) return;
  if (--p->second == 0) c->second.erase(p);
  auto it = objects_.find(id);
  if (it == objects_.end()) return;
  Entry& e = it->second;
  if (--e.pins == 0) {
    pinned_bytes_ -= Allocator::Rounded(e.data_size);
    if (e.freed) {
      MaybeDelete(id);
    } else if (!pending_allocs_.empty()) {
      MaybeSpill();
    }
  }
}

void ObjectStore::Free(const std::vector<ObjectID>& ids) {
  for (const auto& id : ids) {
    auto it = objects_.find(id);
    if (it == objects_.end()) continue;
    it->second.freed = true;
    MaybeDelete(id);
  }
}

void ObjectStore::MaybeDelete(const ObjectID& id) {
  auto it = objects_.find(id);
  if (it == objects_.end()) return;
  const Entry& e = it->second;
  if (!e.freed || e.pins > 0 || e.spilling || e.restoring) return;
  if (e.state == State::kCreating && e.offset >= 0) return;  // creator still writing: on seal
  DeleteEntry(it);
}

void ObjectStore::DropSpilledCopy(Entry& e) {
  if (e.spill_file < 0) return;
  SpillFile& f = spill_files_[static_cast<size_t>(e.spill_file)];
  spilled_bytes_ -= e.data_size;
  --num_spilled_;
  if (--f.live == 0) ::unlink(f.path.c_str());
  e.spill_file = -1;
}

void ObjectStore::DeleteEntry(std::unordered_map<ObjectID, Entry>::iterator it) {
  Entry& e = it->second;
  if (e.offset >= 0 && !e.spilling && !e.restoring) allocator_.Free(e.offset, e.data_size);
  DropSpilledCopy(e);
  if (e.pins > 0) pinned_bytes_ -= Allocator::Rounded(e.data_size);
  objects_.erase(it);
  ProcessPendingAllocs();
}

void ObjectStore::ClientGone(ClientId client) {
  auto c = client_pins_.find(client);
  if (c != client_pins_.end()) {
    auto pins = std::move(c->second);
    client_pins_.erase(c);
    for (const auto& [id, count] : pins) {
      auto it = objects_.find(id);
      if (it == objects_.end()) continue;
      Entry& e = it->second;
      e.pins -= count;
      if (e.pins == 0) {
        pinned_bytes_ -= Allocator::Rounded(e.data_size);
        MaybeDelete(id);
      }
    }
  }
  std::vector<ObjectID> unsealed;
  for (const auto& [id, e] : objects_) {
    if (e.creator == client && e.state == State::kCreating) unsealed.push_back(id);
  }
  for (const auto& id : unsealed) {
    auto it = objects_.find(id);
    if (it != objects_.end()) DeleteEntry(it);
  }
  ProcessPendingAllocs();
}

std::vector<ObjectID> ObjectStore::OwnerGone(const WorkerID& owner) {
  std::vector<ObjectID> owned;
  for (const auto& [id, e] : objects_) {
    if (e.owner == owner) owned.push_back(id);
  }
  Free(owned);
  return owned;
}

std::vector<ObjectID> ObjectStore::JobGone(const JobID& job, const std::set<WorkerID>& survivors) {
  std::vector<ObjectID> made;
  for (const auto& [id, e] : objects_) {
    if (id.Task().Job() == job && survivors.count(e.owner) == 0) made.push_back(id);
  }
  Free(made);
  return made;
}

bool ObjectStore::Contains(const ObjectID& id) const {
  auto it = objects_.find(id);
  return it != objects_.end() && it->second.state == State::kSealed;
}

StoreStats ObjectStore::Stats() const {
  StoreStats s;
  s.capacity = allocator_.capacity();
  s.used = allocator_.used();
  s.peak_used = peak_used_;
  s.resident = ResidentBytes();
  s.released_total = released_total_;
  s.pinned = pinned_bytes_;
  s.num_objects = static_cast<int64_t>(objects_.size());
  s.spilled_bytes = spilled_bytes_;
  s.num_spilled = num_spilled_;
  s.spilled_bytes_total = spilled_total_;
  s.restored_bytes_total = restored_total_;
  return s;
}

}  // namespace lumen::object_store
