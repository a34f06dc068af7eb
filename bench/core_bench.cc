// lumen_bench_core: Lumen's core micro-benchmarks and, in the same run, their baselines
// (memcpy, Dask distributed). Prints one `name value unit` line per figure. No arguments
// needed; `--quick` shortens every section (for smoke tests).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bench_report.h"
#include "lumen/lumen.h"

namespace {

using lumen::bench::Now;
using lumen::bench::PeakRssBytes;
using lumen::bench::Report;
using lumen::bench::ResetPeakRss;

int Noop(int x) { return x; }

// Times a Get of an object owned by another process (the driver), from inside a worker.
double TimeGetUs(const std::vector<lumen::ObjectRef<lumen::Buffer>>& refs) {
  auto start = std::chrono::steady_clock::now();
  lumen::Buffer b = lumen::Get(refs[0]);
  volatile uint8_t first = b.data()[0];
  volatile uint8_t last = b.data()[b.size() - 1];
  (void)first;
  (void)last;
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

class Target {
 public:
  static Target* Create() { return new Target(); }
  int Call(int x) { return x; }
};

class Client {
 public:
  static Client* Create(std::vector<lumen::ActorHandle<Target>> targets) {
    return new Client(std::move(targets));
  }
  int Run(int calls) {
    std::vector<lumen::ObjectRef<int>> refs;
    refs.reserve(static_cast<size_t>(calls));
    for (int i = 0; i < calls; ++i) {
      refs.push_back(
          targets_[static_cast<size_t>(i) % targets_.size()].Task(&Target::Call).Remote(i));
    }
    lumen::Get(refs);
    return calls;
  }

 private:
  explicit Client(std::vector<lumen::ActorHandle<Target>> t) : targets_(std::move(t)) {}
  std::vector<lumen::ActorHandle<Target>> targets_;
};

// Three returns, each its own object (num_returns = kSplitTuple).
std::tuple<int, int, int> Three(int x) { return {x, x + 1, x + 2}; }

// Marks `marker` once running, then spins until cancelled (lumen::IsCancelled).
int SpinUntilCancelled(std::string marker) {
  if (FILE* f = std::fopen(marker.c_str(), "w")) std::fclose(f);
  while (!lumen::IsCancelled()) std::this_thread::yield();
  return 0;
}

// Yields 0..n-1 (a streaming task).
void Count(lumen::Yield<int>& out, int n) {
  for (int i = 0; i < n; ++i) out(i);
}

LUMEN_REMOTE(Count, Noop, Three, SpinUntilCancelled, TimeGetUs, Target::Create, &Target::Call,
             Client::Create, &Client::Run);

// Runs `body` for `reps` repetitions and returns the best rate (ops per second).
template <class F>
double BestRate(int reps, int ops, F body) {
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    double t = Now();
    body();
    best = std::max(best, ops / (Now() - t));
  }
  return best;
}

double RunDask(int n, std::string* error) {
  std::string script = std::string(LUMEN_BENCH_DIR) + "/dask_baseline.py";
  std::string cmd = "/usr/bin/python3 " + script + " " + std::to_string(n) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    *error = "cannot run python3";
    return 0;
  }
  std::string out;
  std::array<char, 4096> buf;
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), got);
  ::pclose(p);
  auto pos = out.find("dask_tasks_async_per_s ");
  if (pos == std::string::npos) {
    *error = out.substr(0, 500);
    return 0;
  }
  return std::atof(out.c_str() + pos + 23);
}

}  // namespace

