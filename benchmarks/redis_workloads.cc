// SPDX-License-Identifier: MIT
// The Redis Streams baselines: what a user might hand-roll instead of Perper, on a private
// redis-server, with the same counts and payloads as the Fabric workloads.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <latch>
#include <memory>
#include <thread>

#include "benchmarks/redis_client.h"
#include "benchmarks/workloads.h"

namespace perper::bench {
namespace {

// One stream entry: its ID and its field/value pairs.
struct Entry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string Field(const std::string& name) const {
    for (const auto& [field, value] : fields) {
      if (field == name) return value;
    }
    return {};
  }
};

std::vector<Entry> ParseEntries(const redisReply* entries) {
  std::vector<Entry> out;
  if (entries == nullptr || entries->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < entries->elements; ++i) {
    const redisReply* entry = entries->element[i];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2) continue;
    Entry parsed;
    parsed.id = Str(entry->element[0]);
    const redisReply* fields = entry->element[1];
    if (fields->type == REDIS_REPLY_ARRAY) {
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        parsed.fields.push_back({Str(fields->element[f]), Str(fields->element[f + 1])});
      }
    }
    out.push_back(std::move(parsed));
  }
  return out;
}

// The entries of the first stream of an XREAD / XREADGROUP reply.
std::vector<Entry> ParseRead(const redisReply* reply) {
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) return {};
  const redisReply* stream = reply->element[0];
  if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2) return {};
  return ParseEntries(stream->element[1]);
}

}  // namespace

int RedisEchoRole(int port) {
  Redis redis(port);
  if (!redis.ok()) return 1;
  while (true) {
    Reply reply = redis.Command({"XREADGROUP", "GROUP", "echo", "worker", "COUNT", "64", "BLOCK",
                                 "1000", "STREAMS", "req", ">"});
    if (!reply) return 1;
    std::vector<Entry> entries = ParseRead(reply.get());
    for (const Entry& entry : entries) {
      redis.Append({"XADD", entry.Field("reply"), "*", "p", entry.Field("p")});
      redis.Append({"XACK", "req", "echo", entry.id});
    }
    for (size_t i = 0; i < entries.size() * 2; ++i) {
      if (!redis.Next()) return 1;
    }
  }
}

int RedisWorkerRole(int port, const std::string& name, const std::string& log) {
  StallOnSignal();
  Redis redis(port);
  if (!redis.ok()) return 1;
  EventLog events(log);
  bool holding = false;  // Stalled and holding jobs: read no more (like a worker out of credits).
  int64_t last_claim = NowNs();
  auto handle = [&](const std::vector<Entry>& entries) {
    for (const Entry& entry : entries) events.Received(entry.Field("id"));
    if (Stalled()) {  // Held until this worker is killed.
      for (const Entry& entry : entries) events.Held(entry.Field("id"));
      holding = holding || !entries.empty();
      return;
    }
    // The jobs of one delivery are acknowledged together (one round trip), as the Perper
    // worker completes the executions it holds concurrently.
    for (const Entry& entry : entries) {
      redis.Append({"XACK", "jobs", "g", entry.id});
      redis.Append({"INCR", "done"});
    }
    std::vector<bool> acked(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      bool ok = redis.Next() != nullptr;
      acked[i] = redis.Next() != nullptr && ok;
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      if (acked[i]) events.Completed(entries[i].Field("id"));
    }
  };
  while (true) {
    if (holding) {
      pause();  // Until the kill.
      continue;
    }
    if (NowNs() - last_claim > 100'000'000) {
      last_claim = NowNs();
      // Entries idle for 500 ms belong to a dead consumer: take them over.
      Reply claimed = redis.Command(
          {"XAUTOCLAIM", "jobs", "g", name, "500", "0-0", "COUNT", std::to_string(kWorkerCredits)});
      if (!claimed) return 1;
      if (claimed->type == REDIS_REPLY_ARRAY && claimed->elements >= 2) {
        handle(ParseEntries(claimed->element[1]));
      }
    }
    Reply reply =
        redis.Command({"XREADGROUP", "GROUP", "g", name, "COUNT", std::to_string(kWorkerCredits),
                       "BLOCK", "100", "STREAMS", "jobs", ">"});
    if (!reply) return 1;
    handle(ParseRead(reply.get()));
  }
}

