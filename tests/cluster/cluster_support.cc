// SPDX-License-Identifier: MIT
#include "tests/cluster/cluster_support.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <google/protobuf/wrappers.pb.h>

#include "perper/storage/redis/redis_connection.h"
#include "tests/support/fabric_fixture.h"

namespace perper::testing {

using storage::redis::RedisConnection;
using storage::redis::RedisReply;

FabricsOnCluster::FabricsOnCluster(FabricsOnClusterOptions options)
    : options_(options), cluster_(options.masters, options.replicas_per_master) {}

FabricsOnCluster::~FabricsOnCluster() {
  channels_.clear();
  fabrics_.clear();  // before the cluster, so no Fabric sees Redis go away
}

::testing::AssertionResult FabricsOnCluster::Start() {
  absl::Status started = cluster_.Start();
  if (!started.ok()) return ::testing::AssertionFailure() << started;
  std::vector<std::string> addresses;
  for (auto& node : cluster_.nodes()) addresses.push_back(node->address());
  std::vector<std::string> args = {"--storage",   "redis", "--redis", absl::StrJoin(addresses, ","),
                                   "--log-level", "warn"};
  if (options_.lease_ms > 0) {
    args.insert(args.end(), {"--redis-lease-ms", std::to_string(options_.lease_ms)});
  }
  if (options_.wait_replicas > 0) {
    args.insert(args.end(), {"--redis-wait-replicas", std::to_string(options_.wait_replicas)});
  }
  for (int i = 0; i < options_.fabrics; ++i) {
    fabrics_.push_back(std::make_unique<FabricProcess>(args));
    if (!fabrics_.back()->Start()) {
      return ::testing::AssertionFailure() << "Fabric " << i << " did not start:\n"
                                           << fabrics_.back()->Log();
    }
    channels_.push_back(fabrics_.back()->NewChannel());
  }
  return ::testing::AssertionSuccess();
}

std::string FabricsOnCluster::Logs() const {
  std::string logs;
  for (size_t i = 0; i < fabrics_.size(); ++i) {
    absl::StrAppend(&logs, "--- Fabric ", i, " (", fabrics_[i]->address(), "):\n",
                    fabrics_[i]->Log(), "\n");
  }
  return logs;
}

std::unique_ptr<grpc::ClientContext> DeadlineContext(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat(static_cast<int>(status.error_code()), ": ", status.error_message());
}

void Ledger::Created(const std::string& id) {
  absl::MutexLock lock(&mu_);
  entries_[id].created = true;
}

void Ledger::Delivered(const std::string& id, int fabric) {
  auto now = Clock::now();
  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[id];
  ++entry.deliveries;
  entry.fabrics.push_back(fabric);
  entry.delivered_at.push_back(now);
}

void Ledger::CompleteAnswered(const std::string& id, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[id];
  if (status.ok()) {
    ++entry.ok_completions;
  } else if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    ++entry.finished_answers;
  } else {
    errors_.push_back(absl::StrCat("Complete ", id, ": ", Describe(status)));
  }
}

void Ledger::Error(const std::string& what, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  errors_.push_back(absl::StrCat(what, ": ", Describe(status)));
}

std::map<std::string, Ledger::Entry> Ledger::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return entries_;
}

size_t Ledger::CreatedAndCompleted() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, entry] : entries_) n += entry.created && entry.ok_completions > 0;
  return n;
}

size_t Ledger::CreatedCount() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, entry] : entries_) n += entry.created;
  return n;
}

std::vector<std::string> Ledger::Errors() const {
  absl::MutexLock lock(&mu_);
  return errors_;
}

Worker::Worker(int fabric, std::shared_ptr<grpc::Channel> channel, std::string agent,
               uint64_t credits, Ledger* ledger)
    : fabric_(fabric),
      stub_(grpc2::FabricExecutions::NewStub(channel)),
      agent_(std::move(agent)),
      credits_(credits),
      ledger_(ledger) {
  // Longer than any test; Stop() cancels.
  context_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  thread_ = std::thread([this] { Run(); });
}

Worker::~Worker() { Stop(); }

void Worker::Stop() {
  stopping_.store(true);
  context_.TryCancel();
  if (thread_.joinable()) thread_.join();
}

bool Worker::WaitStarted(std::chrono::milliseconds timeout) {
  return WaitFor([this] { return started_.load() || ended_.load(); }, timeout) && started_.load();
}

std::vector<std::string> Worker::Held() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

