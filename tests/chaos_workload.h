// The chaos workload, shared by the chaos test's driver (recovery_driver.cc) and
// lumen_bench_faults: run by a driver of a cluster while chaos_killer.h kills its nodes, rounds
// of a task tree (map -> all-to-all -> reduce) and a lumen::data pipeline (read files -> map ->
// write files), each checked exactly against what the driver computes or wrote itself.
//
// Include it in one source file of a program: it defines and registers remote functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace chaos {

// Tasks of the workload may be re-run this often: a task can be on several killed nodes.
inline constexpr int kTaskRetries = 20;

// A map's bytes: `n` bytes of a pattern, then `passes` passes of work over them.
inline std::vector<uint8_t> Pattern(int seed, int64_t n, int passes) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(seed * 37 + i * 11);
  for (int p = 0; p < passes; ++p) {
    for (size_t i = 1; i < v.size(); ++i) v[i] = static_cast<uint8_t>(v[i] ^ (v[i - 1] >> 1));
  }
  return v;
}

// The map task: Pattern's bytes, returned `hold_ms` later — standing for a longer computation,
// so that nodes die while maps run however fast the build is (sanitizers slow the bytes down).
inline lumen::Buffer Block(int seed, int64_t n, int passes, int hold_ms) {
  std::vector<uint8_t> v = Pattern(seed, n, passes);
  std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  return lumen::Buffer::FromVector(std::move(v));
}

// Reducer `part` of `parts`: the sum of its slice of every block.
inline uint64_t ReduceSlice(int part, int parts, std::vector<lumen::ObjectRef<lumen::Buffer>> in) {
  uint64_t sum = 0;
  for (auto& ref : in) {
    lumen::Buffer b = lumen::Get(ref);
    const size_t slice = b.size() / static_cast<size_t>(parts);
    for (size_t i = slice * part; i < slice * (part + 1); ++i) sum += b.data()[i];
  }
  return sum;
}

// The pipeline's map: every byte of every file's contents inverted.
inline lumen::data::Batch Invert(const lumen::data::Batch& in) {
  lumen::data::StringColumn bytes = in.Binary("bytes");
  std::vector<std::string> out(bytes.size());
  for (size_t r = 0; r < bytes.size(); ++r) {
    out[r] = std::string(bytes[r]);
    for (char& c : out[r]) c = static_cast<char>(~c);
  }
  return lumen::data::BatchBuilder(in).Remove("bytes").AddBinary("bytes", std::move(out)).Build();
}

struct Sizes {
  int maps = 24;             // tree: map tasks
  int parts = 4;             // tree: reducers
  int64_t block = 1 << 20;   // tree: bytes per map output
  int passes = 2;            // tree: work per map (passes over its block)
  int hold_ms = 100;         // tree: a map's further time
  int files = 48;            // pipeline: input files
  int64_t file = 256 << 10;  // pipeline: bytes per file
};

