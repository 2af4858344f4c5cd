// SPDX-License-Identifier: MIT
#include "perper/fabric/introspection_service.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "perper/common/grpc_status.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {
namespace {

// Checks the request's strings, then resolves its limit: what every listing does first.
absl::StatusOr<size_t> CheckedLimit(const google::protobuf::Message& request, uint32_t limit,
                                    const FabricLimits& limits) {
  if (absl::Status s = CheckRequestStrings(request, limits); !s.ok()) return s;
  if (limit == 0) return IntrospectionService::kDefaultLimit;
  if (limit > IntrospectionService::kMaxLimit) {
    return absl::InvalidArgumentError("limit " + std::to_string(limit) +
                                      " is over the maximum of " +
                                      std::to_string(IntrospectionService::kMaxLimit));
  }
  return limit;
}

}  // namespace

grpc::ServerUnaryReactor* IntrospectionService::ListExecutions(
    grpc::CallbackServerContext* call, const grpc2::IntrospectionListExecutionsRequest* request,
    grpc2::IntrospectionListExecutionsResponse* response) {
  absl::StatusOr<size_t> limit = CheckedLimit(*request, request->limit(), context_.limits);
  if (!limit.ok()) return FinishUnary(call, limit.status());
  storage::ExecutionFilter filter;
  filter.agent = request->agent();
  filter.any_agent = request->agent().empty();
  filter.instance = request->instance();
  filter.delegate = request->delegate();
  filter.include_finished = request->include_finished();
  auto executions = context_.store->executions().ListExecutions(filter, *limit);
  if (!executions.ok()) return FinishUnary(call, executions.status());
  for (const storage::ExecutionRecord& record : *executions) {
    grpc2::ExecutionSummary* summary = response->add_executions();
    summary->mutable_execution()->set_execution(record.execution);
    summary->mutable_instance()->set_instance(record.instance);
    summary->mutable_instance()->set_agent(record.agent);
    summary->set_delegate(record.delegate);
    summary->set_finished(record.finished);
    summary->set_failed(record.error.has_value());
    summary->set_argument_count(static_cast<uint32_t>(record.arguments.size()));
    summary->set_result_count(static_cast<uint32_t>(record.results.size()));
    summary->set_sequence(record.sequence);
    summary->set_created_ms(record.created_ms);
    summary->set_finished_ms(record.finished_ms);
  }
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* IntrospectionService::ListInstances(
    grpc::CallbackServerContext* call, const grpc2::IntrospectionListInstancesRequest* request,
    grpc2::IntrospectionListInstancesResponse* response) {
  absl::StatusOr<size_t> limit = CheckedLimit(*request, request->limit(), context_.limits);
  if (!limit.ok()) return FinishUnary(call, limit.status());
  // An instance is an unfinished Registry execution whose `instance` field names the agent type.
  storage::ExecutionFilter filter;
  filter.agent = storage::kRegistryAgent;
  filter.instance = request->agent();  // Empty: every agent type.
  auto registry = context_.store->executions().ListExecutions(filter, *limit);
  if (!registry.ok()) return FinishUnary(call, registry.status());
  for (const storage::ExecutionRecord& record : *registry) {
    grpc2::model::PerperInstance* instance = response->add_instances();
    instance->set_instance(record.execution);
    instance->set_agent(record.registered_agent_type());
    auto placement = context_.store->PlacementOfInstance(record.execution);
    if (!placement.ok()) return FinishUnary(call, placement.status());
    if (placement->has_value()) {
      grpc2::InstancePlacement* out = response->add_placements();
      out->set_instance(record.execution);
      out->set_slot((*placement)->slot);
      out->set_node((*placement)->node);
    }
  }
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* IntrospectionService::ListStreams(
    grpc::CallbackServerContext* call, const grpc2::IntrospectionListStreamsRequest* request,
    grpc2::IntrospectionListStreamsResponse* response) {
  absl::StatusOr<size_t> limit = CheckedLimit(*request, request->limit(), context_.limits);
  if (!limit.ok()) return FinishUnary(call, limit.status());
  auto streams = context_.store->streams().ListStreams(request->stream_prefix(), *limit);
  if (!streams.ok()) return FinishUnary(call, streams.status());
  for (const storage::StreamSummary& stream : *streams) {
    grpc2::StreamSummary* summary = response->add_streams();
    summary->set_stream(stream.record.stream);
    summary->set_ephemeral(stream.record.ephemeral);
    summary->set_stride(stream.record.stride);
    summary->set_item_count(stream.item_count);
    summary->set_written_count(stream.written_count);
    summary->set_has_items(stream.first_key.has_value());
    summary->set_first_key(stream.first_key.value_or(0));
    summary->set_last_key(stream.last_key.value_or(0));
    summary->set_completed(stream.record.completed);
    summary->set_error(stream.record.error.value_or(""));
    for (const storage::ListenerRecord& listener : stream.listeners) {
      grpc2::ListenerSummary* out = summary->add_listeners();
      out->set_name(listener.name);
      out->set_position(listener.position);
      out->set_transient(listener.transient);
    }
  }
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* IntrospectionService::ListReservations(
    grpc::CallbackServerContext* call, const grpc2::IntrospectionListReservationsRequest* request,
    grpc2::IntrospectionListReservationsResponse* response) {
  absl::StatusOr<size_t> limit = CheckedLimit(*request, request->limit(), context_.limits);
  if (!limit.ok()) return FinishUnary(call, limit.status());
  auto reservations = context_.store->executions().ListReservations(request->workgroup(), *limit);
  if (!reservations.ok()) return FinishUnary(call, reservations.status());
  for (const storage::ReservationRecord& reservation : *reservations) {
    grpc2::ReservationSummary* summary = response->add_reservations();
    summary->mutable_execution()->set_execution(reservation.execution);
    summary->set_workgroup(reservation.workgroup);
    summary->set_holder(reservation.holder);
  }
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* IntrospectionService::ListStates(
    grpc::CallbackServerContext* call, const grpc2::IntrospectionListStatesRequest* request,
    grpc2::IntrospectionListStatesResponse* response) {
  absl::StatusOr<size_t> limit = CheckedLimit(*request, request->limit(), context_.limits);
  if (!limit.ok()) return FinishUnary(call, limit.status());
  auto states = context_.store->states().ListStates(request->name_prefix(), *limit);
  if (!states.ok()) return FinishUnary(call, states.status());
  for (const storage::StateSummary& state : *states) {
    grpc2::StateSummary* summary = response->add_states();
    summary->set_name(state.name);
    summary->set_kind(state.kind == storage::StateSummary::Kind::kList
                          ? grpc2::StateSummary::LIST
                          : grpc2::StateSummary::DICTIONARY);
    summary->set_count(state.count);
  }
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* IntrospectionService::ListAgentListeners(
    grpc::CallbackServerContext* call, const grpc2::IntrospectionListAgentListenersRequest* request,
    grpc2::IntrospectionListAgentListenersResponse* response) {
  absl::StatusOr<size_t> limit = CheckedLimit(*request, request->limit(), context_.limits);
  if (!limit.ok()) return FinishUnary(call, limit.status());
  for (const AgentListeners::Count& count : context_.listeners->List(request->agent(), *limit)) {
    grpc2::AgentListenerSummary* summary = response->add_agents();
    summary->set_agent(count.agent);
    summary->set_listen_calls(count.listen_calls);
    summary->set_reservation_calls(count.reservation_calls);
  }
  return FinishUnary(call, absl::OkStatus());
}

}  // namespace perper::fabric
