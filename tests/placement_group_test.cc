// Placement groups on an embedded cluster of one node (2 CPUs, 2 declared GPUs): reservation,
// tasks and actors inside bundles, pending groups, groups that can never fit, removal. The
// strategies across several nodes are in cluster_test.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "lumen/lumen.h"

namespace {

std::string Gpus() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? v : "<unset>";
}
int Twice(int x) { return 2 * x; }
// A task in its bundle that waits for a child in the same bundle: the parent hands its CPU
// back while it waits, so a one-CPU bundle runs both.
int ParentInBundle(std::string group_name, int x) {
  lumen::PlacementGroup pg = lumen::GetPlacementGroup(group_name);
  return lumen::Get(
      lumen::Task(Twice).Options({.placement_group = pg, .bundle_index = 0}).Remote(x));
}
// Checks in under `dir` and spins (holding its CPU) until `n` tasks have: returns only if `n`
// of them run at the same time.
int Rendezvous(std::string dir, int n) {
  std::string me = dir + "/" + std::to_string(::getpid());
  ::close(::open(me.c_str(), O_CREAT | O_WRONLY, 0644));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto count = [&] {
    int k = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) k += !e.is_directory();
    return k;
  };
  while (count() < n) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("only " + std::to_string(count()) + " tasks ran at once");
    }
  }
  return n;
}
// Runs until killed (the test removes its group).
int Forever() {
  while (true) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

class Holder {
 public:
  static Holder* Create() { return new Holder(); }
  int Ping() { return 1; }
};

}  // namespace

LUMEN_REMOTE(Gpus, Twice, ParentInBundle, Rendezvous, Forever);
LUMEN_REMOTE(Holder::Create, &Holder::Ping);

namespace {

class PlacementGroupTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen::Init({.num_cpus = 2, .num_gpus = 2, .object_store_memory = 256ll << 20});
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }
  void TearDown() override {
    // Every test leaves the node as it found it: both CPUs free again.
    EXPECT_EQ(lumen::AvailableResources()["CPU"], 2);
  }
};

template <class Fn>
std::string ErrorOf(Fn&& fn) {
  try {
    fn();
  } catch (const lumen::Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST_F(PlacementGroupTest, ReservesItsBundlesAndTasksRunInsideThem) {
  lumen::PlacementGroup pg =
      lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}, {{"CPU", 1}, {"GPU", 1}}},
                                   .strategy = lumen::PlacementStrategy::kPack,
                                   .name = "reserve"});
  EXPECT_EQ(pg.id().size(), 32u);
  EXPECT_EQ(pg.bundle_count(), 2);
  ASSERT_TRUE(pg.Wait(60000));
  // The node's CPUs and one GPU now belong to the group.
  auto available = lumen::AvailableResources();
  EXPECT_EQ(available["CPU"], 0);
  EXPECT_EQ(available["GPU"], 1);
  EXPECT_EQ(available["CPU_group_" + pg.id()], 2);
  EXPECT_EQ(available["GPU_group_1_" + pg.id()], 1);
  EXPECT_EQ(
      lumen::Get(lumen::Task(Twice).Options({.placement_group = pg, .bundle_index = 0}).Remote(21)),
      42);
  // The bundle's GPU is a device of the node, named to the task.
  std::string gpus = lumen::Get(
      lumen::Task(Gpus)
          .Options({.num_cpus = 1, .num_gpus = 1, .placement_group = pg, .bundle_index = 1})
          .Remote());
  EXPECT_TRUE(gpus == "0" || gpus == "1") << gpus;
  // Actors too, and any bundle with room (-1).
  auto holder =
      lumen::Actor(Holder::Create).Options({.num_cpus = 1, .placement_group = pg}).Remote();
  EXPECT_EQ(lumen::Get(holder.Task(&Holder::Ping).Remote()), 1);
  lumen::Kill(holder);
  lumen::RemovePlacementGroup(pg);
  EXPECT_EQ(lumen::AvailableResources()["GPU"], 2);
  EXPECT_EQ(lumen::AvailableResources().count("CPU_group_" + pg.id()), 0u);
}

