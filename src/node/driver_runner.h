// The drivers of submitted jobs (`lumen job submit`) on the node the control service chose
// (the head): fetches the program by content (common/binary_store.h), starts it as a driver
// of the cluster, keeps its output in the session's logs (`job-<submission id>.log`), serves
// reads of it, stops it when asked (SIGTERM, then SIGKILL after a grace period) and reports
// its exit to the control service.
//
// The driver runs in `<session>/jobs/<submission id>/` with LUMEN_ADDRESS and LUMEN_TOKEN set,
// and LUMEN_JOB_BINARY_HASH, so that the workers of its job run the same program (nodes fetch
// it by that hash too).
//
// Thread safety: owned by the node daemon's loop thread; every method runs there.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include "common/rpc/connection.h"
#include "common/rpc/event_loop.h"
#include "gcs.pb.h"

namespace lumen::node {

class DriverRunner {
 public:
  // `gcs`: the node's connection to the control service (null while there is none).
  DriverRunner(rpc::EventLoop* loop, std::string session_dir, std::string token,
               std::function<rpc::ConnectionPtr()> gcs);
  ~DriverRunner();
  DriverRunner(const DriverRunner&) = delete;
  DriverRunner& operator=(const DriverRunner&) = delete;

  void HandleStart(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleReadLog(const rpc::ConnectionPtr& c, rpc::Frame& f);
  void HandleStop(const rpc::ConnectionPtr& c, rpc::Frame& f);
  // Kills every driver still running (the node is stopping).
  void StopAll();

 private:
  struct Driver {
    pid_t pid = -1;
    int pidfd = -1;
    uint64_t watch = 0;
    uint64_t kill_timer = 0;
    bool stop_requested = false;
    bool exited = false;
  };

  std::string LogPath(const std::string& id) const;
  void Spawn(const proto::StartDriverRequest& req, const std::string& binary,
             const rpc::ConnectionPtr& c, const rpc::Frame& reply_to);
  void OnExit(const std::string& id);

  rpc::EventLoop* const loop_;
  const std::string session_dir_;
  const std::string token_;
  const std::function<rpc::ConnectionPtr()> gcs_;
  std::map<std::string, Driver> drivers_;  // by submission id
};

}  // namespace lumen::node
