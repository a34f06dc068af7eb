// What the lumen::data test files share: an embedded two-CPU cluster per test suite and a
// fresh temporary directory per test. Test-only code.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace lumen::testing {

// Execution without progress bars (tests' output stays readable).
inline data::ExecutionOptions Quiet() {
  data::ExecutionOptions o;
  o.progress = false;
  return o;
}

// A write's records in its output directory (manifest, _SUCCESS, lock, overwrite staging), not
// its output.
inline bool IsWriteRecord(const std::string& name) {
  return name == "_lumen_manifest.json" || name == "_SUCCESS" || name.starts_with(".lumen-");
}

// Iterates `ds`, sampling at every batch the object store's bytes in use above what it held
// before: the most seen and the rows.
struct StorePeak {
  int64_t most = 0;
  int64_t rows = 0;
};
inline StorePeak IterateSamplingTheStore(const data::Dataset& ds) {
  const int64_t before = lumen::GetObjectStoreStats().used;
  StorePeak peak;
  for (const auto& b : ds.IterBatches()) {
    peak.most = std::max(peak.most, lumen::GetObjectStoreStats().used - before);
    peak.rows += b.NumRows();
  }
  return peak;
}

// The cluster's CPUs.
inline int64_t ClusterCpus() {
  return static_cast<int64_t>(lumen::GetClusterResources().total.at("CPU"));
}

class DataFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen::InitOptions o;
    o.num_cpus = 2;
    o.object_store_memory = 256ll << 20;
    lumen::Init(o);
  }
  static void TearDownTestSuite() { lumen::Shutdown(); }
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("lumen-" + std::string(info->test_suite_name()) + "-" + std::to_string(::getpid()) +
            "-" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }
  void WriteFile(const std::string& rel, const std::string& content) const {
    std::filesystem::create_directories(std::filesystem::path(Path(rel)).parent_path());
    std::ofstream(Path(rel), std::ios::binary) << content;
  }
  static std::string ReadFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::filesystem::path dir_;
};

}  // namespace lumen::testing
