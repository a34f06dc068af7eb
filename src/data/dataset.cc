// The Dataset API: builds logical nodes; consumers plan and run them.
#include "lumen/data/dataset.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "data/aggregate.h"
#include "data/chain.h"
#include "data/executor.h"
#include "data/image_codec.h"
#include "data/plan.h"
#include "data/progress.h"
#include "data/s3_client.h"
#include "data/streaming_split.h"
#include "data/write_commit.h"

namespace lumen::data {

using internal::LogicalNode;
using internal::NodeKind;

namespace {

std::shared_ptr<LogicalNode> Node(NodeKind kind, std::string label,
                                  std::vector<std::shared_ptr<LogicalNode>> inputs = {}) {
  auto n = std::make_shared<LogicalNode>();
  n->kind = kind;
  n->label = std::move(label);
  n->inputs = std::move(inputs);
  return n;
}

template <class F>
std::string RegisteredName(F fn, const char* where) {
  const lumen::internal::RemoteFunction* r =
      lumen::internal::FindRemoteByKey(lumen::internal::KeyOf(fn));
  if (!r) {
    throw FunctionNotFoundError(std::string(where) +
                                ": the function is not registered; add LUMEN_REMOTE(<its name>) "
                                "at namespace scope");
  }
  return r->name;
}

std::string JoinNames(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::unique_ptr<internal::Executor> Start(const std::shared_ptr<LogicalNode>& node) {
  ExecutionOptions options;
  auto ops = internal::Plan(node, &options);
  return std::make_unique<internal::Executor>(std::move(ops), options);
}

// Runs the plan to the end, handing each output block to `sink`.
template <class Sink>
void RunAll(const std::shared_ptr<LogicalNode>& node, const std::shared_ptr<DatasetStats>& stats,
            Sink&& sink) {
  auto ex = Start(node);
  try {
    while (auto b = ex->Next()) sink(*b);
  } catch (...) {
    *stats = ex->Stats();
    throw;
  }
  *stats = ex->Stats();
}

}  // namespace

Dataset::Dataset(std::shared_ptr<LogicalNode> node)
    : node_(std::move(node)), last_stats_(std::make_shared<DatasetStats>()) {}

// ---- transforms ------------------------------------------------------------------------------

namespace {
Dataset MapNode(const Dataset& in, internal::Step step, std::string label, MapBatchesOptions o) {
  auto n = Node(NodeKind::kMap, std::move(label), {in.node()});
  n->step = std::move(step);
  n->map = std::move(o);
  return Dataset(n);
}
}  // namespace

Dataset Dataset::MapBatches(BatchFn fn, MapBatchesOptions options) const {
  internal::Step s;
  s.kind = internal::kStepMapBatches;
  s.fn = RegisteredName(fn, "MapBatches");
  s.batch_size = options.batch_size;
  return MapNode(*this, s, "MapBatches(" + s.fn + ")", options);
}

Dataset Dataset::MapCallable(const std::string& class_name, std::string ctor_args,
                             MapBatchesOptions options) const {
  const internal::CallableInfo* info = internal::FindCallable(class_name);
  if (!info) {
    throw FunctionNotFoundError("MapBatches<" + class_name +
                                ">: the class is not registered; add LUMEN_DATA_CALLABLE(" +
                                class_name + ", <constructor argument types>)");
  }
  auto n = Node(NodeKind::kCallable, "MapBatches(" + info->name + ")", {node_});
  n->step.kind = internal::kStepCallable;
  n->step.batch_size = options.batch_size;
  n->callable = class_name;
  n->ctor_args = std::move(ctor_args);
  n->map = std::move(options);
  return Dataset(n);
}

Dataset Dataset::Map(RowFn fn, MapBatchesOptions options) const {
  internal::Step s;
  s.kind = internal::kStepMapRows;
  s.fn = RegisteredName(fn, "Map");
  return MapNode(*this, s, "Map(" + s.fn + ")", options);
}

Dataset Dataset::FlatMap(FlatRowFn fn, MapBatchesOptions options) const {
  internal::Step s;
  s.kind = internal::kStepFlatMap;
  s.fn = RegisteredName(fn, "FlatMap");
  return MapNode(*this, s, "FlatMap(" + s.fn + ")", options);
}

Dataset Dataset::Filter(RowPredicate fn, MapBatchesOptions options) const {
  internal::Step s;
  s.kind = internal::kStepFilter;
  s.fn = RegisteredName(fn, "Filter");
  return MapNode(*this, s, "Filter(" + s.fn + ")", options);
}

Dataset Dataset::WithColumn(const std::string& name, const Expr& value) const {
  internal::Step s;
  s.kind = internal::kStepWithColumn;
  s.column = name;
  s.expr = value;
  return MapNode(*this, s, "WithColumn(" + name + " = " + value.ToString() + ")", {});
}

Dataset Dataset::Filter(const Expr& condition) const {
  internal::Step s;
  s.kind = internal::kStepFilterExpr;
  s.expr = condition;
  return MapNode(*this, s, "Filter(" + condition.ToString() + ")", {});
}

Dataset Dataset::SelectColumns(std::vector<std::string> columns) const {
  internal::Step s;
  s.kind = internal::kStepSelect;
  s.columns = std::move(columns);
  return MapNode(*this, s, "SelectColumns(" + JoinNames(s.columns) + ")", {});
}

Dataset Dataset::DropColumns(std::vector<std::string> columns) const {
  internal::Step s;
  s.kind = internal::kStepDrop;
  s.columns = std::move(columns);
  return MapNode(*this, s, "DropColumns(" + JoinNames(s.columns) + ")", {});
}

Dataset Dataset::AddColumn(const std::string& name, BatchFn fn) const {
  internal::Step s;
  s.kind = internal::kStepAddColumn;
  s.fn = RegisteredName(fn, "AddColumn");
  s.column = name;
  return MapNode(*this, s, "AddColumn(" + name + ")", {});
}

Dataset Dataset::Limit(int64_t rows) const {
  if (rows < 0) throw DataError("Limit: rows must be >= 0, got " + std::to_string(rows));
  auto n = Node(NodeKind::kLimit, "Limit(" + std::to_string(rows) + ")", {node_});
  n->limit = rows;
  return Dataset(n);
}

namespace {
Dataset Exchange(const Dataset& in, internal::ExchangeSpec spec, std::string label) {
  auto n = Node(NodeKind::kExchange, std::move(label), {in.node()});
  n->exchange = std::move(spec);
  return Dataset(n);
}
}  // namespace

Dataset Dataset::Repartition(int num_blocks) const {
  if (num_blocks < 1) throw DataError("Repartition: need at least 1 block");
  internal::ExchangeSpec s;
  s.kind = "repartition";
  s.partitions = num_blocks;
  return Exchange(*this, s, "Repartition(" + std::to_string(num_blocks) + ")");
}

Dataset Dataset::RandomShuffle(uint64_t seed) const {
  internal::ExchangeSpec s;
  s.kind = "shuffle";
  s.partitions = 0;
  s.seed = seed;
  return Exchange(*this, s, "RandomShuffle");
}

Dataset Dataset::Sort(const std::string& key, bool descending) const {
  internal::ExchangeSpec s;
  s.kind = "sort";
  s.partitions = 0;
  s.keys = {key};
  s.descending = descending;
  return Exchange(*this, s, "Sort(" + key + (descending ? ", descending)" : ")"));
}

Dataset Dataset::Union(const std::vector<Dataset>& others) const {
  std::vector<std::shared_ptr<LogicalNode>> inputs{node_};
  for (const auto& o : others) inputs.push_back(o.node());
  return Dataset(Node(NodeKind::kUnion, "Union", inputs));
}

GroupedData Dataset::GroupBy(const std::string& key) const { return GroupedData(*this, {key}); }
GroupedData Dataset::GroupBy(std::initializer_list<std::string> keys) const {
  return GroupedData(*this, std::vector<std::string>(keys));
}
GroupedData Dataset::GroupBy(const std::vector<std::string>& keys) const {
  return GroupedData(*this, keys);
}

Dataset Dataset::Join(const Dataset& right, JoinOptions options) const {
  internal::JoinSpec spec;
  spec.how = static_cast<int>(options.how);
  if (!options.on.empty()) {
    if (!options.left_on.empty() || !options.right_on.empty()) {
      throw DataError("Join: give the keys either as `on` or as `left_on` and `right_on`");
    }
    spec.left_keys = spec.right_keys = options.on;
    spec.shared_keys = true;
  } else {
    if (options.left_on.empty() || options.left_on.size() != options.right_on.size()) {
      throw DataError("Join: `left_on` and `right_on` need the same number of keys (or use `on`)");
    }
    spec.left_keys = options.left_on;
    spec.right_keys = options.right_on;
  }
  if (options.how < JoinType::kInner || options.how > JoinType::kAnti) {
    throw DataError("Join: unknown JoinType " + std::to_string(spec.how));
  }
  if (options.num_partitions < 0) throw DataError("Join: num_partitions must be >= 0");
  spec.left_suffix = options.left_suffix;
  spec.right_suffix = options.right_suffix;
  spec.partitions = options.num_partitions;
  static const char* kHow[] = {"inner", "left outer", "right outer", "full outer", "semi", "anti"};
  std::string label = std::string("Join(") + kHow[spec.how] + " on " + JoinNames(spec.left_keys);
  if (!spec.shared_keys) label += " = " + JoinNames(spec.right_keys);
  auto n = Node(NodeKind::kJoin, label + ")", {node_, right.node()});
  n->join = std::move(spec);
  return Dataset(n);
}

Dataset Dataset::Aggregate(std::vector<AggregateFn> aggregations) const {
  return GroupedData(*this, {}).Aggregate(std::move(aggregations));
}

Dataset Dataset::WithOptions(ExecutionOptions options) const {
  auto n = Node(NodeKind::kOptions, "Options", {node_});
  n->options = std::move(options);
  return Dataset(n);
}

// ---- aggregation --------------------------------------------------------------------------

AggregateFn::AggregateFn(std::string op, std::string column, int ddof)
    : op_(std::move(op)), column_(std::move(column)), ddof_(ddof) {
  name_ = op_ + "(" + column_ + ")";
}

AggregateFn AggregateFn::As(std::string name) const {
  if (name.empty()) throw DataError("AggregateFn::As: the name is empty");
  AggregateFn a = *this;
  a.name_ = std::move(name);
  return a;
}

AggregateFn Count() { return AggregateFn("count", ""); }
AggregateFn Count(std::string column) { return AggregateFn("count", std::move(column)); }
AggregateFn Sum(std::string column) { return AggregateFn("sum", std::move(column)); }
AggregateFn Mean(std::string column) { return AggregateFn("mean", std::move(column)); }
AggregateFn Min(std::string column) { return AggregateFn("min", std::move(column)); }
AggregateFn Max(std::string column) { return AggregateFn("max", std::move(column)); }
AggregateFn Std(std::string column, int ddof) {
  if (ddof < 0) throw DataError("Std: ddof must be >= 0, got " + std::to_string(ddof));
  return AggregateFn("std", std::move(column), ddof);
}
AggregateFn CountDistinct(std::string column) {
  return AggregateFn("count_distinct", std::move(column));
}

GroupedData::GroupedData(Dataset ds, std::vector<std::string> keys)
    : ds_(std::move(ds)), keys_(std::move(keys)) {}

Dataset GroupedData::Aggregate(std::vector<AggregateFn> aggregations) const {
  internal::CheckAggregations(keys_, aggregations);
  internal::ExchangeSpec s;
  s.kind = "aggregate";
  s.partitions = 0;
  s.keys = keys_;
  s.aggs = std::move(aggregations);
  std::string label = keys_.empty() ? "Aggregate(" : "GroupBy(" + JoinNames(keys_) + ").Aggregate(";
  for (size_t i = 0; i < s.aggs.size(); ++i) label += (i ? ", " : "") + s.aggs[i].name();
  return Exchange(ds_, s, label + ")");
}

Dataset GroupedData::MapGroups(BatchFn fn) const {
  if (keys_.empty()) throw DataError("MapGroups: group by at least one key");
  internal::ExchangeSpec s;
  s.kind = "map_groups";
  s.partitions = 0;
  s.keys = keys_;
  s.fn = RegisteredName(fn, "MapGroups");
  return Exchange(ds_, s, "GroupBy(" + JoinNames(keys_) + ").MapGroups(" + s.fn + ")");
}

Dataset GroupedData::Count() const { return Aggregate({lumen::data::Count()}); }
Dataset GroupedData::Sum(const std::string& c) const { return Aggregate({lumen::data::Sum(c)}); }
Dataset GroupedData::Mean(const std::string& c) const { return Aggregate({lumen::data::Mean(c)}); }
Dataset GroupedData::Min(const std::string& c) const { return Aggregate({lumen::data::Min(c)}); }
Dataset GroupedData::Max(const std::string& c) const { return Aggregate({lumen::data::Max(c)}); }

// ---- consumers -------------------------------------------------------------------------------

std::vector<Row> Dataset::TakeAll() const {
  std::vector<Row> rows;
  RunAll(node_, last_stats_, [&](const internal::RefBundle& b) {
    auto part = internal::BatchToRows(Batch::FromBuffer(lumen::Get(b.ref)));
    rows.insert(rows.end(), std::make_move_iterator(part.begin()),
                std::make_move_iterator(part.end()));
  });
  return rows;
}

std::vector<Row> Dataset::Take(int64_t n) const {
  Dataset limited = Limit(n);
  std::vector<Row> rows = limited.TakeAll();
  *last_stats_ = limited.Stats();
  return rows;
}

int64_t Dataset::Count() const {
  int64_t n = 0;
  RunAll(node_, last_stats_, [&](const internal::RefBundle& b) { n += b.meta.rows; });
  return n;
}

int64_t Dataset::Count(const std::string& column) const {
  internal::Step s;
  s.kind = internal::kStepCountValid;
  s.column = column;
  Dataset counted = MapNode(*this, s, "Count(" + column + ")", {});
  int64_t n = 0;
  RunAll(counted.node(), last_stats_, [&](const internal::RefBundle& b) {
    n += Batch::FromBuffer(lumen::Get(b.ref)).Int64("count")[0];
  });
  return n;
}

Dataset Dataset::Materialize() const {
  std::vector<internal::RefBundle> blocks;
  RunAll(node_, last_stats_, [&](const internal::RefBundle& b) { blocks.push_back(b); });
  std::sort(blocks.begin(), blocks.end(),
            [](const auto& a, const auto& b) { return a.meta.key < b.meta.key; });
  for (size_t i = 0; i < blocks.size(); ++i) {
    blocks[i].meta.key = internal::BlockKey::Of(static_cast<int64_t>(i));
  }
  auto n = Node(NodeKind::kBlocks, "Materialized(" + std::to_string(blocks.size()) + " blocks)");
  n->blocks = std::move(blocks);
  Dataset out(n);
  *out.last_stats_ = *last_stats_;
  return out;
}

namespace {
// Rows [from, to) of the materialised `blocks` (in order), as a materialised dataset.
Dataset RowsOf(const std::vector<internal::RefBundle>& blocks, int64_t from, int64_t to,
               const std::string& label) {
  std::vector<internal::RefBundle> part;
  int64_t at = 0;
  for (const auto& b : blocks) {
    const int64_t lo = std::max(from, at), hi = std::min(to, at + b.meta.rows);
    if (lo < hi) {
      internal::RefBundle piece = b;
      if (lo != at || hi != at + b.meta.rows) {
        Batch sliced = Batch::FromBuffer(lumen::Get(b.ref)).Slice(lo - at, hi - lo);
        piece.ref = lumen::Put(sliced.buffer());
        piece.meta.rows = sliced.NumRows();
        piece.meta.bytes = sliced.SizeBytes();
      }
      piece.meta.key = internal::BlockKey::Of(static_cast<int64_t>(part.size()));
      part.push_back(std::move(piece));
    }
    at += b.meta.rows;
  }
  auto n = Node(NodeKind::kBlocks, label + "(" + std::to_string(to - from) + " rows)");
  n->blocks = std::move(part);
  return Dataset(n);
}
}  // namespace

std::vector<Dataset> Dataset::Split(int n, bool equal) const {
  if (n <= 0) throw DataError("Split: n must be positive, got " + std::to_string(n));
  Dataset all = Materialize();
  const auto& blocks = all.node()->blocks;
  int64_t total = 0;
  for (const auto& b : blocks) total += b.meta.rows;
  std::vector<Dataset> out;
  if (equal) {
    const int64_t per = total / n;
    for (int i = 0; i < n; ++i) {
      out.push_back(RowsOf(blocks, i * per, (i + 1) * per, "Split " + std::to_string(i)));
    }
    return out;
  }
  // Whole blocks: split i takes the blocks that start before row (i + 1) * total / n.
  size_t next = 0;
  int64_t at = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t boundary = (i + 1) * total / n;
    const int64_t from = at;
    while (next < blocks.size() && (at < boundary || i == n - 1)) at += blocks[next++].meta.rows;
    out.push_back(RowsOf(blocks, from, at, "Split " + std::to_string(i)));
  }
  return out;
}

std::pair<Dataset, Dataset> Dataset::TrainTestSplit(double test_fraction, bool shuffle,
                                                    uint64_t seed) const {
  if (!(test_fraction > 0 && test_fraction < 1)) {
    throw DataError("TrainTestSplit: test_fraction must be between 0 and 1, got " +
                    std::to_string(test_fraction));
  }
  Dataset all = (shuffle ? RandomShuffle(seed) : *this).Materialize();
  const auto& blocks = all.node()->blocks;
  int64_t total = 0;
  for (const auto& b : blocks) total += b.meta.rows;
  const int64_t train = total - static_cast<int64_t>(std::ceil(test_fraction * total));
  return {RowsOf(blocks, 0, train, "Train"), RowsOf(blocks, train, total, "Test")};
}

namespace {
WriteResult Write(const Dataset& ds, const std::shared_ptr<DatasetStats>& stats,
                  internal::WriteSpec spec, const std::string& label, const WriteOptions& options,
                  const std::string& sink_line) {
  const WriteMode mode = options.mode;
  if (internal::IsS3Uri(spec.dir)) internal::S3Uri::Parse(spec.dir);  // a bad URI fails here
  while (spec.dir.size() > 1 && spec.dir.back() == '/' && !spec.dir.ends_with("//")) {
    spec.dir.pop_back();  // s3://bucket/out/ and out/ name the same place as without the '/'
  }
  spec.s3 = options.s3;
  internal::OutputDir out(spec.dir, label, options.s3);
  internal::Step s;
  s.kind = internal::kStepWrite;
  s.write = spec;
  MapBatchesOptions resources;
  resources.num_cpus = options.num_cpus;
  if (options.num_cpus < 0 && options.num_cpus != -1) {
    throw DataError(label + ": num_cpus must be -1 (the default) or at least 0, got " +
                    std::to_string(options.num_cpus));
  }
  if (options.num_cpus < 0) {  // WriteFiles to s3:// only waits on the network
    const bool network_bound = spec.format == "files" && internal::IsS3Uri(spec.dir);
    resources.num_cpus = network_bound ? 0 : 1;
  }
  if (resources.num_cpus == 0) resources.concurrency = kIoTasksInFlight;
  Dataset planned = MapNode(ds, s, label, resources);
  ExecutionOptions execution;
  auto ops = internal::Plan(planned.node(), &execution);  // lists the inputs
  internal::WriteRecord record;
  record.plan = internal::DescribeWrite(ds.node(), sink_line);
  record.inputs = internal::ListedInputs(ops);
  const internal::WriteTarget target = out.Prepare(mode, std::move(record));
  WriteResult r;
  if (target.ignore) {
    r.ignored = true;
    return r;
  }
  for (auto& op : ops) {
    internal::Chain* chain = op->chain_ptr();
    if (chain == nullptr) continue;
    for (auto& step : chain->steps) {
      if (step.kind != internal::kStepWrite) continue;
      step.write.dir = target.dir;
      step.write.s3 = options.s3;
      step.write.fresh = target.fresh;
      step.write.run_id = target.run_id;
      step.write.append = mode == WriteMode::kAppend;
    }
  }
  auto ex = std::make_unique<internal::Executor>(std::move(ops), execution);
  try {
    while (auto b = ex->Next()) {
      Batch counts = Batch::FromBuffer(lumen::Get(b->ref));
      if (counts.NumRows() == 0) continue;
      r.files_written += counts.Int64("files_written")[0];
      r.files_skipped += counts.Int64("files_skipped")[0];
      r.bytes_written += counts.Int64("bytes_written")[0];
    }
  } catch (...) {
    // No task of a failed write may commit a file after it returned: the caller may go on
    // to overwrite or resume the directory.
    ex->CancelAndWait(std::chrono::seconds(60));
    *stats = ex->Stats();
    throw;
  }
  *stats = ex->Stats();
  // Every file is committed; the staging area only holds leftovers of killed attempts.
  if (!internal::IsS3Uri(target.dir)) {
    std::error_code ec;
    std::filesystem::remove_all(target.dir + "/.lumen-staging", ec);
  }
  out.Commit();
  return r;
}
}  // namespace

WriteResult Dataset::WriteFiles(const std::string& dir, WriteOptions options) const {
  internal::WriteSpec s{"files", dir, options.path_column, options.data_column, 0, "", false};
  return Write(
      *this, last_stats_, s, "WriteFiles(" + dir + ")", options,
      "WriteFiles path_column=" + options.path_column + " data_column=" + options.data_column);
}

namespace {
// The rows of `ds` in blocks of exactly `rows_per_file` rows (the last one: the rest), in
// order, so that a writer makes ⌈rows ÷ rows_per_file⌉ files whatever the blocks upstream.
Dataset InFileSizedBlocks(const Dataset& ds, int64_t rows_per_file) {
  if (rows_per_file < 0) {
    throw DataError("rows_per_file must be positive (or 0: one file per block), got " +
                    std::to_string(rows_per_file));
  }
  if (rows_per_file == 0) return ds;
  internal::ExchangeSpec s;
  s.kind = "repartition";
  s.partitions = 0;
  s.rows_per_partition = rows_per_file;
  return Exchange(ds, s, "RowsPerFile(" + std::to_string(rows_per_file) + ")");
}
}  // namespace

WriteResult Dataset::WriteJson(const std::string& dir, WriteOptions options) const {
  internal::WriteSpec s{"json", dir, "", "", options.rows_per_file, "", false};
  return Write(InFileSizedBlocks(*this, options.rows_per_file), last_stats_, s,
               "WriteJson(" + dir + ")", options,
               "WriteJson rows_per_file=" + std::to_string(options.rows_per_file));
}

WriteResult Dataset::WriteCsv(const std::string& dir, WriteOptions options) const {
  internal::WriteSpec s{"csv", dir, "", "", options.rows_per_file, "", false};
  return Write(InFileSizedBlocks(*this, options.rows_per_file), last_stats_, s,
               "WriteCsv(" + dir + ")", options,
               "WriteCsv rows_per_file=" + std::to_string(options.rows_per_file));
}

WriteResult Dataset::WriteImages(const std::string& dir, ImageWriteOptions options) const {
  internal::ImageExtension(options.format);  // an unknown format fails before anything runs
  if (options.format != "png" && (options.quality < 1 || options.quality > 100)) {
    throw DataError("WriteImages: JPEG quality must be 1 to 100, got " +
                    std::to_string(options.quality));
  }
  internal::WriteSpec s{"images", dir, options.path_column, options.column, 0, "", false};
  s.image_format = options.format;
  s.quality = options.quality;
  WriteOptions w;
  w.path_column = options.path_column;
  w.data_column = options.column;
  w.mode = options.mode;
  w.num_cpus = options.num_cpus;
  w.s3 = options.s3;
  return Write(*this, last_stats_, s, "WriteImages(" + dir + ")", w,
               "WriteImages format=" + options.format +
                   " quality=" + std::to_string(options.quality) + " column=" + options.column +
                   " path_column=" + options.path_column);
}

BatchIterator Dataset::IterBatches(IterOptions options) const {
  return BatchIterator(std::make_unique<internal::ExecutionHandle>(Start(node_), last_stats_),
                       options.batch_size);
}

std::vector<SplitIterator> Dataset::StreamingSplit(int n, StreamingSplitOptions options) const {
  if (n < 1) throw DataError("StreamingSplit: n must be positive, got " + std::to_string(n));
  ActorOptions actor;
  actor.max_concurrency = n + 4;  // n waiting consumers, the pump, Finish / Stop
  auto coordinator =
      lumen::Actor(internal::SplitCoordinator::Create).Options(actor).Remote(n, options.equal);
  auto pump = std::make_shared<internal::SplitPump>(
      std::make_unique<internal::ExecutionHandle>(Start(node_), last_stats_), coordinator);
  std::vector<SplitIterator> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)].coordinator_ = coordinator;
    out[static_cast<size_t>(i)].index_ = i;
    out[static_cast<size_t>(i)].pump_ = pump;
  }
  return out;
}

