#include "data/image_codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include "lumen/data/dataset.h"
#include "lumen/errors.h"

namespace lumen::data::internal {

namespace {

[[noreturn]] void Fail(const std::string& path, const std::string& why) {
  throw DataError(path + ": " + why);
}

// ---- pixel conversions (Pillow's) ---------------------------------------------------------

// ITU-R 601-2 luma, as Pillow's RGB -> L.
inline uint8_t Luma(const uint8_t* rgb) {
  return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

// `in` (1: L, 2: LA, 3: RGB, 4: RGBA) as `mode`.
Image Convert(Image in, ImageMode mode) {
  const int64_t want = ChannelsOf(mode);
  if (in.channels == want) return in;
  Image out{in.height, in.width, want, {}};
  const size_t n = static_cast<size_t>(in.height * in.width);
  out.pixels.resize(n * static_cast<size_t>(want));
  const uint8_t* s = in.pixels.data();
  uint8_t* d = out.pixels.data();
  const size_t ic = static_cast<size_t>(in.channels);
  for (size_t i = 0; i < n; ++i, s += ic) {
    uint8_t gray = ic >= 3 ? Luma(s) : s[0];
    uint8_t alpha = ic == 2 ? s[1] : ic == 4 ? s[3] : 255;
    switch (mode) {
      case ImageMode::kGray:
        *d++ = gray;
        break;
      case ImageMode::kRGB:
      case ImageMode::kRGBA:
        if (ic >= 3) {
          *d++ = s[0];
          *d++ = s[1];
          *d++ = s[2];
        } else {
          *d++ = gray;
          *d++ = gray;
          *d++ = gray;
        }
        if (mode == ImageMode::kRGBA) *d++ = alpha;
        break;
    }
  }
  return out;
}

// ---- JPEG ---------------------------------------------------------------------------------

// A TurboJPEG handle per thread and direction. A handle that failed on a file is replaced:
// libjpeg-turbo leaves it in a state where the next header reads as 0 x 0.
class TjHandle {
 public:
  explicit TjHandle(bool compress) : compress_(compress) {}
  ~TjHandle() { Reset(); }
  TjHandle(const TjHandle&) = delete;
  TjHandle& operator=(const TjHandle&) = delete;
  tjhandle get() {
    if (h_ == nullptr) h_ = compress_ ? tjInitCompress() : tjInitDecompress();
    if (h_ == nullptr) throw DataError("cannot start libjpeg-turbo");
    return h_;
  }
  void Reset() {
    if (h_ != nullptr) tjDestroy(h_);
    h_ = nullptr;
  }

 private:
  bool compress_;
  tjhandle h_ = nullptr;
};

TjHandle& Decompressor() {
  thread_local TjHandle h(false);
  return h;
}

TjHandle& Compressor() {
  thread_local TjHandle h(true);
  return h;
}

bool IsJpeg(std::string_view b) {
  return b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF &&
         static_cast<uint8_t>(b[1]) == 0xD8 && static_cast<uint8_t>(b[2]) == 0xFF;
}

// A YCbCr JPEG to be resized: decoded to its Y, Cb and Cr planes (no chroma upsampling, no
// colour conversion at the source's size), each plane resized to `size` — the chroma planes
// from their subsampled size, spanning the image as they do — and the three converted to
// `mode` (RGB or RGBA) at the target size: a third of the conversion's pixels, and the
// resize of two planes of a quarter of the samples. Resizing and the conversion are both
// linear, so the result differs from converting then resizing by rounding (at most 3 levels)
// — and where the colours clip: converting first clips each pixel before averaging. `decoded`
// is the image's size; `check` handles TurboJPEG's result as DecodeJpeg does.
template <class Check>
Image DecodeJpegPlanes(tjhandle tj, const unsigned char* data, unsigned long len, Check& check,
                       int subsamp, ImageSize decoded, ImageMode mode, ImageSize size,
                       std::span<uint8_t> into) {
  const int w = static_cast<int>(decoded.width), h = static_cast<int>(decoded.height);
  thread_local std::vector<uint8_t> planes;  // the decoded planes, then the resized ones
  int strides[3];
  size_t offsets[4] = {0};
  for (int i = 0; i < 3; ++i) {
    strides[i] = tjPlaneWidth(i, w, subsamp);
    offsets[i + 1] = offsets[i] + static_cast<size_t>(strides[i]) *
                                      static_cast<size_t>(tjPlaneHeight(i, h, subsamp));
  }
  const size_t area = static_cast<size_t>(size.height * size.width);
  planes.resize(offsets[3] + 3 * area);
  unsigned char* dst[3] = {planes.data(), planes.data() + offsets[1], planes.data() + offsets[2]};
  check(tjDecompressToYUVPlanes(tj, data, len, dst, w, strides, h, 0));
  // A chroma sample spans fx x fy luma samples (tjMCUWidth is 8 per sample).
  const int fx = tjMCUWidth[subsamp] / 8, fy = tjMCUHeight[subsamp] / 8;
  uint8_t* resized = planes.data() + offsets[3];
  for (size_t i = 0; i < 3; ++i) {
    ResizePlaneInto(dst[i], offsets[i + 1] - offsets[i], strides[i], decoded, i == 0 ? 1 : fx,
                    i == 0 ? 1 : fy, size, resized + i * area);
  }
  const int channels = mode == ImageMode::kRGBA ? 4 : 3;
  Image img;
  if (into.empty()) {
    img = Image{size.height, size.width, channels, std::vector<uint8_t>(area * channels)};
  }
  YccToRgb(resized, resized + area, resized + 2 * area, static_cast<int64_t>(area), channels,
           into.empty() ? img.pixels.data() : into.data());
  return img;
}

// Decoded in `mode`, scaled in the DCT toward `size`; resized to it when decoding went through
// the thread's scratch buffer (else Decode resizes what this returns) — into `into` when that
// is given, returning an image of no pixels.
Image DecodeJpeg(std::string_view bytes, const std::string& path, ImageMode mode, ImageSize size,
                 std::span<uint8_t> into) {
  TjHandle& handle = Decompressor();
  tjhandle tj = handle.get();
  auto fail = [&](const std::string& why) {
    handle.Reset();
    Fail(path, why);
  };
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto len = static_cast<unsigned long>(bytes.size());
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, len, &width, &height, &subsamp, &colorspace) != 0) {
    fail(std::string("not a valid JPEG: ") + tjGetErrorStr2(tj));
  }
  if (width <= 0 || height <= 0) fail("not a valid JPEG: it has no pixels");
  // The smallest DCT scaling of 1/2, 1/4 or 1/8 that keeps the image at least the target size:
  // libjpeg-turbo has SIMD code for those; its 3/8, 5/8 ... IDCTs are plain C, slower than a
  // full decode.
  int out_w = width, out_h = height;
  if (!size.empty()) {
    for (const tjscalingfactor f :
         {tjscalingfactor{1, 2}, tjscalingfactor{1, 4}, tjscalingfactor{1, 8}}) {
      const int w = TJSCALED(width, f), h = TJSCALED(height, f);
      if (w >= size.width && h >= size.height && int64_t{w} * h < int64_t{out_w} * out_h) {
        out_w = w;
        out_h = h;
      }
    }
  }
  // A TurboJPEG call's failure: a warning leaves a decoded image behind — acceptable only when
  // the data was all there and intact (stray bytes between segments). A truncated file or
  // corrupt entropy-coded data gives grey or garbage pixels and is refused.
  auto check = [&](int rc) {
    if (rc == 0) return;
    const std::string why = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) == TJERR_FATAL || why.find("extraneous bytes") == std::string::npos) {
      fail("corrupt JPEG: " + why);
    }
    handle.Reset();  // a warning: the decode went on, the handle is fresh for the next
  };
  const bool resize = !size.empty() && (out_h != size.height || out_w != size.width);
  // Not after DCT scaling: its raw planes keep the chroma at the subsampled size, where
  // decoding to RGB scales the chroma up in the IDCT itself (sharper colour).
  if (resize && out_w == width && out_h == height && colorspace == TJCS_YCbCr && subsamp >= 0 &&
      subsamp < TJ_NUMSAMP && subsamp != TJSAMP_GRAY &&
      (mode == ImageMode::kRGB || mode == ImageMode::kRGBA)) {
    return DecodeJpegPlanes(tj, data, len, check, subsamp, {out_h, out_w}, mode, size, into);
  }
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  const TJPF format = cmyk                       ? TJPF_CMYK
                      : mode == ImageMode::kGray ? TJPF_GRAY
                      : mode == ImageMode::kRGBA ? TJPF_RGBA
                                                 : TJPF_RGB;
  // Decoded straight into the pixels returned, or — when they are resized next — into a
  // buffer this thread reuses (a fresh one per image costs page faults as much as decoding).
  thread_local std::vector<uint8_t> scratch;
  const bool use_scratch = resize && !cmyk;
  Image img{out_h, out_w, tjPixelSize[format], {}};
  std::vector<uint8_t>& dst = use_scratch ? scratch : img.pixels;
  dst.resize(static_cast<size_t>(img.height * img.width * img.channels));
  check(tjDecompress2(tj, data, len, dst.data(), out_w, 0, out_h, format, 0));
  if (use_scratch) {  // decoded in `mode` already (no CMYK)
    const ImageView decoded{img.height, img.width, img.channels, {dst.data(), dst.size()}};
    if (into.empty()) return Resize(decoded, size);
    ResizeInto(decoded, size, into);
    return {};
  }
  if (cmyk) {  // Adobe's inverted CMYK, as Pillow converts it
    Image rgb{img.height, img.width, 3, {}};
    const size_t n = static_cast<size_t>(img.height * img.width);
    rgb.pixels.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = &img.pixels[i * 4];
      for (int c = 0; c < 3; ++c)
        rgb.pixels[i * 3 + static_cast<size_t>(c)] =
            static_cast<uint8_t>((p[c] * p[3] + 127) / 255);
    }
    img = std::move(rgb);
  }
  return Convert(std::move(img), mode);
}