TEST_F(PlacementGroupTest, TasksForAnyBundleUseEveryBundle) {
  lumen::PlacementGroup pg = lumen::CreatePlacementGroup(
      {.bundles = {{{"CPU", 1}}, {{"CPU", 1}}}, .strategy = lumen::PlacementStrategy::kSpread});
  ASSERT_TRUE(pg.Wait(60000));
  std::string dir = ::testing::TempDir() + "/pg-any-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  // Two one-CPU tasks that finish only together: each needs a bundle of its own.
  auto a = lumen::Task(Rendezvous).Options({.placement_group = pg}).Remote(dir, 2);
  auto b = lumen::Task(Rendezvous).Options({.placement_group = pg}).Remote(dir, 2);
  EXPECT_EQ(lumen::Get(a), 2);
  EXPECT_EQ(lumen::Get(b), 2);
  std::filesystem::remove_all(dir);
  lumen::RemovePlacementGroup(pg);
}

TEST_F(PlacementGroupTest, ATaskWaitingForItsChildInTheSameBundleDoesNotStarveIt) {
  lumen::PlacementGroup pg =
      lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}}, .name = "nested"});
  ASSERT_TRUE(pg.Wait(60000));
  EXPECT_EQ(lumen::Get(lumen::Task(ParentInBundle)
                           .Options({.placement_group = pg, .bundle_index = 0})
                           .Remote(std::string("nested"), 5)),
            10);
  lumen::RemovePlacementGroup(pg);
}

TEST_F(PlacementGroupTest, ARequestItsBundleCannotHoldFailsAtTheCall) {
  lumen::PlacementGroup pg = lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}}});
  std::string e = ErrorOf([&] {
    lumen::Task(Twice).Options({.num_cpus = 2, .placement_group = pg, .bundle_index = 0}).Remote(1);
  });
  EXPECT_NE(e.find("bundle 0"), std::string::npos) << e;
  EXPECT_NE(e.find("{CPU: 2}"), std::string::npos) << e;
  e = ErrorOf(
      [&] { lumen::Task(Twice).Options({.placement_group = pg, .bundle_index = 3}).Remote(1); });
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;
  e = ErrorOf([&] { lumen::Task(Twice).Options({.bundle_index = 0}).Remote(1); });
  EXPECT_NE(e.find("without a placement_group"), std::string::npos) << e;
  lumen::RemovePlacementGroup(pg);
}

TEST_F(PlacementGroupTest, AGroupThatCanNeverFitFailsWaitWithTheReason) {
  lumen::PlacementGroup big = lumen::CreatePlacementGroup({.bundles = {{{"CPU", 64}}}});
  std::string e = ErrorOf([&] { big.Wait(60000); });
  EXPECT_NE(e.find("cannot be placed"), std::string::npos) << e;
  EXPECT_NE(e.find("{CPU: 64}"), std::string::npos) << e;
  EXPECT_NE(e.find("largest node"), std::string::npos) << e;
  // What was sent to it fails with the same reason instead of waiting.
  e = ErrorOf([&] {
    lumen::Get(lumen::Task(Twice).Options({.num_cpus = 0, .placement_group = big}).Remote(1));
  });
  EXPECT_NE(e.find("cannot be placed"), std::string::npos) << e;
  lumen::PlacementGroup spread =
      lumen::CreatePlacementGroup({.bundles = {{{"CPU", 0.5}}, {{"CPU", 0.5}}},
                                   .strategy = lumen::PlacementStrategy::kStrictSpread});
  e = ErrorOf([&] { spread.Wait(60000); });
  EXPECT_NE(e.find("STRICT_SPREAD needs a node per bundle"), std::string::npos) << e;
  lumen::RemovePlacementGroup(big);
  lumen::RemovePlacementGroup(spread);
  // Bad bundles are refused when the group is made.
  e = ErrorOf([] { lumen::CreatePlacementGroup({}); });
  EXPECT_NE(e.find("at least one bundle"), std::string::npos) << e;
  e = ErrorOf([] { lumen::CreatePlacementGroup({.bundles = {{{"CPU", -1}}}}); });
  EXPECT_NE(e.find("bad resource"), std::string::npos) << e;
  e = ErrorOf([] { lumen::CreatePlacementGroup({.bundles = {{}}}); });
  EXPECT_NE(e.find("asks for no resources"), std::string::npos) << e;
  e = ErrorOf([] { lumen::PlacementGroup().Wait(0); });
  EXPECT_NE(e.find("names no placement group"), std::string::npos) << e;
}

