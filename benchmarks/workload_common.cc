// SPDX-License-Identifier: MIT
// Payloads, counts and the B3 worker logs shared by the Fabric and Redis workloads.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "benchmarks/workloads.h"
#include "perper/common/files.h"

namespace perper::bench {

void Counts::Scale(double factor) {
  for (uint64_t* count :
       {&ping, &push, &calls_sequential, &calls_in_flight, &stream_items, &stream_items_sequential,
        &e2e_items, &ephemeral_items, &jobs, &state_ops}) {
    *count = std::max<uint64_t>(kInFlight * 2, static_cast<uint64_t>(*count * factor));
  }
}

Counts Counts::Smoke() {
  Counts counts;
  counts.ping = 200;
  counts.push = 2'000;
  counts.calls_sequential = 100;
  counts.calls_in_flight = 2 * kInFlight;
  counts.stream_items = 2'000;
  counts.stream_items_sequential = 100;
  counts.e2e_items = 300;
  counts.ephemeral_items = 2'000;
  counts.jobs = 400;
  counts.state_ops = 100;
  return counts;
}

std::string MakePayload(uint64_t sequence, int64_t stamp_ns) {
  std::string payload(kPayloadSize, 'v');
  std::memcpy(payload.data(), &sequence, sizeof sequence);
  std::memcpy(payload.data() + 8, &stamp_ns, sizeof stamp_ns);
  return payload;
}

uint64_t PayloadSequence(const std::string& payload) {
  uint64_t sequence = UINT64_MAX;
  if (payload.size() >= 8) std::memcpy(&sequence, payload.data(), sizeof sequence);
  return sequence;
}

int64_t PayloadStamp(const std::string& payload) {
  int64_t stamp = 0;
  if (payload.size() >= 16) std::memcpy(&stamp, payload.data() + 8, sizeof stamp);
  return stamp;
}

EventLog::EventLog(const std::string& path)
    : fd_(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644)) {}

EventLog::~EventLog() {
  if (fd_ >= 0) close(fd_);
}

void EventLog::Received(const std::string& id) {
  std::string line = "R " + id + " " + std::to_string(NowNs()) + "\n";
  (void)!write(fd_, line.data(), line.size());
}

void EventLog::Held(const std::string& id) {
  std::string line = "H " + id + "\n";
  (void)!write(fd_, line.data(), line.size());
}

void EventLog::Completed(const std::string& id) {
  std::string line = "C " + id + "\n";
  (void)!write(fd_, line.data(), line.size());
}

JobOutcome ReadJobLogs(const std::vector<std::string>& logs, uint64_t jobs, int dead_worker,
                       int64_t kill_ns) {
  JobOutcome outcome;
  std::map<std::string, std::vector<std::pair<int, int64_t>>> received;  // id -> (worker, time)
  std::set<std::string> completed;
  std::set<std::string> dead_completed;
  std::vector<uint64_t> per_worker(logs.size(), 0);
  for (size_t w = 0; w < logs.size(); ++w) {
    std::istringstream in(ReadWholeFile(logs[w]));
    std::string kind, id;
    while (in >> kind >> id) {
      if (kind == "R") {
        int64_t at = 0;
        in >> at;
        received[id].push_back({static_cast<int>(w), at});
      } else if (kind == "C") {
        completed.insert(id);
        ++per_worker[w];
        if (static_cast<int>(w) == dead_worker) dead_completed.insert(id);
      }
    }
  }
  outcome.completed_distinct = completed.size();
  uint64_t finished_at_death = 0;
  for (const auto& [id, receipts] : received) {
    std::set<int> workers;
    for (const auto& receipt : receipts) workers.insert(receipt.first);
    if (workers.size() > 1) ++outcome.duplicates;
    bool orphan = std::any_of(receipts.begin(), receipts.end(),
                              [&](const auto& r) { return r.first == dead_worker; }) &&
                  dead_completed.count(id) == 0;
    if (!orphan) continue;
    ++outcome.orphaned;
    bool again = false;
    for (const auto& receipt : receipts) {
      if (receipt.first == dead_worker || receipt.second < kill_ns) continue;
      again = true;
      double ms = (receipt.second - kill_ns) / 1e6;
      outcome.recovery_ms = std::max(outcome.recovery_ms, ms);
      outcome.first_recovery_ms =
          outcome.first_recovery_ms < 0 ? ms : std::min(outcome.first_recovery_ms, ms);
    }
    if (again) {
      ++outcome.redelivered;
    } else if (completed.count(id) == 0) {
      ++finished_at_death;
    }
  }
  uint64_t accounted = completed.size() + finished_at_death;
  outcome.lost = jobs > accounted ? jobs - accounted : 0;
  std::ostringstream split;
  for (size_t w = 0; w < per_worker.size(); ++w) split << (w ? "/" : "") << per_worker[w];
  outcome.split = split.str();
  return outcome;
}

namespace {
std::atomic<bool> stalled{false};
void OnStallSignal(int) { stalled.store(true); }
}  // namespace

void StallOnSignal() {
  static_assert(kStallSignal == SIGUSR1);
  struct sigaction action {};
  action.sa_handler = OnStallSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(kStallSignal, &action, nullptr);
}

bool Stalled() { return stalled.load(); }

uint64_t HeldJobs(const std::string& path) {
  std::istringstream in(ReadWholeFile(path));
  std::string line;
  uint64_t held = 0;
  while (std::getline(in, line)) held += line.rfind("H ", 0) == 0 ? 1 : 0;
  return held;
}

}  // namespace perper::bench
