// lumen_bench_dataframe: single-node analytics of lumen::data next to DuckDB (the anchor) and
// Dask's dataframe, on the same generated tables, in the same run:
//
//   fact  10,000,000 rows: key int64 (1,000,000 distinct), a and b float64, s string
//   dim    1,000,000 rows: key int64, d float64, name string
//
//   groupby_sum     GroupBy(key).Aggregate({Sum(a), Mean(b)})
//   join_inner      fact ⋈ dim on key
//   sort            Sort(a)
//   filter_project  Filter(a > 0.5 && s starts with "s1") + WithColumn(c = a * b + 1)
//
// Each Lumen figure times one job over tables already in the object store (Materialize);
// DuckDB's and Dask's time the same operation over their in-memory tables. Results are checked
// against DuckDB's (row counts and sums). Prints `name value unit` lines; no arguments needed
// (`--quick`: 1,000,000 rows; `--only groupby_sum|join_inner|sort|filter_project`: one figure,
// without Dask). DuckDB comes from npm (@duckdb/node-api), installed into
// $LUMEN_BENCH_DIR/dataframe by this program; Dask from Debian (python3-dask, python3-pandas).
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "bench_report.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace fs = std::filesystem;
namespace ld = lumen::data;

using lumen::bench::Now;
using lumen::bench::ProcessTree;
using lumen::bench::Report;

namespace {

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// `name value unit` lines of another program, by name.
std::map<std::string, double> Figures(const std::string& text) {
  std::map<std::string, double> f;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    at = end + 1;
    char name[128];
    double value;
    if (std::sscanf(line.c_str(), "%127s %lf", name, &value) == 2) f[name] = value;
  }
  return f;
}

double Check(const std::map<std::string, double>& duck, const std::string& name, double mine,
             double tolerance) {
  auto it = duck.find(name);
  if (it == duck.end()) return 0;
  const double diff = std::abs(it->second - mine);
  return diff <= tolerance * std::max(1.0, std::abs(it->second)) ? 1 : 0;
}

