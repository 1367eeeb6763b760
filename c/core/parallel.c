/*
 * parallel.c -- the thread team of parallel.h: POSIX threads, GCC atomics.
 *
 * Every wait (a worker for the next region, the caller for the end of one,
 * a thread at the barrier) is on a waitpoint: a generation counter that the
 * awaited event bumps.  The waiter spins on it for a little while -- the
 * usual case, a partner a few microseconds late, costs no system call --
 * then sleeps on a condition variable.  Sleeping matters on a shared
 * machine: when another process holds a core, a thread that spun until its
 * partner came back would take the core its partner needs.
 *
 * A region: the caller publishes (fn, ctx, n) and bumps `work`; each worker
 * runs fn if its tid < n and counts itself into `done`; the last one bumps
 * `finished`, which the caller waits for after running tid 0 itself.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "core.h"
#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

/* how long a waiter spins before it sleeps: 0.2 ms at the barrier and at
 * the end of a region, 2 ms between regions (those of one training step
 * follow each other closely, with the Lua side's serial work in between).
 * Waking a sleeping thread is slow on virtual machines (a halted vCPU:
 * 0.1 ms and more), so a wait of that order is better spent spinning. */
#define SPIN_SHORT_NS 200000L
#define SPIN_IDLE_NS 2000000L

typedef struct {
  unsigned gen;
  int sleepers;
  pthread_mutex_t lock;
  pthread_cond_t cond;
} waitpoint;

#define WAITPOINT_INIT                                                                                                 \
  { 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER }

/* Returns once w->gen differs from seen.  Sleepers register under the lock
 * and re-read gen after registering; bump() changes gen before it reads the
 * sleepers (all sequentially consistent), so either the waiter sees the new
 * gen or the bumper sees the sleeper and wakes it. */
static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void wait_for(waitpoint *w, unsigned seen, long spin_ns) {
  long long until = 0;
  long k;
  for (k = 0;; k++) {
    if (LOAD(&w->gen) != seen) return;
    CPU_RELAX();
    if ((k & 63) == 0) { /* the clock every 64 pauses (about a microsecond) */
      long long t = now_ns();
      if (until == 0)
        until = t + spin_ns;
      else if (t >= until)
        break;
    }
  }
  pthread_mutex_lock(&w->lock);
  ADD(&w->sleepers, 1);
  while (LOAD(&w->gen) == seen) pthread_cond_wait(&w->cond, &w->lock);
  ADD(&w->sleepers, -1);
  pthread_mutex_unlock(&w->lock);
}

static void bump(waitpoint *w) {
  ADD(&w->gen, 1u);
  if (LOAD(&w->sleepers) > 0) {
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
  }
}

static int team_size = 1; /* set_threads; workers 1..team_size-1 used */
static int started = 0;   /* workers running: tids 1..started */

/* the region in flight, published by bumping work */
static bptt_task task_fn;
static void *task_ctx;
static int task_n;
static int done = 0;
static waitpoint work = WAITPOINT_INIT, finished = WAITPOINT_INIT;

/* the barrier: arrivals, and the waitpoint its last arrival bumps */
static int bar_count = 0;
static waitpoint bar = WAITPOINT_INIT;

/* work.gen when the workers were created: a new worker may first run after
 * the region that follows has already bumped it, so it must not read it */
static unsigned gen_at_create = 0;

static void *worker_main(void *arg) {
  int tid = (int)(intptr_t)arg;
  unsigned seen = gen_at_create; /* pthread_create orders the write before */
  for (;;) {
    wait_for(&work, seen, SPIN_IDLE_NS);
    seen = LOAD(&work.gen);
    if (tid < task_n) task_fn(task_ctx, tid, task_n);
    if (ADD(&done, 1) == started) bump(&finished);
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
    pthread_t th;
    int ok;
    gen_at_create = work.gen; /* no region is in flight here */
    if (pthread_attr_init(&attr) != 0) break;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    ok = pthread_create(&th, &attr, worker_main, (void *)(intptr_t)(started + 1)) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) break;
    started++;
  }
  return started + 1 < n ? started + 1 : n;
}

int bptt_parallel_run(bptt_task fn, void *ctx, int n) {
  unsigned fin;
  if (n > team_size) n = team_size;
  if (n > 1) n = ensure_workers(n);
  if (n <= 1) {
    fn(ctx, 0, 1);
    return 1;
  }
  task_fn = fn, task_ctx = ctx, task_n = n;
  STORE(&done, 0);
  fin = LOAD(&finished.gen); /* every started worker counts itself in */
  bump(&work);
  fn(ctx, 0, n);
  wait_for(&finished, fin, SPIN_SHORT_NS);
  return n;
}

void bptt_parallel_barrier(int n) {
  unsigned g;
  if (n <= 1) return;
  g = LOAD(&bar.gen);
  if (ADD(&bar_count, 1) == n) {
    STORE(&bar_count, 0);
    bump(&bar);
    return;
  }
  wait_for(&bar, g, SPIN_SHORT_NS);
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

static struct {
  void *p;
  size_t n;
} scratch[BPTT_MAX_THREADS];

void *bptt_parallel_scratch(int tid, size_t nbytes) {
  void *p;
  if (tid < 0 || tid >= BPTT_MAX_THREADS) return NULL;
  if (scratch[tid].p && scratch[tid].n >= nbytes) return scratch[tid].p;
  p = bptt_malloc(nbytes);
  if (!p) return NULL;
  bptt_free(scratch[tid].p);
  scratch[tid].p = p, scratch[tid].n = nbytes;
  return p;
}
