#include "core_worker/owner_fetch.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "common/config.h"
#include "common/rpc/message_types.h"
#include "core_worker.pb.h"

namespace lumen::core {

OwnerFetch::OwnerFetch(rpc::EventLoop* io, MemoryStore* memory_store, ReferenceCounter* references,
                       PeerConnections* peers, const std::atomic<bool>* stopping,
                       StoreErrorFn store_error)
    : io_(io),
      memory_store_(memory_store),
      references_(references),
      peers_(peers),
      stopping_(stopping),
      store_error_(std::move(store_error)) {}

void OwnerFetch::Fetch(const ObjectID& id) { Fetch(id, NodeID::Nil()); }

void OwnerFetch::Fetch(const ObjectID& id, const NodeID& lost_node) {
  if (memory_store_->Contains(id)) return;
  auto owner = references_->OwnerOf(id);
  if (!owner) return;
  {
    MutexLock lock(mu_);
    if (!asking_.insert(id).second) return;
  }
  Ask(id, *owner, lost_node);
}

void OwnerFetch::Ask(const ObjectID& id, const proto::Address& owner, const NodeID& lost_node) {
  auto done = [this, id] {
    MutexLock lock(mu_);
    asking_.erase(id);
  };
  auto fail = [this, id, done](proto::ErrorType type, const std::string& msg) {
    done();
    proto::ErrorInfo err;
    err.set_type(type);
    err.set_message(msg);
    store_error_({id}, err);
  };
  const std::string who =
      "the owner of object " + id.Hex() + " (pid " + std::to_string(owner.pid()) + ")";
  auto conn = peers_->Connect(owner);
  if (!conn.ok()) {
    fail(proto::OWNER_DIED, who + " is unreachable: " + conn.status().message());
    return;
  }
  proto::GetObjectStatusRequest req;
  req.set_object_id(id.Binary());
  if (!lost_node.IsNil()) req.set_lost_node(lost_node.Binary());
  // The owner answers when the object is ready, or PENDING after its poll window; silence for
  // owner_reply_timeout_ms means it is dead or stuck, and no wait hangs on it.
  const int64_t timeout_ms = Config::Get().owner_reply_timeout_ms();
  (*conn)->Call(
      rpc::kGetObjectStatus, req,
      [this, id, owner, who, fail, done, timeout_ms](const Status& st, std::string_view payload) {
        proto::GetObjectStatusReply reply;
        if (st.code() == StatusCode::kDeadlineExceeded) {
          fail(proto::OWNER_DIED, who + " did not answer within " + std::to_string(timeout_ms) +
                                      " ms (stuck or overloaded)");
          return;
        }
        if (!st.ok() || !rpc::ParsePayload(payload, &reply)) {
          fail(proto::OWNER_DIED, who + " died: " + st.message());
          return;
        }
        switch (reply.status()) {
          case proto::GetObjectStatusReply::FREED:
            fail(proto::OBJECT_LOST, "object " + id.Hex() + " was already freed by its owner");
            return;
          case proto::GetObjectStatusReply::PENDING:
            if (references_->Has(id) && !stopping_->load()) {
              Ask(id, owner, NodeID::Nil());
            } else {
              done();
            }
            return;
          default:
            break;
        }
        auto obj = std::make_shared<StoredObject>();
        if (reply.in_plasma()) {
          obj->in_plasma = true;
          obj->node = NodeID::FromBinary(reply.node_id());
          obj->size = reply.size();
        } else {
          obj->format = static_cast<internal::ValueFormat>(reply.value().format());
          obj->data = reply.value().data();
        }
        done();
        if (references_->Has(id)) memory_store_->Put(id, obj);
      },
      timeout_ms);
}

void OwnerFetch::HandleGetObjectStatus(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::GetObjectStatusRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed GetObjectStatus"));
    return;
  }
  ObjectID id = ObjectID::FromBinary(req.object_id());
  if (!references_->IsOwned(id) && !memory_store_->Contains(id)) {
    proto::GetObjectStatusReply reply;
    reply.set_status(proto::GetObjectStatusReply::FREED);
    c->Reply(f, reply);
    return;
  }
  if (!req.lost_node().empty() && lost_hook_ && references_->IsOwned(id)) {
    // Answered once the owner has checked the report (and re-created the object if the node
    // is dead): the request is handled again without it.
    const NodeID lost = NodeID::FromBinary(req.lost_node());
    req.clear_lost_node();
    auto body = std::make_shared<std::string>(req.SerializeAsString());
    auto frame = std::make_shared<rpc::Frame>(rpc::ReplyHandle(f));
    std::weak_ptr<rpc::Connection> weak = c;
    lost_hook_(id, lost, [this, weak, frame, body] {
      frame->payload = *body;
      if (auto conn = weak.lock()) HandleGetObjectStatus(conn, *frame);
    });
    return;
  }
  rpc::Frame handle = rpc::ReplyHandle(f);
  std::weak_ptr<rpc::Connection> weak = c;
  auto replied = std::make_shared<std::atomic<bool>>(false);
  auto reply_with = [weak, handle, replied](const StoredObjectPtr& obj) {
    auto conn = weak.lock();
    if (!conn || replied->exchange(true)) return;
    proto::GetObjectStatusReply reply;
    if (!obj) {
      reply.set_status(proto::GetObjectStatusReply::PENDING);
    } else if (obj->in_plasma) {
      reply.set_in_plasma(true);
      reply.set_node_id(obj->node.Binary());
      reply.set_size(obj->size);
    } else {
      reply.mutable_value()->set_format(static_cast<proto::ValueFormat>(obj->format));
      reply.mutable_value()->set_data(obj->data);
    }
    conn->Reply(handle, reply);
  };
  memory_store_->OnReady(id, reply_with);  // answers at once when the value is here
  if (replied->load()) return;
  io_->RunAfter(std::chrono::milliseconds(Config::Get().owner_status_poll_ms()),
                [reply_with] { reply_with(nullptr); });
}

}  // namespace lumen::core
