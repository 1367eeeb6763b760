/*
 * lsample.c -- bptt.core.sample (pick the next token) and bptt.core.log_prob
 * (score tokens), for lua/bptt/LanguageModel.lua and users' own loops.
 */
#include <string.h>

#include "lbptt.h"
#include "sample.h"

/* sample(logits (V), {temperature=1, top_k=0, top_p=1, greedy=false}) -> id (1-based) */
static int l_sample(lua_State *L) {
  const char *fn = "bptt.sample";
  bptt_tensor *t = bptt_checktensor(L, 1, fn, "logits"), *work;
  bptt_sample_opts o;
  int64_t id = 0, nwork;
  int err;
  if (t->ndim != 1 || t->size[0] < 1 || t->dtype == BPTT_INT32) {
    char buf[96];
    luaL_error(L, "%s: logits must be a non-empty 1-d float tensor, got %s %s", fn, bptt_dtype_name(t->dtype),
               bptt_shapestr(t, buf, sizeof buf));
  }
  o.temperature = 1, o.top_k = 0, o.top_p = 1, o.greedy = 0;
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2)) luaL_error(L, "%s: opts must be a table, got %s", fn, luaL_typename(L, 2));
    lua_getfield(L, 2, "temperature");
    if (!lua_isnil(L, -1)) {
      o.temperature = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(o.temperature > 0) || o.temperature > 1e300)
        luaL_error(L, "%s: temperature must be a number > 0, got %s", fn,
                   lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    lua_getfield(L, 2, "top_k");
    if (!lua_isnil(L, -1)) o.top_k = bptt_checkint(L, -1, fn, "top_k", 0, INT64_MAX);
    lua_getfield(L, 2, "top_p");
    if (!lua_isnil(L, -1)) {
      o.top_p = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(o.top_p > 0 && o.top_p <= 1))
        luaL_error(L, "%s: top_p must be a number in (0, 1], got %s", fn,
                   lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    lua_getfield(L, 2, "greedy");
    o.greedy = lua_toboolean(L, -1);
    lua_pop(L, 4);
  }
  nwork = (int64_t)((bptt_sample_work_bytes(t->size[0]) + 7) / 8);
  work = bptt_newtensor(L, fn, BPTT_FLOAT64, 1, &nwork); /* scratch owned by the GC */
  err = bptt_sample(t, &o, bptt_default_rng(L), bptt_tensor_data(work), &id);
  if (err == BPTT_ERANGE) luaL_error(L, "%s: every logit is -inf: there is no distribution to sample from", fn);
  if (err) luaL_error(L, "%s: logits contain NaN: there is no distribution to sample from", fn);
  lua_pushnumber(L, (lua_Number)(id + 1));
  return 1;
}

/* log_prob(logits (N, C), targets (N) int32) -> float64 tensor (N) of
 * log softmax(logits)[i, targets[i]] */
static int l_log_prob(lua_State *L) {
  const char *fn = "bptt.log_prob";
  bptt_tensor *lg = bptt_checktensor(L, 1, fn, "logits"), *tg = bptt_checktensor(L, 2, fn, "targets"), *out;
  int64_t n, bad = -1;
  char a[96], b[96];
  if (lg->ndim != 2 || lg->dtype == BPTT_INT32)
    luaL_error(L, "%s: logits must be a 2-d (N x C) float tensor, got %s %s", fn, bptt_dtype_name(lg->dtype),
               bptt_shapestr(lg, a, sizeof a));
  if (tg->ndim != 1 || tg->size[0] != lg->size[0] || tg->dtype != BPTT_INT32 || !bptt_tensor_is_contiguous(tg))
    bptt_error(L, "%s: targets must be a contiguous int32 tensor of %lld ids, got %s %s", fn, (long long)lg->size[0],
               bptt_dtype_name(tg->dtype), bptt_shapestr(tg, b, sizeof b));
  n = lg->size[0];
  out = bptt_newtensor(L, fn, BPTT_FLOAT64, 1, &n);
  if (bptt_log_prob(lg, bptt_tensor_data(tg), bptt_tensor_data(out), &bad))
    bptt_error(L, "%s: targets[%lld] is %d, expected 1..%lld", fn, (long long)bad + 1,
               ((const int32_t *)bptt_tensor_data(tg))[bad], (long long)lg->size[1]);
  return 1;
}

static const luaL_Reg functions[] = { { "sample", l_sample }, { "log_prob", l_log_prob }, { NULL, NULL } };

void bptt_open_sample(lua_State *L) { bptt_setfuncs(L, functions, 0); }
