// SPDX-License-Identifier: MIT
#include "perper/fabric/keda_service.h"

#include <functional>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

#include "perper/common/grpc_status.h"
#include "perper/common/logging.h"
#include "perper/common/text.h"
#include "perper/fabric/change_hub.h"
#include "perper/fabric/introspection_service.h"
#include "perper/fabric/unary.h"

namespace perper::fabric {

using externalscaler::GetMetricSpecResponse;
using externalscaler::GetMetricsRequest;
using externalscaler::GetMetricsResponse;
using externalscaler::IsActiveResponse;
using externalscaler::ScaledObjectRef;
using storage::Change;

// Runs callbacks at given times, on one thread of its own: the debounced re-reads of the
// StreamIsActive calls. A callback is told whether its time came (true) or the timers stopped
// first (false); either way it runs exactly once, so its owner can count on it to let go.
//
// Thread safety: At may be called from any thread; callbacks run on the timers' thread (or,
// with false, on the destroying thread), outside the lock.
class KedaRefreshTimers {
 public:
  KedaRefreshTimers() : thread_([this] { Loop(); }) {}
  ~KedaRefreshTimers() {
    std::multimap<absl::Time, std::function<void(bool)>> left;
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
      cv_.Signal();
    }
    thread_.join();
    {
      absl::MutexLock lock(&mu_);
      left.swap(due_);
    }
    for (auto& [at, run] : left) run(false);
  }

  void At(absl::Time at, std::function<void(bool)> run) {
    absl::MutexLock lock(&mu_);
    due_.emplace(at, std::move(run));
    cv_.Signal();
  }

 private:
  void Loop() {
    mu_.Lock();
    while (!stopped_) {
      if (due_.empty()) {
        cv_.Wait(&mu_);
        continue;
      }
      auto first = due_.begin();
      if (absl::Now() < first->first) {
        cv_.WaitWithDeadline(&mu_, first->first);
        continue;
      }
      std::function<void(bool)> run = std::move(first->second);
      due_.erase(first);
      mu_.Unlock();
      run(true);
      mu_.Lock();
    }
    mu_.Unlock();
  }

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::multimap<absl::Time, std::function<void(bool)>> due_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

namespace {

constexpr char kAgentKey[] = "agent";
constexpr char kTargetExecutionsKey[] = "targetExecutions";
constexpr char kTargetInstancesKey[] = "targetInstances";

// A target from the metadata: absent, or a positive integer.
absl::StatusOr<std::optional<int64_t>> ParseTarget(const ScaledObjectRef& ref,
                                                   const std::string& key, std::string_view field) {
  auto it = ref.scalermetadata().find(key);
  if (it == ref.scalermetadata().end()) return std::nullopt;
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value <= 0) {
    return absl::InvalidArgumentError(std::string(field) + "scalerMetadata." + key +
                                      " must be a positive integer, not \"" + ShortId(it->second) +
                                      "\"");
  }
  return value;
}

enum class Metric { kExecutions, kInstances };

// The metric's value, counting at most `limit`. Executions: the agent's unfinished ones.
// Instances: the unfinished Registry executions whose `instance` is the agent type (as
// FabricIntrospection.ListInstances). One listing of IDs, whatever the backend.
absl::StatusOr<int64_t> Count(storage::Store& store, const KedaQuery& query, Metric metric,
                              size_t limit) {
  storage::ExecutionFilter filter;
  if (metric == Metric::kExecutions) {
    filter.agent = query.agent;
  } else {
    filter.agent = storage::kRegistryAgent;
    filter.instance = query.agent;
  }
  absl::StatusOr<std::vector<std::string>> ids = store.executions().ListExecutionIds(filter, limit);
  if (!ids.ok()) return ids.status();
  return static_cast<int64_t>(ids->size());
}

// IsActive's answer: is there anything of the metric that judges activity?
absl::StatusOr<bool> ReadActive(storage::Store& store, const KedaQuery& query) {
  absl::StatusOr<int64_t> count = Count(
      store, query, query.ByInstances() ? Metric::kInstances : Metric::kExecutions, /*limit=*/1);
  if (!count.ok()) return count.status();
  return *count > 0;
}

// One StreamIsActive call: the state at once, then each change of it. Hints for the agent's
// executions (or for Registry records of its type, when activity is judged by instances)
// schedule one re-read kDebounce later; hints until then join it. A read is applied only if no
// later-started read was applied before it, so reads that overlap cannot send a stale state.
//
// Lifetime: gRPC holds the reactor until OnDone; a scheduled re-read holds it too (refs_), so
// whichever of the two ends last deletes it.
//
// Thread safety: state is guarded by mu_; StartWrite and Finish are called outside it.
class ActiveStream final : public grpc::ServerWriteReactor<IsActiveResponse> {
 public:
  ActiveStream(const ServiceContext& context, KedaRefreshTimers* timers, KedaQuery query)
      : context_(context),
        timers_(timers),
        query_(std::move(query)),
        slot_(context.open_calls->TryOpen()) {}

