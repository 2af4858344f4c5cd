// SPDX-License-Identifier: MIT
// The value table of perper/agent/value.h: round trips, widenings, null, mismatches.
#include "perper/agent/value.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
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

}  // namespace
}  // namespace perper
