// SPDX-License-Identifier: MIT
#include "perper/fabric/instances_service.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"

#include "perper/common/logging.h"
#include "perper/common/status_macros.h"
#include "perper/common/text.h"
#include "perper/common/values.h"
#include "perper/fabric/execution_calls.h"
#include "perper/fabric/executions_service.h"
#include "perper/fabric/unary.h"
#include "perper/grpc2/model.pb.h"

namespace perper::fabric {

using grpc2::ExecutionsGetResultResponse;
using storage::ExecutionRecord;

namespace {

using storage::kRegistryAgent;
constexpr char kRunDelegate[] = "Run";

std::string ChildrenList(const std::string& instance) { return instance + "-children"; }

std::string InstanceValue(const std::string& instance, const std::string& agent) {
  grpc2::model::PerperInstance model;
  model.set_instance(instance);
  model.set_agent(agent);
  google::protobuf::Any any;
  any.PackFrom(model);
  return SerializeAny(any);
}

absl::Status CheckInstance(const grpc2::model::PerperInstance& instance, bool present,
                           const std::string& field) {
  if (!present) return absl::InvalidArgumentError(field + " must be set");
  if (instance.instance().empty()) {
    return absl::InvalidArgumentError(field + ".instance must not be empty");
  }
  if (instance.agent().empty()) {
    return absl::InvalidArgumentError(field + ".agent must not be empty (instance " +
                                      instance.instance() + ")");
  }
  return absl::OkStatus();
}

// A unary reactor whose answer comes from an asynchronous flow; cancelling the call (or the
// call ending) cancels the flow.
// Where a flow's cancellation goes. Shared, so that a flow started on the write pool after its
// reactor was already cancelled and destroyed still learns of it (Set then cancels at once).
class CancelSlot {
 public:
  void Set(std::function<void()> cancel) {
    {
      absl::MutexLock lock(&mu_);
      if (!fired_) {
        cancel_ = std::move(cancel);
        return;
      }
    }
    cancel();
  }
  void Fire() {
    std::function<void()> cancel;
    {
      absl::MutexLock lock(&mu_);
      fired_ = true;
      cancel = std::move(cancel_);
      cancel_ = nullptr;
    }
    if (cancel) cancel();
  }

 private:
  absl::Mutex mu_;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> cancel_ ABSL_GUARDED_BY(mu_);
};

class FlowReactor final : public grpc::ServerUnaryReactor {
 public:
  FlowReactor(const ServiceContext& context, ExecutionsGetResultResponse* response)
      : answer_(std::make_shared<Answer<ExecutionsGetResultResponse>>(this, response)),
        cancel_(std::make_shared<CancelSlot>()),
        slot_(context.open_calls->TryOpen()) {}

  // An open-call slot for this call, or the status refusing it.
  absl::Status CheckSlot(const ServiceContext& context, const std::string& what) const {
    return slot_ ? absl::OkStatus() : context.open_calls->Refusal(what);
  }

  const std::shared_ptr<Answer<ExecutionsGetResultResponse>>& answer() { return answer_; }
  const std::shared_ptr<CancelSlot>& cancel_slot() { return cancel_; }

  void SetCancel(std::function<void()> cancel) { cancel_->Set(std::move(cancel)); }

  void OnCancel() override {
    cancel_->Fire();
    answer_->Finish(absl::CancelledError("cancelled"));
  }
  void OnDone() override {
    cancel_->Fire();  // A no-op for a flow that has finished.
    delete this;
  }

