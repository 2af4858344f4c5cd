// SPDX-License-Identifier: MIT
// Passes store changes between the Fabric processes that share one Redis deployment, over
// sharded pub/sub (SPUBLISH / SSUBSCRIBE) on 16 bucket channels, so that a call waiting in one
// process wakes up when another process commits what it waits for.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "perper/storage/change.h"
#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/cluster_client.h"
#include "perper/storage/redis/redis_notifier.h"

namespace perper::storage::redis {

// Changes are spread over this many channels: enough to use every master of a small cluster,
// few enough that one subscriber connection per master subscribes to them all cheaply.
inline constexpr int kChangeBuckets = 16;

struct ChangeBusOptions {
  // The deployment (seeds, AUTH, connect and command timeouts).
  ClusterOptions cluster;
  // This process's ID (ClientPool::process_id()): published with every change, and changes
  // carrying it are not delivered back.
  std::string process_id;
  // At most this many changes go into one round of pipelined SPUBLISHes.
  size_t max_batch = 512;
  // Publish blocks while this many changes wait: the caller then runs at the speed of Redis
  // instead of growing the queue without bound while a node is down.
  size_t max_queued = 100000;
  // How long the publisher keeps retrying a change whose node is unreachable (a failover takes
  // cluster-node-timeout plus an election) before dropping it. A subscriber of that node lost
  // its subscription too, so it resynchronises anyway.
  std::chrono::milliseconds publish_retry_deadline{15000};
  // Back-off between attempts to publish or to subscribe again, doubling up to the maximum.
  std::chrono::milliseconds min_backoff{20};
  std::chrono::milliseconds max_backoff{1000};
  // Liveness of a subscription: a PING is sent after this much silence, and the connection is
  // given up when nothing answers within cluster.connection.command_timeout.
  std::chrono::milliseconds ping_interval{1000};
  // Cluster mode: how often the slot map is read again, to notice a bucket whose slot moved
  // without the old owner telling its subscribers.
  std::chrono::milliseconds topology_interval{5000};
  // Start fails when the first subscription to every bucket is not done within this time.
  std::chrono::milliseconds start_timeout{10000};
};

// Counters, for tests and metrics.
struct ChangeBusStats {
  int64_t published = 0;       // changes confirmed by Redis
  int64_t publish_rounds = 0;  // pipelined rounds (one per node per batch)
  int64_t dropped = 0;         // changes given up after publish_retry_deadline or at stop
  int64_t received = 0;        // changes from other processes passed to the observer
  int64_t own_ignored = 0;     // messages from this process
  int64_t malformed = 0;       // messages that did not decode
  int64_t subscriptions = 0;   // complete subscriptions to every bucket (the first included)
  int64_t losses = 0;          // complete subscriptions that were lost afterwards
};

// Publishes the changes of this process and delivers those of the others.
//
// Publishing: Publish queues; one thread takes what is queued (up to max_batch), groups it by
// the master owning each bucket channel's slot and pipelines SPUBLISHes to each. A change whose
// node answered MOVED, CLUSTERDOWN or not at all is sent again, in order, after the slot map is
// reloaded, until publish_retry_deadline. A message therefore can arrive twice (the node may
// have run it before the connection broke); changes are hints, so that is harmless.
// Ordering: the changes of one topic key (execution changes: the agent; stream changes: the
// stream) use one channel, published in Publish order; Redis keeps a channel's order.
//
// Subscribing: one thread holds one connection per master owning some bucket, SSUBSCRIBEs each
// bucket channel there and polls them all (plus a wake-up pipe, so stopping is immediate). When
// a connection breaks or stays silent past a PING, a bucket's slot moves (the node answers MOVED
// or sends sunsubscribe, or the map read every topology_interval changed), it closes all of
// them, reloads the map and subscribes again with back-off. It delivers Change::Kind::kResync
// twice: when the subscription is lost (waiting calls re-read now, and learn if Redis is gone)
// and once every bucket is subscribed again (changes published in between were lost).
// Standalone Redis works the same with one node.
//
// Delivery: the observer's OnChange is called on the subscriber thread, with no lock held, for
// every change from another process and for kResync. It must not block for long (it delays all
// later deliveries) and must outlive the bus.
//
// Cost: on a loopback standalone Redis 7.0 (2 shared, busy cores), one change takes 70-125 us
// median, 150 us to 1.3 ms p99, from Publish to the other process's observer; a burst reaches
// 150,000-350,000 changes/s, standalone or on a 3-master cluster (redis_change_bus_test,
// ThroughputAndLatency, prints the figures).
//
// Thread safety: Publish and stats may be called from any thread. Destroying the bus stops both
// threads: queued changes get one publishing attempt without retries, then the connections close.
// This takes at most about one connect plus one command timeout, usually no time.
class ChangeBus {
 public:
  // The bus of a RedisStore: the pool's deployment and process ID, default options; changes of
  // other processes (and kResync) go to `local.NotifyLocal`. Both outlive the bus.
  ChangeBus(ClientPool& pool, RedisNotifier& local);
  // A bus on its own: the observer outlives it.
  ChangeBus(ChangeBusOptions options, ChangeObserver* observer);
  // Constructs and starts.
  static absl::StatusOr<std::unique_ptr<ChangeBus>> Create(ChangeBusOptions options,
                                                           ChangeObserver* observer);
  ~ChangeBus();
  ChangeBus(const ChangeBus&) = delete;
  ChangeBus& operator=(const ChangeBus&) = delete;

