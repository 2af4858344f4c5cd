// SPDX-License-Identifier: MIT
// The workloads of perper-bench and the helper roles it re-executes itself as.
#ifndef PERPER_BENCHMARKS_WORKLOADS_H_
#define PERPER_BENCHMARKS_WORKLOADS_H_

#include <cstdint>
#include <string>

#include "benchmarks/harness.h"

namespace perper::bench {

inline constexpr size_t kPayloadSize = 64;
inline constexpr int kInFlight = 64;
inline constexpr int kWorkers = 4;
inline constexpr int kWorkerCredits = 16;
inline constexpr int kStreamBatch = 100;
inline constexpr int kE2eRate = 10'000;  // items/s

// Item counts of one run (scaled down by --scale, tiny with --smoke).
struct Counts {
  uint64_t ping = 20'000;     // floor ping-pongs and pushes per variant
  uint64_t push = 1'000'000;  // floor server-streaming messages
  uint64_t calls_sequential = 10'000;
  uint64_t calls_in_flight = 30'000;
  uint64_t stream_items = 1'000'000;          // batched writes, listeners, replay
  uint64_t stream_items_sequential = 50'000;  // one WriteItem (one XADD) per item
  uint64_t e2e_items = 20'000;                // at kE2eRate
  uint64_t ephemeral_items = 200'000;
  uint64_t jobs = 100'000;
  uint64_t state_ops = 10'000;
  void Scale(double factor);
  static Counts Smoke();
};

struct Config {
  std::string fabric_binary;
  std::string redis_binary = "redis-server";
  Counts counts;
  bool run_floor = true, run_calls = true, run_streams = true, run_jobs = true, run_state = true,
       run_redis = true, run_dotnet = true;
  bool memory = true, rocksdb = true, redis = true, redis3 = true;
  // How the redis-servers the bench starts keep their data: "none", "everysec" or "always"
  // (PersistenceArgs in redis_client.h).
  std::string redis_persistence = "none";
  // In rocksdb mode (and the redis modes with persistence "always"), the counts of the workloads
  // made of single durable writes (calls, jobs, state, sequential WriteItem) are multiplied by this
  // factor to keep the run short.
  double durable_scale = 0.1;
  // Items per listen response the B2 listeners ask for (max_items_per_message; 1 = one item
  // per message, as upstream clients).
  int items_per_message = 1000;
};

// Baselines and workloads. Each adds its rows and checks to `report`.
void RunFloor(const Config& config, Report& report);
void RunRedis(const Config& config, Report& report);
// Runs every Perper workload against a fresh Fabric in `mode`: "memory", "rocksdb", "redis" (on a
// private redis-server) or "redis3" (three Fabric processes on one private redis-server, clients
// and workers spread over them round-robin). The redis modes also print how many Redis commands
// and round trips each operation cost.
void RunFabric(const Config& config, const std::string& mode, Report& report);
// B1 into a .NET SDK agent beside a C++ SDK agent (sdk/dotnet/bench, run with `dotnet run`);
// skipped with a line saying so when dotnet is not on PATH.
void RunDotnet(const Config& config, Report& report);

// Helper roles (hidden flags of perper-bench); each returns the process exit code.
int FloorServerRole(const std::string& address_file);
int EchoAgentRole(const std::string& fabric, const std::string& agent);
int JobWorkerRole(const std::string& fabric, const std::string& agent, const std::string& log);
int RedisEchoRole(int port);
int RedisWorkerRole(int port, const std::string& name, const std::string& log);

// The 64-byte payload of item `sequence`: the sequence number and a timestamp (NowNs()) in its
// first 16 bytes, then filler.
std::string MakePayload(uint64_t sequence, int64_t stamp_ns);
uint64_t PayloadSequence(const std::string& payload);
int64_t PayloadStamp(const std::string& payload);

// Worker logs (B3): one line per event, written with write(2) so that a kill -9 loses nothing:
// "R <id> <NowNs>" when a job is received, "C <id>" when it is completed.
class EventLog {
 public:
  explicit EventLog(const std::string& path);
  ~EventLog();
  void Received(const std::string& id);
  void Completed(const std::string& id);
  void Held(const std::string& id);

 private:
  int fd_;
};

// What the logs of the workers of one B3 run say.
struct JobOutcome {
  uint64_t completed_distinct = 0;
  uint64_t lost = 0;              // jobs never completed (given that the server holds none open)
  uint64_t duplicates = 0;        // jobs received by more than one worker
  std::string split;              // completions per worker
  double first_recovery_ms = -1;  // kill until the first of the dead worker's open jobs reached
                                  // another worker
  double recovery_ms = -1;        // kill until the last of them did
  uint64_t orphaned = 0;          // jobs the dead worker received and did not log as completed
  uint64_t redelivered = 0;       // of those, received again by another worker
};
// Call once the server holds no job open: a job the dead worker received but never logged as
// completed, and no other worker received, was completed by it just before the kill.
JobOutcome ReadJobLogs(const std::vector<std::string>& logs, uint64_t jobs, int dead_worker,
                       int64_t kill_ns);

// B3 workers stop completing once they get kStallSignal: from then on they log each job they
// receive as received and held ("H <id>", after its "R" line) and never complete it, so the
// worker about to be killed holds jobs that were never completed (what recovery after the kill
// is measured on). StallOnSignal installs the handler; Stalled says whether the signal came.
inline constexpr int kStallSignal = 10;  // SIGUSR1
void StallOnSignal();
bool Stalled();
// How many held jobs the worker log at `path` shows.
uint64_t HeldJobs(const std::string& path);

}  // namespace perper::bench

#endif  // PERPER_BENCHMARKS_WORKLOADS_H_
