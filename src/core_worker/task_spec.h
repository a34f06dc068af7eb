// What a submission's options become in its TaskSpec: the common header, the resource shape,
// the scheduling strategy and the placement-group bundle. Pure functions of their arguments (no
// process state), so they are tested without a cluster; they throw lumen::Error for options
// that can never work, so the mistake shows at the call rather than as a task that never runs.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common.pb.h"
#include "common/resources.h"
#include "lumen/ids.h"
#include "lumen/options.h"

namespace lumen::core {

// An actor method's task (its ID carries the actor); normal tasks carry the nil actor.
bool IsActorTask(const TaskID& id);

// The error a task cancelled with lumen::Cancel ends with.
proto::ErrorInfo TaskCancelledInfo(const proto::TaskSpec& spec);

// Id, job, type, function and one return: what every spec starts with.
void FillSpecHeader(const TaskID& id, const JobID& job, proto::TaskType type,
                    const std::string& function_name, uint64_t signature_hash,
                    proto::TaskSpec* spec);

// The resource shape of a task or actor: CPU, GPU, memory, then custom entries (which may
// override the first three).
ResourceSet ResourcesOf(double cpus, double gpus, int64_t memory,
                        const std::map<std::string, double>& custom);

// The wire form of a scheduling strategy; throws on a malformed node id.
proto::SchedulingStrategy StrategyOf(const SchedulingStrategy& strategy,
                                     const LabelSelector& labels);

// Inside a placement group: the group's resources instead of the node's (scheduling/
// bundles.h) and the group in the strategy. Throws when the index or the request does not fit
// the group. Without a group, only checks that no bundle index was given. `what` names the
// call in errors ("lumen::Task").
void InPlacementGroup(const PlacementGroup& group, int bundle_index, const char* what,
                      ResourceSet* resources, proto::SchedulingStrategy* strategy);

}  // namespace lumen::core
