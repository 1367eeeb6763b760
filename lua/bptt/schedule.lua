--- bptt.schedule: learning-rate schedules, plain Lua objects that set opt.lr.
--
--   local sched = bptt.schedule.chain{
--     bptt.schedule.warmup(opt, {steps = 100}),
--     bptt.schedule.cosine(opt, {t_max = 10000, eta_min = 1e-5}),
--   }
--   for ... do  ... opt:step(); sched:step()  end
--
-- A schedule is a function of its position k (how many times sched:step()
-- was called) and the base lr:
--   step         base * gamma^floor(k / step_size)                  (gamma 0.1)
--   exponential  base * gamma^k
--   cosine       eta_min + (base - eta_min) (1 + cos(pi k / t_max)) / 2
--                (eta_min 0): past t_max it climbs back up, as PyTorch's
--                CosineAnnealingLR; with hold = true it stays at eta_min
--                from t_max on (k replaced by min(k, t_max))
--   warmup       base * (f + (1 - f) min(k, steps) / steps)
--                (start_factor f = 1/3, as PyTorch's LinearLR; then base)
--   chain{s1, s2, ...}  runs s1 for its length, then s2 from its own k = 0,
--                ...; the length of warmup is steps, of cosine t_max, of a
--                chain the sum (step and exponential have none, so they can
--                only come last).
-- These closed forms are the ones PyTorch documents for StepLR,
-- ExponentialLR, CosineAnnealingLR (without hold) and LinearLR (the order of
-- schedules in a chain is SequentialLR's).
--
-- The base lr is opt.initial_lr, which the first schedule made on opt sets
-- from opt.lr (PyTorch's initial_lr); so several schedules of one chain share
-- it although each sets opt.lr = lr_at(0) when it is made.  Making a
-- schedule sets opt.lr to its value at k = 0; sched:step() moves to k + 1 and
-- sets opt.lr (call it after opt:step()).  The schedules inside a chain are
-- driven by the chain: step the chain only.
--
--   sched:lr_at(k)      the lr at position k (no side effect)
--   sched.k             the position (sched:step() calls so far)
--   sched:state()       a string "step=<k> base_lr=<lr>" (fits checkpoint metadata)
--   sched:set_state(s)  restores it (k and base lr) and sets opt.lr
local util = require "bptt.util"

local schedule = {}

local INF = math.huge

local Schedule = util.class("bptt.Schedule")
Schedule.__schedule = true

local function is_schedule(s) return type(s) == "table" and getmetatable(s) ~= nil and getmetatable(s).__schedule end

local function fail(fn, fmt, ...) error(string.format("%s: " .. fmt, fn, ...), 4) end

local function number(fn, name, v, default, max)
  if v == nil then v = default end
  max = max or INF
  if type(v) ~= "number" or not (v >= 0 and v <= max and v < INF) then
    fail(fn, "%s must be a number %s, got %s", name, max == INF and ">= 0" or "in [0, " .. max .. "]", tostring(v))
  end
  return v
end

local function whole(fn, name, v)
  if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > 2 ^ 53 then
    fail(fn, "%s must be a whole number >= 1, got %s", name, tostring(v))
  end
  return v
end

-- Checks opt and the options table, takes the base lr, sets opt.lr = lr_at(0).
local function init(self, fn, opt, opts, allowed)
  if type(opt) ~= "table" or type(opt.lr) ~= "number" then
    fail(fn, "opt must be an optimizer (a table with a number lr), got %s", type(opt))
  end
  if type(opts) ~= "table" then fail(fn, "expected a table of options, got %s", type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for a in pairs(allowed) do names[#names + 1] = a end
      table.sort(names)
      fail(fn, "unknown option %q (options: %s)", tostring(k), table.concat(names, ", "))
    end
  end
  if opt.initial_lr == nil then opt.initial_lr = opt.lr end
  self._fn, self.opt, self.base_lr, self.k = fn, opt, opt.initial_lr, 0
end

local function start(self)
  self.opt.lr = self:lr_at(0)
  return self
end

function Schedule:lr_at(k)
  if type(k) ~= "number" or k ~= math.floor(k) or k < 0 or k > 2 ^ 53 then
    error(string.format("%s:lr_at: k must be a whole number >= 0, got %s", self._fn, tostring(k)), 2)
  end
  return self:_lr(k, self.base_lr)
end

function Schedule:step()
  self.k = self.k + 1
  self.opt.lr = self:lr_at(self.k)
  return self.opt.lr
end

local numstr = util.numstr

function Schedule:state() return string.format("step=%d base_lr=%s", self.k, numstr(self.base_lr)) end

function Schedule:set_state(s)
  local fn = self._fn .. ":set_state"
  local k, base
  if type(s) == "string" then
    k, base = s:match("^step=(%d+) base_lr=(%S+)$")
    k, base = tonumber(k), tonumber(base)
  end
  if not k or not base or not (base >= 0 and base < INF) then
    error(string.format('%s: s must be a string "step=<k> base_lr=<lr>" from sched:state(), got %s', fn,
      type(s) == "string" and string.format("%q", s) or type(s)), 2)
  end
  self.k, self.base_lr = k, base
  self.opt.lr = self:lr_at(k)
  return self
end

function Schedule:__tostring()
  return string.format("%s (step %d, lr %.6g)", self._fn, self.k, self:lr_at(self.k))
end

----------------------------------------------------------------- kinds

local Step = util.class("bptt.schedule.step", Schedule)
function Step:_lr(k, base) return base * self.gamma ^ math.floor(k / self.step_size) end

--- bptt.schedule.step(opt, {step_size=, gamma=0.1})
function schedule.step(opt, opts)
  local fn = "bptt.schedule.step"
  local self = setmetatable({}, Step)
  init(self, fn, opt, opts, { step_size = true, gamma = true })
  self.step_size = whole(fn, "step_size", opts.step_size)
  self.gamma = number(fn, "gamma", opts.gamma, 0.1)
  return start(self)
end

local Exponential = util.class("bptt.schedule.exponential", Schedule)
function Exponential:_lr(k, base) return base * self.gamma ^ k end

--- bptt.schedule.exponential(opt, {gamma=})
function schedule.exponential(opt, opts)
  local fn = "bptt.schedule.exponential"
  local self = setmetatable({}, Exponential)
  init(self, fn, opt, opts, { gamma = true })
  self.gamma = number(fn, "gamma", opts.gamma)
  return start(self)
end

local Cosine = util.class("bptt.schedule.cosine", Schedule)
function Cosine:_lr(k, base)
  local e = self.eta_min
  if self.hold and k > self.t_max then k = self.t_max end
  return e + (base - e) * (1 + math.cos(math.pi * k / self.t_max)) / 2
end

--- bptt.schedule.cosine(opt, {t_max=, eta_min=0, hold=false})
function schedule.cosine(opt, opts)
  local fn = "bptt.schedule.cosine"
  local self = setmetatable({}, Cosine)
  init(self, fn, opt, opts, { t_max = true, eta_min = true, hold = true })
  self.t_max = whole(fn, "t_max", opts.t_max)
  if opts.hold ~= nil and type(opts.hold) ~= "boolean" then
    fail(fn, "hold must be true or false, got %s", tostring(opts.hold))
  end
  self.hold = opts.hold or false
  self.eta_min = number(fn, "eta_min", opts.eta_min, 0)
  self.length = self.t_max
  return start(self)
end

local Warmup = util.class("bptt.schedule.warmup", Schedule)
function Warmup:_lr(k, base)
  local f = self.start_factor
  return base * (f + (1 - f) * math.min(k, self.length) / self.length)
end

--- bptt.schedule.warmup(opt, {steps=, start_factor=1/3})
function schedule.warmup(opt, opts)
  local fn = "bptt.schedule.warmup"
  local self = setmetatable({}, Warmup)
  init(self, fn, opt, opts, { steps = true, start_factor = true })
  self.length = whole(fn, "steps", opts.steps)
  self.start_factor = number(fn, "start_factor", opts.start_factor, 1 / 3, 1)
  return start(self)
end

local Chain = util.class("bptt.schedule.chain", Schedule)
function Chain:_lr(k, base)
  local list = self.schedules
  for i = 1, #list - 1 do
    local len = list[i].length
    if k < len then return list[i]:_lr(k, base) end
    k = k - len
  end
  return list[#list]:_lr(k, base)
end

--- bptt.schedule.chain{s1, s2, ...}: schedules made on the same optimizer,
-- each but the last with a length (warmup, cosine or a chain of those).
function schedule.chain(list)
  local fn = "bptt.schedule.chain"
  if type(list) ~= "table" or #list == 0 then
    error(fn .. ": expected a list of schedules, got " .. (type(list) == "table" and "an empty table" or type(list)), 2)
  end
  local length = 0
  for i = 1, #list do -- not ipairs: a hole (nil) is an error, not the end
    local s = list[i]
    if not is_schedule(s) then error(string.format("%s: [%d] must be a schedule, got %s", fn, i, type(s)), 2) end
    if s.opt ~= list[1].opt then error(string.format("%s: [%d] schedules another optimizer than [1]", fn, i), 2) end
    if i < #list and s.length == nil then
      error(string.format("%s: [%d] (%s) has no length, so it can only come last", fn, i, s._fn), 2)
    end
    length = s.length and length + s.length or nil
  end
  local self = setmetatable({}, Chain)
  self._fn, self.opt, self.base_lr, self.k = fn, list[1].opt, list[1].base_lr, 0
  self.schedules, self.length = { unpack(list) }, length
  return start(self)
end

schedule.Schedule = Schedule

return schedule
