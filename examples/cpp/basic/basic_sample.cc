// SPDX-License-Identifier: MIT
// The basic sample in one agent process ("basic-sample").
//
// - Streams: a packed, persistent generator of 28 keyed items written out of order; a processor
//   reading it in key order and writing batches of 10 (and the final partial batch); an action
//   consumer printing each batch.
// - A cycle: Node1 and Node2 consume each other's streams until Node1 has received 11.
// - Calls: random numbers, several results, a parameter count, a void call, an async call.
//
// The program exits once Deploy is done: every finite stream completes.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 ./basic_sample
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "perper/agent/agent.h"

namespace {

using perper::Context;
using perper::StreamWriter;
using perper::Task;
using PerperStream = perper::grpc2::model::PerperStream;

constexpr int64_t kMessages = 28;
constexpr int64_t kBatch = 10;

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int64_t Random(int64_t low, int64_t high) {
  thread_local std::mt19937_64 random(std::random_device{}());
  return std::uniform_int_distribution<int64_t>(low, high - 1)(random);
}

// Reads `stream` to its end, calling `each` for every value; the stream's error, if it failed.
template <typename T, typename Each>
Task<absl::Status> ForEach(Context& ctx, PerperStream stream, Each each) {
  perper::StreamReader<T> reader = ctx.stream(stream).listen<T>();
  while (true) {
    absl::StatusOr<std::optional<T>> value = co_await reader.next();
    if (!value.ok()) {
      co_return value.status();
    }
    if (!value->has_value()) {
      co_return absl::OkStatus();
    }
    if (absl::Status status = co_await each(**value); !status.ok()) {
      co_return status;
    }
  }
}

}  // namespace

