// Hosts a control service and/or a node daemon inside the current process on one event loop:
// the embedded cluster of lumen::Init() and the daemon of `lumen start`.
//
// Thread safety: Start/Stop from one thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/rpc/event_loop.h"
#include "common/status.h"
#include "gcs/redis_gcs_store.h"

namespace lumen {

namespace gcs {
class GcsServer;
}
namespace node {
class NodeDaemon;
}

struct LocalClusterOptions {
  std::string session_dir;
  std::string token;
  std::map<std::string, double> resources;    // CPU, GPU, custom
  std::map<std::string, std::string> labels;  // the node's, for label selectors
  int64_t object_store_memory = 0;            // 0: default fraction of RAM
  std::string bind_host = "127.0.0.1";
  std::string node_ip;  // advertised by every process of the node; empty: bind_host
  int gcs_port = 0;
  int node_port = 0;
  int min_worker_port = 0;  // 0: any
  int max_worker_port = 0;
  // Empty: start a control service here (head). Else join the one at this address.
  std::string gcs_address;
  // Head only: keep the control service's tables in Redis when `redis.address` is set.
  gcs::RedisOptions redis;
};

class LocalCluster {
 public:
  static StatusOr<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options);
  ~LocalCluster();
  void Stop();

  // TCP address of the control service (head only).
  std::string gcs_address() const;
  // The address local processes should use for the control service.
  std::string gcs_local_address() const;
  std::string node_unix_address() const;
  std::string node_tcp_address() const;
  // Called on the service loop when a client asks the cluster (or node) to shut down.
  void set_on_shutdown(std::function<void()> cb);

 private:
  LocalCluster();

  std::unique_ptr<rpc::EventLoop> loop_;
  std::unique_ptr<gcs::GcsServer> gcs_;
  std::unique_ptr<node::NodeDaemon> node_;
  std::string gcs_address_;
  std::string gcs_local_address_;
};

}  // namespace lumen
