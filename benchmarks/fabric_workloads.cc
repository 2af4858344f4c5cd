// SPDX-License-Identifier: MIT
// The Perper workloads (B1 calls, B2 streams, B3 reservations, state) against a fresh Fabric
// process (or, in mode redis3, three sharing one redis-server), and the agent and worker helper
// roles that serve them over raw grpc2.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <latch>
#include <memory>
#include <mutex>
#include <thread>

#include "benchmarks/raw_fabric_client.h"
#include "benchmarks/redis_client.h"
#include "benchmarks/workloads.h"
#include "perper/common/files.h"

namespace perper::bench {
namespace g2 = perper::grpc2;

int EchoAgentRole(const std::string& fabric, const std::string& agent) {
  RawFabricClient client(fabric);
  grpc::Status status =
      ReserveLoop(client, agent, "echo", 4096,
                  [&](const g2::ExecutionsListenResponse& message, CreditGrant& grant) {
                    // Completed on the reservation call with its credit; the writer coalesces what
                    // arrives while a write is in flight, so many executions are in flight at once.
                    g2::ExecutionsCompleteRequest completion;
                    *completion.mutable_execution() = message.execution();
                    if (message.arguments_size() > 0)
                      *completion.add_results() = message.arguments(0);
                    grant.Complete(std::move(completion), 1);
                  });
  std::fprintf(stderr, "echo agent: %s\n", status.error_message().c_str());
  return status.ok() ? 0 : 1;
}

int JobWorkerRole(const std::string& fabric, const std::string& agent, const std::string& log) {
  StallOnSignal();
  RawFabricClient client(fabric);
  EventLog events(log);
  // The reading thread logs each job the moment it arrives and hands its completion (with the
  // credit it frees) to the call's writer, which sends whatever is queued in one message; a
  // job is logged completed once the message carrying it was written. A completion written
  // just before a kill that the Fabric never read leaves the job to be redelivered (counted as
  // a duplicate, never as lost).
  grpc::Status status =
      ReserveLoop(client, agent, "workers", kWorkerCredits,
                  [&](const g2::ExecutionsListenResponse& message, CreditGrant& grant) {
                    const std::string& id = message.execution().execution();
                    events.Received(id);
                    if (Stalled()) {  // Held until this worker is killed.
                      events.Held(id);
                      return;
                    }
                    g2::ExecutionsCompleteRequest completion;
                    *completion.mutable_execution() = message.execution();
                    *completion.add_results() = PackBytes(log);
                    grant.Complete(std::move(completion), 1, [&events, id](bool ok) {
                      if (ok) events.Completed(id);
                    });
                  });
  std::fprintf(stderr, "job worker: %s\n", status.error_message().c_str());
  return status.ok() ? 0 : 1;
}

namespace {

// The Fabric process(es) of one mode: one, or (redis3) several sharing one redis-server. Clients
// and workers are spread over them round-robin, in the order they are created. Next() is
// thread-safe; the rest is used by the main thread only.
struct Fabric {
  std::string mode;
  std::vector<Child> processes;
  std::vector<std::string> addresses;
  RedisServer* redis = nullptr;           // the redis modes: the server the Fabrics share
  std::unique_ptr<Redis> redis_counter;   // reads its INFO between workloads
  std::vector<std::string> command_rows;  // the rows of the commands-per-operation table
  std::atomic<size_t> next{0};

