// Moves objects between the stores of different nodes. A client asks its node to pull an
// object whose primary copy lives on another node; the node reads it from that node in chunks
// (a few in flight), writes it into its own store and seals it as a secondary copy (dropped,
// not spilled, under memory pressure). The node holding the primary remembers who pulled it, so
// that the owner's free, sent to the primary's node, reaches every copy.
//
// Thread safety: every method runs on the node daemon's loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/rpc/connection.h"
#include "lumen/ids.h"
#include "node.pb.h"
#include "object_store/object_store.h"

namespace lumen::node {

class ObjectManager {
 public:
  // `self_address`: this node's TCP address (where other nodes forward frees).
  ObjectManager(rpc::EventLoop* loop, object_store::ObjectStore* store, std::string token,
                std::string self_address);
  ~ObjectManager();

  // kPullObject from a local client: replies once the object is sealed here (or with the
  // reason it cannot be).
  void HandlePull(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // kReadObjectChunk from another node: one chunk of a local object.
  void HandleReadChunk(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // The owner freed `ids` here: forward the free to the nodes that pulled copies.
  void ForwardFree(const std::vector<ObjectID>& ids);
  void Stop();

  static constexpr int64_t kChunkBytes = 8 << 20;
  static constexpr int kChunksInFlight = 4;

 private:
  struct Pull {
    std::vector<std::pair<std::weak_ptr<rpc::Connection>, rpc::Frame>> waiters;
    rpc::ConnectionPtr source;
    std::string source_address;
    WorkerID owner;
    int64_t total = -1;
    int32_t format = 0;
    int64_t offset = -1;  // of the local copy in the store
    int64_t next_offset = 0;
    int64_t received = 0;
    int in_flight = 0;
    bool created = false;
    bool failed = false;
    Status error;  // why it failed (reported once the chunks in flight are back)
  };

  StatusOr<rpc::ConnectionPtr> PeerConnection(const std::string& address);
  void RequestChunks(const ObjectID& id);
  void OnChunk(const ObjectID& id, const Status& st, std::string_view payload);
  // Copies a received chunk into the local copy; finishes the pull or asks for more.
  void Write(const ObjectID& id, Pull& p, const proto::ObjectChunk& chunk);
  // By value: callers pass the pull's own fields, which Finish erases before it is done.
  void Finish(ObjectID id, Status st);

  rpc::EventLoop* const loop_;
  object_store::ObjectStore* const store_;
  const std::string token_;
  const std::string self_address_;
  rpc::Dispatcher peer_dispatcher_;                  // replies on connections this node opened
  std::map<std::string, rpc::ConnectionPtr> peers_;  // by TCP address
  std::unordered_map<ObjectID, Pull> pulls_;
  // Objects of this node that other nodes copied, and the TCP addresses of those nodes.
  std::unordered_map<ObjectID, std::set<std::string>> copied_to_;
  // The store client id of this manager's own pins and creates.
  static constexpr object_store::ClientId kSelf = ~object_store::ClientId{0};
};

}  // namespace lumen::node
