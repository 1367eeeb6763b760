/*
 * ltensor.c -- the tensor userdata: constructors, methods, operators, printing.
 *
 * The userdata holds only a bptt_tensor header; the elements live in malloc'd
 * storage shared by views and freed with its last reference (__gc or t:free()).
 * Every function pushes its result userdata BEFORE allocating storage into it,
 * so a Lua error raised afterwards never leaks C memory: the collector owns it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gemm.h"
#include "lbptt.h"
#include "tensor_random.h"

/* Reads sizes from the arguments from..top (numbers), or from a table at
 * from ({d1, ..., dn}); stops at a string (the dtype).  Returns ndim. */
static int checksizes(lua_State *L, int from, const char *fn, int64_t *size, int *next) {
  int n = 0, i, top = lua_gettop(L);
  /* bptt.zeros(nil): a size that is missing (a nil variable), not a 0-d request */
  if (top >= from && lua_isnil(L, from))
    luaL_error(
        L, "%s: sizes must be numbers or a table of numbers, got nil (call it with no argument for a 0-d tensor)", fn);
  if (lua_istable(L, from)) {
    int len = (int)bptt_rawlen(L, from);
    if (len > BPTT_MAXDIM) luaL_error(L, "%s: at most %d dimensions, got %d", fn, BPTT_MAXDIM, len);
    for (i = 1; i <= len; i++) {
      lua_rawgeti(L, from, i);
      size[n++] = bptt_checkint(L, -1, fn, "size", 0, INT64_MAX);
      lua_pop(L, 1);
    }
    *next = from + 1;
    return n;
  }
  for (i = from; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
    if (n == BPTT_MAXDIM) luaL_error(L, "%s: at most %d dimensions", fn, BPTT_MAXDIM);
    size[n++] = bptt_checkint(L, i, fn, "size", 0, INT64_MAX);
  }
  *next = i;
  return n;
}

/* ---------------------------------------------------------- constructors */

static int filled(lua_State *L, const char *fn, double v) {
  int64_t size[BPTT_MAXDIM];
  int next, ndim = checksizes(L, 1, fn, size, &next);
  int dt = bptt_optdtype(L, next, fn, BPTT_FLOAT32);
  if (!lua_isnoneornil(L, next + 1) || (lua_gettop(L) > next && lua_isnil(L, next)))
    luaL_error(L, "%s: expected sizes then an optional dtype", fn);
  bptt_tensor_fill(bptt_newtensor(L, fn, dt, ndim, size), v);
  return 1;
}

static int l_zeros(lua_State *L) { return filled(L, "bptt.zeros", 0.0); }
static int l_ones(lua_State *L) { return filled(L, "bptt.ones", 1.0); }

static int random_tensor(lua_State *L, const char *fn, int normal) {
  int64_t size[BPTT_MAXDIM];
  int next, ndim = checksizes(L, 1, fn, size, &next);
  int dt = bptt_optdtype(L, next, fn, BPTT_FLOAT32);
  bptt_tensor *t;
  if (dt == BPTT_INT32) luaL_error(L, "%s: dtype must be \"float32\" or \"float64\", got \"int32\"", fn);
  t = bptt_newtensor(L, fn, dt, ndim, size);
  if (normal)
    bptt_tensor_normal(t, bptt_default_rng(L), 0.0, 1.0);
  else
    bptt_tensor_uniform(t, bptt_default_rng(L), 0.0, 1.0);
  return 1;
}

static int l_randn(lua_State *L) { return random_tensor(L, "bptt.randn", 1); }
static int l_rand(lua_State *L) { return random_tensor(L, "bptt.rand", 0); }

/* bptt.tensor(tbl [, dtype]): the shape comes from the first element at each
 * depth; every other element is checked against it while filling. */
static void table_shape(lua_State *L, int idx, int depth, int64_t *size, int *ndim) {
  if (lua_type(L, idx) != LUA_TTABLE) return;
  if (depth == BPTT_MAXDIM) luaL_error(L, "bptt.tensor: tables nest deeper than %d dimensions", BPTT_MAXDIM);
  size[depth] = (int64_t)bptt_rawlen(L, idx);
  *ndim = depth + 1;
  if (size[depth] == 0) return;
  lua_rawgeti(L, idx, 1);
  table_shape(L, lua_gettop(L), depth + 1, size, ndim);
  lua_pop(L, 1);
}

static void path_str(const int64_t *path, int depth, char *buf, size_t len) {
  size_t used = 0;
  int d;
  buf[0] = '\0';
  for (d = 0; d < depth && used < len; d++)
    used += (size_t)snprintf(buf + used, len - used, "[%lld]", (long long)path[d] + 1);
}

