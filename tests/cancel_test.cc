// lumen::Cancel on an embedded cluster: tasks queued, running (cooperative and forced),
// finished, with children; actor calls queued and running; what cannot be cancelled.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "cluster_fixture.h"

namespace {

using lumen::testing::AwaitFile;
using lumen::testing::Touch;

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Holds a CPU until `release` exists.
int Hold(std::string release) { return AwaitFile(release) ? 1 : -1; }

// Marks that it ran.
int MarkRan(std::string marker) {
  Touch(marker);
  return 1;
}

// Runs until cancelled, cooperatively; marks when it started and when it saw the cancel.
std::string SpinUntilCancelled(std::string marker) {
  Touch(marker + ".started");
  while (!lumen::IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Touch(marker + ".cancelled");
  return "stopped early";
}

// Never checks IsCancelled: only `force` stops it.
int IgnoreCancel(std::string marker) {
  Touch(marker + ".started");
  while (true) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// Owns a 1 MiB object and returns a ref to it — once cancelled.
std::vector<lumen::ObjectRef<lumen::Buffer>> LendWhenCancelled(std::string marker) {
  auto owned = lumen::Put(lumen::Buffer::FromVector(std::vector<uint8_t>(1 << 20, 7)));
  SpinUntilCancelled(std::move(marker));
  return {owned};
}

// Submits a spinning child and waits for it.
std::string Parent(std::string marker) {
  return lumen::Get(lumen::Task(SpinUntilCancelled).Remote(marker + ".child"));
}

class Worker {
 public:
  std::string Spin(std::string marker) { return SpinUntilCancelled(std::move(marker)); }
  int Quick() { return 2; }
};
LUMEN_ACTOR(Worker);
LUMEN_REMOTE(Hold, MarkRan, SpinUntilCancelled, IgnoreCancel, Parent, LendWhenCancelled,
             &Worker::Spin, &Worker::Quick);

using CancelTest = lumen::testing::EmbeddedClusterWithDir;

template <class T>
void ExpectCancelled(const lumen::ObjectRef<T>& ref) {
  try {
    lumen::Get(ref, 60000);
    ADD_FAILURE() << "Get returned a value";
  } catch (const lumen::TaskCancelledError& e) {
    EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos) << e.what();
  }
}

TEST_F(CancelTest, AQueuedTaskIsRemovedAndNeverRuns) {
  // Both CPUs busy: the third task waits in the queue.
  auto a = lumen::Task(Hold).Remote(dir_ + "/release");
  auto b = lumen::Task(Hold).Remote(dir_ + "/release");
  auto queued = lumen::Task(MarkRan).Remote(dir_ + "/ran");
  lumen::Cancel(queued);
  ExpectCancelled(queued);
  Touch(dir_ + "/release");
  EXPECT_EQ(lumen::Get(a, 60000) + lumen::Get(b, 60000), 2);
  EXPECT_FALSE(Exists(dir_ + "/ran"));
}

TEST_F(CancelTest, ARunningTaskSeesIsCancelledAndItsResultIsTheCancellation) {
  EXPECT_FALSE(lumen::IsCancelled());  // the driver
  auto spin = lumen::Task(SpinUntilCancelled).Options({.max_retries = 3}).Remote(dir_ + "/s");
  ASSERT_TRUE(AwaitFile(dir_ + "/s.started"));
  lumen::Cancel(spin);
  ExpectCancelled(spin);
  EXPECT_TRUE(AwaitFile(dir_ + "/s.cancelled"));  // it stopped because it was asked to
}

// What a task cancelled while running returned is dropped, and so are the objects it lent
// through refs inside it: nothing stays borrowed by the caller.
TEST_F(CancelTest, ObjectsLentByTheResultOfACancelledTaskAreFreed) {
  const int64_t before = lumen::GetObjectStoreStats().num_objects;
  {
    auto lent = lumen::Task(LendWhenCancelled).Remote(dir_ + "/l");
    ASSERT_TRUE(AwaitFile(dir_ + "/l.started"));
    EXPECT_GT(lumen::GetObjectStoreStats().num_objects, before);  // the object it owns
    lumen::Cancel(lent);
    ExpectCancelled(lent);
  }
  // The caller dropped the cancelled result: the owner frees its object.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (lumen::GetObjectStoreStats().num_objects > before &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(lumen::GetObjectStoreStats().num_objects, before);
}

TEST_F(CancelTest, AFinishedTaskKeepsItsResult) {
  auto done = lumen::Task(MarkRan).Remote(dir_ + "/done");
  EXPECT_EQ(lumen::Get(done), 1);
  lumen::Cancel(done);
  EXPECT_EQ(lumen::Get(done), 1);
}

TEST_F(CancelTest, ForceKillsTheWorkerOfATaskThatIgnoresIt) {
  auto stubborn = lumen::Task(IgnoreCancel).Options({.max_retries = 3}).Remote(dir_ + "/i");
  ASSERT_TRUE(AwaitFile(dir_ + "/i.started"));
  lumen::Cancel(stubborn, {.force = true});
  ExpectCancelled(stubborn);  // not retried, not a crash
  // The cluster goes on.
  EXPECT_EQ(lumen::Get(lumen::Task(MarkRan).Remote(dir_ + "/after")), 1);
}

TEST_F(CancelTest, CancellingATaskCancelsWhatItSubmitted) {
  auto parent = lumen::Task(Parent).Remote(dir_ + "/p");
  ASSERT_TRUE(AwaitFile(dir_ + "/p.child.started"));
  lumen::Cancel(parent, {.recursive = true});
  ExpectCancelled(parent);
  EXPECT_TRUE(AwaitFile(dir_ + "/p.child.cancelled"));
}

TEST_F(CancelTest, ActorCallsAreCancelledQueuedOrRunningAndTheActorLivesOn) {
  auto w = lumen::Actor<Worker>().Remote();
  auto running = w.Task(&Worker::Spin).Remote(dir_ + "/a");
  auto queued = w.Task(&Worker::Quick).Remote();  // behind Spin in the actor
  ASSERT_TRUE(AwaitFile(dir_ + "/a.started"));
  lumen::Cancel(queued);
  ExpectCancelled(queued);
  lumen::Cancel(running);
  ExpectCancelled(running);
  EXPECT_TRUE(AwaitFile(dir_ + "/a.cancelled"));
  EXPECT_EQ(lumen::Get(w.Task(&Worker::Quick).Remote()), 2);
  EXPECT_THROW(lumen::Cancel(w.Task(&Worker::Quick).Remote(), {.force = true}), lumen::Error);
}

TEST_F(CancelTest, OnlyTaskResultsOfThisProcessCanBeCancelled) {
  EXPECT_THROW(lumen::Cancel(lumen::Put(5)), lumen::Error);
  EXPECT_THROW(lumen::Cancel(lumen::ObjectRef<int>()), lumen::Error);
}

}  // namespace
