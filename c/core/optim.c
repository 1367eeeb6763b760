/*
 * optim.c -- the optimizer steps and clipping kernels of optim.h.
 *
 * The kernels are written once, in the second half of this file, over a type
 * `real`, and the file includes itself twice to instantiate them: float with
 * the _f32 suffix and double with _f64 (the same scheme as nn.c/nn_impl.h,
 * kept in one file so that one concept stays one file).
 *
 * Each step is one loop over the flat buffers (restrict: they never overlap,
 * the binding checks it).  The loops with a sqrt vectorize only when built
 * with -fno-math-errno (GCC otherwise guards each sqrt for errno; Adam is
 * then ~30% slower).  Per element each step follows the order of operations of PyTorch's in-place ops (mul_ then add_, addcmul_ as
 * self + (value t1) t2, addcdiv_ as self + (value t1) / t2), so float64
 * results agree with torch.optim to the last bit or two.
 */
#ifndef BPTT_OPTIM_INSTANTIATE

#include "activations.h" /* BPTT_KERNEL */
#include "optim.h"
#include "parallel.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* elements from which a pass is split over the library's threads: where a
 * second thread saves more than waking it costs (~2-4 us).  Measured with
 * the AVX-512 clones on 2 threads (1 thread -> 2 threads): Adam 13.9 -> 10.7
 * us at 64K elements; grad_norm 7.1 -> 7.8 us at 64K, 27 -> 19 at 256K;
 * grad_scale 10.4 -> 9.7 us at 256K, 49 -> 31 at 1M. */
#define PARALLEL_MIN 65536 /* Adam */
#define NORM_PARALLEL_MIN 65536
#define SCALE_PARALLEL_MIN 262144

/* grad_norm sums in chunks of NORM_CHUNK elements counted from the start of
 * g, each chunk into NORM_LANES partial sums; NORM_GROUP chunk sums are kept
 * at a time (for each parallel region) */
#define NORM_CHUNK 4096
#define NORM_LANES 16
#define NORM_GROUP 256

/* In grad_norm's norm_chunk (g, n, i, k, acc, mx): acc[k] += term for every
 * element of the chunk, term being of x = g[j] as a double, element j in lane
 * k = j % NORM_LANES; and mx[k] = max(mx[k], bits of |g[j]|), as BITS. */
#define NORM_SUM(term)                                \
  do {                                                \
    for (i = 0; i + NORM_LANES <= n; i += NORM_LANES) \
      for (k = 0; k < NORM_LANES; k++) {              \
        double x = (double)g[i + k];                  \
        acc[k] += (term);                             \
      }                                               \
    for (k = 0; i + k < n; k++) {                     \
      double x = (double)g[i + k];                    \
      acc[k] += (term);                               \
    }                                                 \
  } while (0)
#define NORM_MAX(j, k)                 \
  do {                                 \
    BITS b_;                           \
    memcpy(&b_, &g[j], sizeof b_);     \
    b_ &= BITS_ABS;                    \
    mx[k] = b_ > mx[k] ? b_ : mx[k];   \
  } while (0)

/* finite and >= 0 (false for NaN) */
static int nonneg(double x) { return x >= 0 && x <= DBL_MAX; }
/* in [0, 1) and [0, 1] */
static int unit_open(double x) { return x >= 0 && x < 1; }
static int unit_closed(double x) { return x >= 0 && x <= 1; }

static int sgd_hp_ok(const bptt_sgd_hp *hp) {
  if (!hp || !nonneg(hp->lr) || !nonneg(hp->momentum) || !unit_closed(hp->dampening) || !nonneg(hp->weight_decay))
    return 0;
  return !hp->nesterov || (hp->momentum > 0 && hp->dampening == 0);
}

static int adam_hp_ok(const bptt_adam_hp *hp) {
  return hp && nonneg(hp->lr) && unit_open(hp->beta1) && unit_open(hp->beta2) && nonneg(hp->eps) &&
         nonneg(hp->weight_decay);
}

static int adagrad_hp_ok(const bptt_adagrad_hp *hp) {
  return hp && nonneg(hp->lr) && nonneg(hp->lr_decay) && nonneg(hp->weight_decay) && nonneg(hp->eps);
}