static void table_fill(lua_State *L, int idx, int depth, const bptt_tensor *t, int64_t *path, int64_t *pos) {
  char buf[128];
  int64_t i;
  if (depth == t->ndim) {
    double v;
    if (lua_type(L, idx) != LUA_TNUMBER) {
      path_str(path, depth, buf, sizeof buf);
      luaL_error(L, "bptt.tensor: element %s must be a number, got %s", buf, luaL_typename(L, idx));
    }
    v = lua_tonumber(L, idx);
    if (t->dtype == BPTT_INT32 && !(v == floor(v) && v > -2147483649.0 && v < 2147483648.0)) {
      path_str(path, depth, buf, sizeof buf);
      luaL_error(L, "bptt.tensor: element %s must be a whole number in int32 range for dtype int32, got %f", buf, v);
    }
    bptt_tensor_set(t, (*pos)++, v);
    return;
  }
  if (lua_type(L, idx) != LUA_TTABLE || (int64_t)bptt_rawlen(L, idx) != t->size[depth]) {
    path_str(path, depth, buf, sizeof buf);
    luaL_error(L, "bptt.tensor: table is not rectangular: element %s must be a table of %d values, got %s",
               buf[0] ? buf : "(top)", (int)t->size[depth], /* a Lua length: fits int */
               lua_type(L, idx) == LUA_TTABLE ? "a table of another length" : luaL_typename(L, idx));
  }
  for (i = 0; i < t->size[depth]; i++) {
    path[depth] = i;
    lua_rawgeti(L, idx, (int)(i + 1));
    table_fill(L, lua_gettop(L), depth + 1, t, path, pos);
    lua_pop(L, 1);
  }
}

static int l_tensor(lua_State *L) {
  int64_t size[BPTT_MAXDIM], path[BPTT_MAXDIM], pos = 0;
  int ndim = 0, dt = bptt_optdtype(L, 2, "bptt.tensor", BPTT_FLOAT32);
  bptt_tensor *t;
  if (lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TNUMBER)
    luaL_error(L, "bptt.tensor: tbl must be a table of numbers (or a number), got %s", luaL_typename(L, 1));
  lua_settop(L, 2);
  table_shape(L, 1, 0, size, &ndim);
  t = bptt_newtensor(L, "bptt.tensor", dt, ndim, size);
  table_fill(L, 1, 0, t, path, &pos);
  return 1;
}

/* ---------------------------------------------------------- shape queries */

#define SELF(fn) bptt_checktensor(L, 1, fn, "self")

#define BPTT_SHAPE_MT "bptt.Shape"

/* tostring(t:shape()) reads like the table constructor: "{3, 4}", "{}" */
static int shape_tostring(lua_State *L) {
  luaL_Buffer b;
  int i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (int)bptt_rawlen(L, 1);
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '{');
  for (i = 1; i <= n; i++) {
    char num[32];
    lua_rawgeti(L, 1, i);
    snprintf(num, sizeof num, "%s%.17g", i > 1 ? ", " : "", (double)lua_tonumber(L, -1));
    lua_pop(L, 1);
    luaL_addstring(&b, num);
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  return 1;
}

static int m_shape(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:shape");
  int d;
  lua_createtable(L, t->ndim, 0);
  for (d = 0; d < t->ndim; d++) {
    lua_pushnumber(L, (lua_Number)t->size[d]);
    lua_rawseti(L, -2, d + 1);
  }
  if (luaL_newmetatable(L, BPTT_SHAPE_MT)) {
    lua_pushcfunction(L, shape_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
  return 1;
}

static int m_size(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:size");
  int k;
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  if (t->ndim == 0) luaL_error(L, "bptt.Tensor:size: a scalar (0-d) tensor has no dimension to ask for");
  k = (int)bptt_checkint(L, 2, "bptt.Tensor:size", "k", 1, t->ndim);
  lua_pushnumber(L, (lua_Number)t->size[k - 1]);
  return 1;
}

static int m_stride(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:stride");
  int d;
  lua_createtable(L, t->ndim, 0);
  for (d = 0; d < t->ndim; d++) {
    lua_pushnumber(L, (lua_Number)t->stride[d]);
    lua_rawseti(L, -2, d + 1);
  }
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, SELF("bptt.Tensor:dim")->ndim);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushnumber(L, (lua_Number)bptt_tensor_numel(SELF("bptt.Tensor:numel")));
  return 1;
}

static int m_dtype(lua_State *L) {
  lua_pushstring(L, bptt_dtype_name(SELF("bptt.Tensor:dtype")->dtype));
  return 1;
}

static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, bptt_tensor_is_contiguous(SELF("bptt.Tensor:is_contiguous")));
  return 1;
}

/* ------------------------------------------------------- element access */

/* Storage offset of the element at 1-based indices in arguments from.. */
static int64_t element_offset(lua_State *L, const bptt_tensor *t, int from, const char *fn) {
  int64_t off = t->offset;
  int d;
  char arg[32];
  for (d = 0; d < t->ndim; d++) {
    snprintf(arg, sizeof arg, "index %d", d + 1);
    if (t->size[d] == 0) luaL_error(L, "%s: dimension %d is empty", fn, d + 1);
    off += (bptt_checkint(L, from + d, fn, arg, 1, t->size[d]) - 1) * t->stride[d];
  }
  return off;
}

static int m_get(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:get");
  if (lua_gettop(L) - 1 != t->ndim)
    luaL_error(L, "bptt.Tensor:get: expected %d indices for a %d-d tensor, got %d", t->ndim, t->ndim,
               lua_gettop(L) - 1);
  lua_pushnumber(L, bptt_tensor_get(t, element_offset(L, t, 2, "bptt.Tensor:get")));
  return 1;
}

static int m_set(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:set");
  int64_t off;
  double v;
  if (lua_gettop(L) - 2 != t->ndim)
    luaL_error(L, "bptt.Tensor:set: expected %d indices and a value for a %d-d tensor, got %d arguments", t->ndim,
               t->ndim, lua_gettop(L) - 1);
  off = element_offset(L, t, 2, "bptt.Tensor:set");
  v = bptt_checknum(L, t->ndim + 2, "bptt.Tensor:set", "value");
  if (t->dtype == BPTT_INT32 && !(v == floor(v) && v > -2147483649.0 && v < 2147483648.0))
    luaL_error(L, "bptt.Tensor:set: value must be a whole number in int32 range for an int32 tensor, got %f", v);
  bptt_tensor_set(t, off, v);
  lua_settop(L, 1);
  return 1;
}

