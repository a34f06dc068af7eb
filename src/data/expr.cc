// Building and printing expressions (expr.h); evaluation is in expr_eval.cc.
#include <algorithm>

#include "lumen/data/expr.h"

namespace lumen::data {

Expr::Expr(int64_t v) : literal_(v) {}
Expr::Expr(int v) : literal_(static_cast<int64_t>(v)) {}
Expr::Expr(double v) : literal_(v) {}
Expr::Expr(bool v) : literal_(v) {}
Expr::Expr(const char* v) : literal_(std::string(v)) {}
Expr::Expr(std::string v) : literal_(std::move(v)) {}

Expr Expr::Literal(Value v) {
  Expr e;
  e.literal_ = std::move(v);
  return e;
}

Expr Expr::Column(std::string name) {
  Expr e;
  e.op_ = static_cast<int>(Op::kColumn);
  e.name_ = std::move(name);
  return e;
}

Expr Expr::Make(Op op, std::vector<Expr> args) {
  Expr e;
  e.op_ = static_cast<int>(op);
  e.args_ = std::move(args);
  return e;
}

Expr Expr::IsNull() const { return Make(Op::kIsNull, {*this}); }
Expr Expr::IsNotNull() const { return Make(Op::kIsNotNull, {*this}); }
Expr Expr::StartsWith(const Expr& s) const { return Make(Op::kStartsWith, {*this, s}); }
Expr Expr::EndsWith(const Expr& s) const { return Make(Op::kEndsWith, {*this, s}); }
Expr Expr::Contains(const Expr& s) const { return Make(Op::kContains, {*this, s}); }

Expr Expr::Cast(DataType type) const {
  if (type != DataType::kInt64 && type != DataType::kFloat64 && type != DataType::kBool &&
      type != DataType::kString) {
    throw TypeError(
        std::string("Cast: expressions convert to int64, float64, bool or string, not ") +
        DataTypeName(type));
  }
  Expr e = Make(Op::kCast, {*this});
  e.cast_type_ = static_cast<int>(type);
  return e;
}

std::vector<std::string> Expr::Columns() const {
  std::vector<std::string> out;
  auto walk = [&out](const Expr& e, auto&& self) -> void {
    if (e.op() == Op::kColumn) {
      if (std::find(out.begin(), out.end(), e.name()) == out.end()) out.push_back(e.name());
      return;
    }
    for (const auto& a : e.args()) self(a, self);
  };
  walk(*this, walk);
  return out;
}

namespace {

const char* Symbol(Expr::Op op) {
  switch (op) {
    case Expr::Op::kAdd:
      return "+";
    case Expr::Op::kSub:
      return "-";
    case Expr::Op::kMul:
      return "*";
    case Expr::Op::kDiv:
      return "/";
    case Expr::Op::kMod:
      return "%";
    case Expr::Op::kEq:
      return "==";
    case Expr::Op::kNe:
      return "!=";
    case Expr::Op::kLt:
      return "<";
    case Expr::Op::kLe:
      return "<=";
    case Expr::Op::kGt:
      return ">";
    case Expr::Op::kGe:
      return ">=";
    case Expr::Op::kAnd:
      return "&&";
    case Expr::Op::kOr:
      return "||";
    default:
      return "?";
  }
}

std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string Expr::ToString() const {
  switch (op()) {
    case Op::kColumn:
      return "col(" + name_ + ")";
    case Op::kLiteral:
      return literal_.kind() == Value::Kind::kString ? Quoted(literal_.AsString())
                                                     : literal_.ToString();
    case Op::kNeg:
      return "-" + args_[0].ToString();
    case Op::kNot:
      return "!" + args_[0].ToString();
    case Op::kIsNull:
      return args_[0].ToString() + ".IsNull()";
    case Op::kIsNotNull:
      return args_[0].ToString() + ".IsNotNull()";
    case Op::kStartsWith:
      return args_[0].ToString() + ".StartsWith(" + args_[1].ToString() + ")";
    case Op::kEndsWith:
      return args_[0].ToString() + ".EndsWith(" + args_[1].ToString() + ")";
    case Op::kContains:
      return args_[0].ToString() + ".Contains(" + args_[1].ToString() + ")";
    case Op::kCast:
      return args_[0].ToString() + ".Cast(" + DataTypeName(cast_type()) + ")";
    default:
      return "(" + args_[0].ToString() + " " + Symbol(op()) + " " + args_[1].ToString() + ")";
  }
}

Expr operator+(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kAdd, {a, b}); }
Expr operator-(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kSub, {a, b}); }
Expr operator*(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kMul, {a, b}); }
Expr operator/(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kDiv, {a, b}); }
Expr operator%(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kMod, {a, b}); }
Expr operator-(const Expr& a) { return Expr::Make(Expr::Op::kNeg, {a}); }
Expr operator==(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kEq, {a, b}); }
Expr operator!=(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kNe, {a, b}); }
Expr operator<(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kLt, {a, b}); }
Expr operator<=(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kLe, {a, b}); }
Expr operator>(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kGt, {a, b}); }
Expr operator>=(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kGe, {a, b}); }
Expr operator&&(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kAnd, {a, b}); }
Expr operator||(const Expr& a, const Expr& b) { return Expr::Make(Expr::Op::kOr, {a, b}); }
Expr operator!(const Expr& a) { return Expr::Make(Expr::Op::kNot, {a}); }

}  // namespace lumen::data
