// SPDX-License-Identifier: MIT
// The C++ examples run end to end as separate processes against a real perper-fabric process:
// hello (two agent processes sharing a stream), the basic sample (streams, a cycle, calls),
// instances, multi-process, and multi-agent (with a kill and restart of program and Fabric).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sdk/cpp/tests/child_process.h"
#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper {
namespace {

using ::perper::testing::ChildProcess;
using ::perper::testing::FabricProcess;
using ::perper::testing::TempDir;
using ::perper::testing::WaitFor;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fabric_ = std::make_unique<FabricProcess>(std::vector<std::string>{"--storage", "memory"});
    ASSERT_TRUE(fabric_->Start()) << fabric_->Log();
  }

  std::string Endpoint() const { return "PERPER_FABRIC_ENDPOINT=" + fabric_->address(); }

  std::unique_ptr<FabricProcess> fabric_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

int Count(const std::vector<std::string>& lines, const std::string& line) {
  int n = 0;
  for (const auto& l : lines) {
    n += l == line ? 1 : 0;
  }
  return n;
}

TEST_F(ExamplesTest, HelloPrintsTheWholeMessageThroughAStreamAcrossTwoProcesses) {
  ChildProcess printer(PERPER_STREAM_PRINTER_BINARY, {Endpoint()});
  ChildProcess deployer(PERPER_MY_FIRST_AGENT_BINARY, {Endpoint(), "HELLO_DELAY_MS=5"});
  EXPECT_EQ(deployer.Wait(30s), 0) << deployer.Output() << "\n--- printer:\n" << printer.Output();
  EXPECT_THAT(deployer.Output(), HasSubstr("Hello world from Deploy!\n"));
  EXPECT_THAT(deployer.Output(), HasSubstr("Hello world from HelloWorldGenerator!\n"));
  EXPECT_THAT(deployer.Output(), HasSubstr("StreamPrinter printed 27 characters\n"));
  printer.Kill(SIGTERM);
  EXPECT_EQ(printer.Wait(10s), 0) << printer.Output();
  EXPECT_THAT(printer.Output(), HasSubstr("Hello world from StreamPrinterAgent's StreamPrinter!\n"
                                          "Hello world through stream!\n"));
}

TEST_F(ExamplesTest, BasicSampleProcessesEveryItemInOrderAndExitsByItself) {
  ChildProcess sample(PERPER_BASIC_SAMPLE_BINARY, {Endpoint()});
  ASSERT_EQ(sample.Wait(60s), 0) << sample.Output();
  std::vector<std::string> lines = Lines(sample.Output());

  // The generator wrote every key once, out of order; the processor read them in key order.
  std::vector<std::string> processed;
  for (const auto& line : lines) {
    if (line.rfind("Processing ", 0) == 0) {
      processed.push_back(line);
    }
  }
  std::vector<std::string> expected;
  for (int k = 0; k < 28; ++k) {
    expected.push_back(absl::StrCat("Processing message ", k));
    EXPECT_EQ(Count(lines, absl::StrCat("Generating message ", k)), 1) << k;
  }
  EXPECT_EQ(processed, expected);
  EXPECT_LT(std::find(lines.begin(), lines.end(), "Generating message 1"),
            std::find(lines.begin(), lines.end(), "Generating message 0"));
  // Batches of 10, then the final partial batch of 8.
  EXPECT_EQ(Count(lines, "Received batch of 10 messages."), 2);
  EXPECT_EQ(Count(lines, "Received batch of 8 messages."), 1);
  EXPECT_EQ(Count(lines,
                  "message 0,message 1,message 2,message 3,message 4,message 5,message "
                  "6,message 7,message 8,message 9"),
            1);
  // The cycle ran to its end.
  for (int n = 1; n <= 9; ++n) {
    EXPECT_EQ(Count(lines, absl::StrCat("Node 2 received ", n, ".")), 1) << n;
  }
  for (int n = 3; n <= 11; ++n) {
    EXPECT_EQ(Count(lines, absl::StrCat("Node 1 received ", n, ".")), 1) << n;
  }
  EXPECT_EQ(Count(lines, "Node 1 received 12."), 0);
  // The calls.
  int random = 0;
  for (const auto& line : lines) {
    if (line.rfind("Random number: ", 0) == 0) {
      int n = std::stoi(line.substr(15));
      EXPECT_GE(n, 1);
      EXPECT_LE(n, 99);
      ++random;
    }
  }
  EXPECT_EQ(random, 2);
  EXPECT_THAT(sample.Output(), HasSubstr("Random numbers: "));
  EXPECT_EQ(Count(lines, "Params: 4"), 1);
  EXPECT_EQ(Count(lines, "DoSomething called: 123"), 1);
  EXPECT_EQ(Count(lines, "DoSomethingAsync called: 456"), 1);
  EXPECT_EQ(Count(lines, "Basic sample done."), 1);
  EXPECT_THAT(sample.Output(), Not(HasSubstr("basic sample failed")));
}

// What a process printed, without the SDK's log lines (which start with a timestamp).
std::string Printed(const std::string& output) {
  std::string printed;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    bool log_line = line.size() > 4 && absl::ascii_isdigit(line[0]) && line[4] == '-';
    if (!log_line) {
      absl::StrAppend(&printed, line, "\n");
    }
  }
  return printed;
}

