#include "node/object_manager.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "common/config.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"

namespace lumen::node {

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
  LUMEN_ASSIGN_OR_RETURN(auto conn,
                         rpc::ConnectInBackground(loop_, address, &peer_dispatcher_, token_));
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
  p.origin_address = p.source_address;
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
  // The first chunk tells the size; the rest go out a few at a time once the copy exists, and
  // arrive straight into it.
  const bool first = p.total < 0;
  while (!p.failed && p.in_flight < (first ? 1 : kChunksInFlight) &&
         (first ? p.next_offset == 0 : p.next_offset < p.total)) {
    const int64_t offset = p.next_offset;
    const int64_t length = first ? kChunkBytes : std::min(kChunkBytes, p.total - offset);
    proto::ReadChunkRequest req;
    req.set_object_id(id.Binary());
    req.set_offset(offset);
    req.set_length(length);
    req.set_requester_address(self_address_);
    p.next_offset += length;
    ++p.in_flight;
    if (first) {
      req.set_allow_redirect(!p.redirected && !p.fell_back);
      p.source->Call(
          rpc::kReadObjectChunk, req,
          [this, id](const Status& st, std::string_view payload) { OnChunk(id, st, payload); },
          Config::Get().object_chunk_timeout_ms());
      break;
    }
    req.set_zero_copy(true);
    char* dest = reinterpret_cast<char*>(store_->base() + p.offset + offset);
    p.source->CallInto(
        rpc::kReadObjectChunk, req, dest, static_cast<size_t>(length),
        [this, id, offset, length](const Status& st, std::string_view head, size_t raw) {
          OnRawChunk(id, offset, length, st, head, raw);
        },
        Config::Get().object_chunk_timeout_ms());
  }
}

void ObjectManager::Fail(const ObjectID& id, Pull& p, Status st) {
  if (!p.failed) {
    p.failed = true;
    p.error = st.WithContext("pulling object " + id.Hex() + " from " + p.source_address);
  }
  if (p.in_flight == 0) AfterFailure(id, p);
}

void ObjectManager::AfterFailure(const ObjectID& id, Pull& p) {
  if (!p.redirected || p.fell_back) {
    Finish(id, p.error);
    return;
  }
  // The node it was sent to failed: the origin sends what is still missing.
  LUMEN_LOG(WARNING) << p.error << "; reading the rest from " << p.origin_address;
  SendDone(id, p);
  p.fell_back = true;
  p.failed = false;
  p.error = Status::OK();
  p.source_address = p.origin_address;
  auto conn = PeerConnection(p.origin_address);
  if (!conn.ok()) {
    Finish(id, conn.status().WithContext("pulling object " + id.Hex() + " from the node at " +
                                         p.origin_address));
    return;
  }
  p.source = *conn;
  p.ahead.clear();
  if (p.created) {
    p.next_offset = p.contiguous;
  } else {
    p.total = -1;
    p.next_offset = 0;
  }
  RequestChunks(id);
}

void ObjectManager::SendDone(const ObjectID& id, const Pull& p) {
  if (!p.source || p.source->closed()) return;
  proto::ObjectIdList done;
  done.add_object_ids(id.Binary());
  p.source->Send(rpc::kReadObjectDone, done);
}

void ObjectManager::Redirect(const ObjectID& id, Pull& p, const std::string& address) {
  p.redirected = true;
  ++stats_.pulls_redirected;
  p.next_offset = 0;
  auto conn = PeerConnection(address);
  if (!conn.ok()) {  // read it from the origin after all
    LUMEN_LOG(WARNING) << "cannot reach " << address << " (serving object " << id.Hex()
                       << "): " << conn.status() << "; reading it from " << p.origin_address;
    p.fell_back = true;
  } else {
    p.source = *conn;
    p.source_address = address;
  }
  RequestChunks(id);
}

void ObjectManager::Progress(const ObjectID& id, Pull& p) {
  if (p.contiguous >= p.total && p.in_flight == 0) {
    Finish(id, Status::OK());
  } else {
    RequestChunks(id);
  }
}

void ObjectManager::MarkReceived(Pull& p, int64_t offset, int64_t length) {
  p.ahead[offset] = length;
  while (!p.ahead.empty() && p.ahead.begin()->first <= p.contiguous) {
    p.contiguous = std::max(p.contiguous, p.ahead.begin()->first + p.ahead.begin()->second);
    p.ahead.erase(p.ahead.begin());
  }
  if (!p.reads.empty()) ServeDeferred(p);
}

