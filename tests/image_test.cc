// Images in lumen::data: JPEG and PNG decoding against Pillow (the independent codec, from
// Debian's python3-pil, which makes the test images and its own decodes of them), resizing
// against Pillow's bilinear resize, corrupt inputs, the kImage column, preprocessing helpers,
// and ReadImages / WriteImages on an embedded cluster.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <turbojpeg.h>
#include "data/image_codec.h"
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/data/image.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
namespace fs = std::filesystem;

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void Spit(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

int RunCommand(const std::string& cmd) { return std::system(cmd.c_str()); }

// Pillow's images and its decodes of them (tests/pillow_images.py), made once per process.
class PillowImages {
 public:
  static const PillowImages& Get() {
    static const PillowImages images;
    return images;
  }
  std::string dir;
  std::map<std::string, std::pair<int64_t, int64_t>> sizes;  // name -> {height, width}

  std::string Path(const std::string& name) const { return dir + "/" + name; }
  std::string Bytes(const std::string& name) const { return Slurp(Path(name)); }
  // Pillow's pixels of `name` in `mode` ("RGB", "L", "RGBA"), optionally resized ("224x224").
  std::string Pixels(const std::string& name, const std::string& mode,
                     const std::string& size = "") const {
    std::string p = Path(name) + "." + mode + (size.empty() ? "" : "." + size) + ".raw";
    if (!fs::exists(p)) throw std::runtime_error("no Pillow decode " + p);
    return Slurp(p);
  }

 private:
  PillowImages() {
    dir =
        (fs::path(::testing::TempDir()) / ("lumen-pillow-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    if (RunCommand("/usr/bin/python3 " PILLOW_SCRIPT " " + dir) != 0) {
      throw std::runtime_error("tests/pillow_images.py failed (is python3-pil installed?)");
    }
    std::ifstream list(dir + "/images.txt");
    std::string name;
    int64_t h, w;
    while (list >> name >> h >> w) sizes[name] = {h, w};
  }
};

std::string AsString(const ld::ImageView& v) {
  return std::string(reinterpret_cast<const char*>(v.pixels.data()), v.pixels.size());
}
std::string AsString(const ld::Image& im) { return AsString(im.view()); }

// Mean and largest absolute difference of two equally long pixel strings.
std::pair<double, int> Difference(const std::string& a, const std::string& b) {
  EXPECT_EQ(a.size(), b.size());
  double sum = 0;
  int most = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    int d = std::abs(static_cast<uint8_t>(a[i]) - static_cast<uint8_t>(b[i]));
    sum += d;
    most = std::max(most, d);
  }
  return {a.empty() ? 0 : sum / static_cast<double>(a.size()), most};
}

ld::Image Decode(const std::string& name, ld::ImageMode mode, ld::ImageSize size = {}) {
  const auto& pil = PillowImages::Get();
  return ld::internal::DecodeImage(pil.Bytes(name), pil.Path(name), mode, size);
}

const std::vector<std::string> kPngs = {"rgb.png", "rgba.png", "gray.png", "palette.png",
                                        "gray_alpha.png"};
const std::vector<std::string> kJpegs = {"photo.jpg", "gray.jpg", "progressive.jpg"};

// ---- decoding ------------------------------------------------------------------------------

TEST(ImageCodec, PngDecodesBitExactLikePillowInEveryMode) {
  const auto& pil = PillowImages::Get();
  for (const auto& name : kPngs) {
    const auto [h, w] = pil.sizes.at(name);
    for (auto [mode, pil_mode] :
         {std::pair{ld::ImageMode::kRGB, "RGB"}, std::pair{ld::ImageMode::kGray, "L"},
          std::pair{ld::ImageMode::kRGBA, "RGBA"}}) {
      SCOPED_TRACE(name + " as " + pil_mode);
      ld::Image im = Decode(name, mode);
      EXPECT_EQ(im.height, h);
      EXPECT_EQ(im.width, w);
      EXPECT_EQ(im.channels, ld::ChannelsOf(mode));
      EXPECT_TRUE(AsString(im) == pil.Pixels(name, pil_mode)) << "pixels differ from Pillow's";
    }
  }
}

TEST(ImageCodec, JpegDecodesWithinASmallErrorOfPillow) {
  const auto& pil = PillowImages::Get();
  for (const auto& name : kJpegs) {
    SCOPED_TRACE(name);
    const auto [h, w] = pil.sizes.at(name);
    ld::Image rgb = Decode(name, ld::ImageMode::kRGB);
    ASSERT_EQ(rgb.height, h);
    ASSERT_EQ(rgb.width, w);
    auto [mean, most] = Difference(AsString(rgb), pil.Pixels(name, "RGB"));
    EXPECT_LT(mean, 0.5) << "largest difference " << most;
    // Gray from a color JPEG is its luma plane; Pillow converts the decoded RGB.
    ld::Image gray = Decode(name, ld::ImageMode::kGray);
    std::tie(mean, most) = Difference(AsString(gray), pil.Pixels(name, "L"));
    EXPECT_LT(mean, 1.5) << "largest difference " << most;
  }
}

TEST(ImageCodec, ResizeGivesPillowsBilinearPixels) {
  const auto& pil = PillowImages::Get();
  // PNG (no decoding error): down in one axis and up in the other, and up in both.
  for (const auto& name : kPngs) {
    for (auto [size, text] : {std::pair{ld::ImageSize{224, 224}, "224x224"},
                              std::pair{ld::ImageSize{40, 30}, "40x30"}}) {
      SCOPED_TRACE(name + " to " + text);
      ld::Image im = Decode(name, ld::ImageMode::kRGB, size);
      ASSERT_EQ(im.height, size.height);
      ASSERT_EQ(im.width, size.width);
      auto [mean, most] = Difference(AsString(im), pil.Pixels(name, "RGB", text));
      EXPECT_EQ(most, 0) << "mean difference " << mean;
    }
  }
  // The public Resize on decoded pixels is the same resampling.
  ld::Image full = Decode("rgb.png", ld::ImageMode::kRGB);
  EXPECT_TRUE(AsString(ld::Resize(full.view(), {40, 30})) == pil.Pixels("rgb.png", "RGB", "40x30"));
}

TEST(ImageCodec, VectorAndScalarResizeGiveTheSamePixels) {
  // The AVX2 kernels (where the CPU has them) against the scalar code, on random pixels:
  // every channel count, shrinking and growing on either axis, one-pixel edges, and the
  // benchmark's 375 x 500 -> 224 x 224 (whose last rows read up to the buffer's end).
  std::mt19937 rng(7);
  auto random_image = [&](int64_t h, int64_t w, int64_t ch) {
    ld::Image im{h, w, ch, std::vector<uint8_t>(static_cast<size_t>(h * w * ch))};
    for (auto& p : im.pixels) p = static_cast<uint8_t>(rng() & 0xFF);
    return im;
  };
  std::vector<std::tuple<ld::Image, ld::ImageSize>> cases;
  cases.emplace_back(random_image(375, 500, 3), ld::ImageSize{224, 224});
  cases.emplace_back(random_image(375, 500, 4), ld::ImageSize{224, 224});
  cases.emplace_back(random_image(375, 500, 1), ld::ImageSize{224, 224});
  for (int i = 0; i < 300; ++i) {
    const auto dim = [&](int most) { return static_cast<int64_t>(1 + rng() % most); };
    const int64_t h = dim(60), w = dim(60), ch = dim(4);
    cases.emplace_back(random_image(h, w, ch), ld::ImageSize{dim(70), dim(70)});
  }
  for (const auto& [im, size] : cases) {
    SCOPED_TRACE(std::to_string(im.height) + " x " + std::to_string(im.width) + " x " +
                 std::to_string(im.channels) + " to " + std::to_string(size.height) + " x " +
                 std::to_string(size.width));
    const ld::Image vector = ld::Resize(im.view(), size);
    ld::internal::UseVectorResize(false);
    const ld::Image scalar = ld::Resize(im.view(), size);
    ld::internal::UseVectorResize(true);
    ASSERT_TRUE(AsString(vector) == AsString(scalar));
  }
}

// Photo-like pixels (smooth colour, a little noise) kept off 0 and 255, so that converting to
// RGB never clips.
ld::Image PhotoPixels(int64_t h, int64_t w, uint32_t seed) {
  std::mt19937 rng(seed);
  ld::Image im{h, w, 3, std::vector<uint8_t>(static_cast<size_t>(h * w * 3))};
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* p = &im.pixels[static_cast<size_t>((y * w + x) * 3)];
      const int n = static_cast<int>(rng() % 13) - 6;
      p[0] = static_cast<uint8_t>(128 + 80 * std::sin(0.07 * x + 0.01 * y) + n);
      p[1] = static_cast<uint8_t>(128 + 80 * std::cos(0.05 * y) - n);
      p[2] = static_cast<uint8_t>(40 + 170 * x / std::max<int64_t>(1, w - 1) + n);
    }
  }
  return im;
}

