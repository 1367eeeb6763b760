--- bptt.Model: a module made of named children, and bptt.Sequential.
--
--   local M = bptt.Model:extend("MyModel")
--   function M:__init(opts)
--     bptt.Model.__init(self)
--     self:add("rnn", bptt.RNN{cell = "gru", input = 8, hidden = 32})
--     self:add("head", bptt.Linear{input = 32, output = 1})
--   end
--   function M:forward(x) ... end      function M:backward(dy) ... end
--
-- parameters() and state_dict() use dotted names ("rnn.weight_ih_l0",
-- "head.bias") in the order children were added.  Every child's parameters
-- are moved into the model's ONE flat parameter tensor and ONE flat gradient
-- tensor (Module:_adopt), so an optimizer step or a clip over the whole model
-- is one loop; children keep working on views of it.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local Model = util.class("bptt.Model", Module)

--- A subclass: `local MyModel = bptt.Model:extend("MyModel")`.
function Model:extend(name)
  return util.class(name, self)
end

function Model:__init()
  Module.__init(self)
  self._children = {}
  self.params, self.grads = {}, {}
end

--- Adds a child module under `name` (also reachable as self[name]); returns it.
function Model:add(name, child)
  local fn = self.__name .. ":add"
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error(fn .. ": name must be an identifier string, got " .. tostring(name), 2)
  end
  if type(child) ~= "table" or type(child.parameters) ~= "function" then
    error(fn .. ": child must be a module, got " .. type(child), 2)
  end
  for _, c in ipairs(self._children) do
    if c[1] == name then error(fn .. ": a child named " .. name .. " exists already", 2) end
  end
  if self[name] ~= nil then error(fn .. ": name " .. name .. " is taken by a field or method", 2) end
  self._children[#self._children + 1] = { name, child }
  self[name] = child
  self:_flatten()
  return child
end

function Model:children()
  local out = {}
  for i, c in ipairs(self._children) do out[i] = { name = c[1], module = c[2] } end
  return out
end

-- (Re)builds the flat buffers over all children, copying their values and
-- gradients in, and the dotted name tables.
function Model:_flatten()
  local total, dtype = 0, nil
  for _, c in ipairs(self._children) do
    local flat = c[2]:flat_parameters()
    if flat then
      if dtype and flat:dtype() ~= dtype then
        error(string.format("%s:add: child %s is %s, the others are %s", self.__name, c[1], flat:dtype(), dtype), 3)
      end
      dtype = flat:dtype()
      total = total + flat:numel()
    end
  end
  if dtype == nil then
    self._flat, self._flat_grad = nil, nil
  else
    self.dtype = dtype
    local flat, grad = core.zeros(total, dtype), core.zeros(total, dtype)
    self:_adopt(flat, grad)
  end
  self:_name_views()
end

function Model:_adopt(flat, flat_grad)
  local off = 0
  for _, c in ipairs(self._children) do
    local f = c[2]:flat_parameters()
    if f then
      local n = f:numel()
      if n > 0 then c[2]:_adopt(flat:narrow(1, off + 1, n), flat_grad:narrow(1, off + 1, n)) end
      off = off + n
    end
  end
  self._flat, self._flat_grad = flat, flat_grad
  self:_name_views()
end

function Model:_name_views()
  self.params, self.grads, self._names = {}, {}, {}
  for _, c in ipairs(self._children) do
    local p, g = c[2]:parameters()
    for _, n in ipairs(c[2]:parameter_names()) do
      local name = c[1] .. "." .. n
      self.params[name], self.grads[name] = p[n], g[n]
      self._names[#self._names + 1] = name
    end
  end
end

function Model:train()
  self.training = true
  for _, c in ipairs(self._children) do c[2]:train() end
  return self
end

function Model:evaluate()
  self.training = false
  for _, c in ipairs(self._children) do c[2]:evaluate() end
  return self
end

function Model:__tostring()
  local lines = { string.format("%s (%d parameters)", self.__name, self:num_parameters()) }
  for _, c in ipairs(self._children) do
    lines[#lines + 1] = string.format("  (%s): %s", c[1], tostring(c[2]):gsub("\n", "\n  "))
  end
  return table.concat(lines, "\n")
end

--- bptt.Sequential{m1, m2, ...}: children named "0", "1", ... as in PyTorch
-- ("0.weight"); forward feeds each child's first output to the next.
local Sequential = util.class("bptt.Sequential", Model)

function Sequential:__init(list)
  Model.__init(self)
  if type(list) ~= "table" then error("bptt.Sequential: expected a list of modules, got " .. type(list), 3) end
  for i, m in ipairs(list) do
    if type(m) ~= "table" or type(m.forward) ~= "function" then
      error("bptt.Sequential: element " .. i .. " is not a module", 3)
    end
    self._children[i] = { tostring(i - 1), m }
  end
  self:_flatten()
end

function Sequential:forward(x)
  for _, c in ipairs(self._children) do x = c[2]:forward(x) end
  return x
end

function Sequential:backward(g)
  for i = #self._children, 1, -1 do g = self._children[i][2]:backward(g) end
  return g
end

Model.Sequential = Sequential
return Model