  const std::string& Next() { return addresses[next++ % addresses.size()]; }
  // The processes whose CPU and peak memory count as the server's: the Fabrics, and redis-server.
  std::vector<pid_t> ServerPids() const {
    std::vector<pid_t> pids;
    for (const Child& process : processes) pids.push_back(process.pid());
    if (redis != nullptr) pids.push_back(redis->process.pid());
    return pids;
  }
  // The resident memory of the Fabrics, in kB.
  int64_t RssKb() const {
    int64_t total = 0;
    for (const Child& process : processes) total += StatusKb(process.pid(), "VmRSS");
    return total;
  }
};

// Measures a workload on `fabric` from construction on: the server columns of its rows and, in
// the redis modes, what redis-server executed (CountCommands). Main thread only.
class Meter {
 public:
  Meter(Fabric& fabric, Report& report)
      : fabric_(fabric), report_(report), server_(fabric.ServerPids()) {
    if (fabric_.redis != nullptr) {
      redis_cpu_start_ = CpuSeconds(fabric_.redis->process.pid());
      counted_ = before_.Read(*fabric_.redis_counter);
    }
  }
  // Fills the server columns of `row` and, in the redis modes, names the memory-mode row of the
  // same measurement to compare with.
  void Fill(Row& row) const {
    server_.Fill(row);
    const std::string suffix = "." + fabric_.mode;
    if (fabric_.redis != nullptr && row.key.size() > suffix.size() &&
        row.key.compare(row.key.size() - suffix.size(), suffix.size(), suffix) == 0) {
      row.memory_key = row.key.substr(0, row.key.size() - suffix.size()) + ".memory";
    }
  }
  // The redis modes: adds a row to the commands-per-operation table for `ops` operations (each
  // one `unit`) done since construction.
  void CountCommands(const std::string& what, uint64_t ops, const std::string& unit) {
    if (fabric_.redis == nullptr) return;
    RedisCounters after;
    if (!counted_ || !after.Read(*fabric_.redis_counter) || ops == 0) {
      report_.Check(false, what + ": INFO of the redis-server (" + fabric_.mode + ") unreadable");
      return;
    }
    RedisCounters delta = RedisCounters::Delta(before_, after);
    // Every operation reads or writes the store, so a Fabric that sent Redis nothing is not
    // using it.
    report_.Check(delta.TotalCalls() > 0,
                  what + ": the Fabric (" + fabric_.mode + ") sent no command to Redis");
    const double n = static_cast<double>(ops);
    uint64_t scripts = 0;
    for (const char* name : {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}) {
      auto found = delta.calls.find(name);
      if (found != delta.calls.end()) scripts += found->second;
    }
    std::vector<std::pair<uint64_t, std::string>> by_calls;
    for (const auto& [name, calls] : delta.calls) by_calls.push_back({calls, name});
    std::sort(by_calls.begin(), by_calls.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::string top;
    char buffer[96];
    for (size_t i = 0; i < by_calls.size() && i < 5; ++i) {
      std::snprintf(buffer, sizeof buffer, "%s%s %.2f", i ? ", " : "", by_calls[i].second.c_str(),
                    by_calls[i].first / n);
      top += buffer;
    }
    std::snprintf(buffer, sizeof buffer, "%.2f | %.2f | %.2f | %.2f", delta.TotalCalls() / n,
                  scripts / n, delta.reads / n,
                  CpuSeconds(fabric_.redis->process.pid()) - redis_cpu_start_);
    fabric_.command_rows.push_back("| " + what + " | " + unit + " | " + std::to_string(ops) +
                                   " | " + buffer + " | " + top + " |");
  }

 private:
  Fabric& fabric_;
  Report& report_;
  ServerMeter server_;
  double redis_cpu_start_ = 0;
  RedisCounters before_;
  bool counted_ = false;
};

constexpr char kEchoAgent[] = "Echo";
constexpr char kJobAgent[] = "Job";

std::string Label(const std::string& name, const std::string& mode) { return name + "." + mode; }

// Runs `body(thread_index)` on `threads` threads and joins them.
void Parallel(int threads, const std::function<void(int)>& body) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (auto& thread : pool) thread.join();
}

// B1: calls to an echo agent in another process.
void RunCalls(const Config& config, const std::string& mode, Fabric& fabric, TempDir& dir,
              Report& report) {
  const Counts& n = config.counts;
  Child agent = Child::Spawn({SelfPath(), "--role", "echo-agent", "--fabric-address", fabric.Next(),
                              "--agent", kEchoAgent},
                             dir.path() + "/echo-agent.log");
  RawFabricClient client(fabric.Next());
  std::atomic<uint64_t> next_id{0};
  // One call either way; true when the result is the argument.
  auto call = [&](RawFabricClient& c, bool one_round_trip) {
    std::string id = "call-" + std::to_string(next_id++);
    std::string argument = MakePayload(next_id, 0);
    std::string result;
    if (one_round_trip) {
      return c.Call(id, kEchoAgent, "echo-1", "Echo", argument, result).ok() && result == argument;
    }
    bool ok = c.CreateExecution(id, kEchoAgent, "echo-1", "Echo", argument).ok();
    ok = ok && c.GetResult(id, result).ok() && result == argument;
    return c.DeleteExecution(id).ok() && ok;
  };
  bool warm = true;
  for (int i = 0; i < 200; ++i) warm &= call(client, true);
  report.Check(warm, "B1 warm-up calls failed (" + mode + ")");

  for (bool one_round_trip : {true, false}) {
    std::string how = one_round_trip ? "Call" : "Create+GetResult+Delete";
    std::string key = one_round_trip ? "b1.call" : "b1.cgd";
    {
      Meter meter(fabric, report);
      std::vector<int64_t> latencies;
      bool ok = true;
      int64_t start = NowNs();
      for (uint64_t i = 0; i < n.calls_sequential; ++i) {
        int64_t t0 = NowNs();
        ok &= call(client, one_round_trip);
        latencies.push_back(NowNs() - t0);
      }
      double seconds = (NowNs() - start) / 1e9;
      report.Check(ok, "B1 " + how + " sequential: a result differed (" + mode + ")");
      Row row{.workload = "B1 calls",
              .key = Label(key + ".seq", mode),
              .name = how + ", sequential",
              .mode = mode,
              .count = n.calls_sequential,
              .latency = Summarize(std::move(latencies)),
              .ops_per_s = n.calls_sequential / seconds,
              .floor_key = "floor.unary",
              .redis_key = "redis.b1.seq"};
      meter.Fill(row);
      report.Add(row);
      meter.CountCommands(row.workload + ": " + row.name, n.calls_sequential, "call");
    }
    {
      Meter meter(fabric, report);
      uint64_t each = std::max<uint64_t>(1, n.calls_in_flight / kInFlight);
      std::vector<std::vector<int64_t>> per_thread(kInFlight);
      std::atomic<bool> ok{true};
      std::latch gate(kInFlight);
      std::atomic<int64_t> start{0};
      Parallel(kInFlight, [&](int t) {
        RawFabricClient own(fabric.Next());
        if (!call(own, one_round_trip)) ok = false;  // connects
        gate.arrive_and_wait();
        int64_t unset = 0;
        start.compare_exchange_strong(unset, NowNs());
        for (uint64_t i = 0; i < each; ++i) {
          int64_t t0 = NowNs();
          if (!call(own, one_round_trip)) ok = false;
          per_thread[t].push_back(NowNs() - t0);
        }
      });
      double seconds = (NowNs() - start) / 1e9;
      std::vector<int64_t> all;
      for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
      report.Check(ok, "B1 " + how + " 64 in flight: a result differed (" + mode + ")");
      Row row{.workload = "B1 calls",
              .key = Label(key + ".64", mode),
              .name = how + ", 64 in flight",
              .mode = mode,
              .count = each * kInFlight,
              .latency = Summarize(std::move(all)),
              .ops_per_s = each * kInFlight / seconds,
              .floor_key = "floor.unary64",
              .redis_key = "redis.b1.64"};
      meter.Fill(row);
      report.Add(row);
      // Each thread made one call more before the gate, to connect.
      meter.CountCommands(row.workload + ": " + row.name, (each + 1) * kInFlight, "call");
    }
  }
  agent.Stop();
}

// Checks one listener's view: sequence numbers 0..count-1 in order, keys strictly increasing.
struct OrderCheck {
  uint64_t expected = 0;
  int64_t last_key = INT64_MIN;
  bool ordered = true;
  int64_t last_at = 0;
  void See(int64_t key, const std::string& value) {
    ordered &= PayloadSequence(value) == expected && key > last_key;
    ++expected;
    last_key = key;
    last_at = NowNs();
  }
};

// Writes `count` items to `stream` in WriteItems batches of kStreamBatch (or one WriteItem each).
bool WriteAll(RawFabricClient& client, const std::string& stream, uint64_t count, bool batched) {
  bool ok = true;
  std::vector<std::string> batch;
  for (uint64_t i = 0; i < count && ok; ++i) {
    if (!batched) {
      ok = client.WriteItem(stream, MakePayload(i, NowNs())).ok();
      continue;
    }
    batch.push_back(MakePayload(i, NowNs()));
    if (batch.size() == kStreamBatch || i + 1 == count) {
      ok = client.WriteItems(stream, batch).ok();
      batch.clear();
    }
  }
  return ok && client.CompleteStream(stream).ok();
}

// One writer, `listeners` listener threads (each its own connection) that are registered before
// the first write. Returns the slowest listener's items/s (from the first write to its last item).
double PushToListeners(Fabric& fabric, RawFabricClient& client, const std::string& stream,
                       uint64_t count, int listeners, bool batched, int items_per_message,
                       Report& report, const std::string& what, double* writer_rate) {
  report.Check(client.CreateStream(stream, false).ok(), what + ": Create failed");
  std::vector<OrderCheck> checks(listeners);
  std::vector<grpc::Status> statuses(listeners);
  std::vector<std::thread> threads;
  for (int l = 0; l < listeners; ++l) {
    threads.emplace_back([&, l, address = fabric.Next()] {
      RawFabricClient own(address);
      statuses[l] = own.ListenAll(
          stream, "", 0, [&](int64_t key, const std::string& v) { checks[l].See(key, v); },
          items_per_message);
    });
  }
  size_t registered = 0;
  uint64_t items = 0;
  bool ready = WaitFor(
      [&] {
        client.StreamInfo(stream, items, registered);
        return registered >= static_cast<size_t>(listeners);
      },
      std::chrono::seconds(10));
  report.Check(ready, what + ": listeners did not register");
  int64_t start = NowNs();
  bool written = WriteAll(client, stream, count, batched);
  if (writer_rate != nullptr) *writer_rate = count / ((NowNs() - start) / 1e9);
  report.Check(written, what + ": writing failed");
  for (auto& thread : threads) thread.join();
  double slowest = 0;
  for (int l = 0; l < listeners; ++l) {
    report.Check(statuses[l].ok(), what + ": listen ended with " + statuses[l].error_message());
    report.Check(checks[l].ordered && checks[l].expected == count,
                 what + ": listener " + std::to_string(l) + " saw " +
                     std::to_string(checks[l].expected) + " items" +
                     (checks[l].ordered ? "" : ", out of order"));
    double rate = count / ((checks[l].last_at - start) / 1e9);
    slowest = l == 0 ? rate : std::min(slowest, rate);
  }
  return slowest;
}

// B2: streams.
void RunStreams(const Config& config, const std::string& mode, Fabric& fabric, Report& report) {
  const Counts& n = config.counts;
  RawFabricClient client(fabric.Next());
  const std::string workload = "B2 streams";
  for (int listeners : {1, 4}) {
    Meter meter(fabric, report);
    std::string stream = "push-" + std::to_string(listeners);
    double writer_rate = 0;
    double rate = PushToListeners(fabric, client, stream, n.stream_items, listeners, true,
                                  config.items_per_message, report,
                                  "B2 push " + stream + " (" + mode + ")", &writer_rate);
    char note[96];
    std::snprintf(note, sizeof note, "per listener, order checked; writer %.0f items/s",
                  writer_rate);
    Row row{.workload = workload,
            .key = Label("b2.push" + std::to_string(listeners), mode),
            .name = "push to " + std::to_string(listeners) + " listener(s), WriteItems x100",
            .mode = mode,
            .count = n.stream_items,
            .ops_per_s = rate,
            .floor_key = "floor.push",
            .redis_key = "redis.b2.read" + std::to_string(listeners),
            .note = note};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, row.count, "item");
  }
  {
    Meter meter(fabric, report);
    double writer_rate = 0;
    PushToListeners(fabric, client, "sequential", n.stream_items_sequential, 1, false,
                    config.items_per_message, report, "B2 sequential WriteItem (" + mode + ")",
                    &writer_rate);
    Row row{.workload = workload,
            .key = Label("b2.write.seq", mode),
            .name = "WriteItem sequential, 1 listener",
            .mode = mode,
            .count = n.stream_items_sequential,
            .ops_per_s = writer_rate,
            .floor_key = "floor.unary",
            .redis_key = "redis.b2.xadd.seq",
            .note = "writer items/s"};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, row.count, "item");
  }
  {
    Meter meter(fabric, report);
    report.Check(client.CreateStream("append", false).ok(), "B2 append: Create failed");
    int64_t start = NowNs();
    bool ok = WriteAll(client, "append", n.stream_items, true);
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok, "B2 append failed (" + mode + ")");
    Row row{.workload = workload,
            .key = Label("b2.append", mode),
            .name = "append, WriteItems x100, no listener",
            .mode = mode,
            .count = n.stream_items,
            .ops_per_s = n.stream_items / seconds,
            .redis_key = "redis.b2.xadd.batch",
            .note = mode == "rocksdb" ? "durable (fsync per acknowledged batch)" : ""};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, row.count, "item");
  }
  {
    Meter meter(fabric, report);
    OrderCheck check;
    int64_t start = NowNs();
    grpc::Status status = client.ListenAll(
        "push-1", "", 0, [&](int64_t key, const std::string& v) { check.See(key, v); },
        config.items_per_message);
    double seconds = (NowNs() - start) / 1e9;
    report.Check(status.ok() && check.ordered && check.expected == n.stream_items,
                 "B2 replay lost or reordered items (" + mode + ")");
    Row row{.workload = workload,
            .key = Label("b2.replay", mode),
            .name = "replay of a stored stream from key 0",
            .mode = mode,
            .count = n.stream_items,
            .ops_per_s = n.stream_items / seconds,
            .floor_key = "floor.push",
            .redis_key = "redis.b2.replay"};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, row.count, "item");
  }
  {  // End-to-end latency at a fixed rate: each item is stamped with its due time.
    Meter meter(fabric, report);
    report.Check(client.CreateStream("paced", false).ok(), "B2 paced: Create failed");
    std::vector<int64_t> latencies;
    latencies.reserve(n.e2e_items);
    OrderCheck check;
    std::thread listener([&] {
      RawFabricClient own(fabric.Next());
      own.ListenAll(
          "paced", "", 0,
          [&](int64_t key, const std::string& v) {
            check.See(key, v);
            latencies.push_back(NowNs() - PayloadStamp(v));
          },
          config.items_per_message);
    });
    size_t registered = 0;
    uint64_t items = 0;
    WaitFor([&] { return client.StreamInfo("paced", items, registered).ok() && registered > 0; },
            std::chrono::seconds(10));
    const int64_t interval = 1'000'000'000 / kE2eRate;
    int64_t start = NowNs();
    uint64_t sent = 0;
    bool ok = true;
    while (sent < n.e2e_items && ok) {
      std::vector<std::string> due;
      int64_t now = NowNs();
      while (sent < n.e2e_items && start + static_cast<int64_t>(sent) * interval <= now) {
        due.push_back(MakePayload(sent, start + static_cast<int64_t>(sent) * interval));
        ++sent;
      }
      if (due.empty()) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));  // pacing, not synchronisation
        continue;
      }
      ok = due.size() == 1 ? client.WriteItem("paced", due[0]).ok()
                           : client.WriteItems("paced", due).ok();
    }
    ok = ok && client.CompleteStream("paced").ok();
    listener.join();
    report.Check(ok && check.ordered && check.expected == n.e2e_items,
                 "B2 paced stream lost or reordered items (" + mode + ")");
    Row row{.workload = workload,
            .key = Label("b2.e2e", mode),
            .name = "end-to-end latency at 10,000 items/s",
            .mode = mode,
            .count = n.e2e_items,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = n.e2e_items / ((check.last_at - start) / 1e9),
            .redis_key = "redis.b2.e2e",
            .note = "writer batches the items due"};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, row.count, "item");
  }
  {  // Ephemeral stream, acking listener; stored items and RSS sampled meanwhile.
    Meter meter(fabric, report);
    report.Check(client.CreateStream("ephemeral", true).ok(), "B2 ephemeral: Create failed");
    OrderCheck check;
    grpc::Status listen_status;
    std::thread listener([&] {
      RawFabricClient own(fabric.Next());
      listen_status = own.ListenAll(
          "ephemeral", "acker", kStreamBatch,
          [&](int64_t key, const std::string& v) { check.See(key, v); }, config.items_per_message);
    });
    size_t registered = 0;
    uint64_t items = 0;
    WaitFor(
        [&] { return client.StreamInfo("ephemeral", items, registered).ok() && registered > 0; },
        std::chrono::seconds(10));
    std::atomic<bool> writing{true};
    uint64_t max_stored = 0;
    int64_t rss_start = fabric.RssKb(), rss_max = rss_start;
    std::thread sampler([&] {
      RawFabricClient own(fabric.Next());
      while (writing) {
        uint64_t stored = 0;
        size_t ignored = 0;
        if (own.StreamInfo("ephemeral", stored, ignored).ok())
          max_stored = std::max(max_stored, stored);
        rss_max = std::max(rss_max, fabric.RssKb());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // sampling period
      }
    });
    int64_t start = NowNs();
    bool ok = WriteAll(client, "ephemeral", n.ephemeral_items, true);
    listener.join();
    double seconds = (NowNs() - start) / 1e9;
    writing = false;
    sampler.join();
    uint64_t final_stored = 0;
    client.StreamInfo("ephemeral", final_stored, registered);
    report.Check(ok && listen_status.ok() && check.ordered && check.expected == n.ephemeral_items,
                 "B2 ephemeral stream lost or reordered items (" + mode + ")");
    char note[160];
    std::snprintf(note, sizeof note,
                  "acks every %d; stored items max %llu, after %llu; RSS %.1f -> max %.1f MB",
                  kStreamBatch, static_cast<unsigned long long>(max_stored),
                  static_cast<unsigned long long>(final_stored), rss_start / 1024.0,
                  rss_max / 1024.0);
    Row row{.workload = workload,
            .key = Label("b2.ephemeral", mode),
            .name = "ephemeral stream, acking listener",
            .mode = mode,
            .count = n.ephemeral_items,
            .ops_per_s = n.ephemeral_items / seconds,
            .note = note};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, row.count, "item");
  }
}

