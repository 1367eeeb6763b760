/*
 * generic/nn_layers.c -- the kernels of nn.h (Linear, Embedding, the
 * cross-entropy and MSE losses) written once over `real`, instantiated for
 * float and double by generic.h, which also defines what they use (FN,
 * TEAM_GEMM, GEMM, EXPNEG, UREAL).  Included from nn.c only.  Sums that
 * reduce many values (losses, the softmax denominator) accumulate in double
 * for both types.
 */

/* ---------------------------------------------------------------- Linear */

/* Rows [lo, hi) of y (N,Out) set to b (or 0) */
static void FN(fill_bias)(const real *b, real *y, int64_t lo, int64_t hi, int64_t Out) {
  int64_t i;
  for (i = lo; i < hi; i++) {
    if (b)
      memcpy(y + i * Out, b, (size_t)Out * sizeof(real));
    else
      memset(y + i * Out, 0, (size_t)Out * sizeof(real)); /* +0.0 */
  }
}

/* db[o] += sum_i dy[i, o] for the columns o in [c0, c1): row by row, so each
 * db[o] takes its N additions in row order however the columns are split */
BPTT_KERNEL_VOID(FN(add_col_sums),
                 (const real *restrict dy, real *restrict db, int64_t N, int64_t Out, int64_t c0, int64_t c1),
                 (dy, db, N, Out, c0, c1)) {
  int64_t i, o;
  for (i = 0; i < N; i++) {
    const real *restrict dyi = dy + i * Out;
    for (o = c0; o < c1; o++) db[o] += dyi[o];
  }
}

typedef struct {
  const real *x, *W, *b, *dy;
  real *y, *dx, *dW, *db;
  int64_t N, In, Out;
} FN(linear_job);

/* Forward, one region: each thread its rows of y = x W^T + b in a GEMM of
 * its own (gemm.h's bptt_sgemm_thread_bias: the bits of filling the rows
 * with b and adding x W^T onto them). */
static void FN(linear_forward_task)(void *ctx, int tid, int n) {
  const FN(linear_job) *j = ctx;
  long long lo, hi;
  bptt_parallel_range(j->N, 4, tid, n, &lo, &hi);
  if (lo >= hi) return;
  GEMM_BIAS(0, 1, (int)(hi - lo), (int)j->Out, (int)j->In, j->x + lo * j->In, (int)j->In, j->W, (int)j->In, j->b,
            j->y + lo * j->Out, (int)j->Out);
}

/* y (N,Out) = x (N,In) W^T + b */
int FN(bptt_linear_forward)(const real *x, const real *W, const real *b, real *y, int64_t N, int64_t In, int64_t Out) {
  int64_t nx, nw, ny;
  int err, n;
  if ((err = check_mat(N, In, &nx)) || (err = check_mat(Out, In, &nw)) || (err = check_mat(N, Out, &ny))) return err;
  if (!blas_dim_ok(N) || !blas_dim_ok(In) || !blas_dim_ok(Out)) return BPTT_EOVERFLOW;
  if ((nx && !x) || (nw && !W) || (ny && !y)) return BPTT_EARG;
  if (ny == 0) return BPTT_OK;
  n = linear_threads(2.0 * (double)N * (double)In * (double)Out, N, Out);
  if (n > 1) { /* N, In, Out >= 1 here */
    FN(linear_job) j = { 0 };
    j.x = x, j.W = W, j.b = b, j.y = y, j.N = N, j.In = In, j.Out = Out;
    bptt_parallel_run(FN(linear_forward_task), &j, n);
    return BPTT_OK;
  }
  /* y = b broadcast over rows (or 0), then y += x W^T */
  FN(fill_bias)(b, y, 0, N, Out);
  if (In == 0) return BPTT_OK; /* an empty sum; BLAS rejects lda = 0 */
  TEAM_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)Out, (int)In, 1, x, (int)In, W, (int)In, 1, y,
            (int)Out);
  return BPTT_OK;
}

/* Backward, one region: dx split by rows, dW by columns (of In: thread k
 * adds dy^T x[:, c0:c1] into dW[:, c0:c1]), db by columns (of Out).  No
 * element is written by two threads, none needs another's result. */
