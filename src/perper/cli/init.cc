// SPDX-License-Identifier: MIT
// `perper init cpp|python NAME`: a runnable application to start from.
#include <sys/stat.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

#include "perper/cli/commands.h"
#include "perper/cli/init_templates.h"

namespace perper::cli {
namespace {

namespace fs = std::filesystem;

struct File {
  std::string path;  // relative to the application's folder
  std::string what;  // one line for the summary
  std::string text;  // "@NAME@" stands for the name
};

// The hello-world example (examples/cpp/hello_agent) as the agent @NAME@: it greets @NAME@ and
// is run by `perper up`. Without the license line of this repository's files.
std::string HelloAgent() {
  absl::string_view source = kHelloAgentSource;
  if (absl::StartsWith(source, "// SPDX")) source.remove_prefix(source.find('\n') + 1);
  return absl::StrReplaceAll(source,
                             {{"perper::Agent app(\"Hello\")", "perper::Agent app(\"@NAME@\")"},
                              {"\"Greet\", \"world\"", "\"Greet\", \"@NAME@\""},
                              {"Hello, world!", "Hello, @NAME@!"},
                              {"./hello_agent", "perper up app.yaml"},
                              {"PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ", ""}});
}

// The C++ template: an agent built against the installed SDK, as examples/cpp/out_of_tree is.
std::vector<File> CppTemplate() {
  return {
      {"agent.cc", "the agent @NAME@: its Deploy calls its delegate Greet and prints the answer",
       HelloAgent()},
      {"CMakeLists.txt", "builds it against the installed Perper SDK (find_package(Perper))",
       R"(# Builds the agent @NAME@ against the installed Perper C++ SDK:
#   cmake -S . -B build -DCMAKE_PREFIX_PATH=<where Perper is installed> && cmake --build build
cmake_minimum_required(VERSION 3.20)
project(@NAME@ CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)

find_package(Perper CONFIG REQUIRED)
add_executable(@NAME@ agent.cc)
target_link_libraries(@NAME@ PRIVATE Perper::agent)
)"},
      {"app.yaml", "the application: perper up app.yaml",
       R"(# perper up app.yaml: starts a Fabric and the process of @NAME@, whose Deploy prints a
# greeting and ends the application. Build the agent first (see CMakeLists.txt); the command
# is relative to this file. The format: docs/scaler.md.
name: @NAME@
deploy: @NAME@
agents:
  @NAME@:
    command: ./build/@NAME@
)"},
  };
}

// The Python template: a script importing the SDK's package `perper`.
std::vector<File> PythonTemplate() {
  return {
      {"agent.py", "the agent @NAME@: its Deploy calls its delegate Greet and prints the answer",
       R"(#!/usr/bin/env python3
"""The agent @NAME@.

`perper up app.yaml` starts this process and runs its Deploy, which calls the delegate Greet
through the Fabric, prints the answer and ends the application. perper up gives this process
the package `perper` (the Python SDK) of its own build or install; run by hand, the script needs
it installed (pip install ./sdk/python) or on PYTHONPATH (<build>/python).
"""

import perper


async def greet(name):
    """A delegate: called through the Fabric, with its arguments and result as values."""
    return f"Hello, {name}!"


async def deploy():
    """Runs once, when perper up starts the application."""
    greeting = await perper.call("Greet", "@NAME@")
    print(greeting, flush=True)


if __name__ == "__main__":
    perper.run("@NAME@", {"Deploy": deploy, "Greet": greet}, stop_after_deploy=True)
)"},
      {"app.yaml", "the application: perper up app.yaml",
       R"(# perper up app.yaml: starts a Fabric and the process of @NAME@, whose Deploy prints a
# greeting and ends the application. perper up gives the process the Python SDK of its own
# build or install (on PYTHONPATH). The interpreter must have grpcio and protobuf: on Debian
# /usr/bin/python3 with python3-grpcio and python3-protobuf; PERPER_PYTHON picks it when the
# python3 first on PATH is another one. The format: docs/scaler.md.
name: @NAME@
deploy: @NAME@
agents:
  @NAME@:
    command: ["${PERPER_PYTHON:-python3}", agent.py]
)"},
  };
}

// Names that are an agent type, a folder, a CMake target and a C++ or Python string alike.
bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "Registry") return false;
  if (!std::isalpha(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace

int RunInit(const std::string& language, const std::string& name) {
  std::vector<File> files;
  if (language == "cpp") {
    files = CppTemplate();
  } else if (language == "python") {
    files = PythonTemplate();
  } else {
    std::fprintf(stderr, "perper init: no template for '%s'; the templates are cpp and python\n",
                 language.c_str());
    return 2;
  }
  if (!ValidName(name)) {
    std::fprintf(stderr,
                 "perper init: '%s' cannot name an agent: use letters, digits, '_' and '-', "
                 "starting with a letter (and not Registry)\n",
                 name.c_str());
    return 2;
  }
  std::error_code error;
  if (fs::exists(name, error) && !(fs::is_directory(name, error) && fs::is_empty(name, error))) {
    std::fprintf(stderr,
                 "perper init: ./%s exists and is not an empty folder; nothing was written "
                 "(choose another NAME, or remove it)\n",
                 name.c_str());
    return 1;
  }
  fs::create_directories(name, error);
  if (error) {
    std::fprintf(stderr, "perper init: cannot create ./%s: %s\n", name.c_str(),
                 error.message().c_str());
    return 1;
  }
  std::string summary = absl::StrCat("Created ./", name, "/, a ",
                                     language == "cpp" ? "C++" : "Python", " application:\n");
  for (const File& file : files) {
    const std::string path = absl::StrCat(name, "/", file.path);
    std::ofstream out(path);
    out << absl::StrReplaceAll(file.text, {{"@NAME@", name}});
    out.close();
    if (!out) {
      std::fprintf(stderr, "perper init: cannot write %s\n", path.c_str());
      return 1;
    }
    absl::StrAppend(&summary, "  ", path, "  ", absl::StrReplaceAll(file.what, {{"@NAME@", name}}),
                    "\n");
  }
  if (language == "cpp") {
    absl::StrAppend(&summary, "Build it, then run it:\n  cmake -S ", name, " -B ", name,
                    "/build -DCMAKE_PREFIX_PATH=<where Perper is installed> && cmake --build ",
                    name, "/build\n  perper up ", name, "/app.yaml\n");
  } else {
    absl::StrAppend(&summary,
                    "Run it (perper up gives the agent the Python SDK; its Python needs grpcio "
                    "and protobuf, see app.yaml):\n  perper up ",
                    name, "/app.yaml\n");
  }
  std::fputs(summary.c_str(), stdout);
  return 0;
}

}  // namespace perper::cli