std::string EncodeJpeg(const ld::Image& im, int subsamp) {
  tjhandle tj = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(tj, im.pixels.data(), static_cast<int>(im.width), 0,
                             static_cast<int>(im.height), TJPF_RGB, &jpeg, &size, subsamp, 90, 0);
  std::string out = rc == 0 ? std::string(reinterpret_cast<char*>(jpeg), size) : "";
  tjFree(jpeg);
  tjDestroy(tj);
  return out;
}

TEST(ImageCodec, YccToRgbIsLibjpegsConversion) {
  // A 4:4:4 JPEG (no upsampling): its planes converted here against libjpeg-turbo's own RGB.
  const ld::Image im = PhotoPixels(37, 53, 3);
  const std::string jpeg = EncodeJpeg(im, TJSAMP_444);
  ASSERT_FALSE(jpeg.empty());
  const auto* data = reinterpret_cast<const unsigned char*>(jpeg.data());
  tjhandle tj = tjInitDecompress();
  std::vector<uint8_t> rgb(37 * 53 * 3), planes(37 * 53 * 3);
  unsigned char* dst[3] = {planes.data(), planes.data() + 37 * 53, planes.data() + 2 * 37 * 53};
  int strides[3] = {53, 53, 53};
  ASSERT_EQ(tjDecompress2(tj, data, jpeg.size(), rgb.data(), 53, 0, 37, TJPF_RGB, 0), 0);
  ASSERT_EQ(tjDecompressToYUVPlanes(tj, data, jpeg.size(), dst, 53, strides, 37, 0), 0);
  tjDestroy(tj);
  for (bool vector : {true, false}) {
    ld::internal::UseVectorResize(vector);
    std::vector<uint8_t> ours(rgb.size()), rgba(37 * 53 * 4);
    ld::internal::YccToRgb(dst[0], dst[1], dst[2], 37 * 53, 3, ours.data());
    ld::internal::YccToRgb(dst[0], dst[1], dst[2], 37 * 53, 4, rgba.data());
    EXPECT_TRUE(ours == rgb) << (vector ? "vector" : "scalar");
    for (size_t i = 0; i < 37 * 53; ++i) {
      ASSERT_TRUE(std::equal(&rgba[i * 4], &rgba[i * 4 + 3], &rgb[i * 3])) << "pixel " << i;
      ASSERT_EQ(rgba[i * 4 + 3], 255) << "pixel " << i;
    }
  }
  ld::internal::UseVectorResize(true);
}

