/*
 * lnn.c -- the layer kernels (c/rnn.c, c/nn.c) as functions on tensors, for
 * the Lua layers in lua/bptt/ (bptt.core.rnn_forward, ...).
 *
 * These are the library's internal entry points: the Lua layers check what
 * users pass and phrase those errors; the checks here make sure that no call,
 * however wrong, reaches a kernel with a buffer of the wrong dtype, layout or
 * size.  Every tensor must be contiguous and of one real dtype; optional ones
 * may be nil.  Nothing here allocates: buffers belong to the layer objects.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lbptt.h"
#include "nn.h"
#include "rnn.h"

/* bptt_checkarg's tensor's data, or NULL for nil when optional */
static void *arg(lua_State *L, int idx, const char *fn, const char *name, int dt, int optional, int ndim,
                 const int64_t *sz) {
  bptt_tensor *t = bptt_checkarg(L, idx, fn, name, dt, optional, ndim, sz);
  return t ? bptt_tensor_data(t) : NULL;
}

static void *arg1(lua_State *L, int idx, const char *fn, const char *name, int dt, int opt, int64_t a) {
  int64_t s[1];
  s[0] = a;
  return arg(L, idx, fn, name, dt, opt, 1, s);
}
static void *arg2(lua_State *L, int idx, const char *fn, const char *name, int dt, int opt, int64_t a, int64_t b) {
  int64_t s[2];
  s[0] = a, s[1] = b;
  return arg(L, idx, fn, name, dt, opt, 2, s);
}
static void *arg3(lua_State *L, int idx, const char *fn, const char *name, int dt, int opt, int64_t a, int64_t b,
                  int64_t c) {
  int64_t s[3];
  s[0] = a, s[1] = b, s[2] = c;
  return arg(L, idx, fn, name, dt, opt, 3, s);
}

/* Any shape with n elements (elementwise kernels). */
static void *argn(lua_State *L, int idx, const char *fn, const char *name, int dt, int64_t n) {
  bptt_tensor *t = bptt_checktensor(L, idx, fn, name);
  if (t->dtype != dt)
    luaL_error(L, "%s: %s must be %s, got %s", fn, name, bptt_dtype_name(dt), bptt_dtype_name(t->dtype));
  if (bptt_tensor_numel(t) != n)
    bptt_error(L, "%s: %s must have %lld elements, got %lld", fn, name, (long long)n, (long long)bptt_tensor_numel(t));
  if (!bptt_tensor_is_contiguous(t)) luaL_error(L, "%s: %s must be contiguous", fn, name);
  return bptt_tensor_data(t);
}

static int real_dtype(lua_State *L, int idx, const char *fn, const char *name) {
  bptt_tensor *t = bptt_checktensor(L, idx, fn, name);
  if (t->dtype != BPTT_FLOAT32 && t->dtype != BPTT_FLOAT64)
    luaL_error(L, "%s: %s must be float32 or float64, got %s", fn, name, bptt_dtype_name(t->dtype));
  return t->dtype;
}

static int check_cell(lua_State *L, int idx, const char *fn) {
  const char *name = luaL_checkstring(L, idx);
  int cell = bptt_cell_from_name(name);
  if (cell < 0) luaL_error(L, "%s: cell must be \"tanh\", \"relu\", \"lstm\" or \"gru\", got \"%s\"", fn, name);
  return cell;
}

static void check_kernel(lua_State *L, int err, const char *fn) {
  if (err) luaL_error(L, "%s: %s", fn, bptt_strerror(err));
}

/* ------------------------------------------------------------------ RNN */

/* rnn_sizes(cell, T, B, D, H [, checkpoint [, flow]]) -> cache elements,
 * scratch elements, flow work elements (float64) */
static int l_rnn_sizes(lua_State *L) {
  const char *fn = "bptt.core.rnn_sizes";
  bptt_rnn_dims d;
  bptt_rnn_opts o;
  double one = 0;
  int64_t c, s, f;
  d.cell = (bptt_cell)check_cell(L, 1, fn);
  d.T = bptt_checkint(L, 2, fn, "T", 1, INT64_MAX);
  d.B = bptt_checkint(L, 3, fn, "B", 1, INT64_MAX);
  d.D = bptt_checkint(L, 4, fn, "D", 1, INT64_MAX);
  d.H = bptt_checkint(L, 5, fn, "H", 1, INT64_MAX);
  memset(&o, 0, sizeof o);
  o.checkpoint = lua_isnoneornil(L, 6) ? 0 : bptt_checkint(L, 6, fn, "checkpoint", 0, INT64_MAX);
  if (lua_toboolean(L, 7)) o.flow_dh = &one; /* only tells that flow is on */
  check_kernel(L, bptt_rnn_numel_ex(&d, &o, &c, &s, &f), fn);
  lua_pushnumber(L, (lua_Number)c);
  lua_pushnumber(L, (lua_Number)s);
  lua_pushnumber(L, (lua_Number)f);
  return 3;
}

/* The flow arguments of rnn_backward at idx..idx+4: flow_dh?, flow_dc?,
 * flow_dW? (float64 T x n, column col written), flow_work, col.  Fills o;
 * nothing when flow_dh is nil. */
