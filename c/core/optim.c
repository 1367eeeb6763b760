/*
 * optim.c -- the optimizer steps and clipping kernels of optim.h.
 *
 * The kernels are written once, in generic/optim_steps.c, over a type `real`,
 * and instantiated by generic.h (the scheme of nn.c and rnn.c): float with
 * the _f32 suffix and double with _f64.
 *
 * Each step is one loop over the flat buffers (restrict: they never overlap,
 * the binding checks it).  The loops with a sqrt vectorize only when built
 * with -fno-math-errno (GCC otherwise guards each sqrt for errno; Adam is
 * then ~30% slower).  Per element each step follows the order of operations of PyTorch's in-place ops (mul_ then add_, addcmul_ as
 * self + (value t1) t2, addcdiv_ as self + (value t1) / t2), so float64
 * results agree with torch.optim to the last bit or two.
 */

#include "activations.h" /* BPTT_KERNEL */
#include "optim.h"
#include "parallel.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* elements from which a pass is split over the library's threads: where a
 * second thread saves more than waking it costs (~2-4 us).  Measured with
 * the AVX-512 clones on 2 threads (1 thread -> 2 threads): Adam 13.9 -> 10.7
 * us at 64K elements; grad_norm 7.1 -> 7.8 us at 64K, 27 -> 19 at 256K;
 * grad_scale 10.4 -> 9.7 us at 256K, 49 -> 31 at 1M. */
#define PARALLEL_MIN 65536 /* Adam */
#define NORM_PARALLEL_MIN 65536
#define SCALE_PARALLEL_MIN 262144

/* grad_norm sums in chunks of NORM_CHUNK elements counted from the start of
 * g, each chunk into NORM_LANES partial sums; NORM_GROUP chunk sums are kept
 * at a time (for each parallel region) */
#define NORM_CHUNK 4096
#define NORM_LANES 16
#define NORM_GROUP 256

/* In grad_norm's norm_chunk (g, n, i, k, acc, mx): acc[k] += term for every
 * element of the chunk, term being of x = g[j] as a double, element j in lane
 * k = j % NORM_LANES; and mx[k] = max(mx[k], bits of |g[j]|), as BITS. */
#define NORM_SUM(term)                                                                                                 \
  do {                                                                                                                 \
    for (i = 0; i + NORM_LANES <= n; i += NORM_LANES)                                                                  \
      for (k = 0; k < NORM_LANES; k++) {                                                                               \
        double x = (double)g[i + k];                                                                                   \
        acc[k] += (term);                                                                                              \
      }                                                                                                                \
    for (k = 0; i + k < n; k++) {                                                                                      \
      double x = (double)g[i + k];                                                                                     \
      acc[k] += (term);                                                                                                \
    }                                                                                                                  \
  } while (0)
#define NORM_MAX(j, k)                                                                                                 \
  do {                                                                                                                 \
    BITS b_;                                                                                                           \
    memcpy(&b_, &g[j], sizeof b_);                                                                                     \
    b_ &= BITS_ABS;                                                                                                    \
    mx[k] = b_ > mx[k] ? b_ : mx[k];                                                                                   \
  } while (0)

/* finite and >= 0 (false for NaN) */
static int nonneg(double x) { return x >= 0 && x <= DBL_MAX; }
/* in [0, 1) and [0, 1] */
static int unit_open(double x) { return x >= 0 && x < 1; }
static int unit_closed(double x) { return x >= 0 && x <= 1; }

static int sgd_hp_ok(const bptt_sgd_hp *hp) {
  if (!hp || !nonneg(hp->lr) || !nonneg(hp->momentum) || !unit_closed(hp->dampening) || !nonneg(hp->weight_decay))
    return 0;
  return !hp->nesterov || (hp->momentum > 0 && hp->dampening == 0);
}

static int adam_hp_ok(const bptt_adam_hp *hp) {
  return hp && nonneg(hp->lr) && unit_open(hp->beta1) && unit_open(hp->beta2) && nonneg(hp->eps) &&
         nonneg(hp->weight_decay);
}

static int adagrad_hp_ok(const bptt_adagrad_hp *hp) {
  return hp && nonneg(hp->lr) && nonneg(hp->lr_decay) && nonneg(hp->weight_decay) && nonneg(hp->eps);
}

static int rmsprop_hp_ok(const bptt_rmsprop_hp *hp) {
  return hp && nonneg(hp->lr) && unit_closed(hp->alpha) && nonneg(hp->eps) && nonneg(hp->weight_decay) &&
         nonneg(hp->momentum);
}

/* double -> float saturating at +-inf (a plain cast of a finite double beyond
 * FLT_MAX is undefined behaviour); the identity for double. */
static float to_real_f32(double x) {
  return x > FLT_MAX ? (float)INFINITY : x < -FLT_MAX ? -(float)INFINITY : (float)x;
}
static double to_real_f64(double x) { return x; }

/* n >= 0, and the buffers that must exist do when there are elements */
static int bufs_ok(int64_t n, const void *p, const void *g) { return n >= 0 && (n == 0 || (p && g)); }

/* --------------------------------- the kernels, once per type (generic.h) */
#define BPTT_GENERIC "generic/optim_steps.c"
#include "generic.h"
