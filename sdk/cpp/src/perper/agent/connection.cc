// SPDX-License-Identifier: MIT
#include "perper/agent/connection.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>

#include "perper/common/logging.h"

namespace perper::internal {

bool IsTransient(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return false;
    default:
      return true;
  }
}

absl::Duration Backoff::Next() {
  absl::Duration delay = next_;
  next_ = std::min(next_ * kFactor, kMax);
  thread_local std::mt19937 random(std::random_device{}());
  // Spread, so that processes that lost the Fabric together do not return in step.
  return delay * std::uniform_real_distribution<double>(1 - kJitter, 1 + kJitter)(random);
}

uint64_t CallRegistry::Add(std::shared_ptr<grpc::ClientContext> context) {
  absl::MutexLock lock(&mu_);
  uint64_t id = next_++;
  calls_[id] = std::move(context);
  return id;
}

void CallRegistry::Remove(uint64_t id) {
  absl::MutexLock lock(&mu_);
  calls_.erase(id);
}

void CallRegistry::CancelAll() {
  std::vector<std::shared_ptr<grpc::ClientContext>> calls;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, call] : calls_) {
      calls.push_back(call);
    }
  }
  for (auto& call : calls) {
    call->TryCancel();
  }
}

bool CallRegistry::AwaitEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(this, &CallRegistry::Empty), deadline);
}

size_t CallRegistry::size() {
  absl::MutexLock lock(&mu_);
  return calls_.size();
}

Connection::Connection(const Agent& agent, const RunOptions& options, asio::io_context& io)
    : agent_(agent), options_(options), io_(io) {}

void Connection::Connect(const std::vector<std::string>& addresses) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  for (const std::string& address : addresses) {
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->address = address;
    endpoint->channel =
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    endpoint->executions = grpc2::FabricExecutions::NewStub(endpoint->channel);
    endpoint->instances = grpc2::FabricInstances::NewStub(endpoint->channel);
    endpoint->dictionaries = grpc2::FabricStatesDictionary::NewStub(endpoint->channel);
    endpoint->lists = grpc2::FabricStatesList::NewStub(endpoint->channel);
    endpoint->streams = grpc2::FabricStreams::NewStub(endpoint->channel);
    endpoint->introspection = grpc2::FabricIntrospection::NewStub(endpoint->channel);
    endpoints_.push_back(std::move(endpoint));
  }
  // The processes of one machine start at different addresses, spreading them over the Fabric.
  endpoint_ =
      options_.fabric_endpoint_index.value_or(static_cast<size_t>(getpid())) % endpoints_.size();
}

std::shared_ptr<grpc::ClientContext> Connection::NewContext() {
  {
    absl::MutexLock lock(&contexts_->mu);
    ++contexts_->count;
  }
  return std::shared_ptr<grpc::ClientContext>(new grpc::ClientContext(),
                                              [contexts = contexts_](grpc::ClientContext* context) {
                                                delete context;
                                                absl::MutexLock lock(&contexts->mu);
                                                --contexts->count;
                                              });
}

void Connection::AwaitContextsFreed(absl::Duration timeout) {
  absl::MutexLock lock(&contexts_->mu);
  if (!contexts_->mu.AwaitWithTimeout(absl::Condition(contexts_.get(), &LiveContexts::None),
                                      timeout)) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] {} call contexts still held at exit", agent_.name(),
                    contexts_->count);
  }
}

void Connection::MoveFrom(size_t endpoint) {
  size_t next = (endpoint + 1) % endpoints_.size();
  if (next != endpoint && endpoint_.compare_exchange_strong(endpoint, next)) {
    PERPER_LOG_WARN(Logger::kSdk, "[agent={}] Fabric {} unavailable; moving to {}", agent_.name(),
                    endpoints_[endpoint]->address, endpoints_[next]->address);
  }
}

Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> Connection::InstancesCall(
    grpc2::ExecutionsCreateRequest request) {
  return Unary<grpc2::ExecutionsCreateRequest, grpc2::ExecutionsGetResultResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        instances()->async()->Call(context, req, resp, std::move(done));
      });
}

Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> Connection::InstancesCreateAndStart(
    grpc2::InstancesCreateAndStartRequest request) {
  return Unary<grpc2::InstancesCreateAndStartRequest, grpc2::ExecutionsGetResultResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        instances()->async()->CreateAndStart(context, req, resp, std::move(done));
      });
}

