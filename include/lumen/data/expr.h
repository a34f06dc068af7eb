// Expressions over columns (Ray Data's col/lit, Polars' and Daft's expressions): computed
// columns and row filters that need no registered function, run vectorised over whole
// columns, show in Explain() and are pushed down into CSV and JSON reads.
//
// @code
//   namespace ld = lumen::data;
//   ds.WithColumn("total", ld::Col("qty") * ld::Col("price") + ld::Lit(1.0))
//     .Filter(ld::Col("city") == "Oslo" && ld::Col("qty") > 3)
//     .Filter(ld::Col("note").IsNull() || ld::Col("note").StartsWith("ok"));
// @endcode
//
// Types: int64 op int64 is int64 for + - * %, float64 as soon as a float64 is involved, and `/`
// is always float64 (x / 0 is inf or nan, x % 0 is null); + also joins strings. Comparisons
// take numbers with numbers, strings with strings, bools with bools. && || ! take bools.
// Nulls follow SQL: arithmetic and comparisons with a null give null, && and || are three-valued
// (false && null is false, true || null is true), and Filter keeps the rows whose condition is
// true (not null). A type mismatch or an unknown column fails the block with a DataError that
// names the expression.
//
// Thread safety: an Expr is an immutable value; copies may be used from any thread.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "lumen/data/batch.h"
#include "lumen/data/row.h"
#include "lumen/serialization.h"

namespace lumen::data {

class Expr {
 public:
  enum class Op : int {
    kColumn = 0,
    kLiteral,
    kAdd,
    kSub,
    kMul,
    kDiv,
    kMod,
    kNeg,
    kEq,
    kNe,
    kLt,
    kLe,
    kGt,
    kGe,
    kAnd,
    kOr,
    kNot,
    kIsNull,
    kIsNotNull,
    kStartsWith,
    kEndsWith,
    kContains,
    kCast,
  };

  Expr() = default;  // the literal null
  // Literals, so that `Col("qty") > 3` and `Col("city") == "Oslo"` read naturally.
  Expr(int64_t v);               // NOLINT: implicit on purpose
  Expr(int v);                   // NOLINT
  Expr(double v);                // NOLINT
  Expr(bool v);                  // NOLINT
  Expr(const char* v);           // NOLINT
  Expr(std::string v);           // NOLINT
  static Expr Literal(Value v);  // Lit()
  static Expr Column(std::string name);

  Expr IsNull() const;
  Expr IsNotNull() const;
  // Strings: whether the value starts with / ends with / contains `s` (an expression too).
  Expr StartsWith(const Expr& s) const;
  Expr EndsWith(const Expr& s) const;
  Expr Contains(const Expr& s) const;
  // Converts to int64, float64, bool or string. Numbers convert to each other (float64 to
  // int64 truncates toward zero) and to their text; text converts to a number when it is one
  // (else the block fails naming the value); bools convert to 0 / 1.
  Expr Cast(DataType type) const;

  Op op() const { return static_cast<Op>(op_); }
  // The column name (kColumn), the literal (kLiteral), the operands, the target of a cast.
  const std::string& name() const { return name_; }
  const Value& literal() const { return literal_; }
  const std::vector<Expr>& args() const { return args_; }
  DataType cast_type() const { return static_cast<DataType>(cast_type_); }
  // The columns the expression reads, each once, in the order met.
  std::vector<std::string> Columns() const;
  // `(col(qty) * col(price)) + 1.0`
  std::string ToString() const;

  static Expr Make(Op op, std::vector<Expr> args);

 private:
  int op_ = static_cast<int>(Op::kLiteral);
  std::string name_;
  Value literal_;
  std::vector<Expr> args_;
  int cast_type_ = 0;

 public:
  LUMEN_SERIALIZE(op_, name_, literal_, args_, cast_type_);
};

// A column of the dataset, and a literal value.
inline Expr Col(std::string name) { return Expr::Column(std::move(name)); }
inline Expr Lit(Value v) { return Expr::Literal(std::move(v)); }

Expr operator+(const Expr& a, const Expr& b);
Expr operator-(const Expr& a, const Expr& b);
Expr operator*(const Expr& a, const Expr& b);
Expr operator/(const Expr& a, const Expr& b);
Expr operator%(const Expr& a, const Expr& b);
Expr operator-(const Expr& a);
Expr operator==(const Expr& a, const Expr& b);
Expr operator!=(const Expr& a, const Expr& b);
Expr operator<(const Expr& a, const Expr& b);
Expr operator<=(const Expr& a, const Expr& b);
Expr operator>(const Expr& a, const Expr& b);
Expr operator>=(const Expr& a, const Expr& b);
Expr operator&&(const Expr& a, const Expr& b);
Expr operator||(const Expr& a, const Expr& b);
Expr operator!(const Expr& a);

inline std::ostream& operator<<(std::ostream& os, const Expr& e) { return os << e.ToString(); }

namespace internal {
// Evaluates `e` over `batch` (internal: WithColumn, Filter and read pushdown run it).
// WithColumn: the result as a new column `name` of `batch`. Filter: the rows where `e` is true.
Batch WithColumnOf(const Batch& batch, const std::string& name, const Expr& e);
Batch FilterBy(const Batch& batch, const Expr& e);
// The rows of `batch` where `e` is true, in order.
std::vector<int64_t> RowsWhere(const Batch& batch, const Expr& e);
}  // namespace internal

}  // namespace lumen::data
