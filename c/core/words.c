/*
 * words.c -- word vocabularies, a line reader over files in chunks, and the
 * word-text and labelled-sequence loaders (words.h).
 */
#include "words.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* ------------------------------------------------------------ vocabulary */

void bptt_words_init(bptt_words *w) { memset(w, 0, sizeof *w); }

void bptt_words_free(bptt_words *w) {
  free(w->bytes);
  free(w->off);
  free(w->counts);
  free(w->slots);
  memset(w, 0, sizeof *w);
}

/* FNV-1a, 64 bits */
static uint64_t hash(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ULL;
  size_t i;
  for (i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  return h;
}

static int same(const bptt_words *w, int32_t id, const char *s, size_t len) {
  int64_t a = w->off[id - 1], b = w->off[id];
  return (size_t)(b - a) == len && memcmp(w->bytes + a, s, len) == 0;
}

/* The slot where s is, or the empty slot where it would go. */
static uint32_t slot_of(const bptt_words *w, const char *s, size_t len) {
  uint32_t mask = w->nslots - 1, i = (uint32_t)hash(s, len) & mask;
  while (w->slots[i] && !same(w, w->slots[i], s, len)) i = (i + 1) & mask;
  return i;
}

int32_t bptt_words_find(const bptt_words *w, const char *s, size_t len) {
  if (w->nslots == 0) return 0;
  return w->slots[slot_of(w, s, len)];
}

const char *bptt_words_get(const bptt_words *w, int32_t id, size_t *len) {
  *len = (size_t)(w->off[id] - w->off[id - 1]);
  return w->bytes + w->off[id - 1];
}

/* Doubles the hash table (load factor at most 1/2). */
static int rehash(bptt_words *w) {
  uint32_t n = w->nslots ? w->nslots * 2 : 64;
  int32_t *old = w->slots, id;
  if (n == 0 || n > (1u << 31)) return BPTT_EOVERFLOW;
  w->slots = calloc(n, sizeof(int32_t));
  if (w->slots == NULL) {
    w->slots = old;
    return BPTT_ENOMEM;
  }
  w->nslots = n;
  free(old);
  for (id = 1; id <= w->size; id++) {
    size_t len;
    const char *s = bptt_words_get(w, id, &len);
    w->slots[slot_of(w, s, len)] = id;
  }
  return BPTT_OK;
}

int bptt_words_add(bptt_words *w, const char *s, size_t len, int64_t count, int32_t *id) {
  uint32_t at;
  int err;
  if ((uint64_t)(w->size + 1) * 2 > w->nslots && (err = rehash(w))) return err;
  at = slot_of(w, s, len);
  if (w->slots[at] == 0) {
    if (w->size == INT32_MAX - 1) return BPTT_EOVERFLOW;
    if (w->size == w->cap) {
      int32_t cap = w->cap ? (w->cap > INT32_MAX / 2 ? INT32_MAX - 1 : w->cap * 2) : 64;
      int64_t *off = realloc(w->off, sizeof(int64_t) * ((size_t)cap + 1));
      int64_t *counts;
      if (off == NULL) return BPTT_ENOMEM;
      if (w->cap == 0) off[0] = 0;
      w->off = off;
      counts = realloc(w->counts, sizeof(int64_t) * (size_t)cap);
      if (counts == NULL) return BPTT_ENOMEM;
      w->counts = counts;
      w->cap = cap;
    }
    if (len > w->bcap - w->nbytes) {
      size_t bcap = w->bcap ? w->bcap : 1024;
      char *b;
      while (len > bcap - w->nbytes) {
        if (bcap > SIZE_MAX / 2) return BPTT_EOVERFLOW;
        bcap *= 2;
      }
      b = realloc(w->bytes, bcap);
      if (b == NULL) return BPTT_ENOMEM;
      w->bytes = b, w->bcap = bcap;
    }
    if (len) memcpy(w->bytes + w->nbytes, s, len);
    w->nbytes += len;
    w->size++;
    w->off[w->size] = (int64_t)w->nbytes;
    w->counts[w->size - 1] = 0;
    w->slots[at] = w->size;
  }
  *id = w->slots[at];
  w->counts[*id - 1] += count;
  return BPTT_OK;
}

/* qsort's order: count descending (cmp_count), then bytes (both) */
typedef struct {
  int64_t count;
  const char *s;
  size_t len;
} entry;

static int cmp_bytes(const void *pa, const void *pb) {
  const entry *a = pa, *b = pb;
  int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
  if (c) return c;
  return a->len < b->len ? -1 : a->len > b->len;
}

static int cmp_count(const void *pa, const void *pb) {
  const entry *a = pa, *b = pb;
  if (a->count != b->count) return a->count > b->count ? -1 : 1;
  return cmp_bytes(pa, pb);
}

int bptt_words_ranked(bptt_words *out, const bptt_words *w, const char *const *specials, int nspecial, int32_t max,
                      int by_count) {
  entry *order;
  int32_t i, id;
  int err = BPTT_OK, k;
  bptt_words_init(out);
  for (k = 0; k < nspecial && !err; k++) err = bptt_words_add(out, specials[k], strlen(specials[k]), 0, &id);
  if (err) {
    bptt_words_free(out);
    return err;
  }
  order = malloc(sizeof(entry) * (size_t)(w->size ? w->size : 1));
  if (order == NULL) {
    bptt_words_free(out);
    return BPTT_ENOMEM;
  }
  for (i = 0; i < w->size; i++) {
    order[i].s = bptt_words_get(w, i + 1, &order[i].len);
    order[i].count = w->counts[i];
  }
  qsort(order, (size_t)w->size, sizeof(entry), by_count ? cmp_count : cmp_bytes);
  for (i = 0; i < w->size && !err; i++) {
    id = bptt_words_find(out, order[i].s, order[i].len);
    if (id) {
      out->counts[id - 1] += order[i].count; /* a special that occurs in the text */
    } else if (max <= 0 || out->size < max) {
      err = bptt_words_add(out, order[i].s, order[i].len, order[i].count, &id);
    } else if (nspecial > 0) {
      out->counts[0] += order[i].count;
    }
  }
  free(order);
  if (err) bptt_words_free(out);
  return err;
}

/* ---------------------------------------------------------------- tokens */

static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int bptt_token_next(int unit, const char *s, size_t len, size_t *pos, const char **tok, size_t *toklen) {
  size_t i = *pos;
  if (unit == BPTT_SPLIT_WORD) {
    size_t j;
    while (i < len && is_space((unsigned char)s[i])) i++;
    if (i == len) {
      *pos = i;
      return 0;
    }
    for (j = i; j < len && !is_space((unsigned char)s[j]); j++) {
    }
    *tok = s + i, *toklen = j - i, *pos = j;
    return 1;
  }
  if (i == len) return 0;
  if (unit == BPTT_SPLIT_BYTE) {
    *tok = s + i, *toklen = 1, *pos = i + 1;
    return 1;
  }
  {
    size_t n = bptt_utf8_len((const unsigned char *)s + i, len - i);
    if (n == 0) return -BPTT_EFORMAT;
    *tok = s + i, *toklen = n, *pos = i + n;
  }
  return 1;
}

/* ----------------------------------------------------------------- lines */

typedef int (*line_fn)(void *ud, const char *line, size_t len, int64_t lineno);

/* Calls fn for every line of src (without its '\n'; a last line without one
 * too), until fn returns nonzero (that code is returned). */
static int each_line(const bptt_text_src *src, line_fn fn, void *ud, bptt_words_error *e) {
  FILE *f = NULL;
  char *buf = NULL, *acc = NULL;
  size_t alen = 0, acap = 0, n, i, from;
  int64_t lineno = 0;
  int err = BPTT_OK;
  if (src->path == NULL) { /* in memory: the lines are views of the bytes */
    const char *s = src->bytes ? src->bytes : "";
    size_t len = src->bytes ? src->len : 0;
    for (from = 0, i = 0; i <= len && !err; i++) {
      if (i == len && from == len) break;
      if (i == len || s[i] == '\n') {
        err = fn(ud, s + from, i - from, ++lineno);
        from = i + 1;
      }
    }
    return err;
  }
  errno = 0;
  f = fopen(src->path, "rb");
  if (f == NULL) {
    e->sys_errno = errno;
    return BPTT_EIO;
  }
  buf = malloc(BPTT_TEXT_CHUNK);
  if (buf == NULL) err = BPTT_ENOMEM;
  while (!err) {
    errno = 0;
    n = fread(buf, 1, BPTT_TEXT_CHUNK, f);
    if (n < BPTT_TEXT_CHUNK && ferror(f)) {
      e->sys_errno = errno ? errno : EIO;
      err = BPTT_EIO;
      break;
    }
    if (n == 0) break;
    for (from = 0, i = 0; i < n && !err; i++) {
      if (buf[i] != '\n') continue;
      if (alen) { /* the line began in an earlier chunk */
        if (i - from > acap - alen) {
          char *a = realloc(acc, alen + (i - from));
          if (a == NULL) {
            err = BPTT_ENOMEM;
            break;
          }
          acc = a, acap = alen + (i - from);
        }
        memcpy(acc + alen, buf + from, i - from);
        err = fn(ud, acc, alen + (i - from), ++lineno);
        alen = 0;
      } else {
        err = fn(ud, buf + from, i - from, ++lineno);
      }
      from = i + 1;
    }
    if (!err && from < n) { /* keep the unfinished line */
      size_t k = n - from;
      if (k > acap - alen) {
        size_t cap = acap ? acap : 4096;
        char *a;
        while (k > cap - alen) cap *= 2;
        a = realloc(acc, cap);
        if (a == NULL) {
          err = BPTT_ENOMEM;
          break;
        }
        acc = a, acap = cap;
      }
      memcpy(acc + alen, buf + from, k);
      alen += k;
    }
  }
  if (!err && alen) err = fn(ud, acc, alen, ++lineno);
  fclose(f);
  free(buf);
  free(acc);
  return err;
}

/* --------------------------------------------------------------- loaders */

typedef struct {
  int unit;
  const char *eos;
  bptt_words *counts, *labels_out;
  const bptt_words *vocab, *label_vocab;
  int32_t unk;
  int32_t *ids, *starts, *lengths, *labels;
  int64_t n, m, cap, mcap;
  bptt_words_error *e;
} load_ctx;

/* One token: counted (pass 1) or written (pass 2). */
static int put_token(load_ctx *c, const char *tok, size_t len, int64_t lineno) {
  int32_t id;
  int err;
  if (c->ids == NULL) {
    if ((err = bptt_words_add(c->counts, tok, len, 1, &id))) return err;
  } else {
    if (c->n >= c->cap) return BPTT_ESHAPE;
    id = bptt_words_find(c->vocab, tok, len);
    if (id == 0) id = c->unk;
    if (id == 0) {
      c->e->line = lineno;
      return BPTT_ERANGE;
    }
    c->ids[c->n] = id;
  }
  c->n++;
  return BPTT_OK;
}

/* The tokens of s[0..len); *count gets how many. */
static int put_tokens(load_ctx *c, const char *s, size_t len, int64_t lineno, size_t base, int64_t *count) {
  size_t pos = 0, tl;
  const char *tok;
  int r, err;
  *count = 0;
  while ((r = bptt_token_next(c->unit, s, len, &pos, &tok, &tl)) == 1) {
    if ((err = put_token(c, tok, tl, lineno))) return err;
    (*count)++;
  }
  if (r < 0) {
    c->e->line = lineno, c->e->column = (int64_t)(base + pos) + 1, c->e->what = "invalid UTF-8";
    return BPTT_EFORMAT;
  }
  return BPTT_OK;
}

static int text_line(void *ud, const char *s, size_t len, int64_t lineno) {
  load_ctx *c = ud;
  int64_t k;
  int err = put_tokens(c, s, len, lineno, 0, &k);
  if (!err && c->eos) err = put_token(c, c->eos, strlen(c->eos), lineno);
  return err;
}

int bptt_words_text(const bptt_text_src *src, int unit, const char *eos, bptt_words *counts, const bptt_words *vocab,
                    int32_t unk, int32_t *ids, int64_t *n, bptt_words_error *e) {
  load_ctx c;
  int err;
  memset(e, 0, sizeof *e);
  memset(&c, 0, sizeof c);
  c.unit = unit, c.eos = eos, c.counts = counts, c.vocab = vocab, c.unk = unk, c.ids = ids, c.e = e;
  c.cap = ids ? *n : 0;
  err = each_line(src, text_line, &c, e);
  if (!err && ids && c.n != c.cap) err = BPTT_ESHAPE;
  if (!err) *n = c.n;
  return err;
}

static int labelled_line(void *ud, const char *s, size_t len, int64_t lineno) {
  load_ctx *c = ud;
  const char *tab;
  size_t i;
  int64_t k, first = c->n;
  int32_t id;
  int err;
  if (len && s[len - 1] == '\r') len--;
  for (i = 0; i < len && is_space((unsigned char)s[i]); i++) {
  }
  if (i == len) return BPTT_OK; /* a blank line */
  tab = memchr(s, '\t', len);
  c->e->line = lineno;
  if (tab == NULL) {
    c->e->what = "no TAB between the label and the text";
    return BPTT_EFORMAT;
  }
  if (tab == s) {
    c->e->what = "an empty label before the TAB";
    return BPTT_EFORMAT;
  }
  if (c->ids == NULL) {
    if ((err = bptt_words_add(c->labels_out, s, (size_t)(tab - s), 1, &id))) return err;
  } else {
    if (c->m >= c->mcap) return BPTT_ESHAPE;
    id = bptt_words_find(c->label_vocab, s, (size_t)(tab - s));
    if (id == 0) {
      c->e->what = "a label not among the given labels";
      return BPTT_ERANGE;
    }
    c->labels[c->m] = id;
    c->starts[c->m] = (int32_t)(first + 1);
  }
  err = put_tokens(c, tab + 1, len - (size_t)(tab + 1 - s), lineno, (size_t)(tab + 1 - s), &k);
  if (err) return err;
  if (k == 0) {
    c->e->what = "no token after the TAB";
    return BPTT_EFORMAT;
  }
  if (k > INT32_MAX || c->n > INT32_MAX) return BPTT_EOVERFLOW;
  if (c->ids) c->lengths[c->m] = (int32_t)k;
  c->m++;
  c->e->line = 0;
  return BPTT_OK;
}

int bptt_words_labelled(const bptt_text_src *src, int unit, bptt_words *labels_out, bptt_words *counts,
                        const bptt_words *label_vocab, const bptt_words *vocab, int32_t unk, int32_t *ids,
                        int32_t *starts, int32_t *lengths, int32_t *labels, int64_t *n, int64_t *m,
                        bptt_words_error *e) {
  load_ctx c;
  int err;
  memset(e, 0, sizeof *e);
  memset(&c, 0, sizeof c);
  c.unit = unit, c.counts = counts, c.labels_out = labels_out, c.vocab = vocab, c.label_vocab = label_vocab;
  c.unk = unk, c.ids = ids, c.starts = starts, c.lengths = lengths, c.labels = labels, c.e = e;
  c.cap = ids ? *n : 0, c.mcap = ids ? *m : 0;
  err = each_line(src, labelled_line, &c, e);
  if (!err && ids && (c.n != c.cap || c.m != c.mcap)) err = BPTT_ESHAPE;
  if (!err) *n = c.n, *m = c.m;
  return err;
}
