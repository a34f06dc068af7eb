// Remote tasks on an embedded cluster: values, futures as arguments, nesting, large data,
// errors, timeouts, resources.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>

#include "cluster_fixture.h"

namespace {

int Add(int a, int b) { return a + b; }
double Sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }
std::string Concat(const std::string& a, const std::string& b) { return a + b; }
int GetPid() { return static_cast<int>(::getpid()); }
void Nothing() {}
int Throws(int x) {
  if (x < 0) throw std::out_of_range("negative input " + std::to_string(x));
  return x;
}
int SumOfSquares(int n) {
  std::vector<lumen::ObjectRef<int>> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(lumen::Task(Add).Remote(i * i, 0));
  int total = 0;
  for (int v : lumen::Get(parts)) total += v;
  return total;
}
int Fib(int n) {
  if (n < 2) return n;
  auto a = lumen::Task(Fib).Remote(n - 1);
  auto b = lumen::Task(Fib).Remote(n - 2);
  return lumen::Get(a) + lumen::Get(b);
}
std::vector<double> MakeBig(int n) { return std::vector<double>(static_cast<size_t>(n), 0.5); }
lumen::Buffer MakeBuffer(int64_t n, int fill) {
  lumen::Buffer b = lumen::Buffer::Allocate(static_cast<size_t>(n));
  std::memset(b.mutable_data(), fill, b.size());
  return b;
}
int64_t BufferSum(const lumen::Buffer& b) {
  int64_t s = 0;
  for (size_t i = 0; i < b.size(); ++i) s += b.data()[i];
  return s;
}
// Returns `v` once `path` exists (created by the test), or -1 after a minute.
int WaitForFile(const std::string& path, int v) {
  for (int i = 0; i < 6000; ++i) {
    if (::access(path.c_str(), F_OK) == 0) return v;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}
std::string Gpus() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? v : "<unset>";
}
std::pair<int, std::string> PidAndGpus() { return {static_cast<int>(::getpid()), Gpus()}; }
int SumRefs(const std::vector<lumen::ObjectRef<int>>& refs) {
  int s = 0;
  for (int v : lumen::Get(refs)) s += v;
  return s;
}
lumen::ObjectRef<std::string> PutInside(const std::string& s) {
  return lumen::Put(s + std::string(200000, '!'));  // large: lives in shared memory
}
struct Point {
  int x = 0, y = 0;
  std::string name;
  LUMEN_SERIALIZE(x, y, name);
};
Point Mirror(const Point& p) { return Point{p.y, p.x, p.name + "'"}; }

// Keeps references it was given: a borrower that outlives the caller's own references.
class Holder {
 public:
  static Holder* Create() { return new Holder(); }
  void Keep(std::vector<lumen::ObjectRef<std::vector<int>>> refs) { refs_ = std::move(refs); }
  int64_t Sum() {
    int64_t s = 0;
    for (const auto& v : lumen::Get(refs_)) s += std::accumulate(v.begin(), v.end(), int64_t{0});
    return s;
  }

 private:
  std::vector<lumen::ObjectRef<std::vector<int>>> refs_;
};

// True when `p` lies in a shared (memfd) mapping of this process, not in private memory.
bool InSharedMapping(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) != 3) continue;
    if (addr >= lo && addr < hi) return perms[3] == 's' && line.find("memfd:") != std::string::npos;
  }
  return false;
}

// A large first element and small others, each its own object with kSplitTuple.
std::tuple<lumen::Buffer, int, std::string> Split3(int64_t n) {
  return {MakeBuffer(n, 7), static_cast<int>(n), "n=" + std::to_string(n)};
}
std::tuple<int, int> SplitThrows(int x) {
  if (x < 0) throw std::invalid_argument("cannot split " + std::to_string(x));
  return {x, -x};
}

// runtime_env: what a worker sees of its environment.
std::string EnvVar(std::string name) {
  const char* v = std::getenv(name.c_str());
  return v ? v : "<unset>";
}
std::string ReadHere(std::string file) {
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return in ? text : "<missing>";
}
// A task in an environment submits one without: the child inherits it.
std::string EnvVarOfChild(std::string name) { return lumen::Get(lumen::Task(EnvVar).Remote(name)); }

