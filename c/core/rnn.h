/*
 * rnn.h -- one layer of a recurrent network over a whole sequence, forward
 * and backward through time (BPTT).  Plain C over CBLAS; no Lua.
 *
 * Cells, with PyTorch's semantics, parameter names and layouts (so state
 * dicts move unchanged).  G is the number of gate blocks:
 *
 *   tanh, relu (G = 1, the seed note's Elman network, V = w_ih, W = w_hh):
 *     h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
 *   lstm (G = 4, gate blocks i, f, g, o):
 *     i, f, o = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*)
 *     g       = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
 *     c_t = f * c_{t-1} + i * g            h_t = o * tanh(c_t)
 *   gru (G = 3, gate blocks r, z, n):
 *     r, z = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*)
 *     n    = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
 *     h_t  = (1 - z) * n + z * h_{t-1}
 *
 * Layouts (row-major, contiguous, time-major):
 *   w_ih (G*H, D)   w_hh (G*H, H)   b_ih, b_hh (G*H), or NULL for bias=false
 *   x (T, B, D)     y (T, B, H) = h_1 .. h_T
 *   h0, c0, hT, cT, dh0, dc0, dhT, dcT (B, H)
 *
 * Memory.  Besides its inputs and outputs a layer owns two buffers, sized by
 * the functions below (elements of the layer's real type):
 *
 *   cache   (written by forward, read by backward)
 *     tanh, relu : 0                 the activation's derivative is read off y
 *     lstm       : 5*T*B*H           gate activations (T, B, 4H) | c_t (T, B, H)
 *     gru        : 4*T*B*H + 3*B*H   gate activations (T, B, 3H) |
 *                                    W_hn h_{t-1} + b_hn (T, B, H) |
 *                                    one step's W_hh h_{t-1} + b_hh (B, 3H)
 *   scratch (backward only, free again after it returns)
 *     tanh, relu : T*B*H + B*H       dG (T, B, H) | running dh (B, H)
 *     lstm       : 4*T*B*H + 2*B*H   dG (T, B, 4H) | running dh, dc (B, H)
 *     gru        : 4*T*B*H + B*H     dG hidden side (T, B, 3H) | dG of the
 *                                    n gate, input side (T, B, H) | dh (B, H)
 *
 * so an LSTM layer over T steps keeps about 5*T*B*H values between forward
 * and backward besides y, and needs 4*T*B*H more while backward runs.
 *
 * Errors: functions return BPTT_OK or a code of core.h.  BPTT_EARG: a NULL
 * dims or required pointer, an unknown cell, or T, B, D, H < 1.
 * BPTT_EOVERFLOW: a buffer size does not fit in int64_t bytes, or a matrix
 * dimension does not fit the int of the BLAS interface.  No function
 * allocates; the caller passes cache and scratch.  Non-finite inputs are not
 * errors: NaN and Inf flow through the arithmetic like in PyTorch.
 */
#ifndef BPTT_RNN_H
#define BPTT_RNN_H

#include <stdint.h>

#include "core.h"

typedef enum { BPTT_CELL_TANH = 0, BPTT_CELL_RELU = 1, BPTT_CELL_LSTM = 2, BPTT_CELL_GRU = 3 } bptt_cell;

/* G: 1, 1, 4, 3 gate blocks; 0 for an unknown cell. */
int bptt_cell_gates(bptt_cell cell);
/* "tanh", "relu", "lstm", "gru" -> cell; -1 for an unknown name. */
int bptt_cell_from_name(const char *name);
/* cell -> its name; NULL for an unknown cell. */
const char *bptt_cell_name(bptt_cell cell);

typedef struct {
  bptt_cell cell;
  /* steps, batch, input features, hidden units.  The input size is D, not
   * I: <complex.h>, which OpenBLAS's cblas.h includes, defines I. */
  int64_t T, B, D, H;
} bptt_rnn_dims;

/* BPTT_OK if the dims are usable by forward/backward, else EARG/EOVERFLOW. */
int bptt_rnn_check_dims(const bptt_rnn_dims *d);

/* Elements of cache and scratch (formulas above).  Return the dims' error
 * code; *n is set only on BPTT_OK.  A size of 0 means the pointer may be
 * NULL. */
