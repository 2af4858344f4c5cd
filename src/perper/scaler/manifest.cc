// SPDX-License-Identifier: MIT
#include "perper/scaler/manifest.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <yaml-cpp/yaml.h>

#include "perper/common/files.h"
#include "perper/common/status_macros.h"

namespace perper::scaler {
namespace {

namespace fs = std::filesystem;

// Builds errors of the form "<path>:<line>: <key>: <what>".
class Errors {
 public:
  explicit Errors(std::string path) : path_(std::move(path)) {}
  absl::Status At(const YAML::Node& node, const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ":", node.Mark().line + 1, ": ", key, ": ", what));
  }
  absl::Status AtLine(int line, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ":", line, ": ", what));
  }

 private:
  std::string path_;
};

absl::StatusOr<std::string> Scalar(const Errors& errors, const YAML::Node& node,
                                   const std::string& key) {
  if (!node.IsScalar()) return errors.At(node, key, "expected a single value");
  return node.Scalar();
}

absl::StatusOr<std::string> ExpandedScalar(const Errors& errors, const YAML::Node& node,
                                           const std::string& key);

absl::StatusOr<int> Integer(const Errors& errors, const YAML::Node& node, const std::string& key,
                            int lowest) {
  PERPER_ASSIGN_OR_RETURN(std::string text, ExpandedScalar(errors, node, key));
  int value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < lowest) {
    return errors.At(
        node, key, absl::StrCat("expected an integer of at least ", lowest, ", got '", text, "'"));
  }
  return value;
}

absl::StatusOr<absl::Duration> Seconds(const Errors& errors, const YAML::Node& node,
                                       const std::string& key) {
  PERPER_ASSIGN_OR_RETURN(std::string text, ExpandedScalar(errors, node, key));
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !(value >= 0) || !std::isfinite(value)) {
    return errors.At(node, key, absl::StrCat("expected a number of seconds, got '", text, "'"));
  }
  return absl::Seconds(value);
}

absl::StatusOr<std::string> Expanded(const Errors& errors, const YAML::Node& node,
                                     const std::string& key, const std::string& text) {
  auto expanded = ExpandVariables(text);
  if (!expanded.ok()) return errors.At(node, key, std::string(expanded.status().message()));
  return *std::move(expanded);
}

absl::StatusOr<std::string> ExpandedScalar(const Errors& errors, const YAML::Node& node,
                                           const std::string& key) {
  PERPER_ASSIGN_OR_RETURN(std::string text, Scalar(errors, node, key));
  return Expanded(errors, node, key, text);
}

// Makes `path` absolute against `dir` (unchanged when absolute already).
std::string Absolute(const std::string& dir, const std::string& path) {
  fs::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (fs::path(dir) / p).lexically_normal().string();
}

// Resolves a command name: with a '/', against `dir`; without, on PATH. Empty when not found.
std::string ResolveCommand(const std::string& dir, const std::string& command) {
  if (command.find('/') != std::string::npos) return Absolute(dir, command);
  return FindOnPath(command);
}

