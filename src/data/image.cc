// Resizing, cropping and normalising images (lumen/data/image.h).
#include "lumen/data/image.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "data/image_codec.h"
#include "lumen/errors.h"

namespace lumen::data {

namespace {

// Pillow's fixed-point resampling (Resample.c): coefficients with 22 fractional bits, each
// pass rounded to 8 bits. The same arithmetic gives the same pixels.
constexpr int kPrecisionBits = 32 - 8 - 2;

// For each output position along one axis: the first input position it reads, how many, and
// their weights.
struct Coefficients {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;  // ksize per output position
  // For the AVX2 horizontal pass (PlanPairs): per pair of output positions, where they read;
  // per pair of them and pair of taps, their weights split in 11-bit halves as int16 lanes.
  struct Pair {
    int32_t first_a = 0, first_b = 0;  // byte offsets in a row of the two pixels' first taps
    int32_t tap_pairs = 0;             // pairs of taps the longer of the two reads
    int32_t reach = 0;                 // bytes from the row's start its reads need
  };
  std::vector<Pair> pairs;
  int64_t row_reach = 0;  // the largest reach
  std::vector<int16_t> pair_lanes;
  // For the AVX2 one-channel pass (PlanGroups): per group of eight output positions, where its
  // two halves of four read 16 bytes each; per group and pair of taps, a pshufb mask and the
  // weights' halves as int16 lanes.
  struct Group {
    int32_t first_a = 0, first_b = 0;  // byte offsets of the halves' 16-byte windows
    int32_t reach = 0;                 // bytes from the row's start its reads need
    bool vector = false;               // its taps fit in the windows (else scalar)
  };
  std::vector<Group> groups;
  std::vector<uint8_t> group_masks;
  std::vector<int16_t> group_lanes;
  int planned_for = 0;  // the channels the AVX2 plan was made for (0: none)
};

// Fills c.pairs and c.pair_lanes for pixels of `ch` bytes: for output positions (2j, 2j + 1)
// and taps (2t, 2t + 1), 32 int16 lanes — the low 11 bits of the weights, then the high bits;
// in each, eight lanes for 2j then eight for 2j + 1, each the two taps' weights four times
// (once per channel). A weight w is (w >> 11) * 2048 + (w & 2047), so the sums of both halves'
// products give Pillow's sum exactly, and every product fits pmaddwd's 16 bits. A pixel with
// fewer taps than its neighbour gets zero weights.
void PlanPairs(Coefficients& c, int ch) {
  const size_t pairs = c.first.size() / 2, k = static_cast<size_t>(c.ksize);
  const size_t tap_pairs = (k + 1) / 2;
  c.pairs.resize(pairs);
  c.row_reach = 0;
  c.pair_lanes.assign(pairs * tap_pairs * 32, 0);
  for (size_t j = 0; j < pairs; ++j) {
    Coefficients::Pair& p = c.pairs[j];
    p.first_a = c.first[2 * j] * ch;
    p.first_b = c.first[2 * j + 1] * ch;
    p.tap_pairs = (std::max(c.count[2 * j], c.count[2 * j + 1]) + 1) / 2;
    p.reach = std::max(p.first_a, p.first_b) + 2 * (p.tap_pairs - 1) * ch + 8;  // 8-byte loads
    c.row_reach = std::max<int64_t>(c.row_reach, p.reach);
    for (size_t t = 0; t < tap_pairs; ++t) {
      int16_t* lanes = &c.pair_lanes[(j * tap_pairs + t) * 32];
      for (size_t h = 0; h < 2; ++h) {
        for (size_t tap = 0; tap < 2; ++tap) {
          const size_t i = 2 * t + tap;
          const int32_t w = i < k ? c.weights[(2 * j + h) * k + i] : 0;
          for (size_t q = 0; q < 4; ++q) {
            lanes[8 * h + 2 * q + tap] = static_cast<int16_t>(w & 2047);
            lanes[16 + 8 * h + 2 * q + tap] = static_cast<int16_t>(w >> 11);
          }
        }
      }
    }
  }
}

// Fills c.groups, c.group_masks and c.group_lanes for one-byte pixels: output positions 8g ..
// 8g + 7 in two halves of four, each half reading the 16 bytes from its first position's first
// tap. Per pair of taps (2t, 2t + 1): a pshufb mask putting each position's two bytes in int16
// lanes side by side (half a in the low 128 bits, b in the high), and 32 int16 weights — the
// low 11 bits of each, then the high bits, as in PlanPairs. A group whose taps do not all fit
// in its windows is done scalar.
void PlanGroups(Coefficients& c) {
  const size_t groups = c.first.size() / 8, k = static_cast<size_t>(c.ksize);
  const size_t tap_pairs = (k + 1) / 2;
  c.groups.resize(groups);
  c.row_reach = 0;
  c.group_masks.assign(groups * tap_pairs * 32, 0x80);  // 0x80: pshufb's zero byte
  c.group_lanes.assign(groups * tap_pairs * 32, 0);
  for (size_t g = 0; g < groups; ++g) {
    Coefficients::Group& gr = c.groups[g];
    gr.first_a = c.first[8 * g];
    gr.first_b = c.first[8 * g + 4];
    gr.reach = std::max(gr.first_a, gr.first_b) + 16;
    gr.vector = true;
    for (size_t h = 0; h < 2; ++h) {
      const int32_t window = h == 0 ? gr.first_a : gr.first_b;
      for (size_t p = 0; p < 4; ++p) {
        const size_t x = 8 * g + 4 * h + p;
        const int32_t offset = c.first[x] - window;
        if (offset < 0 || offset + c.count[x] > 16) gr.vector = false;
        for (size_t t = 0; t < tap_pairs; ++t) {
          for (size_t tap = 0; tap < 2; ++tap) {
            const size_t i = 2 * t + tap;
            if (static_cast<int>(i) >= c.count[x]) continue;  // zero byte, zero weight
            const size_t lane = 8 * h + 2 * p + tap;
            c.group_masks[(g * tap_pairs + t) * 32 + 2 * lane] =
                static_cast<uint8_t>(std::clamp<int32_t>(offset + static_cast<int32_t>(i), 0, 15));
            const int32_t w = c.weights[x * k + i];
            c.group_lanes[(g * tap_pairs + t) * 32 + lane] = static_cast<int16_t>(w & 2047);
            c.group_lanes[(g * tap_pairs + t) * 32 + 16 + lane] = static_cast<int16_t>(w >> 11);
          }
        }
      }
    }
    if (gr.vector) c.row_reach = std::max<int64_t>(c.row_reach, gr.reach);
  }
}

// libjpeg's upsampling of a plane subsampled by `factor` along one axis (`samples` of them):
// the samples full-resolution position `u` is made from, and their shares. For 2 its "fancy"
// upsampling: three quarters of the sample under u, a quarter of the next nearest (the edge
// sample at the edges); otherwise the sample under u, replicated.
int UpsampledFrom(int64_t u, int factor, int64_t samples, int64_t from[2], double share[2]) {
  const int64_t m = u / factor;
  from[0] = m;
  share[0] = 1.0;
  if (factor != 2) return 1;
  share[0] = 0.75;
  from[1] = std::clamp<int64_t>(u % 2 == 0 ? m - 1 : m + 1, 0, samples - 1);
  share[1] = 0.25;
  return 2;
}

// Pillow's bilinear (triangle filter) coefficients for `in_size` positions to `out_size`. With
// a `factor` above 1 they are over the ceil(in_size / factor) samples of a plane subsampled by
// it (a JPEG's chroma): libjpeg's upsampling of the plane folded into the filter, so resizing
// the plane gives what upsampling it and resizing the result would, but for rounding.
Coefficients Bilinear(int64_t in_size, int64_t out_size, int factor = 1) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // the triangle filter's support is 1
  const int64_t samples = (in_size + factor - 1) / factor;
  const int taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  // Each output position's normalised weights over its inputs, first input first.
  std::vector<std::vector<double>> rows(static_cast<size_t>(out_size));
  Coefficients c;
  c.first.resize(static_cast<size_t>(out_size));
  c.count.resize(static_cast<size_t>(out_size));
  std::vector<double> k(static_cast<size_t>(taps));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = static_cast<int>(in_size);
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::abs((x + xmin - center + 0.5) * ss);
      k[static_cast<size_t>(x)] = t < 1.0 ? 1.0 - t : 0.0;
      ww += k[static_cast<size_t>(x)];
    }
    if (ww != 0.0) {
      for (int x = 0; x < xmax; ++x) k[static_cast<size_t>(x)] /= ww;
    }
    std::vector<double>& row = rows[static_cast<size_t>(xx)];
    if (factor == 1) {
      row.assign(k.begin(), k.begin() + xmax);
      c.first[static_cast<size_t>(xx)] = xmin;
      c.count[static_cast<size_t>(xx)] = xmax;
      continue;
    }
    const int64_t base = std::max<int64_t>(0, xmin / factor - 1);
    int64_t last = base;
    row.assign(static_cast<size_t>(xmax / factor + 3), 0.0);
    for (int x = 0; x < xmax; ++x) {
      int64_t from[2];
      double share[2];
      const int n = UpsampledFrom(xmin + x, factor, samples, from, share);
      for (int i = 0; i < n; ++i) {
        row[static_cast<size_t>(from[i] - base)] += k[static_cast<size_t>(x)] * share[i];
        last = std::max(last, from[i]);
      }
    }
    int64_t first = base;
    while (first < last && row[static_cast<size_t>(first - base)] == 0.0) ++first;
    row.erase(row.begin(), row.begin() + (first - base));
    row.resize(static_cast<size_t>(last - first + 1));
    c.first[static_cast<size_t>(xx)] = static_cast<int>(first);
    c.count[static_cast<size_t>(xx)] = static_cast<int>(last - first + 1);
  }
  c.ksize = factor == 1 ? taps : *std::max_element(c.count.begin(), c.count.end());
  c.weights.assign(static_cast<size_t>(out_size * c.ksize), 0);
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const std::vector<double>& row = rows[static_cast<size_t>(xx)];
    for (size_t x = 0; x < row.size(); ++x) {
      const double w = row[x];
      c.weights[static_cast<size_t>(xx * c.ksize) + x] = static_cast<int32_t>(
          w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
  }
  return c;
}

