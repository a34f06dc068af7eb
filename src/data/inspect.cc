// Looking at a dataset: Schema(), Columns(), Show(n).
#include <algorithm>
#include <iostream>

#include "lumen/data/dataset.h"

namespace lumen::data {

namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TypeText(const Field& f) {
  std::string t = DataTypeName(f.type);
  return f.shape.empty() ? t : t + ShapeText(f.shape);
}

// One cell of `b` as text for a table: readable, one line, at most 40 characters of text.
std::string Cell(const Batch& b, const std::string& col, size_t row) {
  constexpr size_t kMaxText = 40;
  if (b.IsNull(col, static_cast<int64_t>(row))) return "null";
  switch (b.ColumnType(col)) {
    case DataType::kInt64:
      return std::to_string(b.Int64(col)[row]);
    case DataType::kFloat64:
      return Value(b.Float64(col)[row]).ToString();
    case DataType::kBool:
      return b.Bool(col)[row] ? "true" : "false";
    case DataType::kString: {
      std::string s;
      for (char c : b.String(col)[row]) {
        if (c == '\n') {
          s += "\\n";
        } else if (c == '\t') {
          s += "\\t";
        } else {
          s += c;
        }
      }
      if (s.size() > kMaxText) s = s.substr(0, kMaxText - 3) + "...";
      return s;
    }
    case DataType::kBinary:
      return "<" + std::to_string(b.Binary(col)[row].size()) + " bytes>";
    case DataType::kTensorFloat32:
      return "<tensor " + ShapeText(b.TensorFloat32(col).shape()) + ">";
    case DataType::kTensorFloat64:
      return "<tensor " + ShapeText(b.TensorFloat64(col).shape()) + ">";
    case DataType::kTensorInt64:
      return "<tensor " + ShapeText(b.TensorInt64(col).shape()) + ">";
    case DataType::kTensorUInt8:
      return "<tensor " + ShapeText(b.TensorUInt8(col).shape()) + ">";
    case DataType::kImage: {
      const ImageView im = b.ImageAt(static_cast<int64_t>(row), col);
      return "<image " + ShapeText({im.height, im.width, im.channels}) + ">";
    }
  }
  return "?";
}

std::vector<int64_t> ShapeOf(const Batch& b, const std::string& col) {
  switch (b.ColumnType(col)) {
    case DataType::kTensorFloat32:
      return b.TensorFloat32(col).shape();
    case DataType::kTensorFloat64:
      return b.TensorFloat64(col).shape();
    case DataType::kTensorInt64:
      return b.TensorInt64(col).shape();
    case DataType::kTensorUInt8:
      return b.TensorUInt8(col).shape();
    default:
      return {};
  }
}

}  // namespace

std::vector<std::string> Schema::Names() const {
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.name);
  return names;
}

const Field& Schema::Get(const std::string& name) const {
  for (const auto& f : fields) {
    if (f.name == name) return f;
  }
  std::string names;
  for (const auto& f : fields) names += (names.empty() ? "" : ", ") + f.name;
  throw TypeError("no column '" + name + "' in the schema (columns: " + names + ")");
}

std::string Schema::ToString() const {
  size_t width = 0;
  for (const auto& f : fields) width = std::max(width, f.name.size());
  std::string out;
  for (const auto& f : fields) {
    out += f.name + std::string(width - f.name.size() + 2, ' ') + TypeText(f) +
           (f.nullable ? " (nulls)" : "") + "\n";
  }
  return out;
}

::lumen::data::Schema Dataset::Schema() const {
  ::lumen::data::Schema schema;
  BatchIterator it = IterBatches();
  while (std::optional<Batch> b = it.Next()) {
    if (b->NumColumns() == 0) continue;  // an empty block says nothing of the columns
    for (const auto& name : b->ColumnNames()) {
      schema.fields.push_back(
          Field{name, b->ColumnType(name), b->NullCount(name) > 0, ShapeOf(*b, name)});
    }
    break;  // dropping the iterator stops the rest of the plan
  }
  return schema;
}

std::vector<std::string> Dataset::Columns() const { return Schema().Names(); }

void Dataset::Show(int64_t rows) const { Show(rows, std::cout); }

void Dataset::Show(int64_t rows, std::ostream& out) const {
  std::vector<std::string> names;
  std::vector<std::string> types;
  std::vector<std::vector<std::string>> table;  // rows of cells
  BatchIterator it = Limit(rows).IterBatches();
  while (std::optional<Batch> b = it.Next()) {
    if (b->NumColumns() == 0) continue;
    if (names.empty()) {
      names = b->ColumnNames();
      for (const auto& n : names) {
        types.push_back(TypeText(Field{n, b->ColumnType(n), false, ShapeOf(*b, n)}));
      }
    }
    for (int64_t r = 0; r < b->NumRows(); ++r) {
      std::vector<std::string> line;
      for (const auto& n : names) {
        line.push_back(b->HasColumn(n) ? Cell(*b, n, static_cast<size_t>(r)) : "");
      }
      table.push_back(std::move(line));
    }
  }
  std::vector<size_t> width(names.size());
  for (size_t c = 0; c < names.size(); ++c) {
    width[c] = std::max(names[c].size(), types[c].size());
    for (const auto& line : table) width[c] = std::max(width[c], line[c].size());
  }
  auto print = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) {
      s += cells[c];
      if (c + 1 < cells.size()) s += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    out << s << "\n";
  };
  if (!names.empty()) {
    print(names);
    print(types);
    std::vector<std::string> rule;
    for (size_t w : width) rule.push_back(std::string(w, '-'));
    print(rule);
    for (const auto& line : table) print(line);
  }
  out << "(" << table.size() << (table.size() == 1 ? " row" : " rows") << ")\n";
}

}  // namespace lumen::data
