#include "node/object_manager.h"

#include <cstring>

#include "common/logging.h"
#include "common/rpc/message_types.h"

namespace lumen::node {

namespace {

constexpr int64_t kPeerConnectTimeoutMs = 3000;
constexpr int64_t kChunkTimeoutMs = 60000;
constexpr int64_t kSourceGetTimeoutMs = 30000;

}  // namespace

ObjectManager::ObjectManager(rpc::EventLoop* loop, object_store::ObjectStore* store,
                             std::string token, std::string self_address)
    : loop_(loop),
      store_(store),
      token_(std::move(token)),
      self_address_(std::move(self_address)) {}

ObjectManager::~ObjectManager() { Stop(); }

void ObjectManager::Stop() {
  for (auto& [address, conn] : peers_) conn->Close(CancelledError("node stopping"));
  peers_.clear();
}

StatusOr<rpc::ConnectionPtr> ObjectManager::PeerConnection(const std::string& address) {
  auto it = peers_.find(address);
  if (it != peers_.end() && !it->second->closed()) return it->second;
  LUMEN_ASSIGN_OR_RETURN(
      auto conn, rpc::Connect(loop_, address, &peer_dispatcher_, token_, kPeerConnectTimeoutMs));
  peers_[address] = conn;
  return conn;
}

// ---- pulling -----------------------------------------------------------------------------

void ObjectManager::HandlePull(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::PullObjectRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.object_id().size() != ObjectID::kSize ||
      req.source_address().empty()) {
    c->ReplyError(f, InvalidArgumentError("malformed PullObject"));
    return;
  }
  const ObjectID id = ObjectID::FromBinary(req.object_id());
  auto existing = pulls_.find(id);
  if (existing == pulls_.end() && store_->Contains(id)) {
    c->Reply(f, proto::Empty());  // already here (or being written by a local creator)
    return;
  }
  Pull& p = pulls_[id];
  p.waiters.emplace_back(c, rpc::ReplyHandle(f));
  if (existing != pulls_.end()) return;  // joins the pull in flight
  p.source_address = req.source_address();
  p.owner = WorkerID::FromBinary(req.owner().worker_id());
  auto conn = PeerConnection(p.source_address);
  if (!conn.ok()) {
    Finish(id, conn.status().WithContext("pulling object " + id.Hex() + " from the node at " +
                                         p.source_address));
    return;
  }
  p.source = *conn;
  RequestChunks(id);
}

void ObjectManager::RequestChunks(const ObjectID& id) {
  auto it = pulls_.find(id);
  if (it == pulls_.end()) return;
  Pull& p = it->second;
  // The first chunk tells the size; the rest go out a few at a time once the copy exists.
  const bool first = p.total < 0;
  while (!p.failed && p.in_flight < (first ? 1 : kChunksInFlight) &&
         (first ? p.next_offset == 0 : p.next_offset < p.total)) {
    proto::ReadChunkRequest req;
    req.set_object_id(id.Binary());
    req.set_offset(p.next_offset);
    req.set_length(first ? kChunkBytes : std::min(kChunkBytes, p.total - p.next_offset));
    req.set_requester_address(self_address_);
    p.next_offset += req.length();
    ++p.in_flight;
    p.source->Call(
        rpc::kReadObjectChunk, req,
        [this, id](const Status& st, std::string_view payload) { OnChunk(id, st, payload); },
        kChunkTimeoutMs);
    if (first) break;
  }
}

void ObjectManager::OnChunk(const ObjectID& id, const Status& st, std::string_view payload) {
  auto it = pulls_.find(id);
  if (it == pulls_.end()) return;
  Pull& p = it->second;
  --p.in_flight;
  if (p.failed) {
    if (p.in_flight == 0) Finish(id, p.error);
    return;
  }
  proto::ObjectChunk chunk;
  Status bad = st;
  if (bad.ok() && !rpc::ParsePayload(payload, &chunk)) {
    bad = DataLossError("malformed chunk of object " + id.Hex());
  }
  if (bad.ok() &&
      (chunk.total_size() < 0 || chunk.offset() < 0 ||
       chunk.offset() + static_cast<int64_t>(chunk.data().size()) > chunk.total_size() ||
       (p.total >= 0 && chunk.total_size() != p.total))) {
    bad = DataLossError("inconsistent chunk of object " + id.Hex() + " from " + p.source_address);
  }
  if (!bad.ok()) {
    p.failed = true;
    p.error = bad.WithContext("pulling object " + id.Hex() + " from " + p.source_address);
    if (p.in_flight == 0) Finish(id, p.error);
    return;
  }
  if (p.total < 0) {  // first chunk: create the local copy, then write it
    p.total = chunk.total_size();
    p.format = chunk.format();
    auto data = std::make_shared<proto::ObjectChunk>(std::move(chunk));
    store_->Create(kSelf, id, p.total, p.format, p.owner,
                   [this, id, data](const object_store::CreateResult& r) {
                     auto it = pulls_.find(id);
                     if (it == pulls_.end()) return;
                     Pull& p = it->second;
                     if (!r.status.ok()) {
                       Finish(id, r.status.WithContext("making room for object " + id.Hex() +
                                                       " pulled from " + p.source_address));
                       return;
                     }
                     if (r.already_exists) {  // created here meanwhile: that copy stands
                       Finish(id, Status::OK());
                       return;
                     }
                     p.created = true;
                     p.offset = r.offset;
                     Write(id, p, *data);
                   });
    return;
  }
  Write(id, p, chunk);
}

