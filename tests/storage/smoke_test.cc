// SPDX-License-Identifier: MIT
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

class StoreOpenTest : public StoreTest {};

TEST_P(StoreOpenTest, OpensAndReopens) {
  Reopen();
  EXPECT_TRUE(store().descriptors().GetDescriptor("x/none").value() == std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreOpenTest, StoreBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
