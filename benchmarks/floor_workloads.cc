// SPDX-License-Identifier: MIT
// The floor: a tiny callback-API gRPC server in a helper process, measured with the same
// client-side patterns the Fabric workloads use.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <latch>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "benchmarks/raw_fabric_client.h"
#include "benchmarks/workloads.h"
#include "perper/bench/floor.grpc.pb.h"
#include "perper/common/files.h"

namespace perper::bench {
namespace {

class FloorService final : public Floor::CallbackService {
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context, const Blob* request,
                                 Blob* response) override {
    response->set_data(request->data());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<Blob, Blob>* PingPong(grpc::CallbackServerContext*) override {
    class Echo : public grpc::ServerBidiReactor<Blob, Blob> {
     public:
      Echo() { StartRead(&blob_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        StartWrite(&blob_);
      }
      void OnWriteDone(bool ok) override {
        if (ok)
          StartRead(&blob_);
        else
          Finish(grpc::Status::CANCELLED);
      }
      void OnDone() override { delete this; }

     private:
      Blob blob_;
    };
    return new Echo();
  }

  grpc::ServerWriteReactor<Blob>* Push(grpc::CallbackServerContext*,
                                       const PushRequest* request) override {
    class Pusher : public grpc::ServerWriteReactor<Blob> {
     public:
      explicit Pusher(const PushRequest& request) : left_(request.count()) {
        blob_.set_data(std::string(request.size(), 'p'));
        Next();
      }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::CANCELLED);
          return;
        }
        Next();
      }
      void OnDone() override { delete this; }

     private:
      void Next() {
        if (left_ == 0) {
          Finish(grpc::Status::OK);
          return;
        }
        --left_;
        StartWrite(&blob_);
      }
      uint64_t left_;
      Blob blob_;
    };
    return new Pusher(*request);
  }
};

}  // namespace

int FloorServerRole(const std::string& address_file) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  FloorService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return 1;
  if (!WriteAddressFile(address_file, "127.0.0.1:" + std::to_string(port)).ok()) return 1;
  int received = 0;
  sigwait(&signals, &received);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

void RunFloor(const Config& config, Report& report) {
  const Counts& n = config.counts;
  TempDir dir;
  std::string address_file = dir.path() + "/floor.address";
  Child server =
      Child::Spawn({SelfPath(), "--role", "floor-server", "--address-file", address_file},
                   dir.path() + "/floor.log");
  bool up =
      WaitFor([&] { return !ReadAddressFile(address_file).empty(); }, std::chrono::seconds(10));
  report.Check(up, "floor server did not start");
  if (!up) return;
  std::string address = ReadAddressFile(address_file);
  auto stub = Floor::NewStub(OpenChannel(address));
  const std::string payload(kPayloadSize, 'x');
  Blob request;
  request.set_data(payload);

  auto ping_once = [&](Floor::Stub& s) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    Blob response;
    grpc::Status status = s.Ping(&context, request, &response);
    return status.ok() && response.data() == payload;
  };
  for (int i = 0; i < 500; ++i) ping_once(*stub);

  {  // Unary, sequential.
    ServerMeter meter(server.pid());
    std::vector<int64_t> latencies;
    latencies.reserve(n.ping);
    bool ok = true;
    int64_t start = NowNs();
    for (uint64_t i = 0; i < n.ping; ++i) {
      int64_t t0 = NowNs();
      ok &= ping_once(*stub);
      latencies.push_back(NowNs() - t0);
    }
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok, "floor unary ping-pong returned a wrong payload");
    Row row{.workload = "Floor (gRPC)",
            .key = "floor.unary",
            .name = "unary ping-pong, sequential",
            .mode = "grpc",
            .count = n.ping,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = n.ping / seconds};
    meter.Fill(row);
    report.Add(row);
  }
  {  // Unary, 64 in flight (one thread per call in flight, one channel each).
    ServerMeter meter(server.pid());
    std::vector<std::vector<int64_t>> per_thread(kInFlight);
    std::atomic<bool> ok{true};
    uint64_t each = std::max<uint64_t>(1, n.ping / kInFlight);
    std::vector<std::thread> threads;
    std::latch gate(kInFlight);
    std::atomic<int64_t> start{0};
    for (int t = 0; t < kInFlight; ++t) {
      threads.emplace_back([&, t] {
        auto own = Floor::NewStub(OpenChannel(address));
        if (!ping_once(*own)) ok = false;  // connects
        gate.arrive_and_wait();
        int64_t unset = 0;
        start.compare_exchange_strong(unset, NowNs());
        for (uint64_t i = 0; i < each; ++i) {
          int64_t t0 = NowNs();
          if (!ping_once(*own)) ok = false;
          per_thread[t].push_back(NowNs() - t0);
        }
      });
    }
    for (auto& thread : threads) thread.join();
    double seconds = (NowNs() - start) / 1e9;
    std::vector<int64_t> all;
    for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
    report.Check(ok, "floor unary ping-pong (64 in flight) returned a wrong payload");
    Row row{.workload = "Floor (gRPC)",
            .key = "floor.unary64",
            .name = "unary ping-pong, 64 in flight",
            .mode = "grpc",
            .count = each * kInFlight,
            .latency = Summarize(std::move(all)),
            .ops_per_s = each * kInFlight / seconds};
    meter.Fill(row);
    report.Add(row);
  }
  {  // Bidi ping-pong on one call.
    ServerMeter meter(server.pid());
    grpc::ClientContext context;
    auto call = stub->PingPong(&context);
    std::vector<int64_t> latencies;
    latencies.reserve(n.ping);
    bool ok = true;
    Blob response;
    int64_t start = NowNs();
    for (uint64_t i = 0; i < n.ping && ok; ++i) {
      int64_t t0 = NowNs();
      ok = call->Write(request) && call->Read(&response) && response.data() == payload;
      latencies.push_back(NowNs() - t0);
    }
    double seconds = (NowNs() - start) / 1e9;
    call->WritesDone();
    ok &= call->Finish().ok();
    report.Check(ok, "floor bidi ping-pong failed");
    Row row{.workload = "Floor (gRPC)",
            .key = "floor.bidi",
            .name = "bidi-stream ping-pong",
            .mode = "grpc",
            .count = n.ping,
            .latency = Summarize(std::move(latencies)),
            .ops_per_s = n.ping / seconds};
    meter.Fill(row);
    report.Add(row);
  }
  {  // Server-streaming push.
    ServerMeter meter(server.pid());
    grpc::ClientContext context;
    PushRequest push;
    push.set_count(n.push);
    push.set_size(kPayloadSize);
    int64_t start = NowNs();
    auto reader = stub->Push(&context, push);
    Blob blob;
    uint64_t received = 0;
    while (reader->Read(&blob)) received += blob.data().size() == kPayloadSize ? 1 : 0;
    bool ok = reader->Finish().ok();
    double seconds = (NowNs() - start) / 1e9;
    report.Check(ok && received == n.push, "floor push lost messages");
    Row row{.workload = "Floor (gRPC)",
            .key = "floor.push",
            .name = "server-streaming push",
            .mode = "grpc",
            .count = n.push,
            .ops_per_s = n.push / seconds};
    meter.Fill(row);
    report.Add(row);
  }
  report.Check(server.Stop() == 0, "floor server did not stop cleanly");
}

}  // namespace perper::bench
