// SPDX-License-Identifier: MIT
// Restart-safe pipelines end to end (docs/restarts.md): tests/pipeline/pipeline.yaml under
// `perper up`, against a rocksdb perper-fabric process the test owns, while the test kills -9
// the producer's process (Python, Readings), the consumer's (C++, Average), both, the Fabric
// (restarted on the same port and data directory) or `perper up` with Deploy (started again on
// the same Fabric), at random points. Every run must end with
// exactly count == 1000 and total / count == 24.5 in the consumer's dictionary, read through
// the Fabric: nothing lost, nothing counted twice.
//
// The points are drawn from a seeded generator; the seed is printed, and PERPER_PIPELINE_SEED
// repeats a run. PipelineTest.* are short (the default run); PipelineSlowTest.* inject at least
// 50 process kills and 10 Fabric restarts (ctest label slow).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "perper/grpc2/states.grpc.pb.h"
#include "tests/scaler/process_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kReadings = 1000;
constexpr int64_t kTotal = 24500;  // the sum of i % 50 for i in 0..999

enum class Fault { kProducer, kConsumer, kBoth, kFabric, kUp };

const char* Name(Fault fault) {
  switch (fault) {
    case Fault::kProducer:
      return "producer";
    case Fault::kConsumer:
      return "consumer";
    case Fault::kBoth:
      return "both";
    case Fault::kFabric:
      return "fabric";
    case Fault::kUp:
      return "perper up";
  }
  return "?";
}

