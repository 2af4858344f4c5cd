// SPDX-License-Identifier: MIT
#include "tests/support/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <set>

extern char** environ;

namespace perper::testing {

std::vector<std::string> ChildEnvironment(const std::vector<std::string>& env) {
  std::set<std::string> replaced;
  for (const std::string& kv : env) replaced.insert(kv.substr(0, kv.find('=')));
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    if (replaced.count(entry.substr(0, entry.find('='))) == 0) environment.push_back(entry);
  }
  for (const std::string& kv : env) {
    if (kv.find('=') != std::string::npos) environment.push_back(kv);
  }
  return environment;
}

pid_t SpawnWithLog(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const std::string& log_path, bool die_with_parent) {
  std::vector<std::string> environment = ChildEnvironment(env);
  std::vector<char*> envp;
  for (std::string& kv : environment) envp.push_back(kv.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  if (die_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // The parent is already gone.
  }
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 1);
  dup2(fd, 2);
  close(fd);
  // The test process may block signals; the child must see SIGTERM.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execvpe(args[0], args.data(), envp.data());
  _exit(127);
}

}  // namespace perper::testing
