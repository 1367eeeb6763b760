/*
 * ltensor_index.c -- the binding of tensor_index.h and the shape views:
 * bptt.cat, bptt.stack, index_select, gather, scatter_add, masked_fill,
 * sort, topk, bptt.arange, bptt.linspace, repeat_, expand, squeeze,
 * unsqueeze, permute, reshape, and the slicing sugar t[i], t[{i, {a, b}}]
 * with assignment through it.
 *
 * Indices are 1-based, and a negative one counts from the end (-1 is the
 * last), in dimension arguments and in slices alike.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lbptt.h"

#define SELF(fn) bptt_checktensor(L, 1, fn, "self")

static bptt_tensor *push_header(lua_State *L, const bptt_tensor *hdr) { return bptt_pushview(L, hdr); }

/* -------------------------------------------------------------- cat, stack */

/* The tensors of the list at idx (pushed nothing); n of them. */
static int list_tensors(lua_State *L, int idx, const char *fn, bptt_tensor **out, int max) {
  int n, i;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: tensors must be a list of tensors, got %s", fn, luaL_typename(L, idx));
  n = (int)bptt_rawlen(L, idx);
  if (n == 0) luaL_error(L, "%s: tensors must be a non-empty list of tensors", fn);
  if (n > max) luaL_error(L, "%s: at most %d tensors at once, got %d", fn, max, n);
  for (i = 0; i < n; i++) {
    char arg[32];
    lua_rawgeti(L, idx, i + 1);
    snprintf(arg, sizeof arg, "tensors[%d]", i + 1);
    out[i] = bptt_checktensor(L, -1, fn, arg);
    lua_pop(L, 1); /* the list keeps it alive */
  }
  return n;
}

#define MAXPARTS 4096

static int join(lua_State *L, const char *fn, int stack) {
  bptt_tensor **parts, *first, *r, hdr;
  int n, i, d, dim, dt, err;
  int64_t size[BPTT_MAXDIM];
  char sa[96], sb[96];
  lua_settop(L, 2);
  parts = lua_newuserdata(L, sizeof(bptt_tensor *) * MAXPARTS); /* scratch the collector owns */
  n = list_tensors(L, 1, fn, parts, MAXPARTS);
  first = parts[0];
  dim = lua_isnoneornil(L, 2) ? (stack ? 0 : first->ndim - 1) : bptt_checkdim(L, first, 2, fn, stack);
  if (!stack && first->ndim == 0)
    luaL_error(L, "%s: tensors[1] is a scalar (0-d): stack scalars, or view them as 1-d", fn);
  dt = first->dtype;
  for (i = 0; i < n; i++) {
    int same = parts[i]->ndim == first->ndim;
    for (d = 0; same && d < first->ndim; d++) same = (!stack && d == dim) || parts[i]->size[d] == first->size[d];
    if (!same)
      luaL_error(L, "%s: tensors[%d] has shape %s, tensors[1] %s: they must match%s", fn, i + 1,
                 bptt_shapestr(parts[i], sa, sizeof sa), bptt_shapestr(first, sb, sizeof sb),
                 stack ? "" : " but along dim");
    if (parts[i]->dtype == BPTT_FLOAT64 || (parts[i]->dtype == BPTT_FLOAT32 && dt == BPTT_INT32)) dt = parts[i]->dtype;
  }
  memcpy(size, first->size, sizeof size);
  if (stack) {
    for (d = first->ndim; d > dim; d--) size[d] = size[d - 1];
    size[dim] = n;
    if (first->ndim + 1 > BPTT_MAXDIM)
      luaL_error(L, "%s: the result would have more than %d dimensions", fn, BPTT_MAXDIM);
  } else {
    for (i = 1, size[dim] = first->size[dim]; i < n; i++) size[dim] += parts[i]->size[dim];
  }
  r = bptt_newtensor(L, fn, dt, first->ndim + stack, size);
  if (stack) {
    for (i = 0; i < n; i++) {
      bptt_tensor_select(&hdr, r, dim, i);
      err = bptt_tensor_copy(&hdr, parts[i]);
      bptt_tensor_release(&hdr);
      if (err) bptt_raise(L, err, fn, NULL);
    }
    return 1;
  }
  err = bptt_tensor_cat(r, (const bptt_tensor *const *)parts, n, dim);
  if (err) bptt_raise(L, err, fn, NULL);
  return 1;
}

