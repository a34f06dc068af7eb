// Unit tests of the core worker's building blocks (no cluster).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "core_worker/memory_store.h"
#include "core_worker/reference_counter.h"
#include "core_worker/task_spec.h"
#include "lumen/errors.h"

namespace lumen::core {
namespace {

StoredObjectPtr Value(const std::string& s) {
  auto o = std::make_shared<StoredObject>();
  o->data = s;
  return o;
}

TEST(MemoryStore, WaitWakesWhenObjectsArrive) {
  MemoryStore store;
  ObjectID a = ObjectID::FromRandom(), b = ObjectID::FromRandom();
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    store.Put(a, Value("a"));
    store.Put(b, Value("b"));
  });
  auto ready = store.Wait({a, b}, 2, 5000);
  producer.join();
  EXPECT_TRUE(ready[0] && ready[1]);
  EXPECT_EQ(store.Get(b)->data, "b");
}

TEST(MemoryStore, WaitReturnsAtTheTimeoutWithWhatIsReady) {
  MemoryStore store;
  ObjectID a = ObjectID::FromRandom(), b = ObjectID::FromRandom();
  store.Put(a, Value("a"));
  auto start = std::chrono::steady_clock::now();
  auto ready = store.Wait({a, b}, 2, 50);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(45));
  EXPECT_TRUE(ready[0]);
  EXPECT_FALSE(ready[1]);
  // num_required = 1 is satisfied at once.
  ready = store.Wait({a, b}, 1, -1);
  EXPECT_TRUE(ready[0]);
}

// Waiting for all of many objects (more than one chunk of the store's waiting), arriving in
// reverse order from another thread, with duplicates; then a timeout with some never arriving.
TEST(MemoryStore, WaitForAllOfManyObjects) {
  MemoryStore store;
  std::vector<ObjectID> ids(5000);
  for (auto& id : ids) id = ObjectID::FromRandom();
  for (size_t i = 0; i < ids.size(); i += 7) store.Put(ids[i], Value("early"));
  std::vector<ObjectID> wanted = ids;
  wanted.push_back(ids[10]);  // twice
  std::thread producer([&] {
    for (size_t i = ids.size(); i-- > 0;) {
      if (i % 7 != 0) store.Put(ids[i], Value("late"));
    }
  });
  auto ready = store.Wait(wanted, wanted.size(), 10000);
  producer.join();
  EXPECT_EQ(std::count(ready.begin(), ready.end(), true), static_cast<long>(wanted.size()));

  std::vector<ObjectID> partly = ids;
  partly.insert(partly.begin() + 3000, ObjectID::FromRandom());  // never put
  partly.push_back(ObjectID::FromRandom());                      // never put
  ready = store.Wait(partly, partly.size(), 50);
  EXPECT_EQ(std::count(ready.begin(), ready.end(), false), 2);
  EXPECT_FALSE(ready[3000]);
  EXPECT_FALSE(ready.back());
}

TEST(MemoryStore, OnReadyRunsNowOrWhenTheValueArrives) {
  MemoryStore store;
  ObjectID a = ObjectID::FromRandom();
  std::atomic<int> calls{0};
  store.OnReady(a, [&](const StoredObjectPtr& o) {
    EXPECT_EQ(o->data, "x");
    ++calls;
  });
  EXPECT_EQ(calls.load(), 0);
  store.Put(a, Value("x"));
  EXPECT_EQ(calls.load(), 1);
  store.OnReady(a, [&](const StoredObjectPtr&) { ++calls; });
  EXPECT_EQ(calls.load(), 2);
}

TEST(MemoryStore, ManyThreadsWaitingOnDifferentObjects) {
  MemoryStore store;
  std::vector<ObjectID> ids(8);
  for (auto& id : ids) id = ObjectID::FromRandom();
  std::atomic<int> woke{0};
  std::vector<std::thread> waiters;
  for (auto& id : ids) {
    waiters.emplace_back([&, id] {
      if (store.Wait({id}, 1, 5000)[0]) ++woke;
    });
  }
  for (auto& id : ids) store.Put(id, Value("v"));
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woke.load(), 8);
}

struct Released {
  std::vector<ReferenceCounter::Release> all;
  ReferenceCounter::ReleaseCallback cb() {
    return [this](const std::vector<ReferenceCounter::Release>& r) {
      all.insert(all.end(), r.begin(), r.end());
    };
  }
};

TEST(ReferenceCounter, FreesAnOwnedObjectWhenTheLastReferenceGoes) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID id = ObjectID::FromRandom();
  rc.AddOwned(id, 1, false);
  rc.AddLocalRef(id);
  rc.RemoveLocalRef(id);
  EXPECT_TRUE(released.all.empty());
  rc.AddSubmittedRefs({id});
  rc.RemoveLocalRef(id);
  EXPECT_TRUE(released.all.empty());  // a pending task still uses it
  rc.RemoveSubmittedRefs({id});
  ASSERT_EQ(released.all.size(), 1u);
  EXPECT_TRUE(released.all[0].owned);
  EXPECT_FALSE(rc.Has(id));
}

