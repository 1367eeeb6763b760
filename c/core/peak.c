/*
 * peak.c -- the FMA throughput and read bandwidth of peak.h.
 *
 * FMA: each thread updates NACC independent accumulators, acc = acc * a + b
 * (a = 1 - 1e-6, b = 1e-6: every value stays near 1, never a denormal or an
 * overflow), so that the loop is bound by the FMA units' throughput and not
 * by one FMA's latency: with a latency of L cycles and P pipes, L * P
 * accumulators keep every pipe busy (4 x 2 on recent AMD and Intel cores;
 * 16 zmm or 12 ymm registers of accumulators leave room for a and b).  The
 * accumulators are summed and stored at the end, so nothing can be left out.
 * The plain C copy (a build or CPU without the target attribute, or
 * BPTT_ISA=generic) is a multiply and an add, which -ffp-contract=off keeps
 * apart: 2 FLOPs as well, at whatever speed the compiler makes of it.
 *
 * Bandwidth: each thread first writes its share of the buffer (its pages
 * then sit near it), then sums its share with vector loads into 8 independent
 * sums, `iters` passes per timed region.
 *
 * Timing (both): the region runs again and again with more iterations until
 * one run takes about seconds / REPS, for about `seconds` in all; the fastest
 * run is the figure.  Thread 0 reads the clock between two barriers,
 * so a run lasts until its slowest thread is done.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <time.h>

#include "core.h"
#include "isa.h"
#include "parallel.h"
#include "peak.h"

#define REPS 5       /* runs timed; the best counts */
#define MIN_RUN 1e-3 /* seconds: a shorter run is not counted */
#define NACC 16      /* AVX-512 and plain C accumulators */
#define NACC_AVX2 12 /* 16 ymm registers: 12 accumulators, a, b */
#define FMA_A 0.999999f
#define FMA_B 1e-6f

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float peak_sink; /* where the results go, so that they are used */

/* ------------------------------------------------------------ the loops */

/* Each returns the sum of its accumulators after iters rounds of NACC
 * (NACC_AVX2) multiply-adds of the vector width. */
static float fma_generic(int64_t iters) {
  float acc[NACC], s = 0;
  int64_t i;
  int k;
  for (k = 0; k < NACC; k++) acc[k] = 1e-3f * (float)k;
  for (i = 0; i < iters; i++)
    for (k = 0; k < NACC; k++) acc[k] = acc[k] * FMA_A + FMA_B;
  for (k = 0; k < NACC; k++) s += acc[k];
  return s;
}

/* Sum of p[0..n-1], 8 sums apart. */
static float read_generic(const float *p, int64_t n) {
  float s[8] = { 0 }, t = 0;
  int64_t i = 0;
  int k;
  for (; i + 8 <= n; i += 8)
    for (k = 0; k < 8; k++) s[k] += p[i + k];
  for (; i < n; i++) t += p[i];
  for (k = 0; k < 8; k++) t += s[k];
  return t;
}

#ifdef BPTT_HAVE_CLONES
#include <immintrin.h>

__attribute__((target("avx512f"))) static float fma_avx512(int64_t iters) {
  __m512 acc[NACC], a = _mm512_set1_ps(FMA_A), b = _mm512_set1_ps(FMA_B);
  float out[16], s = 0;
  int64_t i;
  int k;
  for (k = 0; k < NACC; k++) acc[k] = _mm512_set1_ps(1e-3f * (float)k);
  for (i = 0; i < iters; i++)
    for (k = 0; k < NACC; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  for (k = 1; k < NACC; k++) acc[0] = _mm512_add_ps(acc[0], acc[k]);
  _mm512_storeu_ps(out, acc[0]);
  for (k = 0; k < 16; k++) s += out[k];
  return s;
}

__attribute__((target("avx2,fma"))) static float fma_avx2(int64_t iters) {
  __m256 acc[NACC_AVX2], a = _mm256_set1_ps(FMA_A), b = _mm256_set1_ps(FMA_B);
  float out[8], s = 0;
  int64_t i;
  int k;
  for (k = 0; k < NACC_AVX2; k++) acc[k] = _mm256_set1_ps(1e-3f * (float)k);
  for (i = 0; i < iters; i++)
    for (k = 0; k < NACC_AVX2; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  for (k = 1; k < NACC_AVX2; k++) acc[0] = _mm256_add_ps(acc[0], acc[k]);
  _mm256_storeu_ps(out, acc[0]);
  for (k = 0; k < 8; k++) s += out[k];
  return s;
}

__attribute__((target("avx512f"))) static float read_avx512(const float *p, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
  float out[16], t = 0;
  int64_t i = 0;
  int k;
  for (; i + 128 <= n; i += 128) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
    s4 = _mm512_add_ps(s4, _mm512_loadu_ps(p + i + 64));
    s5 = _mm512_add_ps(s5, _mm512_loadu_ps(p + i + 80));
    s6 = _mm512_add_ps(s6, _mm512_loadu_ps(p + i + 96));
    s7 = _mm512_add_ps(s7, _mm512_loadu_ps(p + i + 112));
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
  for (; i < n; i++) t += p[i];
  s0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                     _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7)));
  _mm512_storeu_ps(out, s0);
  for (k = 0; k < 16; k++) t += out[k];
  return t;
}

