// SPDX-License-Identifier: MIT
// The manifest parser of `perper up`: the format of docs/scaler.md and errors with lines.
#include "perper/scaler/manifest.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "perper/scaler/compose.h"

namespace perper::scaler {
namespace {

absl::StatusOr<Manifest> Parse(const std::string& text) {
  return ParseManifest(text, "app.yaml", "/apps/demo");
}

TEST(ManifestTest, ParsesTheFabricLimits) {
  auto manifest = Parse(
      "fabric:\n  max_value_size: 1024\n  max_stream_retained_bytes: 4096\n"
      "  stream_write_wait_ms: 250\nagents:\n  A:\n    command: /bin/true\n");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->fabric.max_value_size, 1024u);
  EXPECT_EQ(manifest->fabric.max_stream_retained_bytes, 4096u);
  EXPECT_EQ(manifest->fabric.stream_write_wait_ms, 250u);
  auto bad =
      Parse("fabric:\n  stream_write_wait_ms: soon\nagents:\n  A:\n    command: /bin/true\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("fabric.stream_write_wait_ms"), std::string::npos)
      << bad.status();
}

TEST(ManifestTest, ParsesEveryKey) {
  setenv("PERPER_MANIFEST_TEST_DIR", "/opt/bin", 1);
  auto manifest = Parse(R"(name: demo
fabric:
  storage: rocksdb
  data_dir: data
  log_level: warn
deploy: Main
agents:
  Main:
    command: ./bin/main --flag value
    env:
      GREETING: hello ${PERPER_MANIFEST_TEST_DIR}
  Worker:
    command: ["${PERPER_MANIFEST_TEST_DIR:-/nowhere}/worker", "--fast"]
    mode: instance
    grace_seconds: 1.5
  Pool:
    command: [sh, -c, "exit 0"]
    workdir: ../other
    mode: pool
    min: 1
    max: 3
    executions_per_process: 4
    idle_seconds: 2
)");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->name, "demo");
  EXPECT_EQ(manifest->dir, "/apps/demo");
  EXPECT_EQ(manifest->deploy, "Main");
  EXPECT_EQ(manifest->fabric.storage, "rocksdb");
  EXPECT_EQ(manifest->fabric.data_dir, "/apps/demo/data");
  EXPECT_EQ(manifest->fabric.log_level, "warn");
  EXPECT_TRUE(manifest->fabric.address.empty());
  ASSERT_EQ(manifest->agents.size(), 3u);

  const AgentSpec* main = manifest->Find("Main");
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(main->argv, (std::vector<std::string>{"/apps/demo/bin/main", "--flag", "value"}));
  EXPECT_EQ(main->env.at("GREETING"), "hello /opt/bin");
  EXPECT_EQ(main->workdir, "/apps/demo");
  EXPECT_EQ(main->mode, AgentMode::kInstance);
  EXPECT_EQ(main->line, 8);

  const AgentSpec* worker = manifest->Find("Worker");
  ASSERT_NE(worker, nullptr);
  EXPECT_EQ(worker->argv, (std::vector<std::string>{"/opt/bin/worker", "--fast"}));
  EXPECT_EQ(worker->grace, absl::Milliseconds(1500));

  const AgentSpec* pool = manifest->Find("Pool");
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->mode, AgentMode::kPool);
  EXPECT_EQ(pool->argv.size(), 3u);
  EXPECT_EQ(pool->argv[0].substr(pool->argv[0].rfind('/')), "/sh");  // found on PATH
  EXPECT_EQ(pool->workdir, "/apps/other");
  EXPECT_EQ(pool->min, 1);
  EXPECT_EQ(pool->max, 3);
  EXPECT_EQ(pool->executions_per_process, 4);
  EXPECT_EQ(pool->idle, absl::Seconds(2));
  unsetenv("PERPER_MANIFEST_TEST_DIR");
}

TEST(ManifestTest, ParsesALocalCluster) {
  auto manifest = Parse(
      "fabric:\n  storage: redis\n  redis: start\n  processes: 3\nagents:\n  A:\n"
      "    command: /bin/true\n");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->fabric.storage, "redis");
  EXPECT_EQ(manifest->fabric.redis, "start");
  EXPECT_EQ(manifest->fabric.processes, 3);
  auto single = Parse("agents:\n  A:\n    command: /bin/true\n");
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(single->fabric.processes, 1);
  EXPECT_FALSE(single->fabric.redis.has_value());
  for (const char* count : {"0", "17", "many"}) {
    auto bad = Parse(std::string("fabric:\n  processes: ") + count +
                     "\nagents:\n  A:\n    command: /bin/true\n");
    ASSERT_FALSE(bad.ok()) << count;
    EXPECT_NE(bad.status().message().find("fabric.processes: expected a number from 1 to 16"),
              std::string::npos)
        << bad.status();
  }
}