Task<absl::StatusOr<grpc2::ExecutionsGetResultResponse>> Connection::InstancesStopAndDelete(
    grpc2::InstancesStopAndDeleteRequest request) {
  return Unary<grpc2::InstancesStopAndDeleteRequest, grpc2::ExecutionsGetResultResponse>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        instances()->async()->StopAndDelete(context, req, resp, std::move(done));
      });
}

Task<absl::Status> Connection::ExecutionsComplete(grpc2::ExecutionsCompleteRequest request) {
  auto result = co_await Unary<grpc2::ExecutionsCompleteRequest, google::protobuf::Empty>(
      std::move(request), [this](auto* context, auto* req, auto* resp, auto done) {
        executions()->async()->Complete(context, req, resp, std::move(done));
      });
  co_return result.status();
}

void Connection::DeleteExecutionDetached(std::string id, bool kept_call) {
  grpc2::ExecutionsDeleteRequest request;
  request.mutable_execution()->set_execution(std::move(id));
  asio::co_spawn(
      io_,
      [](Connection* connection, grpc2::ExecutionsDeleteRequest request,
         bool kept_call) -> Task<void> {
        auto deleted =
            co_await connection->Unary<grpc2::ExecutionsDeleteRequest, google::protobuf::Empty>(
                request, [connection](auto* context, auto* req, auto* resp, auto done) {
                  connection->executions()->async()->Delete(context, req, resp, std::move(done));
                });
        if (deleted.ok() || absl::IsNotFound(deleted.status())) {
          co_return;
        }
        if (kept_call) {
          // Harmless: the call goes with its instance at the latest.
          PERPER_LOG_DEBUG(Logger::kSdk, "[agent={}] delete of kept call {} failed: {}",
                           connection->agent_.name(), request.execution().execution(),
                           deleted.status().ToString());
        } else {
          PERPER_LOG_WARN(Logger::kSdk, "[agent={}] delete of a cancelled call failed: {}",
                          connection->agent_.name(), deleted.status().ToString());
        }
      }(this, std::move(request), kept_call),
      asio::detached);
}

void Connection::DeleteKeptCalls(std::vector<std::string> ids) {
  for (std::string& id : ids) {
    DeleteExecutionDetached(std::move(id), /*kept_call=*/true);
  }
}

std::unique_ptr<Connection::UnservedWatch> Connection::WatchUnserved(std::string agent,
                                                                     std::string id) {
  if (options_.unserved_check_after <= std::chrono::milliseconds::zero()) return nullptr;
  // The timer lives on a strand of its own: the watch ends from the caller's thread.
  auto strand = asio::make_strand(io_);
  auto timer = std::make_shared<asio::steady_timer>(strand, options_.unserved_check_after);
  asio::co_spawn(
      strand,
      [](Connection* connection, std::shared_ptr<asio::steady_timer> timer, std::string agent,
         std::string id) -> Task<void> {
        auto [waited] =
            co_await timer->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (waited) co_return;  // Answered in time.
        grpc2::IntrospectionListAgentListenersRequest request;
        request.set_agent(agent);
        auto listeners = co_await connection->Unary<grpc2::IntrospectionListAgentListenersRequest,
                                                    grpc2::IntrospectionListAgentListenersResponse>(
            std::move(request), [connection](auto* context, auto* req, auto* resp, auto done) {
              connection->introspection()->async()->ListAgentListeners(context, req, resp,
                                                                       std::move(done));
            });
        if (!listeners.ok()) co_return;  // An older or unreachable Fabric: nothing to say.
        for (const auto& listened : listeners->agents()) {
          if (listened.agent() == agent &&
              (listened.listen_calls() > 0 || listened.reservation_calls() > 0)) {
            co_return;
          }
        }
        PERPER_LOG_WARN(Logger::kSdk,
                        "[agent={} exec={}] waiting for {}: no process serves agent {} (no listen "
                        "call for it on the Fabric at {}); the call waits until one does",
                        connection->agent_.name(), id, agent, agent, connection->Current().address);
      }(this, timer, std::move(agent), std::move(id)),
      asio::detached);
  auto watch = std::make_unique<UnservedWatch>();
  watch->end = [strand, timer] { asio::post(strand, [timer] { timer->cancel(); }); };
  return watch;
}

}  // namespace perper::internal
