// SPDX-License-Identifier: MIT
// Calls to delegates and instances: CallRaw, Context, Instance.
#include <utility>

#include "absl/strings/str_cat.h"

#include "perper/agent/context.h"
#include "perper/agent/core.h"

namespace perper {
namespace internal {

absl::StatusOr<Values> ReadResponse(const std::string& what,
                                    absl::StatusOr<grpc2::ExecutionsGetResultResponse> response) {
  if (!response.ok()) {
    return response.status();
  }
  if (!response->error().message().empty()) {
    return absl::UnknownError(absl::StrCat(what, " failed: ", response->error().message()));
  }
  if (response->deleted()) {
    return absl::AbortedError(absl::StrCat(what, " was deleted before it completed"));
  }
  return Values(response->results().begin(), response->results().end());
}

namespace {

// Creates the call's execution (an identical one, finished or not, is left as it is) and waits
// for its result, keeping it in `kept` (the calling execution's): a re-run of the calling
// execution, which makes the same ID, gets the stored result instead of running the callee
// again. It is deleted when the calling execution completes, once RunOptions::max_kept_calls
// newer calls of that execution have finished, or with its instance. A cancelled caller deletes
// it, as FabricInstances.Call does.
Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> KeptCall(
    Core* core, grpc2::ExecutionsCreateRequest request, std::shared_ptr<KeptCalls> kept) {
  Connection& connection = core->connection();
  std::string id = request.execution().execution();
  auto created = co_await connection.Unary<grpc2::ExecutionsCreateRequest, google::protobuf::Empty>(
      std::move(request), [&connection](auto* context, auto* req, auto* resp, auto done) {
        connection.executions()->async()->Create(context, req, resp, std::move(done));
      });
  if (!created.ok()) {
    if (absl::IsCancelled(created.status())) {
      connection.DeleteExecutionDetached(id);
    }
    co_return created.status();
  }
  grpc2::ExecutionsGetResultRequest get;
  get.mutable_execution()->set_execution(id);
  auto result =
      co_await connection
          .Unary<grpc2::ExecutionsGetResultRequest, grpc2::ExecutionsGetResultResponse>(
              std::move(get), [&connection](auto* context, auto* req, auto* resp, auto done) {
                connection.executions()->async()->GetResult(context, req, resp, std::move(done));
              });
  if (!result.ok() && absl::IsCancelled(result.status())) {
    connection.DeleteExecutionDetached(id);
  }
  if (result.ok() && !result->deleted()) {
    connection.DeleteKeptCalls(kept->Add(id, connection.max_kept_calls()));
  }
  co_return result;
}

}  // namespace

Task<absl::StatusOr<Values>> CallRaw(Core* core, model::PerperInstance instance,
                                     std::string delegate, Values arguments) {
  grpc2::ExecutionsCreateRequest request;
  bool derived = false;
  std::string id = NewId(delegate, &derived);
  request.mutable_execution()->set_execution(id);
  *request.mutable_instance() = instance;
  request.set_delegate(delegate);
  for (auto& argument : arguments) {
    *request.add_arguments() = std::move(argument);
  }
  absl::StatusOr<grpc2::ExecutionsGetResultResponse> response;
  std::unique_ptr<Connection::UnservedWatch> watch =
      core->connection().WatchUnserved(instance.agent(), id);
  // (A derived ID means the ambient context is a real execution's, whose kept calls these are.)
  if (std::shared_ptr<KeptCalls> kept = derived ? CurrentKeptCalls() : nullptr; kept != nullptr) {
    response = co_await KeptCall(core, std::move(request), std::move(kept));
  } else {
    response = co_await core->connection().InstancesCall(std::move(request));
  }
  watch.reset();
  co_return ReadResponse(absl::StrCat(instance.agent(), ".", delegate, " (execution ", id, ")"),
                         std::move(response));
}

}  // namespace internal

Context::Context(internal::Core* core, std::shared_ptr<internal::ExecutionState> execution)
    : core_(core), execution_(std::move(execution)) {}
Context::~Context() = default;

const model::PerperInstance& Context::instance() const { return execution_->instance; }
const std::string& Context::execution() const { return execution_->id; }
const std::string& Context::delegate() const { return execution_->delegate; }
bool Context::cancelled() const { return execution_->cancelled || core_->stopping(); }

Instance Context::agent(std::string agent, std::string instance_id) const {
  model::PerperInstance instance;
  instance.set_agent(std::move(agent));
  instance.set_instance(std::move(instance_id));
  return Instance(core_, std::move(instance));
}

void Context::stop_process(int exit_code) const { core_->RequestStop(exit_code); }

Task<absl::StatusOr<std::pair<Instance, internal::Values>>> Context::StartAgentRaw(
    std::string agent_type, internal::Values args) const {
  internal::Core* core = core_;
  grpc2::InstancesCreateAndStartRequest request;
  request.mutable_instance()->set_instance(internal::NewId("Run"));
  request.mutable_instance()->set_agent(agent_type);
  // A recorded Deploy is the parent of what it starts, so `perper up --reset` finds it.
  if (!execution_->synthetic || execution_->recorded) {
    *request.mutable_parent() = execution_->instance;
  }
  for (auto& arg : args) {
    *request.add_arguments() = std::move(arg);
  }
  model::PerperInstance created = request.instance();
  // Start runs in a process of the agent: with none, the warning says why this waits.
  std::unique_ptr<internal::Connection::UnservedWatch> watch =
      core->connection().WatchUnserved(created.agent(), created.instance());
  auto response = co_await core->connection().InstancesCreateAndStart(std::move(request));
  watch.reset();
  auto results = internal::ReadResponse(
      absl::StrCat("Start of ", created.agent(), " ", created.instance()), std::move(response));
  if (!results.ok()) {
    co_return results.status();
  }
  co_return std::pair<Instance, internal::Values>(Instance(core, std::move(created)),
                                                  *std::move(results));
}

Task<absl::Status> Instance::destroy() const { return internal::DestroyInstance(core_, model_); }

namespace internal {

Task<absl::Status> DestroyInstance(Core* core, model::PerperInstance instance) {
  grpc2::InstancesStopAndDeleteRequest request;
  *request.mutable_instance() = instance;
  // Stop runs in a process of the agent: with none, the warning says why this waits.
  std::unique_ptr<Connection::UnservedWatch> watch =
      core->connection().WatchUnserved(instance.agent(), instance.instance());
  auto response = co_await core->connection().InstancesStopAndDelete(std::move(request));
  watch.reset();
  co_return ReadResponse(absl::StrCat("Stop of ", instance.agent(), " ", instance.instance()),
                         std::move(response))
      .status();
}

}  // namespace internal

}  // namespace perper
