/*
 * words.h -- texts of tokens other than characters: word vocabularies (byte
 * strings <-> ids 1..V in a hash table), a line reader, and the two loaders
 * built on them: a text as word ids, and labelled sequences (one example a
 * line, "label<TAB>text").
 *
 * Tokens.  With unit BPTT_SPLIT_WORD a token is a maximal run of bytes other
 * than ASCII white space (space, \t, \n, \v, \f, \r); with BPTT_SPLIT_UTF8 a
 * token is one code point (invalid UTF-8 is an error naming the line); with
 * BPTT_SPLIT_BYTE one byte.  Words are byte strings: no normalization.
 *
 * Files are read through C stdio in chunks of BPTT_TEXT_CHUNK bytes and
 * handed out one line at a time (a line longer than a chunk is gathered in a
 * growing buffer), so the text is never in memory whole: a loader reads its
 * source twice, once to count (the vocabulary, the number of tokens), once to
 * write the ids into a buffer of exactly that size.
 */
#ifndef BPTT_WORDS_H
#define BPTT_WORDS_H

#include "core.h"
#include "text.h"

typedef enum { BPTT_SPLIT_WORD = 0, BPTT_SPLIT_UTF8 = 1, BPTT_SPLIT_BYTE = 2 } bptt_split;

/* A vocabulary of byte strings with ids 1..V and a count each. */
typedef struct bptt_words {
  int32_t size, cap; /* V, and room for that many */
  char *bytes;       /* the words one after another */
  size_t nbytes, bcap;
  int64_t *off;    /* (cap + 1) word id is bytes[off[id - 1] .. off[id]) */
  int64_t *counts; /* (cap) */
  int32_t *slots;  /* (nslots, a power of 2) open addressing: an id, or 0 */
  uint32_t nslots;
} bptt_words;

/* An empty vocabulary (no allocation); bptt_words_free is safe twice. */
void bptt_words_init(bptt_words *w);
void bptt_words_free(bptt_words *w);
/* The id of s[0..len), added when new (BPTT_ENOMEM, BPTT_EOVERFLOW past
 * INT32_MAX words); its count grows by `count`. */
int bptt_words_add(bptt_words *w, const char *s, size_t len, int64_t count, int32_t *id);
/* The id of s[0..len), 0 when it is not in w. */
int32_t bptt_words_find(const bptt_words *w, const char *s, size_t len);
/* The bytes of id (1..V) and their length. */
const char *bptt_words_get(const bptt_words *w, int32_t id, size_t *len);
/* *out (empty) = the nspecial strings first (count 0), then the words of w
 * not among them, by count descending and ties in byte order (by_count), or
 * all in byte order (!by_count), at most max ids in all (max <= 0: no limit).
 * Words that do not make it add their counts to out's first special. */
int bptt_words_ranked(bptt_words *out, const bptt_words *w, const char *const *specials, int nspecial, int32_t max,
                      int by_count);

/* The next token of s[*pos..len) into *tok, *toklen: 1, or 0 at the end, or
 * BPTT_EFORMAT negated (-BPTT_EFORMAT) for invalid UTF-8 at *pos. */
int bptt_token_next(int unit, const char *s, size_t len, size_t *pos, const char **tok, size_t *toklen);

/* Where a load failed. */
typedef struct bptt_words_error {
  int sys_errno;    /* BPTT_EIO */
  int64_t line;     /* 1-based line of a malformed example or invalid UTF-8 */
  int64_t column;   /* 1-based byte column of invalid UTF-8 */
  const char *what; /* BPTT_EFORMAT: what is wrong with the line (a static string) */
} bptt_words_error;

/* A word text.  Pass 1 (ids NULL): counts every token (and eos at each line
 * end when eos is not NULL) into *counts, *n = the number of tokens.  Pass 2
 * (ids of n): ids[i] = the id in vocab of token i, `unk` for a token not in
 * it (BPTT_ERANGE with e->line when unk is 0).  Errors: BPTT_EIO,
 * BPTT_ENOMEM, BPTT_EFORMAT (invalid UTF-8, unit UTF8), BPTT_ESHAPE (the file
 * changed between the passes). */
int bptt_words_text(const bptt_text_src *src, int unit, const char *eos, bptt_words *counts, const bptt_words *vocab,
                    int32_t unk, int32_t *ids, int64_t *n, bptt_words_error *e);

/* Labelled sequences: each non-blank line is "label<TAB>text" (a '\r' before
 * the '\n' is dropped); the label is the bytes before the first TAB, the text
 * the tokens after it.  Pass 1 (ids NULL): labels into *labels_out, tokens
 * into *counts, *n tokens, *m examples.  Pass 2: ids (n), starts (m, 1-based
 * offsets into ids), lengths (m), labels (m) with label ids of label_vocab
 * (BPTT_ERANGE with e->line for a label not in it) and token ids of vocab
 * (unk for unknown ones).  BPTT_EFORMAT with e->line, e->what: no TAB, an
 * empty label, no token after the TAB, invalid UTF-8. */
int bptt_words_labelled(const bptt_text_src *src, int unit, bptt_words *labels_out, bptt_words *counts,
                        const bptt_words *label_vocab, const bptt_words *vocab, int32_t unk, int32_t *ids,
                        int32_t *starts, int32_t *lengths, int32_t *labels, int64_t *n, int64_t *m,
                        bptt_words_error *e);

#endif
