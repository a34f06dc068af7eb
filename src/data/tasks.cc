#include "data/tasks.h"

#include <glob.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <unordered_map>

#include "common/thread_annotations.h"
#include "data/aggregate.h"
#include "data/keys.h"
#include "data/s3_client.h"
#include "data/s3_files.h"

namespace lumen::data::internal {

namespace {

int64_t ThreadCpuUs() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace

TaskTimer::TaskTimer() : wall_(std::chrono::steady_clock::now()), cpu_(ThreadCpuUs()) {}

void TaskTimer::Consumed(const Batch& in) {
  rows_in_ += in.NumRows();
  bytes_in_ += in.SizeBytes();
}

Buffer TaskTimer::Finish(Batch out) const {
  // Batch() is one block shared by the whole process: stamp a block of its own instead.
  if (out.NumColumns() == 0 && out.NumRows() == 0) out = BatchBuilder().Build();
  Batch::ExecStats s;
  s.rows_in = rows_in_;
  s.bytes_in = bytes_in_;
  s.wall_us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - wall_)
                  .count();
  s.cpu_us = ThreadCpuUs() - cpu_;
  out.set_exec_stats(s);
  return out.buffer();
}

namespace {

Mutex g_callables_mu;
std::unordered_map<std::string, CallableInfo>& Callables() LUMEN_REQUIRES(g_callables_mu) {
  static auto* m = new std::unordered_map<std::string, CallableInfo>();
  return *m;
}

}  // namespace

void RegisterCallable(const std::string& type_name, CallableInfo info) {
  MutexLock lock(g_callables_mu);
  Callables()[type_name] = std::move(info);
}

const CallableInfo* FindCallable(const std::string& type_name) {
  MutexLock lock(g_callables_mu);
  auto it = Callables().find(type_name);
  return it == Callables().end() ? nullptr : &it->second;
}

namespace {

bool HasGlob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

// "a FIFO", "a socket", ...: what a path that is not a regular file or directory is.
std::string KindOf(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Glob reports directories it cannot read through a plain function pointer: collected here.
thread_local std::vector<std::string>* g_glob_errors = nullptr;
int OnGlobError(const char* path, int err) {
  if (g_glob_errors) g_glob_errors->push_back(std::string(path) + ": " + std::strerror(err));
  return 0;  // go on: the caller decides whether an unreadable directory fails the read
}

// Lists one input path. Everything is classified with stat/lstat before anything is opened:
// a FIFO, socket or device is refused here (opening one for reading can block forever).
class Lister {
 public:
  Lister(std::string source, bool ignore_missing)
      : source_(std::move(source)), ignore_missing_(ignore_missing) {}

  Listing List(const std::string& pattern) {
    if (HasGlob(pattern)) {
      ListGlob(pattern);
      if (out_.files.empty() && out_.ignored.empty()) {
        Missing(pattern, "matches no files", "no files match '" + pattern + "'");
      }
    } else {
      Add(pattern, std::filesystem::path(pattern).filename().string(), /*named=*/true);
    }
    std::sort(out_.files.begin(), out_.files.end(),
              [](const FileEntry& a, const FileEntry& b) { return a.relative < b.relative; });
    return std::move(out_);
  }

 private:
  void ListGlob(const std::string& pattern) {
    std::vector<std::string> errors;
    g_glob_errors = &errors;
    glob_t g{};
    int rc = ::glob(pattern.c_str(), 0, OnGlobError, &g);
    g_glob_errors = nullptr;
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
    ::globfree(&g);
    for (const auto& e : errors) Missing(e, "cannot be read while expanding '" + pattern + "'");
    if (rc != 0 && rc != GLOB_NOMATCH) {
      throw DataError(source_ + ": cannot expand '" + pattern + "' (glob error " +
                      std::to_string(rc) + ")");
    }
    for (const auto& m : matches) {
      Add(m, std::filesystem::path(m).filename().string(), /*named=*/false);
    }
  }

  // `path` named by the user (`named`) or matched by a glob; `rel` is its relative name.
  void Add(const std::string& path, const std::string& rel, bool named) {
    struct stat st;
    if (!Stat(path, &st)) return;
    if (S_ISDIR(st.st_mode)) {
      size_t before = out_.files.size() + out_.ignored.size();
      Walk(path, named ? "" : rel + "/", st);  // a matched directory keeps its name
      if (named && out_.files.size() + out_.ignored.size() == before) {
        throw DataError(source_ + ": directory '" + path + "' contains no files");
      }
      return;
    }
    AddFile(path, rel, st);
  }

  // Recursively, following symbolic links; a directory seen before (a link cycle) is skipped.
  void Walk(const std::string& dir, const std::string& prefix, const struct stat& st) {
    if (!visited_.insert({st.st_dev, st.st_ino}).second) return;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) return Missing(dir, "cannot be listed: " + ec.message());
    std::vector<std::string> names;
    for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) return Missing(dir, "cannot be listed: " + ec.message());
    for (const auto& name : names) {
      // Hidden and metadata entries (a writer's staging, _SUCCESS, _lumen_manifest.json), as
      // Arrow and Spark skip them. A file named explicitly is still read.
      if (name.starts_with('.') || name.starts_with('_')) continue;
      std::string path = (std::filesystem::path(dir) / name).string();
      struct stat cst;
      if (!Stat(path, &cst)) continue;
      if (S_ISDIR(cst.st_mode)) {
        Walk(path, prefix + name + "/", cst);
        continue;
      }
      AddFile(path, prefix + name, cst);
    }
  }