namespace {

struct ReadCheck {
  uint64_t expected = 0;
  bool ordered = true;
  int64_t last_at = 0;
};

// Reads `count` entries of `stream` from the start with XREAD (BLOCK when `block`).
ReadCheck ReadAll(int port, const std::string& stream, uint64_t count, bool block,
                  std::vector<int64_t>* latencies) {
  Redis redis(port);
  ReadCheck check;
  std::string last = "0-0";
  int64_t idle_since = NowNs();
  while (check.expected < count && NowNs() - idle_since < 10'000'000'000) {
    std::vector<std::string> args = {"XREAD", "COUNT", "1000"};
    if (block) {
      args.push_back("BLOCK");
      args.push_back("1000");
    }
    args.insert(args.end(), {"STREAMS", stream, last});
    Reply reply = redis.Command(args);
    if (!reply) break;
    std::vector<Entry> entries = ParseRead(reply.get());
    if (!entries.empty()) idle_since = NowNs();
    for (const Entry& entry : entries) {
      std::string payload = entry.Field("p");
      check.ordered &= PayloadSequence(payload) == check.expected;
      ++check.expected;
      if (latencies != nullptr) latencies->push_back(NowNs() - PayloadStamp(payload));
      last = entry.id;
    }
    check.last_at = NowNs();
  }
  return check;
}

// XADDs `count` items from one connection, pipelined in batches of kStreamBatch or one by one.
bool AddAll(Redis& redis, const std::string& stream, uint64_t count, bool batched) {
  size_t pending = 0;
  bool ok = true;
  for (uint64_t i = 0; i < count; ++i) {
    redis.Append({"XADD", stream, "*", "p", MakePayload(i, NowNs())});
    ++pending;
    if (!batched || pending == kStreamBatch || i + 1 == count) {
      for (; pending > 0; --pending) ok = redis.Next() != nullptr && ok;
    }
  }
  return ok;
}

void RunRedisCalls(const Config& config, RedisServer& server, const std::string& dir,
                   Report& report) {
  const Counts& n = config.counts;
  Redis setup(server.port);
  setup.Command({"XGROUP", "CREATE", "req", "echo", "$", "MKSTREAM"});
  Child worker = Child::Spawn(
      {SelfPath(), "--role", "redis-echo", "--redis-port", std::to_string(server.port)},
      dir + "/redis-echo.log");
  // One request/reply; `last` is the caller's position in its reply stream.
  auto call = [](Redis& redis, const std::string& reply_stream, std::string& last, uint64_t i) {
    std::string payload = MakePayload(i, 0);
    if (!redis.Command({"XADD", "req", "*", "reply", reply_stream, "p", payload})) return false;
    Reply reply =
        redis.Command({"XREAD", "COUNT", "1", "BLOCK", "5000", "STREAMS", reply_stream, last});
    std::vector<Entry> entries = ParseRead(reply.get());
    if (entries.empty()) return false;
    last = entries[0].id;
    return entries[0].Field("p") == payload;
  };
  {
    Redis redis(server.port);
    std::string last = "0-0";
    bool ok = true;
    for (int i = 0; i < 200; ++i) ok &= call(redis, "reply-seq", last, i);
    ServerMeter meter(server.process.pid());
    std::vector<int64_t> latencies;
    int64_t start = NowNs();
    for (uint64_t i = 0; i < n.calls_sequential; ++i) {
      int64_t t0 = NowNs();
      ok &= call(redis, "reply-seq", last, i);
      latencies.push_back(NowNs() - t0);
    }
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok, "Redis request/reply (sequential) failed");
    Row row{.workload = "B1 calls",
            .key = "redis.b1.seq",
            .name = "Redis request/reply, sequential",
            .mode = "redis",
            .count = n.calls_sequential,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = n.calls_sequential / seconds,
            .floor_key = "floor.unary"};
    meter.Fill(row);
    report.Add(row);
  }
  {
    ServerMeter meter(server.process.pid());
    uint64_t each = std::max<uint64_t>(1, n.calls_in_flight / kInFlight);
    std::vector<std::vector<int64_t>> per_thread(kInFlight);
    std::atomic<bool> ok{true};
    std::vector<std::thread> threads;
    std::latch gate(kInFlight);
    std::atomic<int64_t> start{0};
    for (int t = 0; t < kInFlight; ++t) {
      threads.emplace_back([&, t] {
        Redis redis(server.port);
        std::string last = "0-0";
        std::string stream = "reply-" + std::to_string(t);
        if (!call(redis, stream, last, each)) ok = false;  // connects
        gate.arrive_and_wait();
        int64_t unset = 0;
        start.compare_exchange_strong(unset, NowNs());
        for (uint64_t i = 0; i < each; ++i) {
          int64_t t0 = NowNs();
          if (!call(redis, stream, last, i)) ok = false;
          per_thread[t].push_back(NowNs() - t0);
        }
      });
    }
    for (auto& thread : threads) thread.join();
    double seconds = (NowNs() - start) / 1e9;
    std::vector<int64_t> all;
    for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
    report.Check(ok, "Redis request/reply (64 in flight) failed");
    Row row{.workload = "B1 calls",
            .key = "redis.b1.64",
            .name = "Redis request/reply, 64 in flight",
            .mode = "redis",
            .count = each * kInFlight,
            .latency = Summarize(std::move(all)),
            .ops_per_s = each * kInFlight / seconds,
            .floor_key = "floor.unary64"};
    meter.Fill(row);
    report.Add(row);
  }
  worker.Stop();
}

