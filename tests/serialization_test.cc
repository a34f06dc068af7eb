#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lumen/serialization.h"

namespace {

struct Point {
  double x = 0, y = 0;
  std::string label;
  std::vector<int> tags;
  LUMEN_SERIALIZE(x, y, label, tags);
  bool operator==(const Point& o) const {
    return x == o.x && y == o.y && label == o.label && tags == o.tags;
  }
};

template <class T>
T RoundTrip(const T& v) {
  lumen::internal::SerializedValue s = lumen::internal::Serialize(v);
  auto holder = std::make_shared<std::string>(
      s.format == lumen::internal::ValueFormat::kRaw ? std::string(s.raw.view()) : s.data);
  lumen::internal::ValueView view;
  view.format = s.format;
  view.data = reinterpret_cast<const uint8_t*>(holder->data());
  view.size = holder->size();
  view.holder = holder;
  return lumen::internal::Deserialize<T>(view);
}

TEST(Serialization, RoundTripsCommonTypes) {
  EXPECT_EQ(RoundTrip(42), 42);
  EXPECT_EQ(RoundTrip(std::string("héllo")), "héllo");
  EXPECT_EQ(RoundTrip(std::vector<double>{1.5, -2, 3e300}), (std::vector<double>{1.5, -2, 3e300}));
  EXPECT_EQ(RoundTrip(std::vector<int64_t>{}), std::vector<int64_t>{});
  std::map<std::string, std::vector<std::string>> m{{"a", {"x", "y"}}, {"b", {}}};
  EXPECT_EQ(RoundTrip(m), m);
  EXPECT_EQ(RoundTrip(std::optional<int>()), std::nullopt);
  EXPECT_EQ(RoundTrip(std::make_tuple(1, std::string("two"), 3.0)),
            std::make_tuple(1, std::string("two"), 3.0));
  Point p{1, 2, "pt", {7, 8}};
  EXPECT_EQ(RoundTrip(p), p);
}

TEST(Serialization, NumericVectorsAreOneBinaryBlob) {
  std::vector<double> v(1000, 1.25);
  auto s = lumen::internal::Serialize(v);
  EXPECT_LE(s.data.size(), v.size() * sizeof(double) + 8);  // not 9 bytes per element
}

TEST(Serialization, BufferInsideAValueIsAViewOfTheStoredBytes) {
  lumen::Buffer b = lumen::Buffer::FromString(std::string(1000, 'q'));
  std::vector<lumen::Buffer> v{b, b.Slice(10, 5)};
  lumen::internal::SerializedValue s = lumen::internal::Serialize(v);
  auto holder = std::make_shared<std::string>(s.data);
  lumen::internal::ValueView view{s.format, reinterpret_cast<const uint8_t*>(holder->data()),
                                  holder->size(), holder};
  auto back = lumen::internal::Deserialize<std::vector<lumen::Buffer>>(view);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0], b);
  EXPECT_EQ(back[1].ToString(), "qqqqq");
  const uint8_t* base = reinterpret_cast<const uint8_t*>(holder->data());
  EXPECT_GE(back[0].data(), base);  // points into the stored bytes: no copy
  EXPECT_LT(back[0].data(), base + holder->size());
}

TEST(Serialization, TopLevelBufferTravelsRaw) {
  lumen::Buffer b = lumen::Buffer::FromString("raw bytes");
  auto s = lumen::internal::Serialize(b);
  EXPECT_EQ(s.format, lumen::internal::ValueFormat::kRaw);
  EXPECT_EQ(s.raw.data(), b.data());  // not copied
  EXPECT_EQ(RoundTrip(b).ToString(), "raw bytes");
}

TEST(Serialization, WrongTypeIsATypeErrorNamingTheType) {
  auto s = lumen::internal::Serialize(std::string("not a number"));
  auto holder = std::make_shared<std::string>(s.data);
  lumen::internal::ValueView view{s.format, reinterpret_cast<const uint8_t*>(holder->data()),
                                  holder->size(), holder};
  try {
    lumen::internal::Deserialize<int>(view);
    FAIL() << "expected TypeError";
  } catch (const lumen::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("int"), std::string::npos) << e.what();
  }
  // Truncated bytes too.
  view.size = 3;
  EXPECT_THROW(lumen::internal::Deserialize<std::string>(view), lumen::TypeError);
  // Raw bytes cannot be read as a structured value.
  auto raw = lumen::internal::Serialize(lumen::Buffer::FromString("xyz"));
  lumen::internal::ValueView rv{raw.format, raw.raw.data(), raw.raw.size(), raw.raw.owner()};
  EXPECT_THROW(lumen::internal::Deserialize<std::string>(rv), lumen::TypeError);
}

}  // namespace