// Anonymous memory (heap, stacks) of this process and its descendants (the node daemon and
// its workers), sampled until stopped: with the object store's peak, the memory of all Lumen
// processes. Shared memory is left out here (the store's figure counts it once).
class HeapSampler {
 public:
  HeapSampler() : thread_([this] { Run(); }) {}
  ~HeapSampler() { Stop(); }
  int64_t Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return peak_;
  }

 private:
  static int64_t Field(const std::string& status, const char* name) {
    size_t at = status.find(name);
    return at == std::string::npos ? 0 : std::atoll(status.c_str() + at + std::strlen(name)) * 1024;
  }
  int64_t Sample() const {
    int64_t total = 0;
    for (int pid : ProcessTree()) {
      std::ifstream f("/proc/" + std::to_string(pid) + "/status");
      std::string status((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      total += Field(status, "RssAnon:");
    }
    return total;
  }
  void Run() {
    while (!stop_) {
      peak_ = std::max<int64_t>(peak_, Sample());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> peak_{0};
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  lumen::InitOptions init;
  init.object_store_memory = 6ll << 30;
  lumen::Init(argc, argv, init);
  bool quick = false;
  std::string only;  // --only NAME: that figure alone (and no Dask), for profiling
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") quick = true;
    if (arg == "--only" && i + 1 < argc) only = argv[++i];
  }
  const std::set<std::string> figures = {"groupby_sum", "join_inner", "sort", "filter_project"};
  if (!only.empty() && !figures.count(only)) {
    std::fprintf(stderr,
                 "lumen_bench_dataframe: --only takes groupby_sum, join_inner, sort or "
                 "filter_project, not '%s'\n",
                 only.c_str());
    lumen::Shutdown();
    return 2;
  }
  auto wanted = [&](const char* name) { return only.empty() || only == name; };
  const int64_t rows = quick ? 1000000 : 10000000;
  const int64_t dim_rows = quick ? 100000 : 1000000;
  const char* env_dir = std::getenv("LUMEN_BENCH_DIR");
  const std::string root = std::string(env_dir ? env_dir : "/tmp/lumen-bench") + "/dataframe";
  fs::create_directories(root);

  // ---- DuckDB, first: its figures are the anchor and its results the reference ------------
  std::map<std::string, double> duck;
  {
    for (const char* f : {"package.json", "duckdb_queries.mjs"}) {
      fs::copy_file(std::string(LUMEN_BENCH_DIR) + "/dataframe/" + f, root + "/" + f,
                    fs::copy_options::overwrite_existing);
    }
    if (!fs::exists(root + "/node_modules/@duckdb/node-api")) {
      Run("cd '" + root + "' && npm install --no-audit --no-fund --silent 2>&1");
    }
    std::string out = Run("cd '" + root + "' && node duckdb_queries.mjs " + std::to_string(rows) +
                          " " + std::to_string(dim_rows) + " 2 2>&1");
    duck = Figures(out);
    if (duck.count("duckdb_groupby_sum_s") == 0) {
      std::fprintf(stderr, "duckdb baseline failed: %s\n", out.substr(0, 800).c_str());
    }
    for (const auto& [name, value] : duck) {
      if (name.size() > 2 && name.substr(name.size() - 2) == "_s") Report(name, value, "s");
    }
  }

  // ---- Lumen ----------------------------------------------------------------------------
  ld::ExecutionOptions eo;
  eo.progress = false;
  eo.memory_budget_bytes = 2ll << 30;
  const int blocks = quick ? 8 : 40;
  auto fact =
      ld::Range(rows, {.num_blocks = blocks})
          .WithColumn("key", (ld::Col("id") * 7919) % 1000000)
          .WithColumn("a", ((ld::Col("id") * 104729) % 1000003) / 1000003)
          .WithColumn("b", ((ld::Col("id") * 3) % 1000) / 10)
          .WithColumn("s", ld::Lit("s") + (ld::Col("id") % 1000).Cast(ld::DataType::kString))
          .DropColumns({"id"})
          .WithOptions(eo)
          .Materialize();
  auto dim =
      ld::Range(dim_rows, {.num_blocks = std::max(1, blocks / 10)})
          .WithColumn("key", ld::Col("id"))
          .WithColumn("d", (ld::Col("id") % 97) / 97)
          .WithColumn("name", ld::Lit("n") + (ld::Col("id") % 500).Cast(ld::DataType::kString))
          .DropColumns({"id"})
          .WithOptions(eo)
          .Materialize();
  const auto store_before = lumen::GetObjectStoreStats();
  HeapSampler heap;

  auto figure = [&](const std::string& name, double lumen_s) {
    Report(name + "_s", lumen_s, "s");
    auto d = duck.find("duckdb_" + name + "_s");
    if (d != duck.end() && d->second > 0) Report(name + "_vs_duckdb", lumen_s / d->second, "x");
  };

  if (wanted("groupby_sum")) {
    auto grouped = fact.GroupBy("key").Aggregate({ld::Sum("a"), ld::Mean("b")}).WithOptions(eo);
    double t = Now();
    auto result = grouped.Materialize();
    figure("groupby_sum", Now() - t);
    if (!only.empty()) std::cerr << result.Stats() << "\n";
    auto check = result.Aggregate({ld::Count(), ld::Sum("sum(a)")}).TakeAll();
    Report("groupby_rows_equal",
           Check(duck, "duckdb_groupby_rows", static_cast<double>(check[0].GetInt64("count()")), 0),
           "bool");
    Report("groupby_sum_equal",
           Check(duck, "duckdb_groupby_sum_a", check[0].GetDouble("sum(sum(a))"), 1e-9), "bool");
  }
  if (wanted("join_inner")) {
    auto joined = fact.Join(dim, {.on = {"key"}}).WithOptions(eo);
    double t = Now();
    auto result = joined.Materialize();
    figure("join_inner", Now() - t);
    auto check = result.Aggregate({ld::Count(), ld::Sum("d")}).TakeAll();
    Report("join_rows_equal",
           Check(duck, "duckdb_join_rows", static_cast<double>(check[0].GetInt64("count()")), 0),
           "bool");
    Report("join_sum_equal", Check(duck, "duckdb_join_sum_d", check[0].GetDouble("sum(d)"), 1e-9),
           "bool");
  }
  if (wanted("sort")) {
    auto sorted = fact.Sort("a").WithOptions(eo);
    double t = Now();
    int64_t n = sorted.Count();
    figure("sort", Now() - t);
    Report("sort_rows_equal", n == rows ? 1 : 0, "bool");
  }
  if (wanted("filter_project")) {  // filter + computed column
    auto filtered = fact.Filter(ld::Col("a") > 0.5 && ld::Col("s").StartsWith("s1"))
                        .WithColumn("c", ld::Col("a") * ld::Col("b") + 1.0)
                        .WithOptions(eo);
    double t = Now();
    auto result = filtered.Materialize();
    figure("filter_project", Now() - t);
    auto check = result.Aggregate({ld::Count(), ld::Sum("c")}).TakeAll();
    Report("filter_rows_equal",
           Check(duck, "duckdb_filter_rows", static_cast<double>(check[0].GetInt64("count()")), 0),
           "bool");
    Report("filter_sum_equal",
           Check(duck, "duckdb_filter_sum_c", check[0].GetDouble("sum(c)"), 1e-9), "bool");
  }
  const auto store = lumen::GetObjectStoreStats();
  Report("tables_bytes", static_cast<double>(store_before.used), "bytes");
  Report("memory_budget_bytes", static_cast<double>(eo.memory_budget_bytes), "bytes");
  Report("peak_object_store_bytes", static_cast<double>(store.peak_used), "bytes");
  Report("peak_vs_tables_plus_budget",
         static_cast<double>(store.peak_used) /
             static_cast<double>(store_before.used + eo.memory_budget_bytes),
         "x");
  // All Lumen processes: the store's peak plus the peak of their heaps (an upper bound: the
  // two peaks need not coincide).
  const int64_t heap_peak = heap.Stop();
  Report("peak_process_heap_bytes", static_cast<double>(heap_peak), "bytes");
  Report("peak_memory_vs_tables_plus_budget",
         static_cast<double>(store.peak_used + heap_peak) /
             static_cast<double>(store_before.used + eo.memory_budget_bytes),
         "x");

  // ---- Dask ------------------------------------------------------------------------------
  if (only.empty()) {
    std::string out =
        Run("/usr/bin/python3 '" + std::string(LUMEN_BENCH_DIR) + "/dataframe/dask_queries.py' " +
            std::to_string(rows) + " " + std::to_string(dim_rows) + " 8 2>&1");
    auto dask = Figures(out);
    if (dask.count("dask_groupby_sum_s") == 0) {
      std::fprintf(stderr, "dask baseline failed: %s\n", out.substr(0, 800).c_str());
    }
    for (const auto& [name, value] : dask) {
      if (name.size() > 2 && name.substr(name.size() - 2) == "_s") Report(name, value, "s");
    }
  }
  lumen::Shutdown();
  return 0;
}
