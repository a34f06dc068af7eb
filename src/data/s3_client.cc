#include "data/s3_client.h"

#include <curl/curl.h>
#include <tinyxml2.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "data/parallel.h"
#include "lumen/data/dataset.h"

namespace lumen::data::internal {

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// ---- process-wide curl state -----------------------------------------------------------------

// One share handle per process: DNS answers and TLS sessions are reused by every request of
// every thread. Not connections: libcurl's shared connection cache is not thread-safe (its
// known bug 11.11 — a connection's timestamps were written into freed memory, corrupting an
// upload's bytes), so connections live in the easy handles of EasyPool instead.
class CurlShare {
 public:
  static CurlShare& Get() {
    static CurlShare* s = new CurlShare();  // never destroyed: threads may still use it at exit
    return *s;
  }
  CURLSH* handle() const { return share_; }

 private:
  CurlShare() {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    share_ = curl_share_init();
    curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &Lock);
    curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &Unlock);
    curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
    static_cast<CurlShare*>(self)->mu_[static_cast<size_t>(data) % kLocks].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* self) {
    static_cast<CurlShare*>(self)->mu_[static_cast<size_t>(data) % kLocks].unlock();
  }
  static constexpr size_t kLocks = 8;
  CURLSH* share_ = nullptr;
  std::mutex mu_[kLocks];
};

// Idle easy handles of this process, each with the connections it opened: a request takes one
// (any thread, one at a time per handle) and gives it back, so connections are reused across
// requests and threads — also by the short-lived threads of ParallelFor — without the shared
// connection cache. At most kMaxIdle are kept (the rest are cleaned up).
class EasyPool {
 public:
  static EasyPool& Get() {
    static EasyPool* p = new EasyPool();  // never destroyed, like the share
    return *p;
  }
  CURL* Take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* easy = idle_.back();
        idle_.pop_back();
        return easy;
      }
    }
    return curl_easy_init();
  }
  void Give(CURL* easy) {
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < kMaxIdle) {
        idle_.push_back(easy);
        return;
      }
    }
    curl_easy_cleanup(easy);
  }

 private:
  static constexpr size_t kMaxIdle = 64;
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

// At most `limit` requests in flight in this process.
class Limiter {
 public:
  static Limiter& Get() {
    static Limiter* l = new Limiter();
    return *l;
  }
  void Acquire(int limit) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ < std::max(1, limit); });
    ++in_flight_;
  }
  void Release() {
    std::lock_guard lock(mu_);
    --in_flight_;
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
};

// ---- encoding and parsing ----------------------------------------------------------------------

// RFC 3986 percent-encoding as SigV4 wants it; '/' kept when `keep_slash`.
std::string UriEncode(std::string_view s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// "name=value&..." sorted by name, each part encoded (the canonical order SigV4 signs).
std::string Query(std::map<std::string, std::string> params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (!q.empty()) q += '&';
    q += UriEncode(k, false) + "=" + UriEncode(v, false);
  }
  return q;
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

const char* Text(const tinyxml2::XMLElement* parent, const char* name) {
  const tinyxml2::XMLElement* e = parent ? parent->FirstChildElement(name) : nullptr;
  const char* t = e ? e->GetText() : nullptr;
  return t ? t : "";
}

// "2026-12-06T02:38:37.000Z" -> ns since the epoch (0 if unparsable).
int64_t ParseTime(const std::string& s) {
  std::tm tm{};
  const char* end = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) return 0;
  int64_t ns = 0;
  if (*end == '.') {
    int64_t scale = 100000000;
    for (++end; *end >= '0' && *end <= '9'; ++end, scale /= 10) ns += (*end - '0') * scale;
  }
  return static_cast<int64_t>(::timegm(&tm)) * 1000000000 + ns;
}

