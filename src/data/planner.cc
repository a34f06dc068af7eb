// Logical -> physical: rewrites (limit and projection pushdown), fusion of consecutive
// compatible map steps (read -> map included) into one task, file listing in tasks.
#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "data/plan.h"
#include "data/progress.h"
#include "data/s3_client.h"
#include "data/s3_files.h"

namespace lumen::data::internal {

namespace {

bool RowPreserving(const Step& s) {
  return s.kind == kStepMapRows || s.kind == kStepSelect || s.kind == kStepDrop ||
         s.kind == kStepAddColumn || s.kind == kStepWithColumn;
}

std::shared_ptr<LogicalNode> Copy(const std::shared_ptr<LogicalNode>& n) {
  return std::make_shared<LogicalNode>(*n);
}

void CollectOptions(const std::shared_ptr<LogicalNode>& n, ExecutionOptions* out, bool* found) {
  for (const auto& in : n->inputs) CollectOptions(in, out, found);
  if (n->kind == NodeKind::kOptions) {  // nearer the consumer wins
    *out = n->options;
    *found = true;
  }
}

lumen::TaskOptions TaskOptionsOf(const MapBatchesOptions& m) {
  lumen::TaskOptions o;
  o.num_cpus = m.num_cpus;
  o.num_gpus = m.num_gpus;
  o.memory = m.memory;
  return o;
}

bool SameResources(const lumen::TaskOptions& a, const lumen::TaskOptions& b) {
  return a.num_cpus == b.num_cpus && a.num_gpus == b.num_gpus && a.memory == b.memory &&
         a.resources == b.resources;
}

// Steps that bring no resource needs of their own (they adopt those of what they fuse into).
bool Neutral(const Step& s) {
  return s.kind == kStepSelect || s.kind == kStepDrop || s.kind == kStepWrite ||
         s.kind == kStepCountValid || s.kind == kStepWithColumn || s.kind == kStepFilterExpr;
}

// ReadOptions::num_cpus, -1 resolved: 0 for binary reads of s3:// objects (network-bound).
double ReadCpus(const LogicalNode& n) {
  if (n.read.num_cpus >= 0) return n.read.num_cpus;
  if (n.read.num_cpus != -1) {
    throw DataError(n.label +
                    ": ReadOptions::num_cpus must be -1 (the default) or at least 0, got " +
                    std::to_string(n.read.num_cpus));
  }
  const bool s3 = !n.paths.empty() && std::all_of(n.paths.begin(), n.paths.end(), IsS3Uri);
  return n.format == "binary" && s3 ? 0 : 1;
}

int CombineConcurrency(int a, int b) {
  if (a <= 0) return b;
  if (b <= 0) return a;
  return std::min(a, b);
}

// Blocks at each end of a read that RampBlocks splits.
constexpr size_t kRampBlocks = 4;

// Splits the first and the last kRampBlocks blocks of a read into pieces of about a quarter of
// their files, in whole multiples of `granule` files (the batch size of the transform reading
// them, so batches stay whole; 0: any): the stages after the read start on its first small
// blocks instead of waiting for whole ones, and finish together instead of one task running
// a whole last block while the other CPUs idle. Depends only on the plan and the listing, so
// a resumed write sees the same blocks.
void RampBlocks(std::vector<ReadSpec>& specs, int64_t granule) {
  if (specs.size() < 2) return;
  const size_t unit = static_cast<size_t>(std::max<int64_t>(granule, 1));
  std::vector<ReadSpec> out;
  for (size_t i = 0; i < specs.size(); ++i) {
    ReadSpec& s = specs[i];
    const size_t files = s.files.size();
    const size_t piece = ((files + 3) / 4 + unit - 1) / unit * unit;
    if ((i >= kRampBlocks && i + kRampBlocks < specs.size()) || piece == 0 || piece >= files) {
      out.push_back(std::move(s));
      continue;
    }
    // The pieces share everything but their files.
    const std::vector<std::string> paths = std::exchange(s.files, {});
    const std::vector<std::string> relative = std::exchange(s.relative, {});
    const std::vector<int64_t> sizes = std::exchange(s.sizes, {});
    for (size_t from = 0; from < files; from += piece) {
      const auto first = static_cast<std::ptrdiff_t>(from);
      const auto last = static_cast<std::ptrdiff_t>(std::min(files, from + piece));
      ReadSpec p = s;
      p.files.assign(paths.begin() + first, paths.begin() + last);
      p.relative.assign(relative.begin() + first, relative.begin() + last);
      p.sizes.assign(sizes.begin() + first, sizes.begin() + last);
      out.push_back(std::move(p));
    }
  }
  specs = std::move(out);
}

// `granule`: see RampBlocks.
std::vector<ReadSpec> ListAndGroup(const LogicalNode& n, int64_t granule, int64_t* total_bytes,
                                   int64_t* files, std::vector<std::string>* ignored,
                                   std::vector<FileEntry>* listed, int64_t* listing_tasks) {
  std::vector<ReadSpec> specs;
  if (n.format == "range") {
    int64_t blocks = n.read.num_blocks > 0
                         ? n.read.num_blocks
                         : std::clamp<int64_t>((n.range_n + 9999) / 10000, 1, 200);
    blocks = std::max<int64_t>(1, std::min(blocks, std::max<int64_t>(n.range_n, 1)));
    for (int64_t b = 0; b < blocks; ++b) {
      ReadSpec s;
      s.format = "range";
      s.range_start = n.range_n * b / blocks;
      s.range_count = n.range_n * (b + 1) / blocks - s.range_start;
      specs.push_back(std::move(s));
    }
    *total_bytes = n.range_n * 8;
    return specs;
  }
  // List every path in parallel tasks. An S3 folder of more than a page of keys comes back
  // with cuts of its key space at its sub-folders: its ranges are listed in parallel tasks.
  std::vector<lumen::ObjectRef<Listing>> listings;
  for (const auto& p : n.paths) {
    listings.push_back(lumen::Task(ListFiles).Remote(p, n.source, n.read.ignore_missing_files,
                                                     n.read.s3, /*split=*/true, std::string(),
                                                     std::string()));
  }
  auto get = [](lumen::ObjectRef<Listing>& l) {
    try {
      return lumen::Get(l);
    } catch (const lumen::TaskError& e) {
      throw DataError(e.remote_message());
    }
  };
  std::vector<FileEntry> all;
  for (size_t i = 0; i < listings.size(); ++i) {
    Listing part = get(listings[i]);
    ignored->insert(ignored->end(), std::make_move_iterator(part.ignored.begin()),
                    std::make_move_iterator(part.ignored.end()));
    const size_t from = all.size();
    all.insert(all.end(), std::make_move_iterator(part.files.begin()),
               std::make_move_iterator(part.files.end()));
    if (part.split_uri.empty()) continue;
    std::vector<lumen::ObjectRef<Listing>> ranges;
    for (size_t k = 0; k <= part.cuts.size(); ++k) {
      ranges.push_back(lumen::Task(ListFiles).Remote(
          part.split_uri, n.source, /*ignore_missing=*/true, n.read.s3, /*split=*/false,
          k == 0 ? part.split_after : part.cuts[k - 1],
          k == part.cuts.size() ? std::string() : part.cuts[k]));
    }
    *listing_tasks += static_cast<int64_t>(ranges.size());
    for (auto& r : ranges) {
      Listing range = get(r);
      all.insert(all.end(), std::make_move_iterator(range.files.begin()),
                 std::make_move_iterator(range.files.end()));
    }
    if (all.size() == from) {  // only hidden objects and folder markers
      MissingS3Input(n.source, n.paths[i], "holds no objects", n.read.ignore_missing_files,
                     ignored);
    }
  }
  *listing_tasks += static_cast<int64_t>(listings.size());
  if (all.empty()) {  // only possible when everything was skipped as missing
    throw DataError(n.label + ": no files to read: all " + std::to_string(ignored->size()) +
                    " entries are missing or unreadable (first: " +
                    (ignored->empty() ? std::string("none") : ignored->front()) + ")");
  }
  // Images and binary files make one row each: their blocks end on a whole number of the
  // reading transform's batches (a block may pass its byte target by up to a batch less one
  // file), so an actor pool running batch_size gets whole batches except the last one. A
  // model is fastest at the one batch shape it has seen (TorchScript and oneDNN prepare
  // every new shape afresh).
  const int64_t whole = granule > 1 && (n.format == "images" || n.format == "binary") ? granule : 1;
  const int64_t max_files = std::max<int64_t>(whole, n.read.max_files_per_block / whole * whole);
  ReadSpec cur;
  int64_t cur_bytes = 0;
  auto flush = [&] {
    if (cur.files.empty()) return;
    specs.push_back(std::move(cur));
    cur = ReadSpec();
    cur_bytes = 0;
  };
  for (const auto& f : all) {
    if (cur.files.empty()) {
      cur.format = n.format;
      cur.columns = n.read.columns;
      cur.delimiter = n.read.delimiter;
      cur.null_values = n.read.null_values;
      cur.filters = n.filters;
      cur.s3 = n.read.s3;
      cur.image_height = n.image.size.height;
      cur.image_width = n.image.size.width;
      cur.image_mode = static_cast<int>(n.image.mode);
      cur.skip_errors = n.image.on_error == OnError::kSkip;
    }
    cur.files.push_back(f.path);
    cur.relative.push_back(f.relative);
    cur.sizes.push_back(f.size);
    cur_bytes += f.size;
    *total_bytes += f.size;
    ++*files;
    const auto count = static_cast<int64_t>(cur.files.size());
    if (count % whole == 0 && (cur_bytes >= n.read.target_block_bytes || count >= max_files)) {
      flush();
    }
  }
  flush();
  RampBlocks(specs, granule);
  *listed = std::move(all);
  return specs;
}

struct Builder {
  std::vector<std::unique_ptr<PhysicalOp>> ops;
  // The batch size of the nearest transform above the node being built that has one (0:
  // none): a read splits its blocks in multiples of it (RampBlocks).
  int64_t granule = 0;

