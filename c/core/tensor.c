/*
 * tensor.c -- storage, views, elementwise operations and reductions (matmul:
 * gemm.c).
 *
 * Elementwise work walks the tensors row by row (the innermost dimension is
 * one row): walk() hands each row, as byte pointers and byte strides, to a row
 * function.  Contiguous arguments collapse into a single row, so the common
 * case is one tight loop; strided views take the same path with other strides
 * and are never read as if they were contiguous.
 */
#include "tensor.h"
#include "parallel.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- headers */

int64_t bptt_tensor_numel(const bptt_tensor *t) {
  int64_t n = 1;
  int d;
  for (d = 0; d < t->ndim; d++) n *= t->size[d]; /* checked at creation */
  return n;
}

int bptt_tensor_is_contiguous(const bptt_tensor *t) {
  int64_t expect = 1;
  int d;
  for (d = t->ndim - 1; d >= 0; d--) {
    if (t->size[d] != 1 && t->stride[d] != expect) return 0;
    expect *= t->size[d];
  }
  return 1;
}

void *bptt_tensor_data(const bptt_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)bptt_dtype_size(t->dtype);
}

int bptt_tensor_same_shape(const bptt_tensor *a, const bptt_tensor *b) {
  int d;
  if (a->ndim != b->ndim) return 0;
  for (d = 0; d < a->ndim; d++)
    if (a->size[d] != b->size[d]) return 0;
  return 1;
}

int bptt_tensor_init(bptt_tensor *t, int dtype, int ndim, const int64_t *size) {
  int64_t n = 1, nbytes;
  int d;
  bptt_storage *s;
  t->storage = NULL;
  if ((unsigned)dtype >= BPTT_NDTYPES || ndim < 0 || ndim > BPTT_MAXDIM) return BPTT_EARG;
  for (d = 0; d < ndim; d++) {
    if (size[d] < 0) return BPTT_EARG;
    if (bptt_mul_overflow(n, size[d], &n)) return BPTT_EOVERFLOW;
  }
  if (bptt_mul_overflow(n, (int64_t)bptt_dtype_size(dtype), &nbytes)) return BPTT_EOVERFLOW;
  if ((uint64_t)nbytes > (uint64_t)SIZE_MAX - 2 * BPTT_ALIGN) return BPTT_EOVERFLOW;
  s = bptt_malloc(sizeof *s);
  if (s == NULL) return BPTT_ENOMEM;
  s->data = bptt_malloc((size_t)nbytes);
  if (s->data == NULL) {
    bptt_free(s);
    return BPTT_ENOMEM;
  }
  s->nbytes = nbytes;
  s->refcount = 1;
  t->storage = s;
  t->offset = 0;
  t->dtype = dtype;
  t->ndim = ndim;
  for (d = ndim - 1, n = 1; d >= 0; d--) {
    t->size[d] = size[d];
    t->stride[d] = n;
    n *= size[d];
  }
  return BPTT_OK;
}

void bptt_tensor_share(bptt_tensor *dst, const bptt_tensor *src) {
  *dst = *src;
  if (dst->storage) dst->storage->refcount++;
}

void bptt_tensor_release(bptt_tensor *t) {
  bptt_storage *s = t->storage;
  t->storage = NULL;
  if (s && --s->refcount == 0) {
    bptt_free(s->data);
    bptt_free(s);
  }
}

/* ------------------------------------------------------------------ views */

int bptt_tensor_view(bptt_tensor *dst, const bptt_tensor *src, int ndim, const int64_t *size) {
  int64_t n = 1, stride = 1;
  int d;
  if (ndim < 0 || ndim > BPTT_MAXDIM) return BPTT_EARG;
  for (d = 0; d < ndim; d++) {
    if (size[d] < 0) return BPTT_EARG;
    if (bptt_mul_overflow(n, size[d], &n)) return BPTT_ESHAPE;
  }
  if (n != bptt_tensor_numel(src)) return BPTT_ESHAPE;
  if (!bptt_tensor_is_contiguous(src)) return BPTT_EARG;
  bptt_tensor_share(dst, src);
  dst->ndim = ndim;
  for (d = ndim - 1; d >= 0; d--) {
    dst->size[d] = size[d];
    dst->stride[d] = stride;
    stride *= size[d];
  }
  return BPTT_OK;
}

