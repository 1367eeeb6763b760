/*
 * gemm.h -- the library's GEMM: CBLAS's row-major sgemm/dgemm, split over
 * the thread team (parallel.h).
 *
 * OpenBLAS itself runs single-threaded (the binding sets it to 1 thread when
 * it loads): every parallel GEMM of the library goes through here and splits
 * its output into row blocks (column blocks when it has few rows), each a
 * single-threaded call on a team thread: float32 products of at least 16
 * rows and 1 MFLOP with op(A) = A, or with op(A) = A^T and at most 128 rows
 * or columns, to packed.h's AVX-512 kernel (where the CPU has it), the rest
 * to OpenBLAS.  One set of threads, never two
 * pools competing for the cores.  Small products (under about 4 MFLOP) run
 * on the caller alone.  Each output element is computed by one call, so the
 * thread count changes only how the BLAS kernel blocks its loops.
 *
 * Same arguments as cblas_sgemm/cblas_dgemm with CblasRowMajor; rows,
 * columns and leading dimensions as int, as there.
 */
#ifndef BPTT_GEMM_H
#define BPTT_GEMM_H

#include "tensor.h"

void bptt_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc);
void bptt_dgemm(int transa, int transb, int M, int N, int K, double alpha, const double *A, int lda, const double *B,
                int ldb, double beta, double *C, int ldc);

/* One thread's float32 GEMM (no split), the same arguments: packed.h's
 * kernel, B packed on the way, where it applies (alpha 1, beta 0 or 1,
 * enough rows, op(A) = A or a narrow product, AVX-512F), else OpenBLAS's
 * cblas_sgemm.  For the
 * shares of the kernels that split their own products (nn.c, rnn.c). */
void bptt_sgemm_thread(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);

/* C (M x N, ldc) = op(A) op(B) + bias (N floats, in every row; NULL: 0), one
 * thread: the bits of filling C with the bias and then bptt_sgemm_thread
 * with beta 1, which is what it does where the packed kernel does not apply;
 * where it does, the kernel adds the bias as it stores C (no pass over C
 * first).  For the layers' y = x W^T + b. */
void bptt_sgemm_thread_bias(int transa, int transb, int M, int N, int K, const float *A, int lda, const float *B,
                            int ldb, const float *bias, float *C, int ldc);
/* The same in float64: the fill, then cblas_dgemm. */
void bptt_dgemm_thread_bias(int transa, int transb, int M, int N, int K, const double *A, int lda, const double *B,
                            int ldb, const double *bias, double *C, int ldc);

/* One thread's float32 GEMV, y (1 x rows or cols) = op(W) x: W row-major
 * (rows x cols, ldw), op(W) = W (transw 0) or W^T, x with stride incx.
 * packed.h's bptt_sgemv_rows where it applies (W, contiguous x, alpha 1,
 * beta 0 or 1, AVX-512F), else cblas_sgemv.  bptt_sgemm_thread sends its
 * one-row products here. */
void bptt_sgemv_thread(int transw, int rows, int cols, float alpha, const float *W, int ldw, const float *x, int incx,
                       float beta, float *y);

/* How the above split a product of `flops` FLOPs with an M x N output: the
 * threads to use (1: the caller alone) and *by_rows, whether the output is
 * split by rows (else by columns).  For kernels that run their own GEMM
 * shares in a region of their own (nn.c's Linear). */
int bptt_gemm_threads(double flops, long long M, long long N, int *by_rows);

/* C (M,N) = A (M,K) B (K,N), float32 or float64, C contiguous and not
 * overlapping A or B.  A and B may be any 2-d views; a view whose inner
 * stride is not 1 in either orientation is first copied into *scratch*, a
 * caller-owned buffer of at least bptt_matmul_scratch_bytes(A, B) bytes
 * (may be NULL when that is 0). */
int64_t bptt_matmul_scratch_bytes(const bptt_tensor *a, const bptt_tensor *b);
int bptt_matmul(const bptt_tensor *c, const bptt_tensor *a, const bptt_tensor *b, void *scratch);

#endif
