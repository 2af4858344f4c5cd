// SPDX-License-Identifier: MIT
// The C++ side of the Python/C++ interoperation tests (sdk/python/tests/test_interop.py): the
// agent `CppInterop`, which reads and returns every type of the value table, calls the Python
// agent `PyInterop`, produces a stream and consumes one of Python's.
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/message_differencer.h>

#include "perper/agent/agent.h"

namespace {

using google::protobuf::Timestamp;
using google::protobuf::util::MessageDifferencer;
using perper::Bytes;
using perper::Task;
using perper::grpc2::model::PerperInstance;
using perper::grpc2::model::PerperStream;

// Every type of the value table, in the order the tests send them.
using AllValues = std::tuple<bool, int64_t, double, std::string, Bytes, std::optional<std::string>,
                             PerperStream, PerperInstance, Timestamp>;

bool Same(const AllValues& a, const AllValues& b) {
  return std::get<0>(a) == std::get<0>(b) && std::get<1>(a) == std::get<1>(b) &&
         std::get<2>(a) == std::get<2>(b) && std::get<3>(a) == std::get<3>(b) &&
         std::get<4>(a) == std::get<4>(b) && std::get<5>(a) == std::get<5>(b) &&
         MessageDifferencer::Equals(std::get<6>(a), std::get<6>(b)) &&
         MessageDifferencer::Equals(std::get<7>(a), std::get<7>(b)) &&
         MessageDifferencer::Equals(std::get<8>(a), std::get<8>(b));
}

}  // namespace

int main() {
  perper::Agent app("CppInterop");

  // Reads each argument as its C++ type and returns them all as several results.
  app.on(
      "EchoAll",
      [](bool b, int64_t i, double d, std::string s, Bytes bytes, std::optional<std::string> none,
         PerperStream stream, PerperInstance instance, Timestamp time) -> Task<AllValues> {
        co_return AllValues{b, i, d, s, bytes, none, stream, instance, time};
      });

  // A google.protobuf.Struct (what a Python dict travels as), read as the message and returned
  // with a field added.
  app.on("EchoStruct", [](google::protobuf::Struct value) -> Task<google::protobuf::Struct> {
    (*value.mutable_fields())["from_cpp"].set_bool_value(true);
    co_return value;
  });

  // The narrower C++ types: Int32Value, UInt64Value and FloatValue.
  app.on("Narrow", []() -> Task<std::tuple<int32_t, uint64_t, float>> {
    co_return std::tuple<int32_t, uint64_t, float>{-7, 18000000000000000000ull, 1.5f};
  });

  // Calls PyInterop.Echo with every type and checks that the same values come back.
  app.on("CallPython", []() -> Task<std::string> {
    PerperStream stream;
    stream.set_stream("s-from-cpp");
    stream.set_start_key(4);
    stream.set_stride(2);
    PerperInstance instance;
    instance.set_agent("CppInterop");
    instance.set_instance("cpp");
    Timestamp time;
    time.set_seconds(1700000000);
    time.set_nanos(5);
    AllValues sent{true,
                   int64_t{-1} << 40,
                   0.25,
                   "from C++ ✓",
                   Bytes{std::string("\0\xff", 2)},
                   std::nullopt,
                   stream,
                   instance,
                   time};
    perper::Result<AllValues> echoed =
        co_await perper::agent("PyInterop", "py")
            .call<AllValues>("Echo", std::get<0>(sent), std::get<1>(sent), std::get<2>(sent),
                             std::get<3>(sent), std::get<4>(sent), std::get<5>(sent),
                             std::get<6>(sent), std::get<7>(sent), std::get<8>(sent));
    if (!echoed.ok()) {
      co_return absl::StrCat("call failed: ", echoed.status().ToString());
    }
    co_return Same(sent, *echoed) ? "ok" : "the values came back different";
  });

  // A persistent stream of 0 .. n-1.
  app.stream(
      "Count",
      [](perper::StreamWriter<int64_t>& out, int64_t n) -> Task<absl::Status> {
        for (int64_t i = 0; i < n; ++i) {
          if (absl::Status written = co_await out.write(i); !written.ok()) {
            co_return written;
          }
        }
        co_return absl::OkStatus();
      },
      perper::StreamOptions{.ephemeral = false});

  // A stream that fails after one item.
  app.stream(
      "Broken",
      [](perper::StreamWriter<std::string>& out) -> Task<absl::Status> {
        co_await out.write(std::string("first"));
        co_return absl::InternalError("the C++ producer broke");
      },
      perper::StreamOptions{.ephemeral = false});

  // Starts PyInterop's stream delegate Letters and reads it to its end.
  app.on("ConsumePython", [](std::string word) -> Task<std::string> {
    perper::Result<PerperStream> stream =
        co_await perper::agent("PyInterop", "py").call<PerperStream>("Letters", word);
    if (!stream.ok()) {
      co_return absl::StrCat("call failed: ", stream.status().ToString());
    }
    perper::StreamReader<std::string> reader =
        perper::context().stream(*stream).listen<std::string>();
    std::string read;
    while (true) {
      absl::StatusOr<std::optional<std::string>> item = co_await reader.next();
      if (!item.ok()) {
        co_return absl::StrCat("read failed: ", item.status().ToString());
      }
      if (!item->has_value()) {
        break;
      }
      absl::StrAppend(&read, **item, ".");
    }
    co_return read;
  });

  return perper::Run(app);
}
