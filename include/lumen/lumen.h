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

#include "lumen/actor.h"
#include "lumen/buffer.h"
#include "lumen/errors.h"
#include "lumen/ids.h"
#include "lumen/object_ref.h"
#include "lumen/options.h"
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
};
ObjectStoreStats GetObjectStoreStats();

// Resources of the cluster: totals and what is free now ("CPU", "GPU", "memory", ...).
struct ClusterResources {
  std::map<std::string, double> total;
  std::map<std::string, double> available;
  int num_nodes = 0;
};
ClusterResources GetClusterResources();

}  // namespace lumen
