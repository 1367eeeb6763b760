--- bptt.jacobian_norms: how far a recurrent layer's state map carries a
-- perturbation, i.e. the spectral norms of the seed's products of Jacobians
--   P_tau = dh_t/dh_{t-tau} = prod_{j = t-tau+1..t} dh_j/dh_{j-1}
-- for lags tau up to t (s = (h, c) for an LSTM), each batch row on its own
-- (P is block-diagonal over the batch: its norm is the largest row's, and
-- each row's power iteration runs on its own).
--
--   local r = bptt.jacobian_norms(rnn, x, h0, {lags = {1, 10, 100}, layer = 1})
--   r.lags, r.norm[i] (float64), r.exact[i] (tanh/relu, H <= 64)
--
-- The estimate is power iteration on P^T P through the cached forward: per
-- iteration one Jacobian-vector product forward over the tau steps and one
-- vector-Jacobian product back (the backward recursion with no loss),
-- c/core/rnn.h's bptt_rnn_jvp/_vjp; no matrix is formed.  It converges from
-- below (a Rayleigh quotient).  For tanh and relu with H <= 64 the exact
-- products are formed too (H x H per batch row, in double) and their norms
-- computed by Jacobi's method, to check the estimate.
local core = require "bptt.core"
local util = require "bptt.util"

local OPTIONS = { lags = true, layer = true, iters = true, c0 = true, t = true, exact = true }

local function jacobian_norms(rnn, x, h0, opts)
  local fn = "bptt.jacobian_norms"
  opts = opts or {}
  util.options(fn, opts, OPTIONS)
  if type(rnn) ~= "table" or rnn.cell == nil or rnn.record_flow == nil then
    util.raise(fn .. ": rnn must be a bptt.RNN, got " .. util.got(rnn))
  end
  if rnn.bidirectional then util.raise(fn .. ": a bidirectional rnn is not supported yet") end
  local L = rnn.layers
  local layer = util.count(fn, "opts.layer", opts.layer, 1, 1)
  if layer > L then util.raise(string.format("%s: opts.layer must be in 1..%d, got %d", fn, L, layer)) end
  local iters = util.count(fn, "opts.iters", opts.iters, 1, 30)
  -- a forward of its own, without checkpointing and without touching a carried state
  local ck, carry = rnn.checkpoint, rnn.carry_state
  rnn.checkpoint, rnn.carry_state = nil, false
  local ok, err = pcall(rnn.forward, rnn, x, h0, opts.c0)
  rnn.checkpoint, rnn.carry_state = ck, carry
  if not ok then error(err, 2) end
  local f = rnn._fwd
  local T, B, H, dt, cell = f.T, f.B, rnn.hidden, rnn.dtype, rnn.cell
  local t1 = util.count(fn, "opts.t", opts.t, 1, T)
  if t1 > T then util.raise(string.format("%s: opts.t must be in 1..%d, got %d", fn, T, t1)) end
  local lags = opts.lags
  if lags == nil then
    lags = {}
    for tau = 1, t1 do lags[tau] = tau end
  elseif type(lags) ~= "table" or #lags == 0 then
    util.raise(fn .. ": opts.lags must be a non-empty list of lags in 1..t, got " .. util.got(lags))
  end
  local maxlag = 0
  for i, tau in ipairs(lags) do
    if type(tau) ~= "number" or tau ~= math.floor(tau) or tau < 1 or tau > t1 then
      util.raise(string.format("%s: opts.lags[%d] must be a lag in 1..%d, got %s", fn, i, t1, util.got(tau)))
    end
    maxlag = math.max(maxlag, tau)
  end
  local s = f.buf[layer]
  local w_hh = rnn.params["weight_hh_l" .. (layer - 1)]
  local lh0 = f.h0 and f.h0:select(1, layer) or nil
  local lc0 = f.c0 and f.c0:select(1, layer) or nil
  local G = ({ tanh = 1, relu = 1, lstm = 4, gru = 3 })[cell]
  local work = core.zeros(B * G * H + B * H, dt)
  local lstm = cell == "lstm"
  local norm = core.zeros(#lags, "float64")
  -- the norm of batch row b of (vh, vc)
  local function row_norm(vh, vc, b)
    return math.sqrt(vh:select(1, b):norm() ^ 2 + (vc and vc:select(1, b):norm() ^ 2 or 0))
  end
  for i, tau in ipairs(lags) do
    -- one power iteration per batch row at once (P is block-diagonal: each row
    -- normalized on its own converges to its own block's norm)
    local vh, vc = core.randn(B, H, dt), lstm and core.randn(B, H, dt) or nil
    local sigma = {}
    for _ = 1, iters do
      for b = 1, B do
        local n = row_norm(vh, vc, b)
        if n > 0 then -- (0: P^T P v = 0 along this row, its estimate stays)
          vh:select(1, b):mul(1 / n)
          if vc then vc:select(1, b):mul(1 / n) end
        end
      end
      core.rnn_jvp(cell, w_hh, lh0, lc0, s.y, s.cache, t1 - tau, t1, vh, vc, work) -- v <- P v
      for b = 1, B do sigma[b] = row_norm(vh, vc, b) end
      core.rnn_vjp(cell, w_hh, lh0, lc0, s.y, s.cache, t1 - tau, t1, vh, vc, work) -- v <- P^T v
    end
    local best = 0
    for b = 1, B do best = math.max(best, sigma[b] or 0) end
    norm:set(i, best)
  end
  local result = { lags = lags, norm = norm, t = t1, layer = layer }
  if (cell == "tanh" or cell == "relu") and opts.exact ~= false and H <= 64 then
    local all = core.zeros(maxlag, "float64")
    core.rnn_jacobian_exact(cell, w_hh, s.y, t1, maxlag, all, core.zeros(3 * H * H, "float64"))
    result.exact = core.zeros(#lags, "float64")
    for i, tau in ipairs(lags) do result.exact:set(i, all:get(tau)) end
  end
  return result
end

return { jacobian_norms = jacobian_norms }
