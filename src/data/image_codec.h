// JPEG and PNG decoding and encoding for lumen::data's image readers and writers: libjpeg-turbo
// (its TurboJPEG API) and libpng. Internal to src/data. Thread-safe (each thread keeps its own
// TurboJPEG handles).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lumen/data/image.h"

namespace lumen::data::internal {

// Decodes `bytes` — a JPEG or a PNG, told by its signature — to `mode` (Pillow's conversions:
// alpha dropped, gray from RGB by ITU-R 601 luma). With a non-empty `size` the image is
// resized to it (Resize); a JPEG is first scaled in the DCT by the smallest of 1/2, 1/4, 1/8
// that keeps it at least `size` (libjpeg-turbo has SIMD code for those; its 3/8, 5/8 .. are
// slower than a full decode), so a large photo is never decoded at full size only to be shrunk. PNG
// is decoded bit-exactly (16-bit samples keep their high byte, palettes are expanded, gamma is not
// applied: as Pillow). Throws DataError "<path>: <why>" for anything else: not an image, truncated,
// corrupt (bad CRC, bad Huffman data), empty.
Image DecodeImage(std::string_view bytes, const std::string& path, ImageMode mode, ImageSize size);

// DecodeImage to a non-empty `size`, written into `out` (size.height * size.width * the mode's
// channels bytes; TypeError otherwise) instead of a new Image: what a reader filling a tensor
// column calls, sparing an allocation and a copy per image. Same errors as DecodeImage.
void DecodeImageInto(std::string_view bytes, const std::string& path, ImageMode mode,
                     ImageSize size, std::span<uint8_t> out);

// Resize into `out` (size.height * size.width * image.channels bytes; TypeError otherwise).
// (Defined in image.cc.)
void ResizeInto(const ImageView& image, ImageSize size, std::span<uint8_t> out);

// Whether Resize may use its vector (AVX2) kernels where the CPU has them (the default):
// tests turn them off to compare them with the scalar code. Both give the same pixels.
void UseVectorResize(bool on);

// Encodes `image` as "png" or "jpeg" (quality 1..100; 4:2:0 chroma subsampling, as Pillow's
// default). Throws DataError naming `path` on failure or an unknown format.
std::string EncodeImage(const ImageView& image, const std::string& format, int quality,
                        const std::string& path);

// The file extension an encoded format is written with ("png", "jpg"); DataError when unknown.
std::string ImageExtension(const std::string& format);

// Adds `images` to `b` as column `name`: a uint8 tensor column of `tensor_shape` ({h, w, c};
// every image must have it) when that is given — also when there are no images — else a kImage
// column. Each image's pixels are released once copied. (Defined in image.cc.)
void AddImageColumn(BatchBuilder& b, const std::string& name, std::vector<Image> images,
                    const std::vector<int64_t>& tensor_shape);

}  // namespace lumen::data::internal
