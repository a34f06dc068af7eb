// `lumen job submit|list|status|logs|stop`: jobs run as drivers on the cluster's head, their
// program uploaded by content (common/binary_store.h) so that only this machine needs it.
//
//   lumen job submit --address HEAD:P [--no-wait] [--submission-id ID] [--env K=V] -- prog args
//   lumen job list | status ID | logs ID [--follow] | stop ID
//
// Thread safety: used from the CLI's main thread.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lumen::cli {

class JobCommands {
 public:
  // Adds `job` and its subcommands to `app`.
  explicit JobCommands(CLI::App& app);
  bool parsed() const { return job_->parsed(); }
  // Runs the parsed subcommand against the cluster; returns the process's exit code. `root`:
  // where sessions live (the address and token of a cluster started here are found there).
  int Run(const std::string& root);

 private:
  int Submit(const std::string& address, const std::string& token);
  int List(const std::string& address, const std::string& token);
  int Status(const std::string& address, const std::string& token);
  int Logs(const std::string& address, const std::string& token);
  int Stop(const std::string& address, const std::string& token);

  CLI::App* job_;
  CLI::App* submit_;
  CLI::App* list_;
  CLI::App* status_;
  CLI::App* logs_;
  CLI::App* stop_;
  std::string address_, token_;
  bool no_wait_ = false;
  bool follow_ = false;
  std::string submission_id_;
  std::vector<std::string> env_;
  std::vector<std::string> command_;  // submit: program and arguments
};

}  // namespace lumen::cli
