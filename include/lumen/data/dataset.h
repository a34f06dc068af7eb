// lumen::data — streaming datasets on Lumen: read → transform → model → write, in bounded
// memory, as fast as a hand-written pipeline.
//
// @code
//   #include <lumen/data/dataset.h>
//   namespace ld = lumen::data;
//
//   ld::Batch Tag(const ld::Batch& in);   // registered with LUMEN_REMOTE(Tag)
//
//   ld::ReadBinaryFiles("in/")                                   // columns: path, bytes
//       .MapBatches(Tag, {.batch_size = 32})
//       .WriteFiles("out/", {.path_column = "path", .data_column = "bytes"});
// @endcode
//
// A Dataset is an immutable, cheap-to-copy handle to a lazy plan: transforms return new
// Datasets and nothing runs until a consumer (Take, TakeAll, Count, IterBatches, Materialize,
// Write*) is called. Functions passed to transforms must be registered with LUMEN_REMOTE
// (they run in worker processes); callable classes with LUMEN_DATA_CALLABLE.
//
// Execution streams: blocks move to the next stage as soon as they exist; a memory budget in
// bytes bounds what is held in the object store and in flight; consecutive compatible stages
// are fused into one task. Writes are exactly-once: files appear under their final name only
// when complete, names are deterministic, and re-running the same write (same plan, same
// inputs) skips what is committed; WriteOptions::mode says what happens to other output.
//
// Thread safety: Dataset values may be shared between threads; run one consumer at a time per
// Dataset value.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "lumen/actor.h"
#include "lumen/data/batch.h"
#include "lumen/data/expr.h"
#include "lumen/data/image.h"
#include "lumen/data/row.h"
#include "lumen/data/s3.h"
#include "lumen/errors.h"
#include "lumen/remote.h"
#include "lumen/serialization.h"

namespace lumen::data {

// A job failed: names the operator and, for bad input, the file (and line).
class DataError : public lumen::Error {
 public:
  using lumen::Error::Error;
};

using BatchFn = Batch (*)(const Batch&);
using RowFn = Row (*)(const Row&);
using FlatRowFn = std::vector<Row> (*)(const Row&);
using RowPredicate = bool (*)(const Row&);

// An actor pool's size range (MapBatchesOptions::concurrency).
struct Autoscale {
  int min = 1;
  int max = 1;
};

// MapBatchesOptions::concurrency: a number (`.concurrency = 4`), or for an actor pool a range
// it sizes itself within (`.concurrency = {1, 8}`, or `ld::Autoscale{.min = 1, .max = 8}`).
// (C++ lets a designated list `{.min, .max}` initialise only a plain struct, which an int
// could not then initialise; the pair of numbers or Autoscale say the same.)
class Concurrency {
 public:
  Concurrency(int n = 0) : min_(n), max_(n) {}  // NOLINT: implicit on purpose
  Concurrency(int min, int max) : min_(min), max_(max) {}
  Concurrency(Autoscale range) : min_(range.min), max_(range.max) {}  // NOLINT
  int min() const { return min_; }
  int max() const { return max_; }
  bool fixed() const { return min_ == max_; }

