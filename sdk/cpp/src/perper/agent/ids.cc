// SPDX-License-Identifier: MIT
#include "perper/agent/ids.h"

#include <openssl/sha.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace perper::internal {
namespace {

std::string FormatUuid(uint64_t a, uint64_t b) {
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", a >> 32, (a >> 16) & 0xffff, a & 0xffff,
                         b >> 48, b & 0xffffffffffffULL);
}

uint64_t BigEndian(const unsigned char* bytes) {
  uint64_t out = 0;
  for (int i = 0; i < 8; ++i) {
    out = (out << 8) | bytes[i];
  }
  return out;
}

}  // namespace

std::string DerivedUuid(std::string_view execution, uint64_t n) {
  std::string input = absl::StrCat(std::string(execution), "\n", n);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return FormatUuid(BigEndian(digest), BigEndian(digest + 8));
}

std::string NewUuid() {
  thread_local std::mt19937_64 random(std::random_device{}());
  uint64_t a = random();
  uint64_t b = random();
  return FormatUuid(a, b);
}

}  // namespace perper::internal
