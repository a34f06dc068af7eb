// The encoded layout of a lumen::data block (docs/design/block.md). Internal to src/data.
#pragma once

#include <cstdint>
#include <cstring>

namespace lumen::data::internal {

constexpr char kBlockMagic[4] = {'L', 'B', 'K', '2'};
constexpr int64_t kBlockAlign = 64;
constexpr int kMaxTensorDims = 3;

struct BlockHeader {
  char magic[4];
  uint32_t ncols;
  int64_t nrows;
  int64_t total_size;
  int64_t names_offset;
  int64_t wall_us;  // execution statistics of the task that made the block
  int64_t cpu_us;
  int64_t rows_in;  // what that task consumed: rows and bytes read or received
  int64_t bytes_in;
};
static_assert(sizeof(BlockHeader) == 64);

struct ColumnDesc {
  uint32_t name_offset;  // within the names area
  uint32_t name_len;
  uint8_t type;
  uint8_t ndim;  // tensors: dimensions of one row
  uint8_t pad[6];
  int64_t shape[kMaxTensorDims];
  int64_t data_offset;  // from the start of the block
  int64_t data_size;
  int64_t offsets_offset;  // variable-length columns: nrows + 1 int64 offsets; else -1
  // Nulls: nrows bytes, 1 where the row holds a value, 0 where it is null; -1 when the column
  // has no nulls. A null row's slot in the data holds 0 (or an empty value).
  int64_t validity_offset;
  int64_t null_count;
  uint8_t reserved[48];
};
static_assert(sizeof(ColumnDesc) == 128);

// A kImage value (a variable-length column): this header, then height * width * channels
// bytes of pixels.
struct ImageValueHeader {
  int32_t height;
  int32_t width;
  int32_t channels;
  int32_t reserved;
};
static_assert(sizeof(ImageValueHeader) == 16);

inline int64_t AlignUp(int64_t n) { return (n + kBlockAlign - 1) / kBlockAlign * kBlockAlign; }

}  // namespace lumen::data::internal

#include <functional>
#include <string>
#include <vector>

#include "lumen/data/batch.h"

namespace lumen::data::internal {

// A block with a string column `path` and a binary column `bytes` whose values are filled in
// place: fill(i, dst) writes the sizes[i] bytes of value i to dst. One allocation, no copies
// (readers read files straight into the block).
// Rows [offset, offset + length) of each batch, concatenated in order, without the columns
// named in `drop`: one copy where Slice, DropColumns and Concat would copy three times. The
// batches have the same columns (TypeError otherwise, as Batch::Concat).
struct RowRange {
  const Batch* batch;
  int64_t offset;
  int64_t length;
};
Batch ConcatRanges(const std::vector<RowRange>& ranges, const std::vector<std::string>& drop);

Batch MakePathBytesBlock(const std::vector<std::string>& paths, const std::vector<int64_t>& sizes,
                         const std::function<void(size_t, uint8_t*)>& fill);

}  // namespace lumen::data::internal
