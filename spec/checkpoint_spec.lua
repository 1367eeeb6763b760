-- Memory-bounded BPTT: bptt.RNN{..., checkpoint = k | "sqrt"} keeps the state every k
-- steps and recomputes each segment in backward.  Its promise is the same bits as full
-- BPTT -- outputs, final states, every gradient, the flow record -- for every cell,
-- dtype, k (T a multiple of k or not, T < k), batch (blocks of steps that straddle the
-- segments or not) and thread split.
local bptt = require "bptt"

local function same_bits(a, b, what)
  assert.are.same(b:shape(), a:shape(), what .. ": shape")
  local x, y = a:view(-1), b:view(-1)
  for i = 1, x:numel() do
    local u, v = x:get(i), y:get(i)
    assert(u == v, string.format("%s[%d]: %.17g ~= %.17g", what, i, u, v))
  end
end

-- forward + backward (with h0, c0, dy, dhT, dcT, the flow record on), all outputs cloned
local function run(o)
  local old = bptt.num_threads()
  bptt.set_num_threads(o.threads or 1)
  bptt.manual_seed(11)
  local lstm = o.cell == "lstm"
  local m = bptt.RNN{ cell = o.cell, input = 3, hidden = o.H, layers = o.layers or 2, checkpoint = o.k,
    dtype = o.dtype, dropout = o.dropout }
  local L, T, B, H, dt = o.layers or 2, o.T, o.B, o.H, o.dtype
  local x, dy = bptt.randn(T, B, 3, dt), bptt.randn(T, B, H, dt)
  local h0, c0 = bptt.randn(L, B, H, dt), lstm and bptt.randn(L, B, H, dt) or nil
  local dhT, dcT = bptt.randn(L, B, H, dt), lstm and bptt.randn(L, B, H, dt) or nil
  m:record_flow(true)
  local y, hT, cT = m:forward(x, h0, c0)
  local out = { y = y:clone(), hT = hT:clone(), cT = cT and cT:clone() }
  m:zero_grad()
  local dx, dh0, dc0 = m:backward(dy, dhT, dcT)
  out.dx, out.dh0, out.dc0 = dx:clone(), dh0:clone(), dc0 and dc0:clone()
  local _, grads = m:parameters()
  for n, g in pairs(grads) do out[n] = g:clone() end
  for n, t in pairs(m:flow()) do out["flow." .. n] = t end
  bptt.set_num_threads(old)
  return out
end

local function check(o, ks)
  local ref = run(o)
  for _, k in ipairs(ks) do
    o.k = k
    local got = run(o)
    local n = 0
    for name, t in pairs(ref) do
      assert(got[name], name .. " missing with checkpoint")
      same_bits(got[name], t, string.format("%s %s T=%d B=%d k=%s %s", o.cell, o.dtype, o.T, o.B, tostring(k), name))
      n = n + 1
    end
    assert.is_true(n >= 10)
    o.k = nil
  end
end

