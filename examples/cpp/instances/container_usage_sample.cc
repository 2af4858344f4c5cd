// SPDX-License-Identifier: MIT
// Instances: Deploy starts two instances of `container-sample`, learns each one's ID, routes 127
// calls between them and checks that every reply came from the instance it was sent to, then
// destroys both (their Stop runs; a per-instance scaler stops their processes).
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./container_usage_sample
//   Starting container-sample #1
//   Started container-sample #1
//   Starting container-sample #2
//   Started container-sample #2
//   Test passed!
//   Both agents destroyed!
#include <array>
#include <cstdio>
#include <string>

#include "perper/agent/agent.h"

namespace {

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

perper::Task<int> RunSample() {
  std::array<perper::Instance, 2> instances;
  std::array<std::string, 2> ids;
  for (int n = 0; n < 2; ++n) {
    Say("Starting container-sample #" + std::to_string(n + 1));
    absl::StatusOr<perper::Instance> started = co_await perper::start_agent("container-sample");
    if (!started.ok()) {
      Say("Start failed: " + started.status().ToString());
      co_return 1;
    }
    instances[n] = *started;
    perper::Result<std::string> id = co_await instances[n].call<std::string>("Test");
    if (!id.ok()) {
      Say("Test failed: " + id.status().ToString());
      co_return 1;
    }
    ids[n] = *id;
    Say("Started container-sample #" + std::to_string(n + 1));
  }
  if (ids[0] == ids[1]) {
    Say("Both instances answered with the same ID " + ids[0]);
    co_return 1;
  }

  for (int i = 0; i < 127; ++i) {
    int n = ((i ^ (i << 2)) & 8) != 0 ? 1 : 0;
    perper::Result<std::string> id = co_await instances[n].call<std::string>("Test");
    if (!id.ok() || *id != ids[n]) {
      Say("Call " + std::to_string(i) + " to #" + std::to_string(n + 1) + " was answered by " +
          (id.ok() ? *id : id.status().ToString()) + ", expected " + ids[n]);
      co_return 1;
    }
  }
  Say("Test passed!");

  for (perper::Instance& instance : instances) {
    absl::Status destroyed = co_await instance.destroy();
    if (!destroyed.ok()) {
      Say("Destroy failed: " + destroyed.ToString());
      co_return 1;
    }
  }
  Say("Both agents destroyed!");
  co_return 0;
}

}  // namespace

int main() {
  perper::Agent app("container-usage-sample");
  app.on_deploy([]() -> perper::Task<void> { perper::stop_process(co_await RunSample()); });
  return perper::Run(app);
}
