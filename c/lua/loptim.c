/*
 * loptim.c -- the optimizer and clipping kernels (c/optim.c) as functions on
 * tensors, for lua/bptt/optim.lua and lua/bptt/clip.lua:
 *
 *   optim_sgd(p, g, buf?, init_buf, lr, momentum, dampening, weight_decay, nesterov)
 *   optim_adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq?, t, lr, beta1, beta2, eps,
 *              weight_decay, decoupled)
 *   optim_adagrad(p, g, sum, t, lr, lr_decay, weight_decay, eps)
 *   optim_rmsprop(p, g, square_avg, grad_avg?, momentum_buffer?, lr, alpha, eps,
 *                 weight_decay, momentum)
 *   optim_grad_norm(g, p [, scale]) -> sum |g/scale|^p (0 for p = inf), max |g|
 *   optim_grad_scale(g, s), optim_grad_clamp(g, v)
 *   optim_overlap(a, b) -> true when the two tensors share some element
 *
 * These are internal entry points: the Lua side checks what users pass and
 * phrases those errors.  The checks here make sure no call reaches a kernel
 * with a buffer of the wrong dtype, layout or size, or with two buffers that
 * overlap.  p (or g) fixes the dtype and the element count n; every other
 * buffer must be a contiguous tensor of that dtype with n elements, any shape.
 */
#include <stdio.h>

#include "lbptt.h"
#include "optim.h"

#define MAXBUF 5

typedef struct {
  const bptt_tensor *t[MAXBUF];
  const char *name[MAXBUF];
  int k;
  int dtype;
  int64_t n;
} bufset;

/* Contiguous tensors a and b share bytes: same storage and intersecting
 * byte ranges [offset, offset + numel) * element size. */
static int overlap(const bptt_tensor *a, const bptt_tensor *b) {
  int64_t sa = (int64_t)bptt_dtype_size((bptt_dtype)a->dtype), sb = (int64_t)bptt_dtype_size((bptt_dtype)b->dtype);
  int64_t a0 = a->offset * sa, a1 = a0 + bptt_tensor_numel(a) * sa;
  int64_t b0 = b->offset * sb, b1 = b0 + bptt_tensor_numel(b) * sb;
  if (a->storage != b->storage || a0 == a1 || b0 == b1) return 0;
  return a0 < b1 && b0 < a1;
}

/* The buffer at idx (NULL for nil when optional), checked against the set's
 * dtype and size and against every buffer already in the set. */
static void *buffer(lua_State *L, bufset *s, int idx, const char *fn, const char *name, int optional) {
  bptt_tensor *t;
  int i;
  if (optional && lua_isnoneornil(L, idx)) return NULL;
  t = bptt_checktensor(L, idx, fn, name);
  if (s->k == 0) {
    if (t->dtype != BPTT_FLOAT32 && t->dtype != BPTT_FLOAT64)
      luaL_error(L, "%s: %s must be float32 or float64, got %s", fn, name, bptt_dtype_name(t->dtype));
    s->dtype = t->dtype, s->n = bptt_tensor_numel(t);
  }
  if (t->dtype != s->dtype)
    luaL_error(L, "%s: %s must be %s like %s, got %s", fn, name, bptt_dtype_name(s->dtype), s->name[0],
               bptt_dtype_name(t->dtype));
  if (bptt_tensor_numel(t) != s->n) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%lld", (long long)s->n);
    snprintf(b, sizeof b, "%lld", (long long)bptt_tensor_numel(t));
    luaL_error(L, "%s: %s must have %s elements like %s, got %s", fn, name, a, s->name[0], b);
  }
  if (!bptt_tensor_is_contiguous(t)) luaL_error(L, "%s: %s must be contiguous", fn, name);
  for (i = 0; i < s->k; i++)
    if (overlap(t, s->t[i])) luaL_error(L, "%s: %s and %s must not share elements", fn, s->name[i], name);
  if (s->k < MAXBUF) s->t[s->k] = t, s->name[s->k] = name, s->k++;
  return bptt_tensor_data(t);
}