 private:
  int min_;
  int max_;
};

struct MapBatchesOptions {
  int64_t batch_size = 0;  // rows per call; 0: one call per block
  // Functions: cap on concurrent tasks (0: as many as resources allow; a range: its max).
  // Callable classes: the number of actors in the pool (0: 1), or a range: the pool starts
  // `min` actors, adds actors — several at once — while blocks wait for one and the cluster
  // has room for them, up to `max`, and retires actors idle for autoscale_idle_s down to `min`.
  Concurrency concurrency = 0;
  double num_cpus = 1;
  double num_gpus = 0;
  int64_t memory = 0;
  // Actor pools: calls running at once inside one actor, and blocks queued per actor
  // (0: 2 × max_concurrency).
  int max_concurrency = 1;
  int max_tasks_in_flight_per_actor = 0;
  // Actor pools, when an actor's process dies (killed, crashed, out of memory): its calls in
  // flight fail, the pool re-queues their blocks for the live actors and the actor is
  // restarted, up to this many times (-1: without limit). An actor whose restarts are used up
  // is replaced by a fresh one (at most `concurrency` replacements per pool) or, if it never
  // finished a block, dropped; the pool carries on with the actors it has left and the job
  // fails only when none is left. Restarts show in the progress line and in Stats().
  int max_actor_restarts = 3;
  // Actor pools: times one block is re-run after the actor running it died, before the block
  // fails (and counts against ExecutionOptions::max_errored_blocks; 0: at once). An exception
  // thrown by the callable is never re-run.
  int max_block_retries = 3;
  // Actor pools (spread over the cluster's nodes): a block goes to the least-loaded actor on
  // the node that holds it while one there has room in its queue, else to the least-loaded
  // actor anywhere — so blocks seldom cross the network. false: to an actor chosen at random,
  // among the idle ones when any is, else among those with room (the baseline of the
  // locality benchmark).
  bool locality_aware = true;
  // Autoscaling pools: seconds an actor may stay idle before it is retired (down to min).
  double autoscale_idle_s = 10;
};

// Tasks of one network-bound read or write (0 CPUs) that run at once.
inline constexpr int kIoTasksInFlight = 8;

struct ReadOptions {
  // Files per read task are grouped up to this many bytes (one block per task), at most this
  // many files. The first and the last four blocks of a read are split in about quarters — in
  // whole batches of the transform that reads them (its batch_size) — so the stages after the
  // read start on small blocks and end together rather than on one CPU. Reads of one row per
  // file (ReadImages, ReadBinaryFiles) group whole batches too: a block ends on a multiple of
  // the batch size (passing the byte target by up to a batch less one file; the file limit is
  // rounded down to a multiple, and is at least one batch), so every batch but the last has
  // batch_size rows.
  int64_t target_block_bytes = 4 << 20;
  int max_files_per_block = 256;
  // ReadCsv / ReadJson: only these columns (empty: all). Set by SelectColumns pushdown too.
  std::vector<std::string> columns{};
  char delimiter = ',';  // ReadCsv
  // Range / FromItems: number of blocks (0: one per 10,000 rows).
  int num_blocks = 0;
  // File sources. A path that does not exist or matches nothing, a dangling symbolic link and
  // an entry that cannot be read (permission denied) fail the job naming the path, unless
  // this is true: then they are skipped, listed in Stats() (OperatorStats::ignored_files),
  // counted in the progress line and reported once on stderr. Either way a job with nothing
  // at all to read fails. Files that vanish after listing still fail the read.
  bool ignore_missing_files = false;
  // ReadCsv: fields that read as null (an empty field by default; {} keeps every field as
  // its text). A column's type is inferred from its other values.
  std::vector<std::string> null_values{""};
  // CPUs each read task reserves (a read fused with the maps after it takes theirs). -1: 1,
  // but 0 for ReadBinaryFiles of s3:// objects, which only waits on the network: it does not
  // hold a CPU the maps after it could use, and it is not fused with them, so downloads
  // overlap their work (at most kIoTasksInFlight such reads run at once).
  double num_cpus = -1;
  // s3:// paths: where and as whom (empty fields: the AWS conventions, see lumen/data/s3.h).
  S3Options s3{};
};

// What a write does with an output directory that already holds files. Every write records
// `_lumen_manifest.json` (its plan and inputs) before it starts and `_SUCCESS` once complete;
// readers skip both (directory listings skip names starting with `_` or `.`).
enum class WriteMode {
  // Default. An empty (or missing) directory is written; one whose manifest matches this plan
  // and its inputs (operators and their parameters, input files with sizes and modification
  // times, the content of in-memory blocks) is resumed: files already committed are kept and
  // only the missing ones written. Anything else fails naming what changed and the mode to pick.
  kResume,
  // Fails if the directory holds anything.
  kError,
  // Writes the new output beside the old one (in a hidden directory) and replaces the old files
  // only once the new output is complete; an overwrite interrupted while replacing is finished by
  // the next write to the directory, one interrupted while writing is resumed by the same
  // overwrite.
  kOverwrite,
  // Adds files under new names beside the old ones (`part-<write id>-<block>`; WriteFiles keeps
  // its paths and fails on a path that holds other bytes). An interrupted append is resumed by
  // the same append; a new append of the same plan adds its rows again, as asked.
  kAppend,
  // Does nothing if the directory holds output (WriteResult::ignored), else writes it.
  kIgnore,
};

// What a reader does with an input it cannot decode (ReadImages).
enum class OnError : uint8_t {
  kFail = 0,  // the read fails, naming the file and the decoder's reason
  kSkip = 1,  // the file is skipped, listed in Stats() (OperatorStats::skipped_inputs) and on
              // stderr
};

// ReadImages.
struct ImageReadOptions {
  // Every image resized to this (antialiased; see lumen/data/image.h): the `image` column is a
  // uint8 tensor of shape {height, width, channels}. Empty: each image keeps its own size and
  // the column has type DataType::kImage (Batch::Images / Batch::ImageAt).
  ImageSize size{};
  ImageMode mode = ImageMode::kRGB;
  OnError on_error = OnError::kFail;
  // Grouping into read tasks (by file bytes, before decoding), num_cpus, missing files, S3.
  ReadOptions read{};
};

struct WriteOptions {
  // WriteFiles: the column with the relative output path, and the one with the bytes.
  std::string path_column = "path";
  std::string data_column = "bytes";
  // WriteJson / WriteCsv: rows per output file (0: one file per block).
  int64_t rows_per_file = 0;
  WriteMode mode = WriteMode::kResume;
  // CPUs each write task reserves when the write runs as tasks of its own (after an actor pool
  // or an exchange); a write fused into the task that makes its blocks takes that task's.
  // -1: 1, but 0 for WriteFiles to s3://, which only waits on the network: it runs as tasks
  // of its own after a map that reserves CPUs (at most kIoTasksInFlight at once), so uploads
  // overlap the map's work.
  double num_cpus = -1;
  // An s3:// dir: where and as whom (empty fields: the AWS conventions, see lumen/data/s3.h).
  S3Options s3{};
};

// WriteImages.
struct ImageWriteOptions {
  std::string format = "png";  // "png" (lossless) or "jpeg"
  int quality = 90;            // jpeg: 1..100
  std::string column = "image";
  // Each image is written under this column's relative path with the format's extension
  // ("cats/a.jpg" -> "cats/a.png"); without the column, as image-<block>-<row>.<ext>.
  std::string path_column = "path";
  WriteMode mode = WriteMode::kResume;
  double num_cpus = 1;
  S3Options s3{};
};

struct ExecutionOptions {
  // Bytes of blocks held in the object store plus the estimated output of running tasks.
  // 0: a quarter of the node's object store. An actor pool's idle actor takes a waiting block
  // even when the budget is spent (overrunning it by at most one call's output per actor).
  int64_t memory_budget_bytes = 0;
  // Live per-operator progress bars on a terminal, periodic lines otherwise.
  bool progress = true;
  // Skip up to this many failed blocks (listed in Stats()) instead of failing the job.
  int max_errored_blocks = 0;
  // Report an operator that has made no progress for this long (with what it waits on).
  int64_t stall_report_ms = 60000;
  // Deliver blocks in source order (TakeAll, IterBatches) rather than as they finish.
  bool preserve_order = false;
  // A task's input or output block larger than this is processed and passed on in parts of
  // about this size (Ray Data's target_max_block_size), each sent downstream as soon as it is
  // made: large files and expanding maps (FlatMap) stay within memory and keep the pipeline
  // busy. A task that splits writes one file per part (WriteJson/WriteCsv: part-<block>_<k>).
  int64_t target_max_block_bytes = int64_t{128} << 20;
  // How often progress is drawn (with `progress`): 0 is every 200 ms on a terminal and every
  // 10 s in a log (a job shorter than that prints only its final lines).
  int64_t progress_interval_ms = 0;
};

struct IterOptions {
  int64_t batch_size = 0;  // 0: whole blocks
};

struct OperatorStats {
  std::string name{};
  int64_t tasks = 0;
  int64_t rows_in = 0;  // consumed: read from files (sources) or received from upstream
  int64_t bytes_in = 0;
  int64_t rows_out = 0;  // produced (a writer produces one summary row per block written)
  int64_t bytes_out = 0;
  double wall_s = 0;       // first task start to last task end
  double task_wall_s = 0;  // summed over tasks
  double task_cpu_s = 0;   // summed over tasks
  int64_t peak_bytes_held = 0;
  std::vector<std::string> errored_blocks{};  // skipped under max_errored_blocks
  // Actor pools: actors that died and were restarted or replaced, and blocks re-run because
  // the actor running them died.
  int64_t actor_restarts = 0;
  int64_t blocks_retried = 0;
  // Autoscaling pools: actors added above the minimum, and idle ones retired.
  int64_t actors_added = 0;
  int64_t actors_retired = 0;
  // Actor pools: the longest time from asking for an actor to its being ready (placed, its
  // process started, the callable constructed — a model loaded), and the actors measured.
  double actor_start_s = 0;
  int64_t actors_started = 0;
  // Summed over tasks: time spent in the user's functions (MapBatches functions and callables,
  // Map, FlatMap, Filter, AddColumn), the rest of task_wall_s being Lumen's (reading, decoding,
  // writing, handing blocks over).
  double user_code_s = 0;
  // Input bytes of its tasks that lay on another node than the one that ran the task (pulled
  // across the network), as the blocks' locations showed.
  int64_t bytes_moved = 0;
  // File sources: entries skipped under ReadOptions::ignore_missing_files ("path: why").
  std::vector<std::string> ignored_files{};
  // ReadImages with OnError::kSkip: files that did not decode ("path: why").
  std::vector<std::string> skipped_inputs{};
  // File sources: tasks that listed the input. One per path given, and one per sub-folder
  // of an s3:// folder (its listing is split by its folders, one level down).
  int64_t listing_tasks = 0;
};

struct DatasetStats {
  std::vector<OperatorStats> operators{};
  double wall_s = 0;
  int64_t peak_memory_bytes = 0;  // object store + in flight, as the executor accounted
  std::string ToString() const;
};
// `std::cout << ds.Stats()` prints its ToString().
inline std::ostream& operator<<(std::ostream& os, const DatasetStats& s) {
  return os << s.ToString();
}

// A column as Dataset::Schema() describes it.
struct Field {
  std::string name;
  DataType type = DataType::kInt64;
  bool nullable = false;            // the block examined holds nulls in this column
  std::vector<int64_t> shape = {};  // tensors: the shape of one row
};

// The columns of a dataset, in order. `std::cout << schema` prints one column per line.
struct Schema {
  std::vector<Field> fields;
  std::vector<std::string> Names() const;
  // The field named `name`; throws lumen::TypeError listing the columns when there is none.
  const Field& Get(const std::string& name) const;
  std::string ToString() const;
};
inline std::ostream& operator<<(std::ostream& os, const Schema& s) { return os << s.ToString(); }

struct WriteResult {
  int64_t files_written = 0;
  int64_t files_skipped = 0;  // already committed by an earlier run
  int64_t bytes_written = 0;
  bool ignored = false;  // WriteMode::kIgnore found output and wrote nothing
};

// Dataset::StreamingSplit.
struct StreamingSplitOptions {
  // Every iterator gets the same number of rows: blocks are cut where needed and the fewer
  // than n rows left at the end are dropped (as Ray's streaming_split(equal=True)). Without
  // it, whole blocks go to whichever consumer asks first (faster consumers read more).
  bool equal = false;
};

namespace internal {
struct LogicalNode;
class ExecutionHandle;
class SplitCoordinator;
class SplitPump;
// A lambda or another function object, given where a function registered with LUMEN_REMOTE is
// needed (workers look functions up by name: a lambda cannot be sent to them).
template <class F>
concept FunctionObject =
    std::is_class_v<std::remove_cvref_t<F>> && !std::is_same_v<std::remove_cvref_t<F>, Expr>;
template <class>
inline constexpr bool kNeedsRegisteredFunction = false;

// Range-for over a source of batches (`std::optional<Batch> Next()`, nullopt at the end).
template <class Source>
class NextIterator {
 public:
  explicit NextIterator(Source* source) : source_(source) { Advance(); }
  const Batch& operator*() const { return *current_; }
  NextIterator& operator++() {
    Advance();
    return *this;
  }
  bool operator!=(const NextIterator& o) const {
    return current_.has_value() || o.current_.has_value();
  }

