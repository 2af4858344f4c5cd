// SPDX-License-Identifier: MIT
// Fuzzes every RPC of every grpc2 service, and of KEDA's ExternalScaler, of an in-process
// Fabric over real gRPC, on each backend, with seeded random requests (fresh, mutated from the
// corpus in tests/fuzz/corpus, or raw and unparsable bytes) and random ways of driving streaming
// calls (half-close, cancel, silence). Invariants, each reported with the seed, the iteration
// and the request:
//   hang           a unary call does not answer within 5 s (calls that wait by design excepted),
//                  or a call does not end within 5 s of its cancellation;
//   first-message  a client-streaming call without a parsable first message does not end with
//                  INVALID_ARGUMENT within 3 s;
//   status-code    INTERNAL or UNKNOWN from the Fabric (UNKNOWN is a stream's failure on a
//                  stream listen call; INTERNAL is gRPC's own answer to unparsable bytes);
//   status-size    a status message over 1,024 bytes, or one so large that the client got gRPC's
//                  "metadata size exceeds limit" instead;
//   alive          after the run, the Fabric does not answer a simple call.
// A crash (ASan/UBSan report) prints the last cases sent before it.
//
// Environment: PERPER_FUZZ_SEED (default 1), PERPER_FUZZ_SECONDS (default 5),
// PERPER_FUZZ_ITERATIONS (default: unbounded within the time), PERPER_FUZZ_CORPUS (default the
// source tree's tests/fuzz/corpus), PERPER_FUZZ_SAVE_DIR (write each failing request there, as
// a corpus file), PERPER_FUZZ_SKIP (comma-separated Service.Method names not to call, to look
// past a known defect), PERPER_FUZZ_MAX_LONG (the longest long string, default 20000; lower it
// to look past defects of long IDs), PERPER_FUZZ_LOG_LEVEL (the Fabric's log level, default off).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>

#include "perper/common/logging.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/support/fabric_fixture.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace perper::testing::fuzz {
namespace {

namespace pb = google::protobuf;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kAnswerWithin = seconds(5);
// A call without a first message has nothing to wait for: the Fabric can answer at once.
constexpr milliseconds kRejectWithin = seconds(3);
constexpr size_t kMaxStatusMessage = 1024;
constexpr size_t kMaxParked = 6;
constexpr size_t kMaxPrintedFailures = 30;

struct FuzzConfig {
  uint64_t seed = 1;
  milliseconds duration = seconds(5);
  uint64_t max_iterations = 100'000'000;
  std::string corpus_dir = PERPER_FUZZ_CORPUS_DIR;
  std::string save_dir;
  std::set<std::string> skip;
  uint64_t max_long = 20000;
};

FuzzConfig ConfigFromEnv() {
  FuzzConfig config;
  auto number = [](const char* name, uint64_t* out) {
    const char* value = std::getenv(name);
    if (value != nullptr && !absl::SimpleAtoi(value, out)) {
      ADD_FAILURE() << name << " is not a number: " << value;
    }
  };
  number("PERPER_FUZZ_SEED", &config.seed);
  uint64_t seconds_value = 5;
  number("PERPER_FUZZ_SECONDS", &seconds_value);
  config.duration = seconds(seconds_value);
  number("PERPER_FUZZ_ITERATIONS", &config.max_iterations);
  number("PERPER_FUZZ_MAX_LONG", &config.max_long);
  if (const char* dir = std::getenv("PERPER_FUZZ_CORPUS")) config.corpus_dir = dir;
  if (const char* dir = std::getenv("PERPER_FUZZ_SAVE_DIR")) config.save_dir = dir;
  if (const char* skip = std::getenv("PERPER_FUZZ_SKIP")) {
    for (absl::string_view name : absl::StrSplit(skip, ',', absl::SkipEmpty())) {
      config.skip.insert(std::string(name));
    }
  }
  return config;
}

// The last cases sent, for the sanitizer's death callback: a crash in the Fabric is reported
// with the cases that led to it. Fixed buffers, so that the dying process only prints.
// Thread safety: Record from one thread; PrintRecent may race with it (best effort, on a crash).
class RecentCases {
 public:
  static constexpr int kCount = 4;
  static constexpr size_t kSize = 2048;

