-- LuaRocks build of bptt: `luarocks --lua-version=5.1 make rockspec/bptt-scm-1.rockspec`
-- LuaJIT speaks the Lua 5.1 C API; the module builds against Debian's plain
-- 5.1 headers (liblua5.1-0-dev) and loads in LuaJIT.
rockspec_format = "3.0"
package = "bptt"
version = "scm-1"

source = {
  url = "git+file:///dev/null", -- `luarocks make` builds the checkout it is run in
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
  type = "builtin",
  modules = {
    ["bptt.core"] = {
      sources = {
        "c/core.c", "c/tensor.c", "c/rng.c", "c/nn.c", "c/rnn.c",
        "c/lbptt.c", "c/ltensor.c", "c/lrng.c",
      },
      libraries = { "openblas", "m" },
      libdirs = { "$(OPENBLAS_LIBDIR)" },
      incdirs = { "c" },
    },
    ["bptt"] = "lua/bptt/init.lua",
  },
}
