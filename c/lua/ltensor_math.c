/*
 * ltensor_math.c -- the binding of tensor_math.h: broadcasting operators
 * and in-place arithmetic, pointwise math (in place and bptt.exp(t) ...),
 * reductions along a dimension, softmax, comparisons, bptt.info.
 *
 * Result dtypes follow PyTorch's promotion (float64 > float32 > int32),
 * except that an int32 with a non-whole (or out of range) number gives
 * float64, and a quotient of int32s is float64.  An operand of another
 * dtype is converted into a temporary the collector owns, so an error
 * raised afterwards leaks nothing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lbptt.h"

#define SELF(fn) bptt_checktensor(L, 1, fn, "self")

static int promote(int a, int b) {
  if (a == BPTT_FLOAT64 || b == BPTT_FLOAT64) return BPTT_FLOAT64;
  if (a == BPTT_FLOAT32 || b == BPTT_FLOAT32) return BPTT_FLOAT32;
  return BPTT_INT32;
}

static int whole_int32(double v) { return v == floor(v) && v >= -2147483648.0 && v <= 2147483647.0; }

/* The dtype a tensor of dtype dt and the number s combine in. */
static int with_number(int dt, double s) { return dt == BPTT_INT32 && !whole_int32(s) ? BPTT_FLOAT64 : dt; }

static bptt_tensor *push_scalar(lua_State *L, const char *fn, double s, int dt) {
  bptt_tensor *t = bptt_newtensor(L, fn, dt, 0, NULL);
  bptt_tensor_set(t, t->offset, s);
  return t;
}

static void raise_broadcast(lua_State *L, const char *fn, const bptt_tensor *a, const bptt_tensor *b, int op) {
  char sa[96], sb[96];
  luaL_error(L,
             "%s: right operand must have shape %s or broadcast with it (sizes equal or 1, from the last "
             "dimension), got %s%s",
             fn, bptt_shapestr(a, sa, sizeof sa), bptt_shapestr(b, sb, sizeof sb),
             op == BPTT_OP_MUL && a->ndim == 2 && b->ndim == 2 ? " (bptt.matmul(a, b) is the matrix product)" : "");
}

static void check_freed(lua_State *L, const bptt_tensor *t, const char *fn, const char *arg) {
  if (t && t->storage == NULL) luaL_error(L, "%s: %s was freed (t:free()) and cannot be used", fn, arg);
}

bptt_tensor *bptt_push_binop(lua_State *L, const char *fn, int ia, int ib, int op, double alpha) {
  bptt_tensor *a = bptt_totensor(L, ia), *b = bptt_totensor(L, ib), *r;
  int dt, ndim, err, cmp = op >= BPTT_OP_EQ;
  int64_t size[BPTT_MAXDIM];
  ia = ia < 0 ? lua_gettop(L) + ia + 1 : ia, ib = ib < 0 ? lua_gettop(L) + ib + 1 : ib;
  if ((a == NULL && lua_type(L, ia) != LUA_TNUMBER) || (b == NULL && lua_type(L, ib) != LUA_TNUMBER) ||
      (a == NULL && b == NULL))
    luaL_error(L, "%s: operands must be tensors (of broadcastable shapes) or a tensor and a number; got %s and %s", fn,
               luaL_typename(L, ia), luaL_typename(L, ib));
  check_freed(L, a, fn, "left operand");
  check_freed(L, b, fn, "right operand");
  if (a && b)
    dt = promote(a->dtype, b->dtype);
  else if (a)
    dt = with_number(a->dtype, lua_tonumber(L, ib));
  else
    dt = with_number(b->dtype, lua_tonumber(L, ia));
  if (op == BPTT_OP_DIV && dt == BPTT_INT32) dt = BPTT_FLOAT64;
  a = a ? bptt_as_dtype(L, a, dt, fn, "left operand") : push_scalar(L, fn, lua_tonumber(L, ia), dt);
  b = b ? bptt_as_dtype(L, b, dt, fn, "right operand") : push_scalar(L, fn, lua_tonumber(L, ib), dt);
  if (bptt_broadcast_shape(a, b, &ndim, size)) raise_broadcast(L, fn, a, b, op);
  r = bptt_newtensor(L, fn, cmp ? BPTT_INT32 : dt, ndim, size);
  err = bptt_tensor_binary(r, a, b, (bptt_binop)op, alpha);
  if (err) bptt_raise(L, err, fn, NULL);
  return r;
}