TEST(ReferenceCounter, APendingResultIsFreedWhenItArrivesIfNobodyWantsIt) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID id = ObjectID::FromRandom();
  rc.AddOwned(id, 1, /*pending=*/true);
  rc.RemoveLocalRef(id);
  EXPECT_TRUE(released.all.empty());
  NodeID node = NodeID::FromRandom();
  rc.SetReady(id, /*in_plasma=*/true, node);
  ASSERT_EQ(released.all.size(), 1u);
  EXPECT_TRUE(released.all[0].in_plasma);
  EXPECT_EQ(released.all[0].node, node);
}

// Lineage: an argument of a kept task loses its value with its last reference, but its entry
// stays (so that it can be re-created) until the lineage lets go of it.
TEST(ReferenceCounter, LineageKeepsAFreedArgumentsEntryUntilItLetsGo) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID arg = ObjectID::FromRandom();
  NodeID node = NodeID::FromRandom();
  rc.AddOwned(arg, 1, /*pending=*/true);
  rc.SetReady(arg, /*in_plasma=*/true, node);
  EXPECT_EQ(rc.AddLineageRefs({arg}), std::vector<ObjectID>{arg});
  rc.RemoveLocalRef(arg);
  ASSERT_EQ(released.all.size(), 1u);
  EXPECT_TRUE(released.all[0].value);  // the copy on `node` is freed
  EXPECT_EQ(released.all[0].node, node);
  EXPECT_FALSE(released.all[0].forgotten);
  EXPECT_TRUE(rc.Has(arg));
  EXPECT_FALSE(rc.HasValue(arg));
  EXPECT_EQ(rc.NumObjects(), 0u);
  rc.RemoveLineageRefs({arg});
  ASSERT_EQ(released.all.size(), 2u);
  EXPECT_FALSE(released.all[1].value);  // nothing left to free
  EXPECT_TRUE(released.all[1].forgotten);
  EXPECT_FALSE(rc.Has(arg));
}

TEST(ReferenceCounter, AResurrectedArgumentIsPendingAndFreedAgainAfterItsReRun) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID arg = ObjectID::FromRandom();
  rc.AddOwned(arg, 1, false);
  rc.AddLineageRefs({arg});
  rc.RemoveLocalRef(arg);
  ASSERT_EQ(released.all.size(), 1u);
  // A dependent is re-run: the argument is made again and held by the re-run.
  ASSERT_TRUE(rc.Resurrect(arg));
  rc.AddSubmittedRefs({arg});
  EXPECT_TRUE(rc.HasValue(arg));
  NodeID node = NodeID::FromRandom();
  rc.SetReady(arg, true, node);
  EXPECT_EQ(released.all.size(), 1u);  // the re-run still needs it
  rc.RemoveSubmittedRefs({arg});
  ASSERT_EQ(released.all.size(), 2u);
  EXPECT_TRUE(released.all[1].value);
  EXPECT_EQ(released.all[1].node, node);
  EXPECT_FALSE(released.all[1].forgotten);  // the lineage still names it
  EXPECT_TRUE(rc.Has(arg));
}

TEST(ReferenceCounter, LineagePinsOnlyOwnedObjectsItKnows) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID owned = ObjectID::FromRandom(), borrowed = ObjectID::FromRandom();
  ObjectID unknown = ObjectID::FromRandom();
  proto::Address owner;
  owner.set_worker_id(WorkerID::FromRandom().Binary());
  rc.AddOwned(owned, 1, false);
  rc.AddBorrowed(borrowed, owner);
  EXPECT_EQ(rc.AddLineageRefs({owned, borrowed, unknown}), std::vector<ObjectID>{owned});
  EXPECT_FALSE(rc.Resurrect(borrowed));
  EXPECT_FALSE(rc.Resurrect(unknown));
}

TEST(ReferenceCounter, BorrowersKeepTheObjectAlive) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID id = ObjectID::FromRandom();
  WorkerID b1 = WorkerID::FromRandom(), b2 = WorkerID::FromRandom();
  rc.AddOwned(id, 1, false);
  rc.AddBorrower(id, b1);
  rc.AddBorrower(id, b2);
  rc.RemoveLocalRef(id);
  rc.RemoveBorrower(id, b1, 1);
  EXPECT_TRUE(released.all.empty());
  rc.RemoveBorrowerEverywhere(b2);  // b2 died
  EXPECT_EQ(released.all.size(), 1u);
}

