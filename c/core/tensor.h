/*
 * tensor.h -- N-d strided tensors over reference-counted, 64-byte aligned storage.
 *
 * A bptt_tensor is a small header (dtype, shape, strides, offset) over a
 * bptt_storage that many headers may share: views (view, narrow, select,
 * transpose) share storage and differ only in their header.  Storage lives in
 * malloc'd memory, never in the Lua heap.  Sizes and strides count elements,
 * strides may be any non-negative value; a 0-d tensor has one element.
 *
 * Every function that takes two or more tensors accepts any strides: a strided
 * argument is walked element by element (or copied to contiguous scratch where
 * a BLAS call needs it), never read as if it were contiguous.
 */
#ifndef BPTT_TENSOR_H
#define BPTT_TENSOR_H

#include "core.h"

#define BPTT_MAXDIM 8

typedef struct bptt_storage {
  void *data;
  int64_t nbytes;
  int64_t refcount;
} bptt_storage;

typedef struct bptt_tensor {
  bptt_storage *storage; /* NULL once released */
  int64_t offset;        /* in elements */
  int dtype;             /* bptt_dtype */
  int ndim;              /* 0..BPTT_MAXDIM */
  int64_t size[BPTT_MAXDIM];
  int64_t stride[BPTT_MAXDIM];
} bptt_tensor;

/* Number of elements (product of sizes; 1 for 0-d). */
int64_t bptt_tensor_numel(const bptt_tensor *t);
/* Row-major contiguous (size-1 dimensions may have any stride). */
int bptt_tensor_is_contiguous(const bptt_tensor *t);
/* Address of the first element. */
void *bptt_tensor_data(const bptt_tensor *t);
/* Same ndim and sizes. */
int bptt_tensor_same_shape(const bptt_tensor *a, const bptt_tensor *b);

/* New contiguous tensor with fresh, uninitialized storage.  Checks the shape
 * (sizes >= 0, ndim <= BPTT_MAXDIM) and that the byte count fits.  On error *t
 * is left with storage NULL. */
int bptt_tensor_init(bptt_tensor *t, int dtype, int ndim, const int64_t *size);
/* Share src's storage (refcount + 1) with the same header. */
void bptt_tensor_share(bptt_tensor *dst, const bptt_tensor *src);
/* Drop the reference; frees the storage with its last reference.  Safe to call
 * twice. */
void bptt_tensor_release(bptt_tensor *t);

/* Header-only views: dst gets src's storage (shared) with a new header.
 * Indices here are 0-based; the binding converts from Lua's 1-based ones. */
int bptt_tensor_view(bptt_tensor *dst, const bptt_tensor *src, int ndim, const int64_t *size);
int bptt_tensor_narrow(bptt_tensor *dst, const bptt_tensor *src, int dim, int64_t start, int64_t len);
int bptt_tensor_select(bptt_tensor *dst, const bptt_tensor *src, int dim, int64_t index);
int bptt_tensor_transpose(bptt_tensor *dst, const bptt_tensor *src, int d1, int d2);

/* Element access by flat offset into storage (any dtype, as double). */
double bptt_tensor_get(const bptt_tensor *t, int64_t offset);
void bptt_tensor_set(const bptt_tensor *t, int64_t offset, double v);

/* dst[...] = src[...] with dtype conversion; same shape required. */
int bptt_tensor_copy(const bptt_tensor *dst, const bptt_tensor *src);
/* t[...] = v.  A large contiguous t is filled on the library's threads
 * (parallel.h): call it from the thread that owns them, outside a region. */
int bptt_tensor_fill(const bptt_tensor *t, double v);
/* t += alpha * u (same shape), t += v, t *= s */
int bptt_tensor_add(const bptt_tensor *t, const bptt_tensor *u, double alpha);
int bptt_tensor_add_scalar(const bptt_tensor *t, double v);
int bptt_tensor_mul_scalar(const bptt_tensor *t, double s);
/* t /= s, a true division (float32 or float64; BPTT_EDTYPE for int32) */
int bptt_tensor_div_scalar(const bptt_tensor *t, double s);
/* t *= u elementwise (same shape) */
int bptt_tensor_cmul(const bptt_tensor *t, const bptt_tensor *u);

/* Reductions over all elements, accumulated in double.  max/min of an empty
 * tensor is BPTT_EARG; a NaN element makes max/min NaN. */
typedef enum { BPTT_RED_SUM, BPTT_RED_MAX, BPTT_RED_MIN, BPTT_RED_SUMSQ } bptt_reduction;
int bptt_tensor_reduce(const bptt_tensor *t, bptt_reduction op, double *out);
/* dst (int32, src's shape without dimension dim) = 0-based index of the
 * maximum along dim (first one on ties; a NaN counts as the maximum). */
int bptt_tensor_argmax(const bptt_tensor *dst, const bptt_tensor *src, int dim);

#endif
