/*
 * lsample.c -- bptt.core.sample (pick the next token) and bptt.core.log_prob
 * (score tokens), for lua/bptt/LanguageModel.lua and users' own loops.
 */
#include <string.h>

#include "lbptt.h"
#include "nn.h"
#include "rnn.h"
#include "sample.h"

/* The sampling options at idx: {temperature=1, top_k=0, top_p=1,
 * greedy=false} or nil. */
static void sample_opts(lua_State *L, int idx, const char *fn, bptt_sample_opts *o) {
  o->temperature = 1, o->top_k = 0, o->top_p = 1, o->greedy = 0;
  if (lua_isnoneornil(L, idx)) return;
  if (!lua_istable(L, idx)) luaL_error(L, "%s: opts must be a table, got %s", fn, luaL_typename(L, idx));
  lua_getfield(L, idx, "temperature");
  if (!lua_isnil(L, -1)) {
    o->temperature = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(o->temperature > 0) || o->temperature > 1e300)
      luaL_error(L, "%s: temperature must be a number > 0, got %s", fn,
                 lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
  }
  lua_getfield(L, idx, "top_k");
  if (!lua_isnil(L, -1)) o->top_k = bptt_checkint(L, -1, fn, "top_k", 0, INT64_MAX);
  lua_getfield(L, idx, "top_p");
  if (!lua_isnil(L, -1)) {
    o->top_p = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(o->top_p > 0 && o->top_p <= 1))
      luaL_error(L, "%s: top_p must be a number in (0, 1], got %s", fn,
                 lua_tostring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
  }
  lua_getfield(L, idx, "greedy");
  o->greedy = lua_toboolean(L, -1);
  lua_pop(L, 4);
}

/* sample(logits (V), {temperature=1, top_k=0, top_p=1, greedy=false}) -> id (1-based) */
static int l_sample(lua_State *L) {
  const char *fn = "bptt.sample";
  bptt_tensor *t = bptt_checktensor(L, 1, fn, "logits"), *work;
  bptt_sample_opts o;
  int64_t id = 0, nwork;
  int err;
  if (t->ndim != 1 || t->size[0] < 1 || t->dtype == BPTT_INT32) {
    char buf[96];
    luaL_error(L, "%s: logits must be a non-empty 1-d float tensor, got %s %s", fn, bptt_dtype_name(t->dtype),
               bptt_shapestr(t, buf, sizeof buf));
  }
  sample_opts(L, 2, fn, &o);
  nwork = (int64_t)((bptt_sample_work_bytes(t->size[0]) + 7) / 8);
  work = bptt_newtensor(L, fn, BPTT_FLOAT64, 1, &nwork); /* scratch owned by the GC */
  err = bptt_sample(t, &o, bptt_default_rng(L), bptt_tensor_data(work), &id);
  if (err == BPTT_ERANGE) luaL_error(L, "%s: every logit is -inf: there is no distribution to sample from", fn);
  if (err) luaL_error(L, "%s: logits contain NaN: there is no distribution to sample from", fn);
  lua_pushnumber(L, (lua_Number)(id + 1));
  return 1;
}

/* log_prob(logits (N, C), targets (N) int32) -> float64 tensor (N) of
 * log softmax(logits)[i, targets[i]] */
static int l_log_prob(lua_State *L) {
  const char *fn = "bptt.log_prob";
  bptt_tensor *lg = bptt_checktensor(L, 1, fn, "logits"), *tg = bptt_checktensor(L, 2, fn, "targets"), *out;
  int64_t n, bad = -1;
  char a[96], b[96];
  if (lg->ndim != 2 || lg->dtype == BPTT_INT32)
    luaL_error(L, "%s: logits must be a 2-d (N x C) float tensor, got %s %s", fn, bptt_dtype_name(lg->dtype),
               bptt_shapestr(lg, a, sizeof a));
  if (tg->ndim != 1 || tg->size[0] != lg->size[0] || tg->dtype != BPTT_INT32 || !bptt_tensor_is_contiguous(tg))
    bptt_error(L, "%s: targets must be a contiguous int32 tensor of %lld ids, got %s %s", fn, (long long)lg->size[0],
               bptt_dtype_name(tg->dtype), bptt_shapestr(tg, b, sizeof b));
  n = lg->size[0];
  out = bptt_newtensor(L, fn, BPTT_FLOAT64, 1, &n);
  if (bptt_log_prob(lg, bptt_tensor_data(tg), bptt_tensor_data(out), &bad))
    bptt_error(L, "%s: targets[%lld] is %d, expected 1..%lld", fn, (long long)bad + 1,
               ((const int32_t *)bptt_tensor_data(tg))[bad], (long long)lg->size[1]);
  return 1;
}