int main() {
  perper::Agent app("basic-sample");

  // Writes "message k" under key k, in the order 1, 2, 0, 4, 5, 3, ... (every key 0..27 once).
  app.stream(
      "Generator",
      [](StreamWriter<std::string>& out, int64_t count) -> Task<absl::Status> {
        for (int64_t i = 0; i < count; ++i) {
          int64_t key = (i / 3) * 3 + (i + 1) % 3;
          if (key >= count) {
            key = i;
          }
          Say(absl::StrCat("Generating message ", key));
          if (absl::Status written = co_await out.write(key, absl::StrCat("message ", key));
              !written.ok()) {
            co_return written;
          }
        }
        co_return absl::OkStatus();
      },
      perper::StreamOptions{.ephemeral = false, .stride = 1});

  // Joins the messages of its input in batches of `batch_size`, then the final partial batch.
  app.stream("Processor",
             [](Context& ctx, StreamWriter<std::string>& out, PerperStream messages,
                int64_t batch_size) -> Task<absl::Status> {
               std::vector<std::string> batch;
               absl::Status read = co_await ForEach<std::string>(
                   ctx, messages, [&](std::string message) -> Task<absl::Status> {
                     Say("Processing " + message);
                     batch.push_back(message);
                     if (static_cast<int64_t>(batch.size()) < batch_size) {
                       co_return absl::OkStatus();
                     }
                     std::string joined = absl::StrJoin(batch, ",");
                     batch.clear();
                     co_return co_await out.write(joined);
                   });
               if (!read.ok()) {
                 co_return read;
               }
               if (!batch.empty()) {
                 co_return co_await out.write(absl::StrJoin(batch, ","));
               }
               co_return absl::OkStatus();
             });

  // An action stream (it runs without waiting for a listener) that only consumes.
  app.stream(
      "Consumer",
      [](Context& ctx, StreamWriter<std::string>& out, PerperStream batches) -> Task<absl::Status> {
        co_return co_await ForEach<std::string>(
            ctx, batches, [](std::string batch) -> Task<absl::Status> {
              std::vector<std::string> messages = absl::StrSplit(batch, ',');
              Say(absl::StrCat("Received batch of ", messages.size(), " messages."));
              Say(batch);
              co_return absl::OkStatus();
            });
      },
      perper::StreamOptions{.action = true});

  // The cycle: Node1 writes 1, then n - 1 for every n it receives, until it receives 11; Node2
  // writes n + 2 for every n it receives, until Node1's stream completes.
  app.stream(
      "Node1",
      [](Context& ctx, StreamWriter<int64_t>& out, PerperStream other) -> Task<absl::Status> {
        if (absl::Status written = co_await out.write(1); !written.ok()) {
          co_return written;
        }
        perper::StreamReader<int64_t> reader = ctx.stream(other).listen<int64_t>();
        while (true) {
          absl::StatusOr<std::optional<int64_t>> n = co_await reader.next();
          if (!n.ok() || !n->has_value()) {
            co_return n.status();
          }
          Say(absl::StrCat("Node 1 received ", **n, "."));
          if (**n >= 11) {
            co_return absl::OkStatus();
          }
          if (absl::Status written = co_await out.write(**n - 1); !written.ok()) {
            co_return written;
          }
        }
      });
  app.stream(
      "Node2",
      [](Context& ctx, StreamWriter<int64_t>& out, PerperStream other) -> Task<absl::Status> {
        co_return co_await ForEach<int64_t>(ctx, other, [&](int64_t n) -> Task<absl::Status> {
          Say(absl::StrCat("Node 2 received ", n, "."));
          co_return co_await out.write(n + 2);
        });
      },
      perper::StreamOptions{.action = true});

  // Calls.
  app.on("GetRandomNumber", [](Context& ctx, int64_t low, int64_t high) -> Task<int64_t> {
    co_return Random(low, high);
  });
  app.on("GetTwoRandomNumbers",
         [](Context& ctx, int64_t low, int64_t high) -> Task<std::tuple<int64_t, int64_t>> {
           co_return std::make_tuple(Random(low, high), Random(low, high));
         });
  // Any number of parameters: a raw handler sees the values as they came.
  app.on_raw("CountParams",
             [](Context& ctx, std::vector<google::protobuf::Any> params)
                 -> Task<absl::StatusOr<std::vector<google::protobuf::Any>>> {
               co_return std::vector<google::protobuf::Any>{
                   perper::ToAny(static_cast<int64_t>(params.size()))};
             });
  app.on("DoSomething", [](Context& ctx, std::string message) -> Task<void> {
    Say("DoSomething called: " + message);
    co_return;
  });
  app.on("DoSomethingAsync", [](Context& ctx, std::string message) -> Task<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
    (void)co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    Say("DoSomethingAsync called: " + message);
  });

  app.on_deploy([](Context& ctx) -> Task<void> {
    auto fail = [&](const absl::Status& status) {
      std::fprintf(stderr, "basic sample failed: %s\n", status.ToString().c_str());
      ctx.stop_process(1);
    };
    // Streams.
    absl::StatusOr<perper::Stream> messages = co_await ctx.stream("Generator", kMessages);
    if (!messages.ok()) {
      co_return fail(messages.status());
    }
    absl::StatusOr<perper::Stream> batches =
        co_await ctx.stream("Processor", messages->replay(0).model(), kBatch);
    if (!batches.ok()) {
      co_return fail(batches.status());
    }
    absl::StatusOr<perper::Stream> consumed = co_await ctx.stream("Consumer", batches->model());
    if (!consumed.ok()) {
      co_return fail(consumed.status());
    }

    // The cycle: Node1's stream is declared first, so that Node2 can be given it.
    absl::StatusOr<perper::DeclaredStream> node1 = co_await ctx.declare_stream("Node1");
    if (!node1.ok()) {
      co_return fail(node1.status());
    }
    absl::StatusOr<perper::Stream> node2 = co_await ctx.stream("Node2", node1->stream().model());
    if (!node2.ok()) {
      co_return fail(node2.status());
    }
    if (auto started = co_await node1->start(node2->model()); !started.ok()) {
      co_return fail(started.status());
    }

    // Calls.
    for (int i = 0; i < 2; ++i) {
      perper::Result<int64_t> n = co_await ctx.call<int64_t>("GetRandomNumber", 1, 100);
      if (!n.ok()) {
        co_return fail(n.status());
      }
      Say(absl::StrCat("Random number: ", *n));
    }
    perper::Result<std::tuple<int64_t, int64_t>> two =
        co_await ctx.call<std::tuple<int64_t, int64_t>>("GetTwoRandomNumbers", 1, 100);
    if (!two.ok()) {
      co_return fail(two.status());
    }
    Say(absl::StrCat("Random numbers: ", std::get<0>(*two), " + ", std::get<1>(*two)));
    perper::Result<int64_t> params = co_await ctx.call<int64_t>("CountParams", 1, "a", "b", "c");
    if (!params.ok()) {
      co_return fail(params.status());
    }
    Say(absl::StrCat("Params: ", *params));
    if (absl::Status status = co_await ctx.call("DoSomething", "123"); !status.ok()) {
      co_return fail(status);
    }
    if (absl::Status status = co_await ctx.call("DoSomethingAsync", "456"); !status.ok()) {
      co_return fail(status);
    }

    // The program ends when the finite streams complete.
    auto ignore = [](auto) -> Task<absl::Status> { co_return absl::OkStatus(); };
    if (absl::Status status = co_await ForEach<std::string>(ctx, consumed->model(), ignore);
        !status.ok()) {
      co_return fail(status);
    }
    if (absl::Status status = co_await ForEach<int64_t>(ctx, node2->model(), ignore);
        !status.ok()) {
      co_return fail(status);
    }
    Say("Basic sample done.");
    ctx.stop_process(0);
  });

  return perper::Run(app);
}
