// Sinks with exactly-once output: every file appears under its final, deterministic name only
// when complete (OutputStore::CreateOnce, local or on S3); a file that already exists was committed
// by an earlier run (or attempt) and is skipped; empty blocks write nothing.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "data/chain.h"
#include "data/image_codec.h"
#include "data/output_store.h"
#include "data/parallel.h"
#include "lumen/errors.h"
#include "lumen/ids.h"

namespace lumen::data::internal {

namespace {

// Objects a write task puts to S3 at once.
constexpr int64_t kS3WritesInFlight = 8;

struct Counts {
  int64_t written = 0;
  int64_t skipped = 0;
  int64_t bytes = 0;
};

// An append found `target` committed: fine if an earlier attempt of this append wrote it (the
// same bytes), an error if it is another file — an append never replaces one.
void CheckSameBytes(const OutputStore& store, const std::string& target, std::string_view bytes) {
  std::optional<std::string> have = store.Read(target);
  if (!have || *have != bytes) {
    throw DataError("WriteFiles: " + target +
                    " already exists with other content, and WriteMode::kAppend never replaces a "
                    "file (WriteMode::kOverwrite replaces the directory's output)");
  }
}

std::string CheckRelative(const std::string& rel) {
  std::filesystem::path p(rel);
  if (rel.empty() || p.is_absolute()) {
    throw DataError("WriteFiles: output path '" + rel + "' must be a non-empty relative path");
  }
  for (const auto& part : p) {
    if (part == "..")
      throw DataError("WriteFiles: output path '" + rel + "' leaves the output directory");
  }
  return rel;
}

// `rel` with its extension replaced by `ext` ("cats/a.jpg" -> "cats/a.png").
std::string WithExtension(const std::string& rel, const std::string& ext) {
  return std::filesystem::path(rel).replace_extension(ext).string();
}

std::string PartName(const WriteSpec& spec, const BlockKey& key, int64_t part, const char* ext,
                     bool split) {
  std::string name = "part-" + (spec.run_id.empty() ? "" : spec.run_id + "-") + key.Name();
  if (split) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "-%04lld", static_cast<long long>(part));
    name += buf;
  }
  return name + "." + ext;
}

std::string CsvField(const Value& v) {
  std::string s;
  switch (v.kind()) {
    case Value::Kind::kString:
      s = v.AsString();
      break;
    case Value::Kind::kBinary:
      s = std::string(v.AsBinary().view());
      break;
    case Value::Kind::kNull:
      return "";
    case Value::Kind::kFloat64:
      return v.ToString();  // the shortest text that reads back as the same value
    default:
      return v.ToString();
  }
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

nlohmann::ordered_json JsonValue(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return nullptr;
    case Value::Kind::kInt64:
      return v.AsInt64();
    case Value::Kind::kFloat64:
      return v.AsDouble();
    case Value::Kind::kBool:
      return v.AsBool();
    case Value::Kind::kString:
      return v.AsString();
    case Value::Kind::kBinary:
      return std::string(v.AsBinary().view());
  }
  return nullptr;
}

}  // namespace

namespace {
// `key`'s path without its trailing zeros, each element formatted with `first` or `rest`.
std::string JoinKey(const std::vector<int64_t>& path, const char* first, const char* rest) {
  std::string out;
  char buf[32];
  size_t n = path.size();
  while (n > 1 && path[n - 1] == 0) --n;
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), i == 0 ? first : rest, static_cast<long long>(path[i]));
    out += buf;
  }
  return out;
}
}  // namespace

std::string BlockKey::Name() const { return JoinKey(path, "%06lld", "_%04lld"); }
std::string BlockKey::Label() const { return JoinKey(path, "%lld", ".%lld"); }

