// An S3 client on libcurl: its built-in AWS SigV4 signing (CURLOPT_AWS_SIGV4), tinyxml2 for
// listings and errors. Internal to src/data.
//
// Every request is retried on connection errors, timeouts, 5xx and throttling (SlowDown, 429)
// with jittered exponential back-off, up to S3Options::max_retries times; connections are
// reused (a pool of easy handles per process; DNS and TLS sessions in one share handle); at most
// S3Options::max_concurrency requests are in flight per process. A failure throws DataError naming
// the URI, the operation and the server's code and message.
//
// Thread safety: an S3Client may be used from several threads at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lumen/data/s3.h"

namespace lumen::data::internal {

// Whether `path` is an S3 URI (s3://...).
bool IsS3Uri(const std::string& path);

// s3://[anonymous@]bucket/key
struct S3Uri {
  std::string bucket;
  std::string key;  // may be empty (the whole bucket) or end with '/' (a prefix)
  bool anonymous = false;
  // Throws DataError naming `uri` and what is wrong with it.
  static S3Uri Parse(const std::string& uri);
  std::string ToString() const;  // s3://bucket/key
};

struct S3Object {
  std::string key;
  int64_t size = 0;
  std::string etag;      // without quotes
  int64_t mtime_ns = 0;  // LastModified
};

// The settings in effect: S3Options with the AWS conventions filled in (see lumen/data/s3.h).
struct S3Config {
  std::string endpoint;  // scheme://host[:port], no trailing '/'
  bool path_style = true;
  std::string region;
  std::string access_key_id, secret_access_key, session_token;
  bool anonymous = false;
  S3Options options;
  // Throws DataError when no credentials are found and access is not anonymous.
  static S3Config Resolve(const S3Options& options, bool anonymous_uri);
};

struct S3ListOptions {
  // Only keys without it after the prefix; the folders below (key prefixes up to it, the
  // AWS CLI's "PRE" lines) go to `folders`. Servers differ: s3rver leaves out a folder that
  // holds only folders.
  std::string delimiter{};
  std::string start_after{};  // keys after it only
  std::string until{};        // keys up to it only (paging stops past it); "": no bound
  int max_pages = 0;          // stop after this many pages (0: all; `more` says if it did)
};

class S3Client {
 public:
  explicit S3Client(S3Config config);

  // Every object under `prefix` (all pages of ListObjectsV2), in key order. `more`: set when
  // max_pages left pages unread.
  std::vector<S3Object> List(const std::string& bucket, const std::string& prefix,
                             const S3ListOptions& options = {},
                             std::vector<std::string>* folders = nullptr,
                             bool* more = nullptr) const;
  // The object's size and ETag; nullopt if there is no such key.
  std::optional<S3Object> Head(const std::string& bucket, const std::string& key) const;
  // The whole object (parallel ranged GETs when it is at least multipart_threshold bytes).
  // `size`: the object's size when known (a listing said), else -1 (a HEAD asks).
  std::string Get(const std::string& bucket, const std::string& key, int64_t size = -1) const;
  // The object, of `size` bytes as listed, straight into `dst` (parallel ranges when large).
  // Throws DataError when it does not have that size any more.
  void GetInto(const std::string& bucket, const std::string& key, int64_t size, char* dst) const;
  // Writes the object: one PUT, or a multipart upload for multipart_threshold bytes and more
  // (aborted on failure: no parts are left behind). The object appears only when complete.
  void Put(const std::string& bucket, const std::string& key, std::string_view data) const;
  void Delete(const std::string& bucket, const std::string& key) const;
  // Server-side copy (within the endpoint).
  void Copy(const std::string& bucket, const std::string& from, const std::string& to) const;

  const S3Config& config() const { return config_; }

 private:
  struct Response;
  struct Request;
  // Sends `req` with retries; returns the final response (2xx, or an error status the caller
  // interprets); throws DataError for errors that persist past the retries.
  Response Send(const Request& req) const;
  Response SendOnce(const Request& req) const;
  std::string Url(const std::string& bucket, const std::string& key,
                  const std::string& query) const;
  std::string GetRange(const std::string& bucket, const std::string& key, int64_t offset,
                       int64_t size, char* dst) const;
  void PutMultipart(const std::string& bucket, const std::string& key, std::string_view data) const;

  S3Config config_;
};

}  // namespace lumen::data::internal
