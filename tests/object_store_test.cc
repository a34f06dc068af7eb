#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <future>

#include "common/fs.h"
#include "common/rpc/event_loop.h"
#include "lumen/ids.h"
#include "object_store/allocator.h"
#include "object_store/object_store.h"

namespace lumen::object_store {
namespace {

TEST(Allocator, AllocatesAlignedBlocksAndCoalescesFrees) {
  Allocator a(1 << 20);
  auto x = a.Allocate(100);
  auto y = a.Allocate(1000);
  auto z = a.Allocate(10);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x % Allocator::kAlignment, 0);
  EXPECT_EQ(*y % Allocator::kAlignment, 0);
  EXPECT_EQ(*z % Allocator::kAlignment, 0);
  EXPECT_EQ(a.used(), Allocator::Rounded(100) + Allocator::Rounded(1000) + Allocator::Rounded(10));
  a.Free(*y, 1000);
  a.Free(*x, 100);
  a.Free(*z, 10);
  EXPECT_EQ(a.used(), 0);
  EXPECT_EQ(a.largest_free_block(), 1 << 20);  // fully coalesced
  EXPECT_FALSE(a.Allocate((1 << 20) + 1));
  auto all = a.Allocate(1 << 20);
  ASSERT_TRUE(all);
  EXPECT_FALSE(a.Allocate(1));
}

TEST(Allocator, ReusesTheBestFittingHole) {
  Allocator a(64 * 100);
  std::vector<int64_t> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(*a.Allocate(64));
  a.Free(blocks[10], 64);
  a.Free(blocks[50], 64);
  a.Free(blocks[51], 64);
  EXPECT_EQ(*a.Allocate(64), blocks[10]);  // the 64-byte hole, not the 128-byte one
  EXPECT_EQ(*a.Allocate(128), blocks[50]);
}

TEST(Allocator, PacksTowardsTheStartAmongHolesOfTheSameSize) {
  Allocator a(64 * 100);
  std::vector<int64_t> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(*a.Allocate(64));
  // Three holes of the same size, freed high to low and low to high.
  a.Free(blocks[70], 64);
  a.Free(blocks[20], 64);
  a.Free(blocks[40], 64);
  EXPECT_EQ(*a.Allocate(64), blocks[20]);
  EXPECT_EQ(*a.Allocate(64), blocks[40]);
  EXPECT_EQ(*a.Allocate(64), blocks[70]);
}

class ObjectStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_.Start();
    spill_dir_ = std::filesystem::temp_directory_path() /
                 ("lumen-store-test-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    StoreOptions o;
    o.capacity = 1 << 20;
    o.spill_dir = spill_dir_;
    o.full_timeout_ms = 300;
    o.min_spill_bytes = 0;
    auto s = OnLoop([&] { return ObjectStore::Open(&loop_, o); });
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  void TearDown() override {
    OnLoop([&] {
      store_.reset();
      return 0;
    });
    loop_.Stop();
    RemoveAll(spill_dir_).IgnoreError();
  }
  template <class F>
  auto OnLoop(F f) -> decltype(f()) {
    std::promise<decltype(f())> p;
    loop_.Post([&] { p.set_value(f()); });
    return p.get_future().get();
  }
  CreateResult Create(ClientId c, const ObjectID& id, int64_t size) {
    std::promise<CreateResult> p;
    loop_.Post([&] {
      store_->Create(c, id, size, 0, WorkerID::Nil(),
                     [&](const CreateResult& r) { p.set_value(r); });
    });
    return p.get_future().get();
  }
  // Creates, fills with `fill` and seals.
  void Put(ClientId c, const ObjectID& id, int64_t size, char fill) {
    CreateResult r = Create(c, id, size);
    ASSERT_TRUE(r.status.ok()) << r.status;
    std::memset(store_->base() + r.offset, fill, static_cast<size_t>(size));
    Status sealed = OnLoop([&] { return store_->Seal(c, id); });
    ASSERT_TRUE(sealed.ok()) << sealed;
  }
  std::vector<GetEntry> Get(ClientId c, std::vector<ObjectID> ids, int64_t timeout_ms) {
    std::promise<std::vector<GetEntry>> p;
    loop_.Post(
        [&] { store_->Get(c, ids, timeout_ms, [&](std::vector<GetEntry> e) { p.set_value(e); }); });
    return p.get_future().get();
  }
  void Release(ClientId c, const ObjectID& id) {
    OnLoop([&] {
      store_->Release(c, id);
      return 0;
    });
  }
  void Free(const ObjectID& id) {
    OnLoop([&] {
      store_->Free({id});
      return 0;
    });
  }
  StoreStats Stats() {
    return OnLoop([&] { return store_->Stats(); });
  }

  rpc::EventLoop loop_{"store-test"};
  std::string spill_dir_;
  std::unique_ptr<ObjectStore> store_;
};

// Regression: Seal and Abort ignored the client id, so any local client could abort (or seal
// half-written) another client's object.
TEST_F(ObjectStoreTest, OnlyTheCreatorCanSealOrAbortAnObject) {
  ObjectID id = ObjectID::FromRandom();
  ASSERT_TRUE(Create(/*c=*/1, id, 4096).status.ok());
  Status foreign_abort = OnLoop([&] { return store_->Abort(/*client=*/2, id); });
  EXPECT_EQ(foreign_abort.code(), StatusCode::kPermissionDenied) << foreign_abort;
  Status foreign_seal = OnLoop([&] { return store_->Seal(/*client=*/2, id); });
  EXPECT_EQ(foreign_seal.code(), StatusCode::kPermissionDenied) << foreign_seal;
  auto unsealed = Get(2, {id}, /*timeout_ms=*/0);  // still being created: not readable
  ASSERT_EQ(unsealed.size(), 1u);
  EXPECT_FALSE(unsealed[0].found);
  Status own_seal = OnLoop([&] { return store_->Seal(/*client=*/1, id); });
  EXPECT_TRUE(own_seal.ok()) << own_seal;
  EXPECT_TRUE(OnLoop([&] { return store_->Contains(id); }));  // not aborted by the stranger
  Status twice = OnLoop([&] { return store_->Seal(/*client=*/1, id); });
  EXPECT_EQ(twice.code(), StatusCode::kFailedPrecondition) << twice;
  Status unknown = OnLoop([&] { return store_->Abort(/*client=*/1, ObjectID::FromRandom()); });
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound) << unknown;
  auto got = Get(2, {id}, /*timeout_ms=*/1000);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].found) << got[0].error;
  Release(2, id);
}

