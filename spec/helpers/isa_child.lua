-- The computation of spec/isa_spec.lua, run in a child process of its own
-- (BPTT_ISA is read when the module loads), from the top of the repository
-- with LUA_PATH/LUA_CPATH set:
--
--   BPTT_ISA=<isa> luajit spec/helpers/isa_child.lua <out.safetensors> packed|blas
--       prints "isa=<in use> cpu=<the CPU's best> packed=<true|false>" and
--       saves every result under a name of its own
--
-- Every cell, float32 and float64: an RNN's forward and backward (partial
-- 8-row tiles and 16-column panels for the packed kernel), then a char-LM
-- training step (Embedding, LSTM, Linear, cross-entropy, clip, Adam), then
-- the tensor operations (broadcasting, pointwise math, reductions, sort).
-- "blas" switches the packed kernel off first.
local bptt = require "bptt"

local out, mode = arg[1], arg[2]
assert(out and (mode == "packed" or mode == "blas"), "usage: isa_child.lua <out> packed|blas")
if mode == "blas" then bptt.core.packed_gemm(false) end
local cfg = bptt.cpu_config()
print(string.format("isa=%s cpu=%s packed=%s", cfg.isa, cfg.cpu, tostring(cfg.packed_gemm)))

local results = {}
for _, dtype in ipairs({ "float32", "float64" }) do
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    bptt.manual_seed(11)
    local m = bptt.RNN{ cell = cell, input = 13, hidden = 20, layers = 2, dtype = dtype }
    local x = bptt.randn(6, 9, 13, dtype)
    local key = cell .. "." .. dtype .. "."
    local y = m:forward(x)
    results[key .. "y"] = y:clone()
    results[key .. "dx"] = m:backward(bptt.randn(6, 9, 20, dtype)):clone()
    for name, g in pairs(select(2, m:parameters())) do results[key .. "d" .. name] = g:clone() end
  end

  bptt.manual_seed(12)
  local lm = bptt.LanguageModel{ vocab = 11, embed = 8, cell = "lstm", hidden = 24, layers = 2, dtype = dtype }
  local opt = bptt.optim.adam(lm, { lr = 1e-2 })
  local ce = bptt.CrossEntropy()
  local ids = bptt.zeros(7, 5, "int32")
  local targets = bptt.zeros(7, 5, "int32")
  for t = 1, 7 do
    for b = 1, 5 do
      ids:set(t, b, bptt.random(11))
      targets:set(t, b, bptt.random(11))
    end
  end
  for step = 1, 2 do
    opt:zero_grad()
    local loss = ce:forward(lm:forward(ids), targets)
    lm:backward(ce:backward())
    local norm = bptt.clip_grad_norm(lm, 0.5)
    opt:step()
    results["lm." .. dtype .. ".loss" .. step] = bptt.tensor({ loss }, "float64")
    results["lm." .. dtype .. ".norm" .. step] = bptt.tensor({ norm }, "float64")
  end
  results["lm." .. dtype .. ".parameters"] = lm:flat_parameters():clone()

  -- the tensor operations (tensor_math.c, tensor_index.c) and a LayerNorm
  bptt.manual_seed(13)
  local a, b = bptt.randn(70, 33, dtype), bptt.randn(33, dtype)
  local ops = {
    broadcast = (a + b) * b / (bptt.abs(b) + 1), tanh = bptt.tanh(a), sigmoid = bptt.sigmoid(a), exp = bptt.exp(a),
    softmax = a:softmax(1), log_softmax = a:log_softmax(2), logsumexp = a:logsumexp(2), sum = a:sum(1),
    norm = a:norm(2), sort = (a:sort(2)), layernorm = bptt.LayerNorm{ dim = 33, dtype = dtype }:forward(a),
  }
  for k, v in pairs(ops) do results["ops." .. dtype .. "." .. k] = v:clone() end
end
assert(bptt.save(out, results))
