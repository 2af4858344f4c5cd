// SPDX-License-Identifier: MIT
// Hello world across two agent processes, the deploying side.
//
// Deploy starts a stream of characters (HelloWorldGenerator, served by this process), starts an
// instance of StreamPrinterAgent (served by stream_printer_agent, another process), hands it the
// stream and waits until it has printed the whole stream; then the process exits.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./stream_printer_agent &
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./my_first_agent
//
// HELLO_DELAY_MS sets the pause between characters (default 100).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "perper/agent/agent.h"

namespace {

constexpr char kMessage[] = "Hello world through stream!";

std::chrono::milliseconds Delay() {
  const char* value = std::getenv("HELLO_DELAY_MS");
  return std::chrono::milliseconds(value != nullptr ? std::atoi(value) : 100);
}

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace

int main() {
  perper::Agent app("MyFirstAgent");

  // A stream delegate: each start runs this producer on a new ephemeral stream, once the stream
  // has its first listener, so no character is written before someone reads.
  app.stream("HelloWorldGenerator",
             [](perper::StreamWriter<std::string>& out) -> perper::Task<absl::Status> {
               Say("Hello world from HelloWorldGenerator!");
               asio::steady_timer timer(co_await asio::this_coro::executor);
               for (char c : std::string(kMessage)) {
                 timer.expires_after(Delay());
                 auto [error] =
                     co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
                 if (error) {
                   co_return absl::CancelledError("stopped");
                 }
                 if (absl::Status written = co_await out.write(std::string(1, c)); !written.ok()) {
                   co_return written;
                 }
               }
               co_return absl::OkStatus();  // the stream completes
             });

  app.on_deploy([](perper::Context& ctx) -> perper::Task<void> {
    Say("Hello world from Deploy!");
    absl::StatusOr<perper::Stream> stream = co_await ctx.stream("HelloWorldGenerator");
    absl::StatusOr<perper::Instance> printer = co_await ctx.start_agent("StreamPrinterAgent");
    if (!stream.ok() || !printer.ok()) {
      std::fprintf(stderr, "start failed: %s %s\n", stream.status().ToString().c_str(),
                   printer.status().ToString().c_str());
      ctx.stop_process(1);
      co_return;
    }
    perper::Result<int64_t> printed =
        co_await printer->call<int64_t>("StreamPrinter", stream->model());
    if (!printed.ok()) {
      std::fprintf(stderr, "StreamPrinter failed: %s\n", printed.status().ToString().c_str());
      ctx.stop_process(1);
      co_return;
    }
    Say("StreamPrinter printed " + std::to_string(*printed) + " characters");
    (void)co_await printer->destroy();
    ctx.stop_process(0);
  });

  return perper::Run(app);
}
