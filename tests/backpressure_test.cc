// Submission backpressure: with a low LUMEN_MAX_PENDING_TASKS, submitting blocks and every
// task still completes.
#include <sys/resource.h>

#include <atomic>
#include <cstdlib>

#include "cluster_fixture.h"

namespace {

int Inc(int x) { return x + 1; }
LUMEN_REMOTE(Inc);

constexpr int kLimit = 50;

class BackpressureTest : public lumen::testing::EmbeddedCluster {
 protected:
  static void SetUpTestSuite() {
    // Read once per process, before the first use of the configuration (workers inherit it).
    ::setenv("LUMEN_MAX_PENDING_TASKS", std::to_string(kLimit).c_str(), 1);
    EmbeddedCluster::SetUpTestSuite();
  }
};

TEST_F(BackpressureTest, SubmittingFarMoreTasksThanTheLimitBlocksAndCompletes) {
  const int limit = kLimit;
  const int n = 100 * limit;
  int64_t sum = 0;
  std::vector<lumen::ObjectRef<int>> window;
  for (int i = 0; i < n; ++i) {
    window.push_back(lumen::Task(Inc).Remote(i));
    if (window.size() == 1000) {
      for (int v : lumen::Get(window)) sum += v;
      window.clear();
    }
  }
  for (int v : lumen::Get(window)) sum += v;
  EXPECT_EQ(sum, static_cast<int64_t>(n) * (n + 1) / 2);
}

}  // namespace
