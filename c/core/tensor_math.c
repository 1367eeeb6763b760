/*
 * tensor_math.c -- broadcasting arithmetic and comparisons, pointwise math,
 * reductions along a dimension, softmax (tensor_math.h).
 *
 * Elementwise work goes through one N-d loop (nd_run): the operands are
 * headers of one shape (broadcast operands have stride 0), dimensions that
 * are contiguous in every operand are merged, and a row function gets one
 * innermost row at a time with element strides; the common cases (all
 * strides 1, or one operand a stride-0 scalar) are tight loops that GCC
 * vectorizes.  From PAR_MIN elements the flat index range is split over the
 * thread team; each element is computed on its own, so the split changes
 * no bit.
 */
#include "tensor_math.h"

#include <math.h>
#include <string.h>

#include "activations.h"
#include "parallel.h"

#define PAR_MIN 32768 /* elements from which a job is split over the team */

/* ------------------------------------------------------------ broadcasting */

int bptt_broadcast_shape(const bptt_tensor *a, const bptt_tensor *b, int *ndim, int64_t *size) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim, d;
  for (d = 0; d < nd; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->size[da] : 1, sb = db >= 0 ? b->size[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) return BPTT_ESHAPE;
    size[d] = sa == 1 ? sb : sa;
  }
  *ndim = nd;
  return BPTT_OK;
}

int bptt_tensor_expand(bptt_tensor *dst, const bptt_tensor *src, int ndim, const int64_t *size) {
  bptt_tensor h;
  int d;
  if (ndim < src->ndim || ndim > BPTT_MAXDIM) return BPTT_ESHAPE;
  for (d = 0; d < ndim; d++) {
    int ds = d - (ndim - src->ndim);
    if (size[d] < 0) return BPTT_EARG;
    if (ds < 0 || (src->size[ds] == 1 && size[d] != 1)) {
      h.size[d] = size[d], h.stride[d] = 0;
    } else {
      if (src->size[ds] != size[d]) return BPTT_ESHAPE;
      h.size[d] = size[d], h.stride[d] = src->stride[ds];
    }
  }
  bptt_tensor_share(dst, src);
  dst->ndim = ndim;
  memcpy(dst->size, h.size, sizeof(int64_t) * (size_t)ndim);
  memcpy(dst->stride, h.stride, sizeof(int64_t) * (size_t)ndim);
  return BPTT_OK;
}

int bptt_tensor_is_overlapping(const bptt_tensor *t) {
  int d;
  if (bptt_tensor_numel(t) == 0) return 0;
  for (d = 0; d < t->ndim; d++)
    if (t->size[d] > 1 && t->stride[d] == 0) return 1;
  return 0;
}

/* Do a and b (one storage) touch common bytes?  By address ranges: a
 * cautious answer, which costs at most one copy too many. */
