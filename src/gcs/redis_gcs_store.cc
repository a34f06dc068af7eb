#include "gcs/redis_gcs_store.h"

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <ctime>

#include "common/logging.h"

namespace lumen::gcs {

namespace {

timeval ToTimeval(int ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// hiredis writes with write(2): a server that went away would raise SIGPIPE and kill the
// whole process. While alive, this blocks SIGPIPE on the calling thread and swallows one that
// the guarded calls raised (the write then fails with EPIPE, which hiredis reports).
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

}  // namespace

RedisGcsStore::RedisGcsStore(RedisOptions options) : options_(std::move(options)) {}

RedisGcsStore::~RedisGcsStore() {
  if (ctx_) redisFree(ctx_);
}

StatusOr<std::unique_ptr<RedisGcsStore>> RedisGcsStore::Connect(RedisOptions options) {
  if (options.ns.empty() || options.ns.find(':') != std::string::npos) {
    return InvalidArgumentError("Redis namespace must be non-empty and without ':', got '" +
                                options.ns + "'");
  }
  std::unique_ptr<RedisGcsStore> store(new RedisGcsStore(std::move(options)));
  MutexLock lock(store->mu_);
  SigpipeGuard no_sigpipe;
  LUMEN_RETURN_IF_ERROR(store->ConnectLocked());
  return store;
}

Status RedisGcsStore::ConnectLocked() {
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  const std::string& addr = options_.address;
  const timeval tv = ToTimeval(options_.timeout_ms);
  // Kept here until it has proven usable; any failure below frees it.
  std::unique_ptr<redisContext, void (*)(redisContext*)> ctx(nullptr, redisFree);
  if (addr.rfind("unix:", 0) == 0) {
    ctx.reset(redisConnectUnixWithTimeout(addr.substr(5).c_str(), tv));
  } else {
    size_t colon = addr.rfind(':');
    int port = 0;
    if (colon != std::string::npos && colon + 1 < addr.size()) {
      try {
        size_t used = 0;
        port = std::stoi(addr.substr(colon + 1), &used);
        if (used != addr.size() - colon - 1) port = 0;
      } catch (const std::exception&) {
        port = 0;
      }
    }
    if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535) {
      return InvalidArgumentError("Redis address must be HOST:PORT or unix:PATH, got '" + addr +
                                  "'");
    }
    ctx.reset(redisConnectWithTimeout(addr.substr(0, colon).c_str(), port, tv));
  }
  if (!ctx) return ResourceExhaustedError("cannot allocate a Redis connection");
  if (ctx->err) return UnavailableError("cannot reach Redis at " + addr + ": " + ctx->errstr);
  redisSetTimeout(ctx.get(), tv);
  // The server's error text, or the connection's when there was no reply.
  auto why = [&ctx](const ReplyPtr& r) {
    return r ? std::string(r->str, r->len) : std::string(ctx->errstr);
  };
  if (!options_.password.empty()) {
    const char* argv[] = {"AUTH", options_.password.data()};
    const size_t lens[] = {4, options_.password.size()};
    ReplyPtr r(static_cast<redisReply*>(redisCommandArgv(ctx.get(), 2, argv, lens)));
    if (!r || r->type == REDIS_REPLY_ERROR) {
      return UnauthenticatedError("Redis at " + addr + " refused the password: " + why(r));
    }
  }
  // A PING proves the server speaks Redis and does not want a password we lack.
  ReplyPtr r(static_cast<redisReply*>(redisCommand(ctx.get(), "PING")));
  if (!r || r->type == REDIS_REPLY_ERROR) {
    return UnavailableError("Redis at " + addr + " does not answer PING: " + why(r));
  }
  ctx_ = ctx.release();
  return Status::OK();
}

StatusOr<RedisGcsStore::Reply> RedisGcsStore::Command(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  MutexLock lock(mu_);
  SigpipeGuard no_sigpipe;
  for (int attempt = 0;; ++attempt) {
    if (ctx_ == nullptr || ctx_->err) {
      if (ctx_ && ctx_->err) {
        LUMEN_LOG(WARNING) << "Redis connection to " << options_.address
                           << " broke: " << ctx_->errstr << "; reconnecting";
      }
      LUMEN_RETURN_IF_ERROR(ConnectLocked());
    }
    ReplyPtr r(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data())));
    if (!r) {
      if (attempt == 0) continue;  // the connection broke (server restarted?): retry once
      return UnavailableError("Redis at " + options_.address + " failed " + args[0] + ": " +
                              ctx_->errstr);
    }
    Reply out;
    switch (r->type) {
      case REDIS_REPLY_ERROR:
        return InternalError("Redis at " + options_.address + " rejected " + args[0] + ": " +
                             std::string(r->str, r->len));
      case REDIS_REPLY_NIL:
        out.nil = true;
        break;
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        out.str.assign(r->str, r->len);
        break;
      case REDIS_REPLY_INTEGER:
        out.integer = r->integer;
        break;
      case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements; ++i) {
          const redisReply* e = r->element[i];
          out.array.emplace_back(e->type == REDIS_REPLY_STRING ? std::string(e->str, e->len) : "");
        }
        break;
      default:
        break;
    }
    return out;
  }
}

Status RedisGcsStore::Put(const std::string& table, const std::string& key,
                          const std::string& value) {
  return Command({"HSET", HashName(table), key, value}).status();
}

StatusOr<std::string> RedisGcsStore::Get(const std::string& table, const std::string& key) {
  LUMEN_ASSIGN_OR_RETURN(Reply r, Command({"HGET", HashName(table), key}));
  if (r.nil) return NotFoundError(key);
  return std::move(r.str);
}

Status RedisGcsStore::Delete(const std::string& table, const std::string& key) {
  return Command({"HDEL", HashName(table), key}).status();
}

StatusOr<std::vector<std::pair<std::string, std::string>>> RedisGcsStore::GetAll(
    const std::string& table) {
  LUMEN_ASSIGN_OR_RETURN(Reply r, Command({"HGETALL", HashName(table)}));
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i + 1 < r.array.size(); i += 2) {
    out.emplace_back(std::move(r.array[i]), std::move(r.array[i + 1]));
  }
  return out;
}

}  // namespace lumen::gcs
