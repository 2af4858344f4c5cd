// SPDX-License-Identifier: MIT
// Concurrency stress of the states engine on every backend (labels: unit, stress): many threads
// create, write, count, list, delete (keeping the cache or not) and re-create the same
// dictionary and list names at once. Values are asserted where one thread alone decides them:
// each thread also owns a dictionary and a list, which it drives through a known sequence while
// the shared names churn around it. Each thread's operations come from its own seeded generator.
#include <atomic>
#include <cstdint>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "perper/common/values.h"
#include "tests/support/store_fixture.h"

namespace perper::testing {
namespace {

using storage::DictionaryOperation;
using storage::ListOperation;
using Location = storage::ListOperation::Location;

constexpr int kThreads = 8;
// The memory backend is fast enough for many more rounds in the same time.
constexpr int kDurableRounds = 300;
constexpr int kMemoryRounds = 3000;
const char* const kSharedNames[] = {"shared-0", "shared-1", "shared-2"};

std::string V(int64_t v) { return SerializeAny(Int64Value(v)); }

class StatesStressTest : public StoreTest {
 protected:
  storage::StateStore& states() { return store().states(); }

  absl::Status Set(std::string_view dictionary, int64_t key, int64_t value) {
    DictionaryOperation op;
    op.key = V(key);
    op.set_new_value = true;
    op.new_value = V(value);
    return states().OperateDictionary(dictionary, op).status();
  }

  absl::Status Push(std::string_view list, int64_t value, bool front) {
    ListOperation op;
    op.location = front ? Location::kAtFront : Location::kAtBack;
    op.insert_values = {V(value)};
    return states().OperateList(list, op).status();
  }

  absl::StatusOr<std::vector<std::string>> Pop(std::string_view list, bool front) {
    ListOperation op;
    op.location = front ? Location::kAtFront : Location::kAtBack;
    op.values_count = 1;
    op.get_values = true;
    op.remove_values = true;
    return states().OperateList(list, op);
  }

  // One random operation on a shared name; returns a non-OK status only for an engine error.
  absl::Status SharedStep(std::mt19937_64& rng, int thread) {
    const std::string name = kSharedNames[rng() % std::size(kSharedNames)];
    const int64_t key = static_cast<int64_t>(rng() % 16);
    switch (rng() % 12) {
      case 0:
        return states().CreateDictionary(name);
      case 1:
      case 2:
        return Set(name, key, thread);
      case 3:
        return states().DeleteDictionary(name, /*keep_cache=*/rng() % 2 == 0);
      case 4: {
        // Listing and counting race with writers; a listing is never larger than the key space.
        size_t listed = states().ListDictionary(name).value().size();
        uint64_t counted = states().CountDictionary(name).value();
        if (listed > 16 || counted > 16) {
          return absl::InternalError("dictionary " + name + " holds more than its 16 keys");
        }
        return absl::OkStatus();
      }
      case 5:
        return states().CreateList(name);
      case 6:
      case 7:
        return Push(name, thread, rng() % 2 == 0);
      case 8:
        return Pop(name, rng() % 2 == 0).status();
      case 9:
        return states().DeleteList(name, /*keep_cache=*/rng() % 2 == 0);
      case 10: {
        states().LocateInList(name, V(thread)).value();
        states().ListList(name).value();
        states().CountList(name).value();
        return absl::OkStatus();
      }
      default: {
        DictionaryOperation op;  // Compare-and-set against absent: put-if-absent.
        op.key = V(key);
        op.get_existing_value = true;
        op.set_new_value = true;
        op.new_value = V(thread);
        op.compare_existing_value = true;
        op.expected_existing_value = "";
        return states().OperateDictionary(name, op).status();
      }
    }
  }