  void AddFile(const std::string& path, const std::string& rel, const struct stat& st) {
    if (!S_ISREG(st.st_mode)) {
      throw DataError(source_ + ": '" + path + "' is " + KindOf(st.st_mode) +
                      ", not a regular file: only regular files can be read");
    }
    if (::access(path.c_str(), R_OK) != 0) {
      return Missing(path, std::string("cannot be read: ") + std::strerror(errno));
    }
    std::filesystem::path p(path);
    std::string abs = p.is_absolute() ? p.string() : std::filesystem::absolute(p).string();
    out_.files.push_back({std::filesystem::path(abs).lexically_normal().string(), rel,
                          static_cast<int64_t>(st.st_size),
                          int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec, ""});
  }

  // stat() following links; false (after Missing) for what cannot be examined.
  bool Stat(const std::string& path, struct stat* st) {
    if (::stat(path.c_str(), st) == 0) return true;
    int err = errno;
    struct stat lst;
    if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(path, ec);
      Missing(path, "is a dangling symbolic link (to '" + target.string() +
                        "': " + std::strerror(err) + ")");
    } else if (err == ENOENT || err == ENOTDIR) {
      Missing(path, "does not exist", "path '" + path + "' does not exist");
    } else {
      Missing(path, std::string("cannot be examined: ") + std::strerror(err));
    }
    return false;
  }

  // A path that cannot be read: skipped under ignore_missing_files, an error otherwise.
  void Missing(const std::string& path, const std::string& why, std::string message = "") {
    if (ignore_missing_) {
      out_.ignored.push_back(path + ": " + why);
      return;
    }
    if (message.empty()) message = "'" + path + "' " + why;
    throw DataError(source_ + ": " + message +
                    " (set ReadOptions::ignore_missing_files to skip what is missing)");
  }

  std::string source_;
  bool ignore_missing_;
  Listing out_;
  std::set<std::pair<dev_t, ino_t>> visited_;
};

}  // namespace

Listing ListFiles(const std::string& pattern, const std::string& source, bool ignore_missing,
                  const S3Options& s3, bool split, const std::string& after,
                  const std::string& until) {
  if (IsS3Uri(pattern)) return ListS3(pattern, source, ignore_missing, s3, split, after, until);
  return Lister(source, ignore_missing).List(pattern);
}