static int may_overlap(const bptt_tensor *a, const bptt_tensor *b) {
  int64_t lo[2], hi[2];
  const bptt_tensor *t[2];
  int j, d;
  if (a->storage != b->storage || bptt_tensor_numel(a) == 0 || bptt_tensor_numel(b) == 0) return 0;
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

/* Same elements in the same order (out may then be written while read). */
static int same_elements(const bptt_tensor *a, const bptt_tensor *b) {
  int d;
  if (a->storage != b->storage || a->offset != b->offset || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
  for (d = 0; d < a->ndim; d++)
    if (a->size[d] != b->size[d] || (a->size[d] > 1 && a->stride[d] != b->stride[d])) return 0;
  return 1;
}

/* ---------------------------------------------------------- the N-d loop */

typedef void (*row_fn)(const void *ctx, char *const *p, const int64_t *s, int64_t n);

typedef struct {
  int k, nd;
  int64_t size[BPTT_MAXDIM];
  int64_t st[3][BPTT_MAXDIM]; /* element strides */
  int64_t es[3];              /* element bytes */
  char *base[3];
  int64_t total;
  row_fn fn;
  const void *ctx;
} nd_job;

/* k headers of one shape (ts[0]'s); merges dimensions that are contiguous
 * in every operand and drops size-1 ones. */
static void nd_init(nd_job *J, int k, const bptt_tensor *const *ts, row_fn fn, const void *ctx) {
  const bptt_tensor *t0 = ts[0];
  int d, j, nd = 0;
  J->k = k, J->fn = fn, J->ctx = ctx, J->total = bptt_tensor_numel(t0);
  for (j = 0; j < k; j++) {
    J->es[j] = (int64_t)bptt_dtype_size(ts[j]->dtype);
    J->base[j] = J->total > 0 ? (char *)bptt_tensor_data(ts[j]) : NULL;
  }
  for (d = 0; d < t0->ndim; d++) {
    if (t0->size[d] == 1) continue;
    if (nd > 0) {
      int merge = 1;
      for (j = 0; j < k; j++) merge = merge && J->st[j][nd - 1] == ts[j]->stride[d] * t0->size[d];
      if (merge) {
        J->size[nd - 1] *= t0->size[d];
        for (j = 0; j < k; j++) J->st[j][nd - 1] = ts[j]->stride[d];
        continue;
      }
    }
    J->size[nd] = t0->size[d];
    for (j = 0; j < k; j++) J->st[j][nd] = ts[j]->stride[d];
    nd++;
  }
  if (nd == 0) {
    J->size[0] = 1;
    for (j = 0; j < k; j++) J->st[j][0] = 0;
    nd = 1;
  }
  J->nd = nd;
}

/* Elements [lo, hi) in row-major order. */
static void nd_range(const nd_job *J, int64_t lo, int64_t hi) {
  int64_t idx[BPTT_MAXDIM], rem = lo, s[3], pos = lo;
  char *p[3];
  int d, j, nd = J->nd, last = nd - 1;
  if (lo >= hi) return;
  for (d = last; d >= 0; d--) idx[d] = rem % J->size[d], rem /= J->size[d];
  for (j = 0; j < J->k; j++) {
    p[j] = J->base[j];
    for (d = 0; d < nd; d++) p[j] += idx[d] * J->st[j][d] * J->es[j];
    s[j] = J->st[j][last];
  }
  while (pos < hi) {
    int64_t n = J->size[last] - idx[last];
    if (n > hi - pos) n = hi - pos;
    J->fn(J->ctx, p, s, n);
    pos += n;
    idx[last] += n;
    for (j = 0; j < J->k; j++) p[j] += n * J->st[j][last] * J->es[j];
    for (d = last; d > 0 && idx[d] == J->size[d]; d--) {
      idx[d] = 0, idx[d - 1]++;
      for (j = 0; j < J->k; j++) p[j] += (J->st[j][d - 1] - J->size[d] * J->st[j][d]) * J->es[j];
    }
  }
}

static void nd_task(void *ctx, int tid, int nt) {
  const nd_job *J = ctx;
  long long lo, hi;
  bptt_parallel_range(J->total, 64, tid, nt, &lo, &hi);
  nd_range(J, lo, hi);
}

static void nd_run(int k, const bptt_tensor *const *ts, row_fn fn, const void *ctx) {
  nd_job J;
  nd_init(&J, k, ts, fn, ctx);
  if (J.total == 0) return;
  if (J.total >= PAR_MIN && bptt_parallel_threads() > 1)
    bptt_parallel_run(nd_task, &J, bptt_parallel_threads());
  else
    nd_range(&J, 0, J.total);
}

/* ------------------------------------------------------------ binary ops */

typedef struct {
  bptt_binop op;
  int dt; /* of a and b */
  double alpha;
} bin_ctx;

static int32_t wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

/* o[i] = EXPR(a_, b_) over a row: all unit strides, b a scalar, a a
 * scalar, or any strides. */
#define ROW3(TO, TI, EXPR)                                                                                             \
  do {                                                                                                                 \
    TO *o = (TO *)p[0];                                                                                                \
    const TI *x = (const TI *)p[1], *y = (const TI *)p[2];                                                             \
    int64_t i, so = s[0], sx = s[1], sy = s[2];                                                                        \
    if (so == 1 && sx == 1 && sy == 1) {                                                                               \
      for (i = 0; i < n; i++) {                                                                                        \
        TI a_ = x[i], b_ = y[i];                                                                                       \
        o[i] = EXPR;                                                                                                   \
      }                                                                                                                \
    } else if (so == 1 && sx == 1 && sy == 0) {                                                                        \
      TI b_ = y[0];                                                                                                    \
      for (i = 0; i < n; i++) {                                                                                        \
        TI a_ = x[i];                                                                                                  \
        o[i] = EXPR;                                                                                                   \
      }                                                                                                                \
    } else if (so == 1 && sx == 0 && sy == 1) {                                                                        \
      TI a_ = x[0];                                                                                                    \
      for (i = 0; i < n; i++) {                                                                                        \
        TI b_ = y[i];                                                                                                  \
        o[i] = EXPR;                                                                                                   \
      }                                                                                                                \
    } else {                                                                                                           \
      for (i = 0; i < n; i++) {                                                                                        \
        TI a_ = x[i * sx], b_ = y[i * sy];                                                                             \
        o[i * so] = EXPR;                                                                                              \
      }                                                                                                                \
    }                                                                                                                  \
  } while (0)

#define COMPARE(TI)                                                                                                    \
  switch (c->op) {                                                                                                     \
    case BPTT_OP_EQ:                                                                                                   \
      ROW3(int32_t, TI, a_ == b_);                                                                                     \
      break;                                                                                                           \
    case BPTT_OP_NE:                                                                                                   \
      ROW3(int32_t, TI, a_ != b_);                                                                                     \
      break;                                                                                                           \
    case BPTT_OP_LT:                                                                                                   \
      ROW3(int32_t, TI, a_ < b_);                                                                                      \
      break;                                                                                                           \
    case BPTT_OP_LE:                                                                                                   \
      ROW3(int32_t, TI, a_ <= b_);                                                                                     \
      break;                                                                                                           \
    case BPTT_OP_GT:                                                                                                   \
      ROW3(int32_t, TI, a_ > b_);                                                                                      \
      break;                                                                                                           \
    default:                                                                                                           \
      ROW3(int32_t, TI, a_ >= b_);                                                                                     \
      break;                                                                                                           \
  }

static void row_binary(const void *vc, char *const *p, const int64_t *s, int64_t n) {
  const bin_ctx *c = vc;
  if (c->op >= BPTT_OP_EQ) {
    if (c->dt == BPTT_FLOAT32)
      COMPARE(float)
    else if (c->dt == BPTT_FLOAT64)
      COMPARE(double)
    else
      COMPARE(int32_t)
    return;
  }
  if (c->dt == BPTT_FLOAT32) {
    float al = (float)c->alpha;
    if (c->op == BPTT_OP_ADD && al == 1.0f)
      ROW3(float, float, a_ + b_);
    else if (c->op == BPTT_OP_ADD)
      ROW3(float, float, a_ + al * b_);
    else if (c->op == BPTT_OP_MUL)
      ROW3(float, float, a_ *b_);
    else
      ROW3(float, float, a_ / b_);
  } else if (c->dt == BPTT_FLOAT64) {
    double al = c->alpha;
    if (c->op == BPTT_OP_ADD && al == 1.0)
      ROW3(double, double, a_ + b_);
    else if (c->op == BPTT_OP_ADD)
      ROW3(double, double, a_ + al * b_);
    else if (c->op == BPTT_OP_MUL)
      ROW3(double, double, a_ *b_);
    else
      ROW3(double, double, a_ / b_);
  } else {
    int64_t al = (int64_t)c->alpha;
    if (c->op == BPTT_OP_ADD)
      ROW3(int32_t, int32_t, wrap32((int64_t)a_ + (int64_t)wrap32(al * b_)));
    else
      ROW3(int32_t, int32_t, wrap32((int64_t)a_ * b_));
  }
}

/* A contiguous copy of x (released by the caller) into *tmp. */
static int copy_of(bptt_tensor *tmp, const bptt_tensor *x) {
  int err = bptt_tensor_init(tmp, x->dtype, x->ndim, x->size);
  if (err) return err;
  return bptt_tensor_copy(tmp, x);
}

int bptt_tensor_binary(const bptt_tensor *out, const bptt_tensor *a, const bptt_tensor *b, bptt_binop op,
                       double alpha) {
  bptt_tensor ea, eb, ca, cb;
  const bptt_tensor *ts[3], *pa = a, *pb = b;
  bin_ctx c;
  int err, copied_a = 0, copied_b = 0, cmp = op >= BPTT_OP_EQ;
  if (a->dtype != b->dtype || (cmp ? out->dtype != BPTT_INT32 : out->dtype != a->dtype)) return BPTT_EDTYPE;
  if (op == BPTT_OP_DIV && a->dtype == BPTT_INT32) return BPTT_EDTYPE;
  if (a->dtype == BPTT_INT32 && op == BPTT_OP_ADD && !(alpha == floor(alpha) && fabs(alpha) < 2147483648.0))
    return BPTT_EDTYPE;
  /* an operand that shares storage with out, but not element for element,
   * is read from a copy (out may also be a broadcast source of itself) */
  if (may_overlap(out, a) && !same_elements(out, a)) {
    if ((err = copy_of(&ca, a)) != BPTT_OK) return err;
    pa = &ca, copied_a = 1;
  }
  if (may_overlap(out, b) && !same_elements(out, b)) {
    if ((err = copy_of(&cb, b)) != BPTT_OK) {
      if (copied_a) bptt_tensor_release(&ca);
      return err;
    }
    pb = &cb, copied_b = 1;
  }
  err = bptt_tensor_expand(&ea, pa, out->ndim, out->size);
  if (err == BPTT_OK) {
    err = bptt_tensor_expand(&eb, pb, out->ndim, out->size);
    if (err == BPTT_OK) {
      c.op = op, c.dt = a->dtype, c.alpha = alpha;
      ts[0] = out, ts[1] = &ea, ts[2] = &eb;
      nd_run(3, ts, row_binary, &c);
      bptt_tensor_release(&eb);
    }
    bptt_tensor_release(&ea);
  }
  if (copied_a) bptt_tensor_release(&ca);
  if (copied_b) bptt_tensor_release(&cb);
  return err;
}

/* ------------------------------------------------------------ unary ops */

typedef struct {
  bptt_unop op;
  int dt;
  double a, b;
} un_ctx;

/* o[i] = EXPR(x_) over a row */
#define ROW2(T, EXPR)                                                                                                  \
  do {                                                                                                                 \
    T *o = (T *)p[0];                                                                                                  \
    const T *x = (const T *)p[1];                                                                                      \
    int64_t i, so = s[0], sx = s[1];                                                                                   \
    if (so == 1 && sx == 1) {                                                                                          \
      for (i = 0; i < n; i++) {                                                                                        \
        T x_ = x[i];                                                                                                   \
        o[i] = EXPR;                                                                                                   \
      }                                                                                                                \
    } else {                                                                                                           \
      for (i = 0; i < n; i++) {                                                                                        \
        T x_ = x[i * sx];                                                                                              \
        o[i * so] = EXPR;                                                                                              \
      }                                                                                                                \
    }                                                                                                                  \
  } while (0)

static double sigmoid(double x) {
  double e;
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  e = exp(x);
  return e / (1.0 + e);
}

static double sign_of(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x; /* +-0 and NaN stay */ }

/* x^k for whole k >= 0, wrapping modulo 2^32 (square and multiply) */
static int32_t ipow(int32_t x, int64_t k) {
  int64_t r = 1, b = x;
  while (k > 0) {
    if (k & 1) r = wrap32(r * b);
    b = wrap32(b * b);
    k >>= 1;
  }
  return (int32_t)r;
}

static void row_unary(const void *vc, char *const *p, const int64_t *s, int64_t n) {
  const un_ctx *c = vc;
  if (c->dt == BPTT_FLOAT32) {
    float lo = (float)c->a, hi = (float)c->b, e = (float)c->a;
    switch (c->op) {
      case BPTT_UN_EXP:
        ROW2(float, expf(x_));
        break;
      case BPTT_UN_LOG:
        ROW2(float, logf(x_));
        break;
      case BPTT_UN_TANH:
        ROW2(float, bptt_tanhf(x_));
        break;
      case BPTT_UN_SIGMOID:
        ROW2(float, bptt_sigmoidf(x_));
        break;
      case BPTT_UN_SQRT:
        ROW2(float, sqrtf(x_));
        break;
      case BPTT_UN_POW:
        if (e == 2.0f)
          ROW2(float, x_ *x_);
        else
          ROW2(float, powf(x_, e));
        break;
      case BPTT_UN_RELU:
        ROW2(float, x_ > 0.0f || x_ != x_ ? x_ : 0.0f);
        break;
      case BPTT_UN_ABS:
        ROW2(float, fabsf(x_));
        break;
      case BPTT_UN_SIGN:
        ROW2(float, (float)sign_of(x_));
        break;
      case BPTT_UN_CLAMP:
        ROW2(float, x_ != x_ ? x_ : (x_ < lo ? lo : x_) > hi ? hi : (x_ < lo ? lo : x_));
        break;
      case BPTT_UN_NEG:
        ROW2(float, -x_);
        break;
    }
  } else if (c->dt == BPTT_FLOAT64) {
    double lo = c->a, hi = c->b, e = c->a;
    switch (c->op) {
      case BPTT_UN_EXP:
        ROW2(double, exp(x_));
        break;
      case BPTT_UN_LOG:
        ROW2(double, log(x_));
        break;
      case BPTT_UN_TANH:
        ROW2(double, tanh(x_));
        break;
      case BPTT_UN_SIGMOID:
        ROW2(double, sigmoid(x_));
        break;
      case BPTT_UN_SQRT:
        ROW2(double, sqrt(x_));
        break;
      case BPTT_UN_POW:
        if (e == 2.0)
          ROW2(double, x_ *x_);
        else
          ROW2(double, pow(x_, e));
        break;
      case BPTT_UN_RELU:
        ROW2(double, x_ > 0.0 || x_ != x_ ? x_ : 0.0);
        break;
      case BPTT_UN_ABS:
        ROW2(double, fabs(x_));
        break;
      case BPTT_UN_SIGN:
        ROW2(double, sign_of(x_));
        break;
      case BPTT_UN_CLAMP:
        ROW2(double, x_ != x_ ? x_ : (x_ < lo ? lo : x_) > hi ? hi : (x_ < lo ? lo : x_));
        break;
      case BPTT_UN_NEG:
        ROW2(double, -x_);
        break;
    }
  } else {
    /* bounds already rounded inward to whole numbers within int32 */
    int32_t lo = (int32_t)c->a, hi = (int32_t)c->b;
    int64_t k = (int64_t)c->a;
    switch (c->op) {
      case BPTT_UN_POW:
        ROW2(int32_t, ipow(x_, k));
        break;
      case BPTT_UN_RELU:
        ROW2(int32_t, x_ > 0 ? x_ : 0);
        break;
      case BPTT_UN_ABS:
        ROW2(int32_t, wrap32(x_ < 0 ? -(int64_t)x_ : x_));
        break;
      case BPTT_UN_SIGN:
        ROW2(int32_t, (int32_t)((x_ > 0) - (x_ < 0)));
        break;
      case BPTT_UN_CLAMP:
        ROW2(int32_t, (x_ < lo ? lo : x_) > hi ? hi : (x_ < lo ? lo : x_));
        break;
      case BPTT_UN_NEG:
        ROW2(int32_t, wrap32(-(int64_t)x_));
        break;
      default:
        break;
    }
  }
}

int bptt_tensor_unary(const bptt_tensor *out, const bptt_tensor *src, bptt_unop op, double a, double b) {
  un_ctx c;
  bptt_tensor tmp;
  const bptt_tensor *ts[2];
  int err, copied = 0;
  if (out->dtype != src->dtype || !bptt_tensor_same_shape(out, src))
    return out->dtype != src->dtype ? BPTT_EDTYPE : BPTT_ESHAPE;
  if (src->dtype == BPTT_INT32) {
    if (op < BPTT_UN_RELU && op != BPTT_UN_POW) return BPTT_EDTYPE;
    if (op == BPTT_UN_POW && !(a == floor(a) && a >= 0 && a < 9007199254740992.0)) return BPTT_EDTYPE;
    if (op == BPTT_UN_CLAMP) { /* the int32 range of [a, b]: ceil(a), floor(b) */
      a = a != a ? a : ceil(a), b = b != b ? b : floor(b);
      a = a < -2147483648.0 ? -2147483648.0 : a > 2147483647.0 ? 2147483647.0 : a;
      b = b < -2147483648.0 ? -2147483648.0 : b > 2147483647.0 ? 2147483647.0 : b;
      if (a != a || b != b) return BPTT_EARG;
    }
  }
  if (may_overlap(out, src) && !same_elements(out, src)) {
    if ((err = copy_of(&tmp, src)) != BPTT_OK) return err;
    src = &tmp, copied = 1;
  }
  c.op = op, c.dt = src->dtype, c.a = a, c.b = b;
  ts[0] = out, ts[1] = src;
  nd_run(2, ts, row_unary, &c);
  if (copied) bptt_tensor_release(&tmp);
  return BPTT_OK;
}

/* ---------------------------------------------------------------- stats */

typedef struct {
  int dt;
  int64_t nan;
  double min, max, sum;
  int64_t count;
} stats_ctx;

static void row_stats(const void *vc, char *const *p, const int64_t *s, int64_t n) {
  stats_ctx *c = (stats_ctx *)(uintptr_t)vc; /* sequential: nd_run_seq */
  double v[256];
  int64_t i, done = 0;
  while (done < n) {
    int64_t m = n - done < 256 ? n - done : 256;
    for (i = 0; i < m; i++) {
      const char *q = p[0] + (done + i) * s[0] * (int64_t)bptt_dtype_size((bptt_dtype)c->dt);
      v[i] = c->dt == BPTT_FLOAT32   ? *(const float *)q
             : c->dt == BPTT_FLOAT64 ? *(const double *)q
                                     : *(const int32_t *)q;
    }
    for (i = 0; i < m; i++) {
      if (v[i] != v[i]) {
        c->nan++;
        continue;
      }
      if (c->count == 0 || v[i] < c->min) c->min = v[i];
      if (c->count == 0 || v[i] > c->max) c->max = v[i];
      c->sum += v[i];
      c->count++;
    }
    done += m;
  }
}

void bptt_tensor_stats(const bptt_tensor *t, int64_t *nan_count, double *min, double *max, double *mean) {
  stats_ctx c;
  nd_job J;
  const bptt_tensor *ts[1];
  memset(&c, 0, sizeof c);
  c.dt = t->dtype;
  ts[0] = t;
  nd_init(&J, 1, ts, row_stats, &c);
  if (J.total > 0) nd_range(&J, 0, J.total); /* one thread: c accumulates */
  *nan_count = c.nan;
  *min = c.count ? c.min : NAN;
  *max = c.count ? c.max : NAN;
  *mean = c.count ? c.sum / (double)c.count : NAN;
}

/* ------------------------------------------------- lines along a dimension */

void bptt_line_load(const bptt_tensor *t, int64_t off, int64_t stride, int64_t n, double *out) {
  int64_t i;
  if (t->dtype == BPTT_FLOAT32) {
    const float *p = (const float *)t->storage->data + off;
    for (i = 0; i < n; i++) out[i] = p[i * stride];
  } else if (t->dtype == BPTT_FLOAT64) {
    const double *p = (const double *)t->storage->data + off;
    for (i = 0; i < n; i++) out[i] = p[i * stride];
  } else {
    const int32_t *p = (const int32_t *)t->storage->data + off;
    for (i = 0; i < n; i++) out[i] = p[i * stride];
  }
}

void bptt_line_store(const bptt_tensor *t, int64_t off, int64_t stride, int64_t n, const double *in) {
  int64_t i;
  if (t->dtype == BPTT_FLOAT32) {
    float *p = (float *)t->storage->data + off;
    for (i = 0; i < n; i++) p[i * stride] = (float)in[i];
  } else if (t->dtype == BPTT_FLOAT64) {
    double *p = (double *)t->storage->data + off;
    for (i = 0; i < n; i++) p[i * stride] = in[i];
  } else {
    int32_t *p = (int32_t *)t->storage->data + off;
    for (i = 0; i < n; i++) p[i * stride] = (int32_t)in[i];
  }
}

typedef struct {
  bptt_tensor oa, ob; /* a and b without dim */
  int has_b;
  int64_t nlines, len;
  bptt_line_fn fn;
  void *ctx;
  int err[BPTT_MAX_THREADS];
} lines_job;

static int lines_range(lines_job *J, int tid, int64_t lo, int64_t hi) {
  int64_t idx[BPTT_MAXDIM], rem = lo, i, offa, offb;
  int d, nd = J->oa.ndim, err;
  if (lo >= hi) return BPTT_OK;
  for (d = nd - 1; d >= 0; d--) idx[d] = rem % J->oa.size[d], rem /= J->oa.size[d];
  offa = J->oa.offset, offb = J->has_b ? J->ob.offset : 0;
  for (d = 0; d < nd; d++) offa += idx[d] * J->oa.stride[d], offb += J->has_b ? idx[d] * J->ob.stride[d] : 0;
  for (i = lo; i < hi; i++) {
    if ((err = J->fn(J->ctx, tid, i, offa, offb)) != BPTT_OK) return err;
    for (d = nd - 1; d >= 0; d--) {
      offa += J->oa.stride[d], offb += J->has_b ? J->ob.stride[d] : 0;
      if (++idx[d] < J->oa.size[d]) break;
      offa -= J->oa.size[d] * J->oa.stride[d], offb -= J->has_b ? J->oa.size[d] * J->ob.stride[d] : 0;
      idx[d] = 0;
    }
  }
  return BPTT_OK;
}

static void lines_task(void *ctx, int tid, int nt) {
  lines_job *J = ctx;
  long long lo, hi;
  bptt_parallel_range(J->nlines, 1, tid, nt, &lo, &hi);
  J->err[tid] = lines_range(J, tid, lo, hi);
}

/* the header of t without dimension dim (a select, without the range check) */
static void drop_dim(bptt_tensor *dst, const bptt_tensor *t, int dim) {
  int d;
  *dst = *t;
  for (d = dim; d < t->ndim - 1; d++) dst->size[d] = t->size[d + 1], dst->stride[d] = t->stride[d + 1];
  dst->ndim = t->ndim - 1;
}

int bptt_tensor_lines(const bptt_tensor *a, const bptt_tensor *b, int dim, bptt_line_fn fn, void *ctx) {
  lines_job J;
  int t, nt = bptt_parallel_threads();
  if (dim < 0 || dim >= a->ndim) return BPTT_EARG;
  drop_dim(&J.oa, a, dim);
  J.has_b = b != NULL;
  if (b) drop_dim(&J.ob, b, dim);
  J.nlines = bptt_tensor_numel(&J.oa);
  J.len = a->size[dim];
  J.fn = fn, J.ctx = ctx;
  if (J.nlines == 0) return BPTT_OK;
  if (nt > 1 && J.nlines > 1 && J.nlines * (J.len + 1) >= PAR_MIN) {
    int used;
    for (t = 0; t < BPTT_MAX_THREADS; t++) J.err[t] = BPTT_OK;
    used = bptt_parallel_run(lines_task, &J, nt);
    for (t = 0; t < used; t++)
      if (J.err[t]) return J.err[t];
    return BPTT_OK;
  }
  return lines_range(&J, 0, 0, J.nlines);
}

/* ------------------------------------------------------------- reductions */

typedef struct {
  const bptt_tensor *src, *values, *indices, *dst;
  int dim, log;
  bptt_dimop op;
} red_job;

/* (value, index) of the max (sign 1) or min (-1) of x[0..n): the first NaN,
 * else the first extreme value. */
static void extreme(const double *x, int64_t n, int sign, double *v, int64_t *at) {
  int64_t i, best = 0;
  double bv = x[0];
  for (i = 1; i < n && bv == bv; i++) {
    double y = x[i];
    if (y != y || (sign > 0 ? y > bv : y < bv)) bv = y, best = i;
  }
  *v = bv, *at = best;
}

static double logsumexp(const double *x, int64_t n) {
  double m, s = 0;
  int64_t i, at;
  if (n == 0) return -INFINITY;
  extreme(x, n, 1, &m, &at);
  if (m != m || m == INFINITY || m == -INFINITY) return m;
  for (i = 0; i < n; i++) s += exp(x[i] - m);
  return m + log(s);
}

static int reduce_line(void *ctx, int tid, int64_t i, int64_t off, int64_t unused) {
  const red_job *R = ctx;
  int64_t n = R->src->size[R->dim], k, at = 0;
  double *x = bptt_parallel_scratch(tid, (size_t)(n > 0 ? n : 1) * sizeof(double)), v = 0;
  (void)unused;
  if (x == NULL) return BPTT_ENOMEM;
  bptt_line_load(R->src, off, R->src->stride[R->dim], n, x);
  switch (R->op) {
    case BPTT_DIM_SUM:
    case BPTT_DIM_MEAN:
      for (k = 0; k < n; k++) v += x[k];
      if (R->op == BPTT_DIM_MEAN) v = n > 0 ? v / (double)n : NAN;
      if (R->src->dtype == BPTT_INT32) v = (double)wrap32((int64_t)v);
      break;
    case BPTT_DIM_NORM:
      for (k = 0; k < n; k++) v += x[k] * x[k];
      v = sqrt(v);
      break;
    case BPTT_DIM_LOGSUMEXP:
      v = logsumexp(x, n);
      break;
    case BPTT_DIM_MAX:
      extreme(x, n, 1, &v, &at);
      break;
    case BPTT_DIM_MIN:
      extreme(x, n, -1, &v, &at);
      break;
  }
  if (R->values) bptt_line_store(R->values, R->values->offset + i, 1, 1, &v);
  if (R->indices) ((int32_t *)bptt_tensor_data(R->indices))[i] = (int32_t)at;
  return BPTT_OK;
}

static int same_outer(const bptt_tensor *o, const bptt_tensor *src, int dim) {
  bptt_tensor h;
  drop_dim(&h, src, dim);
  return bptt_tensor_same_shape(o, &h) && bptt_tensor_is_contiguous(o);
}

int bptt_tensor_reduce_dim(const bptt_tensor *values, const bptt_tensor *indices, const bptt_tensor *src, int dim,
                           bptt_dimop op) {
  red_job R;
  if (dim < 0 || dim >= src->ndim) return BPTT_EARG;
  if ((values && (!same_outer(values, src, dim) || values->dtype != src->dtype)) ||
      (indices && (!same_outer(indices, src, dim) || indices->dtype != BPTT_INT32)))
    return BPTT_ESHAPE;
  if (src->dtype == BPTT_INT32 && (op == BPTT_DIM_MEAN || op == BPTT_DIM_NORM || op == BPTT_DIM_LOGSUMEXP))
    return BPTT_EDTYPE;
  if ((op == BPTT_DIM_MAX || op == BPTT_DIM_MIN) && src->size[dim] == 0) return BPTT_EARG;
  R.src = src, R.values = values, R.indices = indices, R.dim = dim, R.op = op, R.dst = NULL, R.log = 0;
  return bptt_tensor_lines(src, NULL, dim, reduce_line, &R);
}

/* softmax_i = e^(x_i - m) / s, log_softmax_i = x_i - m - log s, with
 * s = sum_j e^(x_j - m) and m the maximum (NaN in, NaN out; all -inf
 * gives NaN, as PyTorch) */
static int softmax_line(void *ctx, int tid, int64_t i, int64_t off, int64_t doff) {
  const red_job *R = ctx;
  int64_t n = R->src->size[R->dim], k, at;
  double *x = bptt_parallel_scratch(tid, (size_t)(n > 0 ? n : 1) * sizeof(double)), m, s = 0;
  (void)i;
  if (x == NULL) return BPTT_ENOMEM;
  if (n == 0) return BPTT_OK;
  bptt_line_load(R->src, off, R->src->stride[R->dim], n, x);
  extreme(x, n, 1, &m, &at);
  for (k = 0; k < n; k++) s += exp(x[k] - m);
  if (R->log) {
    double ls = log(s);
    for (k = 0; k < n; k++) x[k] = (x[k] - m) - ls;
  } else {
    for (k = 0; k < n; k++) x[k] = exp(x[k] - m) / s;
  }
  bptt_line_store(R->dst, doff, R->dst->stride[R->dim], n, x);
  return BPTT_OK;
}

int bptt_tensor_softmax(const bptt_tensor *dst, const bptt_tensor *src, int dim, int log) {
  red_job R;
  if (dim < 0 || dim >= src->ndim) return BPTT_EARG;
  if (src->dtype == BPTT_INT32 || dst->dtype != src->dtype) return BPTT_EDTYPE;
  if (!bptt_tensor_same_shape(dst, src) || !bptt_tensor_is_contiguous(dst)) return BPTT_ESHAPE;
  if (dst->storage == src->storage) return BPTT_EARG;
  R.src = src, R.dst = dst, R.dim = dim, R.log = log, R.values = R.indices = NULL, R.op = BPTT_DIM_SUM;
  return bptt_tensor_lines(src, dst, dim, softmax_line, &R);
}
