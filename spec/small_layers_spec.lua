-- The small layers of API.md "Small layers" (and Dropout, Concat, Parallel,
-- Select, Mean): forward against plain-Lua computations, a float64
-- gradcheck for each, the layer protocol, and the errors.
local bptt = require "bptt"
local N = require "helpers.nn_util"
local U = require "helpers.tensor_util"

local function flat(t) return t:contiguous():view(-1):totable() end

local function gradcheck(m, inputs)
  return N.assert_gradcheck(bptt.gradcheck(m, inputs, N.gradcheck_opts))
end

local function x64(...)
  bptt.manual_seed(3)
  return bptt.randn({ ... }, "float64")
end

describe("elementwise layers: Tanh, Sigmoid, ReLU, Identity", function()
  local REF = {
    Tanh = math.tanh, Sigmoid = function(v) return 1 / (1 + math.exp(-v)) end,
    ReLU = function(v) return v > 0 and v or 0 end, Identity = function(v) return v end,
  }
  for name, f in pairs(REF) do
    it(name .. ": forward against math, self.output, no parameters, float64 gradcheck", function()
      local m = bptt[name]{ dtype = "float64" }
      local x = x64(3, 2, 4)
      local y = m:forward(x)
      assert.are.equal(y, m.output)
      local xv, yv = flat(x), flat(y)
      for i = 1, #xv do assert(U.close(yv[i], f(xv[i]), 1e-15)) end
      local p = m:parameters()
      assert.is_nil(next(p))
      assert.are.equal(0, m:num_parameters())
      gradcheck(m, { x })
      gradcheck(bptt[name]{ dtype = "float64" }, { x:transpose(1, 3) })
    end)
  end

  it("float32 by default; the dtype is checked; backward wants forward first and dy of the output's shape", function()
    local m = bptt.Tanh{}
    assert.are.equal("float32", m.dtype)
    assert.has_error(function() m:forward(bptt.zeros(2, "float64")) end,
      "bptt.Tanh:forward: x must be float32 like the layer, got float64")
    local fresh = bptt.ReLU{}
    local _, err = pcall(fresh.backward, fresh, bptt.zeros(2))
    assert.truthy(err)
    assert.truthy(err:find("bptt.ReLU:backward: call forward first", 1, true))
    m:forward(bptt.zeros(2, 3))
    _, err = pcall(m.backward, m, bptt.zeros(3, 2))
    assert.truthy(err:find("bptt.Tanh:backward: dy must be 2 x 3, got 3 x 2", 1, true), err)
    _, err = pcall(bptt.Sigmoid, { dtype = "int32" })
    assert.truthy(err:find("bptt.Sigmoid: dtype", 1, true), err)
    _, err = pcall(bptt.Identity, { dim = 1 })
    assert.truthy(err:find("bptt.Identity: unknown option", 1, true), err)
  end)
end)

describe("Softmax, LogSoftmax", function()
  for _, name in ipairs { "Softmax", "LogSoftmax" } do
    it(name .. " along dim (default the last): values, float64 gradcheck along every dim", function()
      local x = x64(2, 3, 4)
      local y = bptt[name]{ dtype = "float64" }:forward(x)
      local want = name == "Softmax" and x:softmax(3) or x:log_softmax(3)
      assert.are.same(flat(want), flat(y))
      local rows = flat(bptt.exp(x):sum(3))
      local xv, yv = flat(x), flat(y)
      for i = 1, #xv do
        local r = rows[math.floor((i - 1) / 4) + 1]
        local v = name == "Softmax" and math.exp(xv[i]) / r or xv[i] - math.log(r)
        assert(U.close(yv[i], v, 1e-14), name .. " " .. i)
      end
      for _, d in ipairs { 1, 2, 3, -1 } do gradcheck(bptt[name]{ dim = d, dtype = "float64" }, { x }) end
      local _, err = pcall(bptt[name], { dim = 0 })
      assert.truthy(err)
      assert.truthy(err:find("dim", 1, true))
      local m = bptt[name]{ dim = 4 }
      _, err = pcall(m.forward, m, bptt.zeros(2, 3))
      assert.truthy(err:find("dim 4 is outside", 1, true), err)
    end)
  end
end)

