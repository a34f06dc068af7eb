// A connection to the control service for one CLI command (`lumen job ...`, `lumen actor ...`).
//
// Thread safety: used from the CLI's main thread; its event loop runs the connection.
#pragma once

#include <cstdint>
#include <iostream>
#include <string>

#include <google/protobuf/message_lite.h>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"

namespace lumen::cli {

class GcsSession {
 public:
  // `command` prefixes the errors printed ("lumen job list").
  explicit GcsSession(std::string command) : command_(std::move(command)), loop_("cli") {
    loop_.Start();
  }
  ~GcsSession() {
    if (conn_) conn_->Close(lumen::Status::OK());
    loop_.Stop();
  }
  GcsSession(const GcsSession&) = delete;
  GcsSession& operator=(const GcsSession&) = delete;

  // Prints the error and returns false when the cluster cannot be reached.
  bool Connect(const std::string& address, const std::string& token) {
    if (address.empty()) {
      std::cerr << command_
                << ": no cluster found (no --address, LUMEN_ADDRESS or running `lumen start "
                   "--head`)\n";
      return false;
    }
    auto c = rpc::Connect(&loop_, address, &none_, token);
    if (!c.ok()) {
      std::cerr << command_ << ": cannot reach the cluster at " << address << ": "
                << c.status().message() << "\n";
      return false;
    }
    conn_ = *c;
    return true;
  }
  // Prints the error and returns false when the call fails.
  bool Call(uint16_t type, const google::protobuf::MessageLite& req,
            google::protobuf::MessageLite* reply) {
    lumen::Status st = conn_->CallSync(type, req, reply, kCallTimeoutMs);
    if (!st.ok()) std::cerr << command_ << ": " << st.message() << "\n";
    return st.ok();
  }
  rpc::Connection& conn() { return *conn_; }

 private:
  static constexpr int64_t kCallTimeoutMs = 30000;
  std::string command_;
  rpc::EventLoop loop_;
  rpc::Dispatcher none_;
  rpc::ConnectionPtr conn_;
};

}  // namespace lumen::cli