class EnvActor {
 public:
  std::string Var(std::string name) { return EnvVar(std::move(name)); }
  std::string Read(std::string file) { return ReadHere(std::move(file)); }
};
LUMEN_ACTOR(EnvActor);
LUMEN_REMOTE(EnvVar, ReadHere, EnvVarOfChild, &EnvActor::Var, &EnvActor::Read);

// Sanitizers replace malloc: glibc's tunables do not reach their heaps.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kGlibcMalloc = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kGlibcMalloc = false;
#else
constexpr bool kGlibcMalloc = true;
#endif
#else
constexpr bool kGlibcMalloc = true;
#endif

// Whether the kernel may back this worker's heap with transparent huge pages: the
// THPeligible value of the /proc/self/smaps mapping that holds an 8 MiB allocation (below the
// mmap threshold: from the heap); -1 when smaps does not say.
int64_t HeapHugePagesEligible() {
  std::vector<char> block(size_t{8} << 20, 1);
  const auto addr = reinterpret_cast<uintptr_t>(block.data());
  std::ifstream smaps("/proc/self/smaps");
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {  // a mapping's first line
      inside = addr >= lo && addr < hi;
    } else if (inside && line.starts_with("THPeligible:")) {
      return std::stoll(line.substr(line.find(':') + 1));
    }
  }
  return -1;
}
LUMEN_REMOTE(HeapHugePagesEligible);

LUMEN_REMOTE(Split3, SplitThrows);
LUMEN_REMOTE(Add, Sum, Concat, GetPid, Nothing, Throws, SumOfSquares, Fib, MakeBig, MakeBuffer,
             BufferSum, WaitForFile, Gpus, PidAndGpus, SumRefs, PutInside, Mirror, Holder::Create,
             &Holder::Keep, &Holder::Sum);

int NotRegistered(int x) { return x; }

using TaskTest = lumen::testing::EmbeddedCluster;

TEST_F(TaskTest, RunsInAnotherProcess) {
  EXPECT_EQ(lumen::Get(lumen::Task(Add).Remote(1, 2)), 3);
  EXPECT_NE(lumen::Get(lumen::Task(GetPid).Remote()), static_cast<int>(::getpid()));
  EXPECT_EQ(lumen::Get(lumen::Task(Concat).Remote("ab", std::string("cd"))), "abcd");
  lumen::Get(lumen::Task(Nothing).Remote());  // void tasks
  Point p = lumen::Get(lumen::Task(Mirror).Remote(Point{1, 2, "p"}));
  EXPECT_EQ(p.x, 2);
  EXPECT_EQ(p.y, 1);
  EXPECT_EQ(p.name, "p'");
}

TEST_F(TaskTest, FuturesAsArgumentsArriveAsValues) {
  auto a = lumen::Task(Add).Remote(1, 2);
  auto b = lumen::Task(Add).Remote(a, 10);
  auto c = lumen::Task(Add).Remote(a, b);
  EXPECT_EQ(lumen::Get(c), 16);
  auto put = lumen::Put(41);
  EXPECT_EQ(lumen::Get(lumen::Task(Add).Remote(put, 1)), 42);
}

TEST_F(TaskTest, ManyTasksAllComplete) {
  std::vector<lumen::ObjectRef<int>> refs;
  for (int i = 0; i < 5000; ++i) refs.push_back(lumen::Task(Add).Remote(i, 1));
  auto values = lumen::Get(refs);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(values[static_cast<size_t>(i)], i + 1);
}

TEST_F(TaskTest, TasksSubmitTasks) {
  EXPECT_EQ(lumen::Get(lumen::Task(SumOfSquares).Remote(20)), 2870);
  // Deeper nesting than there are CPUs: blocked workers hand their CPU back.
  EXPECT_EQ(lumen::Get(lumen::Task(Fib).Remote(7), 60000), 13);
}

