/*
 * generic/rnn_bptt.c -- the recurrent layer's forward over all T steps and
 * its backpropagation through time, written once over `real` and
 * instantiated for float and double by generic.h (which defines FN, GEMM,
 * GEMV, USE_PACKED, PACK, PACKED_GEMM, SIGMOID, TANH for each type).
 * Included from rnn.c only.
 *
 * Notation: TB = T*B rows (every (t, b) pair), GH = G*H gate columns.  Row
 * (t, b) of a (T, B, F) buffer starts at (t*B + b)*F.  "a" is a
 * pre-activation, "dG" the loss gradient w.r.t. the gate pre-activations.
 *
 * The shape of the computation (cuDNN's, Appleyard et al. 2016, on the CPU):
 *   forward : ONE GEMM for the input projections of all T steps, onto rows
 *             of biases; per step the GEMM of the recurrence for all gates,
 *             then ONE fused elementwise pass (activations, cell update,
 *             cache).
 *   backward: per step ONE fused elementwise pass giving dG_t, then the
 *             GEMM for dh_{t-1}; after the recursion the weight gradients,
 *             dx and the bias sums over all T*B rows at once.
 *
 * Threads (parallel.h).  Forward and backward each run as ONE region of n
 * team threads.  The batched GEMMs are split by rows of their output
 * (input projections and dx by the T*B rows, weight gradients by the GH
 * rows).  The recursion is split one of two ways (plan() chooses):
 *   by batch rows, when every thread gets at least 8 of them: the rows of
 *     a batch never meet in the recursion, so thread k runs all T steps of
 *     its rows [b0, b1) -- their per-step GEMM against all of W_hh (packed
 *     once, shared) and their elementwise pass -- with no barrier and no
 *     exchange at all until the recursion ends;
 *   by hidden units otherwise (few rows: B = 1 sampling): thread k owns the
 *     units [j0, j1), runs the GEMM columns of those units in every gate
 *     block and their elementwise pass, and the threads exchange h_t
 *     (forward) or dG_t (backward): one barrier per step.
 * Every output element is computed by one thread in the same order as with
 * n = 1, so results do not depend on the thread count (the packed kernel's
 * sums do not depend on which rows share a tile).
 */

/* C (M, N) = alpha op(A) op(B) + beta C, row-major.  rnn_sizes() checked
 * that every dimension fits in int.  An empty product (M or N = 0, a thread
 * with no share) does nothing.  One row (B = 1: sampling) is a GEMV, which
 * reads the weights once instead of packing them first. */
static void FN(gemm)(int transa, int transb, int64_t M, int64_t N, int64_t K, real alpha, const real *A, int64_t lda,
                     const real *Bm, int64_t ldb, real beta, real *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (M == 1) {
    /* C row = op(B)^T a: B (N, K) as stored when transb, else (K, N) */
    GEMV(CblasRowMajor, transb ? CblasNoTrans : CblasTrans, transb ? (int)N : (int)K, transb ? (int)K : (int)N, alpha,
         Bm, (int)ldb, A, transa ? (int)lda : 1, beta, C, 1);
    return;
  }
  GEMM(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
       alpha, A, (int)lda, Bm, (int)ldb, beta, C, (int)ldc);
}

/* Bias: columns [c0, c1) of every row of dst (rows, ld) = bi + bh, bh only
 * in the columns before hcut (gru keeps b_hn out: it is inside r * (.));
 * either may be NULL.  Returns 0, writing nothing, if both are NULL, else
 * 1: the beta of the GEMM that then adds onto dst.  Biases thus enter the
 * pre-activations before the elementwise passes. */
static real FN(bias_rows)(real *dst, int64_t rows, int64_t ld, int64_t c0, int64_t c1, const real *bi, const real *bh,
                          int64_t hcut) {
  int64_t r, j, cut = c1 < hcut ? c1 : hcut;
  if (!bi && !bh) return 0;
  if (rows <= 0 || c1 <= c0) return 1;
  /* the first row, then copies of it (memcpy: a vectorized pass) */
  for (j = c0; j < c1; j++) dst[j] = bi ? bi[j] : (real)0;
  if (bh)
    for (j = c0; j < cut; j++) dst[j] += bh[j];
  for (r = 1; r < rows; r++) memcpy(dst + r * ld + c0, dst + c0, (size_t)(c1 - c0) * sizeof(real));
  return 1;
}

/* The state of one forward or backward call, shared by its threads. */
typedef struct {
  const bptt_rnn_dims *d;
  int64_t G, GH;
  const real *w_ih, *w_hh, *b_ih, *b_hh, *x, *h0, *c0;
  const real *y, *cache;   /* read by backward */
  real *y_out, *cache_out; /* written by forward */
  /* backward only */
  const real *dy;
  real *dx, *dh0, *dw_ih, *dw_hh, *db_ih, *db_hh, *scratch;
  /* the recursion split by batch rows (else by units), and then the packed
   * W_hh that the threads share (NULL: BLAS) */
  int by_rows;
  real *pk_shared;
  /* gradient-flow recording (rnn.h's bptt_rnn_opts), NULL when off:
   * per-row sums of squares fl_h, fl_c (T, B) and the per-step group
   * partials fl_part (2 parities, dh | dc, each (B, fl_ng)) */
  double *fl_h, *fl_c, *fl_part, *fl_dW;
  int64_t fl_ng, fl_ld;
  int err; /* set by a thread that could not get its scratch */
  /* Blocks and segments (rnn.h's checkpointing).  The batched GEMMs run
   * over blocks of S steps counted from step 0; the cache and dG live in
   * rings of nb blocks, C = nb * S steps (step t at slot SLOT(t)), or of C
   * = T steps when nothing is checkpointed (slot t: the plain layout).
   * One run covers the steps [t0, t1): forward projects the blocks that
   * meet them, then runs the recursion; backward runs the recursion down
   * them, then adds the blocks fhi down to flo into the weight gradients. */
  int64_t S, nb, C, t0, t1, flo, fhi;
  const real *c_seg; /* lstm: c_{t0-1} (c0 at t0 = 0; NULL = zeros) */
  int recompute;     /* forward again over a kept y: h_t goes to junk */
  real *junk;        /* (B, H) */
  /* sequence options (rnn.h's bptt_rnn_seq): reverse, batch_sizes, reset;
   * never together with checkpointing or flow recording (t0 = 0, t1 = T,
   * C = T then) */
  int rev;
  const int32_t *bs, *reset;
  /* b_ih + b_hh (gru: b_hn left out) as one row, for the kernels that add
   * it as they store the input projection (NULL: no bias, or filled rows) */
  real *brow;
} FN(rnn_job);

/* job->brow for a call that runs forward_task: the row bias_rows writes
 * first, kept apart; NULL (then bias_rows fills the rows) when there is no
 * bias, no memory for it, or no block of steps has the 64 rows from which
 * forward_task splits a block by rows (B = 1 sampling: no allocation per
 * token).  The caller frees it. */
static void FN(brow_make)(FN(rnn_job) *job) {
  const int64_t GH = job->GH, cut = job->d->cell == BPTT_CELL_GRU ? 2 * job->d->H : GH;
  const int64_t T = job->d->T, rows = (job->S < T ? job->S : T) * job->d->B;
  job->brow = NULL;
  if ((!job->b_ih && !job->b_hh) || rows < 64) return;
  job->brow = bptt_malloc((size_t)GH * sizeof(real));
  if (job->brow) FN(bias_rows)(job->brow, 1, GH, 0, GH, job->b_ih, job->b_hh, cut);
}

/* slot of step t in a ring of nb blocks of S steps */
#define RNN_SLOT(job, t) ((((t) / (job)->S) % (job)->nb) * (job)->S + (t) % (job)->S)

/* One thread's share of a call: in the recursion the batch rows [b0, b1)
 * and units [j0, j1) -- all units of its rows (by rows) or its units (whole
 * 16s: 64 bytes of float) of every row (by units); in the batched GEMMs the
 * rows [r0, r1) of T*B. */
typedef struct {
  int64_t b0, b1, j0, j1, r0, r1;
} FN(share);

static FN(share) FN(share_of)(const FN(rnn_job) *job, int tid, int n) {
  const bptt_rnn_dims *d = job->d;
  FN(share) s;
  long long a, b;
  if (job->by_rows) {
    bptt_parallel_range(d->B, 1, tid, n, &a, &b);
    s.b0 = a, s.b1 = b, s.j0 = 0, s.j1 = d->H;
  } else {
    bptt_parallel_range(d->H, 16, tid, n, &a, &b);
    s.b0 = 0, s.b1 = d->B, s.j0 = a, s.j1 = b;
  }
  bptt_parallel_range(d->T * d->B, 1, tid, n, &a, &b);
  s.r0 = a, s.r1 = b;
  return s;
}

/* p + off, or NULL for a NULL p (an absent operand: zeros) */
#define ROWS_AT(p, off) ((p) ? (p) + (off) : NULL)

