// Entry point of every Lumen test binary. Workers run the test binary itself: when the
// process is a worker, lumen::Init serves tasks and never returns, so no test runs twice.
#include <gtest/gtest.h>

#include <cstdlib>

#include "lumen/lumen.h"

int main(int argc, char** argv) {
  if (const char* role = std::getenv("LUMEN_ROLE"); role && std::string(role) == "worker") {
    lumen::Init(argc, argv);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
