// Actors on an embedded cluster: state, ordering, concurrency, names, handles in tasks,
// kill, restarts, constructor failures.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "cluster_fixture.h"

namespace {

class Counter {
 public:
  static Counter* Create(int start) { return new Counter(start); }
  static std::unique_ptr<Counter> CreateFailing(int) {
    throw std::runtime_error("cannot open the model file");
  }
  int Incr(int by) { return value_ += by; }
  int Value() const { return value_; }
  std::vector<int> History() const { return history_; }
  void Append(int x) { history_.push_back(x); }
  int Pid() const { return static_cast<int>(::getpid()); }
  int Boom() { throw std::logic_error("boom"); }
  int Leave() {
    try {
      lumen::ExitActor();
    } catch (const std::exception&) {  // user code catching errors does not stop the exit
    }
    return -1;
  }
  bool Restarted() const { return lumen::WasCurrentActorRestarted(); }
  // The first instance to run this marks `marker` and then blocks (until killed); an instance
  // that finds the marker returns its value at once.
  int BlockUnlessMarked(std::string marker) {
    if (::access(marker.c_str(), F_OK) != 0) {
      FILE* f = std::fopen(marker.c_str(), "w");
      if (f) std::fclose(f);
      std::this_thread::sleep_for(std::chrono::seconds(120));
    }
    return value_;
  }

 private:
  explicit Counter(int v) : value_(v) {}
  int value_;
  std::vector<int> history_;
};

// An actor whose methods wait for each other: only passes with real concurrency.
class Barrier {
 public:
  static Barrier* Create(int n) { return new Barrier(n); }
  int Arrive() {
    std::unique_lock<std::mutex> lock(mu_);
    ++arrived_;
    cv_.notify_all();
    bool ok = cv_.wait_for(lock, std::chrono::seconds(10), [this] { return arrived_ >= n_; });
    return ok ? 1 : 0;
  }

 private:
  explicit Barrier(int n) : n_(n) {}
  int n_;
  int arrived_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

class Other {
 public:
  static Other* Create() { return new Other(); }
  int Ping() { return 1; }
};

// Concurrency groups: Compute waits for Signal, which only a thread of another group can run.
class Pipeline {
 public:
  bool Compute() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [this] { return signalled_; });
  }
  int Signal() {
    std::lock_guard<std::mutex> lock(mu_);
    signalled_ = true;
    cv_.notify_all();
    return 1;
  }
  int Plain() { return 2; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool signalled_ = false;
};
LUMEN_ACTOR(Pipeline);
LUMEN_REMOTE(&Pipeline::Compute, &Pipeline::Signal, &Pipeline::Plain);
LUMEN_CONCURRENCY_GROUP("compute", &Pipeline::Compute);
LUMEN_CONCURRENCY_GROUP("io", &Pipeline::Signal);

// An actor with public constructors (LUMEN_ACTOR) and no factory.
class Point {
 public:
  Point() : name_("origin") {}
  Point(int v, std::string name) : value_(v), name_(std::move(name)) {}
  explicit Point(int v) : value_(v), name_(v == 7 ? "seven" : "?") {}
  std::string Describe() const { return name_ + "=" + std::to_string(value_); }

 private:
  int value_ = 0;
  std::string name_;
};

LUMEN_ACTOR(Point);
LUMEN_ACTOR(Point, int, std::string);
LUMEN_ACTOR(Point, int);
LUMEN_REMOTE(&Point::Describe);

int UseCounter(lumen::ActorHandle<Counter> c, int times) {
  int last = 0;
  for (int i = 0; i < times; ++i) last = lumen::Get(c.Task(&Counter::Incr).Remote(1));
  return last;
}

LUMEN_REMOTE(Counter::Create, Counter::CreateFailing, &Counter::Incr, &Counter::Value,
             &Counter::History, &Counter::Append, &Counter::Pid, &Counter::Boom,
             &Counter::BlockUnlessMarked, &Counter::Leave, &Counter::Restarted, Barrier::Create,
             &Barrier::Arrive, Other::Create, &Other::Ping, UseCounter);

using ActorTest = lumen::testing::EmbeddedCluster;

TEST_F(ActorTest, KeepsStateAcrossCalls) {
  auto c = lumen::Actor(Counter::Create).Remote(10);
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Incr).Remote(5)), 15);
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Incr).Remote(5)), 20);
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Value).Remote()), 20);
  EXPECT_NE(lumen::Get(c.Task(&Counter::Pid).Remote()), static_cast<int>(::getpid()));
}

