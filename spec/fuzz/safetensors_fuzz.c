/*
 * safetensors_fuzz.c -- libFuzzer target for the safetensors reader (c/core/safetensors.c)
 * and what bptt.load does after it (the checksum check), on arbitrary bytes.
 *
 *   make fuzz [FUZZ_SECONDS=60]      (builds build-fuzz/safetensors_fuzz, runs it over
 *                                     a copy of spec/fuzz/corpus)
 *
 * One input is one file, opened from memory (bptt_st_open_mem: the same parser and
 * checks as a file on disk, without the file system in the loop).  If it opens, the
 * harness checks what the reader promises before a caller allocates anything (every
 * tensor's bytes are numel * element size, inside the data, the regions tile it, so
 * the allocations add up to at most the input's size), verifies the checksum as
 * bptt.load does, and reads every tensor into a fresh C tensor.  If it does not
 * open, the reader must be closed again and the message must say something.  A broken
 * promise aborts, which libFuzzer reports as a crash; so do ASan and UBSan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, const char *msg) {
  if (!ok) {
    fprintf(stderr, "safetensors_fuzz: broken promise: %s (%s)\n", what, msg);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bptt_st_reader r;
  char msg[512];
  size_t i;
  int64_t at = 0, total = 0;
  const uint16_t one = 1; /* little-endian host: the bytes read are the file's as they are */
  int err;

  msg[0] = '\0';
  err = bptt_st_open_mem(&r, data, size, msg, sizeof msg);
  if (err) {
    check(err == BPTT_EFORMAT || err == BPTT_ENOMEM, "open fails only as EFORMAT or ENOMEM", msg);
    check(msg[0] != '\0', "a failure has a message", msg);
    check(r.mem == NULL && r.fd < 0 && r.tensors == NULL && r.meta == NULL && r.strings == NULL,
          "a failed open leaves the reader closed", msg);
    bptt_st_close(&r); /* and closing it again is harmless */
    return 0;
  }

  /* the header's promises */
  check(r.data_start >= 8 && r.data_len >= 0 && (uint64_t)(r.data_start + r.data_len) == size, "data range", "");
  for (i = 0; i < r.ntensors; i++) {
    const bptt_st_info *e = &r.tensors[i];
    int64_t numel = 1;
    int d;
    check(e->dtype >= 0 && e->dtype < BPTT_NDTYPES && e->ndim >= 0 && e->ndim <= BPTT_MAXDIM, "dtype, ndim", "");
    for (d = 0; d < e->ndim; d++) {
      check(e->size[d] >= 0, "sizes >= 0", "");
      numel *= e->size[d]; /* checked for overflow by the reader; UBSan says if not */
    }
    check(e->begin == at && e->end - e->begin == numel * (int64_t)bptt_dtype_size((bptt_dtype)e->dtype),
          "regions tile the data, in order, sized by their shapes", "");
    check(bptt_utf8_valid(e->name, e->name_len) && e->name[e->name_len] == '\0', "names are UTF-8", "");
    at = e->end, total += e->end - e->begin;
  }
  check(at == r.data_len && total <= (int64_t)size, "regions cover the data exactly", "");
  for (i = 0; i < r.nmeta; i++) {
    const bptt_st_pair *m = &r.meta[i];
    check(bptt_utf8_valid(m->key, m->key_len) && bptt_utf8_valid(m->value, m->value_len), "metadata is UTF-8", "");
    check(!(m->key_len == sizeof BPTT_ST_CHECKSUM_KEY - 1 && memcmp(m->key, BPTT_ST_CHECKSUM_KEY, m->key_len) == 0),
          "the checksum is kept out of the metadata", "");
  }
  if (r.has_checksum)
    check(r.checksum_at >= 8 && r.checksum_at + 8 <= r.data_start, "the checksum's digits lie in the header", "");

  /* bptt.load: the checksum, then every tensor (checked or not: the reads must be safe either way) */
  err = bptt_st_verify(&r, msg, sizeof msg);
  check(err == BPTT_OK || err == BPTT_EFORMAT || err == BPTT_ENOMEM, "verify fails only as EFORMAT or ENOMEM", msg);
  /* EFORMAT: a wrong checksum, or bptt's marks (a "bptt." key) without one */
  check(err != BPTT_EFORMAT || strstr(msg, "checksum mismatch (file corrupt)") != NULL ||
            (r.marked && !r.has_checksum && strstr(msg, "but no checksum") != NULL),
        "mismatch message", msg);
  check(err == BPTT_OK || r.has_checksum || r.marked, "a file without a checksum and bptt's marks verifies", msg);
  for (i = 0; i < r.ntensors; i++) {
    const bptt_st_info *e = &r.tensors[i];
    bptt_tensor t;
    if (bptt_tensor_init(&t, e->dtype, e->ndim, e->size) != BPTT_OK) continue; /* out of memory */
    err = bptt_st_read(&r, i, &t, msg, sizeof msg);
    check(err == BPTT_OK, "a validated tensor reads", msg);
    check(bptt_tensor_numel(&t) == 0 || *(const unsigned char *)&one != 1 ||
              memcmp(bptt_tensor_data(&t), data + r.data_start + e->begin, (size_t)(e->end - e->begin)) == 0,
          "the bytes read are the file's", "");
    bptt_tensor_release(&t);
  }
  check(bptt_st_read(&r, r.ntensors, NULL, msg, sizeof msg) == BPTT_EARG, "an index past the end is refused", msg);
  bptt_st_close(&r);
  bptt_st_close(&r);
  return 0;
}
