// SPDX-License-Identifier: MIT
#include "perper/fabric/fabric_config.h"

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include <yaml-cpp/yaml.h>

#include "perper/common/logging.h"
#include "perper/common/status_macros.h"
#include "perper/common/strings.h"
#include "perper/storage/store_factory.h"

namespace perper::fabric {
namespace {

const char* Env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

absl::StatusOr<bool> ParseBool(std::string_view text, std::string_view what) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  return absl::InvalidArgumentError(std::string(what) + ": expected true or false, got '" +
                                    std::string(text) + "'");
}

absl::StatusOr<size_t> ParseSize(std::string_view text, std::string_view what) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(AbslView(text), &value) || value == 0) {
    return absl::InvalidArgumentError(std::string(what) +
                                      ": expected a positive number of bytes, got '" +
                                      std::string(text) + "'");
  }
  return static_cast<size_t>(value);
}

absl::StatusOr<std::chrono::milliseconds> ParseMilliseconds(std::string_view text,
                                                            std::string_view what) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(AbslView(text), &value) || value == 0 || value > 86'400'000) {
    return absl::InvalidArgumentError(std::string(what) +
                                      ": expected milliseconds, 1 to 86400000, got '" +
                                      std::string(text) + "'");
  }
  return std::chrono::milliseconds(value);
}

// The port of "host:port" when it is a number from 0 to 65535 (gRPC would take a larger one
// modulo 65536); nullopt otherwise.
std::optional<uint32_t> PortOf(std::string_view address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string_view::npos ||
      !absl::SimpleAtoi(AbslView(address).substr(colon + 1), &port) || port > 65535) {
    return std::nullopt;
  }
  return port;
}

absl::StatusOr<std::vector<std::string>> ParseRedisAddresses(std::string_view text,
                                                             std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(std::string(what) + ": " + std::string(why) +
                                      "; expected host:port[,host:port...], got '" +
                                      std::string(text) + "'");
  };
  std::vector<std::string> addresses;
  for (absl::string_view part : absl::StrSplit(AbslView(text), ',')) {
    std::string address(absl::StripAsciiWhitespace(part));
    if (address.empty()) return bad("empty address");
    std::optional<uint32_t> port = PortOf(address);
    if (!port.has_value() || *port == 0 || address.front() == ':') {
      return bad("'" + address + "' is not host:port with a port from 1 to 65535");
    }
    addresses.push_back(std::move(address));
  }
  return addresses;
}

absl::StatusOr<std::string> ParseRedisCluster(std::string_view text, std::string_view what) {
  if (text == "auto" || text == "yes" || text == "no") return std::string(text);
  return absl::InvalidArgumentError(std::string(what) + ": expected auto, yes or no, got '" +
                                    std::string(text) + "'");
}

// A process lease much shorter than its renewal round trip would make live Fabrics look dead.
absl::StatusOr<std::chrono::milliseconds> ParseRedisLease(std::string_view text,
                                                          std::string_view what) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(AbslView(text), &value) || value < 100 || value > 3'600'000) {
    return absl::InvalidArgumentError(std::string(what) +
                                      ": expected milliseconds, 100 to 3600000, got '" +
                                      std::string(text) + "'");
  }
  return std::chrono::milliseconds(value);
}

absl::StatusOr<int> ParseRedisWaitReplicas(std::string_view text, std::string_view what) {
  uint32_t value = 0;
  if (!absl::SimpleAtoi(AbslView(text), &value) || value > 100) {
    return absl::InvalidArgumentError(std::string(what) +
                                      ": expected a number of replicas, 0 to 100, got '" +
                                      std::string(text) + "'");
  }
  return static_cast<int>(value);
}

