// Runs a shell command for tests of the programs (perf tools, attnccl-info): its exit status
// and everything it printed, stdout and stderr together.
#pragma once

#include <string>
#include <vector>

namespace attnccl {
namespace test {

struct CommandResult {
  int status = -1;  // exit status, or -1 when the command did not exit normally
  std::string output;
};

CommandResult runCommand(const std::string& cmd);

// The whitespace-separated words of a line.
std::vector<std::string> words(const std::string& line);

}  // namespace test
}  // namespace attnccl
