// SPDX-License-Identifier: MIT
// FabricStatesDictionary over real gRPC, on every backend.
#include <thread>

#include <google/protobuf/struct.pb.h>

#include "tests/support/fabric_fixture.h"

namespace perper::testing {
namespace {

using google::protobuf::Any;
using grpc2::StatesDictionaryOperateRequest;
using grpc2::StatesDictionaryOperateResponse;

Any ValueNull() {
  google::protobuf::Value value;
  value.set_null_value(google::protobuf::NULL_VALUE);
  Any any;
  any.PackFrom(value);
  return any;
}

class DictionaryTest : public FabricTest {
 protected:
  struct Result {
    grpc::Status status;
    StatesDictionaryOperateResponse response;
  };

  Result Operate(const std::string& dictionary, const Any& key, bool get, bool set, bool compare,
                 const Any& new_value = Any(), const Any& expected = Any()) {
    StatesDictionaryOperateRequest request;
    request.mutable_dictionary()->set_dictionary(dictionary);
    *request.mutable_key() = key;
    request.set_get_existing_value(get);
    request.set_set_new_value(set);
    *request.mutable_new_value() = new_value;
    request.set_compare_existing_value(compare);
    *request.mutable_expected_existing_value() = expected;
    Result result;
    result.status = Dictionary()->Operate(Context().get(), request, &result.response);
    return result;
  }
  // Operate on dictionary "d", expecting OK.
  StatesDictionaryOperateResponse Op(const Any& key, bool get, bool set, bool compare,
                                     const Any& new_value = Any(), const Any& expected = Any()) {
    Result result = Operate("d", key, get, set, compare, new_value, expected);
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    return result.response;
  }
  int32_t Count(const std::string& dictionary) {
    grpc2::StatesDictionaryCountItemsRequest request;
    request.mutable_dictionary()->set_dictionary(dictionary);
    grpc2::StatesDictionaryCountItemsResponse response;
    grpc::Status status = Dictionary()->CountItems(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.count();
  }
  std::vector<std::pair<std::string, int64_t>> Items(const std::string& dictionary) {
    grpc2::StatesDictionaryListItemsRequest request;
    request.mutable_dictionary()->set_dictionary(dictionary);
    auto context = Context();
    auto reader = Dictionary()->ListItems(context.get(), request);
    std::vector<std::pair<std::string, int64_t>> items;
    grpc2::StatesDictionaryListItemsResponse response;
    while (reader->Read(&response)) {
      items.emplace_back(StringOf(response.key()), IntOf(response.value()));
    }
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return items;
  }
  grpc::Status Delete(const std::string& dictionary, bool keep_cache) {
    grpc2::StatesDictionaryDeleteRequest request;
    request.mutable_dictionary()->set_dictionary(dictionary);
    request.set_keep_cache(keep_cache);
    google::protobuf::Empty empty;
    return Dictionary()->Delete(Context().get(), request, &empty);
  }
};

using ItemList = std::vector<std::pair<std::string, int64_t>>;

TEST_P(DictionaryTest, CreateIsIdempotentAndNeedsAName) {
  grpc2::StatesDictionaryCreateRequest request;
  request.mutable_dictionary()->set_dictionary("d");
  google::protobuf::Empty empty;
  EXPECT_TRUE(Dictionary()->Create(Context().get(), request, &empty).ok());
  EXPECT_TRUE(Dictionary()->Create(Context().get(), request, &empty).ok());
  EXPECT_EQ(Count("d"), 0);
  request.mutable_dictionary()->set_dictionary("");
  grpc::Status status = Dictionary()->Create(Context().get(), request, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("dictionary"), std::string::npos);
}

TEST_P(DictionaryTest, RowContainsKey) {  // F F F
  EXPECT_FALSE(Op(StringValue("k"), false, false, false).operation_successful());
  Op(StringValue("k"), false, true, false, Int64Value(1));
  auto response = Op(StringValue("k"), false, false, false);
  EXPECT_TRUE(response.operation_successful());
  EXPECT_FALSE(response.has_previous_value());
}

TEST_P(DictionaryTest, RowCompareOnly) {  // F F T
  EXPECT_TRUE(Op(StringValue("k"), false, false, true, Any(), Any()).operation_successful());
  EXPECT_TRUE(Op(StringValue("k"), false, false, true, Any(), ValueNull()).operation_successful());
  EXPECT_FALSE(
      Op(StringValue("k"), false, false, true, Any(), Int64Value(1)).operation_successful());
  Op(StringValue("k"), false, true, false, Int64Value(1));
  EXPECT_TRUE(
      Op(StringValue("k"), false, false, true, Any(), Int64Value(1)).operation_successful());
  // Byte equality: the same number as another type is not equal.
  EXPECT_FALSE(
      Op(StringValue("k"), false, false, true, Any(), Int32Value(1)).operation_successful());
  EXPECT_FALSE(Op(StringValue("k"), false, false, true, Any(), Any()).operation_successful());
}

TEST_P(DictionaryTest, RowSetAndRemove) {  // F T F
  EXPECT_TRUE(Op(StringValue("k"), false, true, false, Int64Value(1)).operation_successful());
  EXPECT_TRUE(Op(StringValue("k"), false, true, false, Int64Value(2)).operation_successful());
  EXPECT_EQ(IntOf(Op(StringValue("k"), true, false, false).previous_value()), 2);
  EXPECT_TRUE(Op(StringValue("k"), false, true, false, Any()).operation_successful());
  EXPECT_EQ(Count("d"), 0);
  EXPECT_FALSE(Op(StringValue("k"), false, true, false, Any()).operation_successful());
  Op(StringValue("k"), false, true, false, Int64Value(3));
  // A google.protobuf.Value null also removes.
  EXPECT_TRUE(Op(StringValue("k"), false, true, false, ValueNull()).operation_successful());
  EXPECT_EQ(Count("d"), 0);
}

TEST_P(DictionaryTest, RowCompareAndSet) {  // F T T
  // Both null: ok when absent, nothing stored.
  EXPECT_TRUE(Op(StringValue("k"), false, true, true, Any(), Any()).operation_successful());
  EXPECT_EQ(Count("d"), 0);
  // Expected null: put if absent.
  EXPECT_TRUE(Op(StringValue("k"), false, true, true, Int64Value(1), Any()).operation_successful());
  EXPECT_FALSE(
      Op(StringValue("k"), false, true, true, Int64Value(2), Any()).operation_successful());
  // Both set: replace if equal.
  EXPECT_FALSE(
      Op(StringValue("k"), false, true, true, Int64Value(3), Int64Value(2)).operation_successful());
  EXPECT_TRUE(
      Op(StringValue("k"), false, true, true, Int64Value(3), Int64Value(1)).operation_successful());
  EXPECT_EQ(IntOf(Op(StringValue("k"), true, false, false).previous_value()), 3);
  // New null: remove if equal.
  EXPECT_FALSE(
      Op(StringValue("k"), false, true, true, Any(), Int64Value(1)).operation_successful());
  EXPECT_TRUE(Op(StringValue("k"), false, true, true, Any(), Int64Value(3)).operation_successful());
  EXPECT_EQ(Count("d"), 0);
  EXPECT_TRUE(Op(StringValue("k"), false, true, true, Any(), Any()).operation_successful());
}

TEST_P(DictionaryTest, RowGet) {  // T F F
  auto response = Op(StringValue("k"), true, false, false);
  EXPECT_TRUE(response.operation_successful());
  EXPECT_FALSE(response.has_previous_value());
  Op(StringValue("k"), false, true, false, StringValue("v"));
  response = Op(StringValue("k"), true, false, false);
  EXPECT_TRUE(response.operation_successful());
  EXPECT_EQ(StringOf(response.previous_value()), "v");
}

TEST_P(DictionaryTest, RowGetAndCompare) {  // T F T
  Op(StringValue("k"), false, true, false, Int64Value(5));
  auto response = Op(StringValue("k"), true, false, true, Any(), Int64Value(5));
  EXPECT_TRUE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 5);
  response = Op(StringValue("k"), true, false, true, Any(), Int64Value(6));
  EXPECT_FALSE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 5);
  response = Op(StringValue("absent"), true, false, true, Any(), Any());
  EXPECT_TRUE(response.operation_successful());
  EXPECT_FALSE(response.has_previous_value());
}

TEST_P(DictionaryTest, RowGetAndSet) {  // T T F
  auto response = Op(StringValue("k"), true, true, false, Int64Value(1));
  EXPECT_TRUE(response.operation_successful());
  EXPECT_FALSE(response.has_previous_value());
  response = Op(StringValue("k"), true, true, false, Int64Value(2));
  EXPECT_TRUE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 1);
  response = Op(StringValue("k"), true, true, false, Any());  // GetAndRemove
  EXPECT_TRUE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 2);
  EXPECT_EQ(Count("d"), 0);
}

