// SPDX-License-Identifier: MIT
// The inspection commands: plain synchronous gRPC calls against a running Fabric.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

#include "perper/cli/commands.h"
#include "perper/cli/fabric_client.h"
#include "perper/cli/table.h"
#include "perper/cli/values.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"
#include <nlohmann/json.hpp>

namespace perper::cli {

using nlohmann::json;

namespace {

// The agent whose executions are the live instances (docs/protocol/instances.md).
constexpr char kRegistry[] = "Registry";

// A span of time the way a person reads it at a glance: "850ms", "4.2s", "12m", "3h", "5d".
std::string Span(int64_t ms, bool fine) {
  if (ms < 0) ms = 0;
  if (fine && ms < 1000) return absl::StrCat(ms, "ms");
  if (fine && ms < 10'000) return absl::StrFormat("%.1fs", ms / 1000.0);
  if (ms < 60'000) return absl::StrCat(ms / 1000, "s");
  if (ms < 3'600'000) return absl::StrCat(ms / 60'000, "m");
  if (ms < 48 * 3'600'000) return absl::StrCat(ms / 3'600'000, "h");
  return absl::StrCat(ms / (24 * 3'600'000), "d");
}

}  // namespace

int RunExecutions(const FabricTarget& target, const ExecutionsOptions& options) {
  static const std::set<std::string> kStates = {"all",     "unfinished", "waiting",
                                                "running", "finished",   "failed"};
  if (kStates.count(options.state) == 0) {
    std::fprintf(stderr,
                 "perper executions: --state must be one of all, unfinished, waiting, "
                 "running, finished, failed\n");
    return 2;
  }
  auto stub = grpc2::FabricIntrospection::NewStub(Channel(target));
  grpc2::IntrospectionListExecutionsRequest request;
  request.set_agent(options.agent);
  request.set_instance(options.instance);
  request.set_delegate(options.delegate);
  request.set_include_finished(options.state == "all" || options.state == "finished" ||
                               options.state == "failed");
  request.set_limit(options.limit);
  grpc2::IntrospectionListExecutionsResponse response;
  grpc::ClientContext context;
  Deadline(context, target);
  grpc::Status status = stub->ListExecutions(&context, request, &response);
  if (!status.ok()) return Fail(target, status, "listing executions");

  // Executions reserved in the default workgroup are being run by an agent process.
  std::set<std::string> reserved;
  grpc2::IntrospectionListReservationsRequest reservations_request;
  reservations_request.set_limit(100000);
  grpc2::IntrospectionListReservationsResponse reservations;
  grpc::ClientContext reservations_context;
  Deadline(reservations_context, target);
  status = stub->ListReservations(&reservations_context, reservations_request, &reservations);
  if (!status.ok()) return Fail(target, status, "listing reservations");
  for (const auto& r : reservations.reservations()) reserved.insert(r.execution().execution());

  // The Registry's executions are the live instances, not work waiting for a process: they are
  // perper instances' rows, listed here only when asked for by name (--agent Registry).
  const bool registry = options.agent == kRegistry;
  size_t instances_left_out = 0;
  const int64_t now = absl::ToUnixMillis(absl::Now());
  Table table({"EXECUTION", "AGENT", "INSTANCE", "DELEGATE", "STATE", "IN/OUT", "AGE", "TOOK"});
  json rows = json::array();
  for (const auto& e : response.executions()) {
    const bool instance = e.instance().agent() == kRegistry;
    std::string state = e.failed()                                       ? "failed"
                        : e.finished()                                   ? "finished"
                        : instance                                       ? "live"
                        : reserved.count(e.execution().execution()) != 0 ? "running"
                                                                         : "waiting";
    const bool unfinished = !e.finished();
    if (options.state != "all" && options.state != state &&
        !(options.state == "unfinished" && unfinished)) {
      continue;
    }
    if (instance && !registry) {
      ++instances_left_out;
      continue;
    }
    const bool known = e.created_ms() > 0;
    const bool took = known && e.finished() && e.finished_ms() >= e.created_ms();
    table.AddRow({e.execution().execution(), e.instance().agent(), e.instance().instance(),
                  e.delegate(), state, absl::StrCat(e.argument_count(), "/", e.result_count()),
                  known ? Span(now - e.created_ms(), /*fine=*/false) : "-",
                  took ? Span(e.finished_ms() - e.created_ms(), /*fine=*/true) : "-"});
    json row = {{"execution", e.execution().execution()},
                {"agent", e.instance().agent()},
                {"instance", e.instance().instance()},
                {"delegate", e.delegate()},
                {"state", state},
                {"argument_count", e.argument_count()},
                {"result_count", e.result_count()},
                {"sequence", JsonInteger(e.sequence())}};
    if (known) row["created_ms"] = JsonInteger(e.created_ms());
    if (took) row["finished_ms"] = JsonInteger(e.finished_ms());
    rows.push_back(std::move(row));
  }
  if (target.json) {
    PrintJson(rows);
    return 0;
  }
  // The IDs give way first when the terminal is narrow.
  Print(table.Render(options.wide ? 0 : OutputWidth(), {0, 1, 2, 3}));
  if (instances_left_out > 0) {
    std::fprintf(stderr,
                 "(%zu live instances are not listed: they are the executions of agent Registry; "
                 "see perper instances)\n",
                 instances_left_out);
  }
  return 0;
}

int RunInstances(const FabricTarget& target, const std::string& agent) {
  std::vector<grpc2::model::PerperInstance> instances;
  std::vector<grpc2::InstancePlacement> placements;
  grpc::Status status = ListInstances(target, agent, &instances, &placements);
  if (!status.ok()) return Fail(target, status, "listing instances");
  // Cluster mode also says where each instance's executions and state live.
  absl::flat_hash_map<std::string, const grpc2::InstancePlacement*> placement_of;
  for (const auto& p : placements) placement_of[p.instance()] = &p;
  Table table(!placements.empty() ? std::vector<std::string>{"INSTANCE", "AGENT", "SLOT", "NODE"}
                                  : std::vector<std::string>{"INSTANCE", "AGENT"});
  json rows = json::array();
  for (const auto& i : instances) {
    std::vector<std::string> cells = {i.instance(), i.agent()};  // The table pads short rows.
    json row = {{"instance", i.instance()}, {"agent", i.agent()}};
    if (auto it = placement_of.find(i.instance()); it != placement_of.end()) {
      cells.insert(cells.end(), {absl::StrCat(it->second->slot()), it->second->node()});
      row["slot"] = it->second->slot();
      row["node"] = it->second->node();
    }
    table.AddRow(std::move(cells));
    rows.push_back(std::move(row));
  }
  if (target.json) {
    PrintJson(rows);
  } else {
    Print(table.Render());
  }
  return 0;
}

namespace {

absl::StatusOr<std::vector<grpc2::StreamSummary>> ListStreams(const FabricTarget& target,
                                                              const std::string& prefix,
                                                              grpc::Status* error) {
  auto stub = grpc2::FabricIntrospection::NewStub(Channel(target));
  grpc2::IntrospectionListStreamsRequest request;
  request.set_stream_prefix(prefix);
  request.set_limit(100000);
  grpc2::IntrospectionListStreamsResponse response;
  grpc::ClientContext context;
  Deadline(context, target);
  *error = stub->ListStreams(&context, request, &response);
  if (!error->ok()) return absl::UnavailableError(error->error_message());
  return std::vector<grpc2::StreamSummary>(response.streams().begin(), response.streams().end());
}

}  // namespace

int RunStreams(const FabricTarget& target, const std::string& prefix) {
  grpc::Status error;
  auto streams = ListStreams(target, prefix, &error);
  if (!streams.ok()) return Fail(target, error, "listing streams");
  Table table({"STREAM", "KIND", "STRIDE", "ITEMS", "KEYS", "STATE", "LISTENERS"});
  json rows = json::array();
  for (const auto& s : *streams) {
    std::string state = !s.completed()      ? "open"
                        : s.error().empty() ? "completed"
                                            : "failed: " + s.error();
    std::vector<std::string> listeners;
    json listeners_json = json::array();
    for (const auto& l : s.listeners()) {
      std::string name = l.transient() ? "(call)" : l.name();
      listeners.push_back(absl::StrCat(name, "@", l.position()));
      listeners_json.push_back({{"name", l.name()},
                                {"position", JsonInteger(l.position())},
                                {"transient", l.transient()}});
    }
    table.AddRow({s.stream(), s.ephemeral() ? "ephemeral" : "persistent",
                  std::to_string(s.stride()), std::to_string(s.item_count()),
                  s.has_items() ? absl::StrCat(s.first_key(), "..", s.last_key()) : "-", state,
                  listeners.empty() ? "-" : absl::StrJoin(listeners, ", ")});
    json row = {{"stream", s.stream()},
                {"ephemeral", s.ephemeral()},
                {"stride", JsonInteger(s.stride())},
                {"item_count", JsonInteger(s.item_count())},
                {"written_count", JsonInteger(s.written_count())},
                {"completed", s.completed()},
                {"listeners", listeners_json}};
    if (s.has_items()) {
      row["first_key"] = JsonInteger(s.first_key());
      row["last_key"] = JsonInteger(s.last_key());
    }
    if (!s.error().empty()) row["error"] = s.error();
    rows.push_back(std::move(row));
  }
  if (target.json) {
    PrintJson(rows);
  } else {
    Print(table.Render());
  }
  return 0;
}

int RunStreamTail(const FabricTarget& target, const TailOptions& options) {
  grpc::Status error;
  auto streams = ListStreams(target, options.stream, &error);
  if (!streams.ok()) return Fail(target, error, "listing streams");
  const grpc2::StreamSummary* summary = nullptr;
  for (const auto& s : *streams) {
    if (s.stream() == options.stream) summary = &s;
  }
  if (summary == nullptr) {
    return Error(absl::StrCat("no stream '", options.stream, "' (see perper streams)"));
  }
  // Without --follow, stop at the last item stored now.
  bool stop_at_last = !options.follow;
  int64_t last = summary->last_key();
  if (stop_at_last && (!summary->has_items() || last < options.from)) return 0;

  auto stub = grpc2::FabricStreams::NewStub(Channel(target));
  grpc::ClientContext context;
  grpc2::StreamsListenItemsRequest request;
  request.mutable_stream()->set_stream(options.stream);
  request.mutable_stream()->set_start_key(options.from);
  request.mutable_stream()->set_stride(summary->stride());
  auto reader = stub->ListenItems(&context, request);
  grpc2::StreamsListenItemsResponse item;
  while (reader->Read(&item)) {
    if (target.json) {
      Print(json({{"key", JsonInteger(item.key())}, {"value", AnyToJson(item.value())}}).dump() +
            "\n");
    } else {
      Print(absl::StrCat(item.key(), "  ", AnyToText(item.value()), "\n"));
    }
    if (stop_at_last && item.key() >= last) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (status.ok() || status.error_code() == grpc::StatusCode::CANCELLED) return 0;
  if (status.error_code() == grpc::StatusCode::UNKNOWN ||
      status.error_code() == grpc::StatusCode::ABORTED) {
    return Error(
        absl::StrCat("stream ", options.stream, " ended with an error: ", status.error_message()));
  }
  return Fail(target, status, "reading stream " + options.stream);
}

int RunStates(const FabricTarget& target, const std::string& prefix) {
  std::vector<grpc2::StateSummary> states;
  grpc::Status status = ListStates(target, prefix, &states);
  if (!status.ok()) return Fail(target, status, "listing states");
  Table table({"NAME", "KIND", "ENTRIES"});
  json rows = json::array();
  for (const auto& s : states) {
    std::string kind = s.kind() == grpc2::StateSummary::LIST ? "list" : "dictionary";
    table.AddRow({s.name(), kind, std::to_string(s.count())});
    rows.push_back({{"name", s.name()}, {"kind", kind}, {"count", JsonInteger(s.count())}});
  }
  if (target.json) {
    PrintJson(rows);
  } else {
    Print(table.Render());
  }
  return 0;
}

namespace {

absl::StatusOr<google::protobuf::Any> KeyAny(const std::string& key, bool json_key) {
  if (!json_key) return JsonToAny(json(key));
  json parsed = json::parse(key, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("key '", key, "' is not JSON"));
  }
  return JsonToAny(parsed);
}

}  // namespace

namespace {

// The dictionary a state command names, as (dictionary, key): the first positional, or with
// --instance X the state dictionary of X, "X-". An instance ID given as the dictionary names
// that instance's dictionary when there is no dictionary of its own name but there is "X-", so
// nobody needs to know about the trailing dash. A dictionary that does not exist is an error
// naming what was looked for (reading it would show nothing, as if it were empty). Returns the
// exit code on failure.
struct StateTarget {
  std::string dictionary, key;
};
std::variant<StateTarget, int> ResolveState(const FabricTarget& target, const StateOptions& options,
                                            const char* command, size_t keys) {
  const size_t given = options.positionals.size();
  const size_t wanted = (options.instance.empty() ? 1 : 0) + keys;
  if (given != wanted) {
    std::fprintf(
        stderr, "perper state %s: expected %s\n", command,
        keys == 0 ? "DICTIONARY, or --instance ID" : "DICTIONARY KEY, or --instance ID KEY");
    return 2;
  }
  StateTarget state;
  if (keys > 0) state.key = options.positionals.back();
  const std::string named =
      options.instance.empty() ? options.positionals.front() : options.instance;
  std::vector<std::string> candidates;
  if (options.instance.empty()) candidates.push_back(named);
  candidates.push_back(named + "-");
  std::vector<grpc2::StateSummary> states;
  grpc::Status status = ListStates(target, named, &states);
  if (!status.ok()) return Fail(target, status, "listing states");
  for (const std::string& candidate : candidates) {
    for (const auto& s : states) {
      if (s.kind() == grpc2::StateSummary::DICTIONARY && s.name() == candidate) {
        state.dictionary = candidate;
        return state;
      }
    }
  }
  return Error(options.instance.empty()
                   ? absl::StrCat("no dictionary '", named, "', nor an instance '", named,
                                  "' with a state dictionary '", named, "-' (see perper states)")
                   : absl::StrCat("instance '", named, "' has no state dictionary '", named,
                                  "-' (see perper states)"));
}

}  // namespace

int RunStateGet(const FabricTarget& target, const StateOptions& options) {
  auto resolved = ResolveState(target, options, "get", 1);
  if (const int* code = std::get_if<int>(&resolved)) return *code;
  const auto& [dictionary, key] = std::get<StateTarget>(resolved);
  auto key_any = KeyAny(key, options.json_key);
  if (!key_any.ok()) {
    std::fprintf(stderr, "perper state get: %s\n", std::string(key_any.status().message()).c_str());
    return 2;
  }
  auto stub = grpc2::FabricStatesDictionary::NewStub(Channel(target));
  grpc2::StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  *request.mutable_key() = *key_any;
  request.set_get_existing_value(true);
  grpc2::StatesDictionaryOperateResponse response;
  grpc::ClientContext context;
  Deadline(context, target);
  grpc::Status status = stub->Operate(&context, request, &response);
  if (!status.ok()) return Fail(target, status, "reading dictionary " + dictionary);
  if (!response.has_previous_value()) {
    return Error(absl::StrCat("no key ", AnyToText(*key_any), " in dictionary '", dictionary,
                              "' (see perper state list ", dictionary, ")"));
  }
  if (target.json) {
    PrintJson(AnyToJson(response.previous_value()));
  } else {
    Print(AnyToText(response.previous_value()) + "\n");
  }
  return 0;
}

int RunStateList(const FabricTarget& target, const StateOptions& options) {
  auto resolved = ResolveState(target, options, "list", 0);
  if (const int* code = std::get_if<int>(&resolved)) return *code;
  const std::string& dictionary = std::get<StateTarget>(resolved).dictionary;
  auto stub = grpc2::FabricStatesDictionary::NewStub(Channel(target));
  grpc2::StatesDictionaryListItemsRequest request;
  request.mutable_dictionary()->set_dictionary(dictionary);
  grpc::ClientContext context;
  Deadline(context, target);
  auto reader = stub->ListItems(&context, request);
  grpc2::StatesDictionaryListItemsResponse item;
  Table table({"KEY", "VALUE"});
  json rows = json::array();
  while (reader->Read(&item)) {
    table.AddRow({AnyToText(item.key()), AnyToText(item.value())});
    rows.push_back({{"key", AnyToJson(item.key())}, {"value", AnyToJson(item.value())}});
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail(target, status, "listing dictionary " + dictionary);
  if (target.json) {
    PrintJson(rows);
  } else {
    Print(table.Render());
  }
  return 0;
}

namespace {

// Whether some process listens for `agent`'s executions on the Fabric (ListAgentListeners);
// nullopt when the Fabric cannot tell (an older one, or no answer within a second).
std::optional<bool> Served(const std::shared_ptr<grpc::Channel>& channel,
                           const std::string& agent) {
  auto stub = grpc2::FabricIntrospection::NewStub(channel);
  grpc2::IntrospectionListAgentListenersRequest request;
  request.set_agent(agent);
  grpc2::IntrospectionListAgentListenersResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (!stub->ListAgentListeners(&context, request, &response).ok()) return std::nullopt;
  return response.agents_size() > 0;
}

}  // namespace

int RunCall(const FabricTarget& target, const CallOptions& options) {
  grpc2::ExecutionsCreateRequest request;
  for (size_t i = 0; i < options.arguments.size(); ++i) {
    json parsed = json::parse(options.arguments[i], nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      std::fprintf(stderr,
                   "perper call: argument %zu is not JSON: %s (quote strings: '\"text\"')\n", i + 1,
                   options.arguments[i].c_str());
      return 2;
    }
    auto any = JsonToAny(parsed);
    if (!any.ok()) {
      std::fprintf(stderr, "perper call: argument %zu: %s\n", i + 1,
                   std::string(any.status().message()).c_str());
      return 2;
    }
    *request.add_arguments() = *any;
  }
  auto channel = Channel(target);
  if (!options.any_instance) {
    std::vector<grpc2::model::PerperInstance> instances;
    grpc::Status status = ListInstances(target, options.agent, &instances);
    if (!status.ok()) return Fail(target, status, "listing instances");
    bool found = false;
    for (const auto& i : instances) found = found || i.instance() == options.instance;
    if (!found) {
      return Error(absl::StrCat("no instance '", options.instance, "' of agent '", options.agent,
                                "' (see perper instances; --any-instance calls it anyway)"));
    }
  }
  std::random_device random;
  std::string id = absl::StrCat(options.delegate, "-cli-", absl::Hex(random(), absl::kZeroPad8),
                                absl::Hex(random(), absl::kZeroPad8));
  request.mutable_execution()->set_execution(id);
  request.mutable_instance()->set_agent(options.agent);
  request.mutable_instance()->set_instance(options.instance);
  request.set_delegate(options.delegate);
  auto stub = grpc2::FabricInstances::NewStub(channel);
  grpc2::ExecutionsGetResultResponse response;
  grpc::ClientContext context;
  Deadline(context, target);
  absl::Notification answered;
  grpc::Status status;
  stub->async()->Call(&context, &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    answered.Notify();
  });
  // A call to an agent no process serves waits for one until the timeout; say so while it
  // waits. Not at once: a process may be starting for it (perper up starts a pool's first
  // process when executions wait).
  const std::string unserved =
      absl::StrCat("no process serves agent ", options.agent, ": nothing on the Fabric at ",
                   Address(target), " listens for its executions");
  const absl::Duration grace = absl::Seconds(std::min(2.0, target.timeout_seconds / 2));
  if (!answered.WaitForNotificationWithTimeout(grace) &&
      !Served(channel, options.agent).value_or(true)) {
    std::fprintf(stderr,
                 "perper: %s; the call waits up to %g s for a process to start (perper up "
                 "starts them from the application's manifest)\n",
                 unserved.c_str(), target.timeout_seconds);
  }
  answered.WaitForNotification();
  std::string what = absl::StrCat(options.agent, ".", options.delegate, " on ", options.instance);
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      !Served(channel, options.agent).value_or(true)) {
    return Error(absl::StrCat(unserved, ", so nobody answered ", what, " within ",
                              target.timeout_seconds,
                              " s; start the agent's process (e.g. with "
                              "perper up APP.yaml) or check the agent's name"));
  }
  if (!status.ok()) return Fail(target, status, "calling " + what);
  if (response.has_error() && !response.error().message().empty()) {
    if (target.json) PrintJson({{"error", response.error().message()}});
    return Error(absl::StrCat(what, " failed: ", response.error().message()));
  }
  if (response.deleted()) return Error(absl::StrCat(what, ": the execution was deleted"));
  if (target.json) {
    json results = json::array();
    for (const auto& r : response.results()) results.push_back(AnyToJson(r));
    PrintJson({{"results", results}});
  } else {
    for (const auto& r : response.results()) Print(AnyToText(r) + "\n");
  }
  return 0;
}

}  // namespace perper::cli