namespace {

// `b` in row ranges of about `max_bytes` each (itself when it is smaller, or has one row).
std::vector<Batch> SplitBySize(Batch b, int64_t max_bytes) {
  const int64_t rows = b.NumRows(), bytes = b.SizeBytes();
  if (max_bytes <= 0 || bytes <= max_bytes || rows <= 1) return {std::move(b)};
  const int64_t parts = std::min(rows, (bytes + max_bytes - 1) / max_bytes);
  const int64_t per_part = (rows + parts - 1) / parts;
  std::vector<Batch> out;
  for (int64_t at = 0; at < rows; at += per_part) out.push_back(b.Slice(at, per_part));
  return out;
}

// Yields a task's output blocks, each followed by its BlockInfo, with the task's work since
// the previous block; and between blocks, at most every kProgressEvery, a progress record of
// the rows of its input got through so far.
class PartYielder {
 public:
  static constexpr auto kProgressEvery = std::chrono::milliseconds(100);

  explicit PartYielder(lumen::Yield<Buffer>& out)
      : out_(out),
        wall_(std::chrono::steady_clock::now()),
        cpu_(ThreadCpuUs()),
        user_(UserCodeUs()),
        last_record_(wall_) {}
  void Consumed(const Batch& in) {
    rows_in_ += in.NumRows();
    bytes_in_ += in.SizeBytes();
  }
  void Emit(const Batch& block) {
    BlockInfo info;
    info.rows = block.NumRows();
    info.bytes = block.SizeBytes();
    info.rows_in = std::exchange(rows_in_, 0);
    info.bytes_in = std::exchange(bytes_in_, 0);
    const auto now = std::chrono::steady_clock::now();
    const int64_t cpu = ThreadCpuUs();
    info.wall_us = std::chrono::duration_cast<std::chrono::microseconds>(now - wall_).count();
    info.cpu_us = cpu - cpu_;
    info.user_code_us = UserCodeUs() - user_;
    out_(block.buffer());
    // The time spent handing the block over (back-pressure) is not the task's work.
    wall_ = std::chrono::steady_clock::now();
    cpu_ = ThreadCpuUs();
    user_ = UserCodeUs();
    last_record_ = wall_;
    out_(Buffer::Copy(&info, sizeof(info)));  // plain figures: the driver's own build reads them
  }
  // An input the task skipped: "path: why" (a skip record).
  void Skipped(const std::string& what) {
    BlockInfo info;
    info.rows = BlockInfo::kSkipRecord;
    Buffer record = Buffer::Allocate(sizeof(info) + what.size());
    std::memcpy(record.mutable_data(), &info, sizeof(info));
    std::memcpy(record.mutable_data() + sizeof(info), what.data(), what.size());
    out_(Buffer());
    out_(Buffer(record.data(), record.size(), record.owner()));
  }
  // The chain has got through `rows` rows of the task's input (counted from its start).
  void Progress(int64_t rows) {
    const auto now = std::chrono::steady_clock::now();
    if (rows <= rows_recorded_ || now - last_record_ < kProgressEvery) return;
    rows_recorded_ = rows;
    last_record_ = now;
    BlockInfo info;
    info.rows = BlockInfo::kProgressRecord;
    info.rows_in = rows;
    out_(Buffer());
    out_(Buffer::Copy(&info, sizeof(info)));
  }

 private:
  lumen::Yield<Buffer>& out_;
  std::chrono::steady_clock::time_point wall_;
  int64_t cpu_;
  int64_t user_;  // UserCodeUs() when the part began
  std::chrono::steady_clock::time_point last_record_;
  int64_t rows_recorded_ = 0;
  int64_t rows_in_ = 0;
  int64_t bytes_in_ = 0;
};

// Runs `chain` over `in` — in parts when it is larger than the chain's max_block_bytes, so
// that downstream work starts on the first while the next is made — and yields every output,
// split the same way, with progress records between them.
void RunInParts(const Chain& chain, const BlockKey& key, Batch in, PartYielder& out,
                void* instance = nullptr, const CallableInfo* callable = nullptr) {
  std::vector<Batch> pieces = SplitBySize(std::move(in), chain.max_block_bytes);
  int64_t rows_before = 0;  // of the pieces already through the chain
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (lumen::IsCancelled()) return;  // the job failed or stopped: its output is not wanted
    const int64_t rows = pieces[i].NumRows();
    const ChainProgress progress = [&](double fraction) {
      out.Progress(rows_before + static_cast<int64_t>(fraction * static_cast<double>(rows)));
    };
    Batch result = ApplyChain(chain, key.Part(static_cast<int64_t>(i)), std::move(pieces[i]),
                              instance, callable, progress);
    pieces[i] = Batch();
    rows_before += rows;
    for (const Batch& part : SplitBySize(std::move(result), chain.max_block_bytes)) {
      out.Emit(part);
    }
  }
}

}  // namespace