// Bilinear's coefficients, kept per thread for the last few geometries: a reader resizing its
// images to one size computes them (and their AVX2 plans) once, not per image.
std::shared_ptr<Coefficients> CachedBilinear(int64_t in_size, int64_t out_size, int factor = 1) {
  struct Entry {
    int64_t in_size, out_size;
    int factor;
    std::shared_ptr<Coefficients> c;
  };
  thread_local std::deque<Entry> cache;
  for (const Entry& e : cache) {
    if (e.in_size == in_size && e.out_size == out_size && e.factor == factor) return e.c;
  }
  if (cache.size() == 16) cache.pop_front();
  cache.push_back({in_size, out_size, factor,
                   std::make_shared<Coefficients>(Bilinear(in_size, out_size, factor))});
  return cache.back().c;
}

inline uint8_t Clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One pixel resampled horizontally from `s` (its first input pixel): C channels summed in one
// pass, as Pillow does.
template <int C>
inline void HorizontalPixel(const uint8_t* s, const int32_t* k, int n, uint8_t* dst) {
  int32_t ss[C];
  for (int b = 0; b < C; ++b) ss[b] = 1 << (kPrecisionBits - 1);
  for (int i = 0; i < n; ++i) {
    for (int b = 0; b < C; ++b) ss[b] += s[i * C + b] * k[i];
  }
  for (int b = 0; b < C; ++b) dst[b] = Clip8(ss[b]);
}

