// Lumen: remote tasks, stateful actors and distributed futures over a shared-memory object
// store — from one laptop to a cluster. The one header a program includes.
//
// @code
//   #include <lumen/lumen.h>
//
//   int Add(int a, int b) { return a + b; }
//   LUMEN_REMOTE(Add);
//
//   int main(int argc, char** argv) {
//     lumen::Init(argc, argv);   // embedded local cluster unless LUMEN_ADDRESS is set
//     std::cout << lumen::Get(lumen::Task(Add).Remote(1, 2)) << "\n";
//     lumen::Shutdown();
//   }
// @endcode
//
// Workers run this same binary: when the process is a worker, Init() does not return (it
// serves tasks until the cluster stops it). Keep code before Init() free of side effects.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lumen/actor.h"
#include "lumen/buffer.h"
#include "lumen/errors.h"
#include "lumen/generator.h"
#include "lumen/ids.h"
#include "lumen/object_ref.h"
#include "lumen/options.h"
#include "lumen/placement_group.h"
#include "lumen/remote.h"
#include "lumen/serialization.h"

namespace lumen {

// Connects to a cluster (options.address, LUMEN_ADDRESS or --lumen-address=host:port in argv)
// or starts an embedded one. Throws lumen::Error with the reason when it cannot.
void Init(int argc, char** argv, const InitOptions& options = {});
void Init(const InitOptions& options = {});

// Stops this driver: its workers and non-detached actors end; an embedded cluster shuts down.
void Shutdown();

bool IsInitialized();

// The current task's ID (the driver's root task ID in the driver), useful in logs.
TaskID CurrentTaskID();

// The session directory of the cluster this process belongs to: logs are in <dir>/logs.
std::string SessionDir();

// Usage of this node's shared-memory object store.
struct ObjectStoreStats {
  int64_t capacity = 0;   // bytes
  int64_t used = 0;       // bytes allocated now
  int64_t peak_used = 0;  // highest `used` since the node started
  int64_t pinned = 0;     // bytes mapped by readers right now
  int64_t num_objects = 0;
  int64_t spilled_bytes = 0;  // bytes on disk now
  int64_t num_spilled = 0;
  int64_t restored_bytes = 0;  // bytes read back from disk so far
  // Bytes of the store's memory in RAM: objects, and freed pages kept warm for reuse. Free
  // pages beyond the peak in use over the last ~10 s (+25 %, at least 64 MiB) are given back
  // to the kernel within a second or two.
  int64_t resident = 0;
  int64_t released_bytes = 0;  // free pages given back so far
};
ObjectStoreStats GetObjectStoreStats();

// A node of the cluster as the control service knows it (Ray's `ray.nodes()`).
struct NodeInfo {
  std::string node_id;  // hex
  std::string address;  // the node daemon's host:port
  bool alive = false;
  bool is_head = false;
  std::map<std::string, std::string> labels;
  std::map<std::string, double> resources_total;      // "CPU", "GPU", "memory", custom
  std::map<std::string, double> resources_available;  // as of the node's latest report
};
// Every node that is or was part of the cluster, alive or not. Throws lumen::Error when the
// control service cannot be reached.
std::vector<NodeInfo> Nodes();
// Totals over the alive nodes (Ray's `ray.cluster_resources()`).
std::map<std::string, double> ClusterResources();
// What is free now over the alive nodes (Ray's `ray.available_resources()`).
std::map<std::string, double> AvailableResources();

// Both of the above and the number of alive nodes, in one call.
struct ClusterResourceSummary {
  std::map<std::string, double> total;
  std::map<std::string, double> available;
  int num_nodes = 0;
};
ClusterResourceSummary GetClusterResources();

// Who and where the calling code runs: the driver, or a task or actor in a worker.
class RuntimeContext {
 public:
  const std::string& node_id() const { return node_id_; }      // hex
  const std::string& worker_id() const { return worker_id_; }  // hex
  const std::string& job_id() const { return job_id_; }        // hex
  // The running task's id; in the driver, its root task.
  const std::string& task_id() const { return task_id_; }
  // The actor this code runs in; empty outside actors.
  const std::string& actor_id() const { return actor_id_; }

 private:
  friend RuntimeContext GetRuntimeContext();
  std::string node_id_, worker_id_, job_id_, task_id_, actor_id_;
};
// Throws lumen::Error before Init().
RuntimeContext GetRuntimeContext();

}  // namespace lumen
