// SPDX-License-Identifier: MIT
// perper/common/files.h: the address file as the Fabric, `perper up` and perper-bench write it
// and the CLI and perper-bench read it, any file written or read whole, and a program found on
// PATH.
#include "perper/common/files.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace perper {
namespace {

using ::perper::testing::TempDir;

TEST(WriteFileAtomicallyTest, WritesAndReplacesTheWholeFile) {
  TempDir dir;
  const std::string path = dir.path() + "/file";
  ASSERT_TRUE(WriteFileAtomically(path, "first, longer content").ok());
  EXPECT_EQ(ReadWholeFile(path), "first, longer content");
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(ReadWholeFile(path), "second");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(WriteFileAtomicallyTest, AFolderThatIsMissingIsUnavailableNamingThePath) {
  TempDir dir;
  const std::string path = dir.path() + "/missing/file";
  absl::Status status = WriteFileAtomically(path, "x");
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_EQ(status.message(), "cannot write " + path);
}

TEST(ReadWholeFileTest, ReadsEveryByteOrNothing) {
  TempDir dir;
  const std::string path = dir.path() + "/file";
  EXPECT_EQ(ReadWholeFile(path), "");  // missing
  const std::string content("two\nlines\0and a NUL", 20);
  std::ofstream(path, std::ios::binary) << content;
  EXPECT_EQ(ReadWholeFile(path), content);
}

TEST(AddressFileTest, WrittenWithANewlineAndReadWithout) {
  TempDir dir;
  const std::string path = dir.path() + "/address";
  EXPECT_EQ(ReadAddressFile(path), "");  // not written yet
  ASSERT_TRUE(WriteAddressFile(path, "127.0.0.1:40517").ok());
  EXPECT_EQ(ReadWholeFile(path), "127.0.0.1:40517\n");
  EXPECT_EQ(ReadAddressFile(path), "127.0.0.1:40517");
  // A file written by hand: spaces around the first line do not count, later lines are ignored.
  std::ofstream(path) << "  a:1, b:2 \nnext\n";
  EXPECT_EQ(ReadAddressFile(path), "a:1, b:2");
  absl::Status status = WriteAddressFile(dir.path() + "/missing/address", "a:1");
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_EQ(status.message(), "cannot write address file " + dir.path() + "/missing/address");
}

// Sets PATH for one test and puts it back.
class PathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* path = std::getenv("PATH")) saved_ = path;
  }
  void TearDown() override {
    if (saved_) {
      setenv("PATH", saved_->c_str(), 1);
    } else {
      unsetenv("PATH");
    }
  }
  static void MakeFile(const std::string& path, mode_t mode) {
    std::ofstream(path) << "#!/bin/sh\n";
    chmod(path.c_str(), mode);
  }

 private:
  std::optional<std::string> saved_;
};

TEST_F(PathTest, FindsTheFirstExecutableInPathOrder) {
  TempDir first, second;
  MakeFile(first.path() + "/tool", 0644);  // not executable: passed over
  MakeFile(second.path() + "/tool", 0755);
  MakeFile(first.path() + "/other", 0755);
  MakeFile(second.path() + "/other", 0755);
  setenv("PATH", (":" + first.path() + "::" + second.path()).c_str(), 1);
  EXPECT_EQ(FindOnPath("tool"), second.path() + "/tool");
  EXPECT_EQ(FindOnPath("other"), first.path() + "/other");
  EXPECT_EQ(FindOnPath("absent"), "");
}

TEST_F(PathTest, WithoutPathUsrBinAndBinAreSearched) {
  unsetenv("PATH");
  const std::string sh = FindOnPath("sh");
  EXPECT_TRUE(sh == "/usr/bin/sh" || sh == "/bin/sh") << sh;
}

}  // namespace
}  // namespace perper