static int rmsprop_hp_ok(const bptt_rmsprop_hp *hp) {
  return hp && nonneg(hp->lr) && unit_closed(hp->alpha) && nonneg(hp->eps) && nonneg(hp->weight_decay) &&
         nonneg(hp->momentum);
}

/* double -> float saturating at +-inf (a plain cast of a finite double beyond
 * FLT_MAX is undefined behaviour); the identity for double. */
static float to_f32(double x) { return x > FLT_MAX ? (float)INFINITY : x < -FLT_MAX ? -(float)INFINITY : (float)x; }
static double to_f64(double x) { return x; }

/* n >= 0, and the buffers that must exist do when there are elements */
static int bufs_ok(int64_t n, const void *p, const void *g) { return n >= 0 && (n == 0 || (p && g)); }

/* ------------------------------------------------- float32 instantiation */
#define BPTT_OPTIM_INSTANTIATE
#define real float
#define FN(name) name##_f32
#define SQRT sqrtf
#define R to_f32
#define BITS int32_t                  /* an integer of real's width */
#define BITS_ABS INT32_MAX            /* its bits but the sign */
#define BITS_INF INT32_C(0x7f800000)  /* +inf; a NaN's (sign cleared) are above */
#include "optim.c"
#undef real
#undef FN
#undef SQRT
#undef R
#undef BITS
#undef BITS_ABS
#undef BITS_INF

/* ------------------------------------------------- float64 instantiation */
#define real double
#define FN(name) name##_f64
#define SQRT sqrt
#define R to_f64
#define BITS int64_t
#define BITS_ABS INT64_MAX
#define BITS_INF INT64_C(0x7ff0000000000000)
#include "optim.c"
#undef real
#undef FN
#undef SQRT
#undef R
#undef BITS
#undef BITS_ABS
#undef BITS_INF

#else /* BPTT_OPTIM_INSTANTIATE: the kernels, over `real`, FN(), SQRT, R(), BITS */

/* ------------------------------------------------------------------ SGD */

/* d = g + wd p;  buf = d (first) or mom buf + (1 - damp) d;
 * d = nesterov ? d + mom buf : buf;  p = p - lr d */
int FN(bptt_sgd_step)(real *restrict p, const real *restrict g, real *restrict buf, int64_t n,
                      const bptt_sgd_hp *hp, int init_buf) {
  int64_t i;
  real neg_lr, wd, mom, keep;
  int use_wd, use_mom, nesterov;
  if (!bufs_ok(n, p, g) || !sgd_hp_ok(hp)) return BPTT_EARG;
  use_mom = hp->momentum != 0;
  if (use_mom && n && !buf) return BPTT_EARG;
  neg_lr = R(-hp->lr), wd = R(hp->weight_decay), mom = R(hp->momentum);
  keep = R(1 - hp->dampening);
  use_wd = hp->weight_decay != 0, nesterov = hp->nesterov;
  for (i = 0; i < n; i++) {
    real d = g[i];
    if (use_wd) d = d + wd * p[i];
    if (use_mom) {
      real b = init_buf ? d : buf[i] * mom + keep * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] = p[i] + neg_lr * d;
  }
  return BPTT_OK;
}

/* ----------------------------------------------------------- Adam, AdamW */

/* m = b1 m + (1 - b1) d;  v = b2 v + (1 - b2) d^2;  (vmax = max(vmax, v))
 * p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
/* One Adam step over [lo, hi): the buffers and the coefficients, computed
 * once (in double, applied in real) for all the threads of a step. */
typedef struct {
  real *p, *m, *v, *vmax;
  const real *g;
  int64_t n;
  real b1, b2, c1, c2, eps, wd, decay, neg_step, bc2_sqrt;
  int use_wd, decoupled;
} FN(adam_job);