Batch WriteBlock(const WriteSpec& spec, const BlockKey& key, const Batch& block) {
  Counts counts;
  const int64_t rows = block.NumRows();
  const std::unique_ptr<OutputStore> store = OutputStore::For(spec.dir, spec.s3);
  if (rows > 0) store->MakeDir(spec.dir);
  if ((spec.format == "files" || spec.format == "images") && rows > 0) {
    // Each row is one file: its relative name and its bytes.
    std::vector<std::string> names(static_cast<size_t>(rows));
    std::vector<std::string> encoded;
    StringColumn data;
    if (spec.format == "images") {
      const std::string ext = ImageExtension(spec.image_format);
      const bool named = block.HasColumn(spec.path_column);
      StringColumn paths = named ? block.String(spec.path_column) : StringColumn();
      ImageColumn images = block.Images(spec.data_column);
      encoded.resize(static_cast<size_t>(rows));
      for (size_t i = 0; i < names.size(); ++i) {
        names[i] = named ? WithExtension(CheckRelative(std::string(paths[i])), ext)
                         : "image-" + key.Name() + "-" + std::to_string(i) + "." + ext;
        encoded[i] = EncodeImage(images[i], spec.image_format, spec.quality,
                                 "WriteImages: " + spec.dir + "/" + names[i]);
      }
    } else {
      auto paths = block.String(spec.path_column);
      for (size_t i = 0; i < names.size(); ++i) names[i] = CheckRelative(std::string(paths[i]));
      bool binary = block.ColumnType(spec.data_column) == DataType::kBinary;
      data = binary ? block.Binary(spec.data_column) : block.String(spec.data_column);
    }
    auto bytes_of = [&](size_t i) -> std::string_view {
      return encoded.empty() ? data[i] : std::string_view(encoded[i]);
    };
    auto commit = [&](const std::string& target, std::string_view bytes, bool may_exist,
                      Counts& c) {
      if (store->CreateOnce(target, bytes, may_exist)) {
        ++c.written;
        c.bytes += static_cast<int64_t>(bytes.size());
      } else {
        if (spec.append) CheckSameBytes(*store, target, bytes);
        ++c.skipped;
      }
    };
    if (store->is_s3()) {
      // One request at a time would leave the task waiting on round trips: a few at once.
      // A fresh write has nothing to find already written (a retry re-puts the same bytes).
      std::mutex mu;
      ParallelFor(rows, kS3WritesInFlight, [&](int64_t i) {
        Counts one;
        const auto row = static_cast<size_t>(i);
        commit(spec.dir + "/" + names[row], bytes_of(row), !spec.fresh, one);
        std::lock_guard lock(mu);
        counts.written += one.written;
        counts.skipped += one.skipped;
        counts.bytes += one.bytes;
      });
    } else {
      // No file can exist yet in a directory that did not exist when this block started.
      std::unordered_map<std::string, bool> dir_existed;
      for (size_t i = 0; i < names.size(); ++i) {
        std::string target = spec.dir + "/" + names[i];
        std::string parent = std::filesystem::path(target).parent_path().string();
        auto known = dir_existed.find(parent);
        if (known == dir_existed.end()) {
          struct stat st;
          known = dir_existed.emplace(parent, ::stat(parent.c_str(), &st) == 0).first;
        }
        commit(target, bytes_of(i), known->second, counts);
      }
    }
  } else if ((spec.format == "json" || spec.format == "csv") && rows > 0) {
    const bool json = spec.format == "json";
    std::vector<Row> all = BatchToRows(block);
    const int64_t per_file = spec.rows_per_file > 0 ? spec.rows_per_file : rows;
    const bool split = spec.rows_per_file > 0;
    for (int64_t start = 0, part = 0; start < rows; start += per_file, ++part) {
      int64_t end = std::min(rows, start + per_file);
      std::string out;
      if (!json) {
        const auto& fields = all[static_cast<size_t>(start)].fields();
        for (size_t k = 0; k < fields.size(); ++k)
          out += (k ? "," : "") + CsvField(Value(fields[k].first));
        out += "\n";
      }
      for (int64_t r = start; r < end; ++r) {
        const auto& fields = all[static_cast<size_t>(r)].fields();
        if (json) {
          nlohmann::ordered_json obj = nlohmann::ordered_json::object();  // the row's order
          for (const auto& [k, v] : fields) obj[k] = JsonValue(v);
          out += obj.dump();
        } else {
          for (size_t k = 0; k < fields.size(); ++k)
            out += (k ? "," : "") + CsvField(fields[k].second);
        }
        out += "\n";
      }
      std::string target =
          spec.dir + "/" + PartName(spec, key, part, json ? "jsonl" : "csv", split);
      if (store->CreateOnce(target, out)) {
        ++counts.written;
        counts.bytes += static_cast<int64_t>(out.size());
      } else {
        ++counts.skipped;
      }
    }
  } else if (spec.format != "files" && spec.format != "json" && spec.format != "csv" &&
             spec.format != "images") {
    throw DataError("unknown sink format '" + spec.format + "'");
  }
  return BatchBuilder()
      .AddInt64("files_written", {counts.written})
      .AddInt64("files_skipped", {counts.skipped})
      .AddInt64("bytes_written", {counts.bytes})
      .Build();
}

}  // namespace lumen::data::internal
