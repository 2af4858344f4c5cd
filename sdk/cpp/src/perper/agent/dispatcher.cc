// SPDX-License-Identifier: MIT
#include "perper/agent/dispatcher.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "perper/agent/ambient.h"
#include "perper/agent/counters.h"
#include "perper/common/logging.h"
#include "perper/common/text.h"

namespace perper::internal {
namespace {

// The error message an execution is completed with: never empty, since an empty message means
// success on the wire.
std::string ErrorMessage(const absl::Status& status) {
  if (!status.message().empty()) {
    return std::string(status.message());
  }
  return absl::StatusCodeToString(status.code());
}

// The agent and delegate of the recorded Deploy execution (its instance is "<agent>-deploy").
constexpr std::string_view kDeployRecordAgent = "perper.Deploy";
constexpr std::string_view kDeployDelegate = "Deploy";

}  // namespace

Strand InstanceStrands::Of(const std::string& instance) {
  absl::MutexLock lock(&mu_);
  auto it = strands_.find(instance);
  if (it == strands_.end()) {
    it = strands_.emplace(instance, asio::make_strand(io_)).first;
  }
  return it->second;
}

size_t InstanceStrands::size() {
  absl::MutexLock lock(&mu_);
  return strands_.size();
}

void CancelExecution(const std::shared_ptr<ExecutionState>& execution) {
  asio::post(execution->strand, [execution] {
    if (!execution->handler_returned) {
      execution->cancelled = true;
      execution->cancel.emit(asio::cancellation_type::terminal);
    }
  });
}

Dispatcher::Dispatcher(Core* core, const Agent& agent, const RunOptions& options,
                       Connection& connection, ReservationCall& reservation, asio::io_context& io,
                       Strand strand)
    : core_(core),
      agent_(agent),
      options_(options),
      connection_(connection),
      reservation_(reservation),
      io_(io),
      strand_(std::move(strand)),
      strands_(io) {}

void Dispatcher::StartDeploy() {
  if (agent_.find("Deploy") == nullptr) {
    return;
  }
  std::string instance = agent_.name() + "-deploy";
  auto deploy = std::make_shared<ExecutionState>(strands_.Of(instance));
  deploy->id = instance + "-deploy";
  deploy->instance.set_instance(instance);
  deploy->instance.set_agent(agent_.name());
  deploy->delegate = std::string(kDeployDelegate);
  deploy->synthetic = true;
  deploy->recorded = options_.record_deploy;
  deploy->derive_ids = options_.record_deploy;
  reservation_.AddRunning(deploy);
  if (deploy->recorded) {
    asio::co_spawn(io_, RecordAndLaunchDeploy(this, deploy), asio::detached);
  } else {
    asio::post(strand_, [this, deploy] { Launch(deploy); });
  }
}

void Dispatcher::Handle(const ListenReactor* from, const grpc2::ExecutionsListenResponse& message) {
  const std::string& id = message.execution().execution();
  if (message.deleted()) {
    std::shared_ptr<ExecutionState> execution = reservation_.FindDelivered(id);
    if (execution == nullptr) {
      return;
    }
    PERPER_LOG_DEBUG(Logger::kSdk, "[agent={} exec={}] deleted: cancelling", agent_.name(), id);
    execution->deleted = true;
    CancelExecution(execution);
    return;
  }
  if (connection_.stopping() || !reservation_.Admit(from, id)) {
    return;
  }
  auto execution = std::make_shared<ExecutionState>(strands_.Of(message.instance().instance()));
  execution->id = id;
  execution->instance = message.instance();
  execution->delegate = message.delegate();
  execution->arguments.assign(message.arguments().begin(), message.arguments().end());
  execution->delivered_by = from;
  execution->derive_ids = true;
  reservation_.AddRunning(execution);
  Launch(std::move(execution));
}

void Dispatcher::Launch(std::shared_ptr<ExecutionState> execution) {
  auto slot = execution->cancel.slot();
  auto context = std::make_shared<Context>(core_, execution);
  AmbientExecutor<Strand> executor(execution->strand, context);
  asio::co_spawn(executor, Dispatch(this, execution, std::move(context)),
                 asio::bind_cancellation_slot(slot, [this, execution](std::exception_ptr error) {
                   if (error) {
                     // Dispatch catches every handler exception; this is an SDK failure.
                     PERPER_LOG_ERROR(Logger::kSdk, "[agent={} exec={}] dispatch failed",
                                      agent_.name(), execution->id);
                     reservation_.Finished(execution);
                   }
                 }));
}

Task<void> Dispatcher::Dispatch(Dispatcher* self, std::shared_ptr<ExecutionState> execution,
                                std::shared_ptr<Context> context) {
  // Cancellation shows as statuses and operation_aborted, never as exceptions (style §4.3).
  co_await asio::this_coro::throw_if_cancelled(false);
  absl::StatusOr<Values> result;
  absl::Status init = co_await self->EnsureInit(execution, *context);
  if (!init.ok()) {
    result = init;
  } else {
    const Agent::RawHandler* handler = self->agent_.find(execution->delegate);
    if (handler == nullptr) {
      if (execution->delegate == "Start" || execution->delegate == "Stop") {
        result = Values{};  // the default constructor and destructor do nothing
      } else {
        result = absl::UnimplementedError(
            absl::StrCat("agent ", self->agent_.name(), " has no delegate ", execution->delegate));
      }
    } else {
      try {
        result = co_await (*handler)(*context, execution->arguments);
      } catch (const std::exception& e) {
        result = absl::UnknownError(e.what());
      } catch (...) {
        result =
            absl::UnknownError("the handler threw an exception not derived from std::exception");
      }
    }
  }
  execution->handler_returned = true;
  context.reset();
  bool complete = !execution->deleted && !(self->connection_.stopping() && execution->cancelled);
  if (execution->synthetic && !result.ok()) {
    PERPER_LOG_ERROR(Logger::kSdk, "[agent={} exec={}] {} failed: {}", self->agent_.name(),
                     execution->id, execution->delegate, result.status().ToString());
  } else if (complete && !result.ok()) {
    // The caller gets the error; the log tells the agent's operator (a cancelled one is not a
    // failure).
    PERPER_LOG_WARN(Logger::kSdk, "[agent={} exec={}] {} failed: {}", self->agent_.name(),
                    execution->id, execution->delegate, result.status().ToString());
  }
  if (complete && (!execution->synthetic || execution->recorded)) {
    grpc2::ExecutionsCompleteRequest request;
    request.mutable_execution()->set_execution(execution->id);
    if (result.ok()) {
      for (auto& value : *result) {
        *request.add_results() = std::move(value);
      }
    } else {
      request.mutable_error()->set_message(
          BoundedText(ErrorMessage(result.status()), kMaxErrorTextBytes));
    }
    if (!execution->synthetic) {
      self->reservation_.CompleteExecution(execution, std::move(request));
      co_return;
    }
    // A recorded Deploy: not on the listen call, since Deploy holds none of its credits.
    size_t bytes = request.ByteSizeLong();
    self->reservation_.CompleteByUnary(std::make_shared<const Completion>(Completion{
        std::move(request), bytes, std::shared_ptr<KeptCalls>(execution, &execution->kept_calls)}));
  }
  self->reservation_.Finished(execution);
}

Task<void> Dispatcher::RecordAndLaunchDeploy(Dispatcher* self,
                                             std::shared_ptr<ExecutionState> deploy) {
  grpc2::ExecutionsCreateRequest create;
  create.mutable_execution()->set_execution(deploy->id);
  create.mutable_instance()->set_instance(deploy->instance.instance());
  create.mutable_instance()->set_agent(std::string(kDeployRecordAgent));
  create.set_delegate(deploy->delegate);
  model::PerperInstance recorded_instance = create.instance();
  // Create is idempotent: the record of an earlier run is left as it is.
  Connection& connection = self->connection_;
  auto created = co_await connection.Unary<grpc2::ExecutionsCreateRequest, google::protobuf::Empty>(
      std::move(create), [&connection](auto* context, auto* req, auto* resp, auto done) {
        connection.executions()->async()->Create(context, req, resp, std::move(done));
      });
  absl::StatusOr<bool> finished = false;
  if (created.ok()) {
    finished = co_await self->ExecutionFinished(recorded_instance, deploy->delegate, deploy->id);
  } else {
    finished = created.status();
  }
  if (!finished.ok()) {
    PERPER_LOG_ERROR(Logger::kSdk, "[agent={} exec={}] cannot record Deploy: {}",
                     self->agent_.name(), deploy->id, finished.status().ToString());
    self->reservation_.Finished(deploy);
    co_return;
  }
  if (*finished) {
    PERPER_LOG_INFO(Logger::kSdk,
                    "[agent={}] Deploy already ran on this Fabric (execution {}); `perper up "
                    "--reset` runs it anew",
                    self->agent_.name(), deploy->id);
    ProcessCounters().deploys_skipped.fetch_add(1, std::memory_order_relaxed);
    self->reservation_.Finished(deploy);
    co_return;
  }
  asio::post(self->strand_, [self, deploy] { self->Launch(deploy); });
}

Task<absl::StatusOr<bool>> Dispatcher::ExecutionFinished(const model::PerperInstance& instance,
                                                         std::string delegate, std::string id) {
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_agent(instance.agent());
  request.set_instance(instance.instance());
  request.set_delegate(std::move(delegate));
  request.set_include_finished(true);
  auto listing = co_await connection_.Unary<grpc2::IntrospectionListExecutionsRequest,
                                            grpc2::IntrospectionListExecutionsResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        connection_.introspection()->async()->ListExecutions(context, req, resp, std::move(done));
      });
  if (!listing.ok()) {
    co_return listing.status();
  }
  for (const auto& summary : listing->executions()) {
    if (summary.execution().execution() == id) {
      co_return summary.finished();
    }
  }
  co_return false;
}

