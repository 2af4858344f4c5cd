// SPDX-License-Identifier: MIT
#include "perper/fabric/feed_reactor.h"

#include <atomic>

#include "perper/common/values.h"
#include "perper/fabric/execution_calls.h"
#include "perper/fabric/executions_service.h"

namespace perper::fabric {

std::string NewHolderId(std::string_view kind) {
  static const std::string process = RandomHex();
  static std::atomic<uint64_t> next{1};
  return std::string(kind) + "-" + process + "-" + std::to_string(next.fetch_add(1));
}

grpc2::ExecutionsListenResponse ToListenResponse(const storage::ExecutionRecord& record) {
  grpc2::ExecutionsListenResponse response;
  response.mutable_execution()->set_execution(record.execution);
  response.mutable_instance()->set_instance(record.instance);
  response.mutable_instance()->set_agent(record.agent);
  response.set_delegate(record.delegate);
  for (const std::string& argument : record.arguments)
    *response.add_arguments() = ParseAny(argument);
  return response;
}

absl::StatusOr<Completion> CompletionFromRequest(const grpc2::ExecutionsCompleteRequest& request,
                                                 const FabricLimits& limits,
                                                 std::string_view field) {
  Completion completion;
  completion.id = request.execution().execution();
  if (absl::Status s = RequireNonEmpty(completion.id, std::string(field) + "execution.execution");
      !s.ok()) {
    return s;
  }
  const std::string& id = completion.id;
  completion.results.reserve(request.results_size());
  for (int i = 0; i < request.results_size(); ++i) {
    if (absl::Status s = CheckValueSize(
            request.results(i), limits,
            std::string(field) + "results[" + std::to_string(i) + "] of execution " + id);
        !s.ok()) {
      return s;
    }
    completion.results.push_back(SerializeAny(request.results(i)));
  }
  // An absent error and an empty message both mean success (upstream clients send either).
  // Its length was checked with the request's strings (max_error_bytes).
  if (request.has_error() && !request.error().message().empty()) {
    completion.error = request.error().message();
  }
  return completion;
}

absl::Status ApplyCompletion(const ServiceContext& context, Completion completion) {
  absl::Status stream;
  absl::Status status = context.store->CompleteExecutionAndStream(
      completion.id, std::move(completion.results), std::move(completion.error), stream);
  if (status.ok()) ReportLinkedStream(completion.id, stream);
  return status;
}

}  // namespace perper::fabric
