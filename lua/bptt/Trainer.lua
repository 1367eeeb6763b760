--- bptt.Trainer: a training loop with truncated BPTT, validation, and
-- checkpoints that resume exactly.
--
--   local trainer = bptt.Trainer{model = lm, optimizer = opt, train = batches,
--                                val = val_batches, clip = 5, schedule = sched}
--   for i = 1, 2000 do
--     local loss = trainer:step()
--     if i % 100 == 0 then print(i, loss, trainer:evaluate()) end
--   end
--   trainer:save("ckpt.safetensors", { vocab = corpus.vocab:serialize() })
--
-- The parts, each checked when the trainer is made:
--   model      any module: forward(x), backward(dout), parameters() (and
--              state_dict, load_state_dict, flat_parameters for checkpoints,
--              as bptt.Module gives).  A model that carries state between
--              batches (truncated BPTT) may have reset_state(),
--              get_state() -> table of tensors, set_state(table or nil):
--              the trainer resets it when the batches say the streams
--              restart, holds it around evaluation and saves it.
--   optimizer  a bptt.optim optimizer over (some of) the model's parameters
--   train, val batches: x, y, restart = b:next(); b:state(), b:set_state(s)
--              for checkpoints; val also b:count() (bptt.data.Batches)
--   loss       a criterion: loss = forward(out, y), dout = backward()
--              (default bptt.CrossEntropy{})
--
-- One step: take the next batch (x, y) (resetting the carried state when the
-- streams restart), forward, loss, backward, clip the global gradient norm,
-- optimizer step, schedule step.  A loss or gradient norm that is NaN or
-- infinite stops with an error naming the iteration, or, with
-- skip_nonfinite = true, drops that step (gradients zeroed, weights
-- untouched) and counts it in trainer.skipped.
--
-- A checkpoint (save/load) is one safetensors file holding the model's state
-- dict ("model.<name>"), the optimizer's state ("optim.<buffer>.<i>" and its
-- options), the carried state ("state.<key>": state.h, state.c for a
-- LanguageModel), and in the metadata the generator state, the data
-- position, the schedule position, the iteration, the model's configuration
-- (model.config, when it has one) and whatever the caller adds (the
-- vocabulary).  Resuming restores all of it: N iterations, save, load, M
-- more give the same weights, bit for bit, as N + M in one go (same thread
-- count).  The one part tied to bptt.LanguageModel is
-- Trainer.load_language_model, which makes the model a checkpoint describes.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"
local CrossEntropy = require "bptt.CrossEntropy"
local clip = require "bptt.clip"

local Trainer = util.class("bptt.Trainer")

local OPTIONS = { model = true, optimizer = true, train = true, val = true, clip = true, schedule = true,
  skip_nonfinite = true, loss = true, tbptt = true }

-- Checks that opts[field] has the methods named; `what` says what it should be.
local function has_methods(fn, field, v, methods, what)
  local ok = type(v) == "table" or type(v) == "userdata"
  for _, m in ipairs(methods) do
    if not ok then break end
    local okm, f = pcall(function() return v[m] end)
    ok = okm and type(f) == "function"
  end
  if not ok then
    local got = util.got(v)
    if type(v) == "table" then
      got = type(v.__name) == "string" and v.__name or (next(v) == nil and "an empty table" or "a table")
    end
    util.raise(string.format("%s: %s must be %s (with :%s()), got %s", fn, field, what, table.concat(methods, "(), :"),
      got))
  end
end

local function is_optimizer(v)
  local mt = type(v) == "table" and getmetatable(v)
  return mt and rawget(mt, "__optimizer") == true
end

local FORMAT = "bptt-checkpoint/1"