BPTT_KERNEL_VOID(FN(adam_range), (const FN(adam_job) *a, int64_t lo, int64_t hi),
                 (a, lo, hi)) {
  real *restrict p = a->p, *restrict m = a->m, *restrict v = a->v, *restrict vmax = a->vmax;
  const real *restrict g = a->g;
  const real b1 = a->b1, b2 = a->b2, c1 = a->c1, c2 = a->c2, eps = a->eps, wd = a->wd;
  const real decay = a->decay, neg_step = a->neg_step, bc2_sqrt = a->bc2_sqrt;
  const int use_wd = a->use_wd, decoupled = a->decoupled;
  int64_t i;
  for (i = lo; i < hi; i++) {
    real d = g[i], pi = p[i], mi, vi;
    if (decoupled) pi = pi * decay; /* AdamW: p (1 - lr wd), before the moments */
    else if (use_wd) d = d + wd * pi; /* Adam: L2 penalty in the gradient */
    mi = m[i] * b1 + c1 * d;
    vi = v[i] * b2 + c2 * d * d;
    m[i] = mi, v[i] = vi;
    if (vmax) {
      real w = vmax[i];
      w = (vi > w || vi != vi) ? vi : w; /* torch.maximum: NaN wins */
      vmax[i] = w, vi = w;
    }
    p[i] = pi + neg_step * mi / (SQRT(vi) / bc2_sqrt + eps);
  }
}

/* the elements split over the team: each is updated alone, so the split
 * changes nothing in the result */
static void FN(adam_task)(void *ctx, int tid, int nt) {
  const FN(adam_job) *a = ctx;
  long long lo, hi;
  bptt_parallel_range(a->n, 64, tid, nt, &lo, &hi);
  FN(adam_range)(a, lo, hi);
}

int FN(bptt_adam_step)(real *restrict p, const real *restrict g, real *restrict m, real *restrict v,
                       real *restrict vmax, int64_t n, int64_t t, const bptt_adam_hp *hp) {
  double bc1, bc2;
  FN(adam_job) a;
  if (!bufs_ok(n, p, g) || !adam_hp_ok(hp) || t < 1) return BPTT_EARG;
  if (n && (!m || !v)) return BPTT_EARG;
  bc1 = 1 - pow(hp->beta1, (double)t);
  bc2 = 1 - pow(hp->beta2, (double)t);
  a.p = p, a.g = g, a.m = m, a.v = v, a.vmax = vmax, a.n = n;
  a.neg_step = R(-(hp->lr / bc1));
  a.bc2_sqrt = R(sqrt(bc2));
  a.b1 = R(hp->beta1), a.b2 = R(hp->beta2);
  a.c1 = R(1 - hp->beta1), a.c2 = R(1 - hp->beta2);
  a.eps = R(hp->eps);
  a.wd = R(hp->weight_decay);
  a.decay = R(1 - hp->lr * hp->weight_decay);
  a.decoupled = hp->decoupled != 0;
  a.use_wd = !a.decoupled && hp->weight_decay != 0;
  if (n >= PARALLEL_MIN) bptt_parallel_run(FN(adam_task), &a, bptt_parallel_threads());
  else FN(adam_range)(&a, 0, n);
  return BPTT_OK;
}

/* -------------------------------------------------------------- Adagrad */

/* sum = sum + d^2;  p = p - lr / (1 + (t - 1) lr_decay) * d / (sqrt(sum) + eps) */
int FN(bptt_adagrad_step)(real *restrict p, const real *restrict g, real *restrict sum, int64_t n, int64_t t,
                          const bptt_adagrad_hp *hp) {
  int64_t i;
  real neg_clr, wd, eps;
  int use_wd;
  if (!bufs_ok(n, p, g) || !adagrad_hp_ok(hp) || t < 1) return BPTT_EARG;
  if (n && !sum) return BPTT_EARG;
  neg_clr = R(-(hp->lr / (1 + (double)(t - 1) * hp->lr_decay)));
  wd = R(hp->weight_decay), eps = R(hp->eps);
  use_wd = hp->weight_decay != 0;
  for (i = 0; i < n; i++) {
    real d = g[i], s;
    if (use_wd) d = d + wd * p[i];
    s = sum[i] + d * d;
    sum[i] = s;
    p[i] = p[i] + neg_clr * d / (SQRT(s) + eps);
  }
  return BPTT_OK;
}

/* -------------------------------------------------------------- RMSprop */

