--- Small layers without parameters, to compose models in Lua: activations,
-- softmaxes, dropout, and pooling over time.  Each follows the layer
-- protocol (bptt.Module): forward caches what backward needs and sets
-- self.output; backward takes the gradient of the output and returns the
-- gradient of the input.
--
--   bptt.Tanh{}, bptt.Sigmoid{}, bptt.ReLU{}, bptt.Identity{}   elementwise
--   bptt.Softmax{dim = -1}, bptt.LogSoftmax{dim = -1}            along dim (default the last)
--   bptt.Dropout{p = 0.5}                                        zeroes with probability p in training
--   bptt.Select{dim = 1, index = -1}                             one slice (an RNN's last step)
--   bptt.Mean{dim = 1}                                           the mean along dim (over time)
--
-- Every constructor takes dtype ("float32", the default, or "float64"): the
-- dtype its inputs must have.  Dimensions and indices are 1-based; a
-- negative one counts from the end.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local layers = {}

-- A layer class with options `allowed` (dtype always); init(self, opts) sets the rest.
local function layer(name, allowed, init)
  local cls = util.class("bptt." .. name, Module)
  allowed.dtype = true
  function cls:__init(opts)
    local fn = "bptt." .. name
    Module.__init(self)
    opts = opts or {}
    util.options(fn, opts, allowed)
    self.dtype = util.dtype(fn, opts.dtype)
    if init then init(self, fn, opts) end
  end
  layers[name] = cls
  return cls
end

local function check_input(self, fn, x)
  util.tensor(fn, "x", x, self.dtype)
  return x
end

-- The gradient's checks: a forward came first, and dy has the output's shape.
local function check_grad(self, fn, dy)
  if self.output == nil then util.raise(fn .. ": call forward first") end
  util.tensor(fn, "dy", dy, self.dtype)
  util.shape(fn, "dy", dy, self.output:shape())
  return dy
end

-- dim (1-based, negative from the end) of an n-d tensor as 1..n
local function resolve_dim(fn, dim, n, what)
  local d = dim < 0 and n + 1 + dim or dim
  if d < 1 or d > n then
    util.raise(string.format("%s: %s %d is outside the input's %d dimensions", fn, what or "dim", dim, n))
  end
  return d
end

local function check_dim(fn, v, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= math.floor(v) or v == 0 then
    util.raise(string.format("%s: dim must be a nonzero whole number (negative from the end), got %s", fn, util.got(v)))
  end
  return v
end

------------------------------------------------------------ elementwise

--- y = tanh(x); dx = dy (1 - y^2)
local Tanh = layer("Tanh", {})
function Tanh:forward(x)
  check_input(self, "bptt.Tanh:forward", x)
  self.output = core.tanh(x)
  return self.output
end
function Tanh:backward(dy)
  check_grad(self, "bptt.Tanh:backward", dy)
  return self.output:clone():pow(2):mul(-1):add(1):cmul(dy)
end

--- y = 1 / (1 + e^-x); dx = dy y (1 - y)
local Sigmoid = layer("Sigmoid", {})
function Sigmoid:forward(x)
  check_input(self, "bptt.Sigmoid:forward", x)
  self.output = core.sigmoid(x)
  return self.output
end
function Sigmoid:backward(dy)
  check_grad(self, "bptt.Sigmoid:backward", dy)
  local y = self.output
  return y:clone():mul(-1):add(1):cmul(y):cmul(dy)
end

--- y = max(x, 0); dx = dy where x > 0, else 0
local ReLU = layer("ReLU", {})
function ReLU:forward(x)
  check_input(self, "bptt.ReLU:forward", x)
  self.output = core.relu(x)
  return self.output
end
function ReLU:backward(dy)
  check_grad(self, "bptt.ReLU:backward", dy)
  return dy:clone():masked_fill(core.le(self.output, 0), 0)
end

--- y = x; dx = dy
local Identity = layer("Identity", {})
function Identity:forward(x)
  check_input(self, "bptt.Identity:forward", x)
  self.output = x
  return x
end
function Identity:backward(dy)
  check_grad(self, "bptt.Identity:backward", dy)
  return dy
end

------------------------------------------------------------ softmaxes

local function init_dim(self, fn, opts) self.dim = check_dim(fn, opts.dim, -1) end

--- y = softmax(x) along dim; dx = y (dy - sum(dy y)) (the sum along dim)
local Softmax = layer("Softmax", { dim = true }, init_dim)
function Softmax:forward(x)
  local fn = "bptt.Softmax:forward"
  check_input(self, fn, x)
  self._d = resolve_dim(fn, self.dim, x:dim())
  self.output = x:softmax(self._d)
  return self.output
end
function Softmax:backward(dy)
  check_grad(self, "bptt.Softmax:backward", dy)
  local y = self.output
  local s = core.cmul(dy, y):sum(self._d, true)
  return (dy - s):cmul(y)
end

--- y = log_softmax(x) along dim; dx = dy - e^y sum(dy)
local LogSoftmax = layer("LogSoftmax", { dim = true }, init_dim)
function LogSoftmax:forward(x)
  local fn = "bptt.LogSoftmax:forward"
  check_input(self, fn, x)
  self._d = resolve_dim(fn, self.dim, x:dim())
  self.output = x:log_softmax(self._d)
  return self.output
end
function LogSoftmax:backward(dy)
  check_grad(self, "bptt.LogSoftmax:backward", dy)
  return dy - core.exp(self.output):cmul(dy:sum(self._d, true))
end

------------------------------------------------------------ dropout

--- Training: y = x m / (1 - p), m_i = 1 with probability 1 - p (drawn from
-- the library's generator at each forward), else 0; evaluation: y = x.
local Dropout = layer("Dropout", { p = true }, function(self, fn, opts)
  local p = opts.p == nil and 0.5 or opts.p
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    util.raise(string.format("%s: p must be a number in [0, 1], got %s", fn, util.got(p)))
  end
  self.p = p
end)
function Dropout:forward(x)
  check_input(self, "bptt.Dropout:forward", x)
  if not self.training or self.p == 0 then
    self._mask = nil
    self.output = x
    return x
  end
  -- the streams are dimension 2 of a T x B x F input, 1 of B x F (for m:shard)
  local u = self:_uniform(core.zeros(x:shape(), self.dtype), x:dim() >= 3 and 2 or 1)
  local keep = core.ge(u, self.p):to(self.dtype)
  if self.p < 1 then keep:mul(1 / (1 - self.p)) end
  self._mask = keep
  self.output = core.cmul(x, keep)
  return self.output
end
function Dropout:backward(dy)
  check_grad(self, "bptt.Dropout:backward", dy)
  if self._mask == nil then return dy end
  return core.cmul(dy, self._mask)
end

------------------------------------------------------------ over time

--- y = x:select(dim, index): one slice, e.g. an RNN's last step of
-- T x B x H (dim 1, index -1); dx is zero but at that slice.
local Select = layer("Select", { dim = true, index = true }, function(self, fn, opts)
  self.dim = check_dim(fn, opts.dim, 1)
  local i = opts.index == nil and -1 or opts.index
  if type(i) ~= "number" or i ~= math.floor(i) or i == 0 then
    util.raise(string.format("%s: index must be a nonzero whole number (negative from the end), got %s", fn,
      util.got(i)))
  end
  self.index = i
end)
function Select:forward(x)
  local fn = "bptt.Select:forward"
  check_input(self, fn, x)
  local d = resolve_dim(fn, self.dim, x:dim())
  local n = x:size(d)
  local i = self.index < 0 and n + 1 + self.index or self.index
  if i < 1 or i > n then
    util.raise(string.format("%s: index %d is outside dimension %d of x (size %d)", fn, self.index, d, n))
  end
  self._d, self._i, self._shape = d, i, x:shape()
  self.output = x:select(d, i)
  return self.output
end
function Select:backward(dy)
  check_grad(self, "bptt.Select:backward", dy)
  local dx = core.zeros(self._shape, self.dtype)
  dx:select(self._d, self._i):copy(dy)
  return dx
end

--- y = x:mean(dim): the average over time of T x B x H (dim 1) is B x H;
-- dx = dy / n at every step.
local Mean = layer("Mean", { dim = true }, function(self, fn, opts) self.dim = check_dim(fn, opts.dim, 1) end)
function Mean:forward(x)
  local fn = "bptt.Mean:forward"
  check_input(self, fn, x)
  local d = resolve_dim(fn, self.dim, x:dim())
  if x:size(d) == 0 then util.raise(string.format("%s: dimension %d of x is empty", fn, d)) end
  self._d, self._shape = d, x:shape()
  self.output = x:mean(d)
  return self.output
end
function Mean:backward(dy)
  check_grad(self, "bptt.Mean:backward", dy)
  local dx = core.zeros(self._shape, self.dtype)
  dx:add(dy:unsqueeze(self._d))
  return dx:div(self._shape[self._d])
end

return layers