// B3: reservations over kWorkers worker processes, one killed half-way.
void RunJobs(const Config& config, const std::string& mode, Fabric& fabric, TempDir& dir,
             Report& report) {
  const uint64_t jobs = config.counts.jobs;
  // As the Redis baseline XADDs its jobs before its workers start, the jobs are created first
  // (eight producers), and the clock starts with the workers. Dispatch from the backlog costs
  // O(1) per credit (docs/benchmarks.md), so the backlog's size does not matter.
  constexpr uint64_t kProducers = 8;
  int64_t rss_before = fabric.RssKb();
  RawFabricClient client(fabric.Next());
  std::atomic<bool> created_ok{true};
  Meter create_meter(fabric, report);
  int64_t create_start = NowNs();
  Parallel(kProducers, [&](int t) {
    RawFabricClient own(fabric.Next());
    for (uint64_t i = t; i < jobs; i += kProducers) {
      if (!own.CreateExecution("job-" + std::to_string(i), kJobAgent, "jobs", "Run",
                               MakePayload(i, 0))
               .ok()) {
        created_ok = false;
      }
    }
  });
  double create_rate = jobs / ((NowNs() - create_start) / 1e9);
  create_meter.CountCommands("B3 reservations: create the jobs (8 producers)", jobs, "job");
  Meter meter(fabric, report);
  std::vector<Child> workers;
  std::vector<std::string> logs;
  int64_t start = NowNs();
  for (int w = 0; w < kWorkers; ++w) {
    logs.push_back(dir.path() + "/worker-" + std::to_string(w) + ".events");
    workers.push_back(Child::Spawn({SelfPath(), "--role", "job-worker", "--fabric-address",
                                    fabric.Next(), "--agent", kJobAgent, "--log", logs.back()},
                                   logs.back() + ".stderr"));
  }
  std::string ignored;
  bool half = client.GetResult("job-" + std::to_string(jobs / 2), ignored, true).ok();
  int64_t half_at = NowNs();
  // Worker 0 stops completing, and is killed once it holds jobs it never completed (or once
  // no job is left for it: with small counts the others may take all that remain).
  workers[0].Signal(kStallSignal);
  WaitFor(
      [&] {
        size_t unfinished = 1;
        return HeldJobs(logs[0]) > 0 ||
               (client.CountUnfinished(kJobAgent, 1, unfinished).ok() && unfinished == 0);
      },
      std::chrono::seconds(5), std::chrono::milliseconds(1));
  // Stamped before the signal: once sent, the Fabric may see the broken connection and hand
  // the jobs over before this thread runs again (on a busy machine it measured "recovered before
  // the kill").
  int64_t kill_at = NowNs();
  workers[0].Signal(SIGKILL);
  workers[0].Wait(std::chrono::seconds(5));
  bool drained = WaitFor(
      [&] {
        size_t unfinished = 1;
        return client.CountUnfinished(kJobAgent, 1, unfinished).ok() && unfinished == 0;
      },
      std::chrono::seconds(300), std::chrono::milliseconds(20));
  int64_t end = NowNs();
  int64_t rss_after = fabric.RssKb();
  report.Check(created_ok && half && drained, "B3 did not finish (" + mode + ")");
  for (size_t w = 1; w < workers.size(); ++w) workers[w].Stop();
  JobOutcome outcome = ReadJobLogs(logs, jobs, 0, kill_at);
  report.Check(outcome.lost == 0,
               "B3 lost " + std::to_string(outcome.lost) + " executions (" + mode + ")");
  report.Check(outcome.duplicates <= static_cast<uint64_t>(kWorkerCredits),
               "B3 duplicates " + std::to_string(outcome.duplicates) + " exceed the credits");
  report.Check(outcome.redelivered == 0 || outcome.recovery_ms >= 0, "B3 recovery time unknown");
  char note[256];
  std::snprintf(note, sizeof note,
                "split %s; %llu jobs created first (%.0f/s, 8 producers); RSS +%.0f B per job, the "
                "whole backlog's dispatch state included (64 B argument and result)",
                outcome.split.c_str(), static_cast<unsigned long long>(jobs), create_rate,
                (rss_after - rss_before) * 1024.0 / static_cast<double>(jobs));
  Row row{.workload = "B3 reservations",
          .key = Label("b3.rate", mode),
          .name = "4 workers, credits 16 (first half)",
          .mode = mode,
          .count = jobs / 2,
          .ops_per_s = (jobs / 2) / ((half_at - start) / 1e9),
          .redis_key = "redis.b3.rate",
          .note = note};
  meter.Fill(row);
  report.Add(row);
  std::snprintf(note, sizeof note,
                "kill -9 of worker 0: %llu open, %llu reached another worker after %.1f-%.1f ms; "
                "duplicates %llu, lost %llu",
                static_cast<unsigned long long>(outcome.orphaned),
                static_cast<unsigned long long>(outcome.redelivered), outcome.first_recovery_ms,
                outcome.recovery_ms, static_cast<unsigned long long>(outcome.duplicates),
                static_cast<unsigned long long>(outcome.lost));
  Row after{.workload = "B3 reservations",
            .key = Label("b3.after", mode),
            .name = "3 workers after kill -9 (second half)",
            .mode = mode,
            .count = jobs - jobs / 2,
            .ops_per_s = (jobs - jobs / 2) / ((end - half_at) / 1e9),
            .redis_key = "redis.b3.after",
            .note = note};
  meter.Fill(after);
  report.Add(after);
  meter.CountCommands("B3 reservations: reserve and complete (4 workers, one killed)", jobs, "job");
}

