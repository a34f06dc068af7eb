// Batch: a columnar block of rows — the unit lumen::data moves between stages.
//
// A batch is one contiguous, 64-byte-aligned buffer (see docs/design/block.md) holding a
// schema and typed columns: int64, float64, bool, string, binary, and fixed-shape tensors.
// It lives in the object store as a lumen::Buffer and user functions read it in place: column
// accessors return spans and string views into the buffer, never copies. Copying a Batch is
// cheap (it shares the buffer). Thread-safe for concurrent reads.
//
// @code
//   ld::Batch Tag(const ld::Batch& in) {
//     auto paths = in.String("path");
//     std::vector<int64_t> lengths;
//     for (size_t i = 0; i < paths.size(); ++i) lengths.push_back(paths[i].size());
//     return ld::BatchBuilder(in).AddInt64("path_length", std::move(lengths)).Build();
//   }
// @endcode
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lumen/buffer.h"
#include "lumen/serialization.h"

namespace lumen::data {

enum class DataType : uint8_t {
  kInt64 = 1,
  kFloat64 = 2,
  kBool = 3,
  kString = 4,
  kBinary = 5,
  kTensorFloat32 = 6,
  kTensorFloat64 = 7,
  kTensorInt64 = 8,
  kTensorUInt8 = 9,
  // 8-bit images whose size differs from row to row (ReadImages without a target size): each
  // value is {height, width, channels} pixels; see lumen/data/image.h.
  kImage = 10,
};

const char* DataTypeName(DataType type);

// Values of a string or binary column; element i is a view into the batch's buffer.
class StringColumn {
 public:
  StringColumn() = default;
  StringColumn(const Buffer* owner, const int64_t* offsets, const char* data, size_t rows)
      : owner_(owner), offsets_(offsets), data_(data), rows_(rows) {}
  size_t size() const { return rows_; }
  std::string_view operator[](size_t i) const {
    return std::string_view(data_ + offsets_[i],
                            static_cast<size_t>(offsets_[i + 1] - offsets_[i]));
  }
  // Element i as a Buffer sharing the batch's memory (no copy).
  Buffer Value(size_t i) const;
  // Total bytes of all values.
  int64_t TotalBytes() const { return rows_ ? offsets_[rows_] - offsets_[0] : 0; }

 private:
  const Buffer* owner_ = nullptr;
  const int64_t* offsets_ = nullptr;
  const char* data_ = nullptr;
  size_t rows_ = 0;
};

// Values of a fixed-shape tensor column: row i is `row_size()` contiguous elements.
template <class T>
class TensorColumn {
 public:
  TensorColumn() = default;
  TensorColumn(const T* data, size_t rows, std::vector<int64_t> shape)
      : data_(data), rows_(rows), shape_(std::move(shape)) {
    row_size_ = 1;
    for (int64_t d : shape_) row_size_ *= static_cast<size_t>(d);
  }
  size_t size() const { return rows_; }
  const std::vector<int64_t>& shape() const { return shape_; }  // shape of one row
  size_t row_size() const { return row_size_; }
  std::span<const T> operator[](size_t i) const { return {data_ + i * row_size_, row_size_}; }
  std::span<const T> values() const { return {data_, rows_ * row_size_}; }

 private:
  const T* data_ = nullptr;
  size_t rows_ = 0;
  size_t row_size_ = 0;
  std::vector<int64_t> shape_;
};

// One image: height * width * channels bytes, row-major, channels interleaved.
struct ImageView {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::span<const uint8_t> pixels;
};

// The images of a column: a kImage column, or a uint8 tensor column of shape {h, w, c} (or
// {h, w}: one channel). Element i is a view into the batch's buffer.
class ImageColumn {
 public:
  ImageColumn() = default;
  // A kImage column: value i is `offsets[i]..offsets[i+1]` of `data` (see block_format.h).
  static ImageColumn Variable(const int64_t* offsets, const uint8_t* data, size_t rows);
  static ImageColumn Fixed(const TensorColumn<uint8_t>& tensor);
  size_t size() const { return rows_; }
  ImageView operator[](size_t i) const;

