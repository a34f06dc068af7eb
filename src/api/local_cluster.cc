#include "api/local_cluster.h"

#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "gcs/gcs_server.h"
#include "node/node_daemon.h"

namespace lumen {

LocalCluster::LocalCluster() : loop_(std::make_unique<rpc::EventLoop>("services")) {}

LocalCluster::~LocalCluster() { Stop(); }

StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(LocalClusterOptions options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  c->loop_->Start();
  if (options.gcs_address.empty()) {
    gcs::GcsOptions go;
    go.token = options.token;
    go.bind_host = options.bind_host;
    go.advertise_host = options.node_ip;
    go.port = options.gcs_port;
    go.unix_path = JoinPath(JoinPath(options.session_dir, "sockets"), "gcs");
    go.node_death_timeout_ms = Config::Get().node_death_timeout_ms();
    std::unique_ptr<gcs::GcsStore> store;
    if (options.redis.address.empty()) {
      store = std::make_unique<gcs::InMemoryGcsStore>();
    } else {
      auto redis = gcs::RedisGcsStore::Connect(options.redis);
      if (!redis.ok()) return redis.status().WithContext("the control service's store");
      store = std::move(*redis);
    }
    c->gcs_ = std::make_unique<gcs::GcsServer>(c->loop_.get(), go, std::move(store));
    LUMEN_RETURN_IF_ERROR(c->gcs_->Start());
    c->gcs_address_ = c->gcs_->address();
    c->gcs_local_address_ = c->gcs_->unix_address();
  } else {
    c->gcs_address_ = options.gcs_address;
    c->gcs_local_address_ = options.gcs_address;
  }
  node::NodeOptions no;
  no.session_dir = options.session_dir;
  no.token = options.token;
  no.gcs_address = c->gcs_local_address_;
  no.bind_host = options.bind_host;
  no.node_ip = options.node_ip;
  no.min_worker_port = options.min_worker_port;
  no.max_worker_port = options.max_worker_port;
  no.port = options.node_port;
  no.resources = options.resources;
  no.labels = options.labels;
  no.object_store_memory = options.object_store_memory;
  no.is_head = options.gcs_address.empty();
  c->node_ = std::make_unique<node::NodeDaemon>(c->loop_.get(), no);
  LUMEN_RETURN_IF_ERROR(c->node_->Start());
  return c;
}

void LocalCluster::Stop() {
  if (gcs_) gcs_->Stop();
  if (node_) node_->Stop();
  if (loop_) loop_->Stop();
  node_.reset();
  gcs_.reset();
}

std::string LocalCluster::gcs_address() const { return gcs_address_; }
std::string LocalCluster::gcs_local_address() const { return gcs_local_address_; }
std::string LocalCluster::node_unix_address() const { return node_->unix_address(); }
std::string LocalCluster::node_tcp_address() const { return node_->tcp_address(); }

void LocalCluster::set_on_shutdown(std::function<void()> cb) {
  if (gcs_) gcs_->set_on_shutdown(cb);
  node_->set_on_shutdown(cb);
}

}  // namespace lumen
