// SPDX-License-Identifier: MIT
// Named loggers per component. Messages put IDs first: "[exec=Run-1 stream=s] created".
//
//   PERPER_LOG_DEBUG(Logger::kFabric, "[exec={}] completed", id);
//
// The level is tested before the arguments are formatted.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include <spdlog/spdlog.h>

namespace perper {

enum class Logger { kFabric, kStorage, kSdk, kScaler, kCli };

// Returns the logger of `component`; thread-safe. Loggers write to stderr.
spdlog::logger& GetLogger(Logger component);

// Sets the level of every logger ("trace", "debug", "info", "warn", "error", "off").
absl::Status SetLogLevel(std::string_view level);

}  // namespace perper

#define PERPER_LOG(component, level, ...)                  \
  do {                                                     \
    auto& perper_logger_ = ::perper::GetLogger(component); \
    if (perper_logger_.should_log(level)) {                \
      perper_logger_.log(level, __VA_ARGS__);              \
    }                                                      \
  } while (false)
#define PERPER_LOG_TRACE(c, ...) PERPER_LOG(c, spdlog::level::trace, __VA_ARGS__)
#define PERPER_LOG_DEBUG(c, ...) PERPER_LOG(c, spdlog::level::debug, __VA_ARGS__)
#define PERPER_LOG_INFO(c, ...) PERPER_LOG(c, spdlog::level::info, __VA_ARGS__)
#define PERPER_LOG_WARN(c, ...) PERPER_LOG(c, spdlog::level::warn, __VA_ARGS__)
#define PERPER_LOG_ERROR(c, ...) PERPER_LOG(c, spdlog::level::err, __VA_ARGS__)