// Output pixels [from, to) of a row, scalar: the vector kernels' edges and tails too.
template <int C>
inline void HorizontalPixels(const uint8_t* src, uint8_t* dst, const Coefficients& c, int64_t from,
                             int64_t to) {
  for (int64_t x = from; x < to; ++x) {
    HorizontalPixel<C>(src + c.first[static_cast<size_t>(x)] * C,
                       &c.weights[static_cast<size_t>(x * c.ksize)],
                       c.count[static_cast<size_t>(x)], dst + x * C);
  }
}

template <int C>
void HorizontalRow(const uint8_t* src, const uint8_t*, uint8_t* dst, const Coefficients& c,
                   int64_t out_w) {
  HorizontalPixels<C>(src, dst, c, 0, out_w);
}

void VerticalRow(const uint8_t* rows, int64_t row_bytes, const int32_t* k, int n, uint8_t* d,
                 int64_t from) {
  for (int64_t b = from; b < row_bytes; ++b) {
    int32_t acc = 1 << (kPrecisionBits - 1);
    for (int i = 0; i < n; ++i) acc += rows[i * row_bytes + b] * k[i];
    d[b] = Clip8(acc);
  }
}

#if defined(__x86_64__)
// The same arithmetic in SIMD lanes (AVX2, chosen at run time): every lane computes what the
// scalar code does for one byte, so the pixels are identical.