static void rnn_flow_args(lua_State *L, int idx, const char *fn, const bptt_rnn_dims *d, bptt_rnn_opts *o) {
  static const char *const names[3] = { "flow_dh", "flow_dc", "flow_dW" };
  double *p[3] = { NULL, NULL, NULL };
  int64_t col, n = 0, fn_work;
  int k;
  if (lua_isnoneornil(L, idx)) return;
  for (k = 0; k < 3; k++) {
    bptt_tensor *t;
    if (k && lua_isnoneornil(L, idx + k)) continue;
    t = bptt_checktensor(L, idx + k, fn, names[k]);
    if (t->dtype != BPTT_FLOAT64 || t->ndim != 2 || t->size[0] != d->T || !bptt_tensor_is_contiguous(t) ||
        (n && t->size[1] != n))
      luaL_error(L, "%s: %s must be a contiguous float64 tensor of T = %lld rows (and as many columns as flow_dh)", fn,
                 names[k], (long long)d->T);
    n = t->size[1];
    p[k] = bptt_tensor_data(t);
  }
  o->flow_dh = p[0], o->flow_dc = p[1], o->flow_dW = p[2], o->flow_ld = n;
  col = bptt_checkint(L, idx + 4, fn, "col", 1, n);
  for (k = 0; k < 3; k++)
    if (p[k]) p[k] += col - 1;
  o->flow_dh = p[0], o->flow_dc = p[1], o->flow_dW = p[2];
  check_kernel(L, bptt_rnn_numel_ex(d, o, NULL, NULL, &fn_work), fn);
  o->flow_work = arg1(L, idx + 3, fn, "flow_work", BPTT_FLOAT64, 0, fn_work);
}

/* Reads the dims from x (T,B,D) and w_hh (G*H,H); checks everything else. */
static void rnn_dims(lua_State *L, const char *fn, int cell, int ix, int iw_hh, bptt_rnn_dims *d, int *dt) {
  bptt_tensor *x, *w;
  int G = bptt_cell_gates((bptt_cell)cell);
  *dt = real_dtype(L, ix, fn, "x");
  x = bptt_checktensor(L, ix, fn, "x");
  w = bptt_checktensor(L, iw_hh, fn, "w_hh");
  if (x->ndim != 3) luaL_error(L, "%s: x must be 3-d (T x B x D), got %d-d", fn, x->ndim);
  if (w->ndim != 2 || w->size[0] != G * w->size[1]) luaL_error(L, "%s: w_hh must be %dH x H", fn, G);
  d->cell = (bptt_cell)cell;
  d->T = x->size[0], d->B = x->size[1], d->D = x->size[2], d->H = w->size[1];
  check_kernel(L, bptt_rnn_check_dims(d), fn);
}

/* The sequence options at idx, idx+1, idx+2: reverse (boolean or nil),
 * batch_sizes (int32 (T) or nil), reset (int32 (T, B) or nil). */
static void seq_args(lua_State *L, int idx, const char *fn, const bptt_rnn_dims *d, bptt_rnn_seq *sq) {
  int64_t t;
  sq->reverse = lua_toboolean(L, idx);
  sq->batch_sizes = arg1(L, idx + 1, fn, "batch_sizes", BPTT_INT32, 1, d->T);
  sq->reset = arg2(L, idx + 2, fn, "reset", BPTT_INT32, 1, d->T, d->B);
  for (t = 0; sq->batch_sizes && t < d->T; t++)
    if (sq->batch_sizes[t] < 0 || sq->batch_sizes[t] > (t ? sq->batch_sizes[t - 1] : d->B) ||
        (t == 0 && sq->batch_sizes[0] != d->B))
      luaL_error(L, "%s: batch_sizes must start at B = %d and not grow, got %d at step %d", fn, (int)d->B,
                 (int)sq->batch_sizes[t], (int)t + 1);
}

/* rnn_forward(cell, w_ih, w_hh, b_ih?, b_hh?, x, h0?, c0?, y, hT?, cT?, cache?,
 *             reverse?, batch_sizes?, reset? [, checkpoint, scratch?]) */
static int l_rnn_forward(lua_State *L) {
  const char *fn = "bptt.core.rnn_forward";
  bptt_rnn_seq sq;
  bptt_rnn_dims d;
  bptt_rnn_opts o;
  int dt, cell = check_cell(L, 1, fn), lstm;
  int64_t G, H, B, cn, sn;
  void *w_ih, *w_hh, *b_ih, *b_hh, *x, *h0, *c0, *y, *hT, *cT, *cache, *scratch = NULL;
  rnn_dims(L, fn, cell, 6, 3, &d, &dt);
  G = bptt_cell_gates((bptt_cell)cell), H = d.H, B = d.B, lstm = cell == BPTT_CELL_LSTM;
  memset(&o, 0, sizeof o);
  o.checkpoint = lua_isnoneornil(L, 16) ? 0 : bptt_checkint(L, 16, fn, "checkpoint", 0, INT64_MAX);
  o.seq = &sq;
  check_kernel(L, bptt_rnn_numel_ex(&d, &o, &cn, &sn, NULL), fn);
  if (o.checkpoint) scratch = arg1(L, 17, fn, "scratch", dt, 0, sn);
  w_ih = arg2(L, 2, fn, "w_ih", dt, 0, G * H, d.D);
  w_hh = arg2(L, 3, fn, "w_hh", dt, 0, G * H, H);
  b_ih = arg1(L, 4, fn, "b_ih", dt, 1, G * H);
  b_hh = arg1(L, 5, fn, "b_hh", dt, 1, G * H);
  if ((b_ih == NULL) != (b_hh == NULL)) luaL_error(L, "%s: b_ih and b_hh must both be given or both be nil", fn);
  x = arg3(L, 6, fn, "x", dt, 0, d.T, B, d.D);
  h0 = arg2(L, 7, fn, "h0", dt, 1, B, H);
  c0 = lstm ? arg2(L, 8, fn, "c0", dt, 1, B, H) : NULL;
  y = arg3(L, 9, fn, "y", dt, 0, d.T, B, H);
  hT = arg2(L, 10, fn, "hT", dt, 1, B, H);
  cT = lstm ? arg2(L, 11, fn, "cT", dt, 1, B, H) : NULL;
  cache = cn ? arg1(L, 12, fn, "cache", dt, 0, cn) : NULL;
  seq_args(L, 13, fn, &d, &sq);
  if (dt == BPTT_FLOAT32)
    check_kernel(L, bptt_rnn_forward_ex_f32(&d, &o, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, hT, cT, cache, scratch), fn);
  else
    check_kernel(L, bptt_rnn_forward_ex_f64(&d, &o, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, hT, cT, cache, scratch), fn);
  return 0;
}

