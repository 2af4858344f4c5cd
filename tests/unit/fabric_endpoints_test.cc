// SPDX-License-Identifier: MIT
// ParseFabricEndpoints: the one reading of a Fabric endpoint list, shared by the C++ SDK
// (PERPER_FABRIC_ENDPOINT), the CLI (--fabric) and `perper up`.
#include "perper/common/fabric_endpoints.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace perper {
namespace {

TEST(FabricEndpointsTest, AListIsSplitTrimmedAndStrippedOfHttp) {
  auto addresses =
      ParseFabricEndpoints(" a:1,b:2 , http://c:3 ,http://d:4", "PERPER_FABRIC_ENDPOINT");
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_EQ(*addresses, (std::vector<std::string>{"a:1", "b:2", "c:3", "d:4"}));
  addresses = ParseFabricEndpoints("http://a:1", "PERPER_FABRIC_ENDPOINT");
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_EQ(*addresses, (std::vector<std::string>{"a:1"}));
}

TEST(FabricEndpointsTest, EmptyEntriesAndTlsAreErrorsNamingTheSourceAndValue) {
  for (const char* value : {"a:1,,b:2", "a:1,", " , a:1", "http://", " "}) {
    auto addresses = ParseFabricEndpoints(value, "PERPER_FABRIC_ENDPOINT");
    ASSERT_FALSE(addresses.ok()) << value;
    EXPECT_TRUE(absl::IsInvalidArgument(addresses.status()));
    EXPECT_NE(addresses.status().message().find("PERPER_FABRIC_ENDPOINT"), std::string::npos);
    EXPECT_NE(addresses.status().message().find(value), std::string::npos) << addresses.status();
  }
  auto tls = ParseFabricEndpoints("a:1,https://b:2", "PERPER_FABRIC_ENDPOINT");
  ASSERT_FALSE(tls.ok());
  EXPECT_NE(tls.status().message().find("TLS"), std::string::npos) << tls.status();
}

TEST(FabricEndpointsTest, AnAddressIsKeptAsGiven) {
  // host:port, a name, an IPv6 literal, and gRPC's own target forms pass through unchanged:
  // gRPC dials them.
  for (const char* value : {"127.0.0.1:40400", "localhost:1", "fabric:40400", "[::1]:40400",
                            "dns:///fabric:40400", "ipv4:127.0.0.1:1"}) {
    auto addresses = ParseFabricEndpoints(value, "--fabric");
    ASSERT_TRUE(addresses.ok()) << value << ": " << addresses.status();
    EXPECT_EQ(*addresses, (std::vector<std::string>{value}));
  }
}

TEST(FabricEndpointsTest, OnlyALeadingHttpPrefixIsRemoved) {
  auto addresses = ParseFabricEndpoints("http://http://a:1", "--fabric");
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_EQ(*addresses, (std::vector<std::string>{"http://a:1"}));
}

TEST(FabricEndpointsTest, TheMessagesNameTheSourceTheValueAndTheEntry) {
  auto empty = ParseFabricEndpoints("a:1,,b:2", "--fabric");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "--fabric 'a:1,,b:2' has an empty address");
  auto tls = ParseFabricEndpoints("https://a:1", "fabric.address");
  ASSERT_FALSE(tls.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(tls.status()));
  EXPECT_EQ(tls.status().message(),
            "fabric.address 'https://a:1': https://a:1: TLS is not supported yet");
}

}  // namespace
}  // namespace perper