std::atomic<bool> vector_kernels{true};  // internal::UseVectorResize

bool HasAvx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes && vector_kernels.load(std::memory_order_relaxed);
}

// Adds the pmaddwd products of `taps` (int16 lanes) with a tap pair's weights — `w[0]` their
// low 11 bits, `w[1]` their high bits (PlanPairs, PlanGroups) — to `lo` and `hi`.
__attribute__((target("avx2"))) inline void MaddHalves(__m256i taps, const __m256i* w, __m256i& lo,
                                                       __m256i& hi) {
  lo = _mm256_add_epi32(lo, _mm256_madd_epi16(taps, _mm256_loadu_si256(w)));
  hi = _mm256_add_epi32(hi, _mm256_madd_epi16(taps, _mm256_loadu_si256(w + 1)));
}

// The sums lo + (hi << 11), rounded to 8 bits as Clip8: in each 128-bit half, its four sums'
// bytes first.
__attribute__((target("avx2"))) inline __m256i SumsToBytes(__m256i lo, __m256i hi) {
  const __m256i half = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
  __m256i acc = _mm256_add_epi32(_mm256_add_epi32(half, _mm256_slli_epi32(hi, 11)), lo);
  acc = _mm256_srai_epi32(acc, kPrecisionBits);
  const __m256i words = _mm256_packs_epi32(acc, acc);
  return _mm256_packus_epi16(words, words);
}

// Horizontal for 3 or 4 channels: two output pixels at a time, one per 128-bit half; two
// taps at a time, their bytes spread to int16 lanes (channel by channel, the two taps side by
// side) and multiplied and summed pairwise by pmaddwd with both halves of the weights
// (PlanPairs). Reads 8 bytes per two taps, so in a row too near `end` a pair whose reads would
// pass it is done scalar.
template <int C>
__attribute__((target("avx2"))) void HorizontalRowAvx2(const uint8_t* src, const uint8_t* end,
                                                       uint8_t* dst, const Coefficients& c,
                                                       int64_t out_w) {
  static_assert(C == 3 || C == 4);
  constexpr char z = -128;  // pshufb: a zero byte
  const __m256i spread = C == 4 ? _mm256_setr_epi8(0, z, 4, z, 1, z, 5, z, 2, z, 6, z, 3, z, 7, z,
                                                   0, z, 4, z, 1, z, 5, z, 2, z, 6, z, 3, z, 7, z)
                                : _mm256_setr_epi8(0, z, 3, z, 1, z, 4, z, 2, z, 5, z, z, z, z, z,
                                                   0, z, 3, z, 1, z, 4, z, 2, z, 5, z, z, z, z, z);
  // Local copies: the byte stores below may alias anything, so the compiler would reload
  // members through `c` after each one.
  const Coefficients::Pair* pairs = c.pairs.data();
  const int16_t* lanes = c.pair_lanes.data();
  const int64_t lane_stride = (c.ksize + 1) / 2 * 32;
  const int64_t npairs = static_cast<int64_t>(c.pairs.size());
  const bool near_end = end - src < c.row_reach;
  for (int64_t j = 0; j < npairs; ++j) {
    const Coefficients::Pair p = pairs[j];
    const uint8_t* sa = src + p.first_a;
    const uint8_t* sb = src + p.first_b;
    uint8_t* out = dst + 2 * j * C;
    if (near_end && end - src < p.reach) {
      HorizontalPixels<C>(src, dst, c, 2 * j, 2 * j + 2);
      continue;
    }
    const int16_t* w = lanes + j * lane_stride;
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int t = 0; t < p.tap_pairs; ++t) {
      const __m128i pa = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sa + 2 * t * C));
      const __m128i pb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sb + 2 * t * C));
      const __m256i px =
          _mm256_shuffle_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(pa), pb, 1), spread);
      MaddHalves(px, reinterpret_cast<const __m256i*>(w + t * 32), lo, hi);
    }
    const __m256i bytes = SumsToBytes(lo, hi);  // per 128-bit half: one pixel
    const int32_t pa = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
    const int32_t pb = _mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1));
    // Four bytes each: for three channels the fourth lands on the next pixel's first byte,
    // written after — except past the row's last pixel.
    std::memcpy(out, &pa, 4);
    if (2 * j + 2 < out_w) {
      std::memcpy(out + C, &pb, 4);
    } else {
      std::memcpy(out + C, &pb, C);
    }
  }
  HorizontalPixels<C>(src, dst, c, 2 * npairs, out_w);
}

