// SPDX-License-Identifier: MIT
// Bounded text for messages: what a client supplied (an ID, an error text) is quoted in a status
// message only in a bounded form, so that no answer outgrows the client's metadata limit.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace perper {

// The largest status message the Fabric sends, in bytes. gRPC carries it percent-encoded in a
// trailer (up to 3 bytes per byte), and clients refuse trailers over 8 KiB by default.
inline constexpr size_t kMaxStatusMessageBytes = 1024;
// The longest error text (an execution's or a stream's) the Fabric accepts by default; the SDKs
// cut a handler's error to it, so that a long one still fails the execution.
inline constexpr size_t kMaxErrorTextBytes = 64 * 1024;
// How much of a long ID a message quotes.
inline constexpr size_t kQuotedIdPrefixBytes = 64;

// `id` as a message names it: whole when at most 96 bytes, otherwise its first 64 bytes, "…" and
// its length ("Run-aaaa…(8000 bytes)").
std::string ShortId(std::string_view id);

// ShortId(name) in double quotes, as messages quote a name ("dictionary \"orders\"").
std::string Quoted(std::string_view name);

// `text` when it fits in `max_bytes`; otherwise its longest prefix that leaves room for the note
// " …[cut: N bytes in all]" and does not split a UTF-8 sequence, followed by that note.
// REQUIRES: max_bytes >= 64.
std::string BoundedText(std::string_view text, size_t max_bytes);

}  // namespace perper
