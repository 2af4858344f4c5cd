// SPDX-License-Identifier: MIT
// Journal key layout. Every key starts with a one-byte space tag and '/'. IDs are arbitrary
// bytes, so a key made of an ID and a suffix length-prefixes the ID; int64 suffixes are
// big-endian with the sign bit flipped, so byte order is numeric order.
//
//   x/<execution>                         ExecutionData
//   s/<stream>                            StreamData
//   i/<len><stream><key>                  item value (Any bytes)
//   l/<len><stream><listener name>        ListenerData
//   D/<dictionary>                        marker: the dictionary exists
//   d/<len><dictionary><key Any bytes>    value (Any bytes)
//   L/<list>                              ListData (start and end raw index)
//   I/<len><list><raw index>              value (Any bytes)
//   p/<type url>                          descriptor (FabricProtobufDescriptorsRegisterRequest)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace perper::storage::keys {

inline constexpr char kExecution = 'x';
inline constexpr char kStream = 's';
inline constexpr char kItem = 'i';
inline constexpr char kListener = 'l';
inline constexpr char kDictionary = 'D';
inline constexpr char kDictionaryEntry = 'd';
inline constexpr char kList = 'L';
inline constexpr char kListEntry = 'I';
inline constexpr char kDescriptor = 'p';

// "<space>/"
inline std::string SpacePrefix(char space) { return std::string{space, '/'}; }

// "<space>/<id>"
inline std::string Simple(char space, std::string_view id) {
  std::string key = SpacePrefix(space);
  key.append(id);
  return key;
}

// "<space>/<4-byte big-endian length><id>": the prefix of every composite key under `id`.
inline std::string CompositePrefix(char space, std::string_view id) {
  std::string key = SpacePrefix(space);
  uint32_t n = static_cast<uint32_t>(id.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((n >> shift) & 0xff));
  key.append(id);
  return key;
}

inline void AppendInt64(std::string& key, int64_t value) {
  uint64_t u = static_cast<uint64_t>(value) ^ (uint64_t{1} << 63);
  for (int shift = 56; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((u >> shift) & 0xff));
}

inline int64_t DecodeInt64(std::string_view eight_bytes) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(eight_bytes[i]);
  return static_cast<int64_t>(u ^ (uint64_t{1} << 63));
}

inline std::string Composite(char space, std::string_view id, std::string_view suffix) {
  std::string key = CompositePrefix(space, id);
  key.append(suffix);
  return key;
}

inline std::string CompositeInt(char space, std::string_view id, int64_t suffix) {
  std::string key = CompositePrefix(space, id);
  AppendInt64(key, suffix);
  return key;
}

// The first key after every key that starts with `prefix` (for range deletes).
inline std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last != 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\xff');  // Unreachable for our prefixes, which end in an ID length.
}

// Splits a composite key (after its space prefix) into the ID and the suffix.
// Returns false when the key is malformed.
inline bool SplitComposite(std::string_view key, std::string_view* id, std::string_view* suffix) {
  if (key.size() < 6) return false;
  std::string_view rest = key.substr(2);
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(rest[i]);
  if (rest.size() < 4 + static_cast<size_t>(n)) return false;
  *id = rest.substr(4, n);
  *suffix = rest.substr(4 + n);
  return true;
}

}  // namespace perper::storage::keys