TEST_F(TaskTest, LargeArgumentsAndResultsGoThroughSharedMemory) {
  auto big = lumen::Put(std::vector<double>(1 << 22, 1.0));  // 32 MiB
  EXPECT_EQ(lumen::Get(lumen::Task(Sum).Remote(big)), static_cast<double>(1 << 22));
  auto made = lumen::Task(MakeBig).Remote(1 << 20);
  EXPECT_EQ(lumen::Get(lumen::Task(Sum).Remote(made)), (1 << 20) * 0.5);
  std::vector<double> back = lumen::Get(made);
  EXPECT_EQ(back.size(), 1u << 20);
  // A large by-value argument is stored once and passed by reference.
  EXPECT_EQ(lumen::Get(lumen::Task(Sum).Remote(std::vector<double>(300000, 2.0))), 600000.0);
}

TEST_F(TaskTest, BuffersAreReadInPlace) {
  auto buf = lumen::Task(MakeBuffer).Remote(int64_t{8} << 20, 1);
  EXPECT_EQ(lumen::Get(lumen::Task(BufferSum).Remote(buf)), int64_t{8} << 20);
  lumen::Buffer a = lumen::Get(buf);
  lumen::Buffer b = lumen::Get(buf);
  EXPECT_EQ(a.size(), size_t{8} << 20);
  EXPECT_EQ(a.data(), b.data());           // no copy per Get
  EXPECT_TRUE(InSharedMapping(a.data()));  // read where the worker wrote it, not copied out
}

TEST_F(TaskTest, ExceptionsComeBackAsTaskErrors) {
  try {
    lumen::Get(lumen::Task(Throws).Remote(-5));
    FAIL() << "expected TaskError";
  } catch (const lumen::TaskError& e) {
    EXPECT_EQ(e.function_name(), "Throws");
    EXPECT_EQ(e.remote_type(), "std::out_of_range");
    EXPECT_EQ(e.remote_message(), "negative input -5");
    EXPECT_NE(std::string(e.what()).find("Throws"), std::string::npos);
  }
  // A failed dependency fails its dependents with the same error.
  auto bad = lumen::Task(Throws).Remote(-1);
  EXPECT_THROW(lumen::Get(lumen::Task(Add).Remote(bad, 1)), lumen::TaskError);
}

// num_returns: a std::tuple result split into one object per element, each with its own
// lifetime and location.
TEST_F(TaskTest, ATupleResultSplitsIntoOneObjectPerElement) {
  auto [big, count, label] =
      lumen::Task(Split3).Options({.num_returns = lumen::kSplitTuple}).Remote(int64_t{4} << 20);
  static_assert(std::is_same_v<decltype(big), lumen::ObjectRef<lumen::Buffer>>);
  static_assert(std::is_same_v<decltype(count), lumen::ObjectRef<int>>);
  static_assert(std::is_same_v<decltype(label), lumen::ObjectRef<std::string>>);
  EXPECT_NE(big.ID(), count.ID());
  EXPECT_EQ(lumen::Get(count), 4 << 20);
  EXPECT_EQ(lumen::Get(label), "n=4194304");
  // The large element lives in the shared-memory store, the small ones inline.
  EXPECT_FALSE(lumen::internal::ObjectLocation(big.ID()).IsNil());
  EXPECT_TRUE(lumen::internal::ObjectLocation(count.ID()).IsNil());
  lumen::Buffer bytes = lumen::Get(big);
  ASSERT_EQ(bytes.size(), size_t{4} << 20);
  EXPECT_EQ(bytes.data()[12345], 7);
  // Each has its own lifetime: dropping one leaves the others readable.
  big = lumen::ObjectRef<lumen::Buffer>();
  bytes = lumen::Buffer();
  EXPECT_EQ(lumen::Get(count), 4 << 20);
  EXPECT_EQ(lumen::Get(label), "n=4194304");

  // With other options, and as arguments of other tasks.
  auto [plus, minus] = lumen::Task(SplitThrows)
                           .Options({.num_returns = lumen::kSplitTuple, .num_cpus = 0.5})
                           .Remote(5);
  EXPECT_EQ(lumen::Get(lumen::Task(Add).Remote(plus, minus)), 0);
  // Unsplit, the tuple is one object.
  lumen::ObjectRef<std::tuple<int, int>> whole = lumen::Task(SplitThrows).Remote(3);
  EXPECT_EQ(lumen::Get(whole), std::make_tuple(3, -3));
}

