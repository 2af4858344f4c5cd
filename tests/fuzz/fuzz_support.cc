// SPDX-License-Identifier: MIT
#include "tests/fuzz/fuzz_support.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include "perper/common/files.h"
#include "perper/grpc2/descriptors.grpc.pb.h"
#include "perper/grpc2/instances.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/states.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace perper::testing::fuzz {

namespace pb = google::protobuf;
using FD = pb::FieldDescriptor;

const std::vector<std::string>& ServiceNames() {
  static const auto* names = new std::vector<std::string>{
      "perper.grpc2.FabricExecutions",    "perper.grpc2.FabricInstances",
      "perper.grpc2.FabricStreams",       "perper.grpc2.FabricStatesDictionary",
      "perper.grpc2.FabricStatesList",    "perper.grpc2.FabricProtobufDescriptors",
      "perper.grpc2.FabricIntrospection", "externalscaler.ExternalScaler"};
  return *names;
}

namespace {

// Pools of IDs by kind. Instances are executions too, linked streams share their producer's ID,
// and an instance's dictionary and children list are "{instance}-" and "{instance}-children".
const std::map<std::string, std::vector<std::string>>& Pools() {
  static const auto* pools = new std::map<std::string, std::vector<std::string>>{
      {"execution", {"e0", "e1", "e2", "e3", "i0", "i1", "i2"}},
      {"stream", {"s0", "s1", "s2", "s3", "e0", "e1"}},
      {"dictionary", {"d0", "d1", "d2", "i0-", "i1-"}},
      {"list", {"l0", "l1", "l2", "i0-children", "i1-children", "i2-children"}},
      {"instance", {"i0", "i1", "i2", "i3"}},
      {"agent", {"FuzzA", "FuzzB", "Registry", "FuzzIdle"}},
      {"delegate", {"Run", "Start", "Stop", "f", ""}},
      {"listener_name", {"L0", "L1", "L2"}},
      {"workgroup", {"w0", "w1", ""}},
      {"type_url",
       {"type.googleapis.com/fuzz.T0", "type.googleapis.com/google.protobuf.Int64Value", "x"}},
      // KEDA's ScaledObjectRef.scalerMetadata: its keys, and values for them (agents and
      // targets, good and bad).
      {"keda_key", {"agent", "targetExecutions", "targetInstances", "x"}},
      {"keda_value", {"FuzzA", "FuzzB", "1", "5", "0", "-1", "many"}},
  };
  return *pools;
}

// The pool of a string field, by its name and its message; empty when the field is free text.
std::string PoolKind(const FD* field) {
  const std::string& name = field->name();
  const std::string& owner = field->containing_type()->name();
  if (owner == "PerperExecution" && name == "execution") return "execution";
  if (owner == "PerperStream" && name == "stream") return "stream";
  if (owner == "PerperDictionary" && name == "dictionary") return "dictionary";
  if (owner == "PerperList" && name == "list") return "list";
  if (name == "instance") return "instance";
  if (name == "agent") return "agent";
  if (name == "delegate") return "delegate";
  if (name == "listener_name") return "listener_name";
  if (name == "workgroup") return "workgroup";
  if (name == "type_url") return "type_url";
  if (name == "stream_prefix") return "stream";
  if (name == "name_prefix") return "dictionary";
  if (owner == "ScalerMetadataEntry") return name == "key" ? "keda_key" : "keda_value";
  return "";
}

}  // namespace

std::vector<MethodInfo> LoadMethods(const std::string& corpus_dir) {
  std::vector<MethodInfo> methods;
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  pb::MessageFactory* factory = pb::MessageFactory::generated_factory();
  for (const std::string& service_name : ServiceNames()) {
    const pb::ServiceDescriptor* service = pool->FindServiceByName(service_name);
    if (service == nullptr) continue;  // The caller checks that every service is present.
    for (int i = 0; i < service->method_count(); ++i) {
      MethodInfo info;
      info.method = service->method(i);
      info.name = absl::StrCat(service->name(), ".", info.method->name());
      info.path = absl::StrCat("/", service->full_name(), "/", info.method->name());
      const std::string& m = info.method->name();
      info.waits =
          m == "GetResult" || m == "WaitForListener" || service->name() == "FabricInstances";
      std::filesystem::path dir = std::filesystem::path(corpus_dir) / info.name;
      std::error_code error;
      if (!corpus_dir.empty() && std::filesystem::is_directory(dir, error)) {
        std::vector<std::filesystem::path> files;
        for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
          files.push_back(entry.path());
        }
        std::sort(files.begin(), files.end());  // Deterministic order.
        for (const auto& file : files) {
          std::string content = ReadWholeFile(file.string());
          if (file.extension() == ".bin") {
            info.raw_corpus.push_back(std::move(content));
          } else if (file.extension() == ".textproto") {
            std::unique_ptr<pb::Message> message(
                factory->GetPrototype(info.method->input_type())->New());
            if (pb::TextFormat::ParseFromString(content, message.get())) {
              info.corpus.push_back(std::move(message));
            } else {
              ADD_FAILURE() << "corpus file does not parse as "
                            << info.method->input_type()->full_name() << ": " << file;
            }
          }
        }
      }
      methods.push_back(std::move(info));
    }
  }
  return methods;
}

