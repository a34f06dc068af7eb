// fuzz_csv: the CSV reader (RFC 4180 quoting, header, type inference) on arbitrary text.
//
// Input: byte 0 chooses the setting, the rest is the file.
//   bits 0-1  delimiter: ',' '\t' ';' '|'
//   bit 2     project the column "a" (ReadCsv(..., {.columns = {"a"}}))
//   bit 3     read the file twice (a second file's header must match the first's)
#include "fuzz_util.h"
#include "reader_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lumen::fuzz::InputReader in(data, size);
  const uint8_t mode = in.U8();
  lumen::data::internal::ReadSpec spec;
  spec.format = "csv";
  spec.delimiter = ",\t;|"[mode & 3];
  if (mode & 4) spec.columns = {"a"};
  lumen::fuzz::ReadAndCheck(spec, in.Rest(), (mode & 8) ? 2 : 1);
  return 0;
}