static int l_cat(lua_State *L) { return join(L, "bptt.cat", 0); }
static int l_stack(lua_State *L) { return join(L, "bptt.stack", 1); }

/* ------------------------------------------------------------ index ops */

static void raise_ids(lua_State *L, int err, const char *fn, int64_t bad, int64_t n) {
  char a[32], b[32];
  if (err == BPTT_ERANGE)
    luaL_error(L, "%s: ids[%s] (flat position) is out of range 1..%s", fn, bptt_i64str(a, sizeof a, bad + 1),
               bptt_i64str(b, sizeof b, n));
  bptt_raise(L, err, fn, NULL);
}

static int m_index_select(lua_State *L) {
  const char *fn = "bptt.Tensor:index_select";
  bptt_tensor *t = SELF(fn), *ids, *r;
  int dim = bptt_checkdim(L, t, 2, fn, 0), err;
  int64_t size[BPTT_MAXDIM], bad = 0;
  char sa[96];
  ids = bptt_checkids(L, 3, fn, "ids");
  if (ids->ndim != 1) luaL_error(L, "%s: ids must be 1-d, got %s", fn, bptt_shapestr(ids, sa, sizeof sa));
  memcpy(size, t->size, sizeof size);
  size[dim] = ids->size[0];
  r = bptt_newtensor(L, fn, t->dtype, t->ndim, size);
  err = bptt_tensor_index_select(r, t, dim, ids, &bad);
  if (err) raise_ids(L, err, fn, bad, t->size[dim]);
  return 1;
}

static void check_fits(lua_State *L, const char *fn, const bptt_tensor *ids, const bptt_tensor *t, int dim,
                       const char *what) {
  int d, ok = ids->ndim == t->ndim;
  char sa[96], sb[96];
  for (d = 0; ok && d < t->ndim; d++) ok = d == dim || ids->size[d] <= t->size[d];
  if (!ok)
    luaL_error(L, "%s: ids (%s) must have %s's %d dimensions, each no longer than %s's (%s) but along dim", fn,
               bptt_shapestr(ids, sa, sizeof sa), what, t->ndim, what, bptt_shapestr(t, sb, sizeof sb));
}

static int m_gather(lua_State *L) {
  const char *fn = "bptt.Tensor:gather";
  bptt_tensor *t = SELF(fn), *ids, *r;
  int dim = bptt_checkdim(L, t, 2, fn, 0), err;
  int64_t bad = 0;
  ids = bptt_checkids(L, 3, fn, "ids");
  check_fits(L, fn, ids, t, dim, "self");
  r = bptt_newtensor(L, fn, t->dtype, ids->ndim, ids->size);
  err = bptt_tensor_gather(r, t, dim, ids, &bad);
  if (err) raise_ids(L, err, fn, bad, t->size[dim]);
  return 1;
}

static int m_scatter_add(lua_State *L) {
  const char *fn = "bptt.Tensor:scatter_add";
  bptt_tensor *t = SELF(fn), *ids, *src;
  int dim = bptt_checkdim(L, t, 2, fn, 0), err;
  int64_t bad = 0;
  char sa[96], sb[96];
  ids = bptt_checkids(L, 3, fn, "ids");
  src = bptt_checktensor(L, 4, fn, "src");
  check_fits(L, fn, ids, t, dim, "self");
  if (!bptt_tensor_same_shape(ids, src))
    luaL_error(L, "%s: src must have ids's shape %s, got %s", fn, bptt_shapestr(ids, sa, sizeof sa),
               bptt_shapestr(src, sb, sizeof sb));
  if (t->dtype == BPTT_INT32 && src->dtype != BPTT_INT32)
    luaL_error(L, "%s: src must be int32 to go into an int32 tensor, got %s", fn, bptt_dtype_name(src->dtype));
  if (bptt_tensor_is_overlapping(t))
    luaL_error(L, "%s: self has elements that repeat (an expand()ed view): clone() it first", fn);
  src = bptt_as_dtype(L, src, t->dtype, fn, "src");
  err = bptt_tensor_scatter_add(t, dim, ids, src, &bad);
  if (err) raise_ids(L, err, fn, bad, t->size[dim]);
  lua_pushvalue(L, 1);
  return 1;
}

