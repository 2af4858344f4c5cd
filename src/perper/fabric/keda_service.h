// SPDX-License-Identifier: MIT
// KEDA's external scaler (proto/keda/externalscaler.proto), served on the Fabric's own port so
// that KEDA can scale an agent type's Deployment (docs/protocol.md, "KEDA external scaler").
//
// A ScaledObject names the agent type in its trigger metadata (`agent`, defaulting to the
// ScaledObject's name) and sets `targetExecutions` and/or `targetInstances`. Metrics, read from
// the store on every call:
//   "<agent>-executions"  the agent's executions that are not finished (waiting or running)
//   "<agent>-instances"   the agent's live instances: unfinished Registry executions whose
//                         `instance` field is the agent type
// IsActive is "executions > 0", or "instances > 0" when only targetInstances is set.
// StreamIsActive answers the same at once, then on every change of it, re-reading the store on
// the ChangeHub's hints for the agent at most once per kDebounce.
//
// Cost of one count: one ListExecutionIds of the store, capped at kMaxCount IDs (a count at the
// cap reports the cap); IsActive and StreamIsActive ask for one ID only.
//
// Thread safety: calls may run concurrently on any gRPC thread; the service's own state (the
// refresh thread of StreamIsActive calls) is internally synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "keda/externalscaler.grpc.pb.h"
#include "perper/fabric/service_context.h"

namespace perper::fabric {

class KedaRefreshTimers;

// What a ScaledObject's trigger asks for, checked (KedaQuery::Parse).
struct KedaQuery {
  std::string agent;
  std::optional<int64_t> target_executions;
  std::optional<int64_t> target_instances;

  std::string ExecutionsMetric() const { return agent + "-executions"; }
  std::string InstancesMetric() const { return agent + "-instances"; }
  // Whether activity is judged by instances: only targetInstances was given.
  bool ByInstances() const { return target_instances.has_value() && !target_executions; }

  // INVALID_ARGUMENT naming the field: an agent that is empty (given empty, or absent with an
  // empty ScaledObject name) or longer than limits.max_id_bytes; a target that is not a
  // positive integer. Other metadata keys (KEDA's own, such as scalerAddress) are ignored.
  // `field` prefixes the names in messages ("scaledObjectRef." in GetMetrics).
  static absl::StatusOr<KedaQuery> Parse(const externalscaler::ScaledObjectRef& ref,
                                         const FabricLimits& limits, std::string_view field = "");
};

class KedaService final : public externalscaler::ExternalScaler::CallbackService {
 public:
  // The most IDs one count lists; a larger count reports this.
  static constexpr size_t kMaxCount = 100000;
  // How long StreamIsActive gathers hints before it re-reads the store.
  static constexpr absl::Duration kDebounce = absl::Milliseconds(100);

  explicit KedaService(const ServiceContext& context);
  // Stops the refresh thread. REQUIRES: every call has ended (the server has shut down).
  ~KedaService() override;

  grpc::ServerUnaryReactor* IsActive(grpc::CallbackServerContext* call,
                                     const externalscaler::ScaledObjectRef* request,
                                     externalscaler::IsActiveResponse* response) override;
  grpc::ServerWriteReactor<externalscaler::IsActiveResponse>* StreamIsActive(
      grpc::CallbackServerContext* call, const externalscaler::ScaledObjectRef* request) override;
  grpc::ServerUnaryReactor* GetMetricSpec(grpc::CallbackServerContext* call,
                                          const externalscaler::ScaledObjectRef* request,
                                          externalscaler::GetMetricSpecResponse* response) override;
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* call,
                                       const externalscaler::GetMetricsRequest* request,
                                       externalscaler::GetMetricsResponse* response) override;

 private:
  ServiceContext context_;
  std::unique_ptr<KedaRefreshTimers> timers_;
};

}  // namespace perper::fabric
