/*
 * rnn_impl.h -- the RNN kernels for one real type.  Included by rnn.c only,
 * once per type, with
 *   REAL      float | double
 *   FN(name)  name##_f32 | name##_f64
 *   GEMM      cblas_sgemm | cblas_dgemm
 *   EXP, TANH expf, tanhf | exp, tanh
 * No include guard on purpose.
 *
 * Notation: TB = T*B rows (every (t, b) pair), GH = G*H gate columns.  Row
 * (t, b) of a (T, B, F) buffer starts at (t*B + b)*F.  "a" is a
 * pre-activation, "dG" the loss gradient w.r.t. the gate pre-activations.
 *
 * The shape of the computation (cuDNN's, Appleyard et al. 2016, on the CPU):
 *   forward : ONE GEMM for the input projections of all T steps; per step
 *             ONE GEMM for all gates of the recurrence, then ONE fused
 *             elementwise pass (biases, activations, cell update, cache).
 *   backward: per step ONE fused elementwise pass giving dG_t, then ONE
 *             GEMM for dh_{t-1}; after the recursion the weight gradients,
 *             dx and the bias sums over all T*B rows at once.
 */

/* C (M, N) = alpha op(A) op(B) + beta C, row-major.  rnn_sizes() checked
 * that every dimension fits in int. */
static void FN(gemm)(int transa, int transb, int64_t M, int64_t N, int64_t K,
                     REAL alpha, const REAL *A, int64_t lda,
                     const REAL *Bm, int64_t ldb,
                     REAL beta, REAL *C, int64_t ldc) {
  GEMM(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
       transb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
       alpha, A, (int)lda, Bm, (int)ldb, beta, C, (int)ldc);
}

/* sigmoid(a) = 1 / (1 + e^-a), taking exp of a non-positive number only, so
 * a huge |a| gives 0 or 1 and never inf/inf; NaN stays NaN. */
static REAL FN(sigmoid)(REAL a) {
  REAL e;
  if (a >= 0) return 1 / (1 + EXP(-a));
  e = EXP(a);
  return e / (1 + e);
}

/* Bias j of the folded b_ih + b_hh (either may be NULL). */
#define BIAS(bi, bh, j) (((bi) ? (bi)[j] : (REAL)0) + ((bh) ? (bh)[j] : (REAL)0))

/* ---- forward ------------------------------------------------------------ */

/* tanh / relu (the seed note):  h_t = f(a_t),
 *   a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh            (B, H)
 * No cache: f'(a_t) is read off h_t in backward. */
static void FN(elman_forward)(const bptt_rnn_dims *d,
                              const REAL *w_ih, const REAL *w_hh,
                              const REAL *b_ih, const REAL *b_hh,
                              const REAL *x, const REAL *h0, REAL *y) {
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, BH = B * H;
  const int relu = d->cell == BPTT_CELL_RELU;
  int64_t t, b, j;
  /* y (TB, H) = x (TB, D) W_ih^T: the input projections of all steps */
  FN(gemm)(0, 1, T * B, H, D, 1, x, D, w_ih, D, 0, y, H);
  for (t = 0; t < T; t++) {
    REAL *yt = y + t * BH;
    const REAL *hp = t ? yt - BH : h0;          /* h_{t-1}; NULL = zeros */
    /* y_t (B, H) += h_{t-1} (B, H) W_hh^T */
    if (hp) FN(gemm)(0, 1, B, H, H, 1, hp, H, w_hh, H, 1, yt, H);
    for (b = 0; b < B; b++) {
      REAL *yb = yt + b * H;
      for (j = 0; j < H; j++) {
        REAL a = yb[j] + BIAS(b_ih, b_hh, j);
        /* relu written so that NaN passes through, like PyTorch's */
        yb[j] = relu ? (a < 0 ? (REAL)0 : a) : TANH(a);
      }
    }
  }
}

/* lstm.  Cache: gates (T, B, 4H) = i, f, g, o after activation | c (T, B, H).
 *   a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh            (B, 4H)
 *   i, f, o = sigmoid(a_i, a_f, a_o)   g = tanh(a_g)
 *   c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t) */
