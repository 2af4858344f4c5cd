// SPDX-License-Identifier: MIT
// The key layout of the redis backend: hash tags and the encodings every part shares.
//
// Every key starts with a hash tag `{<kind>:<escaped name>}`, so everything that one script
// must change atomically shares a slot (docs/cluster.md lists every key):
//   {i:<instance>}  an instance's executions and its state dictionary and list "<instance>-"
//   {e:<id>}        an execution without an instance, and every execution's locator
//   {a:<agent>}     the agent's execution index (listings by agent)
//   {s:<stream>}    a stream: metadata, items, listeners
//   {d:<name>}      any other dictionary; {l:<name>} any other list
//   {p:<process>}   a Fabric process: its lease and what it must clean up
//   {perper}        global indexes (names of agents, streams, dictionaries, lists; descriptors)
// Names are escaped ('%' → "%25", '}' → "%7D") so a name never ends its tag early and two
// names never share a tag by accident.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace perper::storage::redis {

inline constexpr std::string_view kGlobalTag = "{perper}";

std::string EscapeTagName(std::string_view name);
// "{<kind>:<escaped name>}"
std::string Tag(char kind, std::string_view name);

std::string InstanceTag(std::string_view instance);
// The tag of an execution's record: its instance's tag, or its own when it has no instance.
std::string ExecutionTag(std::string_view instance, std::string_view execution);
std::string LocatorTag(std::string_view execution);  // == ExecutionTag("", execution)
std::string AgentTag(std::string_view agent);
std::string StreamTag(std::string_view stream);
// A dictionary or list named "<instance>-" lives with the instance; any other under its name.
std::string DictionaryTag(std::string_view dictionary);
std::string ListTag(std::string_view list);
std::string ProcessTag(std::string_view process_id);

// "<tag>:<suffix>"
std::string Key(std::string_view tag, std::string_view suffix);

// 8 bytes, big-endian with the sign bit flipped: byte order is numeric order (ZRANGEBYLEX).
std::string EncodeInt64(int64_t value);
// REQUIRES: bytes.size() == 8.
int64_t DecodeInt64(std::string_view bytes);

}  // namespace perper::storage::redis
