// fuzz_block: the block decoder, Batch::FromBuffer, on arbitrary bytes. A block that decodes
// must be safe to use: every column of every type is read end to end, and the operators that
// copy rows out of a block (Slice, TakeRows, Concat, SelectColumns, BatchToRows) run on it.
// Throwing lumen::Error (TypeError: "not a valid lumen::data block: ...") is the expected
// answer to garbage; anything else (a sanitizer report, another exception) is a finding.
//
// LUMEN_FUZZ_WRITE_SEEDS=<dir> fuzz_block writes the seed corpus (valid blocks) and exits.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "batch_check.h"
#include "data/block_format.h"
#include "data/chain.h"
#include "lumen/data/batch.h"
#include "lumen/errors.h"

namespace lumen::fuzz {
namespace {

using data::Batch;
using data::BatchBuilder;
using data::DataType;

void Check(const uint8_t* data, size_t size) {
  // As blocks arrive from the object store: in 64-byte-aligned memory.
  Buffer buffer = Buffer::Allocate(size);
  if (size > 0) std::memcpy(buffer.mutable_data(), data, size);
  Batch b;
  try {
    b = Batch::FromBuffer(Buffer(buffer.data(), buffer.size(), buffer.owner()));
  } catch (const Error&) {
    return;  // refused: the expected answer to garbage
  }
  TouchEveryColumn(b);
  const int64_t n = b.NumRows();
  // The operators below may refuse a block that decodes (duplicate column names, a tensor in
  // row form): with lumen::Error, never by crashing.
  try {
    TouchEveryColumn(b.Slice(n / 3, n / 2));
    if (n > 0) TouchEveryColumn(b.TakeRows({n - 1, 0, n / 2}));
    TouchEveryColumn(Batch::Concat({b, b}));
    auto names = b.ColumnNames();
    if (!names.empty()) TouchEveryColumn(b.SelectColumns({names.back()}));
  } catch (const Error&) {
  }
  // A column-less block may claim any number of rows (by design: SelectColumns({}) keeps the
  // count), and BatchToRows makes one Row each; with a column, rows are bounded by its bytes.
  if (b.NumColumns() == 0) return;
  try {
    g_sink.fetch_add(data::internal::BatchToRows(b).size(), std::memory_order_relaxed);
  } catch (const Error&) {
  }
}

// ---- seeds -------------------------------------------------------------------------------

void WriteSeed(const std::string& dir, const std::string& name, const Batch& b) {
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(b.buffer().data(), 1, b.buffer().size(), f);
  std::fclose(f);
}

void WriteSeeds(const std::string& dir) {
  WriteSeed(dir, "empty", Batch());
  WriteSeed(dir, "int_float_bool",
            BatchBuilder()
                .AddInt64("id", {1, -2, 3})
                .AddFloat64("x", {0.5, -1e300, 3})
                .AddBool("ok", {1, 0, 1})
                .Build());
  WriteSeed(dir, "strings",
            BatchBuilder()
                .AddString("path", {"a/b.txt", "", "ü"})
                .AddBinary("bytes", std::vector<std::string>{"\x01\x02", "", "z"})
                .Build());
  WriteSeed(dir, "tensors",
            BatchBuilder()
                .AddTensorFloat32("img", {2, 2}, {1, 2, 3, 4, 5, 6, 7, 8})
                .AddTensorUInt8("mask", {1, 4}, {1, 0, 1, 0, 0, 1, 1, 1})
                .AddTensorFloat64("v", {1}, {1.5, 2.5})
                .Build());
  WriteSeed(dir, "nulls",
            BatchBuilder()
                .AddInt64("n", {1, 0, 3})
                .AddString("s", {"a", "", "c"})
                .SetValidity("n", {1, 0, 1})
                .SetValidity("s", {0, 1, 1})
                .Build());
  WriteSeed(dir, "path_bytes",
            data::internal::MakePathBytesBlock(
                {"x", "yy"}, {3, 0}, [](size_t, uint8_t* dst) { std::memcpy(dst, "abc", 3); }));
}

}  // namespace
}  // namespace lumen::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("LUMEN_FUZZ_WRITE_SEEDS")) {
    lumen::fuzz::WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lumen::fuzz::Check(data, size);
  return 0;
}