// State: sequential set, then get, of 64-byte values on an instance dictionary.
void RunState(const Config& config, const std::string& mode, Fabric& fabric, Report& report) {
  const uint64_t ops = config.counts.state_ops;
  RawFabricClient client(fabric.Next());
  const std::string dictionary = "state-instance-";
  for (bool set : {true, false}) {
    Meter meter(fabric, report);
    std::vector<int64_t> latencies;
    bool ok = true;
    int64_t start = NowNs();
    for (uint64_t i = 0; i < ops; ++i) {
      std::string key = "k" + std::to_string(i);
      int64_t t0 = NowNs();
      if (set) {
        ok &= client.DictionarySet(dictionary, key, MakePayload(i, 0)).ok();
      } else {
        std::string value;
        ok &= client.DictionaryGet(dictionary, key, value).ok() && value == MakePayload(i, 0);
      }
      latencies.push_back(NowNs() - t0);
    }
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok, std::string("state ") + (set ? "set" : "get") + " failed (" + mode + ")");
    Row row{.workload = "State",
            .key = Label(set ? "state.set" : "state.get", mode),
            .name = set ? "dictionary set, sequential" : "dictionary get, sequential",
            .mode = mode,
            .count = ops,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = ops / seconds,
            .floor_key = "floor.unary",
            .redis_key = set ? "redis.state.set" : "redis.state.get"};
    meter.Fill(row);
    report.Add(row);
    meter.CountCommands(row.workload + ": " + row.name, ops, "op");
  }
}

}  // namespace

