// Configuration structs of the public API, meant for designated initialisers:
//
//   lumen::Init({.num_cpus = 4, .object_store_memory = 2ll << 30});
//   lumen::Task(Train).Options({.num_gpus = 1, .max_retries = 0}).Remote(cfg);
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "lumen/placement_group.h"

namespace lumen {

// Where a task or actor runs (Ray's scheduling strategies).
// The default: pack on the submitter's node while it is below half used, then spread to the
// least-loaded node that can run it; prefer the node that holds most of the arguments' bytes.
struct DefaultScheduling {};
// Round-robin over the nodes that can run it.
struct SpreadScheduling {};
// On one node (its hex id, from lumen::Nodes() or GetRuntimeContext().node_id()). Hard: fails
// with lumen::Error when that node is dead or unknown; soft: any node then.
struct NodeAffinityScheduling {
  std::string node_id{};
  bool soft = false;
};
using SchedulingStrategy =
    std::variant<DefaultScheduling, SpreadScheduling, NodeAffinityScheduling>;
// Only nodes whose labels (`lumen start --labels zone=b,...`) include every key=value.
using LabelSelector = std::map<std::string, std::string>;

// The environment of the worker processes that run a task or actor (Ray's runtime_env).
// Workers are shared only by work of the same environment; tasks a task submits inherit its
// environment unless they give their own.
struct RuntimeEnv {
  std::map<std::string, std::string> env_vars{};  // set in the worker's environment
  // A directory on the submitting machine: sent to every node that runs the work (stored by
  // content, at most 500 MiB) and the worker's current directory there.
  std::string working_dir{};
};

struct InitOptions {
  // Control service address ("host:port") of a cluster started with `lumen start`. Empty: the
  // LUMEN_ADDRESS environment variable or --lumen-address=...; if none, an embedded local
  // cluster starts inside this process.
  std::string address{};
  // Embedded cluster only: resources of the local node.
  double num_cpus = -1;  // -1: the number of hardware threads
  double num_gpus = 0;
  std::map<std::string, double> resources{};  // custom resources, e.g. {{"accelerator", 2}}
  int64_t object_store_memory = 0;            // bytes; 0: 30% of physical memory
  // Logging: "debug", "info", "warning", "error". Empty: LUMEN_LOG_LEVEL, else "warning".
  std::string log_level{};
  // Cluster token when joining a cluster. Empty: LUMEN_TOKEN, else the `token` file of the
  // newest session under /tmp/lumen.
  std::string token{};
  // Where embedded clusters create their session directory (logs, sockets, spill files), and
  // where the token of a `lumen start` cluster is looked up. LUMEN_SESSION_ROOT overrides the
  // default.
  std::string session_root = "/tmp/lumen";
  // The namespace of this job's named actors (Ray's namespace): jobs in one namespace find each
  // other's named actors by name. Empty: LUMEN_NAMESPACE, else a namespace of this job alone.
  std::string namespace_{};
};

// Options of a task call. Resources default to 1 CPU.
struct TaskOptions {
  double num_cpus = 1;
  double num_gpus = 0;
  int64_t memory = 0;                         // bytes of RAM the task needs (placement)
  std::map<std::string, double> resources{};  // custom resources; "CPU"/"GPU" here override
  int max_retries = 3;                        // re-runs: worker died, or a result was lost
  bool retry_exceptions = false;              // also re-run when user code throws
  std::string name{};                         // shown in errors and logs
  SchedulingStrategy scheduling{};
  LabelSelector label_selector{};
  // Inside a placement group: only bundle `bundle_index`'s resources (-1: any bundle with
  // room); waits while the group is pending. The scheduling strategy then does not apply.
  PlacementGroup placement_group{};
  int bundle_index = -1;
  RuntimeEnv runtime_env{};
  // Streaming tasks (lumen::Yield): at most this many values produced and not yet taken by
  // the caller before the generator waits (Ray's _generator_backpressure_num_objects); <= 0:
  // no limit.
  int64_t generator_backpressure_num_objects = -1;
};

// Ray's num_returns for a function that returns std::tuple<A, B, ...>: each element becomes
// an object of its own, with its own lifetime and location (a large first element can stay on
// the worker's node while a small second one is fetched):
//
//   auto [weights, loss] =
//       lumen::Task(Train).Options({.num_returns = lumen::kSplitTuple}).Remote(cfg);
//
// gives std::tuple<ObjectRef<A>, ObjectRef<B>, ...>. The other fields are TaskOptions'.
struct SplitTuple {
  explicit constexpr SplitTuple(int) {}
};
inline constexpr SplitTuple kSplitTuple{0};

// TaskOptions with `.num_returns = lumen::kSplitTuple` first (the field cannot be left out, so
// `Options({.num_cpus = 2})` still means TaskOptions). Keep the fields in step with TaskOptions.
struct SplitTaskOptions {
  SplitTuple num_returns;
  double num_cpus = 1;
  double num_gpus = 0;
  int64_t memory = 0;
  std::map<std::string, double> resources{};
  int max_retries = 3;
  bool retry_exceptions = false;
  std::string name{};
  SchedulingStrategy scheduling{};
  LabelSelector label_selector{};
  PlacementGroup placement_group{};
  int bundle_index = -1;
  RuntimeEnv runtime_env{};