TEST_F(TaskTest, AFailedSplitTaskFailsEveryOneOfItsObjects) {
  auto [a, b] = lumen::Task(SplitThrows).Options({.num_returns = lumen::kSplitTuple}).Remote(-2);
  for (int i = 0; i < 2; ++i) {
    try {
      lumen::Get(i == 0 ? a : b);
      FAIL() << "return " << i << " of a task that threw has a value";
    } catch (const lumen::TaskError& e) {
      EXPECT_EQ(e.remote_type(), "std::invalid_argument");
      EXPECT_EQ(e.remote_message(), "cannot split -2");
    }
  }
}

// lumen::Wait with Ray's options: {ready, not_ready} in the input order, num_returns, a
// std::chrono timeout, refs of different types together as AnyRef.
TEST_F(TaskTest, WaitWithOptionsSplitsRefsOfAnyTypeInTheirOrder) {
  const std::string gate = ::testing::TempDir() + "/lumen-wait-gate-" + std::to_string(::getpid());
  ::unlink(gate.c_str());
  auto blocked = lumen::Task(WaitForFile).Remote(gate, 7);
  auto one = lumen::Task(Add).Remote(1, 0);
  auto two = lumen::Task(Add).Remote(1, 1);
  std::vector<lumen::ObjectRef<int>> refs{one, blocked, two};
  auto all_but_one = lumen::Wait(refs, {.num_returns = 2});
  ASSERT_EQ(all_but_one.ready.size(), 2u);
  EXPECT_EQ(all_but_one.ready[0], one);
  EXPECT_EQ(all_but_one.ready[1], two);
  ASSERT_EQ(all_but_one.not_ready.size(), 1u);
  EXPECT_EQ(all_but_one.not_ready[0], blocked);
  // At most num_returns are reported ready, in input order.
  auto first = lumen::Wait(refs, {.num_returns = 1});
  ASSERT_EQ(first.ready.size(), 1u);
  EXPECT_EQ(first.ready[0], one);
  EXPECT_EQ(first.not_ready.size(), 2u);
  // The timeout ends the wait with what is ready.
  auto timed = lumen::Wait(refs, {.num_returns = 3, .timeout = std::chrono::milliseconds(100)});
  EXPECT_EQ(timed.ready.size(), 2u);
  ASSERT_EQ(timed.not_ready.size(), 1u);
  EXPECT_EQ(timed.not_ready[0], blocked);
  auto none = lumen::Wait(std::vector<lumen::ObjectRef<int>>{blocked},
                          {.timeout = std::chrono::seconds(0)});
  EXPECT_TRUE(none.ready.empty());

  // Different types wait together.
  auto text = lumen::Task(Concat).Remote(std::string("a"), std::string("b"));
  std::vector<lumen::AnyRef> mixed{blocked, text};
  auto any = lumen::Wait(mixed);
  ASSERT_EQ(any.ready.size(), 1u);
  EXPECT_EQ(any.ready[0].ID(), text.ID());
  EXPECT_EQ(lumen::Get(any.ready[0].As<std::string>()), "ab");
  EXPECT_THROW(lumen::Get(any.ready[0].As<int>()), lumen::TypeError);

  std::fclose(std::fopen(gate.c_str(), "w"));
  EXPECT_EQ(lumen::Get(blocked, std::chrono::seconds(60)), 7);
  ::unlink(gate.c_str());
}

