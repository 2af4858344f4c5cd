// SPDX-License-Identifier: MIT
// Hello world across two agent processes, the printing side.
//
// Serves StreamPrinterAgent: StreamPrinter(stream) prints every character of a stream of
// strings on one line, as it arrives, and returns how many it printed. Runs until SIGINT or
// SIGTERM.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./stream_printer_agent
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "perper/agent/agent.h"

int main() {
  perper::Agent app("StreamPrinterAgent");

  app.on("StreamPrinter",
         [](perper::Context& ctx,
            perper::grpc2::model::PerperStream stream) -> perper::Task<absl::StatusOr<int64_t>> {
           std::printf("Hello world from StreamPrinterAgent's StreamPrinter!\n");
           std::fflush(stdout);
           perper::StreamReader<std::string> reader = ctx.stream(stream).listen<std::string>();
           int64_t count = 0;
           while (true) {
             absl::StatusOr<std::optional<std::string>> text = co_await reader.next();
             if (!text.ok()) {
               co_return text.status();  // the stream failed
             }
             if (!text->has_value()) {
               break;  // the stream completed
             }
             std::printf("%s", (*text)->c_str());
             std::fflush(stdout);
             ++count;
           }
           std::printf("\n");
           std::fflush(stdout);
           co_return count;
         });

  return perper::Run(app);
}
