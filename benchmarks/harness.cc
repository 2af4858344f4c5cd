// SPDX-License-Identifier: MIT
#include "benchmarks/harness.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "perper/common/files.h"
#include "tests/support/spawn.h"

namespace perper::bench {

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

LatencySummary Summarize(std::vector<int64_t> latencies_ns) {
  LatencySummary summary;
  if (latencies_ns.empty()) return summary;
  std::sort(latencies_ns.begin(), latencies_ns.end());
  auto at = [&](double q) {
    size_t index = static_cast<size_t>(q * static_cast<double>(latencies_ns.size() - 1) + 0.5);
    return static_cast<double>(latencies_ns[index]) / 1000.0;
  };
  summary.p50_us = at(0.50);
  summary.p99_us = at(0.99);
  summary.p999_us = at(0.999);
  return summary;
}

void Report::Add(Row row) {
  std::fprintf(stderr, "  done: %-14s %-34s %-8s %10.0f ops/s\n", row.workload.c_str(),
               row.name.c_str(), row.mode.c_str(), row.ops_per_s);
  rows_.push_back(std::move(row));
}

void Report::AddText(std::string text) { texts_.push_back(std::move(text)); }

void Report::Check(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "CHECK FAILED: %s\n", what.c_str());
  failures_.push_back(what);
}

const Row* Report::Find(const std::string& key) const {
  for (const Row& row : rows_) {
    if (row.key == key) return &row;
  }
  return nullptr;
}

namespace {

std::string Ratio(const Row& row, const Row* base) {
  if (base == nullptr) return "";
  std::string out;
  char buffer[64];
  if (row.latency && base->latency && base->latency->p50_us > 0) {
    std::snprintf(buffer, sizeof buffer, "p50 %.2fx", row.latency->p50_us / base->latency->p50_us);
    out += buffer;
  }
  if (row.ops_per_s > 0 && base->ops_per_s > 0) {
    std::snprintf(buffer, sizeof buffer, "%sops %.2fx", out.empty() ? "" : ", ",
                  row.ops_per_s / base->ops_per_s);
    out += buffer;
  }
  return out;
}

// The notes of `row`, led by its ratio to the memory-mode row `memory` when there is one.
std::string Notes(const Row& row, const Row* memory) {
  std::string ratio = Ratio(row, memory);
  if (ratio.empty()) return row.note;
  return "vs memory: " + ratio + (row.note.empty() ? "" : "; " + row.note);
}

std::string Fixed(double value, const char* format) {
  if (value < 0) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

}  // namespace

void Report::Print() const {
  std::vector<std::string> workloads;
  for (const Row& row : rows_) {
    if (std::find(workloads.begin(), workloads.end(), row.workload) == workloads.end()) {
      workloads.push_back(row.workload);
    }
  }
  for (const std::string& workload : workloads) {
    std::printf("\n### %s\n\n", workload.c_str());
    std::printf(
        "| measured | mode | n | p50 µs | p99 µs | p99.9 µs | ops/s | server CPU s | "
        "server peak MB | vs floor | vs Redis | notes |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n");
    for (const Row& row : rows_) {
      if (row.workload != workload) continue;
      std::string p50 = row.latency ? Fixed(row.latency->p50_us, "%.1f") : "-";
      std::string p99 = row.latency ? Fixed(row.latency->p99_us, "%.1f") : "-";
      std::string p999 = row.latency ? Fixed(row.latency->p999_us, "%.1f") : "-";
      std::printf("| %s | %s | %llu | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                  row.name.c_str(), row.mode.c_str(), static_cast<unsigned long long>(row.count),
                  p50.c_str(), p99.c_str(), p999.c_str(), Fixed(row.ops_per_s, "%.0f").c_str(),
                  Fixed(row.server_cpu_s, "%.2f").c_str(),
                  Fixed(row.server_peak_mb, "%.1f").c_str(),
                  Ratio(row, row.floor_key.empty() ? nullptr : Find(row.floor_key)).c_str(),
                  Ratio(row, row.redis_key.empty() ? nullptr : Find(row.redis_key)).c_str(),
                  Notes(row, row.memory_key.empty() ? nullptr : Find(row.memory_key)).c_str());
    }
  }
  for (const std::string& text : texts_) std::printf("\n%s", text.c_str());
  if (!failures_.empty()) {
    std::printf("\n%zu check(s) failed:\n", failures_.size());
    for (const std::string& failure : failures_) std::printf("- %s\n", failure.c_str());
  }
  std::fflush(stdout);
}

double CpuSeconds(pid_t pid) {
  std::string stat = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  // Fields after the command start at field 3 (state); utime and stime are fields 14 and 15.
  unsigned long long utime = 0, stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int64_t StatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1);
  }
  return -1;
}

ServerMeter::ServerMeter(std::vector<pid_t> pids) : pids_(std::move(pids)) {
  for (pid_t pid : pids_) cpu_start_ += CpuSeconds(pid);
}

void ServerMeter::Fill(Row& row) const {
  double cpu = 0;
  int64_t peak_kb = 0;
  for (pid_t pid : pids_) {
    cpu += CpuSeconds(pid);
    peak_kb += StatusKb(pid, "VmHWM");
  }
  row.server_cpu_s = cpu - cpu_start_;
  row.server_peak_mb = static_cast<double>(peak_kb) / 1024.0;
}

Child Child::Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  Child child;
  // Killed with the benchmark if it dies first: a helper never outlives it.
  child.pid_ = perper::testing::SpawnWithLog(argv, /*env=*/{}, log_path, /*die_with_parent=*/true);
  return child;
}

Child::Child(Child&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Stop();
    pid_ = other.pid_;
    other.pid_ = -1;
  }
  return *this;
}

Child::~Child() {
  if (pid_ > 0) Stop();
}

void Child::Signal(int sig) const {
  if (pid_ > 0) kill(pid_, sig);
}

int Child::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  int code = -1;
  bool ended = WaitFor(
      [&] {
        int status = 0;
        pid_t result = waitpid(pid_, &status, WNOHANG);
        if (result != pid_) return false;
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
      },
      timeout);
  if (ended) pid_ = -1;
  return ended ? code : -1;
}

int Child::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int code = Wait(std::chrono::seconds(5));
  if (code == -1 && pid_ > 0) {
    kill(pid_, SIGKILL);
    code = Wait(std::chrono::seconds(5));
  }
  return code;
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds period) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(period);
  }
}

std::string SelfPath() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace perper::bench