// S5: two instances, 127 calls routed by instance, both destroyed (their Stop runs).
TEST_F(ExamplesTest, InstancesRoutesEveryCallToItsInstance) {
  ChildProcess containers(PERPER_CONTAINER_SAMPLE_BINARY, {Endpoint()});
  ChildProcess usage(PERPER_CONTAINER_USAGE_SAMPLE_BINARY, {Endpoint()});
  ASSERT_EQ(usage.Wait(60s), 0) << usage.Output() << containers.Output();
  EXPECT_EQ(Printed(usage.Output()),
            "Starting container-sample #1\n"
            "Started container-sample #1\n"
            "Starting container-sample #2\n"
            "Started container-sample #2\n"
            "Test passed!\n"
            "Both agents destroyed!\n");
  containers.Kill(SIGTERM);
  EXPECT_EQ(containers.Wait(20s), 0) << containers.Output();
}

// S4: three processes of one agent; every process's calls are answered by all three, and none
// waits 15 replies without serving.
TEST_F(ExamplesTest, MultiProcessSpreadsCallsOverEveryProcess) {
  std::vector<std::unique_ptr<ChildProcess>> processes;
  for (int i = 0; i < 3; ++i) {
    processes.push_back(std::make_unique<ChildProcess>(
        PERPER_MULTI_PROCESS_SAMPLE_BINARY,
        std::vector<std::string>{Endpoint(), "PERPER_SAMPLE_CALLS=10"}));
  }
  for (auto& process : processes) {
    ASSERT_TRUE(WaitFor([&] { return process->Output().find("Done:") != std::string::npos; }, 60s))
        << process->Output();
  }
  for (auto& process : processes) {
    std::string output = process->Output();
    EXPECT_THAT(output, HasSubstr("Done: 60 responses from 3 processes")) << output;
    EXPECT_THAT(output, Not(HasSubstr("Stuck?")));
    EXPECT_THAT(output, Not(HasSubstr("failed")));
  }
  for (auto& process : processes) {
    process->Kill(SIGTERM);
  }
  for (auto& process : processes) {
    EXPECT_EQ(process->Wait(20s), 0) << process->Output();
  }
}

// The numbers a run of multi_agent printed, one per line.
std::vector<int64_t> Sums(const std::string& output) {
  std::vector<int64_t> sums;
  for (absl::string_view line : absl::StrSplit(Printed(output), '\n', absl::SkipEmpty())) {
    int64_t sum = 0;
    if (absl::SimpleAtoi(line, &sum)) {
      sums.push_back(sum);
    }
  }
  return sums;
}

// S3: the running sums 0 1 3 ... 4950; kill -9 of the program and of its durable Fabric midway,
// then both restarted: the output continues where it stopped (at-least-once at the boundary,
// never a gap).
TEST(MultiAgentExampleTest, RunningSumsContinueAfterAKillAndRestartOfFabricAndAgents) {
  TempDir data;
  auto fabric_args = [&](const std::string& listen) {
    return std::vector<std::string>{"--storage", "rocksdb",  "--data-dir",
                                    data.path(), "--listen", listen};
  };
  auto fabric = std::make_unique<FabricProcess>(fabric_args("127.0.0.1:0"));
  ASSERT_TRUE(fabric->Start()) << fabric->Log();
  std::string address = fabric->address();
  std::vector<std::string> env = {"PERPER_FABRIC_ENDPOINT=" + address, "MULTI_AGENT_DELAY_MS=20"};

  std::vector<int64_t> expected;
  for (int64_t i = 0, sum = 0; i < 100; ++i) {
    sum += i;
    expected.push_back(sum);
  }

  auto first = std::make_unique<ChildProcess>(PERPER_MULTI_AGENT_BINARY, env);
  ASSERT_TRUE(WaitFor([&] { return Sums(first->Output()).size() >= 20; }, 60s)) << first->Output();
  first->Kill(SIGKILL);
  first->Wait(10s);
  fabric->Kill(SIGKILL);
  fabric->Wait();
  std::vector<int64_t> before = Sums(first->Output());
  ASSERT_LT(before.size(), expected.size()) << "the kill came after the end; nothing was tested";

  fabric = std::make_unique<FabricProcess>(fabric_args(address));
  ASSERT_TRUE(fabric->Start()) << fabric->Log();
  ChildProcess second(PERPER_MULTI_AGENT_BINARY, env);
  ASSERT_EQ(second.Wait(60s), 0) << second.Output() << fabric->Log();
  std::vector<int64_t> after = Sums(second.Output());

  // The first run printed a prefix of the sums; the second a contiguous run of them that ends
  // with 4950 and starts no later than where the first stopped.
  ASSERT_FALSE(before.empty());
  EXPECT_THAT(before, ElementsAreArray(expected.begin(), expected.begin() + before.size()));
  ASSERT_FALSE(after.empty()) << second.Output();
  auto start = std::find(expected.begin(), expected.end(), after.front());
  ASSERT_NE(start, expected.end()) << "the second run began with " << after.front();
  EXPECT_LE(start - expected.begin(), static_cast<std::ptrdiff_t>(before.size()))
      << "a gap: the first run stopped after " << before.back() << ", the second began at "
      << after.front();
  EXPECT_THAT(after, ElementsAreArray(start, expected.end()));
}

}  // namespace
}  // namespace perper
