// A real S3-protocol server for tests: s3rver (npm, installed by scripts/setup.sh into
// .tools/s3rver) on a loopback port in its own directory, with the buckets asked for, stopped
// (SIGTERM, reaped) on destruction. Access key and secret are s3rver's, "S3RVER".
//
// s3rver 3.7 on Node 20 answers paginated listings with InternalError unless OpenSSL's legacy
// provider is enabled (its continuation tokens use a legacy cipher): started with it.
//
// The AWS CLI (/usr/bin/aws, Debian's awscli) is the independent client that checks what
// Lumen wrote: Aws() runs it against this server.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"
#include "server_process.h"
#include "shell.h"

namespace lumen::testing {

class S3Server {
 public:
  static constexpr const char* kKey = "S3RVER";

  explicit S3Server(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/data");
  }
  ~S3Server() {
    Stop();
    std::filesystem::remove_all(dir_);
  }

  // Starts the server with `buckets` and waits until it answers; false (with `error`) if not.
  bool Start(const std::vector<std::string>& buckets, std::string* error) {
    if (::access(S3RVER_BIN, X_OK) != 0) {
      *error = std::string(S3RVER_BIN) + " is missing: run scripts/setup.sh (it installs s3rver)";
      return false;
    }
    port_ = FreePort();
    SpawnOptions so;
    so.argv = {S3RVER_BIN, "-d", dir_ + "/data", "-a", "127.0.0.1", "-p", std::to_string(port_)};
    for (const auto& b : buckets) so.argv.insert(so.argv.end(), {"--configure-bucket", b});
    so.env = EnvironmentWith({"NODE_OPTIONS=--openssl-legacy-provider"});
    so.log_path = dir_ + "/s3rver.log";
    return process_.Start(
        so, "s3rver", [&] { return Aws("s3api list-buckets").code == 0; }, error);
  }

  void Stop() { process_.Stop(); }
  // Freezes the server (SIGSTOP): connections are accepted by the kernel, nothing answers.
  void Pause() { process_.Pause(); }
  void Resume() { process_.Resume(); }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // What the server logged (a line per request; "Stored part N of <upload>" per part).
  std::string Log() const {
    std::ifstream f(dir_ + "/s3rver.log");
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  // Multipart uploads begun and neither completed nor aborted in `bucket` (s3rver keeps each
  // in a directory of its own until then; it answers ListMultipartUploads with NotImplemented).
  int OpenUploads(const std::string& bucket) const {
    int n = 0;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(dir_ + "/data/" + bucket + "/._S3rver_uploads", ec)) {
      n += e.is_directory();
    }
    return n;
  }
  // The environment a client of this server needs ("NAME=value ...").
  std::string Env() const {
    return std::string("AWS_ACCESS_KEY_ID=") + kKey + " AWS_SECRET_ACCESS_KEY=" + kKey +
           " AWS_REGION=us-east-1 AWS_ENDPOINT_URL=" + endpoint();
  }
  // Runs the AWS CLI (`args` after `aws`) against this server.
  ShellResult Aws(const std::string& args) const {
    return Shell("env -u AWS_PROFILE " + Env() + " /usr/bin/aws --endpoint-url " + endpoint() +
                 " " + args);
  }

 private:
  std::string dir_;
  int port_ = 0;
  ServerProcess process_;
};

}  // namespace lumen::testing
