/*
 * optim.h -- optimizer steps and gradient clipping over flat buffers.
 *
 * Every module keeps all its parameters in one flat buffer p (n) and all its
 * gradients in one g (n) of the same layout, so a whole optimizer step for a
 * model is one pass over (p, g, state...): each kernel below reads every
 * buffer once and writes p and the state once, element by element.  Plain C,
 * no Lua.  Every kernel exists twice, _f32 and _f64, from one source
 * (optim.c); the scalar coefficients (bias corrections, step sizes) are
 * computed in double and applied in the buffers' type.
 *
 * The update rules are PyTorch 1.13's torch.optim (the single-tensor,
 * non-capturable, maximize=False paths), written out per element below with
 * gradient g, parameter p and the step number t (1 on the first step).
 *
 * Every kernel returns BPTT_OK, or BPTT_EARG (nothing written) when n < 0, a
 * buffer that must hold elements is NULL, or a hyperparameter is outside its
 * range (NaN included): lr, eps, weight_decay, momentum, lr_decay >= 0 and
 * finite; betas in [0, 1); dampening and alpha in [0, 1]; t >= 1.  Buffers
 * must not overlap.
 */
#ifndef BPTT_OPTIM_H
#define BPTT_OPTIM_H

#include "core.h"

/* ------------------------------------------------------------------ SGD
 *   d = g + weight_decay p
 *   momentum != 0:  buf = d                                   (init_buf: first use)
 *                   buf = momentum buf + (1 - dampening) d    (afterwards)
 *                   d = nesterov ? d + momentum buf : buf
 *   p = p - lr d
 * buf may be NULL only when momentum == 0.  nesterov needs momentum > 0 and
 * dampening == 0 (BPTT_EARG otherwise, as PyTorch's ValueError).
 */
typedef struct bptt_sgd_hp {
  double lr, momentum, dampening, weight_decay;
  int nesterov;
} bptt_sgd_hp;

int bptt_sgd_step_f32(float *p, const float *g, float *buf, int64_t n, const bptt_sgd_hp *hp, int init_buf);
int bptt_sgd_step_f64(double *p, const double *g, double *buf, int64_t n, const bptt_sgd_hp *hp, int init_buf);

/* ----------------------------------------------------------- Adam, AdamW
 *   Adam:   d = g + weight_decay p                 (L2 penalty in the gradient)
 *   AdamW:  p = p (1 - lr weight_decay),  d = g    (decoupled decay)
 *   m = beta1 m + (1 - beta1) d                    exp_avg
 *   v = beta2 v + (1 - beta2) d^2                  exp_avg_sq
 *   amsgrad: vmax = max(vmax, v), and vmax replaces v below
 *   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
 *   p = p - (lr / (1 - beta1^t)) m / denom
 * vmax (max_exp_avg_sq) NULL means amsgrad off.  m, v, vmax start at 0.
 */
typedef struct bptt_adam_hp {
  double lr, beta1, beta2, eps, weight_decay;
  int decoupled; /* 1: AdamW */
} bptt_adam_hp;

int bptt_adam_step_f32(float *p, const float *g, float *m, float *v, float *vmax, int64_t n, int64_t t,
                       const bptt_adam_hp *hp);
int bptt_adam_step_f64(double *p, const double *g, double *m, double *v, double *vmax, int64_t n, int64_t t,
                       const bptt_adam_hp *hp);

/* -------------------------------------------------------------- Adagrad
 *   d = g + weight_decay p
 *   clr = lr / (1 + (t - 1) lr_decay)
 *   sum = sum + d^2                       (starts at initial_accumulator_value)
 *   p = p - clr d / (sqrt(sum) + eps)
 */
typedef struct bptt_adagrad_hp {
  double lr, lr_decay, weight_decay, eps;
} bptt_adagrad_hp;

int bptt_adagrad_step_f32(float *p, const float *g, float *sum, int64_t n, int64_t t, const bptt_adagrad_hp *hp);
int bptt_adagrad_step_f64(double *p, const double *g, double *sum, int64_t n, int64_t t, const bptt_adagrad_hp *hp);

/* -------------------------------------------------------------- RMSprop
 *   d = g + weight_decay p
 *   sq = alpha sq + (1 - alpha) d^2                          square_avg
 *   centered: ga = alpha ga + (1 - alpha) d,  avg = sqrt(sq - ga^2) + eps
 *   else:     avg = sqrt(sq) + eps
 *   momentum > 0: buf = momentum buf + d / avg,  p = p - lr buf
 *   else:         p = p - lr d / avg
 * ga (grad_avg) NULL means not centered; buf may be NULL only when
 * momentum == 0.  sq, ga, buf start at 0.
 */
typedef struct bptt_rmsprop_hp {
  double lr, alpha, eps, weight_decay, momentum;
} bptt_rmsprop_hp;

int bptt_rmsprop_step_f32(float *p, const float *g, float *sq, float *ga, float *buf, int64_t n,
                          const bptt_rmsprop_hp *hp);
int bptt_rmsprop_step_f64(double *p, const double *g, double *sq, double *ga, double *buf, int64_t n,
                          const bptt_rmsprop_hp *hp);

/* ------------------------------------------------------------- clipping
 * grad_norm: over g (n), accumulated in double:
 *   *sum  += sum_i |g_i / scale|^p     (p finite, > 0; untouched for p = inf)
 *   *amax  = max(*amax, max_i |g_i|)   (a NaN element makes it NaN)
 * The caller adds up several buffers and takes sum^(1/p).  scale > 0 lets it
 * redo the sum scaled by the largest element when the plain one overflowed.
 * The sum is added up in an order fixed by n alone (chunks of 4096 elements),
 * so it is the same to the bit on any number of threads.
 * grad_scale: g *= s.   grad_clamp: g = min(max(g, -v), v), v >= 0 (NaN stays).
 * grad_norm and grad_scale split a large g over the library's threads
 * (parallel.h), as the Adam step does.
 */
int bptt_grad_norm_f32(const float *g, int64_t n, double p, double scale, double *sum, double *amax);
int bptt_grad_norm_f64(const double *g, int64_t n, double p, double scale, double *sum, double *amax);
int bptt_grad_scale_f32(float *g, int64_t n, double s);
int bptt_grad_scale_f64(double *g, int64_t n, double s);
int bptt_grad_clamp_f32(float *g, int64_t n, double v);
int bptt_grad_clamp_f64(double *g, int64_t n, double v);

#endif