/* ------------------------------------------------ the language model's step
 *
 * LanguageModel:sample's loop in C: one call per token instead of the
 * layers' Lua methods (views, tables, checks: about 15 us a token, and at
 * B = 1 the weights' reading leaves them out of cache).  The same kernel
 * calls as Embedding:forward, RNN:forward and Linear:forward at T = B = 1
 * and bptt.sample, on the same buffers' sizes: the same bits.
 *
 *   lm_generator(cell, emb (V,E), w_ih {L}, w_hh {L}, b_ih {L} | nil,
 *                b_hh {L} | nil, dec_w (V,H), dec_b (V) | nil, logits (V),
 *                opts, h0 (L,1,H) | nil, c0 (L,1,H) | nil) -> gen
 *   gen:next(id) -> the next id (1-based): id embedded, every layer one
 *                step from the state (which it replaces), the decoder into
 *                logits, then a draw as bptt.sample's with opts
 *
 * gen keeps its tensors referenced (its environment table) and rereads
 * their storage every step: a tensor freed meanwhile is a Lua error.  Its
 * own buffer (bptt_malloc, freed by __gc), in rows of Hp = H rounded up to
 * 16 elements (each row starts on a cache line, as a tensor's storage
 * does): x (one row of E rounded up) | each layer's y (L rows) | the state,
 * two sets that take turns, each L rows of h then L rows of c | the cell's
 * cache for one step | bptt_sample's work. */
#define GEN_MT "bptt.LmGenerator"

typedef struct {
  int dt, cell, nl, cur, have_state;
  int64_t V, E, H, cn;
  int64_t ep, hp; /* E and H rounded up to 16 */
  bptt_sample_opts o;
  void *buf;
  double *swork;
  bptt_tensor *emb, *dec_w, *dec_b, *logits;
  bptt_tensor *w[]; /* w_ih, w_hh, b_ih, b_hh of each layer (b_* NULL: none) */
} lm_gen;

/* bptt_checkarg for up to 3 sizes */
static bptt_tensor *gen_arg(lua_State *L, int idx, const char *fn, const char *name, int dt, int opt, int ndim,
                            int64_t a, int64_t b, int64_t c) {
  const int64_t sz[3] = { a, b, c };
  return bptt_checkarg(L, idx, fn, name, dt, opt, ndim, sz);
}

/* the layers' tensors of list idx (a table of nl), element k into w[4 k + j] */
static void gen_list(lua_State *L, lm_gen *g, int idx, const char *fn, const char *name, int j, int64_t G) {
  int k;
  if (j >= 2 && lua_isnoneornil(L, idx)) return;
  if (!lua_istable(L, idx)) luaL_error(L, "%s: %s must be a table of %d tensors", fn, name, g->nl);
  for (k = 0; k < g->nl; k++) {
    lua_rawgeti(L, idx, k + 1);
    g->w[4 * k + j] = j < 2 ? gen_arg(L, -1, fn, name, g->dt, 0, 2, G * g->H, j == 0 && k == 0 ? g->E : g->H, 0)
                            : gen_arg(L, -1, fn, name, g->dt, 0, 1, G * g->H, 0, 0);
    lua_pop(L, 1);
  }
}

