// Vectorised evaluation of expressions (expr.h) over a batch: each node makes a whole column
// (or a scalar, broadcast), with validity for nulls.
#include <charconv>
#include <cmath>
#include <deque>
#include <string_view>

#include "lumen/data/dataset.h"
#include "lumen/data/expr.h"

namespace lumen::data::internal {

namespace {

enum class Kind { kNull, kInt, kFloat, kBool, kString };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kNull:
      return "null";
    case Kind::kInt:
      return "int64";
    case Kind::kFloat:
      return "float64";
    case Kind::kBool:
      return "bool";
    case Kind::kString:
      return "string";
  }
  return "?";
}

// A column, or one value standing for every row (`scalar`).
struct Vec {
  Kind kind = Kind::kNull;
  bool scalar = true;
  size_t n = 1;
  std::vector<int64_t> i;
  std::vector<double> d;
  std::vector<uint8_t> b;
  std::vector<std::string_view> s;  // into the batch, or into `owned`
  std::deque<std::string> owned;    // strings made here (a deque: views stay valid)
  std::vector<uint8_t> valid;       // empty: every row valid

  size_t At(size_t k) const { return scalar ? 0 : k; }
  bool Valid(size_t k) const { return valid.empty() || valid[At(k)] != 0; }
  double Num(size_t k) const {
    return kind == Kind::kInt ? static_cast<double>(i[At(k)]) : d[At(k)];
  }
  bool IsNumber() const { return kind == Kind::kInt || kind == Kind::kFloat; }
};

// The shape of a result over `a` and `b`: a column of the batch's rows unless both are scalars.
Vec Shaped(const Vec& a, const Vec& b, Kind kind) {
  Vec r;
  r.kind = kind;
  r.scalar = a.scalar && b.scalar;
  r.n = r.scalar ? 1 : std::max(a.scalar ? 0 : a.n, b.scalar ? 0 : b.n);
  return r;
}

// Validity of a result that is null wherever an operand is.
void Intersect(Vec& r, const Vec& a, const Vec& b) {
  if (a.valid.empty() && b.valid.empty()) return;
  r.valid.resize(r.n);
  for (size_t k = 0; k < r.n; ++k) r.valid[k] = a.Valid(k) && b.Valid(k);
}

class Evaluator {
 public:
  explicit Evaluator(const Batch& batch)
      : batch_(batch), rows_(static_cast<size_t>(batch.NumRows())) {}

  Vec Eval(const Expr& e) {
    switch (e.op()) {
      case Expr::Op::kColumn:
        return ColumnOf(e.name());
      case Expr::Op::kLiteral:
        return LiteralOf(e.literal());
      case Expr::Op::kAdd:
      case Expr::Op::kSub:
      case Expr::Op::kMul:
      case Expr::Op::kDiv:
      case Expr::Op::kMod:
        return Arithmetic(e, Eval(e.args()[0]), Eval(e.args()[1]));
      case Expr::Op::kNeg: {
        Vec zero = LiteralOf(Value(int64_t{0}));
        return Arithmetic(Expr::Make(Expr::Op::kSub, {Expr(0), e.args()[0]}), std::move(zero),
                          Eval(e.args()[0]));
      }
      case Expr::Op::kEq:
      case Expr::Op::kNe:
      case Expr::Op::kLt:
      case Expr::Op::kLe:
      case Expr::Op::kGt:
      case Expr::Op::kGe:
        return Compare(e, Eval(e.args()[0]), Eval(e.args()[1]));
      case Expr::Op::kAnd:
      case Expr::Op::kOr:
        return Logic(e, Eval(e.args()[0]), Eval(e.args()[1]));
      case Expr::Op::kNot: {
        Vec a = Eval(e.args()[0]);
        RequireBool(e, a);
        Vec r = a;
        for (auto& x : r.b) x = !x;
        return r;
      }
      case Expr::Op::kIsNull:
      case Expr::Op::kIsNotNull: {
        Vec a = Eval(e.args()[0]);
        Vec r;
        r.kind = Kind::kBool;
        r.scalar = a.scalar;
        r.n = a.n;
        r.b.resize(r.n);
        const bool want_null = e.op() == Expr::Op::kIsNull;
        for (size_t k = 0; k < r.n; ++k) r.b[k] = (a.Valid(k) ? 0 : 1) == want_null;
        return r;
      }
      case Expr::Op::kStartsWith:
      case Expr::Op::kEndsWith:
      case Expr::Op::kContains:
        return Text(e, Eval(e.args()[0]), Eval(e.args()[1]));
      case Expr::Op::kCast:
        return Cast(e, Eval(e.args()[0]));
    }
    throw DataError("unknown expression operator " + std::to_string(static_cast<int>(e.op())));
  }