 private:
  std::shared_ptr<Answer<ExecutionsGetResultResponse>> answer_;
  std::shared_ptr<CancelSlot> cancel_;
  const OpenCalls::Slot slot_;
};

// The instances in the children lists below `root` (not `root` itself), each once. The lists
// are read one by one, so a list changing meanwhile may be seen before or after its change.
absl::StatusOr<absl::flat_hash_set<std::string>> Descendants(const ServiceContext& context,
                                                             const std::string& root) {
  absl::flat_hash_set<std::string> seen;
  std::vector<std::string> pending = {root};
  while (!pending.empty()) {
    std::string instance = std::move(pending.back());
    pending.pop_back();
    PERPER_ASSIGN_OR_RETURN(std::vector<storage::ListEntry> children,
                            context.store->states().ListList(ChildrenList(instance)));
    for (const storage::ListEntry& entry : children) {
      grpc2::model::PerperInstance child;
      if (ParseAny(entry.value).UnpackTo(&child) && !child.instance().empty() &&
          child.instance() != root && seen.insert(child.instance()).second) {
        pending.push_back(child.instance());
      }
    }
  }
  return seen;
}

// INVALID_ARGUMENT when making `instance` a child of `parent` would close a cycle: an instance
// that is its own ancestor could never finish StopAndDelete's cascade.
absl::Status CheckNoCycle(const ServiceContext& context, const std::string& instance,
                          const std::string& parent) {
  if (instance == parent) {
    return absl::InvalidArgumentError("instance " + ShortId(instance) +
                                      " cannot be its own parent");
  }
  PERPER_ASSIGN_OR_RETURN(absl::flat_hash_set<std::string> descendants,
                          Descendants(context, instance));
  if (descendants.contains(parent)) {
    return absl::InvalidArgumentError("parent " + ShortId(parent) +
                                      " is a descendant of instance " + ShortId(instance) +
                                      ": the parent link would form a cycle");
  }
  return absl::OkStatus();
}

// Deletes what instance `instance` owns beyond its children and its Registry execution (the
// retention rule of docs/protocol/instances.md): every execution of the instance, finished or
// not, the stream of each (a producer's stream has its execution's ID), and the instance's own
// state, the dictionary and the list "{instance}-". Failures are logged: a cascade goes on.
void DeleteOwnedState(const ServiceContext& context, const std::string& instance) {
  storage::ExecutionStore& executions = context.store->executions();
  storage::ExecutionFilter filter;
  filter.any_agent = true;
  filter.instance = instance;
  filter.include_finished = true;
  constexpr size_t kBatch = 1000;
  for (;;) {
    absl::StatusOr<std::vector<std::string>> ids = executions.ListExecutionIds(filter, kBatch);
    if (!ids.ok()) {
      PERPER_LOG_WARN(Logger::kFabric, "[instance={}] executions not listed: {}", instance,
                      ids.status().ToString());
      break;
    }
    size_t deleted = 0;
    for (const std::string& id : *ids) {
      // A Registry record names its agent type in `instance`: one whose type is spelled like
      // this instance's ID is another instance, not something this one owns.
      bool registry = false;
      absl::StatusOr<bool> found = executions.ReadExecution(
          id, [&](const ExecutionRecord& record) { registry = record.is_registry(); });
      if (!found.ok() || registry) continue;
      if (absl::StatusOr<bool> gone = context.store->streams().DeleteStream(id); !gone.ok()) {
        PERPER_LOG_WARN(Logger::kFabric, "[instance={}] stream {} not deleted: {}", instance,
                        ShortId(id), gone.status().ToString());
      }
      if (absl::StatusOr<bool> gone = executions.DeleteExecution(id); !gone.ok()) {
        PERPER_LOG_WARN(Logger::kFabric, "[instance={}] execution {} not deleted: {}", instance,
                        ShortId(id), gone.status().ToString());
        continue;
      }
      ++deleted;
    }
    if (ids->size() < kBatch || deleted == 0) break;
  }
  const std::string state = instance + "-";
  if (absl::Status s = context.store->states().DeleteDictionary(state, false); !s.ok()) {
    PERPER_LOG_WARN(Logger::kFabric, "[instance={}] dictionary not deleted: {}", instance,
                    s.ToString());
  }
  if (absl::Status s = context.store->states().DeleteList(state, false); !s.ok()) {
    PERPER_LOG_WARN(Logger::kFabric, "[instance={}] list not deleted: {}", instance, s.ToString());
  }
}

// Stops and deletes one instance: Stop (unless skipped), then every child (recursively, one
// after another, the same way), then what the instance owns (DeleteOwnedState), its children
// list and its Registry execution. Reports Stop's result (an empty one when Stop is skipped).
//
// One cascade visits each instance once (`visited`, shared by the ops of one StopAndDelete),
// so children lists that form a cycle despite CheckNoCycle (two concurrent creations can each
// pass it) still end.
//
// Thread safety: Start and Cancel from any thread; steps run on whichever thread completed the
// previous one.
class StopAndDeleteOp : public std::enable_shared_from_this<StopAndDeleteOp> {
 public:
  using Done = std::function<void(absl::StatusOr<ExecutionsGetResultResponse>)>;

  // The instances a cascade has reached. Thread-safe.
  class Visited {
   public:
    // Whether `instance` was not visited before (and is now).
    bool Visit(const std::string& instance) {
      absl::MutexLock lock(&mu_);
      return instances_.insert(instance).second;
    }

   private:
    absl::Mutex mu_;
    absl::flat_hash_set<std::string> instances_ ABSL_GUARDED_BY(mu_);
  };

