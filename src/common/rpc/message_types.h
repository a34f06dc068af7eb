// Message type ids of every Lumen service (the `type` field of a frame). Payloads are the
// protobuf messages named in the comments (proto/). Ids are part of the wire format: append,
// never renumber.
#pragma once

#include <cstdint>

namespace lumen::rpc {

enum MsgType : uint16_t {
  // ---- node daemon (node.proto) --------------------------------------------------------
  kRegisterClient = 100,     // RegisterClientRequest -> RegisterClientReply (+ store memfd)
  kStartJob = 101,           // StartJobRequest -> Empty
  kRequestLease = 102,       // LeaseRequest -> LeaseReply
  kReturnLease = 103,        // ReturnLeaseRequest (one-way)
  kNotifyBlocked = 104,      // NotifyBlockedRequest (one-way)
  kWorkerExitStatus = 105,   // WorkerExitStatusRequest -> WorkerExitStatusReply
  kStoreCreate = 106,        // StoreCreateRequest -> StoreCreateReply
  kStoreSeal = 107,          // StoreSealRequest (one-way)
  kStoreGet = 108,           // StoreGetRequest -> StoreGetReply
  kStoreRelease = 109,       // ObjectIdList (one-way)
  kStoreFree = 110,          // ObjectIdList (one-way)
  kStoreAbort = 111,         // StoreSealRequest (one-way)
  kNodeStats = 112,          // Empty -> NodeStats
  kNodeShutdown = 113,       // Empty -> Empty
  kReleaseIdleLeases = 114,  // Empty (daemon -> lease holder, one-way)
  kKillWorker = 115,         // KillWorkerRequest -> Empty
  kJobFinished = 116,        // JobFinishedRequest (one-way)
  kPullObject = 117,         // PullObjectRequest -> Empty (once the object is local)
  kReadObjectChunk = 118,    // ReadChunkRequest -> ObjectChunk (node -> node)
  kReadObjectDone = 119,     // ObjectIdList (node -> node, one-way): done reading these
  kPrepareBundles = 120,     // PrepareBundlesRequest -> PrepareBundlesReply (GCS -> node)
  kCommitBundles = 121,      // PlacementGroupRequest -> NodeStats (GCS -> node)
  kReturnBundles = 122,      // PlacementGroupRequest -> NodeStats (GCS -> node)
  kStartDriver = 123,        // StartDriverRequest -> StartDriverReply (GCS -> node)
  kReadDriverLog = 124,      // JobLogsRequest -> JobLogsReply (GCS -> node)
  kStopDriver = 125,         // SubmittedJobRequest -> Empty (GCS -> node)
  kPromoteCopy = 126,        // ObjectIdList (one id) -> Empty (owner -> node): keep the copy

  // ---- control service (gcs.proto) -------------------------------------------------------
  kRegisterNode = 200,          // RegisterNodeRequest -> Empty
  kHeartbeat = 201,             // HeartbeatRequest (one-way)
  kGetAllNodes = 202,           // Empty -> NodeList
  kRegisterJob = 203,           // RegisterJobRequest -> RegisterJobReply
  kGcsJobFinished = 204,        // JobFinishedRequest -> Empty
  kCreateActor = 205,           // CreateActorRequest -> CreateActorReply
  kGetActor = 206,              // GetActorRequest -> GetActorReply
  kSubscribeActor = 207,        // SubscribeActorRequest -> GetActorReply; then kActorUpdate
  kKillActor = 208,             // KillActorRequest -> Empty
  kWorkerDied = 209,            // WorkerDiedRequest (one-way)
  kKVPut = 210,                 // KVRequest -> KVReply
  kKVGet = 211,                 // KVRequest -> KVReply
  kKVDel = 212,                 // KVRequest -> KVReply
  kKVKeys = 213,                // KVRequest -> KVReply
  kClusterStatus = 214,         // Empty -> ClusterStatus
  kGcsShutdown = 215,           // Empty -> Empty
  kActorUpdate = 216,           // ActorStateUpdate (GCS -> subscriber, one-way)
  kClusterView = 217,           // ClusterView (GCS -> node daemon, one-way, when resources change)
  kGetClusterView = 218,        // Empty -> ClusterView
  kGetJob = 219,                // GetJobRequest -> GetJobReply
  kWorkerLogs = 220,            // WorkerLogs (node -> GCS -> driver, one-way)
  kFlushWorkerLogs = 221,       // FlushWorkerLogsRequest -> Empty (driver -> GCS -> every node)
  kCreatePlacementGroup = 222,  // CreatePlacementGroupRequest -> CreatePlacementGroupReply
  kWaitPlacementGroup = 223,    // WaitPlacementGroupRequest -> WaitPlacementGroupReply
  kRemovePlacementGroup = 224,  // RemovePlacementGroupRequest -> Empty
  kSubmitJob = 225,             // SubmitJobRequest -> SubmitJobReply
  kListSubmittedJobs = 226,     // Empty -> SubmittedJobList
  kGetSubmittedJob = 227,       // SubmittedJobRequest -> SubmittedJobReply
  kJobLogs = 228,               // JobLogsRequest -> JobLogsReply
  kStopSubmittedJob = 229,      // SubmittedJobRequest -> SubmittedJobReply
  kDriverExited = 230,          // DriverExited (node -> GCS, one-way)
  kSubscribeNodeDeaths = 231,   // Empty -> NodeList (nodes already dead); then kNodeDied
  kNodeDied = 232,              // NodeInfo (GCS -> subscriber, one-way)
  kOwnerGone = 233,             // WorkerDiedRequest (GCS -> node daemon, one-way)

  // ---- core worker (core_worker.proto) -------------------------------------------------
  kPushTasks = 300,        // PushTasksRequest (owner -> worker, one-way)
  kTaskResults = 301,      // TaskResults (worker -> owner, one-way)
  kGetObjectStatus = 302,  // GetObjectStatusRequest -> GetObjectStatusReply (waits until ready)
  kAddBorrower = 303,      // BorrowerRequest -> Empty
  kRemoveBorrower = 304,   // BorrowerRequest (one-way)
  kWorkerExit = 305,       // Empty (daemon -> idle worker, one-way)
  kObjectCopyAdded = 306,  // ObjectCopyAdded (reader -> owner, one-way)
  kCancelTask = 307,       // CancelTaskRequest (owner -> the worker running it, one-way)
  kGeneratorItem = 308,    // GeneratorItem (worker -> owner, one-way)
  kGeneratorAck = 309,     // GeneratorAck (owner -> worker, one-way)
  kPinReturnedRefs = 310,  // ReturnedRefs -> Empty (worker -> owner, before the reply)
};

}  // namespace lumen::rpc
