-- Numerics at the edges: logits near float32's largest value, saturated
-- sigmoid and tanh, inputs of 1e30 into every cell, sequences of 10,000
-- steps, NaN that propagates without a crash, and the trainer stopping (or
-- skipping the step) on a non-finite loss or gradient, also through
-- examples/charlm/train.lua.
local bptt = require "bptt"
local N = require "helpers.nn_util"
local U = require "helpers.tensor_util"
local P = require "helpers.proc"

local FLT_MAX = 3.4028234663852886e38
local CELLS = { "tanh", "relu", "lstm", "gru" }

-- every element finite: max and min propagate NaN, and are finite only then
local function finite(t)
  if type(t) == "number" then return t == t and t ~= math.huge and t ~= -math.huge end
  local hi, lo = t:max(), t:min()
  return hi == hi and lo == lo and hi ~= math.huge and lo ~= -math.huge
end

-- float32 rounding of a double (the inputs the layers actually see)
local function f32(x) return bptt.tensor({ x }, "float32"):get(1) end

describe("CrossEntropy with logits near float32's largest value", function()
  it("gives the exact finite loss and a finite gradient for +-3e38 and +-FLT_MAX", function()
    local rows = { { 3e38, -3e38, 0 }, { 3e38, -3e38, 0 }, { FLT_MAX, -FLT_MAX, FLT_MAX },
      { -FLT_MAX, -FLT_MAX, -FLT_MAX }, { -3e38, 1e30, -1e30 } }
    local targets = { 1, 2, 1, 3, 2 }
    local logits = bptt.tensor(rows, "float32")
    local ce = bptt.CrossEntropy{ reduction = "sum" }
    local loss = ce:forward(logits, bptt.tensor(targets, "int32"))
    -- row by row: 0, 2 * 3e38, log 2, log 3, 0 (with 3e38 as float32 holds it)
    local a = f32(3e38)
    local want = 2 * a + math.log(2) + math.log(3)
    assert.is_true(finite(loss) and math.abs(loss - want) <= 1e-15 * want, "loss " .. loss)
    local d = ce:backward()
    assert.is_true(finite(d))
    N.assert_rel(d, bptt.tensor({ { 0, 0, 0 }, { 1, -1, 0 }, { -0.5, 0, 0.5 }, { 1 / 3, 1 / 3, -2 / 3 }, { 0, 0, 0 } },
      "float32"), 1e-6, "dlogits")
    -- the mean of such rows is finite too (the loss is summed in double)
    local mean = bptt.CrossEntropy():forward(logits, bptt.tensor(targets, "int32"))
    assert.is_true(math.abs(mean - want / 5) <= 1e-15 * want)
  end)

  it("a 64 x 1000 batch of logits uniform in +-3e38: finite loss, every row's gradient sums to 0", function()
    bptt.manual_seed(11)
    local logits = (bptt.rand(64, 1000) * 2 - 1) * 3e38
    assert.is_true(finite(logits))
    local ce = bptt.CrossEntropy()
    local loss = ce:forward(logits, bptt.ones(64, "int32"))
    assert.is_true(finite(loss) and loss >= 0, "loss " .. loss)
    local d = ce:backward()
    assert.is_true(finite(d))
    assert.is_true(d:max() <= 1 / 64 and d:min() >= -1 / 64)
    local sums = bptt.matmul(d, bptt.ones(1000)) -- (64)
    assert.is_true(math.abs(sums:max()) < 1e-7 and math.abs(sums:min()) < 1e-7)
  end)

  it("an infinite logit gives NaN, as PyTorch does (inf - inf), without a crash", function()
    local ce = bptt.CrossEntropy()
    local logits = bptt.tensor({ { 1 / 0, 0, 0 }, { 1, 2, 3 } }, "float32")
    local loss = ce:forward(logits, bptt.tensor({ 2, 1 }, "int32"))
    assert.is_true(loss ~= loss)
    local d = ce:backward()
    assert.is_true(N.has_nan(d:select(1, 1)))
    assert.is_true(finite(d:select(1, 2)))
    -- -inf only: that class gets probability 0
    loss = ce:forward(bptt.tensor({ { -1 / 0, 0 } }, "float32"), bptt.tensor({ 2 }, "int32"))
    assert.is_true(math.abs(loss) < 1e-7)
  end)
end)

