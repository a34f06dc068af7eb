// Lumen in one page: remote tasks, actors, large objects, errors.
// Build and run: ./scripts/demo.sh (or build/examples/quickstart after building).
#include <lumen/lumen.h>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

int Add(int a, int b) { return a + b; }

double Sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

// A task that submits tasks: tasks can be nested.
int SumOfSquares(int n) {
  std::vector<lumen::ObjectRef<int>> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(lumen::Task(Add).Remote(i * i, 0));
  int total = 0;
  for (int v : lumen::Get(parts)) total += v;
  return total;
}

int Fail(int x) {
  if (x < 0) throw std::invalid_argument("x must not be negative, got " + std::to_string(x));
  return x;
}

// Touches a large buffer that lives in shared memory: the worker reads it in place.
uint64_t Checksum(const lumen::Buffer& b) {
  uint64_t s = 0;
  for (size_t i = 0; i < b.size(); i += 4096) s += b.data()[i];
  return s;
}

class Counter {
 public:
  static Counter* Create(int start) { return new Counter(start); }
  int Incr(int by) { return value_ += by; }
  int Value() const { return value_; }

 private:
  explicit Counter(int start) : value_(start) {}
  int value_;
};

LUMEN_REMOTE(Add, Sum, SumOfSquares, Fail, Checksum, Counter::Create, &Counter::Incr,
             &Counter::Value);

int main(int argc, char** argv) {
  lumen::Init(argc, argv);  // an embedded local cluster unless LUMEN_ADDRESS is set
  auto t0 = std::chrono::steady_clock::now();

  lumen::ObjectRef<int> r = lumen::Task(Add).Remote(1, 2);
  std::printf("Add(1, 2) in a worker process          = %d\n", lumen::Get(r));

  std::vector<lumen::ObjectRef<int>> refs;
  for (int i = 0; i < 1000; ++i) refs.push_back(lumen::Task(Add).Remote(i, r));
  long total = 0;
  for (int v : lumen::Get(refs)) total += v;
  std::printf("1000 tasks taking a future as argument = %ld\n", total);

  std::printf("nested tasks: SumOfSquares(10)         = %d\n",
              lumen::Get(lumen::Task(SumOfSquares).Remote(10)));

  auto big = lumen::Put(std::vector<double>(1 << 24, 1.0));  // 128 MiB, in shared memory
  std::printf("Sum of a 128 MiB vector put once       = %.0f\n",
              lumen::Get(lumen::Task(Sum).Remote(big)));

  lumen::Buffer buf = lumen::Buffer::Allocate(256 << 20);
  for (size_t i = 0; i < buf.size(); i += 4096) buf.mutable_data()[i] = 1;
  auto buf_ref = lumen::Put(buf);
  std::printf("Checksum of a 256 MiB Buffer (0 copies) = %llu\n",
              static_cast<unsigned long long>(lumen::Get(lumen::Task(Checksum).Remote(buf_ref))));

  lumen::ActorHandle<Counter> counter = lumen::Actor(Counter::Create).Remote(10);
  for (int i = 0; i < 5; ++i) counter.Task(&Counter::Incr).Remote(1);
  std::printf("actor Counter(10) after 5 x Incr(1)    = %d\n",
              lumen::Get(counter.Task(&Counter::Value).Remote()));

  try {
    lumen::Get(lumen::Task(Fail).Remote(-1));
  } catch (const lumen::TaskError& e) {
    std::printf("a task that throws comes back as       : %s\n", e.what());
  }
  try {
    lumen::Get(lumen::Task(Add).Remote(1, 1), /*timeout_ms=*/5000);
    std::printf("Get with a timeout                     : ok\n");
  } catch (const lumen::GetTimeoutError& e) {
    std::printf("Get timed out: %s\n", e.what());
  }

  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("done in %.2f s\n", secs);
  lumen::Shutdown();
  return 0;
}