// Horizontal for one channel: eight output pixels at a time (PlanGroups), two taps per pmaddwd
// with both halves of the weights; groups that cannot (or, in a row too near `end`, whose
// 16-byte reads would pass it) are done scalar.
__attribute__((target("avx2"))) void HorizontalRowAvx2Gray(const uint8_t* src, const uint8_t* end,
                                                           uint8_t* dst, const Coefficients& c,
                                                           int64_t out_w) {
  const Coefficients::Group* groups = c.groups.data();
  const uint8_t* masks = c.group_masks.data();
  const int16_t* lanes = c.group_lanes.data();
  const int64_t tap_pairs = (c.ksize + 1) / 2;
  const int64_t ngroups = static_cast<int64_t>(c.groups.size());
  const bool near_end = end - src < c.row_reach;
  for (int64_t g = 0; g < ngroups; ++g) {
    const Coefficients::Group gr = groups[g];
    if (!gr.vector || (near_end && end - src < gr.reach)) {
      HorizontalPixels<1>(src, dst, c, 8 * g, 8 * g + 8);
      continue;
    }
    const __m256i px = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + gr.first_a))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + gr.first_b)), 1);
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int64_t t = 0; t < tap_pairs; ++t) {
      const int64_t at = g * tap_pairs + t;
      const __m256i taps = _mm256_shuffle_epi8(
          px, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(masks + at * 32)));
      MaddHalves(taps, reinterpret_cast<const __m256i*>(lanes + at * 32), lo, hi);
    }
    const __m256i bytes = SumsToBytes(lo, hi);  // per 128-bit half: 4 pixels
    const int32_t a = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
    const int32_t b = _mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1));
    std::memcpy(dst + 8 * g, &a, 4);
    std::memcpy(dst + 8 * g + 4, &b, 4);
  }
  HorizontalPixels<1>(src, dst, c, 8 * ngroups, out_w);
}

// Vertical: eight bytes of the output row at a time, the rest scalar.
__attribute__((target("avx2"))) void VerticalRowAvx2(const uint8_t* rows, int64_t row_bytes,
                                                     const int32_t* k, int n, uint8_t* d) {
  const __m256i half = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
  int64_t b = 0;
  for (; b + 8 <= row_bytes; b += 8) {
    __m256i acc = half;
    for (int i = 0; i < n; ++i) {
      const __m128i s8 =
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rows + i * row_bytes + b));
      acc = _mm256_add_epi32(acc,
                             _mm256_mullo_epi32(_mm256_cvtepu8_epi32(s8), _mm256_set1_epi32(k[i])));
    }
    acc = _mm256_srai_epi32(acc, kPrecisionBits);
    const __m256i words = _mm256_packs_epi32(acc, acc);
    const __m256i bytes = _mm256_packus_epi16(words, words);  // per 128-bit half: 4 results
    const int32_t lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
    const int32_t hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1));
    std::memcpy(d + b, &lo, 4);
    std::memcpy(d + b + 4, &hi, 4);
  }
  VerticalRow(rows, row_bytes, k, n, d, b);
}
#endif

// Rows [row0, row0 + rows) of `in` (rows `stride` bytes apart, channels ch, `in_bytes` in all)
// resampled horizontally to `c`'s output width, into `out` (rows * out_w * ch bytes).
void Horizontal(const uint8_t* in, size_t in_bytes, int64_t stride, int64_t ch, int64_t row0,
                int64_t rows, Coefficients& c, int64_t out_w, uint8_t* out) {
  using Row = void (*)(const uint8_t*, const uint8_t*, uint8_t*, const Coefficients&, int64_t);
  Row row = ch == 1   ? HorizontalRow<1>
            : ch == 2 ? HorizontalRow<2>
            : ch == 3 ? HorizontalRow<3>
                      : HorizontalRow<4>;
#if defined(__x86_64__)
  if (HasAvx2() && (ch >= 3 || ch == 1)) {
    if (c.planned_for != ch) {
      if (ch == 1) {
        PlanGroups(c);
      } else {
        PlanPairs(c, static_cast<int>(ch));
      }
      c.planned_for = static_cast<int>(ch);
    }
    row = ch == 1 ? HorizontalRowAvx2Gray : ch == 3 ? HorizontalRowAvx2<3> : HorizontalRowAvx2<4>;
  }
#endif
  for (int64_t y = 0; y < rows; ++y) {
    row(in + (row0 + y) * stride, in + in_bytes, out + y * out_w * ch, c, out_w);
  }
}

