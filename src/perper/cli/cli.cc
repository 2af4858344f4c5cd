// SPDX-License-Identifier: MIT
#include "perper/cli/cli.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>

#include "absl/strings/str_join.h"
#include <CLI/CLI.hpp>

#include "perper/cli/commands.h"
#include "perper/cli/completion.h"
#include "perper/cli/fabric_client.h"

namespace perper::cli {
namespace {

// `timeout` is shared by every command; each applies its own default when it runs. Commands
// that print only a confirmation take no --json.
void AddTargetOptions(CLI::App& command, FabricTarget& target, std::optional<double>& timeout,
                      double default_timeout, bool json = true) {
  command
      .add_option("--fabric", target.address,
                  "Address of the Fabric, host:port, or a comma-separated list of them "
                  "(tried in order) [env PERPER_FABRIC_ENDPOINT; default: the Fabric of the "
                  "perper up running in this folder or a parent (its .perper/fabric.address), "
                  "else 127.0.0.1:40400]")
      ->envname("PERPER_FABRIC_ENDPOINT");
  if (json) command.add_flag("--json", target.json, "Print JSON instead of a table");
  command.add_option("--timeout", timeout,
                     "Seconds to wait for the Fabric [default " +
                         std::to_string(static_cast<int>(default_timeout)) + "]");
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "perper: run a Perper application on this machine and inspect a running Fabric.\n"
      "See docs/cli.md."};
  app.require_subcommand(1);
  std::function<int()> action;
  FabricTarget target;  // address: empty unless --fabric or $PERPER_FABRIC_ENDPOINT gives it
  std::optional<double> timeout;
  auto with_timeout = [&](double default_timeout) -> const FabricTarget& {
    target.timeout_seconds = timeout.value_or(default_timeout);
    return target;
  };

  UpOptions up;
  CLI::App* up_cmd = app.add_subcommand(
      "up",
      "Start a Fabric (embedded unless --fabric), the process scaler and the application "
      "of APP.yaml (with --scaler compose: the Fabric and the agents as containers); "
      "Ctrl-C or SIGTERM stops everything. Exits with Deploy's exit code, or after a "
      "signal with 128 + its number (130 after Ctrl-C, 143 after SIGTERM).");
  // Type names FILE and DIR also tell the shell completion to offer file names.
  up_cmd->add_option("APP", up.manifest, "The application manifest (YAML, see docs/scaler.md)")
      ->required()
      ->type_name("FILE");
  up_cmd->add_option("--fabric", up.fabric,
                     "Use the running Fabric at this address instead of an embedded one");
  up_cmd
      ->add_option("--log-dir", up.log_dir,
                   "Also keep each process's output in DIR/<agent>.<instance>.log")
      ->type_name("DIR");
  up_cmd
      ->add_option("--address-file", up.address_file,
                   "Also write the Fabric's address to this file once it is up (it is always "
                   "written to .perper/fabric.address next to APP while perper up runs)")
      ->type_name("FILE");
  up_cmd->add_flag("--reset", up.reset,
                   "Start over: before Deploy starts, destroy the instances the previous Deploy "
                   "started (without Stop) and delete its recorded execution and state, so "
                   "Deploy runs anew");
  up_cmd
      ->add_option("--scaler", up.scaler,
                   "local: agent processes on this machine; compose: the Fabric and the agents "
                   "as containers through docker-compose and DOCKER_HOST (docs/containers.md)")
      ->check(CLI::IsMember({"local", "compose"}))
      ->capture_default_str();
  up_cmd->add_option("--project", up.project,
                     "--scaler compose: the docker-compose project name [default: the "
                     "manifest's name]");
  up_cmd->callback([&] { action = [&] { return RunUp(up); }; });