TEST(ManifestTest, ExternalFabricAddress) {
  auto manifest =
      Parse("fabric:\n  address: 10.0.0.1:40400\nagents:\n  A:\n    command: /bin/true\n");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->fabric.address, "10.0.0.1:40400");
  EXPECT_TRUE(manifest->deploy.empty());
}

struct BadCase {
  const char* text;
  const char* expected;  // a substring of the error, with the line
};

TEST(ManifestTest, ErrorsNameTheLine) {
  const BadCase cases[] = {
      {"agents:\n  A:\n    command: /bin/true\n    mode: fast\n",
       "app.yaml:4: agents.A.mode: expected instance or pool, got 'fast'"},
      {"agents:\n  A:\n    comand: /bin/true\n", "app.yaml:3: agents.A.comand: unknown key"},
      {"agents:\n  A:\n    env: {X: 1}\n", "app.yaml:2: agents.A: missing command"},
      {"deploy: Nope\nagents:\n  A:\n    command: /bin/true\n",
       "app.yaml:1: deploy: no agent 'Nope' under agents"},
      {"agents:\n  A:\n    command: /bin/true\n    mode: pool\n    min: 3\n    max: 2\n",
       "app.yaml:2: agents.A: min (3) is larger than max (2)"},
      {"agents:\n  A:\n    command: /bin/true\n    min: 1\n",
       "app.yaml:2: agents.A: min and max apply to mode: pool only"},
      {"agents:\n  A:\n    command: /bin/true\n    mode: pool\n    max: zero\n",
       "app.yaml:5: agents.A.max: expected an integer of at least 1, got 'zero'"},
      {"agents:\n  A:\n    command: no-such-command-anywhere\n",
       "app.yaml:3: agents.A.command: 'no-such-command-anywhere' is not on PATH"},
      {"agents:\n  A:\n    command: ${PERPER_UNSET_VARIABLE_FOR_TEST}/x\n",
       "app.yaml:3: agents.A.command: environment variable PERPER_UNSET_VARIABLE_FOR_TEST is "
       "not set"},
      {"agents:\n  A:\n    command: [/bin/true\n", "app.yaml:4: "},
      {"fabric:\n  storage: memory\n  colour: blue\nagents:\n  A:\n    command: /bin/true\n",
       "app.yaml:3: fabric.colour: unknown key"},
      {"name: x\n", "app.yaml:1: agents: at least one agent type is required"},
      {"agents:\n  Registry:\n    command: /bin/true\n",
       "app.yaml:2: agents: 'Registry' is not a valid agent type"},
      {"deploy: A\nagents:\n  A:\n    command: /bin/true\n    mode: pool\n",
       "app.yaml:1: deploy: the deploy agent runs as one process"},
  };
  for (const BadCase& c : cases) {
    auto manifest = Parse(c.text);
    ASSERT_FALSE(manifest.ok()) << c.text;
    EXPECT_EQ(manifest.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(manifest.status().message()).find(c.expected), std::string::npos)
        << "got: " << manifest.status().message() << "\nwanted: " << c.expected;
  }
}

