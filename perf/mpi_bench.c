/*
 * mpi_bench: Open MPI's own collectives over the same size sweep and with the same table columns
 * as attnccl's building-block perf tools, so the two can be compared on the same ranks.
 *
 *   mpirun -np 4 mpi_bench -o allgather -b 1M -e 64M -f 2 -n 20 -w 2
 *
 * -o sendrecv        MPI_Sendrecv ring: send to r+1, receive from r-1     busbw = algbw
 * -o oneway          MPI_Send from even r to r+1, MPI_Recv there          busbw = algbw
 * -o allgather       MPI_Allgather, size = the gathered output            busbw = algbw (P-1)/P
 * -o reduce_scatter  MPI_Reduce_scatter_block (sum), size = the input     busbw = algbw (P-1)/P
 * -o alltoall        MPI_Alltoall, size = one rank's buffer               busbw = algbw (P-1)/P
 * -o allreduce       MPI_Allreduce (sum), size = one rank's buffer        busbw = algbw 2(P-1)/P
 * -o bcast           MPI_Bcast from rank 0, size = the buffer             busbw = algbw
 * Sizes are rounded down as in the attnccl tools. Data is fp32 that encodes its origin; -c 1
 * (default) checks every element of one run per size. Time = loop time / n, max over ranks.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OP_SENDRECV, OP_ALLGATHER, OP_REDUCE_SCATTER, OP_ALLTOALL, OP_ONEWAY, OP_ALLREDUCE, OP_BCAST, OP_COUNT };
static const char* kOpNames[] = {"sendrecv", "allgather", "reduce_scatter", "alltoall", "oneway", "allreduce", "bcast"};

typedef struct {
  int op;
  long long minBytes, maxBytes, factor;
  int iters, warmup, check;
} Options;

static int parseScaled(const char* s, long long* out) {
  char* end = NULL;
  long long v = strtoll(s, &end, 10);
  if (end == s || v < 0) return 0;
  if (*end == 'K' || *end == 'k') v <<= 10, ++end;
  else if (*end == 'M' || *end == 'm') v <<= 20, ++end;
  else if (*end == 'G' || *end == 'g') v <<= 30, ++end;
  if (*end != '\0') return 0;
  *out = v;
  return 1;
}

static void usage(FILE* f) {
  fprintf(f,
          "usage: mpirun -np P mpi_bench -o sendrecv|allgather|reduce_scatter|alltoall|oneway|allreduce|bcast\n"
          "       [-b minBytes] [-e maxBytes] [-f factor] [-n iters] [-w warmup] [-c 0|1]\n");
}

static int parse(int argc, char** argv, Options* o) {
  int c;
  o->op = -1;
  o->minBytes = 1 << 20;
  o->maxBytes = 64 << 20;
  o->factor = 2;
  o->iters = 20;
  o->warmup = 2;
  o->check = 1;
  opterr = 0;
  while ((c = getopt(argc, argv, "o:b:e:f:n:w:c:h")) != -1) {
    switch (c) {
      case 'o':
        for (int i = 0; i < OP_COUNT; ++i)
          if (strcmp(optarg, kOpNames[i]) == 0) o->op = i;
        if (o->op < 0) return 0;
        break;
      case 'b': if (!parseScaled(optarg, &o->minBytes) || o->minBytes < 1) return 0; break;
      case 'e': if (!parseScaled(optarg, &o->maxBytes) || o->maxBytes < 1) return 0; break;
      case 'f': if (!parseScaled(optarg, &o->factor) || o->factor < 2) return 0; break;
      case 'n': o->iters = atoi(optarg); if (o->iters < 1) return 0; break;
      case 'w': o->warmup = atoi(optarg); if (o->warmup < 0) return 0; break;
      case 'c': o->check = atoi(optarg); break;
      default: return 0;
    }
  }
  return o->op >= 0 && o->maxBytes >= o->minBytes;
}

/* Element i of rank r's send buffer; small integers keep fp32 sums over ranks exact. */
static float code(int rank, size_t i, int nranks) {
  uint64_t m = (1u << 20) / (uint64_t)nranks;
  return (float)(((uint64_t)(rank + 1) * 1009u + i * 13u) % m);
}