 private:
  const int64_t* offsets_ = nullptr;  // variable: per-row offsets
  const uint8_t* data_ = nullptr;
  size_t rows_ = 0;
  int64_t height_ = 0, width_ = 0, channels_ = 0;  // fixed
};

class Batch;
namespace internal {  // lumen::data's own block operations (src/data), not part of the API
struct RowRange;
Batch ConcatRanges(const std::vector<RowRange>& ranges, const std::vector<std::string>& drop);
}  // namespace internal

class Batch {
 public:
  // An empty batch (no rows, no columns).
  Batch();
  // Wraps an encoded block; throws lumen::TypeError if the bytes are not a valid block.
  static Batch FromBuffer(Buffer buffer);

  int64_t NumRows() const;
  size_t NumColumns() const;
  std::vector<std::string> ColumnNames() const;
  bool HasColumn(std::string_view name) const;
  // Throws lumen::TypeError naming the column when it is missing.
  DataType ColumnType(std::string_view name) const;

  // Nulls. Any column may hold nulls (a JSON field missing from a row, an empty CSV field, a
  // null Value). Typed accessors below return every row; a null row's slot holds 0 or an
  // empty value, told apart by these. Each throws lumen::TypeError if the column is missing.
  bool IsNull(std::string_view column, int64_t row) const;
  int64_t NullCount(std::string_view column) const;
  // One byte per row, 1 where the row holds a value and 0 where it is null; empty when the
  // column has no nulls.
  std::span<const uint8_t> Validity(std::string_view column) const;

  // Typed accessors; each throws lumen::TypeError if the column is missing or of another type.
  std::span<const int64_t> Int64(std::string_view name) const;
  std::span<const double> Float64(std::string_view name) const;
  std::span<const uint8_t> Bool(std::string_view name) const;
  StringColumn String(std::string_view name) const;
  StringColumn Binary(std::string_view name) const;
  TensorColumn<float> TensorFloat32(std::string_view name) const;
  TensorColumn<double> TensorFloat64(std::string_view name) const;
  TensorColumn<int64_t> TensorInt64(std::string_view name) const;
  TensorColumn<uint8_t> TensorUInt8(std::string_view name) const;
  // A kImage column, or a uint8 tensor column of images ({h, w, c} or {h, w}).
  ImageColumn Images(std::string_view name) const;
  ImageView ImageAt(int64_t row, std::string_view column = "image") const;

  // Rows [offset, offset + length) as a new batch.
  Batch Slice(int64_t offset, int64_t length) const;
  // The given rows, in the given order (indices may repeat).
  Batch TakeRows(const std::vector<int64_t>& rows) const;
  Batch SelectColumns(const std::vector<std::string>& names) const;
  Batch DropColumns(const std::vector<std::string>& names) const;
  // Rows of `batches` one after the other; all must have the same columns.
  static Batch Concat(const std::vector<Batch>& batches);

  // Bytes of the encoded block.
  int64_t SizeBytes() const { return static_cast<int64_t>(buffer_.size()); }
  const Buffer& buffer() const { return buffer_; }

  // Per-block execution statistics written by lumen::data's tasks (internal).
  struct ExecStats {
    int64_t wall_us = 0;
    int64_t cpu_us = 0;
    int64_t rows_in = 0;   // rows the task consumed (read from files or received)
    int64_t bytes_in = 0;  // and their bytes
  };
  ExecStats exec_stats() const;
  void set_exec_stats(const ExecStats& s);  // only for a batch this process just built

 private:
  friend class BatchBuilder;
  explicit Batch(Buffer buffer);
  int FindColumn(std::string_view name) const;
  int RequireColumn(std::string_view name, DataType type) const;

  Buffer buffer_;
};

// Builds a batch column by column. Every column must have the same number of rows.
class BatchBuilder {
 public:
  BatchBuilder() = default;
  // Starts from the columns of `base` (shared, not re-encoded until Build).
  explicit BatchBuilder(const Batch& base);