-- One unit: x (1 x n x 1) through a cell whose weights make the output a
-- single activation of x (see each case).
local function unit(cell, dtype, weights, n, h0)
  local m = bptt.RNN{ cell = cell, input = 1, hidden = 1, dtype = dtype }
  local p = m:parameters()
  for _, t in pairs(p) do t:zero() end
  for name, vals in pairs(weights) do
    for i, v in ipairs(vals) do p[name]:view(-1):set(i, v) end
  end
  return m, h0 and bptt.ones(1, n, 1, dtype) or nil
end

local XS = { 0, 1e-40, 1e-30, 1e-8, 0.3, 0.62, 0.63, 1, 2.5, 5, 9, 9.1, 10, 15, 20, 44, 45, 87, 88, 89, 103, 104, 105,
  200, 1e4, 1e30, 3e38 }

describe("sigmoid and tanh saturate exactly and stay accurate", function()
  for _, dtype in ipairs({ "float32", "float64" }) do
    local tol = dtype == "float32" and 2e-6 or 1e-14
    local xs = {}
    for _, x in ipairs(XS) do
      xs[#xs + 1] = x
      xs[#xs + 1] = -x
    end
    local n = #xs

    it("tanh (" .. dtype .. "): y = tanh x, dy/dx = 1 - y^2, odd, exactly +-1 from |x| = 20 on", function()
      -- tanh cell: weight_ih = 1, the rest 0
      local m = unit("tanh", dtype, { weight_ih_l0 = { 1 } }, n)
      local x = bptt.tensor(xs, dtype):view(1, n, 1)
      local y = m:forward(x):clone()
      local dx = m:backward(bptt.ones(1, n, 1, dtype))
      for i, v in ipairs(xs) do
        local xv = x:get(1, i, 1)
        local got, want = y:get(1, i, 1), math.tanh(xv)
        assert.is_true(math.abs(got - want) <= tol * math.max(math.abs(want), 1e-30) or math.abs(got - want) < 1e-45,
          string.format("tanh(%.9g) = %.9g, want %.9g", xv, got, want))
        assert.is_true(got >= -1 and got <= 1)
        if math.abs(v) >= 20 then assert.equal(v > 0 and 1 or -1, got) end
        local g = dx:get(1, i, 1)
        assert.is_true(math.abs(g - (1 - want * want)) <= 4 * tol, string.format("d tanh(%.9g) = %.9g", xv, g))
      end
      for i = 1, n, 2 do assert.equal(y:get(1, i, 1), -y:get(1, i + 1, 1)) end
    end)

    it("sigmoid (" .. dtype .. "): y = 1 / (1 + e^-x) to relative accuracy, in [0, 1], finite gradient", function()
      -- GRU with h0 = 1 and n = tanh(0) = 0: h = (1 - z) n + z h0 = z = sigmoid(weight x)
      local m, h0 = unit("gru", dtype, { weight_ih_l0 = { 0, 1, 0 } }, n, true)
      local x = bptt.tensor(xs, dtype):view(1, n, 1)
      local y = m:forward(x, h0):clone()
      local dx = m:backward(bptt.ones(1, n, 1, dtype))
      for i = 1, n do
        local xv = x:get(1, i, 1)
        local got = y:get(1, i, 1)
        local want = xv >= 0 and 1 / (1 + math.exp(-xv)) or math.exp(xv) / (1 + math.exp(xv))
        -- relative, down to float32's smallest normal (below it, subnormal spacing)
        assert.is_true(math.abs(got - want) <= tol * want + (dtype == "float32" and 2e-38 or 1e-300),
          string.format("sigmoid(%.9g) = %.9g, want %.9g", xv, got, want))
        assert.is_true(got >= 0 and got <= 1)
        if xv >= 20 and dtype == "float32" then assert.equal(1, got) end
        if xv <= -105 and dtype == "float32" then assert.equal(0, got) end
        local g = dx:get(1, i, 1)
        assert.is_true(finite(g) and math.abs(g - want * (1 - want)) <= 4 * tol * math.max(want * (1 - want), 1e-30)
          + (dtype == "float32" and 1e-7 or 1e-15), string.format("d sigmoid(%.9g) = %.9g", xv, g))
      end
    end)

    it("NaN in gives NaN out through tanh and sigmoid (" .. dtype .. "), and the other columns stay finite", function()
      local x = bptt.tensor({ 0 / 0, 1, 1e30 }, dtype):view(1, 3, 1)
      for _, case in ipairs({ { "tanh", { weight_ih_l0 = { 1 } } }, { "gru", { weight_ih_l0 = { 0, 1, 0 } } } }) do
        local m, h0 = unit(case[1], dtype, case[2], 3, case[1] == "gru")
        local y = m:forward(x, h0)
        assert.is_true(y:get(1, 1, 1) ~= y:get(1, 1, 1), case[1])
        assert.is_true(finite(y:narrow(2, 2, 2)), case[1])
        local dx = m:backward(bptt.ones(1, 3, 1, dtype))
        assert.is_true(finite(dx:narrow(2, 2, 2)), case[1])
      end
    end)
  end
end)

describe("every cell over 10,000 steps", function()
  local LONG = U.light and 1000 or 10000
  for _, dtype in ipairs({ "float32", "float64" }) do
    for _, cell in ipairs(CELLS) do
      it(string.format("%s, %s: T = %d with inputs ~1e30, forward and backward finite", cell, dtype, LONG),
        function()
          bptt.manual_seed(5)
          local m = bptt.RNN{ cell = cell, input = 4, hidden = 8, layers = 2, dtype = dtype }
          local x = bptt.randn(LONG, 2, 4, dtype) * 1e30
          local y, hT, cT = m:forward(x)
          assert.is_true(finite(y) and finite(hT) and (cT == nil or finite(cT)), "forward")
          if cell ~= "relu" then assert.is_true(y:max() <= 1 and y:min() >= -1) end
          -- (gradients of order 1: relu's states are ~1e30, and dW_hh = sum dh h^T
          -- would overflow float32 for a loss whose dh is ~1e30 too)
          local dx, dh0, dc0 = m:backward(bptt.ones(LONG, 2, 8, dtype), hT:clone():fill(1), cT and cT:clone():fill(1))
          assert.is_true(finite(dx) and finite(dh0) and (dc0 == nil or finite(dc0)), "input gradients")
          local _, g = m:flat_parameters()
          assert.is_true(finite(g), "parameter gradients")
          -- and an ordinary long sequence: the state neither blows up nor goes NaN
          m:zero_grad()
          y = m:forward(bptt.randn(LONG, 2, 4, dtype))
          m:backward(y)
          assert.is_true(finite(y) and finite(g))
        end)
    end
  end
end)

-- a criterion that passes the logits through but sends back the gradient it is given
local function rigged(dlogits_value)
  local inner = bptt.CrossEntropy()
  local c = {}
  function c:forward(logits, y) return inner:forward(logits, y) end
  function c:backward() return inner:backward():clone():fill(dlogits_value) end
  return c
end

local function small_trainer(opts)
  bptt.manual_seed(7)
  local ids = bptt.tensor((function()
    local t = {}
    for i = 1, 400 do t[i] = (i * 7) % 11 + 1 end
    return t
  end)(), "int32")
  local lm = bptt.LanguageModel{ vocab = 11, embed = 4, cell = "gru", hidden = 6, layers = 1 }
  local opt = bptt.optim.adam(lm, { lr = 1e-2 })
  local trainer = bptt.Trainer{ model = lm, optimizer = opt, clip = opts.clip, loss = opts.loss,
    skip_nonfinite = opts.skip, train = bptt.data.Batches(ids, { batch = 2, seq = 5 }) }
  return trainer, lm
end

describe("bptt.Trainer and non-finite numbers", function()
  for _, clip in ipairs({ false, 5 }) do
    local with = clip and "with clip" or "without clip"
    it("an Inf gradient under a finite loss stops the step, naming the iteration (" .. with .. ")", function()
      local inf = false
      local crit = rigged(0)
      local c_backward = crit.backward
      function crit:backward()
        local d = c_backward(self)
        if inf then d:fill(1 / 0) else d:fill(0.01) end
        return d
      end
      local trainer, lm = small_trainer{ clip = clip or nil, loss = crit }
      trainer:step()
      trainer:step()
      local before = lm:flat_parameters():clone()
      inf = true
      -- (Inf times the zeros in the weights' products makes the norm NaN)
      local err = N.error_with({ "bptt.Trainer:step: iteration 3:", "gradient norm", "skip_nonfinite" },
        trainer.step, trainer)
      assert.truthy(err:find("loss %d[%d.]*, gradient norm [%-]?nan") or err:find("gradient norm inf"), err)
      assert.equal(0, (lm:flat_parameters() - before):norm(), "the weights were not updated")
      -- with skip_nonfinite the step is dropped and training goes on
      trainer.skip_nonfinite = true
      local loss, norm = trainer:step()
      assert.is_true(finite(loss) and not finite(norm))
      assert.equal(1, trainer.skipped)
      assert.equal(4, trainer.iteration)
      assert.equal(0, (lm:flat_parameters() - before):norm())
      assert.is_true(finite(lm:flat_parameters()))
      inf = false
      loss, norm = trainer:step()
      assert.is_true(finite(loss) and finite(norm))
      assert.is_true((lm:flat_parameters() - before):norm() > 0, "a finite step updates again")
      assert.equal(1, trainer.skipped)
    end)
  end

  it("a NaN loss is caught with the message, and skipped steps go into the checkpoint", function()
    local trainer, lm = small_trainer{ clip = 1 }
    trainer:step()
    local w = lm:parameters()["decoder.weight"]
    local saved = w:get(1, 1)
    w:set(1, 1, 0 / 0)
    N.error_with({ "iteration 2:", "loss nan" }, trainer.step, trainer)
    trainer.skip_nonfinite = true
    trainer:step()
    trainer:step()
    assert.equal(2, trainer.skipped)
    w:set(1, 1, saved)
    trainer:step()
    local dir, cleanup = P.tempdir()
    assert.is_true(trainer:save(dir .. "/c.safetensors"))
    local _, meta = bptt.load(dir .. "/c.safetensors")
    assert.equal("2", meta.skipped)
    assert.equal("5", meta.iteration)
    cleanup()
  end)
end)

describe("examples/charlm/train.lua and a run that diverges", function()
  local dir, cleanup, corpus
  local TRAIN = P.luajit .. " examples/charlm/train.lua"
  -- sgd at lr 0.1 whose schedule multiplies the lr by 1e40 after iteration 2:
  -- iterations 1-3 are finite, iteration 3's update takes lr 1e39, beyond
  -- float32 (-lr becomes -inf), so every weight becomes -inf * g: +-inf, or
  -- NaN where g = 0.  Iteration 4's logits are then each a sum over terms
  -- that are all +-inf or NaN, plus an infinite or NaN bias: none is finite,
  -- whatever the kernel's order of summation, and neither is the loss (nan
  -- or inf).  Evaluations every 2: the checkpoint of iteration 2 is the last
  -- good one.
  local DIVERGE = "--cell gru --hidden 16 --layers 1 --batch 4 --seq 16 --optim sgd --lr 0.1 --lr-decay 1e40 "
    .. "--lr-decay-every 2 --clip 0 --eval-every 2 --eval-batches 1 --quiet --threads 1"
  local DIVERGED = "iteration 4: diverged (a NaN or infinite loss or gradient): loss "
  setup(function()
    dir, cleanup = P.tempdir()
    corpus = dir .. "/corpus.txt"
    assert(P.run(P.luajit .. " examples/charlm/make_corpus.lua " .. P.quote(corpus) .. " 20"))
  end)
  teardown(function() cleanup() end)

  it("exits non-zero naming the iteration and the last good checkpoint, which loads and resumes", function()
    local out_dir = dir .. "/nan"
    local ckpt = out_dir .. "/checkpoint.safetensors"
    local ok, out, status = P.run(string.format("%s --data %s %s --max-iters 50 --out %s", TRAIN, P.quote(corpus),
      DIVERGE, P.quote(out_dir)))
    assert.is_false(ok, out)
    assert.equal(1, status)
    assert.truthy(out:find(DIVERGED, 1, true), out)
    assert.truthy(out:find("the last good checkpoint is " .. ckpt .. " (iteration 2)", 1, true), out)
    local config, meta, tensors = bptt.Trainer.read_config(ckpt)
    assert(config, meta)
    assert.equal("2", meta.iteration)
    for name, t in pairs(tensors) do
      if name:match("^model%.") then assert.is_true(finite(t), name) end
    end
    -- resumed with --skip-nonfinite it gets to the end, counting what it dropped
    ok, out = P.run(string.format("%s --resume %s --max-iters 5 --out %s --quiet --skip-nonfinite", TRAIN,
      P.quote(ckpt), P.quote(out_dir)))
    assert.is_true(ok, out)
    assert.truthy(out:find("done: 5 iterations", 1, true), out)
    local _, meta2 = bptt.load(ckpt)
    assert.equal("5", meta2.iteration)
    assert.equal("2", meta2.skipped) -- iterations 4 and 5
  end)

  it("a run that diverges before its first checkpoint says there is none", function()
    local ok, out = P.run(string.format("%s --data %s %s --eval-every 10 --max-iters 50 --out %s", TRAIN,
      P.quote(corpus), DIVERGE, P.quote(dir .. "/early")))
    assert.is_false(ok, out)
    assert.truthy(out:find(DIVERGED, 1, true), out)
    assert.truthy(out:find("no checkpoint was written by this run", 1, true), out)
  end)

  it("with --skip-nonfinite it runs to the end; dropped steps stay out of the logged train loss", function()
    local out_dir = dir .. "/skip"
    local ok, out = P.run(string.format("%s --data %s %s --max-iters 6 --out %s --skip-nonfinite", TRAIN,
      P.quote(corpus), DIVERGE, P.quote(out_dir)))
    assert.is_true(ok, out)
    local _, meta = bptt.load(out_dir .. "/checkpoint.safetensors")
    assert.equal("6", meta.iteration)
    assert.equal("3", meta.skipped)
    local f = assert(io.open(out_dir .. "/log.csv"))
    f:read("*l")
    local rows = {}
    for line in f:lines() do rows[#rows + 1] = { line:match("^(%d+),([^,]*),") } end
    f:close()
    -- iteration 4's row: the mean over iteration 3 alone (4 was dropped)
    assert.equal("4", rows[2][1])
    assert.is_true(finite(tonumber(rows[2][2])), rows[2][2])
  end)

  -- A checkpoint poisoned by hand, resumed: the run stops at its next
  -- iteration, whichever kind of non-finite value the loss is.
  local function poisoned(name, poison)
    local good = dir .. "/good"
    local ckpt = good .. "/checkpoint.safetensors"
    local f = io.open(ckpt)
    if f then
      f:close()
    else
      assert(P.run(string.format("%s --data %s %s --max-iters 2 --out %s", TRAIN, P.quote(corpus), DIVERGE,
        P.quote(good))))
    end
    local tensors, meta = assert(bptt.load(ckpt))
    poison(tensors["model.decoder.bias"])
    local path = dir .. "/" .. name .. ".safetensors"
    assert(bptt.save(path, tensors, meta))
    return P.run(string.format("%s --resume %s --max-iters 5 --out %s", TRAIN, P.quote(path),
      P.quote(dir .. "/" .. name)))
  end
  local RESUMED = "iteration 3: diverged (a NaN or infinite loss or gradient): loss "

  it("a NaN weight: 'loss nan'", function()
    -- a NaN logit in every row: every row's log-sum-exp is NaN
    local ok, out = poisoned("nan_bias", function(b) b:set(1, 0 / 0) end)
    assert.is_false(ok, out)
    assert.truthy(out:find(RESUMED .. "nan", 1, true), out)
  end)

  it("an infinite weight: 'loss inf'", function()
    -- every logit -inf but the first class's: a row whose target is another
    -- class has a finite log-sum-exp and an infinite loss (the gradient stays
    -- finite: that class's probability is 0)
    local ok, out = poisoned("inf_bias", function(b)
      b:fill(-1 / 0)
      b:set(1, 0)
    end)
    assert.is_false(ok, out)
    assert.truthy(out:find(RESUMED .. "inf, gradient norm ", 1, true), out)
  end)
end)
