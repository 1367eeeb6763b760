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

#include "optim.h"
#include "parallel.h"

#include <float.h>
#include <math.h>

/* elements from which a step is split over the library's threads */
#define PARALLEL_MIN 65536

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
#include "optim.c"
#undef real
#undef FN
#undef SQRT
#undef R

/* ------------------------------------------------- float64 instantiation */
#define real double
#define FN(name) name##_f64
#define SQRT sqrt
#define R to_f64
#include "optim.c"
#undef real
#undef FN
#undef SQRT
#undef R

#else /* BPTT_OPTIM_INSTANTIATE: the kernels, over `real`, FN(), SQRT, R() */

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

static void FN(adam_range)(const FN(adam_job) *a, int64_t lo, int64_t hi) {
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
 * One pass; four partial sums and maxima, so that the additions (which the
 * compiler may not reorder) do not wait on each other. */
int FN(bptt_grad_norm)(const real *g, int64_t n, double p, double scale, double *sum, double *amax) {
  int64_t i, n4 = n - n % 4;
  double acc[4] = {0, 0, 0, 0}, mx[4], inv;
  int k, nan, mode; /* mode: 0 p = inf, 1 p = 1, 2 p = 2, 3 other */
  if (n < 0 || (n && !g) || !sum || !amax || !(p > 0) || !(scale > 0 && scale <= DBL_MAX)) return BPTT_EARG;
  inv = 1 / scale;
  mode = p > DBL_MAX ? 0 : p == 1 ? 1 : p == 2 ? 2 : 3;
  nan = *amax != *amax;
  for (k = 0; k < 4; k++) mx[k] = nan ? 0 : *amax;
  for (i = 0; i < n; i += 4) {
    int kn = i < n4 ? 4 : (int)(n - i);
    for (k = 0; k < kn; k++) {
      double x = fabs((double)g[i + k]), y = x * inv;
      nan |= x != x;
      mx[k] = x > mx[k] ? x : mx[k];
      acc[k] += mode == 2 ? y * y : mode == 1 ? y : mode == 3 ? pow(y, p) : 0;
    }
  }
  *sum += (acc[0] + acc[1]) + (acc[2] + acc[3]);
  *amax = nan ? (double)NAN : fmax(fmax(mx[0], mx[1]), fmax(mx[2], mx[3]));
  return BPTT_OK;
}

/* g *= s */
int FN(bptt_grad_scale)(real *g, int64_t n, double s) {
  int64_t i;
  real k = R(s);
  if (n < 0 || (n && !g)) return BPTT_EARG;
  for (i = 0; i < n; i++) g[i] = g[i] * k;
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
