// SPDX-License-Identifier: MIT
// A minimal hiredis connection and a private redis-server for perper-bench: used by the Redis
// Streams baselines and by the Fabric's redis modes (which count Redis commands per operation).
#ifndef PERPER_BENCHMARKS_REDIS_CLIENT_H_
#define PERPER_BENCHMARKS_REDIS_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

#include "benchmarks/harness.h"

namespace perper::bench {

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// One hiredis connection to 127.0.0.1. Not thread-safe: one per thread.
class Redis {
 public:
  explicit Redis(int port);
  ~Redis();
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  bool ok() const { return context_ != nullptr && context_->err == 0; }
  // Sends one command (binary-safe arguments) and returns its reply (null on a broken link).
  Reply Command(const std::vector<std::string>& args);
  // Pipelining: queue commands, then read their replies in order.
  void Append(const std::vector<std::string>& args);
  Reply Next();

 private:
  redisContext* context_;
};

// The text of a string or status reply; empty otherwise.
std::string Str(const redisReply* reply);

// How redis-server keeps its data: "none" (no snapshots, no AOF), "everysec" or "always" (AOF
// with that appendfsync). Returns the redis-server arguments, or an empty vector for an unknown
// name.
std::vector<std::string> PersistenceArgs(const std::string& persistence);

// A private redis-server on a free port of 127.0.0.1, its files in `dir`.
struct RedisServer {
  Child process;
  int port = 0;
};
// Starts it and waits (up to 10 s) until it answers PING; false (and a failed check) otherwise.
bool StartRedisServer(const std::string& binary, const std::string& persistence,
                      const std::string& dir, RedisServer& server, Report& report);

// What redis-server has counted so far: calls per command name (INFO commandstats) and read
// events on client sockets (INFO stats total_reads_processed), which count round trips: one
// request, or one pipelined batch that arrives together, is one read.
struct RedisCounters {
  std::map<std::string, uint64_t> calls;
  uint64_t reads = 0;
  // Reads them over `redis`; false when the reply is missing.
  bool Read(Redis& redis);
  // `after` minus `before`, without the one INFO and its read that a Read between them adds.
  static RedisCounters Delta(const RedisCounters& before, const RedisCounters& after);
  uint64_t TotalCalls() const;
};

}  // namespace perper::bench

#endif  // PERPER_BENCHMARKS_REDIS_CLIENT_H_
