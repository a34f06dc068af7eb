// lumen::data in one page: read files, transform them in tasks and in an actor pool, write
// the results exactly once, and look at what happened.
//
//   build/examples/data_pipeline [input-dir] [output-dir]
// Without arguments it makes a small input tree under /tmp/lumen-example first (once: a
// re-run resumes the same write and finds every file there).
#include <lumen/data/dataset.h>
#include <lumen/lumen.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ld = lumen::data;

// A batch function: upper-cases every file (runs in tasks, fused with the read and the write).
ld::Batch Shout(const ld::Batch& in) {
  auto bytes = in.Binary("bytes");
  std::vector<std::string> out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string s(bytes[i]);
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out.push_back(std::move(s));
  }
  return ld::BatchBuilder(in).AddBinary("bytes", std::move(out)).Build();
}

// A callable class: built once per actor (think: load a model), then called per batch.
class LineCounter {
 public:
  explicit LineCounter(std::string label) : label_(std::move(label)) {}
  ld::Batch operator()(const ld::Batch& in) {
    auto bytes = in.Binary("bytes");
    std::vector<int64_t> lines;
    std::vector<std::string> labels;
    for (size_t i = 0; i < bytes.size(); ++i) {
      lines.push_back(static_cast<int64_t>(std::count(bytes[i].begin(), bytes[i].end(), '\n')));
      labels.push_back(label_);
    }
    return ld::BatchBuilder()
        .AddColumnFrom(in, "path")
        .AddInt64("lines", std::move(lines))
        .AddString("label", std::move(labels))
        .Build();
  }

 private:
  std::string label_;
};

LUMEN_REMOTE(Shout);
LUMEN_DATA_CALLABLE(LineCounter, std::string);

int main(int argc, char** argv) {
  lumen::Init(argc, argv);  // first: workers run this program too
  std::string in = argc > 1 ? argv[1] : "/tmp/lumen-example/in";
  std::string out = argc > 2 ? argv[2] : "/tmp/lumen-example/out";
  if (argc <= 1 && !std::filesystem::exists(in)) {  // the same input on every run
    for (int i = 0; i < 200; ++i) {
      std::string dir = in + "/group" + std::to_string(i % 5);
      std::filesystem::create_directories(dir);
      std::ofstream(dir + "/doc" + std::to_string(i) + ".txt")
          << "hello lumen\nthis is document " << i << "\n";
    }
  }

  // read -> map (fused into one task per block) -> write, exactly once.
  auto files = ld::ReadBinaryFiles(in);
  ld::WriteResult w =
      files.MapBatches(Shout, {.batch_size = 32})
          .WriteFiles(out + "/shouted", {.path_column = "path", .data_column = "bytes"});
  std::printf("wrote %lld files (%lld skipped: already there from an earlier run)\n",
              static_cast<long long>(w.files_written), static_cast<long long>(w.files_skipped));

  // An actor pool, a group-by, and a streaming consumer.
  auto counted =
      files.MapBatches<LineCounter>({.concurrency = 2, .num_cpus = 0.5}, std::string("v1"));
  int64_t total_lines = 0;
  for (const ld::Batch& b : counted.IterBatches({.batch_size = 50})) {
    for (int64_t n : b.Int64("lines")) total_lines += n;
  }
  std::printf("%lld lines in %lld files\n", static_cast<long long>(total_lines),
              static_cast<long long>(files.Count()));
  for (const ld::Row& r : ld::Range(10).GroupBy("id").Count().Take(3)) {
    std::printf("group %s\n", r.ToString().c_str());
  }
  std::printf("%s", counted.Explain().c_str());
  std::printf("%s", counted.Stats().ToString().c_str());
  lumen::Shutdown();
  return 0;
}