void RunFabric(const Config& base_config, const std::string& mode, Report& report) {
  Config config = base_config;
  // Redis with an fsync per write is as durable as rocksdb, and as slow per single write.
  const bool durable =
      mode == "rocksdb" || (mode.rfind("redis", 0) == 0 && config.redis_persistence == "always");
  if (durable && config.durable_scale != 1.0) {
    Counts& n = config.counts;
    for (uint64_t* count : {&n.calls_sequential, &n.calls_in_flight, &n.jobs, &n.state_ops,
                            &n.stream_items_sequential}) {
      *count =
          std::max<uint64_t>(kInFlight * 2, static_cast<uint64_t>(*count * config.durable_scale));
    }
  }
  TempDir dir;
  // Declared before the Fabrics, so that it outlives them.
  RedisServer redis;
  Fabric fabric;
  fabric.mode = mode;
  const bool redis_mode = mode == "redis" || mode == "redis3";
  if (redis_mode) {
    if (!StartRedisServer(config.redis_binary, config.redis_persistence, dir.path(), redis,
                          report)) {
      return;
    }
    fabric.redis = &redis;
    fabric.redis_counter = std::make_unique<Redis>(redis.port);
  }
  const int processes = mode == "redis3" ? 3 : 1;
  for (int p = 0; p < processes; ++p) {
    // One Fabric keeps the file names it always had.
    std::string suffix = processes == 1 ? "" : "-" + std::to_string(p);
    std::string address_file = dir.path() + "/fabric" + suffix + ".address";
    std::string log_file = dir.path() + "/fabric" + suffix + ".log";
    std::vector<std::string> argv = {
        config.fabric_binary, "--storage",   redis_mode ? "redis" : mode,
        "--listen",           "127.0.0.1:0", "--address-file",
        address_file,         "--log-level", "warn"};
    if (mode == "rocksdb") {
      argv.push_back("--data-dir");
      argv.push_back(dir.path() + "/data");
    }
    if (redis_mode) {
      argv.push_back("--redis");
      argv.push_back("127.0.0.1:" + std::to_string(redis.port));
    }
    fabric.processes.push_back(Child::Spawn(argv, log_file));
    Child& process = fabric.processes.back();
    bool up = WaitFor(
        [&] {
          return !ReadAddressFile(address_file).empty() ||
                 process.Wait(std::chrono::milliseconds(0)) != -1;  // exited: give up
        },
        std::chrono::seconds(15));
    up = up && !ReadAddressFile(address_file).empty();
    report.Check(up, "the Fabric (" + mode + ") did not start: " + ReadWholeFile(log_file));
    if (!up) return;
    std::string address = ReadAddressFile(address_file);
    std::fprintf(stderr, "Fabric (%s) at %s, pid %d\n", mode.c_str(), address.c_str(),
                 fabric.processes.back().pid());
    fabric.addresses.push_back(address);
  }
  if (config.run_calls) RunCalls(config, mode, fabric, dir, report);
  if (config.run_streams) RunStreams(config, mode, fabric, report);
  if (config.run_jobs) RunJobs(config, mode, fabric, dir, report);
  if (config.run_state) RunState(config, mode, fabric, report);
  for (Child& process : fabric.processes) {
    int code = process.Stop();
    report.Check(code == 0, "the Fabric (" + mode + ") exited with " + std::to_string(code));
  }
  if (redis_mode && !fabric.command_rows.empty()) {
    std::string persistence;
    for (const std::string& arg : PersistenceArgs(config.redis_persistence)) {
      persistence += " " + (arg.empty() ? std::string("\"\"") : arg);
    }
    std::string text = "### Redis commands per operation, mode " + mode + " (" +
                       std::to_string(processes) + " Fabric process" +
                       (processes == 1 ? "" : "es") + " on one redis-server" + persistence +
                       ")\n\n| measured | per | n | commands | scripts | round trips | "
                       "redis-server CPU s | top 5 commands (calls per op) |\n"
                       "|---|---|---:|---:|---:|---:|---:|---|\n";
    for (const std::string& row : fabric.command_rows) text += row + "\n";
    report.AddText(text);
  }
}

}  // namespace perper::bench
