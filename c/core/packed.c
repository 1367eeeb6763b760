/*
 * packed.c -- the packed float32 GEMM of packed.h.
 */
#include <string.h>

#include "isa.h"
#include "packed.h"

#define PANEL 16 /* columns per panel: one 512-bit vector */
#define ROWS 8   /* rows per tile */

int64_t bptt_packed_floats(int64_t K, int64_t N) { return (N + PANEL - 1) / PANEL * PANEL * K; }

void bptt_pack_f32(float *P, const float *B, int64_t ldb, int transb, int64_t K, int64_t N) {
  int64_t p, k, i, np = (N + PANEL - 1) / PANEL;
  for (p = 0; p < np; p++) {
    float *dst = P + p * PANEL * K;
    int64_t n0 = p * PANEL, w = N - n0 < PANEL ? N - n0 : PANEL;
    if (transb) { /* column n of op(B) is row n of B: read rows, write strided */
      if (w < PANEL) memset(dst, 0, (size_t)(PANEL * K) * sizeof(float));
      for (i = 0; i < w; i++) {
        const float *src = B + (n0 + i) * ldb;
        for (k = 0; k < K; k++) dst[k * PANEL + i] = src[k];
      }
    } else {
      for (k = 0; k < K; k++) {
        const float *src = B + k * ldb + n0;
        float *d = dst + k * PANEL;
        for (i = 0; i < w; i++) d[i] = src[i];
        for (; i < PANEL; i++) d[i] = 0;
      }
    }
  }
}

#ifdef BPTT_HAVE_CLONES
#include <immintrin.h>

static int switched_off = 0; /* bptt_packed_enable(0) */

/* on at isa.h's AVX-512 level (the CPU has it and BPTT_ISA did not ask for
 * less) unless switched off */
int bptt_packed_available(void) { return !switched_off && bptt_isa_now() >= BPTT_ISA_AVX512; }

void bptt_packed_enable(int on) { switched_off = !on; }

/* One tile: rows a[0..7] (duplicates past the last row), NP = 1 or 2
 * panels; stores rows < rows, columns < width of each panel (masks).
 * tile1/tile2 read row r's k-th element at a[r][k]; ptile1/ptile2 (op(A)
 * = A^T, row r of op(A) being column r of A) at a[0][k * as + r], the last
 * row again for r >= rows (never a column past A's last: it may be the last
 * element of its allocation): the same arithmetic in the same order.  A
 * bias (NULL: none; only with beta 0) is added to every row as it is
 * stored: what C = bias and then C += the product give, without a pass that
 * fills C first.  With beta 1, C's lines are fetched as the tile starts,
 * to be there when it is read back at the end (a recurrent layer's
 * pre-activations of a step lie far out in memory: 8-13% of a forward). */
#define TILE(NP, NAME, AT)                                                                                             \
  __attribute__((target("avx512f"))) static void NAME(int64_t K, const float *const *a, int64_t as, const float *P,    \
                                                      float beta, const float *bias, float *const *c, int rows,        \
                                                      __mmask16 m0, __mmask16 m1) {                                    \
    __m512 acc[ROWS][NP];                                                                                              \
    int64_t k;                                                                                                         \
    int r, q;                                                                                                          \
    (void)as;                                                                                                          \
    for (r = 0; r < ROWS; r++)                                                                                         \
      for (q = 0; q < NP; q++) acc[r][q] = _mm512_setzero_ps();                                                        \
    if (beta != 0)                                                                                                     \
      for (r = 0; r < rows; r++)                                                                                       \
        for (q = 0; q < NP; q++) {                                                                                     \
          _mm_prefetch((const char *)(c[r] + q * PANEL), _MM_HINT_T0);                                                 \
          _mm_prefetch((const char *)(c[r] + q * PANEL + PANEL - 1), _MM_HINT_T0);                                     \
        }                                                                                                              \
    for (k = 0; k < K; k++) {                                                                                          \
      __m512 b[NP];                                                                                                    \
      for (q = 0; q < NP; q++) b[q] = _mm512_loadu_ps(P + q * PANEL * K + k * PANEL);                                  \
      for (r = 0; r < ROWS; r++) {                                                                                     \
        __m512 x = _mm512_set1_ps(AT);                                                                                 \
        for (q = 0; q < NP; q++) acc[r][q] = _mm512_fmadd_ps(x, b[q], acc[r][q]);                                      \
      }                                                                                                                \
    }                                                                                                                  \
    for (r = 0; r < rows; r++)                                                                                         \
      for (q = 0; q < NP; q++) {                                                                                       \
        __mmask16 m = q ? m1 : m0;                                                                                     \
        float *dst = c[r] + q * PANEL;                                                                                 \
        __m512 v = acc[r][q];                                                                                          \
        if (beta != 0) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst));                                            \
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + q * PANEL));                                    \
        _mm512_mask_storeu_ps(dst, m, v);                                                                              \
      }                                                                                                                \
  }
