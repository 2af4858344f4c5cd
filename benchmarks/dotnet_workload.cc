// SPDX-License-Identifier: MIT
// B1 calls into a .NET SDK agent beside a C++ SDK agent: perper-bench launches the .NET bench
// (sdk/dotnet/bench/Perper.Bench), which starts its own Fabric and measures both agents with the
// same .NET caller in one run, and prints its table among perper-bench's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "benchmarks/workloads.h"
#include "perper/common/files.h"

namespace perper::bench {

void RunDotnet(const Config& config, Report& report) {
  const std::string dotnet = FindOnPath("dotnet");
  if (dotnet.empty()) {
    report.AddText("B1 calls into a .NET agent: skipped, dotnet is not on PATH\n");
    return;
  }
  TempDir dir;
  const std::string log = dir.path() + "/dotnet-bench.log";
  const uint64_t calls = std::max<uint64_t>(config.counts.calls_sequential / 5, 200);
  std::fprintf(stderr, "perper-bench: B1 .NET (dotnet run, %llu calls per agent)\n",
               static_cast<unsigned long long>(calls));
  Child bench = Child::Spawn({dotnet, "run", "-c", "Release", "--project",
                              std::string(PERPER_SOURCE_DIR) + "/sdk/dotnet/bench/Perper.Bench",
                              "--", "--fabric", config.fabric_binary, "--cpp-agent",
                              PERPER_CALCULATOR_BINARY, "--calls", std::to_string(calls)},
                             log);
  // A first run restores and compiles the bench: minutes on a cold machine.
  const int code = bench.Wait(std::chrono::minutes(10));
  const std::string output = ReadWholeFile(log);
  report.Check(code == 0, "the .NET bench exited with " + std::to_string(code) + ":\n" + output);
  if (code != 0) return;
  // Its table starts at its "B1 calls" line; dotnet's build chatter before it is left out.
  const size_t table = output.find("B1 calls");
  report.AddText(table == std::string::npos ? output : output.substr(table));
}

}  // namespace perper::bench
