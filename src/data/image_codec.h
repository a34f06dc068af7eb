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
// slower than a full decode), so a large photo is never decoded at full size only to be shrunk;
// a colour JPEG resized without DCT scaling is resized in its Y, Cb and Cr planes and converted
// after (DecodeJpegPlanes in image_codec.cc: Pillow's pixels within rounding). PNG
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

// Resamples one 8-bit plane — rows `stride` bytes apart, `plane_bytes` in all — with Resize's
// filter, into `out` (size.height * size.width bytes): a JPEG's luma plane of an `image`-sized
// picture (factors 1), or a chroma plane subsampled from it by the factors (1, 2 or 4; it
// holds ceil(image.width / factor_x) x ceil(image.height / factor_y) samples), resized as if
// upsampled first the way libjpeg does it. (Defined in image.cc.)
void ResizePlaneInto(const uint8_t* plane, size_t plane_bytes, int64_t stride, ImageSize image,
                     int factor_x, int factor_y, ImageSize size, uint8_t* out);

// JPEG's YCbCr samples (n of each) to RGB pixels (channels 3) or RGBA with opaque alpha (4),
// into `out`, with libjpeg's arithmetic. (Defined in ycc.cc.)
void YccToRgb(const uint8_t* y, const uint8_t* cb, const uint8_t* cr, int64_t n, int channels,
              uint8_t* out);

// Whether Resize and YccToRgb may use their vector (AVX2) kernels where the CPU has them (the
// default): tests turn them off to compare them with the scalar code. Both give the same pixels.
void UseVectorResize(bool on);
bool VectorResize();

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