DatasetStats Dataset::Stats() const { return *last_stats_; }

std::string Dataset::Explain() const {
  std::string out = "Logical plan:\n" + internal::ExplainLogical(node_);
  out += "Optimized logical plan:\n" + internal::ExplainLogical(internal::Optimize(node_));
  ExecutionOptions options;
  auto ops = internal::Plan(node_, &options);
  out += "Physical plan (fused operators, in order):\n";
  for (const auto& op : ops) out += "  " + op->Describe() + "\n";
  return out;
}

std::string DatasetStats::ToString() const {
  std::string out;
  char buf[512];
  for (const auto& o : operators) {
    std::snprintf(buf, sizeof(buf),
                  "%s: %lld tasks, in %lld rows %s, out %lld rows %s, wall %.3f s, task wall "
                  "%.3f s, task cpu %.3f s, peak held %s\n",
                  o.name.c_str(), static_cast<long long>(o.tasks),
                  static_cast<long long>(o.rows_in), internal::HumanBytes(o.bytes_in).c_str(),
                  static_cast<long long>(o.rows_out), internal::HumanBytes(o.bytes_out).c_str(),
                  o.wall_s, o.task_wall_s, o.task_cpu_s,
                  internal::HumanBytes(o.peak_bytes_held).c_str());
    out += buf;
    if (o.bytes_moved > 0) {
      out += "  " + internal::HumanBytes(o.bytes_moved) + " of input read from other nodes\n";
    }
    if (o.actor_restarts > 0 || o.blocks_retried > 0) {
      out += "  " + internal::Plural(o.actor_restarts, "actor restart") + ", " +
             internal::Plural(o.blocks_retried, "block") + " re-run\n";
    }
    if (o.user_code_s > 0) {
      std::snprintf(buf, sizeof(buf), "  in user code %.3f s of task wall\n", o.user_code_s);
      out += buf;
    }
    if (o.actors_started > 0) {
      std::snprintf(buf, sizeof(buf), "  %s started, the slowest in %.3f s\n",
                    internal::Plural(o.actors_started, "actor").c_str(), o.actor_start_s);
      out += buf;
    }
    if (o.actors_added > 0 || o.actors_retired > 0) {
      out += "  autoscaling: " + internal::Plural(o.actors_added, "actor") + " added, " +
             std::to_string(o.actors_retired) + " retired\n";
    }
    for (const auto& e : o.errored_blocks) out += "  skipped " + e + "\n";
    for (const auto& f : o.ignored_files) out += "  ignored " + f + "\n";
    for (const auto& f : o.skipped_inputs) out += "  skipped input " + f + "\n";
  }
  std::snprintf(buf, sizeof(buf), "total: %.3f s, peak memory %s\n", wall_s,
                internal::HumanBytes(peak_memory_bytes).c_str());
  return out + buf;
}

