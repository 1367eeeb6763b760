/*
 * tensor_math.h -- broadcasting elementwise arithmetic and comparisons,
 * pointwise math, and reductions along one dimension.
 *
 * Broadcasting follows NumPy and PyTorch: shapes are aligned at their last
 * dimension, a missing leading dimension counts as size 1, and a size-1
 * dimension stretches to the other side's size (as a stride-0 view, never a
 * copy).  Every function takes any strides; large jobs run on the library's
 * thread team (parallel.h), so call them from the thread that owns it,
 * outside a region.  The elementwise loops are plain C with no FMA
 * contraction and no reassociation: the same bits on every instruction set
 * and any number of threads (each element is computed alone, and every
 * reduction line by one thread in index order).
 */
#ifndef BPTT_TENSOR_MATH_H
#define BPTT_TENSOR_MATH_H

#include "tensor.h"

/* The broadcast shape of a and b into (*ndim, size); BPTT_ESHAPE if a
 * dimension differs and neither size is 1. */
int bptt_broadcast_shape(const bptt_tensor *a, const bptt_tensor *b, int *ndim, int64_t *size);
/* dst = a header of src stretched to (ndim, size): dimensions src lacks, or
 * has with size 1, get stride 0.  BPTT_ESHAPE if src does not broadcast to
 * that shape.  Shares src's storage (release dst after). */
int bptt_tensor_expand(bptt_tensor *dst, const bptt_tensor *src, int ndim, const int64_t *size);
/* Some element of t is reached by two index tuples (a stride-0 dimension of
 * size > 1, as expand makes): writing through t would be ill-defined. */
int bptt_tensor_is_overlapping(const bptt_tensor *t);

typedef enum {
  BPTT_OP_ADD, /* a + alpha b */
  BPTT_OP_MUL,
  BPTT_OP_DIV, /* float32 and float64 only */
  BPTT_OP_EQ,  /* comparisons: out is int32 (1 or 0), a and b one dtype */
  BPTT_OP_NE,
  BPTT_OP_LT,
  BPTT_OP_LE,
  BPTT_OP_GT,
  BPTT_OP_GE
} bptt_binop;

/* out = a op b, with a and b broadcast to out's shape.  For arithmetic a, b
 * and out have one dtype (int32 wraps modulo 2^32); for comparisons out is
 * int32 and a, b have one dtype.  out may be a itself (in place) or share
 * storage with a or b in any way: an operand that overlaps out otherwise
 * than element for element is copied first. */
int bptt_tensor_binary(const bptt_tensor *out, const bptt_tensor *a, const bptt_tensor *b, bptt_binop op, double alpha);

typedef enum {
  BPTT_UN_EXP, /* float only */
  BPTT_UN_LOG,
  BPTT_UN_TANH,
  BPTT_UN_SIGMOID,
  BPTT_UN_SQRT,
  BPTT_UN_POW,  /* x^a; int32: a a whole number >= 0 */
  BPTT_UN_RELU, /* any dtype from here on */
  BPTT_UN_ABS,
  BPTT_UN_SIGN,  /* -1, 0, 1 (NaN stays NaN) */
  BPTT_UN_CLAMP, /* min(max(x, a), b); NaN stays NaN */
  BPTT_UN_NEG
} bptt_unop;

/* out = f(src), same shape and dtype; out may be src (in place).
 * BPTT_EDTYPE for int32 with a float-only function. */
int bptt_tensor_unary(const bptt_tensor *out, const bptt_tensor *src, bptt_unop op, double a, double b);

typedef enum {
  BPTT_DIM_SUM,
  BPTT_DIM_MEAN,
  BPTT_DIM_MAX, /* values and/or indices; NaN wins, first of ties */
  BPTT_DIM_MIN,
  BPTT_DIM_NORM, /* sqrt(sum x^2) */
  BPTT_DIM_LOGSUMEXP
} bptt_dimop;

/* Reduces src along dim into values (src's dtype) and, for max/min,
 * indices (int32, 0-based); either may be NULL.  Both contiguous, of src's
 * shape without dimension dim.  Sums are accumulated in double; int32 sums
 * wrap modulo 2^32; mean, norm and logsumexp need a float src
 * (BPTT_EDTYPE).  max/min of an empty dimension is BPTT_EARG; the mean of
 * one is NaN, its logsumexp -inf. */
int bptt_tensor_reduce_dim(const bptt_tensor *values, const bptt_tensor *indices, const bptt_tensor *src, int dim,
                           bptt_dimop op);

/* dst = softmax(src) along dim, or log_softmax when log; dst contiguous,
 * src's shape and dtype (float).  Computed in double from the maximum:
 *   softmax(x)_i = e^(x_i - m) / sum_j e^(x_j - m),  m = max_j x_j */
int bptt_tensor_softmax(const bptt_tensor *dst, const bptt_tensor *src, int dim, int log);

/* Over all elements, ignoring NaNs: their count, and min, max and mean of
 * the rest (NaN when there is none). */
void bptt_tensor_stats(const bptt_tensor *t, int64_t *nan_count, double *min, double *max, double *mean);

/* ---- shared with tensor_index.c: lines along one dimension ---- */

/* fn(ctx, tid, i, off_a, off_b) for every line along dim: i counts the
 * lines in row-major order of a's shape without dim, off_a and off_b are
 * the storage offsets (elements) where line i starts in a and in b (b has
 * a's shape but for its size along dim; NULL gives off_b = 0).  Lines are
 * split over the team when there are many elements; the first nonzero
 * return of fn is returned. */
typedef int (*bptt_line_fn)(void *ctx, int tid, int64_t i, int64_t off_a, int64_t off_b);
int bptt_tensor_lines(const bptt_tensor *a, const bptt_tensor *b, int dim, bptt_line_fn fn, void *ctx);
/* n elements of t from storage offset off, step stride, as doubles; and
 * back (int32: v must fit). */
void bptt_line_load(const bptt_tensor *t, int64_t off, int64_t stride, int64_t n, double *out);
void bptt_line_store(const bptt_tensor *t, int64_t off, int64_t stride, int64_t n, const double *in);

#endif