int bptt_tensor_narrow(bptt_tensor *dst, const bptt_tensor *src, int dim, int64_t start, int64_t len) {
  if (dim < 0 || dim >= src->ndim) return BPTT_EARG;
  if (start < 0 || len < 0 || start > src->size[dim] || len > src->size[dim] - start) return BPTT_ERANGE;
  bptt_tensor_share(dst, src);
  dst->offset += start * src->stride[dim];
  dst->size[dim] = len;
  return BPTT_OK;
}

int bptt_tensor_select(bptt_tensor *dst, const bptt_tensor *src, int dim, int64_t index) {
  int d;
  if (dim < 0 || dim >= src->ndim) return BPTT_EARG;
  if (index < 0 || index >= src->size[dim]) return BPTT_ERANGE;
  bptt_tensor_share(dst, src);
  dst->offset += index * src->stride[dim];
  for (d = dim; d < src->ndim - 1; d++) {
    dst->size[d] = src->size[d + 1];
    dst->stride[d] = src->stride[d + 1];
  }
  dst->ndim = src->ndim - 1;
  return BPTT_OK;
}

int bptt_tensor_transpose(bptt_tensor *dst, const bptt_tensor *src, int d1, int d2) {
  int64_t tmp;
  if (d1 < 0 || d1 >= src->ndim || d2 < 0 || d2 >= src->ndim) return BPTT_EARG;
  bptt_tensor_share(dst, src);
  tmp = dst->size[d1], dst->size[d1] = dst->size[d2], dst->size[d2] = tmp;
  tmp = dst->stride[d1], dst->stride[d1] = dst->stride[d2], dst->stride[d2] = tmp;
  return BPTT_OK;
}

/* ------------------------------------------------------- element access */

static double load(const char *p, int dt) {
  switch (dt) {
    case BPTT_FLOAT32:
      return *(const float *)p;
    case BPTT_FLOAT64:
      return *(const double *)p;
    default:
      return *(const int32_t *)p;
  }
}

/* For int32, v must already be known to lie in int32's range (not NaN). */
static void store(char *p, int dt, double v) {
  switch (dt) {
    case BPTT_FLOAT32:
      *(float *)p = (float)v;
      break;
    case BPTT_FLOAT64:
      *(double *)p = v;
      break;
    default:
      *(int32_t *)p = (int32_t)v;
      break;
  }
}

static int fits_int32(double v) { return v > -2147483649.0 && v < 2147483648.0; }

double bptt_tensor_get(const bptt_tensor *t, int64_t offset) {
  return load((const char *)t->storage->data + offset * (int64_t)bptt_dtype_size(t->dtype), t->dtype);
}

void bptt_tensor_set(const bptt_tensor *t, int64_t offset, double v) {
  store((char *)t->storage->data + offset * (int64_t)bptt_dtype_size(t->dtype), t->dtype, v);
}

/* ------------------------------------------------------------------ walk */

typedef void (*row_fn)(void *ctx, char *const *p, const int64_t *s, int64_t n);

/* Calls fn for every row of k same-shaped tensors (k <= 3), in row-major order.
 * p[j] points at row start of tensor j, s[j] is its byte stride along the row. */
static void walk(int k, const bptt_tensor *const *ts, row_fn fn, void *ctx) {
  const bptt_tensor *t0 = ts[0];
  int64_t bstride[3][BPTT_MAXDIM], idx[BPTT_MAXDIM], s[3], n = bptt_tensor_numel(t0), rows, r, inner;
  char *p[3];
  int j, d, nd = t0->ndim, contiguous = 1;
  if (n == 0) return;
  for (j = 0; j < k; j++) {
    p[j] = bptt_tensor_data(ts[j]);
    contiguous = contiguous && bptt_tensor_is_contiguous(ts[j]);
  }
  if (contiguous || nd == 0) {
    for (j = 0; j < k; j++) s[j] = (int64_t)bptt_dtype_size(ts[j]->dtype);
    fn(ctx, p, s, n);
    return;
  }
  for (j = 0; j < k; j++) {
    int64_t es = (int64_t)bptt_dtype_size(ts[j]->dtype);
    for (d = 0; d < nd; d++) bstride[j][d] = ts[j]->stride[d] * es;
    s[j] = ts[j]->stride[nd - 1] * es;
  }
  inner = t0->size[nd - 1];
  rows = n / inner;
  for (d = 0; d < nd; d++) idx[d] = 0;
  for (r = 0; r < rows; r++) {
    fn(ctx, p, s, inner);
    for (d = nd - 2; d >= 0; d--) {
      for (j = 0; j < k; j++) p[j] += bstride[j][d];
      if (++idx[d] < t0->size[d]) break;
      for (j = 0; j < k; j++) p[j] -= bstride[j][d] * t0->size[d];
      idx[d] = 0;
    }
  }
}

