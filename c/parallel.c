/*
 * parallel.c -- the thread team of parallel.h: POSIX threads, GCC atomics.
 *
 * A region: the caller publishes (fn, ctx, n), bumps `gen` (release) and
 * wakes sleeping workers; each worker sees the new gen (acquire), runs fn if
 * its tid < n, and counts itself into `done`.  The caller runs tid 0, then
 * waits for every started worker to be counted.  Workers spin on gen for a
 * while before they sleep on the condition variable, so the regions of one
 * training step (a few per layer) find them awake.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)

/* spins before a waiting thread yields (barrier, caller) or sleeps (worker) */
#define SPINS_BEFORE_YIELD 4000
#define SPINS_BEFORE_SLEEP 200000

static int team_size = 1;    /* set_threads; workers 1..team_size-1 used */
static int started = 0;      /* workers running: tids 1..started */
static pthread_t workers[BPTT_MAX_THREADS];

/* the region in flight, published by gen */
static bptt_task task_fn;
static void *task_ctx;
static int task_n;
static unsigned gen = 0;
static int done = 0;
static int sleepers = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

/* the barrier: arrivals, and a generation that its last arrival bumps */
static int bar_count = 0;
static unsigned bar_gen = 0;

static void relax(long *spins) {
  if (++*spins < SPINS_BEFORE_YIELD) CPU_RELAX();
  else sched_yield();
}

/* gen when the workers were created: a new worker may first run after the
 * region that follows has already bumped gen, so it must not read gen */
static unsigned gen_at_create = 0;

static void *worker_main(void *arg) {
  int tid = (int)(intptr_t)arg;
  unsigned seen = gen_at_create;  /* pthread_create orders the write before */
  for (;;) {
    unsigned g;
    long spins = 0;
    while ((g = LOAD(&gen)) == seen) {
      if (++spins < SPINS_BEFORE_SLEEP) {
        CPU_RELAX();
        continue;
      }
      pthread_mutex_lock(&lock);
      sleepers++;
      while (LOAD(&gen) == seen) pthread_cond_wait(&wake, &lock);
      sleepers--;
      pthread_mutex_unlock(&lock);
    }
    seen = g;
    if (tid < task_n) task_fn(task_ctx, tid, task_n);
    ADD(&done, 1);
  }
  return NULL;
}

int bptt_parallel_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > BPTT_MAX_THREADS) n = BPTT_MAX_THREADS;
  team_size = n;
  return n;
}

int bptt_parallel_threads(void) { return team_size; }

/* Starts workers up to tid n-1; returns how many threads a region can use. */
static int ensure_workers(int n) {
  while (started < n - 1) {
    pthread_attr_t attr;
    int ok;
    gen_at_create = gen;          /* no region is in flight here */
    if (pthread_attr_init(&attr) != 0) break;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    ok = pthread_create(&workers[started + 1], &attr, worker_main, (void *)(intptr_t)(started + 1)) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) break;
    started++;
  }
  return started + 1 < n ? started + 1 : n;
}

int bptt_parallel_run(bptt_task fn, void *ctx, int n) {
  int k;
  long spins = 0;
  if (n > team_size) n = team_size;
  if (n > 1) n = ensure_workers(n);
  if (n <= 1) {
    fn(ctx, 0, 1);
    return 1;
  }
  task_fn = fn, task_ctx = ctx, task_n = n;
  STORE(&done, 0);
  k = started;                  /* every started worker counts itself in */
  ADD(&gen, 1u);
  pthread_mutex_lock(&lock);
  if (sleepers) pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  fn(ctx, 0, n);
  while (LOAD(&done) != k) relax(&spins);
  return n;
}

void bptt_parallel_barrier(int n) {
  unsigned g;
  long spins = 0;
  if (n <= 1) return;
  g = LOAD(&bar_gen);
  if (ADD(&bar_count, 1) == n) {
    STORE(&bar_count, 0);
    ADD(&bar_gen, 1u);
    return;
  }
  while (LOAD(&bar_gen) == g) relax(&spins);
}

void bptt_parallel_range(long long total, long long align, int tid, int n, long long *lo, long long *hi) {
  long long chunk, a;
  if (align < 1) align = 1;
  if (n < 1) n = 1;
  chunk = (total + n - 1) / n;
  chunk = (chunk + align - 1) / align * align;
  a = chunk * tid;
  *lo = a < total ? a : total;
  *hi = a + chunk < total ? a + chunk : total;
}
