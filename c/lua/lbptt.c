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
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "isa.h"
#include "lbptt.h"
#include "packed.h"
#include "parallel.h"
#include "peak.h"

/* bptt.set_num_threads(n): threads of the library's team (parallel.h), which
 * runs the recurrent layers' kernels and splits every GEMM (gemm.h);
 * OpenBLAS itself stays at 1 thread. */
static int l_set_num_threads(lua_State *L) {
  int n = (int)bptt_checkint(L, 1, "bptt.set_num_threads", "n", 1, BPTT_MAX_THREADS);
  bptt_parallel_set_threads(n);
  return 0;
}

static void stop_blas_pool(void);

/* bptt.core.blas_set_num_threads(n): OpenBLAS's own pool, which the library
 * keeps at 1 thread; for benchmarks that compare its threading with the
 * team's (examples/bench/step.lua).  Set it back to 1 after. */
static int l_blas_set_num_threads(lua_State *L) {
  int n = (int)bptt_checkint(L, 1, "bptt.core.blas_set_num_threads", "n", 1, BPTT_MAX_THREADS);
  openblas_set_num_threads(n);
  if (n == 1) stop_blas_pool(); /* back to 1: its threads would spin on */
  return 0;
}

/* bptt.core.packed_gemm([on]): whether the recurrent layers' per-step GEMMs
 * use packed.h's kernel (it needs AVX-512F); with a boolean, switches it on
 * or off first (specs and benchmarks compare it with BLAS). */
static int l_packed_gemm(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    if (!lua_isboolean(L, 1))
      return luaL_error(L, "bptt.core.packed_gemm: on must be true or false, got %s", luaL_typename(L, 1));
    bptt_packed_enable(lua_toboolean(L, 1));
  }
  lua_pushboolean(L, bptt_packed_available());
  return 1;
}

/* bptt.core.packed_matmul(a, b, out [, reps]): out = a b through packed.h's
 * kernel, reps times (default 1), the columns split over the library's
 * threads, b packed once before (for benchmarks: examples/bench/step.lua
 * times the per-step GEMMs with it).  float32; a contiguous M x K; b K x N,
 * contiguous or a transposed view of a contiguous N x K; out M x N
 * contiguous.  Returns out and the seconds the reps products took (the
 * packing not counted); an error where the kernel cannot run. */
typedef struct {
  const float *a, *b;
  float *c, *pk[BPTT_MAX_THREADS];
  int64_t M, N, K, ldb, reps;
  int transb, failed; /* failed: a thread could not allocate its buffer */
  double t0, t1;      /* the products' start and end, packing excluded */
} packed_job;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each thread packs its columns into a buffer of its own (allocated here,
 * for the threads the region really has), then all run the products. */
static void packed_task(void *ctx, int tid, int n) {
  packed_job *j = ctx;
  long long lo, hi;
  int64_t r, w;
  bptt_parallel_range(j->N, 16, tid, n, &lo, &hi);
  w = hi - lo;
  if (w > 0 && !(j->pk[tid] = bptt_malloc((size_t)bptt_packed_floats(j->K, w) * sizeof(float))))
    __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
  if (j->pk[tid]) bptt_pack_f32(j->pk[tid], j->transb ? j->b + lo * j->ldb : j->b + lo, j->ldb, j->transb, j->K, w);
  bptt_parallel_barrier(n);
  if (tid == 0) j->t0 = now_s();
  if (j->pk[tid] && !__atomic_load_n(&j->failed, __ATOMIC_RELAXED))
    for (r = 0; r < j->reps; r++) bptt_sgemm_packed(j->M, w, j->K, j->a, j->K, j->pk[tid], 0, j->c + lo, j->N);
  bptt_parallel_barrier(n);
  if (tid == 0) j->t1 = now_s();
}