TEST(ImageCodec, JpegResizedInItsPlanesStaysCloseToConvertingFirst) {
  // A YCbCr JPEG resized without DCT scaling is resized in its Y, Cb and Cr planes (the chroma
  // from its subsampled size, libjpeg's upsampling folded into the filter) and converted
  // after. Against decoding to RGB and resizing that (Pillow's order, and pixels): the same
  // but for rounding, for every subsampling, odd sizes, either way on each axis.
  int cases = 0, rounded_differently = 0;
  for (int subsamp : {TJSAMP_444, TJSAMP_422, TJSAMP_420, TJSAMP_440, TJSAMP_411}) {
    for (auto [h, w] : {std::pair<int64_t, int64_t>{97, 131}, {250, 333}, {64, 48}}) {
      const std::string jpeg =
          EncodeJpeg(PhotoPixels(h, w, static_cast<uint32_t>(h + subsamp)), subsamp);
      ASSERT_FALSE(jpeg.empty());
      const ld::Image full = ld::internal::DecodeImage(jpeg, "photo.jpg", ld::ImageMode::kRGB, {});
      for (ld::ImageSize size :
           {ld::ImageSize{h * 2 / 3 + 1, w - 3}, ld::ImageSize{h + 5, w * 3 / 4},
            ld::ImageSize{h * 3 / 2, w + 7}}) {
        SCOPED_TRACE("subsampling " + std::to_string(subsamp) + ", " + std::to_string(h) + " x " +
                     std::to_string(w) + " to " + std::to_string(size.height) + " x " +
                     std::to_string(size.width));
        const ld::Image reference = ld::Resize(full.view(), size);
        const ld::Image rgb =
            ld::internal::DecodeImage(jpeg, "photo.jpg", ld::ImageMode::kRGB, size);
        // Rounding: each plane's resize rounds to 8 bits before the conversion (whose chroma
        // terms scale a chroma error by up to 1.77). Folding libjpeg's upsampling in matters:
        // replicating chroma samples instead makes the largest differences 4 to 6.
        auto [mean, most] = Difference(AsString(rgb), AsString(reference));
        EXPECT_LT(mean, 0.7) << "largest difference " << most;
        EXPECT_LE(most, 3) << "mean difference " << mean;
        rounded_differently += most > 0;
        // RGBA is the same pixels, opaque.
        const ld::Image rgba =
            ld::internal::DecodeImage(jpeg, "photo.jpg", ld::ImageMode::kRGBA, size);
        for (size_t i = 0; i < rgb.pixels.size() / 3; ++i) {
          ASSERT_TRUE(std::equal(&rgb.pixels[i * 3], &rgb.pixels[i * 3 + 3], &rgba.pixels[i * 4]));
          ASSERT_EQ(rgba.pixels[i * 4 + 3], 255);
        }
        // And the scalar kernels give the vector ones' pixels.
        ld::internal::UseVectorResize(false);
        const ld::Image scalar =
            ld::internal::DecodeImage(jpeg, "photo.jpg", ld::ImageMode::kRGB, size);
        ld::internal::UseVectorResize(true);
        EXPECT_TRUE(AsString(scalar) == AsString(rgb));
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 45);
  // The planes were resized, not the converted pixels (whose resize is the reference's): the
  // rounding differs somewhere in every case.
  EXPECT_EQ(rounded_differently, cases);
}

TEST(ImageCodec, JpegShrunkInTheDctStaysCloseToPillowsFullDecodeAndResize) {
  const auto& pil = PillowImages::Get();
  // photo.jpg is 375 x 500: to 224 x 224 it is decoded in full and resized (the target is
  // more than half the source: Pillow's pixels but for the JPEG decode's own small error); to
  // 40 x 30 it is first scaled by 1/8 in the DCT (the target is at most half the source), an
  // antialiased shrink of a slightly different filter: within 1.8 % (4.5 / 255) on average.
  for (auto [size, text, bound] : {std::tuple{ld::ImageSize{224, 224}, "224x224", 3.0},
                                   std::tuple{ld::ImageSize{40, 30}, "40x30", 4.5}}) {
    SCOPED_TRACE(text);
    ld::Image im = Decode("photo.jpg", ld::ImageMode::kRGB, size);
    ASSERT_EQ(im.height, size.height);
    ASSERT_EQ(im.width, size.width);
    auto [mean, most] = Difference(AsString(im), pil.Pixels("photo.jpg", "RGB", text));
    EXPECT_LT(mean, bound) << "largest difference " << most;
  }
}

TEST(ImageCodec, CorruptInputsFailNamingTheFileAndTheReason) {
  const auto& pil = PillowImages::Get();
  const std::string jpeg = pil.Bytes("photo.jpg");
  const std::string png = pil.Bytes("rgb.png");
  // At its own size and resized (a JPEG then decodes to its planes: the same checks).
  auto fails = [](const std::string& bytes, const std::string& path, const std::string& why) {
    for (ld::ImageSize size : {ld::ImageSize{}, ld::ImageSize{224, 224}}) {
      try {
        ld::internal::DecodeImage(bytes, path, ld::ImageMode::kRGB, size);
        ADD_FAILURE() << path << " decoded at " << size.height << " x " << size.width;
      } catch (const ld::DataError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find(why), std::string::npos) << msg;
      }
    }
  };
  fails("", "/in/empty.jpg", "empty");
  fails("just some text, not an image\n", "/in/notes.jpg", "not a JPEG or PNG");
  fails(jpeg.substr(0, jpeg.size() / 2), "/in/truncated.jpg", "corrupt JPEG");
  fails(jpeg.substr(0, 200), "/in/header_only.jpg", "JPEG");
  // Damaged entropy-coded data in the middle of the scan.
  std::string garbled = jpeg;
  for (size_t i = garbled.size() / 2; i < garbled.size() / 2 + 64; ++i) {
    garbled[i] = static_cast<char>(garbled[i] ^ (0x35 + i % 7));
    if (garbled[i] == '\xFF') garbled[i] = '\x12';  // no markers: bad Huffman codes
  }
  fails(garbled, "/in/garbled.jpg", "corrupt JPEG");
  // A bad CRC: the first IDAT chunk's checksum (after its 4-byte length, type and data).
  std::string bad_crc = png;
  size_t idat = bad_crc.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  const auto* len_bytes = reinterpret_cast<const uint8_t*>(bad_crc.data() + idat - 4);
  const size_t len = size_t{len_bytes[0]} << 24 | size_t{len_bytes[1]} << 16 |
                     size_t{len_bytes[2]} << 8 | len_bytes[3];
  bad_crc[idat + 4 + len] = static_cast<char>(bad_crc[idat + 4 + len] ^ 0x5A);
  fails(bad_crc, "/in/bad_crc.png", "CRC error");
  // Damaged compressed data in a chunk whose checksum was recomputed would fail in zlib; here
  // the data itself is damaged too (CRC checked first or zlib first: either is refused).
  std::string bad_data = png;
  bad_data[idat + 10] = static_cast<char>(bad_data[idat + 10] ^ 0x5A);
  fails(bad_data, "/in/bad_data.png", "corrupt PNG");
  fails(png.substr(0, png.size() - 30), "/in/truncated.png", "corrupt PNG");
  fails(png.substr(0, 8), "/in/signature_only.png", "corrupt PNG");
}

TEST(ImageCodec, EncodedPngsAreLosslessAndJpegsClose) {
  ld::Image im = Decode("rgb.png", ld::ImageMode::kRGB);
  std::string png = ld::internal::EncodeImage(im.view(), "png", 90, "out.png");
  EXPECT_TRUE(AsString(ld::internal::DecodeImage(png, "out.png", ld::ImageMode::kRGB, {})) ==
              AsString(im));
  std::string jpeg = ld::internal::EncodeImage(im.view(), "jpeg", 95, "out.jpg");
  auto [mean, most] = Difference(
      AsString(ld::internal::DecodeImage(jpeg, "out.jpg", ld::ImageMode::kRGB, {})), AsString(im));
  EXPECT_LT(mean, 4.0) << "largest difference " << most;
  EXPECT_THROW(ld::internal::EncodeImage(im.view(), "gif", 90, "out.gif"), ld::DataError);
  EXPECT_THROW(ld::internal::EncodeImage(im.view(), "jpeg", 0, "out.jpg"), ld::DataError);
}

// ---- image columns and helpers ---------------------------------------------------------

ld::Image Numbered(int64_t h, int64_t w, int64_t c) {
  ld::Image im{h, w, c, std::vector<uint8_t>(static_cast<size_t>(h * w * c))};
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>(i % 251);
  return im;
}

TEST(ImageColumn, VariableSizesSurviveSliceTakeConcatAndTheEncodedBytes) {
  ld::Image a = Numbered(3, 5, 3), b = Numbered(7, 2, 1), c = Numbered(1, 1, 4);
  ld::Batch batch = ld::BatchBuilder()
                        .AddString("path", {"a", "b", "c"})
                        .AddImages("image", {a.view(), b.view(), c.view()})
                        .Build();
  EXPECT_EQ(batch.ColumnType("image"), ld::DataType::kImage);
  auto same = [](const ld::ImageView& v, const ld::Image& im) {
    return v.height == im.height && v.width == im.width && v.channels == im.channels &&
           AsString(v) == AsString(im);
  };
  EXPECT_TRUE(same(batch.ImageAt(0), a));
  EXPECT_TRUE(same(batch.ImageAt(1), b));
  EXPECT_TRUE(same(batch.ImageAt(2), c));
  EXPECT_TRUE(same(batch.Slice(1, 2).ImageAt(1), c));
  EXPECT_TRUE(same(batch.TakeRows({2, 0}).ImageAt(1), a));
  ld::Batch both = ld::Batch::Concat({batch, batch.Slice(0, 1)});
  EXPECT_TRUE(same(both.ImageAt(3), a));
  ld::Batch again = ld::Batch::FromBuffer(batch.buffer());
  EXPECT_TRUE(same(again.ImageAt(1), b));
  EXPECT_THROW(batch.ImageAt(3), lumen::TypeError);
  EXPECT_THROW(batch.Images("path"), lumen::TypeError);
  // Pixels that do not match the size are refused, when built and when decoded.
  ld::ImageView wrong{2, 2, 3, a.pixels};
  EXPECT_THROW(ld::BatchBuilder().AddImages("image", {wrong}), lumen::TypeError);
  std::string bytes(reinterpret_cast<const char*>(batch.buffer().data()), batch.buffer().size());
  size_t at = bytes.find(std::string("\x03\x00\x00\x00\x05\x00\x00\x00", 8));  // a's header
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 9;  // height 9: more pixels than the value holds
  EXPECT_THROW(ld::Batch::FromBuffer(lumen::Buffer::Copy(bytes.data(), bytes.size())),
               lumen::TypeError);
  // A uint8 tensor column of {h, w, c} reads as images too.
  ld::Batch fixed = ld::BatchBuilder().AddTensorUInt8("image", {3, 5, 3}, a.pixels).Build();
  EXPECT_TRUE(same(fixed.ImageAt(0), a));
}

TEST(ImageOps, CenterCropFollowsTorchvisionAndPadsSmallImages) {
  ld::Image im = Numbered(6, 5, 1);  // pixel (y, x) = y * 5 + x
  // Offsets round((6 - 3) / 2) = 2 (half to even) and round((5 - 3) / 2) = 1.
  ld::Image crop = ld::CenterCrop(im.view(), {3, 3});
  EXPECT_EQ(crop.pixels, (std::vector<uint8_t>{11, 12, 13, 16, 17, 18, 21, 22, 23}));
  // Larger than the image: zeros around it, the image at offset (8 - 6) / 2 = 1, (7 - 5) / 2 = 1.
  ld::Image padded = ld::CenterCrop(im.view(), {8, 7});
  ASSERT_EQ(padded.pixels.size(), 56u);
  EXPECT_EQ(padded.pixels[0], 0);
  EXPECT_EQ(padded.pixels[1 * 7 + 1], 0);   // image pixel (0, 0) = 0
  EXPECT_EQ(padded.pixels[2 * 7 + 3], 7);   // image pixel (1, 2)
  EXPECT_EQ(padded.pixels[6 * 7 + 5], 29);  // image pixel (5, 4)
  EXPECT_EQ(padded.pixels[7 * 7 + 6], 0);
  EXPECT_THROW(ld::CenterCrop(im.view(), {0, 3}), lumen::TypeError);
}

TEST(ImageOps, NormalizeMakesChannelsFirstFloatsWithImageNetStatistics) {
  ld::Image im{1, 2, 3, {0, 128, 255, 10, 20, 30}};
  std::vector<float> out(6);
  ld::Normalize(im.view(), out);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  for (int c = 0; c < 3; ++c) {
    for (int x = 0; x < 2; ++x) {
      float expect =
          (static_cast<float>(im.pixels[static_cast<size_t>(x * 3 + c)]) / 255.f - mean[c]) / sd[c];
      EXPECT_FLOAT_EQ(out[static_cast<size_t>(c * 2 + x)], expect) << c << "," << x;
    }
  }
  ld::Batch batch = ld::BatchBuilder()
                        .AddInt64("id", {1, 2})
                        .AddImages("image", {Numbered(9, 12, 3).view(), Numbered(12, 9, 3).view()})
                        .Build();
  ld::Batch shorter = ld::ResizeShorterSide(batch, 6);
  EXPECT_EQ(shorter.ImageAt(0).height, 6);
  EXPECT_EQ(shorter.ImageAt(0).width, 8);
  EXPECT_EQ(shorter.ImageAt(1).height, 8);
  EXPECT_EQ(shorter.ImageAt(1).width, 6);
  EXPECT_THROW(ld::NormalizeImages(shorter), lumen::TypeError);  // two shapes
  ld::Batch cropped = ld::CenterCropImages(shorter, {5, 5});
  EXPECT_EQ(cropped.ColumnType("image"), ld::DataType::kTensorUInt8);
  ld::Batch tensors = ld::NormalizeImages(cropped);
  EXPECT_FALSE(tensors.HasColumn("image"));
  EXPECT_EQ(tensors.Int64("id")[1], 2);
  auto t = tensors.TensorFloat32("tensor");
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{3, 5, 5}));
  ASSERT_EQ(t.size(), 2u);
  ld::ImageView second = cropped.ImageAt(1);
  EXPECT_FLOAT_EQ(t[1][2 * 25 + 7], (second.pixels[7 * 3 + 2] / 255.f - mean[2]) / sd[2]);
}