void ObjectManager::Write(const ObjectID& id, Pull& p, const proto::ObjectChunk& chunk) {
  std::memcpy(store_->base() + p.offset + chunk.offset(), chunk.data().data(), chunk.data().size());
  p.received += static_cast<int64_t>(chunk.data().size());
  if (p.received >= p.total && p.in_flight == 0) {
    Finish(id, Status::OK());
  } else {
    RequestChunks(id);
  }
}

void ObjectManager::Finish(ObjectID id, Status st) {
  auto it = pulls_.find(id);
  if (it == pulls_.end()) return;
  Pull p = std::move(it->second);
  pulls_.erase(it);
  if (p.created) {
    Status done = st.ok() ? store_->Seal(kSelf, id) : store_->Abort(kSelf, id);
    if (done.ok() && st.ok()) store_->MarkSecondary(id);
    if (!done.ok()) LUMEN_LOG(WARNING) << "pull of " << id.Hex() << ": " << done;
  }
  if (!st.ok()) LUMEN_LOG(WARNING) << st;
  for (auto& [weak, handle] : p.waiters) {
    auto conn = weak.lock();
    if (!conn) continue;
    if (st.ok()) {
      conn->Reply(handle, proto::Empty());
    } else {
      conn->ReplyError(handle, st);
    }
  }
}

// ---- serving -----------------------------------------------------------------------------

void ObjectManager::HandleReadChunk(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ReadChunkRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.object_id().size() != ObjectID::kSize ||
      req.offset() < 0 || req.length() <= 0 || req.length() > kChunkBytes) {
    c->ReplyError(f, InvalidArgumentError("malformed ReadObjectChunk"));
    return;
  }
  const ObjectID id = ObjectID::FromBinary(req.object_id());
  if (!store_->Contains(id)) {
    c->ReplyError(f, NotFoundError("object " + id.Hex() + " is not in the store of node " +
                                   self_address_ + " (freed, or never created here)"));
    return;
  }
  if (!req.requester_address().empty()) copied_to_[id].insert(req.requester_address());
  rpc::Frame handle = rpc::ReplyHandle(f);
  std::weak_ptr<rpc::Connection> weak = c;
  store_->Get(
      kSelf, {id}, kSourceGetTimeoutMs,
      [this, weak, handle, id, req](std::vector<object_store::GetEntry> entries) {
        auto conn = weak.lock();
        const object_store::GetEntry& e = entries[0];
        if (!e.found) {
          if (conn) {
            conn->ReplyError(
                handle, NotFoundError("object " + id.Hex() + " is not readable here: " + e.error));
          }
          return;
        }
        if (conn && req.offset() <= e.data_size) {
          proto::ObjectChunk chunk;
          chunk.set_total_size(e.data_size);
          chunk.set_format(e.format);
          chunk.set_offset(req.offset());
          int64_t n = std::min(req.length(), e.data_size - req.offset());
          chunk.set_data(reinterpret_cast<const char*>(store_->base() + e.offset + req.offset()),
                         static_cast<size_t>(n));
          conn->Reply(handle, chunk);
        } else if (conn) {
          conn->ReplyError(handle,
                           InvalidArgumentError("chunk offset past the end of " + id.Hex()));
        }
        store_->Release(kSelf, id);
      });
}

void ObjectManager::ForwardFree(const std::vector<ObjectID>& ids) {
  std::map<std::string, proto::ObjectIdList> by_node;
  for (const auto& id : ids) {
    auto it = copied_to_.find(id);
    if (it == copied_to_.end()) continue;
    for (const auto& address : it->second) by_node[address].add_object_ids(id.Binary());
    copied_to_.erase(it);
  }
  for (const auto& [address, list] : by_node) {
    auto conn = PeerConnection(address);
    if (!conn.ok()) {
      LUMEN_LOG(WARNING) << "cannot forward frees to " << address << ": " << conn.status();
      continue;
    }
    (*conn)->Send(rpc::kStoreFree, list);
  }
}

}  // namespace lumen::node
