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
-- A container (bptt.Model) moves its children's parameters into flat buffers
-- of its own once, at its first use (Module:_adopt), so a whole model is
-- still one buffer.  Moving keeps every tensor already handed out live: the
-- views of parameters(), state_dict() and flat_parameters(), and an
-- optimizer made for the child, follow the values into the new buffer
-- (bptt.core.tensor_rebind).  Views you cut from them yourself before the
-- move (w:narrow(...)) keep the old storage: take them after.
--
-- A module belongs to one container at most: bptt.Model refuses a module
-- that is already in a model (two uses of one module would need one
-- flat slot that both uses add into; bptt does not share weights).
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

--- Moves this module's parameters into (flat, flat_grad), which must be
-- views of the right size and dtype owned by a container; values and
-- gradients are copied.  The module's tensors (flat buffers and named views)
-- are rebound to the new storage, so whoever holds them sees the live
-- values; the old storage is freed at once unless a view cut from it is
-- still held elsewhere.
function Module:_adopt(flat, flat_grad)
  if self._flat == nil then return end
  flat:copy(self._flat)
  flat_grad:copy(self._flat_grad)
  local off = 0
  for _, s in ipairs(self._specs) do
    local n = 1
    for _, d in ipairs(s[2]) do n = n * d end
    core.tensor_rebind(self.params[s[1]], flat:narrow(1, off + 1, n):view(s[2]))
    core.tensor_rebind(self.grads[s[1]], flat_grad:narrow(1, off + 1, n):view(s[2]))
    off = off + n
  end
  core.tensor_rebind(self._flat, flat)
  core.tensor_rebind(self._flat_grad, flat_grad)
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

--- Data-parallel randomness: this process is rank `rank` (0-based) of `size`,
-- each with its share of the streams (rank r the streams r*B+1..(r+1)*B).
-- The random draws of a layer (dropout masks) are then that share of one
-- draw for all size*B streams, so that `size` ranks draw together what one
-- process with batch size*B draws, and every rank's generator stays at the
-- same state.  m:shard(0, 1) turns it off.  The Trainer sets it with dist.
function Module:shard(rank, size)
  local fn = "bptt.Module:shard"
  if type(size) ~= "number" or size ~= math.floor(size) or size < 1 then
    error(fn .. ": size must be a whole number >= 1, got " .. tostring(size), 2)
  end
  if type(rank) ~= "number" or rank ~= math.floor(rank) or rank < 0 or rank >= size then
    error(string.format("%s: rank must be a whole number in 0..%d, got %s", fn, size - 1, tostring(rank)), 2)
  end
  self._shard = size > 1 and { rank, size } or nil
  return self
end

--- Fills t with uniforms, or with this rank's share of them along the
-- streams' dimension `dim` when m:shard() is set.
function Module:_uniform(t, dim)
  local s = self._shard
  if s then return t:uniform_shard(dim, s[1], s[2]) end
  return t:uniform()
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
    if (self.params or {})[name] == nil then
      error(string.format("%s: unexpected parameter %q", fn, tostring(name)), 2)
    end
  end
  for _, name in ipairs(self._names) do self.params[name]:copy(tbl[name]) end
  return self
end

function Module:__tostring()
  return string.format("%s (%d parameters)", self.__name, self:num_parameters())
end

-------------------------------------------- the flat pairs of anything

-- What bptt.optim and bptt.clip take: a module (its flat buffers, or one
-- pair per named parameter for a module without them), an optimizer (its
-- pairs) or a Lua list of those.

local function is_optimizer(m) return type(m) == "table" and getmetatable(m) ~= nil and getmetatable(m).__optimizer end

local function add_pair(fn, what, out, p, g)
  if not core.is_tensor(p) or not core.is_tensor(g) then
    return string.format("%s: %s: parameters and gradients must be tensors, got %s and %s", fn, what, type(p), type(g))
  end
  local dt = p:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    return string.format("%s: %s: parameters must be float32 or float64, got %s", fn, what, dt)
  end
  if g:dtype() ~= dt or g:numel() ~= p:numel() then
    return string.format("%s: %s: gradients must be %s with %d elements like the parameters, got %s with %d",
      fn, what, dt, p:numel(), g:dtype(), g:numel())
  end
  if not p:is_contiguous() or not g:is_contiguous() then
    return string.format("%s: %s: parameters and gradients must be contiguous", fn, what)
  end
  if p:numel() > 0 then out[#out + 1] = { p, g } end
end

local function collect_into(fn, m, what, out, sources)
  if type(m) ~= "table" then
    return string.format("%s: %s must be a module, an optimizer or a list of them, got %s", fn, what, type(m))
  end
  if is_optimizer(m) then
    for _, pg in ipairs(m._pairs) do out[#out + 1] = { pg[1], pg[2] } end
    for _, s in ipairs(m._sources) do sources[#sources + 1] = s end
  elseif type(m.flat_parameters) == "function" then
    local p, g = m:flat_parameters()
    if p ~= nil then
      local err = add_pair(fn, what, out, p, g)
      if err then return err end
      sources[#sources + 1] = { m, p, g }
    end
  elseif type(m.parameters) == "function" then
    -- a module without flat buffers: one pair per named parameter, by name
    local ps, gs = m:parameters()
    local names = {}
    for name in pairs(ps or {}) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local err = add_pair(fn, what .. "." .. tostring(name), out, ps[name], gs and gs[name])
      if err then return err end
    end
  elseif #m > 0 then
    for i = 1, #m do
      local err = collect_into(fn, m[i], string.format("%s[%d]", what, i), out, sources)
      if err then return err end
    end
  else
    return string.format("%s: %s must be a module (with :flat_parameters()), an optimizer or a list of them, got %s",
      fn, what, #m == 0 and next(m) == nil and "an empty table" or "a table without parameters")
  end
end

--- The (parameters, gradients) tensor pairs of m: a module, an optimizer or
-- a list of them.  Returns pairs, sources, or nil, message (m has none, or
-- two pairs share elements, e.g. a container listed with its own child).
function Module.collect(fn, m)
  local out, sources = {}, {}
  local err = collect_into(fn, m, "m", out, sources)
  if err then return nil, err end
  if #out == 0 then return nil, fn .. ": m has no parameters" end
  for i = 1, #out do
    for j = i + 1, #out do
      local a, b = out[i], out[j]
      if core.optim_overlap(a[1], b[1]) or core.optim_overlap(a[2], b[2]) or core.optim_overlap(a[1], b[2])
        or core.optim_overlap(a[2], b[1]) then
        return nil, string.format("%s: m lists some parameters twice (pairs %d and %d share elements: "
          .. "a module listed twice, or with a container that holds it?)", fn, i, j)
      end
    end
  end
  return out, sources
end

return Module