TILE(1, tile1, a[r][k])
TILE(2, tile2, a[r][k])
TILE(1, ptile1, a[0][k * as + (r < rows ? r : rows - 1)])
TILE(2, ptile2, a[0][k * as + (r < rows ? r : rows - 1)])

static __mmask16 mask_of(int64_t w) { return w >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << w) - 1); }

/* The row tiles of M rows of A (lda) against one panel pair at P (K steps of
 * k; the second panel PANEL * K floats on), the pair's w <= 2 PANEL columns
 * of C (ldc) written. */
static void panel_pair(int64_t M, int64_t w, int64_t K, const float *A, int64_t lda, const float *P, float beta,
                       const float *bias, float *C, int64_t ldc) {
  int64_t i0;
  for (i0 = 0; i0 < M; i0 += ROWS) {
    const float *a[ROWS];
    float *c[ROWS];
    int r, rows = M - i0 < ROWS ? (int)(M - i0) : ROWS;
    for (r = 0; r < ROWS; r++) a[r] = A + (i0 + (r < rows ? r : rows - 1)) * lda;
    for (r = 0; r < rows; r++) c[r] = C + (i0 + r) * ldc;
    if (w > PANEL)
      tile2(K, a, 0, P, beta, bias, c, rows, 0xFFFF, mask_of(w - PANEL));
    else
      tile1(K, a, 0, P, beta, bias, c, rows, mask_of(w), 0);
  }
}

/* panel_pair for op(A) = A^T (A K x M, lda): row i of op(A), element k,
 * at A[k lda + i]. */
static void panel_pair_at(int64_t M, int64_t w, int64_t K, const float *A, int64_t lda, const float *P, float beta,
                          const float *bias, float *C, int64_t ldc) {
  int64_t i0;
  for (i0 = 0; i0 < M; i0 += ROWS) {
    const float *a[1];
    float *c[ROWS];
    int r, rows = M - i0 < ROWS ? (int)(M - i0) : ROWS;
    a[0] = A + i0;
    for (r = 0; r < rows; r++) c[r] = C + (i0 + r) * ldc;
    if (w > PANEL)
      ptile2(K, a, lda, P, beta, bias, c, rows, 0xFFFF, mask_of(w - PANEL));
    else
      ptile1(K, a, lda, P, beta, bias, c, rows, mask_of(w), 0);
  }
}

/* Panels (of the weights) outside, row tiles inside: each pair of panels
 * is read from memory once per call and then from the L1 cache for every
 * tile of rows; the rows (a B x K block of activations) stay in L2. */
void bptt_sgemm_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *P, float beta,
                       float *C, int64_t ldc) {
  int64_t n0;
  for (n0 = 0; n0 < N; n0 += 2 * PANEL)
    panel_pair(M, N - n0 < 2 * PANEL ? N - n0 : 2 * PANEL, K, A, lda, P + n0 * K, beta, NULL, C + n0, ldc);
}

/* The operand blocks of bptt_sgemm_packing: KC steps of k (a block of B's
 * panel pair, 32 KB, stays in the L1 cache), MC rows of A (at most 256 KB
 * of them, in the L2 cache, while every panel pair of B passes over them). */
#define KC 256
#define MC 256
/* With a short sum (K < KC: the input projections at D = 64, the decoder's
 * dx at V = 65) the same 256 KB of A hold more rows: B's panels are then
 * packed once per up to 65536 / K rows instead of once per MC rows.  The
 * row blocks do not change what is summed or in what order. */