/* ---- steps, rows and where their h_{t-1} comes from (rnn.h's
 * bptt_rnn_seq) ---------------------------------------------------------
 * The i-th step run is t = i, or t = T-1-i in reverse; its previous step
 * is t-1 (t+1 in reverse).  At step t rows [0, n_t) run (all B without
 * batch_sizes); of these, rows [0, np) continue from the previous step's
 * h and c, rows [np, n_t) start there from h0, c0 (np = 0 at i = 0), and a
 * row with a reset flag starts from zeros.  The loops below take the rows
 * of a step in runs of one source (SRC_PREV, SRC_H0, SRC_ZERO: rnn.c), so
 * each run is one GEMM. */

static int64_t FN(nrows)(const FN(rnn_job) *job, int64_t t) { return job->bs ? (int64_t)job->bs[t] : job->d->B; }

/* step t of the i-th run, its previous step *tp, n_t (*nt), np (*np) */
static int64_t FN(step_of)(const FN(rnn_job) *job, int64_t i, int64_t *tp, int64_t *nt, int64_t *np) {
  const int64_t T = job->d->T, t = job->rev ? T - 1 - i : i;
  *tp = job->rev ? t + 1 : t - 1;
  *nt = FN(nrows)(job, t);
  *np = i ? FN(nrows)(job, *tp) : 0;
  if (*np > *nt) *np = *nt;
  return t;
}

/* The run of rows [r, e) (e <= e1) of one source starting at row r of
 * step t; returns e, sets *src. */
static int64_t FN(run_of)(const FN(rnn_job) *job, int64_t t, int64_t np, int64_t r, int64_t e1, int *src) {
  const int32_t *rs = job->reset ? job->reset + t * job->d->B : NULL;
  int64_t e;
  int s0 = rs && rs[r] ? SRC_ZERO : r < np ? SRC_PREV : SRC_H0;
  for (e = r + 1; e < e1; e++) {
    int s1 = rs && rs[e] ? SRC_ZERO : e < np ? SRC_PREV : SRC_H0;
    if (s1 != s0) break;
  }
  *src = s0;
  return e;
}

/* Zeroes units [j0, j0 + nj) of each of G blocks of rows [r0, r1) of a
 * (rows, G*H) buffer. */
static void FN(zero_rows)(real *p, int64_t r0, int64_t r1, int64_t G, int64_t H, int64_t j0, int64_t nj) {
  int64_t r, g;
  for (r = r0; r < r1; r++)
    for (g = 0; g < G; g++) memset(p + (r * G + g) * H + j0, 0, (size_t)nj * sizeof(real));
}

/* W_hh packed (packed.h) for the recursion: forward W_hh^T in G gate blocks
 * of *blk floats, backward W_hh (one block).  By units: the thread's
 * columns, into its own scratch.  By rows: every column, into the job's
 * shared buffer, each thread packing a share of the 16-column panels (the
 * caller then waits at a barrier).  NULL: BLAS instead. */
static real *FN(packed_w_hh)(const FN(rnn_job) *job, int fwd, int tid, int n, int64_t j0, int64_t j1, int64_t *blk) {
  const bptt_rnn_dims *d = job->d;
  const int64_t H = d->H, G = job->G, GH = job->GH;
  int64_t g, c0 = j0, c1 = j1;
  real *pk;
  if (!USE_PACKED(d->B, d->T) || j1 <= j0) return NULL;
  *blk = fwd ? bptt_packed_floats(H, j1 - j0) : bptt_packed_floats(GH, j1 - j0);
  if (job->by_rows) {
    long long a, b;
    if (!(pk = job->pk_shared)) return NULL;
    bptt_parallel_range(H, 16, tid, n, &a, &b);
    c0 = a, c1 = b;
  } else {
    pk = bptt_parallel_scratch(tid, (size_t)((fwd ? G : 1) * *blk) * sizeof(real));
    if (!pk) return NULL;
  }
  /* columns c0..c1 of the block(s): their panels start at c0 * K */
  if (c1 > c0) {
    if (fwd)
      for (g = 0; g < G; g++) PACK(pk + g * *blk + (c0 - j0) * H, job->w_hh + (g * H + c0) * H, H, 1, H, c1 - c0);
    else
      PACK(pk + (c0 - j0) * GH, job->w_hh + c0, H, 0, GH, c1 - c0);
  }
  return pk;
}

/* Per step: C[:, g*H + j0 .. + nj] (+)= A (M, K) W[g*H + j0 .., :]^T for
 * each of G gate blocks of W (GH, K), i.e. this thread's columns of
 * A W^T.  One GEMM when the thread owns every unit. */
static void FN(gate_cols)(int64_t G, int64_t H, int64_t j0, int64_t nj, int64_t M, int64_t K, const real *A,
                          const real *W, real beta, real *C) {
  int64_t g;
  if (nj == H) {
    FN(gemm)(0, 1, M, G * H, K, 1, A, K, W, K, beta, C, G * H);
    return;
  }
  for (g = 0; g < G; g++) FN(gemm)(0, 1, M, nj, K, 1, A, K, W + (g * H + j0) * K, K, beta, C + g * H + j0, G * H);
}

/* The per-step GEMM through this thread's packed weights (packed.h) when
 * it has them (pk), else gate_cols: blk floats per gate block of pk. */
static void FN(rec_cols)(const real *pk, int64_t blk, int64_t G, int64_t H, int64_t j0, int64_t nj, int64_t M,
                         int64_t K, const real *A, const real *W, real beta, real *C) {
  int64_t g;
  if (!pk) {
    FN(gate_cols)(G, H, j0, nj, M, K, A, W, beta, C);
    return;
  }
  for (g = 0; g < G; g++) PACKED_GEMM(M, nj, K, A, K, pk + g * blk, beta, C + g * H + j0, G * H);
}

/* ---- forward ------------------------------------------------------------ */

/* d[j] += s[j], j < n */
BPTT_ROW void FN(add_row)(int64_t n, const real *restrict s, real *restrict d) {
  int64_t j;
  for (j = 0; j < n; j++) d[j] += s[j];
}

/* The per-step elementwise passes, over units [j0, j0 + nj) of every row.
 * BPTT_KERNEL (isa.h) compiles each for AVX-512, AVX2 and plain x86-64
 * (the CPU's best runs, or BPTT_ISA's choice); the loops are written for
 * the vectorizer: gate blocks as separate restrict pointers (rows of
 * distinct buffers, or disjoint blocks of one row), unit stride, no calls
 * (SIGMOID and TANH inline for float; libm for double), and an optional
 * operand (c_{t-1}, h_{t-1}, dy_t may be NULL = zeros) tested once per pass,
 * not per element. */

/* tanh / relu, in place over n values: h = f(a) */
BPTT_ROW void FN(elman_row)(int64_t n, int relu, real *restrict h) {
  int64_t e;
  if (relu) /* written so that NaN passes through, like PyTorch's */
    for (e = 0; e < n; e++) h[e] = h[e] < 0 ? (real)0 : h[e];
  else
    for (e = 0; e < n; e++) h[e] = TANH(h[e]);
}

/* tanh / relu, one step: ht (B, H), units [j0, j0 + nj) */
BPTT_KERNEL_VOID(FN(elman_step), (int64_t B, int64_t H, int64_t j0, int64_t nj, int relu, real *ht),
                 (B, H, j0, nj, relu, ht)) {
  int64_t b;
  for (b = 0; b < B; b++) FN(elman_row)(nj, relu, ht + b * H + j0);
}

/* One row of lstm: a -> i, f, g, o in place; c = f cp + i g; h = o tanh c */
BPTT_ROW void FN(lstm_row)(int64_t H, real *restrict gi, real *restrict gf, real *restrict gg, real *restrict go,
                           const real *restrict cp, real *restrict c, real *restrict h) {
  int64_t j;
  for (j = 0; j < H; j++) {
    real i = SIGMOID(gi[j]), f = SIGMOID(gf[j]);
    real g = TANH(gg[j]), o = SIGMOID(go[j]);
    real cv = (cp ? f * cp[j] : (real)0) + i * g;
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    c[j] = cv;
    h[j] = o * TANH(cv);
  }
}

/* lstm, one step: gt (B, 4H) pre-activations -> activations; ct, ht (B, H);
 * cp (B, H) = c_{t-1} or NULL; units [j0, j0 + nj) */
BPTT_KERNEL_VOID(FN(lstm_step),
                 (int64_t B, int64_t H, int64_t j0, int64_t nj, real *gt, const real *cp, real *ct, real *ht),
                 (B, H, j0, nj, gt, cp, ct, ht)) {
  int64_t b;
  for (b = 0; b < B; b++) {
    real *g = gt + b * 4 * H + j0;
    int64_t o = b * H + j0;
    if (cp)
      FN(lstm_row)(nj, g, g + H, g + 2 * H, g + 3 * H, cp + o, ct + o, ht + o);
    else
      FN(lstm_row)(nj, g, g + H, g + 2 * H, g + 3 * H, NULL, ct + o, ht + o);
  }
}