// ---- ReadImages / WriteImages on a cluster ------------------------------------------------

// Registered for MapBatches: torchvision's classic preprocessing.
ld::Batch Preprocess(const ld::Batch& in) {
  ld::Batch b = ld::ResizeShorterSide(in, 64);
  b = ld::CenterCropImages(b, {56, 56});
  return ld::NormalizeImages(b);
}
LUMEN_REMOTE(Preprocess);

class ImagesTest : public lumen::testing::DataFixture {
 protected:
  // Pillow's images copied to in/ (in a sub-folder too).
  void CopyImages() {
    const auto& pil = PillowImages::Get();
    for (const auto& [name, size] : pil.sizes) {
      Spit(Path(std::string("in/") + (name.ends_with(".png") ? "png/" : "") + name),
           pil.Bytes(name));
    }
  }
  static std::vector<ld::Batch> Batches(const ld::Dataset& ds) {
    std::vector<ld::Batch> out;
    for (ld::Batch b : ds.IterBatches()) out.push_back(b);
    return out;
  }
  // Rows of every batch: path -> image.
  static std::map<std::string, std::pair<ld::ImageView, ld::Batch>> ByPath(
      const std::vector<ld::Batch>& batches) {
    std::map<std::string, std::pair<ld::ImageView, ld::Batch>> out;
    for (const auto& b : batches) {
      auto paths = b.String("path");
      for (size_t i = 0; i < paths.size(); ++i) {
        out[std::string(paths[i])] = {b.ImageAt(static_cast<int64_t>(i)), b};
      }
    }
    return out;
  }
};

