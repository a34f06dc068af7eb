// lumen_bench_s3: lumen::data on S3 against the AWS CLI, both talking to the same S3 server
// (s3rver on loopback, started here), measured in the same run.
//
//   s3_w1   read -> write between buckets: 2,880 objects, 111,368,673 bytes. The AWS CLI copies
//           the same objects through this machine: `aws s3 cp --recursive` to a local folder,
//           then from it to another bucket (a server-side copy is not the same work).
//   s3_w2   read -> map (10 ms per object) -> write, against its floor: objects x 10 ms / CPUs.
//   1 GiB   one object read (parallel ranged GETs) and written (multipart), against `aws s3 cp`.
//
// Every output is checked with the AWS CLI: object count, total size and each object's ETag
// (MD5 of its bytes) equal to the source's. Prints `name value unit` lines; no arguments.
// Data lives under $LUMEN_BENCH_DIR (default /tmp/lumen-bench).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "bench_inputs.h"
#include "bench_report.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"
#include "s3_server.h"

namespace fs = std::filesystem;
namespace ld = lumen::data;

namespace {

using lumen::bench::Now;
using lumen::bench::Report;

constexpr int kW1Files = 2880;
constexpr int64_t kW1Bytes = 111368673;
constexpr int kCpus = 2;

// W2's map: 10 ms of work per object (a decode, a resize), the bytes passed on.
ld::Batch TenMsPerObject(const ld::Batch& in) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10 * in.NumRows()));
  return in;
}

struct Listing {
  int64_t objects = 0;
  int64_t bytes = 0;
  std::map<std::string, std::string> etags;  // key below the prefix -> ETag
  bool ok = false;
};

// Every object under s3://bucket/prefix/ as the AWS CLI lists it (a write's records aside).
Listing List(const lumen::testing::S3Server& server, const std::string& bucket,
             const std::string& prefix) {
  Listing l;
  auto r = server.Aws("s3api list-objects-v2 --bucket " + bucket + " --prefix " + prefix +
                      " --query 'Contents[].[Key,Size,ETag]' --output text");
  if (r.code != 0) {
    std::fprintf(stderr, "listing s3://%s/%s failed: %s\n", bucket.c_str(), prefix.c_str(),
                 r.out.c_str());
    return l;
  }
  std::istringstream in(r.out);
  std::string key, etag;
  int64_t size;
  while (in >> key >> size >> etag) {
    const std::string rel = key.substr(prefix.size());
    if (rel == "_SUCCESS" || rel == "_lumen_manifest.json") continue;
    ++l.objects;
    l.bytes += size;
    l.etags[rel] = etag;
  }
  l.ok = true;
  return l;
}

bool SameObjects(const Listing& a, const Listing& b) {
  return a.ok && b.ok && a.objects == b.objects && a.bytes == b.bytes && a.etags == b.etags;
}

double Timed(const std::function<void()>& fn) {
  const double t0 = Now();
  fn();
  return Now() - t0;
}

void MustRun(const lumen::testing::S3Server& server, const std::string& args) {
  auto r = server.Aws(args);
  if (r.code != 0) {
    std::fprintf(stderr, "aws %s failed: %s\n", args.c_str(), r.out.c_str());
    std::exit(1);
  }
}

}  // namespace

LUMEN_REMOTE(TenMsPerObject);