 private:
  void Advance() { current_ = source_ ? source_->Next() : std::nullopt; }
  Source* source_;
  std::optional<Batch> current_;
};
}  // namespace internal

class BatchIterator;
class SplitIterator;

enum class JoinType { kInner, kLeftOuter, kRightOuter, kFullOuter, kSemi, kAnti };

// Dataset::Join. Keys: `on` (the same names on both sides), or `left_on` and `right_on`
// (pairwise). Rows match when every key is equal; a null key matches nothing (SQL). Output:
// the left columns, then the right ones without the `on` keys (with `left_on`/`right_on` both
// sides' keys are kept); a non-key name on both sides gets the suffixes. Outer joins fill the
// side without a match with nulls (an `on` key takes the value of the side that has one);
// kSemi / kAnti give the left rows with / without a match, left columns only.
struct JoinOptions {
  std::vector<std::string> on{};
  JoinType how = JoinType::kInner;
  std::vector<std::string> left_on{};
  std::vector<std::string> right_on{};
  std::string left_suffix{};
  std::string right_suffix = "_right";
  int num_partitions = 0;  // hash partitions of the exchange; 0: the larger side's blocks
};

// One aggregation of GroupBy(...).Aggregate({...}) or Dataset::Aggregate({...}), named as in
// Ray Data: Count() -> "count()", Count("x") -> "count(x)", Sum("x") -> "sum(x)", Mean ->
// "mean(x)", Min -> "min(x)", Max -> "max(x)", Std -> "std(x)", CountDistinct ->
// "count_distinct(x)"; `.As("total")` renames. Nulls are skipped as in SQL: a group with no
// value gets null (sum, mean, min, max, std), count(x) and count_distinct(x) count values.
// Sum, Min and Max keep int64 as int64; Mean and Std are float64; Std is the sample standard
// deviation (ddof = 1: null for fewer than two values).
class AggregateFn {
 public:
  AggregateFn() = default;
  AggregateFn(std::string op, std::string column, int ddof = 1);
  AggregateFn As(std::string name) const;
  const std::string& name() const { return name_; }
  const std::string& op() const { return op_; }
  const std::string& column() const { return column_; }
  int ddof() const { return ddof_; }