// The redis_* settings: shared by the file (key), the environment and the flags, which name
// the source in `what`. False when `key` is not one of them.
absl::StatusOr<bool> ApplyRedisSetting(std::string_view key, std::string_view text,
                                       std::string_view what, storage::StoreOptions& store) {
  if (key == "redis") {
    PERPER_ASSIGN_OR_RETURN(store.redis_addresses, ParseRedisAddresses(text, what));
  } else if (key == "redis_username") {
    store.redis_username = std::string(text);
  } else if (key == "redis_password") {
    store.redis_password = std::string(text);
  } else if (key == "redis_cluster") {
    PERPER_ASSIGN_OR_RETURN(store.redis_cluster, ParseRedisCluster(text, what));
  } else if (key == "redis_lease_ms") {
    PERPER_ASSIGN_OR_RETURN(store.redis_lease, ParseRedisLease(text, what));
  } else if (key == "redis_wait_replicas") {
    PERPER_ASSIGN_OR_RETURN(store.redis_wait_replicas, ParseRedisWaitReplicas(text, what));
  } else {
    return false;
  }
  return true;
}

// The redis_* settings with their environment variables and flags.
struct RedisSetting {
  const char* key;
  const char* env;
  const char* flag;
  std::optional<std::string> FabricConfigFlags::*value;
  const char* help;
};
constexpr RedisSetting kRedisSettings[] = {
    {"redis", "PERPER_REDIS", "--redis", &FabricConfigFlags::redis,
     "redis: the Redis deployment, host:port[,host:port...]; in a Redis Cluster any reachable "
     "nodes [env PERPER_REDIS]"},
    {"redis_username", "PERPER_REDIS_USERNAME", "--redis-username",
     &FabricConfigFlags::redis_username, "redis: ACL user name (AUTH) [env PERPER_REDIS_USERNAME]"},
    {"redis_password", "PERPER_REDIS_PASSWORD", "--redis-password",
     &FabricConfigFlags::redis_password,
     "redis: password (AUTH); prefer the environment, a flag shows in the process list [env "
     "PERPER_REDIS_PASSWORD]"},
    {"redis_cluster", "PERPER_REDIS_CLUSTER", "--redis-cluster", &FabricConfigFlags::redis_cluster,
     "redis: auto (ask the server), yes (Redis Cluster) or no (one standalone server) [env "
     "PERPER_REDIS_CLUSTER, default auto]"},
    {"redis_lease_ms", "PERPER_REDIS_LEASE_MS", "--redis-lease-ms",
     &FabricConfigFlags::redis_lease_ms,
     "redis: lease of this Fabric process, in milliseconds; reservations of a Fabric that "
     "stopped renewing it pass to others after it [env PERPER_REDIS_LEASE_MS, default 3000]"},
    {"redis_wait_replicas", "PERPER_REDIS_WAIT_REPLICAS", "--redis-wait-replicas",
     &FabricConfigFlags::redis_wait_replicas,
     "redis: replicas each write must reach before it is acknowledged (WAIT) [env "
     "PERPER_REDIS_WAIT_REPLICAS, default 0]"},
};

