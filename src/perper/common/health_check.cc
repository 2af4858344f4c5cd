// SPDX-License-Identifier: MIT
#include "perper/common/health_check.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>

namespace perper {
namespace {

// HealthCheckResponse.status (field 1, an enum) from its wire bytes; 0 (UNKNOWN) if absent.
int ServingStatus(const std::string& bytes) {
  size_t i = 0;
  int status = kHealthUnknown;
  while (i < bytes.size()) {
    uint8_t tag = static_cast<uint8_t>(bytes[i++]);
    if ((tag & 7) != 0) return -1;  // only varint fields are expected
    uint64_t value = 0;
    for (int shift = 0; i < bytes.size() && shift < 64; shift += 7) {
      uint8_t b = static_cast<uint8_t>(bytes[i++]);
      value |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) break;
    }
    if ((tag >> 3) == 1) status = static_cast<int>(value);
  }
  return status;
}

}  // namespace

grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                         std::chrono::system_clock::time_point deadline, int* serving_status) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(deadline);
  // HealthCheckRequest{service: ""} is no bytes; gRPC needs a buffer with one (empty) slice.
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = std::move(s);
                   done = true;
                   done_cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  done_cv.wait(lock, [&] { return done; });
  if (!status.ok()) return status;
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  *serving_status = ServingStatus(bytes);
  return status;
}

const char* HealthStatusName(int serving_status) {
  switch (serving_status) {
    case kHealthUnknown:
      return "UNKNOWN";
    case kHealthServing:
      return "SERVING";
    case kHealthNotServing:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "an unreadable status";
  }
}

}  // namespace perper