/* ----------------------------------------------------------- copy, fill */

typedef struct {
  int dt[3];
  double a, b;
  int bad; /* set by a checking pass */
} op_ctx;

static void row_copy(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc;
  int64_t i;
  if (c->dt[0] == c->dt[1] && s[0] == s[1] && s[0] == (int64_t)bptt_dtype_size(c->dt[0])) {
    memmove(p[0], p[1], (size_t)(n * s[0]));
  } else if (c->dt[0] == BPTT_FLOAT32 && c->dt[1] == BPTT_FLOAT64) {
    for (i = 0; i < n; i++) *(float *)(p[0] + i * s[0]) = (float)*(const double *)(p[1] + i * s[1]);
  } else if (c->dt[0] == BPTT_FLOAT64 && c->dt[1] == BPTT_FLOAT32) {
    for (i = 0; i < n; i++) *(double *)(p[0] + i * s[0]) = *(const float *)(p[1] + i * s[1]);
  } else {
    for (i = 0; i < n; i++) store(p[0] + i * s[0], c->dt[0], load(p[1] + i * s[1], c->dt[1]));
  }
}

static void row_check_int32(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc;
  int64_t i;
  for (i = 0; i < n && !c->bad; i++)
    if (!fits_int32(load(p[0] + i * s[0], c->dt[0]))) c->bad = 1;
}

/* Would converting t's values to int32 lose them (NaN, +-Inf, out of range)? */
static int check_int32_range(const bptt_tensor *t) {
  op_ctx c;
  const bptt_tensor *ts[1];
  if (t->dtype == BPTT_INT32) return BPTT_OK;
  c.dt[0] = t->dtype;
  c.bad = 0;
  ts[0] = t;
  walk(1, ts, row_check_int32, &c);
  return c.bad ? BPTT_ERANGE : BPTT_OK;
}

/* When dst and src share storage and their element ranges may overlap in a way
 * that a forward walk would read already-written elements, go through a copy. */
static int ranges_overlap(const bptt_tensor *a, const bptt_tensor *b) {
  int64_t lo[2], hi[2];
  const bptt_tensor *t[2];
  int j, d;
  if (a->storage != b->storage) return 0;
  t[0] = a, t[1] = b;
  for (j = 0; j < 2; j++) {
    int64_t es = (int64_t)bptt_dtype_size(t[j]->dtype);
    lo[j] = hi[j] = t[j]->offset;
    for (d = 0; d < t[j]->ndim; d++)
      if (t[j]->size[d] > 0) hi[j] += (t[j]->size[d] - 1) * t[j]->stride[d];
    lo[j] *= es;
    hi[j] = hi[j] * es + es;
  }
  return lo[0] < hi[1] && lo[1] < hi[0];
}

int bptt_tensor_copy(const bptt_tensor *dst, const bptt_tensor *src) {
  op_ctx c;
  const bptt_tensor *ts[2];
  int err;
  if (bptt_tensor_numel(dst) != bptt_tensor_numel(src) || !bptt_tensor_same_shape(dst, src)) return BPTT_ESHAPE;
  if (dst->dtype == BPTT_INT32 && (err = check_int32_range(src)) != BPTT_OK) return err;
  if (ranges_overlap(dst, src) && !(dst->offset == src->offset && dst->dtype == src->dtype &&
                                    memcmp(dst->stride, src->stride, sizeof(int64_t) * (size_t)dst->ndim) == 0)) {
    bptt_tensor tmp;
    err = bptt_tensor_init(&tmp, src->dtype, src->ndim, src->size);
    if (err) return err;
    bptt_tensor_copy(&tmp, src);
    err = bptt_tensor_copy(dst, &tmp);
    bptt_tensor_release(&tmp);
    return err;
  }
  c.dt[0] = dst->dtype, c.dt[1] = src->dtype;
  ts[0] = dst, ts[1] = src;
  walk(2, ts, row_copy, &c);
  return BPTT_OK;
}

