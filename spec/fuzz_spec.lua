-- API fuzzing: thousands of seeded random calls over every public entry point,
-- with valid arguments and with wrong types, shapes, sizes, NaN/Inf, freed
-- tensors, views of views, a foreign or missing self, calls out of order.
-- Each call works (and its result is checked where that is cheap) or raises a
-- Lua error whose message names the function; the process never crashes.
--
--   BPTT_FUZZ_ITERS=20000 make test       more calls (default 4000)
--   BPTT_FUZZ_SEED=123 make test          another seed (printed on failure)
local bptt = require "bptt"
local F = require "helpers.fuzz"

local SEED = tonumber(os.getenv("BPTT_FUZZ_SEED") or "") or 20240917
local ITERS = tonumber(os.getenv("BPTT_FUZZ_ITERS") or "") or 4000
local TRACE = os.getenv("BPTT_FUZZ_TRACE") ~= nil -- each call on stderr before it is made

local pick, chance, pack, rnd = F.pick, F.chance, F.pack, math.random
local unpack = unpack or table.unpack -- luacheck: ignore

local TMP = os.tmpname() -- a file; paths below are TMP .. suffix
local function tmp(suffix) return TMP .. suffix end

local function mt(name) return getmetatable(bptt.zeros(1))[name] end
local T = bptt.Tensor -- the tensor methods

------------------------------------------------------------------ objects

local CELLS = { "tanh", "relu", "lstm", "gru" }

local function rnn(dtype)
  return bptt.RNN{ cell = pick(CELLS), input = rnd(1, 3), hidden = rnd(1, 3), layers = rnd(1, 2), bias = chance(0.8),
    dropout = pick { 0, 0, 0.25 }, dtype = dtype or pick(F.FLOATS) }
end
local function linear(dtype)
  return bptt.Linear{ input = rnd(1, 3), output = rnd(1, 3), bias = chance(0.8), dtype = dtype or pick(F.FLOATS) }
end
local function embedding(dtype)
  return bptt.Embedding{ vocab = rnd(1, 5), dim = rnd(1, 3), dtype = dtype or pick(F.FLOATS) }
end
local function lm(dtype)
  return bptt.LanguageModel{ vocab = rnd(2, 6), hidden = rnd(1, 4), embed = rnd(1, 3), cell = pick(CELLS),
    layers = rnd(1, 2), dropout = pick { 0, 0.2 }, dtype = dtype or pick(F.FLOATS) }
end
local function sequential()
  local dt = pick(F.FLOATS)
  local a = linear(dt)
  return bptt.Sequential{ a, bptt.Linear{ input = a.output_size, output = rnd(1, 3), dtype = dt } }
end
local function model()
  local k = rnd(5)
  if k == 1 then return rnn() elseif k == 2 then return linear() elseif k == 3 then return embedding()
  elseif k == 4 then return lm() end
  return sequential()
end
local OPTIMS = { "sgd", "adam", "adamw", "adagrad", "rmsprop" }
local function optimizer(m)
  return bptt.optim[pick(OPTIMS)](m or model(), { lr = pick { 0.1, 1e-3 } })
end
local function corpus() return bptt.data.text{ text = pick { "hello world", "abcabcabd", "ünïcödé text ✓" } } end
local function vocab() return corpus().vocab end
local function batches()
  local c = bptt.data.text{ text = string.rep("the quick brown fox ", rnd(2, 4)) }
  return bptt.data.Batches(c.tokens, { batch = rnd(1, 3), seq = rnd(1, 4), shuffle = chance(0.3) })
end

--- Any object of the library, for a foreign self or a wrong argument.
local function object()
  local k = rnd(8)
  if k == 1 then return model() elseif k == 2 then return bptt.CrossEntropy{} elseif k == 3 then return bptt.MSE{}
  elseif k == 4 then return optimizer() elseif k == 5 then return vocab() elseif k == 6 then return batches()
  elseif k == 7 then return bptt.schedule.exponential(optimizer(), { gamma = 0.5 }) end
  return F.tensor()
end

