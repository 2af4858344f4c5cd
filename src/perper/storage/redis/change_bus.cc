// SPDX-License-Identifier: MIT
#include "perper/storage/redis/change_bus.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <hiredis/hiredis.h>

#include "perper/common/logging.h"
#include "perper/storage/redis/key_slot.h"

namespace perper::storage::redis {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMessageVersion = 1;

// Wire codes of the kinds: fixed here so that processes built from different versions of the
// enum still agree. kResync has none: it never travels.
int KindCode(Change::Kind kind) {
  switch (kind) {
    case Change::Kind::kExecutionCreated:
      return 1;
    case Change::Kind::kExecutionCompleted:
      return 2;
    case Change::Kind::kExecutionDeleted:
      return 3;
    case Change::Kind::kReservationReleased:
      return 4;
    case Change::Kind::kStreamCreated:
      return 5;
    case Change::Kind::kStreamItemsWritten:
      return 6;
    case Change::Kind::kStreamCompleted:
      return 7;
    case Change::Kind::kStreamDeleted:
      return 8;
    case Change::Kind::kListenerChanged:
      return 9;
    case Change::Kind::kResync:
      return 0;
  }
  return 0;
}

bool KindFromCode(uint64_t code, Change::Kind* kind) {
  static constexpr Change::Kind kKinds[] = {
      Change::Kind::kExecutionCreated, Change::Kind::kExecutionCompleted,
      Change::Kind::kExecutionDeleted, Change::Kind::kReservationReleased,
      Change::Kind::kStreamCreated,    Change::Kind::kStreamItemsWritten,
      Change::Kind::kStreamCompleted,  Change::Kind::kStreamDeleted,
      Change::Kind::kListenerChanged,
  };
  if (code < 1 || code > std::size(kKinds)) return false;
  *kind = kKinds[code - 1];
  return true;
}

void PutVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

bool GetVarint(std::string_view* in, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

void PutBytes(std::string* out, std::string_view bytes) {
  PutVarint(out, bytes.size());
  out->append(bytes);
}

bool GetBytes(std::string_view* in, std::string* bytes) {
  uint64_t size = 0;
  if (!GetVarint(in, &size) || size > in->size()) return false;
  bytes->assign(in->substr(0, size));
  in->remove_prefix(size);
  return true;
}

// Bucket channels and their slots, computed once.
struct Channels {
  std::array<std::string, kChangeBuckets> name;
  std::array<int, kChangeBuckets> slot;
};

const Channels& BucketChannels() {
  static const Channels* channels = [] {
    auto* c = new Channels;
    for (int b = 0; b < kChangeBuckets; ++b) {
      c->name[b] = absl::StrCat("perper:changes:{b", b, "}");
      c->slot[b] = KeySlot(c->name[b]);
    }
    return c;
  }();
  return *channels;
}

bool SplitAddress(std::string_view address, std::string* host, int* port) {
  size_t colon = address.rfind(':');  // rfind: an IPv6 host has colons of its own
  if (colon == std::string_view::npos) return false;
  *host = std::string(address.substr(0, colon));
  return absl::SimpleAtoi(std::string(address.substr(colon + 1)), port);
}

// Redirections and transient cluster states: the change is sent again after the map is reloaded.
bool Retryable(std::string_view error) {
  for (std::string_view code :
       {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY"}) {
    if (error.starts_with(code)) return true;
  }
  return false;
}

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string_view ReplyText(const redisReply* r) {
  if (r == nullptr || r->str == nullptr) return {};
  return std::string_view(r->str, r->len);
}

absl::Status ContextError(const redisContext* c, std::string_view address, std::string_view what) {
  std::string detail = c->err != 0 ? std::string(c->errstr) : "connection lost";
  return absl::UnavailableError(
      absl::StrCat("redis ", std::string(address), ": ", std::string(what), ": ", detail));
}

// Writes what hiredis has buffered. The socket blocks with the command timeout as its bound.
absl::Status FlushContext(redisContext* c, std::string_view address) {
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(c, &done) != REDIS_OK) return ContextError(c, address, "write");
  }
  return absl::OkStatus();
}

absl::Status AppendCommand(redisContext* c, std::string_view address,
                           const std::vector<std::string_view>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (std::string_view a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  if (redisAppendCommandArgv(c, static_cast<int>(args.size()), args.data(), lengths.data()) !=
      REDIS_OK) {
    return ContextError(c, address, "append");
  }
  return absl::OkStatus();
}

// A hiredis context of our own: the subscriber polls its socket, which RedisConnection does
// not expose.
absl::StatusOr<Context> ConnectContext(const std::string& host, int port,
                                       const ConnectionOptions& options) {
  const std::string address = absl::StrCat(host, ":", port);
  Context c(redisConnectWithTimeout(host.c_str(), port, ToTimeval(options.connect_timeout)));
  if (c == nullptr) return absl::UnavailableError(absl::StrCat("redis ", address, ": no memory"));
  if (c->err != 0) return ContextError(c.get(), address, "connect");
  if (redisSetTimeout(c.get(), ToTimeval(options.command_timeout)) != REDIS_OK)
    return ContextError(c.get(), address, "set timeout");
  if (!options.password.empty()) {
    std::vector<std::string_view> auth = {"AUTH"};
    if (!options.username.empty()) auth.push_back(options.username);
    auth.push_back(options.password);
    if (absl::Status s = AppendCommand(c.get(), address, auth); !s.ok()) return s;
    void* raw = nullptr;
    if (redisGetReply(c.get(), &raw) != REDIS_OK || raw == nullptr)
      return ContextError(c.get(), address, "AUTH");
    Reply reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR) {
      return absl::FailedPreconditionError(absl::StrCat(
          "redis ", address, ": AUTH: ", std::string(ReplyText(reply.get()).substr(0, 128))));
    }
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Wire format: version byte, origin, kind code, id, agent, instance, delegate, workgroup (each
// string a varint length and its bytes), key (zigzag varint). Later versions may append fields.

std::string_view ChangeBus::TopicKey(const Change& change) {
  switch (change.kind) {
    case Change::Kind::kExecutionCreated:
    case Change::Kind::kExecutionCompleted:
    case Change::Kind::kExecutionDeleted:
    case Change::Kind::kReservationReleased:
      return change.agent;
    case Change::Kind::kStreamCreated:
    case Change::Kind::kStreamItemsWritten:
    case Change::Kind::kStreamCompleted:
    case Change::Kind::kStreamDeleted:
    case Change::Kind::kListenerChanged:
      return change.id;
    case Change::Kind::kResync:
      return {};
  }
  return {};
}

int ChangeBus::Bucket(const Change& change) { return Crc16(TopicKey(change)) % kChangeBuckets; }

std::string ChangeBus::Channel(int bucket) { return BucketChannels().name[bucket]; }

std::string ChangeBus::EncodeMessage(std::string_view origin, const Change& change) {
  std::string out;
  out.reserve(16 + origin.size() + change.id.size() + change.agent.size() + change.instance.size() +
              change.delegate.size() + change.workgroup.size());
  out.push_back(kMessageVersion);
  PutBytes(&out, origin);
  PutVarint(&out, static_cast<uint64_t>(KindCode(change.kind)));
  for (const std::string* field :
       {&change.id, &change.agent, &change.instance, &change.delegate, &change.workgroup}) {
    PutBytes(&out, *field);
  }
  const auto key = static_cast<uint64_t>(change.key);
  PutVarint(&out, (key << 1) ^ static_cast<uint64_t>(change.key >> 63));
  return out;
}

bool ChangeBus::DecodeMessage(std::string_view message, std::string* origin, Change* change) {
  if (message.empty() || message.front() != kMessageVersion) return false;
  message.remove_prefix(1);
  uint64_t code = 0;
  if (!GetBytes(&message, origin) || !GetVarint(&message, &code) ||
      !KindFromCode(code, &change->kind)) {
    return false;
  }
  for (std::string* field :
       {&change->id, &change->agent, &change->instance, &change->delegate, &change->workgroup}) {
    if (!GetBytes(&message, field)) return false;
  }
  uint64_t zigzag = 0;
  if (!GetVarint(&message, &zigzag)) return false;
  change->key = static_cast<int64_t>((zigzag >> 1) ^ (~(zigzag & 1) + 1));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Subscriber: one thread, one connection per master owning a bucket, all polled together.

class ChangeBus::Subscriber {
 public:
  Subscriber(const ChangeBusOptions& options, ChangeObserver* observer, Counters* counters)
      : options_(options), observer_(observer), counters_(counters) {}

  ~Subscriber() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (wake_[1] >= 0) {
      char byte = 0;
      (void)!write(wake_[1], &byte, 1);
    }
    if (thread_.joinable()) thread_.join();
    for (int fd : wake_) {
      if (fd >= 0) close(fd);
    }
  }

  // Starts the thread and waits for the first complete subscription.
  absl::Status Start() {
    absl::StatusOr<std::unique_ptr<ClusterClient>> topology =
        ClusterClient::Create(options_.cluster);
    if (!topology.ok()) return topology.status();
    topology_ = *std::move(topology);
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
      return absl::InternalError("change bus: cannot create a pipe");
    thread_ = std::thread([this] { Run(); });
    absl::MutexLock lock(&mu_);
    const bool subscribed = mu_.AwaitWithTimeout(absl::Condition(&subscribed_once_),
                                                 absl::FromChrono(options_.start_timeout));
    if (subscribed) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("change bus: not subscribed within ",
                                               options_.start_timeout.count(),
                                               " ms: ", last_error_.message()));
  }

 private:
  struct Node {
    std::string address;
    Context context;
    std::vector<int> buckets;
    Clock::time_point last_heard;
    bool ping_outstanding = false;
    Clock::time_point ping_sent;
  };

  bool stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  void Run() {
    bool subscribed_before = false;
    std::chrono::milliseconds backoff = options_.min_backoff;
    while (!stopping()) {
      std::vector<Node> nodes;
      bool complete = false;
      absl::Status status = Subscribe(&nodes);
      if (status.ok()) status = Serve(nodes, subscribed_before, &complete);
      nodes.clear();  // closes the connections
      if (stopping()) break;
      {
        absl::MutexLock lock(&mu_);
        last_error_ = status;
      }
      if (complete) {
        counters_->losses.fetch_add(1, std::memory_order_relaxed);
        PERPER_LOG_WARN(Logger::kStorage, "change bus: subscription lost, subscribing again: {}",
                        std::string(status.message()));
        // Now, not only once subscribed again: a call waiting on a hint must re-read at once,
        // and end with the store's status if Redis itself is gone (it may never come back).
        DeliverResync();
        subscribed_before = true;
        backoff = options_.min_backoff;
      } else {
        PERPER_LOG_DEBUG(Logger::kStorage, "change bus: cannot subscribe yet: {}",
                         std::string(status.message()));
        backoff = std::min(backoff * 2, options_.max_backoff);
      }
      if (!Sleep(backoff)) break;
    }
  }

  // Waits `delay` or until stopped; false when stopped.
  bool Sleep(std::chrono::milliseconds delay) {
    pollfd fd = {wake_[0], POLLIN, 0};
    (void)poll(&fd, 1, static_cast<int>(delay.count()));
    return !stopping();
  }

  // The master of each bucket's slot, from the current map.
  absl::StatusOr<std::array<std::string, kChangeBuckets>> BucketNodes() {
    if (topology_->cluster_mode()) {
      if (absl::Status refreshed = topology_->RefreshSlots(); !refreshed.ok()) return refreshed;
    }
    std::array<std::string, kChangeBuckets> nodes;
    for (int b = 0; b < kChangeBuckets; ++b) {
      nodes[b] = topology_->NodeForSlot(BucketChannels().slot[b]);
      if (nodes[b].empty()) {
        return absl::UnavailableError(
            absl::StrCat("change bus: no node serves slot ", BucketChannels().slot[b]));
      }
    }
    return nodes;
  }

  // Connects to every master owning a bucket and sends its SSUBSCRIBEs (one per channel: in a
  // cluster all channels of one SSUBSCRIBE must share a slot). Confirmations are read by Serve.
  absl::Status Subscribe(std::vector<Node>* nodes) {
    absl::StatusOr<std::array<std::string, kChangeBuckets>> map = BucketNodes();
    if (!map.ok()) return map.status();
    subscribed_map_ = *map;
    for (int b = 0; b < kChangeBuckets; ++b) {
      auto it = std::find_if(nodes->begin(), nodes->end(),
                             [&](const Node& n) { return n.address == (*map)[b]; });
      if (it == nodes->end()) {
        nodes->push_back(Node{(*map)[b], nullptr, {}, {}, false, {}});
        it = nodes->end() - 1;
      }
      it->buckets.push_back(b);
    }
    for (Node& node : *nodes) {
      std::string host;
      int port = 0;
      if (!SplitAddress(node.address, &host, &port))
        return absl::InternalError(absl::StrCat("change bus: bad address ", node.address));
      absl::StatusOr<Context> context = ConnectContext(host, port, options_.cluster.connection);
      if (!context.ok()) return context.status();
      node.context = *std::move(context);
      for (int b : node.buckets) {
        absl::Status appended =
            AppendCommand(node.context.get(), node.address, {"SSUBSCRIBE", Channel(b)});
        if (!appended.ok()) return appended;
      }
      if (absl::Status flushed = FlushContext(node.context.get(), node.address); !flushed.ok())
        return flushed;
      node.last_heard = Clock::now();
    }
    return absl::OkStatus();
  }

  // Reads every connection until one is lost, a bucket moves, or the bus stops (OK). Sets
  // `complete` once every bucket has been confirmed.
  absl::Status Serve(std::vector<Node>& nodes, bool resubscription, bool* complete) {
    const auto command_timeout = options_.cluster.connection.command_timeout;
    int unconfirmed = kChangeBuckets;
    const Clock::time_point confirm_deadline = Clock::now() + command_timeout;
    Clock::time_point next_topology = Clock::now() + options_.topology_interval;
    std::vector<pollfd> fds(nodes.size() + 1);
    while (true) {
      Clock::time_point now = Clock::now();
      if (unconfirmed > 0 && now >= confirm_deadline) {
        return absl::DeadlineExceededError("change bus: SSUBSCRIBE not confirmed in time");
      }
      Clock::time_point wake_at = now + std::chrono::hours(1);
      if (unconfirmed > 0) wake_at = std::min(wake_at, confirm_deadline);
      for (Node& node : nodes) {
        if (node.ping_outstanding) {
          if (now - node.ping_sent >= command_timeout) {
            return absl::UnavailableError(
                absl::StrCat("redis ", node.address, ": no answer to PING"));
          }
          wake_at = std::min(wake_at, node.ping_sent + command_timeout);
        } else if (now - node.last_heard >= options_.ping_interval) {
          absl::Status sent = AppendCommand(node.context.get(), node.address, {"PING"});
          if (sent.ok()) sent = FlushContext(node.context.get(), node.address);
          if (!sent.ok()) return sent;
          node.ping_outstanding = true;
          node.ping_sent = now;
          wake_at = std::min(wake_at, now + command_timeout);
        } else {
          wake_at = std::min(wake_at, node.last_heard + options_.ping_interval);
        }
      }
      if (topology_->cluster_mode() && unconfirmed == 0) {
        if (now >= next_topology) {
          next_topology = now + options_.topology_interval;
          absl::StatusOr<std::array<std::string, kChangeBuckets>> map = BucketNodes();
          // A map that cannot be read says nothing: the connections themselves tell a loss.
          if (map.ok() && *map != subscribed_map_) {
            return absl::AbortedError("change bus: a bucket's slot moved to another node");
          }
          continue;
        }
        wake_at = std::min(wake_at, next_topology);
      }

      fds[0] = {wake_[0], POLLIN, 0};
      for (size_t i = 0; i < nodes.size(); ++i) fds[i + 1] = {nodes[i].context->fd, POLLIN, 0};
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now);
      const int ready = poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
      if (ready < 0 && errno != EINTR)
        return absl::InternalError(absl::StrCat("change bus: poll failed, errno ", errno));
      if (stopping()) return absl::OkStatus();
      if (ready <= 0) continue;
      for (size_t i = 0; i < nodes.size(); ++i) {
        if (fds[i + 1].revents == 0) continue;
        Node& node = nodes[i];
        if (redisBufferRead(node.context.get()) != REDIS_OK)
          return ContextError(node.context.get(), node.address, "read");
        node.last_heard = Clock::now();
        node.ping_outstanding = false;  // any traffic shows the connection alive
        while (true) {
          void* raw = nullptr;
          if (redisGetReplyFromReader(node.context.get(), &raw) != REDIS_OK)
            return ContextError(node.context.get(), node.address, "protocol");
          if (raw == nullptr) break;
          Reply reply(static_cast<redisReply*>(raw));
          absl::Status handled = Handle(node, *reply, &unconfirmed);
          if (!handled.ok()) return handled;
          if (unconfirmed == 0 && !*complete) {
            *complete = true;
            Subscribed(resubscription);
          }
        }
      }
    }
  }

  absl::Status Handle(const Node& node, const redisReply& reply, int* unconfirmed) {
    if (reply.type == REDIS_REPLY_ERROR) {
      // MOVED: the map was stale; anything else (CLUSTERDOWN, NOPERM, ...) also ends this round.
      return absl::UnavailableError(absl::StrCat(
          "redis ", node.address, ": SSUBSCRIBE: ", std::string(ReplyText(&reply).substr(0, 128))));
    }
    if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 2 ||
        reply.element[0]->type != REDIS_REPLY_STRING) {
      return absl::OkStatus();
    }
    const std::string_view kind = ReplyText(reply.element[0]);
    if (kind == "smessage" && reply.elements == 3) {
      Deliver(ReplyText(reply.element[2]));
    } else if (kind == "ssubscribe") {
      --*unconfirmed;
    } else if (kind == "sunsubscribe") {
      // The node gave the channel's slot away (a migration, or it became a replica).
      return absl::AbortedError(absl::StrCat("redis ", node.address, ": unsubscribed from ",
                                             std::string(ReplyText(reply.element[1]))));
    }
    return absl::OkStatus();  // "pong"
  }

  void Deliver(std::string_view message) {
    std::string origin;
    Change change;
    if (!DecodeMessage(message, &origin, &change)) {
      counters_->malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (origin == options_.process_id) {
      counters_->own_ignored.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    counters_->received.fetch_add(1, std::memory_order_relaxed);
    observer_->OnChange(change);
  }

  void Subscribed(bool resubscription) {
    counters_->subscriptions.fetch_add(1, std::memory_order_relaxed);
    {
      absl::MutexLock lock(&mu_);
      subscribed_once_ = true;
    }
    if (resubscription) {
      PERPER_LOG_INFO(Logger::kStorage, "change bus: subscribed again to every bucket");
      DeliverResync();
    }
  }

  void DeliverResync() {
    Change resync;
    resync.kind = Change::Kind::kResync;
    observer_->OnChange(resync);
  }

  const ChangeBusOptions& options_;
  ChangeObserver* const observer_;
  Counters* const counters_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool subscribed_once_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_) = absl::UnavailableError("not tried yet");

  int wake_[2] = {-1, -1};  // written once to stop the thread
  std::thread thread_;
  // Subscriber thread only (and Start, before the thread exists).
  std::unique_ptr<ClusterClient> topology_;
  std::array<std::string, kChangeBuckets> subscribed_map_;
};

// ---------------------------------------------------------------------------------------------
// ChangeBus

void RedisNotifier::Notify(const Change& change) const {
  NotifyLocal(change);
  if (ChangeBus* bus = bus_.load(std::memory_order_acquire)) bus->Publish(change);
}

ChangeBusOptions ChangeBus::OptionsOf(const ClientPool& pool) {
  ChangeBusOptions options;
  options.cluster = pool.options().cluster;
  options.process_id = pool.process_id();
  return options;
}

ChangeBus::ChangeBus(ClientPool& pool, RedisNotifier& local)
    : options_(OptionsOf(pool)),
      local_delivery_(std::make_unique<LocalDelivery>(local)),
      observer_(local_delivery_.get()) {}

ChangeBus::ChangeBus(ChangeBusOptions options, ChangeObserver* observer)
    : options_(std::move(options)), observer_(observer) {}

absl::StatusOr<std::unique_ptr<ChangeBus>> ChangeBus::Create(ChangeBusOptions options,
                                                             ChangeObserver* observer) {
  auto bus = std::make_unique<ChangeBus>(std::move(options), observer);
  if (absl::Status started = bus->Start(); !started.ok()) return started;
  return bus;
}

absl::Status ChangeBus::Start() {
  if (options_.process_id.empty())
    return absl::InvalidArgumentError("change bus: empty process id");
  if (observer_ == nullptr) return absl::InvalidArgumentError("change bus: no observer");
  if (subscriber_ != nullptr) return absl::FailedPreconditionError("change bus: started twice");
  absl::StatusOr<std::unique_ptr<ClusterClient>> topology = ClusterClient::Create(options_.cluster);
  if (!topology.ok()) return topology.status();
  publish_topology_ = *std::move(topology);
  subscriber_ = std::make_unique<Subscriber>(options_, observer_, &counters_);
  if (absl::Status started = subscriber_->Start(); !started.ok()) return started;
  publisher_ = std::thread([this] { PublishLoop(); });
  return absl::OkStatus();
}

ChangeBus::~ChangeBus() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (publisher_.joinable()) publisher_.join();
  subscriber_.reset();
}

void ChangeBus::Publish(const Change& change) {
  if (change.kind == Change::Kind::kResync) return;
  Queued queued{Bucket(change), EncodeMessage(options_.process_id, change)};
  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || queue_.size() < std::max<size_t>(options_.max_queued, 1);
  };
  mu_.Await(absl::Condition(&room));
  if (stopping_) {
    counters_.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queue_.push_back(std::move(queued));
}

ChangeBusStats ChangeBus::stats() const {
  ChangeBusStats s;
  s.published = counters_.published.load();
  s.publish_rounds = counters_.publish_rounds.load();
  s.dropped = counters_.dropped.load();
  s.received = counters_.received.load();
  s.own_ignored = counters_.own_ignored.load();
  s.malformed = counters_.malformed.load();
  s.subscriptions = counters_.subscriptions.load();
  s.losses = counters_.losses.load();
  return s;
}

void ChangeBus::PublishLoop() {
  while (true) {
    std::deque<Queued> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, nothing left
      const size_t n = std::min(queue_.size(), std::max<size_t>(options_.max_batch, 1));
      batch.insert(batch.end(), std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    }
    if (!PublishBatch(std::move(batch))) {
      // Stopping and Redis does not answer: one attempt per remaining batch could take a
      // connect timeout each, so the rest is dropped at once.
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        counters_.dropped.fetch_add(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
        queue_.clear();
        return;
      }
    }
  }
}

bool ChangeBus::PublisherWait(std::chrono::milliseconds delay) {
  absl::MutexLock lock(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::FromChrono(delay));
}

bool ChangeBus::PublishBatch(std::deque<Queued> batch) {
  std::vector<Queued> pending(std::make_move_iterator(batch.begin()),
                              std::make_move_iterator(batch.end()));
  const Clock::time_point deadline = Clock::now() + options_.publish_retry_deadline;
  std::chrono::milliseconds backoff = options_.min_backoff;
  std::string last_error;
  while (true) {
    if (publish_map_stale_) {
      if (publish_topology_->cluster_mode()) (void)publish_topology_->RefreshSlots();
      for (int b = 0; b < kChangeBuckets; ++b)
        publish_nodes_[b] = publish_topology_->NodeForSlot(BucketChannels().slot[b]);
      publish_map_stale_ = false;
    }
    // Group by node, keeping each group in Publish order (so each channel's order holds).
    std::vector<std::pair<std::string, std::vector<size_t>>> groups;
    for (size_t i = 0; i < pending.size(); ++i) {
      const std::string& node = publish_nodes_[pending[i].bucket];
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const auto& g) { return g.first == node; });
      if (it == groups.end()) {
        groups.emplace_back(node, std::vector<size_t>{});
        it = groups.end() - 1;
      }
      it->second.push_back(i);
    }
    std::vector<bool> again(pending.size(), false);
    for (const auto& [node, items] : groups) {
      auto fail_all = [&, &items = items](std::string error) {
        for (size_t i : items) again[i] = true;
        publish_map_stale_ = true;
        last_error = std::move(error);
      };
      std::string host;
      int port = 0;
      if (node.empty() || !SplitAddress(node, &host, &port)) {
        fail_all("no node serves the bucket's slot");
        continue;
      }
      std::unique_ptr<RedisConnection>& connection = publish_connections_[node];
      if (connection == nullptr || connection->broken()) {
        absl::StatusOr<std::unique_ptr<RedisConnection>> connected =
            RedisConnection::Connect(host, port, options_.cluster.connection);
        if (!connected.ok()) {
          connection.reset();
          fail_all(std::string(connected.status().message()));
          continue;
        }
        connection = *std::move(connected);
      }
      std::vector<std::vector<std::string_view>> commands;
      commands.reserve(items.size());
      for (size_t i : items) {
        commands.push_back(
            {"SPUBLISH", BucketChannels().name[pending[i].bucket], pending[i].message});
      }
      counters_.publish_rounds.fetch_add(1, std::memory_order_relaxed);
      absl::StatusOr<std::vector<RedisReply>> replies = connection->Pipeline(commands);
      if (!replies.ok()) {
        // Some may have run before the connection broke: they are sent again (a duplicate hint).
        connection.reset();
        fail_all(std::string(replies.status().message()));
        continue;
      }
      for (size_t k = 0; k < items.size(); ++k) {
        const RedisReply& reply = (*replies)[k];
        if (!reply.is_error()) {
          counters_.published.fetch_add(1, std::memory_order_relaxed);
        } else if (Retryable(reply.str)) {
          again[items[k]] = true;
          publish_map_stale_ = true;
          last_error = absl::StrCat("redis ", node, ": ", reply.str.substr(0, 128));
        } else {
          // NOPERM, an unknown command (Redis before 7), ...: sending again will not help.
          counters_.dropped.fetch_add(1, std::memory_order_relaxed);
          if (publish_refused_logged_++ % 10000 == 0) {
            PERPER_LOG_ERROR(Logger::kStorage, "change bus: redis {} refused SPUBLISH: {}", node,
                             reply.str.substr(0, 128));
          }
        }
      }
    }
    std::vector<Queued> next;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (again[i]) next.push_back(std::move(pending[i]));
    }
    pending = std::move(next);
    if (pending.empty()) return true;
    if (Clock::now() + backoff >= deadline || !PublisherWait(backoff)) {
      counters_.dropped.fetch_add(static_cast<int64_t>(pending.size()), std::memory_order_relaxed);
      PERPER_LOG_WARN(Logger::kStorage, "change bus: {} changes not published: {}", pending.size(),
                      last_error);
      return false;
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

}  // namespace perper::storage::redis