static int m_masked_fill(lua_State *L) {
  const char *fn = "bptt.Tensor:masked_fill";
  bptt_tensor *t = SELF(fn), *mask = bptt_checktensor(L, 2, fn, "mask");
  double v = bptt_checknum(L, 3, fn, "v");
  int err;
  char sa[96], sb[96];
  if (bptt_tensor_is_overlapping(t))
    luaL_error(L, "%s: self has elements that repeat (an expand()ed view): clone() it first", fn);
  err = bptt_tensor_masked_fill(t, mask, v);
  if (err == BPTT_ESHAPE)
    luaL_error(L, "%s: mask (%s) must broadcast to self's shape %s", fn, bptt_shapestr(mask, sa, sizeof sa),
               bptt_shapestr(t, sb, sizeof sb));
  if (err == BPTT_EDTYPE)
    luaL_error(L, "%s: v must be a whole number in int32 range for an int32 tensor, got %f", fn, v);
  if (err) bptt_raise(L, err, fn, NULL);
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------ sort, topk */

static int sorted(lua_State *L, const char *fn, bptt_tensor *t, int dim, int desc, int64_t k) {
  bptt_tensor *v, *ix;
  int64_t size[BPTT_MAXDIM];
  int err;
  memcpy(size, t->size, sizeof size);
  size[dim] = k;
  v = bptt_newtensor(L, fn, t->dtype, t->ndim, size);
  ix = bptt_newtensor(L, fn, BPTT_INT32, t->ndim, size);
  err = bptt_tensor_sort(v, ix, t, dim, desc, k);
  if (err) bptt_raise(L, err, fn, NULL);
  (void)v, (void)ix;
  return 2;
}

static int optbool(lua_State *L, int idx, const char *fn, const char *arg, int def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) != LUA_TBOOLEAN)
    luaL_error(L, "%s: %s must be true or false, got %s", fn, arg, luaL_typename(L, idx));
  return lua_toboolean(L, idx);
}

/* t:sort([dim [, descending]]) -> values, indices (dim: the last) */
static int m_sort(lua_State *L) {
  const char *fn = "bptt.Tensor:sort";
  bptt_tensor *t = SELF(fn);
  int dim = bptt_optdim(L, t, 2, fn, -1), desc = optbool(L, 3, fn, "descending", 0);
  lua_settop(L, 1);
  return sorted(L, fn, t, dim, desc, t->size[dim]);
}

/* t:topk(k [, dim [, largest]]) -> the k largest (smallest) along dim, in
 * order, and their indices */
static int m_topk(lua_State *L) {
  const char *fn = "bptt.Tensor:topk";
  bptt_tensor *t = SELF(fn);
  int dim = bptt_optdim(L, t, 3, fn, -1), largest = optbool(L, 4, fn, "largest", 1);
  int64_t k = bptt_checkint(L, 2, fn, "k", 0, t->size[dim]);
  lua_settop(L, 1);
  return sorted(L, fn, t, dim, largest, k);
}

/* ------------------------------------------------------- arange, linspace */

/* bptt.arange(end), bptt.arange(start, end [, step]) [, dtype]: start,
 * start + step, ... up to end, excluded (PyTorch's); int32 when every
 * argument is whole, else float32, unless dtype says. */