std::string Describe(const pb::Message* request, const std::string& bytes, size_t max) {
  std::string text;
  if (request != nullptr) {
    pb::TextFormat::Printer printer;
    printer.SetSingleLineMode(true);
    printer.SetTruncateStringFieldLongerThan(200);
    printer.PrintToString(*request, &text);
    text = absl::StrCat(request->GetDescriptor()->name(), " { ", text, "}");
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    text = absl::StrCat("raw ", bytes.size(), " bytes: ");
    for (size_t i = 0; i < bytes.size() && text.size() < max; ++i) {
      unsigned char c = static_cast<unsigned char>(bytes[i]);
      text += kHex[c >> 4];
      text += kHex[c & 15];
    }
  }
  if (text.size() > max) text = absl::StrCat(text.substr(0, max), "…");
  return text;
}

// ---------------------------------------------------------------------------------------------
// RequestGenerator

std::string RequestGenerator::Id(const std::string& kind) {
  auto it = Pools().find(kind);
  if (it == Pools().end()) return RandomText(12);
  return Pick(it->second);
}

std::string RequestGenerator::RandomText(size_t max_length) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789-_./:{}";
  size_t length = Below(max_length + 1);
  std::string text(length, 'a');
  for (char& c : text) c = kChars[Below(sizeof(kChars) - 1)];
  return text;
}

std::string RequestGenerator::RandomBytes(size_t max_length) {
  size_t length = Below(max_length + 1);
  std::string bytes(length, '\0');
  for (char& c : bytes) c = static_cast<char>(Below(256));
  return bytes;
}

std::string RequestGenerator::StringFor(const FD* field) {
  uint64_t roll = Below(100);
  std::string kind = field->type() == FD::TYPE_STRING ? PoolKind(field) : "";
  if (!kind.empty() && roll < 75) return Id(kind);
  if (roll < 83) return "";
  if (roll < 91) return RandomText(24);
  if (roll < 96) {
    // Long: up to about 20 KB (IDs over any sane limit, messages of every size).
    std::string text(LongLength(), 'x');
    if (!kind.empty()) text = Id(kind) + text;
    return text;
  }
  // Not UTF-8: a proto3 string field then fails to parse on the Fabric's side.
  return RandomBytes(40) + "\xff\xfe";
}

int64_t RequestGenerator::IntFor(const FD* field) {
  uint64_t roll = Below(100);
  if (roll < 50) return static_cast<int64_t>(Below(12));
  if (roll < 62) return -1;
  if (roll < 70) return std::numeric_limits<int64_t>::max();
  if (roll < 76) return std::numeric_limits<int64_t>::min();
  if (roll < 82) return std::numeric_limits<int32_t>::max();
  if (roll < 86) return std::numeric_limits<int32_t>::min();
  if (roll < 90) return -static_cast<int64_t>(Below(100));
  return static_cast<int64_t>(Next());
}

pb::Any RequestGenerator::RandomAny(int depth) {
  pb::Any any;
  uint64_t roll = Below(100);
  if (roll < 30) {
    pb::Int64Value v;
    v.set_value(IntFor(nullptr));
    any.PackFrom(v);
  } else if (roll < 45) {
    pb::StringValue v;
    v.set_value(Chance(10) ? std::string(LongLength(), 's') : RandomText(16));
    any.PackFrom(v);
  } else if (roll < 55) {
    pb::BytesValue v;
    v.set_value(RandomBytes(Chance(10) ? max_long_ : 32));
    any.PackFrom(v);
  } else if (roll < 65) {
    // Null: an empty type URL.
  } else if (roll < 72) {
    pb::Value v;
    v.set_null_value(pb::NULL_VALUE);
    any.PackFrom(v);
  } else if (roll < 86) {
    // Garbage: an unknown type with random bytes, or a known type with bytes it cannot parse.
    any.set_type_url(Chance(50) ? Id("type_url") : RandomText(40));
    any.set_value(RandomBytes(64));
  } else if (roll < 93 && depth < 3) {
    pb::Any inner = RandomAny(depth + 1);
    any.PackFrom(inner);
  } else {
    pb::Int32Value v;
    v.set_value(static_cast<int32_t>(IntFor(nullptr)));
    any.PackFrom(v);
  }
  return any;
}

