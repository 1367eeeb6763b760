--- bptt: recurrent neural networks for LuaJIT.
-- `local bptt = require "bptt"` gives one table: the native tensor core
-- (functions of bptt.core, copied in) and the Lua layers built on it.
-- OpenBLAS (loaded with bptt.core) starts a pool of threads as it loads
-- unless OPENBLAS_NUM_THREADS is 1, and a pool thread that cannot map its
-- work buffer (ulimit -v) spins forever, hanging the load and the exit.
-- bptt runs OpenBLAS on one thread anyway (its own team splits the work), so
-- it asks for 1 while the module loads and hands the user's setting on to
-- size the team (c/lua/lbptt.c); the environment is put back after.
local function load_core()
  local has_ffi, ffi = pcall(require, "ffi")
  if not has_ffi or package.loaded["bptt.core"] then return require "bptt.core" end
  pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite); int unsetenv(const char *name);")
  local user = os.getenv("OPENBLAS_NUM_THREADS")
  ffi.C.setenv("BPTT_OPENBLAS_NUM_THREADS", user or "", 1)
  ffi.C.setenv("OPENBLAS_NUM_THREADS", "1", 1)
  local ok, core = pcall(require, "bptt.core")
  if user then ffi.C.setenv("OPENBLAS_NUM_THREADS", user, 1) else ffi.C.unsetenv("OPENBLAS_NUM_THREADS") end
  ffi.C.unsetenv("BPTT_OPENBLAS_NUM_THREADS")
  if not ok then error(core, 0) end
  return core
end
local core = load_core()

local bptt = {}
-- the public part of the core; its layer kernels stay in bptt.core
local PUBLIC = {
  "tensor", "zeros", "ones", "randn", "rand", "matmul", "is_tensor", "Tensor",
  "manual_seed", "rng_state", "set_rng_state", "random",
  "set_num_threads", "num_threads", "blas_config", "cpu_config", "clock",
  "machine_peak", "read_bandwidth", -- diagnostics for benchmarks (c/core/peak.h)
  "save", "load", "sample", "log_prob",
  -- tensor operations (c/lua/ltensor_math.c, ltensor_index.c)
  "cmul", "exp", "log", "tanh", "sigmoid", "sqrt", "relu", "abs", "sign",
  "eq", "ne", "lt", "le", "gt", "ge", "info", "cat", "stack", "arange", "linspace",
}
for _, k in ipairs(PUBLIC) do
  assert(core[k] ~= nil, "bptt.core lacks " .. k)
  bptt[k] = core[k]
end
bptt.core = core
bptt.version = "scm"

bptt.Module = require "bptt.Module"
bptt.RNN = require "bptt.RNN"
bptt.Linear = require "bptt.Linear"
bptt.Embedding = require "bptt.Embedding"
bptt.CrossEntropy = require "bptt.CrossEntropy"
bptt.MSE = require "bptt.MSE"
local layers = require "bptt.layers"
for _, k in ipairs { "Tanh", "Sigmoid", "ReLU", "Identity", "Softmax", "LogSoftmax", "Dropout", "Select", "Mean" } do
  bptt[k] = layers[k]
end
bptt.LayerNorm = require "bptt.LayerNorm"
bptt.gradcheck = require "bptt.gradcheck"
bptt.Model = require "bptt.Model"
bptt.Sequential = bptt.Model.Sequential
local concat = require "bptt.Concat"
bptt.Concat, bptt.Parallel = concat.Concat, concat.Parallel
bptt.LanguageModel = require "bptt.LanguageModel"
bptt.optim = require "bptt.optim"
bptt.schedule = require "bptt.schedule"
local clip = require "bptt.clip"
bptt.clip_grad_norm = clip.clip_grad_norm
bptt.clip_grad_value = clip.clip_grad_value
bptt.data = require "bptt.data"
bptt.Trainer = require "bptt.Trainer"
bptt.plot = require "bptt.plot"
bptt.progress = require "bptt.progress"
bptt.jacobian_norms = require("bptt.jacobian").jacobian_norms
bptt.plot.flow = require("bptt.flowplot").flow
bptt.plot.reach = require("bptt.flowplot").reach

return bptt