BlockInfo DecodeBlockInfo(const Buffer& b, std::string* note) {
  BlockInfo info;
  if (b.size() > sizeof(info) && note != nullptr) {  // a skip record's text
    std::memcpy(&info, b.data(), sizeof(info));
    if (info.rows == BlockInfo::kSkipRecord) {
      note->assign(reinterpret_cast<const char*>(b.data()) + sizeof(info), b.size() - sizeof(info));
      return info;
    }
  }
  if (b.size() != sizeof(info)) {
    throw DataError("a task yielded " + std::to_string(b.size()) +
                    " bytes where its block's figures belong (" + std::to_string(sizeof(info)) +
                    " expected)");
  }
  std::memcpy(&info, b.data(), sizeof(info));
  return info;
}

void ReadBlocksTask(lumen::Yield<Buffer>& out, const ReadSpec& spec, const Chain& chain,
                    const BlockKey& key) {
  PartYielder parts(out);
  std::vector<std::string> skipped;
  Batch b = ReadFiles(spec, &skipped);
  for (const std::string& what : skipped) parts.Skipped(what);
  parts.Consumed(b);
  RunInParts(chain, key, std::move(b), parts);
}

void RunChainTask(lumen::Yield<Buffer>& out, const Chain& chain, const BlockKey& key,
                  const Buffer& block) {
  PartYielder parts(out);
  Batch in = Batch::FromBuffer(block);
  parts.Consumed(in);
  RunInParts(chain, key, std::move(in), parts);
}

namespace {
// The pool resources of the actor this process hosts (one actor per worker process).
Mutex g_actor_resources_mu;
ActorResources g_actor_resources LUMEN_GUARDED_BY(g_actor_resources_mu);
}  // namespace

UdfActor* UdfActor::Create(const std::string& callable, const std::string& ctor_args,
                           double num_cpus, double num_gpus) {
  {
    MutexLock lock(g_actor_resources_mu);
    g_actor_resources = {num_cpus, num_gpus};
  }
  const CallableInfo* info = FindCallable(callable);
  if (!info) {
    throw FunctionNotFoundError("callable class " + callable +
                                " is not registered; add LUMEN_DATA_CALLABLE(" + callable +
                                ", <constructor argument types>)");
  }
  return new UdfActor(info, info->create(ctor_args));
}

void UdfActor::Process(lumen::Yield<Buffer>& out, const Chain& chain, const BlockKey& key,
                       const Buffer& block) {
  PartYielder parts(out);
  Batch in = Batch::FromBuffer(block);
  parts.Consumed(in);
  RunInParts(chain, key, std::move(in), parts, instance_.get(), info_);
}

// ---- exchange ------------------------------------------------------------------------------

