/*
 * isa.h -- which instruction set the hot kernels run: AVX-512F, AVX2 or
 * baseline x86-64 ("generic").
 *
 * BPTT_KERNEL / BPTT_KERNEL_VOID before a hot elementwise function compile
 * its body three times, once per instruction set, and call the copy for
 * bptt_isa_level(); packed.c runs its AVX-512 GEMM only at BPTT_ISA_AVX512.
 * The level is the best the CPU has unless the module was told less when it
 * loaded (BPTT_ISA=avx512|avx2|generic, capped at the CPU's; lbptt.c), so
 * that a test can run the AVX2 or baseline code on an AVX-512 machine.  One
 * load and compare per call, not per element.  -DBPTT_NO_CLONES (or a
 * compiler or CPU family without the target attribute) gives one plain copy
 * and the generic level.
 */
#ifndef BPTT_ISA_H
#define BPTT_ISA_H

enum { BPTT_ISA_GENERIC = 0, BPTT_ISA_AVX2 = 1, BPTT_ISA_AVX512 = 2, BPTT_NISA = 3 };

/* The level in use (decided on first use: bptt_isa_cpu(), unless
 * bptt_isa_set came first). */
int bptt_isa_level(void);
/* The best level this CPU and this build can run. */
int bptt_isa_cpu(void);
/* Sets the level, capped at bptt_isa_cpu(); returns the level in use.  Call
 * it before any kernel runs (the module does, when it loads). */
int bptt_isa_set(int level);
/* "avx512", "avx2", "generic"; and back (-1 for an unknown name). */
const char *bptt_isa_name(int level);
int bptt_isa_from_name(const char *name);

#if defined(__GNUC__) && defined(__x86_64__) && !defined(BPTT_NO_CLONES)
#define BPTT_HAVE_CLONES 1

extern int bptt_isa_level_; /* core.c; -1 until decided */

static inline int bptt_isa_now(void) {
  int l = __atomic_load_n(&bptt_isa_level_, __ATOMIC_RELAXED);
  return l >= 0 ? l : bptt_isa_level();
}

#define BPTT_CAT_(a, b) a##b
#define BPTT_CAT(a, b) BPTT_CAT_(a, b)

/* BPTT_KERNEL(double, FN(rows), (const float *x, int64_t n), (x, n)) { body }
 * defines `static double FN(rows)(const float *x, int64_t n)`: the body goes
 * into an always-inline function that three wrappers, compiled for
 * AVX-512F, AVX2 and the baseline, inline and vectorize each for its own
 * instruction set (the BPTT_ROW helpers the body calls as well); `rows`
 * picks the wrapper.  BPTT_KERNEL_VOID(name, params, args) for a void one.
 * The three copies are the same arithmetic in the same order (no FMA
 * contraction under -std=c99; no reassociation), so they give the same bits. */
#define BPTT_KERNEL_(ret, RETURN, name, params, args)                                                                  \
  static inline __attribute__((always_inline)) ret BPTT_CAT(name, _body) params;                                       \
  __attribute__((target("avx512f"))) static ret BPTT_CAT(name, _avx512) params { RETURN BPTT_CAT(name, _body) args; }  \
  __attribute__((target("avx2"))) static ret BPTT_CAT(name, _avx2) params { RETURN BPTT_CAT(name, _body) args; }       \
  static ret BPTT_CAT(name, _base) params { RETURN BPTT_CAT(name, _body) args; }                                       \
  static ret name params {                                                                                             \
    int isa_ = bptt_isa_now();                                                                                         \
    if (isa_ == BPTT_ISA_AVX512)                                                                                       \
      RETURN BPTT_CAT(name, _avx512) args;                                                                             \
    else if (isa_ == BPTT_ISA_AVX2)                                                                                    \
      RETURN BPTT_CAT(name, _avx2) args;                                                                               \
    else                                                                                                               \
      RETURN BPTT_CAT(name, _base) args;                                                                               \
  }                                                                                                                    \
  static inline __attribute__((always_inline)) ret BPTT_CAT(name, _body) params
#define BPTT_KERNEL(ret, name, params, args) BPTT_KERNEL_(ret, return, name, params, args)
#define BPTT_KERNEL_VOID(name, params, args) BPTT_KERNEL_(void, , name, params, args)

#else
#define BPTT_KERNEL(ret, name, params, args) static ret name params
#define BPTT_KERNEL_VOID(name, params, args) static void name params
#endif

/* BPTT_ROW for the per-row loops that the kernels call: inlined into every
 * copy, where the loop is then vectorized for that copy's instruction set. */
#if defined(__GNUC__)
#define BPTT_ROW static inline __attribute__((always_inline))
#else
#define BPTT_ROW static inline
#endif

#endif
