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
--              for checkpoints; val also b:count() (bptt.data.Batches).
--              Batches over a corpus of documents (b:separator() not nil)
--              give a 6th value, the document starts; the model then gets
--              forward(x, starts) and must say it takes them
--              (model.takes_starts, as bptt.LanguageModel)
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
--
-- Data-parallel training: dist = require "bptt.dist" (started by mpirun,
-- one process a rank), with train (and val) batches sharded
-- (bptt.data.Batches{..., shard = {dist.rank(), dist.size()}}).  The
-- trainer checks at construction that every rank was configured alike (model
-- and its configuration, dtype, parameter count, optimizer and its options,
-- clip, batches; an error on every rank names what differs), and broadcasts
-- rank 0's parameters and generator state.  The model is sharded
-- (m:shard(rank, N)): each rank draws its streams' share of the dropout
-- masks one process with all N*B streams would draw.  Each step averages the gradients over the ranks in
-- the model's ONE flat gradient buffer, before clipping: the N ranks take
-- the step one process would take with all N*B streams, up to summation
-- order, and stay identical.  A recurrent layer's slice starts its
-- all-reduce (MPI_Iallreduce) as soon as its backward ends (RNN.grad_ready),
-- while the layers below still run (overlap = false turns that off);
-- trainer.comm holds the seconds spent waiting and the seconds a blocking
-- all-reduce would have taken (measured every check_every steps).  Every
-- check_every steps (100) the ranks compare a CRC-32 of the parameters and
-- stop with an error naming the step if they drifted apart.  step() returns
-- the loss averaged over the ranks; evaluate() too.  save() is collective:
-- rank 0 writes the file, with every rank's carried state (L x N*B x H: the
-- layout one process with N*B streams has) and generator state; load() on
-- every rank restores each rank's part, then broadcasts rank 0's weights.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"
local CrossEntropy = require "bptt.CrossEntropy"
local clip = require "bptt.clip"

local Trainer = util.class("bptt.Trainer")

local OPTIONS = { model = true, optimizer = true, train = true, val = true, clip = true, schedule = true,
  skip_nonfinite = true, loss = true, dist = true, overlap = true, check_every = true, tbptt = true }

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
  for _, k in ipairs({ "train", "val" }) do
    local b = opts[k]
    if b and type(b.separator) == "function" and b:separator() ~= nil and not opts.model.takes_starts then
      util.raise(string.format("%s: %s batches mark document starts (separator %d) but the model does not take them "
        .. "(forward(x, starts), model.takes_starts): its state would cross documents", fn, k, b:separator()))
    end
  end
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
  if opts.tbptt ~= nil and opts.dist ~= nil then util.raise(fn .. ": tbptt cannot be combined with dist yet") end
  if opts.dist ~= nil then
    self:_dist_setup(fn, opts)
  elseif opts.overlap ~= nil or opts.check_every ~= nil then
    util.raise(fn .. ": overlap and check_every need dist")
  end
  if opts.tbptt ~= nil then self:_tbptt_init(fn, opts.tbptt) end
end

---------------------------------------------------------------- data parallel