static void FN(linear_backward_task)(void *ctx, int tid, int n) {
  const FN(linear_job) *j = ctx;
  int64_t N = j->N, In = j->In, Out = j->Out;
  long long lo, hi;
  if (j->dx) {
    bptt_parallel_range(N, 4, tid, n, &lo, &hi);
    if (lo < hi)
      GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(hi - lo), (int)In, (int)Out, 1, j->dy + lo * Out, (int)Out,
           j->W, (int)In, 0, j->dx + lo * In, (int)In);
  }
  if (j->dW) {
    bptt_parallel_range(In, 16, tid, n, &lo, &hi);
    if (lo < hi)
      GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Out, (int)(hi - lo), (int)N, 1, j->dy, (int)Out, j->x + lo,
           (int)In, 1, j->dW + lo, (int)In);
  }
  if (j->db) {
    bptt_parallel_range(Out, 16, tid, n, &lo, &hi);
    if (lo < hi) FN(add_col_sums)(j->dy, j->db, N, Out, lo, hi);
  }
}

/* dx = dy W;  dW += dy^T x;  db += sum_rows dy */
int FN(bptt_linear_backward)(const real *x, const real *W, const real *dy, real *dx, real *dW, real *db, int64_t N,
                             int64_t In, int64_t Out) {
  int64_t nx, nw, ny, i;
  int err, n;
  if ((err = check_mat(N, In, &nx)) || (err = check_mat(Out, In, &nw)) || (err = check_mat(N, Out, &ny))) return err;
  if (!blas_dim_ok(N) || !blas_dim_ok(In) || !blas_dim_ok(Out)) return BPTT_EOVERFLOW;
  if (ny && !dy && (dx || dW || db)) return BPTT_EARG;
  if (dx && nx && nw && !W) return BPTT_EARG;
  if (dW && nw && nx && !x) return BPTT_EARG;

  /* the GEMMs' FLOPs: 2 N In Out for dx and for dW */
  n = linear_threads(2.0 * (double)N * (double)In * (double)Out * ((dx != NULL) + (dW != NULL)), N, In);
  if (n > 1) { /* N, In, Out >= 1 here */
    FN(linear_job) j = { 0 };
    j.x = x, j.W = W, j.dy = dy, j.dx = dx, j.dW = dW, j.db = db;
    j.N = N, j.In = In, j.Out = Out;
    bptt_parallel_run(FN(linear_backward_task), &j, n);
    return BPTT_OK;
  }
  /* dx (N,In) = dy (N,Out) W (Out,In) */
  if (dx && nx) {
    if (Out == 0) {
      for (i = 0; i < nx; i++) dx[i] = 0;
    } else {
      TEAM_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)In, (int)Out, 1, dy, (int)Out, W, (int)In, 0,
                dx, (int)In);
    }
  }
  /* dW (Out,In) += dy^T (Out,N) x (N,In): all rows in one GEMM, beta = 1 */
  if (dW && nw && N > 0) {
    TEAM_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Out, (int)In, (int)N, 1, dy, (int)Out, x, (int)In, 1, dW,
              (int)In);
  }
  /* db (Out) += sum_i dy[i, :] */
  if (db) FN(add_col_sums)(dy, db, N, Out, 0, Out);
  return BPTT_OK;
}

/* ------------------------------------------------------------- Embedding */

typedef struct {
  const int32_t *ids;
  const real *W;
  real *y;
  int64_t N, D;
} FN(embedding_job);

/* Forward, split by rows: y[i, :] = W[ids[i] - 1, :] for i in the thread's rows */
static void FN(embedding_forward_task)(void *ctx, int tid, int n) {
  const FN(embedding_job) *j = ctx;
  int64_t D = j->D;
  long long i, lo, hi;
  bptt_parallel_range(j->N, 16, tid, n, &lo, &hi);
  for (i = lo; i < hi; i++) memcpy(j->y + i * D, j->W + (int64_t)(j->ids[i] - 1) * D, (size_t)D * sizeof(real));
}

/* dW[ids[i] - 1, :] += dy[i, :], rows in order (repeated ids add up) */
BPTT_KERNEL_VOID(FN(embedding_add_rows),
                 (const int32_t *ids, const real *restrict dy, real *restrict dW, int64_t N, int64_t D),
                 (ids, dy, dW, N, D)) {
  int64_t i, d;
  for (i = 0; i < N; i++) {
    real *restrict row = dW + (int64_t)(ids[i] - 1) * D;
    const real *restrict dyi = dy + i * D;
    for (d = 0; d < D; d++) row[d] += dyi[d];
  }
}

