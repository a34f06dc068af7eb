// `lumen actor kill NAME [--namespace NS]`: stops a named actor (detached actors outlive their
// job and end this way or with lumen::Kill). Without --namespace, the one live actor of that
// name in any namespace; when several namespaces hold one, it names them and kills none.
//
// Thread safety: used from the CLI's main thread.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace lumen::cli {

class ActorCommands {
 public:
  // Adds `actor` and its subcommands to `app`.
  explicit ActorCommands(CLI::App& app);
  bool parsed() const { return actor_->parsed(); }
  // Runs the parsed subcommand; returns the process's exit code (see job_commands.h for root).
  int Run(const std::string& root);

 private:
  int Kill(const std::string& address, const std::string& token);

  CLI::App* actor_;
  CLI::App* kill_;
  std::string address_, token_;
  std::string name_;
  std::string namespace_;
  bool restart_ = false;
};

}  // namespace lumen::cli