  StopAndDeleteOp(const ServiceContext& context, std::string instance, std::string agent,
                  bool skip_stop, std::shared_ptr<Visited> visited, Done done)
      : context_(context),
        instance_(std::move(instance)),
        agent_(std::move(agent)),
        skip_stop_(skip_stop),
        visited_(std::move(visited)),
        done_(std::move(done)) {}

  // `agent` empty: any agent type. `visited` null: a new cascade, rooted here. With
  // `skip_stop`, no Stop is called (here or in the children): the whole cascade runs before
  // this returns.
  static std::shared_ptr<StopAndDeleteOp> Start(const ServiceContext& context, std::string instance,
                                                std::string agent,
                                                std::vector<std::string> stop_parameters,
                                                bool skip_stop, std::shared_ptr<Visited> visited,
                                                Done done) {
    if (visited == nullptr) {
      visited = std::make_shared<Visited>();
      visited->Visit(instance);
    }
    auto op = std::make_shared<StopAndDeleteOp>(context, std::move(instance), std::move(agent),
                                                skip_stop, std::move(visited), std::move(done));
    op->Begin(std::move(stop_parameters));
    return op;
  }

  void Cancel() {
    std::shared_ptr<ExecutionCall> call;
    std::shared_ptr<StopAndDeleteOp> child;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return;
      cancelled_ = true;
      call = std::move(call_);
      child = std::move(child_);
    }
    if (call != nullptr) call->Cancel();
    if (child != nullptr) child->Cancel();
    Report(absl::CancelledError("stopping instance " + instance_ + " was cancelled"));
  }

 private:
  void Begin(std::vector<std::string> stop_parameters) {
    absl::StatusOr<ExecutionRecord> registry = context_.store->executions().GetExecution(instance_);
    bool registered = registry.ok() && registry->is_registry();
    if (!registered) {
      // Without Stop, what an unregistered instance owns can still go (the "{agent}-deploy"
      // instance a recorded Deploy runs in has children, executions and state, but no record).
      if (skip_stop_ && OwnsAnything()) {
        OnStopped(ExecutionsGetResultResponse());
        return;
      }
      Report(absl::NotFoundError("instance " + instance_ + " not found"));
      return;
    }
    if (!agent_.empty() && registry->registered_agent_type() != agent_) {
      Report(absl::InvalidArgumentError("instance " + instance_ + " is of agent " +
                                        registry->registered_agent_type() + ", not " + agent_));
      return;
    }
    if (skip_stop_) {
      OnStopped(ExecutionsGetResultResponse());
      return;
    }
    ExecutionRecord stop;
    stop.execution = "Stop-" + RandomHex();
    stop.agent = registry->registered_agent_type();
    stop.instance = instance_;
    stop.delegate = "Stop";
    stop.arguments = std::move(stop_parameters);
    std::shared_ptr<StopAndDeleteOp> self = shared_from_this();
    auto call = ExecutionCall::Start(context_, std::move(stop),
                                     [self](absl::StatusOr<ExecutionsGetResultResponse> result) {
                                       self->OnStopped(std::move(result));
                                     });
    absl::MutexLock lock(&mu_);
    if (!stopped_ && !cancelled_) call_ = std::move(call);
  }

  void OnStopped(absl::StatusOr<ExecutionsGetResultResponse> result) {
    if (!result.ok()) {
      Report(result.status());
      return;
    }
    absl::StatusOr<std::vector<storage::ListEntry>> entries =
        context_.store->states().ListList(ChildrenList(instance_));
    if (!entries.ok()) {
      Report(entries.status());
      return;
    }
    std::vector<grpc2::model::PerperInstance> children;
    for (const storage::ListEntry& entry : *entries) {
      grpc2::model::PerperInstance child;
      if (ParseAny(entry.value).UnpackTo(&child) && !child.instance().empty()) {
        children.push_back(std::move(child));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
      call_ = nullptr;
      stop_result_ = std::move(result).value();
      children_ = std::move(children);
    }
    NextChild();
  }

  void NextChild() {
    grpc2::model::PerperInstance child;
    size_t generation = 0;  // 0: no child left; fall through to the last step.
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return;
      child_ = nullptr;
      while (next_child_ < children_.size()) {
        child = children_[next_child_++];
        if (visited_->Visit(child.instance())) {
          generation = next_child_;
          break;
        }
      }
    }
    if (generation == 0) {
      DeleteInstance();
      return;
    }
    std::shared_ptr<StopAndDeleteOp> self = shared_from_this();
    // A child already gone (NOT_FOUND) or failing to stop does not stop the cascade.
    auto op = StopAndDeleteOp::Start(
        context_, child.instance(), child.agent(), {}, skip_stop_, visited_,
        [self](absl::StatusOr<ExecutionsGetResultResponse>) { self->NextChild(); });
    absl::MutexLock lock(&mu_);
    if (next_child_ == generation && !cancelled_) child_ = std::move(op);
  }