// ---- iteration -------------------------------------------------------------------------------

BatchIterator::BatchIterator(std::unique_ptr<internal::ExecutionHandle> exec, int64_t batch_size)
    : exec_(std::move(exec)), batch_size_(batch_size) {}
BatchIterator::~BatchIterator() = default;
BatchIterator::BatchIterator(BatchIterator&&) noexcept = default;
BatchIterator& BatchIterator::operator=(BatchIterator&&) noexcept = default;

std::optional<Batch> BatchIterator::Next() {
  while (!done_ && (batch_size_ <= 0 ? pending_.empty() : pending_rows_ < batch_size_)) {
    auto b = exec_->Next();
    if (!b) {
      done_ = true;
      break;
    }
    Batch batch = Batch::FromBuffer(lumen::Get(b->ref));
    if (batch.NumRows() == 0) continue;
    pending_rows_ += batch.NumRows();
    pending_.push_back(std::move(batch));
  }
  if (pending_.empty()) return std::nullopt;
  if (batch_size_ <= 0) {
    Batch out = std::move(pending_.front());
    pending_.erase(pending_.begin());
    pending_rows_ -= out.NumRows();
    return out;
  }
  Batch all = pending_.size() == 1 ? pending_[0] : Batch::Concat(pending_);
  int64_t take = std::min(batch_size_, all.NumRows());
  Batch out = all.Slice(0, take);
  pending_.clear();
  pending_rows_ = 0;
  if (all.NumRows() > take) {
    pending_.push_back(all.Slice(take, all.NumRows() - take));
    pending_rows_ = all.NumRows() - take;
  }
  return out;
}

