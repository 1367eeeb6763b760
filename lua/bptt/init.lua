--- bptt: recurrent neural networks for LuaJIT.
-- `local bptt = require "bptt"` gives one table: the native tensor core
-- (functions of bptt.core, copied in) and the Lua layers built on it.
local core = require "bptt.core"

local bptt = {}
-- the public part of the core; its layer kernels stay in bptt.core
local PUBLIC = {
  "tensor", "zeros", "ones", "randn", "rand", "matmul", "is_tensor", "Tensor",
  "manual_seed", "rng_state", "set_rng_state", "random",
  "set_num_threads", "num_threads", "blas_config", "cpu_config", "clock",
  "save", "load", "sample", "log_prob",
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
bptt.gradcheck = require "bptt.gradcheck"
bptt.Model = require "bptt.Model"
bptt.Sequential = bptt.Model.Sequential
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

return bptt
