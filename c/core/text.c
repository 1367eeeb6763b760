/*
 * text.c -- byte and UTF-8 tokenizers, vocabularies, char-rnn's batches.
 *
 * Every pass over a text goes through scan(): a reader hands out chunks (a
 * file through stdio, BPTT_TEXT_CHUNK bytes at a time, or the bytes in memory
 * as one chunk), a UTF-8 decoder whose state survives chunk boundaries turns
 * them into symbols, and a sink counts, histograms or encodes each symbol.
 */
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "utf8.h"

const char *bptt_unit_name(int unit) { return unit == BPTT_UNIT_UTF8 ? "utf8" : "byte"; }

int bptt_unit_from_name(const char *name) {
  if (strcmp(name, "byte") == 0) return BPTT_UNIT_BYTE;
  if (strcmp(name, "utf8") == 0) return BPTT_UNIT_UTF8;
  return -1;
}

static int valid_symbol(int unit, uint32_t s) {
  if (unit == BPTT_UNIT_BYTE) return s < 256;
  return s < BPTT_UTF8_LIMIT && (s < 0xD800 || s > 0xDFFF);
}

/* ---------------------------------------------------------------- reader */

typedef struct {
  FILE *f;
  unsigned char *buf; /* BPTT_TEXT_CHUNK bytes when reading a file */
  const unsigned char *mem;
  size_t len;
} reader;

static int reader_open(reader *r, const bptt_text_src *src, bptt_text_error *e) {
  memset(r, 0, sizeof *r);
  if (src->path == NULL) {
    r->mem = (const unsigned char *)src->bytes;
    r->len = src->bytes ? src->len : 0;
    return BPTT_OK;
  }
  errno = 0;
  r->f = fopen(src->path, "rb");
  if (r->f == NULL) {
    e->sys_errno = errno;
    return BPTT_EIO;
  }
  r->buf = malloc(BPTT_TEXT_CHUNK);
  if (r->buf == NULL) {
    fclose(r->f);
    r->f = NULL;
    return BPTT_ENOMEM;
  }
  return BPTT_OK;
}

/* The next chunk (at most BPTT_TEXT_CHUNK bytes) into *p, *n; *n == 0 at the end. */
static int reader_next(reader *r, const unsigned char **p, size_t *n, bptt_text_error *e) {
  if (r->f == NULL) {
    *p = r->mem, *n = r->len < BPTT_TEXT_CHUNK ? r->len : BPTT_TEXT_CHUNK;
    r->mem += *n, r->len -= *n;
    return BPTT_OK;
  }
  errno = 0;
  *n = fread(r->buf, 1, BPTT_TEXT_CHUNK, r->f);
  *p = r->buf;
  if (*n < BPTT_TEXT_CHUNK && ferror(r->f)) {
    e->sys_errno = errno ? errno : EIO; /* a directory reads as EISDIR */
    return BPTT_EIO;
  }
  return BPTT_OK;
}

static void reader_close(reader *r) {
  if (r->f) fclose(r->f);
  free(r->buf);
  r->f = NULL, r->buf = NULL;
}

/* ----------------------------------------------------------------- UTF-8 */

/* The decoder between two bytes: `need` continuation bytes are still due, the
 * next one in lo..hi, for the sequence whose lead byte is at offset `start`. */
typedef struct {
  uint32_t cp;
  unsigned need, lo, hi;
  int64_t start;
} utf8_state;

static int invalid(bptt_text_error *e, int64_t start, int byte, int64_t byte_offset) {
  e->offset = start, e->byte = byte, e->byte_offset = byte_offset;
  return BPTT_EFORMAT;
}

/* Decodes p[0..len), the bytes at offset pos of the text, into code points
 * cps[0..*m).  With find >= 0 it stops at symbol `find` of the chunk and
 * stores the offset where its encoding starts in *found (the slow path that
 * names an unknown symbol's offset).
 *
 * UTF-8 (utf8.h: a lead byte fixes the length and the range of the first
 * continuation byte, which rules out overlong forms, surrogates and values
 * above U+10FFFF as soon as that byte is seen).  A sequence cut short by a
 * byte outside the expected range is one maximal subpart: it becomes one
 * U+FFFD, and that byte is decoded afresh. */