describe("Dropout", function()
  it("zeroes with probability p and scales by 1 / (1 - p) in training; identity in evaluation; gradcheck", function()
    bptt.manual_seed(1)
    local m = bptt.Dropout{ p = 0.25, dtype = "float64" }
    local x = bptt.ones(200, 50, "float64")
    local y = m:forward(x)
    local zeros, kept = 0, 0
    for _, v in ipairs(flat(y)) do
      if v == 0 then zeros = zeros + 1 else kept = kept + 1 assert(math.abs(v - 4 / 3) < 1e-15) end
    end
    assert(zeros > 0.2 * 10000 and zeros < 0.3 * 10000, zeros)
    local dx = m:backward(bptt.ones(200, 50, "float64"))
    assert.are.same(flat(y), flat(dx))
    m:evaluate()
    assert.are.equal(x, m:forward(x))
    m:train()
    gradcheck(bptt.Dropout{ p = 0.5, dtype = "float64" }, { x64(3, 4) })
    assert.are.same({ 0, 0 }, bptt.Dropout{ p = 1 }:forward(bptt.ones(2)):totable())
    local _, err = pcall(bptt.Dropout, { p = 1.5 })
    assert.truthy(err:find("bptt.Dropout: p must be a number in [0, 1], got 1.5", 1, true), err)
    assert.are.equal(0.5, bptt.Dropout{}.p)
  end)
end)

describe("LayerNorm", function()
  it("has PyTorch's weight (ones) and bias (zeros) and normalizes the last dimension (eps 1e-5)", function()
    local m = bptt.LayerNorm{ dim = 4, dtype = "float64" }
    assert.are.same({ "weight", "bias" }, m:parameter_names())
    assert.are.same({ 1, 1, 1, 1 }, m.params.weight:totable())
    assert.are.same({ 0, 0, 0, 0 }, m.params.bias:totable())
    m.params.weight:copy(bptt.tensor({ 1, 2, -1, 0.5 }, "float64"))
    m.params.bias:copy(bptt.tensor({ 0, 1, 0, -1 }, "float64"))
    local x = x64(3, 2, 4)
    local y, xv = flat(m:forward(x)), flat(x)
    local w, b = { 1, 2, -1, 0.5 }, { 0, 1, 0, -1 }
    for r = 0, 5 do
      local mu, var = 0, 0
      for k = 1, 4 do mu = mu + xv[r * 4 + k] / 4 end
      for k = 1, 4 do var = var + (xv[r * 4 + k] - mu) ^ 2 / 4 end
      for k = 1, 4 do
        local want = (xv[r * 4 + k] - mu) / math.sqrt(var + 1e-5) * w[k] + b[k]
        assert(U.close(y[r * 4 + k], want, 1e-13), r .. " " .. k)
      end
    end
  end)

  it("passes a float64 gradcheck (input, weight, bias), accumulates gradients, checks its input", function()
    local m = bptt.LayerNorm{ dim = 5, dtype = "float64" }
    bptt.manual_seed(2)
    m.params.weight:normal()
    m.params.bias:normal()
    gradcheck(m, { x64(4, 5) })
    gradcheck(bptt.LayerNorm{ dim = 3, eps = 0.1, dtype = "float64" }, { x64(2, 3, 3):transpose(1, 2) })
    local l = bptt.LayerNorm{ dim = 2, dtype = "float64" }
    local x = x64(3, 2)
    l:forward(x)
    l:backward(bptt.ones(3, 2, "float64"))
    local g1 = flat(l.grads.bias)
    l:forward(x)
    l:backward(bptt.ones(3, 2, "float64"))
    assert.are.same({ 2 * g1[1], 2 * g1[2] }, flat(l.grads.bias))
    l:zero_grad()
    assert.are.same({ 0, 0 }, flat(l.grads.bias))
    local _, err = pcall(l.forward, l, bptt.zeros(3, 4, "float64"))
    assert.truthy(err:find("bptt.LayerNorm:forward: x must be ... x 2, got 3 x 4", 1, true), err)
    _, err = pcall(bptt.LayerNorm, {})
    assert.truthy(err:find("bptt.LayerNorm: dim must be a whole number", 1, true), err)
    assert.truthy(err)
  end)
end)

