// SPDX-License-Identifier: MIT
#include "perper/common/logging.h"

#include <array>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace perper {
namespace {

constexpr std::array<const char*, 5> kNames = {"fabric", "storage", "sdk", "scaler", "cli"};

struct Loggers {
  Loggers() {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    for (size_t i = 0; i < kNames.size(); ++i) {
      loggers[i] = std::make_shared<spdlog::logger>(kNames[i], sink);
      loggers[i]->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %n: %v");
      loggers[i]->set_level(spdlog::level::info);
    }
  }
  std::array<std::shared_ptr<spdlog::logger>, kNames.size()> loggers;
};

Loggers& AllLoggers() {
  static Loggers* loggers = new Loggers();  // Never destroyed: logging works during exit.
  return *loggers;
}

}  // namespace

spdlog::logger& GetLogger(Logger component) {
  return *AllLoggers().loggers[static_cast<size_t>(component)];
}

absl::Status SetLogLevel(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError("unknown log level '" + std::string(level) +
                                      "'; expected trace, debug, info, warn, error or off");
  }
  for (auto& logger : AllLoggers().loggers) logger->set_level(parsed);
  return absl::OkStatus();
}

}  // namespace perper
