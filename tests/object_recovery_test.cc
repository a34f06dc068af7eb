// Unit tests of the owner's lineage bookkeeping and its reconstruction state machine
// (core_worker/object_recovery.h), with the memory store and reference counter of a real
// owner and a fake cluster behind its hooks: what would be submitted is recorded, the control
// service's node list is a field.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core_worker/memory_store.h"
#include "core_worker/object_recovery.h"
#include "core_worker/reference_counter.h"
#include "core_worker/task_submitter.h"

namespace lumen::core {
namespace {

class Owner {
 public:
  explicit Owner(int64_t max_lineage_bytes = 1 << 30) {
    ObjectRecovery::Hooks h;
    h.store_error = [this](const std::vector<ObjectID>& ids, const proto::ErrorInfo& e) {
      for (const auto& id : ids) {
        auto o = std::make_shared<StoredObject>();
        o->format = internal::ValueFormat::kError;
        o->data = e.SerializeAsString();
        store.Put(id, o);
        refs.SetReady(id, false, NodeID::Nil());
      }
    };
    h.resolve_and_submit = [this](std::shared_ptr<TaskEntry> t) { submitted.push_back(t); };
    h.take_slot = [this] { ++slots; };
    h.release_slot = [this] { --slots; };
    h.forget_node = [](const NodeID&) {};
    h.list_nodes = [this](std::function<void(const proto::NodeList*)> done) {
      if (before_list_nodes) before_list_nodes();
      done(&nodes);
    };
    h.fetch_from_owner = [this](const ObjectID& id, const NodeID& n) { asked.emplace_back(id, n); };
    // The daemons' answers come later, when the test says (Answer).
    h.promote_copy = [this](const ObjectID& id, const NodeID& n, std::function<void(Status)> d) {
      promotions.push_back({id, n, std::move(d)});
    };
    recovery = std::make_unique<ObjectRecovery>(&store, &refs, std::move(h), max_lineage_bytes);
  }

  // A normal task of this driver that took `args` and ran on `node`, where its one result
  // lives in shared memory; completed as TaskSubmitter::Complete does. Returns the result.
  ObjectID RunTask(const std::string& fn, const std::vector<ObjectID>& args, const NodeID& node,
                   int max_retries = 3) {
    TaskID tid = TaskID::ForNormalTask(job_, TaskID::ForDriver(job_), ++counter_);
    auto t = std::make_shared<TaskEntry>();
    t->spec.set_task_id(tid.Binary());
    t->spec.set_function_name(fn);
    t->spec.set_max_retries(max_retries);
    t->retries_left = max_retries;
    for (const auto& a : args) {
      auto* arg = t->spec.add_args();
      arg->mutable_ref()->set_object_id(a.Binary());
      arg->set_node_id(node.Binary());
    }
    ObjectID ret = ObjectID::ForReturn(tid, 0);
    t->returns = {ret};
    refs.AddOwned(ret, 1, /*pending=*/true);
    refs.AddSubmittedRefs(args);
    t->held_refs = args;
    Complete(t, node);
    return ret;
  }

  // A (re-)run of `t` finished on `node`.
  void Complete(const std::shared_ptr<TaskEntry>& t, const NodeID& node) {
    recovery->RecordLineage(t);
    refs.RemoveSubmittedRefs(t->held_refs);
    for (const auto& r : t->returns) Finish(r, node);
  }

  void Finish(const ObjectID& id, const NodeID& node) {
    auto o = std::make_shared<StoredObject>();
    o->in_plasma = true;
    o->node = node;
    o->size = 1 << 20;
    store.Put(id, o);
    refs.SetReady(id, true, node);
  }

  proto::ErrorInfo ErrorOf(const ObjectID& id) {
    proto::ErrorInfo e;
    auto o = store.Get(id);
    if (o && o->is_error()) e.ParseFromString(o->data);
    return e;
  }

  void Kill(const NodeID& node) {
    auto* n = nodes.add_nodes();
    n->set_node_id(node.Binary());
    n->set_alive(false);
    n->set_death_cause("killed by the test");
    recovery->OnNodeDead(node, "killed by the test");
  }