TEST_F(TaskTest, WaitRefusesWhatCanNeverBeMet) {
  auto a = lumen::Task(Add).Remote(1, 2);
  auto expect_error = [](auto&& call, const std::string& text) {
    try {
      call();
      ADD_FAILURE() << "no error; expected: " << text;
    } catch (const lumen::Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect_error([&] { lumen::Wait(std::vector<lumen::ObjectRef<int>>{a}, {.num_returns = 2}); },
               "num_returns 2 is more than the 1 refs given");
  expect_error([&] { lumen::Wait(std::vector<lumen::ObjectRef<int>>{a, a}); }, "given twice");
  expect_error([&] { lumen::Wait(std::vector<lumen::ObjectRef<int>>{lumen::ObjectRef<int>()}); },
               "nil");
  expect_error(
      [&] {
        lumen::Wait(std::vector<lumen::ObjectRef<int>>{a},
                    {.timeout = std::chrono::milliseconds(-5)});
      },
      "must not be negative");
  expect_error([&] { lumen::Get(a, std::chrono::milliseconds(-1)); }, "must not be negative");
  EXPECT_EQ(lumen::Get(a, std::chrono::seconds(60)), 3);
}

TEST_F(TaskTest, GetAndWaitHonourTimeouts) {
  const std::string gate = ::testing::TempDir() + "/lumen-gate-" + std::to_string(::getpid());
  ::unlink(gate.c_str());
  auto blocked = lumen::Task(WaitForFile).Remote(gate, 7);  // cannot finish before the gate
  EXPECT_THROW(lumen::Get(blocked, 100), lumen::GetTimeoutError);
  auto fast = lumen::Task(Add).Remote(1, 1);
  auto [ready, pending] = lumen::Wait(std::vector<lumen::ObjectRef<int>>{blocked, fast}, 1, 30000);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], fast);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0], blocked);
  std::fclose(std::fopen(gate.c_str(), "w"));
  EXPECT_EQ(lumen::Get(blocked, 60000), 7);
  ::unlink(gate.c_str());
}

TEST_F(TaskTest, UnregisteredFunctionIsAClearErrorAtTheCall) {
  try {
    lumen::Task(NotRegistered).Remote(1);
    FAIL() << "expected FunctionNotFoundError";
  } catch (const lumen::FunctionNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("LUMEN_REMOTE"), std::string::npos) << e.what();
  }
}

TEST_F(TaskTest, CallsByNameCheckNameArityAndTypesInTheWorker) {
  EXPECT_EQ(lumen::Get(lumen::TaskByName<int>("Add").Remote(20, 22)), 42);
  EXPECT_EQ(lumen::Get(lumen::TaskByName<int>("Add").Remote(lumen::Put(20), 22)), 42);  // a ref
  try {
    lumen::Get(lumen::TaskByName<int>("NoSuchFunction").Remote(1));
    FAIL();
  } catch (const lumen::FunctionNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("NoSuchFunction"), std::string::npos) << e.what();
  }
  try {
    lumen::Get(lumen::TaskByName<int>("Add").Remote(1));
    FAIL();
  } catch (const lumen::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("takes 2 arguments"), std::string::npos) << e.what();
  }
  try {
    lumen::Get(lumen::TaskByName<int>("Add").Remote(std::string("one"), 2));
    FAIL();
  } catch (const lumen::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("argument 1 of Add"), std::string::npos) << e.what();
  }
  // The result type is checked when it is read.
  EXPECT_THROW(lumen::Get(lumen::TaskByName<std::string>("Add").Remote(1, 2)), lumen::TypeError);
}