  size_t rows() const { return rows_; }

 private:
  [[noreturn]] static void Fail(const Expr& e, const std::string& why) {
    throw DataError(why + " in " + e.ToString());
  }

  Vec ColumnOf(const std::string& name) {
    Vec v;
    v.scalar = false;
    v.n = rows_;
    DataType t = batch_.ColumnType(name);  // throws TypeError listing the columns
    switch (t) {
      case DataType::kInt64: {
        auto c = batch_.Int64(name);
        v.kind = Kind::kInt;
        v.i.assign(c.begin(), c.end());
        break;
      }
      case DataType::kFloat64: {
        auto c = batch_.Float64(name);
        v.kind = Kind::kFloat;
        v.d.assign(c.begin(), c.end());
        break;
      }
      case DataType::kBool: {
        auto c = batch_.Bool(name);
        v.kind = Kind::kBool;
        v.b.assign(c.begin(), c.end());
        break;
      }
      case DataType::kString:
      case DataType::kBinary: {
        StringColumn c = t == DataType::kString ? batch_.String(name) : batch_.Binary(name);
        v.kind = Kind::kString;
        v.s.resize(rows_);
        for (size_t k = 0; k < rows_; ++k) v.s[k] = c[k];
        break;
      }
      default:
        throw DataError("column '" + name + "' holds " + DataTypeName(t) +
                        ": expressions take int64, float64, bool and string columns");
    }
    auto valid = batch_.Validity(name);
    v.valid.assign(valid.begin(), valid.end());
    return v;
  }

  static Vec LiteralOf(const Value& x) {
    Vec v;
    switch (x.kind()) {
      case Value::Kind::kNull:
        v.kind = Kind::kNull;
        v.valid = {0};
        break;
      case Value::Kind::kInt64:
        v.kind = Kind::kInt;
        v.i = {x.AsInt64()};
        break;
      case Value::Kind::kFloat64:
        v.kind = Kind::kFloat;
        v.d = {x.AsDouble()};
        break;
      case Value::Kind::kBool:
        v.kind = Kind::kBool;
        v.b = {static_cast<uint8_t>(x.AsBool())};
        break;
      case Value::Kind::kString:
        v.kind = Kind::kString;
        v.owned.push_back(x.AsString());
        v.s = {v.owned.back()};
        break;
      case Value::Kind::kBinary:
        v.kind = Kind::kString;
        v.owned.emplace_back(x.AsBinary().view());
        v.s = {v.owned.back()};
        break;
    }
    return v;
  }

  // A null literal takes the kind its operation needs: the result is null throughout.
  static Vec AllNull(const Vec& a, const Vec& b, Kind kind) {
    Vec r = Shaped(a, b, kind);
    r.valid.assign(r.n, 0);
    r.i.assign(kind == Kind::kInt ? r.n : 0, 0);
    r.d.assign(kind == Kind::kFloat ? r.n : 0, 0);
    r.b.assign(kind == Kind::kBool ? r.n : 0, 0);
    r.s.assign(kind == Kind::kString ? r.n : 0, std::string_view());
    return r;
  }

