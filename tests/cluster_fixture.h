// Shared fixture: one embedded cluster per test suite (real worker processes).
#pragma once

#include <gtest/gtest.h>

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

}  // namespace lumen::testing