TEST(ReferenceCounter, ABorrowersReleaseEndsOnlyTheRegistrationsItKnewOf) {
  // The owner's side: b released the ref it was registered for once, while a third process
  // handing it the ref again registered it anew; the two messages crossed.
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID id = ObjectID::FromRandom();
  WorkerID b = WorkerID::FromRandom();
  rc.AddOwned(id, 1, false);
  rc.AddBorrower(id, b);  // b's first borrow
  rc.RemoveLocalRef(id);
  rc.AddBorrower(id, b);        // the hand-off, arriving first
  rc.RemoveBorrower(id, b, 1);  // b's release of its first borrow
  EXPECT_TRUE(released.all.empty()) << "freed while b holds it again";
  rc.RemoveBorrower(id, b, 1);
  EXPECT_EQ(released.all.size(), 1u);
}

TEST(ReferenceCounter, ABorrowedRefsReleaseCarriesEveryRegistrationMadeForIt) {
  // The borrower's side: registered by itself, then handed the ref again inside a returned
  // value (a second registration); one release ends both.
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID id = ObjectID::FromRandom();
  proto::Address owner;
  owner.set_worker_id(WorkerID::FromRandom().Binary());
  rc.AddBorrowed(id, owner);
  rc.AddLocalRef(id);
  rc.AddRegistration(id);
  rc.AddRegistration(id);
  rc.RemoveLocalRef(id);
  ASSERT_EQ(released.all.size(), 1u);
  EXPECT_EQ(released.all[0].registrations, 2);
  // Borrowed anew: the count starts again.
  rc.AddBorrowed(id, owner);
  rc.AddLocalRef(id);
  rc.RemoveLocalRef(id);
  ASSERT_EQ(released.all.size(), 2u);
  EXPECT_EQ(released.all[1].registrations, 0);
}

TEST(ReferenceCounter, ContainedRefsLiveAsLongAsTheirOuterObject) {
  Released released;
  ReferenceCounter rc(released.cb());
  ObjectID outer = ObjectID::FromRandom(), inner = ObjectID::FromRandom();
  proto::Address owner;
  owner.set_worker_id(WorkerID::FromRandom().Binary());
  rc.AddOwned(outer, 1, false);
  rc.AddBorrowed(inner, owner);
  rc.AddLocalRef(inner);
  rc.AddContained(outer, {inner});
  rc.RemoveLocalRef(inner);
  EXPECT_TRUE(released.all.empty());
  rc.RemoveLocalRef(outer);  // releases outer, then inner
  ASSERT_EQ(released.all.size(), 2u);
  EXPECT_EQ(released.all[1].id, inner);
  EXPECT_FALSE(released.all[1].owned);
  EXPECT_EQ(released.all[1].owner.worker_id(), owner.worker_id());
}

TEST(TaskSpec, OptionsBecomeTheResourceShapeAndStrategy) {
  ResourceSet r = ResourcesOf(1, 0, 0, {{"side", 2}, {"CPU", 0.5}});
  EXPECT_EQ(r.ToString(), ResourceSet::FromDoubles({{"CPU", 0.5}, {"side", 2}}).ToString());
  EXPECT_TRUE(ResourcesOf(0, 0, 0, {}).ToString() == ResourceSet().ToString());

  proto::SchedulingStrategy spread = StrategyOf(SpreadScheduling{}, {{"zone", "b"}});
  EXPECT_EQ(spread.kind(), proto::SchedulingStrategy::SPREAD);
  EXPECT_EQ(spread.label_selector().at("zone"), "b");
  const NodeID node = NodeID::FromRandom();
  proto::SchedulingStrategy affinity =
      StrategyOf(NodeAffinityScheduling{.node_id = node.Hex(), .soft = true}, {});
  EXPECT_EQ(affinity.kind(), proto::SchedulingStrategy::NODE_AFFINITY);
  EXPECT_EQ(affinity.node_id(), node.Binary());
  EXPECT_TRUE(affinity.soft());
  EXPECT_EQ(StrategyOf(DefaultScheduling{}, {}).kind(), proto::SchedulingStrategy::HYBRID);
}

TEST(TaskSpec, ImpossibleOptionsThrowAtTheCall) {
  try {
    StrategyOf(NodeAffinityScheduling{.node_id = "abc"}, {});
    FAIL() << "a malformed node id was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'abc' is not a node id"), std::string::npos) << e.what();
  }
  ResourceSet r = ResourcesOf(1, 0, 0, {});
  proto::SchedulingStrategy s;
  try {
    InPlacementGroup(PlacementGroup(), 2, "lumen::Task", &r, &s);
    FAIL() << "a bundle index without a group was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bundle_index 2 given without a placement_group"),
              std::string::npos)
        << e.what();
  }
  InPlacementGroup(PlacementGroup(), -1, "lumen::Task", &r, &s);  // no group: unchanged
  EXPECT_EQ(r.ToString(), ResourcesOf(1, 0, 0, {}).ToString());
}

}  // namespace
}  // namespace lumen::core
