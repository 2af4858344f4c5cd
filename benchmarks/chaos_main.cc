// SPDX-License-Identifier: MIT
// perper-chaos: disconnect chaos against a perper-fabric process, then a look at its heap.
//
// Starts perper-fabric (--storage, a temporary data directory, 127.0.0.1 port 0) and, for
// --seconds:
//  - writers store data: WriteItems of 1 KiB items into persistent streams and executions
//    with a 1 KiB argument, until --data-mib are stored;
//  - chaos clients, each in a loop: open a channel (a connection) of their own, start a
//    ListenItems or ListenItemsAndMove replaying a persistent stream from its start, a
//    ListenAndReserve with credits on the chaos agent, or a GetResult / WaitForListener that
//    waits, read a few messages, and vanish (cancel and drop the channel) without finishing
//    the call, after at most 50-500 ms.
// Then it lets the Fabric settle and sends it SIGUSR1, on which perper-fabric logs glibc's heap
// statistics, trims the heap and logs them again; it prints those lines with the RSS before and
// after. In use ~ stored data means no leak; free in arenas ~ RSS - in use means the allocator.
//
//   perper-chaos --fabric build/apps/perper-fabric --storage rocksdb --seconds 60
//   perper-chaos ... --fabric-env MALLOC_ARENA_MAX=2    # the same run with other malloc settings
//
// Loopback only; bounded by --seconds and by --max-calls per client.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/grpcpp.h>

#include "perper/common/files.h"
#include "perper/grpc2/executions.grpc.pb.h"
#include "perper/grpc2/introspection.grpc.pb.h"
#include "perper/grpc2/streams.grpc.pb.h"

namespace {

namespace g2 = perper::grpc2;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string fabric = "perper-fabric";
  std::string fabric_address;  // A running Fabric instead (no RSS or heap report then).

  std::string storage = "memory";
  std::vector<std::string> fabric_env;
  int seconds = 60;
  int clients = 32;
  int writers = 4;
  int streams = 16;
  size_t data_mib = 256;
  int max_calls = 1'000'000;
  int settle_seconds = 3;
};

size_t RssKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

google::protobuf::Any Bytes(size_t n, char fill) {
  google::protobuf::BytesValue value;
  value.set_value(std::string(n, fill));
  google::protobuf::Any any;
  any.PackFrom(value);
  return any;
}

