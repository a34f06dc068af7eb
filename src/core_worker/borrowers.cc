#include "core_worker/borrowers.h"

#include <chrono>
#include <utility>

#include "common/config.h"
#include "common/logging.h"
#include "common/rpc/message_types.h"
#include "core_worker.pb.h"

namespace lumen::core {

BorrowerProtocol::BorrowerProtocol(ReferenceCounter* references, PeerConnections* peers,
                                   const proto::Address* self)
    : references_(references), peers_(peers), self_(self) {}

void BorrowerProtocol::Register(const ObjectID& id, const proto::Address& owner,
                                std::vector<ObjectID>* registrations) {
  if (registrations) registrations->push_back(id);
  const int pid = owner.pid();
  const bool in_task = registrations != nullptr;
  auto fail = [this, id, in_task](std::string why) {
    MutexLock lock(mu_);
    if (in_task) {
      failed_[id] = std::move(why);
    } else {
      LUMEN_LOG(WARNING) << "borrowed object " << id.Hex() << ": " << why;
    }
  };
  auto conn = peers_->Connect(owner);
  if (!conn.ok()) {
    fail("its owner (pid " + std::to_string(pid) + ") is unreachable: " + conn.status().message());
    return;
  }
  {
    MutexLock lock(mu_);
    ++pending_[id];
  }
  // Counted when sent: this worker may release the ref before the answer comes, and its
  // release must end this registration too.
  references_->AddRegistration(id);
  proto::BorrowerRequest req;
  req.set_object_id(id.Binary());
  *req.mutable_borrower() = *self_;
  (*conn)->Call(
      rpc::kAddBorrower, req,
      [this, id, pid, fail](const Status& st, std::string_view) {
        if (!st.ok()) {
          fail("its owner (pid " + std::to_string(pid) +
               ") did not register this worker as a borrower: " + st.message());
        }
        MutexLock lock(mu_);
        if (--pending_[id] <= 0) pending_.erase(id);
        cv_.NotifyAll();
      },
      Config::Get().borrower_ack_timeout_ms());
}

Status BorrowerProtocol::WaitForRegistrations(const std::vector<ObjectID>& ids) {
  if (ids.empty()) return Status::OK();
  auto settled = [&]() LUMEN_REQUIRES(mu_) {
    for (const auto& id : ids) {
      if (pending_.count(id)) return false;
    }
    return true;
  };
  MutexLock lock(mu_);
  // The calls themselves time out after borrower_ack_timeout_ms; this bound is a safety net.
  const auto limit = std::chrono::milliseconds(Config::Get().borrower_ack_timeout_ms() + 1000);
  Status st = Status::OK();
  if (!cv_.WaitFor(mu_, limit, settled)) {
    st = DeadlineExceededError("the owner of borrowed object " + ids.front().Hex() +
                               " did not acknowledge the borrow within " +
                               std::to_string(limit.count()) + " ms");
  }
  for (const auto& id : ids) {
    auto failed = failed_.find(id);
    if (failed == failed_.end()) continue;
    if (st.ok()) st = UnavailableError("borrowed object " + id.Hex() + ": " + failed->second);
    failed_.erase(failed);
  }
  return st;
}

void BorrowerProtocol::Release(const ObjectID& id, const proto::Address& owner,
                               int32_t registrations, bool connect) {
  if (registrations <= 0) return;  // the owner never counted this worker for it
  proto::BorrowerRequest req;
  req.set_object_id(id.Binary());
  *req.mutable_borrower() = *self_;
  req.set_registrations(registrations);
  rpc::ConnectionPtr conn = peers_->Cached(owner);
  if (!conn && connect) {
    auto c = peers_->Connect(owner);
    if (c.ok()) conn = *c;
  }
  if (conn) conn->Send(rpc::kRemoveBorrower, req);
}

Status BorrowerProtocol::HandOff(const std::vector<ObjectID>& refs, const proto::Address& borrower,
                                 const TaskID& task, std::vector<bool>* registered) {
  registered->assign(refs.size(), false);
  WorkerID who = WorkerID::FromBinary(borrower.worker_id());
  if (who == WorkerID::FromBinary(self_->worker_id())) return Status::OK();
  proto::ReturnedRefs going_home;  // refs `borrower` owns
  for (size_t i = 0; i < refs.size(); ++i) {
    const ObjectID& id = refs[i];
    if (references_->IsOwned(id)) {
      AddBorrower(id, borrower);
      (*registered)[i] = true;
      continue;
    }
    auto owner = references_->OwnerOf(id);
    if (!owner) continue;
    if (WorkerID::FromBinary(owner->worker_id()) == who) {
      going_home.add_object_ids(id.Binary());
      continue;
    }
    auto conn = peers_->Connect(*owner);
    if (!conn.ok()) {
      return UnavailableError("cannot hand object " + id.Hex() + " on: its owner (pid " +
                              std::to_string(owner->pid()) +
                              ") is unreachable: " + conn.status().message());
    }
    proto::BorrowerRequest req;
    req.set_object_id(id.Binary());
    *req.mutable_borrower() = borrower;
    proto::Empty ack;
    Status st =
        (*conn)->CallSync(rpc::kAddBorrower, req, &ack, Config::Get().borrower_ack_timeout_ms());
    if (!st.ok()) {
      return UnavailableError("cannot hand object " + id.Hex() + " on: its owner (pid " +
                              std::to_string(owner->pid()) +
                              ") did not register the receiver as a borrower: " + st.message());
    }
    (*registered)[i] = true;
  }
  if (going_home.object_ids_size() > 0) {
    going_home.set_task_id(task.Binary());
    auto conn = peers_->Connect(borrower);
    Status st = conn.status();
    proto::Empty ack;
    if (st.ok()) {
      st = (*conn)->CallSync(rpc::kPinReturnedRefs, going_home, &ack,
                             Config::Get().borrower_ack_timeout_ms());
    }
    if (!st.ok()) {
      return UnavailableError("cannot hand " + std::to_string(going_home.object_ids_size()) +
                              " object(s) back to their owner (pid " +
                              std::to_string(borrower.pid()) + "): " + st.message());
    }
  }
  return Status::OK();
}

void BorrowerProtocol::HandlePinReturnedRefs(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::ReturnedRefs req;
  if (!rpc::ParsePayload(f.payload, &req) || req.task_id().size() != TaskID::kSize) {
    c->ReplyError(f, InvalidArgumentError("malformed PinReturnedRefs"));
    return;
  }
  const TaskID task = TaskID::FromBinary(req.task_id());
  std::vector<ObjectID> pinned;
  for (const auto& b : req.object_ids()) {
    if (b.size() != ObjectID::kSize) continue;
    const ObjectID id = ObjectID::FromBinary(b);
    if (!references_->IsOwned(id)) continue;  // not ours (or already gone): nothing to keep
    references_->AddLocalRef(id);
    pinned.push_back(id);
  }
  {
    MutexLock lock(mu_);
    auto& pins = return_pins_[task];
    pins.insert(pins.end(), pinned.begin(), pinned.end());
  }
  c->Reply(f, proto::Empty());
}

void BorrowerProtocol::UnpinReturned(const TaskID& task) {
  std::vector<ObjectID> pinned;
  {
    MutexLock lock(mu_);
    auto it = return_pins_.find(task);
    if (it == return_pins_.end()) return;
    pinned = std::move(it->second);
    return_pins_.erase(it);
  }
  for (const auto& id : pinned) references_->RemoveLocalRef(id);
}

void BorrowerProtocol::AddBorrower(const ObjectID& id, const proto::Address& borrower) {
  references_->AddBorrower(id, WorkerID::FromBinary(borrower.worker_id()));
  {
    MutexLock lock(mu_);
    borrower_addresses_[WorkerID::FromBinary(borrower.worker_id())] = borrower;
  }
  // Only to watch its death: when the connection closes, it stops counting.
  peers_->Connect(borrower).status().IgnoreError();
}

void BorrowerProtocol::HandleAddBorrower(const rpc::ConnectionPtr& c, rpc::Frame& f) {
  proto::BorrowerRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) {
    c->ReplyError(f, InvalidArgumentError("malformed AddBorrower"));
    return;
  }
  if (req.borrower().worker_id() != self_->worker_id()) {
    AddBorrower(ObjectID::FromBinary(req.object_id()), req.borrower());
  }
  c->Reply(f, proto::Empty());
}

void BorrowerProtocol::HandleRemoveBorrower(const rpc::ConnectionPtr&, rpc::Frame& f) {
  proto::BorrowerRequest req;
  if (!rpc::ParsePayload(f.payload, &req)) return;
  references_->RemoveBorrower(ObjectID::FromBinary(req.object_id()),
                              WorkerID::FromBinary(req.borrower().worker_id()),
                              req.registrations());
}

void BorrowerProtocol::OnPeerClosed(const rpc::ConnectionPtr& conn) {
  std::vector<WorkerID> gone;
  {
    MutexLock lock(mu_);
    const std::string& key = conn->peer_name();
    for (auto it = borrower_addresses_.begin(); it != borrower_addresses_.end();) {
      if (peers_->KeyOf(it->second) == key) {
        gone.push_back(it->first);
        it = borrower_addresses_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& w : gone) references_->RemoveBorrowerEverywhere(w);
}

}  // namespace lumen::core
