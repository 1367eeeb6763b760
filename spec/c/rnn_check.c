/*
 * rnn_check.c -- standalone check of c/core/rnn.c, the recurrent layer's forward
 * and backward (BPTT), for every cell.
 *
 * For each cell (tanh, relu, lstm, gru), with and without bias, with h0
 * (and c0) given or NULL, and with the loss gradient coming from dy only,
 * from dhT (and dcT) only, or from both, at two sizes:
 *   1. float64 forward against a naive reference written here from the
 *      PyTorch formulas (plain loops, no BLAS);
 *   2. float64 backward against central finite differences (eps = 1e-6) of
 *        L = sum(dy .* y) + sum(dhT .* hT) + sum(dcT .* cT)
 *      w.r.t. every element of x, h0, c0, w_ih, w_hh, b_ih, b_hh.  A NULL
 *      h0/c0 means zeros, so its gradient is checked against differences
 *      taken around an explicit zero state.  The error of one element is
 *        err = |analytic - numeric| / max(|analytic|, |numeric|, 1)
 *      i.e. relative for gradients above 1 and absolute below (L is a sum
 *      of O(1) terms, so the differences' own rounding, ~1e-16 |L| / eps,
 *      is ~1e-9 absolute: a relative error on a near-zero gradient would
 *      measure that noise, not the code).  Limit: 1e-7.
 *   3. accumulation: a second backward doubles dw_ih, dw_hh, db_ih, db_hh
 *      and rewrites (does not add to) dx, dh0, dc0;
 *   4. float32 forward and backward against float64 on the same values;
 * and then saturation (|pre-activation| ~ 1e30 gives finite results), NaN
 * propagation without a crash, and the size / error-code contract.
 *
 * Build and run: `make check-c` (built against the core library alone,
 * build/libbptt_core.a, with the library's flags; `make test` runs it first);
 * the binary is build/check/rnn_check.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnn.h"

#define EPS 1e-6
#define TOL 1e-7
#define TOL_F32_FWD 1e-5  /* |y32 - y64|, values O(1) */
#define TOL_F32_GRAD 1e-4 /* |g32 - g64| / max(|g64|, 1) */

static int failures = 0;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static double urand(double lo, double hi) { /* splitmix64 -> [lo, hi) */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return lo + (hi - lo) * ((double)(z >> 11) / 9007199254740992.0);
}