std::unique_ptr<pb::Message> RequestGenerator::Generate(const pb::Descriptor& type) {
  std::unique_ptr<pb::Message> message(
      pb::MessageFactory::generated_factory()->GetPrototype(&type)->New());
  Fill(message.get(), 0);
  return message;
}

void RequestGenerator::Fill(pb::Message* message, int depth) {
  const pb::Descriptor* type = message->GetDescriptor();
  for (int i = 0; i < type->field_count(); ++i) {
    const FD* field = type->field(i);
    if (field->containing_oneof() != nullptr) continue;
    if (Chance(depth == 0 ? 80 : 55)) SetField(message, field, depth);
  }
  for (int i = 0; i < type->oneof_decl_count(); ++i) {
    const pb::OneofDescriptor* oneof = type->oneof_decl(i);
    if (Chance(70)) SetField(message, oneof->field(Below(oneof->field_count())), depth);
  }
}

void RequestGenerator::SetField(pb::Message* message, const FD* field, int depth) {
  if (field->is_repeated()) {
    uint64_t count = Chance(85) ? Below(4) : Below(12);
    for (uint64_t i = 0; i < count; ++i) AddOrSet(message, field, depth);
  } else {
    AddOrSet(message, field, depth);
  }
}

void RequestGenerator::AddOrSet(pb::Message* message, const FD* field, int depth) {
  const pb::Reflection* r = message->GetReflection();
  const bool repeated = field->is_repeated();
  switch (field->cpp_type()) {
    case FD::CPPTYPE_STRING: {
      std::string value = field->type() == FD::TYPE_BYTES ? RandomBytes(Chance(5) ? max_long_ : 40)
                                                          : StringFor(field);
      repeated ? r->AddString(message, field, value) : r->SetString(message, field, value);
      break;
    }
    case FD::CPPTYPE_INT32: {
      auto v = static_cast<int32_t>(IntFor(field));
      repeated ? r->AddInt32(message, field, v) : r->SetInt32(message, field, v);
      break;
    }
    case FD::CPPTYPE_INT64: {
      int64_t v = IntFor(field);
      repeated ? r->AddInt64(message, field, v) : r->SetInt64(message, field, v);
      break;
    }
    case FD::CPPTYPE_UINT32: {
      auto v = static_cast<uint32_t>(IntFor(field));
      repeated ? r->AddUInt32(message, field, v) : r->SetUInt32(message, field, v);
      break;
    }
    case FD::CPPTYPE_UINT64: {
      auto v = static_cast<uint64_t>(IntFor(field));
      repeated ? r->AddUInt64(message, field, v) : r->SetUInt64(message, field, v);
      break;
    }
    case FD::CPPTYPE_DOUBLE: {
      double v = static_cast<double>(IntFor(field)) / 3;
      repeated ? r->AddDouble(message, field, v) : r->SetDouble(message, field, v);
      break;
    }
    case FD::CPPTYPE_FLOAT: {
      float v = static_cast<float>(IntFor(field)) / 3;
      repeated ? r->AddFloat(message, field, v) : r->SetFloat(message, field, v);
      break;
    }
    case FD::CPPTYPE_BOOL: {
      bool v = Chance(50);
      repeated ? r->AddBool(message, field, v) : r->SetBool(message, field, v);
      break;
    }
    case FD::CPPTYPE_ENUM: {
      // Mostly declared values, sometimes an unknown number (proto3 keeps it).
      const pb::EnumDescriptor* e = field->enum_type();
      int v = Chance(85) ? e->value(Below(e->value_count()))->number()
                         : static_cast<int>(IntFor(field));
      repeated ? r->AddEnumValue(message, field, v) : r->SetEnumValue(message, field, v);
      break;
    }
    case FD::CPPTYPE_MESSAGE: {
      if (depth >= 4) break;
      pb::Message* child =
          repeated ? r->AddMessage(message, field) : r->MutableMessage(message, field);
      if (field->message_type()->full_name() == "google.protobuf.Any") {
        child->CopyFrom(RandomAny(0));
      } else {
        Fill(child, depth + 1);
      }
      break;
    }
  }
}