  fabric::FabricConfigFlags fabric_flags;
  CLI::App* fabric_cmd = app.add_subcommand(
      "fabric", "Run a Fabric until SIGINT or SIGTERM (the options of perper-fabric)");
  fabric::AddFabricFlags(*fabric_cmd, fabric_flags);
  fabric_cmd->get_option("--config")->type_name("FILE");
  fabric_cmd->get_option("--data-dir")->type_name("DIR");
  fabric_cmd->get_option("--address-file")->type_name("FILE");
  fabric_cmd->callback([&] { action = [&] { return RunFabric(fabric_flags); }; });

  ExecutionsOptions executions;
  CLI::App* executions_cmd =
      app.add_subcommand("executions",
                         "List executions with their state (waiting, running = reserved by an "
                         "agent process, finished, failed), age and duration. Live instances "
                         "(agent Registry) are perper instances' rows, shown with --agent "
                         "Registry");
  AddTargetOptions(*executions_cmd, target, timeout, 10);
  executions_cmd->add_option("--agent", executions.agent, "Only this agent type");
  executions_cmd->add_option("--instance", executions.instance, "Only this instance");
  executions_cmd->add_option("--delegate", executions.delegate, "Only this delegate");
  executions_cmd
      ->add_option("--state", executions.state,
                   "all, unfinished, waiting, running, finished or failed")
      ->capture_default_str();
  executions_cmd->add_option("--limit", executions.limit, "At most this many (up to 100000)")
      ->capture_default_str();
  executions_cmd->add_flag("--wide", executions.wide,
                           "Show whole IDs even when the table is wider than the terminal");
  executions_cmd->callback(
      [&] { action = [&] { return RunExecutions(with_timeout(10), executions); }; });

  std::string instances_agent;
  CLI::App* instances_cmd =
      app.add_subcommand("instances", "List live agent instances (the Registry executions)");
  AddTargetOptions(*instances_cmd, target, timeout, 10);
  instances_cmd->add_option("--agent", instances_agent, "Only this agent type");
  instances_cmd->callback(
      [&] { action = [&] { return RunInstances(with_timeout(10), instances_agent); }; });

  std::string streams_prefix;
  CLI::App* streams_cmd = app.add_subcommand(
      "streams", "List streams: kind, stride, items stored, key range, state, listeners@position");
  AddTargetOptions(*streams_cmd, target, timeout, 10);
  streams_cmd->add_option("--prefix", streams_prefix, "Only streams whose ID starts with this");
  streams_cmd->callback(
      [&] { action = [&] { return RunStreams(with_timeout(10), streams_prefix); }; });

  TailOptions tail;
  bool no_follow = false;
  CLI::App* stream_cmd = app.add_subcommand("stream", "Read a stream");
  stream_cmd->require_subcommand(1);
  CLI::App* tail_cmd = stream_cmd->add_subcommand(
      "tail",
      "Print the items of stream ID from key --from on, one per line (KEY VALUE), and "
      "follow new ones until the stream completes (or Ctrl-C)");
  AddTargetOptions(*tail_cmd, target, timeout, 10);
  tail_cmd->add_option("ID", tail.stream, "The stream")->required();
  tail_cmd->add_option("--from", tail.from, "First key to print")->capture_default_str();
  tail_cmd->add_flag("--no-follow", no_follow, "Stop at the last item stored now");
  tail_cmd->callback([&] {
    action = [&] {
      tail.follow = !no_follow;
      return RunStreamTail(with_timeout(10), tail);
    };
  });