/* rnn_backward(cell, w_ih, w_hh, x, h0?, c0?, y, cache?, dy?, dhT?, dcT?,
 *              dx?, dh0?, dc0?, dw_ih, dw_hh, db_ih?, db_hh?, scratch,
 *              reverse?, batch_sizes?, reset?
 *              [, flow_dh?, flow_dc?, flow_dW?, flow_work?, col?,
 *               checkpoint?, b_ih?, b_hh?]) */
static int l_rnn_backward(lua_State *L) {
  const char *fn = "bptt.core.rnn_backward";
  bptt_rnn_seq sq;
  bptt_rnn_dims d;
  bptt_rnn_opts o;
  int dt, cell = check_cell(L, 1, fn), lstm;
  int64_t G, H, B, cn, sn;
  void *w_ih, *w_hh, *x, *h0, *c0, *y, *cache, *dy, *dhT, *dcT, *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh,
      *scratch;
  void *b_ih, *b_hh;
  rnn_dims(L, fn, cell, 4, 3, &d, &dt);
  G = bptt_cell_gates((bptt_cell)cell), H = d.H, B = d.B, lstm = cell == BPTT_CELL_LSTM;
  memset(&o, 0, sizeof o);
  o.checkpoint = lua_isnoneornil(L, 28) ? 0 : bptt_checkint(L, 28, fn, "checkpoint", 0, INT64_MAX);
  o.seq = &sq;
  check_kernel(L, bptt_rnn_numel_ex(&d, &o, &cn, &sn, NULL), fn);
  b_ih = arg1(L, 29, fn, "b_ih", dt, 1, G * H);
  b_hh = arg1(L, 30, fn, "b_hh", dt, 1, G * H);
  w_ih = arg2(L, 2, fn, "w_ih", dt, 0, G * H, d.D);
  w_hh = arg2(L, 3, fn, "w_hh", dt, 0, G * H, H);
  x = arg3(L, 4, fn, "x", dt, 0, d.T, B, d.D);
  h0 = arg2(L, 5, fn, "h0", dt, 1, B, H);
  c0 = lstm ? arg2(L, 6, fn, "c0", dt, 1, B, H) : NULL;
  y = arg3(L, 7, fn, "y", dt, 0, d.T, B, H);
  cache = cn ? arg1(L, 8, fn, "cache", dt, 0, cn) : NULL;
  dy = arg3(L, 9, fn, "dy", dt, 1, d.T, B, H);
  dhT = arg2(L, 10, fn, "dhT", dt, 1, B, H);
  dcT = lstm ? arg2(L, 11, fn, "dcT", dt, 1, B, H) : NULL;
  dx = arg3(L, 12, fn, "dx", dt, 1, d.T, B, d.D);
  dh0 = arg2(L, 13, fn, "dh0", dt, 1, B, H);
  dc0 = lstm ? arg2(L, 14, fn, "dc0", dt, 1, B, H) : NULL;
  dw_ih = arg2(L, 15, fn, "dw_ih", dt, 0, G * H, d.D);
  dw_hh = arg2(L, 16, fn, "dw_hh", dt, 0, G * H, H);
  db_ih = arg1(L, 17, fn, "db_ih", dt, 1, G * H);
  db_hh = arg1(L, 18, fn, "db_hh", dt, 1, G * H);
  scratch = arg1(L, 19, fn, "scratch", dt, 0, sn);
  seq_args(L, 20, fn, &d, &sq);
  rnn_flow_args(L, 23, fn, &d, &o);
  if (dt == BPTT_FLOAT32)
    check_kernel(L,
                 bptt_rnn_backward_ex_f32(&d, &o, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, cache, dy, dhT, dcT, dx, dh0,
                                          dc0, dw_ih, dw_hh, db_ih, db_hh, scratch),
                 fn);
  else
    check_kernel(L,
                 bptt_rnn_backward_ex_f64(&d, &o, w_ih, w_hh, b_ih, b_hh, x, h0, c0, y, cache, dy, dhT, dcT, dx, dh0,
                                          dc0, dw_ih, dw_hh, db_ih, db_hh, scratch),
                 fn);
  return 0;
}

/* rnn_jvp / rnn_vjp(cell, w_hh, h0?, c0?, y, cache?, t0, t1, vh, vc?, work):
 * the state map's Jacobians over the steps [t0, t1) (0-based), in place on
 * vh (B, H) and vc (lstm); work B*G*H + B*H (c/core/rnn.h) */