static void FN(lstm_forward)(const bptt_rnn_dims *d,
                             const REAL *w_ih, const REAL *w_hh,
                             const REAL *b_ih, const REAL *b_hh,
                             const REAL *x, const REAL *h0, const REAL *c0,
                             REAL *y, REAL *cache) {
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, BH = B * H;
  const int64_t GH = 4 * H;
  REAL *gates = cache;                           /* (T, B, 4H) */
  REAL *cs = cache + T * B * GH;                 /* (T, B, H)  */
  int64_t t, b, j;
  /* gates (TB, 4H) = x (TB, D) W_ih^T */
  FN(gemm)(0, 1, T * B, GH, D, 1, x, D, w_ih, D, 0, gates, GH);
  for (t = 0; t < T; t++) {
    REAL *gt = gates + t * B * GH, *ct = cs + t * BH, *yt = y + t * BH;
    const REAL *hp = t ? yt - BH : h0;           /* NULL = zeros */
    const REAL *cp = t ? ct - BH : c0;
    /* gates_t (B, 4H) += h_{t-1} (B, H) W_hh^T */
    if (hp) FN(gemm)(0, 1, B, GH, H, 1, hp, H, w_hh, H, 1, gt, GH);
    for (b = 0; b < B; b++) {
      REAL *g = gt + b * GH, *cb = ct + b * H, *yb = yt + b * H;
      const REAL *cpb = cp ? cp + b * H : NULL;
      for (j = 0; j < H; j++) {
        REAL i = FN(sigmoid)(g[j] + BIAS(b_ih, b_hh, j));
        REAL f = FN(sigmoid)(g[H + j] + BIAS(b_ih, b_hh, H + j));
        REAL gg = TANH(g[2 * H + j] + BIAS(b_ih, b_hh, 2 * H + j));
        REAL o = FN(sigmoid)(g[3 * H + j] + BIAS(b_ih, b_hh, 3 * H + j));
        REAL c = (cpb ? f * cpb[j] : (REAL)0) + i * gg;
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        cb[j] = c;
        yb[j] = o * TANH(c);
      }
    }
  }
}

/* gru.  Cache: gates (T, B, 3H) = r, z, n after activation |
 * hn (T, B, H) = W_hn h_{t-1} + b_hn | hw (B, 3H) one step's W_hh h_{t-1}.
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)   z likewise
 *   n = tanh(W_in x + b_in + r * hn)             h_t = (1 - z) n + z h_{t-1}
 * b_hn stays inside r * (.), so only b_ir+b_hr and b_iz+b_hz fold. */
static void FN(gru_forward)(const bptt_rnn_dims *d,
                            const REAL *w_ih, const REAL *w_hh,
                            const REAL *b_ih, const REAL *b_hh,
                            const REAL *x, const REAL *h0,
                            REAL *y, REAL *cache) {
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, BH = B * H;
  const int64_t GH = 3 * H;
  REAL *gates = cache;                           /* (T, B, 3H) */
  REAL *hn = gates + T * B * GH;                 /* (T, B, H)  */
  REAL *hw = hn + T * BH;                        /* (B, 3H)    */
  int64_t t, b, j;
  /* gates (TB, 3H) = x (TB, D) W_ih^T */
  FN(gemm)(0, 1, T * B, GH, D, 1, x, D, w_ih, D, 0, gates, GH);
  for (t = 0; t < T; t++) {
    REAL *gt = gates + t * B * GH, *hnt = hn + t * BH, *yt = y + t * BH;
    const REAL *hp = t ? yt - BH : h0;           /* NULL = zeros */
    /* hw (B, 3H) = h_{t-1} (B, H) W_hh^T */
    if (hp) FN(gemm)(0, 1, B, GH, H, 1, hp, H, w_hh, H, 0, hw, GH);
    else memset(hw, 0, (size_t)(B * GH) * sizeof(REAL));
    for (b = 0; b < B; b++) {
      REAL *g = gt + b * GH, *hnb = hnt + b * H, *yb = yt + b * H;
      const REAL *hwb = hw + b * GH, *hpb = hp ? hp + b * H : NULL;
      for (j = 0; j < H; j++) {
        REAL r = FN(sigmoid)(g[j] + hwb[j] + BIAS(b_ih, b_hh, j));
        REAL z = FN(sigmoid)(g[H + j] + hwb[H + j] + BIAS(b_ih, b_hh, H + j));
        REAL hnv = hwb[2 * H + j] + (b_hh ? b_hh[2 * H + j] : (REAL)0);
        REAL n = TANH(g[2 * H + j] + (b_ih ? b_ih[2 * H + j] : (REAL)0) +
                      r * hnv);
        g[j] = r;
        g[H + j] = z;
        g[2 * H + j] = n;
        hnb[j] = hnv;
        yb[j] = (1 - z) * n + (hpb ? z * hpb[j] : (REAL)0);
      }
    }
  }
}

