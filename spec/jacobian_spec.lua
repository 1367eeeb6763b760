-- bptt.jacobian_norms: the spectral norms of the products of Jacobians dh_t/dh_{t-tau},
-- estimated by power iteration through the cached forward, against the exact products
-- (tanh, relu), against finite differences of the forward, and the vector-Jacobian
-- product as the adjoint of the Jacobian-vector product.
local bptt = require "bptt"

local function dot(a, b)
  local s = 0
  local x, y = a:view(-1), b:view(-1)
  for i = 1, x:numel() do s = s + x:get(i) * y:get(i) end
  return s
end

describe("bptt.jacobian_norms", function()
  for _, cell in ipairs({ "tanh", "relu" }) do
    it(cell .. ": the estimate matches the exact product's norm for every lag", function()
      bptt.manual_seed(4)
      local m = bptt.RNN{ cell = cell, input = 3, hidden = 6, layers = 2, dtype = "float64" }
      local r = bptt.jacobian_norms(m, bptt.randn(15, 3, 3, "float64"), bptt.randn(2, 3, 6, "float64"),
        { layer = 2, iters = 300 })
      assert.are.equal(15, #r.lags)
      for i = 1, 15 do
        local est, ex = r.norm:get(i), r.exact:get(i)
        assert(est <= ex * (1 + 1e-9), string.format("lag %d: estimate %.17g above the exact %.17g", i, est, ex))
        assert(est >= ex * (1 - 1e-3), string.format("lag %d: estimate %.17g, exact %.17g", i, est, ex))
      end
      -- the products shrink: tanh' <= 1, and a small random W_hh
      assert.is_true(r.exact:get(15) < r.exact:get(1))
    end)
  end

  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    it(cell .. ": the vector-Jacobian product is the adjoint of the Jacobian-vector product", function()
      bptt.manual_seed(9)
      local T, B, H = 7, 2, 5
      local m = bptt.RNN{ cell = cell, input = 2, hidden = H, dtype = "float64" }
      local lstm = cell == "lstm"
      local h0, c0 = bptt.randn(1, B, H, "float64"), lstm and bptt.randn(1, B, H, "float64") or nil
      m:forward(bptt.randn(T, B, 2, "float64"), h0, c0)
      local f = m._fwd
      local s, w = f.buf[1], m.params.weight_hh_l0
      local G = ({ tanh = 1, relu = 1, lstm = 4, gru = 3 })[cell]
      local work = bptt.zeros(B * G * H + B * H, "float64")
      local vh, vc = bptt.randn(B, H, "float64"), lstm and bptt.randn(B, H, "float64") or nil
      local uh, uc = bptt.randn(B, H, "float64"), lstm and bptt.randn(B, H, "float64") or nil
      local pvh, pvc = vh:clone(), vc and vc:clone()
      bptt.core.rnn_jvp(cell, w, f.h0:select(1, 1), f.c0 and f.c0:select(1, 1), s.y, s.cache, 2, T, pvh, pvc, work)
      local puh, puc = uh:clone(), uc and uc:clone()
      bptt.core.rnn_vjp(cell, w, f.h0:select(1, 1), f.c0 and f.c0:select(1, 1), s.y, s.cache, 2, T, puh, puc, work)
      local left = dot(uh, pvh) + (lstm and dot(uc, pvc) or 0)
      local right = dot(puh, vh) + (lstm and dot(puc, vc) or 0)
      assert(math.abs(left - right) <= 1e-12 * math.max(1, math.abs(left)), string.format("%.17g vs %.17g", left,
        right))
    end)

    it(cell .. ": the Jacobian-vector product agrees with finite differences of the forward", function()
      bptt.manual_seed(12)
      local T, B, H = 6, 2, 4
      local m = bptt.RNN{ cell = cell, input = 2, hidden = H, dtype = "float64" }
      local x, h0 = bptt.randn(T, B, 2, "float64"), bptt.randn(1, B, H, "float64")
      local c0 = cell == "lstm" and bptt.randn(1, B, H, "float64") or nil
      local v = bptt.randn(1, B, H, "float64")
      local eps = 1e-6
      local _, hp = m:forward(x, h0 + v * eps, c0)
      hp = hp:clone()
      local _, hm = m:forward(x, h0 - v * eps, c0)
      local fd = (hp - hm) * (1 / (2 * eps))
      m:forward(x, h0, c0)
      local f = m._fwd
      local G = ({ tanh = 1, relu = 1, lstm = 4, gru = 3 })[cell]
      local vh = v:select(1, 1):clone()
      local vc = cell == "lstm" and bptt.zeros(B, H, "float64") or nil
      bptt.core.rnn_jvp(cell, m.params.weight_hh_l0, f.h0:select(1, 1), f.c0 and f.c0:select(1, 1), f.buf[1].y,
        f.buf[1].cache, 0, T, vh, vc, bptt.zeros(B * G * H + B * H, "float64"))
      local err = (vh - fd:select(1, 1)):norm() / math.max(fd:norm(), 1e-300)
      assert(err < 1e-6, string.format("relative error %.3g", err))
    end)
  end

  it("leaves the carried state and the checkpoint setting as they were", function()
    local m = bptt.RNN{ cell = "lstm", input = 2, hidden = 3, carry_state = true, checkpoint = 2 }
    m:forward(bptt.randn(4, 2, 2))
    local before = m:get_state()
    local r = bptt.jacobian_norms(m, bptt.randn(5, 2, 2), nil, { lags = { 1, 5 } })
    assert.are.equal(2, r.norm:numel())
    assert.is_nil(r.exact)
    assert.are.equal(2, m.checkpoint)
    assert.is_true(m.carry_state)
    local after = m:get_state()
    assert.are.equal(0, (after.h - before.h):norm())
  end)

  it("rejects bad options, naming them", function()
    local m = bptt.RNN{ cell = "tanh", input = 2, hidden = 3 }
    local x = bptt.randn(4, 1, 2)
    assert.has_error(function() bptt.jacobian_norms(m, x, nil, { lags = { 5 } }) end,
      "bptt.jacobian_norms: opts.lags[1] must be a lag in 1..4, got 5")
    assert.has_error(function() bptt.jacobian_norms(m, x, nil, { layer = 2 }) end,
      "bptt.jacobian_norms: opts.layer must be in 1..1, got 2")
    assert.has_error(function() bptt.jacobian_norms({}, x) end)
  end)
end)
