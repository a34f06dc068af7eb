#include "common/dir_archive.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "common/fs.h"

namespace lumen::dir_archive {

namespace {

constexpr std::string_view kMagic = "LUMENDIR1\n";

template <class T>
void PutInt(std::string* out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct Packer {
  std::string root;
  uint64_t max_bytes = 0;
  uint64_t file_bytes = 0;
  std::string out;

  void Header(char kind, const std::string& rel, uint32_t mode) {
    out.push_back(kind);
    PutInt<uint32_t>(&out, static_cast<uint32_t>(rel.size()));
    out += rel;
    PutInt<uint32_t>(&out, mode & 07777);
  }

  Status Walk(const std::string& rel) {
    const std::string path = rel.empty() ? root : JoinPath(root, rel);
    DIR* d = ::opendir(path.c_str());
    if (!d)
      return InvalidArgumentError("cannot read directory " + path + ": " + std::strerror(errno));
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.push_back(e->d_name);
      }
    }
    ::closedir(d);
    for (const auto& name : names) {
      const std::string child = rel.empty() ? name : rel + "/" + name;
      const std::string full = JoinPath(root, child);
      struct stat st;
      if (::lstat(full.c_str(), &st) != 0) {
        return InvalidArgumentError("cannot stat " + full + ": " + std::strerror(errno));
      }
      if (S_ISDIR(st.st_mode)) {
        Header('d', child, st.st_mode);
        LUMEN_RETURN_IF_ERROR(Walk(child));
      } else if (S_ISREG(st.st_mode)) {
        file_bytes += static_cast<uint64_t>(st.st_size);
        if (file_bytes > max_bytes) {
          return InvalidArgumentError("working_dir " + root + " holds more than " +
                                      std::to_string(max_bytes >> 20) +
                                      " MiB of files (the limit of what is sent to every node)");
        }
        auto data = ReadFile(full);
        if (!data.ok()) return data.status();
        Header('f', child, st.st_mode);
        PutInt<uint64_t>(&out, data->size());
        out += *data;
      }
    }
    return Status::OK();
  }
};

struct Reader {
  std::string_view in;
  size_t pos = 0;

  bool Take(size_t n, std::string_view* v) {
    if (in.size() - pos < n) return false;
    *v = in.substr(pos, n);
    pos += n;
    return true;
  }
  template <class T>
  bool Int(T* v) {
    std::string_view b;
    if (!Take(sizeof(T), &b)) return false;
    *v = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      *v |= static_cast<T>(static_cast<uint8_t>(b[i])) << (8 * i);
    return true;
  }
};

// A relative path of plain components (no "", ".", ".." or absolute paths).
bool SafePath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

Status Malformed(const std::string& why) {
  return InvalidArgumentError("malformed working_dir archive: " + why);
}

}  // namespace

StatusOr<std::string> Pack(const std::string& dir, uint64_t max_bytes) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return InvalidArgumentError("working_dir " + dir + " is not a directory");
  }
  Packer p;
  p.root = dir;
  p.max_bytes = max_bytes;
  p.out = kMagic;
  LUMEN_RETURN_IF_ERROR(p.Walk(""));
  return std::move(p.out);
}

Status Unpack(const std::string& archive, const std::string& dest) {
  Reader r{archive};
  std::string_view magic;
  if (!r.Take(kMagic.size(), &magic) || magic != kMagic) return Malformed("no header");
  const std::string tmp = dest + ".tmp-" + std::to_string(::getpid());
  RemoveAll(tmp).IgnoreError();
  LUMEN_RETURN_IF_ERROR(MakeDirs(tmp, 0700));
  auto fail = [&](Status st) {
    RemoveAll(tmp).IgnoreError();
    return st;
  };
  while (r.pos < archive.size()) {
    std::string_view kind, rel;
    uint32_t len = 0, mode = 0;
    if (!r.Take(1, &kind) || !r.Int(&len) || !r.Take(len, &rel) || !r.Int(&mode)) {
      return fail(Malformed("truncated entry"));
    }
    if (!SafePath(rel)) return fail(Malformed("unsafe path '" + std::string(rel) + "'"));
    const std::string path = JoinPath(tmp, std::string(rel));
    if (kind == "d") {
      if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        return fail(InternalError("cannot create " + path + ": " + std::strerror(errno)));
      }
    } else if (kind == "f") {
      uint64_t size = 0;
      std::string_view data;
      if (!r.Int(&size) || size > archive.size() || !r.Take(size, &data)) {
        return fail(Malformed("truncated file '" + std::string(rel) + "'"));
      }
      // Files are written owner-readable at least; execute bits are kept.
      Status st = WriteFileAtomic(path, std::string(data), static_cast<int>((mode & 0755) | 0600));
      if (!st.ok()) return fail(st);
    } else {
      return fail(Malformed("unknown entry kind"));
    }
  }
  if (::rename(tmp.c_str(), dest.c_str()) != 0) {
    if (errno == EEXIST || errno == ENOTEMPTY) return fail(Status::OK());  // unpacked meanwhile
    return fail(InternalError("cannot move " + tmp + " to " + dest + ": " + std::strerror(errno)));
  }
  return Status::OK();
}

}  // namespace lumen::dir_archive