static int utf8_decode(utf8_state *st, const unsigned char *p, size_t len, int64_t pos, int replace, uint32_t *cps,
                       int64_t *m, int64_t find, int64_t *found, bptt_text_error *e) {
  size_t i = 0;
  int64_t k = 0;
  uint32_t cp = st->cp;
  unsigned need = st->need, lo = st->lo, hi = st->hi;
  int64_t start = st->start;
#define PUT(sym, off)                                                                                                  \
  do {                                                                                                                 \
    if (k == find) {                                                                                                   \
      *found = (off);                                                                                                  \
      return BPTT_OK;                                                                                                  \
    }                                                                                                                  \
    cps[k++] = (sym);                                                                                                  \
  } while (0)
  while (i < len) {
    unsigned c = p[i];
    int64_t at = pos + (int64_t)i;
    if (need) {
      if (c >= lo && c <= hi) {
        cp = cp << 6 | (c & 0x3F);
        lo = 0x80, hi = 0xBF, i++;
        if (--need == 0) PUT(cp, start);
        continue;
      }
      if (!replace) return invalid(e, start, (int)c, at);
      need = 0;
      PUT(BPTT_REPLACEMENT, start);
      continue; /* c again, as the start of what follows */
    }
    i++;
    if (c < 0x80) {
      PUT(c, at);
      while (i < len && p[i] < 0x80) { /* runs of ASCII */
        PUT(p[i], pos + (int64_t)i);
        i++;
      }
    } else if ((need = (unsigned)bptt_utf8_lead(c, &lo, &hi)) > 1) {
      need--, start = at;
      cp = c & (0x7Fu >> (need + 1)); /* the lead byte's payload: 5, 4 or 3 bits */
    } else {                          /* 80..BF (a stray continuation), C0, C1, F5..FF */
      if (!replace) return invalid(e, at, (int)c, at);
      PUT(BPTT_REPLACEMENT, at);
    }
  }
#undef PUT
  st->cp = cp, st->need = need, st->lo = lo, st->hi = hi, st->start = start;
  *m = k;
  return BPTT_OK;
}

/* ------------------------------------------------------------------ sink */

enum { SINK_COUNT, SINK_HIST, SINK_ENCODE };

typedef struct {
  int mode;
  int64_t n;           /* symbols seen so far */
  int64_t *hist;       /* SINK_HIST: (256 or BPTT_UTF8_LIMIT) */
  uint32_t maxsym;     /* SINK_HIST: the largest symbol seen */
  const bptt_vocab *v; /* SINK_ENCODE */
  int32_t *ids;        /* SINK_ENCODE: (cap) */
  int64_t cap;
} sink;

/* Takes m symbols, bytes (p) or code points (cps).  On BPTT_ERANGE (a symbol
 * not in the vocabulary) *bad is its position among the m. */
static int sink_put(sink *k, const unsigned char *p, const uint32_t *cps, int64_t m, int64_t *bad) {
  int64_t j;
  if (k->mode == SINK_HIST) {
    int64_t *hist = k->hist;
    uint32_t mx = k->maxsym;
    if (p) {
      for (j = 0; j < m; j++) hist[p[j]]++;
      mx = 255;
    } else {
      for (j = 0; j < m; j++) {
        hist[cps[j]]++;
        if (cps[j] > mx) mx = cps[j];
      }
    }
    k->maxsym = mx;
  } else if (k->mode == SINK_ENCODE) {
    /* locals: with -fno-strict-aliasing every store to ids would reload k->... */
    const int32_t *index = k->v->index;
    uint32_t nindex = k->v->nindex;
    int32_t *ids = k->ids + k->n;
    if (m > k->cap - k->n) return BPTT_ESHAPE;
    for (j = 0; j < m; j++) {
      uint32_t s = p ? p[j] : cps[j];
      int32_t id = s < nindex ? index[s] : 0;
      if (id == 0) {
        *bad = j;
        return BPTT_ERANGE;
      }
      ids[j] = id;
    }
  }
  k->n += m;
  return BPTT_OK;
}