TEST_F(TaskTest, InfeasibleResourcesFailInsteadOfHanging) {
  lumen::TaskOptions o;
  o.resources = {{"unicorn", 1}};
  try {
    lumen::Get(lumen::Task(Add).Options(o).Remote(1, 1), 30000);
    FAIL();
  } catch (const lumen::Error& e) {
    EXPECT_NE(std::string(e.what()).find("infeasible"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unicorn"), std::string::npos) << e.what();
  }
}

TEST_F(TaskTest, RefsInsideArgumentsAreBorrowed) {
  std::vector<lumen::ObjectRef<int>> refs;
  for (int i = 0; i < 10; ++i) refs.push_back(lumen::Put(i));
  EXPECT_EQ(lumen::Get(lumen::Task(SumRefs).Remote(refs)), 45);
  // A borrower keeps the objects alive after the owner dropped every reference of its own.
  auto holder = lumen::Actor(Holder::Create).Remote();
  std::vector<lumen::ObjectRef<std::vector<int>>> big;
  for (int i = 0; i < 4; ++i) big.push_back(lumen::Put(std::vector<int>(100000, i)));  // shm
  lumen::Get(holder.Task(&Holder::Keep).Remote(big));
  big.clear();
  EXPECT_EQ(lumen::Get(holder.Task(&Holder::Sum).Remote(), 30000),
            int64_t{100000} * (0 + 1 + 2 + 3));
}

TEST_F(TaskTest, ARefCreatedInATaskOutlivesTheTask) {
  lumen::ObjectRef<lumen::ObjectRef<std::string>> outer = lumen::Task(PutInside).Remote("x");
  lumen::ObjectRef<std::string> inner = lumen::Get(outer);
  outer = {};  // only the inner reference remains
  std::string v = lumen::Get(inner);
  EXPECT_EQ(v.size(), 200001u);
  EXPECT_EQ(v[0], 'x');
}

TEST_F(TaskTest, ManyThreadsSubmitConcurrently) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (lumen::Get(lumen::Task(Add).Remote(t, i)) == t + i) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 800);
}

class GpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen::InitOptions o;
    o.num_cpus = 2;
    o.num_gpus = 2;
    o.object_store_memory = 128ll << 20;
    lumen::Init(o);
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }
};

TEST_F(GpuTest, GpuTasksSeeTheirOwnDevices) {
  lumen::TaskOptions gpu;
  gpu.num_gpus = 1;
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) seen.insert(lumen::Get(lumen::Task(Gpus).Options(gpu).Remote()));
  for (const auto& s : seen) EXPECT_TRUE(s == "0" || s == "1") << s;
  lumen::TaskOptions two;
  two.num_gpus = 2;
  EXPECT_EQ(lumen::Get(lumen::Task(Gpus).Options(two).Remote()), "0,1");
  EXPECT_EQ(lumen::Get(lumen::Task(Gpus).Remote()), "");  // no GPU asked: none visible
  auto res = lumen::GetClusterResources();
  EXPECT_EQ(res.total["GPU"], 2);
  lumen::TaskOptions three;
  three.num_gpus = 3;
  EXPECT_THROW(lumen::Get(lumen::Task(Gpus).Options(three).Remote(), 30000), lumen::Error);
}

// Regression: CUDA_VISIBLE_DEVICES was set per task with setenv inside a running,
// multi-threaded worker, so one process changed its devices between tasks.
TEST_F(GpuTest, AWorkerKeepsTheDevicesItWasStartedWithForItsLife) {
  lumen::TaskOptions one, two, none;
  one.num_gpus = 1;
  two.num_gpus = 2;
  std::vector<lumen::ObjectRef<std::pair<int, std::string>>> refs;
  for (int round = 0; round < 10; ++round) {
    refs.push_back(lumen::Task(PidAndGpus).Options(one).Remote());
    refs.push_back(lumen::Task(PidAndGpus).Options(none).Remote());
    refs.push_back(lumen::Task(PidAndGpus).Options(two).Remote());
    refs.push_back(lumen::Task(PidAndGpus).Options(one).Remote());
  }
  std::map<int, std::set<std::string>> devices_by_pid;
  for (const auto& [pid, gpus] : lumen::Get(refs, 60000)) devices_by_pid[pid].insert(gpus);
  std::set<std::string> all;
  for (const auto& [pid, seen] : devices_by_pid) {
    EXPECT_EQ(seen.size(), 1u) << "worker pid " << pid << " saw " << seen.size()
                               << " different CUDA_VISIBLE_DEVICES values";
    all.insert(seen.begin(), seen.end());
  }
  EXPECT_TRUE(all.count("")) << "tasks without GPUs see none";
  EXPECT_TRUE(all.count("0,1"));
}

