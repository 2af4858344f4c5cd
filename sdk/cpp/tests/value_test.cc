// SPDX-License-Identifier: MIT
// The value table of perper/agent/value.h: round trips, widenings, null, mismatches.
#include "perper/agent/value.h"

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include "perper/grpc2/model.pb.h"

namespace perper {
namespace {

using ::testing::HasSubstr;

template <typename T>
T RoundTrip(const T& value) {
  auto back = FromAny<T>(ToAny(value));
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : T{};
}

TEST(ValueTest, ScalarsRoundTripAsWrapperTypes) {
  EXPECT_EQ(RoundTrip(true), true);
  EXPECT_EQ(RoundTrip(false), false);
  EXPECT_EQ(RoundTrip(int32_t{-7}), -7);
  EXPECT_EQ(RoundTrip(std::numeric_limits<int64_t>::min()), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(RoundTrip(uint32_t{4000000000u}), 4000000000u);
  EXPECT_EQ(RoundTrip(std::numeric_limits<uint64_t>::max()), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(RoundTrip(1.5f), 1.5f);
  EXPECT_EQ(RoundTrip(2.25), 2.25);
  EXPECT_EQ(RoundTrip(std::string("héllo")), "héllo");
  EXPECT_EQ(RoundTrip(Bytes{std::string("\0\1\2", 3)}), Bytes{std::string("\0\1\2", 3)});

  EXPECT_TRUE(ToAny(true).Is<google::protobuf::BoolValue>());
  EXPECT_TRUE(ToAny(int32_t{1}).Is<google::protobuf::Int32Value>());
  EXPECT_TRUE(ToAny(int64_t{1}).Is<google::protobuf::Int64Value>());
  EXPECT_TRUE(ToAny(uint32_t{1}).Is<google::protobuf::UInt32Value>());
  EXPECT_TRUE(ToAny(uint64_t{1}).Is<google::protobuf::UInt64Value>());
  EXPECT_TRUE(ToAny(1.0f).Is<google::protobuf::FloatValue>());
  EXPECT_TRUE(ToAny(1.0).Is<google::protobuf::DoubleValue>());
  EXPECT_TRUE(ToAny("text").Is<google::protobuf::StringValue>());
  EXPECT_TRUE(ToAny(Bytes{"b"}).Is<google::protobuf::BytesValue>());
  EXPECT_EQ(ToAny(1).type_url(), "type.googleapis.com/google.protobuf.Int32Value");
}

TEST(ValueTest, WideningsAreAllowed) {
  EXPECT_EQ(*FromAny<int64_t>(ToAny(int32_t{-42})), -42);
  EXPECT_EQ(*FromAny<int64_t>(ToAny(uint32_t{42})), 42);
  EXPECT_EQ(*FromAny<uint64_t>(ToAny(uint32_t{42})), 42u);
  EXPECT_EQ(*FromAny<double>(ToAny(1.5f)), 1.5);
  EXPECT_EQ(*FromAny<double>(ToAny(int32_t{3})), 3.0);
}

TEST(ValueTest, MismatchNamesBothTypes) {
  auto s = FromAny<std::string>(ToAny(int32_t{1}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("google.protobuf.Int32Value"));
  EXPECT_THAT(s.status().message(), HasSubstr("std::string"));

  auto narrowing = FromAny<int32_t>(ToAny(int64_t{1}));
  ASSERT_FALSE(narrowing.ok());
  EXPECT_THAT(narrowing.status().message(),
              HasSubstr("cannot read google.protobuf.Int64Value as int32_t"));

  auto message = FromAny<grpc2::model::PerperStream>(ToAny(std::string("x")));
  ASSERT_FALSE(message.ok());
  EXPECT_THAT(
      message.status().message(),
      HasSubstr("cannot read google.protobuf.StringValue as perper.grpc2.model.PerperStream"));
}

TEST(ValueTest, NullIsTheEmptyAnyOrAValueNull) {
  std::optional<int64_t> none;
  google::protobuf::Any empty = ToAny(none);
  EXPECT_TRUE(empty.type_url().empty());
  EXPECT_TRUE(IsNull(empty));
  EXPECT_EQ(*FromAny<std::optional<int64_t>>(empty), std::nullopt);

  google::protobuf::Value null_value;
  null_value.set_null_value(google::protobuf::NULL_VALUE);
  google::protobuf::Any value_null;
  value_null.PackFrom(null_value);
  EXPECT_TRUE(IsNull(value_null));
  EXPECT_EQ(*FromAny<std::optional<std::string>>(value_null), std::nullopt);

  EXPECT_EQ(*FromAny<std::optional<int64_t>>(ToAny(std::optional<int32_t>(5))), 5);

  auto required = FromAny<int64_t>(empty);
  ASSERT_FALSE(required.ok());
  EXPECT_THAT(required.status().message(), HasSubstr("cannot read null as int64_t"));
}

TEST(ValueTest, MessagesTravelAsThemselves) {
  grpc2::model::PerperInstance instance;
  instance.set_instance("Run-1");
  instance.set_agent("Calculator");
  google::protobuf::Any any = ToAny(instance);
  EXPECT_EQ(any.type_url(), "type.googleapis.com/perper.grpc2.model.PerperInstance");
  auto back = FromAny<grpc2::model::PerperInstance>(any);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->instance(), "Run-1");
  EXPECT_EQ(back->agent(), "Calculator");

  grpc2::model::PerperStream stream;
  stream.set_stream("s");
  stream.set_start_key(-1);
  auto stream_back = FromAny<grpc2::model::PerperStream>(ToAny(stream));
  ASSERT_TRUE(stream_back.ok());
  EXPECT_EQ(stream_back->start_key(), -1);

  // An Any passes through unchanged.
  EXPECT_EQ(FromAny<google::protobuf::Any>(any)->type_url(), any.type_url());
  EXPECT_EQ(ToAny(any).value(), any.value());
}

using Fields = std::map<std::string, google::protobuf::Value>;

TEST(ValueTest, MapsTravelAsStructAndVectorsAsListValue) {
  std::map<std::string, std::vector<int64_t>> scores{{"a", {1, 2, 3}}, {"b", {}}};
  google::protobuf::Any any = ToAny(scores);
  EXPECT_EQ(any.type_url(), "type.googleapis.com/google.protobuf.Struct");
  google::protobuf::Struct wire;
  ASSERT_TRUE(any.UnpackTo(&wire));
  ASSERT_EQ(wire.fields().at("a").list_value().values_size(), 3);
  EXPECT_EQ(wire.fields().at("a").list_value().values(2).number_value(), 3.0);
  EXPECT_EQ(RoundTrip(scores), scores);

  std::vector<std::string> names{"x", "y"};
  EXPECT_EQ(ToAny(names).type_url(), "type.googleapis.com/google.protobuf.ListValue");
  EXPECT_EQ(RoundTrip(names), names);

  std::map<std::string, std::map<std::string, double>> nested{{"p", {{"x", 0.5}, {"y", -2}}}};
  EXPECT_EQ(RoundTrip(nested), nested);
  std::map<std::string, std::optional<bool>> maybe{{"yes", true}, {"unknown", std::nullopt}};
  EXPECT_EQ(RoundTrip(maybe), maybe);
  std::vector<bool> flags{true, false, true};
  EXPECT_EQ(RoundTrip(flags), flags);

  // Read from a google.protobuf.Value holding a struct, too.
  google::protobuf::Any as_value;
  as_value.PackFrom(*ToValue(std::map<std::string, int32_t>{{"n", 7}}));
  EXPECT_EQ((*FromAny<std::map<std::string, int32_t>>(as_value)).at("n"), 7);

  auto wrong = FromAny<std::map<std::string, int64_t>>(ToAny(names));
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(),
              HasSubstr("cannot read google.protobuf.ListValue as std::map"));
}

TEST(ValueTest, StructuredValuesAreTheBytesThePythonSdkWrites) {
  // Struct({"b": 1, "a": [True, "x", None, {"z": 2.5, "y": "q"}]}) and
  // ListValue([3, {"k": "v", "c": 1}]) serialized by Python with deterministic=True.
  std::map<std::string, google::protobuf::Value> fields{
      {"b", *ToValue(1)},
      {"a", *ToValue(std::vector<google::protobuf::Value>{
                *ToValue(true), *ToValue(std::string("x")), *ToValue(std::nullopt),
                *ToValue(std::map<std::string, google::protobuf::Value>{
                    {"z", *ToValue(2.5)}, {"y", *ToValue(std::string("q"))}})})}};
  google::protobuf::Any any = ToAny(fields);
  EXPECT_EQ(absl::BytesToHexString(any.value()),
            "0a320a0161122d322b0a0220010a031a01780a0208000a1c2a1a0a080a017912031a01710a0e0a017a"
            "12091100000000000004400a0e0a0162120911000000000000f03f");
  std::vector<google::protobuf::Value> list{
      *ToValue(3), *ToValue(std::map<std::string, google::protobuf::Value>{
                       {"k", *ToValue(std::string("v"))}, {"c", *ToValue(1)}})};
  EXPECT_EQ(absl::BytesToHexString(ToAny(list).value()),
            "0a091100000000000008400a1c2a1a0a0e0a0163120911000000000000f03f0a080a016b12031a0176");
}

TEST(ValueTest, IntegersInsideAStructAreExactUpTo2To53) {
  constexpr int64_t kLimit = int64_t{1} << 53;
  std::map<std::string, int64_t> edge{{"max", kLimit}, {"min", -kLimit}, {"one", 1}};
  EXPECT_EQ(RoundTrip(edge), edge);

  std::map<std::string, std::vector<int64_t>> beyond{{"items", {1, kLimit + 1}}};
  auto packed = TryToAny(beyond);
  ASSERT_FALSE(packed.ok());
  EXPECT_EQ(packed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(packed.status().message(), HasSubstr("integer 9007199254740993 at items[1]"));
  EXPECT_THAT(packed.status().message(), HasSubstr("2^53"));
  auto unsigned_beyond = ToValue(std::vector<uint64_t>{std::numeric_limits<uint64_t>::max()});
  ASSERT_FALSE(unsigned_beyond.ok());
  EXPECT_THAT(unsigned_beyond.status().message(), HasSubstr("at [0]"));
  auto negative =
      ToValue(std::map<std::string, std::map<std::string, int64_t>>{{"a", {{"b", -kLimit - 1}}}});
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(negative.status().message(), HasSubstr("at a.b"));

  // ToAny cannot return an error: it aborts with the same message.
  EXPECT_DEATH(ToAny(beyond), "integer 9007199254740993 at items\\[1\\]");
  // A top-level int64_t stays an exact Int64Value.
  EXPECT_EQ(RoundTrip(kLimit + 1), kLimit + 1);
}

TEST(ValueTest, NumbersReadAsIntegersOnlyWhenIntegral) {
  google::protobuf::Value three;
  three.set_number_value(3.0);
  EXPECT_EQ(*FromValue<int64_t>(three), 3);
  EXPECT_EQ(*FromValue<uint8_t>(three), 3);
  EXPECT_EQ(*FromValue<double>(three), 3.0);

  google::protobuf::Value half;
  half.set_number_value(2.5);
  auto integer = FromValue<int64_t>(half);
  ASSERT_FALSE(integer.ok());
  EXPECT_EQ(integer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(integer.status().message(), HasSubstr("number 2.5 is not an integer"));
  EXPECT_EQ(*FromValue<double>(half), 2.5);

  google::protobuf::Value big;
  big.set_number_value(300);
  EXPECT_EQ(FromValue<uint8_t>(big).status().code(), absl::StatusCode::kOutOfRange);
  google::protobuf::Value negative;
  negative.set_number_value(-1);
  EXPECT_EQ(FromValue<uint32_t>(negative).status().code(), absl::StatusCode::kOutOfRange);
  google::protobuf::Value huge;
  huge.set_number_value(9223372036854775808.0);  // 2^63
  EXPECT_EQ(FromValue<int64_t>(huge).status().code(), absl::StatusCode::kOutOfRange);

  auto in_list = FromAny<std::map<std::string, std::vector<int64_t>>>(
      ToAny(std::map<std::string, std::vector<double>>{{"xs", {1, 2.5}}}));
  ASSERT_FALSE(in_list.ok());
  EXPECT_THAT(in_list.status().message(), HasSubstr("number 2.5 at xs[1] is not an integer"));

  google::protobuf::Value text;
  text.set_string_value("7");
  EXPECT_THAT(FromValue<int64_t>(text).status().message(),
              HasSubstr("cannot read a string as a signed integer"));
}

TEST(ValueTest, ReadsTheStructAPythonDictBecomes) {
  // What the Python SDK packs for {"total": 12, "count": 3, "name": "x", "items": [1, 2],
  // "ratio": 0.25, "none": None}: a Struct whose numbers are doubles.
  google::protobuf::Struct wire;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"total": 12, "count": 3, "name": "x", "items": [1, 2], "ratio": 0.25,
                      "none": null})",
                  &wire)
                  .ok());
  google::protobuf::Any any;
  any.PackFrom(wire);

