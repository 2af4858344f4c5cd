// SPDX-License-Identifier: MIT
// ArenaMessageAllocator: request and response messages of a callback-API unary method allocated
// on one protobuf Arena per call. A batched request (WriteItems with hundreds of items) then
// costs a few arena blocks instead of several heap allocations per item while it is parsed, and
// everything is freed at once when the call is done.
//
//   ArenaMessageAllocator<Req, Resp> allocator_;             // outlives the server
//   SetMessageAllocatorFor_WriteItems(&allocator_);          // in the service's constructor
//
// Thread safety: AllocateMessages may be called from any thread; each holder belongs to one call.
#pragma once

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

namespace perper::fabric {

template <class Request, class Response>
class ArenaMessageAllocator final : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override { return new Holder(); }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options()) {
      this->set_request(google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    static google::protobuf::ArenaOptions Options() {
      google::protobuf::ArenaOptions options;
      options.start_block_size = 4 << 10;
      options.max_block_size = 256 << 10;
      return options;
    }
    google::protobuf::Arena arena_;
  };
};

}  // namespace perper::fabric
