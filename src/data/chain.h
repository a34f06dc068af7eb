// What a lumen::data task does to a block: a chain of fused steps, shipped to workers as a
// msgpack value. Internal to src/data.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lumen/data/batch.h"
#include "lumen/data/dataset.h"
#include "lumen/serialization.h"

namespace lumen::data::internal {

struct WriteSpec {
  std::string format;  // "files", "json", "csv", "images"
  std::string dir;
  std::string path_column;
  std::string data_column;
  int64_t rows_per_file = 0;
  // Set when the write is planned (write_commit.h): part files are named part-<run_id>-<block>
  // (appends); WriteFiles accepts an existing file only with the same bytes (appends).
  std::string run_id;
  bool append = false;
  S3Options s3{};              // an s3:// dir
  bool fresh = false;          // the write found nothing there (WriteTarget::fresh)
  std::string image_format{};  // "images": png or jpeg, and the JPEG quality
  int quality = 90;
  LUMEN_SERIALIZE(format, dir, path_column, data_column, rows_per_file, run_id, append, s3, fresh,
                  image_format, quality);
};

enum StepKind : int {
  kStepMapBatches = 1,
  kStepMapRows = 2,
  kStepFlatMap = 3,
  kStepFilter = 4,
  kStepSelect = 5,
  kStepDrop = 6,
  kStepAddColumn = 7,
  kStepCallable = 8,
  kStepWrite = 9,
  kStepCountValid = 10,  // one row: `count`, the values of `column` that are not null
  kStepWithColumn = 11,  // `column` = `expr`
  kStepFilterExpr = 12,  // rows where `expr` is true
};

struct Step {
  int kind = 0;
  std::string fn;  // registered function name
  int64_t batch_size = 0;
  std::vector<std::string> columns;
  std::string column;
  WriteSpec write;
  Expr expr;
  LUMEN_SERIALIZE(kind, fn, batch_size, columns, column, write, expr);
};

struct Chain {
  std::string op_name;  // for error messages
  std::vector<Step> steps;
  // A task's input block (or read) larger than this goes through the chain in parts, and an
  // output larger than this leaves as several blocks (ExecutionOptions::target_max_block_bytes).
  int64_t max_block_bytes = int64_t{128} << 20;
  LUMEN_SERIALIZE(op_name, steps, max_block_bytes);
};

// A block's place in its dataset's order, and the name of what is written from it: the read
// (or exchange partition) it comes from, then for each task on its way the part of that task's
// output it is. Ordered lexicographically: {12, 0} < {12, 1} < {12, 1, 0} < {12, 2} < {13}; a
// key is below the keys it is a prefix of, so a task's input key bounds what it will output.
// All blocks entering one operator from one input have keys of the same length.
struct BlockKey {
  std::vector<int64_t> path;
  LUMEN_SERIALIZE(path);

