/*
 * tensor_random.c -- tensors filled from the generator (rng.h), kept apart
 * from it as torch7's THTensorRandom is from THRandom: the generator knows
 * nothing of tensors.
 */
#include <math.h>

#include "tensor_random.h"

/* One draw of the kind fill() makes: uniform [a, b) or normal (mean a, std b). */
static double draw(bptt_rng *r, int dtype, int normal, double a, double b) {
  if (normal) return a + b * bptt_rng_normal(r);
  if (dtype == BPTT_FLOAT32) {
    float f = (float)a + (float)(b - a) * bptt_rng_uniformf(r);
    return f < (float)b ? f : (float)a; /* rounding may not reach b */
  }
  return a + (b - a) * bptt_rng_uniform(r);
}

/* Draws n values and throws them away: the generator moves on exactly as if a
 * tensor of n elements had been filled (a uniform takes one step of the
 * generator; a normal may take two or none, so it is drawn). */
static void discard(bptt_rng *r, int64_t n, int normal) {
  int64_t i;
  if (normal)
    for (i = 0; i < n; i++) (void)bptt_rng_normal(r);
  else
    for (i = 0; i < n; i++) (void)bptt_rng_next(r);
}

/* Fills go element by element in row-major order over any strides, so the
 * draws a tensor gets do not depend on its layout.  With parts > 1, t is part
 * `part` (0-based) along dimension dim of a tensor parts times as large there:
 * t gets what that slice would get from one fill of the whole, and the
 * generator ends where that fill would leave it. */
static int fill(bptt_rng *r, const bptt_tensor *t, int normal, double a, double b, int dim, int64_t part,
                int64_t parts) {
  int64_t n = bptt_tensor_numel(t), i, idx[BPTT_MAXDIM] = { 0 }, off = t->offset, chunk = 1;
  int d;
  if (t->dtype != BPTT_FLOAT32 && t->dtype != BPTT_FLOAT64) return BPTT_EDTYPE;
  if (parts < 1 || part < 0 || part >= parts || (parts > 1 && (dim < 0 || dim >= t->ndim))) return BPTT_EARG;
  if (parts > 1)
    for (d = dim; d < t->ndim; d++) chunk *= t->size[d];
  for (i = 0; i < n; i++) {
    if (parts > 1 && i % chunk == 0) discard(r, part * chunk, normal);
    bptt_tensor_set(t, off, draw(r, t->dtype, normal, a, b));
    if (parts > 1 && (i + 1) % chunk == 0) discard(r, (parts - 1 - part) * chunk, normal);
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
  return fill(r, t, 0, a, b, 0, 0, 1);
}

int bptt_tensor_uniform_shard(const bptt_tensor *t, bptt_rng *r, double a, double b, int dim, int64_t part,
                              int64_t parts) {
  if (!(a <= b) || !isfinite(a) || !isfinite(b)) return BPTT_EARG;
  return fill(r, t, 0, a, b, dim, part, parts);
}

int bptt_tensor_normal(const bptt_tensor *t, bptt_rng *r, double mean, double std) {
  if (!(std >= 0) || !isfinite(mean) || !isfinite(std)) return BPTT_EARG;
  return fill(r, t, 1, mean, std, 0, 0, 1);
}