TEST(ManifestTest, NumbersMayComeFromTheEnvironment) {
  setenv("PERPER_MANIFEST_TEST_MAX", "7", 1);
  auto manifest = Parse(
      "agents:\n  A:\n    command: /bin/true\n    mode: pool\n    max: "
      "${PERPER_MANIFEST_TEST_MAX}\n"
      "    grace_seconds: ${PERPER_MANIFEST_TEST_GRACE:-0.25}\n");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->agents[0].max, 7);
  EXPECT_EQ(manifest->agents[0].grace, absl::Milliseconds(250));
  unsetenv("PERPER_MANIFEST_TEST_MAX");
}

TEST(ManifestTest, TheExampleManifestsLoad) {
  for (const char* name : {"hello.yaml", "greeting.yaml", "instances.yaml", "calculator.yaml",
                           "python-hello.yaml", "python-basic.yaml", "python-restart.yaml"}) {
    auto manifest = LoadManifest(std::string(PERPER_SOURCE_DIR) + "/examples/apps/" + name);
    ASSERT_TRUE(manifest.ok()) << name << ": " << manifest.status();
    EXPECT_FALSE(manifest->agents.empty());
  }
}

// Agents with an image run in containers (--scaler compose): the command is the container's,
// kept as written, optional, and not checked on this machine.
TEST(ManifestTest, ImagesKeepTheContainersCommand) {
  setenv("PERPER_MANIFEST_TEST_TAG", "v2", 1);
  auto manifest = Parse(R"(fabric:
  image: localhost/my-fabric:${PERPER_MANIFEST_TEST_TAG}
agents:
  A:
    image: localhost/agents:${PERPER_MANIFEST_TEST_TAG}
    command: [my_agent, --fast]
  B:
    image: localhost/b
)");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->fabric.image, "localhost/my-fabric:v2");
  const AgentSpec* a = manifest->Find("A");
  EXPECT_EQ(a->image, "localhost/agents:v2");
  EXPECT_EQ(a->argv, (std::vector<std::string>{"my_agent", "--fast"}));
  EXPECT_TRUE(manifest->Find("B")->argv.empty());
  EXPECT_TRUE(CheckCommands(*manifest).ok());
  auto empty = Parse("agents:\n  A:\n    image: \"\"\n");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("app.yaml:3: agents.A.image: expected an image name"),
            std::string::npos)
      << empty.status();
  for (const char* name : {"hello.yaml", "instances.yaml"}) {
    auto example =
        LoadManifest(std::string(PERPER_SOURCE_DIR) + "/examples/apps/containers/" + name);
    ASSERT_TRUE(example.ok()) << name << ": " << example.status();
    EXPECT_EQ(example->agents.front().image, "localhost/perper-cpp-examples");
  }
}

// Compose service names: lower case, stable, distinct per instance.
TEST(ManifestTest, InstanceServiceNames) {
  std::string name = InstanceServiceName("StreamPrinter_Agent", "Run-1");
  EXPECT_EQ(name.substr(0, 20), "streamprinter-agent-");
  EXPECT_EQ(name.size(), 20u + 10u);
  EXPECT_EQ(name, InstanceServiceName("StreamPrinter_Agent", "Run-1"));
  EXPECT_NE(name, InstanceServiceName("StreamPrinter_Agent", "Run-2"));
}

TEST(ManifestTest, LoadMissingFileIsAnError) {
  auto manifest = LoadManifest("/nonexistent/app.yaml");
  ASSERT_FALSE(manifest.ok());
  EXPECT_NE(std::string(manifest.status().message()).find("cannot read manifest"),
            std::string::npos);
}

TEST(ManifestTest, ExpandVariables) {
  setenv("PERPER_EXPAND_TEST", "value", 1);
  EXPECT_EQ(*ExpandVariables("a-${PERPER_EXPAND_TEST}-b"), "a-value-b");
  EXPECT_EQ(*ExpandVariables("${PERPER_EXPAND_UNSET:-fallback}"), "fallback");
  EXPECT_EQ(*ExpandVariables("$HOME stays"), "$HOME stays");
  EXPECT_FALSE(ExpandVariables("${PERPER_EXPAND_UNSET}").ok());
  EXPECT_FALSE(ExpandVariables("${UNTERMINATED").ok());
  unsetenv("PERPER_EXPAND_TEST");
}

}  // namespace
}  // namespace perper::scaler