  auto fields = FromAny<Fields>(any);
  ASSERT_TRUE(fields.ok()) << fields.status();
  EXPECT_EQ(*FromValue<int64_t>(fields->at("total")), 12);
  EXPECT_EQ(*FromValue<int32_t>(fields->at("count")), 3);
  EXPECT_EQ(*FromValue<std::string>(fields->at("name")), "x");
  EXPECT_EQ(*FromValue<std::vector<int64_t>>(fields->at("items")), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(*FromValue<double>(fields->at("ratio")), 0.25);
  EXPECT_EQ(*FromValue<std::optional<int64_t>>(fields->at("none")), std::nullopt);

  // And a homogeneous part reads straight into a typed map.
  google::protobuf::Struct counts;
  (*counts.mutable_fields())["total"].set_number_value(12);
  (*counts.mutable_fields())["count"].set_number_value(3);
  any.PackFrom(counts);
  using Counts = std::map<std::string, int64_t>;
  EXPECT_EQ(*FromAny<Counts>(any), (Counts{{"total", 12}, {"count", 3}}));

  // Written back from C++ it has the same shape.
  Fields out{{"total", *ToValue(int64_t{12})},
             {"items", *ToValue(std::vector<int64_t>{1, 2})},
             {"name", *ToValue(std::string("x"))}};
  google::protobuf::Struct expected;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"items": [1, 2], "name": "x", "total": 12})", &expected)
                  .ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      *FromAny<google::protobuf::Struct>(ToAny(out)), expected));
}

}  // namespace
}  // namespace perper
