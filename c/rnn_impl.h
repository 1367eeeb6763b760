/*
 * rnn_impl.h -- the RNN kernels for one real type.  Included by rnn.c only,
 * once per type, with
 *   REAL      float | double
 *   FN(name)  name##_f32 | name##_f64
 *   GEMM      cblas_sgemm | cblas_dgemm
 *   SIGMOID, TANH   bptt_sigmoidf, bptt_tanhf (activations.h: inline,
 *             vectorizable) | rnn.c's sigmoid_f64 and tanh (libm's exp, tanh)
 * No include guard on purpose.
 *
 * Notation: TB = T*B rows (every (t, b) pair), GH = G*H gate columns.  Row
 * (t, b) of a (T, B, F) buffer starts at (t*B + b)*F.  "a" is a
 * pre-activation, "dG" the loss gradient w.r.t. the gate pre-activations.
 *
 * The shape of the computation (cuDNN's, Appleyard et al. 2016, on the CPU):
 *   forward : ONE GEMM for the input projections of all T steps, onto rows
 *             of biases; per step ONE GEMM for all gates of the recurrence,
 *             then ONE fused elementwise pass (activations, cell update,
 *             cache).
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

/* Bias rows: every row of dst (rows, n) = bi + bh (either may be NULL).
 * Returns 0, writing nothing, if both are NULL, else 1: the beta of the GEMM
 * that then adds onto dst.  Biases thus enter the pre-activations before
 * the elementwise passes, which stay free of NULL tests. */
static REAL FN(bias_rows)(REAL *dst, int64_t rows, int64_t n,
                          const REAL *bi, const REAL *bh) {
  int64_t r, j;
  if (!bi && !bh) return 0;
  for (j = 0; j < n; j++)
    dst[j] = (bi ? bi[j] : (REAL)0) + (bh ? bh[j] : (REAL)0);
  for (r = 1; r < rows; r++) memcpy(dst + r * n, dst, (size_t)n * sizeof(REAL));
  return 1;
}

/* ---- forward ------------------------------------------------------------ */

/* The per-step elementwise passes.  BPTT_CLONES (activations.h) compiles
 * each for AVX-512, AVX2 and plain x86-64; the loops are written for the
 * vectorizer: gate blocks as separate restrict pointers (rows of distinct
 * buffers, or disjoint blocks of one row), unit stride, no calls (SIGMOID
 * and TANH inline for float; libm for double), and an optional operand
 * (c_{t-1}, h_{t-1}, dy_t may be NULL = zeros) tested once per pass, not
 * per element. */

/* tanh / relu, in place over the (B, H) block: h = f(a) */
BPTT_CLONES
static void FN(elman_step)(int64_t n, int relu, REAL *restrict h) {
  int64_t e;
  if (relu)  /* written so that NaN passes through, like PyTorch's */
    for (e = 0; e < n; e++) h[e] = h[e] < 0 ? (REAL)0 : h[e];
  else
    for (e = 0; e < n; e++) h[e] = TANH(h[e]);
}

/* One row of lstm: a -> i, f, g, o in place; c = f cp + i g; h = o tanh c */
BPTT_ROW void FN(lstm_row)(int64_t H, REAL *restrict gi,
                           REAL *restrict gf, REAL *restrict gg,
                           REAL *restrict go, const REAL *restrict cp,
                           REAL *restrict c, REAL *restrict h) {
  int64_t j;
  for (j = 0; j < H; j++) {
    REAL i = SIGMOID(gi[j]), f = SIGMOID(gf[j]);
    REAL g = TANH(gg[j]), o = SIGMOID(go[j]);
    REAL cv = (cp ? f * cp[j] : (REAL)0) + i * g;
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    c[j] = cv;
    h[j] = o * TANH(cv);
  }
}

/* lstm, one step: gt (B, 4H) pre-activations -> activations; ct, ht (B, H);
 * cp (B, H) = c_{t-1} or NULL */