namespace {

// The partition of each row of `b` by its keys against the sorted `boundaries` rows.
std::vector<int64_t> RangePartitions(const ExchangeSpec& spec, const Batch& b) {
  const int64_t n = b.NumRows();
  std::vector<int64_t> part(static_cast<size_t>(n), 0);
  Batch bounds = Batch::FromBuffer(spec.boundaries);
  if (bounds.NumRows() == 0 || n == 0) return part;
  KeyColumns keys(b, spec.keys);
  KeyColumns bk(bounds, spec.keys);
  if (!keys.SameTypes(bk)) throw DataError("a key column changes type between blocks");
  const auto ints = keys.SoleInt64WithoutNulls();
  const auto bound_ints = bk.SoleInt64WithoutNulls();
  if (ints && bound_ints) {  // one int64 key without nulls: a search over the numbers
    for (int64_t i = 0; i < n; ++i) {
      const int64_t lo = std::upper_bound(bound_ints->begin(), bound_ints->end(),
                                          (*ints)[static_cast<size_t>(i)]) -
                         bound_ints->begin();
      part[static_cast<size_t>(i)] = spec.descending ? bounds.NumRows() - lo : lo;
    }
    return part;
  }
  for (int64_t i = 0; i < n; ++i) {
    int64_t lo = 0, hi = bounds.NumRows();  // first boundary > key
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (bk.Compare(static_cast<size_t>(mid), keys, static_cast<size_t>(i)) <= 0) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    part[static_cast<size_t>(i)] = spec.descending ? bounds.NumRows() - lo : lo;
  }
  return part;
}

// MapGroups: `fn` over each run of equal keys of `rows` (sorted by them).
Batch MapEachGroup(const ExchangeSpec& spec, const Batch& rows) {
  if (rows.NumRows() == 0) return Batch();
  BatchFn fn = LookupBatchFn(spec.fn);
  KeyColumns keys(rows, spec.keys);
  std::vector<Batch> outs;
  const int64_t n = rows.NumRows();
  for (int64_t start = 0; start < n;) {
    int64_t end = start + 1;
    while (end < n &&
           keys.Compare(static_cast<size_t>(end), keys, static_cast<size_t>(start)) == 0) {
      ++end;
    }
    outs.push_back(fn(rows.Slice(start, end - start)));
    start = end;
  }
  try {
    return Batch::Concat(outs);
  } catch (const TypeError& e) {
    throw DataError("MapGroups(" + spec.fn +
                    "): the groups' results differ in columns: " + e.what());
  }
}

}  // namespace

Batch WithPartitions(const Batch& block, const std::vector<int64_t>& part) {
  // A counting sort: partitions are few, rows many; rows keep their order within a partition.
  int64_t parts = 0;
  for (int64_t p : part) parts = std::max(parts, p + 1);
  std::vector<int64_t> start(static_cast<size_t>(parts) + 1, 0);
  for (int64_t p : part) ++start[static_cast<size_t>(p) + 1];
  for (size_t p = 1; p < start.size(); ++p) start[p] += start[p - 1];
  std::vector<int64_t> order(part.size());
  std::vector<int64_t> sorted_parts(part.size());
  for (size_t i = 0; i < part.size(); ++i) {
    const int64_t at = start[static_cast<size_t>(part[i])]++;
    order[static_cast<size_t>(at)] = static_cast<int64_t>(i);
    sorted_parts[static_cast<size_t>(at)] = part[i];
  }
  Batch rows = block.TakeRows(order);
  BatchBuilder b;
  b.AddInt64("__partition", std::move(sorted_parts));
  for (const auto& n : rows.ColumnNames()) b.AddColumnFrom(rows, n);
  return b.Build();
}

Buffer SampleTask(const std::vector<std::string>& keys, int64_t count, const Buffer& block) {
  Batch b = Batch::FromBuffer(block);
  int64_t n = b.NumRows();
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < std::min(count, n); ++i) rows.push_back(i * n / std::min(count, n));
  if (n == 0) return Batch().buffer();
  return b.SelectColumns(keys).TakeRows(rows).buffer();
}

Buffer PartitionTask(const ExchangeSpec& spec, int64_t block_index, int64_t first_row,
                     int64_t total_rows, const Buffer& block) {
  TaskTimer timer;
  Batch b = Batch::FromBuffer(block);
  timer.Consumed(b);
  const int64_t parts = std::max(1, spec.partitions);
  if (spec.kind == "aggregate") b = CombineForExchange(spec.keys, spec.aggs, b);
  const int64_t n = b.NumRows();
  std::vector<int64_t> part(static_cast<size_t>(n), 0);
  if (spec.kind == "repartition" && spec.rows_per_partition > 0) {
    for (int64_t i = 0; i < n; ++i)
      part[static_cast<size_t>(i)] = (first_row + i) / spec.rows_per_partition;
  } else if (spec.kind == "repartition") {
    for (int64_t i = 0; i < n; ++i) {
      part[static_cast<size_t>(i)] = total_rows > 0 ? (first_row + i) * parts / total_rows : 0;
    }
  } else if (spec.kind == "shuffle") {
    std::mt19937_64 rng(spec.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(block_index));
    for (auto& p : part) p = static_cast<int64_t>(rng() % static_cast<uint64_t>(parts));
  } else if (spec.RangePartitioned()) {
    part = RangePartitions(spec, b);
  }
  return timer.Finish(WithPartitions(b, part));
}

