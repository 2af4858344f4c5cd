// SPDX-License-Identifier: MIT
#include "benchmarks/redis_client.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "perper/common/files.h"

namespace perper::bench {

Redis::Redis(int port) : context_(redisConnect("127.0.0.1", port)) {}

Redis::~Redis() {
  if (context_ != nullptr) redisFree(context_);
}

Reply Redis::Command(const std::vector<std::string>& args) {
  Append(args);
  return Next();
}

void Redis::Append(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  redisAppendCommandArgv(context_, static_cast<int>(args.size()), argv.data(), lengths.data());
}

Reply Redis::Next() {
  void* reply = nullptr;
  if (redisGetReply(context_, &reply) != REDIS_OK) return nullptr;
  return Reply(static_cast<redisReply*>(reply));
}

std::string Str(const redisReply* reply) {
  return reply != nullptr &&
                 (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)
             ? std::string(reply->str, reply->len)
             : std::string();
}

std::vector<std::string> PersistenceArgs(const std::string& persistence) {
  if (persistence == "none") return {"--save", "", "--appendonly", "no"};
  if (persistence == "everysec" || persistence == "always") {
    return {"--save", "", "--appendonly", "yes", "--appendfsync", persistence};
  }
  return {};
}

bool StartRedisServer(const std::string& binary, const std::string& persistence,
                      const std::string& dir, RedisServer& server, Report& report) {
  std::vector<std::string> persist = PersistenceArgs(persistence);
  report.Check(!persist.empty(), "unknown Redis persistence " + persistence);
  if (persist.empty()) return false;
  server.port = FreePort();
  std::vector<std::string> argv = {
      binary, "--bind", "127.0.0.1", "--port", std::to_string(server.port), "--dir", dir};
  argv.insert(argv.end(), persist.begin(), persist.end());
  server.process = Child::Spawn(argv, dir + "/redis.log");
  bool up = WaitFor(
      [&] {
        Redis probe(server.port);
        return probe.ok() && Str(probe.Command({"PING"}).get()) == "PONG";
      },
      std::chrono::seconds(10));
  report.Check(up, "redis-server did not start: " + ReadWholeFile(dir + "/redis.log"));
  if (up) {
    std::fprintf(stderr, "redis-server on port %d, pid %d\n", server.port, server.process.pid());
  }
  return up;
}

bool RedisCounters::Read(Redis& redis) {
  Reply reply = redis.Command({"INFO", "commandstats", "stats"});
  if (!reply || reply->type != REDIS_REPLY_STRING) return false;
  calls.clear();
  reads = 0;
  std::istringstream in(std::string(reply->str, reply->len));
  std::string line;
  const std::string command_prefix = "cmdstat_", reads_prefix = "total_reads_processed:";
  while (std::getline(in, line)) {
    if (line.rfind(command_prefix, 0) == 0) {
      // cmdstat_<name>:calls=<n>,usec=...
      size_t colon = line.find(':');
      size_t at = line.find("calls=", colon);
      if (colon == std::string::npos || at == std::string::npos) continue;
      calls[line.substr(command_prefix.size(), colon - command_prefix.size())] =
          std::strtoull(line.c_str() + at + 6, nullptr, 10);
    } else if (line.rfind(reads_prefix, 0) == 0) {
      reads = std::strtoull(line.c_str() + reads_prefix.size(), nullptr, 10);
    }
  }
  return true;
}

RedisCounters RedisCounters::Delta(const RedisCounters& before, const RedisCounters& after) {
  RedisCounters delta;
  for (const auto& [name, count] : after.calls) {
    auto old = before.calls.find(name);
    uint64_t diff = count - (old == before.calls.end() ? 0 : std::min(old->second, count));
    // The INFO of `before` is counted once it ran, so it shows up in `after`; the read of the
    // INFO of `after` is counted before it runs.
    if (name == "info" && diff > 0) --diff;
    if (diff > 0) delta.calls[name] = diff;
  }
  delta.reads = after.reads > before.reads ? after.reads - before.reads - 1 : 0;
  return delta;
}

uint64_t RedisCounters::TotalCalls() const {
  uint64_t total = 0;
  for (const auto& [name, count] : calls) total += count;
  return total;
}

}  // namespace perper::bench