BPTT_CLONES
static void FN(lstm_step)(int64_t B, int64_t H, REAL *gt, const REAL *cp,
                          REAL *ct, REAL *ht) {
  int64_t b;
  for (b = 0; b < B; b++) {
    REAL *g = gt + b * 4 * H;
    if (cp)
      FN(lstm_row)(H, g, g + H, g + 2 * H, g + 3 * H, cp + b * H, ct + b * H,
                   ht + b * H);
    else
      FN(lstm_row)(H, g, g + H, g + 2 * H, g + 3 * H, NULL, ct + b * H,
                   ht + b * H);
  }
}

/* One row of gru: r, z, n in place, hn = hw_n kept, h = (1-z) n + z hp */
BPTT_ROW void FN(gru_row)(int64_t H, REAL *restrict gr,
                          REAL *restrict gz, REAL *restrict gn,
                          const REAL *restrict wr,
                          const REAL *restrict wz,
                          const REAL *restrict wn,
                          const REAL *restrict hp, REAL *restrict hn,
                          REAL *restrict h) {
  int64_t j;
  for (j = 0; j < H; j++) {
    REAL r = SIGMOID(gr[j] + wr[j]), z = SIGMOID(gz[j] + wz[j]);
    REAL n = TANH(gn[j] + r * wn[j]);
    gr[j] = r;
    gz[j] = z;
    gn[j] = n;
    hn[j] = wn[j];
    h[j] = (1 - z) * n + (hp ? z * hp[j] : (REAL)0);
  }
}

/* gru, one step: gt (B, 3H) input side -> activations; hw (B, 3H) hidden
 * side; hp (B, H) = h_{t-1} or NULL; hnt, ht (B, H) */
BPTT_CLONES
static void FN(gru_step)(int64_t B, int64_t H, REAL *gt, const REAL *hw,
                         const REAL *hp, REAL *hnt, REAL *ht) {
  int64_t b;
  for (b = 0; b < B; b++) {
    REAL *g = gt + b * 3 * H;
    const REAL *w = hw + b * 3 * H;
    if (hp)
      FN(gru_row)(H, g, g + H, g + 2 * H, w, w + H, w + 2 * H, hp + b * H,
                  hnt + b * H, ht + b * H);
    else
      FN(gru_row)(H, g, g + H, g + 2 * H, w, w + H, w + 2 * H, NULL,
                  hnt + b * H, ht + b * H);
  }
}

/* tanh / relu (the seed note):  h_t = f(a_t),
 *   a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh            (B, H)
 * No cache: f'(a_t) is read off h_t in backward. */