void RunRedisStreams(const Config& config, RedisServer& server, Report& report) {
  const Counts& n = config.counts;
  Redis writer(server.port);
  const std::string workload = "B2 streams";
  auto push = [&](const std::string& stream, uint64_t count, int readers, bool batched,
                  double& writer_rate) {
    std::vector<ReadCheck> checks(readers);
    std::vector<std::thread> threads;
    for (int r = 0; r < readers; ++r) {
      threads.emplace_back(
          [&, r] { checks[r] = ReadAll(server.port, stream, count, true, nullptr); });
    }
    // XREAD cannot say when a reader is waiting; the readers start from 0-0 and miss nothing.
    int64_t start = NowNs();
    bool ok = AddAll(writer, stream, count, batched);
    writer_rate = count / ((NowNs() - start) / 1e9);
    for (auto& thread : threads) thread.join();
    double slowest = 0;
    for (int r = 0; r < readers; ++r) {
      ok &= checks[r].ordered && checks[r].expected == count;
      double rate = count / ((checks[r].last_at - start) / 1e9);
      slowest = r == 0 ? rate : std::min(slowest, rate);
    }
    report.Check(ok, "Redis stream " + stream + " lost or reordered items");
    return slowest;
  };
  for (int readers : {1, 4}) {
    ServerMeter meter(server.process.pid());
    double writer_rate = 0;
    double rate =
        push("push-" + std::to_string(readers), n.stream_items, readers, true, writer_rate);
    char note[96];
    std::snprintf(note, sizeof note, "per reader, order checked; XADD pipelined x100: %.0f/s",
                  writer_rate);
    Row row{.workload = workload,
            .key = "redis.b2.read" + std::to_string(readers),
            .name = "Redis XADD -> XREAD by " + std::to_string(readers) + " reader(s)",
            .mode = "redis",
            .count = n.stream_items,
            .ops_per_s = rate,
            .floor_key = "floor.push",
            .note = note};
    meter.Fill(row);
    report.Add(row);
  }
  {
    ServerMeter meter(server.process.pid());
    double writer_rate = 0;
    push("sequential", n.stream_items_sequential, 1, false, writer_rate);
    Row row{.workload = workload,
            .key = "redis.b2.xadd.seq",
            .name = "Redis XADD sequential, 1 reader",
            .mode = "redis",
            .count = n.stream_items_sequential,
            .ops_per_s = writer_rate,
            .floor_key = "floor.unary",
            .note = "writer items/s"};
    meter.Fill(row);
    report.Add(row);
  }
  {
    ServerMeter meter(server.process.pid());
    int64_t start = NowNs();
    bool ok = AddAll(writer, "append", n.stream_items, true);
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok, "Redis append failed");
    Row row{.workload = workload,
            .key = "redis.b2.xadd.batch",
            .name = "Redis XADD pipelined x100, no reader",
            .mode = "redis",
            .count = n.stream_items,
            .ops_per_s = n.stream_items / seconds,
            .note = "not durable (no AOF)"};
    meter.Fill(row);
    report.Add(row);
  }
  {
    ServerMeter meter(server.process.pid());
    int64_t start = NowNs();
    ReadCheck check = ReadAll(server.port, "push-1", n.stream_items, false, nullptr);
    double seconds = (NowNs() - start) / 1e9;
    report.Check(check.ordered && check.expected == n.stream_items, "Redis replay lost items");
    Row row{.workload = workload,
            .key = "redis.b2.replay",
            .name = "Redis XREAD replay from 0",
            .mode = "redis",
            .count = n.stream_items,
            .ops_per_s = n.stream_items / seconds,
            .floor_key = "floor.push"};
    meter.Fill(row);
    report.Add(row);
  }
  {
    ServerMeter meter(server.process.pid());
    std::vector<int64_t> latencies;
    ReadCheck check;
    std::thread reader(
        [&] { check = ReadAll(server.port, "paced", n.e2e_items, true, &latencies); });
    const int64_t interval = 1'000'000'000 / kE2eRate;
    int64_t start = NowNs();
    uint64_t sent = 0;
    bool ok = true;
    while (sent < n.e2e_items && ok) {
      size_t due = 0;
      int64_t now = NowNs();
      while (sent < n.e2e_items && start + static_cast<int64_t>(sent) * interval <= now) {
        writer.Append({"XADD", "paced", "*", "p",
                       MakePayload(sent, start + static_cast<int64_t>(sent) * interval)});
        ++sent;
        ++due;
      }
      if (due == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));  // pacing, not synchronisation
        continue;
      }
      for (; due > 0; --due) ok = writer.Next() != nullptr && ok;
    }
    reader.join();
    report.Check(ok && check.ordered && check.expected == n.e2e_items,
                 "Redis paced stream lost items");
    Row row{.workload = workload,
            .key = "redis.b2.e2e",
            .name = "Redis end-to-end latency at 10,000 items/s",
            .mode = "redis",
            .count = n.e2e_items,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = n.e2e_items / ((check.last_at - start) / 1e9),
            .note = "writer pipelines the items due"};
    meter.Fill(row);
    report.Add(row);
  }
}

