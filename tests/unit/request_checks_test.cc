// SPDX-License-Identifier: MIT
// CheckRequestStrings: every string of a request within its limit, named by its path.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "perper/fabric/service_context.h"
#include "perper/grpc2/executions.pb.h"
#include "perper/grpc2/streams.pb.h"

namespace perper::fabric {
namespace {

using ::testing::HasSubstr;

FabricLimits Limits() {
  FabricLimits limits;
  limits.max_id_bytes = 16;
  limits.max_error_bytes = 32;
  return limits;
}

TEST(CheckRequestStringsTest, AcceptsStringsWithinTheLimits) {
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution(std::string(16, 'e'));
  request.mutable_instance()->set_agent("agent");
  request.set_delegate("Do");
  EXPECT_TRUE(CheckRequestStrings(request, Limits()).ok());
}

TEST(CheckRequestStringsTest, AnIdOverTheLimitIsInvalidArgumentNamingItsPath) {
  grpc2::ExecutionsCreateRequest request;
  request.mutable_execution()->set_execution("e");
  request.mutable_instance()->set_instance(std::string(17, 'i'));
  absl::Status status = CheckRequestStrings(request, Limits());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "instance.instance is 17 bytes, over the limit of 16 bytes (" +
                                  std::string(17, 'i') + ")");
}

TEST(CheckRequestStringsTest, RepeatedMessagesAreNamedWithTheirIndex) {
  grpc2::ExecutionsListenAndReserveRequest request;
  request.add_completions()->mutable_execution()->set_execution("ok");
  request.add_completions()->mutable_execution()->set_execution("ok");
  request.add_completions()->mutable_execution()->set_execution(std::string(40, 'x'));
  absl::Status status = CheckRequestStrings(request, Limits());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("completions[2].execution.execution is 40 bytes"));
}

TEST(CheckRequestStringsTest, ErrorTextsHaveTheirOwnLimitAndAreResourceExhausted) {
  grpc2::ExecutionsCompleteRequest request;
  request.mutable_execution()->set_execution("e");
  request.mutable_error()->set_message(std::string(32, 'm'));  // Over the ID limit, fine.
  EXPECT_TRUE(CheckRequestStrings(request, Limits()).ok());
  request.mutable_error()->set_message(std::string(33, 'm'));
  absl::Status status = CheckRequestStrings(request, Limits());
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "error.message is 33 bytes, over the limit of 32 bytes");
}

TEST(CheckRequestStringsTest, ValuesAreNotItsConcern) {
  grpc2::StreamsWriteItemsRequest request;
  request.mutable_stream()->set_stream("s");
  auto* item = request.add_items();
  item->mutable_value()->set_type_url(std::string(100, 't'));
  item->mutable_value()->set_value(std::string(100, 'v'));
  EXPECT_TRUE(CheckRequestStrings(request, Limits()).ok());
}

}  // namespace
}  // namespace perper::fabric