static void push_table(lua_State *L, const bptt_tensor *t, int depth, int64_t off) {
  int64_t i;
  if (depth == t->ndim) {
    lua_pushnumber(L, bptt_tensor_get(t, off));
    return;
  }
  lua_createtable(L, (int)t->size[depth], 0);
  for (i = 0; i < t->size[depth]; i++) {
    push_table(L, t, depth + 1, off + i * t->stride[depth]);
    lua_rawseti(L, -2, (int)(i + 1));
  }
}

static int m_totable(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:totable");
  int64_t tables = 0, outer = 1; /* Lua tables made: 1 + size[0] + size[0] size[1] + ... */
  int d;
  for (d = 0; d < t->ndim; d++)
    if (t->size[d] > INT32_MAX) luaL_error(L, "bptt.Tensor:totable: dimension %d is too long for a Lua table", d + 1);
  /* An empty tensor of 1e9 x 0 would still make 1e9 empty tables (gigabytes
   * of Lua heap); a non-empty one makes at most ndim tables per element. */
  for (d = 0; d < t->ndim && outer > 0; d++) {
    tables += outer;
    if (tables > (INT64_C(1) << 24) && bptt_tensor_numel(t) == 0) {
      char buf[96];
      luaL_error(L, "bptt.Tensor:totable: an empty %s tensor would make more than 2^24 empty Lua tables",
                 bptt_shapestr(t, buf, sizeof buf));
    }
    if (bptt_mul_overflow(outer, t->size[d], &outer)) outer = INT64_C(1) << 62; /* numel 0: fails next round */
  }
  luaL_checkstack(L, t->ndim + 4, "bptt.Tensor:totable");
  push_table(L, t, 0, t->offset);
  return 1;
}

static int m_pointer(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:pointer");
  lua_pushlightuserdata(L, bptt_tensor_data(t));
  return 1;
}

/* ------------------------------------------------------- copies, fills */

static bptt_tensor *clone_to(lua_State *L, const bptt_tensor *src, int dtype, const char *fn) {
  bptt_tensor *t = bptt_newtensor(L, fn, dtype, src->ndim, src->size);
  int err = bptt_tensor_copy(t, src);
  if (err == BPTT_ERANGE) luaL_error(L, "%s: a value is NaN, infinite or outside int32's range", fn);
  return t;
}

static int m_clone(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:clone");
  clone_to(L, t, t->dtype, "bptt.Tensor:clone");
  return 1;
}

static int m_to(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:to");
  if (lua_isnoneornil(L, 2)) luaL_error(L, "bptt.Tensor:to: dtype must be given");
  clone_to(L, t, bptt_optdtype(L, 2, "bptt.Tensor:to", 0), "bptt.Tensor:to");
  return 1;
}

static int m_contiguous(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:contiguous");
  if (bptt_tensor_is_contiguous(t))
    lua_settop(L, 1);
  else
    clone_to(L, t, t->dtype, "bptt.Tensor:contiguous");
  return 1;
}

static int m_copy(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:copy");
  bptt_tensor *src = bptt_checktensor(L, 2, "bptt.Tensor:copy", "src");
  char a[96], b[96];
  int err = bptt_tensor_copy(t, src);
  if (err == BPTT_ESHAPE)
    luaL_error(L, "bptt.Tensor:copy: src must have shape %s, got %s", bptt_shapestr(t, a, sizeof a),
               bptt_shapestr(src, b, sizeof b));
  if (err == BPTT_ERANGE)
    luaL_error(L, "bptt.Tensor:copy: src has a value that is NaN, infinite or outside int32's range");
  if (err) bptt_raise(L, err, "bptt.Tensor:copy", NULL);
  lua_settop(L, 1);
  return 1;
}

static int m_fill(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:fill");
  double v = bptt_checknum(L, 2, "bptt.Tensor:fill", "v");
  if (bptt_tensor_fill(t, v))
    luaL_error(L, "bptt.Tensor:fill: v must be a whole number in int32 range for an int32 tensor, got %f", v);
  lua_settop(L, 1);
  return 1;
}

static int m_zero(lua_State *L) {
  bptt_tensor_fill(SELF("bptt.Tensor:zero"), 0.0);
  lua_settop(L, 1);
  return 1;
}

static int m_uniform(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:uniform");
  double a = lua_isnoneornil(L, 2) ? 0.0 : bptt_checknum(L, 2, "bptt.Tensor:uniform", "a");
  double b = lua_isnoneornil(L, 3) ? 1.0 : bptt_checknum(L, 3, "bptt.Tensor:uniform", "b");
  int err;
  if (t->dtype == BPTT_INT32) luaL_error(L, "bptt.Tensor:uniform: self must be float32 or float64, got int32");
  err = bptt_tensor_uniform(t, bptt_default_rng(L), a, b);
  if (err) luaL_error(L, "bptt.Tensor:uniform: need finite a <= b, got a = %f, b = %f", a, b);
  lua_settop(L, 1);
  return 1;
}

