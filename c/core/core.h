/*
 * core.h -- what every file of the bptt C core shares: error codes, dtypes,
 * aligned allocation and checked size arithmetic.
 *
 * The core includes no Lua header.  Functions return an error code (BPTT_OK on
 * success); the Lua binding turns codes into Lua errors with a message that
 * names the function and the argument.  Nothing here calls exit() or abort().
 */
#ifndef BPTT_CORE_H
#define BPTT_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  BPTT_OK = 0,
  BPTT_ENOMEM,    /* allocation failed */
  BPTT_EOVERFLOW, /* a size or byte count does not fit in 64 bits / memory */
  BPTT_ESHAPE,    /* shapes do not agree */
  BPTT_EDTYPE,    /* dtypes do not agree or are not supported here */
  BPTT_EARG,      /* any other invalid argument */
  BPTT_ERANGE,    /* an index (token id, class target) out of range */
  BPTT_EIO,       /* a file could not be read or written */
  BPTT_EFORMAT    /* a file is corrupt or not in the expected format */
} bptt_err;

const char *bptt_strerror(int err);

typedef enum { BPTT_FLOAT32 = 0, BPTT_FLOAT64 = 1, BPTT_INT32 = 2 } bptt_dtype;

#define BPTT_NDTYPES 3

/* Bytes per element, and the Lua-facing name ("float32", ...). */
size_t bptt_dtype_size(bptt_dtype dt);
const char *bptt_dtype_name(bptt_dtype dt);
/* Name -> dtype; returns -1 for an unknown name. */
int bptt_dtype_from_name(const char *name);

/* All tensor storage is 64-byte aligned (one cache line, one AVX-512 vector). */
#define BPTT_ALIGN 64

/* Aligned allocation that returns NULL on failure or on nbytes == 0 is never
 * NULL (a zero-byte request gets a valid, freeable pointer). */
void *bptt_malloc(size_t nbytes);
void bptt_free(void *p);

/* Checked arithmetic on sizes: returns 0 and stores the result, or returns 1
 * on overflow.  Every shape -> byte count computation goes through these. */
int bptt_mul_overflow(int64_t a, int64_t b, int64_t *out);
int bptt_add_overflow(int64_t a, int64_t b, int64_t *out);

#endif
