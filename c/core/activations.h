/*
 * activations.h -- float32 sigmoid and tanh for the elementwise passes of
 * generic/rnn_bptt.c: branch-free, no libm call, so that GCC vectorizes a loop that
 * calls them (the float64 kernels keep libm's exp and tanh).
 *
 * Both rest on e^y for y <= 0 only, which cannot overflow:
 *   e^y = 2^k e^r,   k = round(y / ln 2),  r = y - k ln 2,  |r| <= ~ln2/2
 * with e^r a degree-7 polynomial (Cephes' expf) and 2^k put together from
 * its exponent bits.  y is clamped to >= -104, where e^y < 2^-150 already
 * rounds to 0, so a huge |x| saturates exactly: sigmoid to 0 or 1, tanh to
 * -1 or 1.  A NaN passes every clamp and select below and comes out NaN.
 *
 * The code is plain IEEE single arithmetic in a fixed order, not contracted
 * into FMAs (GCC's default under -std=c99; clang's needs the pragma below,
 * which stays in force in the including file, as rnn.c wants), so every
 * copy (baseline, AVX2, AVX-512; isa.h) of a pass gives the same bits.
 */
#ifndef BPTT_ACTIVATIONS_H
#define BPTT_ACTIVATIONS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* BPTT_KERNEL (the three copies of a hot function, one per instruction
 * set, and the switch between them) and BPTT_ROW */
#include "isa.h"

/* c ? a : b, as bit masks.  GCC turns a plain ?: into a branch when that
 * lets it fold one side (a clamp to a constant) or sink work into it, and
 * under the default -ftrapping-math it will not if-convert such a branch
 * back for the vectorizer without AVX-512's masked arithmetic.  Both a and
 * b are computed regardless. */
static inline float bptt_selectf(int c, float a, float b) {
  uint32_t ua, ub, m = 0u - (uint32_t)(c != 0);
  memcpy(&ua, &a, sizeof ua);
  memcpy(&ub, &b, sizeof ub);
  ua = (ua & m) | (ub & ~m);
  memcpy(&a, &ua, sizeof a);
  return a;
}

/* e^y for y <= 0 (or NaN); any y < -104 gives exactly 0. */
static inline float bptt_expnegf(float y) {
  const float shift = 0x1.8p23f;     /* t = y/ln2 + shift: k in t's low bits */
  const float ln2_hi = 0.693359375f; /* 9 bits: k ln2_hi exact, |k| <= 150 */
  const float ln2_lo = -2.12194440e-4f;
  float t, k, r, p, s;
  uint32_t u;
  y = bptt_selectf(y < -104.0f, -104.0f, y); /* a NaN y fails, stays NaN */
  t = y * 1.44269504f + shift;
  k = t - shift;
  r = y - k * ln2_hi;
  r = r - k * ln2_lo;
  p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
        1.6666665459e-1f) *
           r +
       5.0000001201e-1f) *
          (r * r) +
      r + 1.0f;
  /* 2^k = 2^(k+75) * 2^-75, both factors normal for k in [-150, 0]; the
   * second multiply rounds once if the result is subnormal. */
  memcpy(&u, &t, sizeof u);
  u = (u - 0x4B400000u + 127u + 75u) << 23; /* exponent field of 2^(k+75) */
  memcpy(&s, &u, sizeof s);
  return p * s * 0x1p-75f;
}

/* sigmoid(x) = 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: one exp
 * of -|x| and one division either way. */
static inline float bptt_sigmoidf(float x) {
  float e = bptt_expnegf(-fabsf(x));
  return bptt_selectf(x >= 0.0f, 1.0f, e) / (1.0f + e);
}

/* The float64 sigmoid, by libm: exp of a non-positive number only, so a huge
 * |a| gives 0 or 1 and never inf/inf; NaN stays NaN. */
static inline double bptt_sigmoid(double a) {
  double e;
  if (a >= 0) return 1 / (1 + exp(-a));
  e = exp(a);
  return e / (1 + e);
}

/* tanh(x) = sign(x) tanh|x|, with, for a = |x|,
 *   tanh a = a + a^3 P(a^2)            a < 0.625 (Cephes' tanhf polynomial;
 *                                      no cancellation near 0)
 *   tanh a = (1 - e) / (1 + e)         else, e = e^-2a <= e^-1.25
 * The sign goes on last so that tanh(-0) = -0. */
static inline float bptt_tanhf(float x) {
  float a = fabsf(x), z = a * a, e, small, num, den;
  int near0;
  small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
           3.33332819422e-1f) *
              z * a +
          a;
  e = bptt_expnegf(-2.0f * a);
  /* one division for both cases: small / 1 is exact */
  near0 = a < 0.625f;
  num = bptt_selectf(near0, small, 1.0f - e);
  den = bptt_selectf(near0, 1.0f, 1.0f + e);
  return copysignf(num / den, x);
}

#endif
