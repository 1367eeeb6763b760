/*
 * sample.h -- choosing the next token from logits, and scoring tokens.
 *
 * Sampling draws from softmax(logits / temperature) restricted to the top_k
 * most likely tokens and then to the smallest set whose probability reaches
 * top_p (nucleus sampling), renormalized; greedy takes the argmax.  All in
 * double, stable for any finite logits; the uniform draw comes from the
 * library generator, so a seed reproduces a sample.
 */
#ifndef BPTT_SAMPLE_H
#define BPTT_SAMPLE_H

#include "rng.h"
#include "tensor.h"

typedef struct {
  double temperature; /* > 0; ignored when greedy */
  int64_t top_k;      /* 0 = all tokens */
  double top_p;       /* in (0, 1]; 1 = no nucleus cut */
  int greedy;
} bptt_sample_opts;

/* Picks a token (0-based) from n logits (any stride, float32/float64 tensor
 * of one dimension).  work: caller-owned scratch of 2*n doubles + n int64.
 * BPTT_EARG for bad options or n == 0; a NaN logit: BPTT_EARG, and every
 * logit -inf: BPTT_ERANGE (there is no distribution to draw from). */
int bptt_sample(const bptt_tensor *logits, const bptt_sample_opts *o, bptt_rng *rng, void *work, int64_t *out);
size_t bptt_sample_work_bytes(int64_t n);

/* out (N) = log softmax(logits (N, C))[i, targets[i] - 1], float64 out;
 * targets int32 1-based.  BPTT_ERANGE with *bad = row of a target outside
 * 1..C. */
int bptt_log_prob(const bptt_tensor *logits, const int32_t *targets, double *out, int64_t *bad);

#endif