int main(int argc, char** argv) {
  lumen::InitOptions init;
  init.num_cpus = kCpus;
  init.object_store_memory = 4ll << 30;
  lumen::Init(argc, argv, init);  // workers run this same program and never return from here
  const char* env_root = std::getenv("LUMEN_BENCH_DIR");
  const std::string root = std::string(env_root ? env_root : "/tmp/lumen-bench") + "/s3";
  fs::create_directories(root);
  lumen::testing::S3Server server(root + "/server");
  std::string error;
  if (!server.Start({"lumen-src", "lumen-dst", "lumen-cli", "lumen-big"}, &error)) {
    std::fprintf(stderr, "lumen_bench_s3: %s\n", error.c_str());
    return 1;
  }
  ld::S3Options s3;
  s3.endpoint_url = server.endpoint();
  s3.access_key_id = s3.secret_access_key = lumen::testing::S3Server::kKey;
  ld::ReadOptions read;
  read.s3 = s3;
  ld::WriteOptions write;
  write.s3 = s3;
  ld::ExecutionOptions quiet;
  quiet.progress = false;

  // ---- W1: read -> write between buckets ------------------------------------------------------
  const std::string w1_local = root + "/w1-in";
  auto files = lumen::bench::Generate(w1_local, kW1Files, kW1Bytes, 120, 1);
  MustRun(server, "s3 cp --quiet --recursive " + w1_local + " s3://lumen-src/w1/");
  const Listing src = List(server, "lumen-src", "w1/");
  Report("s3_w1_objects", static_cast<double>(src.objects), "objects");
  Report("s3_w1_bytes", static_cast<double>(src.bytes), "bytes");
  const double w1_ds = Timed([&] {
    ld::ReadBinaryFiles("s3://lumen-src/w1/", read)
        .WithOptions(quiet)
        .WriteFiles("s3://lumen-dst/w1/", write);
  });
  const std::string cli_local = root + "/w1-cli";
  fs::remove_all(cli_local);
  const double w1_cli = Timed([&] {
    MustRun(server, "s3 cp --quiet --recursive s3://lumen-src/w1/ " + cli_local);
    MustRun(server, "s3 cp --quiet --recursive " + cli_local + " s3://lumen-cli/w1/");
  });
  Report("s3_w1_dataset_s", w1_ds, "s");
  Report("s3_w1_awscli_s", w1_cli, "s");
  Report("s3_w1_dataset_vs_awscli", w1_ds / w1_cli, "x");
  Report("s3_w1_equal", SameObjects(src, List(server, "lumen-dst", "w1/")) ? 1 : 0, "bool");
  Report("s3_w1_awscli_equal", SameObjects(src, List(server, "lumen-cli", "w1/")) ? 1 : 0, "bool");

  // ---- W2: read -> map (10 ms per object) -> write -------------------------------------------
  const double w2_ds = Timed([&] {
    ld::ReadBinaryFiles("s3://lumen-src/w1/", read)
        .MapBatches(TenMsPerObject)
        .WithOptions(quiet)
        .WriteFiles("s3://lumen-dst/w2/", write);
  });
  const double floor = kW1Files * 0.010 / kCpus;
  Report("s3_w2_dataset_s", w2_ds, "s");
  Report("s3_w2_floor_s", floor, "s");
  Report("s3_w2_dataset_vs_floor", w2_ds / floor, "x");
  Report("s3_w2_equal", SameObjects(src, List(server, "lumen-dst", "w2/")) ? 1 : 0, "bool");

  // ---- one 1 GiB object ----------------------------------------------------------------------
  const std::string big_local = root + "/big.bin";
  {
    std::vector<char> buf(1 << 20);
    uint64_t seed = 7;
    std::ofstream f(big_local, std::ios::binary | std::ios::trunc);
    for (int mb = 0; mb < 1024; ++mb) {
      for (size_t k = 0; k + 8 <= buf.size(); k += 8) {
        const uint64_t r = lumen::bench::SplitMix(seed);
        std::memcpy(buf.data() + k, &r, 8);
      }
      f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    }
  }
  MustRun(server, "s3 cp --quiet " + big_local + " s3://lumen-big/in/big.bin");
  // Read into a block in the object store (where a pipeline's next step takes it), its size
  // checked by the block's own figures.
  int64_t read_bytes = 0;
  const double read_ds = Timed([&] {
    ld::Dataset big = ld::ReadBinaryFiles("s3://lumen-big/in/big.bin", read).WithOptions(quiet);
    big.Count();
    read_bytes = big.Stats().operators.front().bytes_in;
  });
  const double read_cli = Timed(
      [&] { MustRun(server, "s3 cp --quiet s3://lumen-big/in/big.bin " + root + "/big-cli.bin"); });
  Report("s3_read_1gib_object_s", read_ds, "s");
  Report("s3_read_1gib_object_awscli_s", read_cli, "s");
  Report("s3_read_1gib_object_vs_awscli", read_ds / read_cli, "x");
  Report("s3_read_1gib_object_bytes", static_cast<double>(read_bytes), "bytes");
  fs::remove(root + "/big-cli.bin");
  const double write_ds = Timed([&] {
    ld::ReadBinaryFiles(big_local).WithOptions(quiet).WriteFiles("s3://lumen-big/ds/", write);
  });
  const double write_cli =
      Timed([&] { MustRun(server, "s3 cp --quiet " + big_local + " s3://lumen-big/cli/big.bin"); });
  Report("s3_write_1gib_object_s", write_ds, "s");
  Report("s3_write_1gib_object_awscli_s", write_cli, "s");
  Report("s3_write_1gib_object_vs_awscli", write_ds / write_cli, "x");
  const Listing in_big = List(server, "lumen-big", "in/");
  const Listing ds_big = List(server, "lumen-big", "ds/");
  Report("s3_write_1gib_object_equal",
         ds_big.ok && ds_big.objects == 1 && ds_big.bytes == in_big.bytes &&
                 ds_big.etags.begin()->second == in_big.etags.begin()->second
             ? 1
             : 0,
         "bool");
  fs::remove(big_local);
  fs::remove_all(cli_local);
  lumen::Shutdown();
  return 0;
}