int FN(bptt_rnn_forward)(const bptt_rnn_dims *d,
                         const REAL *w_ih, const REAL *w_hh,
                         const REAL *b_ih, const REAL *b_hh,
                         const REAL *x, const REAL *h0, const REAL *c0,
                         REAL *y, REAL *hT, REAL *cT, REAL *cache) {
  int err = bptt_rnn_check_dims(d);
  int64_t BH;
  if (err) return err;
  if (!w_ih || !w_hh || !x || !y) return BPTT_EARG;
  if (!cache && (d->cell == BPTT_CELL_LSTM || d->cell == BPTT_CELL_GRU))
    return BPTT_EARG;
  BH = d->B * d->H;
  switch (d->cell) {
    case BPTT_CELL_LSTM:
      FN(lstm_forward)(d, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, cache);
      /* c_T: block T-1 of c (T, B, H), which follows gates (T, B, 4H) */
      if (cT) memcpy(cT, cache + 4 * d->T * BH + (d->T - 1) * BH,
                     (size_t)BH * sizeof(REAL));
      break;
    case BPTT_CELL_GRU:
      FN(gru_forward)(d, w_ih, w_hh, b_ih, b_hh, x, h0, y, cache);
      break;
    default:
      FN(elman_forward)(d, w_ih, w_hh, b_ih, b_hh, x, h0, y);
      break;
  }
  if (hT) memcpy(hT, y + (d->T - 1) * BH, (size_t)BH * sizeof(REAL));
  return BPTT_OK;
}

/* ---- backward ------------------------------------------------------------
 *
 * The seed note writes
 *   dL_t/dW = dL_t/dh_t sum_k (prod_{i=k+1}^t dh_i/dh_{i-1}) dh_k/dW.
 * The loops below compute the sum of that over all t without forming any
 * product of Jacobians (Horner's rule): going t = T .. 1 they carry the row
 * vector dh = dL/dh_t (every later loss's share, plus dhT at t = T) and move
 * it back one step with one vector-Jacobian product,
 *   dL/dh_{t-1} = dy_{t-1} + dL/dh_t . dh_t/dh_{t-1}
 *               = dy_{t-1} + dG_t W_hh     (B, GH) x (GH, H), one GEMM
 * (gru adds its direct path dh * z; lstm carries dL/dc_t alongside).  Each
 * dG_t then already holds every later loss's share, so
 *   dW_hh = sum_t dG_t^T h_{t-1}      dW_ih = sum_t dG_t^T x_t
 * are one GEMM each over all T*B rows after the recursion.
 */

/* After the recursion.  dGh (TB, GH): gradient w.r.t. the hidden-side
 * pre-activations (what multiplies W_hh h_{t-1} + b_hh).  dGn (TB, H): only
 * for gru, the input side of the n gate (what multiplies W_in x + b_in),
 * which differs from dGh's n block by the factor r; NULL otherwise (the
 * input side is dGh itself).
 *   dW_ih (GH, D) += dGx^T (GH, TB) x (TB, D)
 *   dW_hh (GH, H) += dGh^T (GH, TB) [h_0 .. h_{T-1}] (TB, H)
 *   db_ih += column sums of dGx     db_hh += column sums of dGh
 *   dx (TB, D) = dGx (TB, GH) W_ih (GH, D) */
