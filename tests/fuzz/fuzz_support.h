// SPDX-License-Identifier: MIT
// Support of the Fabric fuzz tests: a seeded generator of grpc2 request messages (by protobuf
// reflection, over every RPC of every service), raw calls over grpc::GenericStub (so that
// unparsable bytes can be sent too), and a worker that completes the executions of the fuzz
// agents so that calls which wait for a result can finish.
//
//   RequestGenerator gen(seed);
//   auto request = gen.Generate(*method.input_type());          // a message of that type
//   RawCall call(stub, "/perper.grpc2.FabricStreams/Create", std::chrono::seconds(5));
//   call.Start(); call.Write(request->SerializeAsString()); call.WritesDone();
//   std::optional<grpc::Status> status = call.Finish(std::chrono::seconds(6));
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "perper/grpc2/executions.grpc.pb.h"

namespace perper::testing::fuzz {

// The services the fuzzer covers, by full name.
const std::vector<std::string>& ServiceNames();

// One RPC: its descriptor, its gRPC path and whether it may wait indefinitely by design
// (GetResult, WaitForListener and the FabricInstances calls wait for another party).
struct MethodInfo {
  const google::protobuf::MethodDescriptor* method = nullptr;
  std::string name;  // "FabricStreams.Create"
  std::string path;  // "/perper.grpc2.FabricStreams/Create"
  bool waits = false;
  // Seed requests from the corpus folder <Service>.<Method>: parsed messages and raw bytes.
  std::vector<std::unique_ptr<google::protobuf::Message>> corpus;
  std::vector<std::string> raw_corpus;
};

// Every RPC of ServiceNames(), with its corpus loaded from `corpus_dir` (may be empty or
// missing). Files: *.textproto (text format of the request) and *.bin (raw request bytes).
std::vector<MethodInfo> LoadMethods(const std::string& corpus_dir);

// A request shown for a failure report: text format, or hex of raw bytes; at most `max` bytes.
std::string Describe(const google::protobuf::Message* request, const std::string& bytes,
                     size_t max = 1500);

// The agent types the worker serves, and the other agent names requests draw from.
inline constexpr const char* kServedAgents[] = {"FuzzA", "FuzzB"};

// Deterministic generator of request messages: the same seed gives the same sequence.
// IDs come mostly from small pools, so that calls hit objects earlier calls created.
// Thread safety: thread-compatible (one generator per thread).
class RequestGenerator {
 public:
  explicit RequestGenerator(uint64_t seed) : rng_(seed) {}

  // The longest "long" string or bytes value generated (default about 20 KB). A smaller cap
  // looks past defects that only long IDs trigger.
  void set_max_long(size_t bytes) { max_long_ = std::max<size_t>(bytes, 1); }

  uint64_t Next() { return rng_(); }
  // A number in [0, n); n > 0.
  uint64_t Below(uint64_t n) { return rng_() % n; }
  bool Chance(int percent) { return Below(100) < static_cast<uint64_t>(percent); }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Below(items.size())];
  }

  // A fresh message of `type`, filled at random.
  std::unique_ptr<google::protobuf::Message> Generate(const google::protobuf::Descriptor& type);
  // Regenerates, clears or extends a few fields of `message` in place.
  void Mutate(google::protobuf::Message* message);
  // Flips, inserts, deletes or truncates bytes.
  std::string MutateBytes(std::string bytes);
  // Bytes that `type` cannot parse (checked).
  std::string Unparsable(const google::protobuf::Descriptor& type);

  // Pool IDs by kind: "execution", "stream", "dictionary", "list", "instance", "agent", ...
  std::string Id(const std::string& kind);
  std::string RandomText(size_t max_length);
  std::string RandomBytes(size_t max_length);
  google::protobuf::Any RandomAny(int depth);

 private:
  void Fill(google::protobuf::Message* message, int depth);
  void SetField(google::protobuf::Message* message, const google::protobuf::FieldDescriptor* field,
                int depth);
  void AddOrSet(google::protobuf::Message* message, const google::protobuf::FieldDescriptor* field,
                int depth);
  std::string StringFor(const google::protobuf::FieldDescriptor* field);
  int64_t IntFor(const google::protobuf::FieldDescriptor* field);
  size_t LongLength() { return std::min<size_t>(1000 + Below(19000), max_long_); }

  std::mt19937_64 rng_;
  size_t max_long_ = 20000;
};

// One call over the generic API, driven step by step on its own completion queue. Each step
// waits at most its `wait`; a step that did not complete in time stays outstanding (the
// destructor cancels the call and drains it).
// Thread safety: thread-compatible; one thread drives a call.
class RawCall {
 public:
  enum class Outcome { kOk, kFailed, kTimeout };

  // `deadline`: the call's gRPC deadline, counted from now.
  RawCall(grpc::GenericStub& stub, const std::string& path, std::chrono::milliseconds deadline);
  ~RawCall();
  RawCall(const RawCall&) = delete;
  RawCall& operator=(const RawCall&) = delete;

  Outcome Start(std::chrono::milliseconds wait = std::chrono::seconds(5));
  Outcome Write(const std::string& bytes, std::chrono::milliseconds wait = std::chrono::seconds(5));
  Outcome WritesDone(std::chrono::milliseconds wait = std::chrono::seconds(5));
  Outcome Read(std::string* bytes, std::chrono::milliseconds wait);
  // The call's status, or nullopt when none came within `wait`. Call at most once.
  std::optional<grpc::Status> Finish(std::chrono::milliseconds wait);
  void Cancel() { context_.TryCancel(); }
  // Whether an earlier Finish returned a status.
  bool finished() const { return finished_; }
  const std::string& path() const { return path_; }

 private:
  enum Tag : intptr_t { kStart = 1, kWrite, kWritesDone, kRead, kFinish };
  Outcome Await(Tag tag, std::chrono::milliseconds wait);

  std::string path_;
  grpc::ClientContext context_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  grpc::ByteBuffer read_buffer_;
  grpc::Status status_;
  std::set<intptr_t> outstanding_;
  bool started_ = false;
  bool finish_started_ = false;
  bool finished_ = false;
};

// Listens for the executions of kServedAgents and completes each one (with a result, sometimes
// with an error), so that CreateAndStart, StopAndDelete and Call on those agents can finish.
// Thread safety: construct and destroy from one thread; the worker threads are internal.
class ExecutionWorker {
 public:
  ExecutionWorker(std::shared_ptr<grpc::Channel> channel, uint64_t seed);
  ~ExecutionWorker();

 private:
  void Serve(const std::string& agent, uint64_t seed);

  std::shared_ptr<grpc::Channel> channel_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace perper::testing::fuzz