void RequestGenerator::Mutate(pb::Message* message) {
  const pb::Descriptor* type = message->GetDescriptor();
  const pb::Reflection* r = message->GetReflection();
  uint64_t edits = 1 + Below(3);
  for (uint64_t e = 0; e < edits && type->field_count() > 0; ++e) {
    const FD* field = type->field(Below(type->field_count()));
    uint64_t roll = Below(100);
    if (roll < 20) {
      r->ClearField(message, field);
    } else if (roll < 50 && field->cpp_type() == FD::CPPTYPE_MESSAGE && !field->is_repeated() &&
               r->HasField(*message, field) &&
               field->message_type()->full_name() != "google.protobuf.Any") {
      Mutate(r->MutableMessage(message, field));  // Go deeper into what is there.
    } else {
      if (!field->is_repeated()) r->ClearField(message, field);
      AddOrSet(message, field, 1);
    }
  }
}

std::string RequestGenerator::MutateBytes(std::string bytes) {
  uint64_t edits = 1 + Below(4);
  for (uint64_t e = 0; e < edits; ++e) {
    uint64_t roll = Below(4);
    if (bytes.empty() || roll == 0) {
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(Below(bytes.size() + 1)),
                   static_cast<char>(Below(256)));
    } else if (roll == 1) {
      bytes[Below(bytes.size())] = static_cast<char>(Below(256));
    } else if (roll == 2) {
      bytes.erase(Below(bytes.size()), 1);
    } else {
      bytes.resize(Below(bytes.size()));
    }
  }
  return bytes;
}

std::string RequestGenerator::Unparsable(const pb::Descriptor& type) {
  std::unique_ptr<pb::Message> probe(
      pb::MessageFactory::generated_factory()->GetPrototype(&type)->New());
  std::string bytes = RandomBytes(32);
  if (!probe->ParseFromString(bytes)) return bytes;
  // A length-delimited field 1 that claims more bytes than follow.
  return bytes + "\x0a\x7f";
}

// ---------------------------------------------------------------------------------------------
// RawCall

RawCall::RawCall(grpc::GenericStub& stub, const std::string& path,
                 std::chrono::milliseconds deadline)
    : path_(path) {
  context_.set_deadline(std::chrono::system_clock::now() + deadline);
  call_ = stub.PrepareCall(&context_, path, &cq_);
}

RawCall::~RawCall() {
  context_.TryCancel();
  // After cancellation every pending operation completes promptly.
  while (!outstanding_.empty()) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok)) break;
    outstanding_.erase(reinterpret_cast<intptr_t>(tag));
  }
  if (call_ != nullptr && outstanding_.empty() && !finish_started_ && started_) {
    call_->Finish(&status_, reinterpret_cast<void*>(kFinish));
    void* tag = nullptr;
    bool ok = false;
    cq_.Next(&tag, &ok);
  }
  cq_.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
  }
}

RawCall::Outcome RawCall::Await(Tag wanted, std::chrono::milliseconds wait) {
  auto deadline = std::chrono::system_clock::now() + wait;
  while (true) {
    void* tag = nullptr;
    bool ok = false;
    grpc::CompletionQueue::NextStatus next = cq_.AsyncNext(&tag, &ok, deadline);
    if (next == grpc::CompletionQueue::TIMEOUT) return Outcome::kTimeout;
    if (next == grpc::CompletionQueue::SHUTDOWN) return Outcome::kFailed;
    auto got = reinterpret_cast<intptr_t>(tag);
    outstanding_.erase(got);
    if (got == wanted) return ok ? Outcome::kOk : Outcome::kFailed;
  }
}

RawCall::Outcome RawCall::Start(std::chrono::milliseconds wait) {
  started_ = true;
  outstanding_.insert(kStart);
  call_->StartCall(reinterpret_cast<void*>(kStart));
  return Await(kStart, wait);
}

RawCall::Outcome RawCall::Write(const std::string& bytes, std::chrono::milliseconds wait) {
  if (outstanding_.count(kWrite) != 0 || outstanding_.count(kStart) != 0) return Outcome::kFailed;
  grpc::Slice slice(bytes);
  grpc::ByteBuffer buffer(&slice, 1);
  outstanding_.insert(kWrite);
  call_->Write(buffer, reinterpret_cast<void*>(kWrite));
  return Await(kWrite, wait);
}