static void row_fill(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc;
  int64_t i;
  if (c->dt[0] == BPTT_FLOAT32) {
    float v = (float)c->a;
    for (i = 0; i < n; i++) *(float *)(p[0] + i * s[0]) = v;
  } else {
    for (i = 0; i < n; i++) store(p[0] + i * s[0], c->dt[0], c->a);
  }
}

/* A contiguous tensor is filled by memset for +0 (all bits zero in every
 * dtype; -0.0 is not) and by a plain loop otherwise, split over the team
 * from FILL_PARALLEL_MIN elements (zero_grad on a model's flat gradients). */
#define FILL_PARALLEL_MIN 262144 /* 2 threads: 8.6 -> 8.1 us; 1M: 40 -> 24 */

typedef struct {
  void *data;
  int64_t n;
  int dt;
  double v;
} fill_job;

static void fill_task(void *ctx, int tid, int nt) {
  const fill_job *f = ctx;
  long long lo, hi;
  int64_t i, end;
  bptt_parallel_range(f->n, 16, tid, nt, &lo, &hi);
  end = hi; /* hi's address was taken: a store through p might change it */
  if (f->v == 0 && !signbit(f->v)) {
    size_t es = bptt_dtype_size((bptt_dtype)f->dt);
    memset((char *)f->data + lo * (int64_t)es, 0, (size_t)(end - lo) * es);
  } else if (f->dt == BPTT_FLOAT32) {
    float *p = f->data, v = (float)f->v;
    for (i = lo; i < end; i++) p[i] = v;
  } else if (f->dt == BPTT_FLOAT64) {
    double *p = f->data, v = f->v;
    for (i = lo; i < end; i++) p[i] = v;
  } else {
    int32_t *p = f->data, v = (int32_t)f->v;
    for (i = lo; i < end; i++) p[i] = v;
  }
}

int bptt_tensor_fill(const bptt_tensor *t, double v) {
  op_ctx c;
  const bptt_tensor *ts[1];
  if (t->dtype == BPTT_INT32 && (!fits_int32(v) || v != floor(v))) return BPTT_ERANGE;
  if (bptt_tensor_is_contiguous(t)) {
    fill_job f;
    f.data = bptt_tensor_data(t), f.n = bptt_tensor_numel(t), f.dt = t->dtype, f.v = v;
    if (f.n == 0) return BPTT_OK; /* no storage to point at, maybe */
    if (f.n >= FILL_PARALLEL_MIN)
      bptt_parallel_run(fill_task, &f, bptt_parallel_threads());
    else
      fill_task(&f, 0, 1);
    return BPTT_OK;
  }
  c.dt[0] = t->dtype, c.a = v;
  ts[0] = t;
  walk(1, ts, row_fill, &c);
  return BPTT_OK;
}

/* ------------------------------------------------------------ arithmetic */

/* int32 arithmetic wraps modulo 2^32 as in C on two's complement machines
 * (and PyTorch); it is done exactly in 64 bits. */
static int32_t wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

static void row_add(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc;
  int64_t i;
  if (c->dt[0] == BPTT_FLOAT32 && c->dt[1] == BPTT_FLOAT32) {
    float a = (float)c->a;
    for (i = 0; i < n; i++) *(float *)(p[0] + i * s[0]) += a * *(const float *)(p[1] + i * s[1]);
  } else if (c->dt[0] == BPTT_INT32) { /* then u is int32 and alpha whole (checked) */
    int64_t a = (int64_t)c->a;
    for (i = 0; i < n; i++) {
      int32_t *q = (int32_t *)(p[0] + i * s[0]);
      *q = wrap32((int64_t)*q + (int64_t)wrap32(a * *(const int32_t *)(p[1] + i * s[1])));
    }
  } else {
    for (i = 0; i < n; i++)
      store(p[0] + i * s[0], c->dt[0], load(p[0] + i * s[0], c->dt[0]) + c->a * load(p[1] + i * s[1], c->dt[1]));
  }
}

/* In-place arithmetic into int32 takes only int32 operands and whole scalars
 * that fit 32 bits: a float result cannot be stored there without loss. */
static int int32_scalar_ok(double v) { return fits_int32(v) && v == floor(v); }

