/*
 * copy_ceiling: what the copy paths of the shm transport can reach on this machine, to read the
 * building-block tables against (perf/RESULTS.md). For each size:
 *   memcpy x1    one thread copies alone (the harness's memcpy column)
 *   memcpy xP    P threads copy at once, each its own buffers (what P ranks of a ring do at once)
 *   CMA x1       one process reads another's buffer with process_vm_readv (the shm CMA path)
 *   CMA xP       P processes in a ring, each reading its left neighbour's buffer at once
 * Per-copier GB/s (1e9 B/s), the slowest copier for the xP columns.
 *
 *   copy_ceiling -p 2 -b 1M -e 64M -n 20
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_COPIERS 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t parseSize(const char* s) {
  char* end = NULL;
  size_t v = strtoull(s, &end, 10);
  if (*end == 'K' || *end == 'k') v <<= 10;
  if (*end == 'M' || *end == 'm') v <<= 20;
  if (*end == 'G' || *end == 'g') v <<= 30;
  return v;
}

/* Shared by the forked readers: their pids, a process-shared barrier and their results. */
typedef struct {
  pthread_barrier_t barrier;
  pid_t pids[MAX_COPIERS];
  double gbps[MAX_COPIERS];
} Shared;

typedef struct {
  size_t bytes;
  int iters;
  pthread_barrier_t* barrier;
  double gbps;
} CopyArg;

static void* copyLoop(void* p) {
  CopyArg* a = p;
  char* src = aligned_alloc(4096, a->bytes);
  char* dst = aligned_alloc(4096, a->bytes);
  memset(src, 1, a->bytes);
  memset(dst, 2, a->bytes);
  memcpy(dst, src, a->bytes);
  if (a->barrier) pthread_barrier_wait(a->barrier);
  double t0 = now();
  for (int i = 0; i < a->iters; ++i) {
    memcpy(dst, src, a->bytes);
    __asm__ __volatile__("" : : "r"(dst) : "memory");
  }
  a->gbps = (double)a->bytes * a->iters / (now() - t0) / 1e9;
  free(src);
  free(dst);
  return NULL;
}

static double memcpyCopiers(int p, size_t bytes, int iters) {
  pthread_t th[MAX_COPIERS];
  CopyArg args[MAX_COPIERS];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, (unsigned)p);
  for (int i = 0; i < p; ++i) {
    args[i] = (CopyArg){bytes, iters, p > 1 ? &barrier : NULL, 0};
    pthread_create(&th[i], NULL, copyLoop, &args[i]);
  }
  double slowest = 1e30;
  for (int i = 0; i < p; ++i) {
    pthread_join(th[i], NULL);
    if (args[i].gbps < slowest) slowest = args[i].gbps;
  }
  pthread_barrier_destroy(&barrier);
  return slowest;
}

/* P forked readers; reader i pulls reader i-1's buffer (same virtual address in every child,
 * since the buffer is allocated before fork and written after it). P == 1: the parent serves. */
static double cmaReaders(int p, size_t bytes, int iters, Shared* sh) {
  char* src = aligned_alloc(4096, bytes);
  char* dst = aligned_alloc(4096, bytes);
  pthread_barrierattr_t attr;
  pthread_barrierattr_init(&attr);
  pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_barrier_init(&sh->barrier, &attr, (unsigned)(p + 1));
  int readers = p;
  for (int i = 0; i < readers; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      memset(src, 10 + i, bytes);
      memset(dst, 0, bytes);
      sh->pids[i] = getpid();
      pthread_barrier_wait(&sh->barrier); /* all pids published */
      pid_t from = p == 1 ? getppid() : sh->pids[(i - 1 + p) % p];
      struct iovec local = {dst, bytes}, remote = {src, bytes};
      if (process_vm_readv(from, &local, 1, &remote, 1, 0) != (ssize_t)bytes) {
        perror("process_vm_readv");
        _exit(1);
      }
      pthread_barrier_wait(&sh->barrier); /* start together */
      double t0 = now();
      for (int it = 0; it < iters; ++it) process_vm_readv(from, &local, 1, &remote, 1, 0);
      sh->gbps[i] = (double)bytes * iters / (now() - t0) / 1e9;
      pthread_barrier_wait(&sh->barrier); /* the parent's buffer (p == 1) stays until here */
      _exit(0);
    }
  }
  memset(src, 9, bytes);
  pthread_barrier_wait(&sh->barrier);
  pthread_barrier_wait(&sh->barrier);
  pthread_barrier_wait(&sh->barrier);
  double slowest = 1e30;
  for (int i = 0; i < readers; ++i) {
    int status = 0;
    wait(&status);
    if (sh->gbps[i] < slowest) slowest = sh->gbps[i];
  }
  pthread_barrier_destroy(&sh->barrier);
  free(src);
  free(dst);
  return slowest;
}

int main(int argc, char** argv) {
  int p = 2, iters = 20, c;
  size_t minBytes = 1 << 20, maxBytes = 64 << 20;
  while ((c = getopt(argc, argv, "p:b:e:n:h")) != -1) {
    switch (c) {
      case 'p': p = atoi(optarg); break;
      case 'b': minBytes = parseSize(optarg); break;
      case 'e': maxBytes = parseSize(optarg); break;
      case 'n': iters = atoi(optarg); break;
      default: fprintf(stderr, "usage: copy_ceiling [-p copiers] [-b min] [-e max] [-n iters]\n"); return 2;
    }
  }
  if (p < 1 || p > MAX_COPIERS || iters < 1 || minBytes < 1 || maxBytes < minBytes) {
    fprintf(stderr, "copy_ceiling: bad arguments\n");
    return 2;
  }
  Shared* sh = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 3;
  printf("# copy_ceiling: per-copier GB/s, %d iterations, %d concurrent copiers, %ld cores\n", iters, p,
         sysconf(_SC_NPROCESSORS_ONLN));
  printf("# %12s %10s %10s %10s %10s\n", "size", "memcpy_x1", "memcpy_xP", "cma_x1", "cma_xP");
  for (size_t bytes = minBytes; bytes <= maxBytes; bytes *= 2) {
    double m1 = memcpyCopiers(1, bytes, iters);
    double mp = memcpyCopiers(p, bytes, iters);
    double c1 = cmaReaders(1, bytes, iters, sh);
    double cp = cmaReaders(p, bytes, iters, sh);
    printf("  %12zu %10.2f %10.2f %10.2f %10.2f\n", bytes, m1, mp, c1, cp);
    fflush(stdout);
  }
  return 0;
}