static double *dalloc(int64_t n) { /* zeroed; n may be 0 */
  double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

static float *falloc(int64_t n) {
  float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

static double *drand_new(int64_t n, double lo, double hi) {
  double *p = dalloc(n);
  int64_t k;
  for (k = 0; k < n; k++) p[k] = urand(lo, hi);
  return p;
}

static float *to_f32(const double *p, int64_t n) { /* NULL stays NULL */
  float *q;
  int64_t k;
  if (!p) return NULL;
  q = falloc(n);
  for (k = 0; k < n; k++) q[k] = (float)p[k];
  return q;
}

static double dot(const double *a, const double *b, int64_t n) {
  double s = 0;
  int64_t k;
  if (!a || !b) return 0;
  for (k = 0; k < n; k++) s += a[k] * b[k];
  return s;
}

static double maxdiff(const double *a, const double *b, int64_t n) {
  double m = 0;
  int64_t k;
  for (k = 0; k < n; k++) {
    double e = fabs(a[k] - b[k]);
    if (!(e <= m)) m = e; /* NaN counts as worst */
  }
  return m;
}

static void check(int ok, const char *what) {
  if (!ok) {
    failures++;
    printf("FAIL: %s\n", what);
  }
}

/* ---- one problem -------------------------------------------------------- */

typedef struct {
  bptt_rnn_dims d;
  int64_t G, GH, nx, nh, nwi, nwh; /* G, G*H, T*B*D, B*H, sizes */
  int64_t ncache, nscratch;
  double *w_ih, *w_hh, *b_ih, *b_hh;     /* biases NULL = bias=false */
  double *x, *h0, *c0;                   /* h0, c0 NULL = zeros */
  double *dy, *dhT, *dcT;                /* NULL = no such loss term */
  double *y, *hT, *cT, *cache, *scratch; /* forward outputs, buffers */
} prob;

static void prob_init(prob *p, bptt_cell cell, int64_t T, int64_t B, int64_t D, int64_t H, int bias, int state,
                      int mode) {
  int lstm = cell == BPTT_CELL_LSTM;
  memset(p, 0, sizeof *p);
  p->d.cell = cell;
  p->d.T = T;
  p->d.B = B;
  p->d.D = D;
  p->d.H = H;
  p->G = bptt_cell_gates(cell);
  p->GH = p->G * H;
  p->nx = T * B * D;
  p->nh = B * H;
  p->nwi = p->GH * D;
  p->nwh = p->GH * H;
  if (bptt_rnn_cache_numel(&p->d, &p->ncache) || bptt_rnn_scratch_numel(&p->d, &p->nscratch)) {
    fprintf(stderr, "bad dims\n");
    exit(2);
  }
  p->w_ih = drand_new(p->nwi, -0.6, 0.6);
  p->w_hh = drand_new(p->nwh, -0.6, 0.6);
  p->b_ih = bias ? drand_new(p->GH, -0.3, 0.3) : NULL;
  p->b_hh = bias ? drand_new(p->GH, -0.3, 0.3) : NULL;
  p->x = drand_new(p->nx, -1, 1);
  p->h0 = state ? drand_new(p->nh, -0.8, 0.8) : NULL;
  p->c0 = state && lstm ? drand_new(p->nh, -1, 1) : NULL;
  /* mode 0: dy only; 1: dhT (and dcT) only; 2: all */
  p->dy = mode != 1 ? drand_new(T * p->nh, -1, 1) : NULL;
  p->dhT = mode != 0 ? drand_new(p->nh, -1, 1) : NULL;
  p->dcT = mode != 0 && lstm ? drand_new(p->nh, -1, 1) : NULL;
  p->y = dalloc(T * p->nh);
  p->hT = dalloc(p->nh);
  p->cT = dalloc(p->nh);
  p->cache = dalloc(p->ncache);
  p->scratch = dalloc(p->nscratch);
}

static void prob_free(prob *p) {
  double *bufs[] = { p->w_ih, p->w_hh, p->b_ih, p->b_hh, p->x,  p->h0,    p->c0,     p->dy,
                     p->dhT,  p->dcT,  p->y,    p->hT,   p->cT, p->cache, p->scratch };
  size_t k;
  for (k = 0; k < sizeof bufs / sizeof bufs[0]; k++) free(bufs[k]);
}

static double forward_loss(prob *p) {
  int err = bptt_rnn_forward_f64(&p->d, p->w_ih, p->w_hh, p->b_ih, p->b_hh, p->x, p->h0, p->c0, p->y, p->hT,
                                 p->d.cell == BPTT_CELL_LSTM ? p->cT : NULL, p->cache);
  if (err) {
    fprintf(stderr, "forward: %s\n", bptt_strerror(err));
    exit(2);
  }
  return dot(p->dy, p->y, p->d.T * p->nh) + dot(p->dhT, p->hT, p->nh) + dot(p->dcT, p->cT, p->nh);
}

/* ---- naive reference forward (PyTorch formulas, no BLAS) ----------------- */

static double sigm(double a) { return 1 / (1 + exp(-a)); }

/* y (T,B,H), hT, cT; *min_a = smallest |pre-activation| (relu's kink). */
static void ref_forward(const prob *p, double *y, double *hT, double *cT, double *min_a) {
  const int64_t T = p->d.T, B = p->d.B, D = p->d.D, H = p->d.H, GH = p->GH;
  double *h = dalloc(p->nh), *c = dalloc(p->nh), *hn = dalloc(H);
  double *ax = dalloc(GH), *ah = dalloc(GH);
  int64_t t, b, j, k;
  if (p->h0) memcpy(h, p->h0, (size_t)p->nh * sizeof(double));
  if (p->c0) memcpy(c, p->c0, (size_t)p->nh * sizeof(double));
  *min_a = INFINITY;
  for (t = 0; t < T; t++) {
    for (b = 0; b < B; b++) {
      const double *xt = p->x + (t * B + b) * D;
      double *hb = h + b * H, *cb = c + b * H;
      for (j = 0; j < GH; j++) {
        ax[j] = p->b_ih ? p->b_ih[j] : 0;
        ah[j] = p->b_hh ? p->b_hh[j] : 0;
        for (k = 0; k < D; k++) ax[j] += p->w_ih[j * D + k] * xt[k];
        for (k = 0; k < H; k++) ah[j] += p->w_hh[j * H + k] * hb[k];
      }
      for (j = 0; j < H; j++) {
        switch (p->d.cell) {
          case BPTT_CELL_TANH:
            hn[j] = tanh(ax[j] + ah[j]);
            break;
          case BPTT_CELL_RELU:
            if (fabs(ax[j] + ah[j]) < *min_a) *min_a = fabs(ax[j] + ah[j]);
            hn[j] = ax[j] + ah[j] > 0 ? ax[j] + ah[j] : 0;
            break;
          case BPTT_CELL_LSTM: {
            double i = sigm(ax[j] + ah[j]), f = sigm(ax[H + j] + ah[H + j]);
            double g = tanh(ax[2 * H + j] + ah[2 * H + j]);
            double o = sigm(ax[3 * H + j] + ah[3 * H + j]);
            cb[j] = f * cb[j] + i * g;
            hn[j] = o * tanh(cb[j]);
            break;
          }
          case BPTT_CELL_GRU: {
            double r = sigm(ax[j] + ah[j]), z = sigm(ax[H + j] + ah[H + j]);
            double n = tanh(ax[2 * H + j] + r * ah[2 * H + j]);
            hn[j] = (1 - z) * n + z * hb[j];
            break;
          }
        }
      }
      memcpy(hb, hn, (size_t)H * sizeof(double));
      memcpy(y + (t * B + b) * H, hn, (size_t)H * sizeof(double));
    }
  }
  memcpy(hT, h, (size_t)p->nh * sizeof(double));
  memcpy(cT, c, (size_t)p->nh * sizeof(double));
  free(h);
  free(c);
  free(hn);
  free(ax);
  free(ah);
}

/* ---- gradients ---------------------------------------------------------- */

typedef struct {
  double *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh;
} grads;

static void grads_new(grads *g, const prob *p) {
  g->dx = dalloc(p->nx);
  g->dh0 = dalloc(p->nh);
  g->dc0 = dalloc(p->nh);
  g->dw_ih = dalloc(p->nwi);
  g->dw_hh = dalloc(p->nwh);
  g->db_ih = dalloc(p->GH);
  g->db_hh = dalloc(p->GH);
}

static void grads_free(grads *g) {
  free(g->dx);
  free(g->dh0);
  free(g->dc0);
  free(g->dw_ih);
  free(g->dw_hh);
  free(g->db_ih);
  free(g->db_hh);
}

static void backward64(prob *p, grads *g) {
  int lstm = p->d.cell == BPTT_CELL_LSTM;
  int err = bptt_rnn_backward_f64(&p->d, p->w_ih, p->w_hh, p->x, p->h0, p->c0, p->y, p->cache, p->dy, p->dhT, p->dcT,
                                  g->dx, g->dh0, lstm ? g->dc0 : NULL, g->dw_ih, g->dw_hh, p->b_ih ? g->db_ih : NULL,
                                  p->b_hh ? g->db_hh : NULL, p->scratch);
  if (err) {
    fprintf(stderr, "backward: %s\n", bptt_strerror(err));
    exit(2);
  }
}

enum { Q_X, Q_H0, Q_C0, Q_WIH, Q_WHH, Q_BIH, Q_BHH, NQ };
static const char *const qname[NQ] = { "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh" };

/* Worst err of analytic gradient ga over the elements of *q (n of them),
 * from central differences of the loss.  If *q is NULL (zeros), differences
 * are taken around an explicit zero array put in its place. */
static double fd_check(prob *p, double **q, int64_t n, const double *ga) {
  double worst = 0, *saved = *q, *zeros = NULL;
  int64_t k;
  if (!*q) *q = zeros = dalloc(n);
  for (k = 0; k < n; k++) {
    double v = (*q)[k], lp, lm, num, e;
    (*q)[k] = v + EPS;
    lp = forward_loss(p);
    (*q)[k] = v - EPS;
    lm = forward_loss(p);
    (*q)[k] = v;
    num = (lp - lm) / (2 * EPS);
    e = fabs(ga[k] - num) / fmax(fmax(fabs(ga[k]), fabs(num)), 1.0);
    if (!(e <= worst)) worst = e;
  }
  *q = saved;
  free(zeros);
  forward_loss(p); /* restore y and cache */
  return worst;
}

/* float32 run of the same problem; returns worst forward and gradient
 * deviations from the float64 results (p->y etc., g). */
static void f32_compare(prob *p, const grads *g, double *fwd, double *grd) {
  const int64_t T = p->d.T, nh = p->nh;
  int lstm = p->d.cell == BPTT_CELL_LSTM;
  float *w_ih = to_f32(p->w_ih, p->nwi), *w_hh = to_f32(p->w_hh, p->nwh);
  float *b_ih = to_f32(p->b_ih, p->GH), *b_hh = to_f32(p->b_hh, p->GH);
  float *x = to_f32(p->x, p->nx), *h0 = to_f32(p->h0, nh);
  float *c0 = to_f32(p->c0, nh), *dy = to_f32(p->dy, T * nh);
  float *dhT = to_f32(p->dhT, nh), *dcT = to_f32(p->dcT, nh);
  float *y = falloc(T * nh), *hT = falloc(nh), *cT = falloc(nh);
  float *cache = falloc(p->ncache), *scratch = falloc(p->nscratch);
  float *dx = falloc(p->nx), *dh0 = falloc(nh), *dc0 = falloc(nh);
  float *dw_ih = falloc(p->nwi), *dw_hh = falloc(p->nwh);
  float *db_ih = falloc(p->GH), *db_hh = falloc(p->GH);
  const struct {
    const float *a;
    const double *b;
    int64_t n;
  } fw[] = { { y, p->y, T * nh }, { hT, p->hT, nh }, { cT, lstm ? p->cT : NULL, nh } };
  const struct {
    const float *a;
    const double *b;
    int64_t n;
  } gr[] = { { dx, g->dx, p->nx },
             { dh0, g->dh0, nh },
             { dc0, lstm ? g->dc0 : NULL, nh },
             { dw_ih, g->dw_ih, p->nwi },
             { dw_hh, g->dw_hh, p->nwh },
             { db_ih, p->b_ih ? g->db_ih : NULL, p->GH },
             { db_hh, p->b_hh ? g->db_hh : NULL, p->GH } };
  size_t k;
  int64_t e;
  *fwd = *grd = 0;
  if (bptt_rnn_forward_f32(&p->d, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, hT, lstm ? cT : NULL, cache) ||
      bptt_rnn_backward_f32(&p->d, w_ih, w_hh, x, h0, c0, y, cache, dy, dhT, dcT, dx, dh0, lstm ? dc0 : NULL, dw_ih,
                            dw_hh, b_ih ? db_ih : NULL, b_hh ? db_hh : NULL, scratch)) {
    failures++;
    printf("FAIL: float32 call returned an error\n");
  }
  for (k = 0; k < sizeof fw / sizeof fw[0]; k++)
    for (e = 0; fw[k].b && e < fw[k].n; e++) {
      double v = fabs(fw[k].a[e] - fw[k].b[e]);
      if (!(v <= *fwd)) *fwd = v;
    }
  for (k = 0; k < sizeof gr / sizeof gr[0]; k++)
    for (e = 0; gr[k].b && e < gr[k].n; e++) {
      double v = fabs(gr[k].a[e] - gr[k].b[e]) / fmax(fabs(gr[k].b[e]), 1.0);
      if (!(v <= *grd)) *grd = v;
    }
  free(w_ih);
  free(w_hh);
  free(b_ih);
  free(b_hh);
  free(x);
  free(h0);
  free(c0);
  free(dy);
  free(dhT);
  free(dcT);
  free(y);
  free(hT);
  free(cT);
  free(cache);
  free(scratch);
  free(dx);
  free(dh0);
  free(dc0);
  free(dw_ih);
  free(dw_hh);
  free(db_ih);
  free(db_hh);
}

/* ---- the sweep ---------------------------------------------------------- */

typedef struct {
  double q[NQ], ref, accum, f32fwd, f32grad, min_a;
  int configs;
} stats;

static void upd(double *worst, double v) {
  if (!(v <= *worst)) *worst = v;
}

static void run_config(stats *s, bptt_cell cell, int64_t T, int64_t B, int64_t D, int64_t H, int bias, int state,
                       int mode) {
  prob p;
  grads g, g2;
  double *ry, *rhT, *rcT, min_a, f32f, f32g, acc = 0;
  int lstm = cell == BPTT_CELL_LSTM;
  prob_init(&p, cell, T, B, D, H, bias, state, mode);
  grads_new(&g, &p);
  grads_new(&g2, &p);

  /* 1. forward against the naive reference; NULL state = explicit zeros */
  ry = dalloc(T * p.nh);
  rhT = dalloc(p.nh);
  rcT = dalloc(p.nh);
  forward_loss(&p);
  ref_forward(&p, ry, rhT, rcT, &min_a);
  upd(&s->ref, maxdiff(ry, p.y, T * p.nh));
  upd(&s->ref, maxdiff(rhT, p.hT, p.nh));
  if (lstm) upd(&s->ref, maxdiff(rcT, p.cT, p.nh));
  if (min_a < s->min_a) s->min_a = min_a;
  if (!state) { /* h0 = c0 = NULL must equal explicit zeros, bit for bit */
    double *y0 = dalloc(T * p.nh);
    memcpy(y0, p.y, (size_t)(T * p.nh) * sizeof(double));
    p.h0 = dalloc(p.nh);
    p.c0 = lstm ? dalloc(p.nh) : NULL;
    forward_loss(&p);
    check(maxdiff(y0, p.y, T * p.nh) == 0, "NULL h0/c0 differs from zeros");
    free(p.h0);
    free(p.c0);
    p.h0 = p.c0 = NULL;
    forward_loss(&p);
    free(y0);
  }

  /* 2. backward against central differences */
  backward64(&p, &g);
  upd(&s->q[Q_X], fd_check(&p, &p.x, p.nx, g.dx));
  upd(&s->q[Q_H0], fd_check(&p, &p.h0, p.nh, g.dh0));
  if (lstm) upd(&s->q[Q_C0], fd_check(&p, &p.c0, p.nh, g.dc0));
  upd(&s->q[Q_WIH], fd_check(&p, &p.w_ih, p.nwi, g.dw_ih));
  upd(&s->q[Q_WHH], fd_check(&p, &p.w_hh, p.nwh, g.dw_hh));
  if (bias) {
    upd(&s->q[Q_BIH], fd_check(&p, &p.b_ih, p.GH, g.db_ih));
    upd(&s->q[Q_BHH], fd_check(&p, &p.b_hh, p.GH, g.db_hh));
  }

  /* 3. accumulation: g2 after two backwards = 2 g for parameters, = g for
   * input gradients (which are written, not added) */
  backward64(&p, &g2);
  {
    int64_t k;
    for (k = 0; k < p.nx; k++) g2.dx[k] = 12345; /* must be rewritten */
    for (k = 0; k < p.nh; k++) g2.dh0[k] = g2.dc0[k] = 12345;
    backward64(&p, &g2);
    for (k = 0; k < p.nwi; k++) upd(&acc, fabs(g2.dw_ih[k] - 2 * g.dw_ih[k]));
    for (k = 0; k < p.nwh; k++) upd(&acc, fabs(g2.dw_hh[k] - 2 * g.dw_hh[k]));
    for (k = 0; bias && k < p.GH; k++) {
      upd(&acc, fabs(g2.db_ih[k] - 2 * g.db_ih[k]));
      upd(&acc, fabs(g2.db_hh[k] - 2 * g.db_hh[k]));
    }
    upd(&acc, maxdiff(g2.dx, g.dx, p.nx));
    upd(&acc, maxdiff(g2.dh0, g.dh0, p.nh));
    if (lstm) upd(&acc, maxdiff(g2.dc0, g.dc0, p.nh));
    upd(&s->accum, acc);
  }

  /* 4. float32 against float64 */
  f32_compare(&p, &g, &f32f, &f32g);
  upd(&s->f32fwd, f32f);
  upd(&s->f32grad, f32g);

  s->configs++;
  free(ry);
  free(rhT);
  free(rcT);
  grads_free(&g);
  grads_free(&g2);
  prob_free(&p);
}

/* ---- edge cases ---------------------------------------------------------- */

/* Pre-activations ~ +-1e30 saturate every sigmoid/tanh: all outputs and
 * gradients finite, in both types.  Then a NaN in x: no crash, NaN out. */
static void check_extremes(bptt_cell cell) {
  prob p;
  grads g;
  int64_t k, n;
  int finite = 1, nan_y = 1, lstm = cell == BPTT_CELL_LSTM;
  char msg[96];
  prob_init(&p, cell, 4, 2, 3, 3, 1, 1, 2);
  grads_new(&g, &p);
  for (k = 0; k < p.nx; k++) p.x[k] = p.x[k] < 0 ? -1e30 : 1e30;
  forward_loss(&p);
  backward64(&p, &g);
  for (k = 0; k < p.d.T * p.nh; k++) finite &= isfinite(p.y[k]) != 0;
  for (k = 0; k < p.nx; k++) finite &= isfinite(g.dx[k]) != 0;
  for (k = 0; k < p.nwh; k++) finite &= isfinite(g.dw_hh[k]) != 0;
  {
    float *x = to_f32(p.x, p.nx), *w_ih = to_f32(p.w_ih, p.nwi);
    float *w_hh = to_f32(p.w_hh, p.nwh), *y = falloc(p.d.T * p.nh);
    float *cache = falloc(p.ncache);
    bptt_rnn_forward_f32(&p.d, w_ih, w_hh, NULL, NULL, x, NULL, NULL, y, NULL, NULL, cache);
    for (k = 0; k < p.d.T * p.nh; k++) finite &= isfinite(y[k]) != 0;
    free(x);
    free(w_ih);
    free(w_hh);
    free(y);
    free(cache);
  }
  sprintf(msg, "%s: saturated pre-activations gave a non-finite value", bptt_cell_name(cell));
  check(finite, msg);

  /* NaN in x at step 0, batch 0: y there and after is NaN for batch 0 */
  for (k = 0; k < p.nx; k++) p.x[k] = urand(-1, 1);
  p.x[0] = NAN;
  forward_loss(&p);
  backward64(&p, &g);
  n = p.d.H;
  for (k = 0; k < n; k++) nan_y &= isnan(p.y[k]) && isnan(p.hT[k]) && (!lstm || isnan(p.cT[k]));
  sprintf(msg, "%s: NaN in x did not reach y, hT", bptt_cell_name(cell));
  check(nan_y, msg);
  grads_free(&g);
  prob_free(&p);
}

static void check_contract(void) {
  bptt_rnn_dims d = { BPTT_CELL_LSTM, 5, 3, 4, 7 };
  int64_t n = -1;
  double w = 0;
  const struct {
    bptt_cell c;
    int64_t cache, scratch;
  } want[] = { { BPTT_CELL_TANH, 0, 5 * 3 * 7 + 3 * 7 },
               { BPTT_CELL_RELU, 0, 5 * 3 * 7 + 3 * 7 },
               { BPTT_CELL_LSTM, 5 * 5 * 3 * 7, 4 * 5 * 3 * 7 + 2 * 3 * 7 },
               { BPTT_CELL_GRU, 4 * 5 * 3 * 7 + 3 * 3 * 7, 4 * 5 * 3 * 7 + 3 * 7 } };
  size_t k;
  for (k = 0; k < 4; k++) {
    int64_t c = -1, s = -1;
    d.cell = want[k].c;
    check(bptt_rnn_cache_numel(&d, &c) == BPTT_OK && c == want[k].cache, "cache_numel formula");
    check(bptt_rnn_scratch_numel(&d, &s) == BPTT_OK && s == want[k].scratch, "scratch_numel formula");
  }
  check(bptt_cell_gates(BPTT_CELL_GRU) == 3 && bptt_cell_gates(9) == 0, "bptt_cell_gates");
  check(bptt_cell_from_name("gru") == BPTT_CELL_GRU && bptt_cell_from_name("GRU") == -1 &&
            bptt_cell_from_name(NULL) == -1 && strcmp(bptt_cell_name(BPTT_CELL_RELU), "relu") == 0 &&
            bptt_cell_name(9) == NULL,
        "cell names");
  check(bptt_rnn_check_dims(NULL) == BPTT_EARG, "NULL dims");
  check(bptt_rnn_cache_numel(&d, NULL) == BPTT_EARG, "NULL out");
  d.T = 0;
  check(bptt_rnn_check_dims(&d) == BPTT_EARG, "T = 0");
  d.T = 5;
  d.H = -1;
  check(bptt_rnn_cache_numel(&d, &n) == BPTT_EARG && n == -1, "H < 0");
  d.H = 7;
  d.cell = 9;
  check(bptt_rnn_check_dims(&d) == BPTT_EARG, "unknown cell");
  d.cell = BPTT_CELL_LSTM;
  d.T = INT64_MAX / 2;
  check(bptt_rnn_check_dims(&d) == BPTT_EOVERFLOW, "T*B overflows int64");
  d.T = 1 << 20;
  d.B = 1 << 12; /* fits int64 but not a BLAS int */
  check(bptt_rnn_check_dims(&d) == BPTT_EOVERFLOW, "T*B over INT_MAX");
  d.T = 5;
  d.B = 3;
  check(bptt_rnn_forward_f64(&d, &w, NULL, NULL, NULL, &w, NULL, NULL, &w, NULL, NULL, &w) == BPTT_EARG, "NULL w_hh");
  check(bptt_rnn_forward_f64(&d, &w, &w, NULL, NULL, &w, NULL, NULL, &w, NULL, NULL, NULL) == BPTT_EARG,
        "NULL lstm cache");
  check(bptt_rnn_backward_f32(&d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                              NULL, NULL, NULL, NULL) == BPTT_EARG,
        "NULL backward");
}

int main(void) {
  static const int64_t sizes[2][4] = { { 5, 3, 4, 5 }, { 1, 2, 3, 2 } };
  stats all[4];
  int c, z, bias, state, mode, q;
  double worst_fd = 0;
  memset(all, 0, sizeof all);
  printf(
      "rnn_check: float64 gradients vs central differences, eps = %g\n"
      "err = |analytic - numeric| / max(|analytic|, |numeric|, 1), "
      "limit %g\n"
      "sizes (T,B,D,H) = (5,3,4,5) and (1,2,3,2); bias on/off; h0,c0 "
      "given/NULL;\nloss from dy / dhT,dcT / both\n\n",
      EPS, TOL);
  for (c = 0; c < 4; c++) {
    all[c].min_a = INFINITY;
    for (z = 0; z < 2; z++)
      for (bias = 0; bias < 2; bias++)
        for (state = 0; state < 2; state++)
          for (mode = 0; mode < 3; mode++)
            run_config(&all[c], (bptt_cell)c, sizes[z][0], sizes[z][1], sizes[z][2], sizes[z][3], bias, state, mode);
  }
  printf("%-5s %4s", "cell", "cfgs");
  for (q = 0; q < NQ; q++) printf(" %8s", qname[q]);
  printf(" | %8s %8s %8s %8s\n", "fwd-ref", "accum", "f32-fwd", "f32-grad");
  for (c = 0; c < 4; c++) {
    stats *s = &all[c];
    printf("%-5s %4d", bptt_cell_name((bptt_cell)c), s->configs);
    for (q = 0; q < NQ; q++) {
      if (q == Q_C0 && c != BPTT_CELL_LSTM)
        printf(" %8s", "-");
      else
        printf(" %8.1e", s->q[q]);
      upd(&worst_fd, s->q[q]);
    }
    printf(" | %8.1e %8.1e %8.1e %8.1e\n", s->ref, s->accum, s->f32fwd, s->f32grad);
    check(s->ref < 1e-12, "float64 forward differs from the reference");
    check(s->accum < 1e-12, "second backward did not accumulate exactly");
    check(s->f32fwd < TOL_F32_FWD, "float32 forward far from float64");
    check(s->f32grad < TOL_F32_GRAD, "float32 gradients far from float64");
  }
  printf(
      "\nrelu: smallest |pre-activation| seen %.1e (finite differences "
      "straddle the kink only below eps = %g)\n",
      all[BPTT_CELL_RELU].min_a, EPS);
  check(all[BPTT_CELL_RELU].min_a > 10 * EPS, "relu kink within 10 eps");
  check(worst_fd < TOL, "a gradient exceeds the finite-difference limit");
  for (c = 0; c < 4; c++) check_extremes((bptt_cell)c);
  check_contract();
  printf("worst gradient error %.1e (limit %g); %s\n", worst_fd, TOL, failures ? "FAILED" : "all checks passed");
  return failures ? 1 : 0;
}
