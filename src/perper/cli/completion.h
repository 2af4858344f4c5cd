// SPDX-License-Identifier: MIT
// Shell completion for the `perper` command line, generated from its CLI11 definition so that
// it knows every command and flag the binary has (`perper completion bash`, docs/cli.md).
//
// Stateless; thread-compatible (reads the app definition).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace perper::cli {

// A bash script defining `_perper` and registering it with `complete -F _perper perper`. It
// completes command names, then the flags of the command typed so far; file names where a
// positional or an option value has the type name FILE or DIR (CLI11's type_name), and nothing
// for other option values.
std::string BashCompletion(const CLI::App& app);

}  // namespace perper::cli
