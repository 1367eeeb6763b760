/*
 * safetensors.h -- reading and writing safetensors files (no Lua here).
 *
 * The format:
 *   8 bytes   N, little-endian unsigned header size
 *   N bytes   UTF-8 JSON object: name -> {"dtype": "F32"|"F64"|"I32",
 *             "shape": [d1, ...], "data_offsets": [begin, end]}, plus an
 *             optional "__metadata__": {string: string}; may end in spaces
 *   the rest  the data buffer: each tensor little-endian, row-major, at
 *             [begin, end) counted from the byte after the header
 * The data regions tile the buffer exactly (no gaps, no overlaps, nothing
 * after the last one), as the reference implementation requires.
 *
 * The checksum (bptt's own; other writers leave it out): bptt_st_save puts
 * "bptt.checksum": "crc32:<8 lowercase hex digits>" in the metadata, the
 * CRC-32 (crc32.h, zlib's) of every byte of the file except the 8 digits
 * themselves, i.e. of file[0, at) followed by file[at + 8, end), where at is
 * where the digits start.  So any flipped bit in the header size, the header
 * (names, shapes, dtypes, offsets, other metadata) or a tensor's bytes is
 * caught, as is a digit of the sum itself; what is left out is exactly what
 * the writer cannot know when it writes the header, so it writes the file in
 * one pass and fills the digits in last.  In Python:
 *   zlib.crc32(b[:at] + b[at + 8:]) == int(b[at:at + 8], 16).
 * Readers keep it apart from the other metadata (bptt_st_reader.checksum),
 * and bptt_st_verify checks it.
 *
 * Every function returns a bptt_err and, on failure, writes into msg a
 * sentence saying what is wrong ("header size 9999999 exceeds file size 120").
 * A reader validates the whole header against the file size before anything
 * is allocated by size taken from the file, so a lying header cannot make the
 * caller allocate more than the file holds.
 */
#ifndef BPTT_SAFETENSORS_H
#define BPTT_SAFETENSORS_H

#include "tensor.h"

/* Largest header we read (as the reference implementation: 100 MB). */
#define BPTT_ST_MAX_HEADER 100000000
/* Deepest JSON nesting accepted (in values of fields we do not know). */
#define BPTT_ST_MAX_DEPTH 64
/* The reserved metadata key of the checksum, and its value's length
 * ("crc32:" and 8 hex digits). */
#define BPTT_ST_CHECKSUM_KEY "bptt.checksum"
#define BPTT_ST_CHECKSUM_LEN 14

/* A tensor to write: name (UTF-8, any bytes but valid UTF-8) and tensor (any
 * strides; the logical row-major elements are written). */
typedef struct {
  const char *name;
  size_t name_len;
  const bptt_tensor *t;
} bptt_st_item;

/* A metadata pair (both valid UTF-8). */
typedef struct {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} bptt_st_pair;

/* Writes the file atomically: to a fresh temporary file next to the target
 * (<target>.tmp.<pid>[.<k>], created with O_EXCL, so two writers never share
 * one), synced, then renamed onto the target, then the directory synced.
 * The target is path, or where path's symbolic links lead (the link is
 * written through, not replaced).  A target that exists and is not a
 * regular file (a directory, a FIFO, a device such as /dev/null) is refused.
 * On failure the temporary is removed and whatever was at the target is
 * untouched.  Names must be distinct, not "__metadata__", and valid UTF-8;
 * metadata keys distinct and not BPTT_ST_CHECKSUM_KEY, which is added
 * (BPTT_EARG otherwise); failures of the outside world give BPTT_EIO with
 * the OS error in errno (0 when there is none, as for a FIFO target). */
int bptt_st_save(const char *path, const bptt_st_item *items, size_t nitems, const bptt_st_pair *meta, size_t nmeta,
                 char *msg, size_t msglen);

/* One tensor described by a header.  The name points into the reader. */
typedef struct {
  const char *name;
  size_t name_len;
  int dtype; /* bptt_dtype */
  int ndim;
  int64_t size[BPTT_MAXDIM];
  int64_t begin, end; /* byte range in the data buffer */
} bptt_st_info;

/* An open, validated file.  Tensors are in file order (by data offset). */
typedef struct {
  int fd;                   /* -1 when closed or in memory */
  const unsigned char *mem; /* the bytes, from bptt_st_open_mem (else NULL) */
  int64_t data_start;       /* 8 + N */
  int64_t data_len;         /* bytes of the data buffer */
  char *strings;            /* decoded names, keys and values (each NUL-ended) */
  bptt_st_info *tensors;
  size_t ntensors;
  bptt_st_pair *meta; /* without BPTT_ST_CHECKSUM_KEY */
  size_t nmeta;
  int marked;       /* 1 if a metadata key marks it as bptt's (see bptt_st_verify) */
  const char *mark; /* that key (into strings) */
  size_t mark_len;
  int has_checksum;    /* 1 if the file has a (well-formed) checksum */
  uint32_t checksum;   /* its value */
  int64_t checksum_at; /* file offset of its 8 hex digits */
} bptt_st_reader;

/* A closed reader (so that bptt_st_close is safe on it). */
void bptt_st_reader_init(bptt_st_reader *r);
/* Opens path, reads and validates the header (and the checksum's form, not
 * its value: see bptt_st_verify).  On failure the reader is closed again
 * (BPTT_EIO: cannot open/read; BPTT_EFORMAT: not a valid file; BPTT_ENOMEM).
 * Here and in bptt_st_verify and bptt_st_read, BPTT_EIO leaves the OS error
 * in errno (0 when there is none: not a regular file, or it was cut short). */
int bptt_st_open(bptt_st_reader *r, const char *path, char *msg, size_t msglen);
/* The same over the len bytes at buf, which must outlive the reader. */
int bptt_st_open_mem(bptt_st_reader *r, const void *buf, size_t len, char *msg, size_t msglen);
/* Reads the whole file and checks it against its checksum: BPTT_OK if it
 * matches, or if there is none and the file is not marked as bptt's;
 * BPTT_EFORMAT "checksum mismatch (file corrupt)" if not, or when a marked
 * file has no checksum; BPTT_EIO, BPTT_ENOMEM.  A file is marked when a
 * metadata key starts with "bptt." or is BPTT_ST_CHECKSUM_KEY with at most
 * one bit flipped ("bptt.checksuo"): bptt_st_save always writes that key, so
 * no single flipped bit turns a bptt file into an unchecked foreign one. */
int bptt_st_verify(const bptt_st_reader *r, char *msg, size_t msglen);
/* Reads tensor i into t, a contiguous tensor of its dtype and shape. */
int bptt_st_read(const bptt_st_reader *r, size_t i, const bptt_tensor *t, char *msg, size_t msglen);
/* Closes the file and frees everything; safe to call twice. */
void bptt_st_close(bptt_st_reader *r);

#endif
