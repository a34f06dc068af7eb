// lumen::data's readers on s3:// URIs against a real S3 server (s3rver on loopback); the
// objects are put there by an independent client, the AWS CLI.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data_fixture.h"
#include "fault_proxy.h"
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

// Every value of `bytes` reversed.
ld::Batch Reverse(const ld::Batch& in) {
  ld::StringColumn bytes = in.Binary("bytes");
  std::vector<std::string> out;
  for (size_t r = 0; r < bytes.size(); ++r) out.emplace_back(bytes[r].rbegin(), bytes[r].rend());
  return ld::BatchBuilder(in).Remove("bytes").AddBinary("bytes", std::move(out)).Build();
}
LUMEN_REMOTE(Reverse);

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

// A folder of more than a page of keys is listed in parallel: after its first page, its
// sub-folders (a lone one descended into) cut the rest of its key space into ranges of about a
// page, each listed by a task. Every object is read once, under its name below the folder
// given, in order — also 2023/'s, a folder of folders that s3rver leaves out of its answer (the
// cuts then make fewer ranges, they lose no keys).
TEST_F(S3DataTest, ALargeFolderIsListedInRangesCutAtItsSubFolders) {
  std::vector<std::string> expected;
  for (int i = 0; i < 3100; ++i) {
    const std::string rel =
        "d" + std::to_string(100 + i / 50) + "/part" + std::to_string(10000 + i) + ".bin";
    WriteFile("tree/" + rel, std::to_string(i));
    expected.push_back(rel);
  }
  WriteFile("tree/2023/01/part13100.bin", "3100");
  expected.push_back("2023/01/part13100.bin");
  WriteFile("tree/readme.bin", "readme");
  expected.push_back("readme.bin");
  WriteFile("tree/_tmp/partial.bin", "hidden");
  WriteFile("tree/d150/.meta", "hidden");
  std::sort(expected.begin(), expected.end());
  Upload("tree", "split/only/");
  ld::Dataset ds = ld::ReadBinaryFiles("s3://lumen-in/split/", Read())
                       .WithOptions({.progress = false, .preserve_order = true});
  std::vector<std::string> paths;
  for (const auto& r : ds.TakeAll()) {
    paths.push_back(r.GetString("path"));
    const std::string& name = paths.back();
    const std::string want =
        name == "only/readme.bin"
            ? "readme"
            : std::to_string(std::stoi(name.substr(name.find("part") + 4)) - 10000);
    EXPECT_EQ(Bytes(r.GetBinary("bytes")), want) << name;
  }
  for (auto& e : expected) e = "only/" + e;
  EXPECT_EQ(paths, expected);  // each once, in name order
  // The first task listed a page (2023/, d100..d119) and cut the 42 folders after it (~2,100
  // keys, estimated from the first page's 50 a folder) into two ranges.
  EXPECT_EQ(ds.Stats().operators.at(0).listing_tasks, 3) << ds.Stats();
  // A folder of less than a page is listed by the one task.
  ld::Dataset small = ld::ReadBinaryFiles("s3://lumen-in/split/only/d100/", Read())
                          .WithOptions(lumen::testing::Quiet());
  EXPECT_EQ(small.Count(), 50);
  EXPECT_EQ(small.Stats().operators.at(0).listing_tasks, 1);
  // So is a flat folder of more than a page (no folder to cut at): the first page, then the
  // rest after it, each key once.
  for (int i = 0; i < 1200; ++i) WriteFile("flat/" + std::to_string(10000 + i), "f");
  Upload("flat", "flat/");
  ld::Dataset flat =
      ld::ReadBinaryFiles("s3://lumen-in/flat/", Read()).WithOptions(lumen::testing::Quiet());
  std::set<std::string> names;
  const auto flat_rows = flat.TakeAll();
  for (const auto& r : flat_rows) names.insert(r.GetString("path"));
  EXPECT_EQ(flat_rows.size(), 1200u);  // none twice
  EXPECT_EQ(names.size(), 1200u);
  EXPECT_EQ(*names.begin(), "10000");
  EXPECT_EQ(*names.rbegin(), "11199");
  EXPECT_EQ(flat.Stats().operators.at(0).listing_tasks, 1);
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

// Objects read from one bucket and written to another: the AWS CLI finds every object, with
// the same size and bytes, next to the write's manifest and _SUCCESS. A second run resumes
// (writes nothing), a changed input makes the default mode refuse, an overwrite replaces the
// old objects, and JSON lines written in parts read back whole.
// Images on S3: objects the AWS CLI uploaded are decoded by ReadImages, and WriteImages puts
// one object per image.
TEST_F(S3DataTest, ImagesAreReadFromAndWrittenToBuckets) {
  std::vector<ld::Image> images;
  std::vector<ld::ImageView> views;
  std::vector<std::string> names;
  for (int i = 0; i < 7; ++i) {
    ld::Image im{20 + i, 30, 3, {}};
    for (int64_t p = 0; p < im.height * im.width * 3; ++p) {
      im.pixels.push_back(static_cast<uint8_t>(p * (i + 1) % 251));
    }
    images.push_back(std::move(im));
    names.push_back("cats/cat" + std::to_string(i) + ".raw");
  }
  for (const auto& im : images) views.push_back(im.view());
  ld::FromBatches({ld::BatchBuilder().AddString("path", names).AddImages("image", views).Build()})
      .WithOptions(lumen::testing::Quiet())
      .WriteImages(Path("local"), {.format = "png"});
  Upload("local", "pictures/");
  std::map<std::string, std::string> read;
  for (const ld::Batch& b : ld::ReadImages("s3://lumen-in/pictures/", {.read = Read()})
                                .WithOptions(lumen::testing::Quiet())
                                .IterBatches()) {
    for (int64_t r = 0; r < b.NumRows(); ++r) {
      const ld::ImageView v = b.ImageAt(r);
      read[std::string(b.String("path")[static_cast<size_t>(r)])] =
          std::string(reinterpret_cast<const char*>(v.pixels.data()), v.pixels.size());
    }
  }
  ASSERT_EQ(read.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    const std::string key = "cats/cat" + std::to_string(i) + ".png";
    ASSERT_TRUE(read.count(key)) << key;
    EXPECT_TRUE(read[key] == std::string(images[static_cast<size_t>(i)].pixels.begin(),
                                         images[static_cast<size_t>(i)].pixels.end()))
        << key;  // PNG is lossless
  }
  ld::ImageWriteOptions out{.format = "jpeg", .quality = 90};
  out.s3 = S3();
  ld::WriteResult r = ld::ReadImages("s3://lumen-in/pictures/", {.size = {16, 16}, .read = Read()})
                          .WithOptions(lumen::testing::Quiet())
                          .WriteImages("s3://lumen-out/thumbs/", out);
  EXPECT_EQ(r.files_written, 7);
  auto listed = server_.Aws("s3 ls --recursive s3://lumen-out/thumbs/");
  for (int i = 0; i < 7; ++i) {
    EXPECT_NE(listed.out.find("thumbs/cats/cat" + std::to_string(i) + ".jpg"), std::string::npos)
        << listed.out;
  }
}

TEST_F(S3DataTest, WritesLandExactlyOnceAndTheAwsCliReadsThemBack) {
  for (int i = 0; i < 24; ++i)
    WriteFile("src/d" + std::to_string(i % 2) + "/f" + std::to_string(i), Content(i));
  Upload("src", "copy-in/");
  ld::WriteOptions to_s3;
  to_s3.s3 = S3();
  auto copy = [&] {
    return ld::ReadBinaryFiles("s3://lumen-in/copy-in/", Read())
        .WithOptions(lumen::testing::Quiet())
        .WriteFiles("s3://lumen-out/copy/", to_s3);
  };
  ld::WriteResult first = copy();
  EXPECT_EQ(first.files_written, 24);
  auto ls = server_.Aws("s3 ls --recursive --summarize s3://lumen-out/copy/");
  ASSERT_EQ(ls.code, 0) << ls.out;
  EXPECT_NE(ls.out.find("Total Objects: 26"), std::string::npos) << ls.out;  // + manifest, _SUCCESS
  EXPECT_NE(ls.out.find("copy/_SUCCESS"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("copy/_lumen_manifest.json"), std::string::npos) << ls.out;
  auto down = server_.Aws("s3 cp --recursive s3://lumen-out/copy/ " + Path("down"));
  ASSERT_EQ(down.code, 0) << down.out;
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(ReadFile(Path("down/d" + std::to_string(i % 2) + "/f" + std::to_string(i))),
              Content(i));
  }
  // The same write again: everything is there already.
  ld::WriteResult again = copy();
  EXPECT_EQ(again.files_written, 0);
  EXPECT_EQ(again.files_skipped, 24);
  // A new input: resuming would mix two writes' output.
  WriteFile("more/d0/new", "new");
  Upload("more", "copy-in/");
  try {
    copy();
    ADD_FAILURE() << "resumed over another write's output";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("1 input file added"), std::string::npos) << e.what();
  }
  ld::WriteOptions overwrite = to_s3;
  overwrite.mode = ld::WriteMode::kOverwrite;
  auto fewer = ld::ReadBinaryFiles("s3://lumen-in/copy-in/d0/", Read())
                   .WithOptions(lumen::testing::Quiet())
                   .WriteFiles("s3://lumen-out/copy/", overwrite);
  EXPECT_EQ(fewer.files_written, 13);  // d0's twelve and the new one, under their names in d0/
  auto after = server_.Aws("s3 ls --recursive --summarize s3://lumen-out/copy/");
  EXPECT_NE(after.out.find("Total Objects: 15"), std::string::npos) << after.out;
  EXPECT_EQ(after.out.find("d1/"), std::string::npos) << after.out;      // the old output is gone
  EXPECT_EQ(after.out.find(".lumen-"), std::string::npos) << after.out;  // no staging left
  // JSON lines in parts of 7 rows: every part listed, every row read back.
  ld::WriteOptions json = to_s3;
  json.rows_per_file = 7;
  auto rows = ld::Range(100, {.num_blocks = 3})
                  .WithOptions(lumen::testing::Quiet())
                  .WriteJson("s3://lumen-out/json/", json);
  auto listed = server_.Aws("s3 ls --recursive s3://lumen-out/json/");
  int parts = 0;
  for (size_t at = 0; (at = listed.out.find(".jsonl", at)) != std::string::npos; ++at) ++parts;
  EXPECT_EQ(parts, rows.files_written);
  EXPECT_EQ(
      ld::ReadJson("s3://lumen-out/json/", Read()).WithOptions(lumen::testing::Quiet()).Count(),
      100);
  // kError refuses a prefix that holds objects.
  ld::WriteOptions strict = to_s3;
  strict.mode = ld::WriteMode::kError;
  EXPECT_THROW(
      ld::Range(3).WithOptions(lumen::testing::Quiet()).WriteJson("s3://lumen-out/json/", strict),
      ld::DataError);
}