static double number(lua_State *L, int idx, const char *fn, const char *name) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be a number, got %s", fn, name, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

static void check_kernel(lua_State *L, int err, const char *fn) {
  if (err) luaL_error(L, "%s: %s (a hyperparameter out of range?)", fn, bptt_strerror(err));
}

/* optim_sgd(p, g, buf?, init_buf, lr, momentum, dampening, weight_decay, nesterov) */
static int l_sgd(lua_State *L) {
  const char *fn = "bptt.core.optim_sgd";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  bptt_sgd_hp hp;
  void *p = buffer(L, &s, 1, fn, "p", 0), *g = buffer(L, &s, 2, fn, "g", 0), *buf = buffer(L, &s, 3, fn, "buf", 1);
  int init = lua_toboolean(L, 4);
  hp.lr = number(L, 5, fn, "lr");
  hp.momentum = number(L, 6, fn, "momentum");
  hp.dampening = number(L, 7, fn, "dampening");
  hp.weight_decay = number(L, 8, fn, "weight_decay");
  hp.nesterov = lua_toboolean(L, 9);
  check_kernel(L,
               s.dtype == BPTT_FLOAT32 ? bptt_sgd_step_f32(p, g, buf, s.n, &hp, init)
                                       : bptt_sgd_step_f64(p, g, buf, s.n, &hp, init),
               fn);
  return 0;
}

/* optim_adam(p, g, m, v, vmax?, t, lr, beta1, beta2, eps, weight_decay, decoupled) */
static int l_adam(lua_State *L) {
  const char *fn = "bptt.core.optim_adam";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  bptt_adam_hp hp;
  void *p = buffer(L, &s, 1, fn, "p", 0), *g = buffer(L, &s, 2, fn, "g", 0);
  void *m = buffer(L, &s, 3, fn, "exp_avg", 0), *v = buffer(L, &s, 4, fn, "exp_avg_sq", 0);
  void *vmax = buffer(L, &s, 5, fn, "max_exp_avg_sq", 1);
  int64_t t = bptt_checkint(L, 6, fn, "t", 1, INT64_MAX);
  hp.lr = number(L, 7, fn, "lr");
  hp.beta1 = number(L, 8, fn, "beta1");
  hp.beta2 = number(L, 9, fn, "beta2");
  hp.eps = number(L, 10, fn, "eps");
  hp.weight_decay = number(L, 11, fn, "weight_decay");
  hp.decoupled = lua_toboolean(L, 12);
  check_kernel(L,
               s.dtype == BPTT_FLOAT32 ? bptt_adam_step_f32(p, g, m, v, vmax, s.n, t, &hp)
                                       : bptt_adam_step_f64(p, g, m, v, vmax, s.n, t, &hp),
               fn);
  return 0;
}

/* optim_adagrad(p, g, sum, t, lr, lr_decay, weight_decay, eps) */
static int l_adagrad(lua_State *L) {
  const char *fn = "bptt.core.optim_adagrad";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  bptt_adagrad_hp hp;
  void *p = buffer(L, &s, 1, fn, "p", 0), *g = buffer(L, &s, 2, fn, "g", 0), *sum = buffer(L, &s, 3, fn, "sum", 0);
  int64_t t = bptt_checkint(L, 4, fn, "t", 1, INT64_MAX);
  hp.lr = number(L, 5, fn, "lr");
  hp.lr_decay = number(L, 6, fn, "lr_decay");
  hp.weight_decay = number(L, 7, fn, "weight_decay");
  hp.eps = number(L, 8, fn, "eps");
  check_kernel(L,
               s.dtype == BPTT_FLOAT32 ? bptt_adagrad_step_f32(p, g, sum, s.n, t, &hp)
                                       : bptt_adagrad_step_f64(p, g, sum, s.n, t, &hp),
               fn);
  return 0;
}

