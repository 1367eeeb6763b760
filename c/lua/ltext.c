/*
 * ltext.c -- c/text.c for lua/bptt/data.lua: loading a text into token ids,
 * the vocabulary userdata, and the batch and permutation kernels.
 *
 * These are internal entry points (bptt.core.text_load, ...); data.lua checks
 * options and wraps them.  Messages name the public function they serve.  The
 * C core never holds memory across a Lua error here: a vocabulary's arrays
 * belong to its userdata (pushed before they are allocated, freed by __gc),
 * scratch space is a userdata too, and core calls free their own temporaries
 * before returning.
 */
#define _POSIX_C_SOURCE 200809L /* opendir, stat */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "lbptt.h"
#include "text.h"
#include "words.h"

#define VOCAB_MT "bptt.Vocab"

static int vocab_gc(lua_State *L) {
  bptt_vocab *v = luaL_checkudata(L, 1, VOCAB_MT);
  bptt_vocab_free(v); /* safe twice */
  return 0;
}

static bptt_vocab *push_vocab(lua_State *L, int unit) {
  bptt_vocab *v = lua_newuserdata(L, sizeof *v);
  bptt_vocab_init(v, unit);
  luaL_getmetatable(L, VOCAB_MT);
  lua_setmetatable(L, -2);
  return v;
}

static bptt_vocab *check_vocab(lua_State *L, int idx, const char *fn) {
  bptt_vocab *v = bptt_testudata(L, idx, VOCAB_MT);
  if (v == NULL) luaL_error(L, "%s: self must be a bptt.data.Vocab, got %s", fn, luaL_typename(L, idx));
  return v;
}

static int check_unit(lua_State *L, int idx, const char *fn) {
  int unit;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: unit must be \"byte\" or \"utf8\", got %s", fn, luaL_typename(L, idx));
  unit = bptt_unit_from_name(lua_tostring(L, idx));
  if (unit < 0) luaL_error(L, "%s: unit must be \"byte\" or \"utf8\", got \"%s\"", fn, lua_tostring(L, idx));
  return unit;
}

/* ---------------------------------------------------------------- messages */

/* "\"é\" (U+00E9)", "\"\\n\" (U+000A)", "U+0007", "\"a\" (byte 0x61)", "byte 0xe9":
 * a symbol as people can read it; other control characters by number only. */
static void symbol_str(char *buf, size_t len, int unit, uint32_t s) {
  char b[4];
  int n = bptt_symbol_bytes(unit, s, b);
  int printable = s >= 0x20 && s != 0x7F && !(s >= 0x80 && s < 0xA0) && (unit == BPTT_UNIT_UTF8 || s < 0x80);
  const char *esc = s == '\n' ? "\\n" : s == '\t' ? "\\t" : s == '\r' ? "\\r" : NULL;
  if (esc) {
    if (unit == BPTT_UNIT_BYTE)
      snprintf(buf, len, "\"%s\" (byte 0x%02x)", esc, (unsigned)s);
    else
      snprintf(buf, len, "\"%s\" (U+%04lX)", esc, (unsigned long)s);
  } else if (unit == BPTT_UNIT_BYTE) {
    if (printable)
      snprintf(buf, len, "\"%c\" (byte 0x%02x)", (char)s, (unsigned)s);
    else
      snprintf(buf, len, "byte 0x%02x", (unsigned)s);
  } else {
    if (printable)
      snprintf(buf, len, "\"%.*s\" (U+%04lX)", n, b, (unsigned long)s);
    else
      snprintf(buf, len, "U+%04lX", (unsigned long)s);
  }
}

