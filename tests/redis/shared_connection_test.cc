// SPDX-License-Identifier: MIT
// SharedConnection against a real redis-server: many threads on one connection each get their
// own replies (and share reads and writes), and a server that stops answering or dies fails
// every waiter with UNAVAILABLE within the command timeout.
#include "perper/storage/redis/shared_connection.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <gtest/gtest.h>

#include "tests/support/redis_process.h"

namespace perper::storage::redis {
namespace {

using perper::testing::RedisProcess;

// A field of INFO (e.g. "total_reads_processed"), read on a connection of its own.
int64_t InfoField(int port, const std::string& section, const std::string& field) {
  auto connection = RedisConnection::Connect("127.0.0.1", port);
  if (!connection.ok()) return -1;
  auto info = (*connection)->Run({"INFO", section});
  if (!info.ok()) return -1;
  const size_t at = info->str.find(field + ":");
  if (at == std::string::npos) return -1;
  const size_t from = at + field.size() + 1;
  int64_t value = -1;
  if (!absl::SimpleAtoi(info->str.substr(from, info->str.find('\r', at) - from), &value)) return -1;
  return value;
}

TEST(SharedConnectionTest, ManyThreadsGetTheirOwnRepliesAndShareReads) {
  RedisProcess server;
  ASSERT_TRUE(server.Start().ok());
  auto connection = SharedConnection::Connect("127.0.0.1", server.port());
  ASSERT_TRUE(connection.ok()) << connection.status();
  constexpr int kThreads = 8;
  constexpr int kEach = 500;
  const int64_t reads_before = InfoField(server.port(), "stats", "total_reads_processed");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string word = absl::StrCat(t, "-", i);
        // A pair, to check that a group's replies stay together and in order.
        auto replies = (*connection)->Pipeline({{"ECHO", word}, {"ECHO", word + "!"}});
        if (!replies.ok() || replies->size() != 2 || (*replies)[0].str != word ||
            (*replies)[1].str != word + "!") {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_FALSE((*connection)->broken());
  // 8,000 commands; concurrent submissions went out together, so Redis read fewer times.
  const int64_t reads = InfoField(server.port(), "stats", "total_reads_processed") - reads_before;
  EXPECT_LT(reads, kThreads * kEach) << reads << " reads";
}

// How many threads this process has.
size_t Threads() {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++count;
  }
  return count;
}

// The waiting threads read the replies themselves: a connection adds no thread, and a lone
// caller gets its replies with no other thread to wake.
TEST(SharedConnectionTest, AConnectionHasNoThreadOfItsOwn) {
  RedisProcess server;
  ASSERT_TRUE(server.Start().ok());
  const size_t before = Threads();
  auto connection = SharedConnection::Connect("127.0.0.1", server.port());
  ASSERT_TRUE(connection.ok()) << connection.status();
  for (int i = 0; i < 100; ++i) {
    auto reply = (*connection)->Run({"ECHO", absl::StrCat(i)});
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(reply->str, absl::StrCat(i));
  }
  EXPECT_EQ(Threads(), before);
}

TEST(SharedConnectionTest, AServerThatStopsAnsweringBreaksItWithinTheTimeout) {
  RedisProcess server;
  ASSERT_TRUE(server.Start().ok());
  const int64_t pid = InfoField(server.port(), "server", "process_id");
  ASSERT_GT(pid, 0);
  ConnectionOptions options;
  options.command_timeout = std::chrono::milliseconds(300);
  auto connection = SharedConnection::Connect("127.0.0.1", server.port(), options);
  ASSERT_TRUE(connection.ok()) << connection.status();
  ASSERT_TRUE((*connection)->Run({"SET", "k", "v"}).ok());

  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGSTOP), 0);
  // Four waiters: the first to time out breaks the connection, and every one of them answers.
  std::vector<absl::Status> statuses(4);
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { statuses[t] = (*connection)->Command({"GET", "k"}).status(); });
  }
  for (std::thread& thread : threads) thread.join();
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGCONT), 0);
  for (const absl::Status& status : statuses) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_NE(status.message().find(server.address()), std::string::npos) << status;
  }
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_TRUE((*connection)->broken());
  // Broken stays broken: the owner connects again.
  EXPECT_EQ((*connection)->Command({"PING"}).status().code(), absl::StatusCode::kUnavailable);
}

TEST(SharedConnectionTest, AServerThatDiesFailsTheNextCommandAtOnce) {
  RedisProcess server;
  ASSERT_TRUE(server.Start().ok());
  auto connection = SharedConnection::Connect("127.0.0.1", server.port());
  ASSERT_TRUE(connection.ok()) << connection.status();
  ASSERT_TRUE((*connection)->Run({"PING"}).ok());
  server.Kill();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<RedisReply> reply = (*connection)->Command({"PING"});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  // The reader saw the connection close: no command timeout (5 s by default) to wait out.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE((*connection)->broken());
}

TEST(SharedConnectionTest, AnErrorReplyIsAReplyAndRunMakesItAStatus) {
  RedisProcess server;
  ASSERT_TRUE(server.Start().ok());
  auto connection = SharedConnection::Connect("127.0.0.1", server.port());
  ASSERT_TRUE(connection.ok()) << connection.status();
  absl::StatusOr<RedisReply> reply = (*connection)->Command({"NOSUCHCOMMAND"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->is_error());
  EXPECT_EQ((*connection)->Run({"NOSUCHCOMMAND"}).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ((*connection)->Command({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE((*connection)->broken());
}

}  // namespace
}  // namespace perper::storage::redis