  StateOptions state;
  CLI::App* state_cmd = app.add_subcommand("state", "Read state dictionaries");
  state_cmd->require_subcommand(1);
  const std::string instance_help =
      "The state dictionary of this instance ('<ID>-'), instead of DICTIONARY";
  CLI::App* get_cmd = state_cmd->add_subcommand(
      "get", "Print the value of KEY in DICTIONARY: DICTIONARY KEY, or --instance ID KEY");
  AddTargetOptions(*get_cmd, target, timeout, 10);
  get_cmd
      ->add_option("DICTIONARY KEY", state.positionals,
                   "The dictionary (an instance ID names its state dictionary '<ID>-'), then the "
                   "key (a string, unless --json-key)")
      ->required();
  get_cmd->add_option("--instance", state.instance, instance_help);
  get_cmd->add_flag("--json-key", state.json_key, "Read KEY as a JSON value (e.g. 42)");
  get_cmd->callback([&] { action = [&] { return RunStateGet(with_timeout(10), state); }; });
  CLI::App* list_cmd = state_cmd->add_subcommand(
      "list", "List the keys and values of DICTIONARY (or of --instance ID's state)");
  AddTargetOptions(*list_cmd, target, timeout, 10);
  list_cmd->add_option("DICTIONARY", state.positionals,
                       "The dictionary (an instance ID names its state dictionary '<ID>-')");
  list_cmd->add_option("--instance", state.instance, instance_help);
  list_cmd->callback([&] { action = [&] { return RunStateList(with_timeout(10), state); }; });

  std::string states_prefix;
  CLI::App* states_cmd = app.add_subcommand(
      "states", "List state dictionaries and lists with their number of entries");
  AddTargetOptions(*states_cmd, target, timeout, 10);
  states_cmd->add_option("--prefix", states_prefix, "Only names that start with this");
  states_cmd->callback(
      [&] { action = [&] { return RunStates(with_timeout(10), states_prefix); }; });

  DestroyOptions destroy;
  CLI::App* destroy_cmd = app.add_subcommand(
      "destroy",
      "Destroy INSTANCE: call its Stop, destroy the instances it started, and delete "
      "its executions, their streams and its state");
  AddTargetOptions(*destroy_cmd, target, timeout, 30, /*json=*/false);
  destroy_cmd->add_option("INSTANCE", destroy.instance, "The instance ID (see perper instances)")
      ->required();
  destroy_cmd->add_flag("--force", destroy.force,
                        "Destroy without calling Stop (when no process serves the instance)");
  destroy_cmd->add_option("--agent", destroy.agent,
                          "The agent type, for an instance that is not live (with --force: a "
                          "Deploy instance AGENT-deploy)");
  destroy_cmd->callback([&] { action = [&] { return RunDestroy(with_timeout(30), destroy); }; });

  std::string delete_id;
  bool delete_list = false;
  CLI::App* delete_cmd = app.add_subcommand("delete", "Delete one execution, stream or state");
  delete_cmd->require_subcommand(1);
  CLI::App* delete_execution_cmd = delete_cmd->add_subcommand(
      "execution",
      "Delete execution ID (an unfinished one is cancelled; an instance's Registry "
      "record is refused: use perper destroy)");
  AddTargetOptions(*delete_execution_cmd, target, timeout, 10, /*json=*/false);
  delete_execution_cmd->add_option("ID", delete_id, "The execution (see perper executions)")
      ->required();
  delete_execution_cmd->callback(
      [&] { action = [&] { return RunDeleteExecution(with_timeout(10), delete_id); }; });
  CLI::App* delete_stream_cmd = delete_cmd->add_subcommand(
      "stream",
      "Delete stream ID with its items and listeners (and its finished producer "
      "execution)");
  AddTargetOptions(*delete_stream_cmd, target, timeout, 10, /*json=*/false);
  delete_stream_cmd->add_option("ID", delete_id, "The stream (see perper streams)")->required();
  delete_stream_cmd->callback(
      [&] { action = [&] { return RunDeleteStream(with_timeout(10), delete_id); }; });
  CLI::App* delete_state_cmd = delete_cmd->add_subcommand(
      "state", "Delete the dictionary NAME (or the list NAME when there is no such dictionary)");
  AddTargetOptions(*delete_state_cmd, target, timeout, 10, /*json=*/false);
  delete_state_cmd->add_option("NAME", delete_id, "The dictionary or list (see perper states)")
      ->required();
  delete_state_cmd->add_flag("--list", delete_list,
                             "Delete the list NAME (when a dictionary has the same name)");
  delete_state_cmd->callback(
      [&] { action = [&] { return RunDeleteState(with_timeout(10), delete_id, delete_list); }; });

