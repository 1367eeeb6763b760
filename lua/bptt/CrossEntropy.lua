--- bptt.CrossEntropy: fused, numerically stable log-softmax + negative log
-- likelihood.  loss = ce:forward(logits, targets) with logits `... x C` and
-- targets `...` (class ids 1..C, int32 or whole floats) returns a Lua number;
-- dlogits = ce:backward([gout]) has the logits' shape.
-- Options: reduction "mean" (over counted positions), "sum", or "none": the
-- loss of each position as a tensor of the targets' shape (0 where ignored),
-- and backward(gout) then takes a gradient of that shape; ignore_index, a
-- target value (1-based ids: 0 is a usual padding value) whose positions
-- count for nothing.  When every position is ignored the loss and gradient
-- are 0 (PyTorch gives NaN for "mean").
-- Masks: ce:forward(logits, targets, mask) with mask of the targets' shape
-- (any dtype; 0 = padding): masked positions count for nothing, like ignored
-- ones, and "mean" is over the real positions only.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local CrossEntropy = util.class("bptt.CrossEntropy", Module)

local OPTIONS = { reduction = true, ignore_index = true }

function CrossEntropy:__init(opts)
  local fn = "bptt.CrossEntropy"
  Module.__init(self)
  util.options(fn, opts or {}, OPTIONS)
  opts = opts or {}
  self.reduction = opts.reduction or "mean"
  if self.reduction ~= "mean" and self.reduction ~= "sum" and self.reduction ~= "none" then
    error(fn .. ': reduction must be "mean", "sum" or "none", got ' .. tostring(opts.reduction), 3)
  end
  local ig = opts.ignore_index
  if ig ~= nil and (type(ig) ~= "number" or ig ~= math.floor(ig) or ig < -2 ^ 31 + 1 or ig > 2 ^ 31 - 1) then
    error(fn .. ": ignore_index must be a whole number in int32's range (above -2^31), got " .. tostring(ig), 3)
  end
  self.ignore_index = opts.ignore_index
end

-- the ignored value a mask writes where ignore_index is not set
local MASKED = -2 ^ 31 + 1

function CrossEntropy:forward(logits, targets, mask)
  local fn = "bptt.CrossEntropy:forward"
  util.tensor(fn, "logits", logits)
  local dt = logits:dtype()
  if dt == "int32" then error(fn .. ": logits must be float32 or float64, got int32", 2) end
  local shape = logits:shape()
  if #shape < 1 or shape[#shape] < 1 then
    error(fn .. ": logits must be ... x C with C >= 1, got " .. util.shape_str(logits), 2)
  end
  util.tensor(fn, "targets", targets)
  local tshape = {}
  for i = 1, #shape - 1 do tshape[i] = shape[i] end
  util.shape(fn, "targets", targets, tshape)
  local C = shape[#shape]
  local N = logits:numel() / C
  local t
  t, self._tbuf = util.index_tensor(fn, "targets", targets, self._tbuf)
  local ig = self.ignore_index
  if mask ~= nil then
    util.tensor(fn, "mask", mask)
    util.shape(fn, "mask", mask, tshape)
    if self._mbuf == nil or self._mbuf:numel() ~= N then self._mbuf = core.zeros(N, "int32") end
    ig = ig or MASKED
    core.mask_targets(t:contiguous():view(N), mask, ig, self._mbuf)
    t = self._mbuf:view(tshape)
  end
  local x2 = logits:contiguous():view(N, C)
  if self._cache == nil or self._cache:size(1) ~= N or self._cache:dtype() ~= dt then
    self._cache = core.zeros(N, 2, dt)
  end
  local none = self.reduction == "none"
  local loss, bad = core.ce_forward(x2, t:view(N), ig, none and "sum" or self.reduction, self._cache)
  if loss == nil then
    error(string.format("%s: targets%s is %d, expected 1..%d", fn, util.index_str(tshape, bad),
      t:view(N):get(bad), C), 2)
  end
  self._x2, self._t, self._shape, self._tshape, self._ig = x2, t:view(N), shape, tshape, ig
  if none then
    local losses = core.zeros(N, dt)
    core.ce_rows(x2, t:view(N), ig, self._cache, losses)
    return losses:view(tshape)
  end
  return loss
end

function CrossEntropy:backward(gout)
  local fn = "bptt.CrossEntropy:backward"
  if self._x2 == nil then error(fn .. ": call forward first", 2) end
  local x2 = self._x2
  local none = self.reduction == "none"
  if none then
    util.tensor(fn, "gout", gout, x2:dtype(), "the logits")
    util.shape(fn, "gout", gout, self._tshape)
  elseif gout ~= nil and type(gout) ~= "number" then
    error(fn .. ": gout must be a number, got " .. type(gout), 2)
  end
  if self._dx == nil or self._dx:size(1) ~= x2:size(1) or self._dx:size(2) ~= x2:size(2)
    or self._dx:dtype() ~= x2:dtype() then
    self._dx = core.zeros(x2:size(1), x2:size(2), x2:dtype())
  end
  if none then
    core.ce_backward_rows(x2, self._t, self._ig, self._cache, gout:contiguous():view(-1), self._dx)
  else
    core.ce_backward(x2, self._t, self._ig, self.reduction, self._cache, gout or 1, self._dx)
  end
  return self._dx:view(self._shape)
end

function CrossEntropy:__tostring()
  return string.format('bptt.CrossEntropy{reduction="%s"%s}', self.reduction,
    self.ignore_index and (", ignore_index=" .. self.ignore_index) or "")
end

return CrossEntropy