  // Whether the instance has children or executions. A store that cannot answer counts as
  // "owns something", so a reset deletes rather than leaves data behind.
  bool OwnsAnything() {
    storage::StateStore& states = context_.store->states();
    absl::StatusOr<uint64_t> children = states.CountList(ChildrenList(instance_));
    if (!children.ok() || *children > 0) return true;
    storage::ExecutionFilter filter;
    filter.any_agent = true;
    filter.instance = instance_;
    filter.include_finished = true;
    absl::StatusOr<std::vector<std::string>> ids =
        context_.store->executions().ListExecutionIds(filter, 1);
    return !ids.ok() || !ids->empty();
  }

  void DeleteInstance() {
    DeleteOwnedState(context_, instance_);
    absl::Status status = context_.store->states().DeleteList(ChildrenList(instance_), false);
    if (!status.ok() && !absl::IsNotFound(status)) {
      PERPER_LOG_WARN(Logger::kFabric, "[instance={}] children list not deleted: {}", instance_,
                      status.ToString());
    }
    absl::StatusOr<bool> deleted = context_.store->executions().DeleteExecution(instance_);
    ExecutionsGetResultResponse result;
    {
      absl::MutexLock lock(&mu_);
      result = stop_result_;
    }
    Report(deleted.ok() ? absl::StatusOr<ExecutionsGetResultResponse>(std::move(result))
                        : absl::StatusOr<ExecutionsGetResultResponse>(deleted.status()));
  }

  void Report(absl::StatusOr<ExecutionsGetResultResponse> result) {
    Done done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(done_);
      done_ = nullptr;
    }
    if (done) done(std::move(result));
  }