// ---- PNG ----------------------------------------------------------------------------------

// What the libpng callbacks work on. Lives in the frame that calls ReadPng, so nothing the
// longjmp of an error unwinds past is left half-changed.
struct PngState {
  std::string_view bytes;
  size_t pos = 0;
  char message[256] = {};
  Image image;
  std::vector<png_bytep> rows;
  ImageMode mode = ImageMode::kRGB;
};

void PngError(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg);
  png_longjmp(png, 1);
}

void PngWarning(png_structp, png_const_charp) {}  // ancillary chunks with bad CRCs: dropped

void PngRead(png_structp png, png_bytep out, size_t n) {
  auto* st = static_cast<PngState*>(png_get_io_ptr(png));
  if (st->bytes.size() - st->pos < n) png_error(png, "the file ends before the image does");
  std::memcpy(out, st->bytes.data() + st->pos, n);
  st->pos += n;
}

// Decodes into st->image with its own channels at 8 bits. False (st->message says why) on
// any libpng error. No object with a destructor lives in this frame: libpng errors longjmp.
bool ReadPng(PngState* st) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, PngError, PngWarning);
  if (png == nullptr) {
    std::snprintf(st->message, sizeof(st->message), "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, st, PngRead);
  // Refuse absurd sizes before allocating (a hostile header): 2^28 pixels at most.
  png_set_user_limits(png, 1u << 20, 1u << 20);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  if (uint64_t{width} * height > (uint64_t{1} << 28)) png_error(png, "image too large");
  const int color = png_get_color_type(png, info);
  png_set_strip_16(png);  // high byte, as Pillow
  png_set_packing(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(png);
  if (st->mode == ImageMode::kRGBA && png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_set_tRNS_to_alpha(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  if (channels < 1 || channels > 4 || png_get_bit_depth(png, info) != 8) {
    png_error(png, "unsupported pixel layout");
  }
  st->image.height = height;
  st->image.width = width;
  st->image.channels = channels;
  st->image.pixels.resize(size_t{width} * height * static_cast<size_t>(channels));
  st->rows.resize(height);
  const size_t stride = size_t{width} * static_cast<size_t>(channels);
  if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row size");
  for (png_uint_32 y = 0; y < height; ++y) st->rows[y] = st->image.pixels.data() + y * stride;
  png_read_image(png, st->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

bool IsPng(std::string_view b) {
  return b.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(b.data()), 0, 8) == 0;
}

Image DecodePng(std::string_view bytes, const std::string& path, ImageMode mode) {
  PngState st;
  st.bytes = bytes;
  st.mode = mode;
  if (!ReadPng(&st)) Fail(path, std::string("corrupt PNG: ") + st.message);
  return Convert(std::move(st.image), mode);
}

std::string EncodePng(const ImageView& image, const std::string& path) {
  png_image pi;
  std::memset(&pi, 0, sizeof(pi));
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(image.width);
  pi.height = static_cast<png_uint_32>(image.height);
  switch (image.channels) {
    case 1:
      pi.format = PNG_FORMAT_GRAY;
      break;
    case 2:
      pi.format = PNG_FORMAT_GA;
      break;
    case 3:
      pi.format = PNG_FORMAT_RGB;
      break;
    default:
      pi.format = PNG_FORMAT_RGBA;
  }
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&pi, nullptr, &size, 0, image.pixels.data(), 0, nullptr)) {
    Fail(path, std::string("cannot encode PNG: ") + pi.message);
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&pi, out.data(), &size, 0, image.pixels.data(), 0, nullptr)) {
    Fail(path, std::string("cannot encode PNG: ") + pi.message);
  }
  out.resize(size);
  return out;
}

std::string EncodeJpeg(const ImageView& image, int quality, const std::string& path) {
  if (quality < 1 || quality > 100) {
    Fail(path, "JPEG quality must be 1 to 100, got " + std::to_string(quality));
  }
  // JPEG has no alpha: LA is written as its gray, RGBA as its RGB (TJPF_RGBX skips the 4th).
  std::vector<uint8_t> gray;
  const uint8_t* src = image.pixels.data();
  TJPF format = image.channels == 1 ? TJPF_GRAY : image.channels == 3 ? TJPF_RGB : TJPF_RGBX;
  if (image.channels == 2) {
    gray.resize(static_cast<size_t>(image.height * image.width));
    for (size_t i = 0; i < gray.size(); ++i) gray[i] = image.pixels[i * 2];
    src = gray.data();
    format = TJPF_GRAY;
  }
  TjHandle& handle = Compressor();
  tjhandle tj = handle.get();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  if (tjCompress2(tj, src, static_cast<int>(image.width), 0, static_cast<int>(image.height), format,
                  &jpeg, &size, format == TJPF_GRAY ? TJSAMP_GRAY : TJSAMP_420, quality, 0) != 0) {
    if (jpeg != nullptr) tjFree(jpeg);
    const std::string why = tjGetErrorStr2(tj);
    handle.Reset();
    Fail(path, "cannot encode JPEG: " + why);
  }
  std::string out(reinterpret_cast<const char*>(jpeg), size);
  tjFree(jpeg);
  return out;
}

}  // namespace

namespace {
// DecodeImage, or DecodeImageInto when `into` is given (then returning an image of no pixels).
Image Decode(std::string_view bytes, const std::string& path, ImageMode mode, ImageSize size,
             std::span<uint8_t> into) {
  if (size.height < 0 || size.width < 0 || (size.height == 0) != (size.width == 0)) {
    Fail(path, "target size " + std::to_string(size.height) + " x " + std::to_string(size.width) +
                   " needs both a positive height and width (or neither)");
  }
  if (bytes.empty()) Fail(path, "the file is empty (0 bytes): not an image");
  Image img;
  if (IsJpeg(bytes)) {
    img = DecodeJpeg(bytes, path, mode, size, into);
    if (img.height == 0) return img;  // written into `into`
  } else if (IsPng(bytes)) {
    img = DecodePng(bytes, path, mode);
  } else {
    Fail(path, "not a JPEG or PNG image (its first bytes match neither signature)");
  }
  if (!into.empty()) {
    ResizeInto(img.view(), size, into);  // a copy when the size is the image's
    return {};
  }
  if (!size.empty() && (img.height != size.height || img.width != size.width)) {
    img = Resize(img.view(), size);
  }
  return img;
}
}  // namespace

Image DecodeImage(std::string_view bytes, const std::string& path, ImageMode mode, ImageSize size) {
  return Decode(bytes, path, mode, size, {});
}

void DecodeImageInto(std::string_view bytes, const std::string& path, ImageMode mode,
                     ImageSize size, std::span<uint8_t> out) {
  const int64_t need = size.height * size.width * ChannelsOf(mode);
  if (size.empty() || static_cast<int64_t>(out.size()) != need) {
    throw TypeError("DecodeImageInto: " + std::to_string(out.size()) + " bytes for a " +
                    std::to_string(size.height) + " x " + std::to_string(size.width) +
                    " image in " + std::to_string(ChannelsOf(mode)) + " channels");
  }
  Decode(bytes, path, mode, size, out);
}

std::string EncodeImage(const ImageView& image, const std::string& format, int quality,
                        const std::string& path) {
  if (image.height <= 0 || image.width <= 0 || image.channels < 1 || image.channels > 4 ||
      static_cast<int64_t>(image.pixels.size()) != image.height * image.width * image.channels) {
    Fail(path, "cannot encode an image of " + std::to_string(image.height) + " x " +
                   std::to_string(image.width) + " x " + std::to_string(image.channels) + " with " +
                   std::to_string(image.pixels.size()) + " bytes of pixels");
  }
  if (format == "png") return EncodePng(image, path);
  if (format == "jpeg" || format == "jpg") return EncodeJpeg(image, quality, path);
  Fail(path, "unknown image format '" + format + "' (png or jpeg)");
}

std::string ImageExtension(const std::string& format) {
  if (format == "png") return "png";
  if (format == "jpeg" || format == "jpg") return "jpg";
  throw DataError("unknown image format '" + format + "' (png or jpeg)");
}

}  // namespace lumen::data::internal
