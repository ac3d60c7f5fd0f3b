// The shared perf harness: sweep + launch + time + table + JSON, for nccl-tests-style tools.
//
// A tool is one small file: it fills a perf::Tool and calls perf::runTool(tool, argc, argv) from
// main. The harness does everything that is not specific to what is measured:
//
//   flags     common to every tool (perf/harness/options.h): -r N ranks as threads (under mpirun:
//             MPI processes x N threads, bootstrapped through MPI), -b -e -f [-i] the sweep with
//             K/M/G suffixes, -n iterations, -w warm-up, -c 0|1 check, -d dtype, -t transport,
//             -J FILE JSON, -T compute threads per rank, -M 0|1 buffers from attncclMemAlloc,
//             -h help; plus the tool's own flags (Tool::flags).
//   launch    one communicator per rank (threads of this process, or MPI processes x threads),
//             the tool's callbacks run on every rank (perf/harness/launch.h).
//   per sweep value, on every rank:
//             c = tool.makeCase(rank, value)     allocate, fill inputs, poison outputs
//             if -c 1: c->run(p) for every phase once, then wrong = c->check()
//             -w warm-up iterations of every phase
//             per phase: barrier, time -n iterations of c->run(phase)
//             (per-iteration wall time = loop time / n, then the max over ranks)
//             c->stats(): per-rank numbers, reduced over ranks (min / max / sum)
//   row       on global rank 0, tool.row(Measured) gives the cells of the tool's columns
//             (Tool::columns); the harness prints the table (header with machine, transport and
//             ranks; one line per value; "# Avg <label>" summaries for columns with avgLabel)
//             and writes the JSON file (-J) with the same rows.
//   exit      0 if every rank checked every value with zero wrong elements, 1 if any was wrong,
//             2 on a usage error (usage on stderr), 3 on a failed library call.
//
// A building-block collective tool is even smaller: see perf/harness/collective.h. Tools with a
// different sweep (attention: sequence lengths) use this header directly, with their own columns,
// phases (e.g. forward and backward) and per-rank stats (bytes sent, compute time for balance).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attnccl.h"
#include "harness/options.h"

namespace perf {

// Where a rank stands in the run. Valid during the callbacks of that rank.
struct RankInfo {
  attncclComm_t comm = nullptr;
  int rank = 0, nranks = 1;         // in the communicator
  int process = 0, processes = 1;   // MPI process (0 of 1 without mpirun)
  int thread = 0, threads = 1;      // thread within the process
  const Options* opt = nullptr;
};

// One sweep value on one rank. Constructed by Tool::makeCase; destroyed before the next value.
class Case {
 public:
  virtual ~Case() = default;
  // Timed phases (forward/backward...). The harness times each separately; check runs all.
  virtual int phases() const { return 1; }
  // One iteration of a phase. A failure ends the run (exit 3) with the library's message.
  virtual attncclResult_t run(int phase) = 0;
  // After one run of every phase on fresh inputs: elements of this rank that are wrong.
  virtual int64_t check() { return 0; }
  // Per-rank numbers after the timed iterations; the harness reduces each over ranks. Every rank
  // must return the same count.
  virtual std::vector<double> stats() { return {}; }
};

struct Reduced {
  double min = 0, max = 0, sum = 0;
};

// What the harness measured for one sweep value (given to Tool::row on global rank 0).
struct Measured {
  int64_t value = 0;             // the sweep value as requested (bytes, tokens...)
  int nranks = 1;
  std::vector<double> seconds;   // per phase: per-iteration wall time, max over ranks
  int64_t wrong = -1;            // wrong elements over all ranks; -1 when not checked
  std::vector<Reduced> stats;    // Case::stats() reduced over ranks
  double memcpyGBps = 0;         // single-thread memcpy of `value` bytes (Tool::memcpyCeiling)
  const Options* opt = nullptr;
};

// One table cell; number is what goes into JSON (text when isNumber is false, null when missing).
struct Cell {
  std::string text;
  double number = 0;
  bool isNumber = true;
  bool missing = false;
};

struct Column {
  std::string name;      // header, one word (parsers split on spaces)
  std::string unit;      // second header line, e.g. "(us)"; may be empty
  int width = 10;
  std::string jsonKey;   // key in the JSON rows
  std::string avgLabel;  // non-empty: print "# Avg <avgLabel> : mean of the column"
};

struct Tool {
  std::string name;                  // e.g. "allgather_perf"
  std::string description;           // one line for -h and the table header
  std::string sweepUnit = "bytes";   // what -b/-e count, for -h
  std::vector<ToolFlag> flags;       // extra flags (letters not used by the common ones)
  std::vector<Column> columns;
  // Optional: columns that depend on the parsed flags (replaces `columns` when set).
  std::function<std::vector<Column>(const Options&)> columnsFor;
  bool memcpyCeiling = false;        // measure memcpy bandwidth for every sweep value
  bool progress = false;             // a progress line per value on stderr
  // Optional: the tool's defaults of the common flags (e.g. a sweep in tokens), set before
  // parsing and shown by -h.
  std::function<void(Options*)> defaults;
  // Optional: validate the options after parsing (e.g. restrict -d). Return "" or a message.
  std::function<std::string(const Options&)> validate;
  // Optional: lines added to the table header (after the common ones), without the leading '#'.
  std::function<std::vector<std::string>(const Options&, int nranks)> headerLines;
  std::function<std::unique_ptr<Case>(const RankInfo&, int64_t value)> makeCase;
  std::function<std::vector<Cell>(const Measured&)> row;
};

// Parses the flags, launches the ranks, runs the sweep, prints; returns the process exit status.
int runTool(const Tool& tool, int argc, char** argv);

// ---------------------------------------------------------------- helpers for tools

// Host buffer for a case: malloc'ed, or from attncclMemAlloc when -M 1 (the shm transport's
// zero-copy path). Page-aligned; freed with the object.
class Buffer {
 public:
  Buffer() = default;
  // offset: data() starts that many bytes past the allocation's (page-aligned) start.
  Buffer(size_t bytes, bool library, size_t offset = 0);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  void* data() const { return static_cast<char*>(ptr_) + offset_; }
  size_t size() const { return bytes_; }

 private:
  void release();
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  size_t offset_ = 0;
  bool library_ = false;
};

Cell numberCell(double v, int precision);
Cell intCell(int64_t v);
Cell textCell(const std::string& s);
Cell missingCell();  // "N/A" in the table, null in JSON

}  // namespace perf