static int64_t row_block(int64_t K) {
  int64_t kc = K < 1 ? 1 : K < KC ? K : KC, mc = (int64_t)MC * KC / kc;
  return mc / ROWS * ROWS;
}

/* op(A) = A^T (A K x M): the rows of op(A) are read where they lie, a
 * row tile's 8 elements of one k side by side in a row of A (packing them
 * first measured slower: a pass over A for each block, amortized over only
 * N / 32 panel pairs); B's panel pairs are packed as on the op(A) = A path,
 * and the same blocks of k are summed in the same order. */
static void packing_at(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                       int transb, float beta, const float *bias, float *C, int64_t ldc) {
  float buf[KC * 2 * PANEL] __attribute__((aligned(64)));
  int64_t i0, k0, n0;
  const int64_t MB = row_block(K);
  for (i0 = 0; i0 < M; i0 += MB) {
    int64_t mc = M - i0 < MB ? M - i0 : MB;
    for (k0 = 0; k0 < K; k0 += KC) {
      int64_t kc = K - k0 < KC ? K - k0 : KC;
      float b = k0 ? 1.0f : beta;
      for (n0 = 0; n0 < N; n0 += 2 * PANEL) {
        int64_t w = N - n0 < 2 * PANEL ? N - n0 : 2 * PANEL;
        bptt_pack_f32(buf, transb ? B + n0 * ldb + k0 : B + k0 * ldb + n0, ldb, transb, kc, w);
        panel_pair_at(mc, w, kc, A + k0 * lda + i0, lda, buf, b, bias && !k0 ? bias + n0 : NULL, C + i0 * ldc + n0,
                      ldc);
      }
    }
  }
}

/* A narrow last group of columns (the decoder's 65th output: one column in a
 * panel pair of 32) costs a tile row of broadcasts per step of k for one
 * useful column; with transb, column n of op(B) is row n of B, contiguous
 * in k as A's rows are, so those columns are dot products instead: 16
 * partial sums over k (k, k + 16, ... in order), then added together in a
 * fixed order.  The same arithmetic for any rows a thread gets, and for any
 * columns when a caller splits them at multiples of 32 (gemm.c does): the
 * last group is then the same in every split. */
#define DOT_MAX_COLS 2

/* sum_k a[k] b[k], k < K: 16 partial sums (k, k + 16, ... in order), then
 * _mm512_reduce_add_ps's fixed order.  Also the GEMV's sum of one row. */
__attribute__((target("avx512f"))) static inline float dot_k(const float *a, const float *b, int64_t K) {
  const __mmask16 tail = (__mmask16)((1u << (K % PANEL)) - 1);
  const int64_t kv = K - K % PANEL;
  __m512 acc = _mm512_setzero_ps();
  int64_t k;
  for (k = 0; k < kv; k += PANEL) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), acc);
  if (tail) acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + kv), _mm512_maskz_loadu_ps(tail, b + kv), acc);
  return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f"))) static void dot_cols(int64_t M, int64_t w, int64_t K, const float *A, int64_t lda,
                                                        const float *B, int64_t ldb, float beta, const float *bias,
                                                        float *C, int64_t ldc) {
  int64_t i, j;
  for (i = 0; i < M; i++)
    for (j = 0; j < w; j++) {
      float v = dot_k(A + i * lda, B + j * ldb, K);
      C[i * ldc + j] = beta != 0 ? C[i * ldc + j] + v : bias ? bias[j] + v : v;
    }
}

/* Eight rows: one load of x serves eight rows' FMAs (the weights stream
 * once; eight independent sums cover the FMA latency).  A row's sum is the
 * same arithmetic as dot_k's, which takes the rows left over. */
