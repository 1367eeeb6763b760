-- The thread-count rule as the README's Guarantees state it: on the same
-- thread count a recurrent layer's outputs and gradients repeat bit for bit;
-- across thread counts they agree to 1e-12 (float64) and to float32 rounding
-- (2e-6, float32), relative to each tensor's norm, and need not be the same
-- to the bit (B < 8 x threads splits the recursion by hidden units, and the
-- GEMMs' split changes the rounding).  The issue's case included: float32
-- LSTM T 8 B 3 H 130 L 2.
local bptt = require "bptt"

local function run(c, threads)
  bptt.set_num_threads(threads)
  bptt.manual_seed(7)
  local rnn = bptt.RNN{ cell = c.cell, input = 5, hidden = c.H, layers = c.L, dtype = c.dtype }
  local x = bptt.randn(c.T, c.B, 5):to(c.dtype)
  local y = rnn:forward(x)
  local dy = bptt.randn(c.T, c.B, c.H):to(c.dtype)
  rnn:zero_grad()
  local dx = rnn:backward(dy)
  local _, g = rnn:parameters()
  local out = { y = y:clone(), dx = dx:clone() }
  for k, v in pairs(g) do out[k] = v:clone() end
  return out
end

local CASES = {
  { cell = "lstm", dtype = "float32", T = 8, B = 3, H = 130, L = 2 },
  { cell = "lstm", dtype = "float64", T = 8, B = 3, H = 130, L = 2 },
  { cell = "gru", dtype = "float64", T = 6, B = 32, H = 40, L = 2 },
  { cell = "tanh", dtype = "float32", T = 5, B = 40, H = 64, L = 1 },
}
local TOL = { float64 = 1e-12, float32 = 2e-6 }

describe("thread counts (the README's rule)", function()
  local saved
  setup(function() saved = bptt.num_threads() end)
  teardown(function() bptt.set_num_threads(saved) end)
  for _, c in ipairs(CASES) do
    it(string.format("%s %s T %d B %d H %d L %d: bit for bit on the same count, within %g across 1, 2, 3",
      c.dtype, c.cell, c.T, c.B, c.H, c.L, TOL[c.dtype]), function()
      local one = run(c, 1)
      for _, n in ipairs({ 1, 2, 3 }) do
        local a, b = run(c, n), run(c, n)
        for k, v in pairs(a) do
          assert((v - b[k]):norm() == 0, string.format("%s differs between two runs on %d threads", k, n))
          local rel = (v - one[k]):norm() / math.max(one[k]:norm(), 1e-300)
          assert(rel <= TOL[c.dtype], string.format("%s on %d threads: %.3g from 1 thread", k, n, rel))
        end
      end
    end)
  end
end)