// `in` (rows of `row_bytes`) resampled vertically to `c`'s output height, into `out`
// (out_h * row_bytes bytes); c.first counts from row `row0` of `in`.
void Vertical(const uint8_t* in, int64_t row_bytes, int64_t row0, const Coefficients& c,
              int64_t out_h, uint8_t* out) {
#if defined(__x86_64__)
  const bool simd = HasAvx2();
#endif
  for (int64_t y = 0; y < out_h; ++y) {
    const int32_t* k = &c.weights[static_cast<size_t>(y * c.ksize)];
    const uint8_t* rows = in + (c.first[static_cast<size_t>(y)] - row0) * row_bytes;
    const int n = c.count[static_cast<size_t>(y)];
    uint8_t* d = out + y * row_bytes;
#if defined(__x86_64__)
    if (simd) {
      VerticalRowAvx2(rows, row_bytes, k, n, d);
      continue;
    }
#endif
    VerticalRow(rows, row_bytes, k, n, d, 0);
  }
}

// `in` (rows `stride` bytes apart, `ch` channels, `in_bytes` in all) resampled horizontally by
// `horiz`, then vertically by `vert`, into `out` (size.height * size.width * ch bytes). Only the
// rows the vertical pass reads are resampled horizontally, into a buffer this thread reuses.
void BothPasses(const uint8_t* in, size_t in_bytes, int64_t stride, int64_t ch,
                const Coefficients& vert, Coefficients& horiz, ImageSize size, uint8_t* out) {
  const int64_t first = vert.first.front();
  const int64_t last = vert.first.back() + vert.count.back();
  thread_local std::vector<uint8_t> tmp;
  tmp.resize(static_cast<size_t>((last - first) * size.width * ch));
  Horizontal(in, in_bytes, stride, ch, first, last - first, horiz, size.width, tmp.data());
  Vertical(tmp.data(), size.width * ch, first, vert, size.height, out);
}

void CheckImage(const ImageView& image, const char* what) {
  if (image.height <= 0 || image.width <= 0 || image.channels < 1 || image.channels > 4 ||
      static_cast<int64_t>(image.pixels.size()) != image.height * image.width * image.channels) {
    throw TypeError(std::string(what) + ": an image of " + std::to_string(image.height) + " x " +
                    std::to_string(image.width) + " x " + std::to_string(image.channels) +
                    " with " + std::to_string(image.pixels.size()) + " bytes of pixels");
  }
}

void CheckSize(ImageSize size, const char* what) {
  if (size.height <= 0 || size.width <= 0) {
    throw TypeError(std::string(what) + ": the size must be positive, got " +
                    std::to_string(size.height) + " x " + std::to_string(size.width));
  }
}

// Python's round() of diff / 2: halves go to the even neighbour (torchvision's crop offset).
int64_t HalfRoundedEven(int64_t diff) {
  int64_t d = diff / 2;
  if (diff % 2 != 0 && d % 2 != 0) ++d;
  return d;
}

// Images of column `column` mapped one by one by `fn`; a uint8 tensor column when all
// results share a shape, else a kImage column. Other columns are kept in place.
template <class Fn>
Batch MapImages(const Batch& in, const std::string& column, Fn fn) {
  ImageColumn images = in.Images(column);
  std::vector<Image> out;
  out.reserve(images.size());
  bool same = true;
  for (size_t i = 0; i < images.size(); ++i) {
    out.push_back(fn(images[i]));
    same = same && out.back().height == out.front().height &&
           out.back().width == out.front().width && out.back().channels == out.front().channels;
  }
  std::vector<int64_t> shape;
  if (same && !out.empty()) shape = {out.front().height, out.front().width, out.front().channels};
  BatchBuilder b;
  for (const std::string& name : in.ColumnNames()) {
    if (name != column) {
      b.AddColumnFrom(in, name);
    } else {
      internal::AddImageColumn(b, column, std::move(out), shape);
    }
  }
  return b.Build();
}

}  // namespace

