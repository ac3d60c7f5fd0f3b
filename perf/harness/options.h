// Command-line flags common to every perf tool, and the tool's own flags.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attnccl.h"

namespace perf {

struct Options {
  int threads = 1;                  // -r: ranks as threads per process
  int64_t minValue = 1 << 20;       // -b
  int64_t maxValue = 64 << 20;      // -e
  int64_t factor = 2;               // -f: multiplication factor of the sweep
  int64_t increment = 0;            // -i: additive step; when > 0 it replaces -f
  int iters = 20;                   // -n
  int warmup = 2;                   // -w
  bool check = true;                // -c
  attncclDataType_t dtype = attncclFloat32;  // -d
  std::string transport = "auto";  // -t auto|shm|ucx
  std::string jsonPath;             // -J
  int cpuThreads = 0;               // -T: compute threads per rank (config.cpuThreads), 0 = auto
  bool libraryBuffers = false;      // -M 1: buffers from attncclMemAlloc
  int bufferOffset = 0;             // -A: the collective tools' buffers start this far past a page

  // The sweep values -b..-e (at least one).
  std::vector<int64_t> sweep() const;
};

// A tool-specific flag. set() gets the argument (nullptr when hasArg is false) and returns ""
// or a message saying what is wrong with it.
struct ToolFlag {
  char letter;
  bool hasArg;
  std::string help;  // e.g. "-H N    query heads (default 8)"
  std::function<std::string(const char* arg)> set;
};

enum class ParseStatus { kRun, kHelp, kError };

// Parses argv into *opt and the tool flags. kError: *error says why; kHelp: -h was given.
ParseStatus parseOptions(int argc, char** argv, const std::vector<ToolFlag>& toolFlags, Options* opt,
                         std::string* error);

// Usage text: the common flags with their defaults (from `defaults`), then the tool's.
std::string usageText(const std::string& prog, const std::string& description, const std::string& sweepUnit,
                      const std::vector<ToolFlag>& toolFlags, const Options& defaults = Options());

// "64M" -> 67108864 (K, M, G: powers of 1024; a plain number: as is). false on junk.
bool parseScaled(const char* s, int64_t* out);
// Data type by name: int8 uint8 int32 int64 fp16|half bf16 fp32|float fp64|double.
bool parseDtype(const char* s, attncclDataType_t* out);
const char* dtypeName(attncclDataType_t t);
size_t dtypeBytes(attncclDataType_t t);

}  // namespace perf
