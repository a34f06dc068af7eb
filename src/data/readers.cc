// Datasource readers: binary files, text lines, CSV, JSON lines, images, ranges. Run in read tasks.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "lumen/data/expr.h"

#include "data/block_format.h"
#include "data/chain.h"
#include "data/image_codec.h"
#include "data/parallel.h"
#include "data/s3_client.h"
#include "data/s3_files.h"
#include "lumen/errors.h"

namespace lumen::data::internal {

namespace {

// Opens a regular file for reading; `st` receives its status. Listing refused everything
// else already; this is the second line of defence against a path replaced since: O_NONBLOCK
// keeps open() of a FIFO from waiting for a writer, and fstat() refuses what is not a regular
// file before anything is read (O_NONBLOCK does nothing to regular files).
int OpenRegularFile(const std::string& path, const char* source, struct stat* st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw DataError(std::string(source) + ": cannot open " + path + ": " + std::strerror(errno));
  }
  if (::fstat(fd, st) != 0) {
    int err = errno;
    ::close(fd);
    throw DataError(std::string(source) + ": cannot examine " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st->st_mode)) {
    ::close(fd);
    throw DataError(std::string(source) + ": '" + path +
                    "' is not a regular file (it changed since it was listed): only regular "
                    "files can be read");
  }
  return fd;
}

// The size the listing gave file `i` of `spec` (-1: unknown).
int64_t ListedSize(const ReadSpec& spec, size_t i) {
  return i < spec.sizes.size() ? spec.sizes[i] : -1;
}

// Appends the whole of file `i` of `spec` (a local file or an S3 object) to `out`.
void ReadWholeFile(const ReadSpec& spec, size_t i, std::string* out, const char* source) {
  const std::string& path = spec.files[i];
  if (IsS3Uri(path)) {
    out->append(ReadS3Object(path, spec.s3, ListedSize(spec, i)));
    return;
  }
  struct stat st;
  int fd = OpenRegularFile(path, source, &st);
  if (st.st_size > 0) out->reserve(out->size() + static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    size_t before = out->size();
    size_t cap = out->capacity() - before;
    ssize_t n;
    if (cap >= sizeof(buf)) {  // read straight into the string
      out->resize(out->capacity());
      n = ::read(fd, out->data() + before, cap);
      out->resize(before + static_cast<size_t>(std::max<ssize_t>(n, 0)));
    } else {
      n = ::read(fd, buf, sizeof(buf));
      if (n > 0) out->append(buf, static_cast<size_t>(n));
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw DataError(std::string(source) + ": cannot read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
  }
  ::close(fd);
}

// ReadBinary of S3 objects. Small ones are fetched a few at once, then copied into the block;
// a large one (multipart_threshold and more) is read in parallel ranges straight into it.
Batch ReadBinaryObjects(const ReadSpec& spec) {
  const size_t n = spec.files.size();
  auto listed = [&](size_t i) { return ListedSize(spec, i); };
  auto large = [&](size_t i) {
    return IsS3Uri(spec.files[i]) && listed(i) >= spec.s3.multipart_threshold &&
           spec.s3.multipart_threshold > 0;
  };
  std::vector<std::string> bodies(n);
  ParallelFor(static_cast<int64_t>(n), 8, [&](int64_t j) {
    const size_t i = static_cast<size_t>(j);
    if (large(i)) return;
    ReadWholeFile(spec, i, &bodies[i], "ReadBinaryFiles");
  });
  std::vector<int64_t> sizes(n);
  for (size_t i = 0; i < n; ++i) {
    sizes[i] = large(i) ? listed(i) : static_cast<int64_t>(bodies[i].size());
  }
  return MakePathBytesBlock(spec.relative, sizes, [&](size_t i, uint8_t* dst) {
    if (large(i)) {
      ReadS3ObjectInto(spec.files[i], spec.s3, sizes[i], reinterpret_cast<char*>(dst));
      return;
    }
    std::memcpy(dst, bodies[i].data(), bodies[i].size());
    std::string().swap(bodies[i]);
  });
}

Batch ReadBinary(const ReadSpec& spec) {
  if (std::any_of(spec.files.begin(), spec.files.end(), IsS3Uri)) return ReadBinaryObjects(spec);
  // Open everything first to learn the sizes, then read each file straight into the block.
  std::vector<int> fds;
  std::vector<int64_t> sizes;
  auto close_all = [&] {
    for (int fd : fds) ::close(fd);
  };
  for (const auto& f : spec.files) {
    struct stat st;
    try {
      fds.push_back(OpenRegularFile(f, "ReadBinaryFiles", &st));
    } catch (...) {
      close_all();
      throw;
    }
    sizes.push_back(st.st_size);
  }
  std::string failure;
  Batch b = MakePathBytesBlock(spec.relative, sizes, [&](size_t i, uint8_t* dst) {
    int64_t off = 0;
    while (off < sizes[i] && failure.empty()) {
      ssize_t n = ::pread(fds[i], dst + off, static_cast<size_t>(sizes[i] - off), off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failure = "ReadBinaryFiles: cannot read " + spec.files[i] + ": " +
                  (n < 0 ? std::strerror(errno) : "the file shrank while being read");
      } else {
        off += n;
      }
    }
  });
  close_all();
  if (!failure.empty()) throw DataError(failure);
  return b;
}

Batch ReadTextLines(const ReadSpec& spec) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < spec.files.size(); ++i) {
    std::string content;
    ReadWholeFile(spec, i, &content, "ReadText");
    size_t start = 0;
    while (start < content.size()) {
      size_t nl = content.find('\n', start);
      size_t end = nl == std::string::npos ? content.size() : nl;
      size_t len = end - start;
      if (len > 0 && content[start + len - 1] == '\r') --len;
      lines.emplace_back(content, start, len);
      start = end + 1;
    }
  }
  return BatchBuilder().AddString("text", std::move(lines)).Build();
}

// Splits one CSV record starting at `pos` (RFC 4180 quoting). Returns false at end of input.
bool NextCsvRecord(const std::string& s, size_t* pos, char delim, std::vector<std::string>* out,
                   int64_t* line, const std::string& file) {
  out->clear();
  if (*pos >= s.size()) return false;
  std::string field;
  bool quoted = false;
  int64_t start_line = *line;
  while (*pos < s.size()) {
    char c = s[*pos];
    if (quoted) {
      if (c == '"') {
        if (*pos + 1 < s.size() && s[*pos + 1] == '"') {
          field += '"';
          *pos += 2;
          continue;
        }
        quoted = false;
        ++*pos;
        continue;
      }
      if (c == '\n') ++*line;
      field += c;
      ++*pos;
      continue;
    }
    if (c == '"' && field.empty()) {
      quoted = true;
      ++*pos;
    } else if (c == delim) {
      out->push_back(std::move(field));
      field.clear();
      ++*pos;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && *pos + 1 < s.size() && s[*pos + 1] == '\n') ++*pos;
      ++*pos;
      ++*line;
      out->push_back(std::move(field));
      return true;
    } else {
      field += c;
      ++*pos;
    }
  }
  if (quoted) {
    throw DataError("ReadCsv: " + file + " line " + std::to_string(start_line) +
                    ": unterminated quoted field");
  }
  out->push_back(std::move(field));
  ++*line;
  return true;
}

