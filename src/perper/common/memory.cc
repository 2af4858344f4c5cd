// SPDX-License-Identifier: MIT
#include "perper/common/memory.h"

#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace perper {
namespace {

constexpr std::size_t kTrimThreshold = 8 << 20;
constexpr absl::Duration kTrimInterval = absl::Seconds(1);

class Trimmer {
 public:
  Trimmer() {
    std::thread([this] { Run(); }).detach();
  }

  void Note(std::size_t bytes) {
    absl::MutexLock lock(&mu_);
    pending_ += bytes;
  }
  uint64_t trims() const { return trims_.load(std::memory_order_relaxed); }

 private:
  void Run() {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](std::size_t* pending) { return *pending >= kTrimThreshold; }, &pending_));
        pending_ = 0;
      }
      malloc_trim(0);
      trims_.fetch_add(1, std::memory_order_relaxed);
      absl::SleepFor(kTrimInterval);
    }
  }

  absl::Mutex mu_;
  std::size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> trims_{0};
};

// Started on first use and never destroyed: its thread lives as long as the process.
Trimmer& TheTrimmer() {
  static Trimmer* trimmer = new Trimmer();
  return *trimmer;
}

}  // namespace

void NoteBulkFree(std::size_t bytes) {
  if (bytes > 0) TheTrimmer().Note(bytes);
}

uint64_t BulkFreeTrimCount() { return TheTrimmer().trims(); }

std::string HeapStats() {
  struct mallinfo2 info = mallinfo2();
  // malloc_info lists one <heap> per arena.
  int arenas = 0;
  char* xml = nullptr;
  size_t xml_size = 0;
  if (FILE* out = open_memstream(&xml, &xml_size)) {
    malloc_info(0, out);
    std::fclose(out);
    for (const char* p = xml; (p = std::strstr(p, "<heap nr=")) != nullptr; ++p) ++arenas;
    std::free(xml);
  }
  constexpr double kMiB = 1 << 20;
  char line[256];
  std::snprintf(line, sizeof(line),
                "heap: in use %.1f MiB (%.1f in arenas + %.1f mmapped), free in arenas %.1f MiB "
                "(top releasable %.1f), arenas %.1f MiB in %d arenas, %llu trims",
                (info.uordblks + info.hblkhd) / kMiB, info.uordblks / kMiB, info.hblkhd / kMiB,
                info.fordblks / kMiB, info.keepcost / kMiB, info.arena / kMiB, arenas,
                static_cast<unsigned long long>(BulkFreeTrimCount()));
  return line;
}

}  // namespace perper
