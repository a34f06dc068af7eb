// S3-compatible object storage for lumen::data's sources and sinks: every reader accepts
// `s3://bucket/prefix/`, `s3://bucket/key` and globs over keys, every writer
// `s3://bucket/prefix/`, exactly as local paths.
//
// Settings follow the AWS conventions; a field left empty here falls back to them:
// - credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then the
//   profile (AWS_PROFILE, else "default") of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE);
//   anonymous access (public buckets) with `anonymous` or a URI `s3://anonymous@bucket/...`;
// - region: AWS_REGION, AWS_DEFAULT_REGION, the profile's `region` in ~/.aws/config
//   (AWS_CONFIG_FILE), else us-east-1;
// - endpoint: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's `endpoint_url`, else AWS.
//   A custom endpoint is addressed path-style (http://host:port/bucket/key), AWS
//   virtual-hosted (https://bucket.s3.region.amazonaws.com/key).
#pragma once

#include <cstdint>
#include <string>

#include "lumen/serialization.h"

namespace lumen::data {

struct S3Options {
  std::string endpoint_url{};
  std::string region{};
  std::string access_key_id{};
  std::string secret_access_key{};
  std::string session_token{};
  std::string profile{};
  bool anonymous = false;
  // Objects of at least `multipart_threshold` bytes are written with a multipart upload of
  // `part_size` parts (at least 5 MiB, S3's minimum) and read with parallel ranged GETs of
  // that size.
  int64_t part_size = int64_t{8} << 20;
  int64_t multipart_threshold = int64_t{16} << 20;
  // Requests in flight at once per process, and retries of one request (5xx, throttling,
  // connection errors) with jittered exponential back-off.
  int max_concurrency = 16;
  int max_retries = 5;
  // A connection not made within this fails (and is retried); a transfer slower than 1 KiB/s
  // for `low_speed_timeout_s` fails (and is retried): nothing waits forever on a server.
  int64_t connect_timeout_ms = 5000;
  int64_t low_speed_timeout_s = 20;
  LUMEN_SERIALIZE(endpoint_url, region, access_key_id, secret_access_key, session_token, profile,
                  anonymous, part_size, multipart_threshold, max_concurrency, max_retries,
                  connect_timeout_ms, low_speed_timeout_s);
};

}  // namespace lumen::data