/* bptt.cmul(a, b): the broadcasting elementwise product */
static int l_cmul(lua_State *L) {
  bptt_push_binop(L, "bptt.cmul", 1, 2, BPTT_OP_MUL, 1.0);
  return 1;
}

#define COMPARISON(name, OP)                                                                                           \
  static int l_##name(lua_State *L) {                                                                                  \
    lua_settop(L, 2);                                                                                                  \
    bptt_push_binop(L, "bptt." #name, 1, 2, OP, 1.0);                                                                  \
    return 1;                                                                                                          \
  }
COMPARISON(eq, BPTT_OP_EQ)
COMPARISON(ne, BPTT_OP_NE)
COMPARISON(lt, BPTT_OP_LT)
COMPARISON(le, BPTT_OP_LE)
COMPARISON(gt, BPTT_OP_GT)
COMPARISON(ge, BPTT_OP_GE)

/* ------------------------------------------------------ in-place arithmetic */

static void check_writable(lua_State *L, const bptt_tensor *t, const char *fn) {
  if (bptt_tensor_is_overlapping(t))
    luaL_error(L,
               "%s: self has elements that repeat (an expand()ed view); writing through it is ill-defined: "
               "clone() it first",
               fn);
}

static void raise_int32_number(lua_State *L, const char *fn, const char *arg, double v) {
  luaL_error(L, "%s: %s must be a whole number in int32 range for an int32 tensor, got %f", fn, arg, v);
}

static void raise_int32_tensor(lua_State *L, const char *fn, const char *arg, const bptt_tensor *u) {
  luaL_error(L, "%s: %s must be int32 to go into an int32 tensor, got %s (convert self with :to(\"float32\") first)",
             fn, arg, bptt_dtype_name(u->dtype));
}

/* t op= u with u broadcast to t's shape (which must be the result's) */
static void inplace_tensor(lua_State *L, const char *fn, bptt_tensor *t, int iu, bptt_binop op, double alpha) {
  bptt_tensor *u = bptt_checktensor(L, iu, fn, "u");
  int64_t size[BPTT_MAXDIM];
  int ndim, err;
  char sa[96], sb[96];
  if (bptt_broadcast_shape(t, u, &ndim, size) || ndim != t->ndim ||
      memcmp(size, t->size, sizeof(int64_t) * (size_t)ndim))
    luaL_error(L, "%s: u must have shape %s (or broadcast to it), got %s", fn, bptt_shapestr(t, sa, sizeof sa),
               bptt_shapestr(u, sb, sizeof sb));
  if (t->dtype == BPTT_INT32 && u->dtype != BPTT_INT32) raise_int32_tensor(L, fn, "u", u);
  if (op == BPTT_OP_DIV && t->dtype == BPTT_INT32)
    luaL_error(L, "%s: self must be float32 or float64 for an in-place division, got int32", fn);
  if (op == BPTT_OP_ADD && t->dtype == BPTT_INT32 && !whole_int32(alpha)) raise_int32_number(L, fn, "alpha", alpha);
  check_writable(L, t, fn);
  /* same shape and dtype mix: the exact mixed-dtype kernels of tensor.c */
  if (bptt_tensor_same_shape(t, u) && op == BPTT_OP_ADD)
    err = bptt_tensor_add(t, u, alpha);
  else if (bptt_tensor_same_shape(t, u) && op == BPTT_OP_MUL)
    err = bptt_tensor_cmul(t, u);
  else
    err = bptt_tensor_binary(t, t, bptt_as_dtype(L, u, t->dtype, fn, "u"), op, alpha);
  if (err) bptt_raise(L, err, fn, NULL);
}