ObjectManager::Pull* ObjectManager::ChunkBack(const ObjectID& id) {
  auto it = pulls_.find(id);
  if (it == pulls_.end()) return nullptr;
  Pull& p = it->second;
  --p.in_flight;
  if (p.failed) {
    if (p.in_flight == 0) AfterFailure(id, p);
    return nullptr;
  }
  return &p;
}

Status ObjectManager::ParseChunk(const ObjectID& id, const Status& st, std::string_view payload,
                                 proto::ObjectChunk* chunk) {
  if (st.ok() && !rpc::ParsePayload(payload, chunk)) {
    return DataLossError("malformed chunk of object " + id.Hex());
  }
  return st;
}

void ObjectManager::OnChunk(const ObjectID& id, const Status& st, std::string_view payload) {
  Pull* pull = ChunkBack(id);
  if (!pull) return;
  Pull& p = *pull;
  proto::ObjectChunk chunk;
  Status bad = ParseChunk(id, st, payload, &chunk);
  if (bad.ok() && !chunk.redirect_address().empty()) {
    if (!p.redirected && !p.fell_back && chunk.redirect_address() != self_address_) {
      Redirect(id, p, chunk.redirect_address());
      return;
    }
    bad = DataLossError("unexpected redirect of object " + id.Hex() + " to " +
                        chunk.redirect_address());
  }
  if (bad.ok() &&
      (chunk.total_size() < 0 || chunk.offset() != 0 ||
       static_cast<int64_t>(chunk.data().size()) > std::min(chunk.total_size(), kChunkBytes))) {
    bad = DataLossError("inconsistent first chunk of object " + id.Hex());
  }
  if (!bad.ok()) {
    Fail(id, p, bad);
    return;
  }
  // The first chunk: create the local copy, then write it.
  p.total = chunk.total_size();
  p.format = chunk.format();
  auto data = std::make_shared<proto::ObjectChunk>(std::move(chunk));
  store_->Create(
      kSelf, id, p.total, p.format, p.owner, [this, id, data](const object_store::CreateResult& r) {
        auto it = pulls_.find(id);
        if (it == pulls_.end()) return;
        Pull& p = it->second;
        if (!r.status.ok()) {
          Finish(id, r.status.WithContext("making room for object " + id.Hex() + " pulled from " +
                                          p.source_address));
          return;
        }
        if (r.already_exists) {  // created here meanwhile: that copy stands
          Finish(id, Status::OK());
          return;
        }
        p.created = true;
        p.offset = r.offset;
        const auto n = static_cast<int64_t>(data->data().size());
        std::memcpy(store_->base() + p.offset, data->data().data(), static_cast<size_t>(n));
        p.next_offset = n;  // the rest starts after what the first chunk carried
        stats_.bytes_received += n;
        MarkReceived(p, 0, n);
        Progress(id, p);
      });
}

void ObjectManager::HandlePromoteCopy(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ObjectIdList req;
  if (!rpc::ParsePayload(f.payload, &req) || req.object_ids_size() != 1 ||
      req.object_ids(0).size() != ObjectID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed PromoteCopy"));
    return;
  }
  const ObjectID id = ObjectID::FromBinary(req.object_ids(0));
  if (!store_->MarkPrimary(id)) {
    c->ReplyError(f, NotFoundError("no complete copy of object " + id.Hex() + " here"));
    return;
  }
  c->Reply(f, proto::Empty());
}

void ObjectManager::OnRawChunk(const ObjectID& id, int64_t offset, int64_t length, const Status& st,
                               std::string_view head, size_t raw) {
  Pull* pull = ChunkBack(id);
  if (!pull) return;
  Pull& p = *pull;
  proto::ObjectChunk chunk;
  Status bad = ParseChunk(id, st, head, &chunk);
  // A source may answer without zero copy (the bytes in `data`); either way exactly the
  // range asked for must arrive.
  if (bad.ok() && (chunk.total_size() != p.total || chunk.offset() != offset ||
                   static_cast<int64_t>(raw + chunk.data().size()) != length ||
                   (raw > 0 && !chunk.data().empty()))) {
    bad = DataLossError("inconsistent chunk of object " + id.Hex() + " from " + p.source_address);
  }
  if (!bad.ok()) {
    Fail(id, p, bad);
    return;
  }
  if (!chunk.data().empty()) {
    std::memcpy(store_->base() + p.offset + offset, chunk.data().data(), chunk.data().size());
  }
  stats_.bytes_received += length;
  MarkReceived(p, offset, length);
  Progress(id, p);
}

