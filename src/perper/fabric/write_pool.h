// SPDX-License-Identifier: MIT
// WritePool: the threads on which the services run their store writes when the store declares
// that its writes wait (Store::WritesWait: rocksdb with synced writes, redis); see RunWrite in
// unary.h.
//
// gRPC's callback API runs every handler on a small fixed set of threads (two on a 2-core
// machine). A durable write waits for its fsync; run inline, it would hold one of those threads
// for milliseconds, stall every other call meanwhile, and leave at most two writes waiting
// together, so RocksDB's group commit could share one fsync between at most two writers. Posted
// here instead, the gRPC thread returns at once, and as many writes as there are pool threads
// wait together and reach the write-ahead log in one fsync.
//
//   WritePool pool(64);
//   pool.Post([] { /* store write, then reactor->Finish(...) */ });
//
// Thread safety: Post may be called from any thread, including from a task. The destructor runs
// every task already posted, then joins the threads; nothing may be posted after it started.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace perper::fabric {

class WritePool {
 public:
  explicit WritePool(size_t threads);
  ~WritePool();
  WritePool(const WritePool&) = delete;
  WritePool& operator=(const WritePool&) = delete;

  void Post(std::function<void()> task);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;  // Guarded by mu_.
  bool stopping_ = false;                    // Guarded by mu_.
  std::vector<std::thread> threads_;
};

}  // namespace perper::fabric
