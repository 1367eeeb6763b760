--- bptt.Concat{m1, m2, ..., dim = -1}: every child on the same input, the
-- outputs joined along dim (a bidirectional encoder's two directions, two
-- heads side by side).
--
--   y = cat({m1:forward(x), m2:forward(x), ...}, dim)
--   dx = sum_i m_i:backward(dy_i),  dy_i the slice of dy that m_i's output became
--
-- bptt.Parallel{m1, m2, ..., dim = -1}: child i on input i, joined the
-- same way: y = m:forward(x1, x2, ...); m:backward(dy) returns dx1, dx2, ....
--
-- Both are models (bptt.Sequential's children and names: "0.weight",
-- "1.bias", ...): one flat parameter buffer, parameters() over all
-- children.  Each child's output must match the others but along dim.
local core = require "bptt.core"
local util = require "bptt.util"
local Model = require "bptt.Model"

local Sequential = Model.Sequential
local unpack = unpack or table.unpack -- luacheck: ignore

local function make(name)
  local cls = util.class("bptt." .. name, Sequential)
  function cls:__init(list)
    local fn = "bptt." .. name
    if type(list) ~= "table" then util.raise(fn .. ": expected a list of modules (and dim =), got " .. type(list)) end
    for k in pairs(list) do
      if k ~= "dim" and not (type(k) == "number" and k >= 1 and k <= #list and k == math.floor(k)) then
        util.raise(string.format("%s: unknown option %q (a list of modules, and dim)", fn, tostring(k)))
      end
    end
    if #list == 0 then util.raise(fn .. ": expected at least one module") end
    local dim = list.dim == nil and -1 or list.dim
    if type(dim) ~= "number" or dim ~= math.floor(dim) or dim == 0 then
      util.raise(string.format("%s: dim must be a nonzero whole number (negative from the end), got %s", fn,
        util.got(dim)))
    end
    local modules = {}
    for i = 1, #list do modules[i] = list[i] end
    Sequential.__init(self, modules)
    self.dim = dim
  end
  return cls
end

local Concat, Parallel = make("Concat"), make("Parallel")

-- joins the outputs; remembers each one's size along the dimension
local function join(self, fn, outs)
  local n = outs[1]:dim()
  local d = self.dim < 0 and n + 1 + self.dim or self.dim
  if d < 1 or d > n then
    util.raise(string.format("%s: dim %d is outside the children's outputs' %d dimensions", fn, self.dim, n))
  end
  local sizes = {}
  for i, o in ipairs(outs) do
    if not core.is_tensor(o) then
      util.raise(string.format("%s: child %d returned %s, not a tensor", fn, i, type(o)))
    end
    if o:dim() ~= n then
      util.raise(string.format("%s: child %d's output is %s, child 1's %s: they must match but along dim %d", fn, i,
        util.shape_str(o), util.shape_str(outs[1]), d))
    end
    sizes[i] = o:size(d)
  end
  local ok, y = pcall(core.cat, outs, d)
  if not ok then util.raise(fn .. ": " .. tostring(y)) end
  self._d, self._sizes = d, sizes
  self.output = y
  return y
end

-- the slice of dy that child i's output became (contiguous)
local function piece(self, dy, i)
  local off = 1
  for k = 1, i - 1 do off = off + self._sizes[k] end
  return dy:narrow(self._d, off, self._sizes[i]):contiguous()
end

local function check_grad(self, fn, dy)
  if self.output == nil then util.raise(fn .. ": call forward first") end
  util.tensor(fn, "dy", dy, self.output:dtype(), "the output")
  util.shape(fn, "dy", dy, self.output:shape())
end

function Concat:forward(x)
  local outs = {}
  for i, c in ipairs(self._children) do outs[i] = c[2]:forward(x) end
  return join(self, "bptt.Concat:forward", outs)
end

function Concat:backward(dy)
  check_grad(self, "bptt.Concat:backward", dy)
  local dx
  for i, c in ipairs(self._children) do
    local g = c[2]:backward(piece(self, dy, i))
    if dx == nil then dx = g:clone() else dx:add(g) end
  end
  return dx
end

function Parallel:forward(...)
  local fn = "bptt.Parallel:forward"
  local n = select("#", ...)
  if n ~= #self._children then
    util.raise(string.format("%s: expected %d inputs (one per child), got %d", fn, #self._children, n))
  end
  local xs, outs = { ... }, {}
  for i, c in ipairs(self._children) do outs[i] = c[2]:forward(xs[i]) end
  return join(self, fn, outs)
end

function Parallel:backward(dy)
  check_grad(self, "bptt.Parallel:backward", dy)
  local dxs = {}
  for i, c in ipairs(self._children) do dxs[i] = c[2]:backward(piece(self, dy, i)) end
  return unpack(dxs, 1, #self._children)
end

return { Concat = Concat, Parallel = Parallel }
