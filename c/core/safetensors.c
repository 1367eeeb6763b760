/*
 * safetensors.c -- the safetensors header parser and writer, and the file I/O.
 *
 * Reading: the 8-byte size, then the header (at most BPTT_ST_MAX_HEADER bytes
 * and never more than the file holds) is parsed by a strict JSON parser that
 * knows the schema: names and metadata are decoded to UTF-8 (all escapes,
 * surrogate pairs joined, raw bytes checked), shapes and offsets are
 * non-negative integers with overflow checks, duplicate keys are errors, and
 * values of unknown fields are checked as JSON (nested at most
 * BPTT_ST_MAX_DEPTH deep) and ignored.  Then every tensor is checked against
 * the data buffer: size = numel * element size, inside the buffer, and the
 * regions tile it.  Only then may the caller allocate tensors.  The file is
 * read through read_at(), from a file descriptor or from memory alike.
 * The checksum is kept apart from the metadata; bptt_st_verify checks it.
 *
 * Writing: the header is built in memory (names sorted, 8-byte alignment by
 * space padding, tensors ordered by element size so that each starts aligned
 * to its element size), then written with the data to a temporary file next
 * to the target, synced and renamed over it.  The CRC of what is written is
 * taken on the way (leaving out the checksum's digits, written as zeros) and
 * the digits are filled in before the sync.
 */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include "safetensors.h"
#include "utf8.h"

#include "crc32.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ------------------------------------------------------------- utilities */

/* Writes the message and returns err: `return fail(BPTT_EFORMAT, ...)`. */
#ifdef __GNUC__
__attribute__((format(printf, 4, 5)))
#endif
static int
fail(int err, char *msg, size_t msglen, const char *fmt, ...) {
  va_list ap;
  if (msg != NULL && msglen > 0) {
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
  }
  return err;
}

/* The same for a failure of the outside world: BPTT_EIO, with the OS error e
 * left in errno for the caller (0: none, e.g. the file was cut short). */
#ifdef __GNUC__
__attribute__((format(printf, 4, 5)))
#endif
static int
io_fail(int e, char *msg, size_t msglen, const char *fmt, ...) {
  va_list ap;
  if (msg != NULL && msglen > 0) {
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
  }
  errno = e;
  return BPTT_EIO;
}

/* Names in messages are cut to this many bytes. */
#define NAMECUT 64
#define NAMEFMT "'%.*s%s'"
#define NAMEARG(s, len) (int)((len) > NAMECUT ? NAMECUT : (len)), (s), ((len) > NAMECUT ? "..." : "")

static int little_endian(void) {
  const uint16_t one = 1;
  return *(const unsigned char *)&one == 1;
}

/* Reverses each es-byte element of p[0..n*es) (big-endian hosts only). */
static void swap_bytes(unsigned char *p, int64_t n, size_t es) {
  int64_t i;
  size_t a;
  for (i = 0; i < n; i++, p += es)
    for (a = 0; a < es / 2; a++) {
      unsigned char c = p[a];
      p[a] = p[es - 1 - a];
      p[es - 1 - a] = c;
    }
}

static const char *const st_names[BPTT_NDTYPES] = { "F32", "F64", "I32" };

static int st_dtype(const char *s, size_t len) {
  int i;
  for (i = 0; i < BPTT_NDTYPES; i++)
    if (strlen(st_names[i]) == len && memcmp(s, st_names[i], len) == 0) return i;
  return -1;
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c;
  return alen < blen ? -1 : alen > blen;
}

/* ------------------------------------------------------------ JSON parser */

typedef struct {
  const char *s;
  size_t n, pos;
  char *out; /* next free byte of the string arena */
  bptt_st_info *tensors;
  size_t ntensors, captensors;
  bptt_st_pair *meta;
  size_t nmeta, capmeta;
  const char *mark; /* the first key that marks the file as bptt's (NULL: none) */
  size_t mark_len;
  const char *sum; /* the checksum's decoded value (NULL: none) */
  size_t sum_len;
  size_t sum_at, sum_raw; /* where its raw text starts, its length */
  char *msg;
  size_t msglen;
} jparser;

typedef struct {
  const char *key;
  size_t len;
} jkey;

#define JFAIL(p, ...) fail(BPTT_EFORMAT, (p)->msg, (p)->msglen, __VA_ARGS__)

static int syntax(jparser *p, const char *what) {
  if (p->pos >= p->n) return JFAIL(p, "header is not valid JSON: it ends where %s was expected", what);
  return JFAIL(p, "header is not valid JSON at byte %lu: expected %s, got '%c'", (unsigned long)p->pos, what,
               p->s[p->pos] >= 0x20 && p->s[p->pos] < 0x7f ? p->s[p->pos] : '?');
}

static void ws(jparser *p) {
  while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
    p->pos++;
}

static int peek(const jparser *p) { return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1; }

static int hex4(const jparser *p, size_t at, unsigned *v) {
  size_t i;
  *v = 0;
  if (at + 4 > p->n) return 0;
  for (i = 0; i < 4; i++) {
    char c = p->s[at + i];
    *v <<= 4;
    if (c >= '0' && c <= '9')
      *v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      *v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      *v |= (unsigned)(c - 'A' + 10);
    else
      return 0;
  }
  return 1;
}

/* A JSON string at pos, decoded into the arena (NUL-ended).  The decoded
 * form is never longer than the source, quotes included, so an arena of the
 * header's size + 1 always has room. */
