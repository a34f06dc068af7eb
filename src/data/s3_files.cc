#include "data/s3_files.h"

#include <fnmatch.h>

#include <algorithm>
#include <optional>

#include "data/s3_client.h"
#include "lumen/data/dataset.h"

namespace lumen::data::internal {

namespace {

bool HasGlob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::string Base(const std::string& key) {
  const auto slash = key.rfind('/');
  return slash == std::string::npos ? key : key.substr(slash + 1);
}

// Whether any '/'-separated part of `rel` starts with '_' or '.' (hidden or a write's record).
bool Hidden(const std::string& rel) {
  size_t start = 0;
  while (start < rel.size()) {
    if (rel[start] == '_' || rel[start] == '.') return true;
    const auto slash = rel.find('/', start);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return false;
}

}  // namespace

void MissingS3Input(const std::string& source, const std::string& pattern, const std::string& why,
                    bool ignore_missing, std::vector<std::string>* ignored) {
  if (ignore_missing) {
    ignored->push_back(pattern + ": " + why);
    return;
  }
  throw DataError(source + ": '" + pattern + "' " + why +
                  " (set ReadOptions::ignore_missing_files to skip what is missing)");
}

Listing ListS3(const std::string& pattern, const std::string& source, bool ignore_missing,
               const S3Options& options, bool split, const std::string& after,
               const std::string& until) {
  const S3Uri uri = S3Uri::Parse(pattern);
  const S3Client client(S3Config::Resolve(options, uri.anonymous));
  const std::string root =
      "s3://" + std::string(uri.anonymous ? "anonymous@" : "") + uri.bucket + "/";
  Listing out;
  auto add = [&](const S3Object& o, std::string rel) {
    out.files.push_back({root + o.key, std::move(rel), o.size, o.mtime_ns, o.etag});
  };
  auto missing = [&](const std::string& why) {
    MissingS3Input(source, pattern, why, ignore_missing, &out.ignored);
  };
  // `objects` under `prefix`, named relative to it, hidden names and folder markers aside.
  auto add_objects = [&](const std::string& prefix, const std::vector<S3Object>& objects) {
    size_t found = 0;
    for (const S3Object& o : objects) {
      const std::string rel = o.key.substr(prefix.size());
      if (rel.empty() || rel.back() == '/' || Hidden(rel)) continue;
      add(o, rel);
      ++found;
    }
    return found;
  };
  // Every object under `prefix` in the range asked for. Returns the objects found.
  auto add_folder = [&](const std::string& prefix) {
    return add_objects(prefix,
                       client.List(uri.bucket, prefix, {.start_after = after, .until = until}));
  };
  // split: a folder of more than a page of keys is cut at its sub-folders (through lone ones)
  // into about a page of keys per range, estimated from how many sub-folders the first page
  // spans; its first page is listed here, the rest by the caller, range by range.
  auto split_folder = [&](const std::string& prefix) -> std::optional<size_t> {
    bool more = false;
    const std::vector<S3Object> first =
        client.List(uri.bucket, prefix, {.max_pages = 1}, nullptr, &more);
    if (!more) return add_objects(prefix, first);
    if (first.empty()) return std::nullopt;  // an odd answer: listed whole by the caller
    const std::string& last = first.back().key;
    std::string at = prefix;
    std::vector<std::string> folders;
    for (int depth = 0; depth < 8; ++depth) {
      folders.clear();
      const auto direct =
          client.List(uri.bucket, at, {.delimiter = "/", .max_pages = 10}, &folders);
      if (folders.size() != 1 || !direct.empty()) break;
      at = folders.front();
    }
    const auto beyond = std::upper_bound(folders.begin(), folders.end(), last);
    const size_t spanned = static_cast<size_t>(beyond - folders.begin()) + 1;
    const size_t rest = static_cast<size_t>(folders.end() - beyond);
    if (rest == 0) {  // no cuts past the first page: the rest is listed here
      return add_objects(prefix, first) +
             add_objects(prefix, client.List(uri.bucket, prefix, {.start_after = last}));
    }
    const size_t page = first.size();  // the server's page
    const size_t pages = rest * std::max<size_t>(1, page / spanned) / page + 1;
    const size_t cuts = std::min({rest, pages - 1, size_t{63}});
    const size_t found = add_objects(prefix, first);
    out.split_uri = root + prefix;
    out.split_after = last;
    for (size_t k = 0; k < cuts; ++k) {
      out.cuts.push_back(*(beyond + static_cast<std::ptrdiff_t>((k + 1) * rest / (cuts + 1))));
    }
    return found + 1;  // more to come from the ranges
  };
  const bool ranged = !after.empty() || !until.empty();
  if (ranged) {  // one range of a split listing: `pattern` is the folder
    add_folder(uri.key);
    return out;
  }
  if (HasGlob(uri.key)) {
    const std::string prefix = uri.key.substr(0, uri.key.find_first_of("*?["));
    for (const S3Object& o : client.List(uri.bucket, prefix)) {
      if (::fnmatch(uri.key.c_str(), o.key.c_str(), FNM_PATHNAME) == 0) add(o, Base(o.key));
    }
    if (out.files.empty()) missing("matches no objects");
  } else if (uri.key.empty() || uri.key.back() == '/') {
    std::optional<size_t> found = split ? split_folder(uri.key) : std::nullopt;
    if ((found ? *found : add_folder(uri.key)) == 0) missing("holds no objects");
  } else if (auto head = client.Head(uri.bucket, uri.key)) {
    add(*head, Base(uri.key));
  } else {
    const std::string folder = uri.key + "/";
    std::optional<size_t> found = split ? split_folder(folder) : std::nullopt;
    if ((found ? *found : add_folder(folder)) == 0) missing("does not exist");
  }
  std::sort(out.files.begin(), out.files.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.relative < b.relative; });
  return out;
}

std::string ReadS3Object(const std::string& uri, const S3Options& options, int64_t size) {
  const S3Uri u = S3Uri::Parse(uri);
  return S3Client(S3Config::Resolve(options, u.anonymous)).Get(u.bucket, u.key, size);
}

void ReadS3ObjectInto(const std::string& uri, const S3Options& options, int64_t size, char* dst) {
  const S3Uri u = S3Uri::Parse(uri);
  S3Client(S3Config::Resolve(options, u.anonymous)).GetInto(u.bucket, u.key, size, dst);
}

}  // namespace lumen::data::internal