// ---- sources ---------------------------------------------------------------------------------

namespace {
Dataset ReadNode(const std::string& source, const std::string& format,
                 const std::vector<std::string>& paths, ReadOptions options) {
  if (paths.empty()) throw DataError(source + ": no paths given");
  auto n = Node(NodeKind::kRead, source + "(" + JoinNames(paths) + ")");
  n->source = source;
  n->format = format;
  n->paths = paths;
  n->read = std::move(options);
  return Dataset(n);
}

Dataset BlocksNode(const std::string& label, const std::vector<Batch>& batches) {
  auto n = Node(NodeKind::kBlocks, label);
  int64_t i = 0;
  for (const auto& b : batches) {
    internal::RefBundle r;
    r.ref = lumen::Put(b.buffer());
    r.meta.key = internal::BlockKey::Of(i++);
    r.meta.rows = b.NumRows();
    r.meta.bytes = b.SizeBytes();
    n->blocks.push_back(std::move(r));
  }
  return Dataset(n);
}
}  // namespace

Dataset ReadBinaryFiles(const std::vector<std::string>& paths, ReadOptions options) {
  return ReadNode("ReadBinaryFiles", "binary", paths, std::move(options));
}
Dataset ReadText(const std::vector<std::string>& paths, ReadOptions options) {
  return ReadNode("ReadText", "text", paths, std::move(options));
}
Dataset ReadCsv(const std::vector<std::string>& paths, ReadOptions options) {
  return ReadNode("ReadCsv", "csv", paths, std::move(options));
}
Dataset ReadJson(const std::vector<std::string>& paths, ReadOptions options) {
  return ReadNode("ReadJson", "json", paths, std::move(options));
}