/* One row of gru: r, z, n in place, hn = hw_n + b_hn kept, h = (1-z) n +
 * z hp; bn (b_hn) may be NULL */
BPTT_ROW void FN(gru_row)(int64_t H, real *restrict gr, real *restrict gz, real *restrict gn, const real *restrict wr,
                          const real *restrict wz, const real *restrict wn, const real *restrict bn,
                          const real *restrict hp, real *restrict hn, real *restrict h) {
  int64_t j;
  for (j = 0; j < H; j++) {
    real r = SIGMOID(gr[j] + wr[j]), z = SIGMOID(gz[j] + wz[j]);
    real hnv = wn[j] + (bn ? bn[j] : (real)0);
    real n = TANH(gn[j] + r * hnv);
    gr[j] = r;
    gz[j] = z;
    gn[j] = n;
    hn[j] = hnv;
    h[j] = (1 - z) * n + (hp ? z * hp[j] : (real)0);
  }
}

/* gru, one step: gt (B, 3H) input side (with b_ih, and b_hr, b_hz) ->
 * activations; hw (B, 3H) = W_hh h_{t-1}; bn = b_hn + j0 or NULL; hp (B, H)
 * = h_{t-1} or NULL; hnt, ht (B, H); units [j0, j0 + nj) */
BPTT_KERNEL_VOID(FN(gru_step),
                 (int64_t B, int64_t H, int64_t j0, int64_t nj, real *gt, const real *hw, const real *bn,
                  const real *hp, real *hnt, real *ht),
                 (B, H, j0, nj, gt, hw, bn, hp, hnt, ht)) {
  int64_t b;
  for (b = 0; b < B; b++) {
    real *g = gt + b * 3 * H + j0;
    const real *w = hw + b * 3 * H + j0;
    int64_t o = b * H + j0;
    if (hp && bn)
      FN(gru_row)(nj, g, g + H, g + 2 * H, w, w + H, w + 2 * H, bn, hp + o, hnt + o, ht + o);
    else if (hp)
      FN(gru_row)(nj, g, g + H, g + 2 * H, w, w + H, w + 2 * H, NULL, hp + o, hnt + o, ht + o);
    else if (bn)
      FN(gru_row)(nj, g, g + H, g + 2 * H, w, w + H, w + 2 * H, bn, NULL, hnt + o, ht + o);
    else
      FN(gru_row)(nj, g, g + H, g + 2 * H, w, w + H, w + 2 * H, NULL, NULL, hnt + o, ht + o);
  }
}

/* The cells' forward passes, one thread's share (see the top).
 *
 * tanh / relu (the seed note):  h_t = f(a_t), no cache (f'(a_t) is read
 * off h_t in backward),
 *   a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh            (B, H)
 * lstm.  Cache: gates (T, B, 4H) = i, f, g, o after activation | c (T, B, H).
 *   a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh            (B, 4H)
 *   i, f, o = sigmoid(a_i, a_f, a_o)   g = tanh(a_g)
 *   c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)
 * gru.  Cache: gates (T, B, 3H) = r, z, n after activation |
 * hn (T, B, H) = W_hn h_{t-1} + b_hn | hw (B, 3H) one step's W_hh h_{t-1}.
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)   z likewise
 *   n = tanh(W_in x + b_in + r * hn)             h_t = (1 - z) n + z h_{t-1}
 * so the gates start as b_ih + W_ih x, plus b_hr and b_hz; b_hn stays
 * inside r * (.) and is added in the elementwise pass. */
static void FN(forward_task)(void *ctx, int tid, int n) {
  const FN(rnn_job) *job = ctx;
  const bptt_rnn_dims *d = job->d;
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, BH = B * H;
  const int64_t G = job->G, GH = job->GH, S = job->S, C = job->C;
  const int cell = d->cell, relu = cell == BPTT_CELL_RELU;
  const int gated = cell == BPTT_CELL_LSTM || cell == BPTT_CELL_GRU;
  const real *h0 = job->h0, *w_hh = job->w_hh;
  real *y = job->y_out, *cache = job->cache_out;
  /* h_{t-1} is read from y: the one being written, or, recomputing, the
   * one forward wrote (h_t then goes to junk) */
  const real *yin = job->recompute ? job->y : y;
  /* pre-activations: lstm and gru's gates (ring slots), tanh/relu's y */
  real *cs = gated ? cache + C * B * GH : NULL;          /* lstm c, gru hn (ring) */
  real *hw = cell == BPTT_CELL_GRU ? cs + C * BH : NULL; /* gru's hidden side */
  /* the hidden-side biases join the input side's, but gru's b_hn */
  const int64_t hcut = cell == BPTT_CELL_GRU ? 2 * H : GH;
  const FN(share) s = FN(share_of)(job, tid, n);
  const int64_t j0 = s.j0, j1 = s.j1, nj = j1 - j0;
  int64_t i, blk = 0, k;
  int rows_split = 0;
  real beta;
  /* W_hh^T packed once for the steps (the barrier below covers by rows'
   * shared packing) */
  real *pk = FN(packed_w_hh)(job, 1, tid, n, j0, j1, &blk);
  /* pre (rows, GH) = b_ih (+ b_hh, but for gru) + x W_ih^T, block by block
   * over the blocks that meet [t0, t1): this thread's rows of the block,
   * or when the block has few rows (sampling), its units' columns */
  for (k = job->t0 / S; k * S < job->t1; k++) {
    const int64_t bs = k * S, nr = ((bs + S < T ? bs + S : T) - bs) * B;
    const real *xb = job->x + bs * B * D;
    real *pre = gated ? cache + RNN_SLOT(job, bs) * B * GH : y + bs * BH;
    long long a, b;
    if (nr >= 64 * n) {
      rows_split = 1;
      bptt_parallel_range(nr, 1, tid, n, &a, &b);
      if (job->brow) { /* the bias added as the kernel stores (gemm.h) */
        if (b > a)
          GEMM_BIAS(0, 1, (int)(b - a), (int)GH, (int)D, xb + a * D, (int)D, job->w_ih, (int)D, job->brow, pre + a * GH,
                    (int)GH);
      } else {
        beta = FN(bias_rows)(pre + a * GH, b - a, GH, 0, GH, job->b_ih, job->b_hh, hcut);
        FN(gemm)(0, 1, b - a, GH, D, 1, xb + a * D, D, job->w_ih, D, beta, pre + a * GH, GH);
      }
    } else {
      int64_t g;
      bptt_parallel_range(H, 16, tid, n, &a, &b); /* the units' split, whatever the recursion's */
      beta = 0;
      if (b > a) {
        for (g = 0; g < G; g++) beta = FN(bias_rows)(pre, nr, GH, g * H + a, g * H + b, job->b_ih, job->b_hh, hcut);
        FN(gate_cols)(G, H, a, b - a, nr, D, xb, job->w_ih, beta, pre);
      }
    }
  }
  /* the recursion reads pre-activations other threads wrote, but when
   * every block went by units, split as the recursion splits them (by
   * units: few rows, as in sampling), and W_hh is this thread's own */
  if (rows_split || job->by_rows) bptt_parallel_barrier(n);
  /* the recursion over this thread's rows b0..b1 that run at step t, in
   * runs of one source (above), and its units j0.. (nj of them); steps i
   * of [t0, t1) (step_of: t = i but in reverse) */
  for (i = job->t0; i < job->t1; i++) {
    int64_t tp, nt, np, r, e, e1;
    const int64_t t = FN(step_of)(job, i, &tp, &nt, &np);
    real *pt = gated ? cache + RNN_SLOT(job, t) * B * GH : y + t * BH;
    real *yt = job->recompute ? job->junk : y + t * BH;
    const real *yp = i ? yin + tp * BH : NULL;
    e1 = s.b1 < nt ? s.b1 : nt;
    for (r = s.b0; nj > 0 && r < e1; r = e) {
      int src;
      const real *hp;
      int64_t m;
      e = FN(run_of)(job, t, np, r, e1, &src);
      m = e - r;
      hp = src == SRC_PREV ? yp + r * H : src == SRC_H0 ? ROWS_AT(h0, r * H) : NULL;
      switch (cell) {
        case BPTT_CELL_LSTM: {
          real *ct = cs + RNN_SLOT(job, t) * BH + r * H;
          /* c_{t-1}: the ring's, or at a run's first step c_seg */
          const real *cp = src == SRC_PREV
                               ? (i == job->t0 ? ROWS_AT(job->c_seg, r * H) : cs + RNN_SLOT(job, tp) * BH + r * H)
                           : src == SRC_H0 ? ROWS_AT(job->c0, r * H)
                                           : NULL;
          /* gates_t (B, 4H) += h_{t-1} (B, H) W_hh^T */
          if (hp) FN(rec_cols)(pk, blk, 4, H, j0, nj, m, H, hp, w_hh, 1, pt + r * GH);
          FN(lstm_step)(m, H, j0, nj, pt + r * GH, cp, ct, yt + r * H);
          break;
        }
        case BPTT_CELL_GRU: {
          real *hwr = hw + r * GH;
          /* hw (B, 3H) = h_{t-1} (B, H) W_hh^T */
          if (hp)
            FN(rec_cols)(pk, blk, 3, H, j0, nj, m, H, hp, w_hh, 0, hwr);
          else
            FN(zero_rows)(hwr, 0, m, 3, H, j0, nj);
          FN(gru_step)(m, H, j0, nj, pt + r * GH, hwr, job->b_hh ? job->b_hh + 2 * H + j0 : NULL, hp,
                       cs + RNN_SLOT(job, t) * BH + r * H, yt + r * H);
          break;
        }
        default:
          /* y_t (B, H) += h_{t-1} (B, H) W_hh^T */
          if (hp) FN(rec_cols)(pk, blk, 1, H, j0, nj, m, H, hp, w_hh, 1, yt + r * H);
          FN(elman_step)(m, H, j0, nj, relu, yt + r * H);
          break;
      }
    }
    /* rows past their length: output 0 (tanh/relu's y held the input
     * projection) */
    if (nj > 0 && nt < s.b1) FN(zero_rows)(yt, nt > s.b0 ? nt : s.b0, s.b1, 1, H, j0, nj);
    /* by units, h_t is complete only when every thread is done with it; by
     * rows, a thread reads back only the rows it wrote; after the last step,
     * the end of the region waits */
    if (!job->by_rows && i + 1 < job->t1) bptt_parallel_barrier(n);
  }
}

