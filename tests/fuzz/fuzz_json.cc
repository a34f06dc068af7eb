// fuzz_json: the JSON lines reader (one object per line, types inferred across rows) on
// arbitrary text.
//
// Input: byte 0 chooses the setting, the rest is the file.
//   bit 0  project the field "a" (ReadJson(..., {.columns = {"a"}}))
//   bit 1  read the file twice
#include "fuzz_util.h"
#include "reader_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lumen::fuzz::InputReader in(data, size);
  const uint8_t mode = in.U8();
  lumen::data::internal::ReadSpec spec;
  spec.format = "json";
  if (mode & 1) spec.columns = {"a"};
  lumen::fuzz::ReadAndCheck(spec, in.Rest(), (mode & 2) ? 2 : 1);
  return 0;
}