static int rnn_jac(lua_State *L, int vjp) {
  const char *fn = vjp ? "bptt.core.rnn_vjp" : "bptt.core.rnn_jvp";
  bptt_rnn_dims d;
  int dt, cell = check_cell(L, 1, fn), lstm = cell == BPTT_CELL_LSTM;
  int64_t G = bptt_cell_gates((bptt_cell)cell), H, B, T, cn, t0, t1;
  bptt_tensor *y = bptt_checktensor(L, 5, fn, "y"), *w = bptt_checktensor(L, 2, fn, "w_hh");
  void *w_hh, *h0, *c0, *yp, *cache, *vh, *vc, *work;
  dt = real_dtype(L, 5, fn, "y");
  if (y->ndim != 3 || w->ndim != 2) luaL_error(L, "%s: y must be T x B x H and w_hh 2-d", fn);
  T = y->size[0], B = y->size[1], H = y->size[2];
  d.cell = (bptt_cell)cell, d.T = T, d.B = B, d.D = 1, d.H = H;
  check_kernel(L, bptt_rnn_cache_numel(&d, &cn), fn);
  w_hh = arg2(L, 2, fn, "w_hh", dt, 0, G * H, H);
  h0 = arg2(L, 3, fn, "h0", dt, 1, B, H);
  c0 = lstm ? arg2(L, 4, fn, "c0", dt, 1, B, H) : NULL;
  yp = arg3(L, 5, fn, "y", dt, 0, T, B, H);
  cache = cn ? arg1(L, 6, fn, "cache", dt, 0, cn) : NULL;
  t0 = bptt_checkint(L, 7, fn, "t0", 0, T);
  t1 = bptt_checkint(L, 8, fn, "t1", t0, T);
  vh = arg2(L, 9, fn, "vh", dt, 0, B, H);
  vc = lstm ? arg2(L, 10, fn, "vc", dt, 0, B, H) : NULL;
  work = arg1(L, 11, fn, "work", dt, 0, B * G * H + B * H);
  if (dt == BPTT_FLOAT32)
    check_kernel(L, (vjp ? bptt_rnn_vjp_f32 : bptt_rnn_jvp_f32)(&d, w_hh, h0, c0, yp, cache, t0, t1, vh, vc, work), fn);
  else
    check_kernel(L, (vjp ? bptt_rnn_vjp_f64 : bptt_rnn_jvp_f64)(&d, w_hh, h0, c0, yp, cache, t0, t1, vh, vc, work), fn);
  return 0;
}
static int l_rnn_jvp(lua_State *L) { return rnn_jac(L, 0); }
static int l_rnn_vjp(lua_State *L) { return rnn_jac(L, 1); }

/* rnn_jacobian_exact(cell, w_hh, y, t1, nlag, out (float64 nlag), work (float64 3*H*H)) */
static int l_rnn_jacobian_exact(lua_State *L) {
  const char *fn = "bptt.core.rnn_jacobian_exact";
  bptt_rnn_dims d;
  int dt, cell = check_cell(L, 1, fn);
  bptt_tensor *y = bptt_checktensor(L, 3, fn, "y");
  int64_t T, B, H, t1, nlag;
  void *w_hh, *yp;
  double *out, *work;
  dt = real_dtype(L, 3, fn, "y");
  if (y->ndim != 3) luaL_error(L, "%s: y must be T x B x H", fn);
  T = y->size[0], B = y->size[1], H = y->size[2];
  d.cell = (bptt_cell)cell, d.T = T, d.B = B, d.D = 1, d.H = H;
  w_hh = arg2(L, 2, fn, "w_hh", dt, 0, H, H);
  yp = arg3(L, 3, fn, "y", dt, 0, T, B, H);
  t1 = bptt_checkint(L, 4, fn, "t1", 1, T);
  nlag = bptt_checkint(L, 5, fn, "nlag", 1, t1);
  out = arg1(L, 6, fn, "out", BPTT_FLOAT64, 0, nlag);
  work = arg1(L, 7, fn, "work", BPTT_FLOAT64, 0, 3 * H * H);
  if (dt == BPTT_FLOAT32)
    check_kernel(L, bptt_rnn_jacobian_exact_f32(&d, w_hh, yp, t1, nlag, out, work), fn);
  else
    check_kernel(L, bptt_rnn_jacobian_exact_f64(&d, w_hh, yp, t1, nlag, out, work), fn);
  return 0;
}

/* Checks a contiguous float tensor at idx of 2 or 3 dims (T x B x F, or
 * rows x F); returns it. */
static bptt_tensor *rows_arg(lua_State *L, int idx, const char *fn, const char *name) {
  bptt_tensor *t = bptt_checktensor(L, idx, fn, name);
  real_dtype(L, idx, fn, name);
  if (t->ndim < 2 || t->ndim > 3) luaL_error(L, "%s: %s must be 2-d or 3-d, got %d-d", fn, name, t->ndim);
  if (!bptt_tensor_is_contiguous(t)) luaL_error(L, "%s: %s must be contiguous", fn, name);
  return t;
}

static int same_shape(const bptt_tensor *a, const bptt_tensor *b) {
  int k;
  if (a->ndim != b->ndim || a->dtype != b->dtype) return 0;
  for (k = 0; k < a->ndim; k++)
    if (a->size[k] != b->size[k]) return 0;
  return 1;
}

/* rnn_permute(src (T,B,F), dst (T,B,F), perm (B) int32 0-based, scatter):
 * dst[t][b] = src[t][perm[b]], or dst[t][perm[b]] = src[t][b] */
static int l_rnn_permute(lua_State *L) {
  const char *fn = "bptt.core.rnn_permute";
  bptt_tensor *src = rows_arg(L, 1, fn, "src"), *dst = rows_arg(L, 2, fn, "dst");
  int64_t T, B, F, b;
  const int32_t *perm;
  if (src->ndim != 3 || !same_shape(src, dst)) luaL_error(L, "%s: src and dst must be T x B x F alike", fn);
  if (bptt_tensor_data(src) == bptt_tensor_data(dst)) luaL_error(L, "%s: src and dst must differ", fn);
  T = src->size[0], B = src->size[1], F = src->size[2];
  perm = arg1(L, 3, fn, "perm", BPTT_INT32, 0, B);
  for (b = 0; b < B; b++)
    if (perm[b] < 0 || perm[b] >= B)
      luaL_error(L, "%s: perm[%d] = %d is not a row in 0..%d", fn, (int)b + 1, (int)perm[b], (int)B - 1);
  bptt_rnn_permute_rows(bptt_tensor_data(src), bptt_tensor_data(dst), T, B,
                        F * (int64_t)bptt_dtype_size((bptt_dtype)src->dtype), perm, lua_toboolean(L, 4));
  return 0;
}

