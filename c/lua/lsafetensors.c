/*
 * lio.c -- bptt.save and bptt.load: safetensors files (c/safetensors.c).
 *
 *   bptt.save(path, tensors [, metadata]) -> true | nil, message [, errno]
 *   bptt.load(path [, {require_checksum = true}])
 *     -> tensors, metadata | nil, message [, errno]
 *
 * save adds a checksum of the file under the metadata key "bptt.checksum"
 * (reserved: passing it is an error); load verifies it when the file has one
 * ("checksum mismatch (file corrupt)" otherwise) and leaves it out of the
 * metadata it returns.  Files without one (from other writers) load as ever,
 * unless they carry bptt's marks (safetensors.h: a "bptt." key) or
 * require_checksum is set (checkpoints: Trainer).  save writes through a
 * symbolic link and refuses a target that is not a regular file.
 *
 * As LuaFileSystem: programming mistakes (a non-tensor value, a non-string
 * name) raise errors; failures of the outside world (a directory that is not
 * there, a missing or corrupt file) return nil and a message, and the OS
 * error number third when an OS call failed (ENOENT, ENOSPC, EACCES, ...).
 *
 * Memory: nothing here holds malloc'd memory across a call that can raise.
 * save keeps its item list in a userdata and calls the core only once every
 * argument is checked; load keeps the open file and its parsed header in a
 * userdata whose __gc closes it, so a Lua error (out of memory making a
 * tensor) in the middle of a load leaks nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lbptt.h"
#include "safetensors.h"
#include "utf8.h"

#define READER_MT "bptt.safetensors.reader"
#define MSGLEN 512

static const char *checkpath(lua_State *L, const char *fn) {
  size_t len;
  const char *path;
  if (lua_type(L, 1) != LUA_TSTRING) luaL_error(L, "%s: path must be a string, got %s", fn, luaL_typename(L, 1));
  path = lua_tolstring(L, 1, &len);
  if (strlen(path) != len) luaL_error(L, "%s: path must not contain a zero byte", fn);
  return path;
}

/* Checks (fill == NULL) or collects the name -> tensor pairs of the table at
 * 2; returns their number. */
static size_t tensor_items(lua_State *L, const char *fn, bptt_st_item *fill) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    bptt_tensor *t;
    size_t len;
    const char *name;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: tensors must map string names to tensors, got a %s key", fn, luaL_typename(L, -2));
    name = lua_tolstring(L, -2, &len);
    t = bptt_totensor(L, -1);
    if (t == NULL) luaL_error(L, "%s: tensors[\"%s\"] must be a tensor, got %s", fn, name, luaL_typename(L, -1));
    if (t->storage == NULL) luaL_error(L, "%s: tensors[\"%s\"] was freed (t:free()) and cannot be saved", fn, name);
    if (len == 12 && memcmp(name, "__metadata__", 12) == 0)
      luaL_error(L, "%s: \"__metadata__\" is reserved for the metadata and cannot name a tensor", fn);
    if (!bptt_utf8_valid(name, len)) luaL_error(L, "%s: tensor name \"%s\" is not valid UTF-8", fn, name);
    if (fill) fill[n].name = name, fill[n].name_len = len, fill[n].t = t;
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* The same for the string -> string pairs of the metadata table at 3. */
static size_t meta_pairs(lua_State *L, const char *fn, bptt_st_pair *fill) {
  size_t n = 0;
  if (lua_isnil(L, 3)) return 0;
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    size_t klen, vlen;
    const char *k, *v;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: metadata must map strings to strings, got a %s key", fn, luaL_typename(L, -2));
    k = lua_tolstring(L, -2, &klen);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: metadata[\"%s\"] must be a string, got %s", fn, k, luaL_typename(L, -1));
    v = lua_tolstring(L, -1, &vlen);
    if (!bptt_utf8_valid(k, klen)) luaL_error(L, "%s: metadata key \"%s\" is not valid UTF-8", fn, k);
    if (!bptt_utf8_valid(v, vlen)) luaL_error(L, "%s: metadata[\"%s\"] is not valid UTF-8", fn, k);
    if (klen == sizeof BPTT_ST_CHECKSUM_KEY - 1 && memcmp(k, BPTT_ST_CHECKSUM_KEY, klen) == 0)
      luaL_error(L, "%s: metadata key \"%s\" is reserved (save writes the checksum there)", fn, k);
    if (fill) fill[n].key = k, fill[n].key_len = klen, fill[n].value = v, fill[n].value_len = vlen;
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* nil, "fn: path: msg"[, errno] */
static int push_failure(lua_State *L, const char *fn, const char *path, const char *msg, int e) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s: %s", fn, path, msg);
  if (e == 0) return 2;
  lua_pushinteger(L, e);
  return 3;
}