Dataset ReadImages(const std::vector<std::string>& paths, ImageReadOptions options) {
  const ImageSize size = options.size;
  if (size.height < 0 || size.width < 0 || (size.height == 0) != (size.width == 0)) {
    throw DataError("ReadImages: size " + std::to_string(size.height) + " x " +
                    std::to_string(size.width) +
                    " needs both a positive height and width (or neither: each image's own)");
  }
  Dataset ds = ReadNode("ReadImages", "images", paths, std::move(options.read));
  ds.node()->image = options;
  return ds;
}

Dataset Range(int64_t n, ReadOptions options) {
  if (n < 0) throw DataError("Range: n must be >= 0");
  auto node = Node(NodeKind::kRead, "Range(" + std::to_string(n) + ")");
  node->source = "Range";
  node->format = "range";
  node->range_n = n;
  node->read = std::move(options);
  return Dataset(node);
}

namespace {

// Cuts `items` into `num_blocks` near-equal blocks (default: one per 10,000 items, at least
// one) and turns each range into a batch with `make(first, last)`.
template <class T, class Make>
std::vector<Batch> SplitIntoBatches(const std::vector<T>& items, int64_t num_blocks, Make make) {
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t blocks = num_blocks > 0 ? num_blocks : std::max<int64_t>(1, (n + 9999) / 10000);
  std::vector<Batch> batches;
  for (int64_t b = 0; b < blocks; ++b) {
    batches.push_back(make(items.begin() + n * b / blocks, items.begin() + n * (b + 1) / blocks));
  }
  return batches;
}

}  // namespace

Dataset FromItems(const std::vector<Row>& rows, ReadOptions options) {
  auto batches = SplitIntoBatches(rows, options.num_blocks, [](auto first, auto last) {
    return internal::RowsToBatch(std::vector<Row>(first, last));
  });
  return BlocksNode("FromItems(" + std::to_string(rows.size()) + " rows)", batches);
}

Dataset FromItems(const std::vector<int64_t>& values, ReadOptions options) {
  auto batches = SplitIntoBatches(values, options.num_blocks, [](auto first, auto last) {
    return BatchBuilder().AddInt64("item", std::vector<int64_t>(first, last)).Build();
  });
  return BlocksNode("FromItems(" + std::to_string(values.size()) + " items)", batches);
}

Dataset FromBatches(const std::vector<Batch>& batches) {
  return BlocksNode("FromBatches(" + std::to_string(batches.size()) + ")", batches);
}

}  // namespace lumen::data