void ObjectManager::Finish(ObjectID id, Status st) {
  auto it = pulls_.find(id);
  if (it == pulls_.end()) return;
  Pull p = std::move(it->second);
  pulls_.erase(it);
  SendDone(id, p);
  bool sealed = false;
  if (p.created) {
    Status done = st.ok() ? store_->Seal(kSelf, id) : store_->Abort(kSelf, id);
    sealed = done.ok() && st.ok();
    if (sealed) store_->MarkSecondary(id);
    if (!done.ok()) LUMEN_LOG(WARNING) << "pull of " << id.Hex() << ": " << done;
  }
  if (!st.ok()) LUMEN_LOG(WARNING) << st;
  // Peers that read the copy while it arrived keep it pinned, as if they had read it sealed.
  for (const rpc::Connection* conn : p.partial_readers) {
    auto r = readers_.find(conn);
    if (!sealed || r == readers_.end()) continue;
    const object_store::ClientId client = r->second.client;
    store_->Get(client, {id}, 0, [this, conn, client, id](std::vector<object_store::GetEntry> e) {
      if (!e[0].found) return;
      auto r = readers_.find(conn);
      if (r != readers_.end() && r->second.client == client) {
        ++r->second.pins[id];
      } else {
        store_->Release(client, id);
      }
    });
  }
  for (DeferredRead& read : p.reads) {  // what was not in when the pull ended
    auto conn = read.conn.lock();
    if (!conn) continue;
    conn->ReplyError(
        read.handle,
        st.ok() ? InvalidArgumentError("chunk offset past the end of " + id.Hex()) : st);
  }
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

ObjectManager::Reader& ObjectManager::ReaderFor(const rpc::ConnectionPtr& c) {
  Reader& reader = readers_[c.get()];
  if (reader.client == 0) reader.client = next_peer_client_++;
  return reader;
}

void ObjectManager::SendChunk(const rpc::ConnectionPtr& c, const rpc::Frame& handle,
                              const proto::ReadChunkRequest& req, int64_t base_offset, int64_t size,
                              int32_t format) {
  const int64_t n = std::min(req.length(), size - req.offset());
  stats_.bytes_sent += n;
  proto::ObjectChunk chunk;
  chunk.set_total_size(size);
  chunk.set_format(format);
  chunk.set_offset(req.offset());
  if (req.zero_copy()) {
    c->ReplyWithFileRange(handle, chunk, store_->fd(), base_offset + req.offset(),
                          static_cast<size_t>(n));
    return;
  }
  chunk.set_data(reinterpret_cast<const char*>(store_->base() + base_offset + req.offset()),
                 static_cast<size_t>(n));
  c->Reply(handle, chunk);
}

void ObjectManager::ServePartial(const rpc::ConnectionPtr& c, const rpc::Frame& handle,
                                 const proto::ReadChunkRequest& req, Pull& p) {
  if (p.created && (req.offset() > p.total || (req.offset() == p.total && p.total > 0))) {
    c->ReplyError(handle, InvalidArgumentError("chunk offset past the end of an object"));
    return;
  }
  if (p.created && std::min(req.offset() + req.length(), p.total) <= p.contiguous) {
    if (req.zero_copy()) {  // pinned for the reader when the copy is sealed
      ReaderFor(c);
      p.partial_readers.insert(c.get());
    }
    SendChunk(c, handle, req, p.offset, p.total, p.format);
    return;
  }
  p.reads.push_back({c, handle, req});
}

void ObjectManager::ServeDeferred(Pull& p) {
  std::vector<DeferredRead> reads;
  reads.swap(p.reads);
  for (DeferredRead& read : reads) {
    auto conn = read.conn.lock();
    if (conn && !conn->closed()) ServePartial(conn, read.handle, read.req, p);
  }
}

void ObjectManager::HandleReadChunk(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ReadChunkRequest req;
  if (!rpc::ParsePayload(f.payload, &req) || req.object_id().size() != ObjectID::kSize ||
      req.offset() < 0 || req.length() <= 0 || req.length() > kChunkBytes) {
    c->ReplyError(f, InvalidArgumentError("malformed ReadObjectChunk"));
    return;
  }
  const ObjectID id = ObjectID::FromBinary(req.object_id());
  if (!req.requester_address().empty()) copied_to_[id].insert(req.requester_address());
  rpc::Frame handle = rpc::ReplyHandle(f);
  auto pull = pulls_.find(id);
  if (pull != pulls_.end()) {  // arriving here: served as its bytes come in
    ServePartial(c, handle, req, pull->second);
    return;
  }
  // An object still being written here is served once sealed: its creator's seal and the
  // task result that sent this reader here travel on different connections, so the read may
  // come first.
  if (!store_->Known(id)) {
    c->ReplyError(f, NotFoundError("object " + id.Hex() + " is not in the store of node " +
                                   self_address_ + " (freed, or never created here)"));
    return;
  }
  std::weak_ptr<rpc::Connection> weak = c;
  if (req.zero_copy()) {
    // Pinned for this peer until it is done with the object: sendfile leaves the pages to
    // the kernel, which may read them after the reply has been handed over.
    const object_store::ClientId client = ReaderFor(c).client;
    store_->Get(client, {id}, Config::Get().object_source_wait_ms(),
                [this, weak, handle, id, req, client](std::vector<object_store::GetEntry> entries) {
                  const object_store::GetEntry& e = entries[0];
                  auto conn = weak.lock();
                  auto r = conn ? readers_.find(conn.get()) : readers_.end();
                  if (r == readers_.end() || r->second.client != client) {  // peer gone
                    if (e.found) store_->Release(client, id);
                    return;
                  }
                  if (!e.found) {
                    conn->ReplyError(handle, NotFoundError("object " + id.Hex() +
                                                           " is not readable here: " + e.error));
                    return;
                  }
                  if (req.offset() >= e.data_size) {
                    store_->Release(client, id);
                    conn->ReplyError(
                        handle, InvalidArgumentError("chunk offset past the end of " + id.Hex()));
                    return;
                  }
                  ++r->second.pins[id];
                  SendChunk(conn, handle, req, e.offset, e.data_size, e.format);
                });
    return;
  }
  store_->Get(
      kSelf, {id}, Config::Get().object_source_wait_ms(),
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
          if (req.offset() == 0 && e.data_size > kChunkBytes && !req.requester_address().empty()) {
            auto reading = reading_.find(id);
            if (req.allow_redirect() && reading != reading_.end() &&
                reading->second.conn != conn.get() &&
                reading->second.address != req.requester_address()) {
              proto::ObjectChunk redirect;  // that node sends it on
              redirect.set_redirect_address(reading->second.address);
              conn->Reply(handle, redirect);
              store_->Release(kSelf, id);
              return;
            }
            reading_[id] = {conn.get(), req.requester_address()};
          }
          SendChunk(conn, handle, req, e.offset, e.data_size, e.format);
        } else if (conn) {
          conn->ReplyError(handle,
                           InvalidArgumentError("chunk offset past the end of " + id.Hex()));
        }
        store_->Release(kSelf, id);
      });
}