 private:
  std::string op_;
  std::string column_;
  std::string name_;
  int ddof_ = 1;

 public:
  LUMEN_SERIALIZE(op_, column_, name_, ddof_);
};
AggregateFn Count();
AggregateFn Count(std::string column);
AggregateFn Sum(std::string column);
AggregateFn Mean(std::string column);
AggregateFn Min(std::string column);
AggregateFn Max(std::string column);
AggregateFn Std(std::string column, int ddof = 1);
AggregateFn CountDistinct(std::string column);

class Dataset {
 public:
  // ---- transforms (lazy) ---------------------------------------------------------------
  Dataset MapBatches(BatchFn fn, MapBatchesOptions options = {}) const;
  // A callable class run in an actor pool: C(ctor_args...) once per actor, then
  // `Batch C::operator()(const Batch&)` per batch. C must be registered with
  // LUMEN_DATA_CALLABLE(C, ctor argument types...). Each actor reserves `options.num_cpus`
  // (default 1) and `num_gpus` (default 0) for its whole life: a pool of `concurrency` actors
  // takes concurrency × num_cpus CPUs from the tasks of the other operators (0 CPUs for an
  // actor that mostly waits on a GPU or on I/O).
  template <class C, class... Args>
  Dataset MapBatches(MapBatchesOptions options, Args&&... ctor_args) const;
  Dataset Map(RowFn fn, MapBatchesOptions options = {}) const;
  Dataset FlatMap(FlatRowFn fn, MapBatchesOptions options = {}) const;
  Dataset Filter(RowPredicate fn, MapBatchesOptions options = {}) const;
  // A lambda passed to MapBatches, Map, FlatMap, Filter or AddColumn is a compile error that
  // says what to write instead (`kDeducedOnly`: MapBatches<C>(...) never lands here).
  template <int&... kDeducedOnly, internal::FunctionObject F>
  Dataset MapBatches(F&&, MapBatchesOptions = {}) const {
    static_assert(internal::kNeedsRegisteredFunction<F>,
                  "lumen::data: MapBatches needs a function registered with LUMEN_REMOTE, not a "
                  "lambda (workers run it by name): declare `ld::Batch Fn(const ld::Batch&)` at "
                  "namespace scope, add LUMEN_REMOTE(Fn) and pass Fn; for state loaded once, use "
                  "a callable class with LUMEN_DATA_CALLABLE and MapBatches<Class>(options)");
    return *this;
  }
  template <internal::FunctionObject F>
  Dataset Map(F&&, MapBatchesOptions = {}) const {
    static_assert(internal::kNeedsRegisteredFunction<F>,
                  "lumen::data: Map needs a function registered with LUMEN_REMOTE, not a lambda "
                  "(workers run it by name): declare `ld::Row Fn(const ld::Row&)` at namespace "
                  "scope, add LUMEN_REMOTE(Fn) and pass Fn");
    return *this;
  }
  template <internal::FunctionObject F>
  Dataset FlatMap(F&&, MapBatchesOptions = {}) const {
    static_assert(internal::kNeedsRegisteredFunction<F>,
                  "lumen::data: FlatMap needs a function registered with LUMEN_REMOTE, not a "
                  "lambda (workers run it by name): declare `std::vector<ld::Row> Fn(const "
                  "ld::Row&)` at namespace scope, add LUMEN_REMOTE(Fn) and pass Fn");
    return *this;
  }
  template <internal::FunctionObject F>
  Dataset Filter(F&&, MapBatchesOptions = {}) const {
    static_assert(internal::kNeedsRegisteredFunction<F>,
                  "lumen::data: Filter needs a function registered with LUMEN_REMOTE, not a "
                  "lambda (workers run it by name): declare `bool Fn(const ld::Row&)` at "
                  "namespace scope, add LUMEN_REMOTE(Fn) and pass Fn");
    return *this;
  }
  // Expressions (expr.h): a computed column (replacing one of that name), and the rows where a
  // condition is true. Vectorised, no registered function; a Filter right after ReadCsv or
  // ReadJson runs inside the read, on the columns it needs, before the other columns are built.
  Dataset WithColumn(const std::string& name, const Expr& value) const;
  Dataset Filter(const Expr& condition) const;
  Dataset SelectColumns(std::vector<std::string> columns) const;
  Dataset DropColumns(std::vector<std::string> columns) const;
  // `fn` returns a batch with one column, named `name` in the output.
  Dataset AddColumn(const std::string& name, BatchFn fn) const;
  template <internal::FunctionObject F>
  Dataset AddColumn(const std::string&, F&&) const {
    static_assert(internal::kNeedsRegisteredFunction<F>,
                  "lumen::data: AddColumn needs a function registered with LUMEN_REMOTE, not a "
                  "lambda (workers run it by name): declare `ld::Batch Fn(const ld::Batch&)` at "
                  "namespace scope, add LUMEN_REMOTE(Fn) and pass Fn");
    return *this;
  }
  Dataset Limit(int64_t rows) const;
  Dataset Repartition(int num_blocks) const;
  Dataset RandomShuffle(uint64_t seed = 0) const;
  Dataset Sort(const std::string& key, bool descending = false) const;
  Dataset Union(const std::vector<Dataset>& others) const;
  // Groups by one or more key columns (nulls form a group): GroupBy("a"), GroupBy({"a", "b"}).
  class GroupedData GroupBy(const std::string& key) const;
  class GroupedData GroupBy(std::initializer_list<std::string> keys) const;
  class GroupedData GroupBy(const std::vector<std::string>& keys) const;
  // Joins this dataset (left) with `right` on key columns: both sides are hash-partitioned on
  // the keys and each partition joined in a task (Ray Data's join, on its hash shuffle).
  Dataset Join(const Dataset& right, JoinOptions options) const;
  // Aggregations over the whole dataset: one row (count() 0 and nulls when it is empty).
  Dataset Aggregate(std::vector<AggregateFn> aggregations) const;
  Dataset WithOptions(ExecutionOptions options) const;