grpc::Status Worker::end_status() const {
  absl::MutexLock lock(&mu_);
  return end_status_;
}

void Worker::Run() {
  auto stream = stub_->ListenAndReserve(&context_);
  grpc2::ExecutionsListenAndReserveRequest first;
  first.mutable_filter()->mutable_instance_filter()->set_agent(agent_);
  first.set_reserve_next(credits_);
  stream->Write(first);
  grpc2::ExecutionsListenResponse response;
  while (stream->Read(&response)) {
    if (response.start_of_stream()) {
      started_.store(true);
      continue;
    }
    if (response.deleted()) continue;
    const std::string& id = response.execution().execution();
    ledger_->Delivered(id, fabric_);
    if (hold_.load()) {
      absl::MutexLock lock(&mu_);
      held_.push_back(id);
      continue;
    }
    grpc2::ExecutionsCompleteRequest complete;
    complete.mutable_execution()->set_execution(id);
    int64_t argument = response.arguments_size() > 0 ? IntOf(response.arguments(0)) : 0;
    *complete.add_results() = Int64Value(argument * 2);
    google::protobuf::Empty empty;
    grpc::Status completed =
        stub_->Complete(DeadlineContext(std::chrono::seconds(30)).get(), complete, &empty);
    if (stopping_.load() && !completed.ok()) break;  // cancelled with the call
    ledger_->CompleteAnswered(id, completed);
    grpc2::ExecutionsListenAndReserveRequest more;
    more.set_reserve_next(1);
    stream->Write(more);
  }
  grpc::Status status = stream->Finish();
  absl::MutexLock lock(&mu_);
  end_status_ = status;
  ended_.store(true);
}

::testing::AssertionResult StartWorkers(FabricsOnCluster& setup, const std::string& agent,
                                        int per_process, uint64_t credits, Ledger* ledger,
                                        std::vector<std::unique_ptr<Worker>>* workers) {
  for (int process = 0; process < setup.fabric_count(); ++process) {
    for (int i = 0; i < per_process; ++i) {
      workers->push_back(
          std::make_unique<Worker>(process, setup.channel(process), agent, credits, ledger));
    }
  }
  for (auto& worker : *workers) {
    if (!worker->WaitStarted(std::chrono::seconds(10))) {
      return ::testing::AssertionFailure()
             << "a worker's call did not start: " << Describe(worker->end_status());
    }
  }
  return ::testing::AssertionSuccess();
}

constexpr char kExecutionPrefix[] = "job-";

std::string ExecutionId(int n) { return absl::StrCat(kExecutionPrefix, n); }

int ExecutionNumber(const std::string& id) {
  int n = -1;
  if (!absl::SimpleAtoi(id.substr(sizeof(kExecutionPrefix) - 1), &n)) return -1;
  return n;
}