/* optim_rmsprop(p, g, sq, ga?, buf?, lr, alpha, eps, weight_decay, momentum) */
static int l_rmsprop(lua_State *L) {
  const char *fn = "bptt.core.optim_rmsprop";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  bptt_rmsprop_hp hp;
  void *p = buffer(L, &s, 1, fn, "p", 0), *g = buffer(L, &s, 2, fn, "g", 0);
  void *sq = buffer(L, &s, 3, fn, "square_avg", 0), *ga = buffer(L, &s, 4, fn, "grad_avg", 1);
  void *buf = buffer(L, &s, 5, fn, "momentum_buffer", 1);
  hp.lr = number(L, 6, fn, "lr");
  hp.alpha = number(L, 7, fn, "alpha");
  hp.eps = number(L, 8, fn, "eps");
  hp.weight_decay = number(L, 9, fn, "weight_decay");
  hp.momentum = number(L, 10, fn, "momentum");
  check_kernel(L,
               s.dtype == BPTT_FLOAT32 ? bptt_rmsprop_step_f32(p, g, sq, ga, buf, s.n, &hp)
                                       : bptt_rmsprop_step_f64(p, g, sq, ga, buf, s.n, &hp),
               fn);
  return 0;
}

/* optim_grad_norm(g, p [, scale]) -> sum |g/scale|^p (0 when p = inf), max |g| */
static int l_grad_norm(lua_State *L) {
  const char *fn = "bptt.core.optim_grad_norm";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  void *g = buffer(L, &s, 1, fn, "g", 0);
  double p = number(L, 2, fn, "p"), scale = lua_isnoneornil(L, 3) ? 1.0 : number(L, 3, fn, "scale");
  double sum = 0, amax = 0;
  check_kernel(L,
               s.dtype == BPTT_FLOAT32 ? bptt_grad_norm_f32(g, s.n, p, scale, &sum, &amax)
                                       : bptt_grad_norm_f64(g, s.n, p, scale, &sum, &amax),
               fn);
  lua_pushnumber(L, sum);
  lua_pushnumber(L, amax);
  return 2;
}

/* optim_grad_scale(g, s): g *= s */
static int l_grad_scale(lua_State *L) {
  const char *fn = "bptt.core.optim_grad_scale";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  void *g = buffer(L, &s, 1, fn, "g", 0);
  double k = number(L, 2, fn, "s");
  check_kernel(L, s.dtype == BPTT_FLOAT32 ? bptt_grad_scale_f32(g, s.n, k) : bptt_grad_scale_f64(g, s.n, k), fn);
  return 0;
}

/* optim_grad_clamp(g, v): g = clamp(g, -v, v) */
static int l_grad_clamp(lua_State *L) {
  const char *fn = "bptt.core.optim_grad_clamp";
  bufset s = { { NULL }, { NULL }, 0, 0, 0 };
  void *g = buffer(L, &s, 1, fn, "g", 0);
  double v = number(L, 2, fn, "v");
  check_kernel(L, s.dtype == BPTT_FLOAT32 ? bptt_grad_clamp_f32(g, s.n, v) : bptt_grad_clamp_f64(g, s.n, v), fn);
  return 0;
}

/* optim_overlap(a, b) -> boolean (contiguous tensors; any dtype) */
static int l_overlap(lua_State *L) {
  const char *fn = "bptt.core.optim_overlap";
  bptt_tensor *a = bptt_checktensor(L, 1, fn, "a"), *b = bptt_checktensor(L, 2, fn, "b");
  if (!bptt_tensor_is_contiguous(a) || !bptt_tensor_is_contiguous(b))
    luaL_error(L, "%s: a and b must be contiguous", fn);
  lua_pushboolean(L, overlap(a, b));
  return 1;
}

static const luaL_Reg functions[] = { { "optim_sgd", l_sgd },
                                      { "optim_adam", l_adam },
                                      { "optim_adagrad", l_adagrad },
                                      { "optim_rmsprop", l_rmsprop },
                                      { "optim_grad_norm", l_grad_norm },
                                      { "optim_grad_scale", l_grad_scale },
                                      { "optim_grad_clamp", l_grad_clamp },
                                      { "optim_overlap", l_overlap },
                                      { NULL, NULL } };

void bptt_open_optim(lua_State *L) { bptt_setfuncs(L, functions, 0); }