TEST_F(PlacementGroupTest, APendingGroupIsPlacedWhenRoomFreesAndItsTasksWaitForIt) {
  lumen::PlacementGroup all = lumen::CreatePlacementGroup(
      {.bundles = {{{"CPU", 2}}}, .strategy = lumen::PlacementStrategy::kStrictPack});
  ASSERT_TRUE(all.Wait(60000));
  lumen::PlacementGroup later = lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}}});
  EXPECT_FALSE(later.Wait(0));  // no room: pending, not failed
  EXPECT_FALSE(later.Wait(200));
  auto r = lumen::Task(Twice).Options({.placement_group = later, .bundle_index = 0}).Remote(4);
  EXPECT_TRUE(lumen::Wait(std::vector<lumen::ObjectRef<int>>{r}, 1, 0).second.size() == 1);
  lumen::RemovePlacementGroup(all);
  EXPECT_TRUE(later.Wait(60000));
  EXPECT_EQ(lumen::Get(r), 8);
  lumen::RemovePlacementGroup(later);
}

TEST_F(PlacementGroupTest, RemovingAGroupStopsWhatRunsInsideAndFailsWhatWaits) {
  lumen::PlacementGroup pg = lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}, {{"CPU", 1}}}});
  ASSERT_TRUE(pg.Wait(60000));
  auto holder = lumen::Actor(Holder::Create)
                    .Options({.num_cpus = 1, .placement_group = pg, .bundle_index = 0})
                    .Remote();
  EXPECT_EQ(lumen::Get(holder.Task(&Holder::Ping).Remote()), 1);
  auto running = lumen::Task(Forever).Options({.placement_group = pg, .bundle_index = 1}).Remote();
  lumen::RemovePlacementGroup(pg);
  std::string e = ErrorOf([&] { lumen::Get(holder.Task(&Holder::Ping).Remote()); });
  EXPECT_NE(e.find("placement group"), std::string::npos) << e;
  EXPECT_NE(e.find("removed"), std::string::npos) << e;
  e = ErrorOf([&] { lumen::Get(running); });
  EXPECT_NE(e.find("removed"), std::string::npos) << e;
  EXPECT_NE(ErrorOf([&] { pg.Wait(0); }).find("removed"), std::string::npos);
  // A pending group's waiting task fails too when the group goes.
  lumen::PlacementGroup hold = lumen::CreatePlacementGroup({.bundles = {{{"GPU", 2}}}});
  ASSERT_TRUE(hold.Wait(60000));
  lumen::PlacementGroup pending = lumen::CreatePlacementGroup({.bundles = {{{"GPU", 1}}}});
  EXPECT_FALSE(pending.Wait(0));
  auto waiting = lumen::Task(Twice).Options({.num_cpus = 0, .placement_group = pending}).Remote(1);
  lumen::RemovePlacementGroup(pending);
  e = ErrorOf([&] { lumen::Get(waiting); });
  EXPECT_NE(e.find("removed"), std::string::npos) << e;
  lumen::RemovePlacementGroup(pending);  // again: nothing happens
  lumen::RemovePlacementGroup(hold);
}

TEST_F(PlacementGroupTest, NamedGroupsCanBeLookedUpAndNamesAreUnique) {
  lumen::PlacementGroup pg =
      lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}}, .name = "unique"});
  lumen::PlacementGroup found = lumen::GetPlacementGroup("unique");
  EXPECT_EQ(found.id(), pg.id());
  EXPECT_EQ(found.bundle_count(), 1);
  std::string e = ErrorOf([] {
    lumen::CreatePlacementGroup({.bundles = {{{"CPU", 1}}}, .name = "unique"});
  });
  EXPECT_NE(e.find("already exists"), std::string::npos) << e;
  lumen::RemovePlacementGroup(pg);
  e = ErrorOf([] { lumen::GetPlacementGroup("unique"); });
  EXPECT_NE(e.find("no placement group named"), std::string::npos) << e;
}

}  // namespace
