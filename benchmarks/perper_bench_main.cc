// SPDX-License-Identifier: MIT
// perper-bench: Perper against the gRPC floor and Redis Streams, measured in one run.
// See docs/benchmarks.md. Exits non-zero when a check fails (lost items, broken order, lost
// executions) or a process misbehaves.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "benchmarks/workloads.h"

int main(int argc, char** argv) {
  using namespace perper::bench;
  CLI::App app{
      "perper-bench: Perper (a fresh Fabric per storage mode) against the gRPC floor and Redis\n"
      "Streams, measured in the same run; prints one table per workload."};
  Config config;
  const char* env_binary = std::getenv("PERPER_FABRIC_BINARY");
  config.fabric_binary = env_binary != nullptr ? env_binary : "perper-fabric";
  bool smoke = false;
  double scale = 1.0;
  std::string only;
  std::string modes = "memory,rocksdb,redis,redis3";
  app.add_option("--fabric", config.fabric_binary,
                 "perper-fabric binary [env PERPER_FABRIC_BINARY]");
  app.add_option("--redis-server", config.redis_binary, "redis-server binary");
  app.add_flag("--smoke", smoke, "every workload with tiny counts (a few seconds)");
  app.add_option("--scale", scale, "multiply every count by this factor (e.g. 0.1)");
  app.add_option("--only", only,
                 "comma-separated subset of floor,calls,streams,jobs,state,dotnet (Redis "
                 "baselines follow; dotnet: B1 into a .NET agent beside a C++ one)");
  app.add_option("--modes", modes,
                 "comma-separated storage modes: memory,rocksdb,redis,redis3 (redis: one Fabric "
                 "on a private redis-server; redis3: three Fabrics on one)");
  app.add_option("--redis-persistence", config.redis_persistence,
                 "persistence of the redis-servers started: none (default), everysec or always "
                 "(AOF with that appendfsync)")
      ->check(CLI::IsMember({"none", "everysec", "always"}));
  app.add_option("--durable-scale", config.durable_scale,
                 "rocksdb mode: factor on the counts of calls, jobs, state and sequential "
                 "WriteItem (default 0.1)");
  app.add_flag("!--no-redis", config.run_redis, "skip the Redis baselines");
  app.add_option("--items-per-message", config.items_per_message,
                 "B2: items per listen response the listeners ask for (default 1000; 1 = one "
                 "item per message)");

  // Hidden helper roles: perper-bench re-executes itself as agents, workers and servers.
  std::string role, address_file, fabric, agent, log, name;
  int redis_port = 0;
  auto* hidden = app.add_option_group("");
  hidden->add_option("--role", role);
  hidden->add_option("--address-file", address_file);
  hidden->add_option("--fabric-address", fabric);
  hidden->add_option("--agent", agent);
  hidden->add_option("--log", log);
  hidden->add_option("--name", name);
  hidden->add_option("--redis-port", redis_port);
  CLI11_PARSE(app, argc, argv);

  if (!role.empty()) {
    if (role == "floor-server") return FloorServerRole(address_file);
    if (role == "echo-agent") return EchoAgentRole(fabric, agent);
    if (role == "job-worker") return JobWorkerRole(fabric, agent, log);
    if (role == "redis-echo") return RedisEchoRole(redis_port);
    if (role == "redis-worker") return RedisWorkerRole(redis_port, name, log);
    std::fprintf(stderr, "perper-bench: unknown role %s\n", role.c_str());
    return 2;
  }

  if (smoke) {
    config.counts = Counts::Smoke();
    config.durable_scale = 1.0;
  } else if (scale != 1.0) {
    config.counts.Scale(scale);
  }
  auto has = [](const std::string& list, const std::string& item) {
    return ("," + list + ",").find("," + item + ",") != std::string::npos;
  };
  if (!only.empty()) {
    config.run_floor = has(only, "floor");
    config.run_calls = has(only, "calls");
    config.run_streams = has(only, "streams");
    config.run_jobs = has(only, "jobs");
    config.run_state = has(only, "state");
    config.run_dotnet = has(only, "dotnet");
  }
  // A smoke run stays seconds long: the .NET bench's first build alone takes longer.
  if (smoke) config.run_dotnet = false;
  for (size_t begin = 0; begin <= modes.size();) {
    size_t end = std::min(modes.find(',', begin), modes.size());
    std::string mode = modes.substr(begin, end - begin);
    if (mode != "memory" && mode != "rocksdb" && mode != "redis" && mode != "redis3") {
      std::fprintf(stderr, "perper-bench: unknown mode '%s'\n", mode.c_str());
      return 2;
    }
    begin = end + 1;
  }
  config.memory = has(modes, "memory");
  config.rocksdb = has(modes, "rocksdb");
  config.redis = has(modes, "redis");
  config.redis3 = has(modes, "redis3");

  Report report;
  if (config.run_floor) RunFloor(config, report);
  if (config.run_redis) RunRedis(config, report);
  // A Fabric per mode only for the workloads that use one (the .NET bench starts its own).
  if (config.run_calls || config.run_streams || config.run_jobs || config.run_state) {
    if (config.memory) RunFabric(config, "memory", report);
    if (config.rocksdb) RunFabric(config, "rocksdb", report);
    if (config.redis) RunFabric(config, "redis", report);
    if (config.redis3) RunFabric(config, "redis3", report);
  }
  if (config.run_dotnet) RunDotnet(config, report);
  report.Print();
  return report.failed() ? 1 : 0;
}