/* Feeds every symbol of the text to k, one chunk at a time. */
static int scan(const bptt_text_src *src, int unit, int replace, sink *k, bptt_text_error *e) {
  reader r;
  utf8_state st, st0;
  const unsigned char *p;
  uint32_t *cps = NULL, last;
  size_t len;
  int64_t pos = 0, m, bad = 0, found = 0; /* pos: offset of p[0] */
  int err = reader_open(&r, src, e);
  if (err) return err;
  memset(&st, 0, sizeof st);
  if (unit == BPTT_UNIT_UTF8) {
    size_t most = src->path || src->len > BPTT_TEXT_CHUNK ? BPTT_TEXT_CHUNK : src->len;
    cps = malloc(sizeof(uint32_t) * (most ? most : 1));
    if (cps == NULL) err = BPTT_ENOMEM;
  }
  while (!err) {
    err = reader_next(&r, &p, &len, e);
    if (err || len == 0) break;
    if (unit == BPTT_UNIT_BYTE) {
      if (k->mode == SINK_COUNT)
        k->n += (int64_t)len;
      else if ((err = sink_put(k, p, NULL, (int64_t)len, &bad)) == BPTT_ERANGE) {
        e->symbol = p[bad], e->index = k->n + bad, e->offset = pos + bad;
      }
    } else {
      st0 = st;
      err = utf8_decode(&st, p, len, pos, replace, cps, &m, -1, &found, e);
      if (!err && (err = sink_put(k, NULL, cps, m, &bad)) == BPTT_ERANGE) {
        e->symbol = cps[bad], e->index = k->n + bad;
        utf8_decode(&st0, p, len, pos, replace, cps, &m, bad, &e->offset, e); /* where it starts */
      }
    }
    pos += (int64_t)len;
  }
  if (!err && st.need) { /* the text ends inside a sequence */
    last = BPTT_REPLACEMENT;
    if (!replace)
      err = invalid(e, st.start, -1, pos);
    else if ((err = sink_put(k, NULL, &last, 1, &bad)) == BPTT_ERANGE)
      e->symbol = last, e->index = k->n, e->offset = st.start;
  }
  reader_close(&r);
  free(cps);
  if (!err && k->mode == SINK_ENCODE && k->n != k->cap) err = BPTT_ESHAPE;
  return err;
}

/* ------------------------------------------------------------ vocabulary */

void bptt_vocab_init(bptt_vocab *v, int unit) {
  memset(v, 0, sizeof *v);
  v->unit = unit;
}

void bptt_vocab_free(bptt_vocab *v) {
  free(v->symbols);
  free(v->counts);
  free(v->index);
  v->symbols = NULL, v->counts = NULL, v->index = NULL;
  v->size = 0, v->nindex = 0;
}

/* Allocates the arrays of a vocabulary of V symbols whose largest is maxsym. */
static int vocab_alloc(bptt_vocab *v, int32_t V, uint32_t maxsym) {
  v->symbols = malloc(sizeof(uint32_t) * (size_t)(V ? V : 1));
  v->counts = calloc((size_t)(V ? V : 1), sizeof(int64_t));
  v->nindex = V ? maxsym + 1 : 0;
  v->index = calloc((size_t)(V ? v->nindex : 1), sizeof(int32_t));
  if (v->symbols == NULL || v->counts == NULL || v->index == NULL) {
    bptt_vocab_free(v);
    return BPTT_ENOMEM;
  }
  v->size = V;
  return BPTT_OK;
}

int bptt_text_count(const bptt_text_src *src, int unit, int replace, int64_t *n, bptt_text_error *e) {
  sink k;
  int err;
  memset(e, 0, sizeof *e);
  memset(&k, 0, sizeof k);
  k.mode = SINK_COUNT;
  err = scan(src, unit, replace, &k, e);
  *n = k.n;
  return err;
}

int bptt_vocab_build(bptt_vocab *v, const bptt_text_src *src, int unit, int replace, int64_t *n, bptt_text_error *e) {
  sink k;
  uint32_t nsym = unit == BPTT_UNIT_BYTE ? 256 : BPTT_UTF8_LIMIT, s, maxsym = 0;
  int32_t V = 0;
  int err;
  memset(e, 0, sizeof *e);
  memset(&k, 0, sizeof k);
  bptt_vocab_init(v, unit);
  *n = 0;
  k.mode = SINK_HIST;
  k.hist = calloc(nsym, sizeof(int64_t)); /* 8.5 MB for UTF-8: untouched pages cost nothing */
  if (k.hist == NULL) return BPTT_ENOMEM;
  err = scan(src, unit, replace, &k, e);
  if (!err) nsym = k.n > 0 ? k.maxsym + 1 : 0; /* for ASCII text, one page of the histogram is read */
  if (!err) {
    for (s = 0; s < nsym; s++)
      if (k.hist[s]) V++, maxsym = s;
    err = vocab_alloc(v, V, maxsym);
  }
  if (!err) {
    int32_t id = 0;
    for (s = 0; s < nsym; s++)
      if (k.hist[s]) {
        v->symbols[id] = s;
        v->counts[id] = k.hist[s];
        v->index[s] = ++id; /* ascending symbols get ids 1..V */
      }
    *n = k.n;
  }
  free(k.hist);
  return err;
}