  const ServiceContext context_;
  const std::string instance_;
  const std::string agent_;
  const bool skip_stop_;
  const std::shared_ptr<Visited> visited_;
  absl::Mutex mu_;
  Done done_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<ExecutionCall> call_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<StopAndDeleteOp> child_ ABSL_GUARDED_BY(mu_);
  ExecutionsGetResultResponse stop_result_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc2::model::PerperInstance> children_ ABSL_GUARDED_BY(mu_);
  size_t next_child_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::Status CheckArguments(const google::protobuf::RepeatedPtrField<google::protobuf::Any>& values,
                            const FabricLimits& limits, const std::string& what,
                            std::vector<std::string>* out) {
  for (int i = 0; i < values.size(); ++i) {
    if (absl::Status s = CheckValueSize(values[i], limits, what + "[" + std::to_string(i) + "]");
        !s.ok()) {
      return s;
    }
    out->push_back(SerializeAny(values[i]));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* InstancesService::CreateAndStart(
    grpc::CallbackServerContext* /*context*/, const grpc2::InstancesCreateAndStartRequest* request,
    ExecutionsGetResultResponse* response) {
  auto* reactor = new FlowReactor(context_, response);
  auto answer = reactor->answer();
  absl::Status checked = reactor->CheckSlot(context_, "CreateAndStart");
  if (checked.ok()) checked = CheckRequestStrings(*request, context_.limits);
  if (checked.ok()) {
    checked = CheckInstance(request->instance(), request->has_instance(), "instance");
  }
  if (!checked.ok()) {
    answer->Finish(checked);
    return reactor;
  }
  const std::string& id = request->instance().instance();
  if (request->has_parent()) {
    absl::Status s = CheckInstance(request->parent(), true, "parent");
    if (s.ok()) s = CheckNoCycle(context_, id, request->parent().instance());
    if (!s.ok()) {
      answer->Finish(s);
      return reactor;
    }
  }
  const std::string& agent = request->instance().agent();
  ExecutionRecord start;
  if (absl::Status s =
          CheckArguments(request->arguments(), context_.limits, "arguments", &start.arguments);
      !s.ok()) {
    answer->Finish(s);
    return reactor;
  }

  ExecutionRecord registry;
  registry.execution = id;
  registry.agent = kRegistryAgent;
  registry.instance = agent;  // The agent type, as kRegistryAgent says.
  registry.delegate = kRunDelegate;
  if (absl::StatusOr<bool> created =
          context_.store->executions().CreateExecution(std::move(registry));
      !created.ok()) {
    answer->Finish(created.status());
    return reactor;
  }
  if (request->has_parent()) {
    std::string list = ChildrenList(request->parent().instance());
    std::string value = InstanceValue(id, agent);
    // A retried CreateAndStart must not list the child twice.
    absl::StatusOr<std::optional<storage::ListEntry>> listed =
        context_.store->states().LocateInList(list, value);
    if (!listed.ok()) {
      answer->Finish(listed.status());
      return reactor;
    }
    if (!listed->has_value()) {
      storage::ListOperation append;
      append.location = storage::ListOperation::Location::kAtBack;
      append.insert_values.push_back(std::move(value));
      if (auto appended = context_.store->states().OperateList(list, append); !appended.ok()) {
        answer->Finish(appended.status());
        return reactor;
      }
    }
  }
  start.execution = "Start-" + RandomHex();
  start.agent = agent;
  start.instance = id;
  start.delegate = "Start";
  auto call = ExecutionCall::Start(context_, std::move(start),
                                   [answer](absl::StatusOr<ExecutionsGetResultResponse> result) {
                                     answer->Finish(std::move(result));
                                   });
  reactor->SetCancel([call] { call->Cancel(); });
  return reactor;
}

grpc::ServerUnaryReactor* InstancesService::Call(grpc::CallbackServerContext* /*context*/,
                                                 const grpc2::ExecutionsCreateRequest* request,
                                                 ExecutionsGetResultResponse* response) {
  auto* reactor = new FlowReactor(context_, response);
  auto answer = reactor->answer();
  absl::Status checked = reactor->CheckSlot(context_, "Call");
  if (checked.ok()) checked = CheckRequestStrings(*request, context_.limits);
  if (!checked.ok()) {
    answer->Finish(checked);
    return reactor;
  }
  absl::StatusOr<ExecutionRecord> record = RecordFromCreateRequest(*request, context_.limits);
  if (!record.ok()) {
    answer->Finish(record.status());
    return reactor;
  }
  PERPER_LOG_DEBUG(Logger::kFabric, "[exec={}] call: {}.{} on instance {}", record->execution,
                   record->agent, record->delegate, record->instance);
  auto start = [context = context_, answer, slot = reactor->cancel_slot(),
                record = std::move(record).value()]() mutable {
    std::string id = record.execution;
    auto call = ExecutionCall::Start(
        context, std::move(record),
        [answer, id](absl::StatusOr<ExecutionsGetResultResponse> result) {
          PERPER_LOG_DEBUG(Logger::kFabric, "[exec={}] call answered: {}", id,
                           result.ok() ? DescribeOutcome(*result) : result.status().ToString());
          answer->Finish(std::move(result));
        });
    slot->Set([call] { call->Cancel(); });
  };
  // The creation is a write: it runs where writes run.
  RunWrite(context_, std::move(start));
  return reactor;
}

grpc::ServerUnaryReactor* InstancesService::StopAndDelete(
    grpc::CallbackServerContext* /*context*/, const grpc2::InstancesStopAndDeleteRequest* request,
    ExecutionsGetResultResponse* response) {
  auto* reactor = new FlowReactor(context_, response);
  auto answer = reactor->answer();
  absl::Status checked = reactor->CheckSlot(context_, "StopAndDelete");
  if (checked.ok()) checked = CheckRequestStrings(*request, context_.limits);
  if (checked.ok()) {
    checked = CheckInstance(request->instance(), request->has_instance(), "instance");
  }
  if (!checked.ok()) {
    answer->Finish(checked);
    return reactor;
  }
  std::vector<std::string> parameters;
  if (absl::Status s = CheckArguments(request->stop_parameters(), context_.limits,
                                      "stop_parameters", &parameters);
      !s.ok()) {
    answer->Finish(s);
    return reactor;
  }
  auto start = [context = context_, answer, slot = reactor->cancel_slot(),
                instance = request->instance().instance(), agent = request->instance().agent(),
                parameters = std::move(parameters), skip_stop = request->skip_stop()]() mutable {
    auto op = StopAndDeleteOp::Start(
        context, std::move(instance), std::move(agent), std::move(parameters), skip_stop,
        /*visited=*/nullptr, [answer](absl::StatusOr<ExecutionsGetResultResponse> result) {
          answer->Finish(std::move(result));
        });
    slot->Set([op] { op->Cancel(); });
  };
  // It starts with store writes (the Stop execution, or without Stop the whole cascade): they
  // run where writes run.
  RunWrite(context_, std::move(start));
  return reactor;
}

}  // namespace perper::fabric
