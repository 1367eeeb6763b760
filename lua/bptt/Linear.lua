--- bptt.Linear: y = x W^T + b over the last dimension of any `... x input` tensor.
-- Parameters (PyTorch's): weight (output x input), bias (output).
-- Init as PyTorch: uniform(-1/sqrt(input), 1/sqrt(input)) for both.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local Linear = util.class("bptt.Linear", Module)

local OPTIONS = { input = true, output = true, bias = true, dtype = true }

function Linear:__init(opts)
  local fn = "bptt.Linear"
  Module.__init(self)
  util.options(fn, opts, OPTIONS)
  self.input = util.count(fn, "input", opts.input, 1)
  self.output_size = util.count(fn, "output", opts.output, 1) -- (self.output is the last forward's y)
  if opts.bias ~= nil and type(opts.bias) ~= "boolean" then
    util.raise(fn .. ": bias must be true or false, got " .. util.got(opts.bias))
  end
  self.bias = opts.bias ~= false
  local specs = { { "weight", { self.output_size, self.input } } }
  if self.bias then specs[2] = { "bias", { self.output_size } } end
  self:_parameters_init(util.dtype(fn, opts.dtype), specs)
  self:reset()
end

function Linear:reset()
  local k = 1 / math.sqrt(self.input)
  self._flat:uniform(-k, k)
  return self
end

-- Raises when t (contiguous) shares an element with buf (this layer's, which
-- the call overwrites, or reads later).
local function check_alias(fn, name, t, buf, what)
  if buf ~= nil and core.optim_overlap(t, buf) then
    util.raise(string.format("%s: %s shares memory with this layer's %s, which this call overwrites "
      .. "(e.g. what its own last call returned): clone() it first", fn, name, what))
  end
end

--- y = linear:forward(x), x: ... x input -> ... x output, also linear.output
-- (a buffer reused by the next call).
function Linear:forward(x)
  local fn = "bptt.Linear:forward"
  util.tensor(fn, "x", x, self.dtype)
  local shape = x:shape()
  if #shape < 1 or shape[#shape] ~= self.input then
    error(string.format("%s: x must be ... x %d, got %s", fn, self.input, util.shape_str(x)), 2)
  end
  local N = x:numel() / self.input
  if self._y == nil or self._y:size(1) ~= N then
    -- a failed allocation leaves the old buffers; dx is made by backward
    self._y = core.zeros(N, self.output_size, self.dtype)
    self._dx = nil
  end
  if x:is_contiguous() then -- (a strided x is copied)
    check_alias(fn, "x", x, self._y, "output")
    check_alias(fn, "x", x, self._dx, "input gradient (backward writes it, and reads x)")
  end
  local x2 = x:contiguous():view(N, self.input)
  core.linear_forward(x2, self.params.weight, self.params.bias, self._y)
  self._x2, self._shape = x2, shape
  local out = {}
  for i = 1, #shape - 1 do out[i] = shape[i] end
  out[#shape] = self.output_size
  self.output = self._y:view(out)
  return self.output
end

--- dx = linear:backward(dy): dy has the shape of the last output; adds into
-- the weight and bias gradients.  dx is a buffer reused by the next call (made
-- at the first backward: a forward-only user never pays for it).
function Linear:backward(dy)
  local fn = "bptt.Linear:backward"
  if self._x2 == nil then error(fn .. ": call forward first", 2) end
  util.tensor(fn, "dy", dy, self.dtype)
  util.shape(fn, "dy", dy, self.output:shape())
  local N = self._x2:size(1)
  if self._dx == nil then self._dx = core.zeros(N, self.input, self.dtype) end
  dy = dy:contiguous()
  check_alias(fn, "dy", dy, self._dx, "input gradient")
  core.linear_backward(self._x2, self.params.weight, dy:view(N, self.output_size), self._dx,
    self.grads.weight, self.grads.bias)
  return self._dx:view(self._shape)
end

function Linear:__tostring()
  return string.format('bptt.Linear{input=%d, output=%d, bias=%s, dtype="%s"} (%d parameters)',
    self.input, self.output_size, tostring(self.bias), self.dtype, self:num_parameters())
end

return Linear
