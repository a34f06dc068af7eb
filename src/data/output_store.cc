#include "data/output_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "data/s3_client.h"
#include "lumen/data/dataset.h"
#include "lumen/ids.h"

namespace lumen::data::internal {

namespace fs = std::filesystem;

namespace {

// ---- local ---------------------------------------------------------------------------------

void MakeParents(const std::string& path) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
}

int WriteAll(int fd, std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    off += static_cast<size_t>(n);
  }
  return 0;
}

class LocalStore : public OutputStore {
 public:
  explicit LocalStore(std::string root) : root_(std::move(root)) {}
  bool is_s3() const override { return false; }

  void MakeDir(const std::string& dir) const override {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw DataError("cannot create " + dir + ": " + ec.message());
  }

  std::vector<std::string> Entries(const std::string& dir) const override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  bool Exists(const std::string& path) const override {
    std::error_code ec;
    return fs::exists(path, ec);
  }

  std::optional<std::string> Read(const std::string& path) const override {
    std::ifstream f(path, std::ios::binary);
    if (!f) return std::nullopt;
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) throw DataError("cannot read " + path + ": " + std::strerror(errno));
    return s;
  }

  void Replace(const std::string& path, std::string_view data) const override {
    const std::string tmp = path + ".lumen-tmp";
    {
      std::ofstream f(tmp, std::ios::trunc | std::ios::binary);
      f.write(data.data(), static_cast<std::streamsize>(data.size()));
      if (!f.flush()) throw DataError("cannot write " + tmp + ": " + std::strerror(errno));
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw DataError("cannot write " + path + ": " + ec.message());
  }

  // Preferred: an unnamed file (O_TMPFILE) in the target's directory, linked to its final
  // name only when complete. linkat never replaces an existing file, and an unnamed file
  // vanishes with a crashed attempt: no partial or duplicate file can appear. Filesystems
  // without O_TMPFILE use a staging directory and renameat2(RENAME_NOREPLACE) instead.
  bool CreateOnce(const std::string& target, std::string_view data, bool may_exist) const override {
    struct stat st;
    if (may_exist && ::stat(target.c_str(), &st) == 0) return false;  // committed before
    const std::string parent = fs::path(target).parent_path().string();
    int fd = ::open(parent.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
      std::error_code ec;
      fs::create_directories(parent, ec);
      fd = ::open(parent.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    }
    if (fd >= 0) {
      if (int err = WriteAll(fd, data); err != 0) {
        ::close(fd);
        throw DataError("cannot write " + target + ": " + std::strerror(err));
      }
      std::string proc = "/proc/self/fd/" + std::to_string(fd);
      int rc = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, target.c_str(), AT_SYMLINK_FOLLOW);
      int err = errno;
      ::close(fd);
      if (rc == 0) return true;
      if (err == EEXIST) return false;  // another attempt committed it first
      throw DataError("cannot commit " + target + ": " + std::strerror(err));
    }
    // No O_TMPFILE here: write under a private name in the staging directory, then rename.
    static std::atomic<uint64_t> counter{0};
    uint8_t rnd[8];
    lumen::internal::FillRandom(rnd, sizeof(rnd));
    std::string tmp = root_ + "/.lumen-staging/" + std::to_string(::getpid()) + "-" +
                      std::to_string(counter++) + "-" + lumen::internal::BytesToHex(rnd, 8);
    MakeParents(tmp);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw DataError("cannot create " + tmp + ": " + std::strerror(errno));
    int werr = WriteAll(fd, data);
    ::close(fd);
    if (werr != 0) {
      ::unlink(tmp.c_str());
      throw DataError("cannot write " + target + ": " + std::strerror(werr));
    }
    auto rename = [&] {
      return ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE);
    };
    int rc = rename();
    if (rc != 0 && errno == ENOENT) {
      MakeParents(target);
      rc = rename();
    }
    if (rc != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      if (err == EEXIST) return false;
      throw DataError("cannot commit " + target + ": " + std::strerror(err));
    }
    return true;
  }

  void RemoveAll(const std::string& path) const override {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) throw DataError("cannot remove " + path + ": " + ec.message());
  }

  void Move(const std::string& from, const std::string& to) const override {
    std::error_code ec;
    fs::rename(from, to, ec);
    if (ec) throw DataError("cannot move " + from + " to " + to + ": " + ec.message());
  }

 private:
  std::string root_;  // the output directory (its staging area for CreateOnce)
};

