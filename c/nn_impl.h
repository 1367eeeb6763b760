/*
 * nn_impl.h -- the kernels of nn.h written once over an element type.
 *
 * Included only by nn.c, once per type, with these macros defined:
 *   real      float or double
 *   FN(name)  name##_f32 or name##_f64
 *   GEMM      cblas_sgemm or cblas_dgemm
 *   EXP       bptt_expnegf (activations.h) or exp: e^y for y <= 0, all the
 *             softmax needs
 * No include guard on purpose.  Sums that reduce many values (losses, the
 * softmax denominator) accumulate in double for both types.
 */

/* ---------------------------------------------------------------- Linear */

/* y (N,Out) = x (N,In) W^T + b */
int FN(bptt_linear_forward)(const real *x, const real *W, const real *b,
                            real *y, int64_t N, int64_t In, int64_t Out) {
  int64_t nx, nw, ny, i, o;
  int err;
  if ((err = check_mat(N, In, &nx)) || (err = check_mat(Out, In, &nw)) ||
      (err = check_mat(N, Out, &ny)))
    return err;
  if (!blas_dim_ok(N) || !blas_dim_ok(In) || !blas_dim_ok(Out)) return BPTT_EOVERFLOW;
  if ((nx && !x) || (nw && !W) || (ny && !y)) return BPTT_EARG;
  if (ny == 0) return BPTT_OK;
  /* y = b broadcast over rows (or 0), then y += x W^T */
  for (i = 0; i < N; i++) {
    real *yi = y + i * Out;
    if (b)
      for (o = 0; o < Out; o++) yi[o] = b[o];
    else
      for (o = 0; o < Out; o++) yi[o] = 0;
  }
  if (In == 0) return BPTT_OK; /* an empty sum; BLAS rejects lda = 0 */
  GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)Out, (int)In,
       1, x, (int)In, W, (int)In, 1, y, (int)Out);
  return BPTT_OK;
}

/* dx = dy W;  dW += dy^T x;  db += sum_rows dy */
int FN(bptt_linear_backward)(const real *x, const real *W, const real *dy,
                             real *dx, real *dW, real *db,
                             int64_t N, int64_t In, int64_t Out) {
  int64_t nx, nw, ny, i, o;
  int err;
  if ((err = check_mat(N, In, &nx)) || (err = check_mat(Out, In, &nw)) ||
      (err = check_mat(N, Out, &ny)))
    return err;
  if (!blas_dim_ok(N) || !blas_dim_ok(In) || !blas_dim_ok(Out)) return BPTT_EOVERFLOW;
  if (ny && !dy && (dx || dW || db)) return BPTT_EARG;
  if (dx && nx && nw && !W) return BPTT_EARG;
  if (dW && nw && nx && !x) return BPTT_EARG;

  /* dx (N,In) = dy (N,Out) W (Out,In) */
  if (dx && nx) {
    if (Out == 0) {
      for (i = 0; i < nx; i++) dx[i] = 0;
    } else {
      GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)In, (int)Out,
           1, dy, (int)Out, W, (int)In, 0, dx, (int)In);
    }
  }
  /* dW (Out,In) += dy^T (Out,N) x (N,In): all rows in one GEMM, beta = 1 */
  if (dW && nw && N > 0) {
    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Out, (int)In, (int)N,
         1, dy, (int)Out, x, (int)In, 1, dW, (int)In);
  }
  /* db (Out) += sum_i dy[i, :] */
  if (db) {
    for (i = 0; i < N; i++) {
      const real *dyi = dy + i * Out;
      for (o = 0; o < Out; o++) db[o] += dyi[o];
    }
  }
  return BPTT_OK;
}

/* ------------------------------------------------------------- Embedding */