RawCall::Outcome RawCall::WritesDone(std::chrono::milliseconds wait) {
  if (outstanding_.count(kWrite) != 0 || outstanding_.count(kStart) != 0) return Outcome::kFailed;
  outstanding_.insert(kWritesDone);
  call_->WritesDone(reinterpret_cast<void*>(kWritesDone));
  return Await(kWritesDone, wait);
}

RawCall::Outcome RawCall::Read(std::string* bytes, std::chrono::milliseconds wait) {
  if (outstanding_.count(kStart) != 0) return Outcome::kFailed;
  if (outstanding_.count(kRead) == 0) {
    outstanding_.insert(kRead);
    call_->Read(&read_buffer_, reinterpret_cast<void*>(kRead));
  }
  Outcome outcome = Await(kRead, wait);
  if (outcome == Outcome::kOk && bytes != nullptr) {
    std::vector<grpc::Slice> slices;
    read_buffer_.Dump(&slices);
    bytes->clear();
    for (const auto& s : slices) bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return outcome;
}

std::optional<grpc::Status> RawCall::Finish(std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  if (!finish_started_) {
    // Finish must not overlap a pending read or write: wait for them first (they end when the
    // call ends), then ask for the status.
    for (Tag tag : {kStart, kRead, kWrite, kWritesDone}) {
      if (outstanding_.count(tag) == 0) continue;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (Await(tag, std::max(left, std::chrono::milliseconds(0))) == Outcome::kTimeout) {
        return std::nullopt;
      }
    }
    // Drain the messages the server still sends, so that its status can arrive.
    for (int i = 0; i < 100000; ++i) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      Outcome read = Read(nullptr, std::max(left, std::chrono::milliseconds(0)));
      if (read == Outcome::kTimeout) return std::nullopt;
      if (read == Outcome::kFailed) break;
    }
    finish_started_ = true;
    outstanding_.insert(kFinish);
    call_->Finish(&status_, reinterpret_cast<void*>(kFinish));
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (Await(kFinish, std::max(left, std::chrono::milliseconds(0))) == Outcome::kTimeout) {
    return std::nullopt;
  }
  finished_ = true;
  return status_;
}

// ---------------------------------------------------------------------------------------------
// ExecutionWorker

ExecutionWorker::ExecutionWorker(std::shared_ptr<grpc::Channel> channel, uint64_t seed)
    : channel_(std::move(channel)) {
  uint64_t n = 0;
  for (const char* agent : kServedAgents) {
    threads_.emplace_back([this, agent, seed, n] { Serve(agent, seed + n); });
    ++n;
  }
}

ExecutionWorker::~ExecutionWorker() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (grpc::ClientContext* context : contexts_) context->TryCancel();
  }
  for (std::thread& t : threads_) t.join();
}

void ExecutionWorker::Serve(const std::string& agent, uint64_t seed) {
  auto executions = grpc2::FabricExecutions::NewStub(channel_);
  RequestGenerator gen(seed);
  // Bounded: a listen call per round, rounds end when the call ends (the Fabric restarts the
  // subscription after a cancelled or failed call).
  for (int round = 0; round < 1000; ++round) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      contexts_.push_back(&context);
    }
    grpc2::ExecutionsListenRequest request;
    request.mutable_instance_filter()->set_agent(agent);
    auto reader = executions->Listen(&context, request);
    grpc2::ExecutionsListenResponse response;
    while (reader->Read(&response)) {
      if (response.deleted() || response.start_of_stream()) continue;
      grpc2::ExecutionsCompleteRequest complete;
      *complete.mutable_execution() = response.execution();
      if (gen.Chance(15)) {
        complete.mutable_error()->set_message("fuzz worker error");
      } else {
        google::protobuf::Int64Value value;
        value.set_value(static_cast<int64_t>(gen.Below(100)));
        complete.add_results()->PackFrom(value);
      }
      grpc::ClientContext complete_context;
      complete_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      google::protobuf::Empty empty;
      executions->Complete(&complete_context, complete, &empty);
    }
    reader->Finish();
    absl::MutexLock lock(&mu_);
    contexts_.erase(std::find(contexts_.begin(), contexts_.end(), &context));
    if (stopping_) return;
  }
}

}  // namespace perper::testing::fuzz
