// Jobs submitted to the cluster (`lumen job submit`): the control service's table of them and
// the requests of the `lumen job` commands. A submitted job's driver runs on the head node
// (node/driver_runner.h starts it from the program stored by content, common/binary_store.h);
// the table says where it is (pending, running, succeeded, failed with its exit code,
// stopped), and log reads are passed to the node that holds the driver's output.
//
// Thread safety: owned by the control service's loop thread; every method runs there.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>

#include "common/rpc/connection.h"
#include "gcs.pb.h"
#include "lumen/ids.h"

namespace lumen::gcs {

class JobSubmissions {
 public:
  struct Hooks {
    // The alive head node, or Nil.
    std::function<NodeID()> head;
    // A connection to a node daemon; null when it is dead or unreachable.
    std::function<rpc::ConnectionPtr(const NodeID&)> node;
    // The control service's TCP address, for the drivers it starts.
    std::function<std::string()> address;
  };

  explicit JobSubmissions(Hooks hooks) : hooks_(std::move(hooks)) {}

  void HandleSubmit(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleList(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleGet(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleLogs(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStop(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // From the node daemon that ran a driver.
  void HandleDriverExited(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Drivers on a dead node are over.
  void OnNodeDead(const NodeID& node);

 private:
  void Finish(proto::SubmittedJob& job, int exit_code, const std::string& message, bool stopped);

  const Hooks hooks_;
  std::map<std::string, proto::SubmittedJob> jobs_;  // by submission id
};

}  // namespace lumen::gcs