-- The model's modules, depth first (children of bptt.Model).
local function modules(m, out)
  out = out or {}
  out[#out + 1] = m
  for _, c in ipairs(rawget(m, "_children") or {}) do modules(c[2], out) end
  return out
end

local function batches_layout(b)
  if not b or not b.state then return "-" end
  local s = b:state()
  return (s:gsub(" epoch=%d+ index=%d+", ""))
end

function Trainer:_dist_setup(fn, opts)
  local d = opts.dist
  has_methods(fn, "dist", d, { "init", "rank", "size", "allreduce", "broadcast", "iallreduce", "allgather",
    "check_same", "checksum", "offset", "gather" }, "bptt.dist (require \"bptt.dist\")")
  if opts.overlap ~= nil and type(opts.overlap) ~= "boolean" then
    util.raise(fn .. ": overlap must be true or false, got " .. util.got(opts.overlap))
  end
  if opts.check_every ~= nil then util.count(fn, "check_every", opts.check_every, 1) end
  local m = self.model
  if type(m.flat_parameters) ~= "function" then
    util.raise(fn .. ": with dist, model must have flat_parameters() (a bptt.Module or bptt.Model)")
  end
  d.init()
  self.dist, self.rank, self.world = d, d.rank(), d.size()
  self.check_every = opts.check_every or 100
  local flat, flat_grad = m:flat_parameters()
  self._flat, self._flat_grad = flat, flat_grad
  -- every rank configured alike: the error names what differs, on every rank
  local fields = { { "ranks", self.world }, { "model", tostring(m.__name) } }
  local keys = {}
  for k in pairs(m.config or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do fields[#fields + 1] = { "model config." .. k, tostring(m.config[k]) } end
  fields[#fields + 1] = { "model dtype", flat and flat:dtype() or "-" }
  fields[#fields + 1] = { "model parameters", flat and flat:numel() or 0 }
  local _, om = self.optimizer:state_dict("optim.")
  keys = {}
  for k in pairs(om) do keys[#keys + 1] = k end
  table.sort(keys)
  fields[#fields + 1] = { "optimizer", tostring(getmetatable(self.optimizer).__name) }
  for _, k in ipairs(keys) do fields[#fields + 1] = { "optimizer " .. k, tostring(om[k]) } end
  fields[#fields + 1] = { "clip", tostring(self.clip) }
  fields[#fields + 1] = { "skip_nonfinite", tostring(self.skip_nonfinite) }
  fields[#fields + 1] = { "train batches", batches_layout(self.train_batches) }
  fields[#fields + 1] = { "val batches", batches_layout(self.val_batches) }
  fields[#fields + 1] = { "overlap", tostring(opts.overlap ~= false) }
  fields[#fields + 1] = { "check_every", self.check_every }
  d.check_same(fn, fields)
  -- one generator for all: rank 0's state everywhere, and each rank draws its
  -- share of the masks one process with all the streams would draw
  core.set_rng_state(d.allgather(core.rng_state())[1])
  if type(m.shard) == "function" then m:shard(self.rank, self.world) end
  if flat == nil then return end
  if not flat:is_contiguous() or not flat_grad:is_contiguous() then
    util.raise(fn .. ": with dist, the model's flat parameters must be contiguous")
  end
  d.broadcast(flat, 0)
  self.comm = { wait = 0, blocking = 0, steps = 0, measured = 0, hidden = nil }
  self._pending, self._covered = {}, {}
  if opts.overlap ~= false and self.world > 1 then
    for _, mod in ipairs(modules(m)) do
      if mod.__name == "bptt.RNN" then
        mod.grad_ready = function(_, grads) self:_grads_ready(grads) end
      end
    end
  end
end

-- A layer's gradients are final: start the all-reduce of the part of the
-- flat gradient they span (contiguous in the flat buffer: one request).
function Trainer:_grads_ready(grads)
  local d, flat_grad = self.dist, self._flat_grad
  local lo, hi = math.huge, -1
  for _, g in pairs(grads) do
    local off = d.offset(flat_grad, g)
    if off == nil then return end -- not in the buffer: left to the final pass
    lo, hi = math.min(lo, off), math.max(hi, off + g:numel())
  end
  if hi < 0 then return end
  local view = flat_grad:narrow(1, lo + 1, hi - lo)
  self._pending[#self._pending + 1] = d.iallreduce(view, "mean")
  self._covered[#self._covered + 1] = { lo, hi }
  for _, r in ipairs(self._pending) do r:test() end -- lets MPI move the earlier ones on
end

-- Averages the flat gradient over the ranks: the parts no layer has started
-- yet go now, then every request is waited for.
function Trainer:_average_grads()
  local d, flat_grad = self.dist, self._flat_grad
  if flat_grad == nil or self.world == 1 then return end
  local t0 = d.wtime()
  local cov = self._covered
  table.sort(cov, function(a, b) return a[1] < b[1] end)
  local at, n = 0, flat_grad:numel()
  for _, c in ipairs(cov) do
    if c[1] > at then d.allreduce(flat_grad:narrow(1, at + 1, c[1] - at), "mean") end
    at = math.max(at, c[2])
  end
  if at < n then d.allreduce(flat_grad:narrow(1, at + 1, n - at), "mean") end
  for _, r in ipairs(self._pending) do r:wait() end
  self._pending, self._covered = {}, {}
  local c = self.comm
  c.wait, c.steps = c.wait + (d.wtime() - t0), c.steps + 1
end

local function allmean(d, v)
  local t = core.tensor({ v }, "float64")
  d.allreduce(t, "mean")
  return t:get(1)
end

-- Every check_every steps: the ranks' parameters must be the same bits; and
-- the time a blocking all-reduce of the whole gradient takes, to tell how
-- much of it the overlap hides.
function Trainer:_dist_check()
  local d = self.dist
  if self._flat == nil or self.iteration % self.check_every ~= 0 then return end
  local sums = d.allgather(string.format("%.0f", d.checksum(self._flat)))
  for r = 2, #sums do
    if sums[r] ~= sums[1] then
      error(string.format("bptt.Trainer:step: iteration %d: the ranks' parameters differ (CRC-32 %s on rank 0, "
        .. "%s on rank %d): the ranks drifted apart", self.iteration, sums[1], sums[r], r - 1), 3)
    end
  end
  if self.world > 1 then
    local scratch = self._comm_scratch or self._flat_grad:clone()
    self._comm_scratch = scratch
    d.barrier()
    local t0 = d.wtime()
    d.allreduce(scratch, "mean")
    local c = self.comm
    c.blocking, c.measured = c.blocking + (d.wtime() - t0), c.measured + 1
    local per_step_wait = c.wait / c.steps
    local per_blocking = c.blocking / c.measured
    c.hidden = per_blocking > 0 and math.max(0, 1 - per_step_wait / per_blocking) or 0
  end
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
  local x, y, reset, _, _, starts = self.train_batches:next()
  if starts ~= nil then
    util.raise(fn .. ": tbptt cannot be combined with document starts (a documents corpus) yet")
  end
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
  local x, y, reset, _, _, starts = self.train_batches:next()
  if reset then reset_state(m) end
  m:train()
  opt:zero_grad()
  local logits = m:forward(x, starts)
  local loss = self.criterion:forward(logits, y)
  m:backward(self.criterion:backward())
  if self.dist then
    self:_average_grads() -- before the clip: the clip sees the averaged gradient
    loss = allmean(self.dist, loss)
  end
  -- the norm is taken without clipping too: an Inf or NaN gradient must be
  -- seen even when the loss is finite
  local norm = clip.clip_grad_norm(m, self.clip or math.huge)
  self.iteration = self.iteration + 1
  if self.dist then self:_dist_check() end
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
    local x, y, reset, _, _, starts = val:next()
    if reset then reset_state(m) end
    total = total + self.criterion:forward(m:forward(x, starts), y)
  end
  val:set_state(saved_pos)
  set_state(m, saved_state)
  if was_training then m:train() end
  if self.dist then return allmean(self.dist, total / n) end
  return total / n
end

local function prefixed(dst, src, prefix)
  for k, v in pairs(src) do dst[prefix .. k] = v end
end

-- With dist: every rank's carried state, gathered on rank 0 into the
-- layout of one process with all N*B streams (streams in dimension 2), and
-- every rank's generator state.  Collective.
local function gather_state(self, st, meta)
  local d, N, r = self.dist, self.world, self.rank
  local out = {}
  local keys = {}
  for k in pairs(st or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local t = st[k]:contiguous()
    if t:dim() < 2 then
      error("bptt.Trainer:save: with dist, carried state " .. k .. " must have its streams in dimension 2", 3)
    end
    local shape = t:shape()
    local all = r == 0 and core.zeros(N * t:numel(), t:dtype()) or nil
    d.gather(t:view(-1), all, 0)
    if r == 0 then
      local full_shape = {}
      for i = 1, #shape do full_shape[i] = shape[i] end
      full_shape[2] = shape[2] * N
      local full = core.zeros(full_shape, t:dtype())
      local B = shape[2]
      for q = 0, N - 1 do
        full:narrow(2, q * B + 1, B):copy(all:narrow(1, q * t:numel() + 1, t:numel()):view(shape))
      end
      out[k] = full
    end
  end
  local rngs = d.allgather(core.rng_state())
  for q = 1, N do meta["rng.rank" .. (q - 1)] = rngs[q] end
  meta["dist.ranks"] = tostring(N)
  return out
end

--- Writes a checkpoint (atomically: a crash mid-save keeps the previous
-- file).  extra: metadata strings to add (e.g. vocab).  Returns true, or nil
-- and a message.  With dist, every rank calls it and rank 0 writes; every
-- rank gets rank 0's answer.
function Trainer:save(path, extra)
  if extra ~= nil and type(extra) ~= "table" then
    error("bptt.Trainer:save: extra must be a table of name -> string, got " .. type(extra), 2)
  end
  local m = self.model
  local tensors, meta = {}, {}
  local st = get_state(m)
  if self.dist then st = gather_state(self, st, meta) end
  if self.dist and self.rank ~= 0 then
    local answer = self.dist.allgather("")[1]
    if answer == "" then return true end
    return nil, answer
  end
  prefixed(tensors, m:state_dict(), "model.")
  local ot, om = self.optimizer:state_dict("optim.")
  prefixed(tensors, ot, "")
  prefixed(meta, om, "optim.")
  for k, t in pairs(st or {}) do tensors["state." .. k] = t end
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
  local ok, msg, errno = core.save(path, tensors, meta)
  if self.dist then self.dist.allgather(ok and "" or tostring(msg)) end
  return ok, msg, errno
end

--- The configuration a checkpoint's model was made with (config.* metadata
-- as a table of numbers/strings), and the metadata; or nil, message.
function Trainer.read_config(path)
  local tensors, meta = core.load(path, { require_checksum = true }) -- a checkpoint always carries one
  if not tensors then return nil, meta end
  if meta["bptt.format"] ~= FORMAT then
    return nil,
      string.format("%s is not a bptt training checkpoint (bptt.format = %s)", path, tostring(meta["bptt.format"]))
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
  if self.dist then
    -- collective: every rank read it, or every rank returns nil, message
    local all = self.dist.allgather(config and "" or tostring(meta))
    for r, msg in ipairs(all) do
      if msg ~= "" then return nil, string.format("rank %d: %s", r - 1, msg) end
    end
    local ranks = tonumber(meta["dist.ranks"] or "1")
    if ranks ~= self.world then
      error(string.format("%s: the checkpoint was written by a run on %d rank(s), this one has %d: exact resume "
        .. "needs the same number of ranks (the streams are laid out for it)", fn, ranks, self.world), 2)
    end
  end
  if not config then return nil, meta end
  local m = self.model
  for k, v in pairs(m.config or {}) do
    if config[k] ~= nil and tostring(config[k]) ~= tostring(v) then
      error(string.format("%s: the checkpoint's model has %s = %s, this one %s", fn, k, tostring(config[k]),
        tostring(v)), 2)
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
  if self.dist and st then
    -- this rank's streams of the checkpoint's N*B
    for k, t in pairs(st) do
      local B = t:size(2) / self.world
      st[k] = t:narrow(2, self.rank * B + 1, B):contiguous()
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
  core.set_rng_state(self.dist and meta["rng.rank" .. self.rank] or meta.rng)
  self.train_batches:set_state(meta["data.train"])
  if self.schedule and meta.schedule then self.schedule:set_state(meta.schedule) end
  self.iteration = tonumber(meta.iteration) or 0
  self.skipped = tonumber(meta.skipped) or 0
  if self.dist and self._flat then self.dist.broadcast(self._flat, 0) end
  return meta
end

return Trainer
