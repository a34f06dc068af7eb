// Resizing, cropping and normalising images (lumen/data/image.h).
#include "lumen/data/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>

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
};

Coefficients Bilinear(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // the triangle filter's support is 1
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(static_cast<size_t>(out_size));
  c.count.resize(static_cast<size_t>(out_size));
  c.weights.assign(static_cast<size_t>(out_size * c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
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
    for (int x = 0; x < xmax; ++x) {
      double w = ww != 0.0 ? k[static_cast<size_t>(x)] / ww : k[static_cast<size_t>(x)];
      c.weights[static_cast<size_t>(xx * c.ksize + x)] = static_cast<int32_t>(
          w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.first[static_cast<size_t>(xx)] = xmin;
    c.count[static_cast<size_t>(xx)] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One row resampled horizontally, for C channels known at compile time (all channels of a
// pixel summed in one pass, as Pillow does).
template <int C>
void HorizontalRow(const uint8_t* src, uint8_t* dst, const Coefficients& c, int64_t out_w) {
  for (int64_t x = 0; x < out_w; ++x) {
    const int32_t* k = &c.weights[static_cast<size_t>(x * c.ksize)];
    const uint8_t* s = src + c.first[static_cast<size_t>(x)] * C;
    const int n = c.count[static_cast<size_t>(x)];
    int32_t ss[C];
    for (int b = 0; b < C; ++b) ss[b] = 1 << (kPrecisionBits - 1);
    for (int i = 0; i < n; ++i) {
      for (int b = 0; b < C; ++b) ss[b] += s[i * C + b] * k[i];
    }
    for (int b = 0; b < C; ++b) dst[x * C + b] = Clip8(ss[b]);
  }
}

// Rows [row0, row0 + rows) of `in` (width w, channels ch) resampled horizontally to `c`'s
// output width, into `out`.
void Horizontal(const uint8_t* in, int64_t w, int64_t ch, int64_t row0, int64_t rows,
                const Coefficients& c, int64_t out_w, std::vector<uint8_t>& out) {
  out.resize(static_cast<size_t>(rows * out_w * ch));
  for (int64_t y = 0; y < rows; ++y) {
    const uint8_t* src = in + (row0 + y) * w * ch;
    uint8_t* dst = out.data() + y * out_w * ch;
    switch (ch) {
      case 1:
        HorizontalRow<1>(src, dst, c, out_w);
        break;
      case 2:
        HorizontalRow<2>(src, dst, c, out_w);
        break;
      case 3:
        HorizontalRow<3>(src, dst, c, out_w);
        break;
      default:
        HorizontalRow<4>(src, dst, c, out_w);
    }
  }
}

// `in` (rows of `row_bytes`) resampled vertically to `c`'s output height; c.first counts from
// row `row0` of `in`.
std::vector<uint8_t> Vertical(const uint8_t* in, int64_t row_bytes, int64_t row0,
                              const Coefficients& c, int64_t out_h) {
  std::vector<uint8_t> out(static_cast<size_t>(out_h * row_bytes));
  std::vector<int32_t> acc(static_cast<size_t>(row_bytes));
  for (int64_t y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* k = &c.weights[static_cast<size_t>(y * c.ksize)];
    const int first = c.first[static_cast<size_t>(y)] - static_cast<int>(row0);
    for (int i = 0; i < c.count[static_cast<size_t>(y)]; ++i) {
      const uint8_t* s = in + (first + i) * row_bytes;
      const int32_t w = k[i];
      for (int64_t b = 0; b < row_bytes; ++b) acc[static_cast<size_t>(b)] += s[b] * w;
    }
    uint8_t* d = out.data() + y * row_bytes;
    for (int64_t b = 0; b < row_bytes; ++b) d[b] = Clip8(acc[static_cast<size_t>(b)]);
  }
  return out;
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
  const int64_t ch = image.channels;
  if (size.height == image.height && size.width == image.width) {
    return {image.height, image.width, ch, {image.pixels.begin(), image.pixels.end()}};
  }
  const Coefficients vert = Bilinear(image.height, size.height);
  Image out{size.height, size.width, ch, {}};
  if (size.width == image.width) {
    out.pixels = Vertical(image.pixels.data(), image.width * ch, 0, vert, size.height);
    return out;
  }
  const Coefficients horiz = Bilinear(image.width, size.width);
  if (size.height == image.height) {
    Horizontal(image.pixels.data(), image.width, ch, 0, image.height, horiz, size.width,
               out.pixels);
    return out;
  }
  // Only the rows the vertical pass reads are resampled horizontally, into a buffer this
  // thread reuses.
  const int64_t first = vert.first.front();
  const int64_t last = vert.first.back() + vert.count.back();
  thread_local std::vector<uint8_t> tmp;
  Horizontal(image.pixels.data(), image.width, ch, first, last - first, horiz, size.width, tmp);
  out.pixels = Vertical(tmp.data(), size.width * ch, first, vert, size.height);
  return out;
}

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
    float* dst = out.data() + c * plane;
    const uint8_t* src = image.pixels.data() + c;
    for (int64_t i = 0; i < plane; ++i) {
      dst[i] = (static_cast<float>(src[i * ch]) / 255.0f - mean) / std;  // as torchvision
    }
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
  const int64_t per = first.height * first.width * first.channels;
  std::vector<float> values(images.size() * static_cast<size_t>(per));
  for (size_t i = 0; i < images.size(); ++i) {
    const ImageView im = images[i];
    if (im.height != first.height || im.width != first.width || im.channels != first.channels) {
      throw TypeError("NormalizeImages: image " + std::to_string(i) + " of column '" +
                      options.column + "' is " + std::to_string(im.height) + " x " +
                      std::to_string(im.width) + " x " + std::to_string(im.channels) +
                      ", the first " + std::to_string(first.height) + " x " +
                      std::to_string(first.width) + " x " + std::to_string(first.channels) +
                      ": resize or crop them to one size first");
    }
    Normalize(im, {values.data() + i * static_cast<size_t>(per), static_cast<size_t>(per)},
              options);
  }
  BatchBuilder b(options.keep_input ? in : in.DropColumns({options.column}));
  b.AddTensorFloat32(options.output, {first.channels, first.height, first.width},
                     std::move(values));
  return b.Build();
}

}  // namespace lumen::data