// ---- S3 ------------------------------------------------------------------------------------

class S3Store : public OutputStore {
 public:
  S3Store(const std::string& root, const S3Options& options)
      : root_(S3Uri::Parse(root)), client_(S3Config::Resolve(options, root_.anonymous)) {}
  bool is_s3() const override { return true; }
  void MakeDir(const std::string&) const override {}

  std::vector<std::string> Entries(const std::string& dir) const override {
    const S3Uri u = S3Uri::Parse(dir);
    const std::string prefix = Folder(u.key);
    std::set<std::string> names;
    for (const S3Object& o : client_.List(u.bucket, prefix)) {
      const std::string rel = o.key.substr(prefix.size());
      if (!rel.empty()) names.insert(rel.substr(0, rel.find('/')));
    }
    return {names.begin(), names.end()};
  }

  bool Exists(const std::string& path) const override {
    const S3Uri u = S3Uri::Parse(path);
    return client_.Head(u.bucket, u.key).has_value() ||
           !client_.List(u.bucket, Folder(u.key)).empty();
  }

  std::optional<std::string> Read(const std::string& path) const override {
    const S3Uri u = S3Uri::Parse(path);
    if (!client_.Head(u.bucket, u.key)) return std::nullopt;
    return client_.Get(u.bucket, u.key);
  }

  void Replace(const std::string& path, std::string_view data) const override {
    const S3Uri u = S3Uri::Parse(path);
    client_.Put(u.bucket, u.key, data);  // a PUT replaces an object whole
  }

  // An object appears only once its PUT (or multipart upload) completes. A retried task
  // finds the key written and leaves it; two attempts racing write the same bytes.
  //
  // A PUT that failed for good may have left a partial object on a server that stores what it
  // got of a cut request (S3 itself never does; s3rver does, once it has noticed the cut):
  // the key, absent before, is removed again — and again if it reappears soon after.
  bool CreateOnce(const std::string& path, std::string_view data, bool may_exist) const override {
    const S3Uri u = S3Uri::Parse(path);
    if (may_exist && client_.Head(u.bucket, u.key)) return false;
    try {
      client_.Put(u.bucket, u.key, data);
    } catch (const DataError&) {
      RemoveLeftover(u);
      throw;
    }
    return true;
  }

  void RemoveAll(const std::string& path) const override {
    const S3Uri u = S3Uri::Parse(path);
    for (const S3Object& o : client_.List(u.bucket, Folder(u.key))) {
      client_.Delete(u.bucket, o.key);
    }
    if (!u.key.empty()) client_.Delete(u.bucket, u.key);
  }

  void Move(const std::string& from, const std::string& to) const override {
    const S3Uri f = S3Uri::Parse(from), t = S3Uri::Parse(to);
    if (f.bucket != t.bucket) {
      throw DataError("cannot move " + from + " to " + to + ": another bucket");
    }
    if (client_.Head(f.bucket, f.key)) {
      client_.Copy(f.bucket, f.key, t.key);
      client_.Delete(f.bucket, f.key);
      return;
    }
    const std::string from_prefix = Folder(f.key), to_prefix = Folder(t.key);
    for (const S3Object& o : client_.List(f.bucket, from_prefix)) {
      client_.Copy(f.bucket, o.key, to_prefix + o.key.substr(from_prefix.size()));
      client_.Delete(f.bucket, o.key);
    }
  }

 private:
  // Best effort: the server may be gone too (the error being thrown says so).
  void RemoveLeftover(const S3Uri& u) const {
    try {
      client_.Delete(u.bucket, u.key);
      // Gone for three checks in a row (0.6 s), or up to four seconds of checking.
      for (int check = 0, absent = 0; check < 20 && absent < 3; ++check) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (client_.Head(u.bucket, u.key)) {
          client_.Delete(u.bucket, u.key);
          absent = 0;
        } else {
          ++absent;
        }
      }
    } catch (const DataError&) {
    }
  }

  // "a/b" -> "a/b/", "" -> "" (the whole bucket).
  static std::string Folder(const std::string& key) {
    return key.empty() || key.back() == '/' ? key : key + "/";
  }
  S3Uri root_;
  S3Client client_;
};

}  // namespace

std::unique_ptr<OutputStore> OutputStore::For(const std::string& dir, const S3Options& s3) {
  if (IsS3Uri(dir)) return std::make_unique<S3Store>(dir, s3);
  return std::make_unique<LocalStore>(dir);
}

}  // namespace lumen::data::internal
