/*
 * sample.c -- next-token sampling (temperature, top-k, top-p, greedy) and
 * per-token log-probabilities for scoring.
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
  double v;
  int64_t i;
} scored;

size_t bptt_sample_work_bytes(int64_t n) { return (size_t)n * sizeof(scored); }

/* descending by value, ties by index (a total order: deterministic) */
static int by_value_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? 1 : -1;
  return x->i < y->i ? -1 : x->i > y->i;
}

int bptt_sample(const bptt_tensor *logits, const bptt_sample_opts *o, bptt_rng *rng, void *work, int64_t *out) {
  scored *s = work;
  int64_t n, i, keep, best = 0;
  double m = -INFINITY, total = 0, u, acc;
  if (logits->ndim != 1 || (logits->dtype != BPTT_FLOAT32 && logits->dtype != BPTT_FLOAT64)) return BPTT_EARG;
  n = logits->size[0];
  if (n == 0 || o->top_k < 0 || !(o->top_p > 0 && o->top_p <= 1)) return BPTT_EARG;
  if (!o->greedy && !(o->temperature > 0 && isfinite(o->temperature))) return BPTT_EARG;
  double raw = -INFINITY;
  int64_t raw_best = -1;
  for (i = 0; i < n; i++) {
    double v = bptt_tensor_get(logits, logits->offset + i * logits->stride[0]);
    if (v != v) return BPTT_EARG;
    if (v > raw) raw = v, raw_best = i;
    s[i].v = o->greedy ? v : v / o->temperature;
    s[i].i = i;
    if (s[i].v > m) m = s[i].v, best = i;
  }
  /* every logit -inf: every probability 0, nothing to draw */
  if (raw_best < 0) return BPTT_ERANGE;
  /* finite logits that v / temperature took to -inf (a tiny temperature):
   * the limit of the distribution is the argmax */
  if (m == -INFINITY) {
    *out = raw_best;
    return BPTT_OK;
  }
  if (o->greedy) {
    *out = best;
    return BPTT_OK;
  }
  if (m == INFINITY) { /* all mass on the +inf logits: the first of them */
    *out = best;
    return BPTT_OK;
  }
  keep = n;
  if ((o->top_k > 0 && o->top_k < n) || o->top_p < 1) {
    qsort(s, (size_t)n, sizeof *s, by_value_desc);
    if (o->top_k > 0 && o->top_k < n) keep = o->top_k;
  }
  /* p_i = exp(v_i - m) over the kept set (m is the maximum: no overflow) */
  for (i = 0; i < keep; i++) total += (s[i].v = exp(s[i].v - m));
  if (o->top_p < 1) {
    double cut = o->top_p * total;
    acc = 0;
    for (i = 0; i < keep; i++) {
      acc += s[i].v;
      if (acc >= cut) {
        keep = i + 1;
        break;
      }
    }
    total = acc;
  }
  u = bptt_rng_uniform(rng) * total;
  acc = 0;
  for (i = 0; i < keep; i++) {
    acc += s[i].v;
    if (u < acc) break;
  }
  if (i == keep) i = keep - 1; /* rounding: u at the very top */
  *out = s[i].i;
  return BPTT_OK;
}

int bptt_log_prob(const bptt_tensor *logits, const int32_t *targets, double *out, int64_t *bad) {
  int64_t N, C, r, c;
  if (logits->ndim != 2 || (logits->dtype != BPTT_FLOAT32 && logits->dtype != BPTT_FLOAT64)) return BPTT_EARG;
  N = logits->size[0], C = logits->size[1];
  for (r = 0; r < N; r++) {
    int64_t base = logits->offset + r * logits->stride[0];
    double m = -INFINITY, z = 0, x;
    if (targets[r] < 1 || targets[r] > C) {
      *bad = r;
      return BPTT_ERANGE;
    }
    for (c = 0; c < C; c++) {
      x = bptt_tensor_get(logits, base + c * logits->stride[1]);
      if (x > m || x != x) m = x;
    }
    for (c = 0; c < C; c++) z += exp(bptt_tensor_get(logits, base + c * logits->stride[1]) - m);
    x = bptt_tensor_get(logits, base + (targets[r] - 1) * logits->stride[1]);
    out[r] = (x - m) - log(z);
  }
  return BPTT_OK;
}
