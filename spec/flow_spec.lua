-- The gradient-flow record (rnn:record_flow, rnn:flow): the norms of the seed's
-- sum, step by step, against PyTorch's retained gradients (spec/fixtures/flow_*.lua,
-- made by spec/fixtures/make_flow_fixtures.py), and its promises: off by default,
-- no change to any gradient, the same bits on every thread split.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local DIR = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "fixtures/"

local function load(name)
  local path = DIR .. name .. ".lua"
  local chunk, err = loadfile(path)
  assert(chunk, "fixture " .. path .. " missing (run spec/fixtures/make_flow_fixtures.py): " .. tostring(err))
  return chunk()
end

-- every element within rel of its own value (the norms span decades)
local function assert_each(got, want, rel, what)
  local g, w = N.flat(got), N.flat(want)
  assert.are.equal(#w, #g, what .. ": element count")
  for i = 1, #w do
    local err = math.abs(g[i] - w[i])
    assert(err <= rel * math.abs(w[i]) + 1e-300,
      string.format("%s[%d]: got %.17g, want %.17g (relative error %.3g > %g)", what, i, g[i], w[i],
        err / math.abs(w[i]), rel))
  end
end

local function same_bits(a, b, what)
  local x, y = N.flat(a), N.flat(b)
  assert.are.equal(#x, #y)
  for i = 1, #x do
    assert(x[i] == y[i], string.format("%s[%d]: %.17g ~= %.17g", what, i, x[i], y[i]))
  end
end

describe("rnn:flow() against PyTorch's retain_grad (float64, every element to 1e-9)", function()
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    for _, case in ipairs({ "l1", "l2", "l3", "l3n" }) do
      for _, dtype in ipairs({ "float64", "float32" }) do
        it(string.format("flow_%s_%s in %s", cell, case, dtype), function()
          local fx = load(string.format("flow_%s_%s", cell, case))
          local m = bptt.RNN{ cell = cell, input = fx.input, hidden = fx.hidden, layers = fx.layers,
            bias = fx.bias, dtype = dtype }
          local sd = {}
          for pname, t in pairs(fx.params) do sd[pname] = N.from_fixture(t) end
          m:load_state_dict(sd)
          local function T(key) return fx[key] and N.from_fixture(fx[key], dtype) end
          assert.is_nil(m:flow())
          m:record_flow(true)
          m:forward(T("x"), T("h0"), T("c0"))
          m:backward(T("dy"), T("dhT"), T("dcT"))
          local f = m:flow()
          assert.are.same({ fx.T, fx.layers }, f.dh:shape())
          assert.are.equal("float64", f.dh:dtype())
          if dtype == "float64" then
            assert_each(f.dh, fx.flow_dh, 1e-9, "dh")
            assert_each(f.dW, fx.flow_dW, 1e-9, "dW")
            if cell == "lstm" then assert_each(f.dc, fx.flow_dc, 1e-9, "dc") end
          else
            N.assert_rel(f.dh, fx.flow_dh, 1e-4, "dh")
            N.assert_rel(f.dW, fx.flow_dW, 1e-4, "dW")
            if cell == "lstm" then N.assert_rel(f.dc, fx.flow_dc, 1e-4, "dc") end
          end
          if cell ~= "lstm" then assert.is_nil(f.dc) end
        end)
      end
    end
  end
end)

describe("rnn:record_flow", function()
  local function run(cell, T, B, I, H, L, dtype, threads, flow)
    local old = bptt.num_threads()
    bptt.set_num_threads(threads)
    bptt.manual_seed(7)
    local m = bptt.RNN{ cell = cell, input = I, hidden = H, layers = L, dtype = dtype }
    local x, dy, dhT = bptt.randn(T, B, I, dtype), bptt.randn(T, B, H, dtype), bptt.randn(L, B, H, dtype)
    m:record_flow(flow)
    m:forward(x)
    local dx = m:backward(dy, dhT):clone()
    local _, grads = m:parameters()
    local g = {}
    for k, v in pairs(grads) do g[k] = v:clone() end
    bptt.set_num_threads(old)
    return m:flow(), dx, g
  end

  it("is off by default and changes no gradient when on (same bits)", function()
    for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
      for _, dtype in ipairs({ "float32", "float64" }) do
        local f0, dx0, g0 = run(cell, 9, 16, 5, 70, 2, dtype, 2, false)
        local f1, dx1, g1 = run(cell, 9, 16, 5, 70, 2, dtype, 2, true)
        assert.is_nil(f0)
        assert.is_table(f1)
        same_bits(dx1, dx0, cell .. " dx")
        for k, v in pairs(g0) do same_bits(g1[k], v, cell .. " " .. k) end
      end
    end
  end)

  it("repeats bit for bit on one thread count, and agrees to 1e-12 across 1, 2 and 3 threads", function()
    -- the norms are sums in a fixed order whatever the split; across thread counts the
    -- gradients themselves may differ in their last bits (README, Guarantees), the norms as much
    for _, shape in ipairs({ { 24, 96 }, { 2, 100 } }) do -- B >= 8 x threads: split by rows; else by units
      local B, H = shape[1], shape[2]
      for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
        local ref = run(cell, 7, B, 3, H, 2, "float64", 1, true)
        local again = run(cell, 7, B, 3, H, 2, "float64", 1, true)
        for _, k in ipairs({ "dh", "dc", "dW" }) do
          if ref[k] then same_bits(again[k], ref[k], string.format("%s %s again", cell, k)) end
        end
        for _, n in ipairs({ 2, 3 }) do
          local f = run(cell, 7, B, 3, H, 2, "float64", n, true)
          local f2 = run(cell, 7, B, 3, H, 2, "float64", n, true)
          for _, k in ipairs({ "dh", "dc", "dW" }) do
            if ref[k] then
              assert_each(f[k], ref[k], 1e-12, string.format("%s %s B = %d on %d threads", cell, k, B, n))
              same_bits(f2[k], f[k], string.format("%s %s B = %d on %d threads, again", cell, k, B, n))
            end
          end
        end
      end
    end
  end)

  it("gives dW[1] = ||dL/dW_hh|| over one step (the only term), by Gram matrices and by the product", function()
    for _, B in ipairs({ 2, 40 }) do -- B(G+1)H < 2GH^2: Gram matrices; else dG^T h itself
      for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
        local m = bptt.RNN{ cell = cell, input = 3, hidden = 8, layers = 2, dtype = "float64" }
        m:record_flow(true)
        m:forward(bptt.randn(1, B, 3, "float64"), bptt.randn(2, B, 8, "float64"))
        m:zero_grad()
        m:backward(bptt.randn(1, B, 8, "float64"))
        local _, grads = m:parameters()
        for l = 1, 2 do
          local want = grads["weight_hh_l" .. (l - 1)]:norm()
          local got = m:flow().dW:get(1, l)
          assert(math.abs(got - want) <= 1e-12 * want, string.format("%s B = %d layer %d: %.17g, want %.17g",
            cell, B, l, got, want))
        end
      end
    end
  end)

  it("measures dh as the norm of dy alone at a step nothing else reaches (one step, no dhT)", function()
    local m = bptt.RNN{ cell = "gru", input = 2, hidden = 3, dtype = "float64" }
    m:record_flow(true)
    m:forward(bptt.randn(1, 4, 2, "float64"))
    local dy = bptt.randn(1, 4, 3, "float64")
    m:backward(dy)
    assert.are.equal(dy:norm(), m:flow().dh:get(1, 1))
  end)

  it("is off again after record_flow(false), and rejects a non-boolean", function()
    local m = bptt.RNN{ cell = "tanh", input = 2, hidden = 3 }
    m:record_flow(true)
    m:forward(bptt.randn(2, 1, 2))
    m:backward(bptt.randn(2, 1, 3))
    assert.is_table(m:flow())
    m:record_flow(false)
    assert.is_nil(m:flow())
    assert.has_error(function() m:record_flow("yes") end,
      "bptt.RNN:record_flow: on must be true or false, got string 'yes'")
  end)
end)