int bptt_rnn_cache_numel(const bptt_rnn_dims *d, int64_t *n);
int bptt_rnn_scratch_numel(const bptt_rnn_dims *d, int64_t *n);

/*
 * Forward over all T steps.
 *   reads  w_ih, w_hh, b_ih, b_hh (biases may be NULL), x, h0, c0 (NULL =
 *          zeros; c0 is ignored unless lstm)
 *   writes y (T, B, H); hT (B, H) and cT (B, H, lstm only) unless NULL;
 *          cache (its whole content, nothing needs to be zeroed first)
 */
int bptt_rnn_forward_f32(const bptt_rnn_dims *d, const float *w_ih, const float *w_hh, const float *b_ih,
                         const float *b_hh, const float *x, const float *h0, const float *c0, float *y, float *hT,
                         float *cT, float *cache);
int bptt_rnn_forward_f64(const bptt_rnn_dims *d, const double *w_ih, const double *w_hh, const double *b_ih,
                         const double *b_hh, const double *x, const double *h0, const double *c0, double *y, double *hT,
                         double *cT, double *cache);

/*
 * Backward over all T steps, after a forward with the same dims, weights,
 * x, h0, c0 (y and cache as forward left them).  The loss gradients
 *   dy (T, B, H), dhT (B, H), dcT (B, H, lstm only)
 * may each be NULL (= zeros).
 *   writes dx (T, B, D), dh0 (B, H), dc0 (B, H, lstm only), each unless NULL
 *   ADDS   dw_ih (G*H, D), dw_hh (G*H, H) and, unless NULL, db_ih, db_hh
 *          (G*H): parameter gradients accumulate until the caller zeroes them
 *   uses   scratch (bptt_rnn_scratch_numel elements, contents undefined after)
 * Biases are not needed: their effect is already in y and cache.
 */
int bptt_rnn_backward_f32(const bptt_rnn_dims *d, const float *w_ih, const float *w_hh, const float *x, const float *h0,
                          const float *c0, const float *y, const float *cache, const float *dy, const float *dhT,
                          const float *dcT, float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh, float *db_ih,
                          float *db_hh, float *scratch);
int bptt_rnn_backward_f64(const bptt_rnn_dims *d, const double *w_ih, const double *w_hh, const double *x,
                          const double *h0, const double *c0, const double *y, const double *cache, const double *dy,
                          const double *dhT, const double *dcT, double *dx, double *dh0, double *dc0, double *dw_ih,
                          double *dw_hh, double *db_ih, double *db_hh, double *scratch);

/*
 * Sequence options, opts->seq of the _ex calls below (NULL = all zeros:
 * today's layer).
 *
 *   reverse      run t = T-1 .. 0 (the reverse direction of a
 *                bidirectional layer): h_t = cell(x_t, h_{t+1}), and h0
 *                enters at each sequence's own last step.
 *   batch_sizes  NULL, or T counts n_t = how many rows are still running at
 *                step t, with the rows sorted by length, longest first
 *                (PyTorch's PackedSequence.batch_sizes): n_0 = B and
 *                0 <= n_t <= n_{t-1}.  Row b runs at the steps t < L_b.
 *                At the other steps its output is 0, its state does not
 *                move, and no work is done for it in the recursion; hT, cT
 *                are each row's state at its own last step (t = L_b - 1,
 *                or t = 0 in reverse), and dhT, dcT enter there.
 *   reset        NULL, or (T, B) flags: where reset[t*B + b] != 0, row b's
 *                h_{t-1} (and c_{t-1}) are taken as zeros at step t (a new
 *                document starts there), and no gradient flows back across
 *                that step into h_{t-1}, c_{t-1} (nor into dh0, dc0 at t =
 *                0; reverse: across t into h_{t+1}).
 *
 * The batched GEMMs (input projections, dx, weight gradients) still run
 * over all T*B rows: padding costs them T*B / sum(L_b) more work; the step
 * by step recursion skips it.  BPTT_EARG for batch_sizes out of order,
 * and for any sequence option together with checkpointing or gradient-flow
 * recording (not supported yet).
 */