bool ParseInt(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool ParseDouble(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

Batch ReadCsvFiles(const ReadSpec& spec) {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> columns;
  std::vector<int> keep;  // header index of each kept column
  for (size_t i = 0; i < spec.files.size(); ++i) {
    const std::string& file = spec.files[i];
    std::string content;
    ReadWholeFile(spec, i, &content, "ReadCsv");
    size_t pos = 0;
    int64_t line = 1;
    std::vector<std::string> rec;
    if (!NextCsvRecord(content, &pos, spec.delimiter, &rec, &line, file)) continue;  // empty file
    if (header.empty()) {
      header = rec;
      for (const auto& want : spec.columns) {
        auto it = std::find(header.begin(), header.end(), want);
        if (it == header.end()) {
          throw DataError("ReadCsv: " + file + " has no column '" + want + "'");
        }
        keep.push_back(static_cast<int>(it - header.begin()));
      }
      if (spec.columns.empty()) {
        for (size_t i = 0; i < header.size(); ++i) keep.push_back(static_cast<int>(i));
      }
      columns.resize(keep.size());
    } else if (rec != header) {
      throw DataError("ReadCsv: " + file + " line 1: header differs from the first file's");
    }
    while (true) {
      int64_t record_line = line;
      if (!NextCsvRecord(content, &pos, spec.delimiter, &rec, &line, file)) break;
      if (rec.size() == 1 && rec[0].empty()) continue;  // blank line
      if (rec.size() != header.size()) {
        throw DataError("ReadCsv: " + file + " line " + std::to_string(record_line) +
                        ": expected " + std::to_string(header.size()) + " fields, found " +
                        std::to_string(rec.size()));
      }
      for (size_t k = 0; k < keep.size(); ++k) {
        columns[k].push_back(std::move(rec[static_cast<size_t>(keep[k])]));
      }
    }
  }
  auto is_null = [&](const std::string& v) {
    return std::find(spec.null_values.begin(), spec.null_values.end(), v) != spec.null_values.end();
  };
  // Builds column `k` (its type inferred from its values) into `b`.
  auto add_column = [&](BatchBuilder& b, size_t k, std::vector<std::string> vals) {
    const std::string& name = header[static_cast<size_t>(keep[k])];
    std::vector<uint8_t> valid(vals.size(), 1);
    bool any_null = false;
    for (size_t i = 0; i < vals.size(); ++i) {
      if (is_null(vals[i])) {
        valid[i] = 0;
        any_null = true;
      }
    }
    // The type is inferred from the values that are not null (all null: int64).
    bool all_int = true, all_num = true;
    std::vector<int64_t> ints(vals.size());
    std::vector<double> dbls(vals.size());
    for (size_t i = 0; i < vals.size() && (all_int || all_num); ++i) {
      if (!valid[i]) continue;
      if (all_int && !ParseInt(vals[i], &ints[i])) all_int = false;
      if (all_num && !ParseDouble(vals[i], &dbls[i])) all_num = false;
    }
    if (all_int) {
      b.AddInt64(name, std::move(ints));
    } else if (all_num) {
      b.AddFloat64(name, std::move(dbls));
    } else {
      b.AddString(name, std::move(vals));
    }
    if (any_null) b.SetValidity(name, std::move(valid));
  };
  // Pushed-down filters: evaluated on the columns they read; the other columns are then built
  // only for the rows kept.
  for (const Expr& filter : spec.filters) {
    BatchBuilder probe;
    for (const auto& col : filter.Columns()) {
      for (size_t k = 0; k < keep.size(); ++k) {
        if (header[static_cast<size_t>(keep[k])] == col) add_column(probe, k, columns[k]);
      }
    }
    Batch probed = probe.Build();
    const size_t rows = columns.empty() ? 0 : columns[0].size();
    if (probed.NumColumns() == 0) {  // no column read: a constant condition, or a missing one
      probed = BatchBuilder().AddInt64("__rows", std::vector<int64_t>(rows, 0)).Build();
    }
    std::vector<int64_t> kept = RowsWhere(probed, filter);
    if (kept.size() == rows) continue;
    for (auto& vals : columns) {
      std::vector<std::string> left;
      left.reserve(kept.size());
      for (int64_t r : kept) left.push_back(std::move(vals[static_cast<size_t>(r)]));
      vals = std::move(left);
    }
  }
  BatchBuilder b;
  for (size_t k = 0; k < keep.size(); ++k) add_column(b, k, std::move(columns[k]));
  return b.Build();
}

Batch ReadJsonLines(const ReadSpec& spec) {
  std::vector<Row> rows;
  for (size_t i = 0; i < spec.files.size(); ++i) {
    const std::string& file = spec.files[i];
    std::string content;
    ReadWholeFile(spec, i, &content, "ReadJson");
    size_t start = 0;
    int64_t line = 0;
    while (start < content.size()) {
      ++line;
      size_t nl = content.find('\n', start);
      size_t end = nl == std::string::npos ? content.size() : nl;
      std::string_view text(content.data() + start, end - start);
      start = end + 1;
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      nlohmann::ordered_json j;  // the input's field order
      try {
        j = nlohmann::ordered_json::parse(text);
      } catch (const std::exception& e) {
        throw DataError("ReadJson: " + file + " line " + std::to_string(line) + ": " + e.what());
      }
      if (!j.is_object()) {
        throw DataError("ReadJson: " + file + " line " + std::to_string(line) +
                        ": expected a JSON object, found " + std::string(j.type_name()));
      }
      Row r;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!spec.columns.empty() &&
            std::find(spec.columns.begin(), spec.columns.end(), it.key()) == spec.columns.end()) {
          continue;
        }
        const auto& v = it.value();
        if (v.is_number_integer()) {
          r.Set(it.key(), Value(v.get<int64_t>()));
        } else if (v.is_number()) {
          r.Set(it.key(), Value(v.get<double>()));
        } else if (v.is_boolean()) {
          r.Set(it.key(), Value(v.get<bool>()));
        } else if (v.is_string()) {
          r.Set(it.key(), Value(v.get<std::string>()));
        } else if (v.is_null()) {
          r.Set(it.key(), Value());
        } else {
          r.Set(it.key(), Value(v.dump()));  // nested: kept as JSON text
        }
      }
      rows.push_back(std::move(r));
    }
  }
  Batch block;
  try {
    block = RowsToBatch(rows);
  } catch (const TypeError& e) {
    throw DataError("ReadJson: " + (spec.files.empty() ? "" : spec.files[0]) + ": " + e.what());
  }
  for (const Expr& filter : spec.filters) block = FilterBy(block, filter);
  return block;
}