  // ---- consumers (execute) -------------------------------------------------------------
  std::vector<Row> Take(int64_t n) const;
  std::vector<Row> TakeAll() const;
  int64_t Count() const;
  // The values of `column` that are not null (Count() counts rows).
  int64_t Count(const std::string& column) const;
  // Streams batches; the first arrives before the dataset is finished.
  BatchIterator IterBatches(IterOptions options = {}) const;
  // Runs the plan and keeps the blocks: later consumers start from them.
  Dataset Materialize() const;
  // Runs the plan once and splits the rows, in order, into `n` datasets (Ray's split): of
  // whole blocks as even in rows as blocks allow, or with `equal` of exactly total / n rows
  // each (the remainder, fewer than n rows, is dropped, as in Ray). Each is a materialised
  // dataset that several consumers (trainer actors) can read at once.
  std::vector<Dataset> Split(int n, bool equal = false) const;
  // Runs the plan once, streaming, and deals its blocks to `n` iterators that n consumers
  // (trainer actors, tasks, threads) read at the same time (Ray's streaming_split): each block
  // goes to one iterator only, a consumer gets blocks on its own node first, and the plan
  // runs only as fast as the consumers read (a few blocks per consumer are held). Iterators
  // are serialisable: pass each to its consumer. The stream runs while any of the returned
  // iterators lives in this process; an iterator read after that, or when the job failed,
  // throws DataError. Throws DataError for n < 1.
  std::vector<SplitIterator> StreamingSplit(int n, StreamingSplitOptions options = {}) const;
  // The first (1 - test_fraction) of the rows and the rest, as {train, test}, after a
  // RandomShuffle(seed) when `shuffle` (Ray's train_test_split).
  std::pair<Dataset, Dataset> TrainTestSplit(double test_fraction, bool shuffle = false,
                                             uint64_t seed = 0) const;
  WriteResult WriteFiles(const std::string& dir, WriteOptions options = {}) const;
  WriteResult WriteJson(const std::string& dir, WriteOptions options = {}) const;
  WriteResult WriteCsv(const std::string& dir, WriteOptions options = {}) const;
  // The images of a column (lumen/data/image.h), encoded as PNG or JPEG, one file each.
  WriteResult WriteImages(const std::string& dir, ImageWriteOptions options = {}) const;