TEST_F(ImagesTest, ReadImagesDecodesToATargetSizeOrEachImagesOwn) {
  CopyImages();
  const auto& pil = PillowImages::Get();
  // Small read tasks: several blocks.
  ld::ReadOptions read;
  read.target_block_bytes = 20000;
  auto sized = Batches(
      ld::ReadImages(Path("in"), {.size = {224, 224}, .mode = ld::ImageMode::kRGB, .read = read})
          .WithOptions(lumen::testing::Quiet()));
  ASSERT_GT(sized.size(), 1u);
  EXPECT_EQ(sized[0].ColumnType("image"), ld::DataType::kTensorUInt8);
  EXPECT_EQ(sized[0].TensorUInt8("image").shape(), (std::vector<int64_t>{224, 224, 3}));
  auto rows = ByPath(sized);
  ASSERT_EQ(rows.size(), pil.sizes.size());
  for (const auto& name : kPngs) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(rows.count("png/" + name));
    EXPECT_TRUE(AsString(rows["png/" + name].first) == pil.Pixels(name, "RGB", "224x224"));
  }
  // Without a size: each keeps its own, in a kImage column.
  auto own = Batches(ld::ReadImages(Path("in"), {.mode = ld::ImageMode::kGray})
                         .WithOptions(lumen::testing::Quiet()));
  EXPECT_EQ(own[0].ColumnType("image"), ld::DataType::kImage);
  auto by_path = ByPath(own);
  for (const auto& [name, size] : pil.sizes) {
    const std::string rel = std::string(name.ends_with(".png") ? "png/" : "") + name;
    SCOPED_TRACE(rel);
    ASSERT_TRUE(by_path.count(rel));
    const ld::ImageView v = by_path[rel].first;
    EXPECT_EQ(v.height, size.first);
    EXPECT_EQ(v.width, size.second);
    EXPECT_EQ(v.channels, 1);
    if (name.ends_with(".png")) {
      EXPECT_TRUE(AsString(v) == pil.Pixels(name, "L"));
    }
  }
  // A size with one side only is refused before anything runs.
  EXPECT_THROW(ld::ReadImages(Path("in"), {.size = {224, 0}}), ld::DataError);
}

