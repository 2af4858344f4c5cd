// SPDX-License-Identifier: MIT
// FinishGate: a writing reactor finishes exactly once, and never while a write is in flight.
#include "perper/fabric/finish_gate.h"

#include <optional>

#include <gtest/gtest.h>

namespace perper::fabric {
namespace {

TEST(FinishGateTest, WithNoWriteInFlightTheFirstFinishGoesAtOnceAndLaterOnesNever) {
  FinishGate gate;
  std::optional<grpc::Status> first = gate.Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "a"));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(first->error_message(), "a");
  EXPECT_TRUE(gate.finished());
  EXPECT_FALSE(gate.Finish(grpc::Status::OK).has_value());
  EXPECT_FALSE(gate.WriteDone().has_value());
}

TEST(FinishGateTest, AFinishDuringAWriteWaitsForItAndKeepsTheFirstStatus) {
  FinishGate gate;
  gate.StartingWrite();
  EXPECT_TRUE(gate.writing());
  EXPECT_FALSE(gate.Finish(grpc::Status(grpc::StatusCode::CANCELLED, "first")).has_value());
  EXPECT_TRUE(gate.finished());  // Nothing new starts: Pump and Try stop here.
  EXPECT_FALSE(gate.Finish(grpc::Status(grpc::StatusCode::INTERNAL, "second")).has_value());
  std::optional<grpc::Status> deferred = gate.WriteDone();
  ASSERT_TRUE(deferred.has_value());
  EXPECT_EQ(deferred->error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(deferred->error_message(), "first");
  EXPECT_FALSE(gate.writing());
  EXPECT_FALSE(gate.WriteDone().has_value());  // Handed back once.
}

TEST(FinishGateTest, AWriteDoneWithoutAFinishLeavesTheCallOpenForTheNextWrite) {
  FinishGate gate;
  gate.StartingWrite();
  EXPECT_FALSE(gate.WriteDone().has_value());
  EXPECT_FALSE(gate.finished());
  gate.StartingWrite();
  EXPECT_TRUE(gate.writing());
}

TEST(FinishGateDeathTest, AWriteAfterTheFinishIsABrokenInvariant) {
  FinishGate gate;
  ASSERT_TRUE(gate.Finish(grpc::Status::OK).has_value());
  EXPECT_DEATH(gate.StartingWrite(), "a write started after the finish or during a write");
}

}  // namespace
}  // namespace perper::fabric