TEST_F(ActorTest, CallsFromOneCallerRunInSubmissionOrder) {
  auto c = lumen::Actor(Counter::Create).Remote(0);
  // Some calls wait for an argument, later ones do not: order still holds.
  std::vector<lumen::ObjectRef<void>> done;
  for (int i = 0; i < 200; ++i) {
    if (i % 7 == 0) {
      done.push_back(c.Task(&Counter::Append).Remote(lumen::Put(i)));
    } else {
      done.push_back(c.Task(&Counter::Append).Remote(i));
    }
  }
  std::vector<int> history = lumen::Get(c.Task(&Counter::History).Remote());
  ASSERT_EQ(history.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(history[static_cast<size_t>(i)], i);
}

TEST_F(ActorTest, MaxConcurrencyRunsCallsInParallel) {
  lumen::ActorOptions o;
  o.max_concurrency = 4;
  auto b = lumen::Actor(Barrier::Create).Options(o).Remote(4);
  std::vector<lumen::ObjectRef<int>> arrivals;
  for (int i = 0; i < 4; ++i) arrivals.push_back(b.Task(&Barrier::Arrive).Remote());
  for (int v : lumen::Get(arrivals, 30000)) EXPECT_EQ(v, 1);
}

TEST_F(ActorTest, NamedActorsCanBeLookedUp) {
  lumen::ActorOptions o;
  o.name = "global-counter";
  auto c = lumen::Actor(Counter::Create).Options(o).Remote(100);
  lumen::Get(c.Task(&Counter::Incr).Remote(1));
  std::optional<lumen::ActorHandle<Counter>> same = lumen::GetActor<Counter>("global-counter");
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(lumen::Get(same->Task(&Counter::Value).Remote()), 101);
  EXPECT_THROW(lumen::GetActor<Other>("global-counter"), lumen::TypeError);
  EXPECT_FALSE(lumen::GetActor<Counter>("no-such-actor").has_value());             // not an error
  EXPECT_THROW(lumen::Actor(Counter::Create).Options(o).Remote(0), lumen::Error);  // name taken
  lumen::Kill(c);
  EXPECT_FALSE(lumen::GetActor<Counter>("global-counter").has_value());  // dead: the name is free
}

TEST_F(ActorTest, NamesLiveInNamespaces) {
  // The job's namespace by default; another one when the actor is created there.
  auto here = lumen::Actor(Counter::Create).Options({.name = "twin"}).Remote(1);
  auto there =
      lumen::Actor(Counter::Create).Options({.name = "twin", .namespace_ = "elsewhere"}).Remote(2);
  auto found_here = lumen::GetActor<Counter>("twin");
  auto found_there = lumen::GetActor<Counter>("twin", {.namespace_ = "elsewhere"});
  ASSERT_TRUE(found_here && found_there);
  EXPECT_EQ(lumen::Get(found_here->Task(&Counter::Value).Remote()), 1);
  EXPECT_EQ(lumen::Get(found_there->Task(&Counter::Value).Remote()), 2);
  EXPECT_FALSE(lumen::GetActor<Counter>("twin", {.namespace_ = "third"}).has_value());
  EXPECT_THROW(
      lumen::Actor(Counter::Create).Options({.name = "twin", .namespace_ = "elsewhere"}).Remote(3),
      lumen::Error);
  lumen::Kill(here);
  lumen::Kill(there);
}

TEST_F(ActorTest, AnActorIsCreatedFromItsRegisteredConstructor) {
  auto p = lumen::Actor<Point>().Remote(3, std::string("three"));
  EXPECT_EQ(lumen::Get(p.Task(&Point::Describe).Remote()), "three=3");
  auto origin = lumen::Actor<Point>().Options({.name = "origin"}).Remote();
  EXPECT_EQ(lumen::Get(origin.Task(&Point::Describe).Remote()), "origin=0");
  // One constructor of one argument: an ObjectRef of its type works too.
  auto scaled = lumen::Actor<Point>().Remote(lumen::Put(7));
  EXPECT_EQ(lumen::Get(scaled.Task(&Point::Describe).Remote()), "seven=7");
  // A class without LUMEN_ACTOR: the error says what to add.
  try {
    lumen::Actor<Other>().Remote();
    ADD_FAILURE() << "no error";
  } catch (const lumen::FunctionNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("LUMEN_ACTOR"), std::string::npos) << e.what();
  }
  lumen::Kill(origin);
}