-- the input of a layer's forward, valid
local function forward_input(m, T_, B_)
  local steps, B = T_ or rnd(1, 3), B_ or rnd(1, 3)
  if m.__name == "bptt.RNN" then return F.viewed({ steps, B, m.input }, m.dtype) end
  if m.__name == "bptt.Linear" then
    local s = {}
    for i = 1, rnd(0, 2) do s[i] = rnd(1, 3) end
    s[#s + 1] = m.input
    return F.viewed(s, m.dtype)
  end
  if m.__name == "bptt.Embedding" or m.__name == "bptt.LanguageModel" then
    local V = m.vocab or m.config.vocab
    local ids = {}
    for j = 1, B do
      ids[j] = {}
      for i = 1, steps do ids[j][i] = rnd(1, V) end
    end
    return bptt.tensor(ids, pick { "int32", "int32", m.dtype }):t() -- T x B, strided
  end
  if m.__name == "bptt.Sequential" then return F.viewed({ rnd(1, 3), m:children()[1].module.input }, m.dtype) end
  if m.__name == "bptt.LayerNorm" then return F.viewed({ rnd(1, 3), m.dim }, m.dtype) end
  if m.__name == "bptt.Concat" then return F.viewed({ rnd(1, 3), rnd(1, 3) }, m:children()[1].module.dtype) end
  if m.dtype then return F.viewed({ steps, B, rnd(1, 3) }, m.dtype) end -- the small layers
end

local function forwarded(m)
  local x = forward_input(m)
  local y = m:forward(x)
  return m, x, y
end

-- a gradient of the shape of t
local function like(t, dtype) return F.viewed(t:shape(), dtype or t:dtype()) end

------------------------------------------------------------------ checks

local function is_tensor_of(shape, dtype)
  return function(r)
    assert(bptt.is_tensor(r[1]), "result must be a tensor")
    if shape then assert(F.same_shape(r[1], shape), "result has shape " .. table.concat(r[1]:shape(), "x")) end
    if dtype then assert(r[1]:dtype() == dtype, "result has dtype " .. r[1]:dtype()) end
  end
end

local function finite_number(r)
  assert(type(r[1]) == "number" and r[1] == r[1] and math.abs(r[1]) < math.huge, "result must be a finite number")
end

------------------------------------------------------------------ entries

-- Each entry gives the function and valid arguments (and a check of the
-- result of a valid call).  The runner calls it so, or with mutated arguments.
local E = {}
local function entry(name, gen, opts)
  opts = opts or {}
  E[#E + 1] = { name = name, gen = gen, names = opts.names, weight = opts.weight or 1 }
end

-- tensor constructors and library functions
local function rshape()
  local s = {}
  for i = 1, rnd(0, 3) do s[i] = rnd(0, 3) end
  return s
end
for _, c in ipairs { "zeros", "ones", "randn", "rand" } do
  entry("bptt." .. c, function()
    local s, dt = rshape(), (c == "zeros" or c == "ones") and pick(F.DTYPES) or pick(F.FLOATS)
    local args
    if chance(0.5) then
      args = pack(s, dt)
    else
      args = pack(unpack(s))
      if chance(0.5) then args[#s + 1], args.n = dt, #s + 1 end
    end
    local want = (args[args.n] == dt) and dt or "float32"
    return bptt[c], args, is_tensor_of(s, want)
  end)
end
entry("bptt.tensor", function()
  local s = rshape()
  local t = F.tensor(s, "float64")
  local dt = pick(F.DTYPES)
  if dt == "int32" then t:fill(2) end
  local tbl = #s == 0 and t:get() or t:totable()
  local ok_shape = true
  for _, d in ipairs(s) do if d == 0 then ok_shape = false end end -- {} loses inner sizes
  return bptt.tensor, pack(tbl, dt), is_tensor_of(ok_shape and s or nil, dt)
end)
entry("bptt.matmul", function()
  local dt = pick(F.FLOATS)
  local n, k, m = rnd(0, 3), rnd(0, 3), rnd(0, 3)
  local a = chance(0.7) and F.viewed({ n, k }, dt) or F.viewed({ k }, dt)
  local b = chance(0.7) and F.viewed({ k, m }, dt) or F.viewed({ k }, dt)
  local want = {}
  if a:dim() == 2 then want[#want + 1] = n end
  if b:dim() == 2 then want[#want + 1] = m end
  return bptt.matmul, pack(a, b), is_tensor_of(want, dt)
end)
entry("bptt.is_tensor", function() return bptt.is_tensor, pack(F.junk(object)) end)
entry("bptt.manual_seed", function() return bptt.manual_seed, pack(rnd(0, 2 ^ 31)) end)
entry("bptt.rng_state", function() return bptt.rng_state, pack() end)
entry("bptt.set_rng_state", function() return bptt.set_rng_state, pack(bptt.rng_state()) end)
entry("bptt.random", function()
  local n = rnd(1, 100)
  return bptt.random, pack(n), function(r) assert(r[1] >= 1 and r[1] <= n and r[1] % 1 == 0) end
end)
entry("bptt.set_num_threads", function() return bptt.set_num_threads, pack(bptt.num_threads()) end)
entry("bptt.num_threads", function() return bptt.num_threads, pack() end)
entry("bptt.blas_config", function() return bptt.blas_config, pack() end)
entry("bptt.cpu_config", function() return bptt.cpu_config, pack() end)
entry("bptt.clock", function() return bptt.clock, pack() end)
entry("bptt.sample", function()
  local lg = F.viewed({ rnd(1, 5) }, pick(F.FLOATS))
  local opts = { temperature = pick { nil, 0.5, 1, 2 }, top_k = pick { nil, 0, 1, 3 }, top_p = pick { nil, 0.5, 1 },
    greedy = pick { nil, true, false } }
  return bptt.sample, pack(lg, opts), function(r) assert(r[1] >= 1 and r[1] <= lg:numel() and r[1] % 1 == 0) end
end)
entry("bptt.log_prob", function()
  local N, C = rnd(0, 3), rnd(1, 4)
  local tg = bptt.zeros(N, "int32")
  if N > 0 then tg:fill(rnd(1, C)) end
  return bptt.log_prob, pack(F.viewed({ N, C }, pick(F.FLOATS)), tg), function(r)
    is_tensor_of({ N }, "float64")(r)
    assert(F.finite(r[1]) and (N == 0 or r[1]:max() <= 1e-6), "log-probabilities must be finite and <= 0")
  end
end)
entry("bptt.save", function()
  local ts = {}
  for i = 1, rnd(0, 3) do ts["t" .. i] = F.viewed(rshape()) end
  return bptt.save, pack(tmp(".st"), ts, chance(0.5) and { note = "fuzz" } or nil)
end)
entry("bptt.load", function()
  local path = tmp(pick { ".st", ".missing", ".garbage" })
  if path:match("garbage$") then
    local f = assert(io.open(path, "wb"))
    f:write(pick { "", "\8\0\0\0\0\0\0\0{\"a\":1}", string.rep("\255", rnd(1, 40)), "\16\0\0\0\0\0\0\0{}" })
    f:close()
  end
  return bptt.load, pack(path)
end)

-- tensor methods: self is a random tensor, often a view
local function any_tensor(nonempty)
  if chance(0.85) then
    local s = {}
    for i = 1, rnd(0, 3) do s[i] = nonempty and rnd(1, 3) or rnd(0, 3) end
    return F.viewed(s)
  end
  return F.tensor(nil, nil, { nonempty = nonempty })
end
local function index_args(t)
  local idx = {}
  for d = 1, t:dim() do idx[d] = rnd(1, math.max(t:size(d), 1)) end
  return idx
end
local simple = { "shape", "stride", "dim", "numel", "dtype", "is_contiguous", "totable", "pointer", "clone",
  "contiguous", "zero", "sum", "mean", "max", "min", "norm" }
local need_elements = { sum = false, mean = true, max = true, min = true }
for _, m in ipairs(simple) do
  entry("bptt.Tensor:" .. m, function() return T[m], pack(any_tensor(need_elements[m])) end)
end
entry("bptt.Tensor:t", function() return T.t, pack(F.viewed({ rnd(0, 3), rnd(0, 3) })) end)
entry("bptt.Tensor:free", function() return T.free, pack(any_tensor()) end)
entry("bptt.Tensor:size", function()
  local t = any_tensor()
  return T.size, pack(t, t:dim() > 0 and rnd(1, t:dim()) or nil)
end)
entry("bptt.Tensor:get", function()
  local t = any_tensor(true)
  return T.get, pack(t, unpack(index_args(t)))
end)
entry("bptt.Tensor:set", function()
  local t = any_tensor(true)
  local a = index_args(t)
  a[#a + 1] = rnd(-3, 3)
  return T.set, pack(t, unpack(a))
end)
entry("bptt.Tensor:to", function()
  local t = any_tensor()
  local dt = pick(F.DTYPES)
  return T.to, pack(t, dt), is_tensor_of(t:shape(), dt)
end)
entry("bptt.Tensor:copy", function()
  local t = any_tensor()
  return T.copy, pack(t, like(t, pick(F.DTYPES)))
end)
entry("bptt.Tensor:fill", function() return T.fill, pack(any_tensor(), rnd(-3, 3)) end)
entry("bptt.Tensor:uniform", function()
  local a = rnd() - 0.5
  return T.uniform, pack(F.viewed(rshape(), pick(F.FLOATS)), a, a + rnd())
end)
entry("bptt.Tensor:normal", function() return T.normal, pack(F.viewed(rshape(), pick(F.FLOATS)), rnd(), rnd()) end)
entry("bptt.Tensor:view", function()
  local t = F.tensor()
  local n = t:numel()
  local sizes = chance(0.5) and { -1 } or { n }
  if n % 2 == 0 and n > 0 and chance(0.5) then sizes = { 2, -1 } end
  return T.view, chance(0.5) and pack(t, sizes) or pack(t, unpack(sizes))
end)
entry("bptt.Tensor:narrow", function()
  local t = F.viewed({ rnd(0, 3), rnd(0, 3) })
  local d = math.max(1, rnd(0, t:dim()))
  local n = t:dim() > 0 and t:size(d) or 1
  local start = rnd(1, n + 1)
  return T.narrow, pack(t, d, start, rnd(0, n - start + 1))
end)
entry("bptt.Tensor:select", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  local d = math.max(1, rnd(0, t:dim()))
  return T.select, pack(t, d, rnd(1, t:dim() > 0 and t:size(d) or 1))
end)
entry("bptt.Tensor:transpose", function()
  local t = F.viewed({ rnd(0, 3), rnd(0, 3), rnd(1, 2) })
  return T.transpose, pack(t, rnd(1, math.max(t:dim(), 1)), rnd(1, math.max(t:dim(), 1)))
end)
entry("bptt.Tensor:add", function()
  local t = any_tensor()
  if chance(0.3) then return T.add, pack(t, rnd(-2, 2)) end
  return T.add, pack(t, like(t, t:dtype() == "int32" and "int32" or pick(F.DTYPES)), pick { nil, 1, -2 })
end)
entry("bptt.Tensor:mul", function() return T.mul, pack(any_tensor(), rnd(-2, 2)) end)
entry("bptt.Tensor:cmul", function()
  local t = any_tensor()
  return T.cmul, pack(t, like(t))
end)
entry("bptt.Tensor:argmax", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  return T.argmax, pack(t, rnd(1, math.max(t:dim(), 1)))
end)
for _, op in ipairs { "__add", "__sub", "__mul", "__div" } do
  entry("bptt.Tensor." .. op, function()
    local t = any_tensor()
    local k = rnd(3)
    if op == "__mul" or op == "__div" or k == 1 then return mt(op), pack(t, rnd(1, 3)) end
    if k == 2 then return mt(op), pack(rnd(-2, 2), t) end
    return mt(op), pack(t, like(t, pick(F.DTYPES)))
  end, { names = (op == "__mul" or op == "__div") and {} or nil })
end
-- the tensor operations (ltensor_math.c, ltensor_index.c)
local function bshape(s)
  local out = {}
  for i = 1, #s do out[i] = chance(0.3) and 1 or s[i] end
  if #out > 0 and chance(0.3) then table.remove(out, 1) end
  return out
end
entry("bptt.cmul", function()
  local a = any_tensor()
  return bptt.cmul, pack(a, F.viewed(bshape(a:shape()), pick(F.DTYPES)))
end)
for _, c in ipairs { "eq", "ne", "lt", "le", "gt", "ge" } do
  entry("bptt." .. c, function()
    local a = any_tensor()
    return bptt[c], pack(a, chance(0.3) and rnd(-2, 2) or F.viewed(bshape(a:shape()), pick(F.DTYPES))),
      is_tensor_of(nil, "int32")
  end)
end
for _, f in ipairs { "exp", "log", "tanh", "sigmoid", "sqrt", "relu", "abs", "sign" } do
  entry("bptt." .. f, function() return bptt[f], pack(F.viewed(rshape(), pick(F.FLOATS))) end)
  entry("bptt.Tensor:" .. f, function() return T[f], pack(F.viewed(rshape(), pick(F.FLOATS))) end)
end
for _, m in ipairs { "sub", "div" } do
  entry("bptt.Tensor:" .. m, function()
    local t = m == "div" and F.viewed(rshape(), pick(F.FLOATS)) or any_tensor()
    if chance(0.3) then return T[m], pack(t, rnd(1, 2)) end
    return T[m], pack(t, F.viewed(bshape(t:shape()), t:dtype()))
  end)
end
entry("bptt.Tensor:pow", function() return T.pow, pack(any_tensor(), pick { 0, 1, 2, 3, 0.5 }) end)
entry("bptt.Tensor:clamp", function() return T.clamp, pack(any_tensor(), pick { nil, -1 }, pick { nil, 1 }) end)
local function with_dim(t)
  local d = rnd(1, t:dim())
  return chance(0.3) and d - t:dim() - 1 or d
end
local function nd_tensor(dtype) -- 1..3 dimensions of sizes 1..3
  local s = {}
  for i = 1, rnd(1, 3) do s[i] = rnd(1, 3) end
  return F.viewed(s, dtype)
end
local FLOAT_ONLY = { mean = true, norm = true, logsumexp = true, softmax = true, log_softmax = true }
for _, m in ipairs { "sum", "mean", "max", "min", "norm", "logsumexp", "argmax", "argmin", "softmax",
  "log_softmax", "sort" } do
  entry("bptt.Tensor:" .. m .. "(dim)", function()
    local t = nd_tensor(FLOAT_ONLY[m] and pick(F.FLOATS) or nil)
    local keep = m ~= "sort" and m ~= "softmax" and m ~= "log_softmax" and pick { nil, true } or nil
    return T[m], pack(t, with_dim(t), keep)
  end, { names = { "bptt.Tensor:" .. m } })
end
entry("bptt.Tensor:topk", function()
  local t = nd_tensor()
  local d = with_dim(t)
  local n = t:size(d < 0 and t:dim() + 1 + d or d)
  return T.topk, pack(t, rnd(0, n), d, pick { nil, true, false })
end)
entry("bptt.cat", function()
  local a = F.viewed({ rnd(1, 3), rnd(0, 3) })
  local s = a:shape()
  local d = rnd(1, 2)
  s[d] = rnd(0, 3)
  return bptt.cat, pack({ a, F.viewed(s, pick(F.DTYPES)) }, d)
end)
entry("bptt.stack", function()
  local a = any_tensor()
  return bptt.stack, pack({ a, like(a, pick(F.DTYPES)) }, rnd(1, a:dim() + 1))
end)
entry("bptt.Tensor:index_select", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  local d = rnd(1, 2)
  return T.index_select, pack(t, d, { rnd(1, t:size(d)), rnd(1, t:size(d)) })
end)
entry("bptt.Tensor:gather", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  return T.gather, pack(t, 2, bptt.ones(t:size(1), rnd(0, 3), "int32"))
end)
entry("bptt.Tensor:scatter_add", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  local n = rnd(0, 3)
  return T.scatter_add, pack(t, 2, bptt.ones(t:size(1), n, "int32"), F.viewed({ t:size(1), n }, t:dtype()))
end)
entry("bptt.Tensor:masked_fill", function()
  local t = any_tensor()
  return T.masked_fill, pack(t, bptt.gt(F.viewed(bshape(t:shape()), "float64"), 0), rnd(-2, 2))
end)
entry("bptt.arange", function() return bptt.arange, pack(rnd(-3, 3), rnd(-3, 5), pick { 1, 2, 0.5, -1 }) end)
entry("bptt.linspace", function() return bptt.linspace, pack(rnd(), rnd(), rnd(0, 5), pick { nil, "float64" }) end)
entry("bptt.info", function() return bptt.info, pack(any_tensor()) end)
entry("bptt.Tensor:expand", function()
  local t = F.viewed({ 1, rnd(1, 3) })
  return T.expand, pack(t, rnd(0, 3), rnd(1, 3), t:size(2))
end)
entry("bptt.Tensor:squeeze", function()
  local t = any_tensor()
  return T.squeeze, pack(t, t:dim() > 0 and chance(0.5) and rnd(1, t:dim()) or nil)
end)
entry("bptt.Tensor:unsqueeze", function()
  local t = any_tensor()
  return T.unsqueeze, pack(t, rnd(1, t:dim() + 1))
end)
entry("bptt.Tensor:permute", function()
  local t = F.viewed({ rnd(0, 3), rnd(0, 3), rnd(1, 2) })
  return T.permute, pack(t, 3, 1, 2)
end)
entry("bptt.Tensor:reshape", function()
  local t = any_tensor()
  return T.reshape, pack(t, -1)
end)
entry("bptt.Tensor:repeat_", function()
  local t = F.viewed({ rnd(0, 2), rnd(1, 2) })
  return T.repeat_, pack(t, rnd(0, 2), rnd(1, 2), rnd(1, 2))
end)
entry("bptt.Tensor.__index", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  return mt("__index"), pack(t, pick { 1, -1, { 1, { 1, 1 } }, { {}, -1 } })
end, { names = { "bptt.Tensor" } })
entry("bptt.Tensor.__newindex", function()
  local t = F.viewed({ rnd(1, 3), rnd(1, 3) })
  return mt("__newindex"), pack(t, pick { 1, { {}, 1 } }, pick { 0, bptt.ones(1) })
end, { names = { "bptt.Tensor" } })
entry("bptt.Tensor.__unm", function() return mt("__unm"), pack(any_tensor()) end)
entry("bptt.Tensor.__tostring", function() return mt("__tostring"), pack(any_tensor()) end,
  { names = { "bptt.Tensor" } })

-- layers: constructors
entry("bptt.RNN", function()
  return bptt.RNN, pack{ cell = pick(CELLS), input = rnd(1, 3), hidden = rnd(1, 3), layers = rnd(1, 2),
    bias = chance(0.5), dropout = pick { 0, 0.5 }, dtype = pick(F.FLOATS) }
end)
entry("bptt.Linear", function()
  return bptt.Linear, pack{ input = rnd(1, 3), output = rnd(1, 3), bias = chance(0.5), dtype = pick(F.FLOATS) }
end)
entry("bptt.Embedding", function() return bptt.Embedding, pack{ vocab = rnd(1, 4), dim = rnd(1, 3) } end)
entry("bptt.CrossEntropy", function()
  return bptt.CrossEntropy, pack{ reduction = pick { "mean", "sum" }, ignore_index = pick { nil, 1, -100 } }
end)
entry("bptt.MSE", function() return bptt.MSE, pack{ reduction = pick { "mean", "sum" } } end)
entry("bptt.LanguageModel", function()
  return bptt.LanguageModel, pack{ vocab = rnd(1, 5), embed = rnd(1, 3), hidden = rnd(1, 3), cell = pick(CELLS),
    layers = rnd(1, 2), dropout = pick { 0, 0.1 }, dtype = pick(F.FLOATS) }
end)
entry("bptt.Sequential", function()
  local dt = pick(F.FLOATS)
  return bptt.Sequential,
    pack{ bptt.Linear{ input = 2, output = 3, dtype = dt }, bptt.Linear{ input = 3, output = 1, dtype = dt } }
end)
entry("bptt.Model:add", function()
  local m = bptt.Model()
  local child = model()
  if chance(0.5) then m:add("first", linear(child.dtype)) end
  return bptt.Model.add, pack(m, pick { "rnn", "head", "x_1" }, child)
end, { names = { "bptt.Model:add" } })

-- layers: forward and backward (fresh objects: backward before forward too)
local function layer_methods(cls, make)
  local name = cls.__name
  entry(name .. ":forward", function()
    local m = make()
    local x = forward_input(m)
    if name == "bptt.RNN" and chance(0.5) then
      local B = x:size(2)
      local h0 = F.viewed({ m.layers, B, m.hidden }, m.dtype)
      local c0 = m.cell == "lstm" and chance(0.5) and F.viewed({ m.layers, B, m.hidden }, m.dtype) or nil
      return cls.forward, pack(m, x, h0, c0), function(r)
        assert(F.same_shape(r[1], { x:size(1), B, m.hidden }) and F.finite(r[1]) and F.finite(r[2]))
      end
    end
    return cls.forward, pack(m, x), function(r)
      assert(bptt.is_tensor(r[1]) and F.finite(r[1]), "forward of finite inputs must be finite")
    end
  end)
  entry(name .. ":backward", function()
    local m = make()
    if chance(0.2) then return cls.backward, pack(m, F.tensor()), nil, "before forward" end
    local _, _, y = forwarded(m)
    local args = pack(m, like(y))
    if name == "bptt.RNN" then
      local st = { m.layers, y:size(2), m.hidden }
      args = pack(m, chance(0.8) and like(y) or nil, chance(0.5) and F.viewed(st, m.dtype) or nil,
        m.cell == "lstm" and chance(0.5) and F.viewed(st, m.dtype) or nil)
    end
    return cls.backward, args, name ~= "bptt.Embedding" and name ~= "bptt.LanguageModel" and function(r)
      assert(bptt.is_tensor(r[1]) and F.finite(r[1]), "backward of finite gradients must be finite")
    end or nil
  end)
  for _, meth in ipairs { "parameters", "zero_grad", "train", "evaluate", "state_dict", "parameter_names",
    "num_parameters", "flat_parameters", "reset" } do
    if cls[meth] then entry(name .. ":" .. meth, function() return cls[meth], pack(make()) end) end
  end
  entry(name .. ":load_state_dict", function()
    local m = make()
    local sd = {}
    for k, v in pairs(m:state_dict()) do sd[k] = like(v, pick(F.FLOATS)) end
    return cls.load_state_dict, pack(m, sd)
  end)
end
layer_methods(bptt.RNN, rnn)
layer_methods(bptt.Linear, linear)
layer_methods(bptt.Embedding, embedding)
layer_methods(bptt.Sequential, sequential)
layer_methods(bptt.LanguageModel, lm)

-- the small layers
local SMALL = { "Tanh", "Sigmoid", "ReLU", "Identity", "Softmax", "LogSoftmax", "Dropout", "Select", "Mean" }
local function small(name)
  local opts = { dtype = pick(F.FLOATS) }
  if name == "Softmax" or name == "LogSoftmax" or name == "Mean" then opts.dim = pick { nil, 1, -1 } end
  if name == "Dropout" then opts.p = pick { 0, 0.5, 1 } end
  if name == "Select" then opts.dim, opts.index = pick { nil, 1, 3 }, pick { nil, 1, -1 } end
  return opts
end
for _, name in ipairs(SMALL) do
  entry("bptt." .. name, function() return bptt[name], pack(small(name)) end)
  layer_methods(bptt[name], function() return bptt[name](small(name)) end)
end
local function layernorm() return bptt.LayerNorm{ dim = rnd(1, 3), eps = pick { nil, 0.1 }, dtype = pick(F.FLOATS) } end
entry("bptt.LayerNorm", function() return bptt.LayerNorm, pack{ dim = rnd(1, 3), dtype = pick(F.FLOATS) } end)
layer_methods(bptt.LayerNorm, layernorm)
local function concat()
  local dt = pick(F.FLOATS)
  return bptt.Concat{ bptt.Tanh{ dtype = dt }, bptt.Identity{ dtype = dt }, dim = pick { nil, 1, -1 } }
end
entry("bptt.Concat", function() return bptt.Concat, pack{ bptt.ReLU{}, dim = pick { nil, 1, 2 } } end)
layer_methods(bptt.Concat, concat)
entry("bptt.Parallel", function() return bptt.Parallel, pack{ bptt.ReLU{}, bptt.Tanh{}, dim = pick { nil, 1 } } end)
entry("bptt.Parallel:forward", function()
  local dt = pick(F.FLOATS)
  local m = bptt.Parallel{ bptt.ReLU{ dtype = dt }, bptt.Tanh{ dtype = dt }, dim = 2 }
  local B = rnd(1, 3)
  return bptt.Parallel.forward, pack(m, F.viewed({ B, rnd(1, 3) }, dt), F.viewed({ B, rnd(1, 3) }, dt))
end)

for _, crit in ipairs { "CrossEntropy", "MSE" } do
  local cls = bptt[crit]
  local function inputs()
    local dt = pick(F.FLOATS)
    local s = {}
    for i = 1, rnd(1, 3) do s[i] = rnd(1, 3) end
    local x = F.viewed(s, dt)
    if crit == "MSE" then return x, F.viewed(s, dt) end
    local ts = {}
    for i = 1, #s - 1 do ts[i] = s[i] end
    local tg = F.viewed(ts, pick { "int32", dt })
    if tg:numel() > 0 then tg:fill(rnd(1, s[#s])) end
    return x, tg
  end
  entry("bptt." .. crit .. ":forward", function()
    local x, t = inputs()
    return cls.forward, pack(cls{ reduction = pick { "mean", "sum" } }, x, t), finite_number
  end)
  entry("bptt." .. crit .. ":backward", function()
    local c = cls{}
    if chance(0.2) then return cls.backward, pack(c), nil, "before forward" end
    c:forward(inputs())
    return cls.backward, pack(c, pick { nil, 1, 0.5 })
  end)
end

-- language model extras
entry("bptt.LanguageModel:sample", function()
  local m = lm()
  local V = m.config.vocab
  return bptt.LanguageModel.sample, pack(m, { n = rnd(0, 5), prime = chance(0.5) and { rnd(1, V), rnd(1, V) } or nil,
    temperature = pick { nil, 0.7 }, top_k = pick { nil, 2 }, top_p = pick { nil, 0.9 }, greedy = pick { nil, true },
    seed = pick { nil, 7 } }), is_tensor_of(nil, "int32")
end)
entry("bptt.LanguageModel:score", function()
  local m = lm()
  local V = m.config.vocab
  local ids = {}
  for i = 1, rnd(2, 5) do ids[i] = rnd(1, V) end
  return bptt.LanguageModel.score, pack(m, chance(0.5) and ids or bptt.tensor(ids, "int32")), function(r)
    assert(F.finite(r[1]) and r[2] >= 1 and r[2] < math.huge)
  end
end)
entry("bptt.LanguageModel:reset_state", function()
  local m = forwarded(lm())
  return bptt.LanguageModel.reset_state, pack(m, pick { nil, 1 })
end)
entry("bptt.LanguageModel:get_state", function() return bptt.LanguageModel.get_state, pack((forwarded(lm()))) end)
entry("bptt.LanguageModel:set_state", function()
  local m = forwarded(lm())
  return bptt.LanguageModel.set_state, pack(m, chance(0.8) and m:get_state() or nil)
end)

-- training
for _, o in ipairs(OPTIMS) do
  entry("bptt.optim." .. o, function()
    local opts = { lr = pick { 0.1, 0.01 } }
    if o == "sgd" then opts.momentum, opts.nesterov = pick { 0, 0.9 }, false end
    if o == "adam" or o == "adamw" then opts.betas = { 0.9, 0.99 } end
    local m = pick { model(), { linear("float32"), linear("float64") } }
    if chance(0.15) then -- odd models: no parameters, listed twice, a child with its container
      local l = linear()
      local s = bptt.Sequential{ l }
      return bptt.optim[o], pack(pick { bptt.MSE{}, { l, l }, { s, l }, {}, bptt.Model() }, opts), nil, "odd model"
    end
    return bptt.optim[o], pack(m, opts)
  end)
end
local Opt = bptt.optim.Optimizer
local function opt_with_grads()
  local m = model()
  local _, _, y = forwarded(m)
  m:backward(like(y))
  return optimizer(m), m
end
entry("bptt.Optimizer:step", function()
  local o, m = opt_with_grads()
  local p = m:flat_parameters()
  local before = F.finite(p)
  return Opt.step, pack(o), function() assert(not before or F.finite(p), "a step from finite values gave NaN/Inf") end
end, { names = { "bptt.optim." } })
entry("bptt.Optimizer:zero_grad", function() return Opt.zero_grad, pack((opt_with_grads())) end,
  { names = { "bptt.optim." } })
entry("bptt.Optimizer:state_dict", function() return Opt.state_dict, pack((opt_with_grads()), pick { nil, "o." }) end,
  { names = { "bptt.optim." } })
entry("bptt.Optimizer:load_state_dict", function()
  local o = opt_with_grads()
  o:step()
  local ts, meta = o:state_dict("p.")
  local copy = {}
  for k, v in pairs(ts) do copy[k] = v:clone() end
  return Opt.load_state_dict, pack(o, copy, meta, "p.")
end, { names = { "bptt.optim." } })
local SCHEDS = {
  step = function() return { step_size = rnd(1, 3), gamma = 0.5 } end,
  exponential = function() return { gamma = 0.9 } end,
  cosine = function() return { t_max = rnd(1, 5), eta_min = 0 } end,
  warmup = function() return { steps = rnd(1, 3) } end,
}
for k, opts in pairs(SCHEDS) do
  entry("bptt.schedule." .. k, function() return bptt.schedule[k], pack(optimizer(), opts()) end)
end
entry("bptt.schedule.chain", function()
  local o = optimizer()
  return bptt.schedule.chain,
    pack{ bptt.schedule.warmup(o, { steps = 2 }), bptt.schedule.exponential(o, { gamma = 0.9 }) }
end)
local Sched = bptt.schedule.Schedule
local function sched()
  local k = pick { "step", "exponential", "cosine", "warmup" }
  return bptt.schedule[k](optimizer(), SCHEDS[k]())
end
entry("bptt.Schedule:step", function() return Sched.step, pack(sched()) end, { names = { "bptt.schedule." } })
entry("bptt.Schedule:lr_at", function() return Sched.lr_at, pack(sched(), rnd(0, 10)) end,
  { names = { "bptt.schedule." } })
entry("bptt.Schedule:state", function() return Sched.state, pack(sched()) end, { names = { "bptt.schedule." } })
entry("bptt.Schedule:set_state", function()
  local s = sched()
  return Sched.set_state, pack(s, s:state())
end, { names = { "bptt.schedule." } })
entry("bptt.clip_grad_norm", function()
  local _, m = opt_with_grads()
  return bptt.clip_grad_norm, pack(m, pick { 0, 0.5, 10 }, pick { nil, 1, 2, "inf" }), finite_number
end)
entry("bptt.clip_grad_value", function()
  local _, m = opt_with_grads()
  return bptt.clip_grad_value, pack(m, pick { 0, 0.5, 10 })
end)
entry("bptt.gradcheck", function()
  local k = rnd(3)
  if k == 1 then
    local m = bptt.RNN{ cell = pick(CELLS), input = 2, hidden = 2, dtype = "float64" }
    return bptt.gradcheck, pack(m, { bptt.randn(2, 1, 2, "float64") }, { max_per_tensor = 2 })
  elseif k == 2 then
    local m = bptt.Linear{ input = 2, output = 2, dtype = "float64" }
    return bptt.gradcheck, pack(m, { bptt.randn(2, 2, "float64") }, { max_per_tensor = 2, eps = 1e-6 })
  end
  return bptt.gradcheck, pack(bptt.MSE{}, { bptt.randn(3, "float64"), bptt.randn(3, "float64") })
end)

-- data
entry("bptt.data.text", function()
  if chance(0.6) then
    return bptt.data.text, pack{ text = pick { "abc", "", "ß∂ƒ", "\255\254 bad utf8" },
      unit = pick { nil, "byte", "utf8" },
      invalid = pick { nil, "replace", "error" } }
  end
  local path = tmp(".txt")
  local f = assert(io.open(path, "wb"))
  f:write(pick { "some text\n", "", "\192\128" })
  f:close()
  return bptt.data.text, pack(pick { path, tmp(".nothere") }, { unit = pick { "byte", "utf8" } })
end)
local Vocab = bptt.data.Vocab
entry("bptt.data.Vocab:size", function() return Vocab.size, pack(vocab()) end)
entry("bptt.data.Vocab:encode", function()
  local v = vocab()
  local sym = v:symbols()
  return Vocab.encode, pack(v, pick { "", sym[1], sym[#sym] .. sym[1] }), is_tensor_of(nil, "int32")
end)
entry("bptt.data.Vocab:decode", function()
  local v = vocab()
  local ids = { 1, v:size() }
  return Vocab.decode, pack(v, pick { ids, bptt.tensor(ids, "int32"), bptt.tensor(ids, "float64"), {} })
end)
entry("bptt.data.Vocab:symbols", function() return Vocab.symbols, pack(vocab()) end)
entry("bptt.data.Vocab:counts", function() return Vocab.counts, pack(vocab()) end)
entry("bptt.data.Vocab:serialize", function() return Vocab.serialize, pack(vocab()) end)
entry("bptt.data.Vocab.deserialize", function() return Vocab.deserialize, pack(vocab():serialize()) end,
  { names = { "bptt.data.Vocab" } })
entry("bptt.data.Vocab.from_symbols", function()
  return Vocab.from_symbols, pack(pick { { "a", "b" }, { "é", "x", "✓" }, {} }, pick { nil, "utf8" })
end, { names = { "bptt.data.Vocab" } })
entry("bptt.data.split", function()
  local c = corpus()
  return bptt.data.split, pack(chance(0.5) and c or c.tokens, pick { 0.9, { 0.5, 0.5 }, { 0.8, 0.1, 0.1 }, 1 })
end)
entry("bptt.data.Batches", function()
  local c = bptt.data.text{ text = string.rep("abcd", 10) }
  return bptt.data.Batches, pack(c.tokens, { batch = rnd(1, 3), seq = rnd(1, 3), shuffle = chance(0.5),
    seed = pick { nil, 3 } })
end)
local Batches = bptt.data.Batches
for _, meth in ipairs { "next", "count", "position", "order", "state" } do
  entry("bptt.data.Batches:" .. meth, function() return Batches[meth], pack(batches()) end)
end
entry("bptt.data.Batches:set_state", function()
  local b = batches()
  b:next()
  return Batches.set_state, pack(b, b:state())
end)

-- the Trainer, on a tiny model
entry("bptt.Trainer", function()
  local b = batches()
  local m = bptt.LanguageModel{ vocab = 20, hidden = 2, embed = 2 }
  return bptt.Trainer, pack{ model = m, optimizer = bptt.optim.sgd(m, { lr = 0.1 }), train = b, clip = 1 }
end)

local Trainer = bptt.Trainer
local function trainer()
  local b = batches()
  local m = bptt.LanguageModel{ vocab = 20, hidden = 2, embed = 2, cell = pick(CELLS) }
  return Trainer{ model = m, optimizer = bptt.optim.adam(m, { lr = 0.01 }), train = b, val = batches(),
    clip = pick { nil, 1 } }
end
entry("bptt.Trainer:step", function() return Trainer.step, pack(trainer()) end)
entry("bptt.Trainer:evaluate", function() return Trainer.evaluate, pack(trainer(), pick { nil, 1, 2 }) end)
entry("bptt.Trainer:save", function() return Trainer.save, pack(trainer(), tmp(".ckpt"), { note = "x" }) end)
entry("bptt.Trainer:load", function()
  local t = trainer()
  local path = tmp(".ckpt")
  if chance(0.5) then t:step(); t:save(path) end
  return Trainer.load, pack(t, path), nil, "maybe another model's checkpoint"
end)
entry("bptt.Trainer.read_config", function() return Trainer.read_config, pack(tmp(".ckpt")) end,
  { names = { "bptt.Trainer" } })

------------------------------------------------------------------ the run

describe("API fuzzing", function()
  it(string.format("survives %d seeded calls over %d entry points (seed %d)", ITERS, #E, SEED), function()
    math.randomseed(SEED)
    bptt.manual_seed(SEED)
    local threads = bptt.num_threads()
    local rng = bptt.rng_state()
    finally(function()
      bptt.set_num_threads(threads)
      bptt.set_rng_state(rng)
      for _, suffix in ipairs { "", ".st", ".garbage", ".txt", ".ckpt" } do os.remove(tmp(suffix)) end
    end)
    local problems, calls, ok_calls, mutated_calls = {}, 0, 0, 0
    local delegations = {} -- entry -> an error that names an inner function
    local rss0 = F.rss_mb()
    local t0 = os.clock()
    local function note(i, e, what, msg)
      if #problems < 40 then
        problems[#problems + 1] = string.format("#%d %s (%s): %s", i, e.name, what or "valid arguments", tostring(msg))
      end
    end
    for i = 1, ITERS do
      local e = E[(i - 1) % #E + 1] -- every entry in turn; arguments random
      if i > #E then e = E[rnd(#E)] end
      local okg, fn, args, check, invalid = pcall(e.gen)
      if not okg then
        note(i, e, "generator", fn)
      else
        local what = invalid
        if chance(0.55) then args, what = F.mutate(args, object) end
        if what then mutated_calls = mutated_calls + 1 end
        calls = calls + 1
        if TRACE then
          local a = {}
          for j = 1, args.n do
            local v = args[j]
            a[j] = bptt.is_tensor(v) and (pcall(v.shape, v) and "tensor " .. table.concat(v:shape(), "x") or "freed")
              or type(v) == "table" and "table" or tostring(v)
          end
          io.stderr:write(string.format("#%d %s (%s): %s\n", i, e.name, what or "valid", table.concat(a, ", ")))
        end
        local res = F.pcall_clean(fn, unpack(args, 1, args.n))
        if res[1] then
          ok_calls = ok_calls + 1
          local vals = pack(unpack(res, 2, res.n))
          local okc, err = pcall(F.usable, vals)
          if okc and check and not what then okc, err = pcall(check, vals) end
          if not okc then note(i, e, what, "wrong result: " .. tostring(err)) end
        else
          local why, delegated = F.judge_error(e, res[2])
          if why then note(i, e, what, why .. ": " .. tostring(res[2])) end
          if delegated and not delegations[e.name] then delegations[e.name] = tostring(res[2]) end
          if not what and not why then
            -- valid arguments must work
            note(i, e, what, "valid arguments failed: " .. tostring(res[2]))
          end
        end
      end
      if i % 64 == 0 then
        collectgarbage()
        local rss = F.rss_mb()
        if rss - rss0 > 400 then note(i, e, "memory", string.format("resident memory grew by %.0f MB", rss - rss0)) end
      end
      if #problems >= 40 then break end
    end
    if os.getenv("BPTT_FUZZ_VERBOSE") then
      io.stderr:write(string.format("\nfuzz: %d calls (%d mutated, %d worked) over %d entries in %.1f s CPU\n",
        calls, mutated_calls, ok_calls, #E, os.clock() - t0))
      for name, msg in pairs(delegations) do io.stderr:write("  delegated: ", name, " -> ", msg, "\n") end
    end
    assert(#problems == 0, string.format("fuzz seed %d (rerun with BPTT_FUZZ_SEED=%d): %d problems:\n  %s", SEED, SEED,
      #problems, table.concat(problems, "\n  ")))
  end)
end)
