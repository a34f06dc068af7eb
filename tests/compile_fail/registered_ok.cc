// Must compile: registered functions, function pointers and callable classes are accepted.
#include <lumen/data/dataset.h>

namespace ld = lumen::data;

ld::Batch Same(const ld::Batch& b) { return b; }
bool Small(const ld::Row& r) { return r.GetInt64("id") < 5; }
struct Model {
  ld::Batch operator()(const ld::Batch& b) { return b; }
};
LUMEN_REMOTE(Same, Small);
LUMEN_DATA_CALLABLE(Model);

ld::Dataset Plan() {
  ld::BatchFn fn = Same;
  return ld::Range(10)
      .MapBatches(Same)
      .MapBatches(&Same, {.batch_size = 2})
      .MapBatches(fn)
      .Filter(Small)
      .MapBatches<Model>({})
      .MapBatches<Model>({.concurrency = 1});
}
