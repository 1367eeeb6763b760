/*
 * packed.h -- float32 GEMM against a matrix packed once, for the per-step
 * GEMMs of the recurrent layers.
 *
 * A recurrent layer multiplies by the same W_hh at every step of a sequence
 * (h_{t-1} W_hh^T forward, dG_t W_hh backward), each time with few rows
 * (B).  A BLAS GEMM packs its operands into its own layout on every call,
 * which at B = 32 costs about as much as a tenth of the arithmetic.  Here
 * the weights are packed once per sequence (per layer call) into panels of
 * 16 columns,
 *     P[p][k][i] = op(B)[k][16p + i]     (0 past column N)
 * and each step runs an AVX-512 kernel over 8-row x 32-column tiles, the
 * weights streaming from the panel, the rows of A broadcast.  Each output
 * element is one sum over k = 0..K-1 in order, whatever the tiling or the
 * thread that computes it.
 *
 * The kernel needs AVX-512F; bptt_packed_available() says whether this CPU
 * has it, BPTT_ISA did not ask for less (isa.h) and the kernel is not
 * switched off.  Otherwise, and for float64,
 * the callers use BLAS.
 */
#ifndef BPTT_PACKED_H
#define BPTT_PACKED_H

#include <stdint.h>

/* Floats of a packed K x N matrix. */
int64_t bptt_packed_floats(int64_t K, int64_t N);

/* P (bptt_packed_floats(K, N), 64-byte aligned) = op(B) packed, op(B) K x N:
 * B is N x K (row-major, ldb) when transb, else K x N. */
void bptt_pack_f32(float *P, const float *B, int64_t ldb, int transb, int64_t K, int64_t N);

/* C (M x N, row-major, ldc) = A (M x K, lda) P + beta C, beta 0 or 1 (beta 0
 * does not read C).  Only when bptt_packed_available(). */
void bptt_sgemm_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *P, float beta,
                       float *C, int64_t ldc);

/* C (M x N, ldc) = op(A) (M x K) op(B) + beta C, beta 0 or 1; with beta 0
 * and a bias (N floats; NULL: none), C = op(A) op(B) + bias in every row,
 * the bits of filling C with the bias and adding the product onto it.
 * op(B) is packed on the way, 32 columns by 256 steps of k at a time (a buffer on
 * the stack): for the batched products, where B is used once.  op(A) is A
 * (M x K, lda), or with transa A^T (A K x M, lda: the weight gradients'
 * dG^T X), read in place.  op(B) as in bptt_pack_f32.  Each element is
 * the sum over k in blocks of 256 (each in order, then added onto C in
 * order; with transb, a last group of at most 2 columns in a pair of 32,
 * as the decoder's 65th output, is a dot product per element, 16 partial
 * sums over k in order, then summed in a fixed order): the same whatever
 * rows a caller hands each thread, or columns when split at multiples of
 * 32, and the same for either layout of A.
 * Only when bptt_packed_available(). */
void bptt_sgemm_packing(int transa, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                        int64_t ldb, int transb, float beta, const float *bias, float *C, int64_t ldc);

/* y (N) = W (N x K, row-major, ldw) x (K, contiguous) + beta y, beta 0 or
 * 1: one row of activations against weights read once (sampling, B = 1).
 * Eight rows of W at a time, each element 16 partial sums over k in order,
 * then added in a fixed order: the same for any rows a caller hands a
 * thread.  Only when bptt_packed_available(). */
void bptt_sgemv_rows(int64_t N, int64_t K, const float *W, int64_t ldw, const float *x, float beta, float *y);

/* 1 if the kernel can run here and is switched on. */
int bptt_packed_available(void);
/* Switches the kernel on (1, the default where the CPU has AVX-512F) or off
 * (0: BLAS everywhere; for tests and comparisons). */
void bptt_packed_enable(int on);

#endif
