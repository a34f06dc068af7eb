// The connections of one core worker to the other processes of the cluster — core workers
// (owners, borrowers, actors, leased workers) and node daemons — cached by address, and the
// addresses of the node daemons, learnt from the control service.
//
// Thread safety: every method is thread-safe. Connecting never waits
// (rpc::ConnectInBackground): a peer that cannot be reached fails the calls queued on its
// connection, and `on_closed` runs on the I/O loop thread for every connection that closes.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>

#include "common.pb.h"
#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "common/rpc/reconnecting_client.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "lumen/ids.h"

namespace lumen::core {

class PeerConnections {
 public:
  // `io` and `dispatcher` must outlive this.
  PeerConnections(rpc::EventLoop* io, const rpc::Dispatcher* dispatcher, std::string token,
                  rpc::Connection::CloseCallback on_closed);

  // The node this process runs on: peers there are reached over their Unix sockets.
  void SetLocalNode(const NodeID& node) LUMEN_EXCLUDES(mu_);

  // The cache key of a peer: "unix:<path>" on this node, else its TCP address.
  std::string KeyOf(const proto::Address& address) const LUMEN_EXCLUDES(mu_);
  // The open connection to `address`, made now if there is none.
  StatusOr<rpc::ConnectionPtr> Connect(const proto::Address& address) LUMEN_EXCLUDES(mu_);
  // The cached connection to `address`, or null: for messages not worth a new connection.
  rpc::ConnectionPtr Cached(const proto::Address& address) LUMEN_EXCLUDES(mu_);
  // Drops a closed connection from the cache.
  void Forget(const rpc::ConnectionPtr& conn) LUMEN_EXCLUDES(mu_);
  // Closes every connection; Connect() fails from now on.
  void CloseAll(const Status& why) LUMEN_EXCLUDES(mu_);

  // The address of node `node`'s daemon: cached, else asked of the control service over
  // `gcs` (`done` runs on the I/O thread then; `found` is false when the node is unknown,
  // dead, or the control service cannot answer).
  void WithNodeAddress(const std::shared_ptr<rpc::ReconnectingClient>& gcs, const NodeID& node,
                       std::function<void(bool found, const proto::Address&)> done)
      LUMEN_EXCLUDES(nodes_mu_);
  // A dead node: its cached address goes, so that nothing is sent there.
  void ForgetNode(const NodeID& node) LUMEN_EXCLUDES(nodes_mu_);

 private:
  rpc::EventLoop* const io_;
  const rpc::Dispatcher* const dispatcher_;
  const std::string token_;
  const rpc::Connection::CloseCallback on_closed_;

  mutable Mutex mu_;
  NodeID local_node_ LUMEN_GUARDED_BY(mu_);
  bool closed_ LUMEN_GUARDED_BY(mu_) = false;
  std::unordered_map<std::string, rpc::ConnectionPtr> connections_ LUMEN_GUARDED_BY(mu_);

  Mutex nodes_mu_;
  std::unordered_map<NodeID, proto::Address> node_addresses_ LUMEN_GUARDED_BY(nodes_mu_);
};

}  // namespace lumen::core