static void FN(elman_forward)(const bptt_rnn_dims *d,
                              const REAL *w_ih, const REAL *w_hh,
                              const REAL *b_ih, const REAL *b_hh,
                              const REAL *x, const REAL *h0, REAL *y) {
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, BH = B * H;
  const int relu = d->cell == BPTT_CELL_RELU;
  int64_t t;
  /* y (TB, H) = b_ih + b_hh + x (TB, D) W_ih^T: all steps' input side */
  REAL beta = FN(bias_rows)(y, T * B, H, b_ih, b_hh);
  FN(gemm)(0, 1, T * B, H, D, 1, x, D, w_ih, D, beta, y, H);
  for (t = 0; t < T; t++) {
    REAL *yt = y + t * BH;
    const REAL *hp = t ? yt - BH : h0;          /* h_{t-1}; NULL = zeros */
    /* y_t (B, H) += h_{t-1} (B, H) W_hh^T */
    if (hp) FN(gemm)(0, 1, B, H, H, 1, hp, H, w_hh, H, 1, yt, H);
    FN(elman_step)(BH, relu, yt);
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
  int64_t t;
  /* gates (TB, 4H) = b_ih + b_hh + x (TB, D) W_ih^T */
  REAL beta = FN(bias_rows)(gates, T * B, GH, b_ih, b_hh);
  FN(gemm)(0, 1, T * B, GH, D, 1, x, D, w_ih, D, beta, gates, GH);
  for (t = 0; t < T; t++) {
    REAL *gt = gates + t * B * GH, *ct = cs + t * BH, *yt = y + t * BH;
    const REAL *hp = t ? yt - BH : h0;           /* NULL = zeros */
    const REAL *cp = t ? ct - BH : c0;
    /* gates_t (B, 4H) += h_{t-1} (B, H) W_hh^T */
    if (hp) FN(gemm)(0, 1, B, GH, H, 1, hp, H, w_hh, H, 1, gt, GH);
    FN(lstm_step)(B, H, gt, cp, ct, yt);
  }
}

/* gru.  Cache: gates (T, B, 3H) = r, z, n after activation |
 * hn (T, B, H) = W_hn h_{t-1} + b_hn | hw (B, 3H) one step's W_hh h_{t-1}
 * + b_hh.
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)   z likewise
 *   n = tanh(W_in x + b_in + r * hn)             h_t = (1 - z) n + z h_{t-1}
 * so gates start as b_ih + W_ih x, hw as b_hh + W_hh h_{t-1}: b_hn stays
 * inside r * (.). */
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
  int64_t t;
  /* gates (TB, 3H) = b_ih + x (TB, D) W_ih^T */
  REAL beta = FN(bias_rows)(gates, T * B, GH, b_ih, NULL);
  FN(gemm)(0, 1, T * B, GH, D, 1, x, D, w_ih, D, beta, gates, GH);
  for (t = 0; t < T; t++) {
    REAL *gt = gates + t * B * GH, *hnt = hn + t * BH, *yt = y + t * BH;
    const REAL *hp = t ? yt - BH : h0;           /* NULL = zeros */
    /* hw (B, 3H) = b_hh + h_{t-1} (B, H) W_hh^T */
    beta = FN(bias_rows)(hw, B, GH, NULL, b_hh);
    if (hp) FN(gemm)(0, 1, B, GH, H, 1, hp, H, w_hh, H, beta, hw, GH);
    else if (beta == 0) memset(hw, 0, (size_t)(B * GH) * sizeof(REAL));
    FN(gru_step)(B, H, gt, hw, hp, hnt, yt);
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

/* The per-step elementwise passes of backward, written like forward's. */

/* tanh / relu: dG = (dh + dy) * f'(a), read off h; dy may be NULL */
BPTT_ROW void FN(elman_dgate)(int64_t n, int relu, const REAL *restrict h,
                              const REAL *restrict dy,
                              const REAL *restrict dh,
                              REAL *restrict dG) {
  int64_t e;
  for (e = 0; e < n; e++) {
    REAL g = dh[e] + (dy ? dy[e] : (REAL)0), hv = h[e];
    /* relu' as PyTorch: 0 where h <= 0, so a NaN h passes g through */
    dG[e] = relu ? (hv <= 0 ? (REAL)0 : g) : g * (1 - hv * hv);
  }
}

/* tanh / relu backward, one step over the (B, H) block; dy may be NULL */
BPTT_CLONES
static void FN(elman_bstep)(int64_t n, int relu, const REAL *h,
                            const REAL *dy, const REAL *dh, REAL *dG) {
  if (relu && dy) FN(elman_dgate)(n, 1, h, dy, dh, dG);
  else if (relu) FN(elman_dgate)(n, 1, h, NULL, dh, dG);
  else if (dy) FN(elman_dgate)(n, 0, h, dy, dh, dG);
  else FN(elman_dgate)(n, 0, h, NULL, dh, dG);
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
  int64_t t;
  /* BPTT, t = T..1, carrying dh = dL/dh_t = dy_t + dL/dh_{t+1} . dh_{t+1}/dh_t:
   * the note's sum over products of Jacobians by Horner's rule, no product
   * of Jacobians ever formed (see above). */
  for (t = T - 1; t >= 0; t--) {
    REAL *dGt = dG + t * BH;
    FN(elman_bstep)(BH, relu, y + t * BH, dy ? dy + t * BH : NULL, dh, dGt);
    /* dh <- dL/dh_{t-1} = dG_t (B, H) W_hh (H, H); dh is free: consumed above */
    if (t > 0 || dh0) FN(gemm)(0, 0, B, H, H, 1, dGt, H, w_hh, H, 0, dh, H);
  }
  if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
}

/* One row of lstm backward (formulas below); cp, dy may be NULL */
BPTT_ROW void FN(lstm_drow)(int64_t H, const REAL *restrict gi,
                            const REAL *restrict gf,
                            const REAL *restrict gg,
                            const REAL *restrict go,
                            const REAL *restrict c,
                            const REAL *restrict cp,
                            const REAL *restrict dy,
                            const REAL *restrict dh, REAL *restrict dc,
                            REAL *restrict dai, REAL *restrict daf,
                            REAL *restrict dag, REAL *restrict dao) {
  int64_t j;
  for (j = 0; j < H; j++) {
    REAL i = gi[j], f = gf[j], g = gg[j], o = go[j];
    REAL tc = TANH(c[j]);
    REAL dhv = dh[j] + (dy ? dy[j] : (REAL)0);
    REAL dcv = dc[j] + dhv * o * (1 - tc * tc);
    dai[j] = dcv * g * i * (1 - i);
    daf[j] = cp ? dcv * cp[j] * f * (1 - f) : (REAL)0;
    dag[j] = dcv * i * (1 - g * g);
    dao[j] = dhv * tc * o * (1 - o);
    dc[j] = dcv * f;
  }
}

/* lstm backward, one step: gt (B, 4H) activations, ct (B, H), cp (B, H) or
 * NULL, dyt (B, H) or NULL, dh (B, H) read, dc (B, H) updated, dGt (B, 4H) */
BPTT_CLONES
static void FN(lstm_bstep)(int64_t B, int64_t H, const REAL *gt,
                           const REAL *ct, const REAL *cp, const REAL *dyt,
                           const REAL *dh, REAL *dc, REAL *dGt) {
  int64_t b;
  for (b = 0; b < B; b++) {
    const REAL *g = gt + b * 4 * H, *cb = ct + b * H, *dhb = dh + b * H;
    REAL *dg = dGt + b * 4 * H, *dcb = dc + b * H;
    if (cp && dyt)
      FN(lstm_drow)(H, g, g + H, g + 2 * H, g + 3 * H, cb, cp + b * H,
                    dyt + b * H, dhb, dcb, dg, dg + H, dg + 2 * H, dg + 3 * H);
    else if (cp)
      FN(lstm_drow)(H, g, g + H, g + 2 * H, g + 3 * H, cb, cp + b * H,
                    NULL, dhb, dcb, dg, dg + H, dg + 2 * H, dg + 3 * H);
    else if (dyt)
      FN(lstm_drow)(H, g, g + H, g + 2 * H, g + 3 * H, cb, NULL,
                    dyt + b * H, dhb, dcb, dg, dg + H, dg + 2 * H, dg + 3 * H);
    else
      FN(lstm_drow)(H, g, g + H, g + 2 * H, g + 3 * H, cb, NULL,
                    NULL, dhb, dcb, dg, dg + H, dg + 2 * H, dg + 3 * H);
  }
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
  int64_t t;
  /* BPTT, t = T..1, carrying dh = dL/dh_t = dy_t + dL/dh_{t+1} . dh_{t+1}/dh_t:
   * the note's sum over products of Jacobians by Horner's rule, no product
   * of Jacobians ever formed (see above). */
  for (t = T - 1; t >= 0; t--) {
    const REAL *ct = cs + t * BH;
    const REAL *cp = t ? ct - BH : c0;            /* c_{t-1}; NULL = zeros */
    REAL *dGt = dG + t * B * GH;
    FN(lstm_bstep)(B, H, gates + t * B * GH, ct, cp, dy ? dy + t * BH : NULL,
                   dh, dc, dGt);
    /* dh <- dL/dh_{t-1} = dG_t (B, 4H) W_hh (4H, H) */
    if (t > 0 || dh0) FN(gemm)(0, 0, B, H, GH, 1, dGt, GH, w_hh, H, 0, dh, H);
  }
  if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
}

/* One row of gru backward (formulas below); hp, dy may be NULL */
BPTT_ROW void FN(gru_drow)(int64_t H, const REAL *restrict gr,
                           const REAL *restrict gz,
                           const REAL *restrict gn,
                           const REAL *restrict hn,
                           const REAL *restrict hp,
                           const REAL *restrict dy, REAL *restrict dh,
                           REAL *restrict dar, REAL *restrict daz,
                           REAL *restrict dhn, REAL *restrict dan) {
  int64_t j;
  for (j = 0; j < H; j++) {
    REAL r = gr[j], z = gz[j], n = gn[j];
    REAL dhv = dh[j] + (dy ? dy[j] : (REAL)0);
    REAL dzv = dhv * ((hp ? hp[j] : (REAL)0) - n);
    REAL danv = dhv * (1 - z) * (1 - n * n);
    dar[j] = danv * hn[j] * r * (1 - r);
    daz[j] = dzv * z * (1 - z);
    dhn[j] = danv * r;
    dan[j] = danv;
    dh[j] = dhv * z;                      /* direct path h_{t-1} -> h_t */
  }
}

/* gru backward, one step: gt (B, 3H) activations, hnt (B, H), hp (B, H) or
 * NULL, dyt (B, H) or NULL, dh (B, H) updated, dGht (B, 3H), dGnt (B, H) */
BPTT_CLONES
static void FN(gru_bstep)(int64_t B, int64_t H, const REAL *gt,
                          const REAL *hnt, const REAL *hp, const REAL *dyt,
                          REAL *dh, REAL *dGht, REAL *dGnt) {
  int64_t b;
  for (b = 0; b < B; b++) {
    const REAL *g = gt + b * 3 * H, *hnb = hnt + b * H;
    REAL *dg = dGht + b * 3 * H, *dgn = dGnt + b * H, *dhb = dh + b * H;
    if (hp && dyt)
      FN(gru_drow)(H, g, g + H, g + 2 * H, hnb, hp + b * H, dyt + b * H, dhb,
                   dg, dg + H, dg + 2 * H, dgn);
    else if (hp)
      FN(gru_drow)(H, g, g + H, g + 2 * H, hnb, hp + b * H, NULL, dhb,
                   dg, dg + H, dg + 2 * H, dgn);
    else if (dyt)
      FN(gru_drow)(H, g, g + H, g + 2 * H, hnb, NULL, dyt + b * H, dhb,
                   dg, dg + H, dg + 2 * H, dgn);
    else
      FN(gru_drow)(H, g, g + H, g + 2 * H, hnb, NULL, NULL, dhb,
                   dg, dg + H, dg + 2 * H, dgn);
  }
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
  int64_t t;
  /* BPTT, t = T..1, carrying dh = dL/dh_t = dy_t + dL/dh_{t+1} . dh_{t+1}/dh_t:
   * the note's sum over products of Jacobians by Horner's rule, no product
   * of Jacobians ever formed (see above). */
  for (t = T - 1; t >= 0; t--) {
    const REAL *hp = t ? y + (t - 1) * BH : h0;   /* h_{t-1}; NULL = zeros */
    REAL *dGht = dGh + t * B * GH;
    FN(gru_bstep)(B, H, gates + t * B * GH, hn + t * BH, hp,
                  dy ? dy + t * BH : NULL, dh, dGht, dGn + t * BH);
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