/* The message for a failed read or encode of a text (path NULL: a string). */
static const char *text_message(char *buf, size_t len, int err, const bptt_text_error *e, int unit, const char *path) {
  char sym[64], where[1200];
  if (path)
    snprintf(where, sizeof where, "%s: ", path);
  else
    where[0] = '\0';
  switch (err) {
    case BPTT_EIO:
      snprintf(buf, len, "%s%s", where, strerror(e->sys_errno));
      break;
    case BPTT_EFORMAT:
      if (e->byte < 0)
        snprintf(buf, len, "%sinvalid UTF-8 at byte offset %lld: the text ends inside a character", where,
                 (long long)e->offset);
      else if (e->byte_offset == e->offset)
        snprintf(buf, len, "%sinvalid UTF-8 at byte offset %lld: byte 0x%02x cannot start a character", where,
                 (long long)e->offset, (unsigned)e->byte);
      else
        snprintf(buf, len,
                 "%sinvalid UTF-8 at byte offset %lld: byte 0x%02x at offset %lld cannot continue the character", where,
                 (long long)e->offset, (unsigned)e->byte, (long long)e->byte_offset);
      break;
    case BPTT_ERANGE:
      symbol_str(sym, sizeof sym, unit, e->symbol);
      if (unit == BPTT_UNIT_BYTE)
        snprintf(buf, len, "%s%s at position %lld is not in the vocabulary", where, sym, (long long)e->index + 1);
      else
        snprintf(buf, len, "%s%s at character %lld (byte offset %lld) is not in the vocabulary", where, sym,
                 (long long)e->index + 1, (long long)e->offset);
      break;
    case BPTT_ESHAPE:
      snprintf(buf, len, "%sthe file changed while it was being read", where);
      break;
    default:
      snprintf(buf, len, "%s%s", where, bptt_strerror(err));
  }
  return buf;
}

/* ------------------------------------------------------------ loading */

/* text_load(path?, text?, unit, replace, vocab?) -> ids, vocab | nil, message[, errno]
 *
 * Exactly one of path and text.  Without a vocabulary one is built from the
 * text (first pass) and the text is encoded with it (second pass); with one,
 * the first pass only counts.  Failures of the text itself (missing file,
 * invalid UTF-8, a symbol not in the given vocabulary) are nil, message. */
static int l_text_load(lua_State *L) {
  const char *fn = "bptt.data.text";
  bptt_text_src src;
  bptt_text_error e;
  bptt_vocab *v;
  bptt_tensor *ids;
  int64_t n = 0;
  int unit, replace, err, iv;
  char msg[1600];
  memset(&src, 0, sizeof src);
  if (lua_type(L, 1) == LUA_TSTRING)
    src.path = lua_tostring(L, 1);
  else if (lua_type(L, 2) == LUA_TSTRING)
    src.bytes = lua_tolstring(L, 2, &src.len);
  else
    return luaL_error(L, "%s: give a path or text = a string", fn);
  unit = check_unit(L, 3, fn);
  replace = lua_toboolean(L, 4);
  lua_settop(L, 5);
  if (lua_isnil(L, 5)) {
    v = push_vocab(L, unit);
    err = bptt_vocab_build(v, &src, unit, replace, &n, &e);
  } else {
    v = check_vocab(L, 5, fn);
    lua_pushvalue(L, 5);
    unit = v->unit;
    err = bptt_text_count(&src, unit, replace, &n, &e);
  }
  iv = lua_gettop(L);
  if (err == BPTT_ENOMEM) return bptt_raise(L, err, fn, "building the vocabulary");
  if (!err) {
    ids = bptt_newtensor(L, fn, BPTT_INT32, 1, &n);
    err = bptt_text_encode(v, &src, replace, bptt_tensor_data(ids), n, &e);
    if (err == BPTT_ENOMEM) return bptt_raise(L, err, fn, "reading the text");
  }
  if (err) { /* nil, message[, errno] (an OS error: as LuaFileSystem) */
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", fn, text_message(msg, sizeof msg, err, &e, unit, src.path));
    if (err != BPTT_EIO || e.sys_errno == 0) return 2;
    lua_pushinteger(L, e.sys_errno);
    return 3;
  }
  lua_pushvalue(L, iv);
  return 2;
}

/* -------------------------------------------------------------- vocabulary */

/* vocab_encode(vocab, s) -> int32 ids (#symbols); errors name the symbol */
static int l_vocab_encode(lua_State *L) {
  const char *fn = "bptt.data.Vocab:encode";
  bptt_vocab *v = check_vocab(L, 1, fn);
  bptt_text_src src;
  bptt_text_error e;
  bptt_tensor *ids;
  int64_t n;
  int err;
  char msg[1600];
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_error(L, "%s: text must be a string, got %s", fn, luaL_typename(L, 2));
  memset(&src, 0, sizeof src);
  src.bytes = lua_tolstring(L, 2, &src.len);
  err = bptt_text_count(&src, v->unit, 0, &n, &e);
  if (!err) {
    ids = bptt_newtensor(L, fn, BPTT_INT32, 1, &n);
    err = bptt_text_encode(v, &src, 0, bptt_tensor_data(ids), n, &e);
  }
  if (err) return luaL_error(L, "%s: %s", fn, text_message(msg, sizeof msg, err, &e, v->unit, NULL));
  return 1;
}

