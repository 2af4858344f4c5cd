// SPDX-License-Identifier: MIT
#include "perper/fabric/states_service.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

#include "perper/common/grpc_status.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {
namespace {

// Writes a prepared sequence of responses, one write in flight at a time, then finishes OK.
// A cancelled call finishes CANCELLED once no write is in flight. Deletes itself in OnDone.
//
// Thread safety: gRPC may run OnWriteDone and OnCancel concurrently; the state is guarded by mu_,
// and StartWrite/Finish are called after mu_ is released (Finish may run OnDone inline).
template <typename Response>
class SequenceWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  // Starts writing `responses`, or finishes at once with `status` when it is not OK.
  SequenceWriter(std::vector<Response> responses, const absl::Status& status)
      : responses_(std::move(responses)) {
    if (!status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        finished_ = true;
      }
      this->Finish(ToGrpcStatus(status));
      return;
    }
    Step(/*write_done=*/false, /*write_ok=*/true);
  }

  void OnWriteDone(bool ok) override { Step(/*write_done=*/true, ok); }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (writing_ || finished_) return;  // OnWriteDone will finish.
      finished_ = true;
    }
    this->Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override { delete this; }

 private:
  // Decides the next action under the lock, then performs it outside.
  void Step(bool write_done, bool write_ok) {
    const Response* next = nullptr;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (write_done) writing_ = false;
      if (finished_) return;
      if (cancelled_ || !write_ok) {
        finish = grpc::Status::CANCELLED;
      } else if (next_ == responses_.size()) {
        finish = grpc::Status::OK;
      } else {
        next = &responses_[next_++];
        writing_ = true;
      }
      if (finish.has_value()) finished_ = true;
    }
    if (finish.has_value()) {
      this->Finish(*finish);
    } else {
      this->StartWrite(next);
    }
  }

  absl::Mutex mu_;
  const std::vector<Response> responses_;  // Not modified after construction.
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

absl::Status CheckValue(const google::protobuf::Any& value, const FabricLimits& limits,
                        const std::string& what) {
  return CheckValueSize(value, limits, what);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FabricStatesDictionary

grpc::ServerUnaryReactor* StatesDictionaryService::Create(
    grpc::CallbackServerContext* call, const grpc2::StatesDictionaryCreateRequest* request,
    google::protobuf::Empty*) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(name, "dictionary.dictionary"); !s.ok()) {
    return FinishUnary(call, s);
  }
  return AnswerWrite(context_, call, [store = context_.store, name]() {
    return store->states().CreateDictionary(name);
  });
}

grpc::ServerUnaryReactor* StatesDictionaryService::Operate(
    grpc::CallbackServerContext* call, const grpc2::StatesDictionaryOperateRequest* request,
    grpc2::StatesDictionaryOperateResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(name, "dictionary.dictionary"); !s.ok()) {
    return FinishUnary(call, s);
  }
  storage::DictionaryOperation op;
  op.key = SerializeAny(request->key());
  if (IsNullValue(op.key)) {
    return FinishUnary(
        call, absl::InvalidArgumentError("key must not be null (dictionary " + Quoted(name) + ")"));
  }
  for (const auto& [value, field] :
       {std::pair{&request->key(), "key"}, std::pair{&request->new_value(), "new_value"},
        std::pair{&request->expected_existing_value(), "expected_existing_value"}}) {
    if (absl::Status s = CheckValue(*value, context_.limits,
                                    std::string(field) + " of dictionary " + Quoted(name));
        !s.ok()) {
      return FinishUnary(call, s);
    }
  }
  op.get_existing_value = request->get_existing_value();
  op.set_new_value = request->set_new_value();
  op.new_value = SerializeAny(request->new_value());
  op.compare_existing_value = request->compare_existing_value();
  op.expected_existing_value = SerializeAny(request->expected_existing_value());
  const bool writes = op.set_new_value;
  auto operate = [store = context_.store, name, op = std::move(op), response]() {
    absl::StatusOr<storage::DictionaryOutcome> outcome =
        store->states().OperateDictionary(name, op);
    if (!outcome.ok()) return outcome.status();
    response->set_operation_successful(outcome->operation_successful);
    if (outcome->previous_value.has_value()) {
      *response->mutable_previous_value() = ParseAny(*outcome->previous_value);
    }
    return absl::OkStatus();
  };
  // Only an operation that may write is a write; a read answers inline.
  if (!writes) return FinishUnary(call, operate());
  return AnswerWrite(context_, call, std::move(operate));
}