  static BlockKey Of(int64_t i) { return BlockKey{{i}}; }
  BlockKey Part(int64_t k) const {
    BlockKey p = *this;
    p.path.push_back(k);
    return p;
  }
  // The path without its trailing zeros, "000012" or "000012_0001_0003": a task that does not
  // split names its output as its input, and keys of one length keep distinct names.
  std::string Name() const;
  // For messages: "12", or "12.1.3" for parts.
  std::string Label() const;
  auto operator<=>(const BlockKey&) const = default;
  bool operator==(const BlockKey&) const = default;
};

// What the driver learns of a block a task yielded (a small value beside the block, so that
// the driver never fetches the block itself).
//
// A progress record between blocks (kProgressRecord rows) follows an empty block in its
// place: rows_in is then how many rows of the task's input its chain has got through so far
// (batch by batch), the other figures are zero.
//
// A skip record (kSkipRecord rows) also follows an empty block: an input the task skipped
// (ReadImages with OnError::kSkip); its "path: why" follows the figures in the same item.
struct BlockInfo {
  static constexpr int64_t kProgressRecord = -1;
  static constexpr int64_t kSkipRecord = -2;
  int64_t rows = 0;
  int64_t bytes = 0;
  // The task's work for this part: all of the input on the first part, the time since the
  // previous part.
  int64_t rows_in = 0;
  int64_t bytes_in = 0;
  int64_t wall_us = 0;
  int64_t cpu_us = 0;
  int64_t user_code_us = 0;  // of wall_us, in the user's functions (UserCodeUs)
};

// Microseconds this thread has spent in user functions called by ApplyChain so far.
int64_t UserCodeUs();

// What a read task reads.
struct ReadSpec {
  std::string format;                 // "binary", "text", "csv", "json", "range"
  std::vector<std::string> files;     // absolute paths
  std::vector<std::string> relative;  // the `path` column values (binary files)
  std::vector<int64_t> sizes;         // of each file as listed (-1: unknown)
  std::vector<std::string> columns;   // projection (csv, json)
  char delimiter = ',';
  int64_t range_start = 0;
  int64_t range_count = 0;
  std::vector<std::string> null_values;  // csv
  std::vector<Expr> filters;             // csv, json: rows kept (a Filter pushed into the read)
  S3Options s3;                          // s3:// files
  // images: the target size (0 x 0: each its own), ImageMode, and whether a file that does not
  // decode is skipped (reported as a skip record) instead of failing the read.
  int64_t image_height = 0;
  int64_t image_width = 0;
  int image_mode = 0;
  bool skip_errors = false;
  LUMEN_SERIALIZE(format, files, relative, sizes, columns, delimiter, range_start, range_count,
                  null_values, filters, s3, image_height, image_width, image_mode, skip_errors);
};

struct FileEntry {
  std::string path;      // absolute, or an s3:// URI
  std::string relative;  // relative to the listed root (or the file name)
  int64_t size = 0;
  int64_t mtime_ns = 0;  // modification time (write manifests)
  std::string etag;      // S3 objects: their ETag (write manifests)
  LUMEN_SERIALIZE(path, relative, size, mtime_ns, etag);
};

// What listing one input path found.
struct Listing {
  std::vector<FileEntry> files;
  std::vector<std::string> ignored;  // "path: why", skipped under ignore_missing_files
  // A split listing (an s3:// folder of more than a page of keys): `files` are those up to
  // key `split_after`; the caller lists the rest of the folder `split_uri` range by range,
  // (split_after, cuts[0]], (cuts[0], cuts[1]], ..., (cuts.back(), end), a task each.
  std::string split_uri;
  std::string split_after;
  std::vector<std::string> cuts;
  LUMEN_SERIALIZE(files, ignored, split_uri, split_after, cuts);
};

// The function registered under `name` as a BatchFn; throws FunctionNotFoundError or TypeError.
BatchFn LookupBatchFn(const std::string& name);
// Told after each batch of a step that runs in batches (MapBatches with a batch_size smaller
// than the block): the fraction of the chain's work on the block done, its steps weighing
// alike. Called on the thread running the chain.
using ChainProgress = std::function<void(double fraction)>;
// Applies `chain` to `block` (in this process). `instance` is the callable object of an actor
// pool step. Throws what user code throws; DataError for bad use.
Batch ApplyChain(const Chain& chain, const BlockKey& key, Batch block, void* instance = nullptr,
                 const struct CallableInfo* callable = nullptr, const ChainProgress& progress = {});

// Rows <-> batches (types inferred from the values; a column of mixed int64/float64 becomes
// float64; nulls become 0/""/false and are not preserved).
std::vector<Row> BatchToRows(const Batch& b);
Batch RowsToBatch(const std::vector<Row>& rows);

// Reads one block (runs in a read task). Files skipped under spec.skip_errors are appended to
// `skipped` as "path: why".
Batch ReadFiles(const ReadSpec& spec, std::vector<std::string>* skipped = nullptr);
// Writes `block` per `spec`; returns a one-row batch: files_written, files_skipped, bytes.
Batch WriteBlock(const WriteSpec& spec, const BlockKey& key, const Batch& block);

}  // namespace lumen::data::internal
