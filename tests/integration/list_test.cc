// SPDX-License-Identifier: MIT
// FabricStatesList over real gRPC, on every backend.
#include <google/protobuf/struct.pb.h>

#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using google::protobuf::Any;
using grpc2::StatesListOperateRequest;
using grpc2::StatesListOperateResponse;

// (raw index, value) of every item, in index order.
using RV = std::vector<std::pair<int64_t, int64_t>>;

class ListTest : public FabricTest {
 protected:
  StatesListOperateRequest Request(const std::string& list = "l") {
    StatesListOperateRequest request;
    request.mutable_list()->set_list(list);
    return request;
  }
  grpc::Status Call(const StatesListOperateRequest& request, StatesListOperateResponse* response) {
    return List()->Operate(Context().get(), request, response);
  }
  // Operates and returns the values as ints, expecting OK.
  std::vector<int64_t> Op(const StatesListOperateRequest& request) {
    StatesListOperateResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<int64_t> values;
    for (const Any& value : response.values()) values.push_back(IntOf(value));
    return values;
  }
  void PushBack(std::initializer_list<int64_t> values, const std::string& list = "l") {
    auto request = Request(list);
    request.set_at_back(true);
    for (int64_t v : values) *request.add_insert_values() = Int64Value(v);
    EXPECT_TRUE(Op(request).empty());
  }
  void PushFront(std::initializer_list<int64_t> values) {
    auto request = Request();
    request.set_at_front(true);
    for (int64_t v : values) *request.add_insert_values() = Int64Value(v);
    EXPECT_TRUE(Op(request).empty());
  }
  RV Items(const std::string& list = "l") {
    grpc2::StatesListListItemsRequest request;
    request.mutable_list()->set_list(list);
    auto context = Context();
    auto reader = List()->ListItems(context.get(), request);
    RV items;
    grpc2::StatesListListItemsResponse response;
    uint32_t index = 0;
    while (reader->Read(&response)) {
      EXPECT_EQ(response.index(), index++);
      items.emplace_back(response.raw_index(), IntOf(response.value()));
    }
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return items;
  }
  uint32_t Count(const std::string& list = "l") {
    grpc2::StatesListCountItemsRequest request;
    request.mutable_list()->set_list(list);
    grpc2::StatesListCountItemsResponse response;
    EXPECT_TRUE(List()->CountItems(Context().get(), request, &response).ok());
    return response.count();
  }
  grpc2::StatesListLocateResponse Locate(const Any& value) {
    grpc2::StatesListLocateRequest request;
    request.mutable_list()->set_list("l");
    *request.mutable_value() = value;
    grpc2::StatesListLocateResponse response;
    grpc::Status status = List()->Locate(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
};

TEST_P(ListTest, CreateIsIdempotent) {
  grpc2::StatesListCreateRequest request;
  request.mutable_list()->set_list("l");
  google::protobuf::Empty empty;
  EXPECT_TRUE(List()->Create(Context().get(), request, &empty).ok());
  EXPECT_TRUE(List()->Create(Context().get(), request, &empty).ok());
  EXPECT_EQ(Count(), 0u);
  request.mutable_list()->set_list("");
  EXPECT_EQ(List()->Create(Context().get(), request, &empty).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ListTest, PushBothEndsKeepsRawIndices) {
  PushBack({1, 2});  // created on first write
  PushFront({-1, 0});
  PushBack({3});
  EXPECT_EQ(Items(), (RV{{-2, -1}, {-1, 0}, {0, 1}, {1, 2}, {2, 3}}));
  EXPECT_EQ(Count(), 5u);
}

TEST_P(ListTest, PopFrontAndPopBack) {
  PushBack({1, 2, 3, 4, 5});
  auto request = Request();
  request.set_at_front(true);
  request.set_values_count(2);
  request.set_get_values(true);
  request.set_remove_values(true);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{1, 2}));
  request.set_at_back(true);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{5, 4}));  // walking order: from the back
  EXPECT_EQ(Items(), (RV{{2, 3}}));
  request.set_values_count(5);  // more than there is: what there is
  EXPECT_EQ(Op(request), (std::vector<int64_t>{3}));
  EXPECT_EQ(Op(request), (std::vector<int64_t>{}));
  EXPECT_EQ(Count(), 0u);
}

