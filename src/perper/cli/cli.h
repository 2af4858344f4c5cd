// SPDX-License-Identifier: MIT
// The `perper` command line (docs/cli.md): `up`, `fabric`, the inspection commands
// `executions`, `instances`, `streams`, `stream tail`, `state get|list`, `states`, `call`,
// `destroy`, `delete execution|stream|state`, `init cpp|python NAME` and `completion bash`.
//
// Exit codes: 0 success, 2 usage or manifest errors, 1 runtime failures (an unreachable Fabric,
// an unknown ID, a failed call); `perper up` returns the Deploy process's exit code.
//
// Thread model: runs on the calling (main) thread; `up` and `fabric` block SIGINT, SIGTERM (and
// SIGCHLD for `up`) before they start any thread.
#pragma once

namespace perper::cli {

int Main(int argc, char** argv);

}  // namespace perper::cli
