// SPDX-License-Identifier: MIT
// The README's application, examples/fabric_tour, against a real rocksdb Fabric process: its
// output is what the README shows.
#include <signal.h>
#include <stdio.h>

#include <cstdlib>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/fabric_process.h"
#include "tests/support/temp_dir.h"

namespace perper::testing {
namespace {

TEST(FabricTourTest, PrintsWhatTheReadmeShows) {
  // The example sits in the same build tree as the Fabric binary: <build>/apps/perper-fabric.
  std::string fabric_binary = FabricProcess::BinaryPath();
  std::string apps_dir = fabric_binary.substr(0, fabric_binary.rfind('/'));
  std::string build_dir = apps_dir.substr(0, apps_dir.rfind('/'));
  TempDir data;
  FabricProcess fabric({"--storage", "rocksdb", "--data-dir", data.path() + "/db"});
  ASSERT_TRUE(fabric.Start()) << fabric.Log();

  std::string command =
      build_dir + "/examples/fabric_tour/fabric_tour " + fabric.address() + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[256];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  int status = pclose(pipe);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output,
            "Calculator.Add(1, 2) = 3\n"
            "Calculator.Add(20, 2) = 22\n"
            "Calculator.Add(300, 2) = 302\n"
            "stream delivered: Hello world through stream!\n"
            "state counter: 3\n"
            "tour finished\n");

  fabric.Kill(SIGTERM);
  EXPECT_EQ(fabric.Wait(), 0);
}

}  // namespace
}  // namespace perper::testing