static int l_arange(lua_State *L) {
  const char *fn = "bptt.arange";
  double a[3] = { 0, 0, 1 }, n;
  int na = 0, i, dt, whole = 1;
  int64_t len;
  bptt_tensor *t;
  while (na < 3 && lua_type(L, na + 1) == LUA_TNUMBER) na++;
  if (na == 0) luaL_error(L, "%s: end must be a number, got %s", fn, luaL_typename(L, 1));
  for (i = 0; i < na; i++) {
    double v = lua_tonumber(L, i + 1);
    if (!isfinite(v)) luaL_error(L, "%s: arguments must be finite, got %f", fn, v);
    if (v != floor(v)) whole = 0;
    a[na == 1 ? 1 : i] = v;
  }
  dt = bptt_optdtype(L, na + 1, fn, whole ? BPTT_INT32 : BPTT_FLOAT32);
  if (a[2] == 0) luaL_error(L, "%s: step must not be 0", fn);
  n = ceil((a[1] - a[0]) / a[2]);
  if (n < 0) n = 0;
  if (n > 1e15) luaL_error(L, "%s: %f elements are too many", fn, n);
  len = (int64_t)n;
  if (dt == BPTT_INT32 && len > 0 &&
      (!whole || fabs(a[0]) > 2147483647.0 || fabs(a[0] + (n - 1) * a[2]) > 2147483647.0))
    luaL_error(L, "%s: an int32 range needs whole numbers within int32", fn);
  t = bptt_newtensor(L, fn, dt, 1, &len);
  bptt_tensor_arange(t, a[0], a[2]);
  return 1;
}

/* bptt.linspace(start, end, steps [, dtype]) */
static int l_linspace(lua_State *L) {
  const char *fn = "bptt.linspace";
  double a = bptt_checknum(L, 1, fn, "start"), b = bptt_checknum(L, 2, fn, "end");
  int64_t n = bptt_checkint(L, 3, fn, "steps", 0, INT64_C(1) << 40);
  int dt = bptt_optdtype(L, 4, fn, BPTT_FLOAT32);
  if (dt == BPTT_INT32) luaL_error(L, "%s: dtype must be \"float32\" or \"float64\", got \"int32\"", fn);
  bptt_tensor_linspace(bptt_newtensor(L, fn, dt, 1, &n), a, b);
  return 1;
}

/* ------------------------------------------------------------ shape views */

/* sizes at from.. (numbers) or a table at from; at most BPTT_MAXDIM */
static int read_sizes(lua_State *L, int from, const char *fn, int64_t *size, int64_t lo) {
  int n, i;
  if (lua_istable(L, from)) {
    n = (int)bptt_rawlen(L, from);
    if (n > BPTT_MAXDIM) luaL_error(L, "%s: at most %d dimensions, got %d", fn, BPTT_MAXDIM, n);
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, from, i + 1);
      size[i] = bptt_checkint(L, -1, fn, "size", lo, INT64_C(1) << 53);
      lua_pop(L, 1);
    }
    return n;
  }
  n = lua_gettop(L) - from + 1;
  if (n > BPTT_MAXDIM) luaL_error(L, "%s: at most %d dimensions, got %d", fn, BPTT_MAXDIM, n);
  for (i = 0; i < n; i++) size[i] = bptt_checkint(L, from + i, fn, "size", lo, INT64_C(1) << 53);
  return n < 0 ? 0 : n;
}

/* t:expand(d1, ...): a view with size-1 (or new leading) dimensions
 * stretched, stride 0; -1 keeps a size */
