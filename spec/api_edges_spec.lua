-- API edges a new user meets: gradcheck on a model that carries state and on
-- float32, bptt.zeros(nil), printing shapes and reports, losses with
-- reduction = "none".
local bptt = require "bptt"
local N = require "helpers.nn_util"
local U = require "helpers.tensor_util"

describe("bptt.gradcheck", function()
  local function ids(T, B, V)
    local t = bptt.zeros(T, B, "int32")
    for i = 1, T do for j = 1, B do t:set(i, j, (i * 3 + j) % V + 1) end end
    return t
  end

  it("checks a LanguageModel exactly: the carried state is reset for every evaluation", function()
    bptt.manual_seed(3)
    local lm = bptt.LanguageModel{ vocab = 6, hidden = 5, cell = "lstm", dtype = "float64" }
    local x = ids(4, 2, 6)
    lm:forward(x) -- a carried state from an earlier batch
    local before = lm:get_state()
    local r = bptt.gradcheck(lm, { x }, N.gradcheck_opts)
    assert.is_true(r.max_error < 1e-6, tostring(r))
    -- and from a fresh model (no state yet)
    r = bptt.gradcheck(bptt.LanguageModel{ vocab = 6, hidden = 5, cell = "gru", dtype = "float64" }, { x },
      N.gradcheck_opts)
    assert.is_true(r.max_error < 1e-6, tostring(r))
    assert.is_truthy(before.h)
  end)

  it("refuses float32 modules and inputs, saying finite differences need float64", function()
    U.error_with({ "bptt.gradcheck: parameter bias is float32: finite differences need float64" },
      bptt.gradcheck, bptt.Linear{ input = 3, output = 2 }, { bptt.randn(2, 3) })
    U.error_with({ "bptt.gradcheck: input 1 is float32: finite differences need float64" },
      bptt.gradcheck, bptt.Linear{ input = 3, output = 2, dtype = "float64" }, { bptt.randn(2, 3) })
  end)

  it("prints its report", function()
    local r = bptt.gradcheck(bptt.Linear{ input = 3, output = 2, dtype = "float64" }, { bptt.randn(2, 3, "float64") })
    local s = tostring(r)
    assert.is_truthy(s:match("^bptt%.gradcheck: max_error [%d.e+-]+ %("), s)
    assert.is_truthy(s:find("\n  weight ", 1, true), s)
  end)
end)

describe("tensor edges", function()
  it("bptt.zeros(nil) is an error; bptt.zeros() is 0-d", function()
    U.error_with({ "bptt.zeros: sizes must be numbers or a table of numbers, got nil" }, bptt.zeros, nil)
    U.error_with({ "bptt.randn: sizes must be numbers or a table of numbers, got nil" }, bptt.randn, nil)
    assert.equal(0, bptt.zeros():dim())
  end)

  it("tostring(t:shape()) reads like {3, 4}", function()
    assert.equal("{3, 4}", tostring(bptt.zeros(3, 4):shape()))
    assert.equal("{7}", tostring(bptt.zeros(7):size()))
    assert.equal("{}", tostring(bptt.zeros():shape()))
    assert.same({ 3, 4 }, bptt.zeros(3, 4):shape())
  end)
end)

describe('losses with reduction = "none"', function()
  it("CrossEntropy gives per-position losses that sum to the sum reduction, and gradchecks", function()
    bptt.manual_seed(5)
    local logits = bptt.randn(3, 2, 4, "float64")
    local t = bptt.tensor({ { 1, 4 }, { 0, 2 }, { 3, 3 } }, "int32")
    local none = bptt.CrossEntropy{ reduction = "none", ignore_index = 0 }
    local l = none:forward(logits, t)
    assert.same({ 3, 2 }, l:shape())
    assert.equal(0, l:get(2, 1)) -- ignored
    U.assert_close({ l:sum() }, { bptt.CrossEntropy{ reduction = "sum", ignore_index = 0 }:forward(logits, t) }, 1e-12)
    -- the per-position loss is -log softmax at the target
    local row = logits:select(1, 1):select(1, 2)
    local lse = 0
    for j = 1, 4 do lse = lse + math.exp(row:get(j)) end
    U.assert_close({ l:get(1, 2) }, { math.log(lse) - row:get(4) }, 1e-12)
    N.assert_gradcheck(bptt.gradcheck(none, { logits, t }, N.gradcheck_opts))
    U.error_with({ "bptt.CrossEntropy:backward: gout must be 3 x 2, got 6" }, none.backward, none,
      bptt.zeros(6, "float64"))
  end)

  it("MSE gives per-element squared errors and gradchecks", function()
    local pred = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "float64")
    local target = bptt.tensor({ { 0, 2 }, { 5, 1 } }, "float64")
    local none = bptt.MSE{ reduction = "none" }
    local l = none:forward(pred, target)
    assert.same({ { 1, 0 }, { 4, 9 } }, l:totable())
    local g = none:backward(bptt.tensor({ { 1, 1 }, { 0.5, 2 } }, "float64"))
    assert.same({ { 2, 0 }, { -2, 12 } }, g:totable())
    N.assert_gradcheck(bptt.gradcheck(none, { bptt.randn(3, 2, "float64"), bptt.randn(3, 2, "float64") },
      N.gradcheck_opts))
    U.error_with({ "bptt.MSE:backward: gout must be a tensor, got number" }, none.backward, none, 1)
  end)
end)
