// SPDX-License-Identifier: MIT
// Store::Step on the redis backend. A step changes one dictionary and moves one stream listener;
// the two generally live in different slots, and a script touches one slot, so a step is three
// round trips with a fence in the dictionary's slot:
//
//   1. P = the listener's position (RedisStreams::ListenerPosition).
//   2. One script on the dictionary's tag: effective = max(P, the fence of "<stream>\n<listener>"
//      in {TD}:f); reached_key <= effective (and the listener or fence exists): already_taken;
//      expected_position set and != effective: position_mismatch. The operations are evaluated in
//      order, each seeing those before it, and reported in every case; unless taken, mismatched
//      or a compare failed, they are applied and the fence is set to reached_key: applied.
//   3. Applied, or taken with the listener still below reached_key (a process died between 2
//      and 3): RedisStreams::AdvanceListener(reached_key), which moves the listener forward only
//      and collects as MoveListener does. The result's position is its answer.
//
// The fence makes a step atomic for its dictionary and exactly-once whatever the interleaving:
// two concurrent steps of one listener meet in the dictionary's slot, and a retry after a crash
// between 2 and 3 finds the fence, reports already_taken and finishes the move.
// Without operations and dictionary only step 3 runs, with the checks of step 2 made on P.
//
// Differences from the engines, which move the listener and the dictionary in one commit: a
// fence outlives the listener's position, so a step once taken stays taken even if MoveListener
// later moves the listener back, or the listener or its stream is deleted and made again (until
// the dictionary is deleted without keep_cache, which drops its fences). A step reports the
// position after the phase it stopped in: a mismatched or refused step reports `effective`.
//
// Retries: a fence script resent after a lost reply finds its own fence and answers
// already_taken; the listener is moved all the same.
//
// Thread safety: RunStep is safe to call concurrently from any thread.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

#include "perper/storage/redis/client_pool.h"
#include "perper/storage/redis/redis_notifier.h"
#include "perper/storage/redis/redis_streams.h"
#include "perper/storage/store.h"

namespace perper::storage::redis {

// The whole step. Validates the request as the engines do (INVALID_ARGUMENT), NOT_FOUND for an
// unknown stream.
// The listener's move is reported (kListenerChanged) by RedisStreams::AdvanceListener, so
// `notifier` is not used here.
absl::StatusOr<StepResult> RunStep(ClientPool& pool, RedisStreams& streams, RedisNotifier& notifier,
                                   const StepRequest& request);

// Phase 2 alone, given the listener's position P (kPositionNotStarted when it does not exist):
// what RunStep does in the dictionary's slot. Public so a test can stop between the phases as a
// crash would. `position` in the result is the effective position (max of P and the fence), or
// reached_key when applied. REQUIRES: a request RunStep accepts, with a dictionary.
absl::StatusOr<StepResult> FenceStep(ClientPool& pool, const StepRequest& request,
                                     int64_t listener_position);

}  // namespace perper::storage::redis
