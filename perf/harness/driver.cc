// runTool: the sweep loop every perf tool shares (see harness.h for the sequence per value).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "harness/harness.h"
#include "harness/json.h"
#include "harness/launch.h"
#include "harness/machine.h"
#include "harness/memcpy_bw.h"
#include "harness/sync.h"
#include "harness/table.h"

namespace perf {
namespace {

std::string baseName(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

// Under mpirun only the first process prints usage errors and help.
bool firstProcessByEnv() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"}) {
    if (const char* v = getenv(var)) return atoi(v) == 0;
  }
  return true;
}

std::vector<std::string> headerLines(const Tool& tool, const Options& opt, const World& world, int nranks,
                                     const Machine& m) {
  char buf[512];
  std::vector<std::string> lines;
  lines.push_back("attnccl " + tool.name + ": " + tool.description);
  snprintf(buf, sizeof(buf), "machine: %s, %d cores, host %s, %s, %s", m.cpu.c_str(), m.cores, m.host.c_str(),
           m.kernel.c_str(), m.date.c_str());
  lines.push_back(buf);
  snprintf(buf, sizeof(buf), "ranks: %d (%d process%s x %d thread%s%s), transport %s, dtype %s", nranks,
           world.processes, world.processes == 1 ? "" : "es", opt.threads, opt.threads == 1 ? "" : "s",
           world.mpi ? ", MPI bootstrap" : "", opt.transport.c_str(), dtypeName(opt.dtype));
  lines.push_back(buf);
  snprintf(buf, sizeof(buf), "iters %d, warm-up %d, check %s, buffers %s + %d bytes, cpu threads/rank %d", opt.iters,
           opt.warmup, opt.check ? "on" : "off", opt.libraryBuffers ? "attncclMemAlloc" : "malloc", opt.bufferOffset,
           opt.cpuThreads);
  lines.push_back(buf);
  if (tool.memcpyCeiling) {
    lines.push_back("memcpy: single-thread memcpy of the row's size, measured in this run (ceiling of a 1-copy path)");
  }
  if (tool.headerLines) {
    for (const std::string& l : tool.headerLines(opt, nranks)) lines.push_back(l);
  }
  return lines;
}

std::string jsonDocument(const Tool& tool, const std::vector<Column>& columns, const Options& opt, const World& world,
                         int nranks, const Machine& m, const std::vector<std::string>& rows, const Table& table, int64_t wrong, int argc,
                         char** argv) {
  std::string cmd;
  for (int i = 0; i < argc; ++i) cmd += (i ? " " : "") + std::string(argv[i]);
  json::Members machine = {{"cpu", json::str(m.cpu)},   {"cores", json::num(m.cores)},
                           {"host", json::str(m.host)}, {"kernel", json::str(m.kernel)}};
  json::Members summary = {{"wrong", opt.check ? json::num(static_cast<double>(wrong)) : "null"}};
  for (size_t i = 0; i < columns.size(); ++i) {
    if (!columns[i].avgLabel.empty()) summary.push_back({"avg_" + columns[i].jsonKey, json::num(table.average(i))});
  }
  json::Members doc = {
      {"tool", json::str(tool.name)},
      {"description", json::str(tool.description)},
      {"command", json::str(cmd)},
      {"date", json::str(m.date)},
      {"machine", json::object(machine)},
      {"ranks", json::num(nranks)},
      {"processes", json::num(world.processes)},
      {"threads_per_process", json::num(opt.threads)},
      {"mpi", json::boolean(world.mpi)},
      {"transport", json::str(opt.transport)},
      {"dtype", json::str(dtypeName(opt.dtype))},
      {"iters", json::num(opt.iters)},
      {"warmup", json::num(opt.warmup)},
      {"check", json::boolean(opt.check)},
      {"library_buffers", json::boolean(opt.libraryBuffers)},
      {"buffer_offset", json::num(opt.bufferOffset)},
      {"rows", json::array(rows)},
      {"summary", json::object(summary)},
      {"ok", json::boolean(!opt.check || wrong == 0)},
  };
  return json::object(doc);
}

}  // namespace

