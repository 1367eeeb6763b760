-- The rock of bptt.  It runs the Makefile (LuaRocks' make backend), the one
-- build definition: the same sources and numerics flags as `make`, with
-- LuaRocks' compiler, CFLAGS, Lua headers and install directories passed in.
--   luarocks --lua-version=5.1 make rockspec/bptt-scm-1.rockspec       (from a checkout)
--   make rock; luarocks --lua-version=5.1 install --only-server=/path/to/dist bptt   (offline)
-- LuaJIT speaks the Lua 5.1 C API; the module builds against Debian's plain
-- 5.1 headers (liblua5.1-0-dev) and loads in LuaJIT.
rockspec_format = "3.0"
package = "bptt"
version = "scm-1"

source = {
  -- `luarocks make` builds the checkout it is run in; `make rock` packs the
  -- sources into dist/bptt-scm-1.src.rock, where this url names the archive
  url = "bptt-scm-1.tar.gz",
  dir = "bptt",
}

description = {
  summary = "Recurrent neural networks for LuaJIT: tensors, RNN/LSTM/GRU layers and exact BPTT in C over OpenBLAS",
  detailed = [[
bptt holds tensors in C memory and runs recurrent networks forward and back
through time in native code over OpenBLAS; models, datasets and training
schedules are plain Lua scripts.]],
  license = "MIT",
  labels = { "neural-networks", "rnn", "lstm", "gru", "luajit", "blas" },
}

dependencies = {
  "lua >= 5.1, < 5.2",
}

-- Debian keeps cblas.h under /usr/include/x86_64-linux-gnu, which the
-- compiler searches by itself but LuaRocks 3.8 does not: declare the library
-- only, not the header.
external_dependencies = {
  OPENBLAS = { library = "openblas" },
}

build = {
  type = "make",
  -- the same variables for the build and the install pass (the Makefile
  -- rebuilds when its compiler line changes); products go to build/rock,
  -- apart from a `make` build's build/
  variables = {
    CC = "$(CC)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    OPENBLAS_LIBDIR = "$(OPENBLAS_LIBDIR)",
    WERROR = "",
    BUILD = "build/rock",
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