/* sq = a sq + (1 - a) d^2;  (ga = a ga + (1 - a) d);  avg = sqrt(sq (- ga^2)) + eps
 * buf = mom buf + d / avg, p = p - lr buf   or   p = p - lr d / avg */
int FN(bptt_rmsprop_step)(real *restrict p, const real *restrict g, real *restrict sq, real *restrict ga,
                          real *restrict buf, int64_t n, const bptt_rmsprop_hp *hp) {
  int64_t i;
  real a, c, neg_lr, wd, eps, mom;
  int use_wd, use_mom;
  if (!bufs_ok(n, p, g) || !rmsprop_hp_ok(hp)) return BPTT_EARG;
  use_mom = hp->momentum > 0;
  if (n && (!sq || (use_mom && !buf))) return BPTT_EARG;
  a = R(hp->alpha), c = R(1 - hp->alpha);
  neg_lr = R(-hp->lr), wd = R(hp->weight_decay), eps = R(hp->eps), mom = R(hp->momentum);
  use_wd = hp->weight_decay != 0;
  for (i = 0; i < n; i++) {
    real d = g[i], s, avg;
    if (use_wd) d = d + wd * p[i];
    s = sq[i] * a + c * d * d;
    sq[i] = s;
    if (ga) {
      real gi = ga[i] * a + c * d;
      ga[i] = gi;
      avg = SQRT(s - gi * gi) + eps;
    } else {
      avg = SQRT(s) + eps;
    }
    if (use_mom) {
      real b = buf[i] * mom + d / avg;
      buf[i] = b;
      p[i] = p[i] + neg_lr * b;
    } else {
      p[i] = p[i] + neg_lr * d / avg;
    }
  }
  return BPTT_OK;
}

/* ------------------------------------------------------------- clipping */

/* sum += sum |g / scale|^p (p finite);  amax = max(amax, max |g|), NaN sticks.
 *
 * The sum does not depend on how many threads take part: chunk c holds the
 * elements [c NORM_CHUNK, (c + 1) NORM_CHUNK) of g, its NORM_LANES partial
 * sums (independent additions, which vectorize) are added in a fixed tree,
 * and the chunk sums in chunk order, whichever thread computed them.  The
 * maximum is one of the elements' bit patterns with the sign cleared: they
 * order like the magnitudes, +inf above every finite value and a NaN above
 * +inf (an integer maximum vectorizes where a NaN-keeping float one does not). */
typedef struct {
  const real *g;
  int64_t n; /* this group's elements: at most NORM_GROUP chunks */
  int mode;  /* 0 p = inf (no sum), 1 p = 1, 2 p = 2, 3 other */
  double p, inv;
  double part[NORM_GROUP];   /* the chunk sums */
  BITS mx[BPTT_MAX_THREADS]; /* each thread's largest |g| (bits) */
} FN(norm_job);

/* One chunk g (n <= NORM_CHUNK): returns its sum, *top = max(*top, its
 * largest |g| bits).  Two passes over the chunk (it stays in the L1 cache):
 * a sum and a maximum each vectorize alone, not together. */
BPTT_KERNEL(double, FN(norm_chunk),
            (const real *restrict g, int64_t n, int mode, double p, double inv, BITS *top),
            (g, n, mode, p, inv, top)) {
  double acc[NORM_LANES] = {0};
  BITS mx[NORM_LANES] = {0};
  int64_t i, k;
  switch (mode) {
    case 2: NORM_SUM((x * inv) * (x * inv)); break; /* = (|x| inv)^2 exactly */
    case 1: NORM_SUM(fabs(x) * inv); break;
    case 3: NORM_SUM(pow(fabs(x) * inv, p)); break;
    default: break; /* p = inf: the maximum alone */
  }
  for (k = NORM_LANES / 2; k > 0; k /= 2) {
    for (i = 0; i < k; i++) acc[i] += acc[i + k];
  }
  for (i = 0; i + NORM_LANES <= n; i += NORM_LANES)
    for (k = 0; k < NORM_LANES; k++) NORM_MAX(i + k, k);
  for (k = 0; i + k < n; k++) NORM_MAX(i + k, k);
  for (k = 0; k < NORM_LANES; k++) *top = mx[k] > *top ? mx[k] : *top;
  return acc[0];
}