int bptt_text_encode(const bptt_vocab *v, const bptt_text_src *src, int replace, int32_t *ids, int64_t n,
                     bptt_text_error *e) {
  sink k;
  memset(e, 0, sizeof *e);
  memset(&k, 0, sizeof k);
  if (n < 0 || (n > 0 && ids == NULL)) return BPTT_EARG;
  k.mode = SINK_ENCODE, k.v = v, k.ids = ids, k.cap = n;
  return scan(src, v->unit, replace, &k, e);
}

int bptt_vocab_from_symbols(bptt_vocab *v, int unit, const uint32_t *symbols, int32_t n, int32_t *bad) {
  uint32_t maxsym = 0;
  int32_t i;
  int err;
  bptt_vocab_init(v, unit);
  *bad = -1;
  if (n < 0 || (unit != BPTT_UNIT_BYTE && unit != BPTT_UNIT_UTF8)) return BPTT_EARG;
  for (i = 0; i < n; i++) {
    if (!valid_symbol(unit, symbols[i])) {
      *bad = i;
      return BPTT_EARG;
    }
    if (symbols[i] > maxsym) maxsym = symbols[i];
  }
  if ((err = vocab_alloc(v, n, maxsym))) return err;
  for (i = 0; i < n; i++) {
    if (v->index[symbols[i]]) { /* a repeat */
      *bad = i;
      bptt_vocab_free(v);
      return BPTT_EARG;
    }
    v->symbols[i] = symbols[i];
    v->index[symbols[i]] = i + 1;
  }
  return BPTT_OK;
}

/* ------------------------------------------------------- symbols as text */

int bptt_symbol_bytes(int unit, uint32_t s, char out[4]) {
  unsigned char *o = (unsigned char *)out;
  if (unit == BPTT_UNIT_BYTE || s < 0x80) {
    o[0] = (unsigned char)s;
    return 1;
  }
  return bptt_utf8_put(s, o);
}

int bptt_symbol_parse(int unit, const char *s, size_t len, uint32_t *symbol) {
  bptt_text_src src;
  bptt_text_error e;
  sink k;
  if (len == 0) return BPTT_EFORMAT;
  if (unit == BPTT_UNIT_BYTE) {
    if (len != 1) return BPTT_EFORMAT;
    *symbol = (unsigned char)s[0];
    return BPTT_OK;
  }
  if (len > 4) return BPTT_EFORMAT;
  /* decode with the one decoder: a vocabulary-free count must give 1, and
     the code point is rebuilt from the bytes (which are then known valid) */
  memset(&k, 0, sizeof k);
  memset(&e, 0, sizeof e);
  src.path = NULL, src.bytes = s, src.len = len;
  k.mode = SINK_COUNT;
  if (scan(&src, BPTT_UNIT_UTF8, 0, &k, &e) || k.n != 1) return BPTT_EFORMAT;
  {
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp = len == 1 ? u[0] : (uint32_t)u[0] & (0x7Fu >> len);
    size_t i;
    for (i = 1; i < len; i++) cp = cp << 6 | (u[i] & 0x3Fu);
    *symbol = cp;
  }
  return BPTT_OK;
}

int bptt_vocab_decode(const bptt_vocab *v, const int32_t *ids, int64_t stride, int64_t n, char *out, size_t cap,
                      int64_t *done, size_t *written) {
  size_t w = 0;
  int64_t i;
  for (i = 0; i < n; i++) {
    int32_t id = ids[i * stride];
    char b[4];
    int len;
    if (id < 1 || id > v->size) {
      *done = i, *written = w;
      return BPTT_ERANGE;
    }
    len = bptt_symbol_bytes(v->unit, v->symbols[id - 1], b);
    if ((size_t)len > cap - w) break;
    memcpy(out + w, b, (size_t)len);
    w += (size_t)len;
  }
  *done = i, *written = w;
  return BPTT_OK;
}

/* --------------------------------------------------------- serialization */

#define VOCAB_MAGIC "bptt-vocab/1 "

/* snprintf's destination and room at out + len: NULL and 0 once full, so
   that the calls go on counting the length needed. */
#define AT(len) ((len) < cap ? out + (len) : NULL), ((len) < cap ? cap - (len) : 0)

size_t bptt_vocab_serialize(const bptt_vocab *v, char *out, size_t cap) {
  size_t len = 0;
  int32_t i;
  int k;
  if (out == NULL) cap = 0;
  k = snprintf(AT(len), VOCAB_MAGIC "%s %ld", bptt_unit_name(v->unit), (long)v->size);
  if (k > 0) len += (size_t)k;
  for (i = 0; i < v->size; i++) {
    k = snprintf(AT(len), " %lx", (unsigned long)v->symbols[i]);
    if (k > 0) len += (size_t)k;
  }
  return len;
}