  CallOptions call;
  CLI::App* call_cmd = app.add_subcommand(
      "call",
      "Call DELEGATE on an instance of AGENT with ARGS (one JSON value each: 1, 2.5, "
      "'\"text\"', true, null) and print its results as JSON");
  AddTargetOptions(*call_cmd, target, timeout, 30);
  call_cmd->add_option("AGENT", call.agent, "The agent type")->required();
  call_cmd->add_option("INSTANCE", call.instance, "The instance ID")->required();
  call_cmd->add_option("DELEGATE", call.delegate, "The delegate")->required();
  call_cmd->add_option("ARGS", call.arguments, "Arguments, one JSON value each");
  call_cmd->add_flag("--any-instance", call.any_instance,
                     "Call even when INSTANCE is not a live instance (e.g. a Deploy instance)");
  call_cmd->callback([&] { action = [&] { return RunCall(with_timeout(30), call); }; });

  CLI::App* health_cmd = app.add_subcommand(
      "health",
      "Ask the Fabric's gRPC health service (grpc.health.v1) whether it serves: exit 0 "
      "and SERVING when it does, 1 with the reason when not (container health checks)");
  AddTargetOptions(*health_cmd, target, timeout, 5, /*json=*/false);
  health_cmd->callback([&] { action = [&] { return RunHealth(with_timeout(5)); }; });

  std::string init_language, init_name;
  CLI::App* init_cmd = app.add_subcommand(
      "init",
      "Write a runnable application to start from into ./NAME: an agent in LANGUAGE "
      "(cpp or python), its manifest for perper up and, for cpp, its CMake build");
  init_cmd->add_option("LANGUAGE", init_language, "cpp or python")->required();
  init_cmd->add_option("NAME", init_name, "The agent type and the folder")->required();
  init_cmd->callback([&] { action = [&] { return RunInit(init_language, init_name); }; });

  std::string shell;
  CLI::App* completion_cmd =
      app.add_subcommand("completion",
                         "Print a script that completes perper's commands and flags in SHELL "
                         "(bash): source <(perper completion bash)");
  completion_cmd->add_option("SHELL", shell, "The shell: bash")->required();
  completion_cmd->callback([&] {
    action = [&] {
      if (shell != "bash") {
        std::fprintf(stderr, "perper completion: no completion for '%s'; the shells are: bash\n",
                     shell.c_str());
        return 2;
      }
      std::fputs(BashCompletion(app).c_str(), stdout);
      return 0;
    };
  });

  app.set_version_flag("--version", std::string("perper ") + PERPER_VERSION);
  // CLI11 would answer an unknown command with "A subcommand is required"; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string name = argv[1];
    bool known = false;
    std::vector<std::string> names;
    for (CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
      names.push_back(command->get_name());
      known = known || command->check_name(name);
    }
    if (!known) {
      std::fprintf(stderr,
                   "perper: unknown command '%s'; the commands are %s (see perper --help)\n",
                   name.c_str(), absl::StrJoin(names, ", ").c_str());
      return 2;
    }
  }
  // Likewise an unknown option before the command: name it rather than ask for a command.
  if (argc > 1 && argv[1][0] == '-') {
    const std::string option = std::string(argv[1]).substr(0, std::string(argv[1]).find('='));
    bool known = false;
    for (const CLI::Option* candidate : app.get_options()) {
      known = known || candidate->check_name(option);
    }
    if (!known) {
      std::fprintf(stderr, "perper: unknown option '%s' (see perper --help)\n", option.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!action) return 2;
  if (target.address.empty()) FindFabric(target, ".");
  if (auto addresses = Addresses(target); !addresses.ok()) {
    std::fprintf(stderr, "perper: %s\n", std::string(addresses.status().message()).c_str());
    return 2;
  }
  return action();
}

}  // namespace perper::cli