// INI files of the AWS CLI: section -> key -> value.
std::map<std::string, std::map<std::string, std::string>> ReadIni(const std::string& path) {
  std::map<std::string, std::map<std::string, std::string>> out;
  std::ifstream in(path);
  std::string line, section;
  auto trim = [](std::string s) {
    const auto b = s.find_first_not_of(" \t\r");
    const auto e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[section][trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  return out;
}

std::string HomeFile(const char* env, const char* rel) {
  if (!Env(env).empty()) return Env(env);
  const std::string home = Env("HOME");
  return home.empty() ? "" : home + "/" + rel;
}

}  // namespace

// ---- URIs and settings -------------------------------------------------------------------------

bool IsS3Uri(const std::string& path) { return path.rfind("s3://", 0) == 0; }

S3Uri S3Uri::Parse(const std::string& uri) {
  if (!IsS3Uri(uri)) throw DataError("'" + uri + "' is not an S3 URI (s3://bucket/key)");
  std::string rest = uri.substr(5);
  S3Uri u;
  const auto at = rest.find('@');
  const auto slash = rest.find('/');
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
    if (rest.substr(0, at) != "anonymous") {
      throw DataError("'" + uri +
                      "': only 'anonymous@' may precede the bucket (credentials come from the "
                      "environment, ~/.aws or S3Options)");
    }
    u.anonymous = true;
    rest = rest.substr(at + 1);
  }
  const auto cut = rest.find('/');
  u.bucket = rest.substr(0, cut);
  u.key = cut == std::string::npos ? "" : rest.substr(cut + 1);
  const bool valid_bucket =
      u.bucket.size() >= 3 && u.bucket.size() <= 63 &&
      std::all_of(u.bucket.begin(), u.bucket.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
      });
  if (!valid_bucket) {
    throw DataError("'" + uri + "': '" + u.bucket +
                    "' is not a bucket name (3-63 lower-case letters, digits, '-' and '.')");
  }
  return u;
}

std::string S3Uri::ToString() const { return "s3://" + bucket + "/" + key; }

S3Config S3Config::Resolve(const S3Options& o, bool anonymous_uri) {
  S3Config c;
  c.options = o;
  const std::string profile = !o.profile.empty()
                                  ? o.profile
                                  : (!Env("AWS_PROFILE").empty() ? Env("AWS_PROFILE") : "default");
  const auto config = ReadIni(HomeFile("AWS_CONFIG_FILE", ".aws/config"));
  const std::string config_section = profile == "default" ? "default" : "profile " + profile;
  auto from_config = [&](const char* key) -> std::string {
    auto s = config.find(config_section);
    if (s == config.end()) return "";
    auto v = s->second.find(key);
    return v == s->second.end() ? "" : v->second;
  };
  c.region = !o.region.empty()                    ? o.region
             : !Env("AWS_REGION").empty()         ? Env("AWS_REGION")
             : !Env("AWS_DEFAULT_REGION").empty() ? Env("AWS_DEFAULT_REGION")
             : !from_config("region").empty()     ? from_config("region")
                                                  : "us-east-1";
  std::string endpoint = !o.endpoint_url.empty()               ? o.endpoint_url
                         : !Env("AWS_ENDPOINT_URL_S3").empty() ? Env("AWS_ENDPOINT_URL_S3")
                         : !Env("AWS_ENDPOINT_URL").empty()    ? Env("AWS_ENDPOINT_URL")
                                                               : from_config("endpoint_url");
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (endpoint.empty()) {
    c.endpoint = "https://s3." + c.region + ".amazonaws.com";
    c.path_style = false;
  } else {
    if (endpoint.find("://") == std::string::npos) endpoint = "https://" + endpoint;
    c.endpoint = endpoint;
    c.path_style = true;
  }
  c.anonymous = o.anonymous || anonymous_uri;
  if (c.anonymous) return c;
  if (!o.access_key_id.empty() || !o.secret_access_key.empty()) {
    c.access_key_id = o.access_key_id;
    c.secret_access_key = o.secret_access_key;
    c.session_token = o.session_token;
  } else if (!Env("AWS_ACCESS_KEY_ID").empty()) {
    c.access_key_id = Env("AWS_ACCESS_KEY_ID");
    c.secret_access_key = Env("AWS_SECRET_ACCESS_KEY");
    c.session_token = Env("AWS_SESSION_TOKEN");
  } else {
    const auto creds = ReadIni(HomeFile("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"));
    if (auto s = creds.find(profile); s != creds.end()) {
      auto get = [&](const char* k) {
        auto v = s->second.find(k);
        return v == s->second.end() ? std::string() : v->second;
      };
      c.access_key_id = get("aws_access_key_id");
      c.secret_access_key = get("aws_secret_access_key");
      c.session_token = get("aws_session_token");
    }
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    throw DataError(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in "
        "~/.aws/credentials (AWS_PROFILE), or S3Options; for a public bucket use "
        "s3://anonymous@bucket/... or S3Options::anonymous");
  }
  return c;
}

