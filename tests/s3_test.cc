// lumen::data's S3 client against a real S3 server (s3rver on loopback), with the AWS CLI as
// the independent client that writes what Lumen reads and reads what Lumen writes.
#include <sys/socket.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/output_store.h"
#include "data/s3_client.h"
#include "fault_proxy.h"
#include "lumen/data/dataset.h"
#include "s3_server.h"

namespace ld = lumen::data;
using ld::internal::S3Client;
using ld::internal::S3Config;
using ld::internal::S3Uri;

namespace {

class S3ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start({"lumen-in", "lumen-out"}, &error)) << error;
  }
  // Settings for the test server, given in code (the environment is not touched).
  ld::S3Options Options() const {
    ld::S3Options o;
    o.endpoint_url = server_.endpoint();
    o.region = "us-east-1";
    o.access_key_id = lumen::testing::S3Server::kKey;
    o.secret_access_key = lumen::testing::S3Server::kKey;
    return o;
  }
  S3Client Client(ld::S3Options o) const { return S3Client(S3Config::Resolve(o, false)); }
  S3Client Client() const { return Client(Options()); }
  std::string Tmp(const std::string& name) const { return dir_ + "/" + name; }

  const std::string dir_ = ::testing::TempDir() + "/lumen-s3-" + std::to_string(::getpid());
  lumen::testing::S3Server server_{dir_ + "/server"};
};