  Vec Arithmetic(const Expr& e, Vec a, Vec b) {
    const Expr::Op op = e.op();
    if (a.kind == Kind::kNull || b.kind == Kind::kNull) {
      const Vec& other = a.kind == Kind::kNull ? b : a;
      Kind kind = op == Expr::Op::kDiv ? Kind::kFloat : other.kind;
      return AllNull(a, b, kind == Kind::kNull ? Kind::kInt : kind);
    }
    if (op == Expr::Op::kAdd && a.kind == Kind::kString && b.kind == Kind::kString) {
      Vec r = Shaped(a, b, Kind::kString);
      r.s.resize(r.n);
      for (size_t k = 0; k < r.n; ++k) {
        r.owned.push_back(std::string(a.s[a.At(k)]) + std::string(b.s[b.At(k)]));
        r.s[k] = r.owned.back();
      }
      Intersect(r, a, b);
      return r;
    }
    if (!a.IsNumber() || !b.IsNumber()) {
      Fail(e, std::string("arithmetic on ") + KindName(a.kind) + " and " + KindName(b.kind));
    }
    const bool ints = a.kind == Kind::kInt && b.kind == Kind::kInt && op != Expr::Op::kDiv;
    Vec r = Shaped(a, b, ints ? Kind::kInt : Kind::kFloat);
    Intersect(r, a, b);
    if (ints) {
      r.i.resize(r.n);
      for (size_t k = 0; k < r.n; ++k) {
        const int64_t x = a.i[a.At(k)], y = b.i[b.At(k)];
        switch (op) {
          case Expr::Op::kAdd:
            r.i[k] = static_cast<int64_t>(static_cast<uint64_t>(x) + static_cast<uint64_t>(y));
            break;
          case Expr::Op::kSub:
            r.i[k] = static_cast<int64_t>(static_cast<uint64_t>(x) - static_cast<uint64_t>(y));
            break;
          case Expr::Op::kMul:
            r.i[k] = static_cast<int64_t>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y));
            break;
          default:  // kMod: x % 0 is null (and INT64_MIN % -1 is 0)
            if (y == 0) {
              if (r.valid.empty()) r.valid.assign(r.n, 1);
              r.valid[k] = 0;
              r.i[k] = 0;
            } else {
              r.i[k] = y == -1 ? 0 : x % y;
            }
        }
      }
      return r;
    }
    r.d.resize(r.n);
    for (size_t k = 0; k < r.n; ++k) {
      const double x = a.Num(k), y = b.Num(k);
      switch (op) {
        case Expr::Op::kAdd:
          r.d[k] = x + y;
          break;
        case Expr::Op::kSub:
          r.d[k] = x - y;
          break;
        case Expr::Op::kMul:
          r.d[k] = x * y;
          break;
        case Expr::Op::kDiv:
          r.d[k] = x / y;
          break;
        default:
          r.d[k] = std::fmod(x, y);
      }
    }
    return r;
  }

  Vec Compare(const Expr& e, Vec a, Vec b) {
    if (a.kind == Kind::kNull || b.kind == Kind::kNull) return AllNull(a, b, Kind::kBool);
    const bool numbers = a.IsNumber() && b.IsNumber();
    if (!numbers && a.kind != b.kind) {
      Fail(e, std::string("cannot compare ") + KindName(a.kind) + " with " + KindName(b.kind));
    }
    Vec r = Shaped(a, b, Kind::kBool);
    Intersect(r, a, b);
    r.b.resize(r.n);
    const Expr::Op op = e.op();
    auto decide = [op](int c) -> uint8_t {
      switch (op) {
        case Expr::Op::kEq:
          return c == 0;
        case Expr::Op::kNe:
          return c != 0;
        case Expr::Op::kLt:
          return c < 0;
        case Expr::Op::kLe:
          return c <= 0;
        case Expr::Op::kGt:
          return c > 0;
        default:
          return c >= 0;
      }
    };
    for (size_t k = 0; k < r.n; ++k) {
      int c;
      if (a.kind == Kind::kInt && b.kind == Kind::kInt) {
        const int64_t x = a.i[a.At(k)], y = b.i[b.At(k)];
        c = x < y ? -1 : x > y ? 1 : 0;
      } else if (numbers) {
        const double x = a.Num(k), y = b.Num(k);
        c = x < y ? -1 : x > y ? 1 : 0;
      } else if (a.kind == Kind::kString) {
        const int s = a.s[a.At(k)].compare(b.s[b.At(k)]);
        c = s < 0 ? -1 : s > 0 ? 1 : 0;
      } else {
        c = static_cast<int>(a.b[a.At(k)]) - static_cast<int>(b.b[b.At(k)]);
      }
      r.b[k] = decide(c);
    }
    return r;
  }

  static void RequireBool(const Expr& e, const Vec& v) {
    if (v.kind != Kind::kBool && v.kind != Kind::kNull) {
      Fail(e, std::string("a condition (bool) is needed, not ") + KindName(v.kind));
    }
  }

  Vec Logic(const Expr& e, Vec a, Vec b) {
    RequireBool(e, a);
    RequireBool(e, b);
    const bool is_and = e.op() == Expr::Op::kAnd;
    Vec r = Shaped(a, b, Kind::kBool);
    r.b.assign(r.n, 0);
    r.valid.assign(r.n, 1);
    bool any_null = false;
    auto value = [](const Vec& v, size_t k) { return v.kind == Kind::kBool && v.b[v.At(k)]; };
    for (size_t k = 0; k < r.n; ++k) {
      const bool av = a.Valid(k), bv = b.Valid(k);
      const bool x = av && value(a, k), y = bv && value(b, k);
      if (is_and) {
        if ((av && !x) || (bv && !y)) {
          r.b[k] = 0;  // false && anything is false
        } else if (av && bv) {
          r.b[k] = 1;
        } else {
          r.valid[k] = 0;
          any_null = true;
        }
      } else {
        if (x || y) {
          r.b[k] = 1;  // true || anything is true
        } else if (av && bv) {
          r.b[k] = 0;
        } else {
          r.valid[k] = 0;
          any_null = true;
        }
      }
    }
    if (!any_null) r.valid.clear();
    return r;
  }

  Vec Text(const Expr& e, Vec a, Vec b) {
    if (a.kind == Kind::kNull || b.kind == Kind::kNull) return AllNull(a, b, Kind::kBool);
    if (a.kind != Kind::kString || b.kind != Kind::kString) {
      Fail(e, std::string("string matching needs strings, not ") + KindName(a.kind) + " and " +
                  KindName(b.kind));
    }
    Vec r = Shaped(a, b, Kind::kBool);
    Intersect(r, a, b);
    r.b.resize(r.n);
    for (size_t k = 0; k < r.n; ++k) {
      std::string_view x = a.s[a.At(k)], y = b.s[b.At(k)];
      switch (e.op()) {
        case Expr::Op::kStartsWith:
          r.b[k] = x.starts_with(y);
          break;
        case Expr::Op::kEndsWith:
          r.b[k] = x.ends_with(y);
          break;
        default:
          r.b[k] = x.find(y) != std::string_view::npos;
      }
    }
    return r;
  }

  Vec Cast(const Expr& e, Vec a) {
    const DataType to = e.cast_type();
    Kind kind = to == DataType::kInt64     ? Kind::kInt
                : to == DataType::kFloat64 ? Kind::kFloat
                : to == DataType::kBool    ? Kind::kBool
                                           : Kind::kString;
    if (a.kind == kind) return a;
    Vec r;
    r.kind = kind;
    r.scalar = a.scalar;
    r.n = a.n;
    r.valid = a.valid;
    if (a.kind == Kind::kNull) return AllNull(a, a, kind);
    r.i.assign(kind == Kind::kInt ? r.n : 0, 0);
    r.d.assign(kind == Kind::kFloat ? r.n : 0, 0);
    r.b.assign(kind == Kind::kBool ? r.n : 0, 0);
    r.s.assign(kind == Kind::kString ? r.n : 0, std::string_view());
    for (size_t k = 0; k < r.n; ++k) {
      if (!a.Valid(k)) continue;
      switch (kind) {
        case Kind::kInt:
          if (a.kind == Kind::kFloat) {
            const double x = a.d[k];
            if (!std::isfinite(x) || x >= 9223372036854775808.0 || x < -9223372036854775808.0) {
              Fail(e, "cannot convert " + Value(x).ToString() + " to int64");
            }
            r.i[k] = static_cast<int64_t>(x);
          } else if (a.kind == Kind::kBool) {
            r.i[k] = a.b[k];
          } else {
            std::string_view t = a.s[k];
            auto res = std::from_chars(t.data(), t.data() + t.size(), r.i[k]);
            if (res.ec != std::errc() || res.ptr != t.data() + t.size()) {
              Fail(e, "cannot convert \"" + std::string(t) + "\" to int64");
            }
          }
          break;
        case Kind::kFloat:
          if (a.kind == Kind::kInt) {
            r.d[k] = static_cast<double>(a.i[k]);
          } else if (a.kind == Kind::kBool) {
            r.d[k] = a.b[k];
          } else {
            std::string t(a.s[k]);
            char* end = nullptr;
            r.d[k] = std::strtod(t.c_str(), &end);
            if (t.empty() || end != t.c_str() + t.size()) {
              Fail(e, "cannot convert \"" + t + "\" to float64");
            }
          }
          break;
        case Kind::kBool:
          if (a.kind == Kind::kString) {
            std::string_view t = a.s[k];
            if (t != "true" && t != "false")
              Fail(e, "cannot convert \"" + std::string(t) + "\" to bool");
            r.b[k] = t == "true";
          } else {
            r.b[k] = a.Num(k) != 0;
          }
          break;
        default: {  // to string
          Value v = a.kind == Kind::kInt     ? Value(a.i[k])
                    : a.kind == Kind::kFloat ? Value(a.d[k])
                                             : Value(a.b[k] != 0);
          r.owned.push_back(v.ToString());
          r.s[k] = r.owned.back();
        }
      }
    }
    return r;
  }

  const Batch& batch_;
  size_t rows_;
};

