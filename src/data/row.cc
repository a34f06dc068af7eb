#include "lumen/data/row.h"

#include <charconv>
#include <cstdio>

#include "lumen/errors.h"

namespace lumen::data {

const char* Value::KindName(Kind k) {
  switch (k) {
    case Kind::kNull:
      return "null";
    case Kind::kInt64:
      return "int64";
    case Kind::kFloat64:
      return "float64";
    case Kind::kBool:
      return "bool";
    case Kind::kString:
      return "string";
    case Kind::kBinary:
      return "binary";
  }
  return "?";
}

namespace {
[[noreturn]] void Mismatch(Value::Kind have, const char* want) {
  throw TypeError(std::string("value is ") + Value::KindName(have) + ", not " + want);
}
}  // namespace

int64_t Value::AsInt64() const {
  if (auto* p = std::get_if<int64_t>(&v_)) return *p;
  Mismatch(kind(), "int64");
}

double Value::AsDouble() const {
  if (auto* p = std::get_if<double>(&v_)) return *p;
  if (auto* p = std::get_if<int64_t>(&v_)) return static_cast<double>(*p);
  Mismatch(kind(), "float64");
}

bool Value::AsBool() const {
  if (auto* p = std::get_if<bool>(&v_)) return *p;
  Mismatch(kind(), "bool");
}

const std::string& Value::AsString() const {
  if (auto* p = std::get_if<std::string>(&v_)) return *p;
  Mismatch(kind(), "string");
}

const Buffer& Value::AsBinary() const {
  if (auto* p = std::get_if<Buffer>(&v_)) return *p;
  Mismatch(kind(), "binary");
}

std::string Value::ToString() const {
  switch (kind()) {
    case Kind::kNull:
      return "null";
    case Kind::kInt64:
      return std::to_string(AsInt64());
    case Kind::kFloat64: {
      // The shortest text that reads back as the same double (667622.6, not 667622.59999999963).
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof(buf), std::get<double>(v_));
      return std::string(buf, r.ptr);
    }
    case Kind::kBool:
      return AsBool() ? "true" : "false";
    case Kind::kString:
      return "\"" + AsString() + "\"";
    case Kind::kBinary:
      return "<" + std::to_string(AsBinary().size()) + " bytes>";
  }
  return "?";
}

bool Value::operator==(const Value& o) const { return v_ == o.v_; }

Row::Row(std::initializer_list<std::pair<std::string, Value>> fields) {
  for (const auto& [k, v] : fields) Set(k, v);
}

Row& Row::Set(const std::string& name, Value value) {
  for (auto& f : fields_) {
    if (f.first == name) {
      f.second = std::move(value);
      return *this;
    }
  }
  fields_.emplace_back(name, std::move(value));
  return *this;
}

bool Row::Has(const std::string& name) const {
  for (const auto& f : fields_) {
    if (f.first == name) return true;
  }
  return false;
}

const Value& Row::Get(const std::string& name) const {
  for (const auto& f : fields_) {
    if (f.first == name) return f.second;
  }
  std::string names;
  for (const auto& f : fields_) names += (names.empty() ? "" : ", ") + f.first;
  throw TypeError("row has no field '" + name + "' (fields: " + names + ")");
}

bool Row::IsNull(const std::string& name) const { return Get(name).is_null(); }

Row& Row::Erase(const std::string& name) {
  for (auto it = fields_.begin(); it != fields_.end(); ++it) {
    if (it->first == name) {
      fields_.erase(it);
      break;
    }
  }
  return *this;
}

std::string Row::ToString() const {
  std::string out = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (i) out += ", ";
    out += fields_[i].first + ": " + fields_[i].second.ToString();
  }
  return out + "}";
}

}  // namespace lumen::data