  // The columns: names, types, tensor shapes and whether nulls occur, from the first block
  // (as Ray's Dataset.schema(): the plan runs until one block exists, then stops). An empty
  // dataset has no columns.
  ::lumen::data::Schema Schema() const;
  // The column names (Schema().Names()).
  std::vector<std::string> Columns() const;
  // Prints the first `rows` rows as a table to `out` (std::cout by default): a header of names
  // and types, one line per row, nulls as `null`, long text cut at 40 characters, binary
  // values and tensors by their size.
  void Show(int64_t rows = 20) const;
  void Show(int64_t rows, std::ostream& out) const;

  // Statistics of the last execution of this Dataset value (empty before any).
  DatasetStats Stats() const;
  // The logical plan, and the physical plan after optimisation.
  std::string Explain() const;

  // Internal.
  explicit Dataset(std::shared_ptr<internal::LogicalNode> node);
  const std::shared_ptr<internal::LogicalNode>& node() const { return node_; }

 private:
  Dataset MapCallable(const std::string& class_name, std::string ctor_args,
                      MapBatchesOptions options) const;
  std::shared_ptr<internal::LogicalNode> node_;
  std::shared_ptr<DatasetStats> last_stats_;
};

// Rows grouped by key columns. Every operation is an all-to-all exchange: the rows are
// range-partitioned on the keys (sampled), so the output comes sorted by the keys (nulls last).
// Aggregations are combined within each input block before the exchange (only one row per
// group and block crosses it).
class GroupedData {
 public:
  GroupedData(Dataset ds, std::vector<std::string> keys);
  // One row per group: the keys, then each aggregation under its name.
  Dataset Aggregate(std::vector<AggregateFn> aggregations) const;
  // `fn` (registered with LUMEN_REMOTE) gets all the rows of one group as a batch and returns
  // any rows; the results of every group make the output.
  Dataset MapGroups(BatchFn fn) const;
  template <internal::FunctionObject F>
  Dataset MapGroups(F&&) const {
    static_assert(internal::kNeedsRegisteredFunction<F>,
                  "lumen::data: MapGroups needs a function registered with LUMEN_REMOTE, not a "
                  "lambda (workers run it by name): declare `ld::Batch Fn(const ld::Batch& "
                  "group)` at namespace scope, add LUMEN_REMOTE(Fn) and pass Fn");
    return ds_;
  }
  // Shorthands: Aggregate({ld::Count()}), Aggregate({ld::Sum(column)}), ...
  Dataset Count() const;
  Dataset Sum(const std::string& column) const;
  Dataset Mean(const std::string& column) const;
  Dataset Min(const std::string& column) const;
  Dataset Max(const std::string& column) const;

