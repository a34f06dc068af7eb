#include <lumen/lumen.h>

#include <cstdio>

int Square(int x) { return x * x; }
LUMEN_REMOTE(Square);

int main(int argc, char** argv) {
  lumen::Init(argc, argv);
  int total = 0;
  std::vector<lumen::ObjectRef<int>> refs;
  for (int i = 0; i < 10; ++i) refs.push_back(lumen::Task(Square).Remote(i));
  for (int v : lumen::Get(refs)) total += v;
  std::printf("sum of squares 0..9 = %d\n", total);
  lumen::Shutdown();
  return total == 285 ? 0 : 1;
}
