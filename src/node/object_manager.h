// Moves objects between the stores of different nodes. A client asks its node to pull an
// object whose primary copy lives on another node; the node reads it from that node in chunks
// (a few in flight), writes it into its own store and seals it as a secondary copy (dropped,
// not spilled, under memory pressure). The node holding the primary remembers who pulled it, so
// that the owner's free, sent to the primary's node, reaches every copy.
//
// Bytes are not copied through either daemon: after the first chunk (which tells the size),
// the source sends each chunk with sendfile(2) from its store's pages and the puller receives
// it straight into the copy it is writing (rpc::Connection::ReplyWithFileRange / CallInto).
// Since the kernel may read the source's pages after sendfile returns, the source keeps the
// object pinned for that peer until the peer says it is done (kReadObjectDone) or disconnects.
//
// Broadcast: a node asked for the first chunk of a multi-chunk object that another node is
// reading from it right now answers with that node's address, and the asker pulls from there
// instead. A node serves an object it is still receiving: chunks it has are sent at once, the
// others when they arrive. Several nodes pulling one object thus form a chain, and the source
// sends it once. If the node redirected to fails, the puller goes back to the source for the
// bytes it lacks.
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
  // kPromoteCopy from an owner whose object's primary node died: keeps the copy here as the
  // primary (NotFound when there is no complete copy).
  void HandlePromoteCopy(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // kReadObjectChunk from another node: one chunk of a local object (or of one arriving here).
  void HandleReadChunk(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // kReadObjectDone from another node: it has every byte it asked for of these objects.
  void HandleReadDone(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // A connection to this node closed: drops what it had pinned here.
  void PeerClosed(const rpc::ConnectionPtr& c);
  // The control service declared the node at TCP `address` dead: pulls from it fail now (not
  // when their chunks time out), so that a copy re-created elsewhere can be pulled at once.
  void NodeDied(const std::string& address);
  // The owner freed `ids` here: forward the free to the nodes that pulled copies.
  void ForwardFree(const std::vector<ObjectID>& ids);
  void Stop();

  struct TransferStats {
    int64_t bytes_sent = 0;      // object bytes sent to other nodes
    int64_t bytes_received = 0;  // object bytes received from other nodes
    int64_t pulls_redirected = 0;
  };
  const TransferStats& stats() const { return stats_; }

  static constexpr int64_t kChunkBytes = 8 << 20;
  static constexpr int kChunksInFlight = 4;

 private:
  // A chunk another node asked for, of a copy still arriving here: answered once it is in.
  struct DeferredRead {
    std::weak_ptr<rpc::Connection> conn;
    rpc::Frame handle;
    proto::ReadChunkRequest req;
  };
  struct Pull {
    std::vector<std::pair<std::weak_ptr<rpc::Connection>, rpc::Frame>> waiters;
    rpc::ConnectionPtr source;
    std::string source_address;
    std::string origin_address;  // the source the client named (set once redirected)
    WorkerID owner;
    int64_t total = -1;
    int32_t format = 0;
    int64_t offset = -1;  // of the local copy in the store
    int64_t next_offset = 0;
    int64_t contiguous = 0;            // bytes [0, contiguous) are in
    std::map<int64_t, int64_t> ahead;  // chunks in past `contiguous`: offset -> length
    int in_flight = 0;
    bool created = false;
    bool redirected = false;
    bool fell_back = false;
    bool failed = false;
    Status error;  // why it failed (reported once the chunks in flight are back)
    std::vector<DeferredRead> reads;
    // Peers reading this copy zero-copy while it arrives: pinned for them once it is sealed.
    std::set<const rpc::Connection*> partial_readers;
  };
  // Pins held for peers reading objects zero-copy, by connection (store client ids from
  // kFirstPeerClient up, apart from the daemon's own clients, which count up from 1).
  struct Reader {
    object_store::ClientId client = 0;
    std::unordered_map<ObjectID, int> pins;
  };
  // The peer reading an object from this node now (where later askers are redirected).
  struct Reading {
    const rpc::Connection* conn;
    std::string address;
  };

  StatusOr<rpc::ConnectionPtr> PeerConnection(const std::string& address);
  void RequestChunks(const ObjectID& id);
  // A chunk request came back: the pull to continue, or null (gone, or failed: then it is
  // finished or sent back to the origin once nothing is in flight).
  Pull* ChunkBack(const ObjectID& id);
  static Status ParseChunk(const ObjectID& id, const Status& st, std::string_view payload,
                           proto::ObjectChunk* chunk);
  void OnChunk(const ObjectID& id, const Status& st, std::string_view payload);
  // Pulls from `address` (a redirect), or on from the origin if it cannot be reached.
  void Redirect(const ObjectID& id, Pull& p, const std::string& address);
  // A zero-copy chunk [offset, offset + length) was (or failed to be) received into the copy.
  void OnRawChunk(const ObjectID& id, int64_t offset, int64_t length, const Status& st,
                  std::string_view head, size_t raw);
  void MarkReceived(Pull& p, int64_t offset, int64_t length);
  // Marks the pull failed; once no chunk is in flight, goes back to the origin (if it was
  // redirected) or finishes it.
  void Fail(const ObjectID& id, Pull& p, Status st);
  void AfterFailure(const ObjectID& id, Pull& p);
  // Tells the pull's source it may unpin the object (kReadObjectDone).
  void SendDone(const ObjectID& id, const Pull& p);
  // Finishes the pull once every byte is in, else asks for more.
  void Progress(const ObjectID& id, Pull& p);
  // By value: callers pass the pull's own fields, which Finish erases before it is done.
  void Finish(ObjectID id, Status st);
  // Serves `req` from the copy `p` is receiving, now or (deferred) once the range is in.
  void ServePartial(const rpc::ConnectionPtr& c, const rpc::Frame& handle,
                    const proto::ReadChunkRequest& req, Pull& p);
  void ServeDeferred(Pull& p);
  // Sends [offset, offset + n) of the object at `base_offset` in the store, zero-copy or not.
  void SendChunk(const rpc::ConnectionPtr& c, const rpc::Frame& handle,
                 const proto::ReadChunkRequest& req, int64_t base_offset, int64_t size,
                 int32_t format);
  Reader& ReaderFor(const rpc::ConnectionPtr& c);

  rpc::EventLoop* const loop_;
  object_store::ObjectStore* const store_;
  const std::string token_;
  const std::string self_address_;
  rpc::Dispatcher peer_dispatcher_;                  // replies on connections this node opened
  std::map<std::string, rpc::ConnectionPtr> peers_;  // by TCP address
  std::unordered_map<ObjectID, Pull> pulls_;
  // Objects of this node that other nodes copied, and the TCP addresses of those nodes.
  std::unordered_map<ObjectID, std::set<std::string>> copied_to_;
  std::unordered_map<const rpc::Connection*, Reader> readers_;
  std::unordered_map<ObjectID, Reading> reading_;
  TransferStats stats_;
  // The store client id of this manager's own pins and creates.
  static constexpr object_store::ClientId kSelf = ~object_store::ClientId{0};
  static constexpr object_store::ClientId kFirstPeerClient = object_store::ClientId{1} << 62;
  object_store::ClientId next_peer_client_ = kFirstPeerClient;
};

}  // namespace lumen::node