TEST_P(DictionaryTest, RowGetAndCompareAndSet) {  // T T T
  // Expected null: getAndPutIfAbsent, ok only when it put.
  auto response = Op(StringValue("k"), true, true, true, Int64Value(1), Any());
  EXPECT_TRUE(response.operation_successful());
  EXPECT_FALSE(response.has_previous_value());
  response = Op(StringValue("k"), true, true, true, Int64Value(2), ValueNull());
  EXPECT_FALSE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 1);
  EXPECT_EQ(IntOf(Op(StringValue("k"), true, false, false).previous_value()), 1);
  // Expected set: (false, current) on mismatch, (true, old) after the swap.
  response = Op(StringValue("k"), true, true, true, Int64Value(3), Int64Value(7));
  EXPECT_FALSE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 1);
  response = Op(StringValue("k"), true, true, true, Int64Value(3), Int64Value(1));
  EXPECT_TRUE(response.operation_successful());
  EXPECT_EQ(IntOf(response.previous_value()), 1);
  EXPECT_EQ(IntOf(Op(StringValue("k"), true, false, false).previous_value()), 3);
}

TEST_P(DictionaryTest, BadRequests) {
  Result result = Operate("d", Any(), true, false, false);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(result.status.error_message().find("key must not be null"), std::string::npos);
  result = Operate("d", ValueNull(), false, true, false, Int64Value(1));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  result = Operate("", StringValue("k"), true, false, false);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(result.status.error_message().find("dictionary"), std::string::npos);
  EXPECT_EQ(Count("d"), 0);
}

