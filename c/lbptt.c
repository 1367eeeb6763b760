/*
 * lbptt.c -- luaopen_bptt_core: the module table of the C part, and threads.
 *
 * `require "bptt"` loads lua/bptt/init.lua, which loads this as "bptt.core".
 * Opening twice in one Lua state is fine: metatables and the default
 * generator are created once and found again in the registry.
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <time.h>

#include "lbptt.h"

/* bptt.set_num_threads(n): threads for OpenBLAS (the library's own loops run
 * on the calling thread). */
static int l_set_num_threads(lua_State *L) {
  int n = (int)bptt_checkint(L, 1, "bptt.set_num_threads", "n", 1, 1024);
  openblas_set_num_threads(n);
  return 0;
}

static int l_num_threads(lua_State *L) {
  lua_pushinteger(L, openblas_get_num_threads());
  return 1;
}

static int l_blas_config(lua_State *L) {
  lua_pushstring(L, openblas_get_config());
  return 1;
}

/* bptt.clock(): seconds on a monotonic wall clock (os.clock() is CPU time,
 * summed over threads, and says nothing of elapsed time). */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
  return 1;
}

static const luaL_Reg functions[] = {{"clock", l_clock}, {"set_num_threads", l_set_num_threads}, {"num_threads", l_num_threads},
                                     {"blas_config", l_blas_config}, {NULL, NULL}};

int luaopen_bptt_core(lua_State *L) {
  lua_newtable(L);
  bptt_setfuncs(L, functions, 0);
  bptt_open_tensor(L);
  bptt_open_rng(L);
  bptt_open_nn(L);
  bptt_open_text(L);
  bptt_open_optim(L);
  bptt_open_sample(L);
  bptt_open_io(L);
  return 1;
}
