--- bptt.LayerNorm{dim = D, eps = 1e-5, dtype = "float32"}: PyTorch's
-- LayerNorm(D) over the last dimension of any `... x D` tensor.
--
--   y = (x - mean) / sqrt(var + eps) * weight + bias      (mean, biased var over the last dimension)
--
-- Parameters (PyTorch's names): weight (D, init 1), bias (D, init 0).
-- Backward, with xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps),
-- g = dy weight and means over the last dimension:
--   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dweight += sum(dy xhat),  dbias += sum(dy)
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local LayerNorm = util.class("bptt.LayerNorm", Module)

local OPTIONS = { dim = true, eps = true, dtype = true }

function LayerNorm:__init(opts)
  local fn = "bptt.LayerNorm"
  Module.__init(self)
  util.options(fn, opts, OPTIONS)
  self.dim = util.count(fn, "dim", opts.dim, 1)
  local eps = opts.eps == nil and 1e-5 or opts.eps
  if type(eps) ~= "number" or not (eps >= 0 and eps < math.huge) then
    util.raise(fn .. ": eps must be a finite number >= 0, got " .. util.got(eps))
  end
  self.eps = eps
  self:_parameters_init(util.dtype(fn, opts.dtype), { { "weight", { self.dim } }, { "bias", { self.dim } } })
  self:reset()
end

function LayerNorm:reset()
  self.params.weight:fill(1)
  self.params.bias:zero()
  return self
end

function LayerNorm:forward(x)
  local fn = "bptt.LayerNorm:forward"
  util.tensor(fn, "x", x, self.dtype)
  local s = x:shape()
  if #s < 1 or s[#s] ~= self.dim then
    util.raise(string.format("%s: x must be ... x %d, got %s", fn, self.dim, util.shape_str(x)))
  end
  local xc = x - x:mean(-1, true)
  local var = core.cmul(xc, xc):mean(-1, true)
  local rstd = 1 / core.sqrt(var:add(self.eps))
  local xhat = xc:cmul(rstd)
  self._xhat, self._rstd = xhat, rstd
  self.output = core.cmul(xhat, self.params.weight):add(self.params.bias)
  return self.output
end

function LayerNorm:backward(dy)
  local fn = "bptt.LayerNorm:backward"
  if self._xhat == nil then util.raise(fn .. ": call forward first") end
  util.tensor(fn, "dy", dy, self.dtype)
  util.shape(fn, "dy", dy, self.output:shape())
  local xhat, D = self._xhat, self.dim
  self.grads.weight:add(core.cmul(dy, xhat):reshape(-1, D):sum(1))
  self.grads.bias:add(dy:reshape(-1, D):sum(1))
  local g = core.cmul(dy, self.params.weight)
  local dx = g - g:mean(-1, true)
  dx:sub(core.cmul(xhat, core.cmul(g, xhat):mean(-1, true)))
  return dx:cmul(self._rstd)
end

function LayerNorm:__tostring()
  return string.format('bptt.LayerNorm{dim=%d, eps=%g, dtype="%s"} (%d parameters)', self.dim, self.eps, self.dtype,
    self:num_parameters())
end

return LayerNorm
