// lumen::data's readers on s3:// URIs against a real S3 server (s3rver on loopback); the
// objects are put there by an independent client, the AWS CLI.
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "s3_server.h"

namespace ld = lumen::data;

namespace {

class S3DataTest : public lumen::testing::DataFixture {
 protected:
  void SetUp() override {
    DataFixture::SetUp();
    std::string error;
    ASSERT_TRUE(server_.Start({"lumen-in", "lumen-out"}, &error)) << error;
  }
  // Reads of the test server, its settings given in code.
  ld::ReadOptions Read() const {
    ld::ReadOptions o;
    o.s3 = S3();
    return o;
  }
  ld::S3Options S3() const {
    ld::S3Options s;
    s.endpoint_url = server_.endpoint();
    s.access_key_id = lumen::testing::S3Server::kKey;
    s.secret_access_key = lumen::testing::S3Server::kKey;
    return s;
  }
  // Uploads the local directory `rel` to s3://lumen-in/<prefix> with the AWS CLI.
  void Upload(const std::string& rel, const std::string& prefix) {
    auto r = server_.Aws("s3 cp --recursive " + Path(rel) + " s3://lumen-in/" + prefix);
    ASSERT_EQ(r.code, 0) << r.out;
  }

  lumen::testing::S3Server server_{::testing::TempDir() + "/lumen-s3d-" +
                                   std::to_string(::getpid())};
};

std::string Bytes(const lumen::Buffer& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string Content(int i) { return "object " + std::to_string(i) + std::string(i * 37, 'x'); }

// A prefix is read as a folder: every object under it once, by its path below the prefix,
// hidden names (a write's _SUCCESS, .files) skipped, the bytes as the AWS CLI put them.
TEST_F(S3DataTest, BinaryFilesUnderAPrefixAreReadWithTheirRelativePaths) {
  for (int i = 0; i < 30; ++i) {
    WriteFile("up/class" + std::to_string(i % 3) + "/img" + std::to_string(i) + ".bin", Content(i));
  }
  WriteFile("up/_SUCCESS", "");
  WriteFile("up/.hidden", "no");
  Upload("up", "images/");
  auto rows = ld::ReadBinaryFiles("s3://lumen-in/images/", Read())
                  .WithOptions({.progress = false, .preserve_order = true})
                  .TakeAll();
  ASSERT_EQ(rows.size(), 30u);
  std::set<std::string> seen;
  for (const auto& r : rows) {
    const std::string path = r.GetString("path");
    const int i = std::stoi(path.substr(path.find("img") + 3));
    EXPECT_EQ(path, "class" + std::to_string(i % 3) + "/img" + std::to_string(i) + ".bin");
    EXPECT_EQ(Bytes(r.GetBinary("bytes")), Content(i)) << path;
    seen.insert(path);
  }
  EXPECT_EQ(seen.size(), 30u);
  // Without the trailing slash the key names no object: it is read as the folder it is.
  EXPECT_EQ(ld::ReadBinaryFiles("s3://lumen-in/images", Read())
                .WithOptions(lumen::testing::Quiet())
                .Count(),
            30);
  // One object by its key.
  auto one = ld::ReadBinaryFiles("s3://lumen-in/images/class1/img4.bin", Read())
                 .WithOptions(lumen::testing::Quiet())
                 .TakeAll();
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].GetString("path"), "img4.bin");
  EXPECT_EQ(Bytes(one[0].GetBinary("bytes")), Content(4));
}

// CSV, JSON lines and text from S3, one prefix, a glob over keys ('*' within one level).
TEST_F(S3DataTest, CsvJsonAndTextObjectsAndGlobsOverKeys) {
  WriteFile("t/a.csv", "id,name\n1,ann\n2,bob\n");
  WriteFile("t/b.csv", "id,name\n3,cy\n");
  WriteFile("t/sub/c.csv", "id,name\n4,dee\n");
  WriteFile("t/rows.jsonl", "{\"id\": 1, \"v\": 0.5}\n{\"id\": 2, \"v\": null}\n");
  WriteFile("t/lines.txt", "one\ntwo\nthree\n");
  Upload("t", "tables/");
  auto csv = ld::ReadCsv("s3://lumen-in/tables/*.csv", Read())
                 .WithOptions({.progress = false, .preserve_order = true})
                 .TakeAll();
  ASSERT_EQ(csv.size(), 3u);  // a.csv and b.csv; sub/c.csv is one level down
  EXPECT_EQ(csv[0].GetString("name"), "ann");
  EXPECT_EQ(csv[2].GetInt64("id"), 3);
  EXPECT_EQ(ld::ReadCsv("s3://lumen-in/tables/*/*.csv", Read())
                .WithOptions(lumen::testing::Quiet())
                .Count(),
            1);
  auto json = ld::ReadJson("s3://lumen-in/tables/rows.jsonl", Read())
                  .WithOptions({.progress = false, .preserve_order = true})
                  .TakeAll();
  ASSERT_EQ(json.size(), 2u);
  EXPECT_DOUBLE_EQ(json[0].GetDouble("v"), 0.5);
  EXPECT_TRUE(json[1].IsNull("v"));
  EXPECT_EQ(ld::ReadText("s3://lumen-in/tables/lines.txt", Read())
                .WithOptions(lumen::testing::Quiet())
                .Count(),
            3);
}

// What cannot be read fails naming the URI and the server's answer — or, when asked, is
// skipped and listed in Stats().
TEST_F(S3DataTest, MissingBucketsKeysAndBadUrisFailNamingThem) {
  auto expect_error = [&](const std::string& uri, const std::string& part) {
    try {
      ld::ReadBinaryFiles(uri, Read()).WithOptions(lumen::testing::Quiet()).Count();
      ADD_FAILURE() << uri << " was read";
    } catch (const ld::DataError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error("s3://no-such-bucket/x/", "NoSuchBucket");
  expect_error("s3://lumen-in/nothing/here.bin", "does not exist");
  expect_error("s3://lumen-in/empty/", "holds no objects");
  expect_error("s3://Bad_Bucket/x", "not a bucket name");
  ld::ReadOptions wrong = Read();
  wrong.s3.access_key_id = "NOT-A-KEY";
  try {
    ld::ReadBinaryFiles("s3://lumen-in/x/", wrong).WithOptions(lumen::testing::Quiet()).Count();
    ADD_FAILURE() << "read with a wrong access key";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("InvalidAccessKeyId"), std::string::npos) << e.what();
  }
  WriteFile("one/a.bin", "a");
  Upload("one", "present/");
  ld::ReadOptions skipping = Read();
  skipping.ignore_missing_files = true;
  auto ds = ld::ReadBinaryFiles(
                std::vector<std::string>{"s3://lumen-in/present/a.bin", "s3://lumen-in/absent.bin"},
                skipping)
                .WithOptions(lumen::testing::Quiet());
  EXPECT_EQ(ds.Count(), 1);
  const std::vector<std::string> ignored = ds.Stats().operators.front().ignored_files;
  ASSERT_EQ(ignored.size(), 1u);
  EXPECT_NE(ignored[0].find("s3://lumen-in/absent.bin"), std::string::npos) << ignored[0];
}

}  // namespace
