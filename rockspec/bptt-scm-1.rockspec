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
        -- the core (no Lua headers)
        "c/core.c", "c/crc32.c", "c/gemm.c", "c/nn.c", "c/optim.c", "c/packed.c", "c/parallel.c", "c/rng.c",
        "c/rnn.c",
        "c/safetensors.c", "c/sample.c",
        "c/tensor.c", "c/text.c",
        -- the Lua binding
        "c/lbptt.c", "c/lio.c", "c/lnn.c", "c/loptim.c", "c/lrng.c", "c/lsample.c", "c/ltensor.c",
        "c/ltext.c",
      },
      libraries = { "openblas", "m" },
      libdirs = { "$(OPENBLAS_LIBDIR)" },
      incdirs = { "c" },
    },
    ["bptt.CrossEntropy"] = "lua/bptt/CrossEntropy.lua",
    ["bptt.Embedding"] = "lua/bptt/Embedding.lua",
    ["bptt.LanguageModel"] = "lua/bptt/LanguageModel.lua",
    ["bptt.Linear"] = "lua/bptt/Linear.lua",
    ["bptt.MSE"] = "lua/bptt/MSE.lua",
    ["bptt.Model"] = "lua/bptt/Model.lua",
    ["bptt.Module"] = "lua/bptt/Module.lua",
    ["bptt.RNN"] = "lua/bptt/RNN.lua",
    ["bptt.Trainer"] = "lua/bptt/Trainer.lua",
    ["bptt.clip"] = "lua/bptt/clip.lua",
    ["bptt.data"] = "lua/bptt/data.lua",
    ["bptt.gradcheck"] = "lua/bptt/gradcheck.lua",
    ["bptt"] = "lua/bptt/init.lua",
    ["bptt.optim"] = "lua/bptt/optim.lua",
    ["bptt.plot"] = "lua/bptt/plot.lua",
    ["bptt.progress"] = "lua/bptt/progress.lua",
    ["bptt.schedule"] = "lua/bptt/schedule.lua",
    ["bptt.util"] = "lua/bptt/util.lua",
  },
}
