/*
 * parallel.h -- the library's thread team: one region of work runs on n
 * threads at once (the caller is thread 0), with a barrier inside.
 *
 * Why a team of our own and not OpenBLAS's threads: a recurrent layer's
 * per-step GEMMs are small (B x GH x H, B = 32) and OpenBLAS gains only
 * 1.1-1.5x on them with 2 threads.  Splitting the batch rows instead --
 * each thread runs the whole recursion of its own rows, with no exchange
 * until it ends -- or, with few rows, the hidden units (one barrier per
 * time step) gives each thread a GEMM of its own at single-thread speed
 * (generic/rnn_bptt.c).  The team also splits every other GEMM (gemm.h);
 * OpenBLAS runs single-threaded, so that two pools of threads never compete
 * for the cores.
 *
 *   bptt_parallel_set_threads(n)    team size (1 = everything on the caller)
 *   bptt_parallel_run(fn, ctx, n)   fn(ctx, tid, n) on n <= team size threads,
 *                                   returns when every call has returned
 *   bptt_parallel_barrier(n)        inside fn: wait until all n reach it
 *
 * Workers are created on first use and sleep on a condition variable
 * between regions (after spinning briefly, so back-to-back regions cost no
 * wake-up).  The barrier spins, then yields.  fn must not call Lua or
 * start another region.  Not reentrant: one region at a time, from the
 * thread that owns the Lua state.
 */
#ifndef BPTT_PARALLEL_H
#define BPTT_PARALLEL_H

#include <stddef.h>

#define BPTT_MAX_THREADS 64

typedef void (*bptt_task)(void *ctx, int tid, int nthreads);

/* n in 1..BPTT_MAX_THREADS (clamped).  Returns the size now in force. */
int bptt_parallel_set_threads(int n);
int bptt_parallel_threads(void);

/* Runs fn(ctx, tid, n) for tid = 0..n-1, n clamped to 1..team size; tid 0
 * on the calling thread.  If a worker cannot be started the region runs
 * with fewer threads (n is what fn is told).  Returns the n used. */
int bptt_parallel_run(bptt_task fn, void *ctx, int n);

/* Inside a region of n threads: returns when all n threads have called it
 * (as many times).  A no-op for n = 1. */
void bptt_parallel_barrier(int n);

/* A buffer of at least nbytes (64-byte aligned) that belongs to team thread
 * tid, kept and reused from call to call and grown when asked for more; NULL
 * if it cannot be allocated (the old buffer is then kept).  Only thread tid
 * may use it, and only inside a region or from the caller between regions. */
void *bptt_parallel_scratch(int tid, size_t nbytes);

/* [*lo, *hi) of 0..total for thread tid of n, in chunks that are whole
 * multiples of align (but for the last): contiguous, disjoint, covering. */
void bptt_parallel_range(long long total, long long align, int tid, int n, long long *lo, long long *hi);

#endif
