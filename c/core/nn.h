/*
 * nn.h -- the non-recurrent layers: Linear, Embedding, CrossEntropy, MSE and
 * the dropout helper.  Plain C over contiguous row-major buffers; no Lua.
 *
 * Every kernel exists twice, _f32 (float) and _f64 (double), instantiated from
 * one source (generic/nn_layers.c).  Every kernel returns a bptt_err code (BPTT_OK on
 * success) and writes nothing on an error it detects, so a caller may raise
 * an error with its buffers intact.  Common codes:
 *   BPTT_EARG      a size < 0, a NULL buffer that holds elements, a bad
 *                  reduction or dropout probability;
 *   BPTT_EOVERFLOW a size product does not fit in int64, or a GEMM dimension
 *                  does not fit in BLAS's int;
 *   BPTT_ERANGE    a token id / class target out of range; its 0-based
 *                  position is stored in *bad_pos (when bad_pos is not NULL;
 *                  on any other outcome *bad_pos is set to -1).
 *
 * Sizes are int64_t.  Leading dimensions of a tensor (T x B x ...) are
 * flattened by the caller into the row count N.  Buffers do not overlap
 * unless a comment says so.  Parameter gradients are ACCUMULATED (+=): the
 * caller zeroes them (zero_grad); two backwards give twice the gradient.
 */
#ifndef BPTT_NN_H
#define BPTT_NN_H

#include "core.h"

/* ---------------------------------------------------------------- Linear
 * y (N,Out) = x (N,In) W^T + b     W (Out,In) is PyTorch's `weight`; b (Out) or NULL.
 * forward:  y is filled with b (or 0), then one GEMM with beta = 1.
 * backward: dx (N,In)    = dy (N,Out) W          (overwrites; dx NULL skips)
 *           dW (Out,In) += dy^T x                (one GEMM, beta = 1; NULL skips)
 *           db (Out)    += sum over rows of dy   (NULL skips)
 * Large products run in one region of the thread team (parallel.h): forward
 * splits the rows of y (each thread fills its rows with b, then its GEMM);
 * backward splits dx by rows, dW and db by columns.  db adds its rows in
 * order on any thread count; the BLAS's rounding may differ with the split.
 * (In and Out, not I and O: <complex.h>, pulled in by cblas.h, defines I.)
 * Cache: none besides x itself (backward rereads x for dW).
 */
int bptt_linear_forward_f32(const float *x, const float *W, const float *b, float *y, int64_t N, int64_t In,
                            int64_t Out);
int bptt_linear_forward_f64(const double *x, const double *W, const double *b, double *y, int64_t N, int64_t In,
                            int64_t Out);
int bptt_linear_backward_f32(const float *x, const float *W, const float *dy, float *dx, float *dW, float *db,
                             int64_t N, int64_t In, int64_t Out);
int bptt_linear_backward_f64(const double *x, const double *W, const double *dy, double *dx, double *dW, double *db,
                             int64_t N, int64_t In, int64_t Out);

/* ------------------------------------------------------------- Embedding
 * y (N,D) = W[id - 1]              ids (N) int32, 1-based in 1..V; W (V,D).
 * backward: dW[id - 1] += dy[row]  (repeated ids add up).
 * forward splits its rows over the thread team from N*D >= 32768; backward
 * adds the rows in order on the caller (the same bits on any thread count).
 * Both validate every id before writing anything: an id outside 1..V gives
 * BPTT_ERANGE with *bad_pos = position of the first such id (0-based), so the
 * binding can report ids[*bad_pos] and its position.
 * Cache: none besides ids.
 */
int bptt_embedding_forward_f32(const int32_t *ids, const float *W, float *y, int64_t N, int64_t V, int64_t D,
                               int64_t *bad_pos);
int bptt_embedding_forward_f64(const int32_t *ids, const double *W, double *y, int64_t N, int64_t V, int64_t D,
                               int64_t *bad_pos);
int bptt_embedding_backward_f32(const int32_t *ids, const float *dy, float *dW, int64_t N, int64_t V, int64_t D,
                                int64_t *bad_pos);
int bptt_embedding_backward_f64(const int32_t *ids, const double *dy, double *dW, int64_t N, int64_t V, int64_t D,
                                int64_t *bad_pos);

/* ------------------------------------------------------------------ Losses */
typedef enum {
  BPTT_LOSS_MEAN = 0, /* divide by the number of counted positions */
  BPTT_LOSS_SUM = 1
} bptt_loss_reduction;

/* ignore_index value meaning "ignore nothing".  Any other value, in range or
 * not (0 for a padding id is the usual choice), marks rows to skip. */
#define BPTT_NO_IGNORE INT32_MIN