Batch ReadRange(const ReadSpec& spec) {
  std::vector<int64_t> ids(static_cast<size_t>(spec.range_count));
  for (int64_t i = 0; i < spec.range_count; ++i) ids[static_cast<size_t>(i)] = spec.range_start + i;
  return BatchBuilder().AddInt64("id", std::move(ids)).Build();
}

// ReadImages: each file decoded (and resized) in this task, one after the other. S3 objects
// are fetched a few at once first (the wait is the network's, not a CPU's).
Batch ReadImageFiles(const ReadSpec& spec, std::vector<std::string>* skipped) {
  const size_t n = spec.files.size();
  std::vector<std::string> bodies(n);
  const bool remote = std::any_of(spec.files.begin(), spec.files.end(), IsS3Uri);
  if (remote) {
    ParallelFor(static_cast<int64_t>(n), 8, [&](int64_t i) {
      ReadWholeFile(spec, static_cast<size_t>(i), &bodies[static_cast<size_t>(i)], "ReadImages");
    });
  }
  const ImageSize size{spec.image_height, spec.image_width};
  const auto mode = static_cast<ImageMode>(spec.image_mode);
  // At a target size every image is decoded straight into its place in the tensor column.
  const size_t frame =
      size.empty() ? 0 : static_cast<size_t>(size.height * size.width * ChannelsOf(mode));
  std::vector<uint8_t> pixels;
  pixels.reserve(frame * n);
  std::vector<Image> images;
  std::vector<std::string> paths;
  images.reserve(frame == 0 ? n : 0);
  for (size_t i = 0; i < n; ++i) {
    if (!remote) ReadWholeFile(spec, i, &bodies[i], "ReadImages");
    try {
      if (frame == 0) {
        images.push_back(DecodeImage(bodies[i], spec.files[i], mode, size));
      } else {
        pixels.resize(pixels.size() + frame);
        try {
          DecodeImageInto(bodies[i], spec.files[i], mode, size,
                          {pixels.data() + pixels.size() - frame, frame});
        } catch (...) {
          pixels.resize(pixels.size() - frame);
          throw;
        }
      }
      paths.push_back(spec.relative[i]);
    } catch (const DataError& e) {
      if (!spec.skip_errors) throw DataError(std::string("ReadImages: ") + e.what());
      if (skipped != nullptr) skipped->push_back(e.what());
    }
    std::string().swap(bodies[i]);
  }
  BatchBuilder b;
  b.AddString("path", std::move(paths));
  if (frame == 0) {
    AddImageColumn(b, "image", std::move(images), {});
  } else {
    b.AddTensorUInt8("image", {size.height, size.width, ChannelsOf(mode)}, std::move(pixels));
  }
  return b.Build();
}

}  // namespace

Batch ReadFiles(const ReadSpec& spec, std::vector<std::string>* skipped) {
  if (spec.format == "images") return ReadImageFiles(spec, skipped);
  if (spec.format == "binary") return ReadBinary(spec);
  if (spec.format == "text") return ReadTextLines(spec);
  if (spec.format == "csv") return ReadCsvFiles(spec);
  if (spec.format == "json") return ReadJsonLines(spec);
  if (spec.format == "range") return ReadRange(spec);
  throw DataError("unknown source format '" + spec.format + "'");
}

}  // namespace lumen::data::internal