// Applies the YAML file. Keys: listen, storage, data_dir, log_level, address_file,
// max_value_size, max_open_calls, max_stream_retained_bytes, stream_write_wait_ms, sync, and
// the redis_* keys of kRedisSettings (`redis` may also be a list of addresses).
absl::Status ApplyFile(const std::string& path, FabricConfig& config) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::InvalidArgumentError("cannot read config file " + path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return absl::InvalidArgumentError(path + ": expected a mapping of keys");
  for (const auto& entry : root) {
    std::string key = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    std::string where = path + ":" + std::to_string(entry.first.Mark().line + 1) + ": " + key;
    std::string text;
    if (key == "redis" && value.IsSequence()) {
      for (const auto& address : value) {
        if (!address.IsScalar()) {
          return absl::InvalidArgumentError(where + ": expected a list of host:port addresses");
        }
        text += (text.empty() ? "" : ",") + address.Scalar();
      }
    } else if (!value.IsScalar()) {
      return absl::InvalidArgumentError(where + ": expected a scalar value");
    } else {
      text = value.Scalar();
    }
    PERPER_ASSIGN_OR_RETURN(bool redis, ApplyRedisSetting(key, text, where, config.options.store));
    if (redis) continue;
    if (key == "listen") {
      config.options.listen_address = text;
    } else if (key == "storage") {
      config.options.store.kind = text;
    } else if (key == "data_dir") {
      config.options.store.data_dir = text;
    } else if (key == "log_level") {
      config.log_level = text;
    } else if (key == "address_file") {
      config.address_file = text;
    } else if (key == "max_value_size") {
      PERPER_ASSIGN_OR_RETURN(config.options.limits.max_value_bytes, ParseSize(text, where));
    } else if (key == "max_open_calls") {
      PERPER_ASSIGN_OR_RETURN(config.options.limits.max_open_calls, ParseSize(text, where));
    } else if (key == "max_stream_retained_bytes") {
      PERPER_ASSIGN_OR_RETURN(config.options.limits.max_stream_retained_bytes,
                              ParseSize(text, where));
    } else if (key == "stream_write_wait_ms") {
      PERPER_ASSIGN_OR_RETURN(config.options.limits.stream_write_wait,
                              ParseMilliseconds(text, where));
    } else if (key == "sync") {
      PERPER_ASSIGN_OR_RETURN(config.options.store.sync_writes, ParseBool(text, where));
    } else {
      return absl::InvalidArgumentError(where + ": unknown key");
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyEnvironment(FabricConfig& config) {
  if (const char* v = Env("PERPER_LISTEN")) config.options.listen_address = v;
  if (const char* v = Env("PERPER_STORAGE")) config.options.store.kind = v;
  if (const char* v = Env("PERPER_DATA_DIR")) config.options.store.data_dir = v;
  if (const char* v = Env("PERPER_LOG_LEVEL")) config.log_level = v;
  if (const char* v = Env("PERPER_ADDRESS_FILE")) config.address_file = v;
  if (const char* v = Env("PERPER_MAX_VALUE_SIZE")) {
    PERPER_ASSIGN_OR_RETURN(config.options.limits.max_value_bytes,
                            ParseSize(v, "PERPER_MAX_VALUE_SIZE"));
  }
  if (const char* v = Env("PERPER_MAX_OPEN_CALLS")) {
    PERPER_ASSIGN_OR_RETURN(config.options.limits.max_open_calls,
                            ParseSize(v, "PERPER_MAX_OPEN_CALLS"));
  }
  if (const char* v = Env("PERPER_MAX_STREAM_RETAINED_BYTES")) {
    PERPER_ASSIGN_OR_RETURN(config.options.limits.max_stream_retained_bytes,
                            ParseSize(v, "PERPER_MAX_STREAM_RETAINED_BYTES"));
  }
  if (const char* v = Env("PERPER_STREAM_WRITE_WAIT_MS")) {
    PERPER_ASSIGN_OR_RETURN(config.options.limits.stream_write_wait,
                            ParseMilliseconds(v, "PERPER_STREAM_WRITE_WAIT_MS"));
  }
  if (const char* v = Env("PERPER_SYNC")) {
    PERPER_ASSIGN_OR_RETURN(config.options.store.sync_writes, ParseBool(v, "PERPER_SYNC"));
  }
  for (const RedisSetting& setting : kRedisSettings) {
    if (const char* v = Env(setting.env)) {
      PERPER_RETURN_IF_ERROR(
          ApplyRedisSetting(setting.key, v, setting.env, config.options.store).status());
    }
  }
  return absl::OkStatus();
}

}  // namespace

void AddFabricFlags(CLI::App& app, FabricConfigFlags& flags) {
  app.add_option("--config", flags.config_file, "YAML file with any of the keys below")
      ->envname("PERPER_CONFIG");
  app.add_option("--listen", flags.listen,
                 "Address to serve on, host:port; port 0 picks a free port "
                 "[env PERPER_LISTEN, default 127.0.0.1:40400]");
  app.add_option("--storage", flags.storage,
                 "Storage backend: rocksdb (durable, on disk), memory, or redis (a Redis "
                 "deployment that several Fabrics share, acting as one) "
                 "[env PERPER_STORAGE, default rocksdb]");
  app.add_option("--data-dir", flags.data_dir,
                 "Directory of the rocksdb backend [env PERPER_DATA_DIR, default ./perper-data]");
  app.add_option("--log-level", flags.log_level,
                 "trace, debug, info, warn, error or off [env PERPER_LOG_LEVEL, default info]");
  app.add_option("--address-file", flags.address_file,
                 "Write the bound address to this file once listening [env PERPER_ADDRESS_FILE]");
  app.add_option("--max-value-size", flags.max_value_size,
                 "Largest value accepted (a serialized Any), in bytes; the default fits a 16 MiB "
                 "payload [env PERPER_MAX_VALUE_SIZE, default 17825792]");
  app.add_option("--max-open-calls", flags.max_open_calls,
                 "Most long-lived calls (listen, reservation, waiting) held at once; more get "
                 "RESOURCE_EXHAUSTED [env PERPER_MAX_OPEN_CALLS, default 50000]");
  app.add_option("--max-stream-retained-bytes", flags.max_stream_retained_bytes,
                 "Bytes an ephemeral stream may hold that not every listener has passed; a "
                 "write past it waits for the slowest listener [env "
                 "PERPER_MAX_STREAM_RETAINED_BYTES, default 67108864]");
  app.add_option("--stream-write-wait-ms", flags.stream_write_wait_ms,
                 "How long such a write waits before RESOURCE_EXHAUSTED, in milliseconds [env "
                 "PERPER_STREAM_WRITE_WAIT_MS, default 30000]");
  app.add_option("--sync", flags.sync,
                 "rocksdb: fsync each acknowledged write (false survives process crashes but "
                 "not power loss) [env PERPER_SYNC, default true]");
  for (const RedisSetting& setting : kRedisSettings) {
    app.add_option(setting.flag, flags.*setting.value, setting.help);
  }
}

absl::StatusOr<FabricConfig> ResolveFabricConfig(const FabricConfigFlags& flags) {
  FabricConfig config;
  config.options.store.kind = "rocksdb";
  config.options.store.data_dir = "perper-data";
  if (flags.config_file.has_value()) PERPER_RETURN_IF_ERROR(ApplyFile(*flags.config_file, config));
  PERPER_RETURN_IF_ERROR(ApplyEnvironment(config));
  if (flags.listen) config.options.listen_address = *flags.listen;
  if (flags.storage) config.options.store.kind = *flags.storage;
  if (flags.data_dir) config.options.store.data_dir = *flags.data_dir;
  if (flags.log_level) config.log_level = *flags.log_level;
  if (flags.address_file) config.address_file = *flags.address_file;
  if (flags.max_value_size) config.options.limits.max_value_bytes = *flags.max_value_size;
  if (flags.max_open_calls) config.options.limits.max_open_calls = *flags.max_open_calls;
  if (flags.max_stream_retained_bytes) {
    config.options.limits.max_stream_retained_bytes = *flags.max_stream_retained_bytes;
  }
  if (flags.stream_write_wait_ms) {
    config.options.limits.stream_write_wait =
        std::chrono::milliseconds(*flags.stream_write_wait_ms);
  }
  if (flags.sync) config.options.store.sync_writes = *flags.sync;
  for (const RedisSetting& setting : kRedisSettings) {
    if (const std::optional<std::string>& v = flags.*setting.value) {
      PERPER_RETURN_IF_ERROR(
          ApplyRedisSetting(setting.key, *v, setting.flag, config.options.store).status());
    }
  }

  const std::string& kind = config.options.store.kind;
  if (kind != "memory" && kind != "rocksdb" && kind != "redis") {
    return absl::InvalidArgumentError("storage: unknown backend '" + kind +
                                      "'; expected rocksdb, memory or redis");
  }
  if (!PortOf(config.options.listen_address).has_value()) {
    return absl::InvalidArgumentError(
        "listen: expected host:port with a port from 0 (any free port) to 65535, got '" +
        config.options.listen_address + "'");
  }
  if (config.options.limits.max_value_bytes > (512u << 20)) {
    return absl::InvalidArgumentError("max_value_size: at most 536870912 bytes");
  }
  if (config.options.limits.max_open_calls == 0) {
    return absl::InvalidArgumentError("max_open_calls: must be at least 1");
  }
  if (config.options.limits.max_stream_retained_bytes == 0) {
    return absl::InvalidArgumentError("max_stream_retained_bytes: must be positive");
  }
  if (config.options.limits.stream_write_wait <= std::chrono::milliseconds(0) ||
      config.options.limits.stream_write_wait > std::chrono::hours(24)) {
    return absl::InvalidArgumentError("stream_write_wait_ms: expected 1 to 86400000");
  }
  return config;
}

}  // namespace perper::fabric