// ---- requests ----------------------------------------------------------------------------------

struct S3Client::Request {
  const char* method = "GET";
  std::string bucket, key, query;  // query: already canonical (Query())
  std::vector<std::string> headers;
  std::string_view body;
  // A GET whose body goes to `dst` (exactly `dst_size` bytes expected) instead of the string.
  char* dst = nullptr;
  int64_t dst_size = 0;
  std::string what;  // "GET", "list", ...: for messages
};

struct S3Client::Response {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::string body;
  std::string etag;
  int64_t content_length = -1;  // of a HEAD's object
  int64_t received = 0;         // bytes written to Request::dst
  bool ok() const { return curl == CURLE_OK && status >= 200 && status < 300; }
  // The XML error's code and message ("NoSuchKey: The specified key does not exist.").
  std::string ErrorText() const {
    tinyxml2::XMLDocument doc;
    std::string code, message;
    if (!body.empty() && doc.Parse(body.data(), body.size()) == tinyxml2::XML_SUCCESS &&
        doc.RootElement() && std::string(doc.RootElement()->Name()) == "Error") {
      code = Text(doc.RootElement(), "Code");
      message = Text(doc.RootElement(), "Message");
    }
    if (code.empty()) {
      code = status == 404   ? "NotFound"
             : status == 403 ? "AccessDenied"
             : status == 301 ? "PermanentRedirect (wrong region or endpoint)"
                             : "HTTP " + std::to_string(status);
    }
    return "HTTP " + std::to_string(status) + " " + code + (message.empty() ? "" : ": " + message);
  }
  // A 200 whose body is an <Error> (CompleteMultipartUpload and CopyObject may answer so).
  bool ErrorBody() const { return body.find("<Error>") != std::string::npos; }
};

S3Client::S3Client(S3Config config) : config_(std::move(config)) { CurlShare::Get(); }

std::string S3Client::Url(const std::string& bucket, const std::string& key,
                          const std::string& query) const {
  std::string url;
  if (config_.path_style) {
    url = config_.endpoint + "/" + UriEncode(bucket, false) + "/" + UriEncode(key, true);
  } else {
    const auto scheme = config_.endpoint.find("://");
    url = config_.endpoint.substr(0, scheme + 3) + bucket + "." +
          config_.endpoint.substr(scheme + 3) + "/" + UriEncode(key, true);
  }
  if (!query.empty()) url += "?" + query;
  return url;
}