// A channel with a connection of its own.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::seconds s) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + s);
  return context;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"perper-chaos: disconnect chaos against perper-fabric, then its heap"};
  app.add_option("--fabric", options.fabric, "perper-fabric binary");
  app.add_option("--fabric-address", options.fabric_address,
                 "Use this running Fabric (e.g. one under heaptrack) instead of starting one");
  app.add_option("--storage", options.storage, "memory or rocksdb");
  app.add_option("--fabric-env", options.fabric_env, "NAME=VALUE for the Fabric's environment");
  app.add_option("--seconds", options.seconds, "How long the chaos lasts");
  app.add_option("--clients", options.clients, "Chaos client threads");
  app.add_option("--writers", options.writers, "Writer threads");
  app.add_option("--streams", options.streams, "Persistent streams written and replayed");
  app.add_option("--data-mib", options.data_mib, "Data stored by the writers, at most");
  app.add_option("--max-calls", options.max_calls, "Calls per chaos client, at most");
  app.add_option("--settle-seconds", options.settle_seconds, "Wait before the heap report");
  CLI11_PARSE(app, argc, argv);

  char dir_template[] = "/tmp/perper-chaos-XXXXXX";
  std::string dir = mkdtemp(dir_template);
  std::string address_file = dir + "/address", log = dir + "/fabric.log";
  pid_t fabric = options.fabric_address.empty() ? fork() : -1;
  if (fabric == 0) {
    for (const std::string& entry : options.fabric_env) putenv(const_cast<char*>(entry.c_str()));
    freopen(log.c_str(), "w", stdout);
    dup2(fileno(stdout), 2);
    execl(options.fabric.c_str(), options.fabric.c_str(), "--listen", "127.0.0.1:0", "--storage",
          options.storage.c_str(), "--data-dir", (dir + "/db").c_str(), "--address-file",
          address_file.c_str(), "--log-level", "info", nullptr);
    _exit(127);
  }
  std::string address = options.fabric_address;
  for (int i = 0; i < 200 && address.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    address = perper::ReadAddressFile(address_file);
  }
  if (address.empty()) {
    std::fprintf(stderr, "perper-chaos: the Fabric did not start:\n%s",
                 perper::ReadWholeFile(log).c_str());
    return 1;
  }
  size_t rss_start = RssKiB(fabric);

  auto channel = NewChannel(address);
  auto streams = g2::FabricStreams::NewStub(channel);
  auto executions = g2::FabricExecutions::NewStub(channel);
  google::protobuf::Empty empty;
  for (int s = 0; s < options.streams; ++s) {
    g2::StreamsCreateRequest create;
    create.mutable_stream()->set_stream("chaos-" + std::to_string(s));
    create.set_ephemeral(false);
    streams->Create(Deadline(std::chrono::seconds(10)).get(), create, &empty);
  }

  const auto end = Clock::now() + std::chrono::seconds(options.seconds);
  const size_t data_cap = options.data_mib << 20;
  std::atomic<size_t> stored{0};
  std::atomic<uint64_t> calls{0}, items_written{0}, executions_created{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < options.writers; ++w) {
    threads.emplace_back([&, w] {
      auto own = NewChannel(address);
      auto stub = g2::FabricStreams::NewStub(own);
      auto exec = g2::FabricExecutions::NewStub(own);
      std::mt19937 random(w);
      g2::StreamsWriteItemsRequest write;
      for (int i = 0; i < 64; ++i) {
        auto* item = write.add_items();
        item->set_auto_key(true);
        *item->mutable_value() = Bytes(1024, 'a' + w);
      }
      g2::ExecutionsCreateRequest create;
      create.mutable_instance()->set_agent("Chaos");
      create.mutable_instance()->set_instance("chaos");
      create.set_delegate("Work");
      *create.add_arguments() = Bytes(1024, 'e');
      uint64_t n = 0;
      while (Clock::now() < end && stored.load() < data_cap) {
        write.mutable_stream()->set_stream("chaos-" + std::to_string(random() % options.streams));
        g2::StreamsWriteItemsResponse response;
        if (stub->WriteItems(Deadline(std::chrono::seconds(30)).get(), write, &response).ok()) {
          stored += 64 * 1024;
          items_written += 64;
        }
        create.mutable_execution()->set_execution("x-" + std::to_string(w) + "-" +
                                                  std::to_string(n++));
        if (exec->Create(Deadline(std::chrono::seconds(30)).get(), create, &empty).ok()) {
          stored += 1024;
          ++executions_created;
        }
      }
    });
  }
  for (int c = 0; c < options.clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 random(1000 + c);
      for (int n = 0; n < options.max_calls && Clock::now() < end; ++n) {
        auto own = NewChannel(address);
        // The client vanishes after its reads, or when this short deadline passes.
        auto context = std::make_unique<grpc::ClientContext>();
        context->set_deadline(std::chrono::system_clock::now() +
                              std::chrono::milliseconds(50 + random() % 450));
        int reads = 1 + random() % 50;
        int kind = random() % 4;
        if (kind == 2) {
          // A waiter: GetResult of an execution that may not exist yet, or WaitForListener on
          // a stream nobody listens to; both wait until the client vanishes.
          if (random() % 2 == 0) {
            auto stub = g2::FabricExecutions::NewStub(own);
            g2::ExecutionsGetResultRequest request;
            request.mutable_execution()->set_execution("missing-" + std::to_string(random()));
            request.set_wait_for_creation(true);
            g2::ExecutionsGetResultResponse response;
            stub->GetResult(context.get(), request, &response).IgnoreError();
          } else {
            auto stub = g2::FabricStreams::NewStub(own);
            google::protobuf::Empty empty;
            g2::StreamsWaitForListenerRequest request;
            request.mutable_stream()->set_stream("chaos-" +
                                                 std::to_string(random() % options.streams));
            stub->WaitForListener(context.get(), request, &empty).IgnoreError();
          }
        } else if (kind == 3) {
          // ListenItemsAndMove with an anonymous listener that acknowledges what it reads.
          auto stub = g2::FabricStreams::NewStub(own);
          auto call = stub->ListenItemsAndMove(context.get());
          g2::StreamsListenItemsAndMoveRequest first;
          first.mutable_listen()->mutable_stream()->set_stream(
              "chaos-" + std::to_string(random() % options.streams));
          first.mutable_listen()->set_max_items_per_message(1 + random() % 256);
          call->Write(first);
          g2::StreamsListenItemsResponse response;
          for (int i = 0; i < reads && call->Read(&response); ++i) {
            g2::StreamsListenItemsAndMoveRequest ack;
            ack.set_reached_key(response.items_size() > 0
                                    ? response.items(response.items_size() - 1).key()
                                    : response.key());
            if (!call->Write(ack)) break;
          }
          context->TryCancel();
          call->Finish().IgnoreError();
        } else if (kind == 0) {
          auto stub = g2::FabricStreams::NewStub(own);
          g2::StreamsListenItemsRequest request;
          request.mutable_stream()->set_stream("chaos-" +
                                               std::to_string(random() % options.streams));
          request.mutable_stream()->set_start_key(0);
          request.set_max_items_per_message(1 + random() % 256);
          auto reader = stub->ListenItems(context.get(), request);
          g2::StreamsListenItemsResponse response;
          for (int i = 0; i < reads && reader->Read(&response); ++i) {
          }
          context->TryCancel();
          reader->Finish().IgnoreError();
        } else {
          auto stub = g2::FabricExecutions::NewStub(own);
          auto call = stub->ListenAndReserve(context.get());
          g2::ExecutionsListenAndReserveRequest first;
          first.mutable_filter()->mutable_instance_filter()->set_agent("Chaos");
          first.set_workgroup("chaos");
          first.set_reserve_next(1 + random() % 64);
          call->Write(first);
          g2::ExecutionsListenResponse response;
          for (int i = 0; i < reads && call->Read(&response); ++i) {
          }
          context->TryCancel();
          call->Finish().IgnoreError();
        }
        ++calls;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // Every chaos call is gone: no listener should be left on the streams.
  size_t listeners_left = 0;
  {
    auto introspection = g2::FabricIntrospection::NewStub(channel);
    g2::IntrospectionListStreamsRequest request;
    request.set_stream_prefix("chaos-");
    request.set_limit(options.streams);
    g2::IntrospectionListStreamsResponse response;
    if (introspection->ListStreams(Deadline(std::chrono::seconds(10)).get(), request, &response)
            .ok()) {
      for (const g2::StreamSummary& summary : response.streams())
        listeners_left += summary.listeners_size();
    }
  }
  if (fabric < 0) {
    std::printf(
        "perper-chaos: %d s, %d clients, %d writers against %s\n  chaos calls %llu; "
        "stored %zu MiB; listeners left on the streams %zu\n",
        options.seconds, options.clients, options.writers, address.c_str(),
        static_cast<unsigned long long>(calls.load()), stored.load() >> 20, listeners_left);
    return 0;
  }
  size_t rss_end = RssKiB(fabric);
  std::this_thread::sleep_for(std::chrono::seconds(options.settle_seconds));
  size_t rss_settled = RssKiB(fabric);
  kill(fabric, SIGUSR1);
  std::string heap;
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string text = perper::ReadWholeFile(log);
    size_t first = text.find("heap: ");
    if (first != std::string::npos && text.find("heap: ", first + 1) != std::string::npos) {
      std::istringstream lines(text);
      for (std::string line; std::getline(lines, line);) {
        if (line.find("heap: ") != std::string::npos) heap += "  " + line + "\n";
      }
      break;
    }
  }
  size_t rss_trimmed = RssKiB(fabric);
  std::printf(
      "perper-chaos: %s, %d s, %d clients, %d writers%s%s\n"
      "  chaos calls %llu; stored %zu MiB (%llu items, %llu executions); listeners left %zu\n"
      "  Fabric RSS: start %zu MiB, end of chaos %zu MiB, settled %zu MiB, after malloc_trim "
      "%zu MiB\n%s",
      options.storage.c_str(), options.seconds, options.clients, options.writers,
      options.fabric_env.empty() ? "" : ", env ",
      options.fabric_env.empty() ? "" : options.fabric_env[0].c_str(),
      static_cast<unsigned long long>(calls.load()), stored.load() >> 20,
      static_cast<unsigned long long>(items_written.load()),
      static_cast<unsigned long long>(executions_created.load()), listeners_left, rss_start / 1024,
      rss_end / 1024, rss_settled / 1024, rss_trimmed / 1024, heap.c_str());
  kill(fabric, SIGTERM);
  int status = 0;
  waitpid(fabric, &status, 0);
  std::system(("rm -rf " + dir).c_str());
  return 0;
}
