/*
 * rnn.c -- one recurrent layer over a whole sequence: sizes and checks here,
 * the float32 and float64 kernels from ONE source, generic/rnn_bptt.c (and
 * the Jacobians' generic/rnn_jacobian.c), instantiated by generic.h (two
 * instantiations, not two copies).  The math and the buffer layouts are
 * documented in rnn.h and next to the loops.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "activations.h"
#include "gemm.h"
#include "packed.h"
#include "parallel.h"
#include "rnn.h"

int bptt_cell_gates(bptt_cell cell) {
  switch (cell) {
    case BPTT_CELL_TANH:
      return 1;
    case BPTT_CELL_RELU:
      return 1;
    case BPTT_CELL_LSTM:
      return 4;
    case BPTT_CELL_GRU:
      return 3;
  }
  return 0;
}

static const char *const cell_names[] = { "tanh", "relu", "lstm", "gru" };

int bptt_cell_from_name(const char *name) {
  int k;
  if (name == NULL) return -1;
  for (k = 0; k < 4; k++)
    if (strcmp(name, cell_names[k]) == 0) return k;
  return -1;
}

const char *bptt_cell_name(bptt_cell cell) { return bptt_cell_gates(cell) ? cell_names[cell] : NULL; }

/* Element counts of cache and scratch (formulas in rnn.h), with every
 * product checked.  Also checks that every buffer's byte count fits in
 * int64_t and that each matrix dimension handed to the BLAS fits in int. */
static int rnn_sizes(const bptt_rnn_dims *d, int64_t *cache, int64_t *scratch) {
  int64_t G, TB, GH, TBH, BH, n, c, s;
  if (d == NULL) return BPTT_EARG;
  G = bptt_cell_gates(d->cell);
  if (G == 0 || d->T < 1 || d->B < 1 || d->D < 1 || d->H < 1) return BPTT_EARG;
  if (bptt_mul_overflow(d->T, d->B, &TB) || bptt_mul_overflow(G, d->H, &GH) || bptt_mul_overflow(TB, d->H, &TBH) ||
      bptt_mul_overflow(d->B, d->H, &BH))
    return BPTT_EOVERFLOW;
  /* GEMM dimensions: T*B, G*H, D (and H <= G*H, B <= T*B). */
  if (TB > INT_MAX || GH > INT_MAX || d->D > INT_MAX) return BPTT_EOVERFLOW;
  switch (d->cell) {
    case BPTT_CELL_TANH:
    case BPTT_CELL_RELU:
      c = 0;                                                     /* 0 */
      if (bptt_add_overflow(TBH, BH, &s)) return BPTT_EOVERFLOW; /* TBH + BH */
      break;
    case BPTT_CELL_LSTM:
      if (bptt_mul_overflow(TBH, 5, &c) ||  /* 5TBH */
          bptt_mul_overflow(TBH, 4, &n) ||  /* 4TBH + 2BH */
          bptt_add_overflow(n, 2 * BH, &s)) /* 2*BH <= 2*TBH, no overflow */
        return BPTT_EOVERFLOW;
      break;
    default:                                  /* BPTT_CELL_GRU */
      if (bptt_mul_overflow(TBH, 4, &n) ||    /* 4TBH + 3BH */
          bptt_add_overflow(n, 3 * BH, &c) || /* 3*BH <= 3*TBH < 4*TBH */
          bptt_add_overflow(n, BH, &s))       /* 4TBH + BH */
        return BPTT_EOVERFLOW;
      break;
  }
  /* Every buffer, in bytes of the widest real type. */
  if (bptt_mul_overflow(c, 8, &n) || bptt_mul_overflow(s, 8, &n) || bptt_mul_overflow(TB, d->D, &n) ||
      bptt_mul_overflow(n, 8, &n) || bptt_mul_overflow(TBH, 8, &n) ||
      bptt_mul_overflow(GH, d->D > d->H ? d->D : d->H, &n) || bptt_mul_overflow(n, 8, &n))
    return BPTT_EOVERFLOW;
  if (cache) *cache = c;
  if (scratch) *scratch = s;
  return BPTT_OK;
}