/* rnn_join(a (..., H), b (..., H), out (..., 2H)) and rnn_split(out, a, b):
 * out's rows are a's | b's */
static int join_split(lua_State *L, int split) {
  const char *fn = split ? "bptt.core.rnn_split" : "bptt.core.rnn_join";
  bptt_tensor *o = rows_arg(L, split ? 1 : 3, fn, "out");
  bptt_tensor *a = rows_arg(L, split ? 2 : 1, fn, "a"), *b = rows_arg(L, split ? 3 : 2, fn, "b");
  int64_t n = bptt_tensor_numel(a), H = a->size[a->ndim - 1];
  if (!same_shape(a, b) || o->dtype != a->dtype || o->ndim != a->ndim || bptt_tensor_numel(o) != 2 * n ||
      o->size[o->ndim - 1] != 2 * H)
    luaL_error(L, "%s: a and b must be alike, out their concatenation along the last dimension", fn);
  if (split)
    bptt_rnn_split_rows(bptt_tensor_data(o), bptt_tensor_data(a), bptt_tensor_data(b), n / H,
                        H * (int64_t)bptt_dtype_size((bptt_dtype)a->dtype));
  else
    bptt_rnn_join_rows(bptt_tensor_data(a), bptt_tensor_data(b), bptt_tensor_data(o), n / H,
                       H * (int64_t)bptt_dtype_size((bptt_dtype)a->dtype));
  return 0;
}
static int l_rnn_join(lua_State *L) { return join_split(L, 0); }
static int l_rnn_split(lua_State *L) { return join_split(L, 1); }

/* --------------------------------------------------------------- Linear */

/* linear_forward(x (N,In), W (Out,In), b?, y (N,Out)) */
static int l_linear_forward(lua_State *L) {
  const char *fn = "bptt.core.linear_forward";
  int dt = real_dtype(L, 1, fn, "x");
  bptt_tensor *x = bptt_checktensor(L, 1, fn, "x"), *W = bptt_checktensor(L, 2, fn, "W");
  int64_t N, In, Out;
  void *px, *pW, *pb, *py;
  if (x->ndim != 2 || W->ndim != 2) luaL_error(L, "%s: x and W must be 2-d", fn);
  N = x->size[0], In = x->size[1], Out = W->size[0];
  px = arg2(L, 1, fn, "x", dt, 0, N, In);
  pW = arg2(L, 2, fn, "W", dt, 0, Out, In);
  pb = arg1(L, 3, fn, "b", dt, 1, Out);
  py = arg2(L, 4, fn, "y", dt, 0, N, Out);
  if (dt == BPTT_FLOAT32)
    check_kernel(L, bptt_linear_forward_f32(px, pW, pb, py, N, In, Out), fn);
  else
    check_kernel(L, bptt_linear_forward_f64(px, pW, pb, py, N, In, Out), fn);
  return 0;
}

/* linear_backward(x, W, dy (N,Out), dx?, dW?, db?) */
static int l_linear_backward(lua_State *L) {
  const char *fn = "bptt.core.linear_backward";
  int dt = real_dtype(L, 1, fn, "x");
  bptt_tensor *x = bptt_checktensor(L, 1, fn, "x"), *W = bptt_checktensor(L, 2, fn, "W");
  int64_t N, In, Out;
  void *px, *pW, *pdy, *pdx, *pdW, *pdb;
  if (x->ndim != 2 || W->ndim != 2) luaL_error(L, "%s: x and W must be 2-d", fn);
  N = x->size[0], In = x->size[1], Out = W->size[0];
  px = arg2(L, 1, fn, "x", dt, 0, N, In);
  pW = arg2(L, 2, fn, "W", dt, 0, Out, In);
  pdy = arg2(L, 3, fn, "dy", dt, 0, N, Out);
  pdx = arg2(L, 4, fn, "dx", dt, 1, N, In);
  pdW = arg2(L, 5, fn, "dW", dt, 1, Out, In);
  pdb = arg1(L, 6, fn, "db", dt, 1, Out);
  if (dt == BPTT_FLOAT32)
    check_kernel(L, bptt_linear_backward_f32(px, pW, pdy, pdx, pdW, pdb, N, In, Out), fn);
  else
    check_kernel(L, bptt_linear_backward_f64(px, pW, pdy, pdx, pdW, pdb, N, In, Out), fn);
  return 0;
}

/* ------------------------------------------------------------ Embedding */

/* embedding_forward(ids (N) int32, W (V,D), y (N,D)) -> nil, or the 1-based
 * position of the first id outside 1..V (nothing written then) */