grpc::ServerWriteReactor<grpc2::StatesDictionaryListItemsResponse>*
StatesDictionaryService::ListItems(grpc::CallbackServerContext* call,
                                   const grpc2::StatesDictionaryListItemsRequest* request) {
  using Writer = SequenceWriter<grpc2::StatesDictionaryListItemsResponse>;
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return new Writer({}, s);
  }
  const std::string& name = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(name, "dictionary.dictionary"); !s.ok()) {
    return new Writer({}, s);
  }
  auto entries = context_.store->states().ListDictionary(name);
  if (!entries.ok()) return new Writer({}, entries.status());
  std::vector<grpc2::StatesDictionaryListItemsResponse> responses;
  for (const auto& [key, value] : *entries) {
    grpc2::StatesDictionaryListItemsResponse& response = responses.emplace_back();
    *response.mutable_key() = ParseAny(key);
    *response.mutable_value() = ParseAny(value);
  }
  return new Writer(std::move(responses), absl::OkStatus());
}

grpc::ServerUnaryReactor* StatesDictionaryService::CountItems(
    grpc::CallbackServerContext* call, const grpc2::StatesDictionaryCountItemsRequest* request,
    grpc2::StatesDictionaryCountItemsResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(name, "dictionary.dictionary"); !s.ok()) {
    return FinishUnary(call, s);
  }
  absl::StatusOr<uint64_t> count = context_.store->states().CountDictionary(name);
  if (!count.ok()) return FinishUnary(call, count.status());
  // The wire field is an int32 (upstream); larger counts saturate.
  response->set_count(static_cast<int32_t>(
      std::min<uint64_t>(*count, static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))));
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerWriteReactor<grpc2::StatesDictionaryQuerySQLResponse>*
StatesDictionaryService::QuerySQL(grpc::CallbackServerContext* call,
                                  const grpc2::StatesDictionaryQuerySQLRequest* request) {
  using Writer = SequenceWriter<grpc2::StatesDictionaryQuerySQLResponse>;
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return new Writer({}, s);
  }
  const std::string& name = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(name, "dictionary.dictionary"); !s.ok()) {
    return new Writer({}, s);
  }
  return new Writer(
      {}, absl::UnimplementedError("QuerySQL is not supported (dictionary " + Quoted(name) +
                                   "): values are stored as opaque Any bytes; use ListItems"));
}

grpc::ServerUnaryReactor* StatesDictionaryService::Delete(
    grpc::CallbackServerContext* call, const grpc2::StatesDictionaryDeleteRequest* request,
    google::protobuf::Empty*) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->dictionary().dictionary();
  if (absl::Status s = RequireNonEmpty(name, "dictionary.dictionary"); !s.ok()) {
    return FinishUnary(call, s);
  }
  return AnswerWrite(context_, call, [store = context_.store, name, request]() {
    return store->states().DeleteDictionary(name, request->keep_cache());
  });
}

// ---------------------------------------------------------------------------------------------
// FabricStatesList

grpc::ServerUnaryReactor* StatesListService::Create(grpc::CallbackServerContext* call,
                                                    const grpc2::StatesListCreateRequest* request,
                                                    google::protobuf::Empty*) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return FinishUnary(call, s);
  return AnswerWrite(context_, call,
                     [store = context_.store, name]() { return store->states().CreateList(name); });
}

grpc::ServerUnaryReactor* StatesListService::Operate(grpc::CallbackServerContext* call,
                                                     const grpc2::StatesListOperateRequest* request,
                                                     grpc2::StatesListOperateResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  using Location = storage::ListOperation::Location;
  using Request = grpc2::StatesListOperateRequest;
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return FinishUnary(call, s);
  storage::ListOperation op;
  // The oneof case is the location; the value of at_front / at_back is not looked at.
  switch (request->location_case()) {
    case Request::kAtFront:
      op.location = Location::kAtFront;
      break;
    case Request::kAtBack:
      op.location = Location::kAtBack;
      break;
    case Request::kIndex:
      op.location = Location::kIndex;
      op.position = request->index();
      break;
    case Request::kIndexBackwards:
      op.location = Location::kIndexBackwards;
      op.position = request->index_backwards();
      break;
    case Request::kRawIndex:
      op.location = Location::kRawIndex;
      op.position = request->raw_index();
      break;
    case Request::kRawIndexBackwards:
      op.location = Location::kRawIndexBackwards;
      op.position = request->raw_index_backwards();
      break;
    case Request::LOCATION_NOT_SET:
      return FinishUnary(call,
                         absl::InvalidArgumentError(
                             "location must be set (list " + Quoted(name) +
                             "): one of at_front, at_back, index, index_backwards, raw_index, "
                             "raw_index_backwards"));
  }
  op.values_count = request->values_count();
  op.get_values = request->get_values();
  op.remove_values = request->remove_values();
  op.insert_values.reserve(request->insert_values_size());
  for (int i = 0; i < request->insert_values_size(); ++i) {
    if (absl::Status s =
            CheckValue(request->insert_values(i), context_.limits,
                       "insert_values[" + std::to_string(i) + "] of list " + Quoted(name));
        !s.ok()) {
      return FinishUnary(call, s);
    }
    op.insert_values.push_back(SerializeAny(request->insert_values(i)));
  }
  const bool writes = op.remove_values || !op.insert_values.empty();
  auto operate = [store = context_.store, name, op = std::move(op), response]() {
    absl::StatusOr<std::vector<std::string>> values = store->states().OperateList(name, op);
    if (!values.ok()) return values.status();
    // Every collected value is returned, nulls included (as stored; an empty Any for the empty
    // null), so positions in the response match positions in the list.
    for (const std::string& value : *values) *response->add_values() = ParseAny(value);
    return absl::OkStatus();
  };
  // Only an operation that may write is a write; a read answers inline.
  if (!writes) return FinishUnary(call, operate());
  return AnswerWrite(context_, call, std::move(operate));
}

