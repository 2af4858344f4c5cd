// SPDX-License-Identifier: MIT
#include "perper/scaler/python_path.h"

#include <filesystem>
#include <system_error>

namespace perper::scaler {

std::string BundledPythonPath() {
  std::error_code error;
  std::filesystem::path binary = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  std::filesystem::path dir = binary.parent_path();
  for (const char* relative : {"../share/perper/python", "../python"}) {
    std::filesystem::path candidate = (dir / relative).lexically_normal();
    if (std::filesystem::exists(candidate / "perper" / "__init__.py", error)) {
      return candidate.string();
    }
  }
  return "";
}

std::string AgentPythonPath(std::string_view current, std::string_view bundled) {
  if (bundled.empty()) return std::string(current);
  if (current.empty()) return std::string(bundled);
  return std::string(current) + ":" + std::string(bundled);
}

}  // namespace perper::scaler