int bptt_rnn_check_dims(const bptt_rnn_dims *d) { return rnn_sizes(d, NULL, NULL); }

int bptt_rnn_cache_numel(const bptt_rnn_dims *d, int64_t *n) { return n == NULL ? BPTT_EARG : rnn_sizes(d, n, NULL); }

int bptt_rnn_scratch_numel(const bptt_rnn_dims *d, int64_t *n) { return n == NULL ? BPTT_EARG : rnn_sizes(d, NULL, n); }

int64_t bptt_rnn_block_steps(int64_t B) { return B >= BPTT_RNN_BLOCK_ROWS ? 1 : (BPTT_RNN_BLOCK_ROWS + B - 1) / B; }

/* The rings of generic/rnn_bptt.c: blocks of S steps, nb of them, C steps;
 * without checkpointing (k = 0) the plain layout, C = T. */
static void rnn_ring(const bptt_rnn_dims *d, int64_t k, int64_t *S, int64_t *nb, int64_t *C) {
  int64_t nbT;
  *S = bptt_rnn_block_steps(d->B);
  nbT = (d->T + *S - 1) / *S;
  if (k == 0) {
    *nb = nbT, *C = d->T;
    return;
  }
  *nb = (k - 1) / *S + 2 < nbT ? (k - 1) / *S + 2 : nbT;
  *C = *nb * *S;
}

int bptt_rnn_numel_ex(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, int64_t *cache, int64_t *scratch,
                      int64_t *flow) {
  int64_t c, s, f = 0, n;
  int err = rnn_sizes(d, &c, &s);
  if (err) return err;
  if (opts && opts->checkpoint < 0) return BPTT_EARG;
  if (opts && opts->checkpoint > 0) { /* rnn.h: saved c; dG and the window over the ring */
    int64_t S, nb, C, BH = d->B * d->H, CBH, w;
    rnn_ring(d, opts->checkpoint, &S, &nb, &C);
    if (bptt_mul_overflow(C, BH, &CBH) || bptt_mul_overflow(CBH, 9, &w) || bptt_mul_overflow(w, 8, &n))
      return BPTT_EOVERFLOW;
    switch (d->cell) {
      case BPTT_CELL_LSTM:
        c = (d->T + opts->checkpoint - 1) / opts->checkpoint * BH; /* <= T*B*H */
        s = w + 3 * BH;                                            /* 9CBH + 3BH */
        break;
      case BPTT_CELL_GRU:
        c = 0;
        s = 8 * CBH + 5 * BH;
        break;
      default:
        c = 0;
        s = CBH + BH;
        break;
    }
  }
  if (opts && opts->flow_dh) {
    /* row sums (T, B), twice for lstm, and 2 x 2 x (B, ceil(H/16)) partials */
    if (bptt_mul_overflow(d->T, d->B, &n) || bptt_mul_overflow(n, d->cell == BPTT_CELL_LSTM ? 2 : 1, &n) ||
        bptt_add_overflow(n, 4 * d->B * ((d->H + 15) / 16), &f) || bptt_mul_overflow(f, 8, &n))
      return BPTT_EOVERFLOW;
  }
  if (cache) *cache = c;
  if (scratch) *scratch = s;
  if (flow) *flow = f;
  return BPTT_OK;
}

/* ---- the kernels, once per real type ----------------------------------- */

/* The recursion split by batch rows (generic/rnn_bptt.c) when every thread gets a
 * packed tile's 8 rows or more and W_hh is at most 8 MB (H up to 1448 for tanh,
 * 836 for gru, 724 for lstm, in float32): each thread then reads all of
 * W_hh at every step, and beyond that size reading half of it (split by
 * units) was faster on the machine of the README's figures (2-core EPYC:
 * LSTM H = 1024 7% faster by units, H = 512 3% faster by rows). */
