/*
 * lshared.c -- what the files of the Lua binding share (lbptt.h): the
 * tensor userdata's checks and constructors, argument checks that raise
 * errors naming the function and the argument, and core error codes turned
 * into Lua errors.
 *
 * A new tensor userdata is pushed BEFORE its storage is allocated, so a Lua
 * error raised afterwards never leaks C memory: the collector owns it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lbptt.h"

bptt_tensor *bptt_totensor(lua_State *L, int idx) { return bptt_testudata(L, idx, BPTT_TENSOR_MT); }

bptt_tensor *bptt_checktensor(lua_State *L, int idx, const char *fn, const char *arg) {
  bptt_tensor *t = bptt_totensor(L, idx);
  if (t == NULL) {
    luaL_error(L, "%s: %s must be a tensor, got %s", fn, arg, luaL_typename(L, idx));
    return NULL;
  }
  if (t->storage == NULL) luaL_error(L, "%s: %s was freed (t:free()) and cannot be used", fn, arg);
  return t;
}

const char *bptt_shapestr(const bptt_tensor *t, char *buf, size_t len) {
  size_t used = 0;
  int d;
  if (t->ndim == 0) {
    snprintf(buf, len, "scalar");
    return buf;
  }
  buf[0] = '\0';
  for (d = 0; d < t->ndim && used < len; d++)
    used += (size_t)snprintf(buf + used, len - used, d ? "x%lld" : "%lld", (long long)t->size[d]);
  return buf;
}

bptt_tensor *bptt_checkarg(lua_State *L, int idx, const char *fn, const char *name, int dt, int optional, int ndim,
                           const int64_t *sz) {
  bptt_tensor *t;
  char got[96];
  int d, ok;
  if (optional && lua_isnoneornil(L, idx)) return NULL;
  t = bptt_checktensor(L, idx, fn, name);
  if (t->dtype != dt)
    luaL_error(L, "%s: %s must be %s, got %s", fn, name, bptt_dtype_name(dt), bptt_dtype_name(t->dtype));
  ok = t->ndim == ndim;
  for (d = 0; ok && d < ndim; d++) ok = sz[d] < 0 || t->size[d] == sz[d];
  if (!ok) {
    char want[96];
    size_t used = 0;
    want[0] = '\0';
    for (d = 0; d < ndim && used < sizeof want; d++) {
      if (sz[d] < 0)
        used += (size_t)snprintf(want + used, sizeof want - used, d ? "x?" : "?");
      else
        used += (size_t)snprintf(want + used, sizeof want - used, d ? "x%lld" : "%lld", (long long)sz[d]);
    }
    luaL_error(L, "%s: %s must be %s, got %s", fn, name, ndim ? want : "scalar", bptt_shapestr(t, got, sizeof got));
  }
  if (!bptt_tensor_is_contiguous(t)) luaL_error(L, "%s: %s must be contiguous", fn, name);
  return t;
}

int bptt_raise(lua_State *L, int err, const char *fn, const char *what) {
  return luaL_error(L, "%s: %s%s%s", fn, what ? what : "", what ? ": " : "", bptt_strerror(err));
}

/* luaL_error with the whole of C's printf: the message is formatted by
 * vsnprintf first (up to 511 bytes). */
int bptt_error(lua_State *L, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return luaL_error(L, "%s", buf);
}

/* lua_pushfstring (so luaL_error) knows only %s %d %f %c %p, %d is 32-bit, and
 * LuaJIT ends the message at "?" on %lld (plain Lua 5.1 also lacks %g): 64-bit
 * integers are printed with snprintf into a buffer first, doubles with %f. */
const char *bptt_i64str(char *buf, size_t len, int64_t v) {
  snprintf(buf, len, "%lld", (long long)v);
  return buf;
}

#define BPTT_MAXEXACT 9007199254740992.0 /* 2^53: doubles are whole and exact up to here */

int64_t bptt_checkint(lua_State *L, int idx, const char *fn, const char *arg, int64_t lo, int64_t hi) {
  double v;
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be a whole number, got %s", fn, arg, luaL_typename(L, idx));
  v = lua_tonumber(L, idx);
  if (v != floor(v)) /* NaN too */
    luaL_error(L, "%s: %s must be a whole number, got %f", fn, arg, v);
  if (v < -BPTT_MAXEXACT || v > BPTT_MAXEXACT || (int64_t)v < lo || (int64_t)v > hi) {
    /* the bounds shown are the ones that apply: nothing beyond 2^53 passes */
    char a[32], b[32];
    if (lo < -(INT64_C(1) << 53)) lo = -(INT64_C(1) << 53);
    if (hi > (INT64_C(1) << 53)) hi = INT64_C(1) << 53;
    luaL_error(L, "%s: %s must be in %s..%s, got %f", fn, arg, bptt_i64str(a, sizeof a, lo),
               bptt_i64str(b, sizeof b, hi), v);
  }
  return (int64_t)v;
}

int bptt_optdtype(lua_State *L, int idx, const char *fn, int def) {
  int dt;
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: dtype must be \"float32\", \"float64\" or \"int32\", got %s", fn, luaL_typename(L, idx));
  dt = bptt_dtype_from_name(lua_tostring(L, idx));
  if (dt < 0)
    luaL_error(L, "%s: dtype must be \"float32\", \"float64\" or \"int32\", got \"%s\"", fn, lua_tostring(L, idx));
  return dt;
}

