// SPDX-License-Identifier: MIT
// Redis Cluster key → hash slot, as the cluster specification defines it, so the client can
// route a command to the node owning the key without asking the server.
#pragma once

#include <cstdint>
#include <string_view>

namespace perper::storage::redis {

inline constexpr int kSlotCount = 16384;

// CRC16/XMODEM (polynomial 0x1021, initial value 0), the variant Redis Cluster uses.
uint16_t Crc16(std::string_view data);

// The slot of `key`: CRC16 mod 16384 over the content of the first `{...}` when that content is
// non-empty (a hash tag), over the whole key otherwise.
int KeySlot(std::string_view key);

}  // namespace perper::storage::redis
