#include "harness/options.h"

#include <getopt.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/dtype.h"

namespace perf {
namespace {

constexpr const char* kCommonLetters = "rbefinwcdtJTMAh";

struct DtypeName {
  const char* name;
  attncclDataType_t t;
};
const DtypeName kDtypeNames[] = {
    {"int8", attncclInt8},     {"uint8", attncclUint8},   {"int32", attncclInt32},     {"int64", attncclInt64},
    {"fp16", attncclFloat16},  {"half", attncclFloat16},  {"float16", attncclFloat16}, {"bf16", attncclBfloat16},
    {"bfloat16", attncclBfloat16}, {"fp32", attncclFloat32}, {"float", attncclFloat32}, {"float32", attncclFloat32},
    {"fp64", attncclFloat64},  {"double", attncclFloat64}, {"float64", attncclFloat64},
};

bool parseInt(const char* s, int64_t lo, int64_t hi, int64_t* out) {
  if (s == nullptr || *s == '\0') return false;
  errno = 0;
  char* end = nullptr;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

std::string bad(char letter, const char* arg, const char* what) {
  return std::string("-") + letter + " '" + (arg ? arg : "") + "': " + what;
}

}  // namespace

bool parseScaled(const char* s, int64_t* out) {
  if (s == nullptr || *s == '\0') return false;
  errno = 0;
  char* end = nullptr;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || v < 0) return false;
  int64_t scale = 1;
  switch (*end) {
    case '\0': break;
    case 'K': case 'k': scale = int64_t(1) << 10; ++end; break;
    case 'M': case 'm': scale = int64_t(1) << 20; ++end; break;
    case 'G': case 'g': scale = int64_t(1) << 30; ++end; break;
    default: return false;
  }
  if (*end != '\0' || v > INT64_MAX / scale) return false;
  *out = v * scale;
  return true;
}

bool parseDtype(const char* s, attncclDataType_t* out) {
  for (const DtypeName& d : kDtypeNames) {
    if (strcmp(s, d.name) == 0) {
      *out = d.t;
      return true;
    }
  }
  return false;
}

const char* dtypeName(attncclDataType_t t) { return attnccl::dtypeName(t); }
size_t dtypeBytes(attncclDataType_t t) { return attnccl::dtypeSize(t); }

std::vector<int64_t> Options::sweep() const {
  std::vector<int64_t> v;
  for (int64_t x = minValue; x <= maxValue;) {
    v.push_back(x);
    int64_t next = increment > 0 ? x + increment : x * factor;
    if (next <= x) break;  // overflow guard
    x = next;
  }
  return v;
}

ParseStatus parseOptions(int argc, char** argv, const std::vector<ToolFlag>& toolFlags, Options* opt,
                         std::string* error) {
  std::string spec = ":";  // leading ':' makes getopt report a missing argument as ':'
  for (const char* c = kCommonLetters; *c; ++c) {
    spec += *c;
    if (*c != 'h') spec += ':';
  }
  for (const ToolFlag& f : toolFlags) {
    if (strchr(kCommonLetters, f.letter) != nullptr) {
      *error = std::string("tool flag -") + f.letter + " clashes with a common flag";
      return ParseStatus::kError;
    }
    spec += f.letter;
    if (f.hasArg) spec += ':';
  }
  opterr = 0;
  optind = 1;
  int c;
  int64_t v = 0;
  while ((c = getopt(argc, argv, spec.c_str())) != -1) {
    const char* a = optarg;
    std::string err;
    switch (c) {
      case 'h': return ParseStatus::kHelp;
      case 'r':
        if (!parseInt(a, 1, 1024, &v)) err = bad('r', a, "ranks per process must be 1..1024");
        opt->threads = static_cast<int>(v);
        break;
      case 'b':
        if (!parseScaled(a, &opt->minValue) || opt->minValue < 1) err = bad('b', a, "expected a size >= 1 (K/M/G)");
        break;
      case 'e':
        if (!parseScaled(a, &opt->maxValue) || opt->maxValue < 1) err = bad('e', a, "expected a size >= 1 (K/M/G)");
        break;
      case 'f':
        if (!parseScaled(a, &opt->factor) || opt->factor < 2) err = bad('f', a, "factor must be >= 2");
        break;
      case 'i':
        if (!parseScaled(a, &opt->increment) || opt->increment < 1) err = bad('i', a, "increment must be >= 1");
        break;
      case 'n':
        if (!parseInt(a, 1, 1 << 30, &v)) err = bad('n', a, "iterations must be >= 1");
        opt->iters = static_cast<int>(v);
        break;
      case 'w':
        if (!parseInt(a, 0, 1 << 30, &v)) err = bad('w', a, "warm-up iterations must be >= 0");
        opt->warmup = static_cast<int>(v);
        break;
      case 'c':
        if (!parseInt(a, 0, 1, &v)) err = bad('c', a, "expected 0 or 1");
        opt->check = v != 0;
        break;
      case 'd':
        if (!parseDtype(a, &opt->dtype)) err = bad('d', a, "unknown type (int8 uint8 int32 int64 fp16 bf16 fp32 fp64)");
        break;
      case 't':
        if (strcmp(a, "auto") != 0 && strcmp(a, "shm") != 0 && strcmp(a, "ucx") != 0) {
          err = bad('t', a, "expected auto, shm or ucx");
        }
        opt->transport = a;
        break;
      case 'J': opt->jsonPath = a; break;
      case 'T':
        if (!parseInt(a, 0, 4096, &v)) err = bad('T', a, "threads per rank must be >= 0");
        opt->cpuThreads = static_cast<int>(v);
        break;
      case 'M':
        if (!parseInt(a, 0, 1, &v)) err = bad('M', a, "expected 0 or 1");
        opt->libraryBuffers = v != 0;
        break;
      case 'A':
        if (!parseInt(a, 0, 4088, &v) || v % 8 != 0) err = bad('A', a, "expected a multiple of 8 in 0..4088");
        opt->bufferOffset = static_cast<int>(v);
        break;
      case ':': err = std::string("-") + static_cast<char>(optopt) + " needs an argument"; break;
      case '?': err = std::string("unknown flag -") + static_cast<char>(optopt); break;
      default:
        for (const ToolFlag& f : toolFlags) {
          if (f.letter == c) err = f.set(f.hasArg ? a : nullptr);
        }
    }
    if (!err.empty()) {
      *error = err;
      return ParseStatus::kError;
    }
  }
  if (optind < argc) {
    *error = std::string("unexpected argument '") + argv[optind] + "'";
    return ParseStatus::kError;
  }
  if (opt->maxValue < opt->minValue) {
    *error = "-e must be >= -b";
    return ParseStatus::kError;
  }
  return ParseStatus::kRun;
}

std::string usageText(const std::string& prog, const std::string& description, const std::string& sweepUnit,
                      const std::vector<ToolFlag>& toolFlags, const Options& defaults) {
  auto scaled = [](int64_t v) {
    for (const char* suffix : {"G", "M", "K"}) {
      int64_t unit = int64_t(1) << (*suffix == 'G' ? 30 : *suffix == 'M' ? 20 : 10);
      if (v >= unit && v % unit == 0) return std::to_string(v / unit) + suffix;
    }
    return std::to_string(v);
  };
  const Options& o = defaults;
  std::string s = "usage: " + prog + " [flags]\n  " + description + "\n\n";
  s += "  -r N      ranks as threads of this process (under mpirun: MPI processes x N) [" + std::to_string(o.threads) + "]\n";
  s += "  -b V      first sweep value in " + sweepUnit + ", K/M/G suffixes [" + scaled(o.minValue) + "]\n";
  s += "  -e V      last sweep value [" + scaled(o.maxValue) + "]\n";
  s += "  -f F      multiply the value by F each step [" + std::to_string(o.factor) + "]\n";
  s += "  -i V      add V each step instead of multiplying\n";
  s += "  -n N      timed iterations per value [" + std::to_string(o.iters) + "]\n";
  s += "  -w N      warm-up iterations per value [" + std::to_string(o.warmup) + "]\n";
  s += "  -c 0|1    check every element of one run per value [" + std::to_string(o.check ? 1 : 0) + "]\n";
  s += std::string("  -d TYPE   int8 uint8 int32 int64 fp16 bf16 fp32 fp64 [") + dtypeName(o.dtype) + "]\n";
  s += "  -t T      transport: auto, shm or ucx [auto]\n";
  s += "  -J FILE   write the rows as JSON to FILE\n";
  s += "  -T N      compute threads per rank (0 = the rank's share of the cores) [0]\n";
  s += "  -M 0|1    buffers from attncclMemAlloc (the shm zero-copy path) instead of malloc [0]\n";
  s += "  -A N      collective buffers start N bytes past a page boundary (malloc's large blocks: 16) [0]\n";
  s += "  -h        this help\n";
  for (const ToolFlag& f : toolFlags) s += "  " + f.help + "\n";
  s += "\nExit status: 0 all values correct, 1 some element wrong, 2 usage error, 3 a library call failed.\n";
  return s;
}

}  // namespace perf