/* t:add(u [, alpha]) or t:add(v); t:sub(u [, alpha]) or t:sub(v) */
static int add_sub(lua_State *L, const char *fn, double sign) {
  bptt_tensor *t = SELF(fn);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    double v = lua_tonumber(L, 2);
    check_writable(L, t, fn);
    if (bptt_tensor_add_scalar(t, sign * v)) raise_int32_number(L, fn, "v", v);
  } else {
    double alpha = lua_isnoneornil(L, 3) ? 1.0 : bptt_checknum(L, 3, fn, "alpha");
    inplace_tensor(L, fn, t, 2, BPTT_OP_ADD, sign * alpha);
  }
  lua_settop(L, 1);
  return 1;
}

static int m_add(lua_State *L) { return add_sub(L, "bptt.Tensor:add", 1.0); }
static int m_sub(lua_State *L) { return add_sub(L, "bptt.Tensor:sub", -1.0); }

/* t:mul(s) or t:mul(u); t:cmul(u); t:div(s) or t:div(u) */
static int m_mul(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:mul");
  if (lua_type(L, 2) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 2);
    check_writable(L, t, "bptt.Tensor:mul");
    if (bptt_tensor_mul_scalar(t, s)) raise_int32_number(L, "bptt.Tensor:mul", "s", s);
  } else {
    if (bptt_totensor(L, 2) == NULL)
      luaL_error(L, "bptt.Tensor:mul: s must be a number or a tensor, got %s", luaL_typename(L, 2));
    inplace_tensor(L, "bptt.Tensor:mul", t, 2, BPTT_OP_MUL, 1.0);
  }
  lua_settop(L, 1);
  return 1;
}

static int m_cmul(lua_State *L) {
  inplace_tensor(L, "bptt.Tensor:cmul", SELF("bptt.Tensor:cmul"), 2, BPTT_OP_MUL, 1.0);
  lua_settop(L, 1);
  return 1;
}

