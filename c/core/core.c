/*
 * core.c -- error strings, dtypes, aligned allocation, checked size arithmetic,
 * the instruction-set level of isa.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include "isa.h"

#include <stdlib.h>
#include <string.h>

const char *bptt_strerror(int err) {
  switch (err) {
    case BPTT_OK:
      return "no error";
    case BPTT_ENOMEM:
      return "out of memory";
    case BPTT_EOVERFLOW:
      return "size overflows";
    case BPTT_ESHAPE:
      return "shapes do not agree";
    case BPTT_EDTYPE:
      return "dtypes do not agree";
    case BPTT_EARG:
      return "invalid argument";
    case BPTT_ERANGE:
      return "index out of range";
    case BPTT_EIO:
      return "input/output error";
    case BPTT_EFORMAT:
      return "corrupt or unknown file format";
    default:
      return "unknown error";
  }
}

static const char *const dtype_names[BPTT_NDTYPES] = { "float32", "float64", "int32" };
static const size_t dtype_sizes[BPTT_NDTYPES] = { 4, 8, 4 };

size_t bptt_dtype_size(bptt_dtype dt) { return (unsigned)dt < BPTT_NDTYPES ? dtype_sizes[dt] : 0; }

const char *bptt_dtype_name(bptt_dtype dt) { return (unsigned)dt < BPTT_NDTYPES ? dtype_names[dt] : "?"; }

int bptt_dtype_from_name(const char *name) {
  int i;
  for (i = 0; i < BPTT_NDTYPES; i++)
    if (strcmp(name, dtype_names[i]) == 0) return i;
  return -1;
}

void *bptt_malloc(size_t nbytes) {
  void *p = NULL;
  /* posix_memalign wants a size that need not be a multiple of the alignment;
     round up anyway so that vector loops may read a whole last line. */
  size_t n = nbytes == 0 ? BPTT_ALIGN : nbytes;
  if (n > SIZE_MAX - (BPTT_ALIGN - 1)) return NULL;
  n = (n + BPTT_ALIGN - 1) & ~(size_t)(BPTT_ALIGN - 1);
  if (posix_memalign(&p, BPTT_ALIGN, n) != 0) return NULL;
  return p;
}

void bptt_free(void *p) { free(p); }

int bptt_mul_overflow(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0) return 1;
  if (a != 0 && b > INT64_MAX / a) return 1;
  *out = a * b;
  return 0;
}

int bptt_add_overflow(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0 || a > INT64_MAX - b) return 1;
  *out = a + b;
  return 0;
}

/* ---------------------------------------------------- isa.h: the level */

static const char *const isa_names[BPTT_NISA] = { "generic", "avx2", "avx512" };

const char *bptt_isa_name(int level) { return level >= 0 && level < BPTT_NISA ? isa_names[level] : "?"; }

int bptt_isa_from_name(const char *name) {
  int i;
  for (i = 0; name && i < BPTT_NISA; i++)
    if (strcmp(name, isa_names[i]) == 0) return i;
  return -1;
}

#ifdef BPTT_HAVE_CLONES
int bptt_isa_level_ = -1;

int bptt_isa_cpu(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return BPTT_ISA_AVX512;
  if (__builtin_cpu_supports("avx2")) return BPTT_ISA_AVX2;
  return BPTT_ISA_GENERIC;
}

int bptt_isa_level(void) {
  int l = __atomic_load_n(&bptt_isa_level_, __ATOMIC_RELAXED);
  if (l < 0) { /* first use: the CPU's best (racing threads agree) */
    l = bptt_isa_cpu();
    __atomic_store_n(&bptt_isa_level_, l, __ATOMIC_RELAXED);
  }
  return l;
}

int bptt_isa_set(int level) {
  int cpu = bptt_isa_cpu();
  int l = level < BPTT_ISA_GENERIC ? BPTT_ISA_GENERIC : level > cpu ? cpu : level;
  __atomic_store_n(&bptt_isa_level_, l, __ATOMIC_RELAXED);
  return l;
}
#else
int bptt_isa_cpu(void) { return BPTT_ISA_GENERIC; }
int bptt_isa_level(void) { return BPTT_ISA_GENERIC; }
int bptt_isa_set(int level) {
  (void)level;
  return BPTT_ISA_GENERIC;
}
#endif