TEST_F(ImagesTest, BadFilesFailTheReadNamingThemOrAreSkippedAndListed) {
  CopyImages();
  const std::string jpeg = PillowImages::Get().Bytes("photo.jpg");
  WriteFile("in/zero.jpg", "");
  WriteFile("in/truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
  WriteFile("in/readme.txt", "not an image\n");
  try {
    ld::ReadImages(Path("in"), {.size = {32, 32}}).WithOptions(lumen::testing::Quiet()).Count();
    ADD_FAILURE() << "a read with bad files succeeded";
  } catch (const ld::DataError& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("readme.txt") != std::string::npos ||
                msg.find("truncated.jpg") != std::string::npos ||
                msg.find("zero.jpg") != std::string::npos)
        << msg;
  }
  ld::Dataset ds = ld::ReadImages(Path("in"), {.size = {32, 32}, .on_error = ld::OnError::kSkip})
                       .WithOptions(lumen::testing::Quiet());
  EXPECT_EQ(ds.Count(), static_cast<int64_t>(PillowImages::Get().sizes.size()));
  const ld::DatasetStats stats = ds.Stats();
  std::vector<std::string> skipped;
  for (const auto& op : stats.operators) {
    skipped.insert(skipped.end(), op.skipped_inputs.begin(), op.skipped_inputs.end());
  }
  std::sort(skipped.begin(), skipped.end());
  ASSERT_EQ(skipped.size(), 3u) << stats;
  EXPECT_NE(skipped[0].find("readme.txt: not a JPEG or PNG"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[1].find("truncated.jpg: corrupt JPEG"), std::string::npos) << skipped[1];
  EXPECT_NE(skipped[2].find("zero.jpg: the file is empty"), std::string::npos) << skipped[2];
  EXPECT_NE(stats.ToString().find("skipped input"), std::string::npos);
}

TEST_F(ImagesTest, ASkippedImageLeavesTheOthersWholeInTheirRows) {
  // Decoded straight into the tensor column: a file that fails between good ones must take
  // no row, and shift no image into another's.
  CopyImages();
  WriteFile("in/png/0bad.png", "not an image at all");
  WriteFile("in/png/m_bad.png", PillowImages::Get().Bytes("photo.jpg").substr(0, 500));
  ld::Dataset ds =
      ld::ReadImages(Path("in/png"), {.size = {32, 24}, .on_error = ld::OnError::kSkip})
          .WithOptions(lumen::testing::Quiet());
  auto rows = ByPath(Batches(ds));
  ASSERT_EQ(rows.size(), kPngs.size());
  for (const auto& name : kPngs) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(rows.count(name));
    EXPECT_TRUE(AsString(rows[name].first) ==
                AsString(Decode(name, ld::ImageMode::kRGB, {32, 24})));
  }
}