/* ---------------------------------------------------------- CrossEntropy
 * Fused, stable log-softmax + NLL over N rows of C classes:
 *   m_i = max_j x_ij,   s_i = sum_j exp(x_ij - m_i)          (1 <= s_i <= C)
 *   log p_ij = (x_ij - m_i) - log s_i
 *   loss = sum over counted rows i of -log p_{i, t_i - 1}
 *          / count  (BPTT_LOSS_MEAN)   or   / 1  (BPTT_LOSS_SUM)
 * logits x (N,C); targets t (N) int32 in 1..C.  A row with t_i == ignore_index
 * contributes nothing and is not counted (pass BPTT_NO_IGNORE for none).
 * When count == 0 (every row ignored, or N == 0) the loss is 0 and the
 * gradient is 0 -- PyTorch gives NaN for mean; we choose 0 so that an
 * all-padding batch does not poison training.
 *
 * forward: *loss (accumulated in double, in an order that does not depend
 *   on the thread count: the same bits on any).  cache (N,2) of the logits' type,
 *   caller-owned: cache[2i] = m_i, cache[2i+1] = log s_i (both 0 on ignored
 *   rows).  m and log s are kept apart, not summed into one log-sum-exp, so
 *   that huge logits (m = 1e30, where m + log s rounds to m) still give exact
 *   probabilities.  Optional *count (may be NULL) = number of counted rows.
 * backward: dlogits (N,C) = (softmax(x) - onehot(t)) * scale, 0 on ignored
 *   rows; scale = gout / count (mean) or gout (sum); gout is the upstream
 *   gradient of the loss (1 for a loss at the top).  Rereads the logits of
 *   the forward (which the caller keeps unchanged) and the cache; recounts
 *   and revalidates targets.  dlogits may be the logits buffer itself.
 * A target outside 1..C that is not ignore_index: BPTT_ERANGE, *bad_pos = row.
 * Huge finite logits (+-1e30) give a finite loss and gradient; an Inf or NaN
 * logit makes that row's loss and gradient NaN or Inf, never a crash.
 */
int bptt_crossentropy_forward_f32(const float *logits, const int32_t *targets, int64_t N, int64_t C,
                                  int32_t ignore_index, int reduction, float *cache, double *loss, int64_t *count,
                                  int64_t *bad_pos);
int bptt_crossentropy_forward_f64(const double *logits, const int32_t *targets, int64_t N, int64_t C,
                                  int32_t ignore_index, int reduction, double *cache, double *loss, int64_t *count,
                                  int64_t *bad_pos);
int bptt_crossentropy_backward_f32(const float *logits, const int32_t *targets, const float *cache, int64_t N,
                                   int64_t C, int32_t ignore_index, int reduction, double gout, float *dlogits,
                                   int64_t *bad_pos);
int bptt_crossentropy_backward_f64(const double *logits, const int32_t *targets, const double *cache, int64_t N,
                                   int64_t C, int32_t ignore_index, int reduction, double gout, double *dlogits,
                                   int64_t *bad_pos);

/* reduction "none": per-row losses (N) from the cache a forward filled, and
 * the backward with a per-row upstream gradient gout (N). */
int bptt_crossentropy_rows_f32(const float *logits, const int32_t *targets, const float *cache, int64_t N, int64_t C,
                               int32_t ignore_index, float *losses);
int bptt_crossentropy_rows_f64(const double *logits, const int32_t *targets, const double *cache, int64_t N, int64_t C,
                               int32_t ignore_index, double *losses);
int bptt_crossentropy_backward_rows_f32(const float *logits, const int32_t *targets, const float *cache, int64_t N,
                                        int64_t C, int32_t ignore_index, const float *gout, float *dlogits);
int bptt_crossentropy_backward_rows_f64(const double *logits, const int32_t *targets, const double *cache, int64_t N,
                                        int64_t C, int32_t ignore_index, const double *gout, double *dlogits);

/* ------------------------------------------------------------------- MSE
 * loss = sum_k (pred_k - target_k)^2 / n  (mean)  or  / 1  (sum), over all n
 * elements; n == 0 gives loss 0 (PyTorch: NaN for mean).
 * backward: dpred = 2 (pred - target) * scale, scale = gout / n or gout.
 * dpred may be pred or target itself (in place).  Cache: none.
 */
int bptt_mse_forward_f32(const float *pred, const float *target, int64_t n, int reduction, double *loss);
int bptt_mse_forward_f64(const double *pred, const double *target, int64_t n, int reduction, double *loss);
int bptt_mse_backward_f32(const float *pred, const float *target, int64_t n, int reduction, double gout, float *dpred);
int bptt_mse_backward_f64(const double *pred, const double *target, int64_t n, int reduction, double gout,
                          double *dpred);

/* --------------------------------------------------------------- Dropout
 * Inverted dropout with drop probability p in [0, 1].
 * apply: on entry mask (n) holds uniforms u in [0,1) drawn by the caller (the
 *   library RNG); it is turned in place into the mask
 *       mask_k = (u_k >= p) ? 1/(1-p) : 0        (p == 1: all 0)
 *   and y = x * mask.  y may be x (in place); neither may be the mask.
 * backward: dx = dy * mask, with the mask kept from apply.  dx may be dy.
 *   The same call applies a stored mask in a forward pass (e.g. a mask
 *   shared by all T steps).
 * p outside [0, 1] or NaN: BPTT_EARG.  Cache: the mask, n of the real type.
 */
int bptt_dropout_apply_f32(const float *x, float *mask, float *y, int64_t n, double p);
int bptt_dropout_apply_f64(const double *x, double *mask, double *y, int64_t n, double p);
int bptt_dropout_backward_f32(const float *dy, const float *mask, float *dx, int64_t n);
int bptt_dropout_backward_f64(const double *dy, const double *mask, double *dx, int64_t n);

#endif
