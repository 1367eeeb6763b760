/*
 * lbptt.c -- luaopen_bptt_core: the module table of the C part, and threads.
 *
 * `require "bptt"` loads lua/bptt/init.lua, which loads this as "bptt.core".
 * Opening twice in one Lua state is fine: metatables and the default
 * generator are created once and found again in the registry.
 */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <cblas.h>
#include <dlfcn.h>
#include <time.h>

#include "lbptt.h"
#include "packed.h"
#include "parallel.h"

/* bptt.set_num_threads(n): threads of the library's team (parallel.h), which
 * runs the recurrent layers' kernels and splits every GEMM (gemm.h);
 * OpenBLAS itself stays at 1 thread. */
static int l_set_num_threads(lua_State *L) {
  int n = (int)bptt_checkint(L, 1, "bptt.set_num_threads", "n", 1, BPTT_MAX_THREADS);
  bptt_parallel_set_threads(n);
  return 0;
}

/* bptt.core.blas_set_num_threads(n): OpenBLAS's own pool, which the library
 * keeps at 1 thread; for benchmarks that compare its threading with the
 * team's (examples/bench/step.lua).  Set it back to 1 after. */
static int l_blas_set_num_threads(lua_State *L) {
  int n = (int)bptt_checkint(L, 1, "bptt.core.blas_set_num_threads", "n", 1, BPTT_MAX_THREADS);
  openblas_set_num_threads(n);
  return 0;
}

/* bptt.core.packed_gemm([on]): whether the recurrent layers' per-step GEMMs
 * use packed.h's kernel (it needs AVX-512F); with a boolean, switches it on
 * or off first (specs and benchmarks compare it with BLAS). */
static int l_packed_gemm(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    bptt_packed_enable(lua_toboolean(L, 1));
  }
  lua_pushboolean(L, bptt_packed_available());
  return 1;
}

static int l_num_threads(lua_State *L) {
  lua_pushinteger(L, bptt_parallel_threads());
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
                                     {"blas_config", l_blas_config},
                                     {"blas_set_num_threads", l_blas_set_num_threads},
                                     {"packed_gemm", l_packed_gemm}, {NULL, NULL}};

/* The team's workers (parallel.c) run this library's code and outlive any
 * Lua state, but lua_close unloads C modules (dlclose): pin the library in
 * the process so that its code stays mapped. */
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)pin_library, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

int luaopen_bptt_core(lua_State *L) {
  static int once = 0;
  if (!once) {
    /* the team starts as large as OpenBLAS's pool would (OPENBLAS_NUM_THREADS
     * or the cores), and takes over from it: OpenBLAS runs on 1 thread */
    pin_library();
    bptt_parallel_set_threads(openblas_get_num_threads());
    openblas_set_num_threads(1);
    once = 1;
  }
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
