// Objects on an embedded cluster with a small store: reference counting frees memory,
// spilling keeps everything readable, oversize objects fail clearly, borrowed references
// keep objects alive.
#include <cstring>

#include <utility>

#include <gtest/gtest.h>
#include "lumen/lumen.h"

namespace {

lumen::Buffer Filled(size_t n, uint8_t v) {
  lumen::Buffer b = lumen::Buffer::Allocate(n);
  std::memset(b.mutable_data(), v, n);
  return b;
}

uint64_t Checksum(const lumen::Buffer& b) {
  uint64_t s = 0;
  for (size_t i = 0; i < b.size(); i += 512) s += b.data()[i];
  return s;
}

lumen::Buffer MakeBlock(int64_t n, int v) {
  return Filled(static_cast<size_t>(n), static_cast<uint8_t>(v));
}

class Holder {
 public:
  static Holder* Create() { return new Holder(); }
  void Keep(const std::vector<lumen::ObjectRef<lumen::Buffer>>& refs) { kept_ = refs; }
  uint64_t SumKept() {
    uint64_t s = 0;
    for (auto& r : kept_) s += Checksum(lumen::Get(r));
    return s;
  }
  void Drop() { kept_.clear(); }
  // Hands the refs back to the caller and lets go of them.
  std::vector<lumen::ObjectRef<lumen::Buffer>> GiveBack() { return std::exchange(kept_, {}); }

 private:
  std::vector<lumen::ObjectRef<lumen::Buffer>> kept_;
};

LUMEN_REMOTE(Checksum, MakeBlock, Holder::Create, &Holder::Keep, &Holder::SumKept, &Holder::Drop,
             &Holder::GiveBack);

constexpr int64_t kStore = 64ll << 20;

class ObjectTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen::InitOptions o;
    o.num_cpus = 2;
    o.object_store_memory = kStore;
    lumen::Init(o);
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }
};

TEST_F(ObjectTest, AnActorHandingTheOwnersOwnRefsBackKeepsThemAlive) {
  // The driver owns the objects and keeps no other reference: the actor's release of its
  // borrow must not free them before the reply that carries them back arrives.
  auto holder = lumen::Actor(Holder::Create).Remote();
  for (int round = 0; round < 30; ++round) {
    {
      std::vector<lumen::ObjectRef<lumen::Buffer>> refs;
      for (int i = 0; i < 4; ++i)
        refs.push_back(lumen::Put(Filled(1 << 20, static_cast<uint8_t>(i))));
      lumen::Get(holder.Task(&Holder::Keep).Remote(refs));
    }
    auto back = lumen::Get(holder.Task(&Holder::GiveBack).Remote());
    ASSERT_EQ(back.size(), 4u);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(Checksum(lumen::Get(back[static_cast<size_t>(i)])),
                Checksum(Filled(1 << 20, static_cast<uint8_t>(i))))
          << "round " << round;
    }
  }
}

TEST_F(ObjectTest, DroppingReferencesFreesTheStore) {
  const int64_t before = lumen::GetObjectStoreStats().used;
  for (int round = 0; round < 50; ++round) {
    auto ref = lumen::Put(Filled(8 << 20, 1));
    auto made = lumen::Task(MakeBlock).Remote(int64_t{4} << 20, 2);
    EXPECT_EQ(lumen::Get(lumen::Task(Checksum).Remote(made)), ((4u << 20) / 512) * 2);
  }  // every reference is gone
  auto stats = lumen::GetObjectStoreStats();
  EXPECT_EQ(stats.used, before);
  EXPECT_EQ(stats.spilled_bytes, 0);
  EXPECT_LE(stats.peak_used, kStore);
}

TEST_F(ObjectTest, MoreDataThanTheStoreSpillsAndComesBack) {
  std::vector<lumen::ObjectRef<lumen::Buffer>> refs;
  for (int i = 0; i < 12; ++i)
    refs.push_back(lumen::Put(Filled(10 << 20, static_cast<uint8_t>(i + 1))));
  auto stats = lumen::GetObjectStoreStats();
  EXPECT_GT(stats.num_spilled, 0);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(lumen::Get(lumen::Task(Checksum).Remote(refs[static_cast<size_t>(i)])),
              static_cast<uint64_t>((10 << 20) / 512) * static_cast<uint64_t>(i + 1));
  }
  EXPECT_GT(lumen::GetObjectStoreStats().restored_bytes, 0);
  refs.clear();
  stats = lumen::GetObjectStoreStats();
  EXPECT_EQ(stats.spilled_bytes, 0);  // spill files are deleted with their objects
}

TEST_F(ObjectTest, AnObjectLargerThanTheStoreFailsWithTheSizes) {
  try {
    lumen::Put(Filled(static_cast<size_t>(kStore) + (1 << 20), 1));
    FAIL();
  } catch (const lumen::ObjectStoreFullError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("65.0 MiB"), std::string::npos) << what;
    EXPECT_NE(what.find("64.0 MiB"), std::string::npos) << what;
  }
  // The same from a task's result.
  try {
    lumen::Get(lumen::Task(MakeBlock).Remote(kStore + (1 << 20), 1));
    FAIL();
  } catch (const lumen::ObjectStoreFullError& e) {
    EXPECT_NE(std::string(e.what()).find("MakeBlock"), std::string::npos) << e.what();
  }
}

TEST_F(ObjectTest, BorrowedReferencesKeepObjectsAlive) {
  auto holder = lumen::Actor(Holder::Create).Remote();
  uint64_t expected = 0;
  {
    std::vector<lumen::ObjectRef<lumen::Buffer>> refs;
    for (int i = 0; i < 3; ++i) {
      refs.push_back(lumen::Put(Filled(2 << 20, static_cast<uint8_t>(i + 1))));
      expected += static_cast<uint64_t>((2 << 20) / 512) * static_cast<uint64_t>(i + 1);
    }
    lumen::Get(holder.Task(&Holder::Keep).Remote(refs));
  }  // the driver dropped its references; the actor still borrows them
  EXPECT_EQ(lumen::Get(holder.Task(&Holder::SumKept).Remote()), expected);
  const int64_t with_borrows = lumen::GetObjectStoreStats().used;
  EXPECT_GE(with_borrows, 3 * (2 << 20));
  lumen::Get(holder.Task(&Holder::Drop).Remote());
  // RemoveBorrower reaches the driver, which frees: observe it through the store.
  bool freed = false;
  for (int i = 0; i < 500 && !freed; ++i) {
    freed = lumen::GetObjectStoreStats().used <= with_borrows - 3 * (2 << 20);
    if (!freed) lumen::Get(lumen::Task(Checksum).Remote(lumen::Buffer()));  // a round trip
  }
  EXPECT_TRUE(freed);
}

TEST_F(ObjectTest, GetOfABufferMapsWithoutCopying) {
  auto ref = lumen::Put(Filled(32 << 20, 7));
  lumen::Buffer a = lumen::Get(ref);
  lumen::Buffer b = lumen::Get(ref);
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(a.size(), size_t{32} << 20);
  EXPECT_GT(lumen::GetObjectStoreStats().pinned, 0);  // mapped by this process
}

}  // namespace