PartitionSlices SlicesOf(const std::vector<lumen::ObjectRef<Buffer>>& outs, int64_t partition) {
  PartitionSlices s;
  s.blocks.reserve(outs.size());  // no reallocation: `ranges` points into it
  bool have_schema = false;
  for (Buffer& buffer : lumen::Get(outs)) {
    Batch b = Batch::FromBuffer(std::move(buffer));
    if (b.NumColumns() == 0) continue;
    if (!have_schema) {
      s.schema = b;
      have_schema = true;
    }
    auto p = b.Int64("__partition");
    auto lo = std::lower_bound(p.begin(), p.end(), partition);
    auto hi = std::upper_bound(p.begin(), p.end(), partition);
    if (lo == hi) continue;
    s.blocks.push_back(std::move(b));
    s.ranges.push_back({&s.blocks.back(), lo - p.begin(), hi - lo});
  }
  return s;
}

Buffer ReduceTask(const ExchangeSpec& spec, int64_t partition,
                  const std::vector<lumen::ObjectRef<Buffer>>& map_outputs) {
  TaskTimer timer;
  PartitionSlices slices = SlicesOf(map_outputs, partition);
  std::vector<RowRange> ranges;
  std::vector<RowRange> raw;  // aggregate: map outputs that sent their rows, not partials
  for (const RowRange& r : slices.ranges) {
    const bool rows_not_partials = spec.kind == "aggregate" && !HoldsPartials(spec.aggs, *r.batch);
    (rows_not_partials ? raw : ranges).push_back(r);
  }
  Batch rows = ConcatRanges(ranges, {"__partition"});
  timer.Consumed(rows);
  if (!raw.empty()) {  // combined here, then with the partials of the other map outputs
    Batch raw_rows = ConcatRanges(raw, {"__partition"});
    timer.Consumed(raw_rows);
    rows = Batch::Concat({rows, PartialAggregate(spec.keys, spec.aggs, raw_rows)});
  }
  const int64_t n = rows.NumRows();
  if (spec.kind == "aggregate") {
    // A global aggregate has one partition, and one row even over nothing.
    if (n == 0 && !spec.keys.empty()) return timer.Finish(Batch());
    return timer.Finish(FinalAggregate(spec.keys, spec.aggs, rows));
  }
  if (spec.kind == "shuffle" && n > 1) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(spec.seed ^ (0xabcdef12345ull + static_cast<uint64_t>(partition)));
    std::shuffle(order.begin(), order.end(), rng);
    rows = rows.TakeRows(order);
  } else if ((spec.kind == "sort" || spec.kind == "map_groups") && n > 1) {
    rows = rows.TakeRows(KeyColumns(rows, spec.keys).SortedOrder(spec.descending));
  }
  if (spec.kind == "map_groups") rows = MapEachGroup(spec, rows);
  return timer.Finish(rows);
}

}  // namespace lumen::data::internal

namespace lumen::data {
ActorResources PoolActorResources() {
  MutexLock lock(internal::g_actor_resources_mu);
  return internal::g_actor_resources;
}
}  // namespace lumen::data

// Qualified names: they cannot clash with a user's functions.
LUMEN_REMOTE(lumen::data::internal::ListFiles, lumen::data::internal::ReadBlocksTask,
             lumen::data::internal::RunChainTask, lumen::data::internal::UdfActor::Create,
             &lumen::data::internal::UdfActor::Process, lumen::data::internal::SampleTask,
             lumen::data::internal::PartitionTask, lumen::data::internal::ReduceTask,
             lumen::data::internal::HashPartitionTask, lumen::data::internal::JoinTask);