  // Build(n) with `g` as the granule of what is below.
  PhysicalOp* BuildBelow(const std::shared_ptr<LogicalNode>& n, int64_t g) {
    const int64_t saved = granule;
    granule = g;
    PhysicalOp* op = Build(n);
    granule = saved;
    return op;
  }

  PhysicalOp* Add(std::unique_ptr<PhysicalOp> op, std::vector<PhysicalOp*> ups) {
    op->upstreams = ups;
    for (PhysicalOp* u : ups) u->downstream = op.get();
    ops.push_back(std::move(op));
    return ops.back().get();
  }

  PhysicalOp* Build(const std::shared_ptr<LogicalNode>& n) {
    switch (n->kind) {
      case NodeKind::kOptions:
        return Build(n->inputs[0]);
      case NodeKind::kRead: {
        int64_t bytes = 0, files = 0;
        std::vector<std::string> ignored;
        std::vector<FileEntry> listed;
        int64_t listing_tasks = 0;
        auto specs = ListAndGroup(*n, granule, &bytes, &files, &ignored, &listed, &listing_tasks);
        Chain chain;
        chain.op_name = n->label;
        lumen::TaskOptions options;
        options.num_cpus = ReadCpus(*n);
        // Network-bound reads hold no CPU: their number is bounded instead.
        auto op = std::make_unique<SourceOp>(n->label, std::move(specs), chain, options,
                                             options.num_cpus == 0 ? kIoTasksInFlight : 0);
        op->input_bytes = bytes;
        op->input_files = files;
        op->listed_files = std::move(listed);
        op->stats().ignored_files = std::move(ignored);
        op->stats().listing_tasks = listing_tasks;
        return Add(std::move(op), {});
      }
      case NodeKind::kBlocks:
        return Add(std::make_unique<SourceOp>(n->label, n->blocks), {});
      case NodeKind::kMap: {
        PhysicalOp* child =
            BuildBelow(n->inputs[0], n->step.batch_size > 0 ? n->step.batch_size : granule);
        lumen::TaskOptions want = TaskOptionsOf(n->map);
        // A write that asked for 0 CPUs (network-bound: WriteFiles to s3://) runs where it
        // holds none: fused into a read that holds none, else as tasks of its own, so that
        // uploads overlap the work of a map that holds CPUs.
        bool neutral = Neutral(n->step) && !(n->step.kind == kStepWrite && want.num_cpus == 0);
        // Fuse into the read or map task that produces the input.
        if (auto* src = dynamic_cast<SourceOp*>(child);
            src && src->fusable() && !src->downstream &&
            (neutral || SameResources(src->options(), want))) {
          src->chain().steps.push_back(n->step);
          if (!neutral) {
            src->options() = want;
            src->concurrency() = CombineConcurrency(src->concurrency(), n->map.concurrency.max());
          }
          src->chain().op_name = src->name() + "->" + n->label;
          src->set_name(src->chain().op_name);
          return src;
        }
        if (auto* map = dynamic_cast<MapOp*>(child);
            map && !map->downstream && (neutral || SameResources(map->options(), want))) {
          map->chain().steps.push_back(n->step);
          if (!neutral)
            map->concurrency() = CombineConcurrency(map->concurrency(), n->map.concurrency.max());
          map->chain().op_name = map->name() + "->" + n->label;
          map->set_name(map->chain().op_name);
          return map;
        }
        Chain chain;
        chain.op_name = n->label;
        chain.steps.push_back(n->step);
        return Add(std::make_unique<MapOp>(n->label, chain, want, n->map.concurrency.max()),
                   {child});
      }
      case NodeKind::kCallable: {
        PhysicalOp* child =
            BuildBelow(n->inputs[0], n->step.batch_size > 0 ? n->step.batch_size : granule);
        Chain chain;
        chain.op_name = n->label;
        chain.steps.push_back(n->step);
        return Add(
            std::make_unique<ActorPoolOp>(n->label, n->callable, n->ctor_args, chain, n->map),
            {child});
      }
      case NodeKind::kLimit: {
        PhysicalOp* child = Build(n->inputs[0]);
        return Add(std::make_unique<LimitOp>(n->limit), {child});
      }
      case NodeKind::kExchange: {
        PhysicalOp* child = BuildBelow(n->inputs[0], 0);
        return Add(std::make_unique<ExchangeOp>(n->label, n->exchange), {child});
      }
      case NodeKind::kJoin: {
        PhysicalOp* left = BuildBelow(n->inputs[0], 0);
        PhysicalOp* right = BuildBelow(n->inputs[1], 0);
        return Add(std::make_unique<JoinOp>(n->label, n->join), {left, right});
      }
      case NodeKind::kUnion: {
        std::vector<PhysicalOp*> ups;
        for (const auto& in : n->inputs) ups.push_back(Build(in));
        return Add(std::make_unique<UnionOp>(), ups);
      }
    }
    throw DataError("unknown plan node");
  }
};

}  // namespace

std::shared_ptr<LogicalNode> Optimize(const std::shared_ptr<LogicalNode>& root) {
  // Options apply to the whole execution (Plan collects them); they do not shape the plan.
  if (root->kind == NodeKind::kOptions) return Optimize(root->inputs[0]);
  auto n = Copy(root);
  for (auto& in : n->inputs) in = Optimize(in);
  // Limit(RowPreservingMap(x)) -> RowPreservingMap(Limit(x)): read and transform less.
  if (n->kind == NodeKind::kLimit && n->inputs[0]->kind == NodeKind::kMap &&
      RowPreserving(n->inputs[0]->step)) {
    auto map = Copy(n->inputs[0]);
    auto limit = Copy(n);
    limit->inputs = {map->inputs[0]};
    map->inputs = {Optimize(limit)};
    return map;
  }
  const auto text_read = [](const std::shared_ptr<LogicalNode>& in) {
    return in->kind == NodeKind::kRead && (in->format == "csv" || in->format == "json");
  };
  // An expression Filter right after a CSV / JSON read runs in the read: on the columns it
  // needs, before the others are built for the rows it drops.
  if (n->kind == NodeKind::kMap && n->step.kind == kStepFilterExpr && text_read(n->inputs[0])) {
    auto read = Copy(n->inputs[0]);
    read->filters.push_back(n->step.expr);
    read->label += "->" + n->label;
    return read;
  }
  // SelectColumns over a CSV / JSON read, with only expression steps between: the read parses
  // only the columns the selection and those steps need (its pushed-down filters' too); the
  // selection then drops the extra ones and fixes the order.
  if (n->kind == NodeKind::kMap && n->step.kind == kStepSelect) {
    std::vector<std::shared_ptr<LogicalNode>*> path;  // links from n down to the read
    std::shared_ptr<LogicalNode>* link = &n->inputs[0];
    while ((*link)->kind == NodeKind::kMap &&
           ((*link)->step.kind == kStepWithColumn || (*link)->step.kind == kStepFilterExpr)) {
      path.push_back(link);
      link = &(*link)->inputs[0];
    }
    if (text_read(*link) && (*link)->read.columns.empty()) {
      std::vector<std::string> need = n->step.columns;
      auto add = [&need](const std::vector<std::string>& cols) {
        for (const auto& c : cols) {
          if (std::find(need.begin(), need.end(), c) == need.end()) need.push_back(c);
        }
      };
      for (auto* l : path) {  // from the top down: what each step makes is not read
        const Step& st = (*l)->step;
        if (st.kind == kStepWithColumn) {
          need.erase(std::remove(need.begin(), need.end(), st.column), need.end());
        }
        add(st.expr.Columns());
      }
      for (const Expr& f : (*link)->filters) add(f.Columns());
      // On copies (other plans may share these nodes), linked again from n down.
      std::shared_ptr<LogicalNode>* at = &n->inputs[0];
      for (size_t k = 0; k < path.size(); ++k) {
        *at = Copy(*at);
        at = &(*at)->inputs[0];
      }
      auto read = Copy(*at);
      read->read.columns = std::move(need);
      *at = read;
    }
  }
  return n;
}

std::vector<std::unique_ptr<PhysicalOp>> Plan(const std::shared_ptr<LogicalNode>& root,
                                              ExecutionOptions* options) {
  bool found = false;
  CollectOptions(root, options, &found);
  Builder b;
  b.Build(Optimize(root));
  return std::move(b.ops);
}

std::string ExplainLogical(const std::shared_ptr<LogicalNode>& root) {
  std::string out;
  std::function<void(const std::shared_ptr<LogicalNode>&, int)> walk =
      [&](const std::shared_ptr<LogicalNode>& n, int depth) {
        std::string pushed;  // what a read does for the operators after it
        if (n->kind == NodeKind::kRead && !n->read.columns.empty()) {
          pushed += "columns ";
          for (size_t i = 0; i < n->read.columns.size(); ++i) {
            pushed += (i ? "," : "") + n->read.columns[i];
          }
        }
        for (const Expr& f : n->filters) pushed += (pushed.empty() ? "" : "; ") + f.ToString();
        out += std::string(static_cast<size_t>(depth) * 2, ' ') + n->label +
               (pushed.empty() ? "" : " [pushed into the read: " + pushed + "]") + "\n";
        for (const auto& in : n->inputs) walk(in, depth + 1);
      };
  walk(root, 0);
  return out;
}

}  // namespace lumen::data::internal
