// SPDX-License-Identifier: MIT
// Starting a child process for a test, with its output in a file.
//
//   pid_t pid = SpawnWithLog({"/usr/bin/redis-server", "--port", "0"}, {}, dir + "/log");
//   std::string log = ReadWholeFile(dir + "/log");   // perper/common/files.h
//
// Stateless functions; thread-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace perper::testing {

// The test's environment with `env` applied: a "NAME=value" entry replaces NAME or is added, a
// bare "NAME" removes it. For execve, so built before a fork.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& env);

// Forks and execs `argv` (a path, or a name looked up on PATH) with stdout and stderr to
// `log_path`, the environment ChildEnvironment(env), and no signal blocked. The arguments and
// environment are built before the fork, so a test whose threads run may call it (the child
// makes only system calls). Returns the pid; the child exits 127 when the exec fails. With
// `die_with_parent` the child is killed (SIGKILL) when the calling thread's process ends, however
// it ends: for servers a test binary keeps for its whole life and never stops itself. The kill
// comes when the thread that called this exits, so call it from a thread that lives as long as
// the server should.
pid_t SpawnWithLog(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const std::string& log_path, bool die_with_parent = false);

}  // namespace perper::testing
