// SPDX-License-Identifier: MIT
// A minimal client of the grpc2 protocol for the benchmarks: one synchronous method per
// operation a workload needs, and a reserving execution loop for agents and workers. It stands
// in for the C++ agent SDK; each method maps to one RPC so it can later be swapped for the SDK.
//
// Thread safety: a RawFabricClient may be used from many threads at once (gRPC stubs are).
#ifndef PERPER_BENCHMARKS_RAW_FABRIC_CLIENT_H_
#define PERPER_BENCHMARKS_RAW_FABRIC_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace perper::bench {

// Packs bytes as a google.protobuf.BytesValue in an Any.
google::protobuf::Any PackBytes(const std::string& bytes);
// The bytes of a BytesValue Any (empty when it is something else).
std::string UnpackBytes(const google::protobuf::Any& any);

// Opens a channel of its own (not shared with other channels to the same address).
std::shared_ptr<grpc::Channel> OpenChannel(const std::string& address);

class RawFabricClient {
 public:
  explicit RawFabricClient(const std::string& address);

  // FabricInstances.Call: the whole call in one round trip; returns the first result's bytes.
  grpc::Status Call(const std::string& execution, const std::string& agent,
                    const std::string& instance, const std::string& delegate,
                    const std::string& argument, std::string& result);
  grpc::Status CreateExecution(const std::string& execution, const std::string& agent,
                               const std::string& instance, const std::string& delegate,
                               const std::string& argument);
  // Waits for the execution to finish; with `wait_for_creation`, also for it to be created.
  grpc::Status GetResult(const std::string& execution, std::string& result,
                         bool wait_for_creation = false);
  grpc::Status DeleteExecution(const std::string& execution);
  grpc::Status CompleteExecution(const std::string& execution, const std::string& result);
  // The number of unfinished executions of `agent` (at most `limit`).
  grpc::Status CountUnfinished(const std::string& agent, uint32_t limit, size_t& count);

  grpc::Status CreateStream(const std::string& stream, bool ephemeral);
  grpc::Status WriteItem(const std::string& stream, const std::string& value);
  grpc::Status WriteItems(const std::string& stream, const std::vector<std::string>& values);
  grpc::Status CompleteStream(const std::string& stream);
  // Reads every item from key 0 until the stream completes, calling `on_item(key, value)`.
  // Acks every `ack_every` items through ListenItemsAndMove under `listener` when ack_every > 0.
  // Asks for up to `items_per_message` items per response (max_items_per_message).
  grpc::Status ListenAll(const std::string& stream, const std::string& listener, int ack_every,
                         const std::function<void(int64_t, const std::string&)>& on_item,
                         int items_per_message = 1);
  // FabricIntrospection.ListStreams: the stored item count and listener count of `stream`.
  grpc::Status StreamInfo(const std::string& stream, uint64_t& items, size_t& listeners);

  grpc::Status DictionarySet(const std::string& dictionary, const std::string& key,
                             const std::string& value);
  grpc::Status DictionaryGet(const std::string& dictionary, const std::string& key,
                             std::string& value);

  perper::grpc2::FabricExecutions::Stub& executions() { return *executions_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<perper::grpc2::FabricExecutions::Stub> executions_;
  std::unique_ptr<perper::grpc2::FabricInstances::Stub> instances_;
  std::unique_ptr<perper::grpc2::FabricStreams::Stub> streams_;
  std::unique_ptr<perper::grpc2::FabricStatesDictionary::Stub> dictionary_;
  std::unique_ptr<perper::grpc2::FabricIntrospection::Stub> introspection_;
};

// Sends on an open ListenAndReserve call: completions and credits, coalesced (everything
// queued while a write is in flight goes in the next message, as an agent SDK does); the
// caller that finds no write in flight does the write. Thread-safe; usable until the loop
// returns.
class CreditGrant {
 public:
  virtual ~CreditGrant() = default;
  virtual void Grant(uint64_t credits) = 0;
  // Completes an execution on the call (field `completions`) and grants `credits` with it.
  // `sent(ok)` runs once the message carrying it was written (or not), on the writing thread.
  virtual void Complete(perper::grpc2::ExecutionsCompleteRequest completion, uint64_t credits,
                        std::function<void(bool)> sent = nullptr) = 0;
};

// Runs ListenAndReserve for `agent` in `workgroup` with `credits`, calling `handle(execution,
// grant)` on the reading thread as soon as each execution arrives. The handler (or whoever it
// hands the execution to) completes it and grants credits back through `grant`. Returns when
// the call ends.
grpc::Status ReserveLoop(RawFabricClient& client, const std::string& agent,
                         const std::string& workgroup, uint64_t credits,
                         const std::function<void(const perper::grpc2::ExecutionsListenResponse&,
                                                  CreditGrant&)>& handle);

}  // namespace perper::bench

#endif  // PERPER_BENCHMARKS_RAW_FABRIC_CLIENT_H_