grpc::ServerUnaryReactor* StatesListService::Locate(grpc::CallbackServerContext* call,
                                                    const grpc2::StatesListLocateRequest* request,
                                                    grpc2::StatesListLocateResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return FinishUnary(call, s);
  if (absl::Status s =
          CheckValue(request->value(), context_.limits, "value of list " + Quoted(name));
      !s.ok()) {
    return FinishUnary(call, s);
  }
  absl::StatusOr<std::optional<storage::ListEntry>> located =
      context_.store->states().LocateInList(name, SerializeAny(request->value()));
  if (!located.ok()) return FinishUnary(call, located.status());
  if (const std::optional<storage::ListEntry>& entry = *located; entry.has_value()) {
    response->set_found(true);
    response->set_index(entry->index);
    response->set_raw_index(entry->raw_index);
  }
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerWriteReactor<grpc2::StatesListListItemsResponse>* StatesListService::ListItems(
    grpc::CallbackServerContext* call, const grpc2::StatesListListItemsRequest* request) {
  using Writer = SequenceWriter<grpc2::StatesListListItemsResponse>;
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return new Writer({}, s);
  }
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return new Writer({}, s);
  absl::StatusOr<std::vector<storage::ListEntry>> entries = context_.store->states().ListList(name);
  if (!entries.ok()) return new Writer({}, entries.status());
  std::vector<grpc2::StatesListListItemsResponse> responses;
  for (const storage::ListEntry& entry : *entries) {
    grpc2::StatesListListItemsResponse& response = responses.emplace_back();
    response.set_index(entry.index);
    response.set_raw_index(entry.raw_index);
    *response.mutable_value() = ParseAny(entry.value);
  }
  return new Writer(std::move(responses), absl::OkStatus());
}

grpc::ServerUnaryReactor* StatesListService::CountItems(
    grpc::CallbackServerContext* call, const grpc2::StatesListCountItemsRequest* request,
    grpc2::StatesListCountItemsResponse* response) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return FinishUnary(call, s);
  absl::StatusOr<uint64_t> count = context_.store->states().CountList(name);
  if (!count.ok()) return FinishUnary(call, count.status());
  response->set_count(
      static_cast<uint32_t>(std::min<uint64_t>(*count, std::numeric_limits<uint32_t>::max())));
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerWriteReactor<grpc2::StatesListQuerySQLResponse>* StatesListService::QuerySQL(
    grpc::CallbackServerContext* call, const grpc2::StatesListQuerySQLRequest* request) {
  using Writer = SequenceWriter<grpc2::StatesListQuerySQLResponse>;
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return new Writer({}, s);
  }
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return new Writer({}, s);
  return new Writer(
      {}, absl::UnimplementedError("QuerySQL is not supported (list " + Quoted(name) +
                                   "): values are stored as opaque Any bytes; use ListItems"));
}

grpc::ServerUnaryReactor* StatesListService::Delete(grpc::CallbackServerContext* call,
                                                    const grpc2::StatesListDeleteRequest* request,
                                                    google::protobuf::Empty*) {
  if (absl::Status s = CheckRequestStrings(*request, context_.limits); !s.ok()) {
    return FinishUnary(call, s);
  }
  const std::string& name = request->list().list();
  if (absl::Status s = RequireNonEmpty(name, "list.list"); !s.ok()) return FinishUnary(call, s);
  return AnswerWrite(context_, call, [store = context_.store, name, request]() {
    return store->states().DeleteList(name, request->keep_cache());
  });
}

}  // namespace perper::fabric
