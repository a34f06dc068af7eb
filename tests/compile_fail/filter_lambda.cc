// Must not compile: a capturing lambda where lumen::data needs a registered function.
#include <lumen/data/dataset.h>

namespace ld = lumen::data;

ld::Dataset Plan(int64_t limit) {
  return ld::Range(10).Filter([limit](const ld::Row& r) { return r.GetInt64("id") < limit; });
}
