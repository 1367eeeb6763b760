/*
 * rng.c -- xoshiro256** with splitmix64 seeding; uniform and normal fills.
 */
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define BPTT_PI 3.14159265358979323846

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void bptt_rng_seed(bptt_rng *r, uint64_t seed) {
  int i;
  for (i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
  r->has_spare = 0;
  r->spare = 0.0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bptt_rng_next(bptt_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double bptt_rng_uniform(bptt_rng *r) { return (double)(bptt_rng_next(r) >> 11) * 0x1.0p-53; }

float bptt_rng_uniformf(bptt_rng *r) { return (float)(bptt_rng_next(r) >> 40) * 0x1.0p-24f; }

double bptt_rng_normal(bptt_rng *r) {
  double u, v, rad;
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  /* Box-Muller: u in (0, 1] keeps log() finite. */
  u = 1.0 - bptt_rng_uniform(r);
  v = bptt_rng_uniform(r);
  rad = sqrt(-2.0 * log(u));
  r->spare = rad * sin(2.0 * BPTT_PI * v);
  r->has_spare = 1;
  return rad * cos(2.0 * BPTT_PI * v);
}

static const char prefix[] = "xoshiro256**:";

void bptt_rng_get_state(const bptt_rng *r, char out[BPTT_RNG_STATE_LEN + 1]) {
  uint64_t bits = 0;
  memcpy(&bits, &r->spare, sizeof bits);
  sprintf(out, "%s%016llx%016llx%016llx%016llx:", prefix, (unsigned long long)r->s[0], (unsigned long long)r->s[1],
          (unsigned long long)r->s[2], (unsigned long long)r->s[3]);
  if (r->has_spare)
    sprintf(out + 13 + 64 + 1, "%016llx", (unsigned long long)bits);
  else
    strcpy(out + 13 + 64 + 1, "-");
}

static int parse_hex64(const char *p, uint64_t *out) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 16; i++) {
    int c = p[i], x;
    if (c >= '0' && c <= '9')
      x = c - '0';
    else if (c >= 'a' && c <= 'f')
      x = c - 'a' + 10;
    else
      return 0;
    v = v << 4 | (uint64_t)x;
  }
  *out = v;
  return 1;
}

int bptt_rng_set_state(bptt_rng *r, const char *text, size_t len) {
  bptt_rng n;
  uint64_t bits;
  int i;
  if (len < 13 + 64 + 2 || memcmp(text, prefix, 13) != 0 || text[13 + 64] != ':') return BPTT_EFORMAT;
  for (i = 0; i < 4; i++)
    if (!parse_hex64(text + 13 + 16 * i, &n.s[i])) return BPTT_EFORMAT;
  if ((n.s[0] | n.s[1] | n.s[2] | n.s[3]) == 0) return BPTT_EFORMAT; /* the one invalid state */
  if (len == 13 + 64 + 2 && text[13 + 64 + 1] == '-') {
    n.has_spare = 0, n.spare = 0.0;
  } else if (len == BPTT_RNG_STATE_LEN && parse_hex64(text + 13 + 64 + 1, &bits)) {
    n.has_spare = 1;
    memcpy(&n.spare, &bits, sizeof bits);
  } else
    return BPTT_EFORMAT;
  *r = n;
  return BPTT_OK;
}
