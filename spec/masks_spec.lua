-- Masks in the losses: padded positions add nothing; "mean" is over the
-- real positions only.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local MASK = { { 1, 1, 1 }, { 1, 0, 1 }, { 1, 0, 0 }, { 0, 0, 0 } } -- T = 4 x B = 3

describe("bptt.CrossEntropy with a mask", function()
  for _, reduction in ipairs({ "mean", "sum", "none" }) do
    it(reduction .. ": the same loss and gradient as the real positions alone", function()
      bptt.manual_seed(1)
      local logits = bptt.randn(4, 3, 5):to("float64")
      local tg = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 1 }, { 2, 3, 4 }, { 5, 1, 2 } }, "int32")
      local ce = bptt.CrossEntropy{ reduction = reduction }
      local loss = ce:forward(logits, tg, bptt.tensor(MASK, "float32"))
      local g = reduction == "none" and bptt.ones(4, 3):to("float64") or nil
      local d = ce:backward(g):clone()
      -- by hand: log-softmax over the real positions
      local L, lt, tt, n = 0, logits:totable(), tg:totable(), 0
      for t = 1, 4 do
        for b = 1, 3 do
          local row, z = lt[t][b], 0
          for c = 1, 5 do z = z + math.exp(row[c]) end
          local lp = row[tt[t][b]] - math.log(z)
          for c = 1, 5 do
            local want = MASK[t][b] == 1 and (math.exp(row[c]) / z - (c == tt[t][b] and 1 or 0)) or 0
            if reduction == "mean" then want = want / 6 end
            assert.is_true(math.abs(d:get(t, b, c) - want) < 1e-12, string.format("dlogits[%d][%d][%d]", t, b, c))
          end
          if MASK[t][b] == 1 then L, n = L - lp, n + 1 end
          if reduction == "none" then
            assert.is_true(math.abs(loss:get(t, b) - (MASK[t][b] == 1 and -lp or 0)) < 1e-12)
          end
        end
      end
      assert.are.equal(6, n)
      if reduction == "mean" then assert.is_true(math.abs(loss - L / n) < 1e-12) end
      if reduction == "sum" then assert.is_true(math.abs(loss - L) < 1e-12) end
    end)
  end

  it("a mask and ignore_index together: a position counts when it is real and not ignored", function()
    local logits = bptt.randn(4, 3, 5):to("float64")
    local tg = bptt.tensor({ { 1, 0, 3 }, { 4, 5, 1 }, { 2, 3, 4 }, { 5, 1, 2 } }, "int32")
    local a = bptt.CrossEntropy{ ignore_index = 0 }
    local l1 = a:forward(logits, tg, bptt.tensor(MASK, "int32"))
    local tg2 = tg:clone()
    for t = 1, 4 do for b = 1, 3 do if MASK[t][b] == 0 then tg2:set(t, b, 0) end end end
    local l2 = bptt.CrossEntropy{ ignore_index = 0 }:forward(logits, tg2)
    assert.are.equal(l2, l1)
  end)

  it("a mask of the wrong shape is an error naming it", function()
    local ok, err = pcall(bptt.CrossEntropy().forward, bptt.CrossEntropy(), bptt.randn(4, 3, 5),
      bptt.ones(4, 3, "int32"), bptt.ones(3, 4))
    assert.is_false(ok)
    assert.is_truthy(tostring(err):match("bptt.CrossEntropy:forward: mask must be 4 x 3"), tostring(err))
  end)
end)

describe("bptt.MSE with a mask", function()
  for _, per_position in ipairs({ false, true }) do
    for _, reduction in ipairs({ "mean", "sum" }) do
      it(string.format("%s, mask %s: masked elements add nothing", reduction,
        per_position and "per position (T x B for T x B x F)" or "per element"), function()
        bptt.manual_seed(2)
        local p, y = bptt.randn(4, 3, 2):to("float64"), bptt.randn(4, 3, 2):to("float64")
        local m
        if per_position then
          m = bptt.tensor(MASK)
        else
          local e = {}
          for t = 1, 4 do
            e[t] = {}
            for b = 1, 3 do e[t][b] = { MASK[t][b], MASK[t][b] } end
          end
          m = bptt.tensor(e)
        end
        local mse = bptt.MSE{ reduction = reduction }
        local loss = mse:forward(p, y, m)
        local d = mse:backward()
        local s, n = 0, 0
        for t = 1, 4 do
          for b = 1, 3 do
            for f = 1, 2 do
              local e = p:get(t, b, f) - y:get(t, b, f)
              local on = MASK[t][b] == 1
              if on then s, n = s + e * e, n + 1 end
              local want = on and 2 * e or 0
              if reduction == "mean" then want = want / 12 end
              assert.is_true(math.abs(d:get(t, b, f) - want) < 1e-12, "dpred")
            end
          end
        end
        assert.are.equal(12, n)
        N.assert_rel(bptt.tensor({ loss }, "float64"), { shape = { 1 }, data = { reduction == "mean" and s / n or s } },
          1e-13, "loss")
      end)
    end
  end
end)
