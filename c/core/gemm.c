/*
 * gemm.c -- GEMM split over the thread team (gemm.h).
 */
#include <cblas.h>

#include "gemm.h"
#include "packed.h"
#include "parallel.h"

/* below this many FLOPs per thread a split costs more than it saves */
#define MIN_FLOPS_PER_THREAD 2e6

typedef struct {
  int f64, ta, tb, M, N, K, lda, ldb, ldc, by_rows;
  double alpha, beta;
  const void *A, *B;
  void *C;
} gemm_job;

/* the packed kernel from this many rows and FLOPs on: smaller products gain
 * nothing (16 x 65 x 256: 1.04x OpenBLAS; 2048 x 256 x 64: 1.8x) */
#define PACKING_MIN_ROWS 16
#define PACKING_MIN_FLOPS 1e6

void bptt_sgemm_thread(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  if (!transa && alpha == 1 && (beta == 0 || beta == 1) && M >= PACKING_MIN_ROWS &&
      2.0 * M * N * K >= PACKING_MIN_FLOPS && bptt_packed_available()) {
    bptt_sgemm_packing(M, N, K, A, lda, B, ldb, transb, beta, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

static void gemm_slice(const gemm_job *g, int i0, int m, int j0, int n) {
  /* rows i0.. of op(A) and C, columns j0.. of op(B) and C */
  long long ao = g->ta ? i0 : (long long)i0 * g->lda;
  long long bo = g->tb ? (long long)j0 * g->ldb : j0;
  long long co = (long long)i0 * g->ldc + j0;
  enum CBLAS_TRANSPOSE ta = g->ta ? CblasTrans : CblasNoTrans, tb = g->tb ? CblasTrans : CblasNoTrans;
  if (m <= 0 || n <= 0) return;
  if (m == 1) { /* a GEMV reads B once instead of packing it first */
    enum CBLAS_TRANSPOSE t = g->tb ? CblasNoTrans : CblasTrans;
    int rows = g->tb ? n : g->K, cols = g->tb ? g->K : n, inc = g->ta ? g->lda : 1;
    if (g->f64)
      cblas_dgemv(CblasRowMajor, t, rows, cols, g->alpha, (const double *)g->B + bo, g->ldb,
                  (const double *)g->A + ao, inc, g->beta, (double *)g->C + co, 1);
    else
      cblas_sgemv(CblasRowMajor, t, rows, cols, (float)g->alpha, (const float *)g->B + bo, g->ldb,
                  (const float *)g->A + ao, inc, (float)g->beta, (float *)g->C + co, 1);
    return;
  }
  if (g->f64)
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, g->K, g->alpha, (const double *)g->A + ao, g->lda,
                (const double *)g->B + bo, g->ldb, g->beta, (double *)g->C + co, g->ldc);
  else
    bptt_sgemm_thread(g->ta, g->tb, m, n, g->K, (float)g->alpha, (const float *)g->A + ao, g->lda,
                      (const float *)g->B + bo, g->ldb, (float)g->beta, (float *)g->C + co, g->ldc);
}

static void gemm_task(void *ctx, int tid, int n) {
  const gemm_job *g = ctx;
  long long lo, hi;
  if (g->by_rows) {
    bptt_parallel_range(g->M, 4, tid, n, &lo, &hi);
    gemm_slice(g, (int)lo, (int)(hi - lo), 0, g->N);
  } else {
    bptt_parallel_range(g->N, 16, tid, n, &lo, &hi);
    gemm_slice(g, 0, g->M, (int)lo, (int)(hi - lo));
  }
}

int bptt_gemm_threads(double flops, long long M, long long N, int *by_rows) {
  int n = bptt_parallel_threads();
  if (n > 1 && flops / MIN_FLOPS_PER_THREAD < n) n = (int)(flops / MIN_FLOPS_PER_THREAD);
  if (n < 1) n = 1;
  *by_rows = M >= N || M >= 64LL * n;
  return n;
}

static void gemm(gemm_job *g) {
  int n = bptt_gemm_threads(2.0 * g->M * g->N * g->K, g->M, g->N, &g->by_rows);
  if (n <= 1 || g->M <= 0 || g->N <= 0) {
    gemm_slice(g, 0, g->M, 0, g->N);
    return;
  }
  bptt_parallel_run(gemm_task, g, n);
}

void bptt_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
  gemm_job g = {0, transa, transb, M, N, K, lda, ldb, ldc, 0, alpha, beta, A, B, C};
  gemm(&g);
}

void bptt_dgemm(int transa, int transb, int M, int N, int K, double alpha, const double *A, int lda,
                const double *B, int ldb, double beta, double *C, int ldc) {
  gemm_job g = {1, transa, transb, M, N, K, lda, ldb, ldc, 0, alpha, beta, A, B, C};
  gemm(&g);
}