Task<absl::Status> Dispatcher::EnsureInit(const std::shared_ptr<ExecutionState>& execution,
                                          Context& context) {
  const Agent::RawHandler* handler = agent_.find("Init");
  if (handler == nullptr || execution->synthetic) {
    co_return absl::OkStatus();
  }
  std::shared_ptr<InstanceInit> init;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = inits_[execution->instance.instance()];
    if (slot == nullptr) {
      slot = std::make_shared<InstanceInit>(execution->strand);
    }
    init = slot;
  }
  // Only this instance's strand touches `init`, so these checks and updates do not race.
  while (init->running) {
    co_await init->finished.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (execution->cancelled) {
      co_return absl::CancelledError("cancelled while waiting for Init");
    }
  }
  if (init->done) {
    co_return absl::OkStatus();
  }
  init->running = true;
  init->finished.expires_at(asio::steady_timer::time_point::max());
  absl::StatusOr<Values> result;
  try {
    result = co_await (*handler)(context, {});
  } catch (const std::exception& e) {
    result = absl::UnknownError(e.what());
  }
  init->running = false;
  init->done = result.ok();
  init->finished.cancel();
  if (!result.ok()) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={} instance={}] Init failed: {}", agent_.name(),
                    execution->instance.instance(), result.status().ToString());
    co_return absl::Status(result.status().code(),
                           absl::StrCat("Init of instance ", execution->instance.instance(),
                                        " failed: ", result.status().message()));
  }
  co_return absl::OkStatus();
}

}  // namespace perper::internal