int runTool(const Tool& tool, int argc, char** argv) {
  const std::string prog = baseName(argv[0]);
  Options opt;
  if (tool.defaults) tool.defaults(&opt);
  const Options defaults = opt;
  std::string err;
  ParseStatus st = parseOptions(argc, argv, tool.flags, &opt, &err);
  if (st == ParseStatus::kRun && tool.validate) err = tool.validate(opt);
  if (st == ParseStatus::kHelp) {
    if (firstProcessByEnv()) fputs(usageText(prog, tool.description, tool.sweepUnit, tool.flags, defaults).c_str(), stdout);
    return 0;
  }
  if (st == ParseStatus::kError || !err.empty()) {
    if (firstProcessByEnv()) {
      fprintf(stderr, "%s: %s\n%s", prog.c_str(), err.c_str(),
              usageText(prog, tool.description, tool.sweepUnit, tool.flags, defaults).c_str());
    }
    return 2;
  }
  World world;
  if (!worldInit(&argc, &argv, &world, &err)) {
    fprintf(stderr, "%s: %s\n", prog.c_str(), err.c_str());
    return 2;
  }
  const std::vector<int64_t> sweep = opt.sweep();
  const std::vector<Column> columns = tool.columnsFor ? tool.columnsFor(opt) : tool.columns;
  const Machine machine = describeMachine();

  std::vector<double> memcpyGBps(sweep.size(), 0.0);
  if (tool.memcpyCeiling) worldSerial(world, [&] { memcpyGBps = memcpyBandwidth(sweep, opt.iters); });

  int64_t wrongTotal = 0;  // written by thread 0 of each process (every rank sees the same sums)
  launchRanks(world, opt, [&](const RankInfo& ri) {
    const bool printer = ri.rank == 0;
    Table table(columns, stdout);
    std::vector<std::string> jsonRows;
    int64_t wrongSum = 0;
    if (printer) table.printHeader(headerLines(tool, opt, world, ri.nranks, machine));
    for (size_t k = 0; k < sweep.size(); ++k) {
      if (printer && tool.progress) {
        fprintf(stderr, "%s: [%zu/%zu] %lld %s\n", prog.c_str(), k + 1, sweep.size(),
                static_cast<long long>(sweep[k]), tool.sweepUnit.c_str());
      }
      std::unique_ptr<Case> c = tool.makeCase(ri, sweep[k]);
      const int phases = c->phases();
      int64_t wrong = 0;
      if (opt.check) {
        for (int p = 0; p < phases; ++p) checkResult(c->run(p), ri.comm, "checked run");
        wrong = c->check();
      }
      for (int w = 0; w < opt.warmup; ++w) {
        for (int p = 0; p < phases; ++p) checkResult(c->run(p), ri.comm, "warm-up run");
      }
      std::vector<double> mine;
      for (int p = 0; p < phases; ++p) {
        barrier(ri.comm);
        double t0 = wallSeconds();
        for (int it = 0; it < opt.iters; ++it) checkResult(c->run(p), ri.comm, "timed run");
        mine.push_back((wallSeconds() - t0) / opt.iters);
      }
      mine.push_back(static_cast<double>(wrong));
      std::vector<double> stats = c->stats();
      mine.insert(mine.end(), stats.begin(), stats.end());
      c.reset();
      std::vector<Reduced> red = reduceOverRanks(ri.comm, mine);
      wrongSum += static_cast<int64_t>(red[phases].sum);
      if (!printer) continue;
      Measured m;
      m.value = sweep[k];
      m.nranks = ri.nranks;
      for (int p = 0; p < phases; ++p) m.seconds.push_back(red[p].max);
      m.wrong = opt.check ? static_cast<int64_t>(red[phases].sum) : -1;
      m.stats.assign(red.begin() + phases + 1, red.end());
      m.memcpyGBps = memcpyGBps[k];
      m.opt = &opt;
      std::vector<Cell> cells = tool.row(m);
      table.printRow(cells);
      json::Members row;
      for (size_t i = 0; i < columns.size() && i < cells.size(); ++i) {
        const Cell& cell = cells[i];
        row.push_back({columns[i].jsonKey,
                       cell.missing ? "null" : cell.isNumber ? json::num(cell.number) : json::str(cell.text)});
      }
      jsonRows.push_back(json::object(row));
    }
    if (ri.thread == 0) wrongTotal = wrongSum;
    if (!printer) return;
    table.printSummary(opt.check, wrongSum);
    if (!opt.jsonPath.empty()) {
      std::string text =
          jsonDocument(tool, columns, opt, world, ri.nranks, machine, jsonRows, table, wrongSum, argc, argv);
      std::string jerr;
      if (!json::writeFile(opt.jsonPath, text, &jerr)) fprintf(stderr, "%s: %s\n", prog.c_str(), jerr.c_str());
    }
  });
  worldFinalize(world);
  return opt.check && wrongTotal != 0 ? 1 : 0;
}

// ---------------------------------------------------------------- helpers

Buffer::Buffer(size_t bytes, bool library, size_t offset) : bytes_(bytes), offset_(offset), library_(library) {
  size_t alloc = (bytes == 0 ? 1 : bytes) + offset;
  if (library) {
    attncclResult_t r = attncclMemAlloc(&ptr_, alloc);
    if (r != attncclSuccess) fatal("attncclMemAlloc(%zu): %s", alloc, attncclGetLastError(nullptr));
  } else {
    ptr_ = aligned_alloc(4096, (alloc + 4095) / 4096 * 4096);
    if (!ptr_) fatal("out of memory allocating %zu bytes", alloc);
  }
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_), offset_(o.offset_), library_(o.library_) {
  o.ptr_ = nullptr;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    offset_ = o.offset_;
    library_ = o.library_;
    o.ptr_ = nullptr;
  }
  return *this;
}

void Buffer::release() {
  if (!ptr_) return;
  if (library_) {
    attncclMemFree(ptr_);
  } else {
    free(ptr_);
  }
  ptr_ = nullptr;
}

Cell numberCell(double v, int precision) {
  char buf[64];
  snprintf(buf, sizeof(buf), "%.*f", precision, v);
  return Cell{buf, v, true, false};
}

Cell intCell(int64_t v) { return Cell{std::to_string(v), static_cast<double>(v), true, false}; }

Cell textCell(const std::string& s) { return Cell{s, 0, false, false}; }

Cell missingCell() { return Cell{"N/A", 0, false, true}; }

}  // namespace perf