void RunRedisJobs(const Config& config, RedisServer& server, const std::string& dir,
                  Report& report) {
  const uint64_t jobs = config.counts.jobs;
  Redis control(server.port);
  control.Command({"XGROUP", "CREATE", "jobs", "g", "$", "MKSTREAM"});
  // The backlog is created first (8 connections), so the workers run from a full queue.
  std::atomic<bool> created_ok{true};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        Redis redis(server.port);
        for (uint64_t i = t; i < jobs; i += 8) {
          if (!redis.Command({"XADD", "jobs", "*", "id", "job-" + std::to_string(i), "p",
                              MakePayload(i, 0)})) {
            created_ok = false;
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }
  ServerMeter meter(server.process.pid());
  std::vector<Child> workers;
  std::vector<std::string> logs;
  int64_t start = NowNs();
  for (int w = 0; w < kWorkers; ++w) {
    logs.push_back(dir + "/redis-worker-" + std::to_string(w) + ".events");
    workers.push_back(Child::Spawn(
        {SelfPath(), "--role", "redis-worker", "--redis-port", std::to_string(server.port),
         "--name", "w" + std::to_string(w), "--log", logs.back()},
        logs.back() + ".stderr"));
  }
  auto done = [&] { return std::atoll(Str(control.Command({"GET", "done"}).get()).c_str()); };
  bool half = WaitFor([&] { return done() >= static_cast<long long>(jobs / 2); },
                      std::chrono::seconds(300));
  int64_t half_at = NowNs();
  // Worker 0 stops acknowledging, and is killed once it holds jobs it never acknowledged (or
  // once no job is left for it: with small counts the others may take all that remain).
  workers[0].Signal(kStallSignal);
  WaitFor([&] { return HeldJobs(logs[0]) > 0 || done() >= static_cast<long long>(jobs); },
          std::chrono::seconds(5), std::chrono::milliseconds(1));
  int64_t kill_at = NowNs();  // Before the signal, as in the Fabric's B3.
  workers[0].Signal(SIGKILL);
  workers[0].Wait(std::chrono::seconds(5));
  bool drained = WaitFor(
      [&] {
        Reply pending = control.Command({"XPENDING", "jobs", "g"});
        if (!pending || pending->type != REDIS_REPLY_ARRAY || pending->elements < 1 ||
            pending->element[0]->integer != 0) {
          return false;
        }
        Reply groups = control.Command({"XINFO", "GROUPS", "jobs"});
        if (!groups || groups->type != REDIS_REPLY_ARRAY || groups->elements < 1) return false;
        const redisReply* group = groups->element[0];
        for (size_t f = 0; f + 1 < group->elements; f += 2) {
          if (Str(group->element[f]) == "entries-read") {
            return group->element[f + 1]->integer >= static_cast<long long>(jobs);
          }
        }
        return false;
      },
      std::chrono::seconds(300), std::chrono::milliseconds(5));
  int64_t end = NowNs();
  report.Check(created_ok && half && drained, "Redis consumer group did not finish");
  for (size_t w = 1; w < workers.size(); ++w) workers[w].Stop();
  JobOutcome outcome = ReadJobLogs(logs, jobs, 0, kill_at);
  report.Check(outcome.lost == 0, "Redis consumer group lost " + std::to_string(outcome.lost));
  char note[200];
  std::snprintf(note, sizeof note, "XREADGROUP COUNT 16, XACKs of a delivery pipelined; split %s",
                outcome.split.c_str());
  Row row{.workload = "B3 reservations",
          .key = "redis.b3.rate",
          .name = "Redis consumer group, 4 workers (first half)",
          .mode = "redis",
          .count = jobs / 2,
          .ops_per_s = (jobs / 2) / ((half_at - start) / 1e9),
          .note = note};
  meter.Fill(row);
  report.Add(row);
  std::snprintf(
      note, sizeof note,
      "kill -9 of worker 0: %llu open, %llu XAUTOCLAIMed (idle 500 ms) after %.1f-%.1f ms; "
      "duplicates %llu, lost %llu",
      static_cast<unsigned long long>(outcome.orphaned),
      static_cast<unsigned long long>(outcome.redelivered), outcome.first_recovery_ms,
      outcome.recovery_ms, static_cast<unsigned long long>(outcome.duplicates),
      static_cast<unsigned long long>(outcome.lost));
  Row after{.workload = "B3 reservations",
            .key = "redis.b3.after",
            .name = "Redis, 3 workers after kill -9 (second half)",
            .mode = "redis",
            .count = jobs - jobs / 2,
            .ops_per_s = (jobs - jobs / 2) / ((end - half_at) / 1e9),
            .note = note};
  meter.Fill(after);
  report.Add(after);
}

void RunRedisState(const Config& config, RedisServer& server, Report& report) {
  const uint64_t ops = config.counts.state_ops;
  Redis redis(server.port);
  for (bool set : {true, false}) {
    ServerMeter meter(server.process.pid());
    std::vector<int64_t> latencies;
    bool ok = true;
    int64_t start = NowNs();
    for (uint64_t i = 0; i < ops; ++i) {
      std::string key = "k" + std::to_string(i);
      int64_t t0 = NowNs();
      if (set) {
        ok &= redis.Command({"HSET", "state", key, MakePayload(i, 0)}) != nullptr;
      } else {
        ok &= Str(redis.Command({"HGET", "state", key}).get()) == MakePayload(i, 0);
      }
      latencies.push_back(NowNs() - t0);
    }
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok, std::string("Redis ") + (set ? "HSET" : "HGET") + " failed");
    Row row{.workload = "State",
            .key = set ? "redis.state.set" : "redis.state.get",
            .name = set ? "Redis HSET, sequential" : "Redis HGET, sequential",
            .mode = "redis",
            .count = ops,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = ops / seconds,
            .floor_key = "floor.unary"};
    meter.Fill(row);
    report.Add(row);
  }
}

}  // namespace

void RunRedis(const Config& config, Report& report) {
  TempDir dir;
  RedisServer server;
  if (!StartRedisServer(config.redis_binary, config.redis_persistence, dir.path(), server,
                        report)) {
    return;
  }
  if (config.run_calls) RunRedisCalls(config, server, dir.path(), report);
  if (config.run_streams) RunRedisStreams(config, server, report);
  if (config.run_jobs) RunRedisJobs(config, server, dir.path(), report);
  if (config.run_state) RunRedisState(config, server, report);
  server.process.Stop();
}

}  // namespace perper::bench