  MemoryStore store;
  std::unique_ptr<ObjectRecovery> recovery;
  ReferenceCounter refs{[this](const std::vector<ReferenceCounter::Release>& rs) {
    for (const auto& r : rs) {  // as CoreWorker::OnReleases
      if (r.owned && r.forgotten) recovery->OnForgotten(r.id);
      if (r.value) store.Delete(r.id);
    }
  }};
  std::vector<std::shared_ptr<TaskEntry>> submitted;
  int slots = 0;
  proto::NodeList nodes;                    // what the control service answers
  std::function<void()> before_list_nodes;  // runs before each answer (may change `nodes`)
  std::vector<std::pair<ObjectID, NodeID>> asked;
  struct Promotion {
    ObjectID id;
    NodeID node;
    std::function<void(Status)> done;
  };
  std::vector<Promotion> promotions;  // asked of the nodes' daemons, in order
  // The oldest promotion still waiting gets `answer`; returns the node it asked.
  NodeID Answer(Status answer) {
    Promotion p = std::move(promotions.front());
    promotions.erase(promotions.begin());
    p.done(answer);
    return p.node;
  }

 private:
  JobID job_ = JobID::FromInt(1);
  uint64_t counter_ = 0;
};

const NodeID kB = NodeID::FromRandom();
const NodeID kC = NodeID::FromRandom();

TEST(ObjectRecovery, ALostResultIsReRunOnceWhileItsWaitersWait) {
  Owner o;
  ObjectID x = o.RunTask("f", {}, kB);
  EXPECT_EQ(o.recovery->NumLineageEntries(), 1u);
  o.Kill(kB);
  ASSERT_EQ(o.submitted.size(), 1u);
  EXPECT_EQ(o.submitted[0]->returns, std::vector<ObjectID>{x});
  EXPECT_EQ(o.submitted[0]->spec.attempt(), 1);
  EXPECT_EQ(o.submitted[0]->retries_left, 2);
  EXPECT_EQ(o.slots, 1);
  EXPECT_FALSE(o.store.Contains(x));  // a Get waits for the re-run
  EXPECT_TRUE(o.refs.HasValue(x));
  o.recovery->OnNodeDead(kB, "told twice");
  EXPECT_EQ(o.submitted.size(), 1u);
  o.Complete(o.submitted[0], kC);
  EXPECT_EQ(o.store.Get(x)->node, kC);
  // Lost again: the next re-run counts against what is left of max_retries.
  o.Kill(kC);
  ASSERT_EQ(o.submitted.size(), 2u);
  EXPECT_EQ(o.submitted[1]->spec.attempt(), 2);
  EXPECT_EQ(o.submitted[1]->retries_left, 1);
}

TEST(ObjectRecovery, ALostArgumentOfALostObjectIsReCreatedWithIt) {
  Owner o;
  ObjectID a = o.RunTask("make", {}, kB);
  ObjectID y = o.RunTask("add", {a}, kB);
  o.refs.RemoveLocalRef(a);  // the driver keeps only y; the lineage keeps a's entry
  EXPECT_FALSE(o.store.Contains(a));
  EXPECT_TRUE(o.refs.Has(a));
  o.Kill(kB);
  ASSERT_EQ(o.submitted.size(), 2u);
  EXPECT_EQ(o.submitted[0]->spec.function_name(), "add");
  EXPECT_EQ(o.submitted[0]->returns, std::vector<ObjectID>{y});
  EXPECT_EQ(o.submitted[0]->held_refs, std::vector<ObjectID>{a});  // held while it re-runs
  EXPECT_EQ(o.submitted[1]->spec.function_name(), "make");
  EXPECT_EQ(o.submitted[1]->returns, std::vector<ObjectID>{a});
  EXPECT_TRUE(o.refs.HasValue(a));
  // The argument's re-run finishes first; it stays while the dependent needs it.
  o.Complete(o.submitted[1], kC);
  EXPECT_TRUE(o.store.Contains(a));
  o.Complete(o.submitted[0], kC);
  EXPECT_FALSE(o.store.Contains(a));  // freed again once the dependent is done
  EXPECT_EQ(o.store.Get(y)->node, kC);
}

const NodeID kD = NodeID::FromRandom();

// A result read on other nodes (its readers told the owner of their copies) outlives its node:
// a copy is kept in its place, and nothing re-runs. A copy that is gone (evicted, or its node
// unreachable) is skipped for the next; a node that died is never asked.
TEST(ObjectRecovery, ACopyOnAnotherNodeIsKeptInsteadOfARerun) {
  Owner o;
  ObjectID x = o.RunTask("f", {}, kB, /*max_retries=*/0);  // cannot be re-run
  o.recovery->OnCopyAdded(x, kC);
  o.recovery->OnCopyAdded(x, kD);
  o.recovery->OnCopyAdded(x, kC);  // told twice
  o.Kill(kB);
  EXPECT_TRUE(o.submitted.empty());
  EXPECT_FALSE(o.store.Contains(x));  // a Get waits meanwhile
  EXPECT_TRUE(o.refs.HasValue(x));
  ASSERT_EQ(o.promotions.size(), 1u);
  EXPECT_EQ(o.Answer(NotFoundError("evicted")), kC);
  ASSERT_EQ(o.promotions.size(), 1u);
  EXPECT_EQ(o.Answer(Status::OK()), kD);
  ASSERT_TRUE(o.store.Contains(x));
  EXPECT_EQ(o.store.Get(x)->node, kD);
  EXPECT_TRUE(o.submitted.empty());
  // The kept copy is the primary now: the owner frees it there, not as a copy.
  EXPECT_EQ(o.recovery->TakeCopies(x), std::vector<NodeID>{kC});
}

TEST(ObjectRecovery, WithNoCopyLeftTheObjectIsReCreatedOrFailsAsBefore) {
  Owner o;
  ObjectID x = o.RunTask("f", {}, kB);
  ObjectID once = o.RunTask("g", {}, kB, /*max_retries=*/0);
  o.recovery->OnCopyAdded(x, kC);
  o.recovery->OnCopyAdded(once, kC);
  o.recovery->OnCopyAdded(once, kD);
  o.Kill(kD);  // a copy's node died before the primary's: it is not asked
  o.Kill(kB);
  ASSERT_EQ(o.promotions.size(), 2u);
  EXPECT_TRUE(o.submitted.empty());
  o.Answer(UnavailableError("node unreachable"));
  o.Answer(NotFoundError("evicted"));
  ASSERT_EQ(o.submitted.size(), 1u);  // x re-runs; `once` cannot
  EXPECT_EQ(o.submitted[0]->returns, std::vector<ObjectID>{x});
  EXPECT_EQ(o.ErrorOf(once).type(), proto::OBJECT_RECONSTRUCTION_FAILED);
}

TEST(ObjectRecovery, WhatCannotBeReCreatedFailsWithItsReason) {
  Owner o;
  TaskID driver = TaskID::ForDriver(JobID::FromInt(1));
  ObjectID put = ObjectID::ForPut(driver, 1);
  o.refs.AddOwned(put, 1, false);
  o.Finish(put, kB);
  ObjectID once = o.RunTask("g", {}, kB, /*max_retries=*/0);
  ActorID actor = ActorID::Of(JobID::FromInt(1), driver, 99);
  ObjectID method = ObjectID::ForReturn(TaskID::ForActorTask(actor, driver, 1), 0);
  o.refs.AddOwned(method, 1, true);
  o.Finish(method, kB);
  o.Kill(kB);
  EXPECT_TRUE(o.submitted.empty());
  EXPECT_EQ(o.ErrorOf(put).type(), proto::OBJECT_LOST);
  EXPECT_NE(o.ErrorOf(put).message().find("lumen::Put"), std::string::npos);
  EXPECT_EQ(o.ErrorOf(once).type(), proto::OBJECT_RECONSTRUCTION_FAILED);
  EXPECT_NE(o.ErrorOf(once).message().find("max_retries=0"), std::string::npos);
  EXPECT_EQ(o.ErrorOf(method).type(), proto::OBJECT_LOST);
  EXPECT_NE(o.ErrorOf(method).message().find("actor"), std::string::npos);
}

TEST(ObjectRecovery, LineageBeyondItsBudgetIsEvictedAndALossThenSaysSo) {
  Owner o(/*max_lineage_bytes=*/1);
  ObjectID x = o.RunTask("f", {}, kB);
  EXPECT_EQ(o.recovery->NumLineageEntries(), 0u);
  EXPECT_EQ(o.recovery->LineageBytes(), 0);
  o.Kill(kB);
  EXPECT_TRUE(o.submitted.empty());
  EXPECT_EQ(o.ErrorOf(x).type(), proto::OBJECT_RECONSTRUCTION_FAILED);
  EXPECT_NE(o.ErrorOf(x).message().find("LUMEN_MAX_LINEAGE_BYTES"), std::string::npos);
}

TEST(ObjectRecovery, AReconstructionRacingAFreeLeavesNothingBehind) {
  Owner o;
  ObjectID a = o.RunTask("make", {}, kB);
  ObjectID y = o.RunTask("add", {a}, kB);
  o.refs.RemoveLocalRef(a);
  o.Kill(kB);
  ASSERT_EQ(o.submitted.size(), 2u);
  o.refs.RemoveLocalRef(y);  // the driver lets go while the re-runs are on their way
  EXPECT_TRUE(o.refs.Has(y));
  o.Complete(o.submitted[1], kC);
  o.Complete(o.submitted[0], kC);
  EXPECT_FALSE(o.refs.Has(y));
  EXPECT_FALSE(o.refs.Has(a));
  EXPECT_EQ(o.store.Size(), 0u);
  EXPECT_EQ(o.recovery->NumLineageEntries(), 0u);
  EXPECT_EQ(o.recovery->LineageBytes(), 0);
}

TEST(ObjectRecovery, LineageGoesWithTheLastReferenceToItsResults) {
  Owner o;
  ObjectID a = o.RunTask("make", {}, kB);
  ObjectID y = o.RunTask("add", {a}, kB);
  EXPECT_EQ(o.recovery->NumLineageEntries(), 2u);
  o.refs.RemoveLocalRef(a);
  EXPECT_EQ(o.recovery->NumLineageEntries(), 2u);  // y may need a re-created
  o.refs.RemoveLocalRef(y);
  EXPECT_EQ(o.recovery->NumLineageEntries(), 0u);
  EXPECT_FALSE(o.refs.Has(a));
  EXPECT_EQ(o.recovery->LineageBytes(), 0);
}

TEST(ObjectRecovery, ABorrowersReportCountsOnlyWhenTheControlServiceConfirmsIt) {
  Owner o;
  ObjectID x = o.RunTask("f", {}, kB);
  bool answered = false;
  o.recovery->OnBorrowerLost(x, kB, [&] { answered = true; });  // b is alive
  EXPECT_TRUE(answered);
  EXPECT_TRUE(o.submitted.empty());
  EXPECT_TRUE(o.store.Contains(x));
  auto* n = o.nodes.add_nodes();
  n->set_node_id(kB.Binary());
  n->set_alive(false);
  answered = false;
  o.recovery->OnBorrowerLost(x, kB, [&] { answered = true; });
  EXPECT_TRUE(answered);
  EXPECT_EQ(o.submitted.size(), 1u);
  EXPECT_TRUE(o.recovery->IsNodeDead(kB));
}

// A borrowed object `b` whose copy (`copy`) is on node kB, which the control service lists.
class ObjectRecoveryBorrowed : public ::testing::Test {
 protected:
  ObjectRecoveryBorrowed() {
    proto::Address owner;
    owner.set_worker_id(WorkerID::FromRandom().Binary());
    o.refs.AddBorrowed(b, owner);
    o.refs.AddLocalRef(b);
    copy->in_plasma = true;
    copy->node = kB;
    o.store.Put(b, copy);
    n = o.nodes.add_nodes();
    n->set_node_id(kB.Binary());
  }
  Owner o;
  ObjectID b = ObjectID::FromRandom();
  std::shared_ptr<StoredObject> copy = std::make_shared<StoredObject>();
  proto::NodeInfo* n;  // node kB in the control service's answer
};

TEST_F(ObjectRecoveryBorrowed, ACopyOnADeadNodeIsAskedForAgain) {
  n->set_alive(false);
  EXPECT_TRUE(o.recovery->OnReadFailed(b, copy, Status::OK()));  // confirmed dead: look again
  EXPECT_FALSE(o.store.Contains(b));
  EXPECT_TRUE(o.submitted.empty());  // not ours to re-create
}

// A node's death drops the borrowed entry that names it and asks the owner where the object is
// now, at once: a reader that found the entry just before it went is waiting for an answer
// that only a question brings (the chaos test hung on this under TSan).
TEST_F(ObjectRecoveryBorrowed, ANodesDeathAsksTheOwnerOfABorrowedCopyThereAtOnce) {
  o.recovery->OnNodeDead(kB, "its daemon disconnected");
  EXPECT_FALSE(o.store.Contains(b));
  ASSERT_EQ(o.asked.size(), 1u);
  EXPECT_EQ(o.asked[0].first, b);
  EXPECT_EQ(o.asked[0].second, kB);  // telling it which copy is gone
}

// The read was cut off as the node died, before the control service declared it dead: the
// reader asks again until it does, rather than failing on the first answer.
TEST_F(ObjectRecoveryBorrowed, AReadCutOffByADyingNodeWaitsForTheControlServiceToSaySo) {
  n->set_alive(true);
  // Alive for the first two questions, dead from the third on.
  int asked = 0;
  o.before_list_nodes = [&] {
    if (++asked == 3) n->set_alive(false);
  };
  EXPECT_FALSE(o.recovery->OnReadFailed(b, copy, InvalidArgumentError("not a lost connection")));
  EXPECT_EQ(asked, 1);  // another kind of failure: asked once
  asked = 0;
  EXPECT_TRUE(o.recovery->OnReadFailed(b, copy, UnavailableError("connection closed by peer")));
  EXPECT_EQ(asked, 3);
  EXPECT_FALSE(o.store.Contains(b));
}

}  // namespace
}  // namespace lumen::core