#undef AT

/* A number in base 10 or 16 at s[*i..len), at most maxdig digits. */
static int parse_number(const char *s, size_t len, size_t *i, int base, int maxdig, uint32_t *out) {
  uint32_t x = 0;
  int dig = 0;
  while (*i < len && dig < maxdig) {
    int c = (unsigned char)s[*i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      break;
    x = x * (uint32_t)base + (uint32_t)d;
    dig++, (*i)++;
  }
  if (dig == 0 || (*i < len && s[*i] != ' ')) return BPTT_EFORMAT;
  *out = x;
  return BPTT_OK;
}

int bptt_vocab_parse(bptt_vocab *v, const char *s, size_t len) {
  size_t i = sizeof VOCAB_MAGIC - 1;
  uint32_t V, j, *symbols;
  int32_t bad;
  int unit, err = BPTT_OK;
  bptt_vocab_init(v, BPTT_UNIT_BYTE);
  if (len < i || memcmp(s, VOCAB_MAGIC, i) != 0) return BPTT_EFORMAT;
  if (len - i > 5 && memcmp(s + i, "byte ", 5) == 0)
    unit = BPTT_UNIT_BYTE;
  else if (len - i > 5 && memcmp(s + i, "utf8 ", 5) == 0)
    unit = BPTT_UNIT_UTF8;
  else
    return BPTT_EFORMAT;
  i += 5;
  if (parse_number(s, len, &i, 10, 7, &V) || V > BPTT_UTF8_LIMIT || V > (len - i) / 2) return BPTT_EFORMAT;
  symbols = malloc(sizeof(uint32_t) * (V ? V : 1));
  if (symbols == NULL) return BPTT_ENOMEM;
  for (j = 0; j < V && !err; j++) {
    if (i >= len || s[i] != ' ')
      err = BPTT_EFORMAT;
    else {
      i++;
      err = parse_number(s, len, &i, 16, 8, &symbols[j]);
    }
  }
  if (!err && i != len) err = BPTT_EFORMAT;
  if (!err) err = bptt_vocab_from_symbols(v, unit, symbols, (int32_t)V, &bad);
  free(symbols);
  return err;
}

/* --------------------------------------------------------------- batches */

int bptt_text_batch(const int32_t *tokens, int64_t stride, int64_t n, int64_t S, int64_t start, int64_t T, int64_t B,
                    int32_t *x, int32_t *y) {
  int64_t t, b, last;
  if (T < 1 || B < 1 || S < 0 || start < 0 || stride < 0) return BPTT_EARG;
  /* the last token read is y[T-1][B-1] = tokens[(B-1)*S + start + T] */
  if (bptt_mul_overflow(B - 1, S, &last) || bptt_add_overflow(last, start, &last) ||
      bptt_add_overflow(last, T, &last) || last >= n)
    return BPTT_ERANGE;
  for (b = 0; b < B; b++) {
    const int32_t *src = tokens + (b * S + start) * stride;
    for (t = 0; t < T; t++) {
      x[t * B + b] = src[t * stride];
      y[t * B + b] = src[(t + 1) * stride];
    }
  }
  return BPTT_OK;
}

void bptt_text_starts(const int32_t *x, int64_t n, int32_t sep, int32_t *r) {
  int64_t i;
  for (i = 0; i < n; i++) r[i] = x[i] == sep;
}

/* A uniform draw in 0..n-1 by rejection: no modulo bias. */
static uint64_t below(bptt_rng *r, uint64_t n) {
  uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
  do x = bptt_rng_next(r);
  while (x >= lim);
  return x % n;
}

int bptt_text_permutation(int32_t *perm, int64_t n, uint64_t seed, uint64_t epoch) {
  bptt_rng r;
  int64_t i;
  if (n < 0 || n > INT32_MAX) return BPTT_EARG;
  /* two rounds of seeding: the epoch's stream shares no state with seed's */
  bptt_rng_seed(&r, seed);
  bptt_rng_seed(&r, bptt_rng_next(&r) ^ (epoch * 0xD1B54A32D192ED03ULL));
  for (i = 0; i < n; i++) perm[i] = (int32_t)(i + 1);
  for (i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)below(&r, (uint64_t)i + 1);
    int32_t tmp = perm[i];
    perm[i] = perm[j], perm[j] = tmp;
  }
  return BPTT_OK;
}