namespace {

struct Sink {
  std::string* body;
  char* dst;
  int64_t dst_size;
  int64_t* received;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  const size_t bytes = size * n;
  if (s->dst) {
    if (*s->received + static_cast<int64_t>(bytes) > s->dst_size) return 0;  // more than asked
    std::memcpy(s->dst + *s->received, data, bytes);
  } else {
    s->body->append(data, bytes);
  }
  *s->received += static_cast<int64_t>(bytes);
  return bytes;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  const size_t bytes = size * n;
  std::string_view line(data, bytes);
  if (line.size() > 5 && (line.substr(0, 5) == "ETag:" || line.substr(0, 5) == "etag:")) {
    std::string v(line.substr(5));
    v.erase(0, v.find_first_not_of(" \t"));
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    *static_cast<std::string*>(user) = Unquote(v);
  }
  return bytes;
}

bool Retriable(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WRITE_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

S3Client::Response S3Client::SendOnce(const Request& req) const {
  Response r;
  struct Lease {  // back to the pool however this returns, with no pointer to this frame left
    CURL* easy = EasyPool::Get().Take();
    ~Lease() {
      curl_easy_reset(easy);  // options only: the handle's connections stay
      EasyPool::Get().Give(easy);
    }
  } lease;
  CURL* easy = lease.easy;  // fresh, or reset when it was given back
  const std::string url = Url(req.bucket, req.key, req.query);
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_SHARE, CurlShare::Get().handle());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(config_.options.connect_timeout_ms));
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
                   static_cast<long>(std::max<int64_t>(1, config_.options.low_speed_timeout_s)));
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
  const std::string method = req.method;
  if (method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (method != "GET") {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req.method);
  }
  if (method == "PUT" || method == "POST") {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
  headers = curl_slist_append(headers, "Expect:");
  if (method == "PUT" || method == "POST") {
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  }
  for (const auto& h : req.headers) headers = curl_slist_append(headers, h.c_str());
  std::string userpwd, sigv4;
  if (!config_.anonymous) {
    if (!config_.session_token.empty()) {
      headers =
          curl_slist_append(headers, ("x-amz-security-token: " + config_.session_token).c_str());
    }
    sigv4 = "aws:amz:" + config_.region + ":s3";
    userpwd = config_.access_key_id + ":" + config_.secret_access_key;
    curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(easy, CURLOPT_USERPWD, userpwd.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  Sink sink{&r.body, req.dst, req.dst_size, &r.received};
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &r.etag);
  Limiter::Get().Acquire(config_.options.max_concurrency);
  r.curl = curl_easy_perform(easy);
  Limiter::Get().Release();
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
  curl_off_t length = -1;
  curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
  r.content_length = static_cast<int64_t>(length);
  if (r.curl != CURLE_OK) r.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(r.curl);
  // A ranged read into `dst` of an error status got its body in `dst`: keep it as the body.
  if (req.dst && r.curl == CURLE_OK && (r.status < 200 || r.status >= 300)) {
    r.body.assign(req.dst, static_cast<size_t>(std::min(r.received, req.dst_size)));
  }
  curl_slist_free_all(headers);  // the handle's pointer to them goes with its reset (Lease)
  return r;
}

S3Client::Response S3Client::Send(const Request& req) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  Response r;
  const int retries = std::max(0, config_.options.max_retries);
  for (int attempt = 0;; ++attempt) {
    r = SendOnce(req);
    bool again = false;
    if (r.curl != CURLE_OK) {
      again = Retriable(r.curl);
    } else if (r.status >= 500 || r.status == 429) {
      again = true;
    } else if (r.status == 400 &&
               (r.body.find("<Code>RequestTimeout</Code>") != std::string::npos ||
                r.body.find("<Code>SlowDown</Code>") != std::string::npos)) {
      again = true;
    }
    if (!again || attempt >= retries) break;
    // Full jitter: a random wait up to 100 ms * 2^attempt, at most 5 s.
    const int64_t cap = std::min<int64_t>(5000, int64_t{100} << std::min(attempt, 10));
    std::uniform_int_distribution<int64_t> wait(cap / 4, cap);
    std::this_thread::sleep_for(std::chrono::milliseconds(wait(rng)));
  }
  if (r.curl != CURLE_OK) {
    const std::string uri = "s3://" + req.bucket + "/" + req.key;
    throw DataError(uri + ": " + req.what + " failed: " + r.curl_error + " (endpoint " +
                    config_.endpoint + ", " + std::to_string(retries + 1) + " attempts)");
  }
  return r;
}

namespace {

[[noreturn]] void Fail(const std::string& bucket, const std::string& key, const std::string& what,
                       const std::string& error) {
  throw DataError("s3://" + bucket + "/" + key + ": " + what + " failed: " + error);
}

}  // namespace

std::vector<S3Object> S3Client::List(const std::string& bucket, const std::string& prefix,
                                     const S3ListOptions& options,
                                     std::vector<std::string>* folders, bool* more) const {
  if (more) *more = false;
  std::vector<S3Object> out;
  std::string token;
  int pages = 0;
  for (;;) {
    std::map<std::string, std::string> params{{"list-type", "2"}, {"prefix", prefix}};
    if (!options.delimiter.empty()) params["delimiter"] = options.delimiter;
    if (!options.start_after.empty()) params["start-after"] = options.start_after;
    if (!token.empty()) params["continuation-token"] = token;
    Request req;
    req.bucket = bucket;
    req.query = Query(params);
    req.what = "listing";
    Response r = Send(req);
    if (!r.ok()) Fail(bucket, prefix, "listing", r.ErrorText());
    tinyxml2::XMLDocument doc;
    if (doc.Parse(r.body.data(), r.body.size()) != tinyxml2::XML_SUCCESS || !doc.RootElement()) {
      Fail(bucket, prefix, "listing", "the server's answer is not XML");
    }
    const tinyxml2::XMLElement* root = doc.RootElement();
    bool past = false;  // a key beyond options.until: this page is the last one needed
    for (auto* c = root->FirstChildElement("Contents"); c; c = c->NextSiblingElement("Contents")) {
      S3Object o;
      o.key = Text(c, "Key");
      if (!options.until.empty() && o.key > options.until) {
        past = true;
        break;
      }
      o.size = std::atoll(Text(c, "Size"));
      o.etag = Unquote(Text(c, "ETag"));
      o.mtime_ns = ParseTime(Text(c, "LastModified"));
      out.push_back(std::move(o));
    }
    for (auto* c = root->FirstChildElement("CommonPrefixes"); c && folders;
         c = c->NextSiblingElement("CommonPrefixes")) {
      folders->push_back(Text(c, "Prefix"));
    }
    if (past || std::string(Text(root, "IsTruncated")) != "true") break;
    if (options.max_pages > 0 && ++pages >= options.max_pages) {
      if (more) *more = true;
      break;
    }
    token = Text(root, "NextContinuationToken");
    if (token.empty())
      Fail(bucket, prefix, "listing", "a truncated page without a continuation token");
  }
  return out;
}