static void FN(param_grads)(const bptt_rnn_dims *d, int64_t GH,
                            const REAL *w_ih, const REAL *x, const REAL *h0,
                            const REAL *y, const REAL *dGh, const REAL *dGn,
                            REAL *dx, REAL *dw_ih, REAL *dw_hh,
                            REAL *db_ih, REAL *db_hh) {
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, TB = T * B;
  const int64_t nx = dGn ? GH - H : GH;  /* columns of dGh that are dGx too */
  int64_t r, j;
  /* dW_ih: the shared blocks, then gru's n block from dGn */
  FN(gemm)(1, 0, nx, D, TB, 1, dGh, GH, x, D, 1, dw_ih, D);
  if (dGn) FN(gemm)(1, 0, H, D, TB, 1, dGn, H, x, D, 1, dw_ih + nx * D, D);
  /* dW_hh: rows t >= 1 pair with y[0 .. T-2]; rows t = 0 with h0 (or 0) */
  if (T > 1)
    FN(gemm)(1, 0, GH, H, (T - 1) * B, 1, dGh + B * GH, GH, y, H, 1, dw_hh, H);
  if (h0) FN(gemm)(1, 0, GH, H, B, 1, dGh, GH, h0, H, 1, dw_hh, H);
  for (r = 0; r < TB; r++) {
    const REAL *gr = dGh + r * GH;
    if (db_hh)
      for (j = 0; j < GH; j++) db_hh[j] += gr[j];
    if (db_ih) {
      for (j = 0; j < nx; j++) db_ih[j] += gr[j];
      if (dGn)
        for (j = 0; j < H; j++) db_ih[nx + j] += dGn[r * H + j];
    }
  }
  if (dx) {
    FN(gemm)(0, 0, TB, D, nx, 1, dGh, GH, w_ih, D, 0, dx, D);
    if (dGn) FN(gemm)(0, 0, TB, D, H, 1, dGn, H, w_ih + nx * D, D, 1, dx, D);
  }
}

/* tanh / relu.  Scratch: dG (T, B, H) | dh (B, H).
 *   dG_t = (dy_t + dh) * f'(a_t),  tanh' = 1 - h_t^2,  relu' = [h_t > 0]
 *   dh   = dG_t W_hh                                   (B, H) x (H, H) */
static void FN(elman_backward)(const bptt_rnn_dims *d, const REAL *w_hh,
                               const REAL *y, const REAL *dy,
                               REAL *dh0, REAL *scratch) {
  const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
  const int relu = d->cell == BPTT_CELL_RELU;
  REAL *dG = scratch, *dh = scratch + T * BH;
  int64_t t, e;
  /* BPTT, t = T..1, carrying dh = dL/dh_t = dy_t + dL/dh_{t+1} . dh_{t+1}/dh_t:
   * the note's sum over products of Jacobians by Horner's rule, no product
   * of Jacobians ever formed (see above). */
  for (t = T - 1; t >= 0; t--) {
    const REAL *yt = y + t * BH, *dyt = dy ? dy + t * BH : NULL;
    REAL *dGt = dG + t * BH;
    for (e = 0; e < BH; e++) {
      REAL g = dh[e] + (dyt ? dyt[e] : (REAL)0), h = yt[e];
      /* relu' as PyTorch: 0 where h <= 0, so a NaN h passes g through */
      dGt[e] = relu ? (h <= 0 ? (REAL)0 : g) : g * (1 - h * h);
    }
    /* dh <- dL/dh_{t-1} = dG_t (B, H) W_hh (H, H); dh is free: consumed above */
    if (t > 0 || dh0) FN(gemm)(0, 0, B, H, H, 1, dGt, H, w_hh, H, 0, dh, H);
  }
  if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
}

/* lstm.  Scratch: dG (T, B, 4H) | dh (B, H) | dc (B, H).  Per step, with
 * dh = dy_t + dL/dh_t from later steps and dc = dL/dc_t from later steps:
 *   dc  += dh * o * (1 - tanh^2(c_t))
 *   da_i = dc * g * i(1-i)          da_f = dc * c_{t-1} * f(1-f)
 *   da_g = dc * i * (1-g^2)         da_o = dh * tanh(c_t) * o(1-o)
 *   dc  <- dc * f                   (dL/dc_{t-1})
 *   dh  <- dG_t W_hh                (B, 4H) x (4H, H)          */
