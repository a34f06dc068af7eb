// Waits for the ObjectRef arguments of a task and then rewrites them: small values are copied
// into the task spec (they travel inline with the push), large ones keep their reference plus
// the node holding them. A failed dependency fails the task with the same error.
//
// Thread safety: thread-safe; `done` runs on the thread that completed the last dependency.
#pragma once

#include <functional>
#include <memory>

#include "common.pb.h"

namespace lumen::core {

class CoreWorker;

class DependencyResolver {
 public:
  // `dep_error` is null on success, else the error of a failed argument.
  using Done = std::function<void(const proto::ErrorInfo* dep_error)>;

  explicit DependencyResolver(CoreWorker& cw) : cw_(cw) {}
  void Resolve(std::shared_ptr<proto::TaskSpec> spec, Done done);

 private:
  void Finish(const std::shared_ptr<proto::TaskSpec>& spec, const Done& done);

  CoreWorker& cw_;
};

}  // namespace lumen::core