void ObjectManager::HandleReadDone(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ObjectIdList list;
  if (!rpc::ParsePayload(f.payload, &list)) return;
  auto r = readers_.find(c.get());
  for (const auto& bin : list.object_ids()) {
    if (bin.size() != ObjectID::kSize) continue;
    const ObjectID id = ObjectID::FromBinary(bin);
    auto reading = reading_.find(id);
    if (reading != reading_.end() && reading->second.conn == c.get()) reading_.erase(reading);
    auto pull = pulls_.find(id);
    if (pull != pulls_.end()) pull->second.partial_readers.erase(c.get());
    if (r == readers_.end()) continue;
    auto pin = r->second.pins.find(id);
    if (pin == r->second.pins.end()) continue;
    for (int i = 0; i < pin->second; ++i) store_->Release(r->second.client, id);
    r->second.pins.erase(pin);
  }
}

void ObjectManager::NodeDied(const std::string& address) {
  auto it = peers_.find(address);
  if (it == peers_.end()) return;
  rpc::ConnectionPtr conn = it->second;
  peers_.erase(it);
  // Every call in flight on it fails, which fails (or sends back to their origin) its pulls.
  conn->Close(UnavailableError("the node at " + address + " was declared dead"));
}

void ObjectManager::PeerClosed(const rpc::ConnectionPtr& c) {
  for (auto it = reading_.begin(); it != reading_.end();) {
    it = it->second.conn == c.get() ? reading_.erase(it) : std::next(it);
  }
  for (auto& [id, pull] : pulls_) pull.partial_readers.erase(c.get());
  auto r = readers_.find(c.get());
  if (r == readers_.end()) return;
  store_->ClientGone(r->second.client);
  readers_.erase(r);
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
