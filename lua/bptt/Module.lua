--- The protocol every layer and model follows, and where parameters live.
--
--   out... = m:forward(in...)     computes, and caches what backward needs
--   gin... = m:backward(gout...)  input gradients; ADDS parameter gradients
--   params, grads = m:parameters()  name -> tensor views of the storage
--   m:zero_grad(), m:train(), m:evaluate()
--   m:state_dict(), m:load_state_dict(tbl)
--
-- All parameters of a module live in ONE flat tensor and all gradients in
-- another of the same layout; the named tensors are views into them.  An
-- optimizer step, a clip or a checkpoint is then one loop over (ptr, n).
-- A container that owns children moves their parameters into its own flat
-- buffers (Module:_adopt), so a whole model is still one buffer.
local core = require "bptt.core"
local util = require "bptt.util"

local Module = util.class("bptt.Module")

function Module:__init()
  self.training = true
  self._names = {}
end

--- Allocates the flat buffers for `specs`, an ordered list of {name, shape}
-- (PyTorch's state_dict order), and makes the named views.
function Module:_parameters_init(dtype, specs)
  local total = 0
  for _, s in ipairs(specs) do
    local n = 1
    for _, d in ipairs(s[2]) do n = n * d end
    total = total + n
  end
  self.dtype = dtype
  self._flat = core.zeros(total, dtype)
  self._flat_grad = core.zeros(total, dtype)
  self._specs = specs
  self:_make_views()
end

function Module:_make_views()
  self.params, self.grads, self._names = {}, {}, {}
  local off = 0
  for i, s in ipairs(self._specs) do
    local n = 1
    for _, d in ipairs(s[2]) do n = n * d end
    self.params[s[1]] = self._flat:narrow(1, off + 1, n):view(s[2])
    self.grads[s[1]] = self._flat_grad:narrow(1, off + 1, n):view(s[2])
    self._names[i] = s[1]
    off = off + n
  end
end

--- Moves this module's parameters into (flat, flat_grad), which must be views
-- of the right size and dtype owned by a container; values and gradients are
-- copied.  Used by containers so that a model has a single flat buffer.
function Module:_adopt(flat, flat_grad)
  if self._flat == nil then return end
  flat:copy(self._flat)
  flat_grad:copy(self._flat_grad)
  self._flat, self._flat_grad = flat, flat_grad
  self:_make_views()
end

--- Two tables keyed by parameter name: parameter views and gradient views.
function Module:parameters()
  local p, g = {}, {}
  for name, t in pairs(self.params or {}) do
    p[name], g[name] = t, self.grads[name]
  end
  return p, g
end

--- Parameter names in PyTorch's state_dict order.
function Module:parameter_names()
  local out = {}
  for i, n in ipairs(self._names) do out[i] = n end
  return out
end

--- The flat parameter and gradient tensors (nil for a module without any).
function Module:flat_parameters()
  return self._flat, self._flat_grad
end

function Module:num_parameters()
  return self._flat and self._flat:numel() or 0
end

function Module:zero_grad()
  if self._flat_grad then self._flat_grad:zero() end
  return self
end

function Module:train()
  self.training = true
  return self
end

function Module:evaluate()
  self.training = false
  return self
end

--- name -> tensor (views of the parameters; clone them to keep a snapshot).
function Module:state_dict()
  return (self:parameters())
end

--- Copies every parameter from tbl (name -> tensor, any real dtype).  Every
-- name and shape is checked before anything is written, so a bad table
-- leaves the module as it was.
function Module:load_state_dict(tbl)
  local fn = self.__name .. ":load_state_dict"
  if type(tbl) ~= "table" then error(fn .. ": expected a table of name -> tensor, got " .. type(tbl), 2) end
  for _, name in ipairs(self._names) do
    local t = tbl[name]
    if t == nil then error(string.format("%s: missing parameter %q", fn, name), 2) end
    if not core.is_tensor(t) then error(string.format("%s: %s must be a tensor, got %s", fn, name, type(t)), 2) end
    if t:dtype() == "int32" then error(string.format("%s: %s must be float32 or float64, got int32", fn, name), 2) end
    local want = self.params[name]
    local ws, ts = want:shape(), t:shape()
    local same = #ws == #ts
    for d = 1, #ws do same = same and ws[d] == ts[d] end
    if not same then
      error(string.format("%s: %s must be %s, got %s", fn, name, util.shape_str(want), util.shape_str(t)), 2)
    end
  end
  for name in pairs(tbl) do
    if (self.params or {})[name] == nil then error(string.format("%s: unexpected parameter %q", fn, tostring(name)), 2) end
  end
  for _, name in ipairs(self._names) do self.params[name]:copy(tbl[name]) end
  return self
end

function Module:__tostring()
  return string.format("%s (%d parameters)", self.__name, self:num_parameters())
end

return Module
