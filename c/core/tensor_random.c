/*
 * tensor_random.c -- tensors filled from the generator (rng.h), kept apart
 * from it as torch7's THTensorRandom is from THRandom: the generator knows
 * nothing of tensors.
 */
#include <math.h>

#include "tensor_random.h"

/* Fills go element by element in row-major order over any strides, so the
 * draws a tensor gets do not depend on its layout. */
static int fill(bptt_rng *r, const bptt_tensor *t, int normal, double a, double b) {
  int64_t n = bptt_tensor_numel(t), i, idx[BPTT_MAXDIM] = { 0 }, off = t->offset;
  int d;
  if (t->dtype != BPTT_FLOAT32 && t->dtype != BPTT_FLOAT64) return BPTT_EDTYPE;
  for (i = 0; i < n; i++) {
    double v;
    if (normal)
      v = a + b * bptt_rng_normal(r);
    else if (t->dtype == BPTT_FLOAT32) {
      float f = (float)a + (float)(b - a) * bptt_rng_uniformf(r);
      v = f < (float)b ? f : (float)a; /* rounding may not reach b */
    } else
      v = a + (b - a) * bptt_rng_uniform(r);
    bptt_tensor_set(t, off, v);
    for (d = t->ndim - 1; d >= 0; d--) {
      off += t->stride[d];
      if (++idx[d] < t->size[d]) break;
      off -= t->stride[d] * t->size[d];
      idx[d] = 0;
    }
  }
  return BPTT_OK;
}

int bptt_tensor_uniform(const bptt_tensor *t, bptt_rng *r, double a, double b) {
  if (!(a <= b) || !isfinite(a) || !isfinite(b)) return BPTT_EARG;
  return fill(r, t, 0, a, b);
}

int bptt_tensor_normal(const bptt_tensor *t, bptt_rng *r, double mean, double std) {
  if (!(std >= 0) || !isfinite(mean) || !isfinite(std)) return BPTT_EARG;
  return fill(r, t, 1, mean, std);
}