static int l_packed_matmul(lua_State *L) {
  const char *fn = "bptt.core.packed_matmul";
  bptt_tensor *a = bptt_checktensor(L, 1, fn, "a"), *b = bptt_checktensor(L, 2, fn, "b");
  bptt_tensor *c = bptt_checktensor(L, 3, fn, "out");
  packed_job j;
  int k;
  if (!bptt_packed_available()) return luaL_error(L, "%s: the packed kernel cannot run here (no AVX-512F, or off)", fn);
  if (a->dtype != BPTT_FLOAT32 || b->dtype != BPTT_FLOAT32 || c->dtype != BPTT_FLOAT32 || a->ndim != 2 ||
      b->ndim != 2 || c->ndim != 2)
    return luaL_error(L, "%s: a, b and out must be 2-d float32", fn);
  if (!bptt_tensor_is_contiguous(a) || !bptt_tensor_is_contiguous(c) || b->size[0] != a->size[1] ||
      c->size[0] != a->size[0] || c->size[1] != b->size[1])
    return luaL_error(L, "%s: a (M x K) and out (M x N) must be contiguous, b K x N", fn);
  memset(&j, 0, sizeof j);
  j.M = a->size[0], j.K = a->size[1], j.N = b->size[1];
  j.reps = lua_isnoneornil(L, 4) ? 1 : bptt_checkint(L, 4, fn, "reps", 1, 1000000000);
  if (b->stride[1] == 1)
    j.transb = 0, j.ldb = b->stride[0];
  else if (b->stride[0] == 1)
    j.transb = 1, j.ldb = b->stride[1];
  else
    return luaL_error(L, "%s: b must be contiguous or a transposed contiguous matrix", fn);
  j.a = bptt_tensor_data(a), j.b = bptt_tensor_data(b), j.c = bptt_tensor_data(c);
  bptt_parallel_run(packed_task, &j, bptt_parallel_threads());
  for (k = 0; k < BPTT_MAX_THREADS; k++) bptt_free(j.pk[k]);
  if (j.failed) return luaL_error(L, "%s: out of memory", fn);
  lua_settop(L, 3);
  lua_pushnumber(L, j.t1 - j.t0);
  return 2;
}

static int l_num_threads(lua_State *L) {
  lua_pushinteger(L, bptt_parallel_threads());
  return 1;
}

/* bptt.cpu_config(): {isa = the instruction set the kernels run ("avx512",
 * "avx2" or "generic": the CPU's best, or BPTT_ISA's choice when the module
 * loaded, capped at the CPU's), cpu = the CPU's best, packed_gemm = whether
 * the AVX-512 GEMM kernel runs} */
static int l_cpu_config(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, bptt_isa_name(bptt_isa_level()));
  lua_setfield(L, -2, "isa");
  lua_pushstring(L, bptt_isa_name(bptt_isa_cpu()));
  lua_setfield(L, -2, "cpu");
  lua_pushboolean(L, bptt_packed_available());
  lua_setfield(L, -2, "packed_gemm");
  return 1;
}

/* The options table of machine_peak / read_bandwidth at index 1 (none or
 * nil: all defaults); every key must be one of names (a typo is an error,
 * not a silent default). */
static void check_opts(lua_State *L, const char *fn, const char *const *names, const char *list) {
  if (lua_isnoneornil(L, 1)) return;
  if (!lua_istable(L, 1)) luaL_error(L, "%s: opts must be a table, got %s", fn, luaL_typename(L, 1));
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int k, known = 0;
    lua_pop(L, 1);
    for (k = 0; names[k]; k++)
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), names[k]) == 0) known = 1;
    if (!known)
      luaL_error(L, "%s: unknown option %s (the options are %s)", fn,
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1), list);
  }
}

/* opts[name] pushed (nil when there is no table) */
static int get_opt(lua_State *L, const char *name) {
  if (lua_istable(L, 1))
    lua_getfield(L, 1, name);
  else
    lua_pushnil(L);
  return lua_isnil(L, -1);
}

