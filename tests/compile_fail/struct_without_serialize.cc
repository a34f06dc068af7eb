// A struct without LUMEN_SERIALIZE returned from a task: one static_assert naming the type
// and the macro, not msgpack-c's "has no member named 'msgpack_unpack'".
#include "lumen/lumen.h"

struct Point {
  double x, y;
};

std::vector<Point> Corners(int n) { return std::vector<Point>(static_cast<size_t>(n)); }
LUMEN_REMOTE(Corners);

int main() {
  auto ref = lumen::Task(Corners).Remote(4);
  return static_cast<int>(lumen::Get(ref).size());
}
