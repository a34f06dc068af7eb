#include "cli/actor_commands.h"

#include <iostream>

#include "cli/cli_common.h"
#include "cli/gcs_session.h"
#include "common/rpc/message_types.h"
#include "gcs.pb.h"

namespace lumen::cli {

ActorCommands::ActorCommands(CLI::App& app) {
  actor_ = app.add_subcommand("actor", "manage named actors");
  actor_->require_subcommand(1);
  kill_ = actor_->add_subcommand("kill", "stop a named actor (detached ones outlive their job)");
  kill_->add_option("name", name_, "the actor's name")->required();
  kill_->add_option("--namespace", namespace_,
                    "the namespace it was named in (default: the only one holding the name)");
  kill_->add_flag("--restart", restart_,
                  "let it restart if it has restarts left (default: dead for good)");
  kill_->add_option("--address", address_, "control service HOST:PORT");
  kill_->add_option("--token", token_, "cluster token");
}

int ActorCommands::Run(const std::string& root) {
  if (kill_->parsed()) return Kill(ResolveAddress(address_, root), ResolveToken(token_, root));
  return 2;
}

int ActorCommands::Kill(const std::string& address, const std::string& token) {
  GcsSession s("lumen actor kill");
  if (!s.Connect(address, token)) return 1;
  proto::GetActorRequest get;
  get.set_name(name_);
  if (namespace_.empty()) {
    get.set_any_namespace(true);
  } else {
    get.set_actor_namespace(namespace_);
  }
  proto::GetActorReply found;
  if (!s.Call(rpc::kGetActor, get, &found)) return 1;
  if (found.ambiguous_namespaces_size() > 0) {
    std::cerr << "lumen actor kill: actors named '" << name_ << "' live in "
              << found.ambiguous_namespaces_size() << " namespaces (";
    for (int i = 0; i < found.ambiguous_namespaces_size(); ++i) {
      const std::string& ns = found.ambiguous_namespaces(i);
      // A job's own namespace has no name a user could give.
      std::cerr << (i ? ", " : "") << (ns.empty() || ns[0] == '\0' ? "<a job's own>" : ns);
    }
    std::cerr << "); say which with --namespace\n";
    return 1;
  }
  if (!found.found() || found.info().state() == proto::DEAD) {
    std::cerr << "lumen actor kill: no live actor is named '" << name_ << "'"
              << (namespace_.empty() ? "" : " in namespace '" + namespace_ + "'") << "\n";
    return 1;
  }
  proto::KillActorRequest kill;
  kill.set_actor_id(found.info().actor_id());
  kill.set_no_restart(!restart_);
  kill.set_reason("killed with `lumen actor kill " + name_ + "`");
  proto::Empty done;
  if (!s.Call(rpc::kKillActor, kill, &done)) return 1;
  std::cout << "killed actor '" << name_ << "' (" << found.info().class_name() << ")\n";
  return 0;
}

}  // namespace lumen::cli
