// Images in lumen::data: what ReadImages produces and the preprocessing helpers a model stage
// uses inside MapBatches.
//
// An image column holds 8-bit pixels, row-major, channels interleaved ({height, width,
// channels}). Read with a target `size`, it is a uint8 tensor column of shape {h, w, c}
// (Batch::TensorUInt8); read without one, each image keeps its own size and the column has
// type DataType::kImage (Batch::Images / Batch::ImageAt). Batch::Images reads both.
//
// @code
//   ld::Batch Preprocess(const ld::Batch& in) {   // registered with LUMEN_REMOTE
//     ld::Batch b = ld::ResizeShorterSide(in, 256);
//     b = ld::CenterCropImages(b, {224, 224});
//     return ld::NormalizeImages(b);  // float32 column "tensor" of shape {3, 224, 224}
//   }
// @endcode
//
// Resizing is antialiased bilinear and gives the same pixels as Pillow's
// `Image.resize(size, Image.BILINEAR)`. All functions here are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lumen/data/batch.h"

namespace lumen::data {

// The channels images are decoded to (Pillow's modes "RGB", "L", "RGBA").
enum class ImageMode : uint8_t {
  kRGB = 0,
  kGray = 1,
  kRGBA = 2,
};
int ChannelsOf(ImageMode mode);

// A size in pixels, in tensor order.
struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
  bool empty() const { return height == 0 && width == 0; }
};

// An image that owns its pixels.
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;
  ImageView view() const { return {height, width, channels, pixels}; }
};

// Pixels resized to `size` (antialiased bilinear, as Pillow's BILINEAR resize). Throws
// lumen::TypeError for an empty size or image.
Image Resize(const ImageView& image, ImageSize size);
// The centre `size` of the image (as torchvision's CenterCrop: an image smaller than `size` is
// padded with zeros around it).
Image CenterCrop(const ImageView& image, ImageSize size);

// Per-channel normalisation to float32: (pixel / 255 - mean[c]) / std[c]. ImageNet's by
// default. Images with one channel use mean[0] and std[0].
struct NormalizeOptions {
  std::array<float, 4> mean = {0.485f, 0.456f, 0.406f, 0.f};
  std::array<float, 4> std = {0.229f, 0.224f, 0.225f, 1.f};
  std::string column = "image";   // the image column read
  std::string output = "tensor";  // the float32 column written, {channels, height, width}
  bool keep_input = false;        // keep the image column beside the tensor
};
// Writes `image` normalised into `out` (channels * height * width floats, {c, h, w} order).
void Normalize(const ImageView& image, std::span<float> out, const NormalizeOptions& options = {});

// ---- batch helpers, for MapBatches ------------------------------------------------------
// Each reads the image column `column` (a uint8 tensor column of shape {h, w, c} or a
// kImage column) and returns the batch with that column replaced; other columns are kept.
// Throws lumen::TypeError naming the column when it holds no images.

// Every image resized to `size`: the column becomes a uint8 tensor of shape {h, w, c}.
Batch ResizeImages(const Batch& in, ImageSize size, const std::string& column = "image");
// Every image resized keeping its aspect ratio so that its shorter side is `side`
// (torchvision's Resize(int)); images of different shapes give a kImage column.
Batch ResizeShorterSide(const Batch& in, int64_t side, const std::string& column = "image");
// The centre `size` of every image: a uint8 tensor of shape {h, w, c}.
Batch CenterCropImages(const Batch& in, ImageSize size, const std::string& column = "image");
// The images as one float32 tensor column of shape {c, h, w} (Normalize); they must all have
// the same shape (TypeError naming the first that differs).
Batch NormalizeImages(const Batch& in, const NormalizeOptions& options = {});

}  // namespace lumen::data