  // Connects, subscribes to every bucket (waiting up to start_timeout), and starts the threads;
  // once. A change another process publishes after Start returns reaches the observer.
  absl::Status Start();

  // Queues `change` for the other processes. kResync is local only and not queued. Blocks only
  // while max_queued changes are waiting.
  void Publish(const Change& change);

  ChangeBusStats stats() const;

  // The wire format, exposed for tests.
  static std::string_view TopicKey(const Change& change);
  static int Bucket(const Change& change);
  static std::string Channel(int bucket);  // "perper:changes:{b<N>}"
  static std::string EncodeMessage(std::string_view origin, const Change& change);
  // False for a message that is not a well-formed change (then `origin` and `change` are
  // unspecified).
  static bool DecodeMessage(std::string_view message, std::string* origin, Change* change);

 private:
  struct Queued {
    int bucket;
    std::string message;
  };
  struct Counters {
    std::atomic<int64_t> published{0}, publish_rounds{0}, dropped{0}, received{0}, own_ignored{0},
        malformed{0}, subscriptions{0}, losses{0};
  };
  class Subscriber;

  // Passes the bus's deliveries to a RedisNotifier's local observer.
  class LocalDelivery : public ChangeObserver {
   public:
    explicit LocalDelivery(RedisNotifier& local) : local_(local) {}
    void OnChange(const Change& change) override { local_.NotifyLocal(change); }

   private:
    RedisNotifier& local_;
  };

  static ChangeBusOptions OptionsOf(const ClientPool& pool);
  void PublishLoop();
  // False when changes had to be dropped because their node did not answer in time.
  bool PublishBatch(std::deque<Queued> batch);
  // Waits `delay` unless the bus stops first; false when it stops.
  bool PublisherWait(std::chrono::milliseconds delay);

  const ChangeBusOptions options_;
  std::unique_ptr<LocalDelivery> local_delivery_;  // set when delivering to a RedisNotifier
  ChangeObserver* const observer_;
  Counters counters_;

  mutable absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Publisher thread only.
  std::unique_ptr<ClusterClient> publish_topology_;
  std::array<std::string, kChangeBuckets> publish_nodes_;  // bucket → "host:port"
  bool publish_map_stale_ = true;
  absl::flat_hash_map<std::string, std::unique_ptr<RedisConnection>> publish_connections_;
  int64_t publish_refused_logged_ = 0;

  std::unique_ptr<Subscriber> subscriber_;
  std::thread publisher_;
};

}  // namespace perper::storage::redis
