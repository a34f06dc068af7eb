// The scheduling inputs as they travel: the control service's cluster view and a request's
// strategy (proto/gcs.proto, proto/common.proto) turned into the policy's types.
#pragma once

#include "common.pb.h"
#include "gcs.pb.h"
#include "scheduling/policy.h"

namespace lumen::scheduling {

// Nodes with a malformed id are left out.
ClusterView ViewFromProto(const proto::ClusterView& view);
Request RequestFromProto(const proto::SchedulingStrategy& strategy, ResourceSet resources,
                         const NodeID& local_node);

}  // namespace lumen::scheduling
