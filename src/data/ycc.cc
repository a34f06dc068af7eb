// JPEG's YCbCr to RGB (image_codec.h): libjpeg's fixed-point arithmetic (jdcolor.c), so a pixel
// converted here is the pixel libjpeg's own conversion gives for the same samples.
#include <array>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "data/image_codec.h"

namespace lumen::data::internal {

namespace {

// libjpeg's FIX(x) with 16 fractional bits.
constexpr int32_t kCrToR = 91881;   // 1.40200
constexpr int32_t kCbToB = 116130;  // 1.77200
constexpr int32_t kCbToG = -22554;  // -0.34414
constexpr int32_t kCrToG = -46802;  // -0.71414
constexpr int32_t kHalf = 1 << 15;

inline uint8_t Clamp8(int32_t v) { return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v); }

void ConvertScalar(const uint8_t* y, const uint8_t* cb, const uint8_t* cr, int64_t from, int64_t n,
                   int channels, uint8_t* out) {
  for (int64_t i = from; i < n; ++i) {
    const int32_t l = y[i], b = cb[i] - 128, r = cr[i] - 128;
    uint8_t* p = out + i * channels;
    p[0] = Clamp8(l + ((kCrToR * r + kHalf) >> 16));
    p[1] = Clamp8(l + ((kCbToG * b + kCrToG * r + kHalf) >> 16));
    p[2] = Clamp8(l + ((kCbToB * b + kHalf) >> 16));
    if (channels == 4) p[3] = 255;
  }
}

#if defined(__x86_64__)
// Eight pixels' R, G and B as int32 lanes.
struct Rgb8 {
  __m256i r, g, b;
};

// (sum + 1/2) >> 16: one fixed-point product's rounded integer part.
__attribute__((target("avx2"))) inline __m256i Term(__m256i sum) {
  return _mm256_srai_epi32(_mm256_add_epi32(sum, _mm256_set1_epi32(kHalf)), 16);
}

__attribute__((target("avx2"))) inline Rgb8 Convert8(__m128i y8, __m128i cb8, __m128i cr8) {
  const __m256i l = _mm256_cvtepu8_epi32(y8);
  const __m256i c128 = _mm256_set1_epi32(128);
  const __m256i b = _mm256_sub_epi32(_mm256_cvtepu8_epi32(cb8), c128);
  const __m256i r = _mm256_sub_epi32(_mm256_cvtepu8_epi32(cr8), c128);
  return {
      _mm256_add_epi32(l, Term(_mm256_mullo_epi32(r, _mm256_set1_epi32(kCrToR)))),
      _mm256_add_epi32(l, Term(_mm256_add_epi32(_mm256_mullo_epi32(b, _mm256_set1_epi32(kCbToG)),
                                                _mm256_mullo_epi32(r, _mm256_set1_epi32(kCrToG))))),
      _mm256_add_epi32(l, Term(_mm256_mullo_epi32(b, _mm256_set1_epi32(kCbToB)))),
  };
}

// Sixteen int32 lanes (two vectors of eight) to sixteen bytes, saturated, in order.
__attribute__((target("avx2"))) inline __m128i Bytes16(__m256i lo, __m256i hi) {
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
  return _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}

// pshufb masks interleaving sixteen R, G and B bytes into 48: output vector k takes channel c's
// byte i at position j when 16k + j = 3i + c.
struct Interleave3 {
  std::array<std::array<std::array<uint8_t, 16>, 3>, 3> masks{};
  Interleave3() {
    for (auto& k : masks)
      for (auto& c : k) c.fill(0x80);
    for (int o = 0; o < 48; ++o) masks[o / 16][o % 3][o % 16] = static_cast<uint8_t>(o / 3);
  }
};

__attribute__((target("avx2"))) void ConvertAvx2(const uint8_t* y, const uint8_t* cb,
                                                 const uint8_t* cr, int64_t n, int channels,
                                                 uint8_t* out) {
  static const Interleave3 il;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i y16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i));
    const __m128i cb16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cb + i));
    const __m128i cr16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cr + i));
    const Rgb8 a = Convert8(y16, cb16, cr16);
    const Rgb8 b =
        Convert8(_mm_srli_si128(y16, 8), _mm_srli_si128(cb16, 8), _mm_srli_si128(cr16, 8));
    const __m128i ch[3] = {Bytes16(a.r, b.r), Bytes16(a.g, b.g), Bytes16(a.b, b.b)};
    uint8_t* p = out + i * channels;
    if (channels == 3) {
      for (int k = 0; k < 3; ++k) {
        __m128i v = _mm_setzero_si128();
        for (int c = 0; c < 3; ++c) {
          v = _mm_or_si128(
              v,
              _mm_shuffle_epi8(
                  ch[c], _mm_loadu_si128(reinterpret_cast<const __m128i*>(il.masks[k][c].data()))));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 16 * k), v);
      }
    } else {
      const __m128i opaque = _mm_set1_epi8(-1);
      const __m128i rg_lo = _mm_unpacklo_epi8(ch[0], ch[1]),
                    rg_hi = _mm_unpackhi_epi8(ch[0], ch[1]);
      const __m128i ba_lo = _mm_unpacklo_epi8(ch[2], opaque),
                    ba_hi = _mm_unpackhi_epi8(ch[2], opaque);
      auto* q = reinterpret_cast<__m128i*>(p);
      _mm_storeu_si128(q, _mm_unpacklo_epi16(rg_lo, ba_lo));
      _mm_storeu_si128(q + 1, _mm_unpackhi_epi16(rg_lo, ba_lo));
      _mm_storeu_si128(q + 2, _mm_unpacklo_epi16(rg_hi, ba_hi));
      _mm_storeu_si128(q + 3, _mm_unpackhi_epi16(rg_hi, ba_hi));
    }
  }
  ConvertScalar(y, cb, cr, i, n, channels, out);
}
#endif

}  // namespace

void YccToRgb(const uint8_t* y, const uint8_t* cb, const uint8_t* cr, int64_t n, int channels,
              uint8_t* out) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2 && VectorResize()) {
    ConvertAvx2(y, cb, cr, n, channels, out);
    return;
  }
#endif
  ConvertScalar(y, cb, cr, 0, n, channels, out);
}

}  // namespace lumen::data::internal