/* t:uniform_shard(dim, rank, size [, a, b]): t is part rank (0-based) of size
 * equal parts along dim of a larger tensor; it gets what that slice would get
 * from uniform(a, b) of the whole, and the generator moves on as for the whole. */
static int m_uniform_shard(lua_State *L) {
  const char *fn = "bptt.Tensor:uniform_shard";
  bptt_tensor *t = SELF(fn);
  int64_t dim = bptt_checkint(L, 2, fn, "dim", 1, t->ndim > 0 ? t->ndim : 1);
  int64_t size = bptt_checkint(L, 4, fn, "size", 1, INT32_MAX);
  int64_t rank = bptt_checkint(L, 3, fn, "rank", 0, size - 1);
  double a = lua_isnoneornil(L, 5) ? 0.0 : bptt_checknum(L, 5, fn, "a");
  double b = lua_isnoneornil(L, 6) ? 1.0 : bptt_checknum(L, 6, fn, "b");
  if (t->ndim == 0) luaL_error(L, "%s: self must have at least one dimension", fn);
  if (t->dtype == BPTT_INT32) luaL_error(L, "%s: self must be float32 or float64, got int32", fn);
  if (bptt_tensor_uniform_shard(t, bptt_default_rng(L), a, b, (int)dim - 1, rank, size))
    luaL_error(L, "%s: need finite a <= b, got a = %f, b = %f", fn, a, b);
  lua_settop(L, 1);
  return 1;
}

static int m_normal(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:normal");
  double mean = lua_isnoneornil(L, 2) ? 0.0 : bptt_checknum(L, 2, "bptt.Tensor:normal", "mean");
  double std = lua_isnoneornil(L, 3) ? 1.0 : bptt_checknum(L, 3, "bptt.Tensor:normal", "std");
  int err;
  if (t->dtype == BPTT_INT32) luaL_error(L, "bptt.Tensor:normal: self must be float32 or float64, got int32");
  err = bptt_tensor_normal(t, bptt_default_rng(L), mean, std);
  if (err) luaL_error(L, "bptt.Tensor:normal: need finite mean and std >= 0, got mean = %f, std = %f", mean, std);
  lua_settop(L, 1);
  return 1;
}

static int m_free(lua_State *L) {
  bptt_tensor *t = bptt_totensor(L, 1);
  if (t == NULL) luaL_error(L, "bptt.Tensor:free: self must be a tensor, got %s", luaL_typename(L, 1));
  bptt_tensor_release(t); /* safe twice; also __gc */
  return 0;
}

/* ------------------------------------------------------------------ views */