// A decode makes many times its file's bytes: the reads after the first are estimated by the
// output per file byte of those that ended, so the store stays near the budget.
TEST_F(ImagesTest, DecodedImagesStayWithinTheBudget) {
  // Flat 200 x 200 JPEGs: ~1.5 KB each, 120 KB decoded at 200 x 200.
  for (int i = 0; i < 80; ++i) {
    ld::Image im{200, 200, 3, std::vector<uint8_t>(200 * 200 * 3, static_cast<uint8_t>(i))};
    WriteFile("flat/" + std::to_string(100 + i) + ".jpg",
              ld::internal::EncodeImage(im.view(), "jpeg", 90, "flat.jpg"));
  }
  const int64_t budget = 1 << 20;
  ld::ImageReadOptions read{.size = {200, 200}};
  read.read.max_files_per_block = 4;  // blocks of 480 KB; the first and last four split
  ld::Dataset ds = ld::ReadImages(Path("flat"), read)
                       .WithOptions({.memory_budget_bytes = budget, .progress = false});
  const auto [most, rows] = lumen::testing::IterateSamplingTheStore(ds);
  EXPECT_EQ(rows, 80);
  const int64_t cpus = lumen::testing::ClusterCpus();
  // The budget, a block more that a task may make beyond it, the first wave.
  EXPECT_LE(most, budget + 500000 + cpus * 130000) << ds.Stats();
}