static int l_lm_generator(lua_State *L) {
  const char *fn = "bptt.core.lm_generator";
  int cell, nl, dt, k, j, G;
  bptt_tensor *emb, *wh, *h0, *c0;
  bptt_rnn_dims d;
  int64_t cn, reals, sbytes, es, LH;
  lm_gen *g;
  cell = bptt_cell_from_name(luaL_checkstring(L, 1));
  if (cell < 0) luaL_error(L, "%s: unknown cell \"%s\"", fn, lua_tostring(L, 1));
  G = bptt_cell_gates((bptt_cell)cell);
  emb = bptt_checktensor(L, 2, fn, "emb");
  if (!lua_istable(L, 3) || !lua_istable(L, 4)) luaL_error(L, "%s: w_ih and w_hh must be tables of tensors", fn);
  nl = (int)bptt_rawlen(L, 3);
  if (nl < 1 || (int)bptt_rawlen(L, 4) != nl) luaL_error(L, "%s: w_ih and w_hh must hold one tensor per layer", fn);
  lua_rawgeti(L, 4, 1);
  wh = bptt_checktensor(L, -1, fn, "w_hh");
  lua_pop(L, 1);
  dt = emb->dtype;
  if ((dt != BPTT_FLOAT32 && dt != BPTT_FLOAT64) || emb->ndim != 2 || wh->ndim != 2)
    luaL_error(L, "%s: emb must be a float V x E tensor and w_hh G*H x H", fn);
  g = lua_newuserdata(L, sizeof *g + 4 * (size_t)nl * sizeof(bptt_tensor *));
  memset(g, 0, sizeof *g + 4 * (size_t)nl * sizeof(bptt_tensor *));
  luaL_getmetatable(L, GEN_MT);
  lua_setmetatable(L, -2);
  g->dt = dt, g->cell = cell, g->nl = nl;
  g->V = emb->size[0], g->E = emb->size[1], g->H = wh->size[1];
  g->emb = gen_arg(L, 2, fn, "emb", dt, 0, 2, g->V, g->E, 0);
  gen_list(L, g, 3, fn, "w_ih", 0, G);
  gen_list(L, g, 4, fn, "w_hh", 1, G);
  gen_list(L, g, 5, fn, "b_ih", 2, G);
  gen_list(L, g, 6, fn, "b_hh", 3, G);
  for (k = 0; k < nl; k++)
    if ((g->w[4 * k + 2] == NULL) != (g->w[4 * k + 3] == NULL))
      luaL_error(L, "%s: b_ih and b_hh must both be given or both be nil", fn);
  g->dec_w = gen_arg(L, 7, fn, "dec_w", dt, 0, 2, g->V, g->H, 0);
  g->dec_b = gen_arg(L, 8, fn, "dec_b", dt, 1, 1, g->V, 0, 0);
  g->logits = gen_arg(L, 9, fn, "logits", dt, 0, 1, g->V, 0, 0);
  sample_opts(L, 10, fn, &g->o);
  h0 = gen_arg(L, 11, fn, "h0", dt, 1, 3, nl, 1, g->H);
  c0 = cell == BPTT_CELL_LSTM ? gen_arg(L, 12, fn, "c0", dt, 1, 3, nl, 1, g->H) : NULL;
  if (cell == BPTT_CELL_LSTM && (h0 == NULL) != (c0 == NULL))
    luaL_error(L, "%s: h0 and c0 must both be given or both be nil", fn);
  /* the cache of one step is the largest layer's (they differ only by D) */
  d.cell = (bptt_cell)cell, d.T = 1, d.B = 1, d.D = g->E > g->H ? g->E : g->H, d.H = g->H;
  if (bptt_rnn_cache_numel(&d, &cn) != BPTT_OK) luaL_error(L, "%s: the sizes are too large", fn);
  g->ep = (g->E + 15) / 16 * 16, g->hp = (g->H + 15) / 16 * 16;
  es = dt == BPTT_FLOAT32 ? 4 : 8, LH = (int64_t)nl * g->hp;
  g->cn = cn;
  reals = g->ep + 5 * LH + (cn + 15) / 16 * 16; /* bptt_sample's doubles start aligned */
  sbytes = (int64_t)bptt_sample_work_bytes(g->V);
  g->buf = bptt_malloc((size_t)(reals * es + sbytes));
  if (g->buf == NULL) luaL_error(L, "%s: out of memory", fn);
  g->swork = (double *)(void *)((char *)g->buf + reals * es);
  if (h0) { /* into set 0 */
    char *st = (char *)g->buf + (g->ep + LH) * es;
    for (k = 0; k < nl; k++) {
      memcpy(st + k * g->hp * es, (char *)bptt_tensor_data(h0) + k * g->H * es, (size_t)(g->H * es));
      if (c0) memcpy(st + (LH + k * g->hp) * es, (char *)bptt_tensor_data(c0) + k * g->H * es, (size_t)(g->H * es));
    }
    g->have_state = 1;
  }
  /* the environment keeps every tensor alive as long as gen */
  lua_createtable(L, 9, 0);
  for (j = 2; j <= 9; j++) {
    lua_pushvalue(L, j);
    lua_rawseti(L, -2, j);
  }
  lua_setfenv(L, -2);
  return 1;
}

static void *gen_data(lua_State *L, const bptt_tensor *t) {
  if (t == NULL) return NULL;
  if (t->storage == NULL)
    luaL_error(L, "bptt.LanguageModel:sample: a tensor of the model was freed (t:free()) while sampling");
  return bptt_tensor_data(t);
}