// Downloads and uploads only wait on the network: ReadBinaryFiles of objects and WriteFiles to a
// bucket hold no CPU and run as tasks of their own beside a map that holds CPUs, so transfers
// overlap its work (and a read straight into a write stays one task).
TEST_F(S3DataTest, TransfersRunBesideTheMapThatHoldsTheCpus) {
  for (int i = 0; i < 30; ++i) WriteFile("io/" + std::to_string(i), Content(i));
  Upload("io", "io-in/");
  ld::Dataset mapped = ld::ReadBinaryFiles("s3://lumen-in/io-in/", Read())
                           .MapBatches(Reverse)
                           .WithOptions(lumen::testing::Quiet());
  const std::string explain = mapped.Explain();
  EXPECT_NE(explain.find("ReadBinaryFiles(s3://lumen-in/io-in/) [1 blocks, read tasks, 0 CPUs "
                         "per task, concurrency 8]"),
            std::string::npos)
      << explain;
  EXPECT_NE(explain.find("MapBatches(Reverse) [tasks]"), std::string::npos) << explain;
  ld::WriteOptions to_s3;
  to_s3.s3 = S3();
  EXPECT_EQ(mapped.WriteFiles("s3://lumen-out/io-out/", to_s3).files_written, 30);
  std::vector<std::string> ops;
  for (const auto& op : mapped.Stats().operators) ops.push_back(op.name);
  EXPECT_EQ(
      ops, (std::vector<std::string>{"ReadBinaryFiles(s3://lumen-in/io-in/)", "MapBatches(Reverse)",
                                     "WriteFiles(s3://lumen-out/io-out/)"}))
      << mapped.Stats();
  auto down = server_.Aws("s3 cp --recursive s3://lumen-out/io-out/ " + Path("io-down"));
  ASSERT_EQ(down.code, 0) << down.out;
  for (int i = 0; i < 30; ++i) {
    const std::string want = Content(i);
    EXPECT_EQ(ReadFile(Path("io-down/" + std::to_string(i))),
              std::string(want.rbegin(), want.rend()));
  }
  // Without a map between them, the read and the write are one task holding no CPU.
  ld::Dataset copy =
      ld::ReadBinaryFiles("s3://lumen-in/io-in/", Read()).WithOptions(lumen::testing::Quiet());
  EXPECT_EQ(copy.WriteFiles("s3://lumen-out/io-copy/", to_s3).files_written, 30);
  ASSERT_EQ(copy.Stats().operators.size(), 1u) << copy.Stats();
  EXPECT_EQ(copy.Stats().operators[0].name,
            "ReadBinaryFiles(s3://lumen-in/io-in/)->WriteFiles(s3://lumen-out/io-copy/)");
}

