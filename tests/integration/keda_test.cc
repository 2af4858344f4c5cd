// SPDX-License-Identifier: MIT
// KEDA's external scaler (externalscaler.ExternalScaler) as the Fabric serves it, over real gRPC
// on every backend: the metric specs, the metric values and IsActive for known executions and
// Registry instances, StreamIsActive following them, and refused metadata. Executions and
// instances are made through FabricExecutions, as agents and the SDKs make them.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keda/externalscaler.grpc.pb.h"
#include "perper/fabric/keda_service.h"
#include "tests/integration/executions_helpers.h"
#include "tests/support/fabric_fixture.h"
#include "tests/support/forwarding_executions.h"

namespace perper::testing {
namespace {

using externalscaler::ExternalScaler;
using externalscaler::ScaledObjectRef;
using Metadata = std::map<std::string, std::string>;

ScaledObjectRef Ref(const std::string& name, const Metadata& metadata) {
  ScaledObjectRef ref;
  ref.set_name(name);
  ref.set_namespace_("default");
  // As KEDA sends it: the trigger's whole metadata, its own keys included.
  (*ref.mutable_scalermetadata())["scalerAddress"] = "perper-fabric:40400";
  for (const auto& [key, value] : metadata) (*ref.mutable_scalermetadata())[key] = value;
  return ref;
}

// A metric spec or value as (name, int64 field); the float field must agree with it.
using Named = std::vector<std::pair<std::string, int64_t>>;

// A StreamIsActive call. Next() blocks until the next message (or the call's deadline).
class ActiveStreamCall {
 public:
  ActiveStreamCall(ExternalScaler::Stub& stub, const ScaledObjectRef& ref)
      : context_(Context(std::chrono::seconds(30))),
        reader_(stub.StreamIsActive(context_.get(), ref)) {}
  ~ActiveStreamCall() {
    if (!finished_) Cancel();
  }

  // The next state sent; nullopt when the call ended.
  std::optional<bool> Next() {
    externalscaler::IsActiveResponse response;
    if (!reader_->Read(&response)) return std::nullopt;
    return response.result();
  }
  // The call's status, once the server ended it.
  grpc::Status Finish() {
    finished_ = true;
    return reader_->Finish();
  }
  grpc::Status Cancel() {
    context_->TryCancel();
    while (Next().has_value()) {
    }
    return Finish();
  }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<externalscaler::IsActiveResponse>> reader_;
  bool finished_ = false;
};

class KedaTest : public FabricTest {
 protected:
  void SetUp() override {
    FabricTest::SetUp();
    keda_ = ExternalScaler::NewStub(channel());
    executions_ = Executions();
  }

  void Create(const std::string& id, const std::string& agent, const std::string& instance = "i") {
    grpc::Status status = CreateExecution(*executions_, id, agent, instance, "Run");
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
  }
  // An instance of `agent`, as FabricInstances.CreateAndStart registers it.
  void CreateInstance(const std::string& id, const std::string& agent) {
    Create(id, "Registry", agent);
  }
  void Complete(const std::string& id) {
    grpc::Status status = CompleteExecution(*executions_, id);
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
  }
  void Delete(const std::string& id) {
    grpc::Status status = DeleteExecution(*executions_, id);
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
  }