/* threads (default: the team's size now) and seconds (default def) */
static void peak_opts(lua_State *L, const char *fn, double def, int *threads, double *seconds) {
  *threads = bptt_parallel_threads(), *seconds = def;
  if (!get_opt(L, "threads")) *threads = (int)bptt_checkint(L, -1, fn, "threads", 1, BPTT_MAX_THREADS);
  lua_pop(L, 1);
  if (!get_opt(L, "seconds")) {
    *seconds = bptt_checknum(L, -1, fn, "seconds");
    if (!(*seconds > 0 && *seconds <= 60)) bptt_error(L, "%s: seconds must be in (0, 60], got %g", fn, *seconds);
  }
  lua_pop(L, 1);
}

/* bptt.machine_peak{threads = the team's size, seconds = 0.2}: GFLOP/s of
 * that many threads running a float32 FMA-throughput loop in the kernels'
 * instruction set (peak.h), the best of a few runs that take about `seconds`
 * in all.  A diagnostic for benchmarks (examples/bench/step.lua). */
static int l_machine_peak(lua_State *L) {
  static const char *const names[] = { "threads", "seconds", NULL };
  const char *fn = "bptt.machine_peak";
  int threads;
  double seconds, r;
  check_opts(L, fn, names, "threads, seconds");
  peak_opts(L, fn, 0.2, &threads, &seconds);
  r = bptt_fma_peak(threads, seconds);
  if (!(r > 0)) return luaL_error(L, "%s: the loop could not be timed", fn);
  lua_pushnumber(L, r);
  return 1;
}

/* bptt.read_bandwidth{bytes = ..., threads = the team's size, seconds = 0.2}:
 * GB/s of that many threads reading a buffer of `bytes` over and over, each
 * its share (peak.h): the bandwidth of the cache level or memory that holds
 * a buffer that large.  A diagnostic for benchmarks (examples/bench/
 * sample.lua). */
static int l_read_bandwidth(lua_State *L) {
  static const char *const names[] = { "bytes", "threads", "seconds", NULL };
  const char *fn = "bptt.read_bandwidth";
  int threads;
  double seconds, r;
  int64_t bytes;
  check_opts(L, fn, names, "bytes, threads, seconds");
  if (get_opt(L, "bytes")) return luaL_error(L, "%s: bytes must be given (a whole number >= 64)", fn);
  bytes = bptt_checkint(L, -1, fn, "bytes", 64, INT64_MAX);
  lua_pop(L, 1);
  if ((uint64_t)bytes > (uint64_t)SIZE_MAX) return bptt_error(L, "%s: bytes %lld is too large", fn, (long long)bytes);
  peak_opts(L, fn, 0.2, &threads, &seconds);
  r = bptt_read_bandwidth((size_t)bytes, threads, seconds);
  if (!(r > 0)) return bptt_error(L, "%s: cannot allocate a buffer of %lld bytes", fn, (long long)bytes);
  lua_pushnumber(L, r);
  return 1;
}

static int l_blas_config(lua_State *L) {
  lua_pushstring(L, openblas_get_config());
  return 1;
}

/* bptt.clock(): seconds on a monotonic wall clock (os.clock() is CPU time,
 * summed over threads, and says nothing of elapsed time). */
static int l_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)now_s());
  return 1;
}

static const luaL_Reg functions[] = { { "clock", l_clock },
                                      { "set_num_threads", l_set_num_threads },
                                      { "num_threads", l_num_threads },
                                      { "blas_config", l_blas_config },
                                      { "cpu_config", l_cpu_config },
                                      { "machine_peak", l_machine_peak },
                                      { "read_bandwidth", l_read_bandwidth },
                                      { "blas_set_num_threads", l_blas_set_num_threads },
                                      { "packed_gemm", l_packed_gemm },
                                      { "packed_matmul", l_packed_matmul },
                                      { NULL, NULL } };

/* The team's workers (parallel.c) run this library's code and outlive any
 * Lua state, but lua_close unloads C modules (dlclose): pin the library in
 * the process so that its code stays mapped. */
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)pin_library, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

/* OpenBLAS's pool threads, started when OpenBLAS loads, spin (sched_yield)
 * for a while after their last job before they sleep: ~0.5 s here, during
 * which they take cycles from the team's threads (7-10% of a training step
 * on 2 cores).  OpenBLAS runs on 1 thread from now on, so its pool is
 * stopped, through its blas_thread_shutdown_ where the library has one
 * (OpenBLAS builds with pthreads; looked up, not linked, so that any other
 * BLAS still loads).  OpenBLAS starts the pool again by itself if it is
 * later given more threads (bptt.core.blas_set_num_threads). */