  // Finishes with `checked` when it is an error (the request's). REQUIRES: called once, before
  // gRPC gets the reactor.
  void Start(const absl::Status& checked) {
    if (!checked.ok()) {
      FinishOnce(ToGrpcStatus(checked));
      return;
    }
    if (!slot_) {
      FinishOnce(ToGrpcStatus(
          context_.open_calls->Refusal("StreamIsActive for agent " + ShortId(query_.agent))));
      return;
    }
    subscriber_ =
        std::make_shared<GuardedSubscriber>([this](const Change& change) { OnHint(change); });
    // Subscribed before the first read: a change the read missed arrives as a hint.
    subscription_ = context_.hub->Subscribe(
        Topic::kAgentExecutions, query_.ByInstances() ? storage::kRegistryAgent : query_.agent,
        subscriber_);
    PERPER_LOG_DEBUG(Logger::kFabric, "[agent={}] KEDA StreamIsActive opened (by {})", query_.agent,
                     query_.ByInstances() ? "instances" : "executions");
    Refresh();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    if (!ok) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "the client stream is broken"));
    Step();
  }

  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED,
                            "cancelled by the client, or its connection was lost"));
  }

  void OnDone() override {
    // Close first: after Close no hint runs, so none schedules a re-read any more.
    if (subscriber_ != nullptr) subscriber_->Close();
    subscription_.Reset();
    bool remove = false;
    {
      absl::MutexLock lock(&mu_);
      PERPER_LOG_DEBUG(
          Logger::kFabric, "[agent={}] KEDA StreamIsActive ended{}", query_.agent,
          end_.has_value() && !end_->ok() ? ": " + FromGrpcStatus(*end_).ToString() : "");
      done_ = true;
      remove = refs_ == 0;
    }
    if (remove) delete this;
  }

 private:
  // Ends the call with `status` (the first status given wins), once no write is in flight.
  void FinishOnce(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (end_.has_value()) return;
      end_ = std::move(status);
    }
    Step();
  }

  // Decides under the lock what comes next (the end, a write of a changed state, or nothing
  // while a write is in flight) and does it outside: gRPC may run OnDone inline in Finish.
  void Step() {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      if (end_.has_value()) {
        finished_ = true;
        finish = *end_;
      } else if (!current_.has_value() || current_ == sent_) {
        return;
      } else {
        sent_ = current_;
        response_.set_result(*current_);
        writing_ = true;
        PERPER_LOG_DEBUG(Logger::kFabric, "[agent={}] KEDA StreamIsActive sends {}", query_.agent,
                         *current_);
      }
    }
    if (finish.has_value()) {
      Finish(*std::move(finish));
    } else {
      StartWrite(&response_);
    }
  }

  void OnHint(const Change& change) {
    switch (change.kind) {
      case Change::Kind::kExecutionCreated:
      case Change::Kind::kExecutionCompleted:
      case Change::Kind::kExecutionDeleted:
        // The Registry topic carries every agent type's instances.
        if (query_.ByInstances() && change.instance != query_.agent) return;
        break;
      case Change::Kind::kResync:
        break;
      default:
        return;  // A reservation changes no count.
    }
    {
      absl::MutexLock lock(&mu_);
      if (end_.has_value() || scheduled_) return;
      scheduled_ = true;
      ++refs_;
    }
    timers_->At(absl::Now() + KedaService::kDebounce, [this](bool fired) {
      {
        absl::MutexLock lock(&mu_);
        scheduled_ = false;  // A hint from now on schedules another read.
      }
      if (fired) Refresh();
      bool remove = false;
      {
        absl::MutexLock lock(&mu_);
        remove = --refs_ == 0 && done_;
      }
      if (remove) delete this;
    });
  }

  // Reads the state and writes it if it changed.
  void Refresh() {
    uint64_t read = 0;
    {
      absl::MutexLock lock(&mu_);
      if (end_.has_value()) return;
      read = ++reads_started_;
    }
    absl::StatusOr<bool> active = ReadActive(*context_.store, query_);
    if (!active.ok()) {
      PERPER_LOG_WARN(Logger::kFabric, "[agent={}] KEDA StreamIsActive cannot read the store: {}",
                      query_.agent, active.status().ToString());
      // The call ends with the store's status; KEDA opens it again.
      FinishOnce(ToGrpcStatus(active.status()));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (end_.has_value() || read < read_applied_) return;
      read_applied_ = read;
      current_ = *active;
    }
    Step();
  }

  const ServiceContext context_;
  KedaRefreshTimers* const timers_;
  const KedaQuery query_;
  const OpenCalls::Slot slot_;
  std::shared_ptr<GuardedSubscriber> subscriber_;
  ChangeHub::Subscription subscription_;

  absl::Mutex mu_;
  std::optional<bool> current_ ABSL_GUARDED_BY(mu_);  // The latest state read.
  std::optional<bool> sent_ ABSL_GUARDED_BY(mu_);     // The last state written.
  IsActiveResponse response_;                         // Written only while no write is in flight.
  uint64_t reads_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t read_applied_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called.
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int refs_ ABSL_GUARDED_BY(mu_) = 0;                     // Scheduled re-reads.
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);  // Set: the call ends.
};

}  // namespace

