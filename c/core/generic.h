/*
 * generic.h -- the one way a kernel written once over a type `real` becomes
 * a float32 and a float64 kernel (torch7's THGenerateFloatTypes.h scheme).
 *
 *   #define BPTT_GENERIC "generic/nn_layers.c"
 *   #include "generic.h"
 *
 * includes the generic file twice, with these names defined for each type:
 *   real          float | double
 *   FN(name)      name##_f32 | name##_f64
 *   UREAL         uint32_t | uint64_t: an unsigned integer of real's size
 *   BITS, BITS_ABS, BITS_INF   int32_t | int64_t, its bits but the sign, +inf's bits
 *   SQRT          sqrtf | sqrt
 *   EXPNEG(y)     e^y for y <= 0: bptt_expnegf (activations.h, vectorizable) | exp
 *   SIGMOID, TANH bptt_sigmoidf, bptt_tanhf (activations.h: inline, a few ulp,
 *                 vectorizable) | bptt_sigmoid, tanh (libm)
 *   TEAM_GEMM(o, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
 *                 cblas_?gemm's arguments; split over the thread team (gemm.h)
 *   GEMM(...)     the same arguments, on the calling thread alone (a team
 *                 thread's share): bptt_sgemm_thread (packed.h's kernel where
 *                 it applies) | cblas_dgemm
 *   GEMV          cblas_sgemv | cblas_dgemv
 *   USE_PACKED(B, T), PACK(P, W, ld, tr, K, N), PACKED_GEMM(M, N, K, A, lda, P, beta, C, ldc)
 *                 packed.h's per-step kernel for float32 (where it runs, B >= 4,
 *                 T >= 2) | 0 and no-ops
 * and undefines them (and BPTT_GENERIC) after.  No include guard on purpose.
 */
#ifndef BPTT_GENERIC
#error "generic.h: define BPTT_GENERIC, the file to instantiate"
#endif

#include <cblas.h>
#include <math.h>
#include <stdint.h>

#include "activations.h"
#include "gemm.h"
#include "packed.h"

/* ------------------------------------------------------------- float32 */
#define real float
#define FN(name) name##_f32
#define UREAL uint32_t
#define BITS int32_t
#define BITS_ABS INT32_MAX
#define BITS_INF INT32_C(0x7f800000) /* +inf; a NaN's (sign cleared) are above */
#define SQRT sqrtf
#define EXPNEG bptt_expnegf
#define SIGMOID bptt_sigmoidf
#define TANH bptt_tanhf
#define TEAM_GEMM(o, ta, tb, M, N, K, al, A, lda, B, ldb, be, C, ldc)                                                  \
  bptt_sgemm((ta) == CblasTrans, (tb) == CblasTrans, M, N, K, al, A, lda, B, ldb, be, C, ldc)
#define GEMM(o, ta, tb, M, N, K, al, A, lda, B, ldb, be, C, ldc)                                                       \
  bptt_sgemm_thread((ta) == CblasTrans, (tb) == CblasTrans, M, N, K, al, A, lda, B, ldb, be, C, ldc)
#define GEMM_BIAS(ta, tb, M, N, K, A, lda, B, ldb, bias, C, ldc)                                                       \
  bptt_sgemm_thread_bias(ta, tb, M, N, K, A, lda, B, ldb, bias, C, ldc)
#define GEMV(o, tw, rows, cols, al, W, ldw, x, incx, be, y, incy)                                                      \
  bptt_sgemv_thread((tw) == CblasTrans, rows, cols, al, W, ldw, x, incx, be, y)
#define USE_PACKED(B, T) (bptt_packed_available() && (B) >= 4 && (T) >= 2)
#define PACK(P, W, ld, tr, K, N) bptt_pack_f32(P, W, ld, tr, K, N)
#define PACKED_GEMM(M, N, K, A, lda, P, beta, C, ldc) bptt_sgemm_packed(M, N, K, A, lda, P, beta, C, ldc)
#include BPTT_GENERIC
#undef real
#undef FN
#undef UREAL
#undef BITS
#undef BITS_ABS
#undef BITS_INF
#undef SQRT
#undef EXPNEG
#undef SIGMOID
#undef TANH
#undef TEAM_GEMM
#undef GEMM
#undef GEMM_BIAS
#undef GEMV
#undef USE_PACKED
#undef PACK
#undef PACKED_GEMM

/* ------------------------------------------------------------- float64 */
#define real double
#define FN(name) name##_f64
#define UREAL uint64_t
#define BITS int64_t
#define BITS_ABS INT64_MAX
#define BITS_INF INT64_C(0x7ff0000000000000)
#define SQRT sqrt
#define EXPNEG exp
#define SIGMOID bptt_sigmoid
#define TANH tanh
#define TEAM_GEMM(o, ta, tb, M, N, K, al, A, lda, B, ldb, be, C, ldc)                                                  \
  bptt_dgemm((ta) == CblasTrans, (tb) == CblasTrans, M, N, K, al, A, lda, B, ldb, be, C, ldc)
#define GEMM_BIAS(ta, tb, M, N, K, A, lda, B, ldb, bias, C, ldc)                                                       \
  bptt_dgemm_thread_bias(ta, tb, M, N, K, A, lda, B, ldb, bias, C, ldc)
#define GEMM cblas_dgemm
#define GEMV cblas_dgemv
#define USE_PACKED(B, T) 0
#define PACK(P, W, ld, tr, K, N) ((void)(P))
#define PACKED_GEMM(M, N, K, A, lda, P, beta, C, ldc) ((void)(P))
#include BPTT_GENERIC
#undef real
#undef FN
#undef UREAL
#undef BITS
#undef BITS_ABS
#undef BITS_INF
#undef SQRT
#undef EXPNEG
#undef SIGMOID
#undef TANH
#undef TEAM_GEMM
#undef GEMM
#undef GEMM_BIAS
#undef GEMV
#undef USE_PACKED
#undef PACK
#undef PACKED_GEMM

#undef BPTT_GENERIC