std::string Bytes(int64_t n, int seed) {
  std::string s(static_cast<size_t>(n), '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(seed * 31 + i * 7 + i / 997);
  return s;
}

std::string ReadLocal(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// ListObjectsV2 pages hold 1,000 keys: 1,050 objects need the continuation token.
TEST_F(S3ClientTest, ListingFollowsContinuationTokensPastAThousandKeys) {
  S3Client c = Client();
  for (int i = 0; i < 1050; ++i) {
    c.Put("lumen-in", "many/k" + std::to_string(100000 + i), std::to_string(i));
  }
  c.Put("lumen-in", "other/x", "not listed");
  auto listed = c.List("lumen-in", "many/");
  ASSERT_EQ(listed.size(), 1050u);
  for (size_t i = 0; i < listed.size(); ++i) {
    EXPECT_EQ(listed[i].key, "many/k" + std::to_string(100000 + i));
    EXPECT_EQ(listed[i].size, static_cast<int64_t>(std::to_string(i).size()));
    EXPECT_GT(listed[i].mtime_ns, 0);
    EXPECT_FALSE(listed[i].etag.empty());
  }
  auto cli = server_.Aws("s3 ls --summarize s3://lumen-in/many/");
  ASSERT_EQ(cli.code, 0) << cli.out;
  EXPECT_NE(cli.out.find("Total Objects: 1050"), std::string::npos) << cli.out;
}

// A large object goes up as a multipart upload and comes back in parallel ranges; the AWS CLI
// reads it byte for byte, and no upload is left open.
TEST_F(S3ClientTest, LargeObjectsUseMultipartUploadsAndRangedReads) {
  ld::S3Options o = Options();
  o.part_size = 5 << 20;
  o.multipart_threshold = 8 << 20;
  S3Client c = Client(o);
  const std::string big = Bytes((23 << 20) + 123, 1);
  c.Put("lumen-out", "big/object.bin", big);
  auto head = c.Head("lumen-out", "big/object.bin");
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->size, static_cast<int64_t>(big.size()));
  const std::string log = server_.Log();
  for (int part = 1; part <= 5; ++part) {  // 23 MiB in parts of 5 MiB
    EXPECT_NE(log.find("Stored part " + std::to_string(part) + " of"), std::string::npos) << log;
  }
  EXPECT_EQ(log.find("Stored part 6 of"), std::string::npos) << log;
  EXPECT_EQ(server_.OpenUploads("lumen-out"), 0);
  EXPECT_TRUE(c.Get("lumen-out", "big/object.bin") == big);
  EXPECT_NE(server_.Log().find(" 206 "), std::string::npos);  // ranged reads: Partial Content
  std::filesystem::create_directories(dir_);
  auto cp = server_.Aws("s3 cp s3://lumen-out/big/object.bin " + Tmp("big.bin"));
  ASSERT_EQ(cp.code, 0) << cp.out;
  EXPECT_TRUE(ReadLocal(Tmp("big.bin")) == big);
  // Small objects: one PUT, one GET; what the CLI wrote, Lumen reads.
  c.Put("lumen-out", "small.txt", "hello");
  EXPECT_EQ(c.Get("lumen-out", "small.txt"), "hello");
  std::ofstream(Tmp("cli.txt")) << "written by the AWS CLI";
  ASSERT_EQ(server_.Aws("s3 cp " + Tmp("cli.txt") + " s3://lumen-in/cli.txt").code, 0);
  EXPECT_EQ(c.Get("lumen-in", "cli.txt"), "written by the AWS CLI");
  c.Delete("lumen-out", "small.txt");
  EXPECT_FALSE(c.Head("lumen-out", "small.txt").has_value());
}

// Errors name the URI and the server's code and message.
TEST_F(S3ClientTest, ErrorsNameTheUriAndTheServersCode) {
  S3Client c = Client();
  try {
    c.List("no-such-bucket", "x/");
    FAIL() << "listing a missing bucket succeeded";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("s3://no-such-bucket/x/"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NoSuchBucket"), std::string::npos) << e.what();
  }
  try {
    c.Get("lumen-in", "missing.bin");
    FAIL() << "reading a missing key succeeded";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("s3://lumen-in/missing.bin"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("404"), std::string::npos) << e.what();
  }
  ld::S3Options wrong = Options();
  wrong.access_key_id = "NOT-A-KEY";
  try {
    Client(wrong).Put("lumen-in", "k", "v");
    FAIL() << "a write with a wrong access key succeeded";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("InvalidAccessKeyId"), std::string::npos) << e.what();
  }
  EXPECT_THROW(S3Uri::Parse("s3://"), ld::DataError);
  EXPECT_THROW(S3Uri::Parse("s3://UPPER/key"), ld::DataError);
  EXPECT_THROW(S3Uri::Parse("s3://user@bucket/key"), ld::DataError);
  EXPECT_TRUE(S3Uri::Parse("s3://anonymous@bucket/a/b").anonymous);
  EXPECT_EQ(S3Uri::Parse("s3://bucket/a/b").key, "a/b");
}

// Nothing waits forever: an endpoint nobody listens on fails once the retries are used up, and
// a server that stops answering mid-request fails at the low-speed timeout.
TEST_F(S3ClientTest, AnUnreachableOrFrozenServerFailsInsteadOfHanging) {
  ld::S3Options o = Options();
  o.endpoint_url = "http://127.0.0.1:" + std::to_string(lumen::testing::FreePort());
  o.max_retries = 1;
  try {
    Client(o).Get("lumen-in", "k");
    FAIL() << "a read from a closed port succeeded";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("s3://lumen-in/k"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("2 attempts"), std::string::npos) << e.what();
  }
  S3Client c = Client();
  c.Put("lumen-in", "k", "v");
  ld::S3Options frozen = Options();
  frozen.low_speed_timeout_s = 1;
  frozen.max_retries = 0;
  server_.Pause();
  try {
    Client(frozen).Get("lumen-in", "k");
    server_.Resume();
    FAIL() << "a read from a frozen server succeeded";
  } catch (const ld::DataError& e) {
    server_.Resume();
    EXPECT_NE(std::string(e.what()).find("s3://lumen-in/k"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.Get("lumen-in", "k"), "v");  // and the server is fine again
}

// Between the client and the server, a proxy that throttles or cuts connections: throttling
// and cut transfers are retried until they pass; when they never pass, the write fails naming
// the object and the server's answer, and no object (partial or whole) is left.
TEST_F(S3ClientTest, ThrottlingAndCutTransfersAreRetriedAndNeverLeaveAPartialObject) {
  const int server_port = std::stoi(server_.endpoint().substr(server_.endpoint().rfind(':') + 1));
  auto through = [&](lumen::testing::FaultProxy& proxy) {
    ld::S3Options o = Options();
    o.endpoint_url = "http://127.0.0.1:" + std::to_string(proxy.port());
    return o;
  };
  S3Client direct = Client();
  {
    lumen::testing::FaultProxy proxy(server_port, {.refuse_first = 3});
    ASSERT_TRUE(proxy.Start());
    Client(through(proxy)).Put("lumen-out", "throttled.bin", Bytes(100000, 3));
    EXPECT_EQ(proxy.refused(), 3);
    EXPECT_TRUE(direct.Get("lumen-out", "throttled.bin") == Bytes(100000, 3));
  }
  {
    lumen::testing::FaultProxy proxy(server_port, {.refuse_first = 1000});
    ASSERT_TRUE(proxy.Start());
    ld::S3Options o = through(proxy);
    o.max_retries = 2;
    try {
      Client(o).Put("lumen-out", "never.bin", "x");
      ADD_FAILURE() << "a write through a server that always throttles succeeded";
    } catch (const ld::DataError& e) {
      EXPECT_NE(std::string(e.what()).find("s3://lumen-out/never.bin"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("SlowDown"), std::string::npos) << e.what();
    }
    EXPECT_EQ(proxy.refused(), 3);  // the first try and two retries
    EXPECT_FALSE(direct.Head("lumen-out", "never.bin").has_value());
  }
  {
    // Every connection is cut after 1 MiB went up: a 3 MiB PUT never completes.
    lumen::testing::FaultProxy proxy(server_port, {.cut_after_bytes = 1 << 20});
    ASSERT_TRUE(proxy.Start());
    ld::S3Options o = through(proxy);
    o.max_retries = 2;
    // (Through OutputStore, as writers commit objects: s3rver keeps what a cut PUT sent,
    // S3 would not; the writer removes it.)
    auto store = ld::internal::OutputStore::For("s3://lumen-out", o);
    EXPECT_THROW(store->CreateOnce("s3://lumen-out/cut.bin", Bytes(3 << 20, 4)), ld::DataError);
    EXPECT_GE(proxy.cut(), 3);
    EXPECT_FALSE(direct.Head("lumen-out", "cut.bin").has_value());
  }
  {
    // Cut after 6 MiB per connection: parts of 5 MiB pass on a fresh connection, so a
    // multipart upload gets through with some parts retried, whole and exact.
    lumen::testing::FaultProxy proxy(server_port, {.cut_after_bytes = 6 << 20});
    ASSERT_TRUE(proxy.Start());
    ld::S3Options o = through(proxy);
    o.part_size = 5 << 20;
    o.multipart_threshold = 8 << 20;
    o.max_concurrency = 1;  // parts one after another on one connection: the cuts come
    const std::string big = Bytes(21 << 20, 5);
    Client(o).Put("lumen-out", "multi.bin", big);
    EXPECT_GE(proxy.cut(), 1);
    EXPECT_TRUE(direct.Get("lumen-out", "multi.bin") == big);
    EXPECT_EQ(server_.OpenUploads("lumen-out"), 0);
  }
}

// Settings follow the AWS conventions: code first, then the environment, then ~/.aws files.
TEST(S3Config, SettingsComeFromCodeThenEnvironmentThenAwsFiles) {
  const std::string home = ::testing::TempDir() + "/lumen-s3-home-" + std::to_string(::getpid());
  std::filesystem::create_directories(home + "/.aws");
  std::ofstream(home + "/.aws/credentials")
      << "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n"
      << "[team]\naws_access_key_id = TEAM\naws_secret_access_key = teamsecret\n"
      << "aws_session_token = tok\n";
  std::ofstream(home + "/.aws/config") << "[profile team]\nregion = eu-north-1\n"
                                       << "endpoint_url = http://minio.local:9000/\n";
  for (const char* v :
       {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
        "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"}) {
    ::unsetenv(v);
  }
  const std::string saved_home = std::getenv("HOME") ? std::getenv("HOME") : "";
  ::setenv("HOME", home.c_str(), 1);
  S3Config def = S3Config::Resolve({}, false);
  EXPECT_EQ(def.access_key_id, "DEF");
  EXPECT_EQ(def.region, "us-east-1");
  EXPECT_EQ(def.endpoint, "https://s3.us-east-1.amazonaws.com");
  EXPECT_FALSE(def.path_style);
  ::setenv("AWS_PROFILE", "team", 1);
  S3Config team = S3Config::Resolve({}, false);
  EXPECT_EQ(team.access_key_id, "TEAM");
  EXPECT_EQ(team.session_token, "tok");
  EXPECT_EQ(team.region, "eu-north-1");
  EXPECT_EQ(team.endpoint, "http://minio.local:9000");
  EXPECT_TRUE(team.path_style);
  ::setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  ::setenv("AWS_REGION", "ap-south-1", 1);
  ::setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1", 1);
  S3Config env = S3Config::Resolve({}, false);
  EXPECT_EQ(env.access_key_id, "ENVKEY");
  EXPECT_EQ(env.region, "ap-south-1");
  EXPECT_EQ(env.endpoint, "http://127.0.0.1:1");
  ld::S3Options code;
  code.access_key_id = "CODE";
  code.secret_access_key = "codesecret";
  code.region = "sa-east-1";
  S3Config in_code = S3Config::Resolve(code, false);
  EXPECT_EQ(in_code.access_key_id, "CODE");
  EXPECT_EQ(in_code.region, "sa-east-1");
  EXPECT_TRUE(S3Config::Resolve({}, /*anonymous_uri=*/true).anonymous);
  for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                        "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"}) {
    ::unsetenv(v);
  }
  ::setenv("HOME", (home + "/nowhere").c_str(), 1);
  try {
    S3Config::Resolve({}, false);
    ADD_FAILURE() << "no credentials anywhere, and no error";
  } catch (const ld::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("AWS_ACCESS_KEY_ID"), std::string::npos) << e.what();
  }
  ::setenv("HOME", saved_home.c_str(), 1);
  std::filesystem::remove_all(home);
}

}  // namespace