static int m_view(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:view"), v;
  int64_t size[BPTT_MAXDIM], known = 1, n = bptt_tensor_numel(t);
  int next, ndim, d, infer = -1, err;
  char a[96], b[96];
  /* sizes may include one -1, inferred from the element count */
  if (lua_istable(L, 2)) {
    ndim = (int)bptt_rawlen(L, 2);
    if (ndim > BPTT_MAXDIM) luaL_error(L, "bptt.Tensor:view: at most %d dimensions", BPTT_MAXDIM);
    for (d = 0; d < ndim; d++) {
      lua_rawgeti(L, 2, d + 1);
      size[d] = bptt_checkint(L, -1, "bptt.Tensor:view", "size", -1, INT64_MAX);
      lua_pop(L, 1);
    }
  } else {
    ndim = lua_gettop(L) - 1;
    if (ndim > BPTT_MAXDIM) luaL_error(L, "bptt.Tensor:view: at most %d dimensions", BPTT_MAXDIM);
    for (d = 0; d < ndim; d++) size[d] = bptt_checkint(L, d + 2, "bptt.Tensor:view", "size", -1, INT64_MAX);
  }
  (void)next;
  for (d = 0; d < ndim; d++) {
    if (size[d] == -1) {
      if (infer >= 0) luaL_error(L, "bptt.Tensor:view: only one size may be -1");
      infer = d;
    } else if (bptt_mul_overflow(known, size[d], &known)) {
      luaL_error(L, "bptt.Tensor:view: the sizes overflow");
    }
  }
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      luaL_error(L, "bptt.Tensor:view: cannot infer the -1 size: %s elements do not divide into %s",
                 bptt_i64str(a, sizeof a, n), bptt_i64str(b, sizeof b, known));
    size[infer] = n / known;
  }
  err = bptt_tensor_view(&v, t, ndim, size);
  if (err == BPTT_ESHAPE) {
    bptt_tensor want = *t;
    want.ndim = ndim;
    memcpy(want.size, size, sizeof(int64_t) * (size_t)ndim);
    luaL_error(L, "bptt.Tensor:view: shape %s has a different number of elements than %s",
               bptt_shapestr(&want, a, sizeof a), bptt_shapestr(t, b, sizeof b));
  }
  if (err) luaL_error(L, "bptt.Tensor:view: self must be contiguous (call :contiguous() or :clone() first)");
  bptt_pushview(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

static int checkdim(lua_State *L, const bptt_tensor *t, int idx, const char *fn) {
  if (t->ndim == 0) luaL_error(L, "%s: self is a scalar (0-d) tensor and has no dimensions", fn);
  return (int)bptt_checkint(L, idx, fn, "dim", 1, t->ndim) - 1;
}

static int m_narrow(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:narrow"), v;
  int dim = checkdim(L, t, 2, "bptt.Tensor:narrow");
  int64_t start = bptt_checkint(L, 3, "bptt.Tensor:narrow", "start", 1, t->size[dim] + 1);
  int64_t len = bptt_checkint(L, 4, "bptt.Tensor:narrow", "len", 0, t->size[dim] - start + 1);
  bptt_tensor_narrow(&v, t, dim, start - 1, len);
  bptt_pushview(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

static int m_select(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:select"), v;
  int dim = checkdim(L, t, 2, "bptt.Tensor:select");
  int64_t i;
  if (t->size[dim] == 0) luaL_error(L, "bptt.Tensor:select: dimension %d is empty", dim + 1);
  i = bptt_checkint(L, 3, "bptt.Tensor:select", "i", 1, t->size[dim]);
  bptt_tensor_select(&v, t, dim, i - 1);
  bptt_pushview(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

static int m_transpose(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:transpose"), v;
  int d1 = checkdim(L, t, 2, "bptt.Tensor:transpose");
  int d2 = checkdim(L, t, 3, "bptt.Tensor:transpose");
  bptt_tensor_transpose(&v, t, d1, d2);
  bptt_pushview(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

static int m_t(lua_State *L) {
  bptt_tensor *t = SELF("bptt.Tensor:t"), v;
  if (t->ndim != 2) luaL_error(L, "bptt.Tensor:t: self must be 2-d, got %d-d", t->ndim);
  bptt_tensor_transpose(&v, t, 0, 1);
  bptt_pushview(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

/* ------------------------------------------------------------ arithmetic */

/* In-place int32 arithmetic, and an operator whose result is int32, take only
 * int32 tensors and whole numbers within int32: nothing else has an exact int32
 * result.  (An operator with a non-whole number gives float64 instead.) */
static void raise_int32_number(lua_State *L, const char *fn, const char *arg, double v) {
  luaL_error(L, "%s: %s must be a whole number in int32 range for an int32 tensor, got %f", fn, arg, v);
}

static int arith(lua_State *L, const char *fn, int sign) {
  bptt_tensor *a = bptt_totensor(L, 1), *b = bptt_totensor(L, 2), *r;
  if (a && b) {
    bptt_push_binop(L, fn, 1, 2, BPTT_OP_ADD, (double)sign); /* broadcasting (ltensor_math.c) */
  } else if (a && lua_type(L, 2) == LUA_TNUMBER) {           /* t + s, t - s */
    double s = lua_tonumber(L, 2);
    if (a->storage == NULL) luaL_error(L, "%s: left operand was freed", fn);
    r = clone_to(L, a, a->dtype == BPTT_INT32 && s != floor(s) ? BPTT_FLOAT64 : a->dtype, fn);
    if (bptt_tensor_add_scalar(r, sign * s)) raise_int32_number(L, fn, "right operand", s);
  } else if (b && lua_type(L, 1) == LUA_TNUMBER) { /* s + t, s - t */
    double s = lua_tonumber(L, 1);
    if (b->storage == NULL) luaL_error(L, "%s: right operand was freed", fn);
    r = clone_to(L, b, b->dtype == BPTT_INT32 && s != floor(s) ? BPTT_FLOAT64 : b->dtype, fn);
    bptt_tensor_mul_scalar(r, (double)sign);
    if (bptt_tensor_add_scalar(r, s)) raise_int32_number(L, fn, "left operand", s);
  } else {
    luaL_error(L, "%s: operands must be tensors (of broadcastable shapes) or a tensor and a number; got %s and %s", fn,
               luaL_typename(L, 1), luaL_typename(L, 2));
  }
  return 1;
}

static int mm_add(lua_State *L) { return arith(L, "bptt.Tensor.__add", 1); }
static int mm_sub(lua_State *L) { return arith(L, "bptt.Tensor.__sub", -1); }

static int scale(lua_State *L, const char *fn, int divide) {
  bptt_tensor *a = bptt_totensor(L, 1), *r;
  int si = 2; /* where the number is */
  double s;
  /* tensor op tensor, and number / tensor: broadcasting (ltensor_math.c) */
  if ((a && bptt_totensor(L, 2)) || (divide && a == NULL && bptt_totensor(L, 2) && lua_type(L, 1) == LUA_TNUMBER)) {
    bptt_push_binop(L, fn, 1, 2, divide ? BPTT_OP_DIV : BPTT_OP_MUL, 1.0);
    return 1;
  }
  if (a == NULL && !divide) si = 1, a = bptt_totensor(L, 2);
  if (a == NULL || lua_type(L, si) != LUA_TNUMBER)
    luaL_error(L, "%s: expected tensors or a tensor and a number, got %s and %s", fn, luaL_typename(L, 1),
               luaL_typename(L, 2));
  if (a->storage == NULL) luaL_error(L, "%s: the tensor operand was freed", fn);
  s = lua_tonumber(L, si);
  /* a quotient is float64 for int32; dividing (not multiplying by 1/s, which
   * is off by an ulp for s = 3) keeps t / s correctly rounded */
  r = clone_to(L, a, a->dtype == BPTT_INT32 && (s != floor(s) || divide) ? BPTT_FLOAT64 : a->dtype, fn);
  if (divide ? bptt_tensor_div_scalar(r, s) : bptt_tensor_mul_scalar(r, s))
    raise_int32_number(L, fn, si == 2 ? "right operand" : "left operand", s);
  return 1;
}

static int mm_mul(lua_State *L) { return scale(L, "bptt.Tensor.__mul", 0); }
static int mm_div(lua_State *L) { return scale(L, "bptt.Tensor.__div", 1); }

static int mm_unm(lua_State *L) {
  bptt_tensor *a = SELF("bptt.Tensor.__unm");
  bptt_tensor_mul_scalar(clone_to(L, a, a->dtype, "bptt.Tensor.__unm"), -1.0);
  return 1;
}

/* ---------------------------------------------------------------- matmul */

/* bptt.matmul(a, b [, out]): 2-d x 2-d, 2-d x 1-d, 1-d x 2-d, 1-d x 1-d (dot, 0-d). */
static int l_matmul(lua_State *L) {
  bptt_tensor *a = bptt_checktensor(L, 1, "bptt.matmul", "a"), *b = bptt_checktensor(L, 2, "bptt.matmul", "b");
  bptt_tensor *out = lua_isnoneornil(L, 3) ? NULL : bptt_checktensor(L, 3, "bptt.matmul", "out");
  bptt_tensor a2, b2, *c, *scr;
  int64_t csize[2], rsize[2], rdim = 0, sbytes;
  char sa[96], sb[96];
  int err;
  if (a->dtype != b->dtype)
    luaL_error(L, "bptt.matmul: b must have a's dtype %s, got %s", bptt_dtype_name(a->dtype),
               bptt_dtype_name(b->dtype));
  if (a->dtype == BPTT_INT32) luaL_error(L, "bptt.matmul: a must be float32 or float64, got int32");
  if (a->ndim < 1 || a->ndim > 2 || b->ndim < 1 || b->ndim > 2)
    luaL_error(L, "bptt.matmul: a and b must be 1-d or 2-d, got %s and %s", bptt_shapestr(a, sa, sizeof sa),
               bptt_shapestr(b, sb, sizeof sb));
  /* treat vectors as 1 x K (a) and K x 1 (b) matrices */
  a2 = *a, b2 = *b;
  if (a->ndim == 1)
    a2.ndim = 2, a2.size[1] = a->size[0], a2.stride[1] = a->stride[0], a2.size[0] = 1, a2.stride[0] = a->size[0];
  else
    rsize[rdim++] = a->size[0];
  if (b->ndim == 1)
    b2.ndim = 2, b2.size[1] = 1, b2.stride[1] = 1, b2.size[0] = b->size[0], b2.stride[0] = b->stride[0];
  else
    rsize[rdim++] = b->size[1];
  if (a2.size[1] != b2.size[0]) {
    char k[32];
    luaL_error(L, "bptt.matmul: b must have %s rows to match a (%s), got %s", bptt_i64str(k, sizeof k, a2.size[1]),
               bptt_shapestr(a, sa, sizeof sa), bptt_shapestr(b, sb, sizeof sb));
  }
  sbytes = bptt_matmul_scratch_bytes(&a2, &b2);
  scr = NULL;
  lua_settop(L, 3); /* the scratch goes above out */
  if (sbytes > 0) {
    int64_t n = sbytes;
    scr = bptt_newtensor(L, "bptt.matmul", BPTT_INT32, 1, (n = (n + 3) / 4, &n)); /* scratch, owned by the GC */
  }
  csize[0] = a2.size[0], csize[1] = b2.size[1];
  if (out) {
    /* out: the result's shape, contiguous, a's dtype, apart from a and b */
    bptt_tensor o2;
    int64_t k, same = out->ndim == (int)rdim;
    for (k = 0; same && k < rdim; k++) same = out->size[k] == rsize[k];
    if (out->dtype != a->dtype)
      luaL_error(L, "bptt.matmul: out must have a's dtype %s, got %s", bptt_dtype_name(a->dtype),
                 bptt_dtype_name(out->dtype));
    if (!same) {
      bptt_tensor r = *a;
      r.ndim = (int)rdim;
      for (k = 0; k < rdim; k++) r.size[k] = rsize[k];
      luaL_error(L, "bptt.matmul: out must be %s (the product's shape), got %s", bptt_shapestr(&r, sa, sizeof sa),
                 bptt_shapestr(out, sb, sizeof sb));
    }
    if (!bptt_tensor_is_contiguous(out)) luaL_error(L, "bptt.matmul: out must be contiguous");
    if (out->storage == a->storage || out->storage == b->storage)
      luaL_error(L, "bptt.matmul: out must not share storage with a or b");
    o2 = *out;
    o2.ndim = 2, o2.size[0] = csize[0], o2.size[1] = csize[1], o2.stride[0] = csize[1], o2.stride[1] = 1;
    err = bptt_matmul(&o2, &a2, &b2, scr ? bptt_tensor_data(scr) : NULL);
    if (err) bptt_raise(L, err, "bptt.matmul", NULL);
    lua_pushvalue(L, 3);
    return 1;
  }
  c = bptt_newtensor(L, "bptt.matmul", a->dtype, 2, csize);
  err = bptt_matmul(c, &a2, &b2, scr ? bptt_tensor_data(scr) : NULL);
  if (err) bptt_raise(L, err, "bptt.matmul", NULL);
  c->ndim = (int)rdim; /* drop the vector dimensions (contiguous either way) */
  if (rdim == 1) c->size[0] = rsize[0], c->stride[0] = 1;
  return 1;
}

/* -------------------------------------------------------------- printing */

/* Torch-style printing: values with one shared format, rows per line, 2-d
 * slices headed by their index for more dimensions, then a line with dtype
 * and shape.  Over 1000 elements, each dimension longer than 6 shows its
 * first and last 3 entries around "...". */
typedef struct {
  int mode; /* 0: whole numbers, 1: fixed point, 2: scientific */
  int width;
  int summarize;
} print_ctx;

static int shown(const print_ctx *pc, int64_t size, int64_t i) {
  return !pc->summarize || size <= 6 || i < 3 || i >= size - 3;
}

static void scan_values(const bptt_tensor *t, const print_ctx *pc, int depth, int64_t off, double *amax, double *amin,
                        int *whole, int *nonfinite) {
  int64_t i;
  if (depth == t->ndim) {
    double v = bptt_tensor_get(t, off), a = fabs(v);
    if (!isfinite(v)) {
      *nonfinite = 1;
      return;
    }
    if (v != floor(v)) *whole = 0;
    if (a > *amax) *amax = a;
    if (a != 0 && a < *amin) *amin = a;
    return;
  }
  for (i = 0; i < t->size[depth]; i++) {
    if (!shown(pc, t->size[depth], i)) { /* jump the elided middle (an expand()ed view may be 1e12 long) */
      i = t->size[depth] - 4;
      continue;
    }
    scan_values(t, pc, depth + 1, off + i * t->stride[depth], amax, amin, whole, nonfinite);
  }
}

static void add_value(luaL_Buffer *b, const print_ctx *pc, double v) {
  char buf[64];
  if (v != v)
    snprintf(buf, sizeof buf, "%*s", pc->width, "nan");
  else if (isinf(v))
    snprintf(buf, sizeof buf, "%*s", pc->width, v > 0 ? "inf" : "-inf");
  else if (pc->mode == 0)
    snprintf(buf, sizeof buf, "%*.0f", pc->width, v);
  else if (pc->mode == 1)
    snprintf(buf, sizeof buf, "%*.4f", pc->width, v);
  else
    snprintf(buf, sizeof buf, "%*.4e", pc->width, v);
  luaL_addchar(b, ' ');
  luaL_addstring(b, buf);
}

static void add_row(luaL_Buffer *b, const bptt_tensor *t, const print_ctx *pc, int64_t off, int dim) {
  int64_t i, n = t->size[dim];
  for (i = 0; i < n; i++) {
    if (!shown(pc, n, i)) {
      luaL_addstring(b, " ...");
      i = n - 4;
      continue;
    }
    add_value(b, pc, bptt_tensor_get(t, off + i * t->stride[dim]));
  }
  luaL_addchar(b, '\n');
}

static void add_slices(luaL_Buffer *b, const bptt_tensor *t, const print_ctx *pc, int depth, int64_t off,
                       int64_t *idx) {
  int64_t i;
  if (depth == t->ndim - 2) {
    int64_t n = t->size[depth];
    if (depth > 0) {
      int d;
      char buf[32];
      luaL_addchar(b, '(');
      for (d = 0; d < depth; d++) {
        snprintf(buf, sizeof buf, "%lld,", (long long)idx[d] + 1);
        luaL_addstring(b, buf);
      }
      luaL_addstring(b, ".,.) =\n");
    }
    for (i = 0; i < n; i++) {
      if (!shown(pc, n, i)) {
        luaL_addstring(b, " ...\n");
        i = n - 4;
        continue;
      }
      add_row(b, t, pc, off + i * t->stride[depth], depth + 1);
    }
    if (depth > 0) luaL_addchar(b, '\n');
    return;
  }
  for (i = 0; i < t->size[depth]; i++) {
    if (!shown(pc, t->size[depth], i)) {
      luaL_addstring(b, "...\n\n");
      i = t->size[depth] - 4;
      continue;
    }
    idx[depth] = i;
    add_slices(b, t, pc, depth + 1, off + i * t->stride[depth], idx);
  }
}

static int mm_tostring(lua_State *L) {
  bptt_tensor *t = bptt_totensor(L, 1);
  luaL_Buffer b;
  print_ctx pc;
  char shape[128], line[192];
  double amax = 0, amin = INFINITY;
  int whole = 1, nonfinite = 0;
  int64_t idx[BPTT_MAXDIM];
  if (t == NULL) luaL_error(L, "bptt.Tensor.__tostring: self must be a tensor, got %s", luaL_typename(L, 1));
  if (t->storage == NULL) {
    lua_pushstring(L, "[bptt.Tensor (freed)]");
    return 1;
  }
  pc.summarize = bptt_tensor_numel(t) > 1000;
  /* (not for an empty tensor: 1e12 x 0 would visit 1e12 empty rows) */
  if (bptt_tensor_numel(t) > 0) scan_values(t, &pc, 0, t->offset, &amax, &amin, &whole, &nonfinite);
  if (whole && (amax < 1e9 || t->dtype == BPTT_INT32)) { /* int32 prints exactly, however large */
    pc.mode = 0;
    pc.width = (int)snprintf(NULL, 0, "%.0f", amax) + 1;
  } else if (amax < 1e5 && (amin >= 1e-4 || amin == INFINITY)) {
    pc.mode = 1;
    pc.width = (int)snprintf(NULL, 0, "%.4f", amax) + 1;
  } else {
    pc.mode = 2;
    pc.width = 11;
  }
  if (nonfinite && pc.width < 4) pc.width = 4;
  luaL_buffinit(L, &b);
  if (bptt_tensor_numel(t) > 0) {
    if (t->ndim == 0) {
      add_value(&b, &pc, bptt_tensor_get(t, t->offset));
      luaL_addchar(&b, '\n');
    } else if (t->ndim == 1)
      add_row(&b, t, &pc, t->offset, 0);
    else
      add_slices(&b, t, &pc, 0, t->offset, idx);
  }
  snprintf(line, sizeof line, "[bptt.Tensor %s of size %s]", bptt_dtype_name(t->dtype),
           bptt_shapestr(t, shape, sizeof shape));
  luaL_addstring(&b, line);
  luaL_pushresult(&b);
  return 1;
}

/* ---------------------------------------------------------------- open */

static int mm_gc(lua_State *L) {
  bptt_tensor *t = lua_touserdata(L, 1);
  if (t) bptt_tensor_release(t);
  return 0;
}

/* tensor_rebind(dst, src): dst becomes a view of src (src's storage, shared,
 * and src's header); the storage dst held loses a reference, and is freed
 * with its last one.  Same dtype and shape required.  Internal, for
 * lua/bptt/Module.lua: a container moves a child's parameters into its own
 * flat buffer, and every tensor already handed out follows them there. */
static int l_tensor_rebind(lua_State *L) {
  const char *fn = "bptt.core.tensor_rebind";
  bptt_tensor *dst = bptt_checktensor(L, 1, fn, "dst"), *src = bptt_checktensor(L, 2, fn, "src"), tmp;
  if (dst->dtype != src->dtype || !bptt_tensor_same_shape(dst, src)) {
    char a[96], b[96];
    luaL_error(L, "%s: src must be %s %s like dst, got %s %s", fn, bptt_dtype_name(dst->dtype),
               bptt_shapestr(dst, a, sizeof a), bptt_dtype_name(src->dtype), bptt_shapestr(src, b, sizeof b));
  }
  bptt_tensor_share(&tmp, src); /* first: src may hold dst's storage's last other reference */
  bptt_tensor_release(dst);
  *dst = tmp;
  return 0;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, bptt_totensor(L, 1) != NULL);
  return 1;
}

static const luaL_Reg methods[] = { { "shape", m_shape },
                                    { "size", m_size },
                                    { "stride", m_stride },
                                    { "dim", m_dim },
                                    { "numel", m_numel },
                                    { "dtype", m_dtype },
                                    { "is_contiguous", m_is_contiguous },
                                    { "get", m_get },
                                    { "set", m_set },
                                    { "totable", m_totable },
                                    { "pointer", m_pointer },
                                    { "clone", m_clone },
                                    { "to", m_to },
                                    { "contiguous", m_contiguous },
                                    { "copy", m_copy },
                                    { "fill", m_fill },
                                    { "zero", m_zero },
                                    { "uniform", m_uniform },
                                    { "uniform_shard", m_uniform_shard },
                                    { "normal", m_normal },
                                    { "free", m_free },
                                    { "view", m_view },
                                    { "narrow", m_narrow },
                                    { "select", m_select },
                                    { "transpose", m_transpose },
                                    { "t", m_t },
                                    { NULL, NULL } };

static const luaL_Reg metamethods[] = { { "__gc", mm_gc },   { "__tostring", mm_tostring },
                                        { "__add", mm_add }, { "__sub", mm_sub },
                                        { "__mul", mm_mul }, { "__div", mm_div },
                                        { "__unm", mm_unm }, { NULL, NULL } };

static const luaL_Reg functions[] = {
  { "tensor", l_tensor }, { "zeros", l_zeros },   { "ones", l_ones },           { "randn", l_randn },
  { "rand", l_rand },     { "matmul", l_matmul }, { "is_tensor", l_is_tensor }, { "tensor_rebind", l_tensor_rebind },
  { NULL, NULL }
};

/* __index: methods first (one table lookup, in a Lua function the JIT
 * compiles), then t[i] and t[{...}] slices (ltensor_index.c). */
static const char INDEX_CHUNK[] =
    "local methods, slice = ...\n"
    "local type = type\n"
    "return function(t, k)\n"
    "  local m = methods[k]\n"
    "  if m ~= nil then return m end\n"
    "  local tk = type(k)\n"
    "  if tk == 'number' or tk == 'table' then return slice(t, k) end\n"
    "  return nil\n"
    "end\n";

void bptt_open_tensor(lua_State *L) {
  /* the metatable is created once per Lua state and reused by later opens */
  if (luaL_newmetatable(L, BPTT_TENSOR_MT)) {
    bptt_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    bptt_setfuncs(L, methods, 0);
    bptt_tensor_math_methods(L);
    bptt_tensor_index_methods(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, BPTT_TENSOR_MT ".methods");
    if (luaL_loadbuffer(L, INDEX_CHUNK, sizeof INDEX_CHUNK - 1, "=bptt.Tensor.__index")) lua_error(L);
    lua_insert(L, -2);
    lua_pushcfunction(L, bptt_tensor_slice_get);
    lua_call(L, 2, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, bptt_tensor_slice_set);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "bptt.Tensor");
    lua_setfield(L, -2, "__name");
  }
  lua_getfield(L, LUA_REGISTRYINDEX, BPTT_TENSOR_MT ".methods");
  lua_setfield(L, -3, "Tensor"); /* module.Tensor = methods, for extension from Lua */
  lua_pop(L, 1);
  bptt_setfuncs(L, functions, 0);
  bptt_open_tensor_math(L);
  bptt_open_tensor_index(L);
}
