/*
 * compat.h -- the few Lua C API pieces that differ between plain Lua 5.1
 * headers (what Debian's LuaRocks compiles against) and LuaJIT 2.1's.  Written
 * once here so that the binding uses a single spelling for each.
 */
#ifndef BPTT_COMPAT_H
#define BPTT_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

/* luaL_setfuncs: registers l into the table on top of the stack below nup
 * upvalues, which every function gets.  LuaJIT has it, plain 5.1 does not. */
static inline void bptt_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

/* luaL_testudata: the userdata at idx if its metatable is tname's, else NULL. */
static inline void *bptt_testudata(lua_State *L, int idx, const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}

#define bptt_rawlen(L, i) lua_objlen(L, i)

#endif