::testing::AssertionResult ResultsAreDoubles(grpc2::FabricExecutions::Stub& stub,
                                             const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    grpc2::ExecutionsGetResultResponse result;
    grpc::Status status = GetResult(stub, id, &result);
    if (!status.ok()) return ::testing::AssertionFailure() << id << ": " << Describe(status);
    if (result.results_size() != 1) {
      return ::testing::AssertionFailure() << id << ": " << result.ShortDebugString();
    }
    google::protobuf::Int64Value value;
    if (!result.results(0).UnpackTo(&value) || value.value() != 2 * ExecutionNumber(id)) {
      return ::testing::AssertionFailure() << id << ": " << result.ShortDebugString();
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> CreatedIds(const Ledger& ledger) {
  std::vector<std::string> ids;
  for (const auto& [id, entry] : ledger.Snapshot()) {
    if (entry.created) ids.push_back(id);
  }
  return ids;
}

grpc::Status CreateNumbered(grpc2::FabricExecutions::Stub& stub, const std::string& agent, int n) {
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution(ExecutionId(n));
  request.mutable_instance()->set_agent(agent);
  if (n % 2 == 0) request.mutable_instance()->set_instance(absl::StrCat("instance-", n % 10));
  request.set_delegate("Double");
  *request.add_arguments() = Int64Value(n);
  google::protobuf::Empty empty;
  return stub.Create(DeadlineContext(std::chrono::seconds(30)).get(), request, &empty);
}

grpc::Status GetResult(grpc2::FabricExecutions::Stub& stub, const std::string& id,
                       grpc2::ExecutionsGetResultResponse* response,
                       std::chrono::milliseconds timeout) {
  grpc2::ExecutionsGetResultRequest request;
  request.mutable_execution()->set_execution(id);
  return stub.GetResult(DeadlineContext(timeout).get(), request, response);
}

grpc::Status DictionarySet(grpc2::FabricStatesDictionary::Stub& stub, const std::string& dictionary,
                           const std::string& key, int64_t value,
                           std::chrono::milliseconds timeout) {
  grpc2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  *request.mutable_key() = StringValue(key);
  request.set_set_new_value(true);
  *request.mutable_new_value() = Int64Value(value);
  grpc2::StatesDictionaryOperateResponse response;
  return stub.Operate(DeadlineContext(timeout).get(), request, &response);
}

absl::StatusOr<std::optional<int64_t>> DictionaryGet(grpc2::FabricStatesDictionary::Stub& stub,
                                                     const std::string& dictionary,
                                                     const std::string& key) {
  grpc2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  *request.mutable_key() = StringValue(key);
  request.set_get_existing_value(true);
  grpc2::StatesDictionaryOperateResponse response;
  grpc::Status status =
      stub.Operate(DeadlineContext(std::chrono::seconds(10)).get(), request, &response);
  if (!status.ok()) return absl::UnknownError(Describe(status));
  if (!response.has_previous_value()) return std::optional<int64_t>();
  google::protobuf::Int64Value value;
  if (!response.previous_value().UnpackTo(&value)) {
    return absl::DataLossError(absl::StrCat("not an Int64Value under ", key));
  }
  return std::optional<int64_t>(value.value());
}

namespace {

absl::StatusOr<RedisReply> Ask(int port, const std::vector<std::string_view>& argv) {
  auto connection = RedisConnection::Connect("127.0.0.1", port);
  if (!connection.ok()) return connection.status();
  return (*connection)->Run(argv);
}

// CLUSTER SLOTS from the first running node that answers.
absl::StatusOr<RedisReply> ClusterSlots(RedisCluster& cluster) {
  absl::Status last = absl::UnavailableError("no running node");
  for (auto& node : cluster.nodes()) {
    if (!node->running()) continue;
    auto slots = Ask(node->port(), {"CLUSTER", "SLOTS"});
    if (slots.ok() && !slots->is_error()) return slots;
    last = slots.ok() ? absl::UnavailableError(slots->str) : slots.status();
  }
  return last;
}

}  // namespace

std::vector<int> MasterPorts(RedisCluster& cluster) {
  std::vector<int> ports;
  for (auto& node : cluster.nodes()) {
    if (!node->running()) continue;
    if (IsMaster(node->port())) ports.push_back(node->port());
  }
  return ports;
}

std::vector<int> SlotOwners(RedisCluster& cluster) {
  std::vector<int> owners(16384, 0);
  auto slots = ClusterSlots(cluster);
  if (!slots.ok()) return owners;
  for (const RedisReply& range : slots->elements) {
    if (range.elements.size() < 3) continue;
    for (long long slot = range.elements[0].integer; slot <= range.elements[1].integer; ++slot) {
      owners[slot] = static_cast<int>(range.elements[2].elements[1].integer);
    }
  }
  return owners;
}

int MasterOfSlot(RedisCluster& cluster, int slot) { return SlotOwners(cluster)[slot]; }

int ReplicaOf(RedisCluster& cluster, int master_port) {
  for (auto& node : cluster.nodes()) {
    if (!node->running()) continue;
    auto role = Ask(node->port(), {"ROLE"});
    if (role.ok() && role->elements.size() >= 3 && role->elements[0].str == "slave" &&
        role->elements[2].integer == master_port) {
      return node->port();
    }
  }
  return 0;
}

bool IsMaster(int port) {
  auto role = Ask(port, {"ROLE"});
  return role.ok() && !role->elements.empty() && role->elements[0].str == "master";
}

std::string NodeId(int port) {
  auto id = Ask(port, {"CLUSTER", "MYID"});
  return id.ok() ? id->str : "";
}

int SlotsServedBy(RedisCluster& cluster, int port) {
  auto slots = Ask(port, {"CLUSTER", "SLOTS"});
  if (!slots.ok()) return 0;
  int count = 0;
  for (const RedisReply& range : slots->elements) {
    if (range.elements.size() < 3 || range.elements[2].elements[1].integer != port) continue;
    count += static_cast<int>(range.elements[1].integer - range.elements[0].integer + 1);
  }
  return count;
}

}  // namespace perper::testing