absl::StatusOr<AgentSpec> ParseAgent(const Errors& errors, const std::string& dir,
                                     const std::string& name, const YAML::Node& key_node,
                                     const YAML::Node& node) {
  AgentSpec agent;
  agent.name = name;
  agent.line = key_node.Mark().line + 1;
  agent.workdir = dir;
  std::string prefix = "agents." + name;
  if (!node.IsMap()) return errors.At(key_node, prefix, "expected a mapping with a command");
  bool has_min = false, has_max = false;
  YAML::Node command_node;
  bool has_command = false;
  for (const auto& entry : node) {
    std::string key = entry.first.Scalar();
    std::string where = prefix + "." + key;
    const YAML::Node& value = entry.second;
    if (key == "command") {
      command_node = value;
      has_command = true;
      if (value.IsScalar()) {
        for (absl::string_view part : absl::StrSplit(value.Scalar(), ' ', absl::SkipEmpty())) {
          PERPER_ASSIGN_OR_RETURN(std::string arg,
                                  Expanded(errors, value, where, std::string(part)));
          agent.argv.push_back(std::move(arg));
        }
      } else if (value.IsSequence()) {
        for (const auto& part : value) {
          PERPER_ASSIGN_OR_RETURN(std::string text, Scalar(errors, part, where));
          PERPER_ASSIGN_OR_RETURN(std::string arg, Expanded(errors, part, where, text));
          agent.argv.push_back(std::move(arg));
        }
      } else {
        return errors.At(value, where, "expected a command line or a list of arguments");
      }
    } else if (key == "env") {
      if (!value.IsMap()) return errors.At(value, where, "expected a mapping NAME: value");
      for (const auto& var : value) {
        std::string var_name = var.first.Scalar();
        PERPER_ASSIGN_OR_RETURN(std::string text,
                                Scalar(errors, var.second, where + "." + var_name));
        PERPER_ASSIGN_OR_RETURN(agent.env[var_name],
                                Expanded(errors, var.second, where + "." + var_name, text));
      }
    } else if (key == "image") {
      PERPER_ASSIGN_OR_RETURN(std::string text, Scalar(errors, value, where));
      PERPER_ASSIGN_OR_RETURN(agent.image, Expanded(errors, value, where, text));
      if (agent.image.empty()) return errors.At(value, where, "expected an image name");
    } else if (key == "workdir") {
      PERPER_ASSIGN_OR_RETURN(std::string text, Scalar(errors, value, where));
      PERPER_ASSIGN_OR_RETURN(std::string expanded, Expanded(errors, value, where, text));
      agent.workdir = Absolute(dir, expanded);
    } else if (key == "mode") {
      PERPER_ASSIGN_OR_RETURN(std::string text, Scalar(errors, value, where));
      if (text == "instance") {
        agent.mode = AgentMode::kInstance;
      } else if (text == "pool") {
        agent.mode = AgentMode::kPool;
      } else {
        return errors.At(value, where, absl::StrCat("expected instance or pool, got '", text, "'"));
      }
    } else if (key == "min") {
      PERPER_ASSIGN_OR_RETURN(agent.min, Integer(errors, value, where, 0));
      has_min = true;
    } else if (key == "max") {
      PERPER_ASSIGN_OR_RETURN(agent.max, Integer(errors, value, where, 1));
      has_max = true;
    } else if (key == "executions_per_process") {
      PERPER_ASSIGN_OR_RETURN(agent.executions_per_process, Integer(errors, value, where, 1));
    } else if (key == "idle_seconds") {
      PERPER_ASSIGN_OR_RETURN(agent.idle, Seconds(errors, value, where));
    } else if (key == "grace_seconds") {
      PERPER_ASSIGN_OR_RETURN(agent.grace, Seconds(errors, value, where));
    } else {
      return errors.At(entry.first, where, "unknown key");
    }
  }
  if (!agent.image.empty()) {
    // A path inside the image: nothing to resolve here; no command runs the image's own.
    agent.command = agent.argv.empty() ? "" : agent.argv[0];
  } else if (!has_command) {
    return errors.At(key_node, prefix, "missing command (or an image:)");
  } else if (agent.argv.empty()) {
    return errors.At(command_node, prefix + ".command", "empty command");
  }
  if (agent.image.empty()) {
    std::string resolved = ResolveCommand(dir, agent.argv[0]);
    if (resolved.empty()) {
      return errors.At(command_node, prefix + ".command",
                       absl::StrCat("'", agent.argv[0], "' is not on PATH"));
    }
    agent.command = agent.argv[0];
    agent.argv[0] = resolved;
  }
  if (agent.mode == AgentMode::kPool) {
    if (!has_max && has_min) agent.max = std::max(agent.min, 1);
    if (agent.min > agent.max) {
      return errors.At(key_node, prefix,
                       absl::StrCat("min (", agent.min, ") is larger than max (", agent.max, ")"));
    }
  } else if (has_min || has_max) {
    return errors.At(key_node, prefix, "min and max apply to mode: pool only");
  }
  return agent;
}

absl::Status ParseFabric(const Errors& errors, const std::string& dir, const YAML::Node& node,
                         FabricSpec& fabric) {
  if (!node.IsMap()) return errors.At(node, "fabric", "expected a mapping");
  for (const auto& entry : node) {
    std::string key = entry.first.Scalar();
    std::string where = "fabric." + key;
    PERPER_ASSIGN_OR_RETURN(std::string text, Scalar(errors, entry.second, where));
    PERPER_ASSIGN_OR_RETURN(text, Expanded(errors, entry.second, where, text));
    if (key == "address") {
      fabric.address = text;
    } else if (key == "image") {
      fabric.image = text;
    } else if (key == "config") {
      fabric.config_file = Absolute(dir, text);
    } else if (key == "listen") {
      fabric.listen = text;
    } else if (key == "storage") {
      fabric.storage = text;
    } else if (key == "data_dir") {
      fabric.data_dir = Absolute(dir, text);
    } else if (key == "log_level") {
      fabric.log_level = text;
    } else if (key == "max_value_size" || key == "max_stream_retained_bytes" ||
               key == "stream_write_wait_ms") {
      uint64_t size = 0;
      if (!absl::SimpleAtoi(text, &size) || size == 0) {
        return errors.At(entry.second, where,
                         key == "stream_write_wait_ms" ? "expected a positive number of ms"
                                                       : "expected a positive number of bytes");
      }
      if (key == "max_value_size") {
        fabric.max_value_size = size;
      } else if (key == "max_stream_retained_bytes") {
        fabric.max_stream_retained_bytes = size;
      } else {
        fabric.stream_write_wait_ms = size;
      }
    } else if (key == "redis") {
      if (text.empty()) return errors.At(entry.second, where, "expected host:port[,...] or start");
      fabric.redis = text;
    } else if (key == "processes") {
      if (!absl::SimpleAtoi(text, &fabric.processes) || fabric.processes < 1 ||
          fabric.processes > 16) {
        return errors.At(entry.second, where, "expected a number from 1 to 16");
      }
    } else if (key == "sync") {
      if (text == "true") {
        fabric.sync = true;
      } else if (text == "false") {
        fabric.sync = false;
      } else {
        return errors.At(entry.second, where, "expected true or false");
      }
    } else {
      return errors.At(entry.first, where, "unknown key");
    }
  }
  return absl::OkStatus();
}

}  // namespace

