// SPDX-License-Identifier: MIT
// State: FabricStatesDictionary and FabricStatesList.
#include "perper/agent/state.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "perper/agent/core.h"
#include "perper/common/grpc_status.h"

namespace perper::internal {
namespace {

// The start function of Connection::Unary for `service`'s method `Method` (needs `core`).
#define PERPER_STATES_CALL(service, Method)                                             \
  [core](auto* context, auto* req, auto* resp, auto done) {                             \
    core->connection().service()->async()->Method(context, req, resp, std::move(done)); \
  }

// Reads a server-streaming call to its end and yields every response. Keeps itself alive until
// OnDone; the result travels through a shared Oneshot. Thread-safe.
template <typename Request, typename Response>
class CollectReactor final : public grpc::ClientReadReactor<Response> {
 public:
  using Result = absl::StatusOr<std::vector<Response>>;

  // `start(context, request, reactor)` starts the call through a stub's async() interface.
  template <typename StartFn>
  static Task<Result> Run(Core* core, Request request, StartFn start) {
    auto reactor = new CollectReactor(core);
    auto done = reactor->done_;
    reactor->request_ = std::move(request);
    start(reactor->context_.get(), &reactor->request_, reactor);
    reactor->StartRead(&reactor->response_);
    reactor->StartCall();
    co_return co_await done->Wait();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;
    }
    responses_.push_back(std::move(response_));
    response_.Clear();
    this->StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    core_->connection().RemoveCall(call_id_);
    done_->Set(status.ok() ? Result(std::move(responses_)) : Result(FromGrpcStatus(status)));
    delete this;
  }

 private:
  explicit CollectReactor(Core* core)
      : core_(core),
        context_(core->connection().NewContext()),
        call_id_(core->connection().AddCall(context_)) {}

  Core* const core_;
  const std::shared_ptr<grpc::ClientContext> context_;
  const uint64_t call_id_;
  std::shared_ptr<Oneshot<Result>> done_ = std::make_shared<Oneshot<Result>>();
  Request request_;
  Response response_;  // only touched by the read chain
  std::vector<Response> responses_;
};

Task<absl::StatusOr<grpc2::StatesDictionaryOperateResponse>> DictionaryOperate(
    Core* core, grpc2::StatesDictionaryOperateRequest request) {
  return core->connection()
      .Unary<grpc2::StatesDictionaryOperateRequest, grpc2::StatesDictionaryOperateResponse>(
          std::move(request), PERPER_STATES_CALL(dictionaries, Operate));
}

grpc2::StatesDictionaryOperateRequest OperateRequest(std::string dictionary,
                                                     google::protobuf::Any key) {
  grpc2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(std::move(dictionary));
  *request.mutable_key() = std::move(key);
  return request;
}

}  // namespace

Task<absl::StatusOr<google::protobuf::Any>> DictionaryGet(Core* core, std::string dictionary,
                                                          google::protobuf::Any key) {
  auto request = OperateRequest(std::move(dictionary), std::move(key));
  request.set_get_existing_value(true);
  auto response = co_await DictionaryOperate(core, std::move(request));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return std::move(*response->mutable_previous_value());
}

Task<absl::Status> DictionarySet(Core* core, std::string dictionary, google::protobuf::Any key,
                                 google::protobuf::Any value) {
  auto request = OperateRequest(std::move(dictionary), std::move(key));
  request.set_set_new_value(true);
  *request.mutable_new_value() = std::move(value);
  auto response = co_await DictionaryOperate(core, std::move(request));
  co_return response.status();
}

Task<absl::StatusOr<bool>> DictionaryRemove(Core* core, std::string dictionary,
                                            google::protobuf::Any key) {
  auto request = OperateRequest(std::move(dictionary), std::move(key));
  request.set_set_new_value(true);
  auto response = co_await DictionaryOperate(core, std::move(request));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return response->operation_successful();
}

Task<absl::StatusOr<bool>> DictionaryCompareAndSet(Core* core, std::string dictionary,
                                                   google::protobuf::Any key,
                                                   google::protobuf::Any expected,
                                                   google::protobuf::Any value) {
  auto request = OperateRequest(std::move(dictionary), std::move(key));
  request.set_set_new_value(true);
  *request.mutable_new_value() = std::move(value);
  request.set_compare_existing_value(true);
  *request.mutable_expected_existing_value() = std::move(expected);
  auto response = co_await DictionaryOperate(core, std::move(request));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return response->operation_successful();
}

Task<absl::StatusOr<bool>> DictionaryContains(Core* core, std::string dictionary,
                                              google::protobuf::Any key) {
  auto response =
      co_await DictionaryOperate(core, OperateRequest(std::move(dictionary), std::move(key)));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return response->operation_successful();
}

Task<absl::StatusOr<int64_t>> DictionaryCount(Core* core, std::string dictionary) {
  grpc2::StatesDictionaryCountItemsRequest request;
  request.mutable_dictionary()->set_dictionary(std::move(dictionary));
  auto response = co_await core->connection()
                      .Unary<grpc2::StatesDictionaryCountItemsRequest,
                             grpc2::StatesDictionaryCountItemsResponse>(
                          std::move(request), PERPER_STATES_CALL(dictionaries, CountItems));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return int64_t{response->count()};
}