static int embedding(lua_State *L, int backward) {
  const char *fn = backward ? "bptt.core.embedding_backward" : "bptt.core.embedding_forward";
  bptt_tensor *ids = bptt_checktensor(L, 1, fn, "ids"), *W;
  int dt = real_dtype(L, 2, fn, backward ? "dW" : "W"), err;
  int64_t N, V, D, bad = -1;
  void *pids, *pW, *py;
  if (ids->ndim != 1) luaL_error(L, "%s: ids must be 1-d", fn);
  W = bptt_checktensor(L, 2, fn, "W");
  if (W->ndim != 2) luaL_error(L, "%s: W must be 2-d", fn);
  N = ids->size[0], V = W->size[0], D = W->size[1];
  pids = arg1(L, 1, fn, "ids", BPTT_INT32, 0, N);
  pW = arg2(L, 2, fn, backward ? "dW" : "W", dt, 0, V, D);
  py = arg2(L, 3, fn, backward ? "dy" : "y", dt, 0, N, D);
  if (backward)
    err = dt == BPTT_FLOAT32 ? bptt_embedding_backward_f32(pids, py, pW, N, V, D, &bad)
                             : bptt_embedding_backward_f64(pids, py, pW, N, V, D, &bad);
  else
    err = dt == BPTT_FLOAT32 ? bptt_embedding_forward_f32(pids, pW, py, N, V, D, &bad)
                             : bptt_embedding_forward_f64(pids, pW, py, N, V, D, &bad);
  if (err == BPTT_ERANGE) {
    lua_pushnumber(L, (lua_Number)(bad + 1));
    return 1;
  }
  check_kernel(L, err, fn);
  return 0;
}

static int l_embedding_forward(lua_State *L) { return embedding(L, 0); }
/* embedding_backward(ids, dW, dy) */
static int l_embedding_backward(lua_State *L) { return embedding(L, 1); }

/* ---------------------------------------------------------------- losses */

static int check_reduction(lua_State *L, int idx, const char *fn) {
  const char *r = luaL_checkstring(L, idx);
  if (strcmp(r, "mean") == 0) return BPTT_LOSS_MEAN;
  if (strcmp(r, "sum") == 0) return BPTT_LOSS_SUM;
  return luaL_error(L, "%s: reduction must be \"mean\" or \"sum\", got \"%s\"", fn, r);
}

static int32_t check_ignore(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return BPTT_NO_IGNORE;
  return (int32_t)bptt_checkint(L, idx, fn, "ignore_index", INT32_MIN + 1, INT32_MAX);
}

/* ce_forward(logits (N,C), targets (N) int32, ignore?, reduction, cache (N,2))
 * -> loss, count   or   nil, bad position (1-based) */
static int l_ce_forward(lua_State *L) {
  const char *fn = "bptt.core.ce_forward";
  int dt = real_dtype(L, 1, fn, "logits"), red, err;
  bptt_tensor *lg = bptt_checktensor(L, 1, fn, "logits");
  int64_t N, C, count = 0, bad = -1;
  int32_t ignore;
  double loss = 0;
  void *px, *pt, *pc;
  if (lg->ndim != 2) luaL_error(L, "%s: logits must be 2-d", fn);
  N = lg->size[0], C = lg->size[1];
  px = arg2(L, 1, fn, "logits", dt, 0, N, C);
  pt = arg1(L, 2, fn, "targets", BPTT_INT32, 0, N);
  ignore = check_ignore(L, 3, fn);
  red = check_reduction(L, 4, fn);
  pc = arg2(L, 5, fn, "cache", dt, 0, N, 2);
  err = dt == BPTT_FLOAT32 ? bptt_crossentropy_forward_f32(px, pt, N, C, ignore, red, pc, &loss, &count, &bad)
                           : bptt_crossentropy_forward_f64(px, pt, N, C, ignore, red, pc, &loss, &count, &bad);
  if (err == BPTT_ERANGE) {
    lua_pushnil(L);
    lua_pushnumber(L, (lua_Number)(bad + 1));
    return 2;
  }
  check_kernel(L, err, fn);
  lua_pushnumber(L, loss);
  lua_pushnumber(L, (lua_Number)count);
  return 2;
}

/* ce_backward(logits, targets, ignore?, reduction, cache, gout, dlogits) */
static int l_ce_backward(lua_State *L) {
  const char *fn = "bptt.core.ce_backward";
  int dt = real_dtype(L, 1, fn, "logits"), red, err;
  bptt_tensor *lg = bptt_checktensor(L, 1, fn, "logits");
  int64_t N, C, bad = -1;
  int32_t ignore;
  double gout;
  void *px, *pt, *pc, *pd;
  if (lg->ndim != 2) luaL_error(L, "%s: logits must be 2-d", fn);
  N = lg->size[0], C = lg->size[1];
  px = arg2(L, 1, fn, "logits", dt, 0, N, C);
  pt = arg1(L, 2, fn, "targets", BPTT_INT32, 0, N);
  ignore = check_ignore(L, 3, fn);
  red = check_reduction(L, 4, fn);
  pc = arg2(L, 5, fn, "cache", dt, 0, N, 2);
  gout = luaL_checknumber(L, 6);
  pd = arg2(L, 7, fn, "dlogits", dt, 0, N, C);
  err = dt == BPTT_FLOAT32 ? bptt_crossentropy_backward_f32(px, pt, pc, N, C, ignore, red, gout, pd, &bad)
                           : bptt_crossentropy_backward_f64(px, pt, pc, N, C, ignore, red, gout, pd, &bad);
  check_kernel(L, err, fn);
  return 0;
}

/* ce_rows(logits (N,C), targets (N), ignore?, cache (N,2), losses (N)):
 * per-row losses after ce_forward filled the cache */
static int l_ce_rows(lua_State *L) {
  const char *fn = "bptt.core.ce_rows";
  int dt = real_dtype(L, 1, fn, "logits");
  bptt_tensor *lg = bptt_checktensor(L, 1, fn, "logits");
  int64_t N, C;
  int32_t ignore;
  void *px, *pt, *pc, *pl;
  if (lg->ndim != 2) luaL_error(L, "%s: logits must be 2-d", fn);
  N = lg->size[0], C = lg->size[1];
  px = arg2(L, 1, fn, "logits", dt, 0, N, C);
  pt = arg1(L, 2, fn, "targets", BPTT_INT32, 0, N);
  ignore = check_ignore(L, 3, fn);
  pc = arg2(L, 4, fn, "cache", dt, 0, N, 2);
  pl = arg1(L, 5, fn, "losses", dt, 0, N);
  check_kernel(L,
               dt == BPTT_FLOAT32 ? bptt_crossentropy_rows_f32(px, pt, pc, N, C, ignore, pl)
                                  : bptt_crossentropy_rows_f64(px, pt, pc, N, C, ignore, pl),
               fn);
  return 0;
}