// Workers start with Lumen's malloc settings, transparent huge pages for the heap among them
// (where the kernel allows them on request), and do not hand them on to the programs their
// tasks run; a GLIBC_TUNABLES of the user's replaces them and is handed on.
TEST_F(TaskTest, WorkersHeapsMayUseHugePagesUnlessTheUserTunesMalloc) {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes((std::istreambuf_iterator<char>(thp)), std::istreambuf_iterator<char>());
  if (modes.empty() || modes.find("[never]") != std::string::npos) {
    GTEST_SKIP() << "transparent huge pages are off on this kernel";
  }
  EXPECT_EQ(lumen::Get(lumen::Task(EnvVar).Remote(std::string("GLIBC_TUNABLES"))), "<unset>");
  if (kGlibcMalloc) {
    EXPECT_EQ(lumen::Get(lumen::Task(HeapHugePagesEligible).Remote()), 1);
  }
  const lumen::TaskOptions own{
      .runtime_env = {.env_vars = {{"GLIBC_TUNABLES", "glibc.malloc.arena_max=2"}}}};
  EXPECT_EQ(lumen::Get(lumen::Task(EnvVar).Options(own).Remote(std::string("GLIBC_TUNABLES"))),
            "glibc.malloc.arena_max=2");
  // Without the tunable the heap is eligible only where THP is "always".
  if (kGlibcMalloc && modes.find("[madvise]") != std::string::npos) {
    EXPECT_EQ(lumen::Get(lumen::Task(HeapHugePagesEligible).Options(own).Remote()), 0);
  }
}

TEST_F(TaskTest, RuntimeEnvSetsVariablesAndTheWorkingDirectoryOfItsOwnWorkers) {
  const std::string dir = ::testing::TempDir() + "/lumen-wd-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/conf");
  std::ofstream(dir + "/conf/model.txt") << "resnet-18";
  const lumen::RuntimeEnv env{.env_vars = {{"LUMEN_TEST_MODE", "blue"}}, .working_dir = dir};
  EXPECT_EQ(
      lumen::Get(
          lumen::Task(EnvVar).Options({.runtime_env = env}).Remote(std::string("LUMEN_TEST_MODE"))),
      "blue");
  // The directory's contents, sent as a copy: the worker reads them relative to its cwd.
  EXPECT_EQ(lumen::Get(lumen::Task(ReadHere)
                           .Options({.runtime_env = env})
                           .Remote(std::string("conf/model.txt"))),
            "resnet-18");
  // Workers of another (or no) environment are not shared with it.
  EXPECT_EQ(lumen::Get(lumen::Task(EnvVar).Remote(std::string("LUMEN_TEST_MODE"))), "<unset>");
  EXPECT_EQ(lumen::Get(lumen::Task(EnvVar)
                           .Options({.runtime_env = {.env_vars = {{"LUMEN_TEST_MODE", "red"}}}})
                           .Remote(std::string("LUMEN_TEST_MODE"))),
            "red");
  // What a task submits inherits its environment.
  EXPECT_EQ(lumen::Get(lumen::Task(EnvVarOfChild)
                           .Options({.runtime_env = env})
                           .Remote(std::string("LUMEN_TEST_MODE"))),
            "blue");
  // Actors too.
  auto a = lumen::Actor<EnvActor>().Options({.runtime_env = env}).Remote();
  EXPECT_EQ(lumen::Get(a.Task(&EnvActor::Var).Remote(std::string("LUMEN_TEST_MODE"))), "blue");
  EXPECT_EQ(lumen::Get(a.Task(&EnvActor::Read).Remote(std::string("conf/model.txt"))), "resnet-18");
  // A working_dir that is not a directory fails at the call, naming it.
  try {
    lumen::Task(EnvVar)
        .Options({.runtime_env = {.working_dir = dir + "/nope"}})
        .Remote(std::string("X"));
    ADD_FAILURE() << "no error";
  } catch (const lumen::Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/nope"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