absl::StatusOr<KedaQuery> KedaQuery::Parse(const ScaledObjectRef& ref, const FabricLimits& limits,
                                           std::string_view field) {
  KedaQuery query;
  const std::string agent_field = std::string(field) + "scalerMetadata." + kAgentKey;
  if (auto it = ref.scalermetadata().find(kAgentKey); it != ref.scalermetadata().end()) {
    if (it->second.empty()) return absl::InvalidArgumentError(agent_field + " must not be empty");
    query.agent = it->second;
  } else if (ref.name().empty()) {
    return absl::InvalidArgumentError(agent_field + " is missing and " + std::string(field) +
                                      "name, its default, is empty");
  } else {
    query.agent = ref.name();
  }
  if (query.agent.size() > limits.max_id_bytes) {
    return absl::InvalidArgumentError(
        agent_field + " is " + std::to_string(query.agent.size()) + " bytes, over the limit of " +
        std::to_string(limits.max_id_bytes) + " bytes (" + ShortId(query.agent) + ")");
  }
  absl::StatusOr<std::optional<int64_t>> executions = ParseTarget(ref, kTargetExecutionsKey, field);
  if (!executions.ok()) return executions.status();
  absl::StatusOr<std::optional<int64_t>> instances = ParseTarget(ref, kTargetInstancesKey, field);
  if (!instances.ok()) return instances.status();
  query.target_executions = *executions;
  query.target_instances = *instances;
  return query;
}

KedaService::KedaService(const ServiceContext& context)
    : context_(context), timers_(std::make_unique<KedaRefreshTimers>()) {}

KedaService::~KedaService() = default;

grpc::ServerUnaryReactor* KedaService::IsActive(grpc::CallbackServerContext* call,
                                                const ScaledObjectRef* request,
                                                IsActiveResponse* response) {
  absl::StatusOr<KedaQuery> query = KedaQuery::Parse(*request, context_.limits);
  if (!query.ok()) return FinishUnary(call, query.status());
  absl::StatusOr<bool> active = ReadActive(*context_.store, *query);
  if (!active.ok()) return FinishUnary(call, active.status());
  response->set_result(*active);
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerWriteReactor<IsActiveResponse>* KedaService::StreamIsActive(
    grpc::CallbackServerContext* call, const ScaledObjectRef* request) {
  (void)call;
  absl::StatusOr<KedaQuery> query = KedaQuery::Parse(*request, context_.limits);
  auto* stream = new ActiveStream(context_, timers_.get(), query.value_or(KedaQuery()));
  stream->Start(query.status());
  return stream;
}

grpc::ServerUnaryReactor* KedaService::GetMetricSpec(grpc::CallbackServerContext* call,
                                                     const ScaledObjectRef* request,
                                                     GetMetricSpecResponse* response) {
  absl::StatusOr<KedaQuery> query = KedaQuery::Parse(*request, context_.limits);
  if (!query.ok()) return FinishUnary(call, query.status());
  auto add = [&](const std::string& name, int64_t target) {
    externalscaler::MetricSpec* spec = response->add_metricspecs();
    spec->set_metricname(name);
    spec->set_targetsize(target);
    spec->set_targetsizefloat(static_cast<double>(target));
  };
  if (!query->target_executions.has_value() && !query->target_instances.has_value()) {
    add(query->ExecutionsMetric(), 1);  // One replica per waiting or running execution.
  }
  if (query->target_executions.has_value()) {
    add(query->ExecutionsMetric(), *query->target_executions);
  }
  if (query->target_instances.has_value()) add(query->InstancesMetric(), *query->target_instances);
  return FinishUnary(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* KedaService::GetMetrics(grpc::CallbackServerContext* call,
                                                  const GetMetricsRequest* request,
                                                  GetMetricsResponse* response) {
  absl::StatusOr<KedaQuery> query =
      KedaQuery::Parse(request->scaledobjectref(), context_.limits, "scaledObjectRef.");
  if (!query.ok()) return FinishUnary(call, query.status());
  const std::string& name = request->metricname();
  Metric metric = Metric::kExecutions;
  if (name == query->InstancesMetric()) {
    metric = Metric::kInstances;
  } else if (name != query->ExecutionsMetric()) {
    return FinishUnary(
        call, absl::InvalidArgumentError("metricName \"" + ShortId(name) +
                                         "\" is not a metric of agent " + ShortId(query->agent) +
                                         ": expected \"" + ShortId(query->ExecutionsMetric()) +
                                         "\" or \"" + ShortId(query->InstancesMetric()) + "\""));
  }
  absl::StatusOr<int64_t> count = Count(*context_.store, *query, metric, kMaxCount);
  if (!count.ok()) return FinishUnary(call, count.status());
  externalscaler::MetricValue* value = response->add_metricvalues();
  value->set_metricname(name);
  value->set_metricvalue(*count);
  value->set_metricvaluefloat(static_cast<double>(*count));
  PERPER_LOG_DEBUG(Logger::kFabric, "[agent={}] KEDA metric {} = {}", query->agent, name, *count);
  return FinishUnary(call, absl::OkStatus());
}

}  // namespace perper::fabric