static int parse_string(jparser *p, const char **str, size_t *len) {
  char *start = p->out, *o = p->out;
  if (peek(p) != '"') return syntax(p, "a string");
  p->pos++;
  for (;;) {
    int c = peek(p);
    if (c < 0) return JFAIL(p, "header is not valid JSON: unterminated string");
    if (c == '"') {
      p->pos++;
      break;
    }
    if (c < 0x20)
      return JFAIL(p, "header is not valid JSON at byte %lu: control character 0x%02x in a string (must be escaped)",
                   (unsigned long)p->pos, (unsigned)c);
    if (c == '\\') {
      int e = p->pos + 1 < p->n ? p->s[p->pos + 1] : -1;
      unsigned cp, lo;
      switch (e) {
        case '"':
          *o++ = '"';
          break;
        case '\\':
          *o++ = '\\';
          break;
        case '/':
          *o++ = '/';
          break;
        case 'b':
          *o++ = '\b';
          break;
        case 'f':
          *o++ = '\f';
          break;
        case 'n':
          *o++ = '\n';
          break;
        case 'r':
          *o++ = '\r';
          break;
        case 't':
          *o++ = '\t';
          break;
        case 'u':
          if (!hex4(p, p->pos + 2, &cp))
            return JFAIL(p, "header is not valid JSON at byte %lu: \\u must be followed by 4 hex digits",
                         (unsigned long)p->pos);
          if (cp >= 0xDC00 && cp <= 0xDFFF)
            return JFAIL(p, "header is not valid JSON at byte %lu: lone low surrogate \\u%04X", (unsigned long)p->pos,
                         cp);
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* a high surrogate: a low one must follow, \uDC00..\uDFFF */
            if (p->pos + 12 > p->n || p->s[p->pos + 6] != '\\' || p->s[p->pos + 7] != 'u' ||
                !hex4(p, p->pos + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
              return JFAIL(p, "header is not valid JSON at byte %lu: high surrogate \\u%04X without a low one",
                           (unsigned long)p->pos, cp);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->pos += 6;
          }
          o += bptt_utf8_put(cp, (unsigned char *)o);
          p->pos += 4;
          break;
        default:
          return JFAIL(p, "header is not valid JSON at byte %lu: invalid escape in a string", (unsigned long)p->pos);
      }
      p->pos += 2;
    } else if (c < 0x80) {
      *o++ = (char)c;
      p->pos++;
    } else {
      size_t k = bptt_utf8_len((const unsigned char *)p->s + p->pos, p->n - p->pos);
      if (k == 0) return JFAIL(p, "header is not valid UTF-8 at byte %lu", (unsigned long)p->pos);
      memcpy(o, p->s + p->pos, k);
      o += k;
      p->pos += k;
    }
  }
  *o++ = '\0';
  p->out = o;
  *str = start;
  *len = (size_t)(o - start - 1);
  return BPTT_OK;
}

/* A non-negative integer: 0 ok, 1 not one (negative, fraction, exponent, not
 * a number, leading zero), 2 larger than 2^63 - 1. */
static int parse_uint(jparser *p, int64_t *v) {
  int64_t x = 0;
  size_t start = p->pos;
  int c;
  while ((c = peek(p)) >= '0' && c <= '9') {
    if (x > (INT64_MAX - (c - '0')) / 10) return 2;
    x = x * 10 + (c - '0');
    p->pos++;
  }
  if (p->pos == start) return 1;
  if (p->s[start] == '0' && p->pos - start > 1) return 1;
  c = peek(p);
  if (c == '.' || c == 'e' || c == 'E') return 1;
  *v = x;
  return 0;
}

static int skip_value(jparser *p, int depth);

typedef int (*member_fn)(jparser *p, const char *key, size_t len, int depth);

static int cmp_jkey(const void *a, const void *b) {
  const jkey *x = a, *y = b;
  return cmp_bytes(x->key, x->len, y->key, y->len);
}

/* An object at pos, nested depth deep (the header itself is depth 1):
 * member() parses each value.  Duplicate keys are errors (where says whose). */
static int parse_object(jparser *p, int depth, member_fn member, const char *where) {
  jkey *keys = NULL;
  size_t n = 0, cap = 0, i;
  int err = BPTT_OK;
  if (depth > BPTT_ST_MAX_DEPTH) return JFAIL(p, "header nests deeper than %d levels", BPTT_ST_MAX_DEPTH);
  if (peek(p) != '{') return syntax(p, "'{'");
  p->pos++;
  ws(p);
  if (peek(p) == '}') {
    p->pos++;
    return BPTT_OK;
  }
  for (;;) {
    const char *key;
    size_t len;
    ws(p);
    if ((err = parse_string(p, &key, &len))) break;
    if (n == cap) {
      jkey *k2 = realloc(keys, (cap = cap ? 2 * cap : 8) * sizeof *keys);
      if (k2 == NULL) {
        err = fail(BPTT_ENOMEM, p->msg, p->msglen, "out of memory reading the header");
        break;
      }
      keys = k2;
    }
    keys[n].key = key, keys[n].len = len, n++;
    ws(p);
    if (peek(p) != ':') {
      err = syntax(p, "':'");
      break;
    }
    p->pos++;
    ws(p);
    if (peek(p) < 0) {
      err = syntax(p, "a value");
      break;
    }
    if ((err = member(p, key, len, depth))) break;
    ws(p);
    if (peek(p) == ',') {
      p->pos++;
      continue;
    }
    if (peek(p) == '}') {
      p->pos++;
      break;
    }
    err = syntax(p, "',' or '}'");
    break;
  }
  if (!err && n > 1) {
    qsort(keys, n, sizeof *keys, cmp_jkey);
    for (i = 1; i < n; i++)
      if (cmp_jkey(&keys[i - 1], &keys[i]) == 0) {
        err = JFAIL(p, "header has the key " NAMEFMT " twice in %s", NAMEARG(keys[i].key, keys[i].len), where);
        break;
      }
  }
  free(keys);
  return err;
}

static int skip_member(jparser *p, const char *key, size_t len, int depth) {
  (void)key, (void)len;
  return skip_value(p, depth + 1);
}

/* Any JSON value (checked, then ignored). */
static int skip_value(jparser *p, int depth) {
  int c = peek(p), err;
  const char *str;
  size_t len;
  if (depth > BPTT_ST_MAX_DEPTH) return JFAIL(p, "header nests deeper than %d levels", BPTT_ST_MAX_DEPTH);
  switch (c) {
    case '{':
      return parse_object(p, depth, skip_member, "an object");
    case '[':
      p->pos++;
      ws(p);
      if (peek(p) == ']') {
        p->pos++;
        return BPTT_OK;
      }
      for (;;) {
        ws(p);
        if ((err = skip_value(p, depth + 1))) return err;
        ws(p);
        if (peek(p) == ',')
          p->pos++;
        else if (peek(p) == ']') {
          p->pos++;
          return BPTT_OK;
        } else
          return syntax(p, "',' or ']'");
      }
    case '"':
      return parse_string(p, &str, &len);
    case 't':
    case 'f':
    case 'n': {
      const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
      size_t wl = strlen(word);
      if (p->pos + wl > p->n || memcmp(p->s + p->pos, word, wl) != 0) return syntax(p, "a value");
      p->pos += wl;
      return BPTT_OK;
    }
    default:
      /* number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
      if (c == '-') p->pos++, c = peek(p);
      if (c == '0')
        p->pos++;
      else if (c >= '1' && c <= '9')
        while ((c = peek(p)) >= '0' && c <= '9') p->pos++;
      else
        return syntax(p, "a value");
      if (peek(p) == '.') {
        p->pos++;
        if ((c = peek(p)) < '0' || c > '9') return syntax(p, "a digit");
        while ((c = peek(p)) >= '0' && c <= '9') p->pos++;
      }
      if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if ((c = peek(p)) < '0' || c > '9') return syntax(p, "a digit");
        while ((c = peek(p)) >= '0' && c <= '9') p->pos++;
      }
      return BPTT_OK;
  }
}

/* [n1, n2, ...] of non-negative integers into v (at most max, else
 * *count = max + 1 and the rest is only checked). */
static int parse_uint_list(jparser *p, const bptt_st_info *t, const char *field, int64_t *v, int max, int *count) {
  int n = 0, r;
  int64_t x;
  if (peek(p) != '[')
    return JFAIL(p, "tensor " NAMEFMT ": %s must be a list of non-negative integers", NAMEARG(t->name, t->name_len),
                 field);
  p->pos++;
  ws(p);
  if (peek(p) == ']') {
    p->pos++;
    *count = 0;
    return BPTT_OK;
  }
  for (;;) {
    ws(p);
    if ((r = parse_uint(p, &x)) != 0)
      return JFAIL(p, "tensor " NAMEFMT ": %s[%d] %s", NAMEARG(t->name, t->name_len), field, n + 1,
                   r == 2 ? "is too large (more than 2^63 - 1)" : "must be a non-negative integer");
    if (n < max) v[n] = x;
    if (n <= max) n++;
    ws(p);
    if (peek(p) == ',')
      p->pos++;
    else if (peek(p) == ']') {
      p->pos++;
      break;
    } else
      return syntax(p, "',' or ']'");
  }
  *count = n;
  return BPTT_OK;
}

/* Fields of a tensor's object; which ones were seen is kept in ndim (-1:
 * no shape), dtype (-1: none) and begin (-1: no offsets). */
static int tensor_member(jparser *p, const char *key, size_t len, int depth) {
  bptt_st_info *t = &p->tensors[p->ntensors - 1];
  int err, n;
  if (len == 5 && memcmp(key, "dtype", 5) == 0) {
    const char *s;
    size_t sl;
    if (peek(p) != '"') return JFAIL(p, "tensor " NAMEFMT ": dtype must be a string", NAMEARG(t->name, t->name_len));
    if ((err = parse_string(p, &s, &sl))) return err;
    if ((t->dtype = st_dtype(s, sl)) < 0)
      return JFAIL(p, "tensor " NAMEFMT ": dtype %.*s is not supported (F32, F64, I32)", NAMEARG(t->name, t->name_len),
                   (int)(sl > NAMECUT ? NAMECUT : sl), s);
    return BPTT_OK;
  }
  if (len == 5 && memcmp(key, "shape", 5) == 0) {
    if ((err = parse_uint_list(p, t, "shape", t->size, BPTT_MAXDIM, &n))) return err;
    if (n > BPTT_MAXDIM)
      return JFAIL(p, "tensor " NAMEFMT ": shape has more than %d dimensions", NAMEARG(t->name, t->name_len),
                   BPTT_MAXDIM);
    t->ndim = n;
    return BPTT_OK;
  }
  if (len == 12 && memcmp(key, "data_offsets", 12) == 0) {
    int64_t v[2];
    if ((err = parse_uint_list(p, t, "data_offsets", v, 2, &n))) return err;
    if (n != 2) return JFAIL(p, "tensor " NAMEFMT ": data_offsets must be [begin, end]", NAMEARG(t->name, t->name_len));
    t->begin = v[0], t->end = v[1];
    return BPTT_OK;
  }
  return skip_value(p, depth + 1); /* a field we do not know */
}

/* Whether a metadata key marks the file as written by bptt: it starts with
 * "bptt." or is BPTT_ST_CHECKSUM_KEY with at most one bit flipped.  A marked
 * file must carry a valid checksum, so that no single flipped bit -- in the
 * checksum's key either -- makes a bptt file pass for a foreign one that is
 * loaded unchecked. */
static int marks_bptt(const char *key, size_t len) {
  static const char ck[] = BPTT_ST_CHECKSUM_KEY;
  size_t i, bits = 0;
  if (len >= 5 && memcmp(key, "bptt.", 5) == 0) return 1;
  if (len != sizeof ck - 1) return 0;
  for (i = 0; i < len && bits <= 1; i++) {
    unsigned x = (unsigned char)key[i] ^ (unsigned char)ck[i];
    for (; x; x &= x - 1) bits++;
  }
  return bits <= 1;
}

static int meta_member(jparser *p, const char *key, size_t len, int depth) {
  bptt_st_pair *m;
  int err;
  (void)depth;
  if (p->mark == NULL && marks_bptt(key, len)) p->mark = key, p->mark_len = len;
  if (peek(p) != '"') return JFAIL(p, "__metadata__ values must be strings, but " NAMEFMT " is not", NAMEARG(key, len));
  if (len == sizeof BPTT_ST_CHECKSUM_KEY - 1 && memcmp(key, BPTT_ST_CHECKSUM_KEY, len) == 0) {
    /* kept apart (twice is caught by parse_object) */
    p->sum_at = p->pos + 1;
    if ((err = parse_string(p, &p->sum, &p->sum_len))) return err;
    p->sum_raw = p->pos - 1 - p->sum_at;
    return BPTT_OK;
  }
  if (p->nmeta == p->capmeta) {
    bptt_st_pair *m2 = realloc(p->meta, (p->capmeta = p->capmeta ? 2 * p->capmeta : 8) * sizeof *m2);
    if (m2 == NULL) return fail(BPTT_ENOMEM, p->msg, p->msglen, "out of memory reading the header");
    p->meta = m2;
  }
  m = &p->meta[p->nmeta];
  m->key = key, m->key_len = len;
  if ((err = parse_string(p, &m->value, &m->value_len))) return err;
  p->nmeta++;
  return BPTT_OK;
}

static int top_member(jparser *p, const char *key, size_t len, int depth) {
  bptt_st_info *t;
  if (len == 12 && memcmp(key, "__metadata__", 12) == 0) {
    if (peek(p) == 'n') return skip_value(p, depth + 1); /* null: none */
    if (peek(p) != '{') return JFAIL(p, "__metadata__ must be an object of strings");
    return parse_object(p, depth + 1, meta_member, "__metadata__");
  }
  if (peek(p) != '{')
    return JFAIL(p, "tensor " NAMEFMT " must be an object {dtype, shape, data_offsets}", NAMEARG(key, len));
  if (p->ntensors == p->captensors) {
    bptt_st_info *t2 = realloc(p->tensors, (p->captensors = p->captensors ? 2 * p->captensors : 8) * sizeof *t2);
    if (t2 == NULL) return fail(BPTT_ENOMEM, p->msg, p->msglen, "out of memory reading the header");
    p->tensors = t2;
  }
  t = &p->tensors[p->ntensors++];
  memset(t, 0, sizeof *t);
  t->name = key, t->name_len = len;
  t->dtype = -1, t->ndim = -1, t->begin = -1;
  return parse_object(p, depth + 1, tensor_member, "a tensor");
}

/* ---------------------------------------------------- header validation */

static int cmp_offsets(const void *a, const void *b) {
  const bptt_st_info *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Every tensor complete, its byte count right, inside the buffer; the
 * regions tile [0, data_len).  Leaves the tensors sorted by offset. */
#define BAD(...) fail(BPTT_EFORMAT, msg, msglen, __VA_ARGS__)
#define NAME(t) NAMEARG((t)->name, (t)->name_len)
#define RANGE(t) (long long)(t)->begin, (long long)(t)->end
static int check_layout(bptt_st_reader *r, char *msg, size_t msglen) {
  size_t i;
  int64_t at = 0;
  for (i = 0; i < r->ntensors; i++) {
    bptt_st_info *t = &r->tensors[i];
    int64_t n = 1, nbytes;
    int d;
    if (t->dtype < 0 || t->ndim < 0 || t->begin < 0)
      return BAD("tensor " NAMEFMT " has no %s", NAME(t),
                 t->dtype < 0  ? "dtype"
                 : t->ndim < 0 ? "shape"
                               : "data_offsets");
    for (d = 0; d < t->ndim; d++)
      if (bptt_mul_overflow(n, t->size[d], &n)) break;
    if (d < t->ndim || bptt_mul_overflow(n, (int64_t)bptt_dtype_size((bptt_dtype)t->dtype), &nbytes))
      return BAD("tensor " NAMEFMT ": shape overflows (more than 2^63 bytes)", NAME(t));
    if (t->end < t->begin)
      return BAD("tensor " NAMEFMT ": data_offsets [%lld, %lld] end before they begin", NAME(t), RANGE(t));
    if (t->end > r->data_len)
      return BAD("tensor " NAMEFMT
                 ": data_offsets [%lld, %lld] run past the end of the data (%lld bytes; "
                 "file truncated?)",
                 NAME(t), RANGE(t), (long long)r->data_len);
    if (t->end - t->begin != nbytes)
      return BAD("tensor " NAMEFMT ": data_offsets [%lld, %lld] hold %lld bytes, but its %s shape needs %lld", NAME(t),
                 RANGE(t), (long long)(t->end - t->begin), st_names[t->dtype], (long long)nbytes);
  }
  if (r->ntensors > 1) qsort(r->tensors, r->ntensors, sizeof *r->tensors, cmp_offsets);
  for (i = 0; i < r->ntensors; i++) {
    const bptt_st_info *t = &r->tensors[i], *u = i ? &r->tensors[i - 1] : NULL;
    if (t->begin < at)
      return BAD("tensors " NAMEFMT " and " NAMEFMT " overlap (data_offsets [%lld, %lld] and [%lld, %lld])", NAME(u),
                 NAME(t), RANGE(u), RANGE(t));
    if (t->begin > at)
      return BAD("data has a gap at bytes [%lld, %lld) before tensor " NAMEFMT, (long long)at, (long long)t->begin,
                 NAME(t));
    at = t->end;
  }
  if (at != r->data_len) return BAD("data has %lld bytes after the last tensor", (long long)(r->data_len - at));
  return BPTT_OK;
}
#undef BAD
#undef NAME
#undef RANGE

/* ---------------------------------------------------------------- reader */

void bptt_st_reader_init(bptt_st_reader *r) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
}

void bptt_st_close(bptt_st_reader *r) {
  if (r->fd >= 0) close(r->fd);
  free(r->strings);
  free(r->tensors);
  free(r->meta);
  bptt_st_reader_init(r);
}

/* Reads exactly len bytes at off of the open file (or its bytes in memory);
 * 0 ok, else -1 with errno (0: end of file). */
static int read_at(const bptt_st_reader *r, void *buf, int64_t len, int64_t off) {
  char *p = buf;
  if (r->mem != NULL) { /* bounds checked by the caller, as pread's are */
    memcpy(buf, r->mem + off, (size_t)len);
    return 0;
  }
  while (len > 0) {
    size_t chunk = len > (1 << 30) ? (size_t)1 << 30 : (size_t)len;
    ssize_t k = pread(r->fd, p, chunk, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      if (k == 0) errno = 0;
      return -1;
    }
    p += k, off += k, len -= k;
  }
  return 0;
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* "crc32:" and 8 lowercase hex digits, written as such (no escapes: the
 * digits' place in the file is what the sum leaves out). */
static int parse_checksum(bptt_st_reader *r, const jparser *p) {
  uint32_t v = 0;
  int i, ok = p->sum_len == BPTT_ST_CHECKSUM_LEN && p->sum_raw == p->sum_len && memcmp(p->sum, "crc32:", 6) == 0;
  for (i = 6; ok && i < BPTT_ST_CHECKSUM_LEN; i++) {
    int h = hexval(p->sum[i]);
    if (h < 0) ok = 0;
    v = v << 4 | (uint32_t)(h & 15);
  }
  if (!ok)
    return JFAIL(p,
                 "metadata %s " NAMEFMT
                 " is not a checksum this version knows (crc32:<8 lowercase hex digits>, "
                 "no escapes)",
                 BPTT_ST_CHECKSUM_KEY, NAMEARG(p->sum, p->sum_len));
  r->has_checksum = 1;
  r->checksum = v;
  r->checksum_at = 8 + (int64_t)p->sum_at + 6;
  return BPTT_OK;
}

static int parse_header(bptt_st_reader *r, const char *text, size_t n, char *msg, size_t msglen) {
  jparser p;
  int err;
  memset(&p, 0, sizeof p);
  p.s = text, p.n = n, p.msg = msg, p.msglen = msglen;
  p.out = r->strings;
  if (n == 0 || text[0] != '{')
    return fail(BPTT_EFORMAT, msg, msglen, "header is not a JSON object (it does not start with '{')");
  err = parse_object(&p, 1, top_member, "the header");
  if (!err) {
    ws(&p);
    if (p.pos < p.n)
      err = JFAIL(&p, "header has trailing garbage after the JSON object at byte %lu", (unsigned long)p.pos);
  }
  r->tensors = p.tensors, r->ntensors = p.ntensors;
  r->meta = p.meta, r->nmeta = p.nmeta;
  r->marked = p.mark != NULL;
  r->mark = p.mark, r->mark_len = p.mark_len;
  if (!err && p.sum != NULL) err = parse_checksum(r, &p);
  return err;
}

/* The header of a source of size bytes (r->fd or r->mem set): its size,
 * its text, parsed, then the layout.  On failure the caller closes r. */
static int open_source(bptt_st_reader *r, int64_t size, char *msg, size_t msglen) {
  unsigned char b8[8];
  uint64_t n = 0;
  char *text;
  int i, err;
  if (size < 8)
    return fail(BPTT_EFORMAT, msg, msglen,
                size == 0 ? "file is empty" : "file is %lld bytes, too short for the 8-byte header size",
                (long long)size);
  if (read_at(r, b8, 8, 0) != 0)
    return io_fail(errno, msg, msglen, "cannot read: %s", errno ? strerror(errno) : "file shrank");
  for (i = 7; i >= 0; i--) n = (n << 8) | b8[i];
  if (n > (uint64_t)size - 8)
    return fail(BPTT_EFORMAT, msg, msglen, "header size %llu exceeds file size %lld", (unsigned long long)n,
                (long long)size);
  if (n > BPTT_ST_MAX_HEADER)
    return fail(BPTT_EFORMAT, msg, msglen, "header size %llu exceeds the limit of %d bytes", (unsigned long long)n,
                BPTT_ST_MAX_HEADER);
  /* n <= the file size and <= 100 MB: these two are safe to allocate */
  text = malloc(n ? (size_t)n : 1);
  r->strings = malloc((size_t)n + 1);
  if (text == NULL || r->strings == NULL)
    err = fail(BPTT_ENOMEM, msg, msglen, "out of memory for a header of %llu bytes", (unsigned long long)n);
  else if (read_at(r, text, (int64_t)n, 8) != 0)
    err = io_fail(errno, msg, msglen, "cannot read the header: %s", errno ? strerror(errno) : "file shrank");
  else {
    r->data_start = 8 + (int64_t)n;
    r->data_len = size - r->data_start;
    err = parse_header(r, text, (size_t)n, msg, msglen);
    if (!err) err = check_layout(r, msg, msglen);
  }
  free(text);
  return err;
}

int bptt_st_open(bptt_st_reader *r, const char *path, char *msg, size_t msglen) {
  struct stat st;
  int err;
  bptt_st_reader_init(r);
  r->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (r->fd < 0) return io_fail(errno, msg, msglen, "cannot open: %s", strerror(errno));
  if (fstat(r->fd, &st) != 0)
    err = io_fail(errno, msg, msglen, "cannot stat: %s", strerror(errno));
  else if (!S_ISREG(st.st_mode))
    err = io_fail(0, msg, msglen, "not a regular file");
  else
    err = open_source(r, (int64_t)st.st_size, msg, msglen);
  if (err) {
    int e = errno;
    bptt_st_close(r);
    errno = e;
  }
  return err;
}

int bptt_st_open_mem(bptt_st_reader *r, const void *buf, size_t len, char *msg, size_t msglen) {
  static const unsigned char none[1] = { 0 };
  int err;
  bptt_st_reader_init(r);
  if (len > (uint64_t)INT64_MAX) return fail(BPTT_EARG, msg, msglen, "buffer larger than 2^63 bytes");
  r->mem = buf != NULL ? buf : none; /* non-NULL marks the reader open */
  if ((err = open_source(r, (int64_t)len, msg, msglen))) bptt_st_close(r);
  return err;
}

/* The CRC of bytes [from, to) of the file into *crc, in chunks through buf. */
static int crc_range(const bptt_st_reader *r, const bptt_crc32_table *tab, uint32_t *crc, int64_t from, int64_t to,
                     unsigned char *buf, size_t cap) {
  while (from < to) {
    size_t k = to - from < (int64_t)cap ? (size_t)(to - from) : cap;
    if (r->mem != NULL)
      *crc = bptt_crc32_update(tab, *crc, r->mem + from, k);
    else if (read_at(r, buf, (int64_t)k, from) != 0)
      return -1;
    else
      *crc = bptt_crc32_update(tab, *crc, buf, k);
    from += (int64_t)k;
  }
  return 0;
}

int bptt_st_verify(const bptt_st_reader *r, char *msg, size_t msglen) {
  bptt_crc32_table *tab;
  unsigned char *buf = NULL;
  const size_t cap = 1 << 20;
  int64_t end = r->data_start + r->data_len, at = r->checksum_at;
  uint32_t crc = 0;
  int err = BPTT_OK, k;
  if (r->fd < 0 && r->mem == NULL) return fail(BPTT_EARG, msg, msglen, "reader is closed");
  if (!r->has_checksum && r->marked)
    return fail(BPTT_EFORMAT, msg, msglen,
                "file carries bptt's metadata (key " NAMEFMT ") but no checksum under \"" BPTT_ST_CHECKSUM_KEY
                "\" (file corrupt)",
                NAMEARG(r->mark, r->mark_len));
  if (!r->has_checksum) return BPTT_OK;
  tab = malloc(sizeof *tab);
  if (r->mem == NULL) buf = malloc(cap);
  if (tab == NULL || (r->mem == NULL && buf == NULL)) {
    err = fail(BPTT_ENOMEM, msg, msglen, "out of memory checking the checksum");
    goto done;
  }
  bptt_crc32_init(tab);
  /* everything but the 8 digits at [at, at + 8) */
  if (crc_range(r, tab, &crc, 0, at, buf, cap) != 0 || crc_range(r, tab, &crc, at + 8, end, buf, cap) != 0) {
    err = io_fail(errno, msg, msglen, "cannot read: %s", errno ? strerror(errno) : "file shrank");
    goto done;
  }
  if (crc != r->checksum)
    err = fail(BPTT_EFORMAT, msg, msglen,
               "checksum mismatch (file corrupt): the file says crc32:%08lx, its bytes "
               "give crc32:%08lx",
               (unsigned long)r->checksum, (unsigned long)crc);
done:
  k = errno;
  free(buf);
  free(tab);
  errno = k;
  return err;
}

int bptt_st_read(const bptt_st_reader *r, size_t i, const bptt_tensor *t, char *msg, size_t msglen) {
  const bptt_st_info *e;
  int d, ok;
  if ((r->fd < 0 && r->mem == NULL) || i >= r->ntensors)
    return fail(BPTT_EARG, msg, msglen, "reader is closed or index out of range");
  e = &r->tensors[i];
  ok = t->storage != NULL && t->dtype == e->dtype && t->ndim == e->ndim && bptt_tensor_is_contiguous(t);
  for (d = 0; ok && d < e->ndim; d++) ok = t->size[d] == e->size[d];
  if (!ok) return fail(BPTT_EARG, msg, msglen, "tensor " NAMEFMT ": wrong destination", NAMEARG(e->name, e->name_len));
  if (e->end == e->begin) return BPTT_OK;
  if (read_at(r, bptt_tensor_data(t), e->end - e->begin, r->data_start + e->begin) != 0)
    return io_fail(errno, msg, msglen, "cannot read tensor " NAMEFMT ": %s", NAMEARG(e->name, e->name_len),
                   errno ? strerror(errno) : "file shrank while loading");
  if (!little_endian()) swap_bytes(bptt_tensor_data(t), bptt_tensor_numel(t), bptt_dtype_size((bptt_dtype)t->dtype));
  return BPTT_OK;
}

/* ---------------------------------------------------------------- writer */

/* A growable byte buffer for the header. */
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->cap - b->n < len) {
    size_t cap = b->cap ? b->cap : 256;
    char *p2;
    while (cap - b->n < len) {
      if (cap > SIZE_MAX / 2) {
        b->oom = 1;
        return;
      }
      cap *= 2;
    }
    if ((p2 = realloc(b->p, cap)) == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p2, b->cap = cap;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_int(sbuf *b, int64_t v) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  sb_str(b, tmp);
}

/* A JSON string: '"' and '\' escaped, control characters as \b \f \n \r \t
 * or \u00XX; everything else (valid UTF-8, checked before) as is. */
static void sb_json(sbuf *b, const char *s, size_t len) {
  static const char hexd[] = "0123456789abcdef";
  size_t i, run = 0;
  sb_put(b, "\"", 1);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    size_t el = 2;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    sb_put(b, s + run, i - run);
    run = i + 1;
    esc[0] = '\\';
    switch (c) {
      case '"':
        esc[1] = '"';
        break;
      case '\\':
        esc[1] = '\\';
        break;
      case '\b':
        esc[1] = 'b';
        break;
      case '\f':
        esc[1] = 'f';
        break;
      case '\n':
        esc[1] = 'n';
        break;
      case '\r':
        esc[1] = 'r';
        break;
      case '\t':
        esc[1] = 't';
        break;
      default:
        esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hexd[c >> 4], esc[5] = hexd[c & 15];
        el = 6;
    }
    sb_put(b, esc, el);
  }
  sb_put(b, s + run, len - run);
  sb_put(b, "\"", 1);
}

/* Larger elements first (so every tensor starts aligned to its element size
 * in an 8-aligned buffer), then by name. */
static int cmp_items(const void *a, const void *b) {
  const bptt_st_item *x = a, *y = b;
  size_t ex = bptt_dtype_size((bptt_dtype)x->t->dtype), ey = bptt_dtype_size((bptt_dtype)y->t->dtype);
  if (ex != ey) return ex > ey ? -1 : 1;
  return cmp_bytes(x->name, x->name_len, y->name, y->name_len);
}

static int cmp_pairs(const void *a, const void *b) {
  const bptt_st_pair *x = a, *y = b;
  return cmp_bytes(x->key, x->key_len, y->key, y->key_len);
}

/* The header JSON, space-padded so that 8 + its length is a multiple of 8,
 * the checksum's digits as zeros at *sum_at.  items and meta are sorted
 * already. */
static int build_header(sbuf *b, const bptt_st_item *items, size_t n, const bptt_st_pair *meta, size_t nmeta,
                        size_t *sum_at, char *msg, size_t msglen) {
  size_t i;
  int64_t at = 0;
  int d;
  sb_str(b, "{\"__metadata__\":{");
  for (i = 0; i < nmeta; i++) {
    sb_json(b, meta[i].key, meta[i].key_len);
    sb_put(b, ":", 1);
    sb_json(b, meta[i].value, meta[i].value_len);
    sb_put(b, ",", 1);
  }
  sb_str(b, "\"" BPTT_ST_CHECKSUM_KEY "\":\"crc32:");
  *sum_at = b->n;
  sb_str(b, "00000000\"}");
  for (i = 0; i < n; i++) {
    const bptt_tensor *t = items[i].t;
    int64_t nbytes, end;
    if (bptt_mul_overflow(bptt_tensor_numel(t), (int64_t)bptt_dtype_size((bptt_dtype)t->dtype), &nbytes) ||
        bptt_add_overflow(at, nbytes, &end))
      return fail(BPTT_EOVERFLOW, msg, msglen, "the tensors add up to more than 2^63 bytes");
    sb_put(b, ",", 1);
    sb_json(b, items[i].name, items[i].name_len);
    sb_str(b, ":{\"dtype\":\"");
    sb_str(b, st_names[t->dtype]);
    sb_str(b, "\",\"shape\":[");
    for (d = 0; d < t->ndim; d++) {
      if (d) sb_put(b, ",", 1);
      sb_int(b, t->size[d]);
    }
    sb_str(b, "],\"data_offsets\":[");
    sb_int(b, at);
    sb_put(b, ",", 1);
    sb_int(b, end);
    sb_str(b, "]}");
    at = end;
  }
  sb_put(b, "}", 1);
  while (!b->oom && (8 + b->n) % 8 != 0) sb_put(b, " ", 1);
  if (b->oom) return fail(BPTT_ENOMEM, msg, msglen, "out of memory building the header");
  return BPTT_OK;
}

/* Buffered output to a file descriptor; the first error sticks in err.  The
 * CRC of all bytes written but those at [skip, skip + 8) goes into crc. */
typedef struct {
  int fd;
  unsigned char *buf;
  size_t n, cap;
  int err; /* errno of the first failure, 0 if none */
  int64_t pos, skip;
  uint32_t crc;
  const bptt_crc32_table *tab;
} wfile;

static void write_all(wfile *w, const void *p, size_t len) {
  const char *s = p;
  int64_t a = w->pos, b = w->pos + (int64_t)len, cut;
  if (w->err) return;
  if ((cut = b < w->skip ? b : w->skip) > a) w->crc = bptt_crc32_update(w->tab, w->crc, s, (size_t)(cut - a));
  if ((cut = a > w->skip + 8 ? a : w->skip + 8) < b)
    w->crc = bptt_crc32_update(w->tab, w->crc, s + (cut - a), (size_t)(b - cut));
  w->pos = b;
  while (!w->err && len > 0) {
    size_t chunk = len > (1 << 30) ? (size_t)1 << 30 : len;
    ssize_t k = write(w->fd, s, chunk);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      w->err = k < 0 ? errno : EIO;
      return;
    }
    s += k, len -= (size_t)k;
  }
}

static void wf_flush(wfile *w) {
  write_all(w, w->buf, w->n);
  w->n = 0;
}

static void wf_put(wfile *w, const void *p, size_t len) {
  if (len > w->cap - w->n) {
    wf_flush(w);
    if (len > w->cap) {
      write_all(w, p, len);
      return;
    }
  }
  memcpy(w->buf + w->n, p, len);
  w->n += len;
}

/* The logical elements of t, row-major, little-endian. */
static void write_tensor(wfile *w, const bptt_tensor *t) {
  size_t es = bptt_dtype_size((bptt_dtype)t->dtype);
  int64_t n = bptt_tensor_numel(t), idx[BPTT_MAXDIM], inner, istride, j;
  const unsigned char *base = t->storage->data;
  int le = little_endian(), d, nd = t->ndim;
  if (n == 0) return;
  if (le && bptt_tensor_is_contiguous(t)) {
    wf_put(w, bptt_tensor_data(t), (size_t)n * es);
    return;
  }
  /* walk rows: idx over all but the last dimension */
  inner = nd > 0 ? t->size[nd - 1] : 1;
  istride = nd > 0 ? t->stride[nd - 1] : 0;
  for (d = 0; d < nd; d++) idx[d] = 0;
  while (!w->err) {
    int64_t off = t->offset;
    for (d = 0; d < nd - 1; d++) off += idx[d] * t->stride[d];
    for (j = 0; j < inner; j++) {
      unsigned char el[8];
      memcpy(el, base + (size_t)(off + j * istride) * es, es);
      if (!le) swap_bytes(el, 1, es);
      if (w->cap - w->n < es) wf_flush(w);
      memcpy(w->buf + w->n, el, es);
      w->n += es;
    }
    for (d = nd - 2; d >= 0; d--) {
      if (++idx[d] < t->size[d]) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
}

/* fsync of the directory makes the rename itself durable.  Best effort: the
 * rename is done by then, and if the directory cannot be synced a crash can
 * at worst bring back the complete previous file, never a broken one. */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  int fd;
  size_t len;
  if (slash == NULL) {
    fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else {
    len = slash == path ? 1 : (size_t)(slash - path);
    if ((dir = malloc(len + 1)) == NULL) return;
    memcpy(dir, path, len);
    dir[len] = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
  }
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

/* The file a save to path writes: path itself, or for a symbolic link the
 * end of its chain of links (made relative to each link's directory), which
 * need not exist yet.  *out is malloc'd.  Refuses a target that exists and
 * is not a regular file (a directory, a FIFO, a device: renaming over it
 * would replace it, /dev/null included), and more than 40 links. */
static int resolve_target(const char *path, char **out, char *msg, size_t msglen) {
  char *cur = malloc(strlen(path) + 1), *link = NULL;
  struct stat st;
  int hops, err = BPTT_OK;
  if (cur == NULL) return fail(BPTT_ENOMEM, msg, msglen, "out of memory");
  strcpy(cur, path);
  for (hops = 0;; hops++) {
    ssize_t k;
    size_t dirlen, cap;
    const char *slash;
    if (lstat(cur, &st) != 0) {
      if (errno != ENOENT) err = io_fail(errno, msg, msglen, "cannot stat %s: %s", cur, strerror(errno));
      break; /* a new file */
    }
    if (!S_ISLNK(st.st_mode)) {
      /* named when a link led there: "... (the link's target x) is ..." */
      const char *pre = hops ? "the link's target " : "it", *name = hops ? cur : "";
      if (S_ISDIR(st.st_mode))
        err = io_fail(EISDIR, msg, msglen, "%s%s is a directory, not a regular file: not replaced", pre, name);
      else if (!S_ISREG(st.st_mode))
        err = io_fail(0, msg, msglen, "%s%s is not a regular file (%s): not replaced", pre, name,
                      S_ISFIFO(st.st_mode)                         ? "a FIFO"
                      : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                   : "a socket or special file");
      break;
    }
    if (hops == 40) {
      err = io_fail(ELOOP, msg, msglen, "cannot follow %s: %s", path, strerror(ELOOP));
      break;
    }
    /* a link: read it (st_size may be 0 for /proc-like links: grow) */
    for (cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 256;; cap *= 2) {
      free(link);
      if ((link = malloc(cap)) == NULL) {
        err = fail(BPTT_ENOMEM, msg, msglen, "out of memory");
        break;
      }
      k = readlink(cur, link, cap);
      if (k < 0) {
        err = io_fail(errno, msg, msglen, "cannot read the link %s: %s", cur, strerror(errno));
        break;
      }
      if ((size_t)k < cap) {
        link[k] = '\0';
        break;
      }
    }
    if (err) break;
    slash = strrchr(cur, '/');
    dirlen = link[0] == '/' || slash == NULL ? 0 : (size_t)(slash - cur) + 1;
    {
      char *next = malloc(dirlen + strlen(link) + 1);
      if (next == NULL) {
        err = fail(BPTT_ENOMEM, msg, msglen, "out of memory");
        break;
      }
      memcpy(next, cur, dirlen);
      strcpy(next + dirlen, link);
      free(cur);
      cur = next;
    }
  }
  free(link);
  if (err) {
    int e = errno;
    free(cur);
    errno = e;
    return err;
  }
  *out = cur;
  return BPTT_OK;
}

int bptt_st_save(const char *path, const bptt_st_item *items, size_t nitems, const bptt_st_pair *meta, size_t nmeta,
                 char *msg, size_t msglen) {
  bptt_st_item *its = NULL;
  bptt_st_pair *mts = NULL;
  sbuf hdr = { NULL, 0, 0, 0 };
  wfile w = { -1, NULL, 0, 1 << 20, 0, 0, 0, 0, NULL };
  bptt_crc32_table *tab = NULL;
  char *tmp = NULL, *target = NULL;
  size_t i, tlen, sum_at = 0;
  int err = BPTT_OK, k, created = 0, e;
  unsigned char b8[8];
  struct stat st;

  for (i = 0; i < nitems; i++) {
    const bptt_st_item *it = &items[i];
    if (it->t == NULL || it->t->storage == NULL || (unsigned)it->t->dtype >= BPTT_NDTYPES || it->t->ndim < 0 ||
        it->t->ndim > BPTT_MAXDIM)
      return fail(BPTT_EARG, msg, msglen, "tensor " NAMEFMT " is not a valid tensor", NAMEARG(it->name, it->name_len));
    if (!bptt_utf8_valid(it->name, it->name_len))
      return fail(BPTT_EARG, msg, msglen, "tensor name " NAMEFMT " is not valid UTF-8",
                  NAMEARG(it->name, it->name_len));
    if (it->name_len == 12 && memcmp(it->name, "__metadata__", 12) == 0)
      return fail(BPTT_EARG, msg, msglen, "\"__metadata__\" cannot name a tensor");
  }
  for (i = 0; i < nmeta; i++) {
    if (!bptt_utf8_valid(meta[i].key, meta[i].key_len) || !bptt_utf8_valid(meta[i].value, meta[i].value_len))
      return fail(BPTT_EARG, msg, msglen, "metadata " NAMEFMT " is not valid UTF-8",
                  NAMEARG(meta[i].key, meta[i].key_len));
    if (meta[i].key_len == sizeof BPTT_ST_CHECKSUM_KEY - 1 &&
        memcmp(meta[i].key, BPTT_ST_CHECKSUM_KEY, meta[i].key_len) == 0)
      return fail(BPTT_EARG, msg, msglen, "metadata key \"%s\" is reserved (the checksum is written by the writer)",
                  BPTT_ST_CHECKSUM_KEY);
  }

  /* sorted copies (the caller's arrays stay as they are), then the header */
  its = malloc((nitems ? nitems : 1) * sizeof *its);
  mts = malloc((nmeta ? nmeta : 1) * sizeof *mts);
  w.buf = malloc(w.cap);
  w.tab = tab = malloc(sizeof *tab);
  if ((err = resolve_target(path, &target, msg, msglen))) goto done;
  tmp = malloc(tlen = strlen(target) + 48);
  if (its == NULL || mts == NULL || w.buf == NULL || tab == NULL || tmp == NULL) {
    err = fail(BPTT_ENOMEM, msg, msglen, "out of memory");
    goto done;
  }
  if (nitems) memcpy(its, items, nitems * sizeof *its);
  if (nmeta) memcpy(mts, meta, nmeta * sizeof *mts);
  qsort(its, nitems, sizeof *its, cmp_items);
  qsort(mts, nmeta, sizeof *mts, cmp_pairs);
  for (i = 1; i < nitems && !err; i++)
    if (cmp_bytes(its[i].name, its[i].name_len, its[i - 1].name, its[i - 1].name_len) == 0)
      err =
          fail(BPTT_EARG, msg, msglen, "tensor name " NAMEFMT " is used twice", NAMEARG(its[i].name, its[i].name_len));
  for (i = 1; i < nmeta && !err; i++)
    if (cmp_pairs(&mts[i], &mts[i - 1]) == 0)
      err = fail(BPTT_EARG, msg, msglen, "metadata key " NAMEFMT " is used twice", NAMEARG(mts[i].key, mts[i].key_len));
  if (err || (err = build_header(&hdr, its, nitems, mts, nmeta, &sum_at, msg, msglen))) goto done;
  bptt_crc32_init(tab);
  w.skip = 8 + (int64_t)sum_at;

  /* a fresh temporary next to the target, <target>.tmp.<pid>[.<k>]: O_EXCL
   * makes it this call's alone (another process, or another Lua state of
   * this one, moves on to the next k) */
  for (k = 0; k < 1000; k++) {
    if (k == 0)
      snprintf(tmp, tlen, "%s.tmp.%ld", target, (long)getpid());
    else
      snprintf(tmp, tlen, "%s.tmp.%ld.%d", target, (long)getpid(), k);
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w.fd >= 0 || errno != EEXIST) break;
  }
  if (w.fd < 0) {
    err = io_fail(errno, msg, msglen, "cannot create the temporary file %s: %s", tmp, strerror(errno));
    goto done;
  }
  created = 1;
  if (stat(target, &st) == 0 && S_ISREG(st.st_mode)) (void)fchmod(w.fd, st.st_mode & 07777); /* keep permissions */

  for (k = 0; k < 8; k++) b8[k] = (unsigned char)((uint64_t)hdr.n >> (8 * k));
  wf_put(&w, b8, 8);
  wf_put(&w, hdr.p, hdr.n);
  for (i = 0; i < nitems && !w.err; i++) write_tensor(&w, its[i].t);
  wf_flush(&w);
  if (!w.err) { /* the checksum's digits, now that every other byte is out */
    char digits[9];
    ssize_t put;
    snprintf(digits, sizeof digits, "%08lx", (unsigned long)w.crc);
    while ((put = pwrite(w.fd, digits, 8, (off_t)w.skip)) < 0 && errno == EINTR) {
    }
    if (put != 8) w.err = put < 0 ? errno : EIO;
  }
  if (!w.err && fsync(w.fd) != 0) w.err = errno;
  k = close(w.fd);
  w.fd = -1;
  if (!w.err && k != 0) w.err = errno;
  if (w.err) {
    err = io_fail(w.err, msg, msglen, "cannot write the temporary file %s: %s", tmp, strerror(w.err));
    goto done;
  }
  /* the target was checked to be a regular file or nothing; if something
   * else took its place since, rename onto a directory fails (EISDIR) */
  if (rename(tmp, target) != 0) {
    err = io_fail(errno, msg, msglen, "cannot rename %s onto %s: %s", tmp, target, strerror(errno));
    goto done;
  }
  sync_dir(target);

done:
  e = errno;
  if (w.fd >= 0) close(w.fd);
  if (err && created) (void)unlink(tmp); /* what was at path is untouched */
  free(target);
  free(tmp);
  free(w.buf);
  free(tab);
  free(hdr.p);
  free(its);
  free(mts);
  errno = err ? e : 0;
  return err;
}