/* How a call runs: returns its thread count (the team, but at least 32
 * units each) and sets the recursion's split: by rows when rnn.c's
 * RNN_SPLIT_ROWS says so (enough rows, W_hh not too big); then W_hh is
 * packed once, into thread 0's scratch, for all. */
static int FN(plan)(FN(rnn_job) *job, int fwd) {
  const bptt_rnn_dims *d = job->d;
  int64_t n = d->H / 32;
  n = n < 1 ? 1 : n > bptt_parallel_threads() ? bptt_parallel_threads() : n;
  job->by_rows = RNN_SPLIT_ROWS(d, n, job->G, sizeof(real));
  job->pk_shared = NULL;
  if (job->by_rows && USE_PACKED(d->B, d->T)) {
    int64_t f = fwd ? job->G * bptt_packed_floats(d->H, d->H) : bptt_packed_floats(job->GH, d->H);
    job->pk_shared = bptt_parallel_scratch(0, (size_t)f * sizeof(real));
  }
  return (int)n;
}

/* BPTT_OK if s (may be NULL) is usable with d: batch_sizes start at B and
 * do not grow (0 past the longest row). */
static int FN(check_seq)(const bptt_rnn_dims *d, const bptt_rnn_seq *s) {
  int64_t t;
  if (!s || !s->batch_sizes) return BPTT_OK;
  if (s->batch_sizes[0] != d->B) return BPTT_EARG;
  for (t = 1; t < d->T; t++)
    if (s->batch_sizes[t] < 0 || s->batch_sizes[t] > s->batch_sizes[t - 1]) return BPTT_EARG;
  return BPTT_OK;
}

/* Row b's last step run (its state then is hT): 0 in reverse, else
 * L_b - 1, where L_b = #{t : n_t > b} */
static void FN(final_rows)(const FN(rnn_job) *job, const real *src, real *dst) {
  const int64_t T = job->d->T, B = job->d->B, H = job->d->H;
  int64_t b, t = T; /* t = L_b, found walking down as b grows */
  for (b = 0; b < B; b++) {
    int64_t last;
    while (t > 0 && FN(nrows)(job, t - 1) <= b) t--;
    last = job->rev ? 0 : t - 1;
    memcpy(dst + b * H, src + (last * B + b) * H, (size_t)H * sizeof(real));
  }
}

/* The job of a forward or backward call: everything but the run's steps.
 * Sequence options with checkpointing or flow recording: EARG (rnn.h). */
static int FN(job_init)(FN(rnn_job) *job, const bptt_rnn_dims *d, const bptt_rnn_opts *opts) {
  int err = bptt_rnn_check_dims(d);
  int64_t k = opts ? opts->checkpoint : 0;
  const bptt_rnn_seq *sq = opts ? opts->seq : NULL;
  if (err) return err;
  if (k < 0) return BPTT_EARG;
  if ((err = FN(check_seq)(d, sq))) return err;
  if (sq && (sq->reverse || sq->batch_sizes || sq->reset) && (k > 0 || opts->flow_dh)) return BPTT_EARG;
  memset(job, 0, sizeof *job);
  job->d = d, job->G = bptt_cell_gates(d->cell), job->GH = job->G * d->H;
  rnn_ring(d, k, &job->S, &job->nb, &job->C);
  if (sq) job->rev = sq->reverse != 0, job->bs = sq->batch_sizes, job->reset = sq->reset;
  return BPTT_OK;
}

/* With checkpointing: the scratch's window cache (after dG, dh, dc; the
 * cache layout over the ring's C steps) and the junk row after it. */
static real *FN(window)(const FN(rnn_job) *job, real *scratch) {
  const int64_t BH = job->d->B * job->d->H, C = job->C;
  const int cell = job->d->cell;
  return scratch + C * job->d->B * job->GH + (cell == BPTT_CELL_GRU ? C * BH : 0) + BH +
         (cell == BPTT_CELL_LSTM ? BH : 0);
}

int FN(bptt_rnn_forward_ex)(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, const real *w_ih, const real *w_hh,
                            const real *b_ih, const real *b_hh, const real *x, const real *h0, const real *c0, real *y,
                            real *hT, real *cT, real *cache, real *scratch) {
  FN(rnn_job) job;
  int err = FN(job_init)(&job, d, opts);
  int64_t T, BH, k, a, seg;
  int lstm, gated, n;
  real *cs, *saved = cache;
  if (err) return err;
  T = d->T, BH = d->B * d->H, k = opts ? opts->checkpoint : 0;
  lstm = d->cell == BPTT_CELL_LSTM, gated = lstm || d->cell == BPTT_CELL_GRU;
  if (!w_ih || !w_hh || !x || !y) return BPTT_EARG;
  if (gated && !(k ? scratch && (cache || !lstm) : cache != NULL)) return BPTT_EARG;
  job.w_ih = w_ih, job.w_hh = w_hh, job.b_ih = b_ih, job.b_hh = b_hh;
  job.x = x, job.h0 = h0, job.c0 = lstm ? c0 : NULL;
  job.y_out = y;
  /* without a cache to rebuild (tanh, relu) checkpointing changes nothing */
  if (!gated) k = 0;
  job.cache_out = k ? FN(window)(&job, scratch) : cache;
  cs = gated ? job.cache_out + job.C * d->B * job.GH : NULL;
  n = FN(plan)(&job, 1);
  FN(brow_make)(&job);
  /* segments of k steps (one of T without checkpointing); lstm keeps c at
   * the end of each but the last: saved[seg] = c_{seg k - 1} */
  for (a = 0, seg = 0; a < T; a += k ? k : T, seg++) {
    job.t0 = a, job.t1 = k && a + k < T ? a + k : T;
    job.c_seg = !lstm ? NULL : a ? saved + seg * BH : c0;
    if (seg) n = FN(plan)(&job, 1);
    bptt_parallel_run(FN(forward_task), &job, n);
    if (k && lstm && job.t1 < T)
      memcpy(saved + (seg + 1) * BH, cs + RNN_SLOT(&job, job.t1 - 1) * BH, (size_t)BH * sizeof(real));
  }
  bptt_free(job.brow);
  if (job.bs || job.rev) { /* each row's own last step (no ring then: C = T) */
    if (lstm && cT) FN(final_rows)(&job, cs, cT);
    if (hT) FN(final_rows)(&job, y, hT);
    return BPTT_OK;
  }
  if (lstm && cT) memcpy(cT, cs + RNN_SLOT(&job, T - 1) * BH, (size_t)BH * sizeof(real));
  if (hT) memcpy(hT, y + (T - 1) * BH, (size_t)BH * sizeof(real));
  return BPTT_OK;
}

