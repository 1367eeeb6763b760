/*
 * tensor_random.h -- tensors filled from the generator (rng.h).
 */
#ifndef BPTT_TENSOR_RANDOM_H
#define BPTT_TENSOR_RANDOM_H

#include "rng.h"
#include "tensor.h"

/* Fills t (float32 or float64, any strides) with uniform [a, b) or normal
 * (mean, std) draws of r in row-major element order, so that the values a
 * tensor gets do not depend on its layout.  float32 uniforms use 24 bits so
 * that they never round up to b.  BPTT_EARG for a bad range, BPTT_EDTYPE for
 * int32. */
int bptt_tensor_uniform(const bptt_tensor *t, bptt_rng *r, double a, double b);
/* The uniform fill of one part of a larger tensor: t is part `part` (0-based)
 * of `parts` equal parts along dimension dim (0-based) of a tensor parts times
 * t's size there.  t gets exactly the values that slice would get from
 * bptt_tensor_uniform of the whole tensor, and r ends where that fill would
 * leave it, so `parts` processes each filling their own part draw together
 * what one process draws for the whole (data-parallel dropout masks).
 * It takes one step of the generator per element of the whole tensor.
 * BPTT_EARG for a bad range, part or dim. */
int bptt_tensor_uniform_shard(const bptt_tensor *t, bptt_rng *r, double a, double b, int dim, int64_t part,
                              int64_t parts);
int bptt_tensor_normal(const bptt_tensor *t, bptt_rng *r, double mean, double std);

#endif