namespace internal {
void AddImageColumn(BatchBuilder& b, const std::string& name, std::vector<Image> images,
                    const std::vector<int64_t>& tensor_shape) {
  if (tensor_shape.empty()) {
    std::vector<ImageView> views;
    views.reserve(images.size());
    for (const Image& im : images) views.push_back(im.view());
    b.AddImages(name, views);
    return;
  }
  std::vector<uint8_t> pixels;
  pixels.reserve(images.size() *
                 static_cast<size_t>(tensor_shape[0] * tensor_shape[1] * tensor_shape[2]));
  for (Image& im : images) {
    pixels.insert(pixels.end(), im.pixels.begin(), im.pixels.end());
    std::vector<uint8_t>().swap(im.pixels);
  }
  b.AddTensorUInt8(name, tensor_shape, std::move(pixels));
}
}  // namespace internal

int ChannelsOf(ImageMode mode) {
  switch (mode) {
    case ImageMode::kGray:
      return 1;
    case ImageMode::kRGBA:
      return 4;
    case ImageMode::kRGB:
      break;
  }
  return 3;
}

Image Resize(const ImageView& image, ImageSize size) {
  CheckImage(image, "Resize");
  CheckSize(size, "Resize");
  Image out{size.height, size.width, image.channels,
            std::vector<uint8_t>(static_cast<size_t>(size.height * size.width * image.channels))};
  internal::ResizeInto(image, size, out.pixels);
  return out;
}