TEST_P(ListTest, GetAtEveryLocationKind) {
  PushBack({10, 11, 12, 13});
  PushFront({9});  // raw indices -1 .. 3
  auto request = Request();
  request.set_get_values(true);
  request.set_values_count(2);
  request.set_index(1);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{10, 11}));
  request.set_index_backwards(0);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{13, 12}));
  request.set_index_backwards(3);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{10, 9}));
  request.set_raw_index(-1);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{9, 10}));
  request.set_raw_index_backwards(2);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{12, 11}));
  request.set_raw_index(3);
  request.set_values_count(1);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{13}));
  request.set_index(5);  // the end: nothing to get
  EXPECT_EQ(Op(request), (std::vector<int64_t>{}));
  EXPECT_EQ(Count(), 5u);
}

TEST_P(ListTest, SetReplacesInPlace) {
  PushBack({1, 2, 3});
  auto request = Request();
  request.set_index(1);
  request.set_values_count(1);
  request.set_remove_values(true);
  request.set_get_values(true);
  *request.add_insert_values() = Int64Value(20);
  EXPECT_EQ(Op(request), (std::vector<int64_t>{2}));
  request.set_index_backwards(0);
  request.mutable_insert_values(0)->CopyFrom(Int64Value(30));
  EXPECT_EQ(Op(request), (std::vector<int64_t>{3}));
  request.set_raw_index(0);
  request.mutable_insert_values(0)->CopyFrom(Int64Value(10));
  EXPECT_EQ(Op(request), (std::vector<int64_t>{1}));
  EXPECT_EQ(Items(), (RV{{0, 10}, {1, 20}, {2, 30}}));
}

TEST_P(ListTest, InsertInTheMiddleShiftsFollowingItems) {
  PushBack({0, 1, 2, 3});
  auto request = Request();
  request.set_index(2);
  *request.add_insert_values() = Int64Value(100);
  *request.add_insert_values() = Int64Value(101);
  EXPECT_TRUE(Op(request).empty());
  // Items before the location keep their raw indices; the following ones move up.
  EXPECT_EQ(Items(), (RV{{0, 0}, {1, 1}, {2, 100}, {3, 101}, {4, 2}, {5, 3}}));
  // A backward location keeps the items after it; the ones before move down.
  auto backwards = Request();
  backwards.set_raw_index_backwards(1);
  *backwards.add_insert_values() = Int64Value(200);
  EXPECT_TRUE(Op(backwards).empty());
  EXPECT_EQ(Items(), (RV{{-1, 0}, {0, 1}, {1, 200}, {2, 100}, {3, 101}, {4, 2}, {5, 3}}));
}

TEST_P(ListTest, RemoveAtIndexAndBackwards) {
  PushBack({0, 1, 2, 3, 4, 5});
  auto request = Request();
  request.set_index(1);
  request.set_values_count(2);
  request.set_remove_values(true);
  EXPECT_TRUE(Op(request).empty());  // not asked to get
  EXPECT_EQ(Items(), (RV{{0, 0}, {1, 3}, {2, 4}, {3, 5}}));
  request.set_index_backwards(1);
  EXPECT_TRUE(Op(request).empty());
  EXPECT_EQ(Items(), (RV{{2, 0}, {3, 5}}));
}