  Named Specs(const ScaledObjectRef& ref) {
    externalscaler::GetMetricSpecResponse response;
    grpc::Status status = keda_->GetMetricSpec(Context().get(), ref, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    Named specs;
    for (const auto& spec : response.metricspecs()) {
      EXPECT_EQ(spec.targetsizefloat(), static_cast<double>(spec.targetsize()));
      specs.emplace_back(spec.metricname(), spec.targetsize());
    }
    return specs;
  }
  Named Metrics(const ScaledObjectRef& ref, const std::string& metric) {
    externalscaler::GetMetricsRequest request;
    *request.mutable_scaledobjectref() = ref;
    request.set_metricname(metric);
    externalscaler::GetMetricsResponse response;
    grpc::Status status = keda_->GetMetrics(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    Named values;
    for (const auto& value : response.metricvalues()) {
      EXPECT_EQ(value.metricvaluefloat(), static_cast<double>(value.metricvalue()));
      values.emplace_back(value.metricname(), value.metricvalue());
    }
    return values;
  }
  std::optional<bool> IsActive(const ScaledObjectRef& ref) {
    externalscaler::IsActiveResponse response;
    grpc::Status status = keda_->IsActive(Context().get(), ref, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) return std::nullopt;
    return response.result();
  }

  std::unique_ptr<ExternalScaler::Stub> keda_;
  std::unique_ptr<grpc2::FabricExecutions::Stub> executions_;
};

// Worker: 3 executions waiting or running, 2 finished; 2 live instances, 1 finished and 1
// deleted. Other agents' executions and instances around them.
TEST_P(KedaTest, CountsUnfinishedExecutionsAndLiveInstances) {
  for (const char* id : {"w-1", "w-2", "w-3", "w-4", "w-5", "w-6"}) Create(id, "Worker");
  Complete("w-4");
  Complete("w-5");
  Delete("w-6");
  Create("o-1", "Other");
  for (const char* id : {"wi-1", "wi-2", "wi-3", "wi-4"}) CreateInstance(id, "Worker");
  Complete("wi-3");
  Delete("wi-4");
  CreateInstance("oi-1", "Other");
  // An execution on an instance named like the type is not an instance.
  Create("x-1", "Helper", "Worker");

  ScaledObjectRef both = Ref(
      "worker-scaler", {{"agent", "Worker"}, {"targetExecutions", "5"}, {"targetInstances", "2"}});
  EXPECT_EQ(Specs(both), (Named{{"Worker-executions", 5}, {"Worker-instances", 2}}));
  EXPECT_EQ(Metrics(both, "Worker-executions"), (Named{{"Worker-executions", 3}}));
  EXPECT_EQ(Metrics(both, "Worker-instances"), (Named{{"Worker-instances", 2}}));
  EXPECT_EQ(IsActive(both), true);

  // Only the targets given get a spec; none given: executions, one per replica.
  EXPECT_EQ(Specs(Ref("s", {{"agent", "Worker"}, {"targetInstances", "4"}})),
            (Named{{"Worker-instances", 4}}));
  EXPECT_EQ(Specs(Ref("s", {{"agent", "Worker"}, {"targetExecutions", "10"}})),
            (Named{{"Worker-executions", 10}}));
  EXPECT_EQ(Specs(Ref("s", {{"agent", "Worker"}})), (Named{{"Worker-executions", 1}}));

  // Without `agent`, the ScaledObject's name is the agent type.
  ScaledObjectRef by_name = Ref("Other", {});
  EXPECT_EQ(Specs(by_name), (Named{{"Other-executions", 1}}));
  EXPECT_EQ(Metrics(by_name, "Other-executions"), (Named{{"Other-executions", 1}}));
  EXPECT_EQ(Metrics(by_name, "Other-instances"), (Named{{"Other-instances", 1}}));

  // Activity: executions, or instances when only targetInstances is given.
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Idle"}})), false);
  EXPECT_EQ(Metrics(Ref("s", {{"agent", "Idle"}}), "Idle-executions"),
            (Named{{"Idle-executions", 0}}));
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Helper"}})), true);
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Helper"}, {"targetInstances", "1"}})), false);
  CreateInstance("hi-1", "Helper");
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Helper"}, {"targetInstances", "1"}})), true);
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Idle"}, {"targetInstances", "1"}})), false);
  CreateInstance("ii-1", "Idle");
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Idle"}, {"targetInstances", "1"}})), true);
  EXPECT_EQ(IsActive(Ref("s", {{"agent", "Idle"}, {"targetExecutions", "1"}})), false);

  // Completing and deleting take executions out of the count at once.
  Complete("w-1");
  Delete("w-2");
  EXPECT_EQ(Metrics(both, "Worker-executions"), (Named{{"Worker-executions", 1}}));
  Complete("w-3");
  EXPECT_EQ(Metrics(both, "Worker-executions"), (Named{{"Worker-executions", 0}}));
  EXPECT_EQ(IsActive(both), false);
}

TEST_P(KedaTest, StreamIsActiveFollowsTheAgentsExecutions) {
  const size_t subscriptions = fabric().server().hub().SubscriptionCountForTest();
  ActiveStreamCall stream(*keda_, Ref("s", {{"agent", "Streamer"}, {"targetExecutions", "2"}}));
  EXPECT_EQ(stream.Next(), false);  // The state now, first.
  Create("s-1", "Streamer");
  EXPECT_EQ(stream.Next(), true);
  // Only changes of the state are sent: a second execution, or finishing one of two, is none.
  // Had either been sent, the next message would be `true`.
  Create("s-2", "Streamer");
  Create("o-1", "Other");
  Complete("s-1");
  Complete("s-2");
  EXPECT_EQ(stream.Next(), false);
  Create("s-3", "Streamer");
  EXPECT_EQ(stream.Next(), true);
  Delete("s-3");
  EXPECT_EQ(stream.Next(), false);

  // The call ends when KEDA cancels it, and leaves nothing behind.
  EXPECT_EQ(stream.Cancel().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] {
    return fabric().server().hub().SubscriptionCountForTest() == subscriptions &&
           fabric().server().open_calls() == 0;
  }));
}

TEST_P(KedaTest, StreamIsActiveStartsTrueAndFollowsInstancesWhenOnlyTheyAreTargeted) {
  CreateInstance("p-1", "Pooled");
  Create("e-1", "Pooled");  // Executions do not count here: only instances are targeted.
  ActiveStreamCall stream(*keda_, Ref("s", {{"agent", "Pooled"}, {"targetInstances", "1"}}));
  EXPECT_EQ(stream.Next(), true);
  Delete("p-1");
  EXPECT_EQ(stream.Next(), false);
  CreateInstance("q-1", "Else");  // Another type's instance: still false, nothing sent.
  CreateInstance("p-2", "Pooled");
  EXPECT_EQ(stream.Next(), true);
  Complete("p-2");
  EXPECT_EQ(stream.Next(), false);
}

TEST_P(KedaTest, BadMetadataIsInvalidArgumentNamingTheKey) {
  auto refused = [&](const ScaledObjectRef& ref) {
    externalscaler::GetMetricSpecResponse response;
    grpc::Status status = keda_->GetMetricSpec(Context().get(), ref, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    // IsActive checks the same way.
    externalscaler::IsActiveResponse active;
    EXPECT_EQ(keda_->IsActive(Context().get(), ref, &active).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    return status.error_message();
  };
  EXPECT_EQ(refused(Ref("s", {{"agent", ""}})), "scalerMetadata.agent must not be empty");
  EXPECT_EQ(refused(Ref("", {})),
            "scalerMetadata.agent is missing and name, its default, is empty");
  EXPECT_EQ(refused(Ref("s", {{"targetExecutions", "0"}})),
            "scalerMetadata.targetExecutions must be a positive integer, not \"0\"");
  EXPECT_EQ(refused(Ref("s", {{"targetExecutions", "-3"}})),
            "scalerMetadata.targetExecutions must be a positive integer, not \"-3\"");
  EXPECT_EQ(refused(Ref("s", {{"targetExecutions", "1.5"}})),
            "scalerMetadata.targetExecutions must be a positive integer, not \"1.5\"");
  EXPECT_EQ(refused(Ref("s", {{"targetInstances", "many"}})),
            "scalerMetadata.targetInstances must be a positive integer, not \"many\"");
  const std::string too_long = "scalerMetadata.agent is 2000 bytes, over the limit of 1024 bytes";
  EXPECT_EQ(refused(Ref("s", {{"agent", std::string(2000, 'a')}})).substr(0, too_long.size()),
            too_long);

  externalscaler::GetMetricsRequest request;
  request.set_metricname("Worker-executions");
  externalscaler::GetMetricsResponse response;
  grpc::Status status = keda_->GetMetrics(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "scaledObjectRef.scalerMetadata.agent is missing and scaledObjectRef.name, its "
            "default, is empty");
  *request.mutable_scaledobjectref() = Ref("s", {{"agent", "Worker"}});
  request.set_metricname("Other-executions");
  status = keda_->GetMetrics(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "metricName \"Other-executions\" is not a metric of agent Worker: expected "
            "\"Worker-executions\" or \"Worker-instances\"");

  ActiveStreamCall stream(*keda_, Ref("s", {{"targetInstances", "x"}}));
  EXPECT_EQ(stream.Next(), std::nullopt);
  status = stream.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "scalerMetadata.targetInstances must be a positive integer, not \"x\"");
  EXPECT_TRUE(WaitFor([&] { return fabric().server().open_calls() == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Backends, KedaTest, AllBackends(), BackendName);

// What the scaler costs the store: every count is one listing of IDs (never of records), and a
// StreamIsActive call re-reads at most once per debounce period however many changes come.
class KedaCostTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KedaCostTest, CountsListIdsAndStreamReadsAreDebounced) {
  CountingFabric fabric(GetParam());
  auto keda = ExternalScaler::NewStub(fabric.channel());
  auto executions = fabric.Executions();
  CountingExecutions& store = fabric.executions();

  ActiveStreamCall stream(*keda, Ref("Burst", {}));
  EXPECT_EQ(stream.Next(), false);
  EXPECT_EQ(store.list_ids_calls.load(), 1);

  const auto start = std::chrono::steady_clock::now();
  constexpr int kExecutions = 200;
  for (int i = 0; i < kExecutions; ++i) {
    ASSERT_TRUE(CreateExecution(*executions, "b-" + std::to_string(i), "Burst", "i", "Run").ok());
  }
  EXPECT_EQ(stream.Next(), true);
  // Each read follows a hint by one period, and hints within it share the read: since the
  // first hint, at most one read per started period, plus the one being made now.
  const auto periods = (std::chrono::steady_clock::now() - start) /
                       absl::ToChronoMilliseconds(fabric::KedaService::kDebounce);
  const int64_t stream_reads = store.list_ids_calls.load() - 1;
  EXPECT_GE(stream_reads, 1);
  EXPECT_LE(stream_reads, periods + 2) << kExecutions << " changes";

  const int64_t before = store.list_ids_calls.load();
  externalscaler::GetMetricsRequest request;
  *request.mutable_scaledobjectref() = Ref("Burst", {});
  request.set_metricname("Burst-executions");
  externalscaler::GetMetricsResponse response;
  ASSERT_TRUE(keda->GetMetrics(Context().get(), request, &response).ok());
  ASSERT_EQ(response.metricvalues_size(), 1);
  EXPECT_EQ(response.metricvalues(0).metricvalue(), kExecutions);
  EXPECT_GE(store.list_ids_calls.load(), before + 1);
  EXPECT_EQ(store.list_executions_calls.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, KedaCostTest, ::testing::Values("memory", "rocksdb"),
                         BackendName);

}  // namespace
}  // namespace perper::testing