describe("bptt.RNN{checkpoint = k}", function()
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    for _, dtype in ipairs({ "float32", "float64" }) do
      it(cell .. " in " .. dtype .. ": the same bits as full BPTT for k = 1, 2, 5, 16, T, T + 3, sqrt", function()
        -- B = 3: blocks of 171 steps (one); B = 40: blocks of 13 steps, straddling the segments
        for _, B in ipairs({ 3, 40 }) do
          for _, T in ipairs({ 1, 7, 37 }) do
            check({ cell = cell, dtype = dtype, T = T, B = B, H = 6 }, { 1, 2, 5, 16, T, T + 3, "sqrt" })
          end
        end
      end)
    end
    it(cell .. ": the same bits on 2 threads, the recursion split by rows and by units", function()
      check({ cell = cell, dtype = "float32", T = 29, B = 32, H = 64, threads = 2 }, { 4, "sqrt" })
      check({ cell = cell, dtype = "float32", T = 29, B = 2, H = 70, threads = 2 }, { 3, 30 })
    end)
  end

  it("keeps dropout's masks: the same bits in training mode", function()
    check({ cell = "lstm", dtype = "float32", T = 21, B = 4, H = 8, layers = 3, dropout = 0.3 }, { 4 })
  end)

  it("with carry_state: the same bits over consecutive batches", function()
    local function go(k)
      bptt.manual_seed(5)
      local m = bptt.RNN{ cell = "gru", input = 2, hidden = 5, carry_state = true, checkpoint = k }
      local outs = {}
      for i = 1, 3 do
        local y = m:forward(bptt.randn(9, 2, 2))
        m:backward(bptt.randn(9, 2, 5))
        outs[i] = y:clone()
      end
      local _, g = m:parameters()
      outs[4] = g.weight_hh_l0:clone()
      return outs
    end
    local a, b = go(nil), go(4)
    for i = 1, 4 do same_bits(b[i], a[i], "batch " .. i) end
  end)

  it("needs memory O((T/k + k) B H G), not O(T B H G)", function()
    for _, cell in ipairs({ "lstm", "gru", "tanh" }) do
      local T, B, H = 10000, 8, 32
      local c0, s0 = bptt.core.rnn_sizes(cell, T, B, H, H)
      local c1, s1 = bptt.core.rnn_sizes(cell, T, B, H, H, 100)
      assert.is_true(c1 + s1 < (c0 + s0) / 10, cell)
      -- at k = 100, T = 10000: 100 saved states and a window of at most 100 + 2 blocks
      local S = 64 -- blocks of 512 / B steps
      assert.is_true(c1 + s1 <= (100 + (100 + 2 * S) * 9 + 5) * B * H, cell)
    end
  end)

  it("in a LanguageModel: the same bits, and memory_estimate counts it", function()
    local function go(k)
      bptt.manual_seed(8)
      local lm = bptt.LanguageModel{ vocab = 11, embed = 4, cell = "lstm", hidden = 6, layers = 2, checkpoint = k }
      local ids = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 }, { 10, 11, 1 }, { 2, 3, 4 } }, "int32")
      local logits = lm:forward(ids)
      lm:zero_grad()
      lm:backward(bptt.randn(5, 3, 11) * 0.1)
      local _, grad = lm:flat_parameters()
      return logits:clone(), grad:clone(), lm
    end
    local l0, g0, lm0 = go(nil)
    local l1, g1, lm1 = go(2)
    same_bits(l1, l0, "logits")
    same_bits(g1, g0, "gradients")
    assert.is_true(lm1:memory_estimate(10000, 8) < lm0:memory_estimate(10000, 8))
    assert.is_true(lm1:memory_estimate(10000, 8) > lm0:memory_estimate(10000, 8) / 10)
  end)

  it("rejects a bad checkpoint, naming it", function()
    for _, bad in ipairs({ 0, -1, 1.5, "cube", true, 2 ^ 60 }) do
      assert.has_error(function() bptt.RNN{ cell = "lstm", input = 2, hidden = 3, checkpoint = bad } end)
      local ok, err = pcall(bptt.RNN, { cell = "lstm", input = 2, hidden = 3, checkpoint = bad })
      assert.is_false(ok)
      assert.truthy(tostring(err):find('bptt.RNN: checkpoint must be an integer >= 1 or "sqrt"', 1, true),
        tostring(err))
    end
  end)

  it("picks k = ceil(sqrt(T)) per call for \"sqrt\"", function()
    local m = bptt.RNN{ cell = "tanh", input = 2, hidden = 3, checkpoint = "sqrt" }
    assert.are.equal(10, m:checkpoint_steps(100))
    assert.are.equal(11, m:checkpoint_steps(101))
    assert.are.equal(1, m:checkpoint_steps(1))
    assert.are.equal(0, bptt.RNN{ cell = "tanh", input = 2, hidden = 3 }:checkpoint_steps(100))
  end)
end)
