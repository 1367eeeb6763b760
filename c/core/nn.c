/*
 * nn.c -- Linear, Embedding, CrossEntropy, MSE and dropout kernels (see nn.h).
 *
 * The kernels are written once, in generic/nn_layers.c, over a type `real`,
 * and instantiated by generic.h: float with the _f32 suffix, double with
 * _f64.  The helpers here do not depend on the element type.
 */
#include "nn.h"
#include "activations.h"
#include "gemm.h"
#include "parallel.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* elements (rows x classes, rows x dim) from which cross-entropy and the
 * embedding's forward are split over the library's threads */
#define PARALLEL_MIN 32768

/* cross-entropy forward: the loss adds up per block of rows, at most
 * CE_BLOCKS of them; the exponentials of a row go into CE_LANES partial
 * sums (16: the tree in generic/nn_layers.c's row_sumexp halves it three times, then
 * a pair); the rows go CE_GROUP at a time */
#define CE_BLOCKS 64
#define CE_LANES 16
#define CE_GROUP 8

/* rows x cols with both >= 0; the product (an element count) must fit. */
static int check_mat(int64_t rows, int64_t cols, int64_t *count) {
  if (rows < 0 || cols < 0) return BPTT_EARG;
  if (bptt_mul_overflow(rows, cols, count)) return BPTT_EOVERFLOW;
  return BPTT_OK;
}

/* OpenBLAS's default interface takes int dimensions and leading dimensions. */
static int blas_dim_ok(int64_t d) { return d <= INT_MAX; }

static void set_bad(int64_t *bad_pos, int64_t v) {
  if (bad_pos) *bad_pos = v;
}

/* Position of the first id outside 1..V, or -1. */
static int64_t first_bad_id(const int32_t *ids, int64_t N, int64_t V) {
  int64_t i;
  for (i = 0; i < N; i++)
    if (ids[i] < 1 || (int64_t)ids[i] > V) return i;
  return -1;
}

static int ce_ignored(int32_t t, int32_t ignore_index) { return ignore_index != BPTT_NO_IGNORE && t == ignore_index; }

/* Counts the rows that are not ignored and checks their targets are in 1..C.
 * Returns BPTT_ERANGE with *bad_pos at the first offending row. */
static int ce_count(const int32_t *targets, int64_t N, int64_t C, int32_t ignore_index, int64_t *count,
                    int64_t *bad_pos) {
  int64_t i, n = 0;
  for (i = 0; i < N; i++) {
    int32_t t = targets[i];
    if (ce_ignored(t, ignore_index)) continue;
    if (t < 1 || (int64_t)t > C) {
      set_bad(bad_pos, i);
      return BPTT_ERANGE;
    }
    n++;
  }
  *count = n;
  return BPTT_OK;
}

/* Threads for Linear's region: GEMMs of `flops` in all, with the output
 * rows split, where gemm.c would split them by rows.  1: no region, the
 * plain path (gemm.h). */
static int linear_threads(double flops, int64_t rows, int64_t cols) {
  int by_rows, n = bptt_gemm_threads(flops, rows, cols, &by_rows);
  return by_rows ? n : 1;
}

static int reduction_ok(int reduction) { return reduction == BPTT_LOSS_MEAN || reduction == BPTT_LOSS_SUM; }

/* The factor d loss / d (per-position loss): gout / count for a mean, gout
 * for a sum; 0 when nothing is counted (loss defined as 0 then). */
static double loss_scale(int reduction, double gout, int64_t count) {
  if (reduction == BPTT_LOSS_SUM) return gout;
  return count > 0 ? gout / (double)count : 0.0;
}

/* ---------------------------------- the kernels, once per type (generic.h) */
#define BPTT_GENERIC "generic/nn_layers.c"
#include "generic.h"
