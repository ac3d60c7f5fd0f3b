/*
 * A tiny C99 program built against an installed attnccl (find_package or pkg-config): a 1-rank
 * communicator, one causal GQA attention forward, checked against a naive double-precision
 * computation. Exit 0 on success; any failure prints what went wrong and exits 1.
 */
#include <attnccl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define S 7  /* tokens */
#define HQ 2 /* query heads */
#define HKV 1
#define D 4

#define CHECK(call)                                                                                 \
  do {                                                                                              \
    attncclResult_t r_ = (call);                                                                    \
    if (r_ != attncclSuccess) {                                                                     \
      fprintf(stderr, "consumer: %s -> %s: %s\n", #call, attncclGetErrorString(r_),                 \
              attncclGetLastError(NULL));                                                           \
      return 1;                                                                                     \
    }                                                                                               \
  } while (0)

static float q[S][HQ][D], k[S][HKV][D], v[S][HKV][D], out[S][HQ][D];
static float lse[HQ][S];

int main(void) {
  int version = 0, nranks = 0, h, i, j, c;
  int64_t tokens = 0;
  double maxErr = 0.0;
  attncclUniqueId id;
  attncclComm_t comm;
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;

  CHECK(attncclGetVersion(&version));
  if (version != ATTNCCL_VERSION_CODE) {
    fprintf(stderr, "consumer: library version %d, header %d\n", version, ATTNCCL_VERSION_CODE);
    return 1;
  }
#ifdef EXPECTED_VERSION_CODE
  if (version != EXPECTED_VERSION_CODE) {
    fprintf(stderr, "consumer: library version %d, package version %d\n", version, EXPECTED_VERSION_CODE);
    return 1;
  }
#endif
  for (i = 0; i < S; ++i)
    for (c = 0; c < D; ++c) {
      for (h = 0; h < HQ; ++h) q[i][h][c] = (float)sin(1.0 + i * 0.7 + h * 1.3 + c * 0.11);
      k[i][0][c] = (float)cos(0.5 + i * 0.3 + c * 0.9);
      v[i][0][c] = (float)sin(2.0 + i * 1.1 - c * 0.4);
    }

  CHECK(attncclGetUniqueId(&id));
  CHECK(attncclCommInitRank(&comm, 1, id, 0, NULL));
  CHECK(attncclCommCount(comm, &nranks));
  d.dtype = attncclFloat32;
  d.seqLen = S;
  d.numHeadsQ = HQ;
  d.numHeadsKV = HKV;
  d.headDim = D;
  d.causal = 1;
  CHECK(attncclAttnLocalTokens(&d, nranks, 0, &tokens, NULL));
  if (tokens != S) {
    fprintf(stderr, "consumer: 1 rank holds %lld tokens, expected %d\n", (long long)tokens, S);
    return 1;
  }
  CHECK(attncclAttnForward(q, k, v, out, &lse[0][0], &d, attncclAlgoAuto, comm, NULL));
  CHECK(attncclCommDestroy(comm));

  /* Naive causal attention in double: softmax(q.k / sqrt(D)) v over keys j <= i. */
  for (h = 0; h < HQ; ++h)
    for (i = 0; i < S; ++i) {
      double s[S], m = -1e300, sum = 0.0, o[D] = {0};
      for (j = 0; j <= i; ++j) {
        s[j] = 0.0;
        for (c = 0; c < D; ++c) s[j] += (double)q[i][h][c] * k[j][0][c];
        s[j] /= sqrt((double)D);
        if (s[j] > m) m = s[j];
      }
      for (j = 0; j <= i; ++j) {
        double p = exp(s[j] - m);
        sum += p;
        for (c = 0; c < D; ++c) o[c] += p * v[j][0][c];
      }
      for (c = 0; c < D; ++c) maxErr = fmax(maxErr, fabs(o[c] / sum - out[i][h][c]));
      maxErr = fmax(maxErr, fabs(m + log(sum) - lse[h][i]));
    }
  if (!(maxErr <= 1e-5)) {
    fprintf(stderr, "consumer: max error %g against the naive attention\n", maxErr);
    return 1;
  }
  printf("consumer: attnccl %d, 1 rank, causal GQA forward OK (max error %.2g)\n", version, maxErr);
  return 0;
}