const AgentSpec* Manifest::Find(std::string_view name) const {
  for (const AgentSpec& agent : agents) {
    if (agent.name == name) return &agent;
  }
  return nullptr;
}

absl::Status CheckCommands(const Manifest& manifest) {
  for (const AgentSpec& agent : manifest.agents) {
    if (!agent.image.empty()) continue;
    struct stat info;
    // stat and access say what execve and chdir would: ENOENT, EACCES, ENOTDIR...
    std::string reason;
    if (stat(agent.argv[0].c_str(), &info) != 0) {
      reason = strerror(errno);
    } else if (S_ISDIR(info.st_mode)) {
      reason = strerror(EISDIR);
    } else if (access(agent.argv[0].c_str(), X_OK) != 0) {
      reason = strerror(errno);
    }
    if (!reason.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("agent ", agent.name, ": command ", agent.command, ": ", reason));
    }
    if (stat(agent.workdir.c_str(), &info) != 0) {
      reason = strerror(errno);
    } else if (!S_ISDIR(info.st_mode)) {
      reason = strerror(ENOTDIR);
    }
    if (!reason.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("agent ", agent.name, ": workdir ", agent.workdir, ": ", reason));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExpandVariables(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '$' || i + 1 >= text.size() || text[i + 1] != '{') {
      out.push_back(text[i++]);
      continue;
    }
    size_t end = text.find('}', i + 2);
    if (end == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unterminated ${ in '", std::string(text), "'"));
    }
    std::string_view body = text.substr(i + 2, end - i - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (size_t sep = body.find(":-"); sep != std::string_view::npos) {
      name = body.substr(0, sep);
      fallback = body.substr(sep + 2);
    }
    const char* value = std::getenv(std::string(name).c_str());
    if (value != nullptr && *value != '\0') {
      out += value;
    } else if (fallback.has_value()) {
      out += *fallback;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("environment variable ", std::string(name),
                                                     " is not set (write ${", std::string(name),
                                                     ":-default} to give a default)"));
    }
    i = end + 1;
  }
  return out;
}

absl::StatusOr<Manifest> ParseManifest(std::string_view text, std::string_view path,
                                       std::string_view dir) {
  Errors errors{std::string(path)};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return errors.AtLine(e.mark.line + 1, e.msg);
  }
  Manifest manifest;
  manifest.path = std::string(path);
  manifest.dir = fs::absolute(fs::path(dir)).lexically_normal().string();
  if (!root.IsMap()) return errors.AtLine(1, "expected a mapping with an 'agents' key");
  YAML::Node deploy_node;
  bool has_agents = false;
  for (const auto& entry : root) {
    std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    if (key == "name") {
      PERPER_ASSIGN_OR_RETURN(manifest.name, Scalar(errors, value, key));
    } else if (key == "fabric") {
      PERPER_RETURN_IF_ERROR(ParseFabric(errors, manifest.dir, value, manifest.fabric));
    } else if (key == "deploy") {
      PERPER_ASSIGN_OR_RETURN(manifest.deploy, Scalar(errors, value, key));
      deploy_node = value;
    } else if (key == "agents") {
      if (!value.IsMap()) return errors.At(value, key, "expected a mapping of agent types");
      has_agents = true;
      for (const auto& agent : value) {
        std::string name = agent.first.Scalar();
        if (name.empty() || name == "Registry") {
          return errors.At(agent.first, "agents",
                           absl::StrCat("'", name, "' is not a valid agent type"));
        }
        PERPER_ASSIGN_OR_RETURN(AgentSpec spec,
                                ParseAgent(errors, manifest.dir, name, agent.first, agent.second));
        manifest.agents.push_back(std::move(spec));
      }
    } else {
      return errors.At(entry.first, key, "unknown key (expected name, fabric, deploy, agents)");
    }
  }
  if (!has_agents || manifest.agents.empty()) {
    return errors.AtLine(1, "agents: at least one agent type is required");
  }
  if (!manifest.deploy.empty()) {
    const AgentSpec* deploy = manifest.Find(manifest.deploy);
    if (deploy == nullptr) {
      return errors.At(deploy_node, "deploy",
                       absl::StrCat("no agent '", manifest.deploy, "' under agents"));
    }
    if (deploy->mode != AgentMode::kInstance) {
      return errors.At(deploy_node, "deploy",
                       "the deploy agent runs as one process serving all its instances; "
                       "remove its mode");
    }
  }
  return manifest;
}

absl::StatusOr<Manifest> LoadManifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read manifest ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string dir = fs::path(path).parent_path().string();
  return ParseManifest(buffer.str(), path, dir.empty() ? "." : dir);
}

}  // namespace perper::scaler