inline std::string FileBytes(int f, int64_t n) {
  std::string s(static_cast<size_t>(n), '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(f * 13 + i * 7 + i / 4096);
  return s;
}

// Writes the pipeline's input into `dir` (in the driver, once).
inline void WriteInput(const std::string& dir, const Sizes& sizes) {
  std::filesystem::create_directories(dir);
  for (int f = 0; f < sizes.files; ++f) {
    std::ofstream(dir + "/f" + std::to_string(f), std::ios::binary) << FileBytes(f, sizes.file);
  }
}

// One round: the tree and then the pipeline (into `out_dir`, which must not exist). Returns ""
// when both results are exact, else what differed.
inline std::string Round(int round, const std::string& in_dir, const std::string& out_dir,
                         const Sizes& sizes) {
  const lumen::TaskOptions retried{.max_retries = kTaskRetries};
  std::vector<lumen::ObjectRef<lumen::Buffer>> blocks;
  for (int m = 0; m < sizes.maps; ++m) {
    blocks.push_back(lumen::Task(Block).Options(retried).Remote(round * 1000 + m, sizes.block,
                                                                sizes.passes, sizes.hold_ms));
  }
  std::vector<lumen::ObjectRef<uint64_t>> sums;
  for (int p = 0; p < sizes.parts; ++p) {
    sums.push_back(lumen::Task(ReduceSlice).Options(retried).Remote(p, sizes.parts, blocks));
  }
  const std::vector<uint64_t> got = lumen::Get(sums);
  std::vector<uint64_t> want(static_cast<size_t>(sizes.parts), 0);
  const size_t slice = static_cast<size_t>(sizes.block) / sizes.parts;
  for (int m = 0; m < sizes.maps; ++m) {
    const std::vector<uint8_t> b = Pattern(round * 1000 + m, sizes.block, sizes.passes);
    for (int p = 0; p < sizes.parts; ++p) {
      for (size_t i = slice * p; i < slice * (p + 1); ++i) want[p] += b[i];
    }
  }
  for (int p = 0; p < sizes.parts; ++p) {
    if (got[p] != want[p]) {
      return "tree: reducer " + std::to_string(p) + " summed " + std::to_string(got[p]) +
             ", expected " + std::to_string(want[p]);
    }
  }

  // Where a round that hangs is (stderr: the benchmark's figures are on stdout).
  std::fprintf(stderr, "chaos round %d: the tree is exact, the pipeline starts\n", round);
  namespace ld = lumen::data;
  ld::ExecutionOptions quiet;
  quiet.progress = false;
  quiet.stall_report_ms = 20000;  // a stuck pipeline says what it waits on
  auto written = ld::ReadBinaryFiles(in_dir, {.target_block_bytes = 4 * sizes.file})
                     .MapBatches(Invert)
                     .WithOptions(quiet)
                     .WriteFiles(out_dir, {.path_column = "path", .data_column = "bytes"});
  // A write task whose node died after it committed a file finds the file when it is re-run
  // and counts it as skipped (committed by an earlier attempt): the files are checked below.
  if (written.files_written + written.files_skipped != sizes.files) {
    return "pipeline: wrote " + std::to_string(written.files_written) + " files and skipped " +
           std::to_string(written.files_skipped) + " of " + std::to_string(sizes.files);
  }
  int found = 0;
  for (const auto& e : std::filesystem::directory_iterator(out_dir)) {
    // Not output: the write's records (its manifest, _SUCCESS, its lock).
    const std::string name = e.path().filename().string();
    if (name == "_lumen_manifest.json" || name == "_SUCCESS" || name == ".lumen-write.lock") {
      continue;
    }
    found += e.is_regular_file();
  }
  if (found != sizes.files) {
    return "pipeline: " + std::to_string(found) + " files in " + out_dir + ", expected " +
           std::to_string(sizes.files);
  }
  for (int f = 0; f < sizes.files; ++f) {
    std::ifstream in(out_dir + "/f" + std::to_string(f), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string want = FileBytes(f, sizes.file);
    for (char& c : want) c = static_cast<char>(~c);
    if (bytes != want) return "pipeline: output f" + std::to_string(f) + " differs";
  }
  return "";
}

// Runs `rounds` rounds (printing each) and prints "chaos: E of R rounds exact"; returns E.
inline int RunRounds(int rounds, const std::string& work_dir, const Sizes& sizes) {
  const std::string in = work_dir + "/in";
  WriteInput(in, sizes);
  int exact = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string wrong;
    try {
      wrong = Round(r, in, work_dir + "/out" + std::to_string(r), sizes);
    } catch (const std::exception& e) {
      wrong = std::string("failed: ") + e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("chaos round %d: %s (%.1f s)\n", r, wrong.empty() ? "exact" : wrong.c_str(), s);
    std::fflush(stdout);
    exact += wrong.empty();
  }
  std::printf("chaos: %d of %d rounds exact\n", exact, rounds);
  return exact;
}

}  // namespace chaos

LUMEN_REMOTE(chaos::Block, chaos::ReduceSlice);
LUMEN_REMOTE(chaos::Invert);