int FN(bptt_rnn_forward)(const bptt_rnn_dims *d, const real *w_ih, const real *w_hh, const real *b_ih, const real *b_hh,
                         const real *x, const real *h0, const real *c0, real *y, real *hT, real *cT, real *cache) {
  return FN(bptt_rnn_forward_ex)(d, NULL, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, hT, cT, cache, NULL);
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

/* dst[j] += sum over rows r of src[r * ld + j], j < n, rows in order (so
 * the sums do not depend on how columns are shared out) */
BPTT_KERNEL_VOID(FN(col_sums), (int64_t rows, const real *src, int64_t ld, int64_t n, real *dst),
                 (rows, src, ld, n, dst)) {
  int64_t r;
  for (r = 0; r < rows; r++) FN(add_row)(n, src + r * ld, dst);
}

/* The per-step elementwise passes of backward, written like forward's. */

/* tanh / relu: dG = (dh + dy) * f'(a), read off h; dy may be NULL */
BPTT_ROW void FN(elman_dgate)(int64_t n, int relu, const real *restrict h, const real *restrict dy,
                              const real *restrict dh, real *restrict dG) {
  int64_t e;
  for (e = 0; e < n; e++) {
    real g = dh[e] + (dy ? dy[e] : (real)0), hv = h[e];
    /* relu' as PyTorch: 0 where h <= 0, so a NaN h passes g through */
    dG[e] = relu ? (hv <= 0 ? (real)0 : g) : g * (1 - hv * hv);
  }
}

/* tanh / relu backward, one step over the (B, H) block, units [j0, j0 + nj);
 * dy may be NULL */
BPTT_KERNEL_VOID(FN(elman_bstep),
                 (int64_t B, int64_t H, int64_t j0, int64_t nj, int relu, const real *h, const real *dy, const real *dh,
                  real *dG),
                 (B, H, j0, nj, relu, h, dy, dh, dG)) {
  int64_t b;
  for (b = 0; b < B; b++) {
    int64_t o = b * H + j0;
    if (relu && dy)
      FN(elman_dgate)(nj, 1, h + o, dy + o, dh + o, dG + o);
    else if (relu)
      FN(elman_dgate)(nj, 1, h + o, NULL, dh + o, dG + o);
    else if (dy)
      FN(elman_dgate)(nj, 0, h + o, dy + o, dh + o, dG + o);
    else
      FN(elman_dgate)(nj, 0, h + o, NULL, dh + o, dG + o);
  }
}

/* One row of lstm backward (formulas below); cp, dy may be NULL */
BPTT_ROW void FN(lstm_drow)(int64_t H, const real *restrict gi, const real *restrict gf, const real *restrict gg,
                            const real *restrict go, const real *restrict c, const real *restrict cp,
                            const real *restrict dy, const real *restrict dh, real *restrict dc, real *restrict dai,
                            real *restrict daf, real *restrict dag, real *restrict dao) {
  int64_t j;
  for (j = 0; j < H; j++) {
    real i = gi[j], f = gf[j], g = gg[j], o = go[j];
    real tc = TANH(c[j]);
    real dhv = dh[j] + (dy ? dy[j] : (real)0);
    real dcv = dc[j] + dhv * o * (1 - tc * tc);
    dai[j] = dcv * g * i * (1 - i);
    daf[j] = cp ? dcv * cp[j] * f * (1 - f) : (real)0;
    dag[j] = dcv * i * (1 - g * g);
    dao[j] = dhv * tc * o * (1 - o);
    dc[j] = dcv * f;
  }
}

/* lstm backward, one step: gt (B, 4H) activations, ct (B, H), cp (B, H) or
 * NULL, dyt (B, H) or NULL, dh (B, H) read, dc (B, H) updated, dGt (B, 4H);
 * units [j0, j0 + nj) */
BPTT_KERNEL_VOID(FN(lstm_bstep),
                 (int64_t B, int64_t H, int64_t j0, int64_t nj, const real *gt, const real *ct, const real *cp,
                  const real *dyt, const real *dh, real *dc, real *dGt),
                 (B, H, j0, nj, gt, ct, cp, dyt, dh, dc, dGt)) {
  int64_t b;
  for (b = 0; b < B; b++) {
    const real *g = gt + b * 4 * H + j0;
    real *dg = dGt + b * 4 * H + j0;
    int64_t o = b * H + j0;
    if (cp && dyt)
      FN(lstm_drow)(nj, g, g + H, g + 2 * H, g + 3 * H, ct + o, cp + o, dyt + o, dh + o, dc + o, dg, dg + H, dg + 2 * H,
                    dg + 3 * H);
    else if (cp)
      FN(lstm_drow)(nj, g, g + H, g + 2 * H, g + 3 * H, ct + o, cp + o, NULL, dh + o, dc + o, dg, dg + H, dg + 2 * H,
                    dg + 3 * H);
    else if (dyt)
      FN(lstm_drow)(nj, g, g + H, g + 2 * H, g + 3 * H, ct + o, NULL, dyt + o, dh + o, dc + o, dg, dg + H, dg + 2 * H,
                    dg + 3 * H);
    else
      FN(lstm_drow)(nj, g, g + H, g + 2 * H, g + 3 * H, ct + o, NULL, NULL, dh + o, dc + o, dg, dg + H, dg + 2 * H,
                    dg + 3 * H);
  }
}

/* One row of gru backward (formulas below); hp, dy may be NULL */
BPTT_ROW void FN(gru_drow)(int64_t H, const real *restrict gr, const real *restrict gz, const real *restrict gn,
                           const real *restrict hn, const real *restrict hp, const real *restrict dy, real *restrict dh,
                           real *restrict dar, real *restrict daz, real *restrict dhn, real *restrict dan) {
  int64_t j;
  for (j = 0; j < H; j++) {
    real r = gr[j], z = gz[j], n = gn[j];
    real dhv = dh[j] + (dy ? dy[j] : (real)0);
    real dzv = dhv * ((hp ? hp[j] : (real)0) - n);
    real danv = dhv * (1 - z) * (1 - n * n);
    dar[j] = danv * hn[j] * r * (1 - r);
    daz[j] = dzv * z * (1 - z);
    dhn[j] = danv * r;
    dan[j] = danv;
    dh[j] = dhv * z; /* direct path h_{t-1} -> h_t */
  }
}

/* gru backward, one step: gt (B, 3H) activations, hnt (B, H), hp (B, H) or
 * NULL, dyt (B, H) or NULL, dh (B, H) updated, dGht (B, 3H), dGnt (B, H);
 * units [j0, j0 + nj) */
BPTT_KERNEL_VOID(FN(gru_bstep),
                 (int64_t B, int64_t H, int64_t j0, int64_t nj, const real *gt, const real *hnt, const real *hp,
                  const real *dyt, real *dh, real *dGht, real *dGnt),
                 (B, H, j0, nj, gt, hnt, hp, dyt, dh, dGht, dGnt)) {
  int64_t b;
  for (b = 0; b < B; b++) {
    const real *g = gt + b * 3 * H + j0;
    real *dg = dGht + b * 3 * H + j0;
    int64_t o = b * H + j0;
    if (hp && dyt)
      FN(gru_drow)(nj, g, g + H, g + 2 * H, hnt + o, hp + o, dyt + o, dh + o, dg, dg + H, dg + 2 * H, dGnt + o);
    else if (hp)
      FN(gru_drow)(nj, g, g + H, g + 2 * H, hnt + o, hp + o, NULL, dh + o, dg, dg + H, dg + 2 * H, dGnt + o);
    else if (dyt)
      FN(gru_drow)(nj, g, g + H, g + 2 * H, hnt + o, NULL, dyt + o, dh + o, dg, dg + H, dg + 2 * H, dGnt + o);
    else
      FN(gru_drow)(nj, g, g + H, g + 2 * H, hnt + o, NULL, NULL, dh + o, dg, dg + H, dg + 2 * H, dGnt + o);
  }
}

/* ---- gradient-flow recording (rnn.h) --------------------------------------
 * Per step, before the elementwise pass overwrites them: for each row b of
 * the thread's rows and each 16-unit group g of its units [j0, j0 + nj)
 * (j0 a multiple of 16: parallel ranges are whole 16s), the sums of squares
 *   ph[b][g] = sum (dh + dy)^2             the whole dL/dh_t of the row
 *   pc[b][g] = sum (dc + (dh + dy) o (1 - tanh^2 c_t))^2    lstm: dL/dc_t,
 * the dcv of lstm_drow, everything reaching c_t.  Rows are then the sums
 * of their groups in order, and a step's norm^2 the sum of its rows in
 * order: the same additions whichever thread owned which units or rows. */
/* out[u] = (dh + dy)^2, u < n; dy may be NULL */
BPTT_ROW void FN(flow_dh_row)(int64_t n, const real *restrict dh, const real *restrict dy, real *restrict out) {
  int64_t u;
  for (u = 0; u < n; u++) {
    real v = dh[u] + (dy ? dy[u] : (real)0);
    out[u] = v * v;
  }
}

/* out[u] = (dc + (dh + dy) o (1 - tanh^2 c))^2, u < n; dy may be NULL */
BPTT_ROW void FN(flow_dc_row)(int64_t n, const real *restrict dh, const real *restrict dy, const real *restrict o,
                              const real *restrict c, const real *restrict dc, real *restrict out) {
  int64_t u;
  for (u = 0; u < n; u++) {
    real v = dh[u] + (dy ? dy[u] : (real)0), tc = TANH(c[u]);
    real w = dc[u] + v * o[u] * (1 - tc * tc);
    out[u] = w * w;
  }
}

/* The sum of sq[0..16) as a fixed tree (8 + 8, 4 + 4, 2 + 2, 1 + 1):
 * vectorizable, and the same order everywhere */
BPTT_ROW real FN(sum16)(real *restrict sq) {
  int64_t w, u;
  for (w = 8; w >= 1; w /= 2)
    for (u = 0; u < w; u++) sq[u] += sq[u + w];
  return sq[0];
}

/* gt (B, 4H) lstm activations and ct (B, H), or NULL (no dc); the squares
 * of a group and their sum (sum16, zeros past the group's end) in real */
BPTT_KERNEL_VOID(FN(flow_sums),
                 (int64_t rows, int64_t H, int64_t j0, int64_t nj, int64_t ng, const real *dh, const real *dy,
                  const real *gt, const real *ct, const real *dc, double *ph, double *pc),
                 (rows, H, j0, nj, ng, dh, dy, gt, ct, dc, ph, pc)) {
  int64_t b, j, u, e;
  real sq[16];
  for (b = 0; b < rows; b++) {
    const real *hb = dh + b * H, *yb = dy ? dy + b * H : NULL;
    for (j = j0; j < j0 + nj; j += 16) {
      e = (j + 16 < j0 + nj ? j + 16 : j0 + nj) - j;
      if (yb)
        FN(flow_dh_row)(e, hb + j, yb + j, sq);
      else
        FN(flow_dh_row)(e, hb + j, NULL, sq);
      for (u = e; u < 16; u++) sq[u] = 0;
      ph[b * ng + j / 16] = (double)FN(sum16)(sq);
      if (!gt) continue;
      if (yb)
        FN(flow_dc_row)(e, hb + j, yb + j, gt + b * 4 * H + 3 * H + j, ct + b * H + j, dc + b * H + j, sq);
      else
        FN(flow_dc_row)(e, hb + j, NULL, gt + b * 4 * H + 3 * H + j, ct + b * H + j, dc + b * H + j, sq);
      for (u = e; u < 16; u++) sq[u] = 0;
      pc[b * ng + j / 16] = (double)FN(sum16)(sq);
    }
  }
}

/* rows [b0, b1) of step t: fl_h[t][b] = sum over groups of ph[b][g] */
static void FN(flow_rows)(const FN(rnn_job) *job, int64_t t, int64_t b0, int64_t b1, const double *ph,
                          const double *pc) {
  const int64_t B = job->d->B, ng = job->fl_ng;
  int64_t b, g;
  for (b = b0; b < b1; b++) {
    double sh = 0, sc = 0;
    for (g = 0; g < ng; g++) {
      sh += ph[b * ng + g];
      if (pc) sc += pc[b * ng + g];
    }
    job->fl_h[t * B + b] = sh;
    if (pc) job->fl_c[t * B + b] = sc;
  }
}

/* ||dG_t^T h_{t-1}||^2 (GH, H) for the steps t = tid, tid + n, ... of
 * [t0, t1): each step by one thread, in one order.  Through the Gram
 * matrices when cheaper, sum_{b,b'} (dG dG^T)_{bb'} (h h^T)_{bb'}
 * (B^2 (GH + H) / 2 against B GH H flops), else the product itself. */
static void FN(flow_dW)(FN(rnn_job) *job, int64_t t0, int64_t t1, int tid, int n) {
  const bptt_rnn_dims *d = job->d;
  const int64_t B = d->B, H = d->H, GH = job->GH, BH = B * H;
  const int gram = B * (GH + H) < 2 * GH * H;
  int64_t t, i, m = gram ? 2 * B * B : GH * H;
  real *w = NULL;
  for (t = t0 + tid; t < t1; t += n) {
    const real *dGt = job->scratch + RNN_SLOT(job, t) * B * GH;
    const real *hp = t ? job->y + (t - 1) * BH : job->h0;
    double s = 0;
    if (hp) {
      if (!w && !(w = bptt_parallel_scratch(tid, (size_t)m * sizeof(real)))) {
        job->err = BPTT_ENOMEM;
        return;
      }
      if (gram) { /* upper triangles (syrk, rnn.c): diagonal + 2 x the rest */
        int64_t j;
        double off = 0;
        FN(syrk)(B, GH, dGt, w);
        FN(syrk)(B, H, hp, w + B * B);
        for (i = 0; i < B; i++) {
          s += (double)w[i * B + i] * (double)w[B * B + i * B + i];
          for (j = i + 1; j < B; j++) off += (double)w[i * B + j] * (double)w[B * B + i * B + j];
        }
        s += 2 * off;
      } else {
        FN(gemm)(1, 0, GH, H, B, 1, dGt, GH, hp, H, 0, w, H);
        for (i = 0; i < GH * H; i++) s += (double)w[i] * (double)w[i];
      }
    }
    job->fl_dW[t * job->fl_ld] = s;
  }
}

/* dW_hh rows [p0, p1) += sum over the steps t of [t0, t1) of dG_t^T h_{t-1}
 * with the sequence options (no ring then: dG_t at dGh + t*B*GH): each row
 * of step t pairs with its own h_{t-1} (run_of's sources).  Runs of steps
 * where every running row continues from the previous step are one GEMM
 * (the rows not running there have dG_t = 0); the other steps go run by
 * run. */
static void FN(dw_hh_seq)(const FN(rnn_job) *job, const real *dGh, int64_t p0, int64_t p1, int64_t t0, int64_t t1) {
  const int64_t T = job->d->T, B = job->d->B, H = job->d->H, GH = job->GH;
  const real *y = job->y, *h0 = job->h0;
  real *dw = job->dw_hh + p0 * H;
  int64_t t = t0;
  while (t < t1) {
    int64_t tp, nt, np, u, r, e;
    int src;
    /* a clean run of steps t .. u-1: one source, SRC_PREV, for all rows */
    for (u = t; u < t1; u++) {
      FN(step_of)(job, job->rev ? T - 1 - u : u, &tp, &nt, &np);
      if (nt == 0 || np < nt || FN(run_of)(job, u, np, 0, nt, &src) < nt || src != SRC_PREV) break;
    }
    if (u > t) { /* previous steps t -/+ 1 .. u-1 -/+ 1: contiguous rows of y */
      const int64_t q0 = job->rev ? t + 1 : t - 1;
      FN(gemm)(1, 0, p1 - p0, H, (u - t) * B, 1, dGh + t * B * GH + p0, GH, y + q0 * B * H, H, 1, dw, H);
      t = u;
      continue;
    }
    /* step t run by run (nothing past every row's length: nt = 0) */
    FN(step_of)(job, job->rev ? T - 1 - t : t, &tp, &nt, &np);
    for (r = 0; r < nt; r = e) {
      const real *hp;
      e = FN(run_of)(job, t, np, r, nt, &src);
      hp = src == SRC_PREV ? y + (tp * B + r) * H : src == SRC_H0 ? ROWS_AT(h0, r * H) : NULL;
      if (hp) FN(gemm)(1, 0, p1 - p0, H, e - r, 1, dGh + (t * B + r) * GH + p0, GH, hp, H, 1, dw, H);
    }
    t++;
  }
}

/* After the recursion, one block of steps [bs, be) (whole, in the dG ring:
 * its rows are contiguous), one thread's share: rows [p0, p1) of the weight
 * gradients and bias sums, its share of the block's rows of dx.  dGh (rows,
 * GH): gradient w.r.t. the hidden-side pre-activations (what multiplies
 * W_hh h_{t-1} + b_hh).  dGn (rows, H): only for gru, the input side of
 * the n gate (what multiplies W_in x + b_in), which differs from dGh's n
 * block by the factor r; NULL otherwise (the input side is dGh itself).
 *   dW_ih (GH, D) += dGx^T (GH, rows) x (rows, D)
 *   dW_hh (GH, H) += dGh^T (GH, rows) [h_{bs} .. h_{be-1}] (rows, H)
 *   db_ih += column sums of dGx     db_hh += column sums of dGh
 *   dx (rows, D) = dGx (rows, GH) W_ih (GH, D)
 * The blocks go from the last to the first on every path, so the weight
 * gradients see the same GEMMs in the same order however the steps were
 * segmented (rnn.h's checkpointing). */
static void FN(flush_block)(FN(rnn_job) *job, int64_t k, int tid, int n) {
  const bptt_rnn_dims *d = job->d;
  const int64_t T = d->T, B = d->B, D = d->D, H = d->H, BH = B * H;
  const int64_t GH = job->GH, S = job->S;
  const int64_t bs = k * S, be = bs + S < T ? bs + S : T, nr = (be - bs) * B;
  const int64_t nx = d->cell == BPTT_CELL_GRU ? GH - H : GH; /* columns of dGh that are dGx too */
  const real *dGh = job->scratch + RNN_SLOT(job, bs) * B * GH;
  const real *dGn = d->cell == BPTT_CELL_GRU ? job->scratch + job->C * B * GH + RNN_SLOT(job, bs) * BH : NULL;
  const real *x = job->x + bs * B * D, *h0 = job->h0, *y = job->y;
  real *dw_ih = job->dw_ih, *dw_hh = job->dw_hh;
  real *db_ih = job->db_ih, *db_hh = job->db_hh;
  int64_t p0, p1, q1, s0, r0, r1;
  long long a, b;
  bptt_parallel_range(GH, 16, tid, n, &a, &b);
  p0 = a, p1 = b;
  q1 = p1 < nx ? p1 : nx; /* rows p0..q1 of dW_ih from dGh, */
  s0 = p0 > nx ? p0 : nx; /* rows s0..p1 from dGn (gru) */
  bptt_parallel_range(nr, 1, tid, n, &a, &b);
  r0 = a, r1 = b;
  /* dW_ih: the shared blocks, then gru's n block from dGn */
  if (q1 > p0) FN(gemm)(1, 0, q1 - p0, D, nr, 1, dGh + p0, GH, x, D, 1, dw_ih + p0 * D, D);
  if (p1 > s0 && dGn) FN(gemm)(1, 0, p1 - s0, D, nr, 1, dGn + (s0 - nx), H, x, D, 1, dw_ih + s0 * D, D);
  /* dW_hh: rows t >= 1 pair with y[t-1]; the rows of t = 0 with h0 (or 0);
   * with the sequence options each row with its own h_{t-1} */
  if (job->bs || job->reset || job->rev) {
    if (p1 > p0) FN(dw_hh_seq)(job, job->scratch, p0, p1, bs, be);
  } else if (bs > 0)
    FN(gemm)(1, 0, p1 - p0, H, nr, 1, dGh + p0, GH, y + (bs - 1) * BH, H, 1, dw_hh + p0 * H, H);
  else {
    if (nr > B) FN(gemm)(1, 0, p1 - p0, H, nr - B, 1, dGh + B * GH + p0, GH, y, H, 1, dw_hh + p0 * H, H);
    if (h0) FN(gemm)(1, 0, p1 - p0, H, B, 1, dGh + p0, GH, h0, H, 1, dw_hh + p0 * H, H);
  }
  if (db_hh) FN(col_sums)(nr, dGh + p0, GH, p1 - p0, db_hh + p0);
  if (db_ih && q1 > p0) FN(col_sums)(nr, dGh + p0, GH, q1 - p0, db_ih + p0);
  if (db_ih && p1 > s0 && dGn) FN(col_sums)(nr, dGn + (s0 - nx), H, p1 - s0, db_ih + s0);
  if (job->dx) {
    real *dx = job->dx + bs * B * D;
    FN(gemm)(0, 0, r1 - r0, D, nx, 1, dGh + r0 * GH, GH, job->w_ih, D, 0, dx + r0 * D, D);
    if (dGn) FN(gemm)(0, 0, r1 - r0, D, H, 1, dGn + r0 * H, H, job->w_ih + nx * D, D, 1, dx + r0 * D, D);
  }
  if (job->fl_dW) FN(flow_dW)(job, bs, be, tid, n);
}

/* The recursion over [t0, t1), one thread's units, then its share of the
 * blocks fhi .. flo (flush_block).
 * Scratch layouts, per step:
 *   tanh / relu: dG (T, B, H) | dh (B, H)
 *     dG_t = (dy_t + dh) * f'(a_t),  tanh' = 1 - h_t^2,  relu' = [h_t > 0]
 *     dh   = dG_t W_hh                                   (B, H) x (H, H)
 *   lstm: dG (T, B, 4H) | dh (B, H) | dc (B, H); with dh = dy_t + dL/dh_t
 *   from later steps and dc = dL/dc_t from later steps:
 *     dc  += dh * o * (1 - tanh^2(c_t))
 *     da_i = dc * g * i(1-i)          da_f = dc * c_{t-1} * f(1-f)
 *     da_g = dc * i * (1-g^2)         da_o = dh * tanh(c_t) * o(1-o)
 *     dc  <- dc * f                   (dL/dc_{t-1})
 *     dh  <- dG_t W_hh                (B, 4H) x (4H, H)
 *   gru: dGh (T, B, 3H) | dGn (T, B, H) | dh (B, H); with dh = dy_t +
 *   dL/dh_t from later steps, a_n the n pre-activation:
 *     dn   = dh * (1-z)               dz = dh * (h_{t-1} - n)
 *     da_n = dn * (1-n^2)             -> dGn (input side, W_in x + b_in)
 *     dhn  = da_n * r                 -> dGh's n block (W_hn h + b_hn)
 *     da_r = da_n * hn * r(1-r)       da_z = dz * z(1-z)
 *     dh  <- dh * z + dGh_t W_hh      (direct path + (B, 3H) x (3H, H))
 * Thread k writes dG_t, dh and dc of its units only, and its GEMM computes
 * its columns of dh from all of dG_t: one barrier between the two. */
static void FN(backward_task)(void *ctx, int tid, int n) {
  FN(rnn_job) *job = ctx;
  const bptt_rnn_dims *d = job->d;
  const int64_t B = d->B, H = d->H, BH = B * H;
  const int64_t GH = job->GH, C = job->C;
  const int cell = d->cell, relu = cell == BPTT_CELL_RELU;
  const real *w_hh = job->w_hh, *y = job->y, *dy = job->dy;
  const real *cache = job->cache, *cs = cache ? cache + C * B * GH : NULL;
  real *dG = job->scratch;
  real *dGn = cell == BPTT_CELL_GRU ? dG + C * B * GH : NULL;
  real *dh = dG + C * B * GH + (dGn ? C * BH : 0), *dc = dh + BH;
  const FN(share) s = FN(share_of)(job, tid, n);
  const int64_t j0 = s.j0, j1 = s.j1, nj = j1 - j0;
  const int64_t b0 = s.b0, rows = s.b1 - s.b0;
  int64_t i, k, blk = 0;
  /* W_hh packed once for the steps; by rows, shared: wait for every share */
  real *pk = FN(packed_w_hh)(job, 0, tid, n, j0, j1, &blk);
  if (job->by_rows && job->pk_shared) bptt_parallel_barrier(n);
  /* BPTT, the steps in the reverse of forward's order (t = t1..t0+1,
   * 1-based, but in reverse), carrying dh = dL/dh_t = dy_t + dL/dh_{t+1}
   * . dh_{t+1}/dh_t: the note's sum over products of Jacobians by Horner's
   * rule, no product of Jacobians ever formed (see above).  Rows that do
   * not run at step t keep their dh (a row's dhT waits there for its last
   * step) and get dG_t = 0. */
  for (i = job->t1 - 1; i >= job->t0; i--) {
    int64_t tp, nt, np, r, e, e1;
    const int64_t t = FN(step_of)(job, i, &tp, &nt, &np), slot = RNN_SLOT(job, t);
    real *dGt = dG + slot * B * GH;
    const real *dyt = dy ? dy + t * BH : NULL;
    const real *gt = cache ? cache + slot * B * GH : NULL; /* lstm, gru */
    const real *ct = cs ? cs + slot * BH : NULL;           /* lstm c, gru hn */
    const real beta = cell == BPTT_CELL_GRU ? 1 : 0;       /* onto the direct path */
    double *ph = NULL;
    if (job->fl_h) { /* gradient flow (every row runs): before the pass below changes dh, dc */
      const int lstm = cell == BPTT_CELL_LSTM;
      const int64_t off = b0 * H;
      ph = job->fl_part + (t & 1) * 2 * B * job->fl_ng;
      if (nj > 0 && rows > 0)
        FN(flow_sums)(rows, H, j0, nj, job->fl_ng, dh + off, ROWS_AT(dyt, off), lstm ? gt + b0 * GH : NULL,
                      lstm ? ct + off : NULL, dc + off, ph + b0 * job->fl_ng, lstm ? ph + (B + b0) * job->fl_ng : NULL);
      if (job->by_rows) FN(flow_rows)(job, t, b0, b0 + rows, ph, lstm ? ph + B * job->fl_ng : NULL);
    }
    e1 = s.b1 < nt ? s.b1 : nt;
    for (r = s.b0; nj > 0 && r < e1; r = e) {
      int src;
      int64_t m, o;
      e = FN(run_of)(job, t, np, r, e1, &src);
      m = e - r, o = r * H;
      switch (cell) {
        case BPTT_CELL_LSTM: {
          /* c_{t-1}: the ring's, or at the run's first step c_seg (NULL = zeros) */
          const real *cp = src == SRC_PREV ? (i == job->t0 ? ROWS_AT(job->c_seg, o) : cs + RNN_SLOT(job, tp) * BH + o)
                           : src == SRC_H0 ? ROWS_AT(job->c0, o)
                                           : NULL;
          FN(lstm_bstep)(m, H, j0, nj, gt + r * GH, ct + o, cp, ROWS_AT(dyt, o), dh + o, dc + o, dGt + r * GH);
          break;
        }
        case BPTT_CELL_GRU: {
          const real *hp = src == SRC_PREV ? y + tp * BH + o : src == SRC_H0 ? ROWS_AT(job->h0, o) : NULL;
          FN(gru_bstep)(m, H, j0, nj, gt + r * GH, ct + o, hp, ROWS_AT(dyt, o), dh + o, dGt + r * GH,
                        dGn + slot * BH + o);
          break;
        }
        default:
          FN(elman_bstep)(m, H, j0, nj, relu, y + t * BH + o, ROWS_AT(dyt, o), dh + o, dGt + r * GH);
          break;
      }
    }
    if (nj > 0 && nt < s.b1) { /* rows past their length: dG_t = 0 */
      int64_t z0 = nt > s.b0 ? nt : s.b0;
      FN(zero_rows)(dGt, z0, s.b1, job->G, H, j0, nj);
      if (dGn) FN(zero_rows)(dGn + slot * BH, z0, s.b1, 1, H, j0, nj);
    }
    /* by units, the GEMM below reads every thread's dG_t */
    if (!job->by_rows) bptt_parallel_barrier(n);
    /* by units, thread 0 adds up the step's groups (the next step writes
     * the other parity; the one after waits for thread 0 at the barrier) */
    if (ph && !job->by_rows && tid == 0)
      FN(flow_rows)(job, t, 0, B, ph, cell == BPTT_CELL_LSTM ? ph + B * job->fl_ng : NULL);
    /* dh[rows, j0..j1] <- dL/dh_{t-1} = (beta dh +) dG_t (rows, GH) W_hh[:, j0..j1],
     * which is dL/dh0 for the rows that started from h0 (only if wanted);
     * 0 where a reset cut the rows from their past */
    for (r = s.b0; nj > 0 && r < e1; r = e) {
      int src;
      int64_t m;
      e = FN(run_of)(job, t, np, r, e1, &src);
      m = e - r;
      if (src == SRC_ZERO) {
        FN(zero_rows)(dh, r, e, 1, H, j0, nj);
        if (cell == BPTT_CELL_LSTM) FN(zero_rows)(dc, r, e, 1, H, j0, nj);
      } else if (src == SRC_PREV || job->dh0) {
        if (pk)
          PACKED_GEMM(m, nj, GH, dGt + r * GH, GH, pk, beta, dh + r * H + j0, H);
        else
          FN(gemm)(0, 0, m, nj, GH, 1, dGt + r * GH, GH, w_hh + j0, H, beta, dh + r * H + j0, H);
      }
    }
  }
  bptt_parallel_barrier(n); /* every dG_t complete */
  for (k = job->fhi; k >= job->flo; k--) FN(flush_block)(job, k, tid, n);
}

/* The norms from the sums of squares that the threads left (rnn.h): for
 * each step the rows' sums in order, then the square root. */
static void FN(flow_finish)(const FN(rnn_job) *job, const bptt_rnn_opts *o) {
  const int64_t T = job->d->T, B = job->d->B, ld = o->flow_ld;
  int64_t t, b;
  for (t = 0; t < T; t++) {
    double sh = 0, sc = 0;
    for (b = 0; b < B; b++) {
      sh += job->fl_h[t * B + b];
      if (job->fl_c) sc += job->fl_c[t * B + b];
    }
    o->flow_dh[t * ld] = sqrt(sh);
    if (job->fl_c && o->flow_dc) o->flow_dc[t * ld] = sqrt(sc);
    if (o->flow_dW) o->flow_dW[t * ld] = sqrt(o->flow_dW[t * ld]);
  }
}

int FN(bptt_rnn_backward_ex)(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, const real *w_ih, const real *w_hh,
                             const real *b_ih, const real *b_hh, const real *x, const real *h0, const real *c0,
                             const real *y, const real *cache, const real *dy, const real *dhT, const real *dcT,
                             real *dx, real *dh0, real *dc0, real *dw_ih, real *dw_hh, real *db_ih, real *db_hh,
                             real *scratch) {
  FN(rnn_job) job;
  int err = FN(job_init)(&job, d, opts);
  int64_t T, B, H, BH, GH, C, k, a, seg, nseg;
  int lstm, gated;
  real *dh, *window = NULL;
  if (err) return err;
  T = d->T;
  B = d->B;
  H = d->H;
  BH = B * H;
  GH = job.GH;
  C = job.C;
  k = opts ? opts->checkpoint : 0;
  lstm = d->cell == BPTT_CELL_LSTM, gated = lstm || d->cell == BPTT_CELL_GRU;
  if (!w_ih || !w_hh || !x || !y || !dw_ih || !dw_hh || !scratch) return BPTT_EARG;
  if (gated && !cache && !(k && !lstm)) return BPTT_EARG;
  if (opts && opts->flow_dh && (!opts->flow_work || opts->flow_ld < 1)) return BPTT_EARG;
  /* The running dh (and dc) follow the dG ring(s) of the scratch: start
   * them at dL/dh_T, dL/dc_T. */
  dh = scratch + C * B * GH + (d->cell == BPTT_CELL_GRU ? C * BH : 0);
  if (dhT)
    memcpy(dh, dhT, (size_t)BH * sizeof(real));
  else
    memset(dh, 0, (size_t)BH * sizeof(real));
  if (lstm) {
    if (dcT)
      memcpy(dh + BH, dcT, (size_t)BH * sizeof(real));
    else
      memset(dh + BH, 0, (size_t)BH * sizeof(real));
  }
  job.w_ih = w_ih, job.w_hh = w_hh, job.b_ih = b_ih, job.b_hh = b_hh;
  job.x = x, job.h0 = h0, job.c0 = lstm ? c0 : NULL;
  job.y = y, job.cache = cache, job.dy = dy;
  job.dx = dx, job.dh0 = dh0, job.dw_ih = dw_ih, job.dw_hh = dw_hh;
  job.db_ih = db_ih, job.db_hh = db_hh, job.scratch = scratch;
  if (opts && opts->flow_dh) {
    job.fl_ng = (H + 15) / 16;
    job.fl_h = opts->flow_work;
    job.fl_c = lstm ? job.fl_h + T * B : NULL;
    job.fl_part = job.fl_h + T * B * (lstm ? 2 : 1);
    job.fl_dW = opts->flow_dW, job.fl_ld = opts->flow_ld;
  }
  if (k && gated) {
    window = FN(window)(&job, scratch);
    job.junk = window + C * B * GH + C * BH + (lstm ? 0 : 3 * BH);
    job.cache = window;
  }
  if (!k) k = T;
  /* the segments from the last to the first: recompute the cache over the
   * segment (checkpointing, lstm and gru), run the recursion down it, and
   * add in the blocks that are then complete, from the last one down */
  nseg = (T + k - 1) / k;
  job.fhi = (T - 1) / job.S;
  if (window) FN(brow_make)(&job); /* the forward's recomputation adds the biases */
  for (seg = nseg - 1; seg >= 0; seg--) {
    a = seg * k;
    job.t0 = a, job.t1 = a + k < T ? a + k : T;
    job.c_seg = lstm && a ? cache + seg * BH : job.c0; /* a > 0 only when checkpointing */
    if (window) {
      job.recompute = 1, job.cache_out = window;
      bptt_parallel_run(FN(forward_task), &job, FN(plan)(&job, 1));
      job.recompute = 0;
    }
    job.flo = (a + job.S - 1) / job.S; /* the blocks that start at a or later */
    bptt_parallel_run(FN(backward_task), &job, FN(plan)(&job, 0));
    if (job.err) break;
    job.fhi = job.flo - 1;
  }
  bptt_free(job.brow);
  if (job.err) return job.err;
  if (job.fl_h) FN(flow_finish)(&job, opts);
  if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(real));
  if (lstm && dc0) memcpy(dc0, dh + BH, (size_t)BH * sizeof(real));
  return BPTT_OK;
}

int FN(bptt_rnn_backward)(const bptt_rnn_dims *d, const real *w_ih, const real *w_hh, const real *x, const real *h0,
                          const real *c0, const real *y, const real *cache, const real *dy, const real *dhT,
                          const real *dcT, real *dx, real *dh0, real *dc0, real *dw_ih, real *dw_hh, real *db_ih,
                          real *db_hh, real *scratch) {
  return FN(bptt_rnn_backward_ex)(d, NULL, w_ih, w_hh, NULL, NULL, x, h0, c0, y, cache, dy, dhT, dcT, dx, dh0, dc0,
                                  dw_ih, dw_hh, db_ih, db_hh, scratch);
}