/* vocab_decode(vocab, ids) -> string; ids int32 and contiguous, any shape */
static int l_vocab_decode(lua_State *L) {
  const char *fn = "bptt.data.Vocab:decode";
  bptt_vocab *v = check_vocab(L, 1, fn);
  bptt_tensor *t = bptt_checktensor(L, 2, fn, "ids");
  const int32_t *ids;
  int64_t n, i = 0;
  luaL_Buffer b;
  if (t->dtype != BPTT_INT32 || !bptt_tensor_is_contiguous(t))
    return luaL_error(L, "%s: ids must be a contiguous int32 tensor", fn);
  ids = bptt_tensor_data(t);
  n = bptt_tensor_numel(t);
  luaL_buffinit(L, &b);
  while (i < n) {
    char *p = luaL_prepbuffer(&b);
    int64_t done;
    size_t w;
    int err = bptt_vocab_decode(v, ids + i, 1, n - i, p, LUAL_BUFFERSIZE, &done, &w);
    luaL_addsize(&b, w);
    i += done;
    if (err) {
      char pos[32];
      snprintf(pos, sizeof pos, "%lld", (long long)i + 1);
      return luaL_error(L, "%s: ids[%s] must be a token id in 1..%d, got %d", fn, pos, (int)v->size, (int)ids[i]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* vocab_info(vocab) -> unit, V */
static int l_vocab_info(lua_State *L) {
  bptt_vocab *v = check_vocab(L, 1, "bptt.data.Vocab");
  lua_pushstring(L, bptt_unit_name(v->unit));
  lua_pushinteger(L, v->size);
  return 2;
}

/* vocab_symbols(vocab) -> {symbol strings in id order} */
static int l_vocab_symbols(lua_State *L) {
  bptt_vocab *v = check_vocab(L, 1, "bptt.data.Vocab:symbols");
  int32_t i;
  lua_createtable(L, v->size, 0);
  for (i = 0; i < v->size; i++) {
    char b[4];
    int n = bptt_symbol_bytes(v->unit, v->symbols[i], b);
    lua_pushlstring(L, b, (size_t)n);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* vocab_counts(vocab) -> {count of each id} */
static int l_vocab_counts(lua_State *L) {
  bptt_vocab *v = check_vocab(L, 1, "bptt.data.Vocab:counts");
  int32_t i;
  lua_createtable(L, v->size, 0);
  for (i = 0; i < v->size; i++) {
    lua_pushnumber(L, (lua_Number)v->counts[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* vocab_from_symbols(list, unit) -> vocab; list of one-symbol strings */
static int l_vocab_from_symbols(lua_State *L) {
  const char *fn = "bptt.data.Vocab.from_symbols";
  int unit = check_unit(L, 2, fn), n, i;
  uint32_t *syms;
  int32_t bad;
  bptt_vocab *v;
  int err;
  if (lua_type(L, 1) != LUA_TTABLE)
    return luaL_error(L, "%s: symbols must be a list of strings, got %s", fn, luaL_typename(L, 1));
  n = (int)bptt_rawlen(L, 1);
  if ((uint32_t)n > (unit == BPTT_UNIT_BYTE ? 256u : BPTT_UTF8_LIMIT))
    return luaL_error(L, "%s: a %s vocabulary has at most %d symbols, got %d", fn, bptt_unit_name(unit),
                      unit == BPTT_UNIT_BYTE ? 256 : (int)BPTT_UTF8_LIMIT, n);
  syms = lua_newuserdata(L, sizeof(uint32_t) * (size_t)(n ? n : 1)); /* scratch the collector owns */
  for (i = 0; i < n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, 1, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "%s: symbols[%d] must be a string, got %s", fn, i + 1, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    if (bptt_symbol_parse(unit, s, len, &syms[i]))
      return luaL_error(L, "%s: symbols[%d] must be %s, got a string of %d bytes", fn, i + 1,
                        unit == BPTT_UNIT_BYTE ? "one byte" : "one UTF-8 encoded code point", (int)len);
    lua_pop(L, 1);
  }
  v = push_vocab(L, unit);
  err = bptt_vocab_from_symbols(v, unit, syms, n, &bad);
  if (err == BPTT_EARG) {
    char sym[64];
    symbol_str(sym, sizeof sym, unit, syms[bad]);
    return luaL_error(L, "%s: symbols[%d] (%s) repeats an earlier symbol", fn, bad + 1, sym);
  }
  if (err) return bptt_raise(L, err, fn, NULL);
  return 1;
}

/* vocab_serialize(vocab) -> ASCII string */
static int l_vocab_serialize(lua_State *L) {
  bptt_vocab *v = check_vocab(L, 1, "bptt.data.Vocab:serialize");
  size_t len = bptt_vocab_serialize(v, NULL, 0);
  char *buf = lua_newuserdata(L, len + 1);
  bptt_vocab_serialize(v, buf, len + 1);
  lua_pushlstring(L, buf, len);
  return 1;
}

/* vocab_parse(s) -> vocab | nil, message */
static int l_vocab_parse(lua_State *L) {
  const char *fn = "bptt.data.Vocab.deserialize";
  size_t len;
  const char *s;
  bptt_vocab *v;
  int err;
  if (lua_type(L, 1) != LUA_TSTRING) return luaL_error(L, "%s: s must be a string, got %s", fn, luaL_typename(L, 1));
  s = lua_tolstring(L, 1, &len);
  v = push_vocab(L, BPTT_UNIT_BYTE);
  err = bptt_vocab_parse(v, s, len);
  if (err == BPTT_ENOMEM) return bptt_raise(L, err, fn, NULL);
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L,
                    "%s: s is not a vocabulary from Vocab:serialize() (\"bptt-vocab/1 <unit> <V>\" then V hex "
                    "symbols, each once)",
                    fn);
    return 2;
  }
  return 1;
}

/* ----------------------------------------------------------------- batches */

static bptt_tensor *int32_arg(lua_State *L, int idx, const char *fn, const char *name, int ndim) {
  bptt_tensor *t = bptt_checktensor(L, idx, fn, name);
  if (t->dtype != BPTT_INT32 || t->ndim != ndim)
    luaL_error(L, "%s: %s must be a %d-d int32 tensor, got a %d-d %s one", fn, name, ndim, t->ndim,
               bptt_dtype_name(t->dtype));
  return t;
}

/* text_batch(tokens, x, y, S, start): x, y (T x B) from B stripes of S tokens,
 * window start (0-based) -- see bptt_text_batch */
static int l_text_batch(lua_State *L) {
  const char *fn = "bptt.data.Batches:next";
  bptt_tensor *tok = int32_arg(L, 1, fn, "tokens", 1);
  bptt_tensor *x = int32_arg(L, 2, fn, "x", 2), *y = int32_arg(L, 3, fn, "y", 2);
  int64_t S = bptt_checkint(L, 4, fn, "S", 0, INT64_MAX), start = bptt_checkint(L, 5, fn, "start", 0, INT64_MAX);
  int err;
  if (!bptt_tensor_same_shape(x, y) || !bptt_tensor_is_contiguous(x) || !bptt_tensor_is_contiguous(y))
    return luaL_error(L, "%s: x and y must be contiguous and of one shape", fn);
  err = bptt_text_batch(bptt_tensor_data(tok), tok->stride[0], tok->size[0], S, start, x->size[0], x->size[1],
                        bptt_tensor_data(x), bptt_tensor_data(y));
  if (err) return luaL_error(L, "%s: the window falls outside the tokens (%s)", fn, bptt_strerror(err));
  return 0;
}

/* text_starts(x, sep, r): r (T x B) = 1 where x == sep -- see bptt_text_starts */
static int l_text_starts(lua_State *L) {
  const char *fn = "bptt.data.Batches:next";
  bptt_tensor *x = int32_arg(L, 1, fn, "x", 2);
  int64_t sep = bptt_checkint(L, 2, fn, "separator", 1, INT32_MAX);
  bptt_tensor *r = int32_arg(L, 3, fn, "starts", 2);
  if (!bptt_tensor_same_shape(x, r) || !bptt_tensor_is_contiguous(x) || !bptt_tensor_is_contiguous(r))
    return luaL_error(L, "%s: x and starts must be contiguous and of one shape", fn);
  bptt_text_starts(bptt_tensor_data(x), bptt_tensor_numel(x), (int32_t)sep, bptt_tensor_data(r));
  return 0;
}

/* text_permute(perm, seed, epoch): perm = a permutation of 1..n drawn from (seed, epoch) */
static int l_text_permute(lua_State *L) {
  const char *fn = "bptt.data.Batches";
  bptt_tensor *perm = int32_arg(L, 1, fn, "perm", 1);
  int64_t seed = bptt_checkint(L, 2, fn, "seed", 0, INT64_C(1) << 53);
  int64_t epoch = bptt_checkint(L, 3, fn, "epoch", 0, INT64_C(1) << 53);
  if (!bptt_tensor_is_contiguous(perm)) return luaL_error(L, "%s: perm must be contiguous", fn);
  if (bptt_text_permutation(bptt_tensor_data(perm), perm->size[0], (uint64_t)seed, (uint64_t)epoch))
    return luaL_error(L, "%s: at most 2^31 - 1 batches can be shuffled", fn);
  return 0;
}

/* ------------------------------------------------------ word vocabularies */

#define WORDS_MT "bptt.Words"

typedef struct {
  bptt_words w;
  int unit; /* bptt_split */
} words_ud;

static const char *const SPLIT_NAMES[] = { "word", "utf8", "byte", NULL };

static int words_gc(lua_State *L) {
  words_ud *u = luaL_checkudata(L, 1, WORDS_MT);
  bptt_words_free(&u->w); /* safe twice */
  return 0;
}

/* A new empty vocabulary, owned by the collector before it owns memory. */
static words_ud *push_words(lua_State *L, int unit) {
  words_ud *u = lua_newuserdata(L, sizeof *u);
  bptt_words_init(&u->w);
  u->unit = unit;
  luaL_getmetatable(L, WORDS_MT);
  lua_setmetatable(L, -2);
  return u;
}

static words_ud *check_words(lua_State *L, int idx, const char *fn) {
  words_ud *u = bptt_testudata(L, idx, WORDS_MT);
  if (u == NULL) luaL_error(L, "%s: vocab must be a word vocabulary of bptt.data, got %s", fn, luaL_typename(L, idx));
  return u;
}

static int check_split(lua_State *L, int idx, const char *fn) {
  const char *name = lua_tostring(L, idx);
  int i;
  for (i = 0; name && SPLIT_NAMES[i]; i++)
    if (strcmp(name, SPLIT_NAMES[i]) == 0) return i;
  return luaL_error(L, "%s: unit must be \"word\", \"utf8\" or \"byte\", got %s", fn,
                    name ? name : luaL_typename(L, idx));
}

static void get_src(lua_State *L, bptt_text_src *src, const char *fn) {
  memset(src, 0, sizeof *src);
  if (lua_type(L, 1) == LUA_TSTRING)
    src->path = lua_tostring(L, 1);
  else if (lua_type(L, 2) == LUA_TSTRING)
    src->bytes = lua_tolstring(L, 2, &src->len);
  else
    luaL_error(L, "%s: give a path or text = a string", fn);
}

/* nil, message[, errno] for a failed load (the outside world's failures). */
static int words_fail(lua_State *L, const char *fn, const bptt_text_src *src, int err, const bptt_words_error *e) {
  char where[1100];
  if (src->path && e->line)
    snprintf(where, sizeof where, "%s:%lld: ", src->path, (long long)e->line);
  else if (src->path)
    snprintf(where, sizeof where, "%s: ", src->path);
  else if (e->line)
    snprintf(where, sizeof where, "line %lld: ", (long long)e->line);
  else
    where[0] = '\0';
  lua_pushnil(L);
  if (err == BPTT_EIO) {
    lua_pushfstring(L, "%s: %s%s", fn, where, strerror(e->sys_errno));
    lua_pushinteger(L, e->sys_errno);
    return 3;
  }
  if (err == BPTT_EFORMAT && e->column)
    lua_pushfstring(L, "%s: %s%s at byte %d of the line", fn, where, e->what, (int)e->column);
  else if (err == BPTT_EFORMAT || (err == BPTT_ERANGE && e->what))
    lua_pushfstring(L, "%s: %s%s", fn, where, e->what);
  else if (err == BPTT_ERANGE)
    lua_pushfstring(L, "%s: %sa token not in the vocabulary, which has no <unk>", fn, where);
  else if (err == BPTT_ESHAPE)
    lua_pushfstring(L, "%s: %sthe file changed while it was being read", fn, where);
  else
    lua_pushfstring(L, "%s: %s%s", fn, where, bptt_strerror(err));
  return 2;
}

/* The vocabulary at idx (nil: built from counts at idx_counts, <unk> first,
 * at most max ids) left on the top of the stack. */
static words_ud *vocab_or_ranked(lua_State *L, int idx, int counts_idx, int unit, int64_t max, int by_count,
                                 const char *special, const char *fn) {
  words_ud *v;
  if (!lua_isnil(L, idx)) {
    v = check_words(L, idx, fn);
    lua_pushvalue(L, idx);
    return v;
  }
  v = push_words(L, unit);
  {
    words_ud *c = lua_touserdata(L, counts_idx);
    int err = bptt_words_ranked(&v->w, &c->w, &special, special ? 1 : 0, (int32_t)max, by_count);
    if (err) bptt_raise(L, err, fn, "building the vocabulary");
  }
  return v;
}

/* words_text(path?, text?, unit, eos?, max_vocab, vocab?) -> ids, vocab | nil, message[, errno] */
static int l_words_text(lua_State *L) {
  const char *fn = "bptt.data.text";
  bptt_text_src src;
  bptt_words_error e;
  int unit, err, iv;
  const char *eos;
  int64_t max, n = 0;
  words_ud *counts, *v;
  bptt_tensor *ids;
  get_src(L, &src, fn);
  unit = check_split(L, 3, fn);
  eos = lua_isnil(L, 4) ? NULL : luaL_checkstring(L, 4);
  max = bptt_checkint(L, 5, fn, "max_vocab", 0, INT32_MAX - 1);
  lua_settop(L, 6);
  counts = push_words(L, unit); /* 7 */
  err = bptt_words_text(&src, unit, eos, &counts->w, NULL, 0, NULL, &n, &e);
  if (err == BPTT_ENOMEM || err == BPTT_EOVERFLOW) return bptt_raise(L, err, fn, "counting the words");
  if (err) return words_fail(L, fn, &src, err, &e);
  v = vocab_or_ranked(L, 6, 7, unit, max, 1, "<unk>", fn);
  iv = lua_gettop(L);
  ids = bptt_newtensor(L, fn, BPTT_INT32, 1, &n);
  err =
      bptt_words_text(&src, unit, eos, NULL, &v->w, bptt_words_find(&v->w, "<unk>", 5), bptt_tensor_data(ids), &n, &e);
  if (err) return words_fail(L, fn, &src, err, &e);
  lua_pushvalue(L, iv);
  return 2;
}

/* words_labelled(path?, text?, unit, max_vocab, vocab?, labels?)
 *   -> tokens, starts, lengths, labels, vocab, label_vocab | nil, message[, errno] */
static int l_words_labelled(lua_State *L) {
  const char *fn = "bptt.data.labelled";
  bptt_text_src src;
  bptt_words_error e;
  int unit, err, iv, il;
  int64_t max, n = 0, m = 0;
  words_ud *counts, *labels_seen, *v, *lv;
  bptt_tensor *ids, *starts, *lengths, *labels;
  get_src(L, &src, fn);
  unit = check_split(L, 3, fn);
  max = bptt_checkint(L, 4, fn, "max_vocab", 0, INT32_MAX - 1);
  lua_settop(L, 6);
  counts = push_words(L, unit);                 /* 7 */
  labels_seen = push_words(L, BPTT_SPLIT_WORD); /* 8 */
  err = bptt_words_labelled(&src, unit, &labels_seen->w, &counts->w, NULL, NULL, 0, NULL, NULL, NULL, NULL, &n, &m, &e);
  if (err == BPTT_ENOMEM || err == BPTT_EOVERFLOW) return bptt_raise(L, err, fn, "counting the words");
  if (err) return words_fail(L, fn, &src, err, &e);
  v = vocab_or_ranked(L, 5, 7, unit, max, 1, "<unk>", fn);
  iv = lua_gettop(L);
  lv = vocab_or_ranked(L, 6, 8, BPTT_SPLIT_WORD, 0, 0, NULL, fn);
  il = lua_gettop(L);
  ids = bptt_newtensor(L, fn, BPTT_INT32, 1, &n);
  starts = bptt_newtensor(L, fn, BPTT_INT32, 1, &m);
  lengths = bptt_newtensor(L, fn, BPTT_INT32, 1, &m);
  labels = bptt_newtensor(L, fn, BPTT_INT32, 1, &m);
  err = bptt_words_labelled(&src, unit, NULL, NULL, &lv->w, &v->w, bptt_words_find(&v->w, "<unk>", 5),
                            bptt_tensor_data(ids), bptt_tensor_data(starts), bptt_tensor_data(lengths),
                            bptt_tensor_data(labels), &n, &m, &e);
  if (err) return words_fail(L, fn, &src, err, &e);
  lua_pushvalue(L, iv);
  lua_pushvalue(L, il);
  return 6;
}

/* words_encode(vocab, s) -> int32 ids; a token not in the vocabulary is <unk> (an error without one) */
static int l_words_encode(lua_State *L) {
  const char *fn = "bptt.data.WordVocab:encode";
  words_ud *u = check_words(L, 1, fn);
  size_t len, pos = 0, tl;
  const char *s, *tok;
  int64_t n = 0, i = 0;
  int32_t unk = bptt_words_find(&u->w, "<unk>", 5), *ids;
  int r;
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_error(L, "%s: text must be a string, got %s", fn, luaL_typename(L, 2));
  s = lua_tolstring(L, 2, &len);
  while ((r = bptt_token_next(u->unit, s, len, &pos, &tok, &tl)) == 1) n++;
  if (r < 0) return luaL_error(L, "%s: invalid UTF-8 at byte offset %d", fn, (int)pos);
  ids = bptt_tensor_data(bptt_newtensor(L, fn, BPTT_INT32, 1, &n));
  pos = 0;
  while (bptt_token_next(u->unit, s, len, &pos, &tok, &tl) == 1) {
    int32_t id = bptt_words_find(&u->w, tok, tl);
    if (id == 0 && unk == 0) {
      lua_pushlstring(L, tok, tl);
      return luaL_error(L, "%s: token %d (\"%s\") is not in the vocabulary, which has no <unk>", fn, (int)i + 1,
                        lua_tostring(L, -1));
    }
    ids[i++] = id ? id : unk;
  }
  return 1;
}

/* words_decode(vocab, ids) -> string: tokens joined by a space (unit word) or nothing */
static int l_words_decode(lua_State *L) {
  const char *fn = "bptt.data.WordVocab:decode";
  words_ud *u = check_words(L, 1, fn);
  bptt_tensor *t = bptt_checktensor(L, 2, fn, "ids");
  const int32_t *ids;
  int64_t n, i;
  luaL_Buffer b;
  if (t->dtype != BPTT_INT32 || !bptt_tensor_is_contiguous(t))
    return luaL_error(L, "%s: ids must be a contiguous int32 tensor", fn);
  ids = bptt_tensor_data(t);
  n = bptt_tensor_numel(t);
  for (i = 0; i < n; i++)
    if (ids[i] < 1 || ids[i] > u->w.size)
      return luaL_error(L, "%s: ids[%d] must be a token id in 1..%d, got %d", fn, (int)i + 1, (int)u->w.size,
                        (int)ids[i]);
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    size_t len;
    const char *s = bptt_words_get(&u->w, ids[i], &len);
    if (i > 0 && u->unit == BPTT_SPLIT_WORD) luaL_addchar(&b, ' ');
    luaL_addlstring(&b, s, len);
  }
  luaL_pushresult(&b);
  return 1;
}

/* words_info(vocab) -> unit, V */
static int l_words_info(lua_State *L) {
  words_ud *u = check_words(L, 1, "bptt.data.WordVocab");
  lua_pushstring(L, SPLIT_NAMES[u->unit]);
  lua_pushinteger(L, u->w.size);
  return 2;
}

/* words_symbols(vocab) -> {strings in id order}, {counts} */
static int l_words_symbols(lua_State *L) {
  words_ud *u = check_words(L, 1, "bptt.data.WordVocab:symbols");
  int32_t i;
  lua_createtable(L, u->w.size, 0);
  lua_createtable(L, u->w.size, 0);
  for (i = 1; i <= u->w.size; i++) {
    size_t len;
    const char *s = bptt_words_get(&u->w, i, &len);
    lua_pushlstring(L, s, len);
    lua_rawseti(L, -3, i);
    lua_pushnumber(L, (lua_Number)u->w.counts[i - 1]);
    lua_rawseti(L, -2, i);
  }
  return 2;
}

/* words_from_list(list, unit) -> vocab with id i for list[i]; a repeat is an error */
static int l_words_from_list(lua_State *L) {
  const char *fn = "bptt.data.WordVocab.from_list";
  int unit = check_split(L, 2, fn), n, i;
  words_ud *u;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (int)bptt_rawlen(L, 1);
  u = push_words(L, unit);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    int32_t id;
    int err;
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "%s: words[%d] must be a string, got %s", fn, i, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    if ((err = bptt_words_add(&u->w, s, len, 0, &id))) return bptt_raise(L, err, fn, NULL);
    if (id != i) return luaL_error(L, "%s: words[%d] (\"%s\") repeats words[%d]", fn, i, s, (int)id);
    lua_pop(L, 1);
  }
  return 1;
}

/* ------------------------------------------------------------- folders */

#define DIR_MT "bptt.Dir"

/* An open DIR* as a userdata: closed by __gc if an error leaves it open. */
static int dir_gc(lua_State *L) {
  DIR **d = luaL_checkudata(L, 1, DIR_MT);
  if (*d) closedir(*d);
  *d = NULL;
  return 0;
}

/* text_listdir(path) -> {names of the regular files, unsorted} | nil, message, errno
 * Names starting with "." are left out. */
static int l_text_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR **d = lua_newuserdata(L, sizeof *d);
  struct dirent *ent;
  int n = 0;
  *d = NULL;
  luaL_getmetatable(L, DIR_MT);
  lua_setmetatable(L, -2);
  errno = 0;
  *d = opendir(path);
  if (*d == NULL) {
    int en = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(en));
    lua_pushinteger(L, en);
    return 3;
  }
  lua_newtable(L);
  while ((ent = readdir(*d)) != NULL) {
    struct stat st;
    if (ent->d_name[0] == '.') continue;
    lua_pushfstring(L, "%s/%s", path, ent->d_name);
    if (stat(lua_tostring(L, -1), &st) == 0 && S_ISREG(st.st_mode)) {
      lua_pop(L, 1);
      lua_pushstring(L, ent->d_name);
      lua_rawseti(L, -2, ++n);
    } else {
      lua_pop(L, 1);
    }
  }
  closedir(*d);
  *d = NULL;
  return 1;
}

static const luaL_Reg functions[] = { { "text_load", l_text_load },
                                      { "vocab_encode", l_vocab_encode },
                                      { "vocab_decode", l_vocab_decode },
                                      { "vocab_info", l_vocab_info },
                                      { "vocab_symbols", l_vocab_symbols },
                                      { "vocab_counts", l_vocab_counts },
                                      { "vocab_from_symbols", l_vocab_from_symbols },
                                      { "vocab_serialize", l_vocab_serialize },
                                      { "vocab_parse", l_vocab_parse },
                                      { "text_batch", l_text_batch },
                                      { "text_permute", l_text_permute },
                                      { "text_starts", l_text_starts },
                                      { "text_listdir", l_text_listdir },
                                      { "words_text", l_words_text },
                                      { "words_labelled", l_words_labelled },
                                      { "words_encode", l_words_encode },
                                      { "words_decode", l_words_decode },
                                      { "words_info", l_words_info },
                                      { "words_symbols", l_words_symbols },
                                      { "words_from_list", l_words_from_list },
                                      { NULL, NULL } };

void bptt_open_text(lua_State *L) {
  if (luaL_newmetatable(L, VOCAB_MT)) {
    lua_pushcfunction(L, vocab_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "bptt.Vocab");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, WORDS_MT)) {
    lua_pushcfunction(L, words_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "bptt.Words");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, DIR_MT)) {
    lua_pushcfunction(L, dir_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  bptt_setfuncs(L, functions, 0);
}
