// SPDX-License-Identifier: MIT
// Where the Python SDK that belongs to this `perper` binary is, so that `perper up` runs Python
// agents of a checkout (or of a `cmake --install`) without installing the SDK with pip.
#pragma once

#include <string>
#include <string_view>

namespace perper::scaler {

// The folder holding the package `perper` next to the running binary, or "" when there is none:
// <prefix>/share/perper/python for an installed <prefix>/bin/perper, <build>/python for the
// build tree's <build>/apps/perper (sdk/python/CMakeLists.txt lays both out).
std::string BundledPythonPath();

// The PYTHONPATH of an agent process: `current` (its own, from the manifest or inherited) with
// `bundled` after it, so that a package the user put on the path, or installed, is imported
// before the bundled one.
std::string AgentPythonPath(std::string_view current, std::string_view bundled);

}  // namespace perper::scaler
