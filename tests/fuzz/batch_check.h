// Reads every value of every column of a decoded Batch, so that a block which passed
// validation but points outside its buffer is caught by AddressSanitizer. Test-only code.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lumen/data/batch.h"

namespace lumen::fuzz {

// Sinks reads so the compiler cannot drop them.
inline std::atomic<uint64_t> g_sink{0};

template <class Span>
inline void ReadAll(const Span& s) {
  uint64_t acc = 0;
  for (const auto& v : s) {
    unsigned char bytes[sizeof(v)];
    std::memcpy(bytes, &v, sizeof(v));
    for (unsigned char b : bytes) acc += b;
  }
  g_sink.fetch_add(acc, std::memory_order_relaxed);
}

template <class T>
inline void ReadTensor(const data::TensorColumn<T>& t) {
  ReadAll(t.values());
  if (t.size() > 0) ReadAll(t[t.size() - 1]);
}

inline void ReadStrings(const data::StringColumn& c) {
  uint64_t acc = static_cast<uint64_t>(c.TotalBytes());
  for (size_t i = 0; i < c.size(); ++i) {
    for (char ch : c[i]) acc += static_cast<unsigned char>(ch);
  }
  if (c.size() > 0) acc += c.Value(c.size() - 1).size();
  g_sink.fetch_add(acc, std::memory_order_relaxed);
}

inline void TouchEveryColumn(const data::Batch& b) {
  g_sink.fetch_add(static_cast<uint64_t>(b.NumRows()) + b.NumColumns(), std::memory_order_relaxed);
  auto stats = b.exec_stats();
  g_sink.fetch_add(static_cast<uint64_t>(stats.wall_us) + static_cast<uint64_t>(stats.rows_in),
                   std::memory_order_relaxed);
  for (const std::string& name : b.ColumnNames()) {
    if (!b.HasColumn(name)) std::abort();  // a listed column must be found
    ReadAll(b.Validity(name));
    g_sink.fetch_add(static_cast<uint64_t>(b.NullCount(name)), std::memory_order_relaxed);
    if (b.NumRows() > 0)
      g_sink.fetch_add(b.IsNull(name, b.NumRows() - 1), std::memory_order_relaxed);
    switch (b.ColumnType(name)) {
      case data::DataType::kInt64:
        ReadAll(b.Int64(name));
        break;
      case data::DataType::kFloat64:
        ReadAll(b.Float64(name));
        break;
      case data::DataType::kBool:
        ReadAll(b.Bool(name));
        break;
      case data::DataType::kString:
        ReadStrings(b.String(name));
        break;
      case data::DataType::kBinary:
        ReadStrings(b.Binary(name));
        break;
      case data::DataType::kTensorFloat32:
        ReadTensor(b.TensorFloat32(name));
        break;
      case data::DataType::kTensorFloat64:
        ReadTensor(b.TensorFloat64(name));
        break;
      case data::DataType::kTensorInt64:
        ReadTensor(b.TensorInt64(name));
        break;
      case data::DataType::kTensorUInt8:
        ReadTensor(b.TensorUInt8(name));
        break;
    }
  }
}

}  // namespace lumen::fuzz