TEST_F(ObjectStoreTest, GetWaitsForSealAndPinsUntilRelease) {
  ObjectID id = ObjectID::FromRandom();
  std::promise<std::vector<GetEntry>> got;
  loop_.Post([&] { store_->Get(2, {id}, -1, [&](std::vector<GetEntry> e) { got.set_value(e); }); });
  auto fut = got.get_future();
  EXPECT_EQ(fut.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  Put(1, id, 1000, 'a');
  auto entries = fut.get();
  ASSERT_TRUE(entries[0].found);
  EXPECT_EQ(entries[0].data_size, 1000);
  EXPECT_EQ(store_->base()[entries[0].offset + 999], 'a');
  EXPECT_EQ(Stats().pinned, Allocator::Rounded(1000));
  Free(id);  // the owner is done, but a reader still maps it
  EXPECT_EQ(Stats().num_objects, 1);
  Release(2, id);
  EXPECT_EQ(Stats().num_objects, 0);
  EXPECT_EQ(Stats().used, 0);
}

TEST_F(ObjectStoreTest, GetTimesOutForAMissingObject) {
  auto entries = Get(1, {ObjectID::FromRandom()}, 50);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_FALSE(entries[0].found);
}

TEST_F(ObjectStoreTest, ObjectLargerThanTheStoreFailsAtOnceNamingTheSizes) {
  CreateResult r = Create(1, ObjectID::FromRandom(), 2 << 20);
  EXPECT_EQ(r.status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status.message().find("larger than the whole object store"), std::string::npos)
      << r.status;
  EXPECT_NE(r.status.message().find("2.0 MiB"), std::string::npos) << r.status;
}

TEST_F(ObjectStoreTest, SpillsUnpinnedObjectsAndRestoresThemOnGet) {
  std::vector<ObjectID> ids;
  for (int i = 0; i < 6; ++i) {  // 6 x 300 KiB > 1 MiB capacity
    ids.push_back(ObjectID::FromRandom());
    Put(1, ids.back(), 300 << 10, static_cast<char>('a' + i));
  }
  StoreStats s = Stats();
  EXPECT_GT(s.num_spilled, 0);
  EXPECT_LE(s.used, s.capacity);
  for (int i = 0; i < 6; ++i) {
    auto e = Get(1, {ids[i]}, 5000);
    ASSERT_TRUE(e[0].found) << "object " << i << ": " << e[0].error;
    const uint8_t* p = store_->base() + e[0].offset;
    EXPECT_EQ(p[0], 'a' + i);
    EXPECT_EQ(p[(300 << 10) - 1], 'a' + i);
    Release(1, ids[i]);
  }
  EXPECT_GT(Stats().restored_bytes_total, 0);
  for (auto& id : ids) Free(id);
  EXPECT_EQ(Stats().num_objects, 0);
  EXPECT_EQ(Stats().spilled_bytes, 0);
}

// Freed pages stay in RAM until the store gives them back; the objects still stored keep every
// byte, and the given-back memory is usable again.
TEST_F(ObjectStoreTest, TrimGivesBackFreePagesAndKeepsLiveObjects) {
  constexpr int64_t kSize = 256 << 10;
  const ObjectID kept = ObjectID::FromRandom(), a = ObjectID::FromRandom(),
                 b = ObjectID::FromRandom();
  Put(1, kept, kSize, 'k');
  Put(1, a, kSize, 'a');
  Put(1, b, kSize, 'b');
  Free(a);
  Free(b);
  const int64_t resident = OnLoop([&] { return store_->ResidentBytes(); });
  EXPECT_GE(resident, 3 * kSize);  // freed, still warm
  const int64_t released = OnLoop([&] { return store_->Trim(0); });
  EXPECT_GE(released, 2 * kSize - 2 * 4096);
  StoreStats s = Stats();
  EXPECT_LE(s.resident, kSize + 2 * 4096);
  EXPECT_EQ(s.released_total, released);
  auto e = Get(1, {kept}, 1000);
  ASSERT_TRUE(e[0].found);
  const uint8_t* p = store_->base() + e[0].offset;
  EXPECT_EQ(std::count(p, p + kSize, 'k'), kSize);
  Release(1, kept);
  // A later object lands in the given-back range and reads as written.
  const ObjectID c = ObjectID::FromRandom();
  Put(1, c, 2 * kSize, 'c');
  e = Get(1, {c}, 1000);
  ASSERT_TRUE(e[0].found);
  p = store_->base() + e[0].offset;
  EXPECT_EQ(std::count(p, p + 2 * kSize, 'c'), 2 * kSize);
  Release(1, c);
  // Nothing to give back beyond what is kept.
  const int64_t now = Stats().resident;
  EXPECT_EQ(OnLoop([&] { return store_->Trim(now); }), 0);
}

TEST_F(ObjectStoreTest, CreateFailsAfterTheGracePeriodWhenEverythingIsPinned) {
  ObjectID a = ObjectID::FromRandom();
  Put(1, a, 700 << 10, 'x');
  ASSERT_TRUE(Get(2, {a}, 1000)[0].found);  // pinned by a reader: cannot spill
  CreateResult r = Create(1, ObjectID::FromRandom(), 600 << 10);
  EXPECT_EQ(r.status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status.message().find("pinned"), std::string::npos) << r.status;
  Release(2, a);
  CreateResult ok = Create(1, ObjectID::FromRandom(), 600 << 10);  // now `a` can spill
  EXPECT_TRUE(ok.status.ok()) << ok.status;
}

TEST_F(ObjectStoreTest, ADisconnectedClientLosesItsPinsAndUnsealedObjects) {
  ObjectID sealed = ObjectID::FromRandom();
  Put(1, sealed, 1000, 'z');
  ASSERT_TRUE(Get(7, {sealed}, 1000)[0].found);
  ObjectID unsealed = ObjectID::FromRandom();
  ASSERT_TRUE(Create(7, unsealed, 1000).status.ok());
  OnLoop([&] {
    store_->ClientGone(7);
    return 0;
  });
  EXPECT_EQ(Stats().pinned, 0);
  EXPECT_FALSE(OnLoop([&] { return store_->Contains(unsealed); }));
  EXPECT_TRUE(OnLoop([&] { return store_->Contains(sealed); }));
}

}  // namespace
}  // namespace lumen::object_store