// A job whose server throttles its first requests and answers the next ones with 500
// InternalError (two proxies): every request is retried until it passes; the output is exact.
TEST_F(S3DataTest, AJobThroughAFailingServerEndsWithExactOutput) {
  for (int i = 0; i < 40; ++i) WriteFile("f/" + std::to_string(i), Content(i));
  Upload("f", "flaky-in/");
  const std::string endpoint = server_.endpoint();
  const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  lumen::testing::FaultProxy errors(port, {.refuse_first = 2, .internal_error = true});
  ASSERT_TRUE(errors.Start());
  lumen::testing::FaultProxy throttle(errors.port(), {.refuse_first = 2});
  ASSERT_TRUE(throttle.Start());
  ld::S3Options through = S3();
  through.endpoint_url = "http://127.0.0.1:" + std::to_string(throttle.port());
  ld::ReadOptions read;
  read.s3 = through;
  ld::WriteOptions write;
  write.s3 = through;
  auto written = ld::ReadBinaryFiles("s3://lumen-in/flaky-in/", read)
                     .WithOptions(lumen::testing::Quiet())
                     .WriteFiles("s3://lumen-out/flaky-out/", write);
  EXPECT_EQ(written.files_written, 40);
  EXPECT_EQ(throttle.refused(), 2);
  EXPECT_EQ(errors.refused(), 2);
  auto down = server_.Aws("s3 cp --recursive s3://lumen-out/flaky-out/ " + Path("down"));
  ASSERT_EQ(down.code, 0) << down.out;
  for (int i = 0; i < 40; ++i) EXPECT_EQ(ReadFile(Path("down/" + std::to_string(i))), Content(i));
}

}  // namespace