/* ce_backward_rows(logits, targets, ignore?, cache, gout (N), dlogits) */
static int l_ce_backward_rows(lua_State *L) {
  const char *fn = "bptt.core.ce_backward_rows";
  int dt = real_dtype(L, 1, fn, "logits");
  bptt_tensor *lg = bptt_checktensor(L, 1, fn, "logits");
  int64_t N, C;
  int32_t ignore;
  void *px, *pt, *pc, *pg, *pd;
  if (lg->ndim != 2) luaL_error(L, "%s: logits must be 2-d", fn);
  N = lg->size[0], C = lg->size[1];
  px = arg2(L, 1, fn, "logits", dt, 0, N, C);
  pt = arg1(L, 2, fn, "targets", BPTT_INT32, 0, N);
  ignore = check_ignore(L, 3, fn);
  pc = arg2(L, 4, fn, "cache", dt, 0, N, 2);
  pg = arg1(L, 5, fn, "gout", dt, 0, N);
  pd = arg2(L, 6, fn, "dlogits", dt, 0, N, C);
  check_kernel(L,
               dt == BPTT_FLOAT32 ? bptt_crossentropy_backward_rows_f32(px, pt, pc, N, C, ignore, pg, pd)
                                  : bptt_crossentropy_backward_rows_f64(px, pt, pc, N, C, ignore, pg, pd),
               fn);
  return 0;
}

/* mse_forward(pred (n), target (n), reduction) -> loss */
static int l_mse_forward(lua_State *L) {
  const char *fn = "bptt.core.mse_forward";
  int dt = real_dtype(L, 1, fn, "pred"), red;
  int64_t n = bptt_tensor_numel(bptt_checktensor(L, 1, fn, "pred"));
  double loss = 0;
  void *pp = argn(L, 1, fn, "pred", dt, n), *pt = argn(L, 2, fn, "target", dt, n);
  red = check_reduction(L, 3, fn);
  check_kernel(
      L, dt == BPTT_FLOAT32 ? bptt_mse_forward_f32(pp, pt, n, red, &loss) : bptt_mse_forward_f64(pp, pt, n, red, &loss),
      fn);
  lua_pushnumber(L, loss);
  return 1;
}

/* mse_backward(pred, target, reduction, gout, dpred) */
static int l_mse_backward(lua_State *L) {
  const char *fn = "bptt.core.mse_backward";
  int dt = real_dtype(L, 1, fn, "pred"), red;
  int64_t n = bptt_tensor_numel(bptt_checktensor(L, 1, fn, "pred"));
  void *pp = argn(L, 1, fn, "pred", dt, n), *pt = argn(L, 2, fn, "target", dt, n), *pd;
  double gout;
  red = check_reduction(L, 3, fn);
  gout = luaL_checknumber(L, 4);
  pd = argn(L, 5, fn, "dpred", dt, n);
  check_kernel(L,
               dt == BPTT_FLOAT32 ? bptt_mse_backward_f32(pp, pt, n, red, gout, pd)
                                  : bptt_mse_backward_f64(pp, pt, n, red, gout, pd),
               fn);
  return 0;
}

/* --------------------------------------------------------------- dropout */

/* dropout_apply(x (n), mask (n, uniforms in, mask out), y (n), p) */
static int l_dropout_apply(lua_State *L) {
  const char *fn = "bptt.core.dropout_apply";
  int dt = real_dtype(L, 1, fn, "x");
  int64_t n = bptt_tensor_numel(bptt_checktensor(L, 1, fn, "x"));
  void *px = argn(L, 1, fn, "x", dt, n), *pm = argn(L, 2, fn, "mask", dt, n), *py = argn(L, 3, fn, "y", dt, n);
  double p = luaL_checknumber(L, 4);
  if (pm == px || pm == py) luaL_error(L, "%s: mask must not be x or y", fn);
  check_kernel(
      L, dt == BPTT_FLOAT32 ? bptt_dropout_apply_f32(px, pm, py, n, p) : bptt_dropout_apply_f64(px, pm, py, n, p), fn);
  return 0;
}

/* dropout_backward(dy (n), mask (n), dx (n)) */
static int l_dropout_backward(lua_State *L) {
  const char *fn = "bptt.core.dropout_backward";
  int dt = real_dtype(L, 1, fn, "dy");
  int64_t n = bptt_tensor_numel(bptt_checktensor(L, 1, fn, "dy"));
  void *pdy = argn(L, 1, fn, "dy", dt, n), *pm = argn(L, 2, fn, "mask", dt, n), *pdx = argn(L, 3, fn, "dx", dt, n);
  check_kernel(
      L, dt == BPTT_FLOAT32 ? bptt_dropout_backward_f32(pdy, pm, pdx, n) : bptt_dropout_backward_f64(pdy, pm, pdx, n),
      fn);
  return 0;
}

/* ---------------------------------------------------------------- indices */

/* to_index(src, dst int32): copies class ids / token ids given as int32 or
 * as floats holding whole numbers into dst (same numel, contiguous).  Returns
 * nil, or the 1-based flat position of the first value that is not a whole
 * number in int32's range (nothing written then). */