static int m_div(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:div");
  if (lua_type(L, 2) == LUA_TNUMBER) {
    check_writable(L, t, "bptt.Tensor:div");
    if (bptt_tensor_div_scalar(t, lua_tonumber(L, 2)))
      luaL_error(L, "bptt.Tensor:div: self must be float32 or float64 for an in-place division, got int32");
  } else {
    if (bptt_totensor(L, 2) == NULL)
      luaL_error(L, "bptt.Tensor:div: s must be a number or a tensor, got %s", luaL_typename(L, 2));
    inplace_tensor(L, "bptt.Tensor:div", t, 2, BPTT_OP_DIV, 1.0);
  }
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------- pointwise */

static const char *const UNARY_NAMES[] = { "exp",  "log", "tanh", "sigmoid", "sqrt", "pow",
                                           "relu", "abs", "sign", "clamp",   "neg" };

static void unary_into(lua_State *L, const char *fn, bptt_tensor *out, bptt_tensor *src, bptt_unop op, double a,
                       double b) {
  int err = bptt_tensor_unary(out, src, op, a, b);
  if (err == BPTT_EDTYPE && op == BPTT_UN_POW)
    luaL_error(L, "%s: p must be a whole number >= 0 for an int32 tensor, got %f", fn, a);
  if (err == BPTT_EDTYPE)
    luaL_error(L, "%s: self must be float32 or float64, got int32 (convert it with :to(\"float32\"))", fn);
  if (err == BPTT_EARG) luaL_error(L, "%s: lo and hi must not be NaN", fn);
  if (err) bptt_raise(L, err, fn, NULL);
}

static int inplace_unary(lua_State *L, bptt_unop op) {
  char fn[48];
  bptt_tensor *t;
  snprintf(fn, sizeof fn, "bptt.Tensor:%s", UNARY_NAMES[op]);
  t = SELF(fn);
  check_writable(L, t, fn);
  unary_into(L, fn, t, t, op, 0, 0);
  lua_settop(L, 1);
  return 1;
}

static int new_unary(lua_State *L, bptt_unop op) {
  char fn[48];
  bptt_tensor *t, *r;
  snprintf(fn, sizeof fn, "bptt.%s", UNARY_NAMES[op]);
  t = bptt_checktensor(L, 1, fn, "t");
  r = bptt_newtensor(L, fn, t->dtype, t->ndim, t->size);
  unary_into(L, fn, r, t, op, 0, 0);
  return 1;
}

#define UNARY(name, OP)                                                                                                \
  static int m_##name(lua_State *L) { return inplace_unary(L, OP); }                                                   \
  static int l_##name(lua_State *L) { return new_unary(L, OP); }
UNARY(exp, BPTT_UN_EXP)
UNARY(log, BPTT_UN_LOG)
UNARY(tanh, BPTT_UN_TANH)
UNARY(sigmoid, BPTT_UN_SIGMOID)
UNARY(sqrt, BPTT_UN_SQRT)
UNARY(relu, BPTT_UN_RELU)
UNARY(abs, BPTT_UN_ABS)
UNARY(sign, BPTT_UN_SIGN)

static int m_pow(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:pow");
  double p = bptt_checknum(L, 2, "bptt.Tensor:pow", "p");
  check_writable(L, t, "bptt.Tensor:pow");
  unary_into(L, "bptt.Tensor:pow", t, t, BPTT_UN_POW, p, 0);
  lua_settop(L, 1);
  return 1;
}

static int m_clamp(lua_State *L) {
  const char *fn = "bptt.Tensor:clamp";
  bptt_tensor *t = SELF(fn);
  double lo = lua_isnoneornil(L, 2) ? -INFINITY : bptt_checknum(L, 2, fn, "lo");
  double hi = lua_isnoneornil(L, 3) ? INFINITY : bptt_checknum(L, 3, fn, "hi");
  check_writable(L, t, fn);
  unary_into(L, fn, t, t, BPTT_UN_CLAMP, lo, hi);
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------ reductions */

/* A result of src's shape without dim, pushed; with keepdim the dimension
 * stays, of size 1. */
static bptt_tensor *push_reduced(lua_State *L, const char *fn, const bptt_tensor *src, int dim, int dtype) {
  bptt_tensor h;
  int d;
  h.ndim = src->ndim - 1;
  for (d = 0; d < h.ndim; d++) h.size[d] = src->size[d < dim ? d : d + 1];
  return bptt_newtensor(L, fn, dtype, h.ndim, h.size);
}

static void keep_dim(bptt_tensor *r, int dim) {
  int d;
  for (d = r->ndim; d > dim; d--) r->size[d] = r->size[d - 1], r->stride[d] = r->stride[d - 1];
  r->size[dim] = 1;
  r->stride[dim] = dim < r->ndim ? r->stride[dim + 1] * r->size[dim + 1] : 1;
  r->ndim++;
}

static int optkeep(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TBOOLEAN)
    luaL_error(L, "%s: keepdim must be true or false, got %s", fn, luaL_typename(L, idx));
  return lua_toboolean(L, idx);
}

static void raise_reduce(lua_State *L, int err, const char *fn, const bptt_tensor *t, int dim) {
  if (err == BPTT_EDTYPE) luaL_error(L, "%s: self must be float32 or float64, got int32", fn);
  if (err == BPTT_EARG && t->size[dim] == 0) luaL_error(L, "%s: dimension %d is empty", fn, dim + 1);
  bptt_raise(L, err, fn, NULL);
}

/* values [, indices] of op along the dim at argument 2 (keepdim at 3) */
static int reduce_dim(lua_State *L, const char *fn, bptt_dimop op, int values, int indices) {
  bptt_tensor *t = SELF(fn), *v = NULL, *ix = NULL;
  int dim = bptt_checkdim(L, t, 2, fn, 0), keep = optkeep(L, 3, fn), err;
  if (values) v = push_reduced(L, fn, t, dim, t->dtype);
  if (indices) ix = push_reduced(L, fn, t, dim, BPTT_INT32);
  err = bptt_tensor_reduce_dim(v, ix, t, dim, op);
  if (err) raise_reduce(L, err, fn, t, dim);
  if (ix) bptt_tensor_add_scalar(ix, 1.0); /* 1-based */
  if (keep && v) keep_dim(v, dim);
  if (keep && ix) keep_dim(ix, dim);
  return values + indices;
}

/* The whole-tensor forms: Lua numbers, accumulated in double. */
static int whole(lua_State *L, const char *fn, bptt_reduction op) {
  bptt_tensor *t = SELF(fn);
  double v;
  if (bptt_tensor_reduce(t, op, &v)) luaL_error(L, "%s: self is empty", fn);
  lua_pushnumber(L, v);
  return 1;
}

static int whole_sum(lua_State *L) { return whole(L, "bptt.Tensor:sum", BPTT_RED_SUM); }
static int whole_max(lua_State *L) { return whole(L, "bptt.Tensor:max", BPTT_RED_MAX); }
static int whole_min(lua_State *L) { return whole(L, "bptt.Tensor:min", BPTT_RED_MIN); }

static int whole_mean(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:mean");
  double v;
  if (bptt_tensor_numel(t) == 0) luaL_error(L, "bptt.Tensor:mean: self is empty");
  bptt_tensor_reduce(t, BPTT_RED_SUM, &v);
  lua_pushnumber(L, v / (double)bptt_tensor_numel(t));
  return 1;
}

static int whole_norm(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:norm");
  double v;
  bptt_tensor_reduce(t, BPTT_RED_SUMSQ, &v);
  lua_pushnumber(L, sqrt(v));
  return 1;
}

static int m_sum(lua_State *L) {
  return lua_isnoneornil(L, 2) ? whole_sum(L) : reduce_dim(L, "bptt.Tensor:sum", BPTT_DIM_SUM, 1, 0);
}
static int m_mean(lua_State *L) {
  return lua_isnoneornil(L, 2) ? whole_mean(L) : reduce_dim(L, "bptt.Tensor:mean", BPTT_DIM_MEAN, 1, 0);
}
static int m_norm(lua_State *L) {
  return lua_isnoneornil(L, 2) ? whole_norm(L) : reduce_dim(L, "bptt.Tensor:norm", BPTT_DIM_NORM, 1, 0);
}
static int m_max(lua_State *L) {
  return lua_isnoneornil(L, 2) ? whole_max(L) : reduce_dim(L, "bptt.Tensor:max", BPTT_DIM_MAX, 1, 1);
}
static int m_min(lua_State *L) {
  return lua_isnoneornil(L, 2) ? whole_min(L) : reduce_dim(L, "bptt.Tensor:min", BPTT_DIM_MIN, 1, 1);
}

/* a contiguous 1-d copy of t (pushed) */
static bptt_tensor *push_flat_copy(lua_State *L, const char *fn, const bptt_tensor *t) {
  bptt_tensor *flat = bptt_newtensor(L, fn, t->dtype, t->ndim, t->size);
  bptt_tensor_copy(flat, t);
  flat->size[0] = bptt_tensor_numel(t), flat->stride[0] = 1, flat->ndim = 1;
  return flat;
}

/* logsumexp(dim [, keepdim]); logsumexp() over all elements, a number */
static int m_logsumexp(lua_State *L) {
  const char *fn = "bptt.Tensor:logsumexp";
  bptt_tensor *t = SELF(fn);
  if (lua_isnoneornil(L, 2)) {
    bptt_tensor *flat, *r;
    if (t->dtype == BPTT_INT32) luaL_error(L, "%s: self must be float32 or float64, got int32", fn);
    flat = push_flat_copy(L, fn, t);
    r = bptt_newtensor(L, fn, t->dtype, 0, NULL);
    bptt_tensor_reduce_dim(r, NULL, flat, 0, BPTT_DIM_LOGSUMEXP);
    lua_pushnumber(L, bptt_tensor_get(r, r->offset));
    return 1;
  }
  return reduce_dim(L, fn, BPTT_DIM_LOGSUMEXP, 1, 0);
}

/* argmax([dim [, keepdim]]): 1-based indices along dim; with no dim the
 * flat (row-major) 1-based position of the maximum over all elements, a
 * Lua number.  NaN counts as the maximum (and the minimum), first wins. */
static int arg_extreme(lua_State *L, const char *fn, bptt_dimop op) {
  bptt_tensor *t = SELF(fn);
  if (lua_isnoneornil(L, 2)) {
    int64_t n = bptt_tensor_numel(t);
    bptt_tensor *flat, *ix;
    if (n == 0) luaL_error(L, "%s: self is empty", fn);
    flat = push_flat_copy(L, fn, t);
    ix = bptt_newtensor(L, fn, BPTT_INT32, 0, NULL);
    bptt_tensor_reduce_dim(NULL, ix, flat, 0, op);
    lua_pushnumber(L, bptt_tensor_get(ix, ix->offset) + 1);
    return 1;
  }
  reduce_dim(L, fn, op, 0, 1);
  return 1;
}

static int m_argmax(lua_State *L) { return arg_extreme(L, "bptt.Tensor:argmax", BPTT_DIM_MAX); }
static int m_argmin(lua_State *L) { return arg_extreme(L, "bptt.Tensor:argmin", BPTT_DIM_MIN); }

static int softmax(lua_State *L, const char *fn, int log) {
  bptt_tensor *t = SELF(fn), *r;
  int dim = bptt_optdim(L, t, 2, fn, -1), err;
  if (t->dtype == BPTT_INT32) luaL_error(L, "%s: self must be float32 or float64, got int32", fn);
  r = bptt_newtensor(L, fn, t->dtype, t->ndim, t->size);
  err = bptt_tensor_softmax(r, t, dim, log);
  if (err) bptt_raise(L, err, fn, NULL);
  return 1;
}

static int m_softmax(lua_State *L) { return softmax(L, "bptt.Tensor:softmax", 0); }
static int m_log_softmax(lua_State *L) { return softmax(L, "bptt.Tensor:log_softmax", 1); }

/* ------------------------------------------------------------------ info */

static int info_tostring(lua_State *L) {
  luaL_Buffer b;
  char line[256];
  const char *keys[] = {
    "dtype", "shape", "stride", "contiguous", "storage_bytes", "numel", "min", "max", "mean", "nan"
  };
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "bptt.info:");
  for (i = 0; i < 10; i++) {
    lua_getfield(L, 1, keys[i]);
    if (lua_type(L, -1) == LUA_TTABLE) {
      int k, n = (int)bptt_rawlen(L, -1);
      snprintf(line, sizeof line, "\n  %-14s {", keys[i]);
      luaL_addstring(&b, line);
      for (k = 1; k <= n; k++) {
        lua_rawgeti(L, -1, k);
        snprintf(line, sizeof line, "%s%.0f", k > 1 ? ", " : "", (double)lua_tonumber(L, -1));
        lua_pop(L, 1);
        luaL_addstring(&b, line);
      }
      luaL_addchar(&b, '}');
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      snprintf(line, sizeof line, "\n  %-14s %.6g", keys[i], (double)lua_tonumber(L, -1));
      luaL_addstring(&b, line);
    } else {
      lua_getglobal(L, "tostring");
      lua_pushvalue(L, -2);
      lua_call(L, 1, 1);
      snprintf(line, sizeof line, "\n  %-14s %s", keys[i], lua_tostring(L, -1));
      lua_pop(L, 1);
      luaL_addstring(&b, line);
    }
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}

static void set_dims(lua_State *L, const char *key, int n, const int64_t *v, int shape) {
  int d;
  lua_createtable(L, n, 0);
  for (d = 0; d < n; d++) {
    lua_pushnumber(L, (lua_Number)v[d]);
    lua_rawseti(L, -2, d + 1);
  }
  if (shape) {
    luaL_getmetatable(L, "bptt.Shape");
    if (lua_istable(L, -1))
      lua_setmetatable(L, -2);
    else
      lua_pop(L, 1);
  }
  lua_setfield(L, -2, key);
}

/* bptt.info(t): a table {dtype, shape, stride, contiguous, storage_bytes,
 * numel, min, max, mean, nan} that prints as an aligned list; min, max and
 * mean skip NaNs (nan counts them). */
static int l_info(lua_State *L) {
  bptt_tensor *t = bptt_checktensor(L, 1, "bptt.info", "t");
  int64_t nan;
  double mn, mx, mean;
  {
    /* an expand()ed dimension repeats its elements: the stats of the
     * tensor without it, the NaNs counted as often as they repeat */
    bptt_tensor h = *t;
    double reps = 1;
    int d;
    for (d = 0; d < h.ndim; d++)
      if (h.stride[d] == 0 && h.size[d] > 1) reps *= (double)h.size[d], h.size[d] = 1;
    bptt_tensor_stats(&h, &nan, &mn, &mx, &mean);
    lua_pushnumber(L, (lua_Number)nan * reps);
  }
  lua_createtable(L, 0, 10);
  lua_pushstring(L, bptt_dtype_name(t->dtype));
  lua_setfield(L, -2, "dtype");
  set_dims(L, "shape", t->ndim, t->size, 1);
  set_dims(L, "stride", t->ndim, t->stride, 0);
  lua_pushboolean(L, bptt_tensor_is_contiguous(t));
  lua_setfield(L, -2, "contiguous");
  lua_pushnumber(L, (lua_Number)t->storage->nbytes);
  lua_setfield(L, -2, "storage_bytes");
  lua_pushnumber(L, (lua_Number)bptt_tensor_numel(t));
  lua_setfield(L, -2, "numel");
  lua_pushnumber(L, mn);
  lua_setfield(L, -2, "min");
  lua_pushnumber(L, mx);
  lua_setfield(L, -2, "max");
  lua_pushnumber(L, mean);
  lua_setfield(L, -2, "mean");
  lua_pushvalue(L, -2); /* the NaN count, pushed first */
  lua_setfield(L, -2, "nan");
  lua_remove(L, -2);
  if (luaL_newmetatable(L, "bptt.Info")) {
    lua_pushcfunction(L, info_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
  return 1;
}

/* ---------------------------------------------------------------- open */

static const luaL_Reg methods[] = { { "add", m_add },
                                    { "sub", m_sub },
                                    { "mul", m_mul },
                                    { "cmul", m_cmul },
                                    { "div", m_div },
                                    { "exp", m_exp },
                                    { "log", m_log },
                                    { "tanh", m_tanh },
                                    { "sigmoid", m_sigmoid },
                                    { "sqrt", m_sqrt },
                                    { "relu", m_relu },
                                    { "abs", m_abs },
                                    { "sign", m_sign },
                                    { "pow", m_pow },
                                    { "clamp", m_clamp },
                                    { "sum", m_sum },
                                    { "mean", m_mean },
                                    { "norm", m_norm },
                                    { "max", m_max },
                                    { "min", m_min },
                                    { "logsumexp", m_logsumexp },
                                    { "argmax", m_argmax },
                                    { "argmin", m_argmin },
                                    { "softmax", m_softmax },
                                    { "log_softmax", m_log_softmax },
                                    { NULL, NULL } };

static const luaL_Reg functions[] = {
  { "cmul", l_cmul }, { "exp", l_exp },   { "log", l_log }, { "tanh", l_tanh }, { "sigmoid", l_sigmoid },
  { "sqrt", l_sqrt }, { "relu", l_relu }, { "abs", l_abs }, { "sign", l_sign }, { "eq", l_eq },
  { "ne", l_ne },     { "lt", l_lt },     { "le", l_le },   { "gt", l_gt },     { "ge", l_ge },
  { "info", l_info }, { NULL, NULL }
};

void bptt_tensor_math_methods(lua_State *L) { bptt_setfuncs(L, methods, 0); }

void bptt_open_tensor_math(lua_State *L) { bptt_setfuncs(L, functions, 0); }
