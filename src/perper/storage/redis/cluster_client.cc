// SPDX-License-Identifier: MIT
#include "perper/storage/redis/cluster_client.h"

#include <algorithm>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "perper/common/status_macros.h"
#include "perper/storage/redis/key_slot.h"

namespace perper::storage::redis {
namespace {

using Clock = std::chrono::steady_clock;

struct Redirect {
  bool ask = false;
  std::string host;  // empty: the host of the node that answered
  int port = 0;
};

// Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>".
bool ParseRedirect(std::string_view error, Redirect* out) {
  if (error.starts_with("MOVED ")) {
    out->ask = false;
  } else if (error.starts_with("ASK ")) {
    out->ask = true;
  } else {
    return false;
  }
  size_t space = error.rfind(' ');
  std::string_view address = error.substr(space + 1);
  size_t colon = address.rfind(':');  // rfind: an IPv6 host has colons of its own
  if (colon == std::string_view::npos) return false;
  out->host = std::string(address.substr(0, colon));
  return absl::SimpleAtoi(std::string(address.substr(colon + 1)), &out->port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::Create(ClusterOptions options) {
  if (options.seeds.empty()) return absl::InvalidArgumentError("redis: no seed node given");
  std::unique_ptr<ClusterClient> client(new ClusterClient(std::move(options)));
  absl::MutexLock lock(&client->mu_);
  PERPER_RETURN_IF_ERROR(client->Discover());
  return client;
}

ClusterClient::ClusterClient(ClusterOptions options)
    : options_(std::move(options)), slot_node_(kSlotCount, -1) {}

absl::Status ClusterClient::Discover() {
  std::vector<std::string> failures;
  for (const auto& [host, port] : options_.seeds) {
    int index = NodeIndex(host, port);
    absl::StatusOr<std::shared_ptr<SharedConnection>> connection = Connection(index);
    if (!connection.ok()) {
      failures.push_back(std::string(connection.status().message()));
      continue;
    }
    absl::StatusOr<RedisReply> info = (*connection)->Run({"INFO", "cluster"});
    if (!info.ok()) {
      failures.push_back(std::string(info.status().message()));
      continue;
    }
    if (!absl::StrContains(info->str, "cluster_enabled:1")) {
      // A standalone server owns every slot; the other seeds are not used.
      cluster_mode_ = false;
      std::fill(slot_node_.begin(), slot_node_.end(), index);
      return absl::OkStatus();
    }
    cluster_mode_ = true;
    absl::Status loaded = LoadSlots(index);
    if (loaded.ok()) return loaded;
    failures.push_back(std::string(loaded.message()));
  }
  return absl::UnavailableError(
      absl::StrCat("no redis seed answered: ", absl::StrJoin(failures, "; ")));
}

absl::Status ClusterClient::RefreshSlots() {
  absl::MutexLock lock(&mu_);
  return RefreshLocked();
}

absl::Status ClusterClient::RefreshLocked() {
  if (!cluster_mode_) return absl::OkStatus();
  ++stats_.refreshes;
  absl::Status last = absl::UnavailableError("redis: no known cluster node");
  // Indices, not references: LoadSlots may add nodes.
  for (int i = 0; i < static_cast<int>(nodes_.size()); ++i) {
    last = LoadSlots(i);
    if (last.ok()) return last;
  }
  return last;
}

absl::Status ClusterClient::LoadSlots(int from) {
  absl::StatusOr<std::shared_ptr<SharedConnection>> connection = Connection(from);
  if (!connection.ok()) return connection.status();
  absl::StatusOr<RedisReply> reply = (*connection)->Run({"CLUSTER", "SLOTS"});
  if (!reply.ok()) {
    if (absl::IsUnavailable(reply.status())) nodes_[from].connection.reset();
    return reply.status();
  }
  std::string from_host = nodes_[from].host;
  std::vector<int> slots(kSlotCount, -1);
  for (const RedisReply& range : reply->elements) {
    // [start, end, [host, port, id, ...], replicas...]: the first node is the master.
    if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) continue;
    const RedisReply& master = range.elements[2];
    std::string host = master.elements[0].str.empty() ? from_host : master.elements[0].str;
    int node = NodeIndex(host, static_cast<int>(master.elements[1].integer));
    long long start = std::max<long long>(range.elements[0].integer, 0);
    long long end = std::min<long long>(range.elements[1].integer, kSlotCount - 1);
    for (long long s = start; s <= end; ++s) slots[s] = node;
  }
  // A node that knows no slot (just started, cut off, reset) must not wipe a good map: the
  // caller then asks the next node.
  if (reply->elements.empty()) {
    return absl::UnavailableError(
        absl::StrCat("redis ", nodes_[from].address, ": CLUSTER SLOTS lists no slot"));
  }
  slot_node_ = std::move(slots);
  return absl::OkStatus();
}

int ClusterClient::NodeIndex(std::string_view host, int port) {
  std::string address = absl::StrCat(std::string(host), ":", port);
  for (int i = 0; i < static_cast<int>(nodes_.size()); ++i) {
    if (nodes_[i].address == address) return i;
  }
  nodes_.push_back(Node{std::string(host), port, address, nullptr});
  return static_cast<int>(nodes_.size()) - 1;
}

absl::StatusOr<std::shared_ptr<SharedConnection>> ClusterClient::Connection(int node) {
  Node& n = nodes_[node];
  if (n.connection != nullptr && !n.connection->broken()) return n.connection;
  n.connection.reset();
  absl::StatusOr<std::shared_ptr<SharedConnection>> connection =
      SharedConnection::Connect(n.host, n.port, options_.connection);
  if (!connection.ok()) return connection.status();
  n.connection = *std::move(connection);
  return n.connection;
}

absl::StatusOr<RedisReply> ClusterClient::Execute(int slot,
                                                  const std::vector<std::string_view>& argv) {
  if (slot < 0 || slot >= kSlotCount) {
    return absl::InvalidArgumentError(absl::StrCat("redis: slot ", slot, " out of range"));
  }
  const Clock::time_point deadline = Clock::now() + options_.retry_deadline;
  std::chrono::milliseconds backoff = options_.retry_backoff;
  int redirects = 0;
  int ask_node = -1;
  bool standalone_retried = false;
  // Waits before the next attempt; false once the deadline has passed. Called without mu_: a
  // command's round trip goes out on a shared connection, outside the client's lock.
  auto back_off = [&]() ABSL_LOCKS_EXCLUDED(mu_) {
    if (Clock::now() + backoff >= deadline) return false;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.retries;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
    return true;
  };
  while (true) {
    const bool asking = ask_node >= 0;
    int node = -1;
    std::string address;
    absl::StatusOr<std::shared_ptr<SharedConnection>> connection =
        absl::UnavailableError(absl::StrCat("redis: no node serves slot ", slot));
    {
      absl::MutexLock lock(&mu_);
      node = asking ? ask_node : slot_node_[slot];
      if (node >= 0) {
        address = nodes_[node].address;
        connection = Connection(node);
      }
    }
    ask_node = -1;
    absl::StatusOr<RedisReply> reply = absl::UnknownError("not sent");
    if (!connection.ok()) {
      reply = connection.status();
    } else {
      if (asking) {
        // ASKING lets the importing node accept the next command for a slot it does not own
        // yet; sent together, nothing of another thread goes between them.
        absl::StatusOr<std::vector<RedisReply>> replies =
            (*connection)->Pipeline({{"ASKING"}, argv});
        if (replies.ok()) {
          reply = std::move((*replies)[1]);
        } else {
          reply = replies.status();
        }
      } else {
        reply = (*connection)->Command(argv);
      }
    }
    if (!reply.ok()) {
      // A broken connection is replaced by the next Connection().
      if (!absl::IsUnavailable(reply.status())) return reply.status();
      if (!cluster_mode_) {
        // A standalone server that restarted: reconnect once, no waiting.
        if (standalone_retried) return reply.status();
        standalone_retried = true;
        absl::MutexLock lock(&mu_);
        ++stats_.retries;
        continue;
      }
      // A lost master: its replica takes over after the node timeout; the map says when.
      if (!back_off()) return reply.status();
      absl::MutexLock lock(&mu_);
      (void)RefreshLocked();
      continue;
    }
    if (!reply->is_error()) return reply;

    Redirect redirect;
    if (ParseRedirect(reply->str, &redirect)) {
      if (++redirects > options_.max_redirects) {
        return absl::UnavailableError(absl::StrCat("redis: too many redirections for slot ", slot,
                                                   ", last: ", reply->str.substr(0, 128)));
      }
      absl::MutexLock lock(&mu_);
      if (redirect.host.empty()) redirect.host = nodes_[node].host;
      int target = NodeIndex(redirect.host, redirect.port);
      if (redirect.ask) {
        ++stats_.ask;
        ask_node = target;  // this command only; the slot still belongs to the old node
      } else {
        ++stats_.moved;
        slot_node_[slot] = target;
      }
      continue;
    }
    const bool try_again = reply->str.starts_with("TRYAGAIN");
    const bool cluster_down = reply->str.starts_with("CLUSTERDOWN");
    if (try_again || cluster_down) {
      if (!back_off()) {
        return absl::UnavailableError(
            absl::StrCat("redis ", address, ": ", reply->str.substr(0, 128)));
      }
      if (cluster_down) {
        absl::MutexLock lock(&mu_);
        (void)RefreshLocked();
      }
      continue;
    }
    return reply;  // any other error reply is the command's answer
  }
}

absl::StatusOr<RedisReply> ClusterClient::Command(std::string_view key,
                                                  const std::vector<std::string_view>& argv) {
  return CommandInSlot(KeySlot(key), argv);
}

absl::StatusOr<RedisReply> ClusterClient::CommandInSlot(int slot,
                                                        const std::vector<std::string_view>& argv) {
  absl::StatusOr<RedisReply> reply = Execute(slot, argv);
  if (reply.ok() && reply->is_error()) return ReplyStatus(*reply);
  return reply;
}

absl::StatusOr<int> ClusterClient::ScriptSlot(const std::vector<std::string_view>& keys) {
  // A script touching several slots would be refused by the cluster (CROSSSLOT) and, worse,
  // accepted by a standalone server: refuse it here so both deployments behave alike.
  const int slot = keys.empty() ? 0 : KeySlot(keys[0]);
  for (std::string_view key : keys) {
    if (KeySlot(key) != slot) {
      return absl::InvalidArgumentError(absl::StrCat("redis: script keys in different slots (",
                                                     slot, " and ", KeySlot(key),
                                                     "); give them one hash tag"));
    }
  }
  return slot;
}

absl::StatusOr<std::string> ClusterClient::ScriptSha(std::string_view script, int slot) {
  {
    absl::MutexLock lock(&mu_);
    auto it = script_sha_.find(absl::string_view(script.data(), script.size()));
    if (it != script_sha_.end()) return it->second;
  }
  // SCRIPT LOAD returns the SHA1 the server will know the script by (two threads loading the
  // same script at once get the same one).
  PERPER_ASSIGN_OR_RETURN(RedisReply loaded, Execute(slot, {"SCRIPT", "LOAD", script}));
  PERPER_RETURN_IF_ERROR(ReplyStatus(loaded));
  absl::MutexLock lock(&mu_);
  script_sha_.emplace(std::string(script), loaded.str);
  return loaded.str;
}

std::vector<std::string_view> ClusterClient::ScriptArgv(const Script& script, std::string_view sha,
                                                        const std::string& numkeys) {
  std::vector<std::string_view> argv = {"EVALSHA", sha, numkeys};
  argv.insert(argv.end(), script.keys.begin(), script.keys.end());
  argv.insert(argv.end(), script.args.begin(), script.args.end());
  return argv;
}

absl::StatusOr<RedisReply> ClusterClient::RunOneScript(int slot, const Script& script) {
  PERPER_ASSIGN_OR_RETURN(std::string sha, ScriptSha(script.script, slot));
  std::string numkeys = absl::StrCat(script.keys.size());
  std::vector<std::string_view> argv = ScriptArgv(script, sha, numkeys);
  absl::StatusOr<RedisReply> reply = Execute(slot, argv);
  if (reply.ok() && reply->is_error() && reply->str.starts_with("NOSCRIPT")) {
    // The node's cache lacks it (another node, a restart, SCRIPT FLUSH): EVAL also caches it.
    argv[0] = "EVAL";
    argv[1] = script.script;
    reply = Execute(slot, argv);
  }
  if (reply.ok() && reply->is_error()) return ReplyStatus(*reply);
  return reply;
}

absl::StatusOr<RedisReply> ClusterClient::RunStandaloneScript(
    std::string_view script, const std::vector<std::string_view>& keys,
    const std::vector<std::string_view>& args) {
  if (cluster_mode_) {
    return absl::FailedPreconditionError(
        "redis: a script over several slots needs a standalone "
        "server, not a cluster");
  }
  return RunOneScript(keys.empty() ? 0 : KeySlot(keys.front()), Script{script, keys, args});
}

absl::StatusOr<RedisReply> ClusterClient::RunScript(std::string_view script,
                                                    const std::vector<std::string_view>& keys,
                                                    const std::vector<std::string_view>& args) {
  PERPER_ASSIGN_OR_RETURN(int slot, ScriptSlot(keys));
  return RunOneScript(slot, Script{script, keys, args});
}

std::vector<absl::StatusOr<RedisReply>> ClusterClient::RunScripts(
    const std::vector<Script>& scripts) {
  std::vector<absl::StatusOr<RedisReply>> out(scripts.size(), absl::InternalError("not run"));
  std::vector<int> slots(scripts.size(), -1);
  for (size_t i = 0; i < scripts.size(); ++i) {
    absl::StatusOr<int> slot = ScriptSlot(scripts[i].keys);
    if (slot.ok()) {
      slots[i] = *slot;
    } else {
      out[i] = slot.status();
    }
  }
  // The scripts of each node known to own their slots, in the order given.
  std::map<int, std::vector<size_t>> by_node;
  std::vector<size_t> alone;  // Run one by one, with redirections and retries.
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < scripts.size(); ++i) {
      if (slots[i] < 0) continue;
      const int node = slot_node_[slots[i]];
      if (node < 0) {
        alone.push_back(i);
      } else {
        by_node[node].push_back(i);
      }
    }
  }
  for (auto& [node, indexes] : by_node) {
    if (indexes.size() == 1) {
      alone.push_back(indexes[0]);
      continue;
    }
    std::vector<std::string> shas;
    std::vector<std::string> numkeys;
    shas.reserve(indexes.size());
    numkeys.reserve(indexes.size());
    std::vector<std::vector<std::string_view>> commands;
    bool loaded = true;
    for (size_t i : indexes) {
      absl::StatusOr<std::string> sha = ScriptSha(scripts[i].script, slots[i]);
      if (!sha.ok()) {
        loaded = false;
        break;
      }
      shas.push_back(*std::move(sha));
      numkeys.push_back(absl::StrCat(scripts[i].keys.size()));
      commands.push_back(ScriptArgv(scripts[i], shas.back(), numkeys.back()));
    }
    absl::StatusOr<std::shared_ptr<SharedConnection>> connection =
        absl::UnavailableError("script not loaded");
    if (loaded) {
      absl::MutexLock lock(&mu_);
      connection = Connection(node);
    }
    absl::StatusOr<std::vector<RedisReply>> replies =
        connection.ok() ? (*connection)->Pipeline(commands) : connection.status();
    if (!replies.ok()) {
      // A broken connection (replaced by the next Connection()) or a failed load: each one
      // again alone, which reconnects, waits out a failover and reports what stays wrong. A
      // script that ran may run twice; every script of the backend allows that.
      alone.insert(alone.end(), indexes.begin(), indexes.end());
      continue;
    }
    for (size_t j = 0; j < indexes.size(); ++j) {
      RedisReply& reply = (*replies)[j];
      Redirect redirect;
      if (reply.is_error() &&
          (reply.str.starts_with("NOSCRIPT") || reply.str.starts_with("TRYAGAIN") ||
           reply.str.starts_with("CLUSTERDOWN") || ParseRedirect(reply.str, &redirect))) {
        alone.push_back(indexes[j]);
      } else if (reply.is_error()) {
        out[indexes[j]] = ReplyStatus(reply);
      } else {
        out[indexes[j]] = std::move(reply);
      }
    }
  }
  for (size_t i : alone) out[i] = RunOneScript(slots[i], scripts[i]);
  return out;
}

ClusterStats ClusterClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::string ClusterClient::NodeForSlot(int slot) const {
  absl::MutexLock lock(&mu_);
  if (slot < 0 || slot >= kSlotCount || slot_node_[slot] < 0) return "";
  return nodes_[slot_node_[slot]].address;
}

}  // namespace perper::storage::redis
