// SPDX-License-Identifier: MIT
// Starting a child process for a test, with its output in a file.
//
//   pid_t pid = SpawnWithLog({"/usr/bin/redis-server", "--port", "0"}, {}, dir + "/log");
//   std::string log = ReadWholeFile(dir + "/log");
//
// Stateless functions; thread-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace perper::testing {

// Forks and execs `argv` (a path, or a name looked up on PATH) with stdout and stderr to
// `log_path`, the `env` entries ("NAME=value") added, and no signal blocked. Returns the pid;
// the child exits 127 when the exec fails. With `die_with_parent` the child is killed
// (SIGKILL) when the calling thread's process ends, however it ends: for servers a test binary
// keeps for its whole life and never stops itself. The kill comes when the thread that called
// this exits, so call it from a thread that lives as long as the server should.
pid_t SpawnWithLog(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const std::string& log_path, bool die_with_parent = false);

// The file's contents; empty when it cannot be read.
std::string ReadWholeFile(const std::string& path);

}  // namespace perper::testing