std::optional<S3Object> S3Client::Head(const std::string& bucket, const std::string& key) const {
  Request req;
  req.method = "HEAD";
  req.bucket = bucket;
  req.key = key;
  req.what = "HEAD";
  Response r = Send(req);
  if (r.status == 404) return std::nullopt;
  if (!r.ok()) Fail(bucket, key, "HEAD", r.ErrorText());
  S3Object o;
  o.key = key;
  o.etag = r.etag;
  o.size = r.content_length;
  return o;
}

std::string S3Client::GetRange(const std::string& bucket, const std::string& key, int64_t offset,
                               int64_t size, char* dst) const {
  Request req;
  req.bucket = bucket;
  req.key = key;
  req.what = "GET";
  req.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" +
                        std::to_string(offset + size - 1));
  req.dst = dst;
  req.dst_size = size;
  Response r = Send(req);
  if (!r.ok()) return r.ErrorText();
  if (r.received != size) {
    return "the range " + std::to_string(offset) + "+" + std::to_string(size) + " came back with " +
           std::to_string(r.received) + " bytes";
  }
  return "";
}

void S3Client::GetInto(const std::string& bucket, const std::string& key, int64_t size,
                       char* dst) const {
  const S3Options& o = config_.options;
  if (size == 0) return;
  if (o.multipart_threshold <= 0 || size < o.multipart_threshold || o.part_size <= 0) {
    const std::string error = GetRange(bucket, key, 0, size, dst);
    if (!error.empty()) Fail(bucket, key, "GET", error + " (changed since it was listed?)");
    return;
  }
  const int64_t parts = (size + o.part_size - 1) / o.part_size;
  ParallelFor(parts, std::min(8, o.max_concurrency), [&](int64_t p) {
    const int64_t off = p * o.part_size;
    const std::string error =
        GetRange(bucket, key, off, std::min(o.part_size, size - off), dst + off);
    if (!error.empty()) Fail(bucket, key, "GET", error);
  });
}

std::string S3Client::Get(const std::string& bucket, const std::string& key, int64_t size) const {
  const S3Options& o = config_.options;
  if (o.multipart_threshold > 0 && (size < 0 || size >= o.multipart_threshold)) {
    // Large objects in parallel ranges; without a listed size a HEAD first tells it.
    if (size < 0) {
      std::optional<S3Object> head = Head(bucket, key);
      if (!head) Fail(bucket, key, "GET", "HTTP 404 NoSuchKey: the object does not exist");
      size = head->size;
    }
    if (size >= o.multipart_threshold) {
      std::string out(static_cast<size_t>(size), '\0');
      GetInto(bucket, key, size, out.data());
      return out;
    }
  }
  Request req;
  req.bucket = bucket;
  req.key = key;
  req.what = "GET";
  Response r = Send(req);
  if (!r.ok()) Fail(bucket, key, "GET", r.ErrorText());
  return std::move(r.body);
}

void S3Client::Put(const std::string& bucket, const std::string& key, std::string_view data) const {
  const S3Options& o = config_.options;
  if (o.multipart_threshold > 0 && static_cast<int64_t>(data.size()) >= o.multipart_threshold) {
    PutMultipart(bucket, key, data);
    return;
  }
  Request req;
  req.method = "PUT";
  req.bucket = bucket;
  req.key = key;
  req.body = data;
  req.what = "PUT";
  Response r = Send(req);
  if (!r.ok()) Fail(bucket, key, "PUT", r.ErrorText());
}