/* y[i, :] = W[ids[i] - 1, :] */
int FN(bptt_embedding_forward)(const int32_t *ids, const real *W, real *y,
                               int64_t N, int64_t V, int64_t D, int64_t *bad_pos) {
  int64_t nw, ny, i, bad;
  int err;
  set_bad(bad_pos, -1);
  if ((err = check_mat(V, D, &nw)) || (err = check_mat(N, D, &ny))) return err;
  if ((N && !ids) || (nw && !W) || (ny && !y)) return BPTT_EARG;
  bad = first_bad_id(ids, N, V);
  if (bad >= 0) {
    set_bad(bad_pos, bad);
    return BPTT_ERANGE;
  }
  if (D == 0) return BPTT_OK;
  for (i = 0; i < N; i++)
    memcpy(y + i * D, W + (int64_t)(ids[i] - 1) * D, (size_t)D * sizeof(real));
  return BPTT_OK;
}

/* dW[ids[i] - 1, :] += dy[i, :]  (repeated ids add up) */
int FN(bptt_embedding_backward)(const int32_t *ids, const real *dy, real *dW,
                                int64_t N, int64_t V, int64_t D, int64_t *bad_pos) {
  int64_t nw, ny, i, d, bad;
  int err;
  set_bad(bad_pos, -1);
  if ((err = check_mat(V, D, &nw)) || (err = check_mat(N, D, &ny))) return err;
  if ((N && !ids) || (nw && !dW) || (ny && !dy)) return BPTT_EARG;
  bad = first_bad_id(ids, N, V);
  if (bad >= 0) {
    set_bad(bad_pos, bad);
    return BPTT_ERANGE;
  }
  for (i = 0; i < N; i++) {
    real *row = dW + (int64_t)(ids[i] - 1) * D;
    const real *dyi = dy + i * D;
    for (d = 0; d < D; d++) row[d] += dyi[d];
  }
  return BPTT_OK;
}

/* ---------------------------------------------------------- CrossEntropy */

/* e[j] = EXP(x[j] - m), j < n: every argument <= 0 (m is the row's
 * maximum); vectorized (float32's EXP is activations.h's e^y for y <= 0) */
BPTT_CLONES
static void FN(exp_shifted)(const real *restrict x, real m, int64_t n,
                            real *restrict e) {
  int64_t j;
  for (j = 0; j < n; j++) e[j] = EXP(x[j] - m);
}

/* d[j] = EXP((x[j] - m) - ls) * sc, j < n; d may be x (in place) */
BPTT_CLONES
static void FN(softmax_grad_row)(const real *x, real m, real ls, real sc,
                                 int64_t n, real *d) {
  int64_t j;
  for (j = 0; j < n; j++) d[j] = EXP((x[j] - m) - ls) * sc;
}

/* Rows [lo, hi) of cross-entropy forward; returns their summed loss. */
static double FN(ce_rows)(const real *logits, const int32_t *targets, int64_t lo,
                          int64_t hi, int64_t C, int32_t ignore_index,
                          real *cache) {
  int64_t i, j, j0;
  double total = 0;
  real e[64];
  for (i = lo; i < hi; i++) {
    const real *xi = logits + i * C;
    int32_t t = targets[i];
    real m;
    double s = 0;
    if (ce_ignored(t, ignore_index)) {
      cache[2 * i] = 0;
      cache[2 * i + 1] = 0;
      continue;
    }
    /* counted rows have C >= 1 (their target is in 1..C) */
    m = xi[0];
    for (j = 1; j < C; j++)
      if (xi[j] > m) m = xi[j];
    /* each term is in (0, 1], one of them is 1: no overflow for any finite
     * x; the exponentials 64 at a time, summed in order in double */
    for (j0 = 0; j0 < C; j0 += 64) {
      int64_t n = C - j0 < 64 ? C - j0 : 64;
      FN(exp_shifted)(xi + j0, m, n, e);
      for (j = 0; j < n; j++) s += (double)e[j];
    }
    cache[2 * i] = m;
    cache[2 * i + 1] = (real)log(s);
    total += ((double)m - (double)xi[t - 1]) + log(s);
  }
  return total;
}