typedef struct {
  int reverse;
  const int32_t *batch_sizes; /* (T) */
  const int32_t *reset;       /* (T, B) */
} bptt_rnn_seq;

/* Row shuffles of (T, B, *) buffers, rows of `bytes` bytes, any type:
 *   permute:  dst[t, b] = src[t, perm[b]]  (scatter = 0)
 *             dst[t, perm[b]] = src[t, b]  (scatter = 1)
 *             perm: B distinct 0-based rows (not checked here)
 *   join:     out row r = a row r | b row r   (rows of 2*bytes)
 *   split:    the inverse of join */
void bptt_rnn_permute_rows(const void *src, void *dst, int64_t T, int64_t B, int64_t bytes, const int32_t *perm,
                           int scatter);
void bptt_rnn_join_rows(const void *a, const void *b, void *out, int64_t rows, int64_t bytes);
void bptt_rnn_split_rows(const void *in, void *a, void *b, int64_t rows, int64_t bytes);

/*
 * Options of the _ex calls (a NULL opts: all off, the calls above).
 *
 * Gradient-flow recording (backward only).  With flow_dh non-NULL, backward
 * writes for every step t = 1..T (element (t-1)*flow_ld of each array):
 *   flow_dh  ||dL/dh_t||   Frobenius over (B, H) of the whole gradient
 *            reaching h_t: dy_t + the gradient carried back from step t+1
 *            (dhT at t = T)
 *   flow_dc  ||dL/dc_t||   lstm only (else ignored): the whole gradient
 *            reaching c_t, through h_t and from c_{t+1} (dcT at t = T)
 *   flow_dW  ||dG_t^T h_{t-1}||  step t's term of dL/dW_hh, dG_t =
 *            dL/d(W_hh h_{t-1} + b_hh) (the seed's sum split into its
 *            terms; h_0 the initial state, zeros when NULL)
 * each non-NULL.  flow_work: bptt_rnn_flow_numel doubles.  Every norm is a
 * sum in a fixed order (per row over 16-unit groups of units, then over the
 * rows in order), whatever the thread count or the split of the recursion:
 * the same bits on every thread count.  Off (flow_dh NULL), the recursion
 * runs exactly the code of the calls above.
 *
 * Checkpointing (memory-bounded BPTT), checkpoint = k >= 1: forward keeps,
 * besides y, only the cell state every k steps (lstm: c_{a-1} for each
 * segment start a = 1, k+1, 2k+1, ...; gru, tanh, relu keep nothing, h is
 * y), and backward recomputes each segment's cache from it before the
 * recursion runs over the segment.  Gradients and outputs are the same
 * bits as checkpoint = 0: the input projections, dx and the weight
 * gradients run in fixed blocks of BPTT_RNN_BLOCK_ROWS rows' worth of steps
 * (bptt_rnn_block_steps) counted from step 1 on both paths, the same GEMM
 * calls in the same order (dG and the segment's cache live in rings of
 * whole blocks, so a block that straddles two segments is added in once
 * both are done).  The sizes (bptt_rnn_numel_ex), with S the block's steps
 * and W = nb * S, nb = min(ceil(T/S), floor((k-1)/S) + 2) blocks:
 *   cache    lstm: ceil(T/k)*B*H (the saved c); others 0
 *   scratch  tanh, relu  W*B*H + B*H        (dG ring, dh)
 *            lstm        9*W*B*H + 3*B*H    (dG, dh, dc, the segment's cache)
 *            gru         8*W*B*H + 5*B*H
 * so memory is O((T/k + k + S) B H G) instead of O(T B H G), besides y
 * (T, B, H), which every path keeps (it is the output; tanh and relu read
 * their derivative off it, so they recompute nothing).  Forward uses the
 * scratch too; time: one forward more for lstm and gru.
 */
typedef struct {
  int64_t checkpoint; /* 0: full BPTT; else k >= 1 */
  double *flow_dh, *flow_dc, *flow_dW, *flow_work;
  int64_t flow_ld;         /* stride of the flow arrays (>= 1) */
  const bptt_rnn_seq *seq; /* NULL: none (above) */
} bptt_rnn_opts;