static int m_expand(lua_State *L) {
  const char *fn = "bptt.Tensor:expand";
  bptt_tensor *t = SELF(fn), v;
  int64_t size[BPTT_MAXDIM];
  int n = read_sizes(L, 2, fn, size, -1), d;
  char sa[96], sb[96];
  for (d = 0; d < n; d++) {
    int ds = d - (n - t->ndim);
    if (size[d] == -1) {
      if (ds < 0) luaL_error(L, "%s: size -1 (keep) is only for self's dimensions, not new leading ones", fn);
      size[d] = t->size[ds];
    }
  }
  if (bptt_tensor_expand(&v, t, n, size)) {
    bptt_tensor want = *t;
    want.ndim = n;
    memcpy(want.size, size, sizeof size);
    luaL_error(L, "%s: self (%s) does not expand to %s: sizes must match or be 1, from the last dimension", fn,
               bptt_shapestr(t, sa, sizeof sa), bptt_shapestr(&want, sb, sizeof sb));
  }
  push_header(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

static int m_squeeze(lua_State *L) {
  const char *fn = "bptt.Tensor:squeeze";
  bptt_tensor *t = SELF(fn), v;
  int d, n = 0, only = lua_isnoneornil(L, 2) ? -1 : bptt_checkdim(L, t, 2, fn, 0);
  v = *t;
  for (d = 0; d < t->ndim; d++) {
    if (t->size[d] == 1 && (only < 0 || only == d)) continue;
    v.size[n] = t->size[d], v.stride[n] = t->stride[d], n++;
  }
  v.ndim = n;
  push_header(L, &v);
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  const char *fn = "bptt.Tensor:unsqueeze";
  bptt_tensor *t = SELF(fn), v;
  int dim, d;
  if (t->ndim == BPTT_MAXDIM) luaL_error(L, "%s: self has %d dimensions already, the most", fn, BPTT_MAXDIM);
  dim = t->ndim == 0 ? (int)bptt_checkint(L, 2, fn, "dim", -1, 1) : bptt_checkdim(L, t, 2, fn, 1);
  if (t->ndim == 0) dim = 0;
  v = *t;
  for (d = t->ndim; d > dim; d--) v.size[d] = t->size[d - 1], v.stride[d] = t->stride[d - 1];
  v.size[dim] = 1;
  v.stride[dim] = dim < t->ndim ? t->size[dim] * t->stride[dim] : 1;
  v.ndim = t->ndim + 1;
  push_header(L, &v);
  return 1;
}

/* t:permute(d1, ..., dn) or t:permute{...}: dimension k of the view is
 * dimension dk of t */
static int m_permute(lua_State *L) {
  const char *fn = "bptt.Tensor:permute";
  bptt_tensor *t = SELF(fn), v;
  int seen[BPTT_MAXDIM] = { 0 }, n, d, k[BPTT_MAXDIM];
  if (lua_istable(L, 2)) { /* the list's numbers become the arguments */
    n = (int)bptt_rawlen(L, 2);
    if (n > BPTT_MAXDIM) n = BPTT_MAXDIM + 1;
    lua_checkstack(L, n + 2);
    for (d = 1; d <= n && d <= BPTT_MAXDIM; d++) lua_rawgeti(L, 2, d);
    lua_remove(L, 2);
    lua_settop(L, 1 + (n > BPTT_MAXDIM ? BPTT_MAXDIM : n));
  }
  n = lua_gettop(L) - 1;
  if (n != t->ndim) luaL_error(L, "%s: expected a permutation of the %d dimensions, got %d numbers", fn, t->ndim, n);
  for (d = 0; d < n; d++) {
    k[d] = bptt_checkdim(L, t, 2 + d, fn, 0);
    if (seen[k[d]]) luaL_error(L, "%s: dimension %d is named twice", fn, k[d] + 1);
    seen[k[d]] = 1;
  }
  v = *t;
  for (d = 0; d < n; d++) v.size[d] = t->size[k[d]], v.stride[d] = t->stride[k[d]];
  push_header(L, &v);
  return 1;
}

/* t:reshape(d1, ...): a view when t is contiguous, else a contiguous copy
 * viewed so; one size may be -1 */
static int m_reshape(lua_State *L) {
  const char *fn = "bptt.Tensor:reshape";
  bptt_tensor *t = SELF(fn), *c, v;
  int64_t size[BPTT_MAXDIM], known = 1, n = bptt_tensor_numel(t);
  int nd = read_sizes(L, 2, fn, size, -1), d, infer = -1;
  char a[96], b[96];
  for (d = 0; d < nd; d++) {
    if (size[d] == -1) {
      if (infer >= 0) luaL_error(L, "%s: only one size may be -1", fn);
      infer = d;
    } else if (bptt_mul_overflow(known, size[d], &known)) {
      luaL_error(L, "%s: the sizes overflow", fn);
    }
  }
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      luaL_error(L, "%s: cannot infer the -1 size: %s elements do not divide into %s", fn, bptt_i64str(a, sizeof a, n),
                 bptt_i64str(b, sizeof b, known));
    size[infer] = n / known;
    known *= size[infer];
  }
  if (known != n) {
    bptt_tensor want = *t;
    want.ndim = nd;
    memcpy(want.size, size, sizeof size);
    luaL_error(L, "%s: shape %s has a different number of elements than %s", fn, bptt_shapestr(&want, a, sizeof a),
               bptt_shapestr(t, b, sizeof b));
  }
  c = t;
  if (!bptt_tensor_is_contiguous(t)) {
    c = bptt_newtensor(L, fn, t->dtype, t->ndim, t->size);
    bptt_tensor_copy(c, t);
  }
  bptt_tensor_view(&v, c, nd, size);
  push_header(L, &v);
  bptt_tensor_release(&v);
  return 1;
}

/* t:repeat_(r1, ..., rn): t tiled r_k times along dimension k (n >= ndim;
 * extra leading counts add dimensions), a new tensor */
static int m_repeat(lua_State *L) {
  const char *fn = "bptt.Tensor:repeat_";
  bptt_tensor *t = SELF(fn), *r;
  int64_t reps[BPTT_MAXDIM], size[BPTT_MAXDIM];
  int n = read_sizes(L, 2, fn, reps, 0), d, err;
  if (n < t->ndim) luaL_error(L, "%s: expected at least %d counts (one per dimension of self), got %d", fn, t->ndim, n);
  for (d = 0; d < n; d++) {
    int ds = d - (n - t->ndim);
    int64_t s = ds >= 0 ? t->size[ds] : 1;
    if (bptt_mul_overflow(s, reps[d], &size[d])) luaL_error(L, "%s: the sizes overflow", fn);
  }
  r = bptt_newtensor(L, fn, t->dtype, n, size);
  err = bptt_tensor_repeat(r, t);
  if (err) bptt_raise(L, err, fn, NULL);
  return 1;
}

/* ---------------------------------------------------------------- slices */

/* A Lua index (1-based, -1 the last) of a dimension of size n at idx, as
 * 0-based into *out; 0 if it is not one. */
static int slice_index(lua_State *L, int idx, int64_t n, int64_t *out) {
  double v;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  v = lua_tonumber(L, idx);
  if (v != floor(v) || v == 0 || fabs(v) > (double)n) return 0;
  *out = v > 0 ? (int64_t)v - 1 : n + (int64_t)v;
  return 1;
}

static void raise_index(lua_State *L, int idx, int dim, int64_t n) {
  char sz[32];
  bptt_i64str(sz, sizeof sz, n);
  if (lua_type(L, idx) == LUA_TNUMBER)
    luaL_error(L, "bptt.Tensor: index: %f for dimension %d (size %s) must be a whole number in 1..%s or -%s..-1",
               (double)lua_tonumber(L, idx), dim + 1, sz, sz, sz);
  luaL_error(L, "bptt.Tensor: index: dimension %d takes a number, {a, b}, {a} or {}, got %s", dim + 1,
             luaL_typename(L, idx));
}

/* The header of t[k] into *v (no reference taken: the caller pushes it
 * with bptt_pushview): k a number (select along dimension 1) or a table of
 * items per dimension: i (select), {a, b} (the range a..b, inclusive),
 * {a} (a..a, kept), {} (all). */
static void slice_view(lua_State *L, const bptt_tensor *t, int k, bptt_tensor *v) {
  int item, n, d = 0, j;
  int64_t i = 0;
  if (t->storage == NULL) luaL_error(L, "bptt.Tensor: index: the tensor was freed (t:free())");
  *v = *t;
  if (lua_type(L, k) == LUA_TNUMBER) {
    if (t->ndim == 0) luaL_error(L, "bptt.Tensor: index: a scalar (0-d) tensor has no dimension to index");
    if (!slice_index(L, k, t->size[0], &i)) raise_index(L, k, 0, t->size[0]);
    v->offset += i * t->stride[0];
    for (j = 0; j < t->ndim - 1; j++) v->size[j] = t->size[j + 1], v->stride[j] = t->stride[j + 1];
    v->ndim--;
    return;
  }
  n = (int)bptt_rawlen(L, k);
  if (n > t->ndim) luaL_error(L, "bptt.Tensor: index: %d items for a %d-d tensor", n, t->ndim);
  for (item = 1; item <= n; item++) {
    lua_rawgeti(L, k, item);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      if (!slice_index(L, -1, v->size[d], &i)) raise_index(L, -1, item - 1, v->size[d]);
      v->offset += i * v->stride[d];
      for (j = d; j < v->ndim - 1; j++) v->size[j] = v->size[j + 1], v->stride[j] = v->stride[j + 1];
      v->ndim--;
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      int64_t a = 0, b = v->size[d] - 1, len = (int64_t)bptt_rawlen(L, -1);
      if (len > 2) raise_index(L, -1, item - 1, v->size[d]);
      if (len >= 1) {
        lua_rawgeti(L, -1, 1);
        if (!slice_index(L, -1, v->size[d], &a)) raise_index(L, -1, item - 1, v->size[d]);
        lua_pop(L, 1);
        b = a;
      }
      if (len == 2) {
        lua_rawgeti(L, -1, 2);
        if (!slice_index(L, -1, v->size[d], &b)) raise_index(L, -1, item - 1, v->size[d]);
        lua_pop(L, 1);
      }
      if (b < a - 1) luaL_error(L, "bptt.Tensor: index: range of dimension %d ends before it starts", item);
      v->offset += a * v->stride[d];
      v->size[d] = b - a + 1;
      d++;
    } else {
      raise_index(L, -1, item - 1, v->size[d]);
    }
    lua_pop(L, 1);
  }
}

