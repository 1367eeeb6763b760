/*
 * text.h -- text corpora as token ids: byte and UTF-8 tokenizers, vocabularies,
 * and char-rnn's layout of B parallel streams of T steps.
 *
 * A symbol is a byte (unit BPTT_UNIT_BYTE, values 0..255) or a Unicode code
 * point (BPTT_UNIT_UTF8, scalar values 0..0x10FFFF without the surrogates
 * D800..DFFF).  Combining marks are symbols of their own: no normalization,
 * no grapheme clustering, and a byte order mark is kept as U+FEFF, so that
 * decode(encode(text)) == text byte for byte.
 *
 * A vocabulary maps symbols to ids 1..V (1-based, as every index of the
 * library).  Built from a text, it holds the distinct symbols in ascending
 * order of byte value / code point; rebuilt from a saved list, it keeps the
 * list's order.
 *
 * Text comes from a file, read through C stdio in chunks of BPTT_TEXT_CHUNK
 * bytes, or from bytes in memory.  Loading a file takes two passes (count the
 * symbols, then encode them into an id buffer of exactly that size), so that
 * the text and its ids are never in memory together: a corpus of N symbols
 * costs 4N bytes of ids, one chunk and (UTF-8, building a vocabulary) a
 * 0x110000-entry histogram.
 *
 * Invalid UTF-8 (a stray continuation byte, a lead byte C0, C1 or F5..FF, an
 * overlong form, a surrogate, a value above 0x10FFFF, a sequence cut short) is
 * BPTT_EFORMAT by default, with the byte offset of the offending sequence; with
 * `replace` each maximal invalid subpart becomes U+FFFD instead (Unicode 15,
 * section 3.9, "U+FFFD Substitution of Maximal Subparts").
 */
#ifndef BPTT_TEXT_H
#define BPTT_TEXT_H

#include "core.h"

typedef enum { BPTT_UNIT_BYTE = 0, BPTT_UNIT_UTF8 = 1 } bptt_unit;

#define BPTT_UTF8_LIMIT 0x110000u  /* code points are below this */
#define BPTT_REPLACEMENT 0xFFFDu   /* U+FFFD REPLACEMENT CHARACTER */
#define BPTT_TEXT_CHUNK (1u << 20) /* bytes read from a file at a time */

/* "byte" / "utf8", and back (-1 for an unknown name). */
const char *bptt_unit_name(int unit);
int bptt_unit_from_name(const char *name);

typedef struct bptt_vocab {
  int unit;          /* bptt_unit */
  int32_t size;      /* V */
  uint32_t *symbols; /* (V) the symbol of id i + 1 */
  int64_t *counts;   /* (V) occurrences in the text it was built from; 0 when rebuilt from a list */
  int32_t *index;    /* (nindex) symbol -> id, 0 for a symbol not in the vocabulary */
  uint32_t nindex;   /* largest symbol + 1 (0 for an empty vocabulary) */
} bptt_vocab;

/* Where a text could not be read or encoded. */
typedef struct bptt_text_error {
  int64_t offset;      /* byte offset (0-based) of the invalid sequence / unknown symbol */
  int64_t index;       /* position (0-based) of that symbol among the symbols of the text */
  uint32_t symbol;     /* BPTT_ERANGE: the unknown symbol */
  int byte;            /* BPTT_EFORMAT: the offending byte, -1 when the text ends inside a sequence */
  int64_t byte_offset; /* BPTT_EFORMAT: offset of that byte */
  int sys_errno;       /* BPTT_EIO: errno of the failed open or read */
} bptt_text_error;

/* A text: the file at `path` when it is not NULL, else `len` bytes at `bytes`. */
typedef struct bptt_text_src {
  const char *path;
  const char *bytes;
  size_t len;
} bptt_text_src;

/* An empty vocabulary (no allocation); bptt_vocab_free is safe to call twice. */
void bptt_vocab_init(bptt_vocab *v, int unit);
void bptt_vocab_free(bptt_vocab *v);