static int l_to_index(lua_State *L) {
  const char *fn = "bptt.core.to_index";
  bptt_tensor *src = bptt_checktensor(L, 1, fn, "src");
  int64_t n = bptt_tensor_numel(src), i, off, idx[BPTT_MAXDIM] = { 0 };
  int32_t *dst = arg1(L, 2, fn, "dst", BPTT_INT32, 0, n);
  int d, pass;
  for (pass = 0; pass < 2; pass++) { /* check everything, then write */
    memset(idx, 0, sizeof idx);
    off = src->offset;
    for (i = 0; i < n; i++) {
      double v = bptt_tensor_get(src, off);
      if (pass == 0 && !(v > -2147483649.0 && v < 2147483648.0 && v == floor(v))) {
        lua_pushnumber(L, (lua_Number)(i + 1));
        return 1;
      }
      if (pass == 1) dst[i] = (int32_t)v;
      for (d = src->ndim - 1; d >= 0; d--) {
        off += src->stride[d];
        if (++idx[d] < src->size[d]) break;
        off -= src->stride[d] * src->size[d];
        idx[d] = 0;
      }
    }
  }
  return 0;
}

/* Visits the n elements of mask (any dtype, any layout) in row-major order:
 * where[i] = mask element i != 0.  Returns the count of nonzeros. */
static int64_t mask_walk(const bptt_tensor *m, int64_t n, void (*put)(void *, int64_t, int), void *ctx) {
  int64_t i, off = m->offset, idx[BPTT_MAXDIM] = { 0 }, count = 0;
  int d;
  for (i = 0; i < n; i++) {
    int on = bptt_tensor_get(m, off) != 0;
    count += on;
    put(ctx, i, on);
    for (d = m->ndim - 1; d >= 0; d--) {
      off += m->stride[d];
      if (++idx[d] < m->size[d]) break;
      off -= m->stride[d] * m->size[d];
      idx[d] = 0;
    }
  }
  return count;
}

typedef struct {
  const int32_t *t;
  int32_t *out, ig;
} target_mask;

static void put_target(void *ctx, int64_t i, int on) {
  target_mask *c = ctx;
  c->out[i] = on ? c->t[i] : c->ig;
}

/* mask_targets(t (n) int32, mask (n elements, any dtype), ig, out (n) int32)
 * -> count: out = t where mask != 0, else ig (the ignored value) */
static int l_mask_targets(lua_State *L) {
  const char *fn = "bptt.core.mask_targets";
  bptt_tensor *t = bptt_checktensor(L, 1, fn, "t"), *m = bptt_checktensor(L, 2, fn, "mask");
  int64_t n = bptt_tensor_numel(t);
  target_mask c;
  c.t = arg1(L, 1, fn, "t", BPTT_INT32, 0, n);
  if (bptt_tensor_numel(m) != n) luaL_error(L, "%s: mask must have %lld elements", fn, (long long)n);
  c.ig = (int32_t)bptt_checkint(L, 3, fn, "ig", INT32_MIN, INT32_MAX);
  c.out = arg1(L, 4, fn, "out", BPTT_INT32, 0, n);
  lua_pushnumber(L, (lua_Number)mask_walk(m, n, put_target, &c));
  return 1;
}

typedef struct {
  void *out;
  int dt;
  int64_t F;
} weight_mask;

static void put_weight(void *ctx, int64_t i, int on) {
  weight_mask *c = ctx;
  int64_t j;
  for (j = 0; j < c->F; j++) {
    if (c->dt == BPTT_FLOAT32)
      ((float *)c->out)[i * c->F + j] = on ? 1.0f : 0.0f;
    else
      ((double *)c->out)[i * c->F + j] = on ? 1.0 : 0.0;
  }
}

/* mask_weights(mask (n elements, any dtype), F, out (n*F) float) -> count:
 * out[i*F + j] = mask element i != 0 (1 or 0) */
static int l_mask_weights(lua_State *L) {
  const char *fn = "bptt.core.mask_weights";
  bptt_tensor *m = bptt_checktensor(L, 1, fn, "mask");
  int64_t n = bptt_tensor_numel(m);
  weight_mask c;
  c.F = bptt_checkint(L, 2, fn, "F", 1, INT32_MAX);
  c.dt = real_dtype(L, 3, fn, "out");
  c.out = arg1(L, 3, fn, "out", c.dt, 0, n * c.F);
  lua_pushnumber(L, (lua_Number)mask_walk(m, n, put_weight, &c));
  return 1;
}

static const luaL_Reg functions[] = { { "rnn_sizes", l_rnn_sizes },
                                      { "mask_targets", l_mask_targets },
                                      { "mask_weights", l_mask_weights },
                                      { "to_index", l_to_index },
                                      { "rnn_forward", l_rnn_forward },
                                      { "rnn_backward", l_rnn_backward },
                                      { "rnn_permute", l_rnn_permute },
                                      { "rnn_join", l_rnn_join },
                                      { "rnn_split", l_rnn_split },
                                      { "rnn_jvp", l_rnn_jvp },
                                      { "rnn_vjp", l_rnn_vjp },
                                      { "rnn_jacobian_exact", l_rnn_jacobian_exact },
                                      { "linear_forward", l_linear_forward },
                                      { "linear_backward", l_linear_backward },
                                      { "embedding_forward", l_embedding_forward },
                                      { "embedding_backward", l_embedding_backward },
                                      { "ce_forward", l_ce_forward },
                                      { "ce_backward", l_ce_backward },
                                      { "ce_rows", l_ce_rows },
                                      { "ce_backward_rows", l_ce_backward_rows },
                                      { "mse_forward", l_mse_forward },
                                      { "mse_backward", l_mse_backward },
                                      { "dropout_apply", l_dropout_apply },
                                      { "dropout_backward", l_dropout_backward },
                                      { NULL, NULL } };

void bptt_open_nn(lua_State *L) { bptt_setfuncs(L, functions, 0); }
