// The remote functions and actor class lumen::data runs in workers. Internal to src/data.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "data/block_format.h"
#include "data/chain.h"
#include "lumen/generator.h"
#include "lumen/lumen.h"

namespace lumen::data::internal {

// Measures a task body and stamps its output block with the figures and what it consumed.
class TaskTimer {
 public:
  TaskTimer();
  void Consumed(const Batch& in);
  Buffer Finish(Batch out) const;

 private:
  std::chrono::steady_clock::time_point wall_;
  int64_t cpu_;
  int64_t rows_in_ = 0;
  int64_t bytes_in_ = 0;
};

// Lists the regular files under `pattern` (a file, a directory — recursively — or a glob),
// sorted by relative path. Throws DataError naming the path for what ReadBinaryFiles & co.
// refuse (see dataset.h); with `ignore_missing`, missing and unreadable entries are returned
// in Listing::ignored instead.
// s3:// patterns are listed on S3 with `s3` (ListS3: `split`, `after`, `until` as there).
Listing ListFiles(const std::string& pattern, const std::string& source, bool ignore_missing,
                  const S3Options& s3, bool split, const std::string& after,
                  const std::string& until);
// Streaming tasks: each output block is yielded, followed by its BlockInfo (DecodeBlockInfo);
// between blocks, progress records (BlockInfo::kProgressRecord); before them, a skip record
// (BlockInfo::kSkipRecord) for each input a read skipped.
// Inputs larger than the chain's max_block_bytes go through the chain in parts; outputs larger
// than it are split by rows.
void ReadBlocksTask(lumen::Yield<Buffer>& out, const ReadSpec& spec, const Chain& chain,
                    const BlockKey& key);
void RunChainTask(lumen::Yield<Buffer>& out, const Chain& chain, const BlockKey& key,
                  const Buffer& block);
// `note` receives the text of a skip record (BlockInfo::kSkipRecord).
BlockInfo DecodeBlockInfo(const Buffer& b, std::string* note = nullptr);

// Hosts a callable class for an actor pool.
class UdfActor {
 public:
  // `num_cpus` / `num_gpus`: what the pool reserves per actor (PoolActorResources()).
  static UdfActor* Create(const std::string& callable, const std::string& ctor_args,
                          double num_cpus, double num_gpus);
  void Process(lumen::Yield<Buffer>& out, const Chain& chain, const BlockKey& key,
               const Buffer& block);

 private:
  UdfActor(const CallableInfo* info, std::shared_ptr<void> instance)
      : info_(info), instance_(std::move(instance)) {}
  const CallableInfo* info_;
  std::shared_ptr<void> instance_;
};

// ---- all-to-all operations (repartition, shuffle, sort, group-by) -------------------------
struct ExchangeSpec {
  std::string kind;  // "repartition", "shuffle", "sort", "aggregate", "map_groups"
  int partitions = 1;
  std::vector<std::string> keys;  // sort / aggregate / map_groups key columns
  bool descending = false;
  uint64_t seed = 0;
  Buffer boundaries;              // range partitioning: encoded batch of partitions - 1 key rows
  std::vector<AggregateFn> aggs;  // aggregate
  std::string fn;                 // map_groups: the registered BatchFn
  // repartition: partition p holds rows [p * rows_per_partition, (p + 1) * rows_per_partition)
  // of the dataset, in order (partitions: as many as that takes); 0: `partitions` even parts.
  int64_t rows_per_partition = 0;
  LUMEN_SERIALIZE(kind, partitions, keys, descending, seed, boundaries, aggs, fn,
                  rows_per_partition);
  bool RangePartitioned() const {
    return !keys.empty() && (kind == "sort" || kind == "aggregate" || kind == "map_groups");
  }
};

struct JoinSpec {
  int how = 0;  // JoinType
  std::vector<std::string> left_keys;
  std::vector<std::string> right_keys;
  std::string left_suffix;
  std::string right_suffix;
  int partitions = 1;
  bool shared_keys = false;  // `on`: one set of key columns in the output
  LUMEN_SERIALIZE(how, left_keys, right_keys, left_suffix, right_suffix, partitions, shared_keys);
};
// Rows of `block` by the hash of their `keys` (a row with a null key: partition 0), with a
// leading `__partition` column.
Buffer HashPartitionTask(const std::vector<std::string>& keys, int64_t partitions,
                         const Buffer& block);
// Partition `partition` of both sides' HashPartitionTask outputs, joined.
Buffer JoinTask(const JoinSpec& spec, int64_t partition,
                const std::vector<lumen::ObjectRef<Buffer>>& left,
                const std::vector<lumen::ObjectRef<Buffer>>& right);

// Partition `partition` of map outputs whose rows are ordered by a leading `__partition`
// column (PartitionTask, HashPartitionTask): each output that holds rows of it, with their
// range. `blocks` owns what `ranges` points into (so it is moved, never copied); `schema` is
// the first output that has columns, rows of the partition or not.
struct PartitionSlices {
  PartitionSlices() = default;
  PartitionSlices(PartitionSlices&&) = default;
  PartitionSlices(const PartitionSlices&) = delete;
  std::vector<Batch> blocks;
  std::vector<RowRange> ranges;
  Batch schema;
};
PartitionSlices SlicesOf(const std::vector<lumen::ObjectRef<Buffer>>& outs, int64_t partition);

// `block`'s rows ordered by `part` (their partitions), with a leading `__partition` column.
Batch WithPartitions(const Batch& block, const std::vector<int64_t>& part);
// Up to `count` evenly spaced rows of the `keys` columns of `block`.
Buffer SampleTask(const std::vector<std::string>& keys, int64_t count, const Buffer& block);
// Rows of `block` grouped by target partition, with a leading `__partition` column
// (aggregate: the block's partial aggregates, one row per group). `first_row`: global index of
// the block's first row (repartition).
Buffer PartitionTask(const ExchangeSpec& spec, int64_t block_index, int64_t first_row,
                     int64_t total_rows, const Buffer& block);
// Partition `partition` of every map output, combined (sorted / shuffled / aggregated / mapped
// per group).
Buffer ReduceTask(const ExchangeSpec& spec, int64_t partition,
                  const std::vector<lumen::ObjectRef<Buffer>>& map_outputs);

}  // namespace lumen::data::internal
