// Row: one record of a dataset, for row-wise functions (Map, FlatMap, Filter) and for results
// of Take(). A small ordered map from column name to a Value (int64, float64, bool, string,
// binary or null). Rows are convenient; batches (batch.h) are fast.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "lumen/buffer.h"
#include "lumen/serialization.h"

namespace lumen::data {

class Value {
 public:
  enum class Kind { kNull, kInt64, kFloat64, kBool, kString, kBinary };

  Value() = default;
  Value(int64_t v) : v_(v) {}                    // NOLINT: implicit on purpose
  Value(int v) : v_(static_cast<int64_t>(v)) {}  // NOLINT
  Value(double v) : v_(v) {}                     // NOLINT
  Value(bool v) : v_(v) {}                       // NOLINT
  Value(std::string v) : v_(std::move(v)) {}     // NOLINT
  Value(const char* v) : v_(std::string(v)) {}   // NOLINT
  Value(Buffer v) : v_(std::move(v)) {}          // NOLINT: binary

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_null() const { return kind() == Kind::kNull; }
  // Each throws lumen::TypeError naming both kinds when the value is of another kind.
  // AsDouble also accepts int64 values.
  int64_t AsInt64() const;
  double AsDouble() const;
  bool AsBool() const;
  const std::string& AsString() const;
  const Buffer& AsBinary() const;
  // A readable rendering (binary as its size; float64 as the shortest text that reads back
  // as the same value).
  std::string ToString() const;
  static const char* KindName(Kind k);

  bool operator==(const Value& o) const;

 private:
  std::variant<std::monostate, int64_t, double, bool, std::string, Buffer> v_;
};

class Row {
 public:
  Row() = default;
  Row(std::initializer_list<std::pair<std::string, Value>> fields);

  // Sets (or replaces) a field, keeping the order of first insertion.
  Row& Set(const std::string& name, Value value);
  bool Has(const std::string& name) const;
  // Throws lumen::TypeError naming the field when it is missing.
  const Value& Get(const std::string& name) const;
  // Whether the field holds null (a JSON field missing from this row, an empty CSV field, a
  // null in the batch). Throws lumen::TypeError naming the field when the row has no such field.
  bool IsNull(const std::string& name) const;
  int64_t GetInt64(const std::string& name) const { return Get(name).AsInt64(); }
  double GetDouble(const std::string& name) const { return Get(name).AsDouble(); }
  bool GetBool(const std::string& name) const { return Get(name).AsBool(); }
  const std::string& GetString(const std::string& name) const { return Get(name).AsString(); }
  const Buffer& GetBinary(const std::string& name) const { return Get(name).AsBinary(); }
  Row& Erase(const std::string& name);

  const std::vector<std::pair<std::string, Value>>& fields() const { return fields_; }
  size_t size() const { return fields_.size(); }
  std::string ToString() const;
  bool operator==(const Row& o) const { return fields_ == o.fields_; }

 private:
  std::vector<std::pair<std::string, Value>> fields_;
};

// `std::cout << value` and `<< row` print their ToString().
inline std::ostream& operator<<(std::ostream& os, const Value& v) { return os << v.ToString(); }
inline std::ostream& operator<<(std::ostream& os, const Row& r) { return os << r.ToString(); }

}  // namespace lumen::data

// Rows travel as msgpack maps (field order kept).
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct pack<lumen::data::Value> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const lumen::data::Value& v) const {
      using K = lumen::data::Value::Kind;
      switch (v.kind()) {
        case K::kNull:
          o.pack_nil();
          break;
        case K::kInt64:
          o.pack(v.AsInt64());
          break;
        case K::kFloat64:
          o.pack(v.AsDouble());
          break;
        case K::kBool:
          o.pack(v.AsBool());
          break;
        case K::kString:
          o.pack(v.AsString());
          break;
        case K::kBinary:
          o.pack(v.AsBinary());
          break;
      }
      return o;
    }
  };
  template <>
  struct convert<lumen::data::Value> {
    const msgpack::object& operator()(const msgpack::object& o, lumen::data::Value& v) const {
      switch (o.type) {
        case msgpack::type::NIL:
          v = lumen::data::Value();
          break;
        case msgpack::type::POSITIVE_INTEGER:
        case msgpack::type::NEGATIVE_INTEGER:
          v = lumen::data::Value(o.as<int64_t>());
          break;
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64:
          v = lumen::data::Value(o.as<double>());
          break;
        case msgpack::type::BOOLEAN:
          v = lumen::data::Value(o.as<bool>());
          break;
        case msgpack::type::STR:
          v = lumen::data::Value(o.as<std::string>());
          break;
        case msgpack::type::BIN:
          v = lumen::data::Value(o.as<lumen::Buffer>());
          break;
        default:
          throw msgpack::type_error();
      }
      return o;
    }
  };
  template <>
  struct pack<lumen::data::Row> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const lumen::data::Row& r) const {
      o.pack_map(static_cast<uint32_t>(r.size()));
      for (const auto& [k, v] : r.fields()) {
        o.pack(k);
        o.pack(v);
      }
      return o;
    }
  };
  template <>
  struct convert<lumen::data::Row> {
    const msgpack::object& operator()(const msgpack::object& o, lumen::data::Row& r) const {
      if (o.type != msgpack::type::MAP) throw msgpack::type_error();
      r = lumen::data::Row();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        r.Set(o.via.map.ptr[i].key.as<std::string>(),
              o.via.map.ptr[i].val.as<lumen::data::Value>());
      }
      return o;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE
}  // namespace msgpack