function Trainer:__init(opts)
  local fn = "bptt.Trainer"
  util.options(fn, opts, OPTIONS)
  for _, k in ipairs({ "model", "optimizer", "train" }) do
    if opts[k] == nil then util.raise(fn .. ": option " .. k .. " is required") end
  end
  has_methods(fn, "model", opts.model, { "forward", "backward", "parameters" }, "a module")
  if not is_optimizer(opts.optimizer) then
    util.raise(string.format("%s: optimizer must be an optimizer (e.g. bptt.optim.adam(model, {lr = 1e-3})), got %s",
      fn, util.got(opts.optimizer)))
  end
  -- an optimizer made for another model would train nothing
  local mine = Module.collect(fn, opts.model)
  local covers = false
  for _, pg in ipairs(opts.optimizer:flat_pairs()) do
    for _, m in ipairs(mine or {}) do covers = covers or core.optim_overlap(pg[1], m[1]) end
  end
  if not covers then
    util.raise(fn .. ": optimizer updates none of the model's parameters (was it made for another model?)")
  end
  has_methods(fn, "train", opts.train, { "next" }, "batches")
  if opts.val ~= nil then has_methods(fn, "val", opts.val, { "next", "count", "state", "set_state" }, "batches") end
  if opts.loss ~= nil then has_methods(fn, "loss", opts.loss, { "forward", "backward" }, "a criterion") end
  if opts.schedule ~= nil then has_methods(fn, "schedule", opts.schedule, { "step" }, "a schedule") end
  self.model, self.optimizer, self.train_batches, self.val_batches = opts.model, opts.optimizer, opts.train, opts.val
  self.schedule = opts.schedule
  if opts.clip ~= nil and (type(opts.clip) ~= "number" or not (opts.clip > 0)) then
    util.raise(fn .. ": clip must be a number > 0 (the maximum gradient norm), got " .. util.got(opts.clip))
  end
  self.clip = opts.clip
  if opts.skip_nonfinite ~= nil and type(opts.skip_nonfinite) ~= "boolean" then
    util.raise(fn .. ": skip_nonfinite must be true or false, got " .. util.got(opts.skip_nonfinite))
  end
  self.skip_nonfinite = opts.skip_nonfinite or false
  self.criterion = opts.loss or CrossEntropy{}
  self.iteration = 0
  self.skipped = 0
  if opts.tbptt ~= nil then self:_tbptt_init(fn, opts.tbptt) end
end

-- The carried-state protocol (optional methods of the model).
local function reset_state(m) if m.reset_state then m:reset_state() end end
local function get_state(m) return m.get_state and m:get_state() end
local function set_state(m, s) if m.set_state then m:set_state(s) end end

local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

-- TBPTT(k1, k2) (Williams & Peng 1990), tbptt = {k1 =, k2 =}: each step
-- takes k1 new steps (a batch of the train batches, seq = k1), runs forward
-- over the last k2 steps (the k2 - k1 kept from before, from the state
-- before them, then the new ones), takes the loss on the k1 new steps only
-- and backpropagates it through all k2: the gradient reaches k2 steps back
-- while the weights change every k1.  The state before the kept steps is
-- then moved on by a forward without loss over the steps that leave the
-- window (at most k1; before the weights change).  Without tbptt (or with
-- k1 = k2 = seq) a step is today's: forward and backward over one batch,
-- the state carried.  A checkpoint holds the window and its state.
function Trainer:_tbptt_init(fn, t)
  if type(t) ~= "table" then util.raise(fn .. ": tbptt must be a table {k1 =, k2 =}, got " .. util.got(t)) end
  util.options(fn .. ": tbptt", t, { k1 = true, k2 = true })
  local k1 = util.count(fn, "tbptt.k1", t.k1, 1)
  local k2 = util.count(fn, "tbptt.k2", t.k2, 1)
  if k2 < k1 then util.raise(string.format("%s: tbptt.k2 must be >= tbptt.k1 = %d, got %d", fn, k1, k2)) end
  has_methods(fn, "model", self.model, { "get_state", "set_state" }, "a module that carries state (tbptt)")
  self.tbptt = { k1 = k1, k2 = k2 }
end