/* The rows split over the team (partial sums added in thread order, so a
 * given thread count always gives the same bits). */
typedef struct {
  const real *logits;
  const int32_t *targets;
  int64_t N, C;
  int32_t ignore_index;
  real *cache;
  double part[BPTT_MAX_THREADS];
} FN(ce_job);

static void FN(ce_task)(void *ctx, int tid, int n) {
  FN(ce_job) *j = ctx;
  long long lo, hi;
  bptt_parallel_range(j->N, 8, tid, n, &lo, &hi);
  j->part[tid] = FN(ce_rows)(j->logits, j->targets, lo, hi, j->C, j->ignore_index, j->cache);
}

/* loss = sum_i [(m_i - x_{i,t_i}) + log s_i] / (count or 1);
 * cache[i] = (m_i, log s_i) */
int FN(bptt_crossentropy_forward)(const real *logits, const int32_t *targets,
                                  int64_t N, int64_t C, int32_t ignore_index,
                                  int reduction, real *cache, double *loss,
                                  int64_t *count, int64_t *bad_pos) {
  int64_t nx, n2, cnt;
  double total = 0;
  int err;
  set_bad(bad_pos, -1);
  if ((err = check_mat(N, C, &nx)) || (err = check_mat(N, 2, &n2))) return err;
  if (!reduction_ok(reduction) || !loss) return BPTT_EARG;
  if ((N && (!targets || !cache)) || (nx && !logits)) return BPTT_EARG;
  if ((err = ce_count(targets, N, C, ignore_index, &cnt, bad_pos))) return err;
  if (nx >= PARALLEL_MIN && bptt_parallel_threads() > 1) {
    FN(ce_job) j;
    int k, used;
    j.logits = logits, j.targets = targets, j.N = N, j.C = C;
    j.ignore_index = ignore_index, j.cache = cache;
    used = bptt_parallel_run(FN(ce_task), &j, bptt_parallel_threads());
    for (k = 0; k < used; k++) total += j.part[k];
  } else {
    total = FN(ce_rows)(logits, targets, 0, N, C, ignore_index, cache);
  }
  if (reduction == BPTT_LOSS_MEAN) total = cnt > 0 ? total / (double)cnt : 0.0;
  *loss = total;
  if (count) *count = cnt;
  return BPTT_OK;
}

/* Rows [lo, hi) of cross-entropy backward. */
static void FN(ce_back_rows)(const real *logits, const int32_t *targets,
                             const real *cache, int64_t lo, int64_t hi,
                             int64_t C, int32_t ignore_index, real sc,
                             real *dlogits) {
  int64_t i, j;
  for (i = lo; i < hi; i++) {
    /* xi and di may be the same row: each element is read before written */
    const real *xi = logits + i * C;
    real *di = dlogits + i * C;
    int32_t t = targets[i];
    real m, ls;
    if (ce_ignored(t, ignore_index)) {
      for (j = 0; j < C; j++) di[j] = 0;
      continue;
    }
    m = cache[2 * i];
    ls = cache[2 * i + 1];
    FN(softmax_grad_row)(xi, m, ls, sc, C, di);
    di[t - 1] -= sc;
  }
}

typedef struct {
  const real *logits, *cache;
  const int32_t *targets;
  int64_t N, C;
  int32_t ignore_index;
  real sc, *dlogits;
} FN(ce_back_job);

static void FN(ce_back_task)(void *ctx, int tid, int n) {
  const FN(ce_back_job) *j = ctx;
  long long lo, hi;
  bptt_parallel_range(j->N, 8, tid, n, &lo, &hi);
  FN(ce_back_rows)(j->logits, j->targets, j->cache, lo, hi, j->C, j->ignore_index, j->sc, j->dlogits);
}

/* dlogits[i, j] = (exp((x_ij - m_i) - log s_i) - [j == t_i - 1]) * scale;
 * rows split over the team (each row alone: the split changes nothing) */
