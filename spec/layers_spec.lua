-- bptt.Linear, bptt.Embedding, bptt.CrossEntropy, bptt.MSE: the contract of
-- API.md "Layers", each layer against a plain-Lua computation, gradcheck for
-- each, accumulation of parameter gradients, and the errors.
local bptt = require "bptt"
local N = require "helpers.nn_util"

--- The rows (last dimension) of a tensor as a Lua list of lists.
local function rows(t)
  local s = t:shape()
  local n = s[#s]
  local flat, out = N.flat(t), {}
  for r = 1, #flat / n do
    local row = {}
    for j = 1, n do row[j] = flat[(r - 1) * n + j] end
    out[r] = row
  end
  return out
end

--- A float64 tensor of the given shape from a flat Lua list.
local function from(list, shape, dtype)
  return bptt.tensor(list, dtype or "float64"):view(shape)
end

describe("bptt.Linear", function()
  it("has PyTorch's parameters weight (output x input) and bias (output), init uniform(+-1/sqrt(input))", function()
    bptt.manual_seed(1)
    local m = bptt.Linear{ input = 16, output = 40, dtype = "float64" }
    assert.are.same({ "weight", "bias" }, m:parameter_names())
    local p, g = m:parameters()
    assert.are.same({ 40, 16 }, p.weight:shape())
    assert.are.same({ 40 }, p.bias:shape())
    assert.are.same({ 40, 16 }, g.weight:shape())
    local k = 1 / math.sqrt(16)
    for name, t in pairs(p) do
      assert.is_true(t:max() <= k and t:min() >= -k, name)
      assert.is_true(t:max() > 0.8 * k and t:min() < -0.8 * k, name .. " spread over the range")
    end
    local nb = bptt.Linear{ input = 3, output = 2, bias = false }
    assert.are.same({ "weight" }, nb:parameter_names())
    assert.are.equal("float32", nb.dtype)
  end)

  it("rejects bad options", function()
    N.error_with({ "bptt.Linear", "output must be a whole number >= 1, got nil" }, bptt.Linear, { input = 3 })
    N.error_with({ "bptt.Linear", 'unknown option "outputs"' }, bptt.Linear, { input = 3, outputs = 2 })
    N.error_with({ "bptt.Linear", "bias must be true or false, got string 'no'" }, bptt.Linear,
      { input = 3, output = 2, bias = "no" })
    N.error_with({ "bptt.Linear", 'dtype must be "float32" or "float64", got float16' }, bptt.Linear,
      { input = 3, output = 2, dtype = "float16" })
  end)

  -- x of 1 to 4 dimensions: y = W x + b on the last one
  for _, shape in ipairs({ { 3 }, { 5, 3 }, { 4, 2, 3 }, { 2, 3, 2, 3 } }) do
    local what = table.concat(shape, " x ")
    it("forward and backward over x of shape " .. what .. " match the plain formulas", function()
      bptt.manual_seed(2)
      local In, Out = 3, 4
      local m = bptt.Linear{ input = In, output = Out, dtype = "float64" }
      local p = m:parameters()
      local W, b = rows(p.weight), N.flat(p.bias)
      local x = bptt.randn(shape, "float64")
      local y = m:forward(x)
      local out_shape = {}
      for i = 1, #shape - 1 do out_shape[i] = shape[i] end
      out_shape[#shape] = Out
      assert.are.same(out_shape, y:shape())
      local xr, want = rows(x), {}
      for r = 1, #xr do
        for o = 1, Out do
          local s = b[o]
          for i = 1, In do s = s + W[o][i] * xr[r][i] end
          want[#want + 1] = s
        end
      end
      N.assert_rel(y, from(want, out_shape), 1e-15, "y")

      local dy = bptt.randn(out_shape, "float64")
      m:zero_grad()
      local dx = m:backward(dy)
      assert.are.same(shape, dx:shape())
      local dyr = rows(dy)
      local wdx, wdW, wdb = {}, {}, {}
      for o = 1, Out do
        wdb[o] = 0
        for i = 1, In do wdW[(o - 1) * In + i] = 0 end
      end
      for r = 1, #xr do
        for i = 1, In do
          local s = 0
          for o = 1, Out do s = s + dyr[r][o] * W[o][i] end
          wdx[#wdx + 1] = s
        end
        for o = 1, Out do
          wdb[o] = wdb[o] + dyr[r][o]
          for i = 1, In do wdW[(o - 1) * In + i] = wdW[(o - 1) * In + i] + dyr[r][o] * xr[r][i] end
        end
      end
      local _, g = m:parameters()
      N.assert_rel(dx, from(wdx, shape), 1e-15, "dx")
      N.assert_rel(g.weight, from(wdW, { Out, In }), 1e-15, "dweight")
      N.assert_rel(g.bias, from(wdb, { Out }), 1e-15, "dbias")
    end)

    it("gradcheck over x of shape " .. what, function()
      bptt.manual_seed(3)
      local m = bptt.Linear{ input = 3, output = 4, dtype = "float64" }
      local r = N.assert_gradcheck(bptt.gradcheck(m, { bptt.randn(shape, "float64") }, N.gradcheck_opts))
      assert.is_number(r.errors.weight)
      assert.is_number(r.errors.bias)
      assert.is_number(r.errors["input 1"])
    end)
  end

  it("bias = false: y = W x, gradcheck exact", function()
    bptt.manual_seed(4)
    local m = bptt.Linear{ input = 3, output = 2, bias = false, dtype = "float64" }
    local x = bptt.randn(5, 3, "float64")
    N.assert_rel(m:forward(x), bptt.matmul(x, m:parameters().weight:t()), 1e-15, "y")
    N.assert_gradcheck(bptt.gradcheck(m, { x }, N.gradcheck_opts))
  end)

  it("takes a non-contiguous x", function()
    bptt.manual_seed(5)
    local m = bptt.Linear{ input = 3, output = 2, dtype = "float64" }
    local xt = bptt.randn(3, 6, "float64"):t()        -- 6 x 3, transposed view
    assert.is_false(xt:is_contiguous())
    local want = m:forward(xt:contiguous()):clone()
    N.assert_equal(m:forward(xt), want, "y")
  end)

  it("accumulates parameter gradients over backward passes; zero_grad resets", function()
    bptt.manual_seed(6)
    local m = bptt.Linear{ input = 3, output = 4, dtype = "float64" }
    local x, dy = bptt.randn(2, 5, 3, "float64"), bptt.randn(2, 5, 4, "float64")
    m:forward(x)
    m:zero_grad()
    local dx1 = m:backward(dy):clone()
    local g1 = N.snapshot(m, true)
    assert.is_true(g1:norm() > 0)
    local dx2 = m:backward(dy)
    N.assert_rel(N.snapshot(m, true), g1 * 2, 1e-15, "two backward passes")
    N.assert_equal(dx2, dx1, "dx is not accumulated")
    m:zero_grad()
    assert.are.equal(0, N.snapshot(m, true):norm())
  end)

  it("NaN in x propagates to its own row of y and into dweight, no error", function()
    bptt.manual_seed(7)
    local m = bptt.Linear{ input = 3, output = 2, dtype = "float64" }
    local x = bptt.randn(3, 3, "float64")
    x:set(2, 2, 0 / 0)
    local y = m:forward(x)
    assert.is_true(N.has_nan(y:select(1, 2)))
    assert.is_true(N.all_finite(y:select(1, 1)) and N.all_finite(y:select(1, 3)))
    local dx = m:backward(bptt.ones(3, 2, "float64"))
    assert.is_true(N.all_finite(dx))
    assert.is_true(N.has_nan((select(2, m:parameters())).weight))
  end)

  it("errors: wrong last dimension, dtype mix, not a tensor, backward first, dy of the wrong shape", function()
    local m = bptt.Linear{ input = 3, output = 2, dtype = "float64" }
    N.error_with({ "bptt.Linear:backward: call forward first" }, m.backward, m, bptt.zeros(2, "float64"))
    N.error_with({ "bptt.Linear:forward: x must be ... x 3, got 4 x 5" }, m.forward, m, bptt.zeros(4, 5, "float64"))
    N.error_with({ "bptt.Linear:forward: x must be float64 like the layer, got float32" },
      m.forward, m, bptt.zeros(4, 3, "float32"))
    N.error_with({ "bptt.Linear:forward: x must be a tensor, got number" }, m.forward, m, 3)
    m:forward(bptt.zeros(4, 3, "float64"))
    N.error_with({ "bptt.Linear:backward: dy must be 4 x 2, got 2 x 4" }, m.backward, m, bptt.zeros(2, 4, "float64"))
    N.error_with({ "bptt.Linear:backward: dy must be float64 like the layer, got float32" },
      m.backward, m, bptt.zeros(4, 2, "float32"))
  end)
end)

describe("bptt.Embedding", function()
  it("has PyTorch's parameter weight (vocab x dim), init N(0, 1)", function()
    bptt.manual_seed(10)
    local m = bptt.Embedding{ vocab = 100, dim = 50, dtype = "float64" }
    assert.are.same({ "weight" }, m:parameter_names())
    local w = m:parameters().weight
    assert.are.same({ 100, 50 }, w:shape())
    local n = w:numel()
    local mean = w:mean()
    local sd = math.sqrt(w:norm() ^ 2 / n - mean ^ 2)
    assert.is_true(math.abs(mean) < 0.05, "mean " .. mean)
    assert.is_true(math.abs(sd - 1) < 0.05, "sd " .. sd)
    N.error_with({ "bptt.Embedding", "vocab must be a whole number >= 1, got 0" }, bptt.Embedding,
      { vocab = 0, dim = 2 })
    N.error_with({ "bptt.Embedding", 'unknown option "size"' }, bptt.Embedding, { vocab = 3, dim = 2, size = 1 })
  end)

  it("forward(ids) picks rows of weight by 1-based id; ids of any shape", function()
    bptt.manual_seed(11)
    local V, D = 5, 3
    local m = bptt.Embedding{ vocab = V, dim = D, dtype = "float64" }
    local W = rows(m:parameters().weight)
    for _, case in ipairs({
      { { 3 }, { 1, 5, 2 } },
      { { 2, 3 }, { 1, 2, 3, 4, 5, 1 } },
      { { 2, 2, 2 }, { 5, 4, 3, 2, 1, 1, 2, 5 } },
    }) do
      local shape, list = case[1], case[2]
      local ids = bptt.tensor(list, "int32"):view(shape)
      local y = m:forward(ids)
      local want_shape = { unpack(shape) }
      want_shape[#want_shape + 1] = D
      assert.are.same(want_shape, y:shape())
      local want = {}
      for _, id in ipairs(list) do
        for j = 1, D do want[#want + 1] = W[id][j] end
      end
      N.assert_equal(y, from(want, want_shape), "rows for ids " .. table.concat(list, ","))
    end
  end)

  it("takes ids as int32, as floats holding whole numbers, and non-contiguous", function()
    bptt.manual_seed(12)
    local m = bptt.Embedding{ vocab = 6, dim = 2, dtype = "float64" }
    local list = { 1, 6, 3, 3, 2, 4 }
    local want = m:forward(bptt.tensor(list, "int32"):view(2, 3)):clone()
    N.assert_equal(m:forward(bptt.tensor(list, "float64"):view(2, 3)), want, "float64 ids")
    N.assert_equal(m:forward(bptt.tensor(list, "float32"):view(2, 3)), want, "float32 ids")
    local tr = bptt.tensor({ 1, 3, 6, 2, 3, 4 }, "int32"):view(3, 2):t()   -- the same ids, transposed
    assert.is_false(tr:is_contiguous())
    N.assert_equal(m:forward(tr), want, "non-contiguous ids")
  end)

  it("an id out of range is an error naming the id and its position", function()
    local m = bptt.Embedding{ vocab = 5, dim = 2 }
    N.error_with({ "bptt.Embedding:forward: ids[2][2] is 0, expected 1..5" },
      m.forward, m, bptt.tensor({ { 1, 2, 3 }, { 4, 0, 2 } }, "int32"))
    N.error_with({ "bptt.Embedding:forward: ids[1][3] is 6, expected 1..5" },
      m.forward, m, bptt.tensor({ { 1, 2, 6 }, { 4, 7, 2 } }, "int32"))
    N.error_with({ "bptt.Embedding:forward: ids[4] is -1, expected 1..5" },
      m.forward, m, bptt.tensor({ 1, 2, 3, -1 }, "float64"))
    N.error_with({ "bptt.Embedding:forward: ids[2][1] is 2.5, expected a whole number" },
      m.forward, m, bptt.tensor({ { 1, 2 }, { 2.5, 1 } }, "float64"))
    N.error_with({ "bptt.Embedding:forward: ids must be a tensor, got table" }, m.forward, m, { 1, 2 })
  end)

  it("backward adds dy into the rows of the ids; repeated ids accumulate", function()
    bptt.manual_seed(13)
    local V, D = 5, 2
    local m = bptt.Embedding{ vocab = V, dim = D, dtype = "float64" }
    local ids = bptt.tensor({ { 2, 2 }, { 5, 2 } }, "int32")
    m:forward(ids)
    local dy = bptt.randn(2, 2, D, "float64")
    local d = rows(dy)
    m:zero_grad()
    assert.is_nil(m:backward(dy))        -- ids have no gradient
    local want = {}
    for i = 1, V * D do want[i] = 0 end
    for j = 1, D do
      want[D + j] = d[1][j] + d[2][j] + d[4][j]     -- id 2, three times
      want[4 * D + j] = d[3][j]                      -- id 5
    end
    N.assert_rel((select(2, m:parameters())).weight, from(want, { V, D }), 1e-15, "dweight")
  end)

  it("gradcheck (weight), with repeated ids", function()
    bptt.manual_seed(14)
    local m = bptt.Embedding{ vocab = 4, dim = 3, dtype = "float64" }
    local ids = bptt.tensor({ { 1, 4 }, { 4, 2 }, { 1, 1 } }, "int32")
    local r = N.assert_gradcheck(bptt.gradcheck(m, { ids }, N.gradcheck_opts))
    assert.is_number(r.errors.weight)
  end)

  it("accumulates over backward passes; zero_grad resets", function()
    bptt.manual_seed(15)
    local m = bptt.Embedding{ vocab = 4, dim = 3, dtype = "float64" }
    m:forward(bptt.tensor({ 1, 3, 3 }, "int32"))
    local dy = bptt.randn(3, 3, "float64")
    m:zero_grad()
    m:backward(dy)
    local g1 = N.snapshot(m, true)
    m:backward(dy)
    N.assert_equal(N.snapshot(m, true), g1 * 2, "two backward passes")
    m:zero_grad()
    assert.are.equal(0, N.snapshot(m, true):norm())
  end)

  it("errors: backward first, dy of the wrong shape or dtype", function()
    local m = bptt.Embedding{ vocab = 4, dim = 3, dtype = "float64" }
    N.error_with({ "bptt.Embedding:backward: call forward first" }, m.backward, m, bptt.zeros(2, 3, "float64"))
    m:forward(bptt.tensor({ 1, 2 }, "int32"))
    N.error_with({ "bptt.Embedding:backward: dy must be 2 x 3, got 3 x 2" }, m.backward, m, bptt.zeros(3, 2, "float64"))
    N.error_with({ "bptt.Embedding:backward: dy must be float64 like the layer, got float32" },
      m.backward, m, bptt.zeros(2, 3, "float32"))
  end)
end)

--- The reference: log-softmax of one row by the textbook formula, shifted by
-- the max (the unshifted one overflows on large logits).
local function log_softmax(row)
  local m = -math.huge
  for _, v in ipairs(row) do if v > m then m = v end end
  local s = 0
  for _, v in ipairs(row) do s = s + math.exp(v - m) end
  local out = {}
  for j, v in ipairs(row) do out[j] = (v - m) - math.log(s) end
  return out
end

--- loss and dlogits (flat list) of cross-entropy over rows, by the reference.
local function ce_reference(lrows, targets, reduction, ignore)
  local loss, count, grads = 0, 0, {}
  for i, row in ipairs(lrows) do
    if targets[i] ~= ignore then
      loss = loss - log_softmax(row)[targets[i]]
      count = count + 1
    end
  end
  local scale = reduction == "sum" and 1 or (count > 0 and 1 / count or 0)
  for i, row in ipairs(lrows) do
    local lp = log_softmax(row)
    for j = 1, #row do
      local g = 0
      if targets[i] ~= ignore then g = (math.exp(lp[j]) - (j == targets[i] and 1 or 0)) * scale end
      grads[#grads + 1] = g
    end
  end
  if reduction == "mean" then loss = count > 0 and loss / count or 0 end
  return loss, grads
end

describe("bptt.CrossEntropy", function()
  local TT, BB, C = 3, 2, 5
  local targets = { 1, 5, 3, 2, 5, 4 }

  for _, reduction in ipairs({ "mean", "sum" }) do
    it("reduction = " .. reduction .. ": loss and dlogits match a plain-Lua log-softmax", function()
      bptt.manual_seed(20)
      local logits = bptt.randn(TT, BB, C, "float64") * 3
      local ce = bptt.CrossEntropy{ reduction = reduction }
      local loss = ce:forward(logits, bptt.tensor(targets, "int32"):view(TT, BB))
      assert.is_number(loss)
      local wl, wg = ce_reference(rows(logits), targets, reduction)
      assert.is_true(math.abs(loss - wl) <= 1e-14 * math.abs(wl), "loss " .. loss .. ", want " .. wl)
      local d = ce:backward()
      N.assert_rel(d, from(wg, { TT, BB, C }), 1e-14, "dlogits")
      N.assert_rel(ce:backward(2.5), from(wg, { TT, BB, C }) * 2.5, 1e-14, "dlogits for gout 2.5")
    end)

    it("reduction = " .. reduction .. ": gradcheck", function()
      bptt.manual_seed(21)
      local ce = bptt.CrossEntropy{ reduction = reduction }
      local r = N.assert_gradcheck(bptt.gradcheck(ce, { bptt.randn(TT, BB, C, "float64"),
        bptt.tensor(targets, "int32"):view(TT, BB) }, N.gradcheck_opts))
      assert.is_number(r.errors["input 1"])
    end)
  end

  it("defaults to mean; takes targets as whole floats", function()
    bptt.manual_seed(22)
    local logits = bptt.randn(TT * BB, C, "float64")
    local mean = bptt.CrossEntropy():forward(logits, bptt.tensor(targets, "int32"))
    local sum = bptt.CrossEntropy{ reduction = "sum" }:forward(logits, bptt.tensor(targets, "int32"))
    assert.is_true(math.abs(mean - sum / #targets) <= 1e-15 * sum)
    assert.are.equal(mean, bptt.CrossEntropy():forward(logits, bptt.tensor(targets, "float64")))
    assert.are.equal(mean, bptt.CrossEntropy():forward(logits, bptt.tensor(targets, "float32")))
  end)

  it("ignore_index: those positions count for nothing, in the loss, the mean and the gradient", function()
    bptt.manual_seed(23)
    local logits = bptt.randn(TT, BB, C, "float64")
    for _, ignore in ipairs({ 0, 5 }) do            -- a padding id outside 1..C, and a class id
      local t = { 1, ignore, 3, ignore, 2, 4 }
      for _, reduction in ipairs({ "mean", "sum" }) do
        local ce = bptt.CrossEntropy{ reduction = reduction, ignore_index = ignore }
        local loss = ce:forward(logits, bptt.tensor(t, "int32"):view(TT, BB))
        local wl, wg = ce_reference(rows(logits), t, reduction, ignore)
        assert.is_true(math.abs(loss - wl) <= 1e-14 * math.abs(wl), reduction .. " loss, ignore " .. ignore)
        N.assert_rel(ce:backward(), from(wg, { TT, BB, C }), 1e-14, reduction .. " dlogits, ignore " .. ignore)
      end
      local ce = bptt.CrossEntropy{ ignore_index = ignore }
      N.assert_gradcheck(bptt.gradcheck(ce, { logits, bptt.tensor(t, "int32"):view(TT, BB) }, N.gradcheck_opts))
    end
    -- every position ignored: loss 0 and gradient 0 (PyTorch: NaN)
    local ce = bptt.CrossEntropy{ ignore_index = 0 }
    assert.are.equal(0, ce:forward(logits, bptt.zeros(TT, BB, "int32")))
    assert.are.equal(0, ce:backward():norm())
  end)

  for _, dtype in ipairs({ "float64", "float32" }) do
    it("huge logits give the exact finite loss and gradient (" .. dtype .. ")", function()
      local ce = bptt.CrossEntropy{ reduction = "sum" }
      local logits = bptt.tensor({ { 1e30, 0, -1e30 }, { 1e30, 0, -1e30 }, { 1000, 1000, -1000 },
        { -1e30, -1e30, -1e30 } }, dtype)
      local loss = ce:forward(logits, bptt.tensor({ 1, 2, 2, 3 }, "int32"))
      -- 0 + 1e30 + log 2 + log 3, with 1e30 as the dtype holds it
      local big = logits:get(1, 1)
      local want = big + math.log(2) + math.log(3)
      assert.is_true(math.abs(loss - want) <= 1e-15 * want, "loss " .. loss)
      local d = ce:backward()
      assert.is_true(N.all_finite(d))
      local lg = logits:to("float64")
      local wl, wg = ce_reference(rows(lg), { 1, 2, 2, 3 }, "sum")
      N.assert_rel(d, from(wg, { 4, 3 }), dtype == "float64" and 1e-15 or 1e-6, "dlogits")
      assert.is_true(math.abs(loss - wl) <= 1e-15 * wl)
      -- the unshifted textbook formula overflows here: the test is not vacuous
      assert.are.equal(math.huge, math.exp(1000))
    end)
  end

  it("a NaN logit gives a NaN loss and gradient in its row, no error", function()
    local ce = bptt.CrossEntropy()
    local logits = bptt.tensor({ { 1, 0 / 0, 2 }, { 1, 2, 3 } }, "float64")
    local loss = ce:forward(logits, bptt.tensor({ 1, 2 }, "int32"))
    assert.is_true(loss ~= loss)
    local d = ce:backward()
    assert.is_true(N.has_nan(d:select(1, 1)))
    assert.is_true(N.all_finite(d:select(1, 2)))
  end)

  it("errors: targets of the wrong shape, out of range (naming value and position), not whole", function()
    local ce = bptt.CrossEntropy()
    local logits = bptt.zeros(2, 3, 5, "float64")
    N.error_with({ "bptt.CrossEntropy:forward: targets must be 2 x 3, got 3 x 2" },
      ce.forward, ce, logits, bptt.ones(3, 2, "int32"))
    N.error_with({ "bptt.CrossEntropy:forward: targets must be 2 x 3, got 6" }, ce.forward, ce, logits,
      bptt.ones(6, "int32"))
    N.error_with({ "bptt.CrossEntropy:forward: targets[2][1] is 6, expected 1..5" },
      ce.forward, ce, logits, bptt.tensor({ { 1, 2, 3 }, { 6, 0, 1 } }, "int32"))
    N.error_with({ "bptt.CrossEntropy:forward: targets[1][3] is 0, expected 1..5" },
      ce.forward, ce, logits, bptt.tensor({ { 1, 2, 0 }, { 1, 1, 1 } }, "float64"))
    N.error_with({ "bptt.CrossEntropy:forward: targets[1][2] is 1.5, expected a whole number" },
      ce.forward, ce, logits, bptt.tensor({ { 1, 1.5, 1 }, { 1, 1, 1 } }, "float64"))
    N.error_with({ "bptt.CrossEntropy:forward: targets must be a tensor, got table" },
      ce.forward, ce, logits, { { 1, 1, 1 }, { 1, 1, 1 } })
    N.error_with({ "bptt.CrossEntropy:forward: logits must be float32 or float64, got int32" },
      ce.forward, ce, bptt.zeros(2, 3, "int32"), bptt.ones(2, "int32"))
    N.error_with({ "bptt.CrossEntropy:forward: logits must be a tensor, got nil" }, ce.forward, ce)
    N.error_with({ "bptt.CrossEntropy:backward: call forward first" }, ce.backward, ce)
    N.error_with({ 'bptt.CrossEntropy: reduction must be "mean", "sum" or "none", got max' },
      bptt.CrossEntropy, { reduction = "max" })
    N.error_with({ "bptt.CrossEntropy", 'unknown option "weight"' }, bptt.CrossEntropy, { weight = 1 })
    for _, bad in ipairs({ 0.5, 2 ^ 31, -2 ^ 31, "0" }) do
      N.error_with({ "bptt.CrossEntropy: ignore_index must be a whole number in int32's range" },
        bptt.CrossEntropy, { ignore_index = bad })
    end
    assert.are.equal(-2 ^ 31 + 1, bptt.CrossEntropy{ ignore_index = -2 ^ 31 + 1 }.ignore_index)
    ce:forward(logits, bptt.ones(2, 3, "int32"))
    N.error_with({ "bptt.CrossEntropy:backward: gout must be a number, got table" }, ce.backward, ce, {})
  end)
end)

describe("bptt.CrossEntropy over many rows, split over the library's threads", function()
  -- 2048 x 65 logits: above the size from which the rows are split
  it("gives the loss to 1e-12 and the very same gradient on 1 and 2 threads, ignore_index included", function()
    local before = bptt.num_threads()
    for _, dt in ipairs({ "float32", "float64" }) do
      bptt.manual_seed(9)
      local logits = bptt.randn(64, 32, 65, dt):mul(3)
      local targets = bptt.zeros(64, 32, "int32")
      for t = 1, 64 do
        for b = 1, 32 do targets:set(t, b, (t * 7 + b * 3) % 66) end -- 0 = ignored
      end
      local out = {}
      for _, threads in ipairs({ 1, 2 }) do
        bptt.set_num_threads(threads)
        local ce = bptt.CrossEntropy{ ignore_index = 0 }
        local loss = ce:forward(logits, targets)
        out[threads] = { loss = loss, grad = ce:backward():clone() }
      end
      bptt.set_num_threads(before)
      assert.is_true(math.abs(out[1].loss - out[2].loss) <= 1e-12 * math.abs(out[1].loss), dt .. " loss")
      assert.are.equal(0, (out[1].grad - out[2].grad):norm(), dt .. " gradient")
    end
  end)
end)

describe("bptt.MSE", function()
  for _, reduction in ipairs({ "mean", "sum" }) do
    it("reduction = " .. reduction .. ": loss and gradient match the plain formulas; gradcheck", function()
      bptt.manual_seed(30)
      local pred, target = bptt.randn(3, 2, 4, "float64"), bptt.randn(3, 2, 4, "float64")
      local mse = bptt.MSE{ reduction = reduction }
      local loss = mse:forward(pred, target)
      local p, t = N.flat(pred), N.flat(target)
      local n = #p
      local wl, wg = 0, {}
      local scale = reduction == "mean" and 1 / n or 1
      for k = 1, n do
        wl = wl + (p[k] - t[k]) ^ 2
        wg[k] = 2 * (p[k] - t[k]) * scale
      end
      wl = wl * scale
      assert.is_true(math.abs(loss - wl) <= 1e-14 * wl, "loss " .. loss .. ", want " .. wl)
      N.assert_rel(mse:backward(), from(wg, { 3, 2, 4 }), 1e-15, "dpred")
      N.assert_rel(mse:backward(-3), from(wg, { 3, 2, 4 }) * -3, 1e-15, "dpred for gout -3")
      local r = N.assert_gradcheck(bptt.gradcheck(mse, { pred, target }, N.gradcheck_opts))
      assert.is_number(r.errors["input 1"])
    end)
  end

  it("NaN in pred gives a NaN loss and a NaN gradient where it is, no error", function()
    local mse = bptt.MSE()
    local loss = mse:forward(bptt.tensor({ 1, 0 / 0, 3 }, "float64"), bptt.tensor({ 0, 0, 0 }, "float64"))
    assert.is_true(loss ~= loss)
    local d = N.flat(mse:backward())
    assert.is_true(d[2] ~= d[2] and d[1] == 2 / 3 and d[3] == 2)
  end)

  it("defaults to mean; float32 works", function()
    local a, b = bptt.tensor({ 1, 2, 3, 4 }, "float32"), bptt.tensor({ 0, 2, 5, 4 }, "float32")
    local mse = bptt.MSE()
    assert.are.equal(5 / 4, mse:forward(a, b))
    N.assert_equal(mse:backward(), bptt.tensor({ 0.5, 0, -1, 0 }, "float32"), "dpred")
  end)

  it("errors: shapes or dtypes that differ, int32, backward first", function()
    local mse = bptt.MSE()
    N.error_with({ "bptt.MSE:backward: call forward first" }, mse.backward, mse)
    N.error_with({ "bptt.MSE:forward: target must be 2 x 3, got 3 x 2" }, mse.forward, mse, bptt.zeros(2, 3),
      bptt.zeros(3, 2))
    N.error_with({ "bptt.MSE:forward: target must be float32 like pred, got float64" },
      mse.forward, mse, bptt.zeros(2, 3), bptt.zeros(2, 3, "float64"))
    N.error_with({ "bptt.MSE:forward: pred must be float32 or float64, got int32" },
      mse.forward, mse, bptt.zeros(2, "int32"), bptt.zeros(2, "int32"))
    N.error_with({ 'bptt.MSE: reduction must be "mean", "sum" or "none", got max' }, bptt.MSE, { reduction = "max" })
  end)
end)

describe("bptt layer errors", function()
  it("point at the caller's line, however deep in the library the check runs", function()
    local e = bptt.Embedding{ vocab = 3, dim = 2 }
    local mse = bptt.MSE()
    local rnn = bptt.RNN{ cell = "lstm", input = 2, hidden = 3 }
    local function call(f, ...)
      local r = f(...)          -- not a tail call: this line is the caller
      return r
    end
    local here = "layers_spec.lua:" .. (debug.getinfo(1, "l").currentline - 3) .. ":"
    for _, f in ipairs({
      function() return call(e.forward, e, { 1 }) end,
      function() return call(e.forward, e, bptt.tensor({ 1.5 })) end,
      function() return call(bptt.Linear, { input = 2, outptu = 3 }) end,
      function() return call(bptt.RNN, { cell = "gru", input = 2, hidden = 0 }) end,
      function() return call(mse.forward, mse, bptt.zeros(2), bptt.zeros(3)) end,
      function() return call(rnn.forward, rnn, bptt.zeros(4, 2, 2), bptt.zeros(2, 2, 3)) end,
    }) do
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.truthy(err:find(here, 1, true), "error\n  " .. err .. "\ndoes not point at " .. here)
    end
  end)
end)

describe("a layer fed its own buffers", function()
  it("Linear: forward of its own output or input gradient, backward of its own input gradient: an error", function()
    bptt.manual_seed(7)
    local l = bptt.Linear{ input = 3, output = 3, dtype = "float64" }
    local x = bptt.randn(4, 3, "float64")
    local y = l:forward(x)
    assert.equal(y, l.output, "the output is linear.output")
    N.error_with({ "bptt.Linear:forward: x shares memory with this layer's output" }, l.forward, l, y)
    N.error_with({ "bptt.Linear:forward: x shares memory with this layer's output" }, l.forward, l, y:view(2, 2, 3))
    -- what a copy gives is right
    local want = bptt.Linear{ input = 3, output = 3, dtype = "float64" }
    want:load_state_dict(l:state_dict())
    local yy = l:forward(l:forward(x):clone())
    N.assert_equal(yy, want:forward(want:forward(x):clone()), "forward of a copy")
    local dx = l:backward(bptt.ones(4, 3, "float64"))
    N.error_with({ "bptt.Linear:backward: dy shares memory with this layer's input gradient" }, l.backward, l, dx)
    N.error_with({ "bptt.Linear:forward: x shares memory with this layer's input gradient" }, l.forward, l, dx)
    -- a strided view of its own output is copied first: no error, right values
    local l2 = bptt.Linear{ input = 2, output = 4, dtype = "float64" }
    local twin = bptt.Linear{ input = 2, output = 4, dtype = "float64" }
    twin:load_state_dict(l2:state_dict())
    local y2 = l2:forward(bptt.randn(5, 2, "float64"))
    assert.is_false(y2:narrow(2, 1, 2):is_contiguous())
    local want2 = twin:forward(y2:narrow(2, 1, 2):clone())
    N.assert_equal(l2:forward(y2:narrow(2, 1, 2)), want2, "forward of a strided view of its own output")
  end)

  it("Embedding: the output is emb.output", function()
    local e = bptt.Embedding{ vocab = 4, dim = 2 }
    local y = e:forward(bptt.tensor({ 1, 2, 3 }, "int32"))
    assert.equal(y, e.output)
    assert.same({ 3, 2 }, e.output:shape())
  end)
end)