  BatchBuilder& AddInt64(std::string name, std::vector<int64_t> values);
  BatchBuilder& AddFloat64(std::string name, std::vector<double> values);
  BatchBuilder& AddBool(std::string name, std::vector<uint8_t> values);
  BatchBuilder& AddString(std::string name, std::vector<std::string> values);
  BatchBuilder& AddBinary(std::string name, std::vector<std::string> values);
  BatchBuilder& AddBinary(std::string name, const std::vector<Buffer>& values);
  // Values already laid out end to end: value i is bytes[offsets[i], offsets[i+1]).
  BatchBuilder& AddBinaryConcatenated(std::string name, std::string bytes,
                                      std::vector<int64_t> offsets);
  // `values` holds rows × product(shape) elements, row-major.
  BatchBuilder& AddTensorFloat32(std::string name, std::vector<int64_t> shape,
                                 std::vector<float> values);
  // A float32 tensor column of `rows` rows written in place, in the encoded batch, when it is
  // built: `fill` gets its rows × product(shape) elements (uninitialised) and must write every
  // one. For large tensors (a batch of images as a model's input), it saves copying a vector
  // twice. Called by each Build, on its thread; an exception from it leaves Build.
  BatchBuilder& AddTensorFloat32(std::string name, std::vector<int64_t> shape, int64_t rows,
                                 std::function<void(std::span<float>)> fill);
  BatchBuilder& AddTensorFloat64(std::string name, std::vector<int64_t> shape,
                                 std::vector<double> values);
  BatchBuilder& AddTensorInt64(std::string name, std::vector<int64_t> shape,
                               std::vector<int64_t> values);
  BatchBuilder& AddTensorUInt8(std::string name, std::vector<int64_t> shape,
                               std::vector<uint8_t> values);
  // A kImage column: row i is images[i] (copied). Throws lumen::TypeError when an image's
  // pixels do not match its size.
  BatchBuilder& AddImages(std::string name, const std::vector<ImageView>& images);
  // Copies column `name` of `from` (same row count), optionally under another name.
  BatchBuilder& AddColumnFrom(const Batch& from, const std::string& name,
                              const std::string& as = "");
  // Replaces or removes a column added so far.
  BatchBuilder& Remove(const std::string& name);
  // Marks rows of column `name` (added before) null: valid[i] == 0 makes row i null. The
  // values of null rows are set to 0 or empty. Throws lumen::TypeError when the column is
  // missing or `valid` has another length.
  BatchBuilder& SetValidity(const std::string& name, std::vector<uint8_t> valid);

  // Encodes the batch. Throws lumen::TypeError when columns disagree on the number of rows or
  // a name repeats.
  Batch Build() const;

 private:
  friend class Batch;
  friend Batch internal::ConcatRanges(const std::vector<internal::RowRange>& ranges,
                                      const std::vector<std::string>& drop);
  struct Column {
    Column() = default;
    Column(std::string n, DataType t, std::vector<int64_t> s, int64_t r)
        : name(std::move(n)), type(t), shape(std::move(s)), rows(r) {}
    std::string name;
    DataType type = DataType::kInt64;
    std::vector<int64_t> shape;  // tensors: shape of one row
    int64_t rows = 0;
    // Fixed-width data, or variable-length values (offsets + bytes).
    std::string fixed;
    std::function<void(std::span<float>)> fill_float32;  // instead of `fixed`, written at Build
    std::vector<int64_t> offsets;
    std::string bytes;
    // A column taken from an existing batch: encoded at Build from there.
    Batch source;
    int source_index = -1;
    // One byte per row (0: null); empty: no nulls (or, for a source column, the source's).
    std::string validity;
    bool validity_set = false;
  };
  void Add(Column c);

  std::vector<Column> columns_;
};

}  // namespace lumen::data

// A Batch inside a task argument or result travels as its encoded bytes (read back in place).
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct pack<lumen::data::Batch> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const lumen::data::Batch& b) const {
      return o.pack(b.buffer());
    }
  };
  template <>
  struct convert<lumen::data::Batch> {
    const msgpack::object& operator()(const msgpack::object& o, lumen::data::Batch& b) const {
      lumen::Buffer buf;
      o.convert(buf);
      b = lumen::data::Batch::FromBuffer(std::move(buf));
      return o;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE
}  // namespace msgpack