#define RNN_SPLIT_ROWS(d, n, G, esize)                                                                                 \
  ((n) > 1 && (d)->B >= 8 * (int64_t)(n) &&                                                                            \
   (double)(G) * (double)(d)->H * (double)(d)->H * (esize) <= 8.0 * 1024 * 1024)

/* where a row's h_{t-1} comes from at a step (generic/rnn_bptt.c) */
enum { SRC_PREV = 0, SRC_H0 = 1, SRC_ZERO = 2 };
/* The largest eigenvalue of the symmetric A (n, n), by cyclic Jacobi
 * rotations until the off-diagonal part is negligible (A is overwritten). */
static double sym_max_eig(int64_t n, double *A) {
  int64_t p, q, k, sweep;
  double best;
  for (sweep = 0; sweep < 100; sweep++) {
    double off = 0, diag = 0;
    for (p = 0; p < n; p++) {
      diag += A[p * n + p] * A[p * n + p];
      for (q = p + 1; q < n; q++) off += A[p * n + q] * A[p * n + q];
    }
    if (off <= 1e-30 * diag || off == 0) break;
    for (p = 0; p < n; p++)
      for (q = p + 1; q < n; q++) {
        double apq = A[p * n + q], app, aqq, theta, t, c, s;
        if (apq == 0) continue;
        app = A[p * n + p], aqq = A[q * n + q];
        theta = (aqq - app) / (2 * apq);
        t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
        c = 1 / sqrt(t * t + 1), s = t * c;
        for (k = 0; k < n; k++) { /* A <- A R (columns p, q), then R^T A (rows p, q) */
          double akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (k = 0; k < n; k++) {
          double apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
      }
  }
  best = A[0];
  for (p = 1; p < n; p++)
    if (A[p * n + p] > best) best = A[p * n + p];
  return best < 0 ? 0 : best;
}

/* C (n, n) upper triangle = A (n, k) A^T, row-major: the Gram matrices of
 * the gradient-flow record (generic/rnn_bptt.c's flow_dW). */
static void syrk_f32(int64_t n, int64_t k, const float *A, float *C) {
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)k, 1.0f, A, (int)k, 0.0f, C, (int)n);
}
static void syrk_f64(int64_t n, int64_t k, const double *A, double *C) {
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)k, 1.0, A, (int)k, 0.0, C, (int)n);
}

#define BPTT_GENERIC "generic/rnn_bptt.c"
#include "generic.h"

/* the state map's Jacobians, over the kernels above (same translation unit) */
#define BPTT_GENERIC "generic/rnn_jacobian.c"
#include "generic.h"

/* ---- row shuffles (rnn.h), any element type ---------------------------- */

void bptt_rnn_permute_rows(const void *src, void *dst, int64_t T, int64_t B, int64_t bytes, const int32_t *perm,
                           int scatter) {
  const char *s = src;
  char *d = dst;
  int64_t t, b;
  for (t = 0; t < T; t++)
    for (b = 0; b < B; b++) {
      int64_t from = scatter ? b : perm[b], to = scatter ? perm[b] : b;
      memcpy(d + (t * B + to) * bytes, s + (t * B + from) * bytes, (size_t)bytes);
    }
}

void bptt_rnn_join_rows(const void *a, const void *b, void *out, int64_t rows, int64_t bytes) {
  const char *pa = a, *pb = b;
  char *o = out;
  int64_t r;
  for (r = 0; r < rows; r++) {
    memcpy(o + 2 * r * bytes, pa + r * bytes, (size_t)bytes);
    memcpy(o + (2 * r + 1) * bytes, pb + r * bytes, (size_t)bytes);
  }
}

void bptt_rnn_split_rows(const void *in, void *a, void *b, int64_t rows, int64_t bytes) {
  const char *i = in;
  char *pa = a, *pb = b;
  int64_t r;
  for (r = 0; r < rows; r++) {
    memcpy(pa + r * bytes, i + 2 * r * bytes, (size_t)bytes);
    memcpy(pb + r * bytes, i + (2 * r + 1) * bytes, (size_t)bytes);
  }
}
