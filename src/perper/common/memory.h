// SPDX-License-Identifier: MIT
// Gives memory freed in bulk back to the system.
//
// glibc keeps freed blocks on its free lists: after a drained stream or a deleted stream the
// Fabric's RSS stays where it peaked (289 MiB of items collected left RSS at 346 MiB). Code
// that frees a lot at once reports it here; a background thread then calls malloc_trim(0),
// which returns the free pages of every arena to the system.
//
//   std::size_t freed = ...;  // bytes of the items just erased
//   perper::NoteBulkFree(freed);  // after releasing every lock
//
// Thread safety: every function is safe to call from any thread. The trim runs on its own
// thread, never under a caller's lock, at most once per second (a trim walks every arena),
// and only once at least 8 MiB were reported since the last one; a trim owed when the rate
// limit holds it back still happens when the interval ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace perper {

void NoteBulkFree(std::size_t bytes);

// Trims done so far in this process (for tests and logs).
uint64_t BulkFreeTrimCount();

// glibc's view of the heap, one line: bytes in use (small blocks and mmapped ones), free in the
// arenas, the arenas' total and their count. For the SIGUSR1 report of perper-fabric.
std::string HeapStats();

}  // namespace perper