uint64_t Seed() {
  const char* given = std::getenv("PERPER_PIPELINE_SEED");
  uint64_t seed = given != nullptr ? std::strtoull(given, nullptr, 10) : std::random_device()();
  std::printf("pipeline seed %llu (PERPER_PIPELINE_SEED=%llu repeats it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  return seed;
}

std::vector<pid_t> Intersection(const std::vector<pid_t>& a, const std::vector<pid_t>& b) {
  std::vector<pid_t> both;
  for (pid_t pid : a) {
    for (pid_t other : b) {
      if (pid == other) both.push_back(pid);
    }
  }
  return both;
}

// One run of the pipeline: a rocksdb Fabric process, `perper up` on the manifest, and the
// faults. Used by one test thread.
class PipelineRun {
 public:
  explicit PipelineRun(int reading_delay_ms) : reading_delay_ms_(reading_delay_ms) {
    std::random_device random;
    marker_ = "PERPER_TEST_MARKER=pipeline-" + std::to_string(random()) + std::to_string(random());
  }

  ~PipelineRun() {
    if (up_ != nullptr) {
      up_->Signal(SIGTERM);
      up_->Wait(seconds(15));
    }
  }

  // Starts the Fabric and `perper up`, and waits until Deploy names the Average instance.
  void Start() {
    ASSERT_NO_FATAL_FAILURE(StartFabric("127.0.0.1:0"));
    listen_ = fabric_->address();  // a restart listens here again
    ASSERT_NO_FATAL_FAILURE(StartUp());
  }

  // Injects one fault at once (the caller chooses the moment).
  void Inject(Fault fault) {
    switch (fault) {
      case Fault::kProducer:
        ASSERT_NO_FATAL_FAILURE(KillAgents({"Readings"}));
        break;
      case Fault::kConsumer:
        ASSERT_NO_FATAL_FAILURE(KillAgents({"Average"}));
        break;
      case Fault::kBoth:
        ASSERT_NO_FATAL_FAILURE(KillAgents({"Readings", "Average"}));
        break;
      case Fault::kFabric:
        ASSERT_NO_FATAL_FAILURE(RestartFabric());
        break;
      case Fault::kUp:
        ASSERT_NO_FATAL_FAILURE(RestartUp());
        break;
    }
  }

  // True once the consumer has counted every reading or `perper up` has exited.
  bool Finished() {
    std::optional<std::pair<int64_t, int64_t>> state = State();
    return (state.has_value() && state->first >= kReadings) || up_->Wait(milliseconds(0)) != -1;
  }

  // Waits for Deploy to return (it does once Average has returned), then checks the result:
  // exactly every reading counted once, in the state and in Deploy's report.
  void ExpectExactResult() {
    ASSERT_EQ(up_->Wait(seconds(180)), 0) << Report();
    std::optional<std::pair<int64_t, int64_t>> state = State();
    ASSERT_TRUE(state.has_value()) << Report();
    EXPECT_EQ(state->first, kReadings);
    EXPECT_EQ(state->second, kTotal);
    ASSERT_GT(state->first, 0);
    EXPECT_EQ(static_cast<double>(state->second) / static_cast<double>(state->first), 24.5);
    EXPECT_NE(up_->Stdout().find("] 1000 readings, average 24.5\n"), std::string::npos);
    if (::testing::Test::HasFailure()) ADD_FAILURE() << "the run:\n" << Report();
  }

  std::string Report() {
    return up_logs_ + (up_ != nullptr ? up_->Output() : std::string()) + "--- fabric:\n" +
           fabric_logs_ + (fabric_ != nullptr ? fabric_->Log() : std::string());
  }

 private:
  // Starts `perper up` and waits until Deploy names the Average instance (the same one when
  // Deploy runs again).
  void StartUp() {
    up_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{PERPER_BINARY, "up",
                                 std::string(PERPER_PIPELINE_DIR) + "/pipeline.yaml", "--fabric",
                                 listen_},
        std::vector<std::string>{marker_, std::string("PERPER_BUILD_DIR=") + PERPER_BUILD_DIR,
                                 "READINGS_DELAY_MS=" + std::to_string(reading_delay_ms_)});
    const std::string named = "] Average instance: ";
    std::string average;
    ASSERT_TRUE(WaitFor(
        [&] {
          std::string out = up_->Stdout();
          size_t at = out.find(named);
          if (at == std::string::npos || out.find('\n', at) == std::string::npos) return false;
          at += named.size();
          average = out.substr(at, out.find('\n', at) - at);
          return true;
        },
        seconds(60)))
        << Report();
    ASSERT_FALSE(average.empty()) << Report();
    if (!average_.empty()) {
      ASSERT_EQ(average, average_) << "Deploy ran again and started another Average\n" << Report();
    }
    average_ = average;
  }

  // kill -9 `perper up` (its agent processes die with it), then starts it again on the same
  // Fabric: the interrupted Deploy runs again and finds the instances and the stream it made.
  void RestartUp() {
    up_->Signal(SIGKILL);
    up_->Wait(seconds(10));
    up_logs_ += up_->Output() + "--- (perper up killed; started again)\n";
    ASSERT_TRUE(WaitFor([&] { return ProcessesWithEnv(marker_).empty(); }, seconds(10)))
        << "agent processes outlived perper up\n"
        << Report();
    ASSERT_NO_FATAL_FAILURE(StartUp());
  }

  // --sync false: the faults are process kills, which unsynced writes survive (the kernel has
  // them); a machine crash is not what this test makes.
  void StartFabric(const std::string& listen) {
    fabric_ = std::make_unique<FabricProcess>(
        std::vector<std::string>{"--storage", "rocksdb", "--data-dir", data_.path() + "/db",
                                 "--sync", "false", "--listen", listen});
    ASSERT_TRUE(fabric_->Start()) << fabric_logs_ << fabric_->Log();
    channel_ = fabric_->NewChannel();
    states_ = grpc2::FabricStatesDictionary::NewStub(channel_);
  }

  // kill -9 the Fabric, then starts it again on the same address and data directory.
  void RestartFabric() {
    fabric_->Kill(SIGKILL);
    fabric_->Wait();
    fabric_logs_ += fabric_->Log() + "--- (killed; restarted)\n";
    ASSERT_NO_FATAL_FAILURE(StartFabric(listen_));
  }

  // kill -9 the process of each agent, at once; waits for each to be running first (after a
  // kill, the scaler restarts it after a back-off).
  void KillAgents(const std::vector<std::string>& agents) {
    std::vector<pid_t> victims;
    for (const std::string& agent : agents) {
      std::vector<pid_t> pids;
      ASSERT_TRUE(WaitFor(
          [&] {
            pids = Intersection(ProcessesWithEnv(marker_),
                                ProcessesWithEnv("X_PERPER_AGENT=" + agent));
            return !pids.empty();
          },
          seconds(60)))
          << "no " << agent << " process\n"
          << Report();
      victims.insert(victims.end(), pids.begin(), pids.end());
    }
    for (pid_t pid : victims) kill(pid, SIGKILL);
  }

  // The consumer's {count, total} (0 when absent), or nullopt when the Fabric does not answer.
  std::optional<std::pair<int64_t, int64_t>> State() {
    std::optional<int64_t> count = Get("count");
    std::optional<int64_t> total = Get("total");
    if (!count.has_value() || !total.has_value()) return std::nullopt;
    return std::make_pair(*count, *total);
  }

  std::optional<int64_t> Get(const std::string& key) {
    grpc2::StatesDictionaryOperateRequest request;
    request.mutable_dictionary()->set_dictionary(average_ + "-");
    google::protobuf::StringValue name;
    name.set_value(key);
    request.mutable_key()->PackFrom(name);
    request.set_get_existing_value(true);
    grpc2::StatesDictionaryOperateResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    if (!states_->Operate(&context, request, &response).ok()) return std::nullopt;
    if (!response.has_previous_value() || response.previous_value().type_url().empty()) return 0;
    google::protobuf::Int64Value value;
    if (!response.previous_value().UnpackTo(&value)) {
      ADD_FAILURE() << key << " is a " << response.previous_value().type_url();
      return std::nullopt;
    }
    return value.value();
  }

  const int reading_delay_ms_;
  std::string marker_;
  TempDir data_;
  std::string listen_;
  std::unique_ptr<FabricProcess> fabric_;
  std::string fabric_logs_;  // of the Fabric processes killed so far
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc2::FabricStatesDictionary::Stub> states_;
  std::unique_ptr<ChildProcess> up_;
  std::string up_logs_;  // of the `perper up` processes killed so far
  std::string average_;  // the Average instance
};

