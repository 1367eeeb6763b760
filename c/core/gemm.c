/*
 * gemm.c -- GEMM split over the thread team (gemm.h).
 */
#include <cblas.h>
#include <string.h>

#include "gemm.h"
#include "tensor.h"
#include "packed.h"
#include "parallel.h"

/* below this many FLOPs per thread a split costs more than it saves */
#define MIN_FLOPS_PER_THREAD 2e6

typedef struct {
  int f64, ta, tb, M, N, K, lda, ldb, ldc, by_rows;
  int packed; /* float32 through packed.h's kernel: decided for the whole product, so that every share takes it */
  double alpha, beta;
  const void *A, *B;
  void *C;
} gemm_job;

/* the packed kernel from this many rows and FLOPs on: smaller products gain
 * nothing (16 x 65 x 256: 1.04x OpenBLAS; 2048 x 256 x 64: 1.8x) */
#define PACKING_MIN_ROWS 16
#define PACKING_MIN_FLOPS 1e6
/* with op(A) = A^T, only products this narrow in M or N: there the kernel
 * beats OpenBLAS (the weight gradients dG^T x at D = 64, 1.1-1.2x; the
 * decoder's 65 rows, 1.05-1.25x), while for M and N both larger OpenBLAS's
 * own packing of A^T wins (GH x H x T*B at H >= 256: 0.6-0.9x; measured
 * with examples/bench/gemm.lua) */
#define PACKING_AT_MAX_MN 128

void bptt_sgemv_thread(int transw, int rows, int cols, float alpha, const float *W, int ldw, const float *x, int incx,
                       float beta, float *y) {
  if (!transw && incx == 1 && alpha == 1 && (beta == 0 || beta == 1) && bptt_packed_available()) {
    bptt_sgemv_rows(rows, cols, W, ldw, x, beta, y);
    return;
  }
  cblas_sgemv(CblasRowMajor, transw ? CblasTrans : CblasNoTrans, rows, cols, alpha, W, ldw, x, incx, beta, y, 1);
}

/* the packed kernel takes op(A) op(B) of these */
static int packing_fits(int transa, int M, int N, int K, float alpha, float beta) {
  return alpha == 1 && (beta == 0 || beta == 1) && M >= PACKING_MIN_ROWS && 2.0 * M * N * K >= PACKING_MIN_FLOPS &&
         (!transa || M <= PACKING_AT_MAX_MN || N <= PACKING_AT_MAX_MN) && bptt_packed_available();
}

void bptt_sgemm_thread(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  if (M == 1 && transb && K > 0) { /* one row against W (N x K): each row of W read once */
    bptt_sgemv_thread(0, N, K, alpha, B, ldb, A, transa ? lda : 1, beta, C);
    return;
  }
  if (packing_fits(transa, M, N, K, alpha, beta)) {
    bptt_sgemm_packing(transa, M, N, K, A, lda, B, ldb, transb, beta, NULL, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              lda, B, ldb, beta, C, ldc);
}

/* C (M rows of N elements of es bytes, ldc apart) = the bias in every row,
 * or +0.0 */
static void fill_rows(void *C, int M, int N, int ldc, const void *bias, size_t es) {
  int i;
  for (i = 0; i < M; i++) {
    char *row = (char *)C + (size_t)i * ldc * es;
    if (bias)
      memcpy(row, bias, (size_t)N * es);
    else
      memset(row, 0, (size_t)N * es);
  }
}

void bptt_sgemm_thread_bias(int transa, int transb, int M, int N, int K, const float *A, int lda, const float *B,
                            int ldb, const float *bias, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (M > 1 && K > 0 && packing_fits(transa, M, N, K, 1, 0)) {
    bptt_sgemm_packing(transa, M, N, K, A, lda, B, ldb, transb, 0, bias, C, ldc);
    return;
  }
  /* C = the bias (or 0) in every row, then C += the product */
  fill_rows(C, M, N, ldc, bias, sizeof(float));
  if (K > 0) bptt_sgemm_thread(transa, transb, M, N, K, 1, A, lda, B, ldb, 1, C, ldc);
}

void bptt_dgemm_thread_bias(int transa, int transb, int M, int N, int K, const double *A, int lda, const double *B,
                            int ldb, const double *bias, double *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  fill_rows(C, M, N, ldc, bias, sizeof(double));
  if (K > 0)
    cblas_dgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, 1, A,
                lda, B, ldb, 1, C, ldc);
}