TEST_P(DictionaryTest, ConcurrentCompareAndSetIncrementsCountExactly) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  Op(StringValue("n"), false, true, false, Int64Value(0));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto stub = Dictionary();
      for (int i = 0; i < kIncrements; ++i) {
        while (true) {
          StatesDictionaryOperateRequest get;
          get.mutable_dictionary()->set_dictionary("d");
          *get.mutable_key() = StringValue("n");
          get.set_get_existing_value(true);
          StatesDictionaryOperateResponse current;
          if (!stub->Operate(Context().get(), get, &current).ok()) {
            ++failures;
            return;
          }
          StatesDictionaryOperateRequest cas = get;
          cas.set_set_new_value(true);
          cas.set_compare_existing_value(true);
          *cas.mutable_expected_existing_value() = current.previous_value();
          *cas.mutable_new_value() = Int64Value(IntOf(current.previous_value()) + 1);
          StatesDictionaryOperateResponse swapped;
          if (!stub->Operate(Context().get(), cas, &swapped).ok()) {
            ++failures;
            return;
          }
          if (swapped.operation_successful()) break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(IntOf(Op(StringValue("n"), true, false, false).previous_value()),
            kThreads * kIncrements);
}

TEST_P(DictionaryTest, ListItemsInKeyOrderAndCount) {
  for (const char* key : {"c", "a", "d", "b"}) {
    Op(StringValue(key), false, true, false, Int64Value(key[0]));
  }
  EXPECT_EQ(Items("d"), (ItemList{{"a", 'a'}, {"b", 'b'}, {"c", 'c'}, {"d", 'd'}}));
  EXPECT_EQ(Count("d"), 4);
  EXPECT_TRUE(Items("unknown").empty());
  EXPECT_EQ(Count("unknown"), 0);
}

TEST_P(DictionaryTest, QuerySqlIsUnimplemented) {
  grpc2::StatesDictionaryQuerySQLRequest request;
  request.mutable_dictionary()->set_dictionary("prices");
  request.set_sql("select * from prices");
  auto context = Context();
  auto reader = Dictionary()->QuerySQL(context.get(), request);
  grpc2::StatesDictionaryQuerySQLResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_NE(status.error_message().find("\"prices\""), std::string::npos);
}

TEST_P(DictionaryTest, DeleteWithAndWithoutKeepCache) {
  Op(StringValue("a"), false, true, false, Int64Value(1));
  Op(StringValue("b"), false, true, false, Int64Value(2));
  ASSERT_TRUE(Delete("d", /*keep_cache=*/true).ok());
  EXPECT_EQ(Count("d"), 0);
  EXPECT_FALSE(Op(StringValue("a"), false, false, false).operation_successful());
  Op(StringValue("c"), false, true, false, Int64Value(3));
  EXPECT_EQ(Items("d"), (ItemList{{"c", 3}}));
  ASSERT_TRUE(Delete("d", /*keep_cache=*/false).ok());
  EXPECT_EQ(Count("d"), 0);
  EXPECT_TRUE(Delete("never-created", false).ok());
  EXPECT_EQ(Delete("", false).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Restart and reopen tests need a durable backend.
class DictionaryDurabilityTest : public DictionaryTest {};

TEST_P(DictionaryDurabilityTest, SurvivesRestart) {
  Op(StringValue("a"), false, true, false, Int64Value(1));
  Op(StringValue("b"), false, true, false, Int64Value(2));
  Op(StringValue("a"), false, true, true, Int64Value(10), Int64Value(1));
  Op(StringValue("b"), false, true, false, Any());
  fabric().Restart();
  Reconnect();
  EXPECT_EQ(Items("d"), (ItemList{{"a", 10}}));
}

TEST_P(DictionaryTest, ValuesOverTheLimitAreRefused) {
  fabric::FabricLimits limits;
  limits.max_value_bytes = 1024;
  InProcessFabric small(GetParam(), limits);
  auto stub = grpc2::FabricStatesDictionary::NewStub(small.NewChannel());
  StatesDictionaryOperateRequest request;
  request.mutable_dictionary()->set_dictionary("d");
  *request.mutable_key() = StringValue("k");
  request.set_set_new_value(true);
  *request.mutable_new_value() = BytesValue(std::string(2000, 'x'));
  StatesDictionaryOperateResponse response;
  grpc::Status status = stub->Operate(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("1024"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("new_value"), std::string::npos);
  *request.mutable_new_value() = BytesValue(std::string(900, 'x'));
  EXPECT_TRUE(stub->Operate(Context().get(), request, &response).ok());
  *request.mutable_key() = BytesValue(std::string(2000, 'k'));
  EXPECT_EQ(stub->Operate(Context().get(), request, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

INSTANTIATE_TEST_SUITE_P(Backends, DictionaryTest, AllBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, DictionaryDurabilityTest,
                         ::testing::Values(std::string("rocksdb")), BackendName);

}  // namespace
}  // namespace perper::testing
