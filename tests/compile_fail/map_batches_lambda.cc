// Must not compile: a lambda where lumen::data needs a registered function.
#include <lumen/data/dataset.h>

namespace ld = lumen::data;

ld::Dataset Plan() {
  return ld::Range(10).MapBatches([](const ld::Batch& b) { return b; });
}