TEST_F(ActorTest, MethodsCanBeCalledByNameThroughAnUntypedHandle) {
  auto c = lumen::Actor(Counter::Create).Options({.name = "by-name"}).Remote(40);
  std::optional<lumen::ActorHandle<>> any = lumen::GetActor("by-name");
  ASSERT_TRUE(any.has_value());
  EXPECT_EQ(lumen::Get(any->TaskByName<int>("Incr").Remote(1)), 41);
  EXPECT_EQ(lumen::Get(any->TaskByName<int>("Counter::Incr").Remote(1)), 42);
  EXPECT_EQ(lumen::Get(c.TaskByName<int>("Value").Remote()), 42);
  EXPECT_THROW(lumen::Get(any->TaskByName<int>("NoSuchMethod").Remote()),
               lumen::FunctionNotFoundError);
  EXPECT_THROW(lumen::Get(any->TaskByName<int>("Incr").Remote()), lumen::TypeError);  // arity
  EXPECT_THROW(lumen::Get(any->TaskByName<int>("Incr").Remote(std::string("x"))), lumen::TypeError);
  // Other's method is not Counter's.
  EXPECT_THROW(lumen::Get(any->TaskByName<int>("Ping").Remote()), lumen::FunctionNotFoundError);
  lumen::Kill(c);
}

TEST_F(ActorTest, ConcurrencyGroupsRunAnIoCallWhileAComputeCallBlocks) {
  auto p = lumen::Actor<Pipeline>()
               .Options({.concurrency_groups = {{"io", 4}, {"compute", 1}}})
               .Remote();
  auto compute = p.Task(&Pipeline::Compute).Remote();  // blocks its group's only thread
  auto signal = p.Task(&Pipeline::Signal).Remote();    // runs on an io thread meanwhile
  EXPECT_EQ(lumen::Get(signal, 60000), 1);
  EXPECT_TRUE(lumen::Get(compute, 60000)) << "Compute never saw the io call";
  // A call may name its group; the default pool serves the rest.
  EXPECT_EQ(lumen::Get(p.Task(&Pipeline::Plain).Options({.concurrency_group = "io"}).Remote()), 2);
  EXPECT_EQ(lumen::Get(p.Task(&Pipeline::Plain).Remote()), 2);
  EXPECT_THROW(lumen::Get(p.Task(&Pipeline::Plain).Options({.concurrency_group = "gpu"}).Remote()),
               lumen::TypeError);
  // Without the groups its methods name, the actor fails their calls clearly.
  auto plain = lumen::Actor<Pipeline>().Remote();
  try {
    lumen::Get(plain.Task(&Pipeline::Signal).Remote());
    ADD_FAILURE() << "no error";
  } catch (const lumen::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("concurrency group 'io'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lumen::Actor<Pipeline>().Options({.concurrency_groups = {{"io", 0}}}).Remote(),
               lumen::Error);
}

TEST_F(ActorTest, ExitActorEndsTheActorAndFailsItsCallsSayingSo) {
  EXPECT_THROW(lumen::ExitActor(), lumen::Error);  // not in an actor
  auto c = lumen::Actor(Counter::Create).Options({.max_restarts = 3}).Remote(5);
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Incr).Remote(1)), 6);
  auto stop = c.Task(&Counter::Leave).Remote();
  auto queued = c.Task(&Counter::Value).Remote();  // behind the exit: never runs
  for (auto* ref : {&stop, &queued}) {
    try {
      lumen::Get(*ref, 30000);
      ADD_FAILURE() << "no error";
    } catch (const lumen::ActorDiedError& e) {
      EXPECT_NE(std::string(e.what()).find("lumen::ExitActor()"), std::string::npos) << e.what();
    }
  }
  // No restart although it had restarts left; later calls fail the same way.
  EXPECT_THROW(lumen::Get(c.Task(&Counter::Value).Remote(), 30000), lumen::ActorDiedError);
}

