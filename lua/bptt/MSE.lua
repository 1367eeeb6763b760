--- bptt.MSE: mean squared error.  loss = mse:forward(pred, target) (same
-- shapes and dtype) returns a Lua number; dpred = mse:backward([gout]).
-- reduction "mean" (over all elements), "sum", or "none": the squared error
-- of each element as a tensor of pred's shape, and backward(gout) then takes
-- a gradient of that shape.
-- Masks: mse:forward(pred, target, mask) with mask of pred's shape, or of
-- pred's shape without its last dimension (one flag per position of a
-- T x B x F prediction); any dtype, 0 = padding.  Masked elements add
-- nothing and "mean" is over the real elements only (0 when there are none).
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local MSE = util.class("bptt.MSE", Module)

function MSE:__init(opts)
  local fn = "bptt.MSE"
  Module.__init(self)
  opts = opts or {}
  util.options(fn, opts, { reduction = true })
  self.reduction = opts.reduction or "mean"
  if self.reduction ~= "mean" and self.reduction ~= "sum" and self.reduction ~= "none" then
    error(fn .. ': reduction must be "mean", "sum" or "none", got ' .. tostring(opts.reduction), 3)
  end
end

function MSE:forward(pred, target, mask)
  local fn = "bptt.MSE:forward"
  util.tensor(fn, "pred", pred)
  if pred:dtype() == "int32" then error(fn .. ": pred must be float32 or float64, got int32", 2) end
  util.tensor(fn, "target", target, pred:dtype(), "pred")
  util.shape(fn, "target", target, pred:shape())
  local p, t = pred:contiguous():view(-1), target:contiguous():view(-1)
  self._scale = 1
  if mask ~= nil then
    util.tensor(fn, "mask", mask)
    local shape, F = pred:shape(), 1
    if mask:numel() ~= pred:numel() then
      local lead = {}
      for i = 1, #shape - 1 do lead[i] = shape[i] end
      if #lead == 0 then lead = shape end
      util.shape(fn, "mask", mask, lead)
      F = shape[#shape]
    else
      util.shape(fn, "mask", mask, shape)
    end
    local m = core.zeros(p:numel(), pred:dtype())
    local count = core.mask_weights(mask, F, m) * F
    p, t = p:clone():cmul(m), t:clone():cmul(m) -- masked elements: p = t = 0
    if self.reduction == "mean" then self._scale = count > 0 and p:numel() / count or 0 end
  end
  self._p, self._t, self._shape = p, t, pred:shape()
  if self.reduction == "none" then
    local d = p - t
    return d:cmul(d):view(self._shape) -- (p - t)^2 elementwise
  end
  return core.mse_forward(p, t, self.reduction) * self._scale
end

function MSE:backward(gout)
  local fn = "bptt.MSE:backward"
  if self._p == nil then error(fn .. ": call forward first", 2) end
  local none = self.reduction == "none"
  if none then
    util.tensor(fn, "gout", gout, self._p:dtype(), "pred")
    util.shape(fn, "gout", gout, self._shape)
  elseif gout ~= nil and type(gout) ~= "number" then
    error(fn .. ": gout must be a number, got " .. type(gout), 2)
  end
  local n = self._p:numel()
  if self._dx == nil or self._dx:numel() ~= n or self._dx:dtype() ~= self._p:dtype() then
    self._dx = core.zeros(n, self._p:dtype())
  end
  if none then -- dpred = 2 (p - t) * gout, elementwise
    core.mse_backward(self._p, self._t, "sum", 1, self._dx)
    self._dx:cmul(gout:contiguous():view(-1))
  else
    core.mse_backward(self._p, self._t, self.reduction, (gout or 1) * self._scale, self._dx)
  end
  return self._dx:view(self._shape)
end

function MSE:__tostring()
  return string.format('bptt.MSE{reduction="%s"}', self.reduction)
end

return MSE