static void stop_blas_pool(void) {
  void *f = dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
  if (f) ((int (*)(void))(uintptr_t)f)();
}

/* A positive whole number in the environment variable, else 0. */
static int env_count(const char *name) {
  const char *v = getenv(name);
  char *end;
  long n;
  if (v == NULL || *v == '\0') return 0;
  n = strtol(v, &end, 10);
  return *end == '\0' && n > 0 && n <= BPTT_MAX_THREADS ? (int)n : 0;
}

/* The team's first size: as large as OpenBLAS's pool would be.  lua/bptt/
 * init.lua loads this module with OPENBLAS_NUM_THREADS=1, so that OpenBLAS
 * starts no pool at all, and passes what the variable said before (maybe
 * nothing) in BPTT_OPENBLAS_NUM_THREADS; OpenBLAS's own rule then gives the
 * size: OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS, else the
 * cores, at most the cores.  Loaded some other way, OpenBLAS's count. */
static int first_team_size(void) {
  int procs = openblas_get_num_procs(), n;
  if (getenv("BPTT_OPENBLAS_NUM_THREADS") == NULL) return openblas_get_num_threads();
  n = env_count("BPTT_OPENBLAS_NUM_THREADS");
  if (n == 0) n = env_count("GOTO_NUM_THREADS");
  if (n == 0) n = env_count("OMP_NUM_THREADS");
  if (n == 0 || (procs > 0 && n > procs)) n = procs;
  return n > 0 ? n : 1;
}

/* OpenBLAS maps a work buffer (128 MB of address space on x86-64 builds)
 * at its first product, and when the mapping fails it tries again, forever,
 * at 100% CPU.  Under a tight address-space limit (ulimit -v) that is a hang
 * at the first matmul, or -- in a pool thread -- at load and at exit.  So
 * the load maps that much itself first (nothing is touched; unmapped at
 * once), and if it cannot, fails with a clear error instead; if it can, a
 * 1 x 1 product makes OpenBLAS take its buffer now, which it keeps and
 * reuses.  Returns 0, or the errno of the failed mapping. */
#define BLAS_BUFFER_BYTES ((size_t)132 << 20)
static int claim_blas_buffer(void) {
  float a = 1, b = 1, c = 0;
  double ad = 1, bd = 1, cd = 0;
  void *p = mmap(NULL, BLAS_BUFFER_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return errno ? errno : ENOMEM;
  munmap(p, BLAS_BUFFER_BYTES);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0, &ad, 1, &bd, 1, 0.0, &cd, 1);
  return 0;
}

int luaopen_bptt_core(lua_State *L) {
  static int once = 0;
  if (!once) {
    /* BPTT_ISA=avx512|avx2|generic: the kernels' instruction set (isa.h),
     * capped at the CPU's; read once, before any kernel runs */
    const char *isa = getenv("BPTT_ISA");
    if (isa && *isa) {
      int level = bptt_isa_from_name(isa);
      if (level < 0) return luaL_error(L, "bptt: BPTT_ISA must be avx512, avx2 or generic (or unset), got '%s'", isa);
      bptt_isa_set(level);
    }
    int e = claim_blas_buffer();
    if (e != 0) /* before anything waits on OpenBLAS's threads */
      return luaL_error(L,
                        "bptt.core: cannot load: OpenBLAS needs %d MB of address space for its work buffer and "
                        "cannot map it (%s; ulimit -v?); without it every matrix product would hang",
                        (int)(BLAS_BUFFER_BYTES >> 20), strerror(e));
    /* the team starts as large as OpenBLAS's pool would, and takes over
     * from it: OpenBLAS runs on 1 thread */
    pin_library();
    bptt_parallel_set_threads(first_team_size());
    openblas_set_num_threads(1);
    stop_blas_pool();
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