TEST_F(ActorTest, WasCurrentActorRestartedTellsARestartFromTheFirstInstance) {
  EXPECT_FALSE(lumen::WasCurrentActorRestarted());  // the driver
  auto c =
      lumen::Actor(Counter::Create).Options({.max_restarts = 1, .max_task_retries = -1}).Remote(0);
  EXPECT_FALSE(lumen::Get(c.Task(&Counter::Restarted).Remote()));
  lumen::Kill(c, /*no_restart=*/false);
  EXPECT_TRUE(lumen::Get(c.Task(&Counter::Restarted).Remote(), 60000));
  lumen::Kill(c);
}

TEST_F(ActorTest, HandlesCanBePassedToTasks) {
  auto c = lumen::Actor(Counter::Create).Remote(0);
  auto a = lumen::Task(UseCounter).Remote(c, 10);
  auto b = lumen::Task(UseCounter).Remote(c, 10);
  lumen::Get(a);
  lumen::Get(b);
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Value).Remote()), 20);
}

TEST_F(ActorTest, MethodExceptionsAreTaskErrorsAndTheActorLivesOn) {
  auto c = lumen::Actor(Counter::Create).Remote(1);
  try {
    lumen::Get(c.Task(&Counter::Boom).Remote());
    FAIL();
  } catch (const lumen::TaskError& e) {
    EXPECT_EQ(e.remote_type(), "std::logic_error");
    EXPECT_EQ(e.remote_message(), "boom");
    EXPECT_EQ(e.function_name(), "Counter::Boom");
  }
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Incr).Remote(1)), 2);
}

TEST_F(ActorTest, KilledActorFailsPendingAndLaterCalls) {
  auto c = lumen::Actor(Counter::Create).Remote(0);
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Incr).Remote(1)), 1);
  lumen::Kill(c);
  try {
    lumen::Get(c.Task(&Counter::Incr).Remote(1), 30000);
    FAIL();
  } catch (const lumen::ActorDiedError& e) {
    EXPECT_NE(std::string(e.what()).find("lumen::Kill"), std::string::npos) << e.what();
  }
}

TEST_F(ActorTest, ConstructorFailureFailsEveryCallWithItsMessage) {
  auto c = lumen::Actor(Counter::CreateFailing).Remote(0);
  try {
    lumen::Get(c.Task(&Counter::Value).Remote(), 30000);
    FAIL();
  } catch (const lumen::ActorDiedError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open the model file"), std::string::npos)
        << e.what();
  }
}

TEST_F(ActorTest, CrashedActorRestartsUpToMaxRestartsThenDies) {
  lumen::ActorOptions o;
  o.max_restarts = 1;
  auto c = lumen::Actor(Counter::Create).Options(o).Remote(5);
  int pid1 = lumen::Get(c.Task(&Counter::Pid).Remote());
  ASSERT_EQ(::kill(pid1, SIGKILL), 0);
  // The call may land on the dying process or the new one; after the restart, calls succeed
  // against fresh state.
  int value = -1;
  for (int i = 0; i < 100 && value < 0; ++i) {
    try {
      value = lumen::Get(c.Task(&Counter::Value).Remote(), 30000);
    } catch (const lumen::ActorDiedError&) {
    }
  }
  EXPECT_EQ(value, 5);
  int pid2 = lumen::Get(c.Task(&Counter::Pid).Remote());
  EXPECT_NE(pid1, pid2);
  ASSERT_EQ(::kill(pid2, SIGKILL), 0);
  // Restarts exhausted: dead for good, with the reason.
  bool died = false;
  for (int i = 0; i < 100 && !died; ++i) {
    try {
      lumen::Get(c.Task(&Counter::Value).Remote(), 30000);
    } catch (const lumen::ActorDiedError& e) {
      std::string what = e.what();
      died = what.find("max_restarts=1") != std::string::npos;
      if (died) {
        EXPECT_NE(what.find("SIGKILL"), std::string::npos) << what;
      }
    }
  }
  EXPECT_TRUE(died);
}

