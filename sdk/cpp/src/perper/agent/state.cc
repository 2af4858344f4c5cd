// SPDX-License-Identifier: MIT
// Dictionaries: FabricStatesDictionary.Operate.
#include <utility>

#include "perper/agent/core.h"
#include "perper/agent/state.h"

namespace perper::internal {
namespace {

Task<absl::StatusOr<grpc2::StatesDictionaryOperateResponse>> DictionaryOperate(Core* core, 
    grpc2::StatesDictionaryOperateRequest request) {
  return core->Unary<grpc2::StatesDictionaryOperateRequest, grpc2::StatesDictionaryOperateResponse>(
      std::move(request), [core](auto* context, auto* req, auto* resp, auto done) {
        core->dictionaries()->async()->Operate(context, req, resp, std::move(done));
      });
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

// Turns a finished call's response into results or a status.
}  // namespace perper::internal
