// A driver that returns from main without lumen::Shutdown() (cli_test): its embedded cluster
// must still stop in order, without the driver waiting for a control service that is gone.
#include <cstdio>

#include "lumen/lumen.h"

int Twice(int x) { return 2 * x; }
LUMEN_REMOTE(Twice);

int main(int argc, char** argv) {
  lumen::Init(argc, argv);
  std::printf("%d\n", lumen::Get(lumen::Task(Twice).Remote(21)));
  return 0;  // no lumen::Shutdown()
}