/* Batched GEMMs run over blocks of this many rows (steps * B) at least. */
#define BPTT_RNN_BLOCK_ROWS 512
/* S: the steps of one block, max(1, ceil(BPTT_RNN_BLOCK_ROWS / B)). */
int64_t bptt_rnn_block_steps(int64_t B);

/* Elements of cache and scratch (reals) and of the flow work (doubles) for
 * opts (NULL = all off); each pointer may be NULL.  EARG for a
 * checkpoint < 0. */
int bptt_rnn_numel_ex(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, int64_t *cache, int64_t *scratch,
                      int64_t *flow);

/* forward with opts: with checkpointing it writes the saved states into
 * cache and uses scratch (bptt_rnn_numel_ex); without, scratch may be NULL. */
int bptt_rnn_forward_ex_f32(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, const float *w_ih, const float *w_hh,
                            const float *b_ih, const float *b_hh, const float *x, const float *h0, const float *c0,
                            float *y, float *hT, float *cT, float *cache, float *scratch);
int bptt_rnn_forward_ex_f64(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, const double *w_ih, const double *w_hh,
                            const double *b_ih, const double *b_hh, const double *x, const double *h0, const double *c0,
                            double *y, double *hT, double *cT, double *cache, double *scratch);
/* backward with opts; needs the biases when checkpointing (to recompute). */
int bptt_rnn_backward_ex_f32(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, const float *w_ih, const float *w_hh,
                             const float *b_ih, const float *b_hh, const float *x, const float *h0, const float *c0,
                             const float *y, const float *cache, const float *dy, const float *dhT, const float *dcT,
                             float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                             float *scratch);
int bptt_rnn_backward_ex_f64(const bptt_rnn_dims *d, const bptt_rnn_opts *opts, const double *w_ih, const double *w_hh,
                             const double *b_ih, const double *b_hh, const double *x, const double *h0,
                             const double *c0, const double *y, const double *cache, const double *dy,
                             const double *dhT, const double *dcT, double *dx, double *dh0, double *dc0, double *dw_ih,
                             double *dw_hh, double *db_ih, double *db_hh, double *scratch);

/*
 * The state map's Jacobians J_t = ds_t/ds_{t-1} (s = h, or (h, c) for lstm:
 * vh and vc), each batch row on its own, at the steps [t0, t1) (0-based) of
 * a forward without checkpointing (y and cache as it left it; h0, c0 as
 * given to it, NULL = zeros):
 *   jvp  v <- J_{t1-1} ... J_{t0} v          (forward-mode, in place)
 *   vjp  v <- v J_{t1-1} ... J_{t0}          (the backward recursion, dy = 0)
 * work: B*G*H + B*H reals.  On the calling thread.
 */
int bptt_rnn_jvp_f32(const bptt_rnn_dims *d, const float *w_hh, const float *h0, const float *c0, const float *y,
                     const float *cache, int64_t t0, int64_t t1, float *vh, float *vc, float *work);
int bptt_rnn_jvp_f64(const bptt_rnn_dims *d, const double *w_hh, const double *h0, const double *c0, const double *y,
                     const double *cache, int64_t t0, int64_t t1, double *vh, double *vc, double *work);
int bptt_rnn_vjp_f32(const bptt_rnn_dims *d, const float *w_hh, const float *h0, const float *c0, const float *y,
                     const float *cache, int64_t t0, int64_t t1, float *vh, float *vc, float *work);
int bptt_rnn_vjp_f64(const bptt_rnn_dims *d, const double *w_hh, const double *h0, const double *c0, const double *y,
                     const double *cache, int64_t t0, int64_t t1, double *vh, double *vc, double *work);

/* tanh, relu: out[tau-1] = max over the batch rows of ||J_{t1-1} ... J_{t1-tau}||_2,
 * the exact products formed (H x H, double), tau = 1..nlag <= t1.  work:
 * 3*H*H doubles.  For checking the estimates of the vjp/jvp power iteration. */
int bptt_rnn_jacobian_exact_f32(const bptt_rnn_dims *d, const float *w_hh, const float *y, int64_t t1, int64_t nlag,
                                double *out, double *work);
int bptt_rnn_jacobian_exact_f64(const bptt_rnn_dims *d, const double *w_hh, const double *y, int64_t t1, int64_t nlag,
                                double *out, double *work);

#endif