static int gen_next(lua_State *L) {
  const char *fn = "bptt.LanguageModel:sample";
  lm_gen *g = luaL_checkudata(L, 1, GEN_MT);
  const int32_t id = (int32_t)bptt_checkint(L, 2, fn, "id", 1, g->V);
  const int64_t es = g->dt == BPTT_FLOAT32 ? 4 : 8, H = g->H, hp = g->hp, LH = (int64_t)g->nl * hp;
  const int lstm = g->cell == BPTT_CELL_LSTM;
  char *x = g->buf, *y = x + g->ep * es, *st = y + LH * es, *cache = st + 4 * LH * es;
  /* state set s: h at st + 2 s LH, c after it */
  char *hin = st + 2 * g->cur * LH * es, *hout = st + 2 * (1 - g->cur) * LH * es;
  bptt_rnn_dims d;
  bptt_rnn_opts o;
  int64_t bad = 0, next = 0;
  int k, err;
  memset(&o, 0, sizeof o);
  err = g->dt == BPTT_FLOAT32 ? bptt_embedding_forward_f32(&id, gen_data(L, g->emb), (float *)x, 1, g->V, g->E, &bad)
                              : bptt_embedding_forward_f64(&id, gen_data(L, g->emb), (double *)x, 1, g->V, g->E, &bad);
  for (k = 0; !err && k < g->nl; k++) {
    const void *in = k ? y + (k - 1) * hp * es : x;
    const void *h0 = g->have_state ? hin + k * hp * es : NULL;
    const void *c0 = g->have_state && lstm ? hin + (LH + k * hp) * es : NULL;
    void *yk = y + k * hp * es, *hT = hout + k * hp * es, *cT = lstm ? hout + (LH + k * hp) * es : NULL;
    bptt_tensor **w = g->w + 4 * k;
    d.cell = (bptt_cell)g->cell, d.T = 1, d.B = 1, d.D = k ? H : g->E, d.H = H;
    if (g->dt == BPTT_FLOAT32)
      err = bptt_rnn_forward_ex_f32(&d, &o, gen_data(L, w[0]), gen_data(L, w[1]), gen_data(L, w[2]), gen_data(L, w[3]),
                                    in, h0, c0, yk, hT, cT, g->cn ? (float *)cache : NULL, NULL);
    else
      err = bptt_rnn_forward_ex_f64(&d, &o, gen_data(L, w[0]), gen_data(L, w[1]), gen_data(L, w[2]), gen_data(L, w[3]),
                                    in, h0, c0, yk, hT, cT, g->cn ? (double *)cache : NULL, NULL);
  }
  if (!err) {
    const void *yl = y + (LH - hp) * es;
    err = g->dt == BPTT_FLOAT32 ? bptt_linear_forward_f32(yl, gen_data(L, g->dec_w), gen_data(L, g->dec_b),
                                                          gen_data(L, g->logits), 1, H, g->V)
                                : bptt_linear_forward_f64(yl, gen_data(L, g->dec_w), gen_data(L, g->dec_b),
                                                          gen_data(L, g->logits), 1, H, g->V);
  }
  if (err) luaL_error(L, "%s: %s", fn, bptt_strerror(err));
  g->cur = 1 - g->cur, g->have_state = 1;
  err = bptt_sample(g->logits, &g->o, bptt_default_rng(L), g->swork, &next);
  if (err == BPTT_ERANGE) luaL_error(L, "%s: every logit is -inf: there is no distribution to sample from", fn);
  if (err) luaL_error(L, "%s: the logits contain NaN: there is no distribution to sample from", fn);
  lua_pushnumber(L, (lua_Number)(next + 1));
  return 1;
}

static int gen_gc(lua_State *L) {
  lm_gen *g = luaL_checkudata(L, 1, GEN_MT);
  bptt_free(g->buf);
  g->buf = NULL;
  return 0;
}

static const luaL_Reg functions[] = {
  { "sample", l_sample }, { "log_prob", l_log_prob }, { "lm_generator", l_lm_generator }, { NULL, NULL }
};

void bptt_open_sample(lua_State *L) {
  if (luaL_newmetatable(L, GEN_MT)) {
    lua_pushcfunction(L, gen_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushcfunction(L, gen_next);
    lua_setfield(L, -2, "next");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  bptt_setfuncs(L, functions, 0);
}