/* y[i, :] = W[ids[i] - 1, :] */
int FN(bptt_embedding_forward)(const int32_t *ids, const real *W, real *y, int64_t N, int64_t V, int64_t D,
                               int64_t *bad_pos) {
  int64_t nw, ny, bad;
  int err, n;
  FN(embedding_job) j;
  set_bad(bad_pos, -1);
  if ((err = check_mat(V, D, &nw)) || (err = check_mat(N, D, &ny))) return err;
  if ((N && !ids) || (nw && !W) || (ny && !y)) return BPTT_EARG;
  bad = first_bad_id(ids, N, V);
  if (bad >= 0) {
    set_bad(bad_pos, bad);
    return BPTT_ERANGE;
  }
  if (D == 0) return BPTT_OK;
  j.ids = ids, j.W = W, j.y = y, j.N = N, j.D = D;
  n = ny >= PARALLEL_MIN ? bptt_parallel_threads() : 1;
  bptt_parallel_run(FN(embedding_forward_task), &j, n);
  return BPTT_OK;
}

/* dW[ids[i] - 1, :] += dy[i, :]  (repeated ids add up)
 * On the caller alone: one addition per element loaded, bound by memory.
 * Split over 2 threads it ran no faster -- by columns of dW (each thread
 * all rows, in order) 2-4x slower, by rows of dW (ids) 0.85-1.9x the
 * time of one thread (2-core EPYC VM, N = 2048..32768, D = 64..1024). */
int FN(bptt_embedding_backward)(const int32_t *ids, const real *dy, real *dW, int64_t N, int64_t V, int64_t D,
                                int64_t *bad_pos) {
  int64_t nw, ny, bad;
  int err;
  set_bad(bad_pos, -1);
  if ((err = check_mat(V, D, &nw)) || (err = check_mat(N, D, &ny))) return err;
  if ((N && !ids) || (nw && !dW) || (ny && !dy)) return BPTT_EARG;
  bad = first_bad_id(ids, N, V);
  if (bad >= 0) {
    set_bad(bad_pos, bad);
    return BPTT_ERANGE;
  }
  if (ny) FN(embedding_add_rows)(ids, dy, dW, N, D);
  return BPTT_OK;
}

/* ---------------------------------------------------------- CrossEntropy */

/* x's bits as an unsigned integer in the order of the values (radix sort's
 * key): the sign bit set for x >= +0, every bit flipped below, so that
 * -NaN < -Inf < ... < -0 < +0 < ... < +Inf < +NaN.  Integer maxima
 * vectorize where a float compare-and-select does not (GCC keeps it a
 * branch); ord_value undoes it. */
BPTT_ROW UREAL FN(ord_key)(real x) {
  UREAL u, top = (UREAL)1 << (8 * sizeof(UREAL) - 1);
  memcpy(&u, &x, sizeof u);
  return u ^ (((UREAL)0 - (u >> (8 * sizeof(UREAL) - 1))) | top);
}

BPTT_ROW real FN(ord_value)(UREAL k) {
  UREAL top = (UREAL)1 << (8 * sizeof(UREAL) - 1);
  real x;
  k ^= ((k >> (8 * sizeof(UREAL) - 1)) - 1) | top;
  memcpy(&x, &k, sizeof x);
  return x;
}

/* The row's maximum, exact, as the maximum of the keys: a reduction the
 * compiler may vectorize (integer maxima can go in any order).  A NaN may
 * come out as the maximum (+NaN) or not (-NaN); the sum below makes the
 * loss NaN either way. */
BPTT_ROW real FN(row_max)(const real *restrict x, int64_t n) {
  UREAL m = FN(ord_key)(x[0]), v;
  int64_t j;
  for (j = 1; j < n; j++) v = FN(ord_key)(x[j]), m = v > m ? v : m;
  return FN(ord_value)(m);
}

/* sum_j EXPNEG(x[j] - m), every argument <= 0 (m is the row's maximum): each
 * term in (0, 1], one of them 1, no overflow for any finite x.  In double:
 * the whole blocks into CE_LANES partial sums (lane k takes the k-th term
 * of each, in order: independent chains, that vectorize) added up in a
 * fixed tree, then the last n % CE_LANES terms, in order.  The same bits on
 * every thread count and instruction set. */
