/*
 * generic/optim_steps.c -- the optimizers' update rules and the gradient
 * norm and clipping passes, written once over `real` and instantiated for
 * float and double by generic.h (included from optim.c only).
 */
/* ------------------------------------------------------------------ SGD */

/* d = g + wd p;  buf = d (first) or mom buf + (1 - damp) d;
 * d = nesterov ? d + mom buf : buf;  p = p - lr d */
int FN(bptt_sgd_step)(real *restrict p, const real *restrict g, real *restrict buf, int64_t n, const bptt_sgd_hp *hp,
                      int init_buf) {
  int64_t i;
  real neg_lr, wd, mom, keep;
  int use_wd, use_mom, nesterov;
  if (!bufs_ok(n, p, g) || !sgd_hp_ok(hp)) return BPTT_EARG;
  use_mom = hp->momentum != 0;
  if (use_mom && n && !buf) return BPTT_EARG;
  neg_lr = FN(to_real)(-hp->lr), wd = FN(to_real)(hp->weight_decay), mom = FN(to_real)(hp->momentum);
  keep = FN(to_real)(1 - hp->dampening);
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

BPTT_KERNEL_VOID(FN(adam_range), (const FN(adam_job) *a, int64_t lo, int64_t hi), (a, lo, hi)) {
  real *restrict p = a->p, *restrict m = a->m, *restrict v = a->v, *restrict vmax = a->vmax;
  const real *restrict g = a->g;
  const real b1 = a->b1, b2 = a->b2, c1 = a->c1, c2 = a->c2, eps = a->eps, wd = a->wd;
  const real decay = a->decay, neg_step = a->neg_step, bc2_sqrt = a->bc2_sqrt;
  const int use_wd = a->use_wd, decoupled = a->decoupled;
  int64_t i;
  for (i = lo; i < hi; i++) {
    real d = g[i], pi = p[i], mi, vi;
    if (decoupled)
      pi = pi * decay; /* AdamW: p (1 - lr wd), before the moments */
    else if (use_wd)
      d = d + wd * pi; /* Adam: L2 penalty in the gradient */
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
  a.neg_step = FN(to_real)(-(hp->lr / bc1));
  a.bc2_sqrt = FN(to_real)(sqrt(bc2));
  a.b1 = FN(to_real)(hp->beta1), a.b2 = FN(to_real)(hp->beta2);
  a.c1 = FN(to_real)(1 - hp->beta1), a.c2 = FN(to_real)(1 - hp->beta2);
  a.eps = FN(to_real)(hp->eps);
  a.wd = FN(to_real)(hp->weight_decay);
  a.decay = FN(to_real)(1 - hp->lr * hp->weight_decay);
  a.decoupled = hp->decoupled != 0;
  a.use_wd = !a.decoupled && hp->weight_decay != 0;
  if (n >= PARALLEL_MIN)
    bptt_parallel_run(FN(adam_task), &a, bptt_parallel_threads());
  else
    FN(adam_range)(&a, 0, n);
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
  neg_clr = FN(to_real)(-(hp->lr / (1 + (double)(t - 1) * hp->lr_decay)));
  wd = FN(to_real)(hp->weight_decay), eps = FN(to_real)(hp->eps);
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
  a = FN(to_real)(hp->alpha), c = FN(to_real)(1 - hp->alpha);
  neg_lr = FN(to_real)(-hp->lr), wd = FN(to_real)(hp->weight_decay), eps = FN(to_real)(hp->eps),
  mom = FN(to_real)(hp->momentum);
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
BPTT_KERNEL(double, FN(norm_chunk), (const real *restrict g, int64_t n, int mode, double p, double inv, BITS *top),
            (g, n, mode, p, inv, top)) {
  double acc[NORM_LANES] = { 0 };
  BITS mx[NORM_LANES] = { 0 };
  int64_t i, k;
  switch (mode) {
    case 2:
      NORM_SUM((x * inv) * (x * inv));
      break; /* = (|x| inv)^2 exactly */
    case 1:
      NORM_SUM(fabs(x) * inv);
      break;
    case 3:
      NORM_SUM(pow(fabs(x) * inv, p));
      break;
    default:
      break; /* p = inf: the maximum alone */
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
    if (len >= NORM_PARALLEL_MIN)
      nt = bptt_parallel_run(FN(norm_task), &a, bptt_parallel_threads());
    else
      FN(norm_task)(&a, 0, 1);
    for (c = 0; c < chunks; c++) total += a.part[c];
    for (k = 0; k < nt; k++) top = a.mx[k] > top ? a.mx[k] : top;
  }
  if (a.mode != 0) *sum += total;
  memcpy(&big, &top, sizeof big);
  if (*amax != *amax || top > BITS_INF)
    *amax = (double)NAN;
  else if (n > 0 && (double)big > *amax)
    *amax = (double)big;
  return BPTT_OK;
}

/* g *= s, each element alone: split over the team, bit for bit the same */
typedef struct {
  real *g;
  int64_t n;
  real k;
} FN(scale_job);

BPTT_KERNEL_VOID(FN(scale_range), (real *restrict g, int64_t lo, int64_t hi, real k), (g, lo, hi, k)) {
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
  a.g = g, a.n = n, a.k = FN(to_real)(s);
  if (n >= SCALE_PARALLEL_MIN)
    bptt_parallel_run(FN(scale_task), &a, bptt_parallel_threads());
  else
    FN(scale_task)(&a, 0, 1);
  return BPTT_OK;
}

/* g = clamp(g, -v, v); NaN elements stay NaN (as torch.clamp) */
int FN(bptt_grad_clamp)(real *g, int64_t n, double v) {
  int64_t i;
  real hi, lo;
  if (n < 0 || (n && !g) || !(v >= 0)) return BPTT_EARG;
  hi = FN(to_real)(v);
  lo = -hi;
  for (i = 0; i < n; i++) {
    real x = g[i];
    if (x > hi)
      g[i] = hi;
    else if (x < lo)
      g[i] = lo;
  }
  return BPTT_OK;
}