describe("Concat, Parallel", function()
  it("Concat runs every child on the same input and joins the outputs along dim; gradcheck", function()
    local a = bptt.Linear{ input = 4, output = 3, dtype = "float64" }
    local m = bptt.Concat{ a, bptt.Tanh{ dtype = "float64" }, dim = -1 }
    local x = x64(2, 5, 4)
    local y = m:forward(x)
    assert.are.same({ 2, 5, 7 }, y:shape())
    assert.are.same(flat(a:forward(x)), flat(y:narrow(3, 1, 3)))
    assert.are.same(flat(bptt.tanh(x)), flat(y:narrow(3, 4, 4)))
    assert.are.same({ "0.weight", "0.bias" }, m:parameter_names())
    gradcheck(m, { x })
    gradcheck(bptt.Concat{ bptt.Identity{ dtype = "float64" }, bptt.Sigmoid{ dtype = "float64" }, dim = 1 }, { x })
  end)

  it("Parallel runs child i on input i; backward returns one gradient per input; gradcheck", function()
    local m = bptt.Parallel{ bptt.Linear{ input = 4, output = 2, dtype = "float64" }, bptt.ReLU{ dtype = "float64" },
      dim = 2 }
    local x1, x2 = x64(3, 4), x64(3, 5)
    local y = m:forward(x1, x2)
    assert.are.same({ 3, 7 }, y:shape())
    local d1, d2 = m:backward(bptt.ones(3, 7, "float64"))
    assert.are.same({ 3, 4 }, d1:shape())
    assert.are.same({ 3, 5 }, d2:shape())
    gradcheck(m, { x1, x2 })
    local _, err = pcall(m.forward, m, x1)
    assert.truthy(err:find("bptt.Parallel:forward: expected 2 inputs (one per child), got 1", 1, true), err)
    _, err = pcall(m.forward, m, x1, x64(4, 5))
    assert.truthy(err:find("bptt.Parallel:forward", 1, true) and err:find("3x2", 1, true), err)
    _, err = pcall(bptt.Concat, { dim = 1 })
    assert.truthy(err:find("bptt.Concat: expected at least one module", 1, true), err)
    _, err = pcall(bptt.Concat, { bptt.Tanh{}, axis = 1 })
    assert.truthy(err:find("bptt.Concat: unknown option \"axis\"", 1, true), err)
  end)
end)

describe("Select, Mean over time", function()
  it("Select{dim, index} takes one step (default the last of dim 1); gradcheck", function()
    local x = x64(5, 2, 3)
    local m = bptt.Select{ dtype = "float64" }
    assert.are.same(flat(x[5]), flat(m:forward(x)))
    assert.are.same(flat(x[{ {}, 2 }]), flat(bptt.Select{ dim = 2, index = 2, dtype = "float64" }:forward(x)))
    gradcheck(m, { x })
    gradcheck(bptt.Select{ dim = -1, index = 1, dtype = "float64" }, { x })
    local _, err = pcall(bptt.Select{ index = 9 }.forward, bptt.Select{ index = 9 }, bptt.zeros(5, 2))
    assert.truthy(err:find("bptt.Select:forward: index 9 is outside dimension 1 of x (size 5)", 1, true), err)
  end)

  it("Mean{dim} averages over time (default dim 1); gradcheck", function()
    local x = x64(4, 2, 3)
    local y = bptt.Mean{ dtype = "float64" }:forward(x)
    local xv = flat(x)
    for p = 1, 6 do
      local s = 0
      for t = 0, 3 do s = s + xv[t * 6 + p] end
      assert(U.close(flat(y)[p], s / 4, 1e-15))
    end
    gradcheck(bptt.Mean{ dtype = "float64" }, { x })
    gradcheck(bptt.Mean{ dim = -1, dtype = "float64" }, { x })
  end)

  it("pool an RNN's T x B x H outputs for a classifier (Sequential of RNN, Mean, Linear, LogSoftmax)", function()
    bptt.manual_seed(7)
    local rnn = bptt.RNN{ cell = "gru", input = 3, hidden = 4, dtype = "float64" }
    local head = bptt.Sequential{ bptt.Mean{ dtype = "float64" },
      bptt.Linear{ input = 4, output = 2, dtype = "float64" },
      bptt.LogSoftmax{ dtype = "float64" } }
    local x = x64(6, 2, 3)
    local y = head:forward((rnn:forward(x)))
    assert.are.same({ 2, 2 }, y:shape())
    assert(U.close(flat(bptt.exp(y):sum(2))[1], 1, 1e-14))
    gradcheck(head, { rnn:forward(x):clone() })
  end)
end)