int bptt_tensor_add(const bptt_tensor *t, const bptt_tensor *u, double alpha) {
  op_ctx c;
  const bptt_tensor *ts[2];
  bptt_tensor tmp;
  int err;
  if (!bptt_tensor_same_shape(t, u)) return BPTT_ESHAPE;
  if (t->dtype == BPTT_INT32 && (u->dtype != BPTT_INT32 || !int32_scalar_ok(alpha))) return BPTT_EDTYPE;
  if (ranges_overlap(t, u) && !(t->offset == u->offset && t->dtype == u->dtype &&
                                memcmp(t->stride, u->stride, sizeof(int64_t) * (size_t)t->ndim) == 0)) {
    err = bptt_tensor_init(&tmp, u->dtype, u->ndim, u->size);
    if (err) return err;
    bptt_tensor_copy(&tmp, u);
    err = bptt_tensor_add(t, &tmp, alpha);
    bptt_tensor_release(&tmp);
    return err;
  }
  c.dt[0] = t->dtype, c.dt[1] = u->dtype, c.a = alpha;
  ts[0] = t, ts[1] = u;
  walk(2, ts, row_add, &c);
  return BPTT_OK;
}

static void row_affine(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc; /* x = x * a + b */
  int64_t i;
  if (c->dt[0] == BPTT_FLOAT32) {
    float a = (float)c->a, b = (float)c->b;
    for (i = 0; i < n; i++) {
      float *q = (float *)(p[0] + i * s[0]);
      *q = *q * a + b;
    }
  } else if (c->dt[0] == BPTT_INT32) {
    int64_t a = (int64_t)c->a, b = (int64_t)c->b;
    for (i = 0; i < n; i++) {
      int32_t *q = (int32_t *)(p[0] + i * s[0]);
      *q = wrap32((int64_t)wrap32(*q * a) + b);
    }
  } else {
    for (i = 0; i < n; i++) {
      double *q = (double *)(p[0] + i * s[0]);
      *q = *q * c->a + c->b;
    }
  }
}

static int affine(const bptt_tensor *t, double a, double b) {
  op_ctx c;
  const bptt_tensor *ts[1];
  if (t->dtype == BPTT_INT32 && (!int32_scalar_ok(a) || !int32_scalar_ok(b))) return BPTT_EDTYPE;
  c.dt[0] = t->dtype, c.a = a, c.b = b;
  ts[0] = t;
  walk(1, ts, row_affine, &c);
  return BPTT_OK;
}

int bptt_tensor_add_scalar(const bptt_tensor *t, double v) { return affine(t, 1.0, v); }
int bptt_tensor_mul_scalar(const bptt_tensor *t, double s) { return affine(t, s, 0.0); }

/* x / s, not x * (1 / s): the latter is off by an ulp for s = 3 and x = 5.
 * float32 divides in double and rounds once, which for one division gives the
 * correctly rounded float quotient (53 >= 2 * 24 + 2 bits). */
static void row_div(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc;
  int64_t i;
  if (c->dt[0] == BPTT_FLOAT32) {
    for (i = 0; i < n; i++) {
      float *q = (float *)(p[0] + i * s[0]);
      *q = (float)((double)*q / c->a);
    }
  } else {
    for (i = 0; i < n; i++) {
      double *q = (double *)(p[0] + i * s[0]);
      *q = *q / c->a;
    }
  }
}

int bptt_tensor_div_scalar(const bptt_tensor *t, double s) {
  op_ctx c;
  const bptt_tensor *ts[1];
  if (t->dtype == BPTT_INT32) return BPTT_EDTYPE;
  c.dt[0] = t->dtype, c.a = s;
  ts[0] = t;
  walk(1, ts, row_div, &c);
  return BPTT_OK;
}

static void row_cmul(void *vc, char *const *p, const int64_t *s, int64_t n) {
  op_ctx *c = vc;
  int64_t i;
  if (c->dt[0] == BPTT_INT32) {
    for (i = 0; i < n; i++) {
      int32_t *q = (int32_t *)(p[0] + i * s[0]);
      *q = wrap32((int64_t)*q * *(const int32_t *)(p[1] + i * s[1]));
    }
  } else {
    for (i = 0; i < n; i++)
      store(p[0] + i * s[0], c->dt[0], load(p[0] + i * s[0], c->dt[0]) * load(p[1] + i * s[1], c->dt[1]));
  }
}

