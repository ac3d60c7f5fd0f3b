#include "harness/collective.h"

#include <algorithm>
#include <cstring>

#include "harness/options.h"

namespace perf {
namespace {

size_t blockElems(const Collective& c, int64_t value, int nranks, attncclDataType_t t) {
  size_t elems = static_cast<size_t>(value) / dtypeBytes(t);
  if (c.blocksPerRank) elems /= static_cast<size_t>(nranks);
  return std::max<size_t>(elems, 1);
}

size_t blocks(int spec, int nranks) { return spec == 0 ? static_cast<size_t>(nranks) : static_cast<size_t>(spec); }

class CollectiveCase : public Case {
 public:
  CollectiveCase(const Collective& c, const RankInfo& ri, int64_t value, bool inPlace)
      : c_(c), ri_(ri), t_(ri.opt->dtype), code_(t_, ri.nranks, c.summed), inPlace_(inPlace) {
    block_ = blockElems(c, value, ri.nranks, t_);
    sendElems_ = block_ * blocks(c.sendBlocks, ri.nranks);
    recvElems_ = block_ * blocks(c.recvBlocks, ri.nranks);
    const size_t sz = dtypeBytes(t_);
    recv_ = Buffer(recvElems_ * sz, ri.opt->libraryBuffers, ri.opt->bufferOffset);
    if (inPlace_) {
      // The one buffer starts as the send data: the check then sees the result or, where the
      // call wrote nothing, this rank's own codes (wrong on every rank that must receive).
      fillCode(recv_.data(), recvElems_, t_, code_, ri.rank);
      return;
    }
    send_ = Buffer(sendElems_ * sz, ri.opt->libraryBuffers, ri.opt->bufferOffset);
    fillCode(send_.data(), sendElems_, t_, code_, ri.rank);
    fillValue(recv_.data(), recvElems_, t_, code_.poison());
  }

  attncclResult_t run(int) override {
    return c_.call(inPlace_ ? recv_.data() : send_.data(), recv_.data(), block_, t_, ri_);
  }

  int64_t check() override {
    int64_t wrong = 0;
    for (size_t i = 0; i < recvElems_; ++i) {
      if (loadValue(recv_.data(), i, t_) != c_.expected(code_, ri_.rank, ri_.nranks, block_, i)) ++wrong;
    }
    return wrong;
  }

 private:
  const Collective& c_;
  const RankInfo ri_;
  const attncclDataType_t t_;
  const ValueCode code_;
  const bool inPlace_;
  size_t block_ = 0, sendElems_ = 0, recvElems_ = 0;
  Buffer send_, recv_;
};

std::vector<Column> columns() {
  return {
      {"size", "(B)", 12, "size_bytes", ""},
      {"count", "(elements)", 12, "count", ""},
      {"type", "", 6, "type", ""},
      {"time", "(us)", 10, "time_us", ""},
      {"algbw", "(GB/s)", 8, "algbw_gbps", ""},
      {"busbw", "(GB/s)", 8, "busbw_gbps", "bus bandwidth"},
      {"#wrong", "", 7, "wrong", ""},
      {"memcpy", "(GB/s)", 8, "memcpy_gbps", "memcpy bandwidth"},
      {"bus/mcpy", "", 8, "busbw_over_memcpy", ""},
  };
}

}  // namespace

int runCollectiveTool(const Collective& coll, int argc, char** argv) {
  Tool tool;
  tool.name = coll.name;
  tool.description = coll.description;
  tool.columns = columns();
  tool.memcpyCeiling = true;
  bool inPlace = false;
  if (coll.inPlaceAllowed) {
    tool.flags.push_back(ToolFlag{'I', true, "-I 0|1    in place: sendbuff = recvbuff, one buffer per rank [0]",
                                  [&inPlace](const char* a) -> std::string {
                                    if (strcmp(a, "0") != 0 && strcmp(a, "1") != 0) {
                                      return std::string("-I '") + a + "': expected 0 or 1";
                                    }
                                    inPlace = a[0] == '1';
                                    return "";
                                  }});
  }
  tool.makeCase = [&coll, &inPlace](const RankInfo& ri, int64_t value) -> std::unique_ptr<Case> {
    return std::make_unique<CollectiveCase>(coll, ri, value, inPlace);
  };
  tool.headerLines = [&coll, &inPlace](const Options&, int nranks) {
    char buf[160];
    snprintf(buf, sizeof(buf), "algbw = size / time; busbw = algbw * %.4g (bus factor for %d ranks)",
             coll.busFactor(nranks), nranks);
    std::vector<std::string> lines{buf};
    if (coll.inPlaceAllowed) lines.push_back(inPlace ? "in place (sendbuff = recvbuff)" : "out of place");
    return lines;
  };
  tool.row = [&coll](const Measured& m) {
    const attncclDataType_t t = m.opt->dtype;
    size_t count = blockElems(coll, m.value, m.nranks, t) * (coll.blocksPerRank ? m.nranks : 1);
    double bytes = static_cast<double>(count * dtypeBytes(t));
    double sec = m.seconds[0];
    double algbw = bytes / sec / 1e9;
    double busbw = algbw * coll.busFactor(m.nranks);
    std::vector<Cell> cells = {
        intCell(static_cast<int64_t>(bytes)), intCell(static_cast<int64_t>(count)), textCell(dtypeName(t)),
        numberCell(sec * 1e6, 2),           numberCell(algbw, 3),                   numberCell(busbw, 3),
        m.wrong < 0 ? missingCell() : intCell(m.wrong),
        numberCell(m.memcpyGBps, 3),        numberCell(m.memcpyGBps > 0 ? busbw / m.memcpyGBps : 0, 3),
    };
    return cells;
  };
  return runTool(tool, argc, argv);
}

}  // namespace perf