int FN(bptt_crossentropy_backward)(const real *logits, const int32_t *targets,
                                   const real *cache, int64_t N, int64_t C,
                                   int32_t ignore_index, int reduction,
                                   double gout, real *dlogits, int64_t *bad_pos) {
  int64_t nx, n2, cnt;
  real sc;
  int err;
  set_bad(bad_pos, -1);
  if ((err = check_mat(N, C, &nx)) || (err = check_mat(N, 2, &n2))) return err;
  if (!reduction_ok(reduction)) return BPTT_EARG;
  if ((N && (!targets || !cache)) || (nx && (!logits || !dlogits))) return BPTT_EARG;
  if ((err = ce_count(targets, N, C, ignore_index, &cnt, bad_pos))) return err;
  sc = (real)loss_scale(reduction, gout, cnt);
  if (nx >= PARALLEL_MIN && bptt_parallel_threads() > 1) {
    FN(ce_back_job) j;
    j.logits = logits, j.cache = cache, j.targets = targets, j.N = N, j.C = C;
    j.ignore_index = ignore_index, j.sc = sc, j.dlogits = dlogits;
    bptt_parallel_run(FN(ce_back_task), &j, bptt_parallel_threads());
  } else {
    FN(ce_back_rows)(logits, targets, cache, 0, N, C, ignore_index, sc, dlogits);
  }
  return BPTT_OK;
}

/* ------------------------------------------------------------------- MSE */

/* loss = sum_k (pred_k - target_k)^2 / (n or 1) */
int FN(bptt_mse_forward)(const real *pred, const real *target, int64_t n,
                         int reduction, double *loss) {
  int64_t k;
  double total = 0;
  if (n < 0 || !reduction_ok(reduction) || !loss) return BPTT_EARG;
  if (n && (!pred || !target)) return BPTT_EARG;
  for (k = 0; k < n; k++) {
    double d = (double)pred[k] - (double)target[k];
    total += d * d;
  }
  if (reduction == BPTT_LOSS_MEAN) total = n > 0 ? total / (double)n : 0.0;
  *loss = total;
  return BPTT_OK;
}

/* dpred_k = 2 (pred_k - target_k) * scale */
int FN(bptt_mse_backward)(const real *pred, const real *target, int64_t n,
                          int reduction, double gout, real *dpred) {
  int64_t k;
  real c;
  if (n < 0 || !reduction_ok(reduction)) return BPTT_EARG;
  if (n && (!pred || !target || !dpred)) return BPTT_EARG;
  c = (real)(2.0 * loss_scale(reduction, gout, n));
  for (k = 0; k < n; k++) dpred[k] = c * (pred[k] - target[k]);
  return BPTT_OK;
}

/* --------------------------------------------------------------- Dropout */

/* mask_k = (u_k >= p) ? 1/(1-p) : 0 (in place over u);  y = x * mask */
int FN(bptt_dropout_apply)(const real *x, real *mask, real *y, int64_t n, double p) {
  int64_t k;
  real keep;
  if (n < 0 || !(p >= 0.0 && p <= 1.0)) return BPTT_EARG;
  if (n && (!x || !mask || !y)) return BPTT_EARG;
  keep = p < 1.0 ? (real)(1.0 / (1.0 - p)) : 0;
  for (k = 0; k < n; k++) {
    /* compare in double: p is not rounded to the mask's type */
    mask[k] = (double)mask[k] >= p ? keep : 0;
    y[k] = x[k] * mask[k];
  }
  return BPTT_OK;
}

/* dx = dy * mask */
int FN(bptt_dropout_backward)(const real *dy, const real *mask, real *dx, int64_t n) {
  int64_t k;
  if (n < 0) return BPTT_EARG;
  if (n && (!dy || !mask || !dx)) return BPTT_EARG;
  for (k = 0; k < n; k++) dx[k] = dy[k] * mask[k];
  return BPTT_OK;
}