-- t (T x ...) then u (U x ...) along the first dimension, as a new tensor
local function cat1(t, u)
  if t == nil then return u:clone() end
  local shape = t:shape()
  shape[1] = t:size(1) + u:size(1)
  shape[#shape + 1] = t:dtype()
  local r = core.zeros(unpack(shape))
  r:narrow(1, 1, t:size(1)):copy(t)
  r:narrow(1, t:size(1) + 1, u:size(1)):copy(u)
  return r
end

-- the last n steps of t (a copy), or nil for n = 0
local function tail1(t, n)
  if n == 0 then return nil end
  return t:narrow(1, t:size(1) - n + 1, n):clone()
end

function Trainer:_step_tbptt()
  local fn = "bptt.Trainer:step"
  local m, opt, tb = self.model, self.optimizer, self.tbptt
  local x, y, reset = self.train_batches:next()
  if x:size(1) ~= tb.k1 then
    util.raise(string.format("%s: tbptt.k1 = %d, but the batch has %d steps (make the batches with seq = k1)", fn,
      tb.k1, x:size(1)))
  end
  if reset then -- the streams restart: nothing kept
    reset_state(m)
    tb.x, tb.y, tb.state = nil, nil, nil
  end
  if tb.x == nil then tb.state = get_state(m) end
  local kept = tb.x and tb.x:size(1) or 0
  local wx, wy = cat1(tb.x, x), cat1(tb.y, y)
  local n = wx:size(1) -- = kept + k1 <= k2
  m:train()
  opt:zero_grad()
  set_state(m, tb.state)
  local out = m:forward(wx)
  -- the loss of the k1 new steps; zero gradient on the kept ones
  local loss = self.criterion:forward(out:narrow(1, kept + 1, tb.k1), y)
  local dnew = self.criterion:backward()
  local dout = dnew
  if kept > 0 then
    local shape = out:shape()
    shape[#shape + 1] = out:dtype()
    dout = core.zeros(unpack(shape))
    dout:narrow(1, kept + 1, tb.k1):copy(dnew)
  end
  m:backward(dout)
  -- the window moves on: keep the last k2 - k1 steps, and the state before
  -- them, from a forward with the weights of this step (with keep = 0, the
  -- state this forward ended in: k1 = k2 is today's step, bit for bit)
  local keep = math.min(n, tb.k2 - tb.k1)
  if keep > 0 then
    set_state(m, tb.state) -- (the window not full yet: the same state stays)
    if n > keep then m:forward(wx:narrow(1, 1, n - keep)) end
  end
  tb.state = get_state(m)
  tb.x, tb.y = tail1(wx, keep), tail1(wy, keep)
  local norm = clip.clip_grad_norm(m, self.clip or math.huge)
  self.iteration = self.iteration + 1
  local ok = finite(loss) and not (norm and not finite(norm))
  if not ok and not self.skip_nonfinite then
    error(string.format("bptt.Trainer:step: iteration %d: diverged (a NaN or infinite loss or gradient): loss %s, "
      .. "gradient norm %s; the weights were not updated; skip_nonfinite = true drops such steps", self.iteration,
      tostring(loss), tostring(norm)), 2)
  end
  if ok then opt:step() else
    opt:zero_grad()
    self.skipped = self.skipped + 1
  end
  if self.schedule then self.schedule:step() end
  return loss, norm
end

--- One iteration; returns the batch's loss and the global gradient norm
-- (before clipping; computed with or without clip).
function Trainer:step()
  if self.tbptt then return self:_step_tbptt() end
  local m, opt = self.model, self.optimizer
  local x, y, reset = self.train_batches:next()
  if reset then reset_state(m) end
  m:train()
  opt:zero_grad()
  local logits = m:forward(x)
  local loss = self.criterion:forward(logits, y)
  m:backward(self.criterion:backward())
  -- the norm is taken without clipping too: an Inf or NaN gradient must be
  -- seen even when the loss is finite
  local norm = clip.clip_grad_norm(m, self.clip or math.huge)
  self.iteration = self.iteration + 1
  if not finite(loss) or (norm and not finite(norm)) then
    local what = string.format("loss %s, gradient norm %s", tostring(loss), tostring(norm))
    if not self.skip_nonfinite then
      error(string.format("bptt.Trainer:step: iteration %d: diverged (a NaN or infinite loss or gradient): %s; "
        .. "the weights were not updated; skip_nonfinite = true drops such steps", self.iteration, what), 2)
    end
    opt:zero_grad()
    self.skipped = self.skipped + 1
    if self.schedule then self.schedule:step() end
    return loss, norm
  end
  opt:step()
  if self.schedule then self.schedule:step() end
  return loss, norm
end

--- Mean loss over the validation batches (all, or the first max_batches),
-- from a zero state, in evaluation mode.  The training state (carried hidden
-- state, data position) is left as it was.
function Trainer:evaluate(max_batches)
  local val = self.val_batches
  if val == nil then error("bptt.Trainer:evaluate: no val batches were given", 2) end
  if max_batches ~= nil then util.count("bptt.Trainer:evaluate", "max_batches", max_batches, 1) end
  local m = self.model
  local saved_state = get_state(m)
  local saved_pos = val:state()
  local was_training = m.training
  m:evaluate()
  reset_state(m)
  local n = val:count()
  if max_batches and max_batches < n then n = max_batches end
  local total = 0
  for _ = 1, n do
    local x, y, reset = val:next()
    if reset then reset_state(m) end
    total = total + self.criterion:forward(m:forward(x), y)
  end
  val:set_state(saved_pos)
  set_state(m, saved_state)
  if was_training then m:train() end
  return total / n
end

local function prefixed(dst, src, prefix)
  for k, v in pairs(src) do dst[prefix .. k] = v end
end

--- Writes a checkpoint (atomically: a crash mid-save keeps the previous
-- file).  extra: metadata strings to add (e.g. vocab).  Returns true, or nil
-- and a message.
function Trainer:save(path, extra)
  if extra ~= nil and type(extra) ~= "table" then
    error("bptt.Trainer:save: extra must be a table of name -> string, got " .. type(extra), 2)
  end
  local m = self.model
  local tensors, meta = {}, {}
  prefixed(tensors, m:state_dict(), "model.")
  local ot, om = self.optimizer:state_dict("optim.")
  prefixed(tensors, ot, "")
  prefixed(meta, om, "optim.")
  for k, t in pairs(get_state(m) or {}) do tensors["state." .. k] = t end
  local tb = self.tbptt
  if tb then -- the window TBPTT keeps and the state before it
    if tb.x then tensors["tbptt.x"], tensors["tbptt.y"] = tb.x, tb.y end
    for k, t in pairs(tb.state or {}) do tensors["tbptt.state." .. k] = t end
  end
  meta["bptt.format"] = FORMAT
  meta.iteration = tostring(self.iteration)
  meta.skipped = tostring(self.skipped)
  meta.rng = core.rng_state()
  meta["data.train"] = self.train_batches:state()
  if self.schedule then meta.schedule = self.schedule:state() end
  if m.config then
    for k, v in pairs(m.config) do meta["config." .. k] = tostring(v) end
  end
  for k, v in pairs(extra or {}) do meta[k] = v end
  return core.save(path, tensors, meta)
end

--- The configuration a checkpoint's model was made with (config.* metadata
-- as a table of numbers/strings), and the metadata; or nil, message.
function Trainer.read_config(path)
  local tensors, meta = core.load(path, { require_checksum = true }) -- a checkpoint always carries one
  if not tensors then return nil, meta end
  if meta["bptt.format"] ~= FORMAT then
    return nil, string.format("%s is not a bptt training checkpoint (bptt.format = %s)", path, tostring(meta["bptt.format"]))
  end
  local config = {}
  for k, v in pairs(meta) do
    local key = k:match("^config%.(.+)$")
    if key then config[key] = tonumber(v) or (v == "true" and true) or (v == "false" and false) or v end
  end
  return config, meta, tensors
end

--- The bptt.LanguageModel a training checkpoint holds (made from its config.*
-- metadata), with its weights, and the checkpoint's metadata (the vocabulary
-- is meta.vocab); or nil, message.
function Trainer.load_language_model(path)
  local config, meta, tensors = Trainer.read_config(path)
  if not config then return nil, meta end
  local LanguageModel = require "bptt.LanguageModel"
  local lm = LanguageModel{ vocab = config.vocab, embed = config.embed, cell = config.cell, hidden = config.hidden,
    layers = config.layers, dropout = config.dropout, dtype = config.dtype }
  local sd = {}
  for k, v in pairs(tensors) do
    local name = k:match("^model%.(.+)$")
    if name then sd[name] = v end
  end
  lm:load_state_dict(sd)
  return lm, meta
end

--- The same as Trainer.load_language_model (its first name).
Trainer.load_model = Trainer.load_language_model

--- Restores everything a checkpoint holds into this trainer, whose model,
-- optimizer, batches and schedule must be made as the saved ones were.
-- Returns the metadata, or nil and a message (a missing or corrupt file;
-- nothing is changed then).  A checkpoint that does not fit is an error.
function Trainer:load(path)
  local fn = "bptt.Trainer:load"
  local config, meta, tensors = Trainer.read_config(path)
  if not config then return nil, meta end
  local m = self.model
  for k, v in pairs(m.config or {}) do
    if config[k] ~= nil and tostring(config[k]) ~= tostring(v) then
      error(string.format("%s: the checkpoint's model has %s = %s, this one %s", fn, k, tostring(config[k]), tostring(v)), 2)
    end
  end
  local model_sd, optim_t, optim_m = {}, {}, {}
  for k, v in pairs(tensors) do
    local name = k:match("^model%.(.+)$")
    if name then model_sd[name] = v elseif k:match("^optim%.") then optim_t[k] = v end
  end
  for k, v in pairs(meta) do
    local name = k:match("^optim%.(.+)$")
    if name then optim_m[name] = v end
  end
  -- each part checks its input before it changes anything; the model's
  -- weights are restored if a later part refuses
  local snapshot = m:flat_parameters():clone()
  local ok, err = pcall(function()
    m:load_state_dict(model_sd)
    self.optimizer:load_state_dict(optim_t, optim_m, "optim.")
  end)
  if not ok then
    m:flat_parameters():copy(snapshot)
    error(fn .. ": " .. tostring(err), 2)
  end
  local st = nil
  for k, t in pairs(tensors) do
    local name = k:match("^state%.(.+)$")
    if name then
      st = st or {}
      st[name] = t
    end
  end
  set_state(m, st)
  if self.tbptt then
    local tb, ts = self.tbptt, nil
    tb.x, tb.y = tensors["tbptt.x"], tensors["tbptt.y"]
    for k, t in pairs(tensors) do
      local name = k:match("^tbptt%.state%.(.+)$")
      if name then
        ts = ts or {}
        ts[name] = t
      end
    end
    tb.state = ts
  end
  core.set_rng_state(meta.rng)
  self.train_batches:set_state(meta["data.train"])
  if self.schedule and meta.schedule then self.schedule:set_state(meta.schedule) end
  self.iteration = tonumber(meta.iteration) or 0
  self.skipped = tonumber(meta.skipped) or 0
  return meta
end

return Trainer
