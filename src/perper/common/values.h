// SPDX-License-Identifier: MIT
// Values are serialized google.protobuf.Any messages, kept as opaque bytes: what a client wrote
// is exactly what a reader gets back. These helpers answer the few questions the Fabric asks of
// a value without decoding it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <google/protobuf/any.pb.h>

namespace perper {

// True for the null value: empty bytes, an Any with an empty type URL, or an Any holding a
// google.protobuf.Value whose kind is null_value.
bool IsNullValue(std::string_view any_bytes);

// Serializes `any` deterministically; the empty Any becomes "".
std::string SerializeAny(const google::protobuf::Any& any);

// Parses stored bytes back into an Any. Stored bytes came from SerializeAny, so this cannot fail
// for them; corrupt bytes yield an empty Any.
google::protobuf::Any ParseAny(std::string_view bytes);

// Ticks (100 ns units since the Unix epoch): the time base of unpacked stream keys.
int64_t NowTicks();

}  // namespace perper