TEST_F(ImagesTest, WriteImagesWritesFilesPillowReadsBack) {
  CopyImages();
  const auto& pil = PillowImages::Get();
  ld::Dataset ds = ld::ReadImages(Path("in/png")).WithOptions(lumen::testing::Quiet());
  ld::WriteResult r = ds.WriteImages(Path("out"), {.format = "png"});
  EXPECT_EQ(r.files_written, static_cast<int64_t>(kPngs.size()));
  for (const auto& name : kPngs) {
    ASSERT_TRUE(fs::exists(Path("out/" + name))) << name;
  }
  // Pillow decodes what was written to the pixels it decoded from the input.
  const std::string check = Path("check");
  ASSERT_EQ(RunCommand("/usr/bin/python3 -c \"from PIL import Image; "
                       "open('" +
                       check + "', 'wb').write(Image.open('" + Path("out/rgba.png") +
                       "').convert('RGB').tobytes())\""),
            0);
  EXPECT_TRUE(Slurp(check) == pil.Pixels("rgba.png", "RGB"));
  // JPEG: readable by Pillow, same size, close pixels.
  r = ds.WriteImages(Path("jpeg"), {.format = "jpeg", .quality = 95});
  EXPECT_EQ(r.files_written, static_cast<int64_t>(kPngs.size()));
  ASSERT_TRUE(fs::exists(Path("jpeg/rgb.jpg")));
  ASSERT_EQ(RunCommand("/usr/bin/python3 -c \"from PIL import Image; "
                       "open('" +
                       check + "', 'wb').write(Image.open('" + Path("jpeg/rgb.jpg") +
                       "').convert('RGB').tobytes())\""),
            0);
  auto [mean, most] = Difference(Slurp(check), pil.Pixels("rgb.png", "RGB"));
  EXPECT_LT(mean, 4.0) << "largest difference " << most;
  // A re-run skips what is written.
  EXPECT_EQ(ds.WriteImages(Path("out"), {.format = "png"}).files_written, 0);
  EXPECT_THROW(ds.WriteImages(Path("gif"), {.format = "gif"}), ld::DataError);
}

TEST_F(ImagesTest, PreprocessingInMapBatchesMakesModelInputs) {
  CopyImages();
  auto batches = Batches(ld::ReadImages(Path("in"))
                             .MapBatches(Preprocess, {.batch_size = 3})
                             .WithOptions(lumen::testing::Quiet()));
  int64_t rows = 0;
  for (const auto& b : batches) {
    rows += b.NumRows();
    EXPECT_FALSE(b.HasColumn("image"));
    EXPECT_EQ(b.TensorFloat32("tensor").shape(), (std::vector<int64_t>{3, 56, 56}));
  }
  EXPECT_EQ(rows, static_cast<int64_t>(PillowImages::Get().sizes.size()));
  // The same as the helpers called here on the decoded image.
  ld::Image gray = Decode("gray.png", ld::ImageMode::kRGB);
  ld::Batch one = ld::BatchBuilder().AddImages("image", {gray.view()}).Build();
  ld::Batch expect = Preprocess(one);
  bool found = false;
  for (const auto& b : batches) {
    auto paths = b.String("path");
    for (size_t i = 0; i < paths.size(); ++i) {
      if (paths[i] != "png/gray.png") continue;
      found = true;
      auto got = b.TensorFloat32("tensor")[i];
      auto want = expect.TensorFloat32("tensor")[0];
      EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end()));
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