  static void Record(const std::string& text) {
    static int next = 0;
    std::snprintf(cases_[next % kCount], kSize, "%s", text.c_str());
    order_[next % kCount] = next + 1;
    ++next;
  }
  static void PrintRecent() {
    std::fprintf(
        stderr,
        "\n=== fuzz: the last cases sent before this sanitizer report (oldest first) ===\n");
    for (int round = 0; round < kCount; ++round) {
      int oldest = -1;
      for (int i = 0; i < kCount; ++i) {
        if (order_[i] > 0 && (oldest < 0 || order_[i] < order_[oldest])) oldest = i;
      }
      if (oldest < 0) break;
      std::fprintf(stderr, "%s\n", cases_[oldest]);
      order_[oldest] = 0;
    }
  }

 private:
  static inline char cases_[kCount][kSize] = {};
  static inline int order_[kCount] = {};
};

void SilenceProtobufUtf8Errors(pb::LogLevel level, const char* filename, int line,
                               const std::string& message) {
  // Serializing and parsing non-UTF-8 strings is deliberate here.
  if (message.find("UTF-8") != std::string::npos) return;
  std::fprintf(stderr, "[libprotobuf %s:%d] %s\n", filename, line, message.c_str());
}

struct Request {
  std::unique_ptr<pb::Message> message;  // Null for raw bytes.
  std::string bytes;
  bool parsable = true;
};

bool IsStreamListen(const MethodInfo& info) {
  return info.name == "FabricStreams.ListenItems" ||
         info.name == "FabricStreams.ListenItemsAndMove";
}

// Server-streaming calls that end by themselves once they have sent what exists.
bool IsFiniteStream(const MethodInfo& info) {
  const std::string& m = info.method->name();
  return m == "ListItems" || m == "QuerySQL";
}

// One fuzz run against one Fabric.
// Thread safety: thread-compatible; Run drives everything from the calling thread (the
// execution worker has its own threads).
class Fuzzer {
 public:
  Fuzzer(InProcessFabric& fabric, FuzzConfig config, std::string backend)
      : fabric_(fabric),
        config_(std::move(config)),
        backend_(std::move(backend)),
        gen_(config_.seed),
        channel_(fabric.NewChannel()),
        stub_(channel_) {
    gen_.set_max_long(config_.max_long);
  }

  void Run() {
    std::vector<MethodInfo> all = LoadMethods(config_.corpus_dir);
    std::set<std::string> services;
    for (MethodInfo& info : all) {
      services.insert(info.method->service()->full_name());
      if (config_.skip.count(info.name) == 0) methods_.push_back(std::move(info));
    }
    ASSERT_EQ(services.size(), ServiceNames().size()) << "a grpc2 service is not linked in";
    ASSERT_FALSE(methods_.empty());
    size_t corpus_files = 0;
    for (const MethodInfo& info : methods_) {
      corpus_files += info.corpus.size() + info.raw_corpus.size();
    }
    std::fprintf(stderr, "fuzz: backend=%s seed=%llu seconds=%lld methods=%zu corpus files=%zu\n",
                 backend_.c_str(), static_cast<unsigned long long>(config_.seed),
                 static_cast<long long>(config_.duration.count() / 1000), methods_.size(),
                 corpus_files);

    auto worker = std::make_unique<ExecutionWorker>(fabric_.NewChannel(), config_.seed);
    auto end = std::chrono::steady_clock::now() + config_.duration;
    uint64_t iteration = 0;
    for (; iteration < config_.max_iterations && std::chrono::steady_clock::now() < end;
         ++iteration) {
      iteration_ = iteration;
      OneCase();
    }
    while (!parked_.empty()) CloseParked(0);
    worker.reset();
    std::fprintf(stderr, "fuzz: backend=%s seed=%llu ran %llu iterations, %zu failures\n",
                 backend_.c_str(), static_cast<unsigned long long>(config_.seed),
                 static_cast<unsigned long long>(iteration), failure_count_);
    CheckAlive();
    Report();
  }

 private:
  struct Parked {
    const MethodInfo* info;
    std::unique_ptr<RawCall> call;
    std::string description;
  };

  void OneCase() {
    const MethodInfo& info = methods_[gen_.Below(methods_.size())];
    Request request = MakeRequest(info);
    current_ = absl::StrCat("fuzz case: backend=", backend_, " seed=", config_.seed,
                            " iteration=", iteration_, " ", info.name, " ",
                            Describe(request.message.get(), request.bytes, 1500));
    RecentCases::Record(current_);
    request_ = &request;
    bool client_streaming = info.method->client_streaming();
    bool server_streaming = info.method->server_streaming();
    if (client_streaming) {
      Bidi(info, request);
    } else if (server_streaming) {
      ServerStreaming(info, request);
    } else {
      Unary(info, request);
    }
    request_ = nullptr;
    if (!parked_.empty() && gen_.Chance(8)) CloseParked(gen_.Below(parked_.size()));
  }

