// attnccl-plan: predicts every attention algorithm of the library on a cluster before anyone
// buys time on it. Each algorithm's own schedule (the one the executors run) goes through the
// cost model step by step (src/attn/tune/cost_model.h); the table gives forward and backward time,
// distributed efficiency, bytes sent per rank, exposed communication, idle fraction, compute
// balance, and which algorithm attncclAlgoAuto would pick. With --cached, the analytic
// inference model (tools/plan/inference.h) compares pass-KV and pass-Q for new tokens meeting a
// K/V cache.
//
//   attnccl-plan -p h100-nvlink-ndr -N 1 -R 8 -s 64K -H 32 -K 8 -D 128 -d bf16 -C 1 -l zigzag
//   attnccl-plan -p this-machine -R 2 -T 1 -b 2K -e 8K -H 8 -K 2 -D 64 -J plan.json
//   attnccl-plan -p h100-nvlink-ndr -N 16 -s 4K --cached 128K -H 128 -K 8     (inference)
//   attnccl-plan --cluster my.json -s 1M                                      (JSON cluster)
#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "plan/json_lite.h"
#include "plan/planner.h"

namespace ap = attnccl::plan;
namespace json = attnccl::plan::json;

namespace {

struct Args {
  std::string preset = "h100-nvlink-ndr", clusterFile, jsonPath, interLinkFile;
  std::vector<std::pair<std::string, std::string>> overrides;  // cluster JSON keys from flags
  int nodes = 0, ranksPerNode = 0, threads = 1;
  ap::ProblemSpec problem;
  int64_t first = 0, last = 0, factor = 2;
};

bool parseScaled(const char* s, int64_t* out) {
  char* end = nullptr;
  double v = strtod(s, &end);
  if (end == s || v < 0) return false;
  double scale = 1;
  if (*end == 'K' || *end == 'k') scale = 1024, ++end;
  else if (*end == 'M' || *end == 'm') scale = 1024.0 * 1024, ++end;
  else if (*end == 'G' || *end == 'g') scale = 1024.0 * 1024 * 1024, ++end;
  if (*end != '\0') return false;
  *out = static_cast<int64_t>(v * scale);
  return true;
}

void usage(FILE* f) {
  fprintf(f,
          "usage: attnccl-plan [flags]\n"
          "cluster:\n"
          "  -p, --preset NAME       %s [h100-nvlink-ndr]\n"
          "  --cluster FILE          JSON object of cluster keys (see tools/plan/cluster.h; \"preset\" to start from)\n"
          "  -N, --nodes N           nodes [preset]\n"
          "  -R, --ranks-per-node N  ranks per node [preset; this-machine: 2]\n"
          "  -T, --threads N         compute threads per rank (this-machine calibration) [1]\n"
          "  --inter-link FILE       the inter-node link a communicator measured: the library writes it to\n"
          "                          <ATTNCCL_TUNE_FILE>.internode (this-machine reads that one itself)\n"
          "  --intra-gbps X --intra-latency-us X --inter-gbps X --inter-latency-us X\n"
          "  --fwd-tflops X --bwd-tflops X --cores-per-node X --task-overhead-us X --mem-gbps X\n"
          "problem:\n"
          "  -s, --seqlen N          global sequence length, K/M suffixes [64K]\n"
          "  -b N -e N -f F          a sweep of sequence lengths instead of -s\n"
          "  -H N  -K N  -D N        query heads, K/V heads, head dim [32 8 128]\n"
          "  -d fp32|bf16|fp16       [bf16]\n"
          "  -C 0|1                  causal [1]\n"
          "  -l contiguous|zigzag|striped   [zigzag]\n"
          "  -W N                    left window, -1 = none [-1]\n"
          "  -G N                    hybrid group size, 0 = ranks per node [0]\n"
          "  --cached N              inference: tokens already in the K/V cache; -s is then the new tokens\n"
          "output:\n"
          "  -J FILE                 also write the plan as JSON\n",
          ap::presetNames());
}

std::string layoutName(attncclLayout_t l) {
  return l == attncclLayoutZigzag ? "zigzag" : l == attncclLayoutStriped ? "striped" : "contiguous";
}

const char* dtypeName(attncclDataType_t t) {
  return t == attncclBfloat16 ? "bf16" : t == attncclFloat16 ? "fp16" : "fp32";
}

// 0 = run, 1 = help, 2 = usage error.
int parseArgs(int argc, char** argv, Args* a, std::string* err) {
  static const option longOpts[] = {
      {"preset", required_argument, nullptr, 'p'},         {"cluster", required_argument, nullptr, 1000},
      {"nodes", required_argument, nullptr, 'N'},          {"ranks-per-node", required_argument, nullptr, 'R'},
      {"threads", required_argument, nullptr, 'T'},        {"seqlen", required_argument, nullptr, 's'},
      {"cached", required_argument, nullptr, 1001},        {"intra-gbps", required_argument, nullptr, 1002},
      {"intra-latency-us", required_argument, nullptr, 1003}, {"inter-gbps", required_argument, nullptr, 1004},
      {"inter-latency-us", required_argument, nullptr, 1005}, {"fwd-tflops", required_argument, nullptr, 1006},
      {"bwd-tflops", required_argument, nullptr, 1007},    {"cores-per-node", required_argument, nullptr, 1008},
      {"task-overhead-us", required_argument, nullptr, 1009}, {"mem-gbps", required_argument, nullptr, 1010},
      {"inter-link", required_argument, nullptr, 1011}, {"help", no_argument, nullptr, 'h'},                 {nullptr, 0, nullptr, 0}};
  static const char* overrideKeys[] = {"intra_gbps", "intra_latency_us", "inter_gbps", "inter_latency_us",
                                       "fwd_tflops", "bwd_tflops",       "cores_per_node", "task_overhead_us",
                                       "mem_gbps"};
  int c;
  int64_t v;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":p:N:R:T:s:b:e:f:H:K:D:d:C:l:W:G:J:h", longOpts, nullptr)) != -1) {
    const char* s = optarg;
    auto intArg = [&](int64_t lo, int64_t* out) {
      if (!parseScaled(s, out) || *out < lo) *err = std::string("bad value '") + s + "' for -" + static_cast<char>(c);
      return err->empty();
    };
    switch (c) {
      case 'h': return 1;
      case 'p': a->preset = s; break;
      case 1000: a->clusterFile = s; break;
      case 'N': if (intArg(1, &v)) a->nodes = static_cast<int>(v); break;
      case 'R': if (intArg(1, &v)) a->ranksPerNode = static_cast<int>(v); break;
      case 'T': if (intArg(1, &v)) a->threads = static_cast<int>(v); break;
      case 's': if (intArg(1, &v)) a->first = a->last = v; break;
      case 'b': if (intArg(1, &v)) a->first = v; break;
      case 'e': if (intArg(1, &v)) a->last = v; break;
      case 'f': if (intArg(2, &v)) a->factor = v; break;
      case 'H': if (intArg(1, &v)) a->problem.heads = static_cast<int>(v); break;
      case 'K': if (intArg(1, &v)) a->problem.kvHeads = static_cast<int>(v); break;
      case 'D': if (intArg(1, &v)) a->problem.headDim = static_cast<int>(v); break;
      case 'C': if (intArg(0, &v)) a->problem.causal = v != 0; break;
      case 'G': if (intArg(0, &v)) a->problem.hybridGroup = static_cast<int>(v); break;
      case 1001: if (intArg(0, &v)) a->problem.cachedTokens = v; break;
      case 'W': a->problem.window = atoll(s); break;
      case 'J': a->jsonPath = s; break;
      case 1011: a->interLinkFile = s; break;
      case 'd':
        if (!strcmp(s, "fp32")) a->problem.dtype = attncclFloat32;
        else if (!strcmp(s, "bf16")) a->problem.dtype = attncclBfloat16;
        else if (!strcmp(s, "fp16")) a->problem.dtype = attncclFloat16;
        else *err = std::string("-d '") + s + "': fp32, bf16 or fp16";
        break;
      case 'l':
        if (!strcmp(s, "contiguous")) a->problem.layout = attncclLayoutContiguous;
        else if (!strcmp(s, "zigzag")) a->problem.layout = attncclLayoutZigzag;
        else if (!strcmp(s, "striped")) a->problem.layout = attncclLayoutStriped;
        else *err = std::string("-l '") + s + "': contiguous, zigzag or striped";
        break;
      case ':': *err = std::string("missing argument for ") + argv[optind - 1]; break;
      case '?': *err = std::string("unknown flag ") + argv[optind - 1]; break;
      default:
        if (c >= 1002 && c <= 1010) a->overrides.push_back({overrideKeys[c - 1002], s});
    }
    if (!err->empty()) return 2;
  }
  if (optind < argc) {
    *err = std::string("unexpected argument '") + argv[optind] + "'";
    return 2;
  }
  if (a->first == 0) a->first = a->last = 65536;
  if (a->last < a->first) a->last = a->first;
  return 0;
}