int main(int argc, char** argv) {
  lumen::Init(argc, argv, {.num_cpus = 2, .object_store_memory = 3ll << 30});
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int scale = quick ? 10 : 1;
  lumen::Get(lumen::Task(Noop).Remote(0));  // workers up

  // ---- tasks --------------------------------------------------------------------------------
  {
    const int n = 20000 / scale;
    double rate = BestRate(3, n, [&] {
      for (int i = 0; i < n; ++i) lumen::Get(lumen::Task(Noop).Remote(i));
    });
    Report("tasks_sync_per_s", rate, "tasks/s");
    // Cancel of a running cooperative task until its Get throws, beside a task's round trip.
    const int reps = quick ? 5 : 50;
    const std::string marker = "/tmp/lumen-bench-cancel-" + std::to_string(::getpid());
    std::vector<double> us;
    for (int i = 0; i < reps; ++i) {
      ::unlink(marker.c_str());
      auto ref = lumen::Task(SpinUntilCancelled).Remote(marker);
      while (::access(marker.c_str(), F_OK) != 0) std::this_thread::yield();
      const double start = Now();
      lumen::Cancel(ref);
      try {
        lumen::Get(ref);
      } catch (const lumen::TaskCancelledError&) {
      }
      us.push_back((Now() - start) * 1e6);
    }
    ::unlink(marker.c_str());
    std::sort(us.begin(), us.end());
    const double cancel_us = us[us.size() / 2];
    Report("cancel_latency_us", cancel_us, "us");
    Report("cancel_latency_vs_sync_task", cancel_us / (1e6 / rate), "x");
  }
  double tasks_async = 0;
  {
    const int n = 200000 / scale;
    tasks_async = BestRate(3, n, [&] {
      std::vector<lumen::ObjectRef<int>> refs;
      refs.reserve(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) refs.push_back(lumen::Task(Noop).Remote(i));
      lumen::Get(refs);
    });
    Report("tasks_async_per_s", tasks_async, "tasks/s");
  }
  {
    const int n = 100000 / scale;
    double rate = BestRate(3, n, [&] {
      std::vector<lumen::ObjectRef<int>> refs;
      refs.reserve(3 * static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        auto [a, b, c] = lumen::Task(Three).Options({.num_returns = lumen::kSplitTuple}).Remote(i);
        refs.push_back(std::move(a));
        refs.push_back(std::move(b));
        refs.push_back(std::move(c));
      }
      lumen::Get(refs);
    });
    Report("multi_return_tasks_per_s", rate, "tasks/s");
    Report("multi_return_vs_single_return_tasks", tasks_async > 0 ? rate / tasks_async : 0, "x");
  }
  {
    // Values yielded by one streaming task and taken (Get) by the driver as they come.
    const int n = 200000 / scale;
    double rate = BestRate(3, n, [&] {
      int64_t sum = 0;
      for (auto ref : lumen::Task(Count).Remote(n)) sum += lumen::Get(ref);
      if (sum != int64_t{n} * (n - 1) / 2) std::fprintf(stderr, "streaming: wrong sum\n");
    });
    Report("streaming_returns_per_s", rate, "values/s");
    Report("streaming_returns_vs_tasks_async", tasks_async > 0 ? rate / tasks_async : 0, "x");
  }

  // ---- actors -------------------------------------------------------------------------------
  {
    auto a = lumen::Actor(Target::Create).Remote();
    lumen::Get(a.Task(&Target::Call).Remote(0));
    const int n = 20000 / scale;
    Report("actor_calls_sync_per_s",
           BestRate(3, n,
                    [&] {
                      for (int i = 0; i < n; ++i) lumen::Get(a.Task(&Target::Call).Remote(i));
                    }),
           "calls/s");
    const int m = 200000 / scale;
    Report("actor_calls_async_per_s",
           BestRate(3, m,
                    [&] {
                      std::vector<lumen::ObjectRef<int>> refs;
                      refs.reserve(static_cast<size_t>(m));
                      for (int i = 0; i < m; ++i) refs.push_back(a.Task(&Target::Call).Remote(i));
                      lumen::Get(refs);
                    }),
           "calls/s");
  }
  {
    const int kActors = 4;
    std::vector<lumen::ActorHandle<Target>> targets;
    for (int i = 0; i < kActors; ++i) targets.push_back(lumen::Actor(Target::Create).Remote());
    std::vector<lumen::ActorHandle<Client>> clients;
    for (int i = 0; i < kActors; ++i)
      clients.push_back(lumen::Actor(Client::Create).Remote(targets));
    for (auto& c : clients) lumen::Get(c.Task(&Client::Run).Remote(100));
    const int per_client = 50000 / scale;
    Report("n_n_actor_calls_async_per_s",
           BestRate(3, per_client * kActors,
                    [&] {
                      std::vector<lumen::ObjectRef<int>> runs;
                      for (auto& c : clients)
                        runs.push_back(c.Task(&Client::Run).Remote(per_client));
                      lumen::Get(runs);
                    }),
           "calls/s");
  }

  // ---- objects ------------------------------------------------------------------------------
  {
    const int n = 200000 / scale;
    Report("put_calls_per_s",
           BestRate(3, n,
                    [&] {
                      for (int i = 0; i < n; ++i) lumen::Put(i);
                    }),
           "calls/s");
    auto ref = lumen::Put(12345);
    Report("get_calls_per_s",
           BestRate(3, n,
                    [&] {
                      for (int i = 0; i < n; ++i) lumen::Get(ref);
                    }),
           "calls/s");
  }
  const size_t kBig = size_t{128} << 20;  // 128 MiB objects
  double memcpy_gbps = 0;
  {
    std::vector<uint8_t> src(kBig, 1), dst(kBig, 0);
    memcpy_gbps = BestRate(10, 1, [&] { std::memcpy(dst.data(), src.data(), kBig); }) *
                  static_cast<double>(kBig) / 1e9;
    Report("memcpy_gigabytes_per_s", memcpy_gbps, "GB/s");
  }
  {
    lumen::Buffer buf = lumen::Buffer::Allocate(kBig);
    std::memset(buf.mutable_data(), 3, kBig);
    lumen::Put(buf);  // first use of the store's pages
    double put_gbps = BestRate(10, 1, [&] { lumen::Put(buf); }) * static_cast<double>(kBig) / 1e9;
    Report("put_gigabytes_per_s", put_gbps, "GB/s");
    Report("put_vs_memcpy_ratio", put_gbps / memcpy_gbps, "x");
  }
  {
    lumen::Buffer gib = lumen::Buffer::Allocate(size_t{1} << 30);
    std::memset(gib.mutable_data(), 5, gib.size());
    std::vector<lumen::ObjectRef<lumen::Buffer>> ref{lumen::Put(gib)};
    gib = lumen::Buffer();
    std::vector<double> times;
    for (int i = 0; i < 5; ++i) times.push_back(lumen::Get(lumen::Task(TimeGetUs).Remote(ref)));
    std::sort(times.begin(), times.end());
    Report("get_1gib_from_other_process_us", times[times.size() / 2], "us");
  }

  // ---- one million tasks, submitted without waiting ---------------------------------------
  {
    const int n = 1000000 / scale;
    ResetPeakRss();
    int64_t rss_before = PeakRssBytes();
    double t = Now();
    std::vector<lumen::ObjectRef<int>> refs;
    refs.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) refs.push_back(lumen::Task(Noop).Remote(i));
    double submitted = Now() - t;
    int64_t sum = 0;
    for (size_t i = 0; i < refs.size(); i += 10000) {
      std::vector<lumen::ObjectRef<int>> part(
          refs.begin() + static_cast<long>(i),
          refs.begin() + static_cast<long>(std::min(refs.size(), i + 10000)));
      for (int v : lumen::Get(part)) sum += v;
    }
    double total = Now() - t;
    bool exact = sum == static_cast<int64_t>(n) * (n - 1) / 2;
    Report("million_tasks_submit_s", submitted, "s");
    Report("million_tasks_total_s", total, "s");
    Report("million_tasks_all_completed", exact ? 1 : 0, "bool");
    Report("million_tasks_peak_rss_growth_mb",
           static_cast<double>(PeakRssBytes() - rss_before) / (1 << 20), "MiB");
    Report("million_tasks_rss_per_held_result",
           static_cast<double>(PeakRssBytes() - rss_before) / n, "bytes");
  }
  lumen::Shutdown();

  // ---- baseline: Dask distributed, same machine, same workload ----------------------------
  std::string error;
  double dask = RunDask(20000 / scale, &error);
  if (dask > 0) {
    Report("dask_tasks_async_per_s", dask, "tasks/s");
    Report("tasks_async_vs_dask_ratio", tasks_async / dask, "x");
  } else {
    std::fprintf(stderr, "dask baseline failed: %s\n", error.c_str());
    Report("dask_tasks_async_per_s", 0, "tasks/s");
  }
  return 0;
}