  Request MakeRequest(const MethodInfo& info) {
    Request request;
    const pb::Descriptor& type = *info.method->input_type();
    uint64_t roll = gen_.Below(100);
    if (roll < 6) {
      if (!info.raw_corpus.empty() && gen_.Chance(50)) {
        request.bytes = gen_.MutateBytes(gen_.Pick(info.raw_corpus));
      } else if (gen_.Chance(50)) {
        request.bytes = gen_.Unparsable(type);
      } else {
        request.bytes = gen_.MutateBytes(gen_.Generate(type)->SerializeAsString());
      }
    } else {
      if (!info.corpus.empty() && roll < 50) {
        const pb::Message& seed = *gen_.Pick(info.corpus);
        request.message.reset(seed.New());
        request.message->CopyFrom(seed);
        if (gen_.Chance(60)) gen_.Mutate(request.message.get());
      } else {
        request.message = gen_.Generate(type);
      }
      request.bytes = request.message->SerializeAsString();
    }
    std::unique_ptr<pb::Message> probe(
        pb::MessageFactory::generated_factory()->GetPrototype(&type)->New());
    request.parsable = probe->ParseFromString(request.bytes);
    return request;
  }

  // How long to wait for an answer: kAnswerWithin (kRejectWithin for a call without a first
  // message), or much less once this kind of failure has
  // been seen (the run goes on looking for other defects instead of waiting on a known one).
  milliseconds Patience(const std::string& invariant, const MethodInfo& info) const {
    auto it = failures_.find(invariant + " " + info.name);
    if (it != failures_.end()) return milliseconds(300);
    return invariant == "first-message" ? kRejectWithin : kAnswerWithin;
  }

  void Unary(const MethodInfo& info, const Request& request) {
    milliseconds deadline = info.waits ? milliseconds(500) : Patience("hang", info);
    RawCall call(stub_, info.path, deadline);
    if (call.Start() == RawCall::Outcome::kTimeout) {
      return Fail("hang", info, "the call did not start within 5 s");
    }
    call.Write(request.bytes);
    call.WritesDone();
    std::optional<grpc::Status> status = call.Finish(deadline + kAnswerWithin);
    if (!status.has_value()) {
      return Fail("hang", info, "no status even 5 s after the call's deadline");
    }
    if (status->error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !info.waits) {
      return Fail("hang", info, "no answer within its deadline (DEADLINE_EXCEEDED)");
    }
    CheckStatus(info, *status, request.parsable);
  }

  void ServerStreaming(const MethodInfo& info, const Request& request) {
    auto call = std::make_unique<RawCall>(stub_, info.path, seconds(60));
    if (call->Start() == RawCall::Outcome::kTimeout) {
      return Fail("hang", info, "the call did not start within 5 s");
    }
    call->Write(request.bytes);
    call->WritesDone();
    if (IsFiniteStream(info)) {
      milliseconds wait = Patience("hang", info);
      std::optional<grpc::Status> status = call->Finish(wait);
      if (!status.has_value()) {
        return Fail("hang", info,
                    absl::StrCat("a finite stream did not end in ", wait.count(), " ms"));
      }
      return CheckStatus(info, *status, request.parsable);
    }
    uint64_t roll = gen_.Below(100);
    if (roll < 35) {
      uint64_t reads = gen_.Below(4);
      for (uint64_t i = 0; i < reads; ++i) {
        if (call->Read(nullptr, milliseconds(100)) != RawCall::Outcome::kOk) break;
      }
      call->Cancel();
      FinishCancelled(info, *call, request.parsable);
    } else if (roll < 55) {
      call->Cancel();
      FinishCancelled(info, *call, request.parsable);
    } else {
      Park(info, std::move(call));
    }
  }

