/*
 * nn_check.c -- standalone check of c/core/nn.c: gradients by float64 central
 * finite differences, accumulation, error codes and positions, huge logits,
 * and float32 against float64.
 *
 * Build and run: `make check-c` (built against the core library alone,
 * build/libbptt_core.a, with the library's flags; `make test` runs it first);
 * the binary is build/check/nn_check.
 * Prints one line per quantity with its worst relative error and exits
 * non-zero if any check fails.
 *
 * Relative error of a quantity: max_k |a_k - r_k| / max_k max(|a_k|, |r_k|),
 * the worst element error measured against the quantity's scale, where a is
 * the kernel's answer and r the reference.  Gradients need <= 1e-7 against
 * central differences (step 1e-5); float32 needs <= 2e-5 against float64.
 */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FD_TOL 1e-7
#define F32_TOL 2e-5
#define FD_STEP 1e-5

static int failures = 0;

static void check(int ok, const char *what) {
  printf("%-62s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

static void report(const char *what, double err, double tol) {
  int ok = err <= tol; /* a NaN error fails */
  printf("%-52s %10.3e  %s\n", what, err, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

static double relerr(const double *a, const double *r, int n) {
  double num = 0, den = 0;
  int k;
  for (k = 0; k < n; k++) {
    double d = fabs(a[k] - r[k]);
    if (d > num || d != d) num = d;
    if (fabs(a[k]) > den) den = fabs(a[k]);
    if (fabs(r[k]) > den) den = fabs(r[k]);
  }
  if (num != num) return NAN;
  return den > 0 ? num / den : num;
}

static double relerr_f32(const float *a, const double *r, int n) {
  double tmp[512];
  int k;
  for (k = 0; k < n; k++) tmp[k] = a[k];
  return relerr(tmp, r, n);
}

/* xorshift64*, uniform in [lo, hi) */
static unsigned long long rng_s = 0x9E3779B97F4A7C15ULL;
static double urand(double lo, double hi) {
  rng_s ^= rng_s >> 12;
  rng_s ^= rng_s << 25;
  rng_s ^= rng_s >> 27;
  return lo + (hi - lo) * (double)((rng_s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
static void fill(double *a, int n, double lo, double hi) {
  int k;
  for (k = 0; k < n; k++) a[k] = urand(lo, hi);
}
static void to_f32(float *d, const double *s, int n) {
  int k;
  for (k = 0; k < n; k++) d[k] = (float)s[k];
}

/* Central differences of f(ctx) with respect to p[0..n). */
typedef double (*lossfn)(void *ctx);
static void numgrad(lossfn f, void *ctx, double *p, int n, double *g) {
  int k;
  for (k = 0; k < n; k++) {
    double v = p[k], lp, lm;
    p[k] = v + FD_STEP;
    lp = f(ctx);
    p[k] = v - FD_STEP;
    lm = f(ctx);
    p[k] = v;
    g[k] = (lp - lm) / (2 * FD_STEP);
  }
}

/* ---------------------------------------------------------------- Linear */
enum { LN = 5, LI = 4, LO = 3 };
typedef struct {
  double x[LN * LI], W[LO * LI], b[LO], R[LN * LO], y[LN * LO];
  int bias;
} lin_ctx;

/* L = sum R .* y, so dL/dy = R */
static double lin_loss(void *p) {
  lin_ctx *c = p;
  double L = 0;
  int k;
  if (bptt_linear_forward_f64(c->x, c->W, c->bias ? c->b : NULL, c->y, LN, LI, LO)) return NAN;
  for (k = 0; k < LN * LO; k++) L += c->R[k] * c->y[k];
  return L;
}

static void check_linear(void) {
  static lin_ctx c;
  double ref[LN * LO], dx[LN * LI], dW[LO * LI], db[LO], g[LN * LI];
  double dW2[LO * LI], db2[LO], twice[LO * LI];
  float xf[LN * LI], Wf[LO * LI], bf[LO], Rf[LN * LO], yf[LN * LO];
  float dxf[LN * LI], dWf[LO * LI], dbf[LO];
  int n, i, o, k;
  fill(c.x, LN * LI, -1, 1);
  fill(c.W, LO * LI, -1, 1);
  fill(c.b, LO, -1, 1);
  fill(c.R, LN * LO, -1, 1);
  c.bias = 1;

  /* forward against the definition */
  lin_loss(&c);
  for (n = 0; n < LN; n++)
    for (o = 0; o < LO; o++) {
      double s = c.b[o];
      for (i = 0; i < LI; i++) s += c.x[n * LI + i] * c.W[o * LI + i];
      ref[n * LO + o] = s;
    }
  report("linear f64 forward y vs loops", relerr(c.y, ref, LN * LO), 1e-14);

  memset(dW, 0, sizeof dW);
  memset(db, 0, sizeof db);
  check(bptt_linear_backward_f64(c.x, c.W, c.R, dx, dW, db, LN, LI, LO) == BPTT_OK,
        "linear f64 backward returns BPTT_OK");
  numgrad(lin_loss, &c, c.x, LN * LI, g);
  report("linear f64 grad x (finite differences)", relerr(dx, g, LN * LI), FD_TOL);
  numgrad(lin_loss, &c, c.W, LO * LI, g);
  report("linear f64 grad W (finite differences)", relerr(dW, g, LO * LI), FD_TOL);
  numgrad(lin_loss, &c, c.b, LO, g);
  report("linear f64 grad b (finite differences)", relerr(db, g, LO), FD_TOL);

  /* accumulation: a second backward adds the same again; dx NULL is skipped */
  memcpy(dW2, dW, sizeof dW);
  memcpy(db2, db, sizeof db);
  bptt_linear_backward_f64(c.x, c.W, c.R, NULL, dW2, db2, LN, LI, LO);
  for (k = 0; k < LO * LI; k++) twice[k] = 2 * dW[k];
  report("linear f64 two backwards: dW = 2 x one", relerr(dW2, twice, LO * LI), 1e-15);
  for (k = 0; k < LO; k++) twice[k] = 2 * db[k];
  report("linear f64 two backwards: db = 2 x one", relerr(db2, twice, LO), 1e-15);

  /* no bias */
  c.bias = 0;
  lin_loss(&c);
  for (k = 0; k < LN * LO; k++) ref[k] -= c.b[k % LO];
  report("linear f64 forward without bias", relerr(c.y, ref, LN * LO), 1e-14);
  c.bias = 1;

  /* float32 against float64 */
  to_f32(xf, c.x, LN * LI);
  to_f32(Wf, c.W, LO * LI);
  to_f32(bf, c.b, LO);
  to_f32(Rf, c.R, LN * LO);
  memset(dWf, 0, sizeof dWf);
  memset(dbf, 0, sizeof dbf);
  lin_loss(&c);
  bptt_linear_forward_f32(xf, Wf, bf, yf, LN, LI, LO);
  bptt_linear_backward_f32(xf, Wf, Rf, dxf, dWf, dbf, LN, LI, LO);
  report("linear f32 vs f64: y", relerr_f32(yf, c.y, LN * LO), F32_TOL);
  report("linear f32 vs f64: dx", relerr_f32(dxf, dx, LN * LI), F32_TOL);
  report("linear f32 vs f64: dW", relerr_f32(dWf, dW, LO * LI), F32_TOL);
  report("linear f32 vs f64: db", relerr_f32(dbf, db, LO), F32_TOL);

  /* sizes */
  check(bptt_linear_forward_f64(c.x, c.W, c.b, c.y, -1, LI, LO) == BPTT_EARG, "linear negative size -> BPTT_EARG");
  check(bptt_linear_forward_f64(c.x, c.W, c.b, c.y, INT64_MAX / 2, 4, LO) == BPTT_EOVERFLOW,
        "linear N*I overflowing int64 -> BPTT_EOVERFLOW");
  check(bptt_linear_forward_f64(NULL, NULL, NULL, NULL, (int64_t)1 << 31, 1, 1) == BPTT_EOVERFLOW,
        "linear N beyond BLAS int -> BPTT_EOVERFLOW");
  check(bptt_linear_forward_f64(NULL, c.W, c.b, c.y, LN, LI, LO) == BPTT_EARG, "linear NULL x -> BPTT_EARG");
  /* I = 0: y = b; O = 0 and N = 0: nothing to do */
  bptt_linear_forward_f64(NULL, NULL, c.b, c.y, 2, 0, LO);
  check(c.y[0] == c.b[0] && c.y[LO + 2] == c.b[2], "linear I = 0 gives y = b");
  memset(dx, 0xff, sizeof dx);
  check(bptt_linear_backward_f64(c.x, NULL, NULL, dx, NULL, NULL, 2, LI, 0) == BPTT_OK && dx[0] == 0 &&
            dx[2 * LI - 1] == 0,
        "linear O = 0 gives dx = 0");
  check(bptt_linear_forward_f64(NULL, c.W, c.b, NULL, 0, LI, LO) == BPTT_OK &&
            bptt_linear_backward_f64(NULL, c.W, NULL, NULL, dW, db, 0, LI, LO) == BPTT_OK,
        "linear N = 0 is a no-op");
}

/* A size where OpenBLAS blocks and threads: forward and accumulated
 * backward against plain loops. */
enum { BN = 130, BI = 70, BO = 90 };
static void check_linear_big(void) {
  static double x[BN * BI], W[BO * BI], b[BO], dy[BN * BO], y[BN * BO], dx[BN * BI];
  static double dW[BO * BI], db[BO], ry[BN * BO], rdx[BN * BI], rdW[BO * BI], rdb[BO];
  int n, i, o;
  fill(x, BN * BI, -1, 1);
  fill(W, BO * BI, -1, 1);
  fill(b, BO, -1, 1);
  fill(dy, BN * BO, -1, 1);
  fill(dW, BO * BI, -1, 1); /* accumulate onto non-zero gradients */
  fill(db, BO, -1, 1);
  memcpy(rdW, dW, sizeof dW);
  memcpy(rdb, db, sizeof db);
  bptt_linear_forward_f64(x, W, b, y, BN, BI, BO);
  bptt_linear_backward_f64(x, W, dy, dx, dW, db, BN, BI, BO);
  memset(rdx, 0, sizeof rdx);
  for (n = 0; n < BN; n++)
    for (o = 0; o < BO; o++) {
      double s = b[o], g = dy[n * BO + o];
      for (i = 0; i < BI; i++) {
        s += x[n * BI + i] * W[o * BI + i];
        rdx[n * BI + i] += g * W[o * BI + i];
        rdW[o * BI + i] += g * x[n * BI + i];
      }
      ry[n * BO + o] = s;
      rdb[o] += g;
    }
  report("linear 130x70->90 f64: y vs loops", relerr(y, ry, BN * BO), 1e-13);
  report("linear 130x70->90 f64: dx vs loops", relerr(dx, rdx, BN * BI), 1e-13);
  report("linear 130x70->90 f64: dW += vs loops", relerr(dW, rdW, BO * BI), 1e-13);
  report("linear 130x70->90 f64: db += vs loops", relerr(db, rdb, BO), 1e-13);
}

/* ------------------------------------------------------------- Embedding */
enum { EN = 8, EV = 6, ED = 3 };
typedef struct {
  int32_t ids[EN];
  double W[EV * ED], R[EN * ED], y[EN * ED];
} emb_ctx;

static double emb_loss(void *p) {
  emb_ctx *c = p;
  double L = 0;
  int k;
  if (bptt_embedding_forward_f64(c->ids, c->W, c->y, EN, EV, ED, NULL)) return NAN;
  for (k = 0; k < EN * ED; k++) L += c->R[k] * c->y[k];
  return L;
}

static void check_embedding(void) {
  static emb_ctx c;
  static const int32_t ids[EN] = { 2, 5, 2, 1, 6, 2, 5, 3 }; /* repeats; 4 unused */
  double dW[EV * ED], g[EV * ED], twice[EV * ED], ref[EN * ED];
  float Wf[EV * ED], Rf[EN * ED], yf[EN * ED], dWf[EV * ED];
  int32_t bad[EN];
  int64_t pos;
  int n, d, k, ok;
  memcpy(c.ids, ids, sizeof ids);
  fill(c.W, EV * ED, -1, 1);
  fill(c.R, EN * ED, -1, 1);

  emb_loss(&c);
  for (n = 0; n < EN; n++)
    for (d = 0; d < ED; d++) ref[n * ED + d] = c.W[(ids[n] - 1) * ED + d];
  report("embedding f64 forward y = W[id-1]", relerr(c.y, ref, EN * ED), 0);

  memset(dW, 0, sizeof dW);
  check(bptt_embedding_backward_f64(c.ids, c.R, dW, EN, EV, ED, &pos) == BPTT_OK && pos == -1,
        "embedding backward returns BPTT_OK, bad_pos = -1");
  numgrad(emb_loss, &c, c.W, EV * ED, g);
  report("embedding f64 grad W, repeated ids (fin. diff.)", relerr(dW, g, EV * ED), FD_TOL);
  for (k = 0; k < EV * ED; k++) twice[k] = 2 * dW[k];
  bptt_embedding_backward_f64(c.ids, c.R, dW, EN, EV, ED, NULL);
  report("embedding f64 two backwards: dW = 2 x one", relerr(dW, twice, EV * ED), 1e-15);
  check(dW[3 * ED] == 0 && dW[3 * ED + 2] == 0, "embedding unused row 4 keeps zero gradient");

  emb_loss(&c); /* y of the unperturbed W */
  to_f32(Wf, c.W, EV * ED);
  to_f32(Rf, c.R, EN * ED);
  memset(dWf, 0, sizeof dWf);
  bptt_embedding_forward_f32(c.ids, Wf, yf, EN, EV, ED, NULL);
  bptt_embedding_backward_f32(c.ids, Rf, dWf, EN, EV, ED, NULL);
  for (k = 0; k < EV * ED; k++) twice[k] /= 2;
  report("embedding f32 vs f64: y", relerr_f32(yf, c.y, EN * ED), F32_TOL);
  report("embedding f32 vs f64: dW", relerr_f32(dWf, twice, EV * ED), F32_TOL);

  /* bad ids: first offending position, nothing written */
  memcpy(bad, ids, sizeof ids);
  bad[3] = 0;
  bad[5] = EV + 1;
  memset(c.y, 0, sizeof c.y);
  check(bptt_embedding_forward_f64(bad, c.W, c.y, EN, EV, ED, &pos) == BPTT_ERANGE && pos == 3,
        "embedding id 0 at position 3 -> BPTT_ERANGE, bad_pos 3");
  for (ok = 1, k = 0; k < EN * ED; k++) ok = ok && c.y[k] == 0;
  check(ok, "embedding forward with a bad id writes nothing");
  bad[3] = 1;
  check(bptt_embedding_forward_f32(bad, Wf, yf, EN, EV, ED, &pos) == BPTT_ERANGE && pos == 5,
        "embedding id V+1 at position 5 -> BPTT_ERANGE, bad_pos 5");
  bad[5] = 2;
  bad[7] = -7;
  memcpy(twice, dW, sizeof dW);
  check(bptt_embedding_backward_f64(bad, c.R, dW, EN, EV, ED, &pos) == BPTT_ERANGE && pos == 7 &&
            memcmp(twice, dW, sizeof dW) == 0,
        "embedding backward id -7 at 7 -> BPTT_ERANGE, dW intact");
  check(bptt_embedding_forward_f64(bad, c.W, c.y, EN, EV, -1, &pos) == BPTT_EARG && pos == -1,
        "embedding negative D -> BPTT_EARG, bad_pos -1");
}

/* ---------------------------------------------------------- CrossEntropy */
enum { CN = 7, CC = 5 };
typedef struct {
  double x[CN * CC], cache[2 * CN];
  int32_t t[CN];
  int32_t ign;
  int red;
} ce_ctx;

static double ce_loss(void *p) {
  ce_ctx *c = p;
  double L;
  if (bptt_crossentropy_forward_f64(c->x, c->t, CN, CC, c->ign, c->red, c->cache, &L, NULL, NULL)) return NAN;
  return L;
}

/* naive reference: -log(exp(x_t) / sum exp(x)) over counted rows */
static double ce_naive(const ce_ctx *c, int64_t *count) {
  double L = 0;
  int n, j;
  *count = 0;
  for (n = 0; n < CN; n++) {
    double s = 0;
    if (c->ign != BPTT_NO_IGNORE && c->t[n] == c->ign) continue;
    for (j = 0; j < CC; j++) s += exp(c->x[n * CC + j]);
    L -= log(exp(c->x[n * CC + c->t[n] - 1]) / s);
    ++*count;
  }
  return c->red == BPTT_LOSS_MEAN && *count ? L / (double)*count : L;
}

static void ce_case(const char *name, int32_t ign, int red, const int32_t *t) {
  static ce_ctx c;
  double loss, ref, d[CN * CC], g[CN * CC], dscaled[CN * CC];
  float xf[CN * CC], cf[2 * CN], df[CN * CC];
  double lossf;
  int64_t cnt, rcnt, pos;
  char buf[100];
  int k;
  fill(c.x, CN * CC, -3, 3);
  memcpy(c.t, t, sizeof c.t);
  c.ign = ign;
  c.red = red;

  check(bptt_crossentropy_forward_f64(c.x, c.t, CN, CC, ign, red, c.cache, &loss, &cnt, &pos) == BPTT_OK && pos == -1,
        name);
  ref = ce_naive(&c, &rcnt);
  sprintf(buf, "ce %s: loss vs naive", name);
  report(buf, fabs(loss - ref) / fabs(ref), 1e-13);
  sprintf(buf, "ce %s: count = %d", name, (int)rcnt);
  check(cnt == rcnt, buf);

  bptt_crossentropy_backward_f64(c.x, c.t, c.cache, CN, CC, ign, red, 1.0, d, NULL);
  numgrad(ce_loss, &c, c.x, CN * CC, g);
  sprintf(buf, "ce %s: grad logits (fin. diff.)", name);
  report(buf, relerr(d, g, CN * CC), FD_TOL);

  /* upstream gradient scales the result */
  ce_loss(&c); /* restore the cache of unperturbed logits */
  bptt_crossentropy_backward_f64(c.x, c.t, c.cache, CN, CC, ign, red, 0.7, dscaled, NULL);
  for (k = 0; k < CN * CC; k++) g[k] = 0.7 * d[k];
  sprintf(buf, "ce %s: gout = 0.7 scales the gradient", name);
  report(buf, relerr(dscaled, g, CN * CC), 1e-15);

  to_f32(xf, c.x, CN * CC);
  bptt_crossentropy_forward_f32(xf, c.t, CN, CC, ign, red, cf, &lossf, NULL, NULL);
  bptt_crossentropy_backward_f32(xf, c.t, cf, CN, CC, ign, red, 1.0, df, NULL);
  sprintf(buf, "ce %s: f32 vs f64 loss", name);
  report(buf, fabs(lossf - loss) / fabs(loss), F32_TOL);
  sprintf(buf, "ce %s: f32 vs f64 grad", name);
  report(buf, relerr_f32(df, d, CN * CC), F32_TOL);
}

static void check_crossentropy(void) {
  static const int32_t t_all[CN] = { 1, 5, 3, 3, 2, 4, 1 };
  static const int32_t t_pad[CN] = { 1, 0, 3, 0, 2, 4, 0 }; /* 0 = padding */
  static const int32_t t_zero[CN] = { 0, 0, 0, 0, 0, 0, 0 };
  double x[CN * CC], cache[2 * CN], d[CN * CC], loss;
  float xf[6], cf[4], df[6];
  int32_t t[CN];
  int64_t pos, cnt;
  int k, ok;

  ce_case("mean, no ignore", BPTT_NO_IGNORE, BPTT_LOSS_MEAN, t_all);
  ce_case("sum, no ignore", BPTT_NO_IGNORE, BPTT_LOSS_SUM, t_all);
  ce_case("mean, ignore 0 (3 rows)", 0, BPTT_LOSS_MEAN, t_pad);
  ce_case("sum, ignore 0 (3 rows)", 0, BPTT_LOSS_SUM, t_pad);
  ce_case("mean, ignore class 3 (2 rows)", 3, BPTT_LOSS_MEAN, t_all);

  /* every row ignored: loss 0, gradient 0 */
  fill(x, CN * CC, -3, 3);
  memset(d, 0xff, sizeof d);
  check(bptt_crossentropy_forward_f64(x, t_zero, CN, CC, 0, BPTT_LOSS_MEAN, cache, &loss, &cnt, NULL) == BPTT_OK &&
            loss == 0 && cnt == 0,
        "ce all rows ignored: loss 0, count 0");
  bptt_crossentropy_backward_f64(x, t_zero, cache, CN, CC, 0, BPTT_LOSS_MEAN, 1, d, NULL);
  for (ok = 1, k = 0; k < CN * CC; k++) ok = ok && d[k] == 0;
  check(ok, "ce all rows ignored: gradient 0");

  /* targets out of range */
  memcpy(t, t_all, sizeof t);
  t[2] = CC + 1;
  t[4] = 0;
  check(bptt_crossentropy_forward_f64(x, t, CN, CC, BPTT_NO_IGNORE, BPTT_LOSS_MEAN, cache, &loss, NULL, &pos) ==
                BPTT_ERANGE &&
            pos == 2,
        "ce target C+1 at row 2 -> BPTT_ERANGE, bad_pos 2");
  check(bptt_crossentropy_forward_f64(x, t, CN, CC, CC + 1, BPTT_LOSS_MEAN, cache, &loss, NULL, &pos) == BPTT_ERANGE &&
            pos == 4,
        "ce target 0 at row 4 (C+1 ignored) -> bad_pos 4");
  check(bptt_crossentropy_backward_f64(x, t, cache, CN, CC, BPTT_NO_IGNORE, BPTT_LOSS_SUM, 1, d, &pos) == BPTT_ERANGE &&
            pos == 2,
        "ce backward revalidates: bad_pos 2");
  t[2] = INT32_MIN;
  check(bptt_crossentropy_forward_f64(x, t, CN, CC, BPTT_NO_IGNORE, BPTT_LOSS_SUM, cache, &loss, NULL, &pos) ==
                BPTT_ERANGE &&
            pos == 2,
        "ce target INT32_MIN with BPTT_NO_IGNORE -> bad_pos 2");
  check(bptt_crossentropy_forward_f64(x, t_all, CN, CC, BPTT_NO_IGNORE, 7, cache, &loss, NULL, &pos) == BPTT_EARG,
        "ce unknown reduction -> BPTT_EARG");

  /* huge logits: rows {1e30, -1e30, 0} t=2, {1e30, 1e30, -1e30} t=1,
   * {-1e30, -1e30, -1e30} t=3; loss = 2e30 + log(1)... finite, sum reduction */
  {
    static const double hx[9] = { 1e30, -1e30, 0, 1e30, 1e30, -1e30, -1e30, -1e30, -1e30 };
    static const int32_t ht[3] = { 2, 1, 3 };
    /* exact answers: loss = 2e30 + log 2 + log 3; softmax rows (1,0,0), (.5,.5,0), (1/3,..) */
    const double want_loss = 2e30 + log(2.0) + log(3.0);
    const double want_d[9] = { 1, -1, 0, -0.5, 0.5, 0, 1.0 / 3, 1.0 / 3, -2.0 / 3 };
    double hd[9], hc[6], lf;
    to_f32(xf, hx, 6);
    check(bptt_crossentropy_forward_f64(hx, ht, 3, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, hc, &loss, NULL, NULL) == BPTT_OK,
          "ce huge logits f64 forward");
    bptt_crossentropy_backward_f64(hx, ht, hc, 3, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, 1, hd, NULL);
    report("ce huge logits (+-1e30) f64: loss", fabs(loss - want_loss) / want_loss, 1e-15);
    report("ce huge logits (+-1e30) f64: grad", relerr(hd, want_d, 9), 1e-15);
    /* float32: two rows (1e30 is representable) */
    bptt_crossentropy_forward_f32(xf, ht, 2, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, cf, &lf, NULL, NULL);
    bptt_crossentropy_backward_f32(xf, ht, cf, 2, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, 1, df, NULL);
    report("ce huge logits (+-1e30) f32: loss", fabs(lf - (2e30 + log(2.0))) / 2e30, 1e-7);
    report("ce huge logits (+-1e30) f32: grad", relerr_f32(df, want_d, 6), 1e-7);
    /* float32 near its limit: 3e38 - (-3e38) overflows the type, not the code */
    xf[0] = 3e38f;
    xf[1] = -3e38f;
    xf[2] = 0;
    bptt_crossentropy_forward_f32(xf, ht, 1, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, cf, &lf, NULL, NULL);
    bptt_crossentropy_backward_f32(xf, ht, cf, 1, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, 1, df, NULL);
    check(isfinite(lf) && df[0] == 1 && df[1] == -1 && df[2] == 0,
          "ce f32 logits +-3e38: finite loss 6e38, exact grad");
  }

  /* Inf and NaN logits: no crash, non-finite answers only in their row */
  {
    double ix[6] = { INFINITY, 0, 1, NAN, 0, 1 };
    double ic[4], id[6];
    static const int32_t it[2] = { 1, 2 };
    check(
        bptt_crossentropy_forward_f64(ix, it, 2, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, ic, &loss, NULL, NULL) == BPTT_OK &&
            bptt_crossentropy_backward_f64(ix, it, ic, 2, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, 1, id, NULL) == BPTT_OK,
        "ce +Inf / NaN logits: no crash, BPTT_OK");
    printf("    (loss with +Inf and NaN rows = %g)\n", loss);
    ix[0] = -INFINITY;
    ix[3] = 2;
    bptt_crossentropy_forward_f64(ix, it, 2, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, ic, &loss, NULL, NULL);
    bptt_crossentropy_backward_f64(ix, it, ic, 2, 3, BPTT_NO_IGNORE, BPTT_LOSS_SUM, 1, id, NULL);
    check(loss == INFINITY && id[0] == -1 && isfinite(id[1]) && isfinite(id[5]),
          "ce -Inf logit on the target: loss +Inf, finite grads");
  }

  /* in place: dlogits = logits */
  fill(x, CN * CC, -3, 3);
  bptt_crossentropy_forward_f64(x, t_all, CN, CC, BPTT_NO_IGNORE, BPTT_LOSS_MEAN, cache, &loss, NULL, NULL);
  bptt_crossentropy_backward_f64(x, t_all, cache, CN, CC, BPTT_NO_IGNORE, BPTT_LOSS_MEAN, 1, d, NULL);
  bptt_crossentropy_backward_f64(x, t_all, cache, CN, CC, BPTT_NO_IGNORE, BPTT_LOSS_MEAN, 1, x, NULL);
  report("ce backward in place (dlogits = logits)", relerr(x, d, CN * CC), 0);
}

/* ------------------------------------------------------------------- MSE */
enum { MN = 9 };
typedef struct {
  double p[MN], t[MN];
  int red;
} mse_ctx;

static double mse_loss(void *q) {
  mse_ctx *c = q;
  double L;
  if (bptt_mse_forward_f64(c->p, c->t, MN, c->red, &L)) return NAN;
  return L;
}

static void check_mse(void) {
  static mse_ctx c;
  double d[MN], g[MN], loss, ref;
  float pf[MN], tf[MN], df[MN];
  double lf;
  int red, k;
  char buf[100];
  for (red = BPTT_LOSS_MEAN; red <= BPTT_LOSS_SUM; red++) {
    const char *nm = red == BPTT_LOSS_MEAN ? "mean" : "sum";
    fill(c.p, MN, -2, 2);
    fill(c.t, MN, -2, 2);
    c.red = red;
    loss = mse_loss(&c);
    for (ref = 0, k = 0; k < MN; k++) ref += (c.p[k] - c.t[k]) * (c.p[k] - c.t[k]);
    if (red == BPTT_LOSS_MEAN) ref /= MN;
    sprintf(buf, "mse %s: loss vs loops", nm);
    report(buf, fabs(loss - ref) / ref, 1e-15);
    bptt_mse_backward_f64(c.p, c.t, MN, red, 1.0, d);
    numgrad(mse_loss, &c, c.p, MN, g);
    sprintf(buf, "mse %s: grad pred (fin. diff.)", nm);
    report(buf, relerr(d, g, MN), FD_TOL);
    to_f32(pf, c.p, MN);
    to_f32(tf, c.t, MN);
    bptt_mse_forward_f32(pf, tf, MN, red, &lf);
    bptt_mse_backward_f32(pf, tf, MN, red, 1.0, df);
    sprintf(buf, "mse %s: f32 vs f64 loss", nm);
    report(buf, fabs(lf - loss) / loss, F32_TOL);
    sprintf(buf, "mse %s: f32 vs f64 grad", nm);
    report(buf, relerr_f32(df, d, MN), F32_TOL);
  }
  check(bptt_mse_forward_f64(NULL, NULL, 0, BPTT_LOSS_MEAN, &loss) == BPTT_OK && loss == 0,
        "mse of zero elements: loss 0");
  check(bptt_mse_forward_f64(c.p, c.t, -1, BPTT_LOSS_MEAN, &loss) == BPTT_EARG, "mse negative n -> BPTT_EARG");
}

/* --------------------------------------------------------------- Dropout */
enum { DN = 64 };
static void check_dropout(void) {
  double x[DN], m[DN], y[DN], dy[DN], dx[DN], u[DN];
  float xf[DN], mf[DN], yf[DN];
  const double p = 0.3, keep = 1 / (1 - 0.3);
  int k, ok, kept = 0;
  fill(x, DN, -1, 1);
  fill(u, DN, 0, 1);
  fill(dy, DN, -1, 1);
  memcpy(m, u, sizeof u);
  check(bptt_dropout_apply_f64(x, m, y, DN, p) == BPTT_OK, "dropout apply returns BPTT_OK");
  for (ok = 1, k = 0; k < DN; k++) {
    double want = u[k] >= p ? keep : 0;
    kept += u[k] >= p;
    ok = ok && m[k] == want && y[k] == x[k] * want;
  }
  check(ok && kept > 0 && kept < DN, "dropout mask = (u >= p) / (1-p), y = x * mask");
  bptt_dropout_backward_f64(dy, m, dx, DN);
  for (ok = 1, k = 0; k < DN; k++) ok = ok && dx[k] == dy[k] * m[k];
  check(ok, "dropout backward dx = dy * mask");
  to_f32(xf, x, DN);
  to_f32(mf, u, DN);
  bptt_dropout_apply_f32(xf, mf, yf, DN, p);
  for (ok = 1, k = 0; k < DN; k++) ok = ok && (mf[k] != 0) == ((float)u[k] >= p);
  report("dropout f32 vs f64: y", relerr_f32(yf, y, DN), F32_TOL);
  check(ok, "dropout f32 keeps the same units");
  /* in place, p = 0 (identity) and p = 1 (all dropped) */
  memcpy(y, x, sizeof x);
  memcpy(m, u, sizeof u);
  bptt_dropout_apply_f64(y, m, y, DN, 0.0);
  check(memcmp(y, x, sizeof x) == 0, "dropout p = 0 in place is the identity");
  memcpy(m, u, sizeof u);
  bptt_dropout_apply_f64(x, m, y, DN, 1.0);
  for (ok = 1, k = 0; k < DN; k++) ok = ok && y[k] == 0 && m[k] == 0;
  check(ok, "dropout p = 1 drops everything");
  check(bptt_dropout_apply_f64(x, m, y, DN, -0.1) == BPTT_EARG &&
            bptt_dropout_apply_f64(x, m, y, DN, 1.5) == BPTT_EARG &&
            bptt_dropout_apply_f64(x, m, y, DN, NAN) == BPTT_EARG,
        "dropout p outside [0,1] or NaN -> BPTT_EARG");
}

int main(void) {
  check_linear();
  check_linear_big();
  check_embedding();
  check_crossentropy();
  check_mse();
  check_dropout();
  if (failures) {
    printf("nn_check: %d FAILED\n", failures);
    return 1;
  }
  printf("nn_check: all passed\n");
  return 0;
}
