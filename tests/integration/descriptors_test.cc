// SPDX-License-Identifier: MIT
// FabricProtobufDescriptors over real gRPC, on every backend.
#include <google/protobuf/type.pb.h>

#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using grpc2::FabricProtobufDescriptorsGetRequest;
using grpc2::FabricProtobufDescriptorsGetResponse;
using grpc2::FabricProtobufDescriptorsRegisterRequest;

google::protobuf::Type PointType() {
  google::protobuf::Type type;
  type.set_name("demo.Point");
  for (int i = 1; i <= 2; ++i) {
    google::protobuf::Field* field = type.add_fields();
    field->set_number(i);
    field->set_name(i == 1 ? "x" : "y");
    field->set_kind(google::protobuf::Field::TYPE_INT64);
    field->set_cardinality(google::protobuf::Field::CARDINALITY_OPTIONAL);
    field->set_json_name(field->name());
  }
  type.set_syntax(google::protobuf::SYNTAX_PROTO3);
  return type;
}

class DescriptorsTest : public FabricTest {
 protected:
  grpc::Status Register(const FabricProtobufDescriptorsRegisterRequest& request) {
    google::protobuf::Empty empty;
    return Descriptors()->Register(Context().get(), request, &empty);
  }
  FabricProtobufDescriptorsGetResponse Get(const std::string& type_url) {
    FabricProtobufDescriptorsGetRequest request;
    request.set_type_url(type_url);
    FabricProtobufDescriptorsGetResponse response;
    grpc::Status status = Descriptors()->Get(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
};

TEST_P(DescriptorsTest, RegisteredTypeRoundTripsExactly) {
  FabricProtobufDescriptorsRegisterRequest request;
  request.set_type_url("x/demo.Point");
  *request.mutable_type() = PointType();
  ASSERT_TRUE(Register(request).ok());
  FabricProtobufDescriptorsGetResponse response = Get("x/demo.Point");
  ASSERT_TRUE(response.has_type());
  EXPECT_EQ(response.type().SerializeAsString(), PointType().SerializeAsString());
}

TEST_P(DescriptorsTest, EnumsAndReRegistrationReplace) {
  FabricProtobufDescriptorsRegisterRequest request;
  request.set_type_url("x/demo.Color");
  *request.mutable_type() = PointType();
  ASSERT_TRUE(Register(request).ok());
  google::protobuf::Enum color;
  color.set_name("demo.Color");
  color.add_enumvalue()->set_name("RED");
  color.add_enumvalue()->set_name("GREEN");
  color.mutable_enumvalue(1)->set_number(1);
  *request.mutable_enum_() = color;
  ASSERT_TRUE(Register(request).ok());
  FabricProtobufDescriptorsGetResponse response = Get("x/demo.Color");
  EXPECT_FALSE(response.has_type());
  ASSERT_TRUE(response.has_enum_());
  EXPECT_EQ(response.enum_().SerializeAsString(), color.SerializeAsString());
}

TEST_P(DescriptorsTest, UnknownTypeUrlGivesAnEmptyResponse) {
  FabricProtobufDescriptorsGetResponse response = Get("x/never.Registered");
  EXPECT_EQ(response.descriptor_case(), FabricProtobufDescriptorsGetResponse::DESCRIPTOR_NOT_SET);
}

TEST_P(DescriptorsTest, BadRequests) {
  FabricProtobufDescriptorsRegisterRequest request;
  *request.mutable_type() = PointType();
  grpc::Status status = Register(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("type_url"), std::string::npos);
  request.Clear();
  request.set_type_url("x/demo.Nothing");
  status = Register(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("x/demo.Nothing"), std::string::npos);
  EXPECT_EQ(Get("x/demo.Nothing").descriptor_case(),
            FabricProtobufDescriptorsGetResponse::DESCRIPTOR_NOT_SET);
  FabricProtobufDescriptorsGetRequest get;
  FabricProtobufDescriptorsGetResponse response;
  EXPECT_EQ(Descriptors()->Get(Context().get(), get, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// Restart and reopen tests need a durable backend.
class DescriptorsDurabilityTest : public DescriptorsTest {};

TEST_P(DescriptorsDurabilityTest, SurvivesRestart) {
  FabricProtobufDescriptorsRegisterRequest request;
  request.set_type_url("x/demo.Point");
  *request.mutable_type() = PointType();
  ASSERT_TRUE(Register(request).ok());
  fabric().Restart();
  Reconnect();
  EXPECT_EQ(Get("x/demo.Point").type().SerializeAsString(), PointType().SerializeAsString());
}

TEST_P(DescriptorsTest, DescriptorsOverTheLimitAreRefused) {
  fabric::FabricLimits limits;
  limits.max_value_bytes = 1024;
  InProcessFabric small(GetParam(), limits);
  auto stub = grpc2::FabricProtobufDescriptors::NewStub(small.NewChannel());
  FabricProtobufDescriptorsRegisterRequest request;
  request.set_type_url("x/demo.Big");
  *request.mutable_type() = PointType();
  request.mutable_type()->set_name(std::string(2000, 'n'));
  google::protobuf::Empty empty;
  grpc::Status status = stub->Register(Context().get(), request, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("1024"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, DescriptorsTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, DescriptorsDurabilityTest,
                         ::testing::Values(std::string("rocksdb")), BackendName);

}  // namespace
}  // namespace perper::testing