/* Counts the symbols of a text into *n.  Errors: BPTT_EIO (sys_errno set),
 * BPTT_EFORMAT (invalid UTF-8 without replace). */
int bptt_text_count(const bptt_text_src *src, int unit, int replace, int64_t *n, bptt_text_error *e);

/* Builds *v (which must be empty) from a text: its distinct symbols in
 * ascending order with their counts; *n gets the number of symbols.  Errors as
 * bptt_text_count, and BPTT_ENOMEM; *v stays empty on error. */
int bptt_vocab_build(bptt_vocab *v, const bptt_text_src *src, int unit, int replace, int64_t *n, bptt_text_error *e);

/* ids (n) = the ids of the n symbols of a text, in v's unit.  Errors as
 * bptt_text_count; BPTT_ERANGE for a symbol not in v (e->symbol, e->index,
 * e->offset); BPTT_ESHAPE when the text does not hold exactly n symbols (a
 * file that changed between the two passes). */
int bptt_text_encode(const bptt_vocab *v, const bptt_text_src *src, int replace, int32_t *ids, int64_t n,
                     bptt_text_error *e);

/* Builds *v (empty) with id i + 1 for symbols[i].  BPTT_EARG when a symbol is
 * not one of the unit (*bad = its position) or repeats an earlier one. */
int bptt_vocab_from_symbols(bptt_vocab *v, int unit, const uint32_t *symbols, int32_t n, int32_t *bad);

/* Writes the text of ids[0..n) (stride in elements) into out, at most cap
 * bytes; stops early when the next symbol does not fit.  *done = ids used,
 * *written = bytes written.  BPTT_ERANGE when ids[*done] is not in 1..V. */
int bptt_vocab_decode(const bptt_vocab *v, const int32_t *ids, int64_t stride, int64_t n, char *out, size_t cap,
                      int64_t *done, size_t *written);

/* The bytes of one symbol (1 for a byte, 1..4 for a code point) into out. */
int bptt_symbol_bytes(int unit, uint32_t symbol, char out[4]);
/* Reads exactly one symbol from s[0..len): returns 0 and *symbol, or
 * BPTT_EFORMAT (empty, more than one symbol, invalid UTF-8). */
int bptt_symbol_parse(int unit, const char *s, size_t len, uint32_t *symbol);

/* An ASCII string that bptt_vocab_parse turns back into the same vocabulary
 * (same ids; counts are not kept): "bptt-vocab/1 utf8 3 a 41 e9", i.e. the
 * unit, V, then each symbol in hex, in id order.  Writes at most cap bytes
 * (NUL included) and returns the length it needs (without the NUL), as
 * snprintf does. */
size_t bptt_vocab_serialize(const bptt_vocab *v, char *out, size_t cap);
/* BPTT_EFORMAT for a malformed string, BPTT_EARG for a bad symbol list. */
int bptt_vocab_parse(bptt_vocab *v, const char *s, size_t len);

/* char-rnn's streams.  tokens (n, stride in elements) is cut into B stripes
 * of S tokens; stripe b starts at token b*S.  Batch window `start` (0-based
 * offset into every stripe) gives, time-major,
 *   x[t][b] = tokens[b*S + start + t],  y[t][b] = tokens[b*S + start + t + 1]
 * for x, y: (T, B) contiguous.  BPTT_ERANGE if a read falls outside tokens. */
int bptt_text_batch(const int32_t *tokens, int64_t stride, int64_t n, int64_t S, int64_t start, int64_t T, int64_t B,
                    int32_t *x, int32_t *y);

/* Document starts: r[i] = 1 where x[i] == sep, else 0, for i < n (x and r
 * contiguous).  A corpus of documents, each opened by the separator symbol,
 * restarts a stream's state where its input is the separator. */
void bptt_text_starts(const int32_t *x, int64_t n, int32_t sep, int32_t *r);

/* perm (n) = a uniformly random permutation of 1..n (Fisher-Yates), a pure
 * function of (seed, epoch): the generator is seeded afresh from both. */
int bptt_text_permutation(int32_t *perm, int64_t n, uint64_t seed, uint64_t epoch);

#endif