bool buildCluster(const Args& a, ap::ClusterSpec* c, std::string* err) {
  int rpn = a.ranksPerNode > 0 ? a.ranksPerNode : a.preset == "this-machine" ? 2 : 8;
  if (!ap::presetCluster(a.preset, rpn * std::max(1, a.nodes), a.threads, c, err)) return false;
  if (!a.clusterFile.empty()) {
    std::ifstream f(a.clusterFile);
    if (!f) {
      *err = "cannot read " + a.clusterFile;
      return false;
    }
    std::stringstream text;
    text << f.rdbuf();
    if (!ap::applyClusterJson(text.str(), c, err)) {
      *err = a.clusterFile + ": " + *err;
      return false;
    }
  }
  if (!a.interLinkFile.empty() && !ap::applyInterNodeFile(a.interLinkFile, c, err)) return false;
  std::string obj = "{";
  for (const auto& kv : a.overrides) obj += (obj.size() > 1 ? ", \"" : "\"") + kv.first + "\": " + kv.second;
  if (a.nodes > 0) obj += std::string(obj.size() > 1 ? ", " : "") + "\"nodes\": " + std::to_string(a.nodes);
  if (a.ranksPerNode > 0) obj += std::string(obj.size() > 1 ? ", " : "") + "\"ranks_per_node\": " + std::to_string(a.ranksPerNode);
  obj += "}";
  const std::string source = c->source;
  if (obj.size() > 2 && !ap::applyClusterJson(obj, c, err)) return false;
  c->source = source + (a.overrides.empty() ? "" : "; flags override some figures");
  return true;
}

