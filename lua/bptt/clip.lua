--- Gradient clipping over all of a model's gradients (its flat gradient
-- buffers: one C pass per buffer).  `m` is what bptt.optim takes: a module,
-- an optimizer (its parameters) or a list of them.
--
--   total = bptt.clip_grad_norm(m, max_norm [, norm_type = 2])
--   bptt.clip_grad_value(m, v)
local core = require "bptt.core"
local collect = require("bptt.Module").collect

local clip = {}

local INF = math.huge

--- Total p-norm of all of m's gradients, as if concatenated; then, as
-- PyTorch 1.13's clip_grad_norm_, every gradient is multiplied by
--   min(1, max_norm / (total + 1e-6))
-- (so nothing changes unless total + 1e-6 > max_norm).  norm_type is a
-- number > 0, math.huge or "inf" (max |g|).  Returns total, the norm BEFORE
-- clipping.
--
-- A non-finite total (an Inf or NaN gradient) is returned as it is and the
-- gradients are left untouched (PyTorch would scale them by 0 or NaN): the
-- caller sees the NaN/Inf and can skip the step.
--
-- The sums run in double.  A norm whose powers overflow or underflow (|g|
-- beyond ~1e154 for p = 2, or a large p) is recomputed scaled by the largest
-- |g|, so it is still accurate.
function clip.clip_grad_norm(m, max_norm, norm_type)
  local fn = "bptt.clip_grad_norm"
  if type(max_norm) ~= "number" or not (max_norm >= 0) then
    error(string.format("%s: max_norm must be a number >= 0, got %s", fn, tostring(max_norm)), 2)
  end
  if norm_type == nil then norm_type = 2 end
  if norm_type == "inf" then norm_type = INF end
  if type(norm_type) ~= "number" or not (norm_type > 0) then
    error(string.format("%s: norm_type must be a number > 0 or \"inf\", got %s", fn, tostring(norm_type)), 2)
  end
  local pairs_, err = collect(fn, m)
  if not pairs_ then error(err, 2) end
  local p = norm_type
  local sum, amax = 0, 0
  for _, pg in ipairs(pairs_) do
    local s, a = core.optim_grad_norm(pg[2], p)
    sum = sum + s
    if a > amax or a ~= a then amax = a end
  end
  local total
  if amax ~= amax then
    total = amax -- a NaN gradient
  elseif p == INF then
    total = amax
  else
    total = sum ^ (1 / p)
    if (total == INF or total == 0) and amax < INF and amax > 0 then
      -- |g|^p overflowed (or underflowed) a double: redo the sum of |g / amax|^p
      sum = 0
      for _, pg in ipairs(pairs_) do sum = sum + core.optim_grad_norm(pg[2], p, amax) end
      total = amax * sum ^ (1 / p)
    end
  end
  if total ~= total or total == INF then return total end
  local coef = max_norm / (total + 1e-6)
  if coef < 1 then
    for _, pg in ipairs(pairs_) do core.optim_grad_scale(pg[2], coef) end
  end
  return total
end

--- Clamps every gradient element into [-v, v] (v >= 0; NaN elements stay NaN).
function clip.clip_grad_value(m, v)
  local fn = "bptt.clip_grad_value"
  if type(v) ~= "number" or not (v >= 0) then
    error(string.format("%s: v must be a number >= 0, got %s", fn, tostring(v)), 2)
  end
  local pairs_, err = collect(fn, m)
  if not pairs_ then error(err, 2) end
  for _, pg in ipairs(pairs_) do core.optim_grad_clamp(pg[2], v) end
end

return clip