BPTT_ROW double FN(row_sumexp)(const real *restrict x, real m, int64_t n) {
  double s[CE_LANES], tail = 0;
  int64_t j, k, n0 = n - n % CE_LANES;
  for (j = n0; j < n; j++) tail += (double)EXPNEG(x[j] - m);
  if (n0 == 0) return tail;
  for (k = 0; k < CE_LANES; k++) s[k] = 0;
  for (j = 0; j < n0; j += CE_LANES)
    for (k = 0; k < CE_LANES; k++) s[k] += (double)EXPNEG(x[j + k] - m);
  for (k = 0; k < CE_LANES / 2; k++) s[k] += s[k + CE_LANES / 2];
  for (k = 0; k < CE_LANES / 4; k++) s[k] += s[k + CE_LANES / 4];
  for (k = 0; k < CE_LANES / 8; k++) s[k] += s[k + CE_LANES / 8];
  return (s[0] + s[1]) + tail;
}

/* d[j] = EXPNEG((x[j] - m) - ls) * sc, j < n; d may be x (in place) */
BPTT_KERNEL_VOID(FN(softmax_grad_row), (const real *x, real m, real ls, real sc, int64_t n, real *d),
                 (x, m, ls, sc, n, d)) {
  int64_t j;
  for (j = 0; j < n; j++) d[j] = EXPNEG((x[j] - m) - ls) * sc;
}

/* Rows [lo, hi) of cross-entropy forward; returns their summed loss (in
 * row order).  The rows go CE_GROUP at a time, each step over all of them
 * (maxima, sums, logarithms): the rows' chains of dependent steps then
 * overlap. */
BPTT_KERNEL(double, FN(ce_rows),
            (const real *logits, const int32_t *targets, int64_t lo, int64_t hi, int64_t C, int32_t ignore_index,
             real *cache),
            (logits, targets, lo, hi, C, ignore_index, cache)) {
  int64_t i, i0, g;
  double total = 0, s[CE_GROUP];
  real m[CE_GROUP];
  for (i0 = lo; i0 < hi; i0 += CE_GROUP) {
    int64_t n = hi - i0 < CE_GROUP ? hi - i0 : CE_GROUP;
    const real *x0 = logits + i0 * C;
    const int32_t *t0 = targets + i0;
    /* counted rows have C >= 1 (their target is in 1..C) */
    for (g = 0; g < n; g++)
      if (!ce_ignored(t0[g], ignore_index)) m[g] = FN(row_max)(x0 + g * C, C);
    for (g = 0; g < n; g++)
      if (!ce_ignored(t0[g], ignore_index)) s[g] = FN(row_sumexp)(x0 + g * C, m[g], C);
    for (g = 0; g < n; g++) {
      int32_t t = t0[g];
      double ls;
      i = i0 + g;
      if (ce_ignored(t, ignore_index)) {
        cache[2 * i] = 0;
        cache[2 * i + 1] = 0;
        continue;
      }
      ls = log(s[g]);
      cache[2 * i] = m[g];
      cache[2 * i + 1] = (real)ls;
      total += ((double)m[g] - (double)logits[i * C + t - 1]) + ls;
    }
  }
  return total;
}

/* The rows in CE_BLOCKS fixed blocks (fewer when N is small), whole blocks
 * split over the team; the loss is the sum of the blocks' sums in block
 * order, so any thread count gives the same bits. */
typedef struct {
  const real *logits;
  const int32_t *targets;
  int64_t N, C, rows; /* rows per block */
  int32_t ignore_index;
  real *cache;
  double part[CE_BLOCKS];
} FN(ce_job);

static void FN(ce_task)(void *ctx, int tid, int n) {
  FN(ce_job) *j = ctx;
  long long b, b0, b1, nb = (j->N + j->rows - 1) / j->rows;
  bptt_parallel_range(nb, 1, tid, n, &b0, &b1);
  for (b = b0; b < b1; b++) {
    int64_t lo = b * j->rows, hi = lo + j->rows < j->N ? lo + j->rows : j->N;
    j->part[b] = FN(ce_rows)(j->logits, j->targets, lo, hi, j->C, j->ignore_index, j->cache);
  }
}

/* loss = sum_i [(m_i - x_{i,t_i}) + log s_i] / (count or 1);
 * cache[i] = (m_i, log s_i) */