__attribute__((target("avx2"))) static float read_avx2(const float *p, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
  float out[8], t = 0;
  int64_t i = 0;
  int k;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
    s4 = _mm256_add_ps(s4, _mm256_loadu_ps(p + i + 32));
    s5 = _mm256_add_ps(s5, _mm256_loadu_ps(p + i + 40));
    s6 = _mm256_add_ps(s6, _mm256_loadu_ps(p + i + 48));
    s7 = _mm256_add_ps(s7, _mm256_loadu_ps(p + i + 56));
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
  for (; i < n; i++) t += p[i];
  s0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                     _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
  _mm256_storeu_ps(out, s0);
  for (k = 0; k < 8; k++) t += out[k];
  return t;
}

/* The level the loops run: isa.h's, but AVX2 without FMA (no such CPU is
 * known, but the AVX2 level does not promise it) runs the plain copy. */
static int loop_level(void) {
  int l = bptt_isa_now();
  if (l == BPTT_ISA_AVX2) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma")) l = BPTT_ISA_GENERIC;
  }
  return l;
}

static float fma_run(int isa, int64_t iters) {
  return isa == BPTT_ISA_AVX512 ? fma_avx512(iters) : isa == BPTT_ISA_AVX2 ? fma_avx2(iters) : fma_generic(iters);
}
static float read_run(int isa, const float *p, int64_t n) {
  return isa == BPTT_ISA_AVX512 ? read_avx512(p, n) : isa == BPTT_ISA_AVX2 ? read_avx2(p, n) : read_generic(p, n);
}
/* FLOPs of one round of one thread: accumulators x lanes x 2 */
static double fma_flops(int isa) {
  return isa == BPTT_ISA_AVX512 ? NACC * 16 * 2.0 : isa == BPTT_ISA_AVX2 ? NACC_AVX2 * 8 * 2.0 : NACC * 2.0;
}
#else
static int loop_level(void) { return BPTT_ISA_GENERIC; }
static float fma_run(int isa, int64_t iters) {
  (void)isa;
  return fma_generic(iters);
}
static float read_run(int isa, const float *p, int64_t n) {
  (void)isa;
  return read_generic(p, n);
}
static double fma_flops(int isa) {
  (void)isa;
  return NACC * 2.0;
}
#endif

/* ------------------------------------------------------------ timing */

/* The first member of each job: what the region runs, and when it ran. */
typedef struct {
  int64_t iters;
  double t0, t1;
} timing;

/* Runs fn (which times itself into *tm, the first member of job) on up to n
 * threads, again and again: iters grows from 1 until a run takes about
 * seconds / REPS, and it goes on until the timed runs add up to `seconds`
 * and REPS of them took MIN_RUN or more.  Returns the best rate of those:
 * work_per_iter units per second per iteration, times the threads the run
 * had when per_thread.  A run that another process interrupted, or that
 * waited for a sleeping thread, is only slower: the best is the figure. */
