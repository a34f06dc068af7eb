#include "common/binary_store.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "common/config.h"
#include "common/fs.h"
#include "common/rpc/message_types.h"
#include "gcs.pb.h"

namespace lumen::binaries {

namespace {

std::string Hex(const unsigned char* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

proto::KVRequest Key(const std::string& key) {
  proto::KVRequest req;
  req.set_ns(kNamespace);
  req.set_key(key);
  return req;
}

// The chain of chunk reads of one Materialize.
struct Fetch {
  rpc::ConnectionPtr gcs;
  std::string hash, dir;
  size_t size = 0, chunks = 0;
  std::string bytes;
  std::function<void(StatusOr<std::string>)> done;
};

void Fail(const std::shared_ptr<Fetch>& f, const std::string& why) {
  f->done(UnavailableError("cannot get program " + f->hash.substr(0, 12) +
                           " from the control service: " + why));
}

void Finish(const std::shared_ptr<Fetch>& f) {
  if (f->bytes.size() != f->size || ContentHash(f->bytes) != f->hash) {
    return Fail(f, "its bytes do not match their hash");
  }
  const std::string path = JoinPath(f->dir, f->hash);
  Status st = MakeDirs(f->dir);
  if (st.ok()) st = WriteFileAtomic(path, f->bytes, 0755);
  if (!st.ok()) return f->done(st);
  f->done(path);
}

void NextChunk(const std::shared_ptr<Fetch>& f, size_t i) {
  if (i == f->chunks) return Finish(f);
  f->gcs->Call(
      rpc::kKVGet, Key(f->hash + "/" + std::to_string(i)),
      [f, i](const Status& st, std::string_view payload) {
        proto::KVReply reply;
        if (!st.ok()) return Fail(f, st.ToString());
        if (!rpc::ParsePayload(payload, &reply) || !reply.found()) {
          return Fail(f, "chunk " + std::to_string(i) + " is missing");
        }
        if (f->bytes.size() + reply.value().size() > f->size) return Fail(f, "it is too long");
        f->bytes += reply.value();
        NextChunk(f, i + 1);
      },
      Config::Get().kv_timeout_ms());
}

}  // namespace

std::string ContentHash(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr);
  return Hex(digest, n);
}

bool IsContentHash(std::string_view hash) {
  if (hash.size() != 64) return false;
  for (char c : hash) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

StatusOr<std::string> Upload(rpc::Connection& gcs, std::string_view bytes) {
  const std::string hash = ContentHash(bytes);
  proto::KVReply reply;
  LUMEN_RETURN_IF_ERROR(
      gcs.CallSync(rpc::kKVGet, Key(hash), &reply, Config::Get().kv_timeout_ms()));
  if (reply.found()) return hash;  // stored already
  const size_t chunks = (bytes.size() + kChunkBytes - 1) / kChunkBytes;
  for (size_t i = 0; i < chunks; ++i) {
    proto::KVRequest put = Key(hash + "/" + std::to_string(i));
    put.set_value(std::string(bytes.substr(i * kChunkBytes, kChunkBytes)));
    put.set_overwrite(true);
    LUMEN_RETURN_IF_ERROR(gcs.CallSync(rpc::kKVPut, put, &reply, Config::Get().kv_timeout_ms()));
  }
  proto::KVRequest meta = Key(hash);
  meta.set_value(std::to_string(bytes.size()) + " " + std::to_string(chunks));
  meta.set_overwrite(true);
  LUMEN_RETURN_IF_ERROR(gcs.CallSync(rpc::kKVPut, meta, &reply, Config::Get().kv_timeout_ms()));
  return hash;
}

void Materialize(const rpc::ConnectionPtr& gcs, const std::string& hash, const std::string& dir,
                 std::function<void(StatusOr<std::string>)> done) {
  if (!IsContentHash(hash)) {
    done(InvalidArgumentError("'" + hash + "' is not a program's content hash"));
    return;
  }
  const std::string path = JoinPath(dir, hash);
  if (::access(path.c_str(), X_OK) == 0) {  // written (and checked) by an earlier call
    done(path);
    return;
  }
  if (!gcs || gcs->closed()) {
    done(UnavailableError("cannot fetch program " + hash +
                          ": no connection to the control service (it is restarting?)"));
    return;
  }
  auto f = std::make_shared<Fetch>();
  f->gcs = gcs;
  f->hash = hash;
  f->dir = dir;
  f->done = std::move(done);
  if (!gcs || gcs->closed()) return Fail(f, "not connected");
  gcs->Call(
      rpc::kKVGet, Key(hash),
      [f](const Status& st, std::string_view payload) {
        proto::KVReply reply;
        if (!st.ok()) return Fail(f, st.ToString());
        if (!rpc::ParsePayload(payload, &reply) || !reply.found()) {
          return Fail(f, "it was never uploaded");
        }
        unsigned long long size = 0, chunks = 0;
        if (std::sscanf(reply.value().c_str(), "%llu %llu", &size, &chunks) != 2 ||
            chunks != (size + kChunkBytes - 1) / kChunkBytes || size > (4ull << 30)) {
          return Fail(f, "its entry is malformed");
        }
        f->size = size;
        f->chunks = chunks;
        f->bytes.reserve(size);
        NextChunk(f, 0);
      },
      Config::Get().kv_timeout_ms());
}

}  // namespace lumen::binaries