/* the group's chunks split over the team, in runs of whole chunks */
static void FN(norm_task)(void *ctx, int tid, int nt) {
  FN(norm_job) *a = ctx;
  long long lo, hi, c;
  BITS top = 0;
  bptt_parallel_range((a->n + NORM_CHUNK - 1) / NORM_CHUNK, 1, tid, nt, &lo, &hi);
  for (c = lo; c < hi; c++) {
    int64_t off = c * NORM_CHUNK, len = a->n - off < NORM_CHUNK ? a->n - off : NORM_CHUNK;
    a->part[c] = FN(norm_chunk)(a->g + off, len, a->mode, a->p, a->inv, &top);
  }
  a->mx[tid] = top;
}

int FN(bptt_grad_norm)(const real *g, int64_t n, double p, double scale, double *sum, double *amax) {
  FN(norm_job) a;
  int64_t off, len;
  double total = 0;
  BITS top = 0;
  real big;
  if (n < 0 || (n && !g) || !sum || !amax || !(p > 0) || !(scale > 0 && scale <= DBL_MAX)) return BPTT_EARG;
  a.inv = 1 / scale, a.p = p;
  a.mode = p > DBL_MAX ? 0 : p == 1 ? 1 : p == 2 ? 2 : 3;
  /* a group of up to NORM_GROUP chunks at a time (one region), its chunk sums
   * then added in order */
  for (off = 0; off < n; off += len) {
    int64_t c, chunks;
    int k, nt = 1;
    len = n - off < (int64_t)NORM_CHUNK * NORM_GROUP ? n - off : (int64_t)NORM_CHUNK * NORM_GROUP;
    chunks = (len + NORM_CHUNK - 1) / NORM_CHUNK;
    a.g = g + off, a.n = len;
    if (len >= NORM_PARALLEL_MIN) nt = bptt_parallel_run(FN(norm_task), &a, bptt_parallel_threads());
    else FN(norm_task)(&a, 0, 1);
    for (c = 0; c < chunks; c++) total += a.part[c];
    for (k = 0; k < nt; k++) top = a.mx[k] > top ? a.mx[k] : top;
  }
  if (a.mode != 0) *sum += total;
  memcpy(&big, &top, sizeof big);
  if (*amax != *amax || top > BITS_INF) *amax = (double)NAN;
  else if (n > 0 && (double)big > *amax) *amax = (double)big;
  return BPTT_OK;
}

/* g *= s, each element alone: split over the team, bit for bit the same */
typedef struct {
  real *g;
  int64_t n;
  real k;
} FN(scale_job);

BPTT_KERNEL_VOID(FN(scale_range), (real *restrict g, int64_t lo, int64_t hi, real k),
                 (g, lo, hi, k)) {
  int64_t i;
  for (i = lo; i < hi; i++) g[i] = g[i] * k;
}

static void FN(scale_task)(void *ctx, int tid, int nt) {
  const FN(scale_job) *a = ctx;
  long long lo, hi;
  bptt_parallel_range(a->n, 64, tid, nt, &lo, &hi);
  FN(scale_range)(a->g, lo, hi, a->k);
}

int FN(bptt_grad_scale)(real *g, int64_t n, double s) {
  FN(scale_job) a;
  if (n < 0 || (n && !g)) return BPTT_EARG;
  a.g = g, a.n = n, a.k = R(s);
  if (n >= SCALE_PARALLEL_MIN) bptt_parallel_run(FN(scale_task), &a, bptt_parallel_threads());
  else FN(scale_task)(&a, 0, 1);
  return BPTT_OK;
}

/* g = clamp(g, -v, v); NaN elements stay NaN (as torch.clamp) */
int FN(bptt_grad_clamp)(real *g, int64_t n, double v) {
  int64_t i;
  real hi, lo;
  if (n < 0 || (n && !g) || !(v >= 0)) return BPTT_EARG;
  hi = R(v);
  lo = -hi;
  for (i = 0; i < n; i++) {
    real x = g[i];
    if (x > hi) g[i] = hi;
    else if (x < lo) g[i] = lo;
  }
  return BPTT_OK;
}

#endif /* BPTT_OPTIM_INSTANTIATE */
