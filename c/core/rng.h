/*
 * rng.h -- the library's random number generator: xoshiro256** (Blackman and
 * Vigna, 2018), seeded through splitmix64.  Period 2^256 - 1, passes BigCrush,
 * 32 bytes of state; normals by the Box-Muller transform, the second value of
 * each pair kept in the state so that saving and restoring the state resumes
 * the exact stream.
 */
#ifndef BPTT_RNG_H
#define BPTT_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "core.h" /* error codes */

typedef struct bptt_rng {
  uint64_t s[4];
  int has_spare; /* a second Box-Muller normal is waiting in spare */
  double spare;
} bptt_rng;

/* Seeds from any 64-bit value (0 included). */
void bptt_rng_seed(bptt_rng *r, uint64_t seed);
uint64_t bptt_rng_next(bptt_rng *r);
/* Uniform on [0, 1) with 53 random bits. */
double bptt_rng_uniform(bptt_rng *r);
/* Uniform on [0, 1) with 24 random bits: a float that never rounds up to 1. */
float bptt_rng_uniformf(bptt_rng *r);
/* Standard normal. */
double bptt_rng_normal(bptt_rng *r);

/* The state as text and back: "xoshiro256**:" then 4 x 16 hex digits of s, and
 * ":" + 16 hex digits of the spare's bits or ":-" when none.  BPTT_RNG_STATE_LEN
 * counts the characters without the terminating NUL. */
#define BPTT_RNG_STATE_LEN (13 + 64 + 1 + 16)
void bptt_rng_get_state(const bptt_rng *r, char out[BPTT_RNG_STATE_LEN + 1]);
int bptt_rng_set_state(bptt_rng *r, const char *text, size_t len); /* BPTT_EFORMAT if malformed */

#endif
