// SPDX-License-Identifier: MIT
// Files and programs of the machine, as the Fabric, the CLI, the scalers, perper-bench and the
// tests use them: a file written whole or not at all (the address files that tests, scripts and
// the CLI wait for, the compose file), a file read whole (a child process's log), and a program
// found on PATH.
// Stateless functions; thread-safe (two writers of one path must not run at once).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace perper {

// Writes `content` to `path` through the temporary file `path`.tmp renamed over it, so that a
// reader sees the old file or the whole new one, never a part. UNAVAILABLE naming the path when
// it cannot (the temporary file is then removed).
absl::Status WriteFileAtomically(const std::string& path, std::string_view content);

// The bound address of a server, as --address-file asks for it: `address` and a newline, written
// atomically. UNAVAILABLE "cannot write address file <path>" when it cannot.
absl::Status WriteAddressFile(const std::string& path, std::string_view address);

// The contents of the file at `path`; empty when it cannot be read (a log not yet written).
std::string ReadWholeFile(const std::string& path);

// The address an address file holds: its first line, spaces around it removed; empty while the
// file does not exist (the server is not listening yet) or cannot be read.
std::string ReadAddressFile(const std::string& path);

// The first executable `name` in the folders of $PATH (/usr/bin:/bin when it is unset), as a
// path; empty when there is none. `name` is a bare name, without '/'.
std::string FindOnPath(std::string_view name);

}  // namespace perper