static void gemm_slice(const gemm_job *g, int i0, int m, int j0, int n) {
  /* rows i0.. of op(A) and C, columns j0.. of op(B) and C */
  long long ao = g->ta ? i0 : (long long)i0 * g->lda;
  long long bo = g->tb ? (long long)j0 * g->ldb : j0;
  long long co = (long long)i0 * g->ldc + j0;
  enum CBLAS_TRANSPOSE ta = g->ta ? CblasTrans : CblasNoTrans, tb = g->tb ? CblasTrans : CblasNoTrans;
  if (m <= 0 || n <= 0) return;
  if (g->packed) { /* any share, however small: the same sums as on one thread */
    bptt_sgemm_packing(g->ta, m, n, g->K, (const float *)g->A + ao, g->lda, (const float *)g->B + bo, g->ldb, g->tb,
                       (float)g->beta, NULL, (float *)g->C + co, g->ldc);
    return;
  }
  if (m == 1) { /* a GEMV reads B once instead of packing it first */
    enum CBLAS_TRANSPOSE t = g->tb ? CblasNoTrans : CblasTrans;
    int rows = g->tb ? n : g->K, cols = g->tb ? g->K : n, inc = g->ta ? g->lda : 1;
    if (g->f64)
      cblas_dgemv(CblasRowMajor, t, rows, cols, g->alpha, (const double *)g->B + bo, g->ldb, (const double *)g->A + ao,
                  inc, g->beta, (double *)g->C + co, 1);
    else
      bptt_sgemv_thread(t == CblasTrans, rows, cols, (float)g->alpha, (const float *)g->B + bo, g->ldb,
                        (const float *)g->A + ao, inc, (float)g->beta, (float *)g->C + co);
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
    /* columns at multiples of 32: packed.h's panel pairs, whose last group
     * is then the same in every split (its arithmetic depends on its width) */
    bptt_parallel_range(g->N, 32, tid, n, &lo, &hi);
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

void bptt_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
  gemm_job g = { 0, transa, transb, M, N, K, lda, ldb, ldc, 0, 0, alpha, beta, A, B, C };
  g.packed = K > 0 && packing_fits(transa, M, N, K, alpha, beta);
  gemm(&g);
}

void bptt_dgemm(int transa, int transb, int M, int N, int K, double alpha, const double *A, int lda, const double *B,
                int ldb, double beta, double *C, int ldc) {
  gemm_job g = { 1, transa, transb, M, N, K, lda, ldb, ldc, 0, 0, alpha, beta, A, B, C };
  gemm(&g);
}

/* --------------------------------------------- bptt_matmul: tensors in */

/* How BLAS can read a 2-d view (rows x cols): as row-major with leading
 * dimension ld (trans = 0), as the transpose of a row-major matrix
 * (trans = 1), or not at all (returns 0: copy it first). */
static int blas_layout(const bptt_tensor *t, int *trans, int64_t *ld) {
  int64_t rows = t->size[0], cols = t->size[1];
  if (t->stride[1] == 1 || cols == 1) {
    int64_t l = rows == 1 ? (cols > 1 ? cols : 1) : t->stride[0];
    if (l >= (cols > 1 ? cols : 1)) {
      *trans = 0, *ld = l;
      return 1;
    }
  }
  if (t->stride[0] == 1 || rows == 1) {
    int64_t l = cols == 1 ? (rows > 1 ? rows : 1) : t->stride[1];
    if (l >= (rows > 1 ? rows : 1)) {
      *trans = 1, *ld = l;
      return 1;
    }
  }
  return 0;
}

int64_t bptt_matmul_scratch_bytes(const bptt_tensor *a, const bptt_tensor *b) {
  int trans;
  int64_t ld, bytes = 0, es = (int64_t)bptt_dtype_size(a->dtype);
  if (a->ndim != 2 || b->ndim != 2) return 0;
  if (!blas_layout(a, &trans, &ld)) bytes += bptt_tensor_numel(a) * es + BPTT_ALIGN;
  if (!blas_layout(b, &trans, &ld)) bytes += bptt_tensor_numel(b) * es + BPTT_ALIGN;
  return bytes;
}

/* Copies t into contiguous memory at *scratch (advanced past it), returning a
 * header that describes the copy. */
static bptt_tensor to_scratch(const bptt_tensor *t, char **scratch, bptt_storage *st) {
  bptt_tensor c = *t;
  st->data = *scratch;
  st->nbytes = bptt_tensor_numel(t) * (int64_t)bptt_dtype_size(t->dtype);
  st->refcount = 1;
  c.storage = st;
  c.offset = 0;
  c.stride[0] = t->size[1], c.stride[1] = 1;
  bptt_tensor_copy(&c, t);
  *scratch += (st->nbytes + BPTT_ALIGN - 1) / BPTT_ALIGN * BPTT_ALIGN;
  return c;
}

int bptt_matmul(const bptt_tensor *c, const bptt_tensor *a, const bptt_tensor *b, void *scratch) {
  bptt_tensor ac = *a, bc = *b;
  bptt_storage sa, sb;
  char *scr = scratch;
  int64_t M, N, K, lda = 0, ldb = 0;
  int ta = 0, tb = 0;
  if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2) return BPTT_ESHAPE;
  if (a->dtype != b->dtype || a->dtype != c->dtype) return BPTT_EDTYPE;
  if (a->dtype == BPTT_INT32) return BPTT_EDTYPE;
  M = a->size[0], K = a->size[1], N = b->size[1];
  if (b->size[0] != K || c->size[0] != M || c->size[1] != N) return BPTT_ESHAPE;
  if (!bptt_tensor_is_contiguous(c)) return BPTT_EARG;
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) return BPTT_EOVERFLOW; /* BLAS takes int */
  if (M == 0 || N == 0) return BPTT_OK;
  if (K == 0) return bptt_tensor_fill(c, 0.0);
  if (!blas_layout(&ac, &ta, &lda)) {
    ac = to_scratch(a, &scr, &sa);
    blas_layout(&ac, &ta, &lda);
  }
  if (!blas_layout(&bc, &tb, &ldb)) {
    bc = to_scratch(b, &scr, &sb);
    blas_layout(&bc, &tb, &ldb);
  }
  if (lda > INT32_MAX || ldb > INT32_MAX) return BPTT_EOVERFLOW;
  if (a->dtype == BPTT_FLOAT32)
    bptt_sgemm(ta, tb, (int)M, (int)N, (int)K, 1.0f, bptt_tensor_data(&ac), (int)lda, bptt_tensor_data(&bc), (int)ldb,
               0.0f, bptt_tensor_data(c), (int)N);
  else
    bptt_dgemm(ta, tb, (int)M, (int)N, (int)K, 1.0, bptt_tensor_data(&ac), (int)lda, bptt_tensor_data(&bc), (int)ldb,
               0.0, bptt_tensor_data(c), (int)N);
  return BPTT_OK;
}
