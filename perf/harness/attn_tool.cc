#include "harness/attn_tool.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "harness/attn_case.h"
#include "harness/harness.h"

namespace perf {
namespace {

bool parseInt(const char* s, int64_t lo, int64_t hi, int64_t* out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

std::string maskName(const AttnParams& ap) {
  std::string m = ap.causal ? "causal" : "full";
  if (ap.window >= 0) m += "-w" + std::to_string(ap.window);
  return m;
}

const char* layoutName(attncclLayout_t l) {
  switch (l) {
    case attncclLayoutZigzag: return "zigzag";
    case attncclLayoutStriped: return "striped";
    default: return "contiguous";
  }
}

std::vector<ToolFlag> attnFlags(AttnParams* ap) {
  auto intFlag = [](char letter, const char* help, int64_t lo, int64_t hi, const char* what, auto store) {
    return ToolFlag{letter, true, help, [=](const char* a) -> std::string {
                      int64_t v;
                      if (!parseInt(a, lo, hi, &v)) return std::string("-") + letter + " '" + a + "': " + what;
                      store(v);
                      return "";
                    }};
  };
  return {
      intFlag('H', "-H N      query heads [8]", 1, 4096, "heads must be >= 1", [ap](int64_t v) { ap->heads = int(v); }),
      intFlag('K', "-K N      K/V heads, dividing -H (0 = -H) [0]", 0, 4096, "K/V heads must be >= 0",
              [ap](int64_t v) { ap->kvHeads = int(v); }),
      intFlag('D', "-D N      head dim, 1..256 [64]", 1, 256, "head dim must be 1..256",
              [ap](int64_t v) { ap->headDim = int(v); }),
      intFlag('C', "-C 0|1    causal mask [1]", 0, 1, "expected 0 or 1", [ap](int64_t v) { ap->causal = v != 0; }),
      ToolFlag{'l', true, "-l L      layout: contiguous, zigzag or striped [zigzag]",
               [ap](const char* a) -> std::string {
                 if (strcmp(a, "contiguous") == 0) ap->layout = attncclLayoutContiguous;
                 else if (strcmp(a, "zigzag") == 0) ap->layout = attncclLayoutZigzag;
                 else if (strcmp(a, "striped") == 0) ap->layout = attncclLayoutStriped;
                 else return std::string("-l '") + a + "': expected contiguous, zigzag or striped";
                 return "";
               }},
      intFlag('W', "-W N      left window in tokens, -1 = none [-1]", -1, int64_t(1) << 40, "window must be >= -1",
              [ap](int64_t v) { ap->window = v; }),
      ToolFlag{'B', true, "-B DIR    fwd, bwd or both [both]",
               [ap](const char* a) -> std::string {
                 ap->forward = strcmp(a, "fwd") == 0 || strcmp(a, "both") == 0;
                 ap->backward = strcmp(a, "bwd") == 0 || strcmp(a, "both") == 0;
                 if (!ap->forward && !ap->backward) return std::string("-B '") + a + "': expected fwd, bwd or both";
                 return "";
               }},
      intFlag('Z', "-Z N      batch: sequences per call (desc.batch) [1]", 1, 1 << 20, "batch must be >= 1",
              [ap](int64_t v) { ap->batch = v; }),
      intFlag('Q', "-Q 0|1    packed QKV: q, k, v as views of one [B][T][Hq+2Hkv][D] buffer (the Ex calls) [0]", 0, 1,
              "expected 0 or 1", [ap](int64_t v) { ap->packed = v != 0; }),
      intFlag('E', "-E 0|1    efficiency column: time the one-rank run with P x T threads [1]", 0, 1,
              "expected 0 or 1", [ap](int64_t v) { ap->efficiency = v != 0; }),
      // The hybrid reads its group size from the config or ATTNCCL_HYBRID_GROUP; the harness
      // builds the config, so the flag sets the variable before any communicator exists.
      intFlag('G', "-G N      hybrid group size (ATTNCCL_HYBRID_GROUP; 0 = ranks per node) [0]", 0, 4096,
              "group size must be >= 0", [](int64_t v) { setenv("ATTNCCL_HYBRID_GROUP", std::to_string(v).c_str(), 1); }),
  };
}

std::vector<Column> attnColumns(const AttnParams& ap) {
  std::vector<Column> c = {
      {"seqlen", "(tokens)", 9, "seqlen", ""}, {"heads", "", 5, "heads", ""},  {"kvheads", "", 7, "kv_heads", ""},
      {"dim", "", 4, "head_dim", ""},          {"dtype", "", 5, "dtype", ""},  {"mask", "", 10, "mask", ""},
      {"layout", "", 10, "layout", ""},
  };
  for (AttnDir d : {kAttnFwd, kAttnBwd}) {
    if ((d == kAttnFwd && !ap.forward) || (d == kAttnBwd && !ap.backward)) continue;
    const std::string p = d == kAttnFwd ? "fwd" : "bwd";
    if (ap.algo == attncclAlgoAuto) c.push_back({p + "_algo", "", 9, p + "_algo", ""});
    c.push_back({p + "_time", "(us)", 10, p + "_time_us", ""});
    c.push_back({p + "_TFLOP/s", "", 11, p + "_tflops", ""});
    c.push_back({p + "_sent", "(B)", 11, p + "_sent_bytes", ""});
    c.push_back({p + "_busbw", "(GB/s)", 9, p + "_busbw_gbps", ""});
    c.push_back({p + "_balance", "", 11, p + "_balance", ""});
    c.push_back({p + "_1rank", "(us)", 10, p + "_one_rank_us", ""});
    c.push_back({p + "_eff", "", 7, p + "_efficiency", p + " efficiency"});
  }
  c.push_back({"#wrong", "", 6, "wrong", ""});
  return c;
}

std::vector<Cell> attnRow(const AttnParams& ap, const Measured& m) {
  const attncclAttnDesc_t d = attnDesc(ap, m.opt->dtype, m.value);
  const double fwdFlops = 4.0 * attnVisiblePairs(d) * ap.headDim * ap.heads * static_cast<double>(ap.batch);
  std::vector<Cell> cells = {intCell(m.value),  intCell(ap.heads),           intCell(ap.kv()),
                             intCell(ap.headDim), textCell(dtypeName(m.opt->dtype)), textCell(maskName(ap)),
                             textCell(layoutName(ap.layout))};
  bool failed = false;
  int phase = 0;
  for (AttnDir dir : {kAttnFwd, kAttnBwd}) {
    if ((dir == kAttnFwd && !ap.forward) || (dir == kAttnBwd && !ap.backward)) continue;
    const Reduced* s = &m.stats[static_cast<size_t>(phase) * kNumAttnStats];
    const double t = m.seconds[static_cast<size_t>(phase)];
    ++phase;
    const bool err = s[kStatError].max > 0;
    failed = failed || err;
    if (ap.algo == attncclAlgoAuto) {
      cells.push_back(textCell(attncclAlgoName(static_cast<attncclAlgo_t>(s[kStatAlgo].max))));
    }
    if (err) {
      for (int i = 0; i < 7; ++i) cells.push_back(missingCell());
      continue;
    }
    const double flops = fwdFlops * (dir == kAttnBwd ? 2.5 : 1.0);
    const double sent = s[kStatBytesPerCall].sum / m.nranks;
    const double tileMean = s[kStatTileSeconds].sum / m.nranks;
    cells.push_back(numberCell(t * 1e6, 1));
    cells.push_back(numberCell(flops / t / 1e12, 5));
    cells.push_back(intCell(static_cast<int64_t>(sent + 0.5)));
    cells.push_back(numberCell(sent / t / 1e9, 3));
    cells.push_back(tileMean > 0 ? numberCell(s[kStatTileSeconds].max / tileMean, 3) : missingCell());
    const double t1 = s[kStatRefSeconds].max;
    cells.push_back(t1 > 0 ? numberCell(t1 * 1e6, 1) : missingCell());
    cells.push_back(t1 > 0 ? numberCell(t1 / t, 3) : missingCell());
  }
  if (failed) {
    cells.push_back(textCell("ERR"));
  } else {
    cells.push_back(m.wrong < 0 ? textCell("N/A") : intCell(m.wrong));
  }
  return cells;
}

}  // namespace

int runAttnTool(const char* name, attncclAlgo_t algo, int argc, char** argv) {
  AttnParams ap;
  ap.algo = algo;
  Tool tool;
  tool.name = name;
  tool.description = std::string("attncclAttnForward/Backward with algorithm ") + attncclAlgoName(algo) +
                     (algo == attncclAlgoAuto ? " (the library's choice, reported per row)" : "") +
                     ", checked against one rank";
  tool.sweepUnit = "tokens (global sequence length)";
  tool.flags = attnFlags(&ap);
  tool.progress = true;
  tool.defaults = [](Options* o) {
    o->minValue = 1 << 10;
    o->maxValue = 8 << 10;
    o->iters = 5;
    o->warmup = 1;
  };
  tool.validate = [&ap](const Options& o) -> std::string {
    if (o.dtype != attncclFloat32 && o.dtype != attncclBfloat16 && o.dtype != attncclFloat16) {
      return "-d: attention takes fp32, bf16 or fp16";
    }
    if (ap.heads % ap.kv() != 0) return "-K must divide -H";
    return "";
  };
  tool.columnsFor = [&ap](const Options&) { return attnColumns(ap); };
  tool.headerLines = [&ap](const Options& o, int nranks) {
    std::vector<std::string> l;
    l.push_back(std::string("attention: algorithm ") + attncclAlgoName(ap.algo) + ", " + std::to_string(ap.heads) +
                " q heads, " + std::to_string(ap.kv()) + " kv heads, dim " + std::to_string(ap.headDim) + ", " +
                maskName(ap) + ", " + layoutName(ap.layout) + ", " + std::to_string(nranks) + " ranks, batch " +
                std::to_string(ap.batch) + (ap.packed ? ", packed QKV views" : ""));
    l.push_back("TFLOP/s: 4*Sq*Sk*D*Hq over visible pairs (bwd 2.5x) / time, all ranks; sent: bytes per rank per call;");
    l.push_back("busbw: sent/time; balance: slowest/mean rank tile time; eff: t(1 rank, P x T threads)/t(P ranks)");
    if (o.check) l.push_back("check: against the one-rank result, fp32 1e-5 / fp16 5e-3 / bf16 2e-2 relative norm");
    return l;
  };
  tool.makeCase = [&ap](const RankInfo& ri, int64_t value) { return makeAttnCase(ap, ri, value); };
  tool.row = [&ap](const Measured& m) { return attnRow(ap, m); };
  int rc = runTool(tool, argc, argv);
  if (rc == 0 && attnErrorSeen()) rc = 3;
  return rc;
}

}  // namespace perf
