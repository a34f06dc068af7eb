#include "lumen/data/batch.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "data/block_format.h"
#include "lumen/errors.h"

namespace lumen::data {

using internal::AlignUp;
using internal::BlockHeader;
using internal::ColumnDesc;

namespace {

size_t FixedWidth(DataType t) {
  switch (t) {
    case DataType::kInt64:
    case DataType::kFloat64:
    case DataType::kTensorFloat64:
    case DataType::kTensorInt64:
      return 8;
    case DataType::kTensorFloat32:
      return 4;
    case DataType::kBool:
    case DataType::kTensorUInt8:
      return 1;
    default:
      return 0;  // variable length
  }
}

bool IsVariable(DataType t) {
  return t == DataType::kString || t == DataType::kBinary || t == DataType::kImage;
}

// Whether value `v` of a kImage column is a header and exactly the pixels it announces (or
// empty: a null row).
bool ValidImageValue(const uint8_t* v, int64_t len) {
  if (len == 0) return true;
  if (len < static_cast<int64_t>(sizeof(internal::ImageValueHeader))) return false;
  internal::ImageValueHeader h;
  std::memcpy(&h, v, sizeof(h));
  if (h.height < 0 || h.width < 0 || h.channels < 1 || h.channels > 4) return false;
  return int64_t{h.height} * h.width * h.channels ==
         len - static_cast<int64_t>(sizeof(internal::ImageValueHeader));
}

const BlockHeader* Header(const Buffer& b) {
  return reinterpret_cast<const BlockHeader*>(b.data());
}
const ColumnDesc* Desc(const Buffer& b, int i) {
  return reinterpret_cast<const ColumnDesc*>(b.data() + sizeof(BlockHeader)) + i;
}

// The encoding of a batch with no rows and no columns.
Buffer EmptyBlock() {
  static const Buffer empty = [] {
    Buffer b = Buffer::Allocate(sizeof(BlockHeader));
    BlockHeader h{};
    std::memcpy(h.magic, internal::kBlockMagic, 4);
    h.total_size = sizeof(BlockHeader);
    h.names_offset = sizeof(BlockHeader);
    std::memcpy(b.mutable_data(), &h, sizeof(h));
    return Buffer(b.data(), b.size(), b.owner());
  }();
  return empty;
}

}  // namespace

const char* DataTypeName(DataType type) {
  switch (type) {
    case DataType::kInt64:
      return "int64";
    case DataType::kFloat64:
      return "float64";
    case DataType::kBool:
      return "bool";
    case DataType::kString:
      return "string";
    case DataType::kBinary:
      return "binary";
    case DataType::kTensorFloat32:
      return "tensor<float32>";
    case DataType::kTensorFloat64:
      return "tensor<float64>";
    case DataType::kTensorInt64:
      return "tensor<int64>";
    case DataType::kTensorUInt8:
      return "tensor<uint8>";
    case DataType::kImage:
      return "image";
  }
  return "unknown";
}

Buffer StringColumn::Value(size_t i) const {
  const auto* p = reinterpret_cast<const uint8_t*>(data_ + offsets_[i]);
  return Buffer(p, static_cast<size_t>(offsets_[i + 1] - offsets_[i]), owner_->owner());
}

Batch::Batch() : buffer_(EmptyBlock()) {}
Batch::Batch(Buffer buffer) : buffer_(std::move(buffer)) {}

Batch Batch::FromBuffer(Buffer buffer) {
  auto fail = [](const std::string& why) -> Batch {
    throw TypeError("not a valid lumen::data block: " + why);
  };
  // Columns are read in place as int64/double arrays: they need aligned memory. Blocks in
  // the object store are 64-byte aligned; bytes that arrive inside another value (a Buffer in
  // a msgpack struct) may not be, and are copied.
  if (reinterpret_cast<uintptr_t>(buffer.data()) % 8 != 0) {
    Buffer aligned = Buffer::Allocate(buffer.size());
    std::memcpy(aligned.mutable_data(), buffer.data(), buffer.size());
    buffer = Buffer(aligned.data(), aligned.size(), aligned.owner());
  }
  const int64_t size = static_cast<int64_t>(buffer.size());
  if (size < static_cast<int64_t>(sizeof(BlockHeader))) return fail("too short");
  const BlockHeader* h = Header(buffer);
  if (std::memcmp(h->magic, internal::kBlockMagic, 4) != 0) return fail("bad magic");
  if (h->total_size != size) return fail("size mismatch");
  if (h->nrows < 0) return fail("negative row count");
  int64_t descs_end = static_cast<int64_t>(sizeof(BlockHeader)) +
                      static_cast<int64_t>(h->ncols) * static_cast<int64_t>(sizeof(ColumnDesc));
  if (descs_end > size || h->names_offset < descs_end || h->names_offset > size) {
    return fail("column table out of bounds");
  }
  // [offset, offset + length) lies inside the block (no sum can overflow: fields are untrusted).
  auto inside = [size](int64_t offset, int64_t length) {
    return offset >= 0 && length >= 0 && offset <= size && length <= size - offset;
  };
  for (uint32_t i = 0; i < h->ncols; ++i) {
    const ColumnDesc* d = Desc(buffer, static_cast<int>(i));
    if (h->names_offset + d->name_offset + d->name_len > size) return fail("name out of bounds");
    auto type = static_cast<DataType>(d->type);
    if (d->type < 1 || d->type > 10) return fail("unknown column type");
    if (!inside(d->data_offset, d->data_size)) return fail("column data out of bounds");
    // Every column's shape is copied by Slice/TakeRows/Concat, not only a tensor's.
    if (d->ndim > internal::kMaxTensorDims) return fail("too many tensor dimensions");
    if (d->validity_offset != -1 && (h->nrows > size || !inside(d->validity_offset, h->nrows) ||
                                     d->null_count < 0 || d->null_count > h->nrows)) {
      return fail("validity out of bounds");
    }
    if (IsVariable(type)) {
      // Offsets are read in place as int64s.
      if (h->nrows > size / 8 || d->offsets_offset % 8 != 0 ||
          !inside(d->offsets_offset, (h->nrows + 1) * 8)) {
        return fail("offsets out of bounds");
      }
      const auto* off = reinterpret_cast<const int64_t*>(buffer.data() + d->offsets_offset);
      if (off[0] != 0) return fail("offsets do not start at 0");
      for (int64_t r = 0; r < h->nrows; ++r) {
        if (off[r + 1] < off[r]) return fail("offsets not increasing");
      }
      if (off[h->nrows] > d->data_size) return fail("values out of bounds");
      if (type == DataType::kImage) {
        const uint8_t* data = buffer.data() + d->data_offset;
        for (int64_t r = 0; r < h->nrows; ++r) {
          if (!ValidImageValue(data + off[r], off[r + 1] - off[r])) return fail("bad image value");
        }
      }
    } else {
      int64_t per_row = static_cast<int64_t>(FixedWidth(type));
      if (d->data_offset % per_row != 0) return fail("column data not aligned");
      for (int k = 0; k < d->ndim; ++k) {
        if (d->shape[k] <= 0) return fail("bad tensor shape");
        if (__builtin_mul_overflow(per_row, d->shape[k], &per_row)) {
          return fail("tensor shape too large");
        }
      }
      int64_t need;
      if (__builtin_mul_overflow(per_row, h->nrows, &need) || d->data_size < need) {
        return fail("column shorter than its rows");
      }
    }
  }
  return Batch(std::move(buffer));
}

int64_t Batch::NumRows() const { return Header(buffer_)->nrows; }
size_t Batch::NumColumns() const { return Header(buffer_)->ncols; }

std::vector<std::string> Batch::ColumnNames() const {
  std::vector<std::string> out;
  const BlockHeader* h = Header(buffer_);
  for (uint32_t i = 0; i < h->ncols; ++i) {
    const ColumnDesc* d = Desc(buffer_, static_cast<int>(i));
    out.emplace_back(
        reinterpret_cast<const char*>(buffer_.data() + h->names_offset + d->name_offset),
        d->name_len);
  }
  return out;
}

int Batch::FindColumn(std::string_view name) const {
  const BlockHeader* h = Header(buffer_);
  for (uint32_t i = 0; i < h->ncols; ++i) {
    const ColumnDesc* d = Desc(buffer_, static_cast<int>(i));
    std::string_view n(
        reinterpret_cast<const char*>(buffer_.data() + h->names_offset + d->name_offset),
        d->name_len);
    if (n == name) return static_cast<int>(i);
  }
  return -1;
}

bool Batch::HasColumn(std::string_view name) const { return FindColumn(name) >= 0; }

DataType Batch::ColumnType(std::string_view name) const {
  int i = FindColumn(name);
  if (i < 0) {
    std::string cols;
    for (const auto& c : ColumnNames()) cols += (cols.empty() ? "" : ", ") + c;
    throw TypeError("no column '" + std::string(name) + "' in the batch (columns: " + cols + ")");
  }
  return static_cast<DataType>(Desc(buffer_, i)->type);
}

int Batch::RequireColumn(std::string_view name, DataType type) const {
  DataType actual = ColumnType(name);
  if (actual != type) {
    throw TypeError("column '" + std::string(name) + "' holds " + DataTypeName(actual) + ", not " +
                    DataTypeName(type));
  }
  return FindColumn(name);
}

bool Batch::IsNull(std::string_view column, int64_t row) const {
  std::span<const uint8_t> valid = Validity(column);
  if (row < 0 || row >= NumRows()) {
    throw TypeError("row " + std::to_string(row) + " out of range (batch has " +
                    std::to_string(NumRows()) + " rows)");
  }
  return !valid.empty() && valid[static_cast<size_t>(row)] == 0;
}

int64_t Batch::NullCount(std::string_view column) const {
  ColumnType(column);  // throws, listing the columns
  const ColumnDesc* d = Desc(buffer_, FindColumn(column));
  return d->validity_offset < 0 ? 0 : d->null_count;
}

std::span<const uint8_t> Batch::Validity(std::string_view column) const {
  ColumnType(column);
  const ColumnDesc* d = Desc(buffer_, FindColumn(column));
  if (d->validity_offset < 0) return {};
  return {buffer_.data() + d->validity_offset, static_cast<size_t>(NumRows())};
}

std::span<const int64_t> Batch::Int64(std::string_view name) const {
  const ColumnDesc* d = Desc(buffer_, RequireColumn(name, DataType::kInt64));
  return {reinterpret_cast<const int64_t*>(buffer_.data() + d->data_offset),
          static_cast<size_t>(NumRows())};
}

std::span<const double> Batch::Float64(std::string_view name) const {
  const ColumnDesc* d = Desc(buffer_, RequireColumn(name, DataType::kFloat64));
  return {reinterpret_cast<const double*>(buffer_.data() + d->data_offset),
          static_cast<size_t>(NumRows())};
}

std::span<const uint8_t> Batch::Bool(std::string_view name) const {
  const ColumnDesc* d = Desc(buffer_, RequireColumn(name, DataType::kBool));
  return {buffer_.data() + d->data_offset, static_cast<size_t>(NumRows())};
}

StringColumn Batch::String(std::string_view name) const {
  const ColumnDesc* d = Desc(buffer_, RequireColumn(name, DataType::kString));
  return StringColumn(&buffer_,
                      reinterpret_cast<const int64_t*>(buffer_.data() + d->offsets_offset),
                      reinterpret_cast<const char*>(buffer_.data() + d->data_offset),
                      static_cast<size_t>(NumRows()));
}

StringColumn Batch::Binary(std::string_view name) const {
  const ColumnDesc* d = Desc(buffer_, RequireColumn(name, DataType::kBinary));
  return StringColumn(&buffer_,
                      reinterpret_cast<const int64_t*>(buffer_.data() + d->offsets_offset),
                      reinterpret_cast<const char*>(buffer_.data() + d->data_offset),
                      static_cast<size_t>(NumRows()));
}

namespace {
template <class T>
TensorColumn<T> Tensor(const Buffer& b, const ColumnDesc* d, int64_t rows) {
  std::vector<int64_t> shape(d->shape, d->shape + d->ndim);
  return TensorColumn<T>(reinterpret_cast<const T*>(b.data() + d->data_offset),
                         static_cast<size_t>(rows), std::move(shape));
}
}  // namespace

TensorColumn<float> Batch::TensorFloat32(std::string_view name) const {
  return Tensor<float>(buffer_, Desc(buffer_, RequireColumn(name, DataType::kTensorFloat32)),
                       NumRows());
}
TensorColumn<double> Batch::TensorFloat64(std::string_view name) const {
  return Tensor<double>(buffer_, Desc(buffer_, RequireColumn(name, DataType::kTensorFloat64)),
                        NumRows());
}
TensorColumn<int64_t> Batch::TensorInt64(std::string_view name) const {
  return Tensor<int64_t>(buffer_, Desc(buffer_, RequireColumn(name, DataType::kTensorInt64)),
                         NumRows());
}
TensorColumn<uint8_t> Batch::TensorUInt8(std::string_view name) const {
  return Tensor<uint8_t>(buffer_, Desc(buffer_, RequireColumn(name, DataType::kTensorUInt8)),
                         NumRows());
}

ImageColumn ImageColumn::Variable(const int64_t* offsets, const uint8_t* data, size_t rows) {
  ImageColumn c;
  c.offsets_ = offsets;
  c.data_ = data;
  c.rows_ = rows;
  return c;
}

ImageColumn ImageColumn::Fixed(const TensorColumn<uint8_t>& tensor) {
  ImageColumn c;
  c.data_ = tensor.values().data();
  c.rows_ = tensor.size();
  c.height_ = tensor.shape()[0];
  c.width_ = tensor.shape()[1];
  c.channels_ = tensor.shape().size() == 3 ? tensor.shape()[2] : 1;
  return c;
}

ImageView ImageColumn::operator[](size_t i) const {
  if (offsets_ == nullptr) {
    const size_t per_row = static_cast<size_t>(height_ * width_ * channels_);
    return {height_, width_, channels_, {data_ + i * per_row, per_row}};
  }
  internal::ImageValueHeader h;
  const uint8_t* v = data_ + offsets_[i];
  if (offsets_[i + 1] - offsets_[i] < static_cast<int64_t>(sizeof(h))) return {};  // null
  std::memcpy(&h, v, sizeof(h));
  return {h.height,
          h.width,
          h.channels,
          {v + sizeof(h), static_cast<size_t>(offsets_[i + 1] - offsets_[i]) - sizeof(h)}};
}

ImageColumn Batch::Images(std::string_view name) const {
  const DataType type = ColumnType(name);
  if (type == DataType::kTensorUInt8) {
    TensorColumn<uint8_t> t = TensorUInt8(name);
    if (t.shape().size() == 2 || (t.shape().size() == 3 && t.shape()[2] <= 4)) {
      return ImageColumn::Fixed(t);
    }
    std::string shape;
    for (int64_t d : t.shape()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    throw TypeError("column '" + std::string(name) + "' holds uint8 tensors of shape {" + shape +
                    "}, not images ({height, width, channels} with 1 to 4 channels)");
  }
  if (type != DataType::kImage) {
    throw TypeError("column '" + std::string(name) + "' holds " + DataTypeName(type) +
                    ", not images");
  }
  const ColumnDesc* d = Desc(buffer_, FindColumn(name));
  return ImageColumn::Variable(reinterpret_cast<const int64_t*>(buffer_.data() + d->offsets_offset),
                               buffer_.data() + d->data_offset, static_cast<size_t>(NumRows()));
}

ImageView Batch::ImageAt(int64_t row, std::string_view column) const {
  if (row < 0 || row >= NumRows()) {
    throw TypeError("row " + std::to_string(row) + " out of range (batch has " +
                    std::to_string(NumRows()) + " rows)");
  }
  return Images(column)[static_cast<size_t>(row)];
}

Batch::ExecStats Batch::exec_stats() const {
  const BlockHeader* h = Header(buffer_);
  return ExecStats{h->wall_us, h->cpu_us, h->rows_in, h->bytes_in};
}

void Batch::set_exec_stats(const ExecStats& s) {
  auto* h = const_cast<BlockHeader*>(Header(buffer_));
  h->wall_us = s.wall_us;
  h->cpu_us = s.cpu_us;
  h->rows_in = s.rows_in;
  h->bytes_in = s.bytes_in;
}

Batch Batch::Slice(int64_t offset, int64_t length) const {
  int64_t rows = NumRows();
  offset = std::clamp<int64_t>(offset, 0, rows);
  length = std::clamp<int64_t>(length, 0, rows - offset);
  if (offset == 0 && length == rows) return *this;
  BatchBuilder b;
  const BlockHeader* h = Header(buffer_);
  auto names = ColumnNames();
  for (uint32_t i = 0; i < h->ncols; ++i) {
    const ColumnDesc* d = Desc(buffer_, static_cast<int>(i));
    auto type = static_cast<DataType>(d->type);
    BatchBuilder::Column c;
    c.name = names[i];
    c.type = type;
    c.rows = length;
    c.shape.assign(d->shape, d->shape + d->ndim);
    if (IsVariable(type)) {
      const auto* off = reinterpret_cast<const int64_t*>(buffer_.data() + d->offsets_offset);
      int64_t base = off[offset];
      c.offsets.resize(static_cast<size_t>(length) + 1);
      for (int64_t r = 0; r <= length; ++r)
        c.offsets[static_cast<size_t>(r)] = off[offset + r] - base;
      c.bytes.assign(reinterpret_cast<const char*>(buffer_.data() + d->data_offset + base),
                     static_cast<size_t>(off[offset + length] - base));
    } else {
      int64_t per_row = static_cast<int64_t>(FixedWidth(type));
      for (int k = 0; k < d->ndim; ++k) per_row *= d->shape[k];
      c.fixed.assign(
          reinterpret_cast<const char*>(buffer_.data() + d->data_offset + offset * per_row),
          static_cast<size_t>(length * per_row));
    }
    if (d->validity_offset >= 0) {
      c.validity.assign(reinterpret_cast<const char*>(buffer_.data() + d->validity_offset + offset),
                        static_cast<size_t>(length));
      c.validity_set = true;
    }
    b.Add(std::move(c));
  }
  Batch out = b.Build();
  if (h->ncols == 0) {  // keep the row count of a column-less batch
    auto* oh = const_cast<BlockHeader*>(Header(out.buffer_));
    oh->nrows = length;
  }
  return out;
}

Batch Batch::TakeRows(const std::vector<int64_t>& rows) const {
  const int64_t n = NumRows();
  for (int64_t r : rows) {
    if (r < 0 || r >= n) {
      throw TypeError("row " + std::to_string(r) + " out of range (batch has " + std::to_string(n) +
                      " rows)");
    }
  }
  BatchBuilder b;
  const BlockHeader* h = Header(buffer_);
  auto names = ColumnNames();
  for (uint32_t i = 0; i < h->ncols; ++i) {
    const ColumnDesc* d = Desc(buffer_, static_cast<int>(i));
    BatchBuilder::Column c;
    c.name = names[i];
    c.type = static_cast<DataType>(d->type);
    c.rows = static_cast<int64_t>(rows.size());
    c.shape.assign(d->shape, d->shape + d->ndim);
    if (IsVariable(c.type)) {
      const auto* off = reinterpret_cast<const int64_t*>(buffer_.data() + d->offsets_offset);
      const char* data = reinterpret_cast<const char*>(buffer_.data() + d->data_offset);
      c.offsets.reserve(rows.size() + 1);
      c.offsets.push_back(0);
      for (int64_t r : rows) {
        c.bytes.append(data + off[r], static_cast<size_t>(off[r + 1] - off[r]));
        c.offsets.push_back(static_cast<int64_t>(c.bytes.size()));
      }
    } else {
      size_t per_row = FixedWidth(c.type);
      for (int k = 0; k < d->ndim; ++k) per_row *= static_cast<size_t>(d->shape[k]);
      c.fixed.resize(per_row * rows.size());
      const uint8_t* src = buffer_.data() + d->data_offset;
      for (size_t k = 0; k < rows.size(); ++k) {
        std::memcpy(c.fixed.data() + k * per_row, src + static_cast<size_t>(rows[k]) * per_row,
                    per_row);
      }
    }
    if (d->validity_offset >= 0) {
      const uint8_t* valid = buffer_.data() + d->validity_offset;
      c.validity.resize(rows.size());
      for (size_t k = 0; k < rows.size(); ++k) {
        c.validity[k] = static_cast<char>(valid[static_cast<size_t>(rows[k])]);
      }
      c.validity_set = true;
    }
    b.Add(std::move(c));
  }
  return b.Build();
}

Batch Batch::SelectColumns(const std::vector<std::string>& names) const {
  BatchBuilder b;
  for (const auto& n : names) b.AddColumnFrom(*this, n);
  return b.Build();
}

Batch Batch::DropColumns(const std::vector<std::string>& names) const {
  std::set<std::string> drop(names.begin(), names.end());
  BatchBuilder b;
  for (const auto& n : ColumnNames()) {
    if (!drop.count(n)) b.AddColumnFrom(*this, n);
  }
  return b.Build();
}

Batch Batch::Concat(const std::vector<Batch>& batches) {
  std::vector<internal::RowRange> parts;
  for (const auto& b : batches) parts.push_back({&b, 0, b.NumRows()});
  return internal::ConcatRanges(parts, {});
}

namespace internal {

Batch ConcatRanges(const std::vector<RowRange>& ranges, const std::vector<std::string>& drop) {
  std::vector<RowRange> parts;
  for (const auto& r : ranges) {
    if (r.batch->NumRows() > 0 || r.batch->NumColumns() > 0) parts.push_back(r);
  }
  if (parts.empty()) return Batch();
  if (parts.size() == 1 && drop.empty() && parts[0].offset == 0 &&
      parts[0].length == parts[0].batch->NumRows()) {
    return *parts[0].batch;
  }
  auto names = parts[0].batch->ColumnNames();
  for (const auto& p : parts) {
    if (p.batch->ColumnNames() != names) {
      throw TypeError("cannot concatenate batches with different columns");
    }
  }
  BatchBuilder out;
  for (size_t ci = 0; ci < names.size(); ++ci) {
    if (std::find(drop.begin(), drop.end(), names[ci]) != drop.end()) continue;
    const Buffer& first = parts[0].batch->buffer();
    const ColumnDesc* d0 = Desc(first, static_cast<int>(ci));
    BatchBuilder::Column c;
    c.name = names[ci];
    c.type = static_cast<DataType>(d0->type);
    c.shape.assign(d0->shape, d0->shape + d0->ndim);
    if (IsVariable(c.type)) c.offsets.push_back(0);
    const bool any_nulls = std::any_of(parts.begin(), parts.end(), [&](const RowRange& p) {
      return Desc(p.batch->buffer(), static_cast<int>(ci))->validity_offset >= 0;
    });
    int64_t total = 0;
    for (const auto& p : parts) total += p.length;
    if (IsVariable(c.type)) c.offsets.reserve(static_cast<size_t>(total) + 1);
    for (const auto& p : parts) {
      const Buffer& buf = p.batch->buffer();
      const ColumnDesc* d = Desc(buf, static_cast<int>(ci));
      if (d->type != d0->type || d->ndim != d0->ndim ||
          !std::equal(d->shape, d->shape + d->ndim, d0->shape)) {
        throw TypeError("cannot concatenate: column '" + names[ci] + "' differs in type or shape");
      }
      const int64_t from = p.offset, rows = p.length;
      if (IsVariable(c.type)) {
        const auto* off = reinterpret_cast<const int64_t*>(buf.data() + d->offsets_offset);
        const int64_t base = static_cast<int64_t>(c.bytes.size()) - off[from];
        for (int64_t r = from + 1; r <= from + rows; ++r) c.offsets.push_back(base + off[r]);
        c.bytes.append(reinterpret_cast<const char*>(buf.data() + d->data_offset + off[from]),
                       static_cast<size_t>(off[from + rows] - off[from]));
      } else {
        int64_t per_row = static_cast<int64_t>(FixedWidth(c.type));
        for (int k = 0; k < d->ndim; ++k) per_row *= d->shape[k];
        c.fixed.append(reinterpret_cast<const char*>(buf.data() + d->data_offset + from * per_row),
                       static_cast<size_t>(rows * per_row));
      }
      if (any_nulls) {
        if (d->validity_offset >= 0) {
          c.validity.append(reinterpret_cast<const char*>(buf.data() + d->validity_offset + from),
                            static_cast<size_t>(rows));
        } else {
          c.validity.append(static_cast<size_t>(rows), '\1');
        }
      }
      c.rows += rows;
    }
    c.validity_set = any_nulls;
    out.Add(std::move(c));
  }
  return out.Build();
}

}  // namespace internal

// ---- builder -----------------------------------------------------------------------------

BatchBuilder::BatchBuilder(const Batch& base) {
  for (const auto& n : base.ColumnNames()) AddColumnFrom(base, n);
}

void BatchBuilder::Add(Column c) {
  Remove(c.name);
  columns_.push_back(std::move(c));
}

BatchBuilder& BatchBuilder::Remove(const std::string& name) {
  columns_.erase(std::remove_if(columns_.begin(), columns_.end(),
                                [&](const Column& c) { return c.name == name; }),
                 columns_.end());
  return *this;
}

namespace {
template <class T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
}  // namespace

BatchBuilder& BatchBuilder::AddInt64(std::string name, std::vector<int64_t> values) {
  Column c{std::move(name), DataType::kInt64, {}, static_cast<int64_t>(values.size())};
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddFloat64(std::string name, std::vector<double> values) {
  Column c{std::move(name), DataType::kFloat64, {}, static_cast<int64_t>(values.size())};
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddBool(std::string name, std::vector<uint8_t> values) {
  Column c{std::move(name), DataType::kBool, {}, static_cast<int64_t>(values.size())};
  for (auto& v : values) v = v ? 1 : 0;
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

namespace {
void FillVariable(std::vector<int64_t>* offsets, std::string* bytes,
                  const std::vector<std::string>& values) {
  size_t total = 0;
  for (const auto& v : values) total += v.size();
  bytes->reserve(total);
  offsets->reserve(values.size() + 1);
  offsets->push_back(0);
  for (const auto& v : values) {
    bytes->append(v);
    offsets->push_back(static_cast<int64_t>(bytes->size()));
  }
}
}  // namespace

BatchBuilder& BatchBuilder::AddString(std::string name, std::vector<std::string> values) {
  Column c{std::move(name), DataType::kString, {}, static_cast<int64_t>(values.size())};
  FillVariable(&c.offsets, &c.bytes, values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddBinary(std::string name, std::vector<std::string> values) {
  Column c{std::move(name), DataType::kBinary, {}, static_cast<int64_t>(values.size())};
  FillVariable(&c.offsets, &c.bytes, values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddBinary(std::string name, const std::vector<Buffer>& values) {
  Column c{std::move(name), DataType::kBinary, {}, static_cast<int64_t>(values.size())};
  size_t total = 0;
  for (const auto& v : values) total += v.size();
  c.bytes.reserve(total);
  c.offsets.push_back(0);
  for (const auto& v : values) {
    c.bytes.append(v.view());
    c.offsets.push_back(static_cast<int64_t>(c.bytes.size()));
  }
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddBinaryConcatenated(std::string name, std::string bytes,
                                                  std::vector<int64_t> offsets) {
  if (offsets.empty() || offsets.front() != 0 ||
      offsets.back() != static_cast<int64_t>(bytes.size()) ||
      !std::is_sorted(offsets.begin(), offsets.end())) {
    throw TypeError("AddBinaryConcatenated(" + name + "): offsets do not describe the bytes");
  }
  Column c{std::move(name), DataType::kBinary, {}, static_cast<int64_t>(offsets.size()) - 1};
  c.bytes = std::move(bytes);
  c.offsets = std::move(offsets);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddImages(std::string name, const std::vector<ImageView>& images) {
  Column c{std::move(name), DataType::kImage, {}, static_cast<int64_t>(images.size())};
  size_t total = 0;
  for (const ImageView& im : images) {
    if (im.height < 0 || im.width < 0 || im.channels < 1 || im.channels > 4 ||
        im.height > INT32_MAX || im.width > INT32_MAX ||
        static_cast<int64_t>(im.pixels.size()) != im.height * im.width * im.channels) {
      throw TypeError("AddImages(" + c.name + "): an image of " + std::to_string(im.height) +
                      " x " + std::to_string(im.width) + " x " + std::to_string(im.channels) +
                      " has " + std::to_string(im.pixels.size()) + " bytes of pixels");
    }
    total += sizeof(internal::ImageValueHeader) + im.pixels.size();
  }
  c.bytes.reserve(total);
  c.offsets.reserve(images.size() + 1);
  c.offsets.push_back(0);
  for (const ImageView& im : images) {
    const internal::ImageValueHeader h{static_cast<int32_t>(im.height),
                                       static_cast<int32_t>(im.width),
                                       static_cast<int32_t>(im.channels), 0};
    c.bytes.append(reinterpret_cast<const char*>(&h), sizeof(h));
    c.bytes.append(reinterpret_cast<const char*>(im.pixels.data()), im.pixels.size());
    c.offsets.push_back(static_cast<int64_t>(c.bytes.size()));
  }
  Add(std::move(c));
  return *this;
}

namespace {
int64_t RowsOf(size_t elements, const std::vector<int64_t>& shape, const std::string& name) {
  if (shape.empty() || shape.size() > static_cast<size_t>(internal::kMaxTensorDims)) {
    throw TypeError("tensor column '" + name + "' needs 1 to 3 dimensions per row");
  }
  int64_t per_row = 1;
  for (int64_t d : shape) {
    if (d <= 0) throw TypeError("tensor column '" + name + "' has a non-positive dimension");
    per_row *= d;
  }
  if (static_cast<int64_t>(elements) % per_row != 0) {
    throw TypeError("tensor column '" + name + "': " + std::to_string(elements) +
                    " values do not fill whole rows of " + std::to_string(per_row));
  }
  return static_cast<int64_t>(elements) / per_row;
}
}  // namespace

BatchBuilder& BatchBuilder::AddTensorFloat32(std::string name, std::vector<int64_t> shape,
                                             std::vector<float> values) {
  int64_t rows = RowsOf(values.size(), shape, name);
  Column c{std::move(name), DataType::kTensorFloat32, std::move(shape), rows};
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddTensorFloat32(std::string name, std::vector<int64_t> shape,
                                             int64_t rows,
                                             std::function<void(std::span<float>)> fill) {
  if (rows < 0) throw TypeError("tensor column '" + name + "' has a negative number of rows");
  if (!fill) throw TypeError("tensor column '" + name + "' has nothing to fill it");
  RowsOf(0, shape, name);  // checks the shape
  Column c{std::move(name), DataType::kTensorFloat32, std::move(shape), rows};
  c.fill_float32 = std::move(fill);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddTensorFloat64(std::string name, std::vector<int64_t> shape,
                                             std::vector<double> values) {
  int64_t rows = RowsOf(values.size(), shape, name);
  Column c{std::move(name), DataType::kTensorFloat64, std::move(shape), rows};
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddTensorInt64(std::string name, std::vector<int64_t> shape,
                                           std::vector<int64_t> values) {
  int64_t rows = RowsOf(values.size(), shape, name);
  Column c{std::move(name), DataType::kTensorInt64, std::move(shape), rows};
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::AddTensorUInt8(std::string name, std::vector<int64_t> shape,
                                           std::vector<uint8_t> values) {
  int64_t rows = RowsOf(values.size(), shape, name);
  Column c{std::move(name), DataType::kTensorUInt8, std::move(shape), rows};
  c.fixed = Bytes(values);
  Add(std::move(c));
  return *this;
}

BatchBuilder& BatchBuilder::SetValidity(const std::string& name, std::vector<uint8_t> valid) {
  auto it = std::find_if(columns_.begin(), columns_.end(),
                         [&](const Column& c) { return c.name == name; });
  if (it == columns_.end()) {
    throw TypeError("SetValidity: no column '" + name + "' added to the builder");
  }
  Column& c = *it;
  if (static_cast<int64_t>(valid.size()) != c.rows) {
    throw TypeError("SetValidity(" + name + "): " + std::to_string(valid.size()) +
                    " flags for a column of " + std::to_string(c.rows) + " rows");
  }
  if (c.source_index >= 0) {  // own the values: null slots are cleared below
    const Buffer& src = c.source.buffer_;
    const ColumnDesc* d = Desc(src, c.source_index);
    if (IsVariable(c.type)) {
      const auto* off = reinterpret_cast<const int64_t*>(src.data() + d->offsets_offset);
      c.offsets.assign(off, off + c.rows + 1);
      c.bytes.assign(reinterpret_cast<const char*>(src.data() + d->data_offset),
                     static_cast<size_t>(off[c.rows]));
    } else {
      c.fixed.assign(reinterpret_cast<const char*>(src.data() + d->data_offset),
                     static_cast<size_t>(d->data_size));
    }
    c.source = Batch();
    c.source_index = -1;
  }
  const size_t rows = valid.size();
  if (IsVariable(c.type)) {
    std::string bytes;
    std::vector<int64_t> offsets{0};
    for (size_t r = 0; r < rows; ++r) {
      if (valid[r]) {
        bytes.append(c.bytes, static_cast<size_t>(c.offsets[r]),
                     static_cast<size_t>(c.offsets[r + 1] - c.offsets[r]));
      }
      offsets.push_back(static_cast<int64_t>(bytes.size()));
    }
    c.bytes = std::move(bytes);
    c.offsets = std::move(offsets);
  } else if (c.fill_float32 && rows > 0) {  // cleared once filled
    c.fill_float32 = [fill = std::move(c.fill_float32), valid](std::span<float> out) {
      fill(out);
      const size_t per_row = out.size() / valid.size();
      for (size_t r = 0; r < valid.size(); ++r) {
        if (!valid[r]) std::fill_n(out.begin() + r * per_row, per_row, 0.0f);
      }
    };
  } else if (rows > 0) {
    const size_t per_row = c.fixed.size() / rows;
    for (size_t r = 0; r < rows; ++r) {
      if (!valid[r]) std::memset(c.fixed.data() + r * per_row, 0, per_row);
    }
  }
  c.validity.resize(rows);
  for (size_t r = 0; r < rows; ++r) c.validity[r] = valid[r] ? 1 : 0;
  c.validity_set = true;
  return *this;
}

BatchBuilder& BatchBuilder::AddColumnFrom(const Batch& from, const std::string& name,
                                          const std::string& as) {
  int i = from.FindColumn(name);
  if (i < 0) from.ColumnType(name);  // throws, listing the columns
  const ColumnDesc* d = Desc(from.buffer_, i);
  Column c;
  c.name = as.empty() ? name : as;
  c.type = static_cast<DataType>(d->type);
  c.shape.assign(d->shape, d->shape + d->ndim);
  c.rows = from.NumRows();
  c.source = from;
  c.source_index = i;
  Add(std::move(c));
  return *this;
}

Batch BatchBuilder::Build() const {
  std::set<std::string> seen;
  int64_t rows = columns_.empty() ? 0 : columns_[0].rows;
  for (const auto& c : columns_) {
    if (!seen.insert(c.name).second) throw TypeError("column '" + c.name + "' appears twice");
    if (c.rows != rows) {
      throw TypeError("column '" + c.name + "' has " + std::to_string(c.rows) +
                      " rows but column '" + columns_[0].name + "' has " + std::to_string(rows));
    }
  }
  // Layout: header, column table, names, then each column's sections, all 64-byte aligned.
  int64_t names_offset =
      static_cast<int64_t>(sizeof(BlockHeader) + columns_.size() * sizeof(ColumnDesc));
  int64_t names_size = 0;
  for (const auto& c : columns_) names_size += static_cast<int64_t>(c.name.size());
  int64_t pos = AlignUp(names_offset + names_size);
  struct Placed {
    int64_t data_offset, data_size, offsets_offset;
    const char* validity;  // rows bytes, or null: no nulls
    int64_t validity_offset, null_count;
  };
  std::vector<Placed> placed;
  for (const auto& c : columns_) {
    Placed p{0, 0, -1, nullptr, -1, 0};
    if (c.validity_set) {
      p.validity = c.validity.data();
    } else if (c.source_index >= 0) {
      const ColumnDesc* d = Desc(c.source.buffer_, c.source_index);
      if (d->validity_offset >= 0) {
        p.validity = reinterpret_cast<const char*>(c.source.buffer_.data() + d->validity_offset);
      }
    }
    if (p.validity != nullptr) {
      p.null_count = std::count(p.validity, p.validity + rows, '\0');
      if (p.null_count == 0) p.validity = nullptr;  // no nulls: no validity
    }
    if (IsVariable(c.type)) {
      p.offsets_offset = pos;
      pos = AlignUp(pos + (rows + 1) * 8);
      if (c.source_index >= 0) {
        const ColumnDesc* d = Desc(c.source.buffer_, c.source_index);
        const auto* off =
            reinterpret_cast<const int64_t*>(c.source.buffer_.data() + d->offsets_offset);
        p.data_size = off[rows];
      } else {
        p.data_size = static_cast<int64_t>(c.bytes.size());
      }
    } else {
      int64_t per_row = static_cast<int64_t>(FixedWidth(c.type));
      for (int64_t d : c.shape) per_row *= d;
      p.data_size = per_row * rows;
    }
    p.data_offset = pos;
    pos = AlignUp(pos + p.data_size);
    if (p.validity != nullptr) {
      p.validity_offset = pos;
      pos = AlignUp(pos + rows);
    }
    placed.push_back(p);
  }
  int64_t total = pos;
  Buffer out = Buffer::Allocate(static_cast<size_t>(total));
  uint8_t* base = out.mutable_data();
  std::memset(base, 0, static_cast<size_t>(AlignUp(names_offset + names_size)));
  BlockHeader h{};
  std::memcpy(h.magic, internal::kBlockMagic, 4);
  h.ncols = static_cast<uint32_t>(columns_.size());
  h.nrows = rows;
  h.total_size = total;
  h.names_offset = names_offset;
  std::memcpy(base, &h, sizeof(h));
  uint32_t name_pos = 0;
  for (size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    const Placed& p = placed[i];
    ColumnDesc d{};
    d.name_offset = name_pos;
    d.name_len = static_cast<uint32_t>(c.name.size());
    d.type = static_cast<uint8_t>(c.type);
    d.ndim = static_cast<uint8_t>(c.shape.size());
    for (size_t k = 0; k < c.shape.size(); ++k) d.shape[k] = c.shape[k];
    d.data_offset = p.data_offset;
    d.data_size = p.data_size;
    d.offsets_offset = p.offsets_offset;
    d.validity_offset = p.validity_offset;
    d.null_count = p.validity != nullptr ? p.null_count : 0;
    if (p.validity != nullptr) {
      std::memcpy(base + p.validity_offset, p.validity, static_cast<size_t>(rows));
    }
    std::memcpy(base + sizeof(BlockHeader) + i * sizeof(ColumnDesc), &d, sizeof(d));
    std::memcpy(base + names_offset + name_pos, c.name.data(), c.name.size());
    name_pos += static_cast<uint32_t>(c.name.size());
    if (c.source_index >= 0) {
      const Buffer& src = c.source.buffer_;
      const ColumnDesc* sd = Desc(src, c.source_index);
      if (p.offsets_offset >= 0) {
        std::memcpy(base + p.offsets_offset, src.data() + sd->offsets_offset,
                    static_cast<size_t>((rows + 1) * 8));
      }
      std::memcpy(base + p.data_offset, src.data() + sd->data_offset,
                  static_cast<size_t>(p.data_size));
    } else {
      if (p.offsets_offset >= 0) {
        std::memcpy(base + p.offsets_offset, c.offsets.data(), static_cast<size_t>((rows + 1) * 8));
      }
      if (c.fill_float32) {
        c.fill_float32({reinterpret_cast<float*>(base + p.data_offset),
                        static_cast<size_t>(p.data_size) / sizeof(float)});
      } else {
        const std::string& data = IsVariable(c.type) ? c.bytes : c.fixed;
        if (!data.empty()) std::memcpy(base + p.data_offset, data.data(), data.size());
      }
    }
  }
  return Batch(Buffer(out.data(), out.size(), out.owner()));
}

}  // namespace lumen::data

namespace lumen::data::internal {

Batch MakePathBytesBlock(const std::vector<std::string>& paths, const std::vector<int64_t>& sizes,
                         const std::function<void(size_t, uint8_t*)>& fill) {
  const int64_t rows = static_cast<int64_t>(paths.size());
  std::vector<int64_t> path_off{0}, data_off{0};
  for (const auto& p : paths) path_off.push_back(path_off.back() + static_cast<int64_t>(p.size()));
  for (int64_t s : sizes) data_off.push_back(data_off.back() + s);
  const std::string names = "pathbytes";
  int64_t names_offset = static_cast<int64_t>(sizeof(BlockHeader) + 2 * sizeof(ColumnDesc));
  int64_t pos = AlignUp(names_offset + static_cast<int64_t>(names.size()));
  int64_t path_offsets = pos;
  pos = AlignUp(pos + (rows + 1) * 8);
  int64_t path_data = pos;
  pos = AlignUp(pos + path_off.back());
  int64_t bytes_offsets = pos;
  pos = AlignUp(pos + (rows + 1) * 8);
  int64_t bytes_data = pos;
  pos = AlignUp(pos + data_off.back());
  Buffer out = Buffer::Allocate(static_cast<size_t>(pos));
  uint8_t* base = out.mutable_data();
  std::memset(base, 0, static_cast<size_t>(bytes_data));
  BlockHeader h{};
  std::memcpy(h.magic, kBlockMagic, 4);
  h.ncols = 2;
  h.nrows = rows;
  h.total_size = pos;
  h.names_offset = names_offset;
  std::memcpy(base, &h, sizeof(h));
  ColumnDesc d{};
  d.name_offset = 0;
  d.name_len = 4;
  d.type = static_cast<uint8_t>(DataType::kString);
  d.data_offset = path_data;
  d.data_size = path_off.back();
  d.offsets_offset = path_offsets;
  d.validity_offset = -1;
  std::memcpy(base + sizeof(BlockHeader), &d, sizeof(d));
  d.name_offset = 4;
  d.name_len = 5;
  d.type = static_cast<uint8_t>(DataType::kBinary);
  d.data_offset = bytes_data;
  d.data_size = data_off.back();
  d.offsets_offset = bytes_offsets;
  std::memcpy(base + sizeof(BlockHeader) + sizeof(ColumnDesc), &d, sizeof(d));
  std::memcpy(base + names_offset, names.data(), names.size());
  std::memcpy(base + path_offsets, path_off.data(), path_off.size() * 8);
  for (size_t i = 0; i < paths.size(); ++i) {
    std::memcpy(base + path_data + path_off[i], paths[i].data(), paths[i].size());
  }
  std::memcpy(base + bytes_offsets, data_off.data(), data_off.size() * 8);
  for (size_t i = 0; i < sizes.size(); ++i) fill(i, base + bytes_data + data_off[i]);
  return Batch::FromBuffer(Buffer(out.data(), out.size(), out.owner()));
}

}  // namespace lumen::data::internal
