/*
 * peak.h -- the machine's limits, measured: the float32 FMA throughput and the
 * read bandwidth of the library's thread team (parallel.h), for benchmarks
 * that compare a kernel's speed with what the cores and the memory can give
 * (examples/bench/step.lua, sample.lua).
 *
 *   bptt_fma_peak(n, s)          GFLOP/s of n threads running independent
 *                                float32 FMAs (2 FLOPs per lane), ~s seconds
 *   bptt_read_bandwidth(b, n, s) GB/s of n threads reading a b-byte buffer
 *                                over and over (each its share), ~s seconds
 *
 * Both run the instruction set the kernels run (isa.h: 16-lane AVX-512F,
 * 8-lane AVX2 + FMA, or plain C), report the best of a few repetitions (a
 * figure of what the machine can do when nothing else takes it), set the
 * team to n threads for the measurement and back after, and must be called
 * as any region is: from the thread that owns the team, not inside one.
 * They are figures for a report, not for deciding anything at run time.
 */
#ifndef BPTT_PEAK_H
#define BPTT_PEAK_H

#include <stddef.h>

/* GFLOP/s (1e9 FLOPs per second) of nthreads threads (1..BPTT_MAX_THREADS;
 * fewer if the team cannot start them) each running a float32 multiply-add
 * loop with enough independent accumulators to fill the FMA pipes, for about
 * `seconds` (> 0) in all.  A negative value for an invalid argument. */
double bptt_fma_peak(int nthreads, double seconds);

/* GB/s (1e9 bytes per second) of nthreads threads reading a buffer of
 * `bytes` (>= 64; rounded down to whole floats) that each has written its
 * share of first, every thread summing its share with vector loads, for about
 * `seconds` (> 0) in all: the bandwidth of whatever level of the memory a
 * buffer of that size lives in.  A negative value when the buffer cannot be
 * allocated or an argument is invalid. */
double bptt_read_bandwidth(size_t bytes, int nthreads, double seconds);

#endif