TEST_P(ListTest, BadLocations) {
  PushBack({1, 2, 3});
  auto request = Request();
  request.set_get_values(true);
  request.set_values_count(1);
  StatesListOperateResponse response;
  grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("location"), std::string::npos);
  request.set_index(4);
  status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_NE(status.error_message().find("index 4"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("\"l\""), std::string::npos);
  request.set_index_backwards(7);
  status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_NE(status.error_message().find("index_backwards 7"), std::string::npos);
  request.set_raw_index(-1);
  status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_NE(status.error_message().find("raw_index -1"), std::string::npos);
  request.set_raw_index_backwards(3);
  EXPECT_EQ(Call(request, &response).error_code(), grpc::StatusCode::OUT_OF_RANGE);
  auto empty_name = Request("");
  empty_name.set_at_back(true);
  EXPECT_EQ(Call(empty_name, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Items(), (RV{{0, 1}, {1, 2}, {2, 3}}));
}

TEST_P(ListTest, NullValuesKeepTheirPositions) {
  google::protobuf::Value null_value;
  null_value.set_null_value(google::protobuf::NULL_VALUE);
  Any value_null;
  value_null.PackFrom(null_value);
  auto request = Request();
  request.set_at_back(true);
  *request.add_insert_values() = Int64Value(1);
  *request.add_insert_values() = Any();
  *request.add_insert_values() = value_null;
  *request.add_insert_values() = Int64Value(4);
  StatesListOperateResponse response;
  ASSERT_TRUE(Call(request, &response).ok());
  EXPECT_EQ(Count(), 4u);
  auto get = Request();
  get.set_at_front(true);
  get.set_get_values(true);
  get.set_values_count(4);
  ASSERT_TRUE(Call(get, &response).ok());
  ASSERT_EQ(response.values_size(), 4);
  EXPECT_EQ(IntOf(response.values(0)), 1);
  EXPECT_TRUE(response.values(1).type_url().empty());
  EXPECT_EQ(response.values(2).SerializeAsString(), value_null.SerializeAsString());
  EXPECT_EQ(IntOf(response.values(3)), 4);
}

TEST_P(ListTest, LocateFindsTheFirstEqualValue) {
  PushFront({0});
  PushBack({5, 7, 5});
  auto found = Locate(Int64Value(5));
  EXPECT_TRUE(found.found());
  EXPECT_EQ(found.index(), 1u);
  EXPECT_EQ(found.raw_index(), 0);
  found = Locate(Int64Value(7));
  EXPECT_TRUE(found.found());
  EXPECT_EQ(found.index(), 2u);
  EXPECT_EQ(found.raw_index(), 1);
  EXPECT_FALSE(Locate(Int64Value(6)).found());
  EXPECT_FALSE(Locate(Int32Value(5)).found());  // byte equality, not numeric equality
}

TEST_P(ListTest, QuerySqlIsUnimplemented) {
  grpc2::StatesListQuerySQLRequest request;
  request.mutable_list()->set_list("children");
  request.set_sql("select 1");
  auto context = Context();
  auto reader = List()->QuerySQL(context.get(), request);
  grpc2::StatesListQuerySQLResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_NE(status.error_message().find("\"children\""), std::string::npos);
}

TEST_P(ListTest, DeleteWithAndWithoutKeepCache) {
  PushFront({1});
  PushBack({2});
  grpc2::StatesListDeleteRequest request;
  request.mutable_list()->set_list("l");
  request.set_keep_cache(true);
  google::protobuf::Empty empty;
  ASSERT_TRUE(List()->Delete(Context().get(), request, &empty).ok());
  EXPECT_EQ(Count(), 0u);
  PushBack({3});
  EXPECT_EQ(Items(), (RV{{0, 3}}));  // raw indices start again at 0
  request.set_keep_cache(false);
  ASSERT_TRUE(List()->Delete(Context().get(), request, &empty).ok());
  EXPECT_TRUE(Items().empty());
  request.mutable_list()->set_list("");
  EXPECT_EQ(List()->Delete(Context().get(), request, &empty).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// Restart and reopen tests need a durable backend.
class ListDurabilityTest : public ListTest {};

TEST_P(ListDurabilityTest, SurvivesRestart) {
  PushBack({1, 2, 3});
  PushFront({0});
  auto request = Request();
  request.set_index(2);
  *request.add_insert_values() = Int64Value(9);
  Op(request);
  RV before = Items();
  EXPECT_EQ(before, (RV{{-1, 0}, {0, 1}, {1, 9}, {2, 2}, {3, 3}}));
  fabric().Restart();
  Reconnect();
  EXPECT_EQ(Items(), before);
  PushBack({4});
  EXPECT_EQ(Items().back(), (std::pair<int64_t, int64_t>{4, 4}));
}

TEST_P(ListTest, ValuesOverTheLimitAreRefused) {
  fabric::FabricLimits limits;
  limits.max_value_bytes = 1024;
  InProcessFabric small(GetParam(), limits);
  auto stub = grpc2::FabricStatesList::NewStub(small.NewChannel());
  auto request = Request();
  request.set_at_back(true);
  *request.add_insert_values() = Int64Value(1);
  *request.add_insert_values() = BytesValue(std::string(2000, 'x'));
  StatesListOperateResponse response;
  grpc::Status status = stub->Operate(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("1024"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("insert_values[1]"), std::string::npos);
  grpc2::StatesListCountItemsRequest count;
  count.mutable_list()->set_list("l");
  grpc2::StatesListCountItemsResponse counted;
  ASSERT_TRUE(stub->CountItems(Context().get(), count, &counted).ok());
  EXPECT_EQ(counted.count(), 0u);  // nothing of the refused request was stored
}

INSTANTIATE_TEST_SUITE_P(Backends, ListTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, ListDurabilityTest, ::testing::Values(std::string("rocksdb")),
                         BackendName);

}  // namespace
}  // namespace perper::testing
