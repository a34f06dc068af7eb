// Inputs the benchmark programs share: trees of files sized like photos, generated once and
// kept between runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace lumen::bench {

namespace fs = std::filesystem;

inline uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// File sizes spread like photos (log-uniform, a few KiB to ~200 KiB), summing to `total`.
inline std::vector<int64_t> PhotoSizes(int n, int64_t total, uint64_t seed) {
  const double lo = 3 * 1024, hi = 200 * 1024;
  std::vector<double> raw(static_cast<size_t>(n));
  for (auto& r : raw) {
    double u = static_cast<double>(SplitMix(seed) >> 11) / 9007199254740992.0;
    r = lo * std::pow(hi / lo, u);
  }
  std::vector<int64_t> sizes(static_cast<size_t>(n));
  for (int iter = 0; iter < 50; ++iter) {  // scale toward the total, keeping the bounds
    double sum = 0;
    for (double r : raw) sum += r;
    double f = static_cast<double>(total) / sum;
    for (auto& r : raw) r = std::clamp(r * f, lo, hi);
  }
  int64_t sum = 0;
  for (size_t i = 0; i < raw.size(); ++i) sum += sizes[i] = static_cast<int64_t>(raw[i]);
  for (size_t i = 0; sum != total; i = (i + 1) % sizes.size()) {  // exact total
    int64_t step = sum < total ? 1 : -1;
    int64_t room = std::min<int64_t>(std::abs(total - sum), 4096);
    int64_t next = sizes[i] + step * room;
    if (next >= static_cast<int64_t>(lo) / 2 && next <= static_cast<int64_t>(hi)) {
      sizes[i] = next;
      sum += step * room;
    }
  }
  return sizes;
}

// Writes the tree once (kept between runs; the manifest says what it holds).
inline std::vector<std::pair<std::string, int64_t>> Generate(const std::string& root, int n,
                                                             int64_t total, int classes,
                                                             uint64_t seed) {
  std::vector<int64_t> sizes = PhotoSizes(n, total, seed);
  std::vector<std::pair<std::string, int64_t>> files;
  for (int i = 0; i < n; ++i) {
    char rel[128];
    std::snprintf(rel, sizeof(rel), "n%08d/img_%06d.jpg", 2085620 + (i % classes) * 17, i);
    files.emplace_back(rel, sizes[static_cast<size_t>(i)]);
  }
  std::string manifest = root + ".manifest";  // beside the tree, not in it
  std::string want = std::to_string(n) + " " + std::to_string(total) + " " + std::to_string(seed);
  std::ifstream m(manifest);
  std::string have;
  std::getline(m, have);
  if (have == want) return files;
  fs::remove_all(root);
  std::vector<char> buf(256 * 1024);
  uint64_t s = seed;
  for (const auto& [rel, size] : files) {
    fs::create_directories(fs::path(root + "/" + rel).parent_path());
    for (size_t k = 0; k + 8 <= static_cast<size_t>(size); k += 8) {
      uint64_t r = SplitMix(s);
      std::memcpy(buf.data() + k, &r, 8);
    }
    std::ofstream(root + "/" + rel, std::ios::binary).write(buf.data(), size);
  }
  std::ofstream(manifest) << want << "\n";
  if (std::system("sync") != 0) std::fprintf(stderr, "sync failed\n");
  return files;
}

}  // namespace lumen::bench