#define GEMV_ROWS 8
__attribute__((target("avx512f"))) void bptt_sgemv_rows(int64_t N, int64_t K, const float *W, int64_t ldw,
                                                        const float *x, float beta, float *y) {
  const __mmask16 tail = (__mmask16)((1u << (K % PANEL)) - 1);
  const int64_t kv = K - K % PANEL;
  int64_t n = 0, k;
  int r;
  for (; n + GEMV_ROWS <= N; n += GEMV_ROWS) {
    __m512 acc[GEMV_ROWS];
    for (r = 0; r < GEMV_ROWS; r++) acc[r] = _mm512_setzero_ps();
    for (k = 0; k < kv; k += PANEL) {
      __m512 xv = _mm512_loadu_ps(x + k);
      if (n + 2 * GEMV_ROWS <= N) /* the next eight rows' line at this k: there when their pass comes */
        for (r = 0; r < GEMV_ROWS; r++) _mm_prefetch((const char *)(W + (n + GEMV_ROWS + r) * ldw + k), _MM_HINT_T0);
      for (r = 0; r < GEMV_ROWS; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(W + (n + r) * ldw + k), xv, acc[r]);
    }
    if (tail) {
      __m512 xv = _mm512_maskz_loadu_ps(tail, x + kv);
      for (r = 0; r < GEMV_ROWS; r++)
        acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, W + (n + r) * ldw + kv), xv, acc[r]);
    }
    for (r = 0; r < GEMV_ROWS; r++) {
      float v = _mm512_reduce_add_ps(acc[r]);
      y[n + r] = beta != 0 ? y[n + r] + v : v;
    }
  }
  for (; n < N; n++) {
    float v = dot_k(W + n * ldw, x, K);
    y[n] = beta != 0 ? y[n] + v : v;
  }
}

void bptt_sgemm_packing(int transa, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                        int64_t ldb, int transb, float beta, const float *bias, float *C, int64_t ldc) {
  float buf[KC * 2 * PANEL] __attribute__((aligned(64)));
  int64_t i0, k0, n0, i;
  if (M <= 0 || N <= 0) return;
  if (beta != 0) bias = NULL; /* a bias only with beta 0 */
  if (K <= 0) {               /* an empty sum: C = beta C, or the bias */
    for (i = 0; beta == 0 && i < M; i++) {
      if (bias)
        memcpy(C + i * ldc, bias, (size_t)N * sizeof(float));
      else
        memset(C + i * ldc, 0, (size_t)N * sizeof(float));
    }
    return;
  }
  if (transa) {
    packing_at(M, N, K, A, lda, B, ldb, transb, beta, bias, C, ldc);
    return;
  }
  const int64_t MB = row_block(K);
  for (i0 = 0; i0 < M; i0 += MB) {
    int64_t mc = M - i0 < MB ? M - i0 : MB;
    for (k0 = 0; k0 < K; k0 += KC) {
      int64_t kc = K - k0 < KC ? K - k0 : KC;
      float b = k0 ? 1.0f : beta; /* later blocks add onto the first */
      for (n0 = 0; n0 < N; n0 += 2 * PANEL) {
        int64_t w = N - n0 < 2 * PANEL ? N - n0 : 2 * PANEL;
        if (transb && w <= DOT_MAX_COLS) {
          dot_cols(mc, w, kc, A + i0 * lda + k0, lda, B + n0 * ldb + k0, ldb, b, bias && !k0 ? bias + n0 : NULL,
                   C + i0 * ldc + n0, ldc);
          continue;
        }
        bptt_pack_f32(buf, transb ? B + n0 * ldb + k0 : B + k0 * ldb + n0, ldb, transb, kc, w);
        panel_pair(mc, w, kc, A + i0 * lda + k0, lda, buf, b, bias && !k0 ? bias + n0 : NULL, C + i0 * ldc + n0, ldc);
      }
    }
  }
}

#else /* no AVX-512 path in this build: BLAS everywhere */

int bptt_packed_available(void) { return 0; }
void bptt_sgemv_rows(int64_t N, int64_t K, const float *W, int64_t ldw, const float *x, float beta, float *y) {
  (void)N, (void)K, (void)W, (void)ldw, (void)x, (void)beta, (void)y;
}
void bptt_packed_enable(int on) { (void)on; }
void bptt_sgemm_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *P, float beta,
                       float *C, int64_t ldc) {
  (void)M, (void)N, (void)K, (void)A, (void)lda, (void)P, (void)beta, (void)C, (void)ldc;
}
void bptt_sgemm_packing(int transa, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                        int64_t ldb, int transb, float beta, const float *bias, float *C, int64_t ldc) {
  (void)transa, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)transb, (void)beta, (void)bias,
      (void)C, (void)ldc;
}

#endif
