// SPDX-License-Identifier: MIT
#include "perper/storage/redis/redis_keys.h"

#include "perper/common/status_macros.h"

namespace perper::storage::redis {

std::string EscapeTagName(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == '%') {
      out.append("%25");
    } else if (c == '}') {
      out.append("%7D");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Tag(char kind, std::string_view name) {
  std::string tag = "{";
  tag.push_back(kind);
  tag.push_back(':');
  tag.append(EscapeTagName(name));
  tag.push_back('}');
  return tag;
}

std::string InstanceTag(std::string_view instance) { return Tag('i', instance); }

std::string ExecutionTag(std::string_view instance, std::string_view execution) {
  return instance.empty() ? Tag('e', execution) : InstanceTag(instance);
}

std::string LocatorTag(std::string_view execution) { return Tag('e', execution); }
std::string AgentTag(std::string_view agent) { return Tag('a', agent); }
std::string StreamTag(std::string_view stream) { return Tag('s', stream); }

std::string DictionaryTag(std::string_view dictionary) {
  if (dictionary.size() > 1 && dictionary.back() == '-') {
    return InstanceTag(dictionary.substr(0, dictionary.size() - 1));
  }
  return Tag('d', dictionary);
}

std::string ListTag(std::string_view list) {
  if (list.size() > 1 && list.back() == '-') return InstanceTag(list.substr(0, list.size() - 1));
  return Tag('l', list);
}

std::string ProcessTag(std::string_view process_id) { return Tag('p', process_id); }

std::string Key(std::string_view tag, std::string_view suffix) {
  std::string key(tag);
  key.push_back(':');
  key.append(suffix);
  return key;
}

std::string EncodeInt64(int64_t value) {
  uint64_t u = static_cast<uint64_t>(value) ^ (uint64_t{1} << 63);
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return out;
}

int64_t DecodeInt64(std::string_view bytes) {
  PERPER_CHECK(bytes.size() == 8) << "an encoded int64 has 8 bytes, not " << bytes.size();
  uint64_t u = 0;
  for (char c : bytes) u = (u << 8) | static_cast<unsigned char>(c);
  return static_cast<int64_t>(u ^ (uint64_t{1} << 63));
}

}  // namespace perper::storage::redis