// Waits (bounded) until `path` exists: the observable sign that an actor call is running.
bool WaitForFile(const std::string& path) {
  for (int i = 0; i < 6000; ++i) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::string FreshMarker(const char* name) {
  std::string path = ::testing::TempDir() + "/" + name + "-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  return path;
}

// Regression: max_task_retries did nothing; the running call and the calls queued behind it
// failed although the actor restarted.
TEST_F(ActorTest, MaxTaskRetriesResendsInterruptedCallsInOrderToTheRestartedActor) {
  lumen::ActorOptions o;
  o.max_restarts = 1;
  o.max_task_retries = 1;
  auto c = lumen::Actor(Counter::Create).Options(o).Remote(5);
  int pid = lumen::Get(c.Task(&Counter::Pid).Remote());
  std::string marker = FreshMarker("max-task-retries");
  auto running = c.Task(&Counter::BlockUnlessMarked).Remote(marker);
  std::vector<lumen::ObjectRef<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(c.Task(&Counter::Incr).Remote(1));
  ASSERT_TRUE(WaitForFile(marker));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  // The new instance starts from the constructor's state and runs the calls in caller order.
  EXPECT_EQ(lumen::Get(running, 60000), 5);
  std::vector<int> values = lumen::Get(queued, 60000);
  EXPECT_EQ(values, (std::vector<int>{6, 7, 8, 9, 10}));
  EXPECT_NE(lumen::Get(c.Task(&Counter::Pid).Remote()), pid);
  ::unlink(marker.c_str());
}

// Regression: calls that waited behind the interrupted one were reported as having died "while
// running" it.
TEST_F(ActorTest, CallsInterruptedByARestartSayWhetherTheyWereRunningOrQueued) {
  lumen::ActorOptions o;
  o.max_restarts = 1;  // max_task_retries = 0: interrupted calls fail
  auto c = lumen::Actor(Counter::Create).Options(o).Remote(0);
  int pid = lumen::Get(c.Task(&Counter::Pid).Remote());
  std::string marker = FreshMarker("running-or-queued");
  auto running = c.Task(&Counter::BlockUnlessMarked).Remote(marker);
  auto queued = c.Task(&Counter::Incr).Remote(1);
  ASSERT_TRUE(WaitForFile(marker));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  try {
    lumen::Get(running, 60000);
    FAIL() << "the running call should fail";
  } catch (const lumen::ActorDiedError& e) {
    EXPECT_NE(std::string(e.what()).find("while running it"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_task_retries"), std::string::npos) << e.what();
  }
  try {
    lumen::Get(queued, 60000);
    FAIL() << "the queued call should fail";
  } catch (const lumen::ActorDiedError& e) {
    EXPECT_NE(std::string(e.what()).find("before it started (queued behind 1 earlier call)"),
              std::string::npos)
        << e.what();
  }
  // The restarted instance serves new calls.
  EXPECT_EQ(lumen::Get(c.Task(&Counter::Incr).Remote(2), 60000), 2);
  ::unlink(marker.c_str());
}

TEST_F(ActorTest, ManyActorsAndCallers) {
  std::vector<lumen::ActorHandle<Counter>> actors;
  for (int i = 0; i < 6; ++i) actors.push_back(lumen::Actor(Counter::Create).Remote(0));
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      std::vector<lumen::ObjectRef<int>> refs;
      for (int i = 0; i < 100; ++i) {
        for (auto& a : actors) refs.push_back(a.Task(&Counter::Incr).Remote(1));
      }
      lumen::Get(refs);
    });
  }
  for (auto& th : threads) th.join();
  for (auto& a : actors) EXPECT_EQ(lumen::Get(a.Task(&Counter::Value).Remote()), 300);
}

}  // namespace