int bptt_tensor_cmul(const bptt_tensor *t, const bptt_tensor *u) {
  op_ctx c;
  const bptt_tensor *ts[2];
  bptt_tensor tmp;
  int err;
  if (!bptt_tensor_same_shape(t, u)) return BPTT_ESHAPE;
  if (t->dtype == BPTT_INT32 && u->dtype != BPTT_INT32) return BPTT_EDTYPE;
  if (ranges_overlap(t, u) && !(t->offset == u->offset && t->dtype == u->dtype &&
                                memcmp(t->stride, u->stride, sizeof(int64_t) * (size_t)t->ndim) == 0)) {
    err = bptt_tensor_init(&tmp, u->dtype, u->ndim, u->size);
    if (err) return err;
    bptt_tensor_copy(&tmp, u);
    err = bptt_tensor_cmul(t, &tmp);
    bptt_tensor_release(&tmp);
    return err;
  }
  c.dt[0] = t->dtype, c.dt[1] = u->dtype;
  ts[0] = t, ts[1] = u;
  walk(2, ts, row_cmul, &c);
  return BPTT_OK;
}

/* ------------------------------------------------------------ reductions */

typedef struct {
  int dt;
  bptt_reduction op;
  double acc;
} red_ctx;

static void row_reduce(void *vc, char *const *p, const int64_t *s, int64_t n) {
  red_ctx *c = vc;
  double acc = c->acc;
  int64_t i;
  for (i = 0; i < n; i++) {
    double v = load(p[0] + i * s[0], c->dt);
    switch (c->op) {
      case BPTT_RED_SUM:
        acc += v;
        break;
      case BPTT_RED_SUMSQ:
        acc += v * v;
        break;
      case BPTT_RED_MAX:
        if (v > acc || v != v) acc = (acc != acc) ? acc : v;
        break;
      case BPTT_RED_MIN:
        if (v < acc || v != v) acc = (acc != acc) ? acc : v;
        break;
    }
  }
  c->acc = acc;
}

int bptt_tensor_reduce(const bptt_tensor *t, bptt_reduction op, double *out) {
  red_ctx c;
  const bptt_tensor *ts[1];
  if ((op == BPTT_RED_MAX || op == BPTT_RED_MIN) && bptt_tensor_numel(t) == 0) return BPTT_EARG;
  c.dt = t->dtype, c.op = op;
  c.acc = op == BPTT_RED_MAX ? -INFINITY : op == BPTT_RED_MIN ? INFINITY : 0.0;
  ts[0] = t;
  walk(1, ts, row_reduce, &c);
  *out = c.acc;
  return BPTT_OK;
}

int bptt_tensor_argmax(const bptt_tensor *dst, const bptt_tensor *src, int dim) {
  bptt_tensor outer;
  int64_t n, len, i, k, stride, esrc;
  int d;
  if (dim < 0 || dim >= src->ndim) return BPTT_EARG;
  if (dst->dtype != BPTT_INT32 || !bptt_tensor_is_contiguous(dst)) return BPTT_EARG;
  len = src->size[dim];
  if (len == 0) return BPTT_EARG;
  /* outer: src with dimension dim dropped (a select at 0); dst has its shape */
  bptt_tensor_select(&outer, src, dim, 0);
  if (!bptt_tensor_same_shape(&outer, dst)) {
    bptt_tensor_release(&outer);
    return BPTT_ESHAPE;
  }
  n = bptt_tensor_numel(&outer);
  stride = src->stride[dim];
  esrc = (int64_t)bptt_dtype_size(src->dtype);
  {
    int64_t idx[BPTT_MAXDIM] = { 0 };
    int32_t *out = bptt_tensor_data(dst);
    for (i = 0; i < n; i++) {
      int64_t off = outer.offset, best = 0;
      double bv;
      for (d = 0; d < outer.ndim; d++) off += idx[d] * outer.stride[d];
      bv = bptt_tensor_get(src, off);
      for (k = 1; k < len && bv == bv; k++) {
        double v = load((const char *)src->storage->data + (off + k * stride) * esrc, src->dtype);
        if (v > bv || v != v) bv = v, best = k;
      }
      out[i] = (int32_t)best;
      for (d = outer.ndim - 1; d >= 0; d--) {
        if (++idx[d] < outer.size[d]) break;
        idx[d] = 0;
      }
    }
  }
  bptt_tensor_release(&outer);
  return BPTT_OK;
}