  void Bidi(const MethodInfo& info, const Request& first) {
    auto call = std::make_unique<RawCall>(stub_, info.path, seconds(60));
    if (call->Start() == RawCall::Outcome::kTimeout) {
      return Fail("hang", info, "the call did not start within 5 s");
    }
    uint64_t roll = gen_.Below(100);
    if (roll < 12) {
      // No first message at all: the client half-closes at once.
      current_ = absl::StrCat("fuzz case: backend=", backend_, " seed=", config_.seed,
                              " iteration=", iteration_, " ", info.name,
                              " [no first message: the client half-closed at once]");
      RecentCases::Record(current_);
      request_ = nullptr;  // Nothing was sent: no corpus file to save.
      call->WritesDone();
      return ExpectInvalidArgument(info, *call);
    }
    if (roll < 20 || !first.parsable) {
      // An unparsable first message, the write side left open.
      std::string bytes =
          first.parsable ? gen_.Unparsable(*info.method->input_type()) : first.bytes;
      current_ += " [unparsable first message: " + Describe(nullptr, bytes, 200) + "]";
      Request sent{nullptr, bytes, false};
      request_ = &sent;  // What a corpus file should hold is what was sent.
      call->Write(bytes);
      return ExpectInvalidArgument(info, *call);
    }
    // Everything random is drawn before anything is sent, so that the sequence a seed gives
    // does not depend on how the Fabric answers.
    std::vector<Request> more(gen_.Below(5));
    std::vector<bool> read_after(more.size());
    for (size_t i = 0; i < more.size(); ++i) {
      more[i] = MakeRequest(info);
      read_after[i] = gen_.Chance(50);
      Request& next = more[i];
      if (next.message != nullptr && gen_.Chance(70)) {
        // Later messages mostly carry only what later messages are for.
        const pb::Descriptor* type = next.message->GetDescriptor();
        const pb::Reflection* r = next.message->GetReflection();
        for (const char* name : {"filter", "workgroup", "listen"}) {
          if (const pb::FieldDescriptor* f = type->FindFieldByName(name)) {
            r->ClearField(next.message.get(), f);
          }
        }
        next.bytes = next.message->SerializeAsString();
      }
    }
    call->Write(first.bytes);
    for (size_t i = 0; i < more.size(); ++i) {
      if (!more[i].parsable) continue;  // A later unparsable message is left to the raw cases.
      current_ += " then " + Describe(more[i].message.get(), more[i].bytes, 300);
      if (call->Write(more[i].bytes) != RawCall::Outcome::kOk) break;
      if (read_after[i]) call->Read(nullptr, milliseconds(50));
    }
    RecentCases::Record(current_);
    roll = gen_.Below(100);
    if (roll < 25) {
      call->WritesDone();
      for (int i = 0; i < 3; ++i) {
        if (call->Read(nullptr, milliseconds(100)) != RawCall::Outcome::kOk) break;
      }
      call->Cancel();
      FinishCancelled(info, *call, true);
    } else if (roll < 55) {
      call->Cancel();
      FinishCancelled(info, *call, true);
    } else {
      if (gen_.Chance(30)) call->WritesDone();
      Park(info, std::move(call));
    }
  }

  void ExpectInvalidArgument(const MethodInfo& info, RawCall& call) {
    milliseconds wait = Patience("first-message", info);
    std::optional<grpc::Status> status = call.Finish(wait);
    if (!status.has_value()) {
      return Fail("first-message", info,
                  absl::StrCat("without a parsable first message the call did not end within ",
                               wait.count(), " ms"));
    }
    if (status->error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      Fail("first-message", info,
           absl::StrCat("without a parsable first message the call ended with ",
                        StatusText(*status), ", not INVALID_ARGUMENT"));
    }
    CheckStatus(info, *status, true);
  }

  void FinishCancelled(const MethodInfo& info, RawCall& call, bool parsable) {
    std::optional<grpc::Status> status = call.Finish(kAnswerWithin);
    if (!status.has_value()) return Fail("hang", info, "the call did not end 5 s after cancel");
    CheckStatus(info, *status, parsable);
  }

  void Park(const MethodInfo& info, std::unique_ptr<RawCall> call) {
    parked_.push_back(Parked{&info, std::move(call), current_});
    if (parked_.size() > kMaxParked) CloseParked(0);
  }

  void CloseParked(size_t index) {
    Parked parked = std::move(parked_[index]);
    parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(index));
    std::string saved = std::move(current_);
    current_ =
        parked.description + " [parked, closed at iteration " + std::to_string(iteration_) + "]";
    if (gen_.Chance(50)) {
      for (int i = 0; i < 3; ++i) {
        if (parked.call->Read(nullptr, milliseconds(20)) != RawCall::Outcome::kOk) break;
      }
    }
    parked.call->Cancel();
    FinishCancelled(*parked.info, *parked.call, true);
    current_ = std::move(saved);
  }

  static std::string StatusText(const grpc::Status& status) {
    std::string message = status.error_message();
    size_t size = message.size();
    if (size > 300) message = message.substr(0, 300) + "…";
    return absl::StrCat("code ", static_cast<int>(status.error_code()), " \"", message, "\" (",
                        size, " bytes)");
  }

