/*
 * lrng.c -- the default random generator and its Lua functions.
 *
 * The generator is a userdata kept in the registry under BPTT_RNG_KEY, so that
 * every luaopen of the module in one Lua state (busted opens it per spec file)
 * shares one stream, and no C global is involved.
 */
#include <string.h>

#include "lbptt.h"

#define DEFAULT_SEED 0x5eed

bptt_rng *bptt_default_rng(lua_State *L) {
  bptt_rng *r;
  lua_getfield(L, LUA_REGISTRYINDEX, BPTT_RNG_KEY);
  r = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (r == NULL) {
    r = lua_newuserdata(L, sizeof *r);
    bptt_rng_seed(r, DEFAULT_SEED);
    lua_setfield(L, LUA_REGISTRYINDEX, BPTT_RNG_KEY);
  }
  return r;
}

/* bptt.manual_seed(n): n a whole number in [0, 2^53] (or negative, down to -2^53). */
static int l_manual_seed(lua_State *L) {
  int64_t seed = bptt_checkint(L, 1, "bptt.manual_seed", "n", -(INT64_C(1) << 53), INT64_C(1) << 53);
  bptt_rng_seed(bptt_default_rng(L), (uint64_t)seed);
  return 0;
}

static int l_rng_state(lua_State *L) {
  char buf[BPTT_RNG_STATE_LEN + 1];
  bptt_rng_get_state(bptt_default_rng(L), buf);
  lua_pushstring(L, buf);
  return 1;
}

static int l_set_rng_state(lua_State *L) {
  size_t len;
  const char *s;
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "bptt.set_rng_state: s must be a string from bptt.rng_state(), got %s", luaL_typename(L, 1));
  s = lua_tolstring(L, 1, &len);
  if (bptt_rng_set_state(bptt_default_rng(L), s, len))
    return luaL_error(L,
                      "bptt.set_rng_state: s is not a state from bptt.rng_state() (\"xoshiro256**:\" and 64 hex "
                      "digits, then \":-\" or \":\" and 16 hex digits)");
  return 0;
}

/* bptt.random() -> uniform [0,1) double; bptt.random(n) -> whole number in 1..n. */
static int l_random(lua_State *L) {
  bptt_rng *r = bptt_default_rng(L);
  if (lua_isnoneornil(L, 1)) {
    lua_pushnumber(L, bptt_rng_uniform(r));
  } else {
    int64_t n = bptt_checkint(L, 1, "bptt.random", "n", 1, INT64_C(1) << 53);
    /* rejection sampling: no modulo bias */
    uint64_t un = (uint64_t)n, lim = UINT64_MAX - UINT64_MAX % un, x;
    do x = bptt_rng_next(r);
    while (x >= lim);
    lua_pushnumber(L, (lua_Number)(x % un + 1));
  }
  return 1;
}

static const luaL_Reg functions[] = { { "manual_seed", l_manual_seed },
                                      { "rng_state", l_rng_state },
                                      { "set_rng_state", l_set_rng_state },
                                      { "random", l_random },
                                      { NULL, NULL } };

void bptt_open_rng(lua_State *L) {
  bptt_default_rng(L);
  bptt_setfuncs(L, functions, 0);
}
