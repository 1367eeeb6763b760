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
-- "head.bias") in the order children were added.  At the model's first use
-- of its parameters (parameters(), flat_parameters(), state_dict(),
-- load_state_dict(), zero_grad(), and so an optimizer or a clip), every
-- child's parameters are moved into the model's ONE flat parameter tensor and
-- ONE flat gradient tensor (Module:_adopt), once, as nn's getParameters does:
-- an optimizer step or a clip over the whole model is one loop, and children
-- keep working on views of it.  Add every child before that: add() on a
-- flattened model is an error.  A module belongs to one model, once.
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
  self.params, self.grads = {}, {} -- dotted name -> the children's tensors
end

-- The name a message gives a module: "bptt.Linear", or its name in its model.
local function label(m)
  local s = type(m.__name) == "string" and m.__name or "a module"
  if m._parent then s = string.format("%s (child %s of %s)", s, m._parent_name, m._parent.__name) end
  return s
end

-- Checks that child may become a child of self, named name; fn names the
-- function the user called.  A module belongs to one model, once, and a
-- model never contains itself.
local function check_child(self, fn, name, child)
  if type(child) ~= "table" or type(child.parameters) ~= "function" then
    util.raise(string.format("%s: %s must be a module, got %s", fn, name, type(child)))
  end
  if rawget(self, "_flattened") then
    util.raise(string.format("%s: %s's parameters are already in use (flattened into one buffer by parameters(), "
      .. "flat_parameters(), state_dict(), zero_grad(), an optimizer or a clip); add every child before that",
      fn, self.__name))
  end
  if child._parent ~= nil then
    util.raise(string.format("%s: %s is already in a model: a module belongs to one model, once "
      .. "(bptt does not share weights between two uses; make a second module)", fn, label(child)))
  end
  local m = self
  while m ~= nil do
    if m == child then util.raise(string.format("%s: %s would contain itself", fn, self.__name)) end
    m = m._parent
  end
  local fp = child:num_parameters() > 0 and child.dtype
  if fp and self.dtype and fp ~= self.dtype then
    util.raise(string.format("%s: %s is %s, the others are %s", fn, name, fp, self.dtype))
  end
end

-- Makes child a child of self; the dotted name tables get the child's own
-- tensors (no allocation: flattening later rebinds these very tensors).
local function attach(self, name, child)
  self._children[#self._children + 1] = { name, child }
  child._parent, child._parent_name = self, name
  if child:num_parameters() > 0 then self.dtype = self.dtype or child.dtype end
  local p, g = child.params or {}, child.grads or {}
  for _, n in ipairs(child:parameter_names()) do
    local dotted = name .. "." .. n
    self.params[dotted], self.grads[dotted] = p[n], g[n]
    self._names[#self._names + 1] = dotted
  end
end

--- Adds a child module under `name` (also reachable as self[name]); returns it.
function Model:add(name, child)
  local fn = self.__name .. ":add"
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error(fn .. ": name must be an identifier string, got " .. util.got(name), 2)
  end
  check_child(self, fn, "child " .. name, child)
  for _, c in ipairs(self._children) do
    if c[1] == name then error(fn .. ": a child named " .. name .. " exists already", 2) end
  end
  if self[name] ~= nil or name == "forward" or name == "backward" then
    error(fn .. ": name " .. name .. " is taken by a field or method", 2)
  end
  attach(self, name, child)
  self[name] = child
  return child
end

function Model:children()
  local out = {}
  for i, c in ipairs(self._children) do out[i] = { name = c[1], module = c[2] } end
  return out
end

--- Number of parameters (the children's; does not flatten).
function Model:num_parameters()
  local n = 0
  for _, c in ipairs(self._children) do n = n + c[2]:num_parameters() end
  return n
end

-- Builds the flat buffers over all children, once, moving their values and
-- gradients in (Module:_adopt), and the dotted name tables.
function Model:_flatten()
  if rawget(self, "_flattened") then return self end
  local total = self:num_parameters()
  if total > 0 then
    self:_adopt(core.zeros(total, self.dtype), core.zeros(total, self.dtype))
  else
    self._flattened = true
  end
  return self
end

function Model:_adopt(flat, flat_grad)
  local off = 0
  for _, c in ipairs(self._children) do
    local n = c[2]:num_parameters()
    if n > 0 then
      c[2]:_adopt(flat:narrow(1, off + 1, n), flat_grad:narrow(1, off + 1, n))
      off = off + n
    end
  end
  if self._flat then
    core.tensor_rebind(self._flat, flat)
    core.tensor_rebind(self._flat_grad, flat_grad)
  else
    self._flat, self._flat_grad = flat, flat_grad
  end
  self._flattened = true -- (the name tables hold the children's tensors, rebound in place)
end

-- Everything that hands out or touches the parameters flattens first.
for _, k in ipairs({ "parameters", "flat_parameters", "state_dict", "load_state_dict", "zero_grad" }) do
  local f = Module[k]
  Model[k] = function(self, ...)
    if not rawget(self, "_flattened") then self:_flatten() end
    return f(self, ...)
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

function Model:shard(rank, size)
  Module.shard(self, rank, size)
  for _, c in ipairs(self._children) do c[2]:shard(rank, size) end
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
  local fn = "bptt.Sequential"
  Model.__init(self)
  if type(list) ~= "table" then util.raise(fn .. ": expected a list of modules, got " .. type(list)) end
  for i, m in ipairs(list) do
    if type(m) ~= "table" or type(m.forward) ~= "function" then
      util.raise(fn .. ": element " .. i .. " is not a module")
    end
    for j = 1, i - 1 do
      if list[j] == m then
        util.raise(string.format("%s: element %d (%s) is element %d already: a module belongs to one model, once "
          .. "(bptt does not share weights between two uses; make a second module)", fn, i, m.__name, j))
      end
    end
    check_child(self, fn, "element " .. i, m)
    if m:num_parameters() > 0 then self.dtype = self.dtype or m.dtype end
  end
  self.dtype = nil
  for i, m in ipairs(list) do attach(self, tostring(i - 1), m) end -- all checked: nothing half done
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