// Runs the pipeline once with `faults`, each after a random pause of up to `max_pause`, and
// checks its result. Appends to `*injected` the faults injected before the pipeline finished
// (the rest are skipped).
void RunWithFaults(const std::vector<Fault>& faults, int reading_delay_ms, milliseconds max_pause,
                   std::mt19937_64& random, std::vector<Fault>* injected) {
  PipelineRun run(reading_delay_ms);
  ASSERT_NO_FATAL_FAILURE(run.Start());
  std::uniform_int_distribution<int64_t> pause(0, max_pause.count());
  std::string done;
  for (Fault fault : faults) {
    // The pause is the fault injection (where in the run the fault lands), not a wait for
    // anything.
    std::this_thread::sleep_for(milliseconds(pause(random)));
    if (run.Finished()) break;
    ASSERT_NO_FATAL_FAILURE(run.Inject(fault));
    done += std::string(done.empty() ? "" : ", ") + Name(fault);
    injected->push_back(fault);
  }
  std::printf("faults injected: %s\n", done.empty() ? "none" : done.c_str());
  std::fflush(stdout);
  ASSERT_NO_FATAL_FAILURE(run.ExpectExactResult());
}

Fault AnyProcessFault(std::mt19937_64& random) {
  return static_cast<Fault>(std::uniform_int_distribution<int>(0, 2)(random));
}

size_t CountOf(const std::vector<Fault>& faults, bool fabric) {
  return std::count_if(faults.begin(), faults.end(),
                       [&](Fault fault) { return (fault == Fault::kFabric) == fabric; });
}

TEST(PipelineTest, KilledProducerConsumerAndBothCountEveryReadingOnce) {
  std::mt19937_64 random(Seed());
  std::vector<Fault> faults = {Fault::kProducer, Fault::kConsumer, Fault::kBoth};
  std::shuffle(faults.begin(), faults.end(), random);
  std::vector<Fault> injected;
  RunWithFaults(faults, 3, milliseconds(800), random, &injected);
  EXPECT_EQ(injected.size(), 3u) << "the pipeline finished before every fault was injected";
}

TEST(PipelineTest, ARestartedRocksdbFabricLosesAndRepeatsNothing) {
  std::mt19937_64 random(Seed());
  std::vector<Fault> faults = {Fault::kFabric, AnyProcessFault(random), Fault::kFabric};
  std::vector<Fault> injected;
  RunWithFaults(faults, 4, milliseconds(800), random, &injected);
  EXPECT_EQ(injected.size(), 3u) << "the pipeline finished before every fault was injected";
}

// Deploy's own process dies with `perper up`; the next `perper up` on the same Fabric runs the
// interrupted Deploy again, which makes the same instances, call and stream (derived IDs).
TEST(PipelineTest, AKilledPerperUpRunsAgainOnTheSameFabricToTheSameResult) {
  std::mt19937_64 random(Seed());
  std::vector<Fault> faults = {Fault::kUp, AnyProcessFault(random)};
  std::vector<Fault> injected;
  RunWithFaults(faults, 4, milliseconds(800), random, &injected);
  EXPECT_EQ(injected.size(), 2u) << "the pipeline finished before every fault was injected";
}

// Runs the pipeline again and again, with the faults `draw` returns for each run, until
// `enough` says the faults injected so far are enough (at most `max_runs` runs).
void RunUntil(const std::function<std::vector<Fault>()>& draw,
              const std::function<bool(const std::vector<Fault>&)>& enough, int max_runs,
              std::mt19937_64& random) {
  std::vector<Fault> injected;
  for (int run = 0; run < max_runs && !enough(injected); ++run) {
    ASSERT_NO_FATAL_FAILURE(RunWithFaults(draw(), 8, milliseconds(800), random, &injected))
        << "run " << run;
  }
  EXPECT_TRUE(enough(injected)) << CountOf(injected, false) << " process faults, "
                                << CountOf(injected, true) << " Fabric restarts";
}

TEST(PipelineSlowTest, FiftyRandomProcessKills) {
  std::mt19937_64 random(Seed());
  RunUntil(
      [&] {
        std::vector<Fault> faults;
        for (int i = 0; i < 6; ++i) faults.push_back(AnyProcessFault(random));
        return faults;
      },
      [](const std::vector<Fault>& injected) { return injected.size() >= 50; }, 20, random);
}

TEST(PipelineSlowTest, TenFabricRestartsAmongProcessKills) {
  std::mt19937_64 random(Seed());
  RunUntil(
      [&] {
        std::vector<Fault> faults = {Fault::kFabric, Fault::kFabric, AnyProcessFault(random),
                                     AnyProcessFault(random)};
        std::shuffle(faults.begin(), faults.end(), random);
        return faults;
      },
      [](const std::vector<Fault>& injected) { return CountOf(injected, true) >= 10; }, 12, random);
}

}  // namespace
}  // namespace perper::testing