int bptt_tensor_slice_get(lua_State *L) {
  bptt_tensor *t = bptt_totensor(L, 1), v;
  if (t == NULL) return 0;
  slice_view(L, t, 2, &v);
  push_header(L, &v);
  return 1;
}

/* t[k] = v: a number fills the slice, a tensor is copied into it
 * (broadcast to its shape, converted to its dtype) */
int bptt_tensor_slice_set(lua_State *L) {
  const char *fn = "bptt.Tensor: assignment";
  bptt_tensor *t = bptt_totensor(L, 1), *view, *src;
  int err;
  char sa[96], sb[96];
  if (t == NULL) return 0;
  if (lua_type(L, 2) != LUA_TNUMBER && lua_type(L, 2) != LUA_TTABLE)
    luaL_error(L, "%s: a tensor takes only slice keys (t[i] = v, t[{...}] = v), got a %s key", fn, luaL_typename(L, 2));
  {
    bptt_tensor h;
    slice_view(L, t, 2, &h);
    view = push_header(L, &h);
  }
  if (bptt_tensor_is_overlapping(view))
    luaL_error(L, "%s: the slice has elements that repeat (an expand()ed view): clone() it first", fn);
  if (lua_type(L, 3) == LUA_TNUMBER) {
    double v = lua_tonumber(L, 3);
    if (bptt_tensor_fill(view, v))
      luaL_error(L, "%s: value must be a whole number in int32 range for an int32 tensor, got %f", fn, v);
    return 0;
  }
  src = bptt_checktensor(L, 3, fn, "value");
  {
    bptt_tensor e;
    if (bptt_tensor_expand(&e, src, view->ndim, view->size))
      luaL_error(L, "%s: value (%s) must broadcast to the slice's shape %s", fn, bptt_shapestr(src, sa, sizeof sa),
                 bptt_shapestr(view, sb, sizeof sb));
    src = push_header(L, &e);
    bptt_tensor_release(&e);
  }
  err = bptt_tensor_copy(view, src);
  if (err == BPTT_ERANGE) luaL_error(L, "%s: value has an element that is NaN, infinite or outside int32's range", fn);
  if (err) bptt_raise(L, err, fn, NULL);
  return 0;
}

/* ---------------------------------------------------------------- open */

static const luaL_Reg methods[] = { { "index_select", m_index_select },
                                    { "gather", m_gather },
                                    { "scatter_add", m_scatter_add },
                                    { "masked_fill", m_masked_fill },
                                    { "sort", m_sort },
                                    { "topk", m_topk },
                                    { "expand", m_expand },
                                    { "squeeze", m_squeeze },
                                    { "unsqueeze", m_unsqueeze },
                                    { "permute", m_permute },
                                    { "reshape", m_reshape },
                                    { "repeat_", m_repeat },
                                    { NULL, NULL } };

static const luaL_Reg functions[] = {
  { "cat", l_cat }, { "stack", l_stack }, { "arange", l_arange }, { "linspace", l_linspace }, { NULL, NULL }
};

void bptt_tensor_index_methods(lua_State *L) { bptt_setfuncs(L, methods, 0); }
void bptt_open_tensor_index(lua_State *L) { bptt_setfuncs(L, functions, 0); }