std::string autoMark(const ap::PlanResult& r, attncclAlgo_t a) {
  bool f = r.autoFwd == a, b = r.autoBwd == a;
  return f && b ? "fwd+bwd" : f ? "fwd" : b ? "bwd" : "-";
}

void printPlan(const ap::PlanResult& r, bool header) {
  if (header) {
    printf("#\n# %8s %-9s %9s %9s %7s %7s %7s %10s %10s %9s %9s %6s %6s %7s %6s %7s\n", "seqlen", "algorithm",
           "fwd_ms", "bwd_ms", "fwd_eff", "bwd_eff", "eff", "fwd_MB", "bwd_MB", "fwd_xp_ms", "bwd_xp_ms", "f_idle",
           "b_idle", "balance", "rounds", "auto");
  }
  for (const ap::AlgoPlan& a : r.algos) {
    if (!a.fwd.supported || !a.bwd.supported) {
      printf("  %8lld %-9s %9s\n", static_cast<long long>(r.problem.seqLen), attncclAlgoName(a.algo), "unsupported");
      continue;
    }
    printf("  %8lld %-9s %9.3f %9.3f %7.3f %7.3f %7.3f %10.2f %10.2f %9.3f %9.3f %6.3f %6.3f %7.3f %6d %7s\n",
           static_cast<long long>(r.problem.seqLen), attncclAlgoName(a.algo), a.fwd.seconds * 1e3, a.bwd.seconds * 1e3,
           a.fwdEfficiency, a.bwdEfficiency, a.efficiency, a.fwd.bytesPerRank / 1e6, a.bwd.bytesPerRank / 1e6,
           a.fwd.exposedCommSeconds * 1e3, a.bwd.exposedCommSeconds * 1e3, a.fwd.idleFraction, a.bwd.idleFraction,
           a.fwd.balance, a.fwd.rounds, autoMark(r, a.algo).c_str());
  }
  if (r.inference) {
    const ap::InferencePrediction& i = r.infer;
    printf("# inference: %lld new tokens, %lld cached (miss rate %.4f): pass-KV %.3f ms (%.2f MB/rank, exposed %.3f ms), "
           "pass-Q %.3f ms (%.2f MB/rank, exposed %.3f ms) -> %s\n",
           static_cast<long long>(r.problem.seqLen), static_cast<long long>(r.problem.cachedTokens), i.missRate,
           i.passKVSeconds * 1e3, i.passKVBytes / 1e6, i.passKVExposed * 1e3, i.passQSeconds * 1e3, i.passQBytes / 1e6,
           i.passQExposed * 1e3, i.pick.c_str());
    printf("# inference, attnccl's KV cache (attncclKvCacheAttend: queries replicated, %d round(s) of partials): "
           "%.3f ms, %.4f MB/rank\n",
           i.kvCacheRounds, i.kvCacheSeconds * 1e3, i.kvCacheBytes / 1e6);
  }
}