  void CheckStatus(const MethodInfo& info, const grpc::Status& status, bool parsable) {
    grpc::StatusCode code = status.error_code();
    if (code == grpc::StatusCode::INTERNAL && parsable) {
      Fail("status-code", info, "INTERNAL: " + StatusText(status));
    } else if (code == grpc::StatusCode::UNKNOWN && !IsStreamListen(info)) {
      Fail("status-code", info, "UNKNOWN: " + StatusText(status));
    }
    if (status.error_message().find("metadata size exceeds limit") != std::string::npos) {
      // The Fabric's status was too large for the client's metadata limit: the client got
      // gRPC's complaint instead of the Fabric's answer.
      Fail("status-size", info, "the status did not reach the client: " + StatusText(status));
    } else if (status.error_message().size() > kMaxStatusMessage) {
      Fail("status-size", info,
           absl::StrCat("a status message of ", status.error_message().size(),
                        " bytes: ", StatusText(status)));
    }
  }

  void CheckAlive() {
    auto introspection = grpc2::FabricIntrospection::NewStub(fabric_.NewChannel());
    grpc2::IntrospectionListExecutionsRequest request;
    request.set_limit(1);
    grpc2::IntrospectionListExecutionsResponse response;
    auto context = Context(kAnswerWithin);
    grpc::Status status = introspection->ListExecutions(context.get(), request, &response);
    if (!status.ok()) {
      ADD_FAILURE() << "[alive] after the run (backend=" << backend_ << " seed=" << config_.seed
                    << ") the Fabric did not answer ListExecutions: " << StatusText(status);
    }
  }

  void Fail(const std::string& invariant, const MethodInfo& info, const std::string& detail) {
    ++failure_count_;
    std::string key = invariant + " " + info.name;
    std::string text = absl::StrCat("[", invariant, "] ", info.name, ": ", detail,
                                    "\n  reproduce: PERPER_FUZZ_SEED=", config_.seed,
                                    " PERPER_FUZZ_ITERATIONS=", iteration_ + 1, " (backend ",
                                    backend_, ")\n  ", current_);
    if (failure_count_ <= kMaxPrintedFailures) std::fprintf(stderr, "%s\n", text.c_str());
    auto [it, inserted] = failures_.try_emplace(key, text, 0);
    ++it->second.second;
    if (inserted && !config_.save_dir.empty()) SaveCase(info);
  }

  // Writes the case's request where PERPER_FUZZ_SAVE_DIR says, as a corpus file
  // (<Service>.<Method>/seed<S>-<backend>-<iteration>.textproto, or .bin for raw bytes).
  void SaveCase(const MethodInfo& info) {
    if (request_ == nullptr) return;
    std::filesystem::path dir = std::filesystem::path(config_.save_dir) / info.name;
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    std::string name = absl::StrCat("seed", config_.seed, "-", backend_, "-", iteration_);
    if (request_->message != nullptr) {
      std::string text;
      pb::TextFormat::PrintToString(*request_->message, &text);
      std::ofstream(dir / (name + ".textproto")) << text;
    } else {
      std::ofstream(dir / (name + ".bin"), std::ios::binary) << request_->bytes;
    }
  }

  void Report() {
    size_t reported = 0;
    for (const auto& [key, failure] : failures_) {
      if (++reported > kMaxPrintedFailures) break;
      ADD_FAILURE() << failure.first << "\n  (" << failure.second << " failure(s) of this kind)";
    }
  }

  InProcessFabric& fabric_;
  FuzzConfig config_;
  std::string backend_;
  RequestGenerator gen_;
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  std::vector<MethodInfo> methods_;
  std::deque<Parked> parked_;
  uint64_t iteration_ = 0;
  std::string current_;
  const Request* request_ = nullptr;  // The case's (first) request while it runs.
  size_t failure_count_ = 0;
  // By "invariant method": the first failure's text and how many there were.
  std::map<std::string, std::pair<std::string, size_t>> failures_;
};

class FabricFuzzTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    pb::SetLogHandler(&SilenceProtobufUtf8Errors);
    const char* level = std::getenv("PERPER_FUZZ_LOG_LEVEL");
    (void)SetLogLevel(level != nullptr ? level : "off");
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(&RecentCases::PrintRecent);
#endif
  }
};

TEST_P(FabricFuzzTest, RandomRequests) {
  InProcessFabric fabric(GetParam());
  Fuzzer fuzzer(fabric, ConfigFromEnv(), GetParam());
  fuzzer.Run();
}

INSTANTIATE_TEST_SUITE_P(Backends, FabricFuzzTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing::fuzz