int FN(bptt_crossentropy_forward)(const real *logits, const int32_t *targets, int64_t N, int64_t C,
                                  int32_t ignore_index, int reduction, real *cache, double *loss, int64_t *count,
                                  int64_t *bad_pos) {
  int64_t nx, n2, cnt, b, nb;
  double total = 0;
  int err;
  FN(ce_job) j;
  set_bad(bad_pos, -1);
  if ((err = check_mat(N, C, &nx)) || (err = check_mat(N, 2, &n2))) return err;
  if (!reduction_ok(reduction) || !loss) return BPTT_EARG;
  if ((N && (!targets || !cache)) || (nx && !logits)) return BPTT_EARG;
  if ((err = ce_count(targets, N, C, ignore_index, &cnt, bad_pos))) return err;
  if (N > 0) {
    j.logits = logits, j.targets = targets, j.N = N, j.C = C;
    j.ignore_index = ignore_index, j.cache = cache;
    j.rows = (N + CE_BLOCKS - 1) / CE_BLOCKS;
    j.rows = (j.rows + 7) / 8 * 8;
    bptt_parallel_run(FN(ce_task), &j, nx >= PARALLEL_MIN ? bptt_parallel_threads() : 1);
    nb = (N + j.rows - 1) / j.rows;
    for (b = 0; b < nb; b++) total += j.part[b];
  }
  if (reduction == BPTT_LOSS_MEAN) total = cnt > 0 ? total / (double)cnt : 0.0;
  *loss = total;
  if (count) *count = cnt;
  return BPTT_OK;
}

/* Rows [lo, hi) of cross-entropy backward. */
static void FN(ce_back_rows)(const real *logits, const int32_t *targets, const real *cache, int64_t lo, int64_t hi,
                             int64_t C, int32_t ignore_index, real sc, real *dlogits) {
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
int FN(bptt_crossentropy_backward)(const real *logits, const int32_t *targets, const real *cache, int64_t N, int64_t C,
                                   int32_t ignore_index, int reduction, double gout, real *dlogits, int64_t *bad_pos) {
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

/* reduction "none": after a forward (any reduction) filled the cache,
 * losses[i] = log s_i - (x_{i,t_i-1} - m_i), 0 on ignored rows. */
int FN(bptt_crossentropy_rows)(const real *logits, const int32_t *targets, const real *cache, int64_t N, int64_t C,
                               int32_t ignore_index, real *losses) {
  int64_t nx, n2, i;
  int err;
  if ((err = check_mat(N, C, &nx)) || (err = check_mat(N, 2, &n2))) return err;
  if (N && (!targets || !cache || !losses || !logits)) return BPTT_EARG;
  for (i = 0; i < N; i++) {
    int32_t t = targets[i];
    if (ce_ignored(t, ignore_index)) {
      losses[i] = 0;
      continue;
    }
    if (t < 1 || t > C) return BPTT_ERANGE;
    losses[i] = cache[2 * i + 1] - (logits[i * C + t - 1] - cache[2 * i]);
  }
  return BPTT_OK;
}

/* reduction "none" backward: dlogits row i = (softmax(x_i) - onehot(t_i)) * gout[i],
 * 0 on ignored rows (one thread: a row's work is O(C)). */
int FN(bptt_crossentropy_backward_rows)(const real *logits, const int32_t *targets, const real *cache, int64_t N,
                                        int64_t C, int32_t ignore_index, const real *gout, real *dlogits) {
  int64_t nx, n2, i;
  int err;
  if ((err = check_mat(N, C, &nx)) || (err = check_mat(N, 2, &n2))) return err;
  if (N && (!targets || !cache || !gout || !logits || !dlogits)) return BPTT_EARG;
  for (i = 0; i < N; i++) {
    int32_t t = targets[i];
    if (!ce_ignored(t, ignore_index) && (t < 1 || t > C)) return BPTT_ERANGE;
    FN(ce_back_rows)(logits, targets, cache, i, i + 1, C, ignore_index, gout[i], dlogits);
  }
  return BPTT_OK;
}

/* ------------------------------------------------------------------- MSE */

/* loss = sum_k (pred_k - target_k)^2 / (n or 1) */
int FN(bptt_mse_forward)(const real *pred, const real *target, int64_t n, int reduction, double *loss) {
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
int FN(bptt_mse_backward)(const real *pred, const real *target, int64_t n, int reduction, double gout, real *dpred) {
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