namespace internal {
void UseVectorResize(bool on) {
#if defined(__x86_64__)
  vector_kernels.store(on, std::memory_order_relaxed);
#else
  (void)on;
#endif
}

bool VectorResize() {
#if defined(__x86_64__)
  return vector_kernels.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

void ResizeInto(const ImageView& image, ImageSize size, std::span<uint8_t> out) {
  CheckImage(image, "Resize");
  CheckSize(size, "Resize");
  const int64_t ch = image.channels;
  if (static_cast<int64_t>(out.size()) != size.height * size.width * ch) {
    throw TypeError("Resize: the output holds " + std::to_string(out.size()) + " bytes, not " +
                    std::to_string(size.height * size.width * ch));
  }
  if (size.height == image.height && size.width == image.width) {
    std::memcpy(out.data(), image.pixels.data(), out.size());
    return;
  }
  const std::shared_ptr<Coefficients> vert_c = CachedBilinear(image.height, size.height);
  const Coefficients& vert = *vert_c;
  if (size.width == image.width) {
    Vertical(image.pixels.data(), image.width * ch, 0, vert, size.height, out.data());
    return;
  }
  const std::shared_ptr<Coefficients> horiz_c = CachedBilinear(image.width, size.width);
  Coefficients& horiz = *horiz_c;
  if (size.height == image.height) {
    Horizontal(image.pixels.data(), image.pixels.size(), image.width * ch, ch, 0, image.height,
               horiz, size.width, out.data());
    return;
  }
  BothPasses(image.pixels.data(), image.pixels.size(), image.width * ch, ch, vert, horiz, size,
             out.data());
}

void ResizePlaneInto(const uint8_t* plane, size_t plane_bytes, int64_t stride, ImageSize image,
                     int factor_x, int factor_y, ImageSize size, uint8_t* out) {
  const std::shared_ptr<Coefficients> vert = CachedBilinear(image.height, size.height, factor_y);
  const std::shared_ptr<Coefficients> horiz = CachedBilinear(image.width, size.width, factor_x);
  BothPasses(plane, plane_bytes, stride, 1, *vert, *horiz, size, out);
}

}  // namespace internal

Image CenterCrop(const ImageView& image, ImageSize size) {
  CheckImage(image, "CenterCrop");
  CheckSize(size, "CenterCrop");
  const int64_t ch = image.channels;
  // Output row r is input row r + dy (column likewise); rows outside the input stay zero.
  const int64_t dy = image.height >= size.height ? HalfRoundedEven(image.height - size.height)
                                                 : -((size.height - image.height) / 2);
  const int64_t dx = image.width >= size.width ? HalfRoundedEven(image.width - size.width)
                                               : -((size.width - image.width) / 2);
  Image out{size.height, size.width, ch,
            std::vector<uint8_t>(static_cast<size_t>(size.height * size.width * ch), 0)};
  const int64_t x0 = std::max<int64_t>(0, -dx);
  const int64_t x1 = std::min(size.width, image.width - dx);
  for (int64_t r = 0; r < size.height; ++r) {
    const int64_t sr = r + dy;
    if (sr < 0 || sr >= image.height || x1 <= x0) continue;
    std::memcpy(out.pixels.data() + (r * size.width + x0) * ch,
                image.pixels.data() + (sr * image.width + x0 + dx) * ch,
                static_cast<size_t>((x1 - x0) * ch));
  }
  return out;
}

void Normalize(const ImageView& image, std::span<float> out, const NormalizeOptions& options) {
  CheckImage(image, "Normalize");
  const int64_t plane = image.height * image.width;
  if (static_cast<int64_t>(out.size()) != plane * image.channels) {
    throw TypeError("Normalize: the output holds " + std::to_string(out.size()) +
                    " floats, the image " + std::to_string(plane * image.channels));
  }
  const int64_t ch = image.channels;
  for (int64_t c = 0; c < ch; ++c) {
    const size_t k = static_cast<size_t>(std::min<int64_t>(c, 3));
    const float mean = options.mean[k], std = options.std[k];
    // A byte has 256 values: each one's result once (torchvision's arithmetic), then looked up.
    float value[256];
    for (int v = 0; v < 256; ++v) value[v] = (static_cast<float>(v) / 255.0f - mean) / std;
    float* dst = out.data() + c * plane;
    const uint8_t* src = image.pixels.data() + c;
    for (int64_t i = 0; i < plane; ++i) dst[i] = value[src[i * ch]];
  }
}

Batch ResizeImages(const Batch& in, ImageSize size, const std::string& column) {
  CheckSize(size, "ResizeImages");
  return MapImages(in, column, [&](const ImageView& im) { return Resize(im, size); });
}

Batch ResizeShorterSide(const Batch& in, int64_t side, const std::string& column) {
  if (side <= 0) throw TypeError("ResizeShorterSide: the side must be positive");
  return MapImages(in, column, [&](const ImageView& im) {
    // torchvision's Resize(int): the longer side scaled alike, truncated.
    const bool tall = im.width <= im.height;
    const int64_t shorter = tall ? im.width : im.height, longer = tall ? im.height : im.width;
    const auto scaled = static_cast<int64_t>(
        static_cast<double>(side) * static_cast<double>(longer) / static_cast<double>(shorter));
    return Resize(im, tall ? ImageSize{scaled, side} : ImageSize{side, scaled});
  });
}

Batch CenterCropImages(const Batch& in, ImageSize size, const std::string& column) {
  CheckSize(size, "CenterCropImages");
  return MapImages(in, column, [&](const ImageView& im) { return CenterCrop(im, size); });
}

Batch NormalizeImages(const Batch& in, const NormalizeOptions& options) {
  ImageColumn images = in.Images(options.column);
  if (images.size() == 0) {
    return options.keep_input ? in : in.DropColumns({options.column});
  }
  const ImageView first = images[0];
  const size_t per = static_cast<size_t>(first.height * first.width * first.channels);
  for (size_t i = 1; i < images.size(); ++i) {
    const ImageView im = images[i];
    if (im.height != first.height || im.width != first.width || im.channels != first.channels) {
      throw TypeError("NormalizeImages: image " + std::to_string(i) + " of column '" +
                      options.column + "' is " + std::to_string(im.height) + " x " +
                      std::to_string(im.width) + " x " + std::to_string(im.channels) +
                      ", the first " + std::to_string(first.height) + " x " +
                      std::to_string(first.width) + " x " + std::to_string(first.channels) +
                      ": resize or crop them to one size first");
    }
  }
  // Normalised straight into the batch built: the floats are 4 x the pixels, and a block of
  // them is written once here (and once more into the object store).
  BatchBuilder b(options.keep_input ? in : in.DropColumns({options.column}));
  b.AddTensorFloat32(options.output, {first.channels, first.height, first.width},
                     static_cast<int64_t>(images.size()), [&](std::span<float> out) {
                       for (size_t i = 0; i < images.size(); ++i) {
                         Normalize(images[i], out.subspan(i * per, per), options);
                       }
                     });
  return b.Build();
}

}  // namespace lumen::data