static double best_rate(bptt_task fn, void *job, int n, double seconds, double work_per_iter, int per_thread) {
  timing *tm = job;
  double t, best = 0, spent = 0, target = seconds / REPS;
  int good = 0, used;
  tm->iters = 1;
  while (good < REPS || spent < seconds) {
    used = bptt_parallel_run(fn, job, n);
    t = tm->t1 - tm->t0;
    spent += t;
    if (t >= MIN_RUN) {
      double rate = work_per_iter * (double)tm->iters * (per_thread ? used : 1) / t;
      if (rate > best) best = rate;
      good++;
    }
    /* too short: more iterations (t only overstates the time, so this never
     * overshoots the target by much) */
    if (t < 0.5 * target && tm->iters < (INT64_C(1) << 40)) {
      double f = t > 0 ? target / t : 16;
      tm->iters = (int64_t)((double)tm->iters * (f < 16 ? f : 16)) + 1;
    }
  }
  return best;
}

/* ------------------------------------------------------------ FMA */

typedef struct {
  timing tm;
  int isa;
  float sink[BPTT_MAX_THREADS];
} fma_job;

static void fma_task(void *ctx, int tid, int n) {
  fma_job *j = ctx;
  bptt_parallel_barrier(n);
  if (tid == 0) j->tm.t0 = now_s();
  j->sink[tid] = fma_run(j->isa, j->tm.iters);
  bptt_parallel_barrier(n);
  if (tid == 0) j->tm.t1 = now_s();
}

double bptt_fma_peak(int nthreads, double seconds) {
  fma_job j = { { 0, 0, 0 }, 0, { 0 } };
  int old = bptt_parallel_threads(), k;
  double rate;
  float s = 0;
  if (nthreads < 1 || nthreads > BPTT_MAX_THREADS || !(seconds > 0 && seconds <= 3600)) return -1;
  j.isa = loop_level();
  bptt_parallel_set_threads(nthreads);
  rate = best_rate(fma_task, &j, nthreads, seconds, fma_flops(j.isa), 1);
  bptt_parallel_set_threads(old);
  for (k = 0; k < nthreads; k++) s += j.sink[k];
  peak_sink = s;
  return rate / 1e9;
}

/* ------------------------------------------------------------ bandwidth */

typedef struct {
  timing tm;
  int isa;
  float *buf;
  int64_t n; /* floats */
  float sink[BPTT_MAX_THREADS];
} read_job;

/* [lo, hi) of thread tid: whole cache lines */
static void share(const read_job *j, int tid, int n, int64_t *lo, int64_t *hi) {
  long long a, b;
  bptt_parallel_range(j->n, 16, tid, n, &a, &b);
  *lo = a, *hi = b;
}

static void fill_task(void *ctx, int tid, int n) {
  read_job *j = ctx;
  int64_t lo, hi, i;
  share(j, tid, n, &lo, &hi);
  for (i = lo; i < hi; i++) j->buf[i] = 1.0f;
}

static void read_task(void *ctx, int tid, int n) {
  read_job *j = ctx;
  int64_t lo, hi, it;
  float s = 0;
  share(j, tid, n, &lo, &hi);
  bptt_parallel_barrier(n);
  if (tid == 0) j->tm.t0 = now_s();
  for (it = 0; it < j->tm.iters; it++) s += read_run(j->isa, j->buf + lo, hi - lo);
  j->sink[tid] = s;
  bptt_parallel_barrier(n);
  if (tid == 0) j->tm.t1 = now_s();
}

double bptt_read_bandwidth(size_t bytes, int nthreads, double seconds) {
  read_job j = { { 0, 0, 0 }, 0, NULL, 0, { 0 } };
  int old = bptt_parallel_threads(), k;
  double rate;
  float s = 0;
  if (bytes < 64 || bytes / sizeof(float) > (size_t)INT64_MAX || nthreads < 1 || nthreads > BPTT_MAX_THREADS ||
      !(seconds > 0 && seconds <= 3600))
    return -1;
  j.n = (int64_t)(bytes / sizeof(float));
  j.buf = bptt_malloc((size_t)j.n * sizeof(float));
  if (!j.buf) return -1;
  j.isa = loop_level();
  bptt_parallel_set_threads(nthreads);
  bptt_parallel_run(fill_task, &j, nthreads);
  rate = best_rate(read_task, &j, nthreads, seconds, (double)j.n * sizeof(float), 0);
  bptt_parallel_set_threads(old);
  bptt_free(j.buf);
  for (k = 0; k < nthreads; k++) s += j.sink[k];
  peak_sink = s;
  return rate / 1e9;
}
