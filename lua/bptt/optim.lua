--- bptt.optim: SGD, Adam, AdamW, Adagrad and RMSprop over flat buffers.
--
--   local opt = bptt.optim.adam(model, {lr = 1e-3})
--   ... forward, backward ...
--   opt:step()          -- one fused C loop per (parameters, gradients, state...)
--   opt:zero_grad()
--
-- The update rules are PyTorch 1.13's torch.optim (c/core/optim.h writes them out);
-- options have PyTorch's names and defaults, except that lr is always
-- required.  `m` is a module (anything with :flat_parameters(), or with
-- :parameters() only), an optimizer, or a Lua list of those; the optimizer
-- takes the (flat, flat_grad) tensor pairs at construction and keeps one state
-- per pair, so float32 and float64 modules may be mixed.  A module put into
-- a container after the optimizer was made keeps working with it: its
-- tensors follow its parameters into the container's buffer (bptt.Module).
--
-- Every option is a plain field of the optimizer (opt.lr, opt.betas,
-- opt.momentum, ...), checked again at each step: a schedule or the user may
-- change any of them between steps.  opt.steps counts the steps taken (the t
-- of Adam's bias correction).  State buffers appear at the first step that
-- needs them, as in PyTorch (sgd's momentum buffer starts as the first
-- gradient, every other buffer at 0, adagrad's sum at
-- initial_accumulator_value).
--
-- Checkpoints: `tensors, meta = opt:state_dict([prefix])` gives
--   tensors  prefix .. "<buffer>.<i>" -> the live state buffer of pair i (1-d),
--            e.g. "exp_avg.1", "exp_avg_sq.1", "exp_avg.2", ...
--   meta     prefix .. key -> string: optimizer ("adam"), format ("1"),
--            step, pairs (how many), buffers ("exp_avg,exp_avg_sq"), and every
--            option (numbers in the shortest form that reads back exactly; booleans
--            "true"/"false"; betas "0.9,0.999")
-- which is what bptt.save takes.  `opt:load_state_dict(tensors, meta [, prefix])`
-- checks everything (kind, pair count, options, every buffer's dtype and
-- shape, no unexpected tensor under the prefix) before it changes anything;
-- it restores the step count, the buffers and the options (lr included, as
-- PyTorch does).  With a prefix, keys outside it are ignored, so one
-- checkpoint can hold the model, the optimizer and more.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local optim = {}

local INF = math.huge

local num17 = util.numstr

local function describe(v)
  if type(v) == "number" then return num17(v) end
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local parts = {}
    for i = 1, math.min(#v, 4) do parts[i] = type(v[i]) == "number" and num17(v[i]) or tostring(v[i]) end
    return "{" .. table.concat(parts, ", ") .. (#v > 4 and ", ...}" or "}")
  end
  return tostring(v)
end

-------------------------------------------------------------- option kinds

local function nonneg(v) return type(v) == "number" and v >= 0 and v < INF end
local function unit_closed(v) return type(v) == "number" and v >= 0 and v <= 1 end
local function unit_open(v) return type(v) == "number" and v >= 0 and v < 1 end

-- kind: check, the expected text, to/from strings (for checkpoints)
local NUMBER = {
  ok = nonneg, want = "a number >= 0",
  encode = num17, decode = tonumber,
}
local FRACTION = {
  ok = unit_closed, want = "a number in [0, 1]",
  encode = num17, decode = tonumber,
}
local BOOLEAN = {
  ok = function(v) return type(v) == "boolean" end, want = "true or false",
  encode = tostring,
  decode = function(s)
    if s == "true" then return true elseif s == "false" then return false end
  end,
}
local BETAS = {
  ok = function(v) return type(v) == "table" and #v == 2 and unit_open(v[1]) and unit_open(v[2]) end,
  want = "a table {beta1, beta2} of numbers in [0, 1)",
  encode = function(v) return num17(v[1]) .. "," .. num17(v[2]) end,
  decode = function(s)
    local a, b = s:match("^([^,]+),([^,]+)$")
    if a then return { tonumber(a), tonumber(b) } end
  end,
  copy = function(v) return { v[1], v[2] } end,
}

local REQUIRED = {} -- default of an option without one

--------------------------------------------------------- the optimizers

-- Per kind: options {name, kind, default} in PyTorch's order, the state
-- buffers in a fixed order, a cross-option check and the per-pair update.
local KINDS = {}

local function zeros_like(p) return core.zeros(p:numel(), p:dtype()) end

KINDS.sgd = {
  options = {
    { "lr", NUMBER, REQUIRED }, { "momentum", NUMBER, 0 }, { "dampening", FRACTION, 0 },
    { "nesterov", BOOLEAN, false }, { "weight_decay", NUMBER, 0 },
  },
  buffers = { "momentum_buffer" },
  cross = function(o)
    if o.nesterov and (o.momentum <= 0 or o.dampening ~= 0) then
      return string.format("nesterov needs momentum > 0 and dampening = 0, got momentum = %s, dampening = %s",
        num17(o.momentum), num17(o.dampening))
    end
  end,
  update = function(o, p, g, st)
    local buf, init = nil, false
    if o.momentum ~= 0 then
      if st.momentum_buffer == nil then st.momentum_buffer, init = zeros_like(p), true end
      buf = st.momentum_buffer
    end
    core.optim_sgd(p, g, buf, init, o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov)
  end,
}

local function adam_kind(default_wd, decoupled)
  return {
    options = {
      { "lr", NUMBER, REQUIRED }, { "betas", BETAS, { 0.9, 0.999 } }, { "eps", NUMBER, 1e-8 },
      { "weight_decay", NUMBER, default_wd }, { "amsgrad", BOOLEAN, false },
    },
    buffers = { "exp_avg", "exp_avg_sq", "max_exp_avg_sq" },
    update = function(o, p, g, st, t)
      if st.exp_avg == nil then st.exp_avg, st.exp_avg_sq = zeros_like(p), zeros_like(p) end
      if o.amsgrad and st.max_exp_avg_sq == nil then st.max_exp_avg_sq = zeros_like(p) end
      core.optim_adam(p, g, st.exp_avg, st.exp_avg_sq, o.amsgrad and st.max_exp_avg_sq or nil, t, o.lr,
        o.betas[1], o.betas[2], o.eps, o.weight_decay, decoupled)
    end,
  }
end
KINDS.adam = adam_kind(0, false)
KINDS.adamw = adam_kind(0.01, true)

KINDS.adagrad = {
  options = {
    { "lr", NUMBER, REQUIRED }, { "lr_decay", NUMBER, 0 }, { "weight_decay", NUMBER, 0 },
    { "eps", NUMBER, 1e-10 }, { "initial_accumulator_value", NUMBER, 0 },
  },
  buffers = { "sum" },
  update = function(o, p, g, st, t)
    if st.sum == nil then st.sum = zeros_like(p):fill(o.initial_accumulator_value) end
    core.optim_adagrad(p, g, st.sum, t, o.lr, o.lr_decay, o.weight_decay, o.eps)
  end,
}

KINDS.rmsprop = {
  options = {
    { "lr", NUMBER, REQUIRED }, { "alpha", FRACTION, 0.99 }, { "eps", NUMBER, 1e-8 },
    { "weight_decay", NUMBER, 0 }, { "momentum", NUMBER, 0 }, { "centered", BOOLEAN, false },
  },
  buffers = { "square_avg", "grad_avg", "momentum_buffer" },
  update = function(o, p, g, st)
    if st.square_avg == nil then st.square_avg = zeros_like(p) end
    if o.centered and st.grad_avg == nil then st.grad_avg = zeros_like(p) end
    if o.momentum > 0 and st.momentum_buffer == nil then st.momentum_buffer = zeros_like(p) end
    core.optim_rmsprop(p, g, st.square_avg, o.centered and st.grad_avg or nil,
      o.momentum > 0 and st.momentum_buffer or nil, o.lr, o.alpha, o.eps, o.weight_decay, o.momentum)
  end,
}

-- Checks the options read from src (an option table or the optimizer
-- itself), defaults filled in.  Returns name -> value, or nil, message.
local function check_options(fn, kind, src)
  local o = {}
  for _, spec in ipairs(kind.options) do
    local name, k, v = spec[1], spec[2], src[spec[1]]
    if v == nil and spec[3] ~= REQUIRED then v = spec[3] end
    if not k.ok(v) then return nil, string.format("%s: %s must be %s, got %s", fn, name, k.want, describe(v)) end
    o[name] = k.copy and k.copy(v) or v
  end
  local msg = kind.cross and kind.cross(o)
  if msg then return nil, fn .. ": " .. msg end
  return o
end

--------------------------------------------------- collecting parameters

-- The (parameters, gradients) pairs of a module, an optimizer or a list of
-- them: bptt.Module.collect, shared with bptt.clip.
optim.collect = Module.collect

------------------------------------------------------------ the object

local Optimizer = util.class("bptt.Optimizer")
Optimizer.__optimizer = true

local function new(name, m, opts)
  local fn = "bptt.optim." .. name
  local kind = KINDS[name]
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(string.format("%s: expected a table of options, got %s", fn, type(opts)), 3)
  end
  local allowed = {}
  for _, spec in ipairs(kind.options) do allowed[spec[1]] = true end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for _, spec in ipairs(kind.options) do names[#names + 1] = spec[1] end
      error(string.format("%s: unknown option %q (options: %s)", fn, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  local o, err = check_options(fn, kind, opts)
  if not o then error(err, 3) end
  local pairs_, sources = optim.collect(fn, m)
  if not pairs_ then error(sources, 3) end
  local self = setmetatable({}, Optimizer)
  for k, v in pairs(o) do self[k] = v end
  self.kind, self.steps = name, 0
  self._fn, self._kind, self._pairs, self._sources, self._state = fn, kind, pairs_, sources, {}
  for i = 1, #pairs_ do self._state[i] = {} end
  return self
end

for name in pairs(KINDS) do
  optim[name] = function(m, opts)
    local opt = new(name, m, opts) -- not a tail call: errors point at the caller
    return opt
  end
end

--- One step over every pair, with the options as they are now.
function Optimizer:step()
  local fn = self._fn .. ":step"
  local o, err = check_options(fn, self._kind, self)
  if not o then error(err, 2) end
  for _, s in ipairs(self._sources) do
    local p, g = s[1]:flat_parameters()
    if p ~= s[2] or g ~= s[3] then
      error(fn .. ": a module's parameters were reallocated after the optimizer was made "
        .. "(e.g. put into a container); make the optimizer after the model", 2)
    end
  end
  local t = self.steps + 1
  local update = self._kind.update
  for i, pg in ipairs(self._pairs) do update(o, pg[1], pg[2], self._state[i], t) end
  self.steps = t
  return self
end

function Optimizer:zero_grad()
  for _, pg in ipairs(self._pairs) do pg[2]:zero() end
  return self
end

--- The parameter and gradient tensors, a list of {flat, flat_grad} (shared).
function Optimizer:flat_pairs() return self._pairs end

-- The state buffers present, in the kind's order (every pair has the same).
local function present_buffers(self)
  local out, st = {}, self._state[1]
  for _, b in ipairs(self._kind.buffers) do
    if st[b] ~= nil then out[#out + 1] = b end
  end
  return out
end

--- tensors, meta for a checkpoint (see the top of this file).  The tensors
-- are the live buffers: clone them to keep a snapshot while training goes on.
function Optimizer:state_dict(prefix)
  local fn = self._fn .. ":state_dict"
  prefix = prefix or ""
  if type(prefix) ~= "string" then error(fn .. ": prefix must be a string, got " .. type(prefix), 2) end
  local tensors, meta = {}, {}
  local bufs = present_buffers(self)
  for i, st in ipairs(self._state) do
    for _, b in ipairs(bufs) do tensors[prefix .. b .. "." .. i] = st[b] end
  end
  meta[prefix .. "optimizer"] = self.kind
  meta[prefix .. "format"] = "1"
  meta[prefix .. "step"] = string.format("%d", self.steps)
  meta[prefix .. "pairs"] = string.format("%d", #self._pairs)
  meta[prefix .. "buffers"] = table.concat(bufs, ",")
  for _, spec in ipairs(self._kind.options) do meta[prefix .. spec[1]] = spec[2].encode(self[spec[1]]) end
  return tensors, meta
end

--- Restores a state_dict; checks everything first, so a bad table leaves
-- the optimizer unchanged.
function Optimizer:load_state_dict(tensors, meta, prefix)
  local fn = self._fn .. ":load_state_dict"
  prefix = prefix or ""
  local function fail(fmt, ...) error(string.format("%s: " .. fmt, fn, ...), 3) end
  if type(prefix) ~= "string" then fail("prefix must be a string, got %s", type(prefix)) end
  if type(tensors) ~= "table" then fail("tensors must be a table of name -> tensor, got %s", type(tensors)) end
  if type(meta) ~= "table" then fail("meta must be a table of name -> string, got %s", type(meta)) end
  local function get(key)
    local v = meta[prefix .. key]
    if type(v) ~= "string" then fail("meta[%q] must be a string, got %s", prefix .. key, describe(v)) end
    return v
  end
  if get("optimizer") ~= self.kind then fail("the state is for %s, not %s", describe(get("optimizer")), self.kind) end
  if get("format") ~= "1" then fail("unknown state format %s (expected \"1\")", describe(get("format"))) end
  local steps = tonumber(get("step"))
  if not steps or steps < 0 or steps ~= math.floor(steps) or steps > 2 ^ 53 then
    fail("meta[%q] must be a whole number >= 0, got %s", prefix .. "step", describe(get("step")))
  end
  local npairs = #self._pairs
  if tonumber(get("pairs")) ~= npairs then
    fail("the state has %s parameter buffers, this optimizer %d", describe(get("pairs")), npairs)
  end
  local src = {}
  for _, spec in ipairs(self._kind.options) do
    local s = get(spec[1])
    local v = spec[2].decode(s)
    if v == nil then fail("meta[%q] must be %s, got %s", prefix .. spec[1], spec[2].want, describe(s)) end
    src[spec[1]] = v
  end
  local o, err = check_options(fn, self._kind, src)
  if not o then error(err, 2) end
  -- the buffers: each named one, for every pair, of the pair's dtype and size
  local known, bufs, seen = {}, {}, {}
  for _, b in ipairs(self._kind.buffers) do known[b] = true end
  for b in get("buffers"):gmatch("[^,]+") do
    if not known[b] or seen[b] then fail("meta[%q]: unknown or repeated buffer %q", prefix .. "buffers", b) end
    seen[b], bufs[#bufs + 1] = true, b
  end
  local expected = {}
  for i, pg in ipairs(self._pairs) do
    local dt, n = pg[1]:dtype(), pg[1]:numel()
    for _, b in ipairs(bufs) do
      local key = prefix .. b .. "." .. i
      local t = tensors[key]
      if t == nil then fail("missing tensor %q", key) end
      if not core.is_tensor(t) then fail("%s must be a tensor, got %s", key, type(t)) end
      if t:dtype() ~= dt then fail("%s must be %s, got %s", key, dt, t:dtype()) end
      if t:dim() ~= 1 or t:numel() ~= n then fail("%s must be %d, got %s", key, n, util.shape_str(t)) end
      expected[key] = true
    end
  end
  for key in pairs(tensors) do
    local mine = type(key) == "string" and key:sub(1, #prefix) == prefix
    if (prefix == "" or mine) and not expected[key] then fail("unexpected tensor %q", tostring(key)) end
  end
  -- commit
  for i, pg in ipairs(self._pairs) do
    local old, st = self._state[i], {}
    for _, b in ipairs(bufs) do
      local t = tensors[prefix .. b .. "." .. i]
      st[b] = old[b] or zeros_like(pg[1])
      if st[b] ~= t then st[b]:copy(t) end
    end
    self._state[i] = st
  end
  for k, v in pairs(o) do self[k] = v end
  self.steps = steps
  return self
end

function Optimizer:__tostring()
  local parts, n = {}, 0
  for _, spec in ipairs(self._kind.options) do
    parts[#parts + 1] = spec[1] .. "=" .. (spec[2] == BETAS and "{" .. BETAS.encode(self[spec[1]]) .. "}"
      or tostring(self[spec[1]]))
  end
  for _, pg in ipairs(self._pairs) do n = n + pg[1]:numel() end
  return string.format("%s{%s} (%d parameters, %d steps)", self._fn, table.concat(parts, ", "), n, self.steps)
end

optim.Optimizer = Optimizer

return optim
