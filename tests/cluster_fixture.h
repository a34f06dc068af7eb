// Shared fixture: one embedded cluster per test suite (real worker processes).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "lumen/lumen.h"

namespace lumen::testing {

class EmbeddedCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    InitOptions o;
    o.num_cpus = 2;
    o.object_store_memory = 512ll << 20;
    lumen::Init(o);
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }
};

// The same, with a fresh directory per test (`dir_`) for files tasks and the test exchange.
class EmbeddedClusterWithDir : public EmbeddedCluster {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/lumen-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// Files as signals between the test and its tasks (which run in other processes).
inline void Touch(const std::string& path) {
  if (FILE* f = std::fopen(path.c_str(), "w")) std::fclose(f);
}

// Waits (up to a minute) for a file another process writes.
inline bool AwaitFile(const std::string& path) {
  for (int i = 0; i < 6000; ++i) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace lumen::testing