void S3Client::PutMultipart(const std::string& bucket, const std::string& key,
                            std::string_view data) const {
  const S3Options& o = config_.options;
  if (o.part_size < (int64_t{5} << 20)) {
    Fail(bucket, key, "multipart upload",
         "S3Options::part_size is " + std::to_string(o.part_size) +
             " bytes; S3 needs parts of at least 5 MiB");
  }
  Request begin;
  begin.method = "POST";
  begin.bucket = bucket;
  begin.key = key;
  begin.query = "uploads=";
  begin.what = "starting a multipart upload";
  Response started = Send(begin);
  if (!started.ok()) Fail(bucket, key, begin.what, started.ErrorText());
  tinyxml2::XMLDocument doc;
  std::string upload_id;
  if (doc.Parse(started.body.data(), started.body.size()) == tinyxml2::XML_SUCCESS) {
    upload_id = Text(doc.RootElement(), "UploadId");
  }
  if (upload_id.empty()) Fail(bucket, key, begin.what, "the answer names no UploadId");

  const int64_t size = static_cast<int64_t>(data.size());
  const int64_t parts = (size + o.part_size - 1) / o.part_size;
  std::vector<std::string> etags(static_cast<size_t>(parts));
  std::string failure;
  try {
    ParallelFor(parts, std::min(4, o.max_concurrency), [&](int64_t p) {
      const int64_t off = p * o.part_size;
      Request part;
      part.method = "PUT";
      part.bucket = bucket;
      part.key = key;
      part.query = Query({{"partNumber", std::to_string(p + 1)}, {"uploadId", upload_id}});
      part.body = data.substr(static_cast<size_t>(off),
                              static_cast<size_t>(std::min(o.part_size, size - off)));
      part.what = "uploading part " + std::to_string(p + 1);
      Response r = Send(part);
      if (!r.ok() || r.etag.empty()) {
        throw DataError(part.what + ": " + (r.ok() ? "no ETag in the answer" : r.ErrorText()));
      }
      etags[static_cast<size_t>(p)] = r.etag;
    });
  } catch (const std::exception& e) {
    failure = e.what();
  }
  auto abort = [&](const std::string& why) {
    Request req;
    req.method = "DELETE";
    req.bucket = bucket;
    req.key = key;
    req.query = Query({{"uploadId", upload_id}});
    req.what = "aborting the multipart upload";
    std::string aborted;
    try {
      Response r = Send(req);
      if (!r.ok() && r.status != 404) aborted = " (aborting it failed too: " + r.ErrorText() + ")";
    } catch (const std::exception& e) {
      aborted = std::string(" (aborting it failed too: ") + e.what() + ")";
    }
    Fail(bucket, key, "multipart upload", why + aborted);
  };
  if (!failure.empty()) abort(failure);
  std::string xml = "<CompleteMultipartUpload>";
  for (int64_t p = 0; p < parts; ++p) {
    xml += "<Part><PartNumber>" + std::to_string(p + 1) + "</PartNumber><ETag>\"" +
           XmlEscape(etags[static_cast<size_t>(p)]) + "\"</ETag></Part>";
  }
  xml += "</CompleteMultipartUpload>";
  Request done;
  done.method = "POST";
  done.bucket = bucket;
  done.key = key;
  done.query = Query({{"uploadId", upload_id}});
  done.body = xml;
  done.what = "completing the multipart upload";
  Response r;
  try {
    r = Send(done);
  } catch (const std::exception& e) {
    abort(e.what());
  }
  if (!r.ok() || r.ErrorBody()) abort(done.what + ": " + r.ErrorText());
}

void S3Client::Delete(const std::string& bucket, const std::string& key) const {
  Request req;
  req.method = "DELETE";
  req.bucket = bucket;
  req.key = key;
  req.what = "DELETE";
  Response r = Send(req);
  if (!r.ok() && r.status != 404) Fail(bucket, key, "DELETE", r.ErrorText());
}

void S3Client::Copy(const std::string& bucket, const std::string& from,
                    const std::string& to) const {
  Request req;
  req.method = "PUT";
  req.bucket = bucket;
  req.key = to;
  req.headers.push_back("x-amz-copy-source: /" + UriEncode(bucket, false) + "/" +
                        UriEncode(from, true));
  req.what = "copying s3://" + bucket + "/" + from + " here";
  Response r = Send(req);
  if (!r.ok() || r.ErrorBody()) Fail(bucket, to, req.what, r.ErrorText());
}

}  // namespace lumen::data::internal