Task<absl::StatusOr<std::vector<std::pair<google::protobuf::Any, google::protobuf::Any>>>>
DictionaryItems(Core* core, std::string dictionary) {
  grpc2::StatesDictionaryListItemsRequest request;
  request.mutable_dictionary()->set_dictionary(std::move(dictionary));
  using Reactor = CollectReactor<grpc2::StatesDictionaryListItemsRequest,
                                 grpc2::StatesDictionaryListItemsResponse>;
  auto responses = co_await Reactor::Run(
      core, std::move(request), [core](auto* context, auto* req, auto* reactor) {
        core->connection().dictionaries()->async()->ListItems(context, req, reactor);
      });
  if (!responses.ok()) {
    co_return responses.status();
  }
  std::vector<std::pair<google::protobuf::Any, google::protobuf::Any>> items;
  items.reserve(responses->size());
  for (auto& response : *responses) {
    items.emplace_back(std::move(*response.mutable_key()), std::move(*response.mutable_value()));
  }
  co_return items;
}

Task<absl::Status> DictionaryClear(Core* core, std::string dictionary) {
  grpc2::StatesDictionaryDeleteRequest request;
  request.mutable_dictionary()->set_dictionary(std::move(dictionary));
  request.set_keep_cache(true);
  auto response = co_await core->connection()
                      .Unary<grpc2::StatesDictionaryDeleteRequest, google::protobuf::Empty>(
                          std::move(request), PERPER_STATES_CALL(dictionaries, Delete));
  co_return response.status();
}

Task<absl::StatusOr<std::vector<google::protobuf::Any>>> ListOperate(
    Core* core, grpc2::StatesListOperateRequest request) {
  auto response = co_await core->connection()
                      .Unary<grpc2::StatesListOperateRequest, grpc2::StatesListOperateResponse>(
                          std::move(request), PERPER_STATES_CALL(lists, Operate));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return std::vector<google::protobuf::Any>(response->values().begin(),
                                               response->values().end());
}

Task<absl::StatusOr<int64_t>> ListCount(Core* core, std::string list) {
  grpc2::StatesListCountItemsRequest request;
  request.mutable_list()->set_list(std::move(list));
  auto response =
      co_await core->connection()
          .Unary<grpc2::StatesListCountItemsRequest, grpc2::StatesListCountItemsResponse>(
              std::move(request), PERPER_STATES_CALL(lists, CountItems));
  if (!response.ok()) {
    co_return response.status();
  }
  co_return int64_t{response->count()};
}

Task<absl::StatusOr<std::vector<google::protobuf::Any>>> ListItems(Core* core, std::string list) {
  grpc2::StatesListListItemsRequest request;
  request.mutable_list()->set_list(std::move(list));
  using Reactor =
      CollectReactor<grpc2::StatesListListItemsRequest, grpc2::StatesListListItemsResponse>;
  auto responses = co_await Reactor::Run(
      core, std::move(request), [core](auto* context, auto* req, auto* reactor) {
        core->connection().lists()->async()->ListItems(context, req, reactor);
      });
  if (!responses.ok()) {
    co_return responses.status();
  }
  std::vector<google::protobuf::Any> items;
  items.reserve(responses->size());
  for (auto& response : *responses) {
    items.push_back(std::move(*response.mutable_value()));
  }
  co_return items;
}

Task<absl::StatusOr<std::optional<int64_t>>> ListLocate(Core* core, std::string list,
                                                        google::protobuf::Any value) {
  grpc2::StatesListLocateRequest request;
  request.mutable_list()->set_list(std::move(list));
  *request.mutable_value() = std::move(value);
  auto response = co_await core->connection()
                      .Unary<grpc2::StatesListLocateRequest, grpc2::StatesListLocateResponse>(
                          std::move(request), PERPER_STATES_CALL(lists, Locate));
  if (!response.ok()) {
    co_return response.status();
  }
  if (!response->found()) {
    co_return std::optional<int64_t>();
  }
  co_return std::optional<int64_t>(response->index());
}

Task<absl::Status> ListClear(Core* core, std::string list) {
  grpc2::StatesListDeleteRequest request;
  request.mutable_list()->set_list(std::move(list));
  request.set_keep_cache(true);
  auto response =
      co_await core->connection().Unary<grpc2::StatesListDeleteRequest, google::protobuf::Empty>(
          std::move(request), PERPER_STATES_CALL(lists, Delete));
  co_return response.status();
}

Task<absl::Status> ListSet(Core* core, std::string list, int64_t index,
                           google::protobuf::Any value) {
  auto count = co_await ListCount(core, list);
  if (!count.ok()) {
    co_return count.status();
  }
  if (index < 0 || index >= *count) {
    co_return absl::OutOfRangeError(
        absl::StrCat("index ", index, " is outside list \"", list, "\" (", *count, " items)"));
  }
  grpc2::StatesListOperateRequest request;
  request.mutable_list()->set_list(std::move(list));
  request.set_index(index);
  request.set_values_count(1);
  request.set_remove_values(true);
  *request.add_insert_values() = std::move(value);
  auto response = co_await ListOperate(core, std::move(request));
  co_return response.status();
}

#undef PERPER_STATES_CALL

}  // namespace perper::internal