static void FN(lstm_backward)(const bptt_rnn_dims *d, const REAL *w_hh,
                              const REAL *c0, const REAL *cache,
                              const REAL *dy, REAL *dh0, REAL *scratch) {
  const int64_t T = d->T, B = d->B, H = d->H, BH = B * H, GH = 4 * H;
  const REAL *gates = cache, *cs = cache + T * B * GH;
  REAL *dG = scratch, *dh = scratch + T * B * GH, *dc = dh + BH;
  int64_t t, b, j;
  /* BPTT, t = T..1, carrying dh = dL/dh_t = dy_t + dL/dh_{t+1} . dh_{t+1}/dh_t:
   * the note's sum over products of Jacobians by Horner's rule, no product
   * of Jacobians ever formed (see above). */
  for (t = T - 1; t >= 0; t--) {
    const REAL *gt = gates + t * B * GH, *ct = cs + t * BH;
    const REAL *cp = t ? ct - BH : c0;            /* c_{t-1}; NULL = zeros */
    const REAL *dyt = dy ? dy + t * BH : NULL;
    REAL *dGt = dG + t * B * GH;
    for (b = 0; b < B; b++) {
      const REAL *g = gt + b * GH, *cb = ct + b * H;
      const REAL *cpb = cp ? cp + b * H : NULL, *dyb = dyt ? dyt + b * H : NULL;
      REAL *dg = dGt + b * GH, *dhb = dh + b * H, *dcb = dc + b * H;
      for (j = 0; j < H; j++) {
        REAL i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
        REAL tc = TANH(cb[j]);
        REAL dhv = dhb[j] + (dyb ? dyb[j] : (REAL)0);
        REAL dcv = dcb[j] + dhv * o * (1 - tc * tc);
        dg[j] = dcv * gg * i * (1 - i);
        dg[H + j] = cpb ? dcv * cpb[j] * f * (1 - f) : (REAL)0;
        dg[2 * H + j] = dcv * i * (1 - gg * gg);
        dg[3 * H + j] = dhv * tc * o * (1 - o);
        dcb[j] = dcv * f;
      }
    }
    /* dh <- dL/dh_{t-1} = dG_t (B, 4H) W_hh (4H, H) */
    if (t > 0 || dh0) FN(gemm)(0, 0, B, H, GH, 1, dGt, GH, w_hh, H, 0, dh, H);
  }
  if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
}

/* gru.  Scratch: dGh (T, B, 3H) | dGn (T, B, H) | dh (B, H).  Per step,
 * with dh = dy_t + dL/dh_t from later steps, a_n the n pre-activation:
 *   dn   = dh * (1-z)               dz = dh * (h_{t-1} - n)
 *   da_n = dn * (1-n^2)             -> dGn (input side, W_in x + b_in)
 *   dhn  = da_n * r                 -> dGh's n block (W_hn h + b_hn)
 *   da_r = da_n * hn * r(1-r)       da_z = dz * z(1-z)
 *   dh  <- dh * z + dGh_t W_hh      (direct path + (B, 3H) x (3H, H)) */
