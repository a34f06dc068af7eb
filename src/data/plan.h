// The logical plan behind a Dataset: an immutable tree of nodes. Internal to src/data.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/chain.h"
#include "data/executor.h"
#include "lumen/data/dataset.h"

namespace lumen::data::internal {

enum class NodeKind {
  kRead,      // files or a range, read by tasks
  kBlocks,    // blocks that already exist (FromItems, Materialize)
  kMap,       // a row/batch step that can be fused into a task chain
  kCallable,  // actor pool
  kLimit,
  kExchange,  // repartition, shuffle, sort, aggregate
  kUnion,
  kJoin,  // inputs: left, right
  kOptions,
};

struct LogicalNode {
  NodeKind kind;
  std::vector<std::shared_ptr<LogicalNode>> inputs;
  std::string label;  // for Explain and operator names

  // kRead
  std::string source;  // ReadBinaryFiles, ReadCsv, ...
  std::string format;  // binary, text, csv, json, range
  std::vector<std::string> paths;
  ReadOptions read;
  int64_t range_n = 0;
  std::vector<Expr> filters;  // expression Filters pushed into a CSV / JSON read
  ImageReadOptions image;     // ReadImages (its `read` is in `read`)
  // kBlocks
  std::vector<RefBundle> blocks;
  // kMap / kCallable
  Step step;
  MapBatchesOptions map;
  std::string callable;
  std::string ctor_args;
  // kLimit
  int64_t limit = 0;
  // kExchange
  ExchangeSpec exchange;
  // kJoin
  JoinSpec join;
  // kOptions
  ExecutionOptions options;
};

// Builds the physical operators for `root` (optimised: fusion, limit and projection pushdown).
// Listing of input files runs here, in tasks.
std::vector<std::unique_ptr<PhysicalOp>> Plan(const std::shared_ptr<LogicalNode>& root,
                                              ExecutionOptions* options);
std::string ExplainLogical(const std::shared_ptr<LogicalNode>& root);
// Rewrites: limit before row-preserving maps; column selection into CSV/JSON reads.
std::shared_ptr<LogicalNode> Optimize(const std::shared_ptr<LogicalNode>& root);

}  // namespace lumen::data::internal
