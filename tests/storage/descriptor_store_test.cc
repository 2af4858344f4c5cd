// SPDX-License-Identifier: MIT
// Conformance of DescriptorStore on every backend.
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

class DescriptorStoreTest : public StoreTest {};

TEST_P(DescriptorStoreTest, RegisterGetReplace) {
  auto& descriptors = store().descriptors();
  EXPECT_FALSE(descriptors.GetDescriptor("x/a.B").value().has_value());
  std::string bytes("\x0a\x05x/a.B\x12\x00\xff", 10);
  ASSERT_TRUE(descriptors.RegisterDescriptor("x/a.B", bytes).ok());
  EXPECT_EQ(descriptors.GetDescriptor("x/a.B").value(), bytes);
  ASSERT_TRUE(descriptors.RegisterDescriptor("x/a.B", "second").ok());
  EXPECT_EQ(descriptors.GetDescriptor("x/a.B").value(), "second");
  EXPECT_FALSE(descriptors.GetDescriptor("x/a").value().has_value());
  EXPECT_EQ(descriptors.RegisterDescriptor("", "x").code(), absl::StatusCode::kInvalidArgument);
}

// Restart and reopen tests need a durable backend.
class DescriptorStoreDurabilityTest : public DescriptorStoreTest {};

TEST_P(DescriptorStoreDurabilityTest, SurvivesReopen) {
  std::string bytes("\x00\x01\x02\xff", 4);
  ASSERT_TRUE(store().descriptors().RegisterDescriptor("x/one", "first").ok());
  ASSERT_TRUE(store().descriptors().RegisterDescriptor("x/one", bytes).ok());
  ASSERT_TRUE(store().descriptors().RegisterDescriptor("type.googleapis.com/two", "2").ok());
  Reopen();
  EXPECT_EQ(store().descriptors().GetDescriptor("x/one").value(), bytes);
  EXPECT_EQ(store().descriptors().GetDescriptor("type.googleapis.com/two").value(), "2");
}

INSTANTIATE_TEST_SUITE_P(Backends, DescriptorStoreTest, StoreBackends(), BackendName);
INSTANTIATE_TEST_SUITE_P(Durable, DescriptorStoreDurabilityTest, DurableBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
