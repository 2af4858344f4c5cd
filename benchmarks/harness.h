// SPDX-License-Identifier: MIT
// The measuring harness of perper-bench: latency summaries, result rows and their tables,
// checks, child processes (the Fabric, redis-server, helpers re-executed from this binary) and
// their CPU time and memory read from /proc.
#ifndef PERPER_BENCHMARKS_HARNESS_H_
#define PERPER_BENCHMARKS_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace perper::bench {

// CLOCK_MONOTONIC in nanoseconds: comparable between processes on one machine.
int64_t NowNs();

// Percentiles of a set of latencies, in microseconds.
struct LatencySummary {
  double p50_us = 0;
  double p99_us = 0;
  double p999_us = 0;
};
LatencySummary Summarize(std::vector<int64_t> latencies_ns);

// One measured line of a table. `floor_key` and `redis_key` name the baseline rows it is
// compared with (empty: none); `memory_key` the memory-mode row of the same measurement, whose
// ratio goes to the start of the notes (the redis modes). Ratios are ours/baseline for p50 and
// for ops/s.
struct Row {
  std::string workload;  // table: "Floor", "B1 calls", ...
  std::string key;       // unique, e.g. "b1.call.seq.memory"
  std::string name;      // what was measured, e.g. "Call, sequential"
  std::string mode;      // "memory", "rocksdb", "grpc", "redis"
  uint64_t count = 0;
  std::optional<LatencySummary> latency;
  double ops_per_s = 0;
  double server_cpu_s = -1;    // CPU seconds of the server process during the workload
  double server_peak_mb = -1;  // VmHWM of the server process after the workload
  std::string floor_key;
  std::string redis_key;
  std::string memory_key;
  std::string note;
};

// Collects rows and failed checks; prints the tables.
class Report {
 public:
  void Add(Row row);
  // Records a failed check when `ok` is false; the program then exits non-zero.
  void Check(bool ok, const std::string& what);
  // Text printed after the tables, in the order added (e.g. a table of its own).
  void AddText(std::string text);
  bool failed() const { return !failures_.empty(); }
  void Print() const;

 private:
  const Row* Find(const std::string& key) const;
  std::vector<Row> rows_;
  std::vector<std::string> failures_;
  std::vector<std::string> texts_;
};

// Reads CPU seconds (utime + stime) of a process from /proc/<pid>/stat.
double CpuSeconds(pid_t pid);
// Reads a field in kB ("VmHWM", "VmRSS") from /proc/<pid>/status; -1 when unreadable.
int64_t StatusKb(pid_t pid, const std::string& field);

// Measures server processes over a workload: CPU seconds used and peak RSS afterwards, summed
// over the processes (several Fabrics and their redis-server in the redis modes).
class ServerMeter {
 public:
  explicit ServerMeter(pid_t pid) : ServerMeter(std::vector<pid_t>{pid}) {}
  explicit ServerMeter(std::vector<pid_t> pids);
  void Fill(Row& row) const;

 private:
  std::vector<pid_t> pids_;
  double cpu_start_ = 0;
};

// A child process. The destructor sends SIGTERM and reaps it when still running.
class Child {
 public:
  Child() = default;
  // Forks and execs `argv` (argv[0] is a path), stdout and stderr to `log_path`.
  static Child Spawn(const std::vector<std::string>& argv, const std::string& log_path);
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }
  void Signal(int sig) const;
  // Waits up to `timeout` for the process to end; returns its exit code (128+signal), or -1 on
  // timeout.
  int Wait(std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after 5 s; returns the exit code.
  int Stop();

 private:
  pid_t pid_ = -1;
};

// Polls `condition` every `period` until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds period = std::chrono::milliseconds(1));

// A fresh directory under $TMPDIR, removed (recursively) by the destructor.
using TempDir = perper::testing::TempDir;

// The path of this executable, for re-executing it as a helper.
std::string SelfPath();
// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

}  // namespace perper::bench

#endif  // PERPER_BENCHMARKS_HARNESS_H_
