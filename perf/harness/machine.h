// What machine a run is on, for the table header and the JSON file.
#pragma once

#include <string>

namespace perf {

struct Machine {
  std::string cpu;     // /proc/cpuinfo "model name"
  int cores = 0;       // online logical CPUs
  std::string host;
  std::string kernel;  // uname -sr
  std::string date;    // local time, ISO 8601
};

Machine describeMachine();

}  // namespace perf