static int l_save(lua_State *L) {
  const char *fn = "bptt.save";
  const char *path = checkpath(L, fn);
  bptt_st_item *items;
  bptt_st_pair *meta;
  size_t n, nmeta;
  char msg[MSGLEN];
  int err;
  if (lua_type(L, 2) != LUA_TTABLE)
    luaL_error(L, "%s: tensors must be a table of name -> tensor, got %s", fn, luaL_typename(L, 2));
  if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TTABLE)
    luaL_error(L, "%s: metadata must be a table of string -> string, got %s", fn, luaL_typename(L, 3));
  lua_settop(L, 3);
  n = tensor_items(L, fn, NULL);
  nmeta = meta_pairs(L, fn, NULL);
  /* the lists live in userdata (4 and 5); the tables at 2 and 3 keep the
   * names and tensors alive, and no Lua code runs until the core returns */
  items = lua_newuserdata(L, (n ? n : 1) * sizeof *items);
  meta = lua_newuserdata(L, (nmeta ? nmeta : 1) * sizeof *meta);
  tensor_items(L, fn, items);
  meta_pairs(L, fn, meta);
  err = bptt_st_save(path, items, n, meta, nmeta, msg, sizeof msg);
  if (err == BPTT_EARG) luaL_error(L, "%s: %s", fn, msg); /* checked above; not reached */
  if (err) return push_failure(L, fn, path, msg, err == BPTT_EIO ? errno : 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int reader_gc(lua_State *L) {
  bptt_st_reader *r = lua_touserdata(L, 1);
  if (r != NULL) bptt_st_close(r);
  return 0;
}

static int l_load(lua_State *L) {
  const char *fn = "bptt.load";
  const char *path = checkpath(L, fn);
  bptt_st_reader *r;
  char msg[MSGLEN];
  size_t i;
  int err, require_sum = 0, oserr = 0;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TTABLE) luaL_error(L, "%s: opts must be a table, got %s", fn, luaL_typename(L, 2));
    lua_getfield(L, 2, "require_checksum");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
      luaL_error(L, "%s: opts.require_checksum must be a boolean, got %s", fn, luaL_typename(L, -1));
    require_sum = lua_toboolean(L, -1);
  }
  lua_settop(L, 1);
  r = lua_newuserdata(L, sizeof *r); /* 2 */
  bptt_st_reader_init(r);
  luaL_getmetatable(L, READER_MT);
  lua_setmetatable(L, -2);
  err = bptt_st_open(r, path, msg, sizeof msg);
  if (!err && require_sum && !r->has_checksum) {
    err = BPTT_EFORMAT;
    snprintf(msg, sizeof msg, "no checksum (\"%s\"), which this file must carry (file corrupt or not bptt's)",
             BPTT_ST_CHECKSUM_KEY);
  }
  if (!err) err = bptt_st_verify(r, msg, sizeof msg);
  if (err) goto failed;
  lua_createtable(L, 0, (int)(r->ntensors < 1000000 ? r->ntensors : 1000000)); /* 3: tensors */
  for (i = 0; i < r->ntensors; i++) {
    const bptt_st_info *e = &r->tensors[i];
    bptt_tensor *t;
    lua_pushlstring(L, e->name, e->name_len);
    t = bptt_newtensor(L, fn, e->dtype, e->ndim, e->size); /* bytes checked against the file size */
    if ((err = bptt_st_read(r, i, t, msg, sizeof msg))) goto failed;
    lua_rawset(L, 3);
  }
  lua_createtable(L, 0, (int)(r->nmeta < 1000000 ? r->nmeta : 1000000)); /* 4: metadata */
  for (i = 0; i < r->nmeta; i++) {
    lua_pushlstring(L, r->meta[i].key, r->meta[i].key_len);
    lua_pushlstring(L, r->meta[i].value, r->meta[i].value_len);
    lua_rawset(L, 4);
  }
  bptt_st_close(r); /* now rather than at the next collection */
  return 2;

failed: /* nothing partial: the tables made so far are dropped */
  if (err == BPTT_EIO) oserr = errno;
  bptt_st_close(r);
  return push_failure(L, fn, path, msg, oserr);
}

static const luaL_Reg functions[] = { { "save", l_save }, { "load", l_load }, { NULL, NULL } };

void bptt_open_io(lua_State *L) {
  if (luaL_newmetatable(L, READER_MT)) {
    lua_pushcfunction(L, reader_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  bptt_setfuncs(L, functions, 0);
}
