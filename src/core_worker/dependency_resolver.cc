#include "core_worker/dependency_resolver.h"

#include <atomic>

#include "common/config.h"
#include "core_worker/core_worker.h"
#include "core_worker/owner_fetch.h"

namespace lumen::core {

void DependencyResolver::Resolve(std::shared_ptr<proto::TaskSpec> spec, Done done) {
  std::vector<ObjectID> deps;
  for (const auto& arg : spec->args()) {
    if (arg.has_ref()) deps.push_back(ObjectID::FromBinary(arg.ref().object_id()));
  }
  if (deps.empty()) {
    done(nullptr);
    return;
  }
  auto remaining = std::make_shared<std::atomic<size_t>>(deps.size());
  for (const auto& id : deps) {
    if (!cw_.references().IsOwned(id)) cw_.owner_fetch().Fetch(id);
    cw_.memory_store().OnReady(id, [this, spec, done, remaining](const StoredObjectPtr&) {
      if (remaining->fetch_sub(1) == 1) Finish(spec, done);
    });
  }
}

void DependencyResolver::Finish(const std::shared_ptr<proto::TaskSpec>& spec, const Done& done) {
  for (auto& arg : *spec->mutable_args()) {
    if (!arg.has_ref()) continue;
    ObjectID id = ObjectID::FromBinary(arg.ref().object_id());
    StoredObjectPtr obj = cw_.memory_store().Get(id);
    if (!obj) continue;  // deleted meanwhile: the executor reports it lost
    if (obj->is_error()) {
      proto::ErrorInfo err;
      err.ParseFromString(obj->data);
      done(&err);
      return;
    }
    if (obj->in_plasma) {
      arg.set_node_id(obj->node.Binary());
      arg.set_size(obj->size);
    } else {
      proto::InlineValue* v = arg.mutable_value();  // replaces the ref (oneof)
      v->set_format(static_cast<proto::ValueFormat>(obj->format));
      v->set_data(obj->data);
    }
  }
  done(nullptr);
}

}  // namespace lumen::core