// `v` as `rows` values (a scalar repeated), with its validity (empty: none null).
Vec Broadcast(Vec v, size_t rows) {
  if (!v.scalar) return v;
  Vec r;
  r.kind = v.kind;
  r.scalar = false;
  r.n = rows;
  if (v.kind == Kind::kInt) r.i.assign(rows, v.i[0]);
  if (v.kind == Kind::kFloat) r.d.assign(rows, v.d[0]);
  if (v.kind == Kind::kBool) r.b.assign(rows, v.b[0]);
  if (v.kind == Kind::kString) {
    r.owned.push_back(std::string(v.s[0]));
    r.s.assign(rows, r.owned.back());
  }
  if (!v.Valid(0)) r.valid.assign(rows, 0);
  if (v.kind == Kind::kNull) {  // all null, typed int64
    r.kind = Kind::kInt;
    r.i.assign(rows, 0);
    r.valid.assign(rows, 0);
  }
  return r;
}

}  // namespace

Batch WithColumnOf(const Batch& batch, const std::string& name, const Expr& e) {
  Evaluator ev(batch);
  Vec v;
  try {
    v = Broadcast(ev.Eval(e), ev.rows());
  } catch (const TypeError& err) {
    throw DataError(std::string(err.what()) + " (in " + e.ToString() + ")");
  }
  BatchBuilder b(batch);
  switch (v.kind) {
    case Kind::kInt:
    case Kind::kNull:
      b.AddInt64(name, std::move(v.i));
      break;
    case Kind::kFloat:
      b.AddFloat64(name, std::move(v.d));
      break;
    case Kind::kBool:
      b.AddBool(name, std::move(v.b));
      break;
    case Kind::kString: {
      std::vector<std::string> s(v.s.begin(), v.s.end());
      b.AddString(name, std::move(s));
      break;
    }
  }
  if (!v.valid.empty()) b.SetValidity(name, std::move(v.valid));
  return b.Build();
}

Batch FilterBy(const Batch& batch, const Expr& e) {
  if (batch.NumRows() == 0) return batch;
  std::vector<int64_t> keep = RowsWhere(batch, e);
  if (static_cast<int64_t>(keep.size()) == batch.NumRows()) return batch;
  return batch.TakeRows(keep);
}

std::vector<int64_t> RowsWhere(const Batch& batch, const Expr& e) {
  Evaluator ev(batch);
  Vec v;
  try {
    v = ev.Eval(e);
  } catch (const TypeError& err) {
    throw DataError(std::string(err.what()) + " (in " + e.ToString() + ")");
  }
  if (v.kind != Kind::kBool && v.kind != Kind::kNull) {
    throw DataError(std::string("Filter needs a condition (bool), but ") + e.ToString() +
                    " gives " + KindName(v.kind));
  }
  v = Broadcast(std::move(v), ev.rows());
  std::vector<int64_t> keep;
  for (size_t k = 0; k < v.n; ++k) {
    if (v.Valid(k) && v.kind == Kind::kBool && v.b[k]) keep.push_back(static_cast<int64_t>(k));
  }
  return keep;
}

}  // namespace lumen::data::internal