static void runOnce(const Options* o, const float* send, float* recv, size_t block, int rank, int n) {
  switch (o->op) {
    case OP_SENDRECV:
      MPI_Sendrecv(send, (int)block, MPI_FLOAT, (rank + 1) % n, 0, recv, (int)block, MPI_FLOAT, (rank - 1 + n) % n, 0,
                   MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      break;
    case OP_ALLGATHER:
      MPI_Allgather(send, (int)block, MPI_FLOAT, recv, (int)block, MPI_FLOAT, MPI_COMM_WORLD);
      break;
    case OP_REDUCE_SCATTER:
      MPI_Reduce_scatter_block(send, recv, (int)block, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      break;
    case OP_ALLTOALL:
      MPI_Alltoall(send, (int)block, MPI_FLOAT, recv, (int)block, MPI_FLOAT, MPI_COMM_WORLD);
      break;
    case OP_ALLREDUCE:
      MPI_Allreduce(send, recv, (int)block, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      break;
    case OP_BCAST:
      /* The root broadcasts its send buffer, the others receive into recv (the root's recv
       * keeps its poison: MPI_Bcast has one buffer). */
      MPI_Bcast(rank == 0 ? (void*)send : (void*)recv, (int)block, MPI_FLOAT, 0, MPI_COMM_WORLD);
      break;
    case OP_ONEWAY:
      if ((rank ^ 1) >= n) break;  /* the last of an odd count idles */
      if (rank % 2 == 0) MPI_Send(send, (int)block, MPI_FLOAT, rank + 1, 0, MPI_COMM_WORLD);
      else MPI_Recv(recv, (int)block, MPI_FLOAT, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      break;
  }
}

static float expected(const Options* o, int rank, int n, size_t block, size_t i) {
  switch (o->op) {
    case OP_SENDRECV: return code((rank - 1 + n) % n, i, n);
    case OP_ONEWAY: return rank % 2 == 1 ? code(rank - 1, i, n) : -1.0f; /* senders keep the poison */
    case OP_ALLGATHER: return code((int)(i / block), i % block, n);
    case OP_ALLREDUCE: {
      float s = 0;
      for (int p = 0; p < n; ++p) s += code(p, i, n);
      return s;
    }
    case OP_BCAST: return rank == 0 ? -1.0f : code(0, i, n);
    case OP_REDUCE_SCATTER: {
      float s = 0;
      for (int p = 0; p < n; ++p) s += code(p, rank * block + i, n);
      return s;
    }
    default: return code((int)(i / block), rank * block + i % block, n);
  }
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  Options o;
  if (!parse(argc, argv, &o)) {
    if (rank == 0) usage(stderr);
    MPI_Finalize();
    return 2;
  }
  const int pointToPoint = o.op == OP_SENDRECV || o.op == OP_ONEWAY;
  const int wholeBuffer = o.op == OP_ALLREDUCE || o.op == OP_BCAST; /* size = one buffer, not P blocks */
  const int perRank = !pointToPoint && !wholeBuffer;
  const size_t sendBlocks = (pointToPoint || wholeBuffer || o.op == OP_ALLGATHER) ? 1 : (size_t)n;
  const size_t recvBlocks = (pointToPoint || wholeBuffer || o.op == OP_REDUCE_SCATTER) ? 1 : (size_t)n;
  const double busFactor = o.op == OP_ALLREDUCE ? 2.0 * (n - 1) / n : perRank ? (double)(n - 1) / n : 1.0;
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int vlen = 0;
  MPI_Get_library_version(version, &vlen);
  char* nl = strchr(version, '\n');
  if (nl) *nl = '\0';
  if (rank == 0) {
    printf("# mpi_bench %s: %s\n# ranks: %d MPI processes, dtype fp32, iters %d, warm-up %d, check %s\n", kOpNames[o.op],
           version, n, o.iters, o.warmup, o.check ? "on" : "off");
    printf("# algbw = size / time; busbw = algbw * %.4g\n#\n", busFactor);
    printf("# %12s %12s %6s %10s %8s %8s %7s\n", "size", "count", "type", "time", "algbw", "busbw", "#wrong");
    printf("# %12s %12s %6s %10s %8s %8s %7s\n", "(B)", "(elements)", "", "(us)", "(GB/s)", "(GB/s)", "");
  }
  long long wrongTotal = 0;
  double busSum = 0;
  int rows = 0;
  for (long long bytes = o.minBytes; bytes <= o.maxBytes; bytes *= o.factor) {
    size_t block = (size_t)bytes / sizeof(float) / (perRank ? (size_t)n : 1);
    if (block == 0) block = 1;
    float* send = malloc(block * sendBlocks * sizeof(float));
    float* recv = malloc(block * recvBlocks * sizeof(float));
    if (!send || !recv) {
      fprintf(stderr, "mpi_bench: out of memory\n");
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    for (size_t i = 0; i < block * sendBlocks; ++i) send[i] = code(rank, i, n);
    for (size_t i = 0; i < block * recvBlocks; ++i) recv[i] = -1.0f;
    long long wrong = 0;
    if (o.check) {
      runOnce(&o, send, recv, block, rank, n);
      for (size_t i = 0; i < block * recvBlocks; ++i) wrong += recv[i] != expected(&o, rank, n, block, i);
    }
    for (int w = 0; w < o.warmup; ++w) runOnce(&o, send, recv, block, rank, n);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int it = 0; it < o.iters; ++it) runOnce(&o, send, recv, block, rank, n);
    double sec = (MPI_Wtime() - t0) / o.iters, maxSec = 0;
    long long wrongAll = 0;
    MPI_Reduce(&sec, &maxSec, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Allreduce(&wrong, &wrongAll, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    wrongTotal += wrongAll;
    if (rank == 0) {
      size_t count = block * (perRank ? (size_t)n : 1);
      double size = (double)(count * sizeof(float));
      double algbw = size / maxSec / 1e9, busbw = algbw * busFactor;
      busSum += busbw;
      ++rows;
      if (o.check) {
        printf("  %12.0f %12zu %6s %10.2f %8.3f %8.3f %7lld\n", size, count, "fp32", maxSec * 1e6, algbw, busbw, wrongAll);
      } else {
        printf("  %12.0f %12zu %6s %10.2f %8.3f %8.3f %7s\n", size, count, "fp32", maxSec * 1e6, algbw, busbw, "N/A");
      }
      fflush(stdout);
    }
    free(send);
    free(recv);
    if (bytes > o.maxBytes / o.factor) break;
  }
  if (rank == 0) {
    if (o.check) printf("# Wrong values       : %lld %s\n", wrongTotal, wrongTotal ? "FAILED" : "OK");
    printf("# Avg bus bandwidth  : %.3f\n", rows ? busSum / rows : 0.0);
  }
  MPI_Finalize();
  return o.check && wrongTotal ? 1 : 0;
}