  TaskOptions task_options() const {
    return {.num_cpus = num_cpus,
            .num_gpus = num_gpus,
            .memory = memory,
            .resources = resources,
            .max_retries = max_retries,
            .retry_exceptions = retry_exceptions,
            .name = name,
            .scheduling = scheduling,
            .label_selector = label_selector,
            .placement_group = placement_group,
            .bundle_index = bundle_index,
            .runtime_env = runtime_env};
  }
};

// How long an actor lives (Ray's lifetime="detached").
enum class ActorLifetime {
  kDefault,   // until lumen::Kill, its creator's last handle (if never shared) or its job's end
  kDetached,  // outlives its job: until lumen::Kill or `lumen actor kill NAME`
};

// Options of an actor. By default an actor needs no CPU while it lives (like Ray), so any
// number of actors fit on a node; give num_cpus to reserve cores for it.
struct ActorOptions {
  std::string name{};  // a name makes the actor reachable with lumen::GetActor<T>(name)
  // The namespace the name is registered in; empty: the job's (InitOptions::namespace_).
  std::string namespace_{};
  ActorLifetime lifetime = ActorLifetime::kDefault;
  double num_cpus = 0;
  double num_gpus = 0;
  int64_t memory = 0;
  std::map<std::string, double> resources{};
  int max_restarts = 0;  // restarts of a dead actor process (-1: unlimited)
  // Re-sends of each call interrupted by a restart (running or queued at the actor when it
  // died) to the new instance, in the caller's order (-1: unlimited). Past it, or with 0, such
  // a call fails with ActorDiedError saying whether it was running or queued.
  int max_task_retries = 0;
  int max_concurrency = 1;  // > 1: calls run concurrently on a thread pool in the actor
  // Named thread pools beside that default one (Ray's concurrency groups): {{"io", 4}} runs the
  // methods put in group "io" (LUMEN_CONCURRENCY_GROUP, or a call's ActorCallOptions) on 4
  // threads of their own, so they run while the other methods are busy.
  std::map<std::string, int> concurrency_groups{};
  SchedulingStrategy scheduling{};
  LabelSelector label_selector{};
  PlacementGroup placement_group{};  // as for tasks
  int bundle_index = -1;
  RuntimeEnv runtime_env{};  // as for tasks (the actor's process)
};

// Options of one actor call.
struct ActorCallOptions {
  // The actor's concurrency group to run it in; empty: the method's (LUMEN_CONCURRENCY_GROUP),
  // else the default pool.
  std::string concurrency_group{};
  // A streaming method (lumen::Yield): as TaskOptions::generator_backpressure_num_objects.
  int64_t generator_backpressure_num_objects = -1;
};

}  // namespace lumen