double bptt_checknum(lua_State *L, int idx, const char *fn, const char *arg) {
  if (lua_type(L, idx) != LUA_TNUMBER) luaL_error(L, "%s: %s must be a number, got %s", fn, arg, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

static bptt_tensor *pushempty(lua_State *L) {
  bptt_tensor *t = lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  luaL_getmetatable(L, BPTT_TENSOR_MT);
  lua_setmetatable(L, -2);
  return t;
}

/* Large storage lives outside the Lua heap, where the collector cannot see
 * it: tell it, so that a loop making and dropping big tensors stays flat. */
static void gc_hint(lua_State *L, int64_t nbytes) {
  if (nbytes >= (1 << 16)) lua_gc(L, LUA_GCSTEP, (int)(nbytes >> 10 > (1 << 30) ? (1 << 30) : nbytes >> 10));
}

bptt_tensor *bptt_newtensor(lua_State *L, const char *fn, int dtype, int ndim, const int64_t *size) {
  bptt_tensor *t;
  int err;
  gc_hint(L, 0);
  t = pushempty(L);
  err = bptt_tensor_init(t, dtype, ndim, size);
  if (err == BPTT_ENOMEM) {
    /* one full collection may free enough dropped tensors */
    lua_gc(L, LUA_GCCOLLECT, 0);
    err = bptt_tensor_init(t, dtype, ndim, size);
  }
  if (err) {
    bptt_tensor tmp;
    char buf[160];
    tmp.ndim = ndim;
    memcpy(tmp.size, size, sizeof(int64_t) * (size_t)(ndim > 0 ? ndim : 0));
    if (err == BPTT_EARG) luaL_error(L, "%s: sizes must be >= 0 and at most %d dimensions", fn, BPTT_MAXDIM);
    luaL_error(L, "%s: cannot allocate a %s %s tensor: %s", fn, bptt_shapestr(&tmp, buf, sizeof buf),
               bptt_dtype_name(dtype), bptt_strerror(err));
  }
  gc_hint(L, t->storage->nbytes);
  return t;
}

bptt_tensor *bptt_pushview(lua_State *L, const bptt_tensor *hdr) {
  bptt_tensor *t = pushempty(L);
  bptt_tensor_share(t, hdr);
  return t;
}

int bptt_checkdim(lua_State *L, const bptt_tensor *t, int idx, const char *fn, int extra) {
  int n = t->ndim + extra;
  double d;
  if (n == 0) luaL_error(L, "%s: self is a scalar (0-d) tensor and has no dimensions", fn);
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: dim must be a whole number, got %s", fn, luaL_typename(L, idx));
  d = lua_tonumber(L, idx);
  if (d != floor(d) || d == 0 || d > n || d < -n)
    luaL_error(L, "%s: dim must be in 1..%d (or -%d..-1 from the end), got %f", fn, n, n, d);
  return (int)(d > 0 ? d - 1 : n + d);
}

int bptt_optdim(lua_State *L, const bptt_tensor *t, int idx, const char *fn, int def) {
  if (lua_isnoneornil(L, idx)) {
    if (t->ndim == 0) luaL_error(L, "%s: self is a scalar (0-d) tensor and has no dimensions", fn);
    return def < 0 ? t->ndim + def : def;
  }
  return bptt_checkdim(L, t, idx, fn, 0);
}

bptt_tensor *bptt_as_dtype(lua_State *L, bptt_tensor *t, int dtype, const char *fn, const char *arg) {
  bptt_tensor *c;
  if (t->dtype == dtype) return t;
  c = bptt_newtensor(L, fn, dtype, t->ndim, t->size);
  if (bptt_tensor_copy(c, t))
    luaL_error(L, "%s: %s has a value that is NaN, infinite or outside int32's range", fn, arg);
  return c;
}

/* A Lua list of whole numbers, or a tensor of them: an int32 tensor (t
 * itself when it is one).  Pushes what it makes. */
bptt_tensor *bptt_checkids(lua_State *L, int idx, const char *fn, const char *arg) {
  bptt_tensor *t = bptt_totensor(L, idx), *r;
  int64_t n, i;
  if (t == NULL && lua_type(L, idx) == LUA_TTABLE) {
    n = (int64_t)bptt_rawlen(L, idx);
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    r = bptt_newtensor(L, fn, BPTT_INT32, 1, &n);
    for (i = 0; i < n; i++) {
      double v;
      lua_rawgeti(L, idx, (int)(i + 1));
      if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "%s: %s[%d] must be a whole number, got %s", fn, arg, (int)(i + 1), luaL_typename(L, -1));
      v = lua_tonumber(L, -1);
      if (v != floor(v) || v < -2147483648.0 || v > 2147483647.0)
        luaL_error(L, "%s: %s[%d] must be a whole number in int32 range, got %f", fn, arg, (int)(i + 1), v);
      lua_pop(L, 1);
      ((int32_t *)bptt_tensor_data(r))[i] = (int32_t)v;
    }
    return r;
  }
  if (t == NULL)
    luaL_error(L, "%s: %s must be an int32 tensor or a list of whole numbers, got %s", fn, arg, luaL_typename(L, idx));
  t = bptt_checktensor(L, idx, fn, arg);
  if (t->dtype == BPTT_INT32) return t;
  {
    int64_t bad;
    char pos[32];
    if (!bptt_tensor_whole(t, &bad))
      luaL_error(L, "%s: %s must hold whole numbers in int32 range, got %f at flat position %s", fn, arg,
                 bptt_tensor_get(t, bptt_tensor_offset_of(t, bad)), bptt_i64str(pos, sizeof pos, bad + 1));
    r = bptt_newtensor(L, fn, BPTT_INT32, t->ndim, t->size);
    bptt_tensor_copy(r, t);
    return r;
  }
}
