#include "core_worker/peer_connections.h"

#include <utility>
#include <vector>

#include "common/config.h"
#include "common/rpc/message_types.h"
#include "gcs.pb.h"

namespace lumen::core {

PeerConnections::PeerConnections(rpc::EventLoop* io, const rpc::Dispatcher* dispatcher,
                                 std::string token, rpc::Connection::CloseCallback on_closed)
    : io_(io),
      dispatcher_(dispatcher),
      token_(std::move(token)),
      on_closed_(std::move(on_closed)) {}

void PeerConnections::SetLocalNode(const NodeID& node) {
  MutexLock lock(mu_);
  local_node_ = node;
}

std::string PeerConnections::KeyOf(const proto::Address& a) const {
  MutexLock lock(mu_);
  if (a.node_id() == local_node_.Binary() && !a.unix_path().empty()) {
    return "unix:" + a.unix_path();
  }
  return a.tcp_address();
}

StatusOr<rpc::ConnectionPtr> PeerConnections::Connect(const proto::Address& address) {
  const std::string key = KeyOf(address);
  {
    MutexLock lock(mu_);
    if (closed_) return UnavailableError("shutting down");
    auto it = connections_.find(key);
    if (it != connections_.end() && !it->second->closed()) return it->second;
  }
  LUMEN_ASSIGN_OR_RETURN(
      rpc::ConnectionPtr conn,
      rpc::ConnectInBackground(io_, key, dispatcher_, token_, /*timeout_ms=*/-1, on_closed_));
  MutexLock lock(mu_);
  if (closed_) {
    conn->Close(CancelledError("shutting down"));
    return UnavailableError("shutting down");
  }
  auto [it, inserted] = connections_.emplace(key, conn);
  if (!inserted) {
    if (!it->second->closed()) {  // another thread connected meanwhile: keep one
      conn->Close(Status::OK());
      return it->second;
    }
    it->second = conn;
  }
  return conn;
}

rpc::ConnectionPtr PeerConnections::Cached(const proto::Address& address) {
  const std::string key = KeyOf(address);
  MutexLock lock(mu_);
  auto it = connections_.find(key);
  return it == connections_.end() ? nullptr : it->second;
}

void PeerConnections::Forget(const rpc::ConnectionPtr& conn) {
  MutexLock lock(mu_);
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->second == conn) {
      connections_.erase(it);
      return;
    }
  }
}

void PeerConnections::CloseAll(const Status& why) {
  std::unordered_map<std::string, rpc::ConnectionPtr> conns;
  {
    MutexLock lock(mu_);
    closed_ = true;
    conns.swap(connections_);
  }
  for (auto& [key, c] : conns) c->Close(why);
}

void PeerConnections::ForgetNode(const NodeID& node) {
  MutexLock lock(nodes_mu_);
  node_addresses_.erase(node);
}

void PeerConnections::WithNodeAddress(const std::shared_ptr<rpc::ReconnectingClient>& gcs,
                                      const NodeID& node,
                                      std::function<void(bool, const proto::Address&)> done) {
  {
    MutexLock lock(nodes_mu_);
    auto it = node_addresses_.find(node);
    if (it != node_addresses_.end()) {
      proto::Address a = it->second;
      done(true, a);
      return;
    }
  }
  if (!gcs || gcs->closed()) {
    done(false, proto::Address());
    return;
  }
  gcs->Call(
      rpc::kGetAllNodes, proto::Empty(),
      [this, node, done = std::move(done)](const Status& st, std::string_view payload) {
        proto::NodeList nodes;
        if (!st.ok() || !rpc::ParsePayload(payload, &nodes)) {
          done(false, proto::Address());
          return;
        }
        proto::Address found;
        bool ok = false;
        {
          MutexLock lock(nodes_mu_);
          for (const auto& n : nodes.nodes()) {
            if (!n.alive()) continue;
            NodeID id = NodeID::FromBinary(n.node_id());
            node_addresses_[id] = n.address();
            if (id == node) {
              found = n.address();
              ok = true;
            }
          }
        }
        done(ok, found);
      },
      Config::Get().rpc_timeout_ms());
}

}  // namespace lumen::core