std::string predictionJson(const attnccl::attn::Prediction& p, double eff) {
  return json::object({{"seconds", json::num(p.seconds)},
                       {"compute_seconds", json::num(p.computeSeconds)},
                       {"exposed_comm_seconds", json::num(p.exposedCommSeconds)},
                       {"idle_fraction", json::num(p.idleFraction)},
                       {"bytes_per_rank", json::num(p.bytesPerRank)},
                       {"max_link_bytes", json::num(p.maxLinkBytes)},
                       {"balance", json::num(p.balance)},
                       {"rounds", json::num(p.rounds)},
                       {"efficiency", json::num(eff)}},
                      6);
}

std::string planJson(const ap::PlanResult& r) {
  std::vector<std::string> algos;
  for (const ap::AlgoPlan& a : r.algos) {
    algos.push_back(json::object({{"algorithm", json::str(attncclAlgoName(a.algo))},
                                  {"supported", json::boolean(a.fwd.supported && a.bwd.supported)},
                                  {"fwd", predictionJson(a.fwd, a.fwdEfficiency)},
                                  {"bwd", predictionJson(a.bwd, a.bwdEfficiency)},
                                  {"efficiency", json::num(a.efficiency)},
                                  {"auto", json::str(autoMark(r, a.algo))}},
                                 4));
  }
  json::Members m = {{"seqlen", json::num(static_cast<double>(r.problem.seqLen))},
                     {"ideal_fwd_seconds", json::num(r.idealFwd)},
                     {"ideal_bwd_seconds", json::num(r.idealBwd)},
                     {"fwd_flops", json::num(r.fwdFlops)},
                     {"auto_fwd", json::str(attncclAlgoName(r.autoFwd))},
                     {"auto_bwd", json::str(attncclAlgoName(r.autoBwd))},
                     {"algorithms", json::array(algos, 4)}};
  if (r.inference) {
    const ap::InferencePrediction& i = r.infer;
    m.push_back({"inference", json::object({{"cached_tokens", json::num(static_cast<double>(r.problem.cachedTokens))},
                                            {"miss_rate", json::num(i.missRate)},
                                            {"pass_kv_seconds", json::num(i.passKVSeconds)},
                                            {"pass_q_seconds", json::num(i.passQSeconds)},
                                            {"pass_kv_bytes_per_rank", json::num(i.passKVBytes)},
                                            {"pass_q_bytes_per_rank", json::num(i.passQBytes)},
                                            {"pick", json::str(i.pick)},
                                            {"kv_cache_seconds", json::num(i.kvCacheSeconds)},
                                            {"kv_cache_bytes_per_rank", json::num(i.kvCacheBytes)},
                                            {"kv_cache_rounds", json::num(i.kvCacheRounds)}},
                                           4)});
  }
  return json::object(m, 2);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::string err;
  int st = parseArgs(argc, argv, &a, &err);
  if (st == 1) {
    usage(stdout);
    return 0;
  }
  if (st == 2) {
    fprintf(stderr, "attnccl-plan: %s\n", err.c_str());
    usage(stderr);
    return 2;
  }
  ap::ClusterSpec cluster;
  if (!buildCluster(a, &cluster, &err)) {
    fprintf(stderr, "attnccl-plan: %s\n", err.c_str());
    return 2;
  }
  const ap::ProblemSpec& p = a.problem;
  printf("# attnccl-plan: cluster %s: %d node(s) x %d ranks; intra %.1f GB/s %.1f us%s; inter %.4g GB/s %.1f us%s; "
         "tiles %.4g / %.4g TFLOP/s fwd/bwd per rank",
         cluster.name.c_str(), cluster.nodes, cluster.ranksPerNode, cluster.intraGBps, cluster.intraLatencyUs,
         cluster.intraCopiedByReceiver ? " (copied by the receiver)" : "", cluster.interGBps, cluster.interLatencyUs,
         cluster.interSharedByNode ? " (one per node, shared by its ranks)" : "",
         cluster.fwdTflops, cluster.bwdTflops);
  if (cluster.coresPerNode > 0) printf(", %g cores per node, %d thread(s) per rank", cluster.coresPerNode, cluster.threadsPerRank);
  if (cluster.fwdMaskRowPairs > 0 || cluster.bwdMaskRowPairs > 0) {
    printf(", masked work %.0f / %.0f pairs per partial row", cluster.fwdMaskRowPairs, cluster.bwdMaskRowPairs);
  }
  printf("\n# figures: %s\n", cluster.source.c_str());
  printf("# problem: %d q heads, %d kv heads, dim %d, %s, %s%s, %s\n", p.heads, p.kvHeads, p.headDim, dtypeName(p.dtype),
         p.causal ? "causal" : "full", p.window >= 0 ? (", window " + std::to_string(p.window)).c_str() : "",
         layoutName(p.layout).c_str());
  printf("# eff = ideal / predicted, ideal = the whole sequence's FLOPs over the cluster's compute; MB sent per rank;\n"
         "# xp = exposed communication (time beyond the slowest rank's compute); idle = 1 - compute / (P x time)\n");
  std::vector<std::string> rows;
  bool first = true;
  for (int64_t s = a.first; s <= a.last; s *= a.factor) {
    ap::ProblemSpec ps = p;
    ps.seqLen = s;
    ap::PlanResult r;
    if (!ap::planProblem(ps, cluster, &r, &err)) {
      fprintf(stderr, "attnccl-plan: %s\n", err.c_str());
      return 2;
    }
    if (first) printf("# hybrid group %d; ideal at seqlen %lld: fwd %.3f ms, bwd %.3f ms\n", r.hybridGroup,
                      static_cast<long long>(s), r.idealFwd * 1e3, r.idealBwd * 1e3);
    printPlan(r, first);
    first = false;
    rows.push_back(planJson(r));
    if (a.factor < 2 || s > a.last / a.factor) break;
  }
  if (p.cachedTokens > 0) {
    ap::InferenceSpec is;
    is.cachedTokens = p.cachedTokens;
    is.heads = p.heads;
    is.kvHeads = p.kvHeads;
    is.headDim = p.headDim;
    is.dtype = p.dtype;
    printf("# inference crossover (pass-Q faster below): miss rate %.4f; Meta's rule 2 Hkv/Hq = %.4f\n",
           ap::inferenceCrossover(is, cluster), ap::metaThreshold(is));
  }
  if (!a.jsonPath.empty()) {
    std::string cmd;
    for (int i = 0; i < argc; ++i) cmd += (i ? " " : "") + std::string(argv[i]);
    char date[64];
    time_t now = time(nullptr);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    json::Members doc = {{"tool", json::str("attnccl-plan")},
                         {"command", json::str(cmd)},
                         {"date", json::str(date)},
                         {"cluster", ap::clusterJson(cluster)},
                         {"problem", json::object({{"heads", json::num(p.heads)},
                                                   {"kv_heads", json::num(p.kvHeads)},
                                                   {"head_dim", json::num(p.headDim)},
                                                   {"dtype", json::str(dtypeName(p.dtype))},
                                                   {"causal", json::boolean(p.causal)},
                                                   {"window", json::num(static_cast<double>(p.window))},
                                                   {"layout", json::str(layoutName(p.layout))},
                                                   {"cached_tokens", json::num(static_cast<double>(p.cachedTokens))}},
                                                  2)},
                         {"rows", json::array(rows, 2)}};
    std::ofstream f(a.jsonPath);
    f << json::object(doc) << "\n";
    if (!f) {
      fprintf(stderr, "attnccl-plan: cannot write %s\n", a.jsonPath.c_str());
      return 3;
    }
  }
  return 0;
}