static void FN(gru_backward)(const bptt_rnn_dims *d, const REAL *w_hh,
                             const REAL *h0, const REAL *y, const REAL *cache,
                             const REAL *dy, REAL *dh0, REAL *scratch) {
  const int64_t T = d->T, B = d->B, H = d->H, BH = B * H, GH = 3 * H;
  const REAL *gates = cache, *hn = cache + T * B * GH;
  REAL *dGh = scratch, *dGn = scratch + T * B * GH, *dh = dGn + T * BH;
  int64_t t, b, j;
  /* BPTT, t = T..1, carrying dh = dL/dh_t = dy_t + dL/dh_{t+1} . dh_{t+1}/dh_t:
   * the note's sum over products of Jacobians by Horner's rule, no product
   * of Jacobians ever formed (see above). */
  for (t = T - 1; t >= 0; t--) {
    const REAL *gt = gates + t * B * GH, *hnt = hn + t * BH;
    const REAL *hp = t ? y + (t - 1) * BH : h0;   /* h_{t-1}; NULL = zeros */
    const REAL *dyt = dy ? dy + t * BH : NULL;
    REAL *dGht = dGh + t * B * GH, *dGnt = dGn + t * BH;
    for (b = 0; b < B; b++) {
      const REAL *g = gt + b * GH, *hnb = hnt + b * H;
      const REAL *hpb = hp ? hp + b * H : NULL, *dyb = dyt ? dyt + b * H : NULL;
      REAL *dg = dGht + b * GH, *dgn = dGnt + b * H, *dhb = dh + b * H;
      for (j = 0; j < H; j++) {
        REAL r = g[j], z = g[H + j], n = g[2 * H + j];
        REAL dhv = dhb[j] + (dyb ? dyb[j] : (REAL)0);
        REAL dz = dhv * ((hpb ? hpb[j] : (REAL)0) - n);
        REAL dan = dhv * (1 - z) * (1 - n * n);
        dg[j] = dan * hnb[j] * r * (1 - r);
        dg[H + j] = dz * z * (1 - z);
        dg[2 * H + j] = dan * r;
        dgn[j] = dan;
        dhb[j] = dhv * z;                         /* direct path h_{t-1} -> h_t */
      }
    }
    /* dh <- dL/dh_{t-1} = dh * z + dGh_t (B, 3H) W_hh (3H, H) */
    if (t > 0 || dh0) FN(gemm)(0, 0, B, H, GH, 1, dGht, GH, w_hh, H, 1, dh, H);
  }
  if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
}

int FN(bptt_rnn_backward)(const bptt_rnn_dims *d,
                          const REAL *w_ih, const REAL *w_hh,
                          const REAL *x, const REAL *h0, const REAL *c0,
                          const REAL *y, const REAL *cache,
                          const REAL *dy, const REAL *dhT, const REAL *dcT,
                          REAL *dx, REAL *dh0, REAL *dc0,
                          REAL *dw_ih, REAL *dw_hh,
                          REAL *db_ih, REAL *db_hh, REAL *scratch) {
  int err = bptt_rnn_check_dims(d);
  int64_t T, B, H, BH, G, GH;
  REAL *dh;
  if (err) return err;
  if (!w_ih || !w_hh || !x || !y || !dw_ih || !dw_hh || !scratch)
    return BPTT_EARG;
  if (!cache && (d->cell == BPTT_CELL_LSTM || d->cell == BPTT_CELL_GRU))
    return BPTT_EARG;
  T = d->T; B = d->B; H = d->H; BH = B * H;
  G = bptt_cell_gates(d->cell); GH = G * H;
  /* The running dh (and dc) follow the T*B*GH dG block(s) of the scratch:
   * start them at dL/dh_T, dL/dc_T. */
  dh = scratch + T * B * GH + (d->cell == BPTT_CELL_GRU ? T * BH : 0);
  if (dhT) memcpy(dh, dhT, (size_t)BH * sizeof(REAL));
  else memset(dh, 0, (size_t)BH * sizeof(REAL));
  switch (d->cell) {
    case BPTT_CELL_LSTM:
      if (dcT) memcpy(dh + BH, dcT, (size_t)BH * sizeof(REAL));
      else memset(dh + BH, 0, (size_t)BH * sizeof(REAL));
      FN(lstm_backward)(d, w_hh, c0, cache, dy, dh0, scratch);
      if (dc0) memcpy(dc0, dh + BH, (size_t)BH * sizeof(REAL));
      FN(param_grads)(d, GH, w_ih, x, h0, y, scratch, NULL,
                      dx, dw_ih, dw_hh, db_ih, db_hh);
      break;
    case BPTT_CELL_GRU:
      FN(gru_backward)(d, w_hh, h0, y, cache, dy, dh0, scratch);
      FN(param_grads)(d, GH, w_ih, x, h0, y, scratch, scratch + T * B * GH,
                      dx, dw_ih, dw_hh, db_ih, db_hh);
      break;
    default:
      FN(elman_backward)(d, w_hh, y, dy, dh0, scratch);
      FN(param_grads)(d, GH, w_ih, x, h0, y, scratch, NULL,
                      dx, dw_ih, dw_hh, db_ih, db_hh);
      break;
  }
  return BPTT_OK;
}

#undef BIAS