  // A known sequence on the thread's own names, checked as it goes; the first mismatch is
  // returned as an error naming the round.
  absl::Status OwnStep(int thread, int round) {
    const std::string dictionary = "own-d-" + std::to_string(thread);
    const std::string list = "own-l-" + std::to_string(thread);
    auto fail = [&](const std::string& what, uint64_t got, uint64_t want) {
      return absl::InternalError("thread " + std::to_string(thread) + " round " +
                                 std::to_string(round) + ": " + what + " is " +
                                 std::to_string(got) + ", want " + std::to_string(want));
    };
    const uint64_t keys = 1 + static_cast<uint64_t>(round % 5);
    const uint64_t carried = round == 0 ? 0 : 1;  // The entry the previous round left.
    for (uint64_t k = 0; k < keys; ++k) {
      if (absl::Status s = Set(dictionary, static_cast<int64_t>(k), round); !s.ok()) return s;
      if (absl::Status s = Push(list, static_cast<int64_t>(k), k % 2 == 0); !s.ok()) return s;
    }
    if (uint64_t n = states().CountDictionary(dictionary).value(); n != keys + carried) {
      return fail("the count of " + dictionary, n, keys + carried);
    }
    if (uint64_t n = states().CountList(list).value(); n != keys)
      return fail("the count of " + list, n, keys);
    if (uint64_t n = states().ListDictionary(dictionary).value().size(); n != keys + carried) {
      return fail("the listing of " + dictionary, n, keys + carried);
    }
    const bool keep_cache = round % 2 == 0;
    if (absl::Status s = states().DeleteDictionary(dictionary, keep_cache); !s.ok()) return s;
    if (absl::Status s = states().DeleteList(list, keep_cache); !s.ok()) return s;
    if (uint64_t n = states().CountDictionary(dictionary).value(); n != 0) {
      return fail("the count of deleted " + dictionary, n, 0);
    }
    if (uint64_t n = states().CountList(list).value(); n != 0) {
      return fail("the count of deleted " + list, n, 0);
    }
    // Re-created: one entry, then the state stays for the next round.
    if (absl::Status s = Set(dictionary, 100, round); !s.ok()) return s;
    if (absl::Status s = Push(list, 100, true); !s.ok()) return s;
    if (uint64_t n = states().CountDictionary(dictionary).value(); n != 1) {
      return fail("the count of re-created " + dictionary, n, 1);
    }
    auto popped = Pop(list, false);
    if (!popped.ok()) return popped.status();
    if (popped->size() != 1 || *popped != std::vector<std::string>{V(100)}) {
      return fail("the values popped from re-created " + list, popped->size(), 1);
    }
    return absl::OkStatus();
  }
};

TEST_P(StatesStressTest, ManyThreadsChurnTheSameNames) {
  const int rounds = IsDurable() ? kDurableRounds : kMemoryRounds;
  std::vector<std::thread> threads;
  std::atomic<int> failed_threads{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, rounds, &failed_threads] {
      std::mt19937_64 rng(1000 + t);
      for (int round = 0; round < rounds; ++round) {
        absl::Status status = SharedStep(rng, t);
        if (status.ok() && round % 4 == 0) status = OwnStep(t, round);
        if (!status.ok()) {
          ADD_FAILURE() << "thread " << t << " round " << round << ": " << status;
          ++failed_threads;
          return;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(failed_threads.load(), 0);

  // Quiescent: every count agrees with its listing, and the owned names hold what their last
  // round left (one dictionary entry each, an empty list).
  for (const char* name : kSharedNames) {
    EXPECT_EQ(states().CountDictionary(name).value(), states().ListDictionary(name).value().size())
        << name;
    EXPECT_EQ(states().CountList(name).value(), states().ListList(name).value().size()) << name;
  }
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(states().CountDictionary("own-d-" + std::to_string(t)).value(), 1u) << t;
    EXPECT_EQ(states().CountList("own-l-" + std::to_string(t)).value(), 0u) << t;
  }
  if (!IsDurable()) return;
  // What was acknowledged survives a reopen.
  std::vector<uint64_t> shared_counts;
  for (const char* name : kSharedNames)
    shared_counts.push_back(states().CountDictionary(name).value());
  Reopen();
  for (size_t i = 0; i < std::size(kSharedNames); ++i) {
    EXPECT_EQ(states().CountDictionary(kSharedNames[i]).value(), shared_counts[i])
        << kSharedNames[i];
  }
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(states().CountDictionary("own-d-" + std::to_string(t)).value(), 1u) << t;
  }
}

TEST_P(StatesStressTest, DeleteWithoutKeepingTheCacheWhileOthersWrite) {
  // Two writers and two deleters on one dictionary and one list name.
  const int rounds = IsDurable() ? kDurableRounds : kMemoryRounds;
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t, rounds, &errors] {
      for (int round = 0; round < rounds; ++round) {
        absl::Status status;
        if (t < 2) {
          status = Set("churn", round % 8, round);
          if (status.ok()) status = Push("churn", round, t == 0);
        } else {
          status = states().DeleteDictionary("churn", /*keep_cache=*/false);
          if (status.ok()) status = states().DeleteList("churn", /*keep_cache=*/t == 2);
        }
        if (!status.ok()) {
          ADD_FAILURE() << "thread " << t << " round " << round << ": " << status;
          ++errors;
          return;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_LE(states().CountDictionary("churn").value(), 8u);
  EXPECT_EQ(states().CountDictionary("churn").value(),
            states().ListDictionary("churn").value().size());
  EXPECT_EQ(states().CountList("churn").value(), states().ListList("churn").value().size());
}

INSTANTIATE_TEST_SUITE_P(Backends, StatesStressTest, AllBackends(), BackendName);

}  // namespace
}  // namespace perper::testing