 private:
  Dataset ds_;
  std::vector<std::string> keys_{};
};

class BatchIterator {
 public:
  ~BatchIterator();
  BatchIterator(BatchIterator&&) noexcept;
  BatchIterator& operator=(BatchIterator&&) noexcept;
  // The next batch, or nullopt at the end. Throws DataError if the job fails.
  std::optional<Batch> Next();

  // Range-for support.
  using iterator = internal::NextIterator<BatchIterator>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(nullptr); }

 private:
  friend class Dataset;
  BatchIterator(std::unique_ptr<internal::ExecutionHandle> exec, int64_t batch_size);
  std::unique_ptr<internal::ExecutionHandle> exec_;
  int64_t batch_size_;
  std::vector<Batch> pending_{};
  int64_t pending_rows_ = 0;
  bool done_ = false;
};

// One consumer's share of Dataset::StreamingSplit. Not thread-safe; one consumer (one copy)
// reads a share.
class SplitIterator {
 public:
  SplitIterator();
  // This share's next block, or nullopt once the stream has ended for it. Blocks until one is
  // ready. Throws DataError if the job failed or the stream was stopped.
  std::optional<Batch> Next();
  int index() const { return index_; }

  // Range-for support.
  using iterator = internal::NextIterator<SplitIterator>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(nullptr); }

  // The coordinator actor and the share: what crosses to a consumer.
  LUMEN_SERIALIZE(coordinator_, index_);

 private:
  friend class Dataset;
  lumen::ActorHandle<internal::SplitCoordinator> coordinator_;  // deals the blocks
  int index_ = 0;
  std::shared_ptr<internal::SplitPump> pump_;  // in the driver only: runs the plan
};

// ---- sources ---------------------------------------------------------------------------
// Paths may be files, directories (read recursively, following symbolic links) or globs
// ("data/*.csv"; a directory that a glob matches is read recursively too). Listing and
// reading run in tasks, not in the driver. Errors (DataError, naming the path):
//  - a path that does not exist, a glob that matches nothing, a dangling symbolic link or an
//    entry that cannot be read: unless ReadOptions::ignore_missing_files;
//  - a directory given by the user that holds no files, and a job with no file to read;
//  - anything that is not a regular file (FIFO, socket, device): refused before it is opened
//    for reading, whatever the options, so that no read can block forever.

// Columns: path (string, relative to the directory given, or the file name), bytes (binary).
Dataset ReadBinaryFiles(const std::vector<std::string>& paths, ReadOptions options = {});
// Columns: text (one row per line, without the newline).
Dataset ReadText(const std::vector<std::string>& paths, ReadOptions options = {});
// First line is the header; int64 / float64 / string types are inferred per column.
Dataset ReadCsv(const std::vector<std::string>& paths, ReadOptions options = {});
// JSON lines: one object per line; fields become columns (types inferred).
Dataset ReadJson(const std::vector<std::string>& paths, ReadOptions options = {});
// JPEG and PNG files (told by their contents, whatever their names), decoded in the read
// tasks with libjpeg-turbo and libpng. Columns: path (string, as ReadBinaryFiles), image (see
// ImageReadOptions::size). A file that is not an image, empty, truncated or corrupt fails the
// read naming it and the decoder's reason, or is skipped under OnError::kSkip.
Dataset ReadImages(const std::vector<std::string>& paths, ImageReadOptions options = {});
// Column: id (int64), 0 .. n-1.
Dataset Range(int64_t n, ReadOptions options = {});
Dataset FromItems(const std::vector<Row>& rows, ReadOptions options = {});
Dataset FromItems(const std::vector<int64_t>& values, ReadOptions options = {});  // column: item
Dataset FromBatches(const std::vector<Batch>& batches);

inline Dataset ReadBinaryFiles(const std::string& path, ReadOptions o = {}) {
  return ReadBinaryFiles(std::vector<std::string>{path}, std::move(o));
}
inline Dataset ReadText(const std::string& path, ReadOptions o = {}) {
  return ReadText(std::vector<std::string>{path}, std::move(o));
}
inline Dataset ReadCsv(const std::string& path, ReadOptions o = {}) {
  return ReadCsv(std::vector<std::string>{path}, std::move(o));
}
inline Dataset ReadJson(const std::string& path, ReadOptions o = {}) {
  return ReadJson(std::vector<std::string>{path}, std::move(o));
}
inline Dataset ReadImages(const std::string& path, ImageReadOptions o = {}) {
  return ReadImages(std::vector<std::string>{path}, std::move(o));
}

// ---- callable classes (actor pools) -------------------------------------------------------

// What each actor of a pool holds (MapBatchesOptions::num_cpus and num_gpus), for a callable
// class to size itself: its constructor and calls see their pool's; elsewhere {1, 0}. A GPU
// actor's process also sees CUDA_VISIBLE_DEVICES set to its devices.
struct ActorResources {
  double num_cpus = 1;
  double num_gpus = 0;
};
ActorResources PoolActorResources();

namespace internal {

struct CallableInfo {
  std::string name{};
  std::function<std::shared_ptr<void>(const std::string& ctor_args)> create;
  std::function<Batch(void*, const Batch&)> call;
};
void RegisterCallable(const std::string& type_name, CallableInfo info);
const CallableInfo* FindCallable(const std::string& type_name);

template <class C, class... Args>
bool RegisterCallableType(const char* name) {
  CallableInfo info;
  info.name = name;
  info.create = [](const std::string& ctor_args) -> std::shared_ptr<void> {
    lumen::internal::ValueView v;
    v.data = reinterpret_cast<const uint8_t*>(ctor_args.data());
    v.size = ctor_args.size();
    auto args = lumen::internal::Deserialize<std::tuple<std::decay_t<Args>...>>(v);
    C* obj = std::apply([](auto&&... a) { return new C(std::move(a)...); }, std::move(args));
    return std::shared_ptr<void>(static_cast<void*>(obj),
                                 [](void* p) { delete static_cast<C*>(p); });
  };
  info.call = [](void* self, const Batch& b) -> Batch { return (*static_cast<C*>(self))(b); };
  RegisterCallable(lumen::internal::TypeName<C>(), std::move(info));
  return true;
}

}  // namespace internal

template <class C, class... Args>
Dataset Dataset::MapBatches(MapBatchesOptions options, Args&&... ctor_args) const {
  static_assert(std::is_constructible_v<C, std::decay_t<Args>...>,
                "MapBatches<C>(options, args...): C cannot be constructed from these arguments");
  static_assert(std::is_invocable_r_v<Batch, C&, const Batch&>,
                "MapBatches<C>: C needs `Batch operator()(const Batch&)`");
  auto packed = lumen::internal::Serialize(std::make_tuple(std::decay_t<Args>(ctor_args)...));
  return MapCallable(lumen::internal::TypeName<C>(), std::move(packed.data), std::move(options));
}

}  // namespace lumen::data

// Registers a callable class for Dataset::MapBatches<C>(options, ctor args...), with the types
// of its constructor arguments:  LUMEN_DATA_CALLABLE(Classifier, std::string, double);
#define LUMEN_DATA_CALLABLE(Class, ...)                                                       \
  [[maybe_unused]] static const bool LUMEN_REMOTE_CONCAT(lumen_data_callable_, __COUNTER__) = \
      ::lumen::data::internal::RegisterCallableType<Class __VA_OPT__(, ) __VA_ARGS__>(#Class)
