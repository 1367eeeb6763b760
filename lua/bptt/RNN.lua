--- bptt.RNN: stacked recurrent layers (tanh, relu, LSTM, GRU) over whole
-- sequences, forward and back through time in C.
--
--   local rnn = bptt.RNN{cell = "lstm", input = 65, hidden = 256, layers = 2, dropout = 0.1}
--   local y, hT, cT = rnn:forward(x, h0, c0)       -- x: T x B x input
--   local dx, dh0, dc0 = rnn:backward(dy, dhT, dcT [, {reuse_dy = true}])
--   rnn.output                                      -- y of the last forward
--
-- Carried state (truncated BPTT): with rnn.carry_state = true (or the
-- option carry_state = true), forward starts from the state the previous
-- forward ended in (zeros at first, and when B changes) and keeps the new
-- one; h0 and c0 are not given then.  reset_state([b]), get_state(),
-- set_state(s) and carried() zero, copy, restore and show it.  Two L x B x H
-- buffers (per state) take turns: forward reads one and writes the other,
-- so the state is never copied, and the one read stays intact for backward.
--
-- Parameters per layer k (PyTorch's names and layouts, gate blocks G = 1, 1,
-- 4, 3 for tanh, relu, lstm (i,f,g,o), gru (r,z,n)):
--   weight_ih_l{k} (G*H x I_k), weight_hh_l{k} (G*H x H), bias_ih_l{k}, bias_hh_l{k} (G*H)
-- For the seed note's Elman network h_t = f(V x_t + W h_{t-1} + b_h):
-- V = weight_ih_l0, W = weight_hh_l0, b_h = bias_ih_l0 + bias_hh_l0.
--
-- One C call runs one layer over all T steps (c/core/rnn.c); Lua loops over layers
-- only.  Dropout (training mode) applies to the outputs of every layer but
-- the last, as in PyTorch.
--
-- Memory (elements of the dtype), kept between forward and backward, per
-- layer: y T*B*H, the cell's cache (0, 0, 5TBH, 4TBH + 3BH for tanh, relu,
-- lstm, gru), and with dropout a mask and a dropped copy, 2*T*B*H; plus one
-- backward scratch shared by the layers (T*B*H*G' + 2BH, c/core/rnn.h) and the
-- L x B x H states.  The input gradients take two buffers, not one per layer:
-- going down the stack, layer k writes its dx into the buffer layer k+2
-- wrote (dead by then), so they alternate, T*B*max I_k each (backward's
-- reuse_dy = true lends dy, dead once the top layer has read it, for the
-- second: LanguageModel lends its decoder's dx); backward makes them at its
-- first call (a forward-only user never pays for them).
--
-- A layer fed one of its own buffers (rnn:forward(rnn:forward(x)) with
-- input = hidden, or backward given what the last backward returned) is an
-- error naming the argument: the kernels would read what they are writing.
--
-- rnn.grad_ready = function(rnn, grads) ... end, when set, is called by
-- backward as soon as layer k's parameter gradients are final (a list of
-- them: weight_ih, weight_hh and, with bias, bias_ih, bias_hh), while the
-- layers below have still to run.
--
-- Buffers grow to the largest T seen and are reused: no allocation per call
-- in steady state.  The returned tensors are these buffers, overwritten by
-- the next call: clone() what you keep.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local RNN = util.class("bptt.RNN", Module)

local GATES = { tanh = 1, relu = 1, lstm = 4, gru = 3 }
local OPTIONS = { cell = true, input = true, hidden = true, layers = true, bias = true, dropout = true, dtype = true,
  carry_state = true, bidirectional = true, checkpoint = true }

function RNN:__init(opts)
  local fn = "bptt.RNN"
  Module.__init(self)
  util.options(fn, opts, OPTIONS)
  if GATES[opts.cell] == nil then
    util.raise(string.format('%s: cell must be "tanh", "relu", "lstm" or "gru", got %s', fn, tostring(opts.cell)))
  end
  self.cell = opts.cell
  self.input = util.count(fn, "input", opts.input, 1)
  self.hidden = util.count(fn, "hidden", opts.hidden, 1)
  self.layers = util.count(fn, "layers", opts.layers, 1, 1)
  if opts.bias ~= nil and type(opts.bias) ~= "boolean" then
    util.raise(fn .. ": bias must be true or false, got " .. util.got(opts.bias))
  end
  self.bias = opts.bias ~= false
  if opts.carry_state ~= nil and type(opts.carry_state) ~= "boolean" then
    util.raise(fn .. ": carry_state must be true or false, got " .. util.got(opts.carry_state))
  end
  self.carry_state = opts.carry_state or false
  local p = opts.dropout or 0
  if type(p) ~= "number" or not (p >= 0 and p < 1) then
    util.raise(fn .. ": dropout must be a number in [0, 1), got " .. util.got(opts.dropout))
  end
  self.dropout = p
  if opts.bidirectional ~= nil and type(opts.bidirectional) ~= "boolean" then
    util.raise(fn .. ": bidirectional must be true or false, got " .. util.got(opts.bidirectional))
  end
  self.bidirectional = opts.bidirectional or false
  self._nd = self.bidirectional and 2 or 1 -- directions
  self.checkpoint = RNN._check_checkpoint(fn, opts.checkpoint)
  if self.checkpoint ~= nil and self.bidirectional then
    util.raise(fn .. ": checkpoint cannot be combined with bidirectional yet")
  end
  local G, H = GATES[self.cell], self.hidden
  local specs = {}
  for k = 0, self.layers - 1 do
    local I = k == 0 and self.input or self._nd * H
    for _, sfx in ipairs(self.bidirectional and { "", "_reverse" } or { "" }) do
      specs[#specs + 1] = { "weight_ih_l" .. k .. sfx, { G * H, I } }
      specs[#specs + 1] = { "weight_hh_l" .. k .. sfx, { G * H, H } }
      if self.bias then
        specs[#specs + 1] = { "bias_ih_l" .. k .. sfx, { G * H } }
        specs[#specs + 1] = { "bias_hh_l" .. k .. sfx, { G * H } }
      end
    end
  end
  self:_parameters_init(util.dtype(fn, opts.dtype), specs)
  self:reset()
  self._capT, self._B = 0, 0
end

-- checkpoint: nil (full BPTT), an integer >= 1, or "sqrt"
function RNN._check_checkpoint(fn, k)
  if k == nil or k == "sqrt" then return k end
  if type(k) ~= "number" or k ~= math.floor(k) or k < 1 or k >= 2 ^ 53 then
    util.raise(string.format('%s: checkpoint must be an integer >= 1 or "sqrt", got %s', fn, util.got(k)))
  end
  return k
end

--- The checkpoint interval for T steps: 0 (full BPTT), k, or ceil(sqrt(T)) for "sqrt".
function RNN:checkpoint_steps(T)
  local k = self.checkpoint
  if k == nil then return 0 end
  if k == "sqrt" then return math.max(1, math.ceil(math.sqrt(T))) end
  return k
end

--- PyTorch's default initialization: every parameter uniform(-1/sqrt(H), 1/sqrt(H)).
function RNN:reset()
  local k = 1 / math.sqrt(self.hidden)
  self._flat:uniform(-k, k)
  return self
end

-- (Re)allocates the per-layer buffers for T steps of batch B, growing to the
-- largest T seen; returns views narrowed to T.  All or nothing: when an
-- allocation fails (an error naming fn) the layer keeps its old buffers.
function RNN:_buffers(T, B, fn)
  local L, H, dt = self.layers, self.hidden, self.dtype
  local ck = self:checkpoint_steps(T)
  -- the kernels take cache and scratch of exactly the size for T steps
  local cache_n, scratch_n = core.rnn_sizes(self.cell, T, B, self.input, H, ck)
  if T > self._capT or B ~= self._B or cache_n > (self._cache_cap or 0) or scratch_n > (self._scratch_cap or 0) then
    local capT = math.max(T, B == self._B and self._capT or 0)
    local lstm = self.cell == "lstm"
    local ok, new = pcall(function()
      -- capacities: the sizes for capT steps, and never less than those for T or than before
      local cache_c, scratch_c = core.rnn_sizes(self.cell, capT, B, self.input, H, self:checkpoint_steps(capT))
      cache_c = math.max(cache_c, cache_n, B == self._B and self._cache_cap or 0)
      scratch_c = math.max(scratch_c, scratch_n, B == self._B and self._scratch_cap or 0)
      local st = {}
      for k = 1, L do
        local s = {
          y = core.zeros(capT, B, H, dt),
          cache = cache_c > 0 and core.zeros(cache_c, dt) or nil,
        }
        if self.dropout > 0 and k < L then
          s.mask = core.zeros(capT, B, H, dt)
          s.drop = core.zeros(capT, B, H, dt)
        end
        st[k] = s
      end
      return { _st = st, _capT = capT, _B = B, _scratch = core.zeros(scratch_c, dt), _gx = false,
        _cache_cap = cache_c, _scratch_cap = scratch_c,
        _h0 = core.zeros(L, B, H, dt), _hT = core.zeros(L, B, H, dt), _dh0 = core.zeros(L, B, H, dt),
        _c0 = lstm and core.zeros(L, B, H, dt) or nil, _cT = lstm and core.zeros(L, B, H, dt) or nil,
        _dc0 = lstm and core.zeros(L, B, H, dt) or nil }
    end)
    if not ok then
      local why = tostring(new):gsub("^[^:]*:%d+: ", "") -- the position inside this file
      util.raise(string.format("%s: cannot allocate the buffers for T = %d, B = %d (%s)", fn, T, B, why))
    end
    for k, v in pairs(new) do self[k] = v end
  end
  local v = { scratch = self._scratch:narrow(1, 1, scratch_n), k = ck }
  for k = 1, L do
    local s = self._st[k]
    v[k] = {
      y = s.y:narrow(1, 1, T),
      cache = s.cache and cache_n > 0 and s.cache:narrow(1, 1, cache_n) or nil,
      mask = s.mask and s.mask:narrow(1, 1, T),
      drop = s.drop and s.drop:narrow(1, 1, T),
    }
  end
  return v
end

local function state_arg(fn, name, t, self, B)
  if t == nil then return nil end
  util.tensor(fn, name, t, self.dtype)
  util.shape(fn, name, t, { self.layers, B, self.hidden })
  return t
end

-- Raises when t (contiguous) shares an element with one of the buffers this
-- call writes (a list of tensors, false for none): the kernel would read
-- what it is writing.
local function check_alias(fn, name, t, bufs, what)
  for _, b in ipairs(bufs) do
    if b and core.optim_overlap(t, b) then
      util.raise(string.format("%s: %s shares memory with this layer's %s, which this call overwrites "
        .. "(e.g. the output of its own last call): clone() it first", fn, name, what))
    end
  end
end

-- The carried state for batch B (carry_state): two pairs that take turns,
-- zeroed when B changes (all or nothing).
function RNN:_carry(B)
  if self._sh == nil or self._sh:size(2) ~= B then
    local L, H, dt, lstm = self.layers * self._nd, self.hidden, self.dtype, self.cell == "lstm"
    local sh, sh2 = core.zeros(L, B, H, dt), core.zeros(L, B, H, dt)
    local sc, sc2
    if lstm then sc, sc2 = core.zeros(L, B, H, dt), core.zeros(L, B, H, dt) end
    self._sh, self._sh2, self._sc, self._sc2 = sh, sh2, sc, sc2
  end
end

--- y, hT [, cT] = rnn:forward(x, h0, c0)
-- x: T x B x input; h0, c0: layers x B x hidden or nil (zeros); cT only for
-- lstm.  With carry_state, h0 and c0 are the carried state (not given) and
-- hT, cT the new one.
function RNN:forward(x, h0, c0, lengths, resets)
  local fn = "bptt.RNN:forward"
  if self.bidirectional or lengths ~= nil or resets ~= nil then
    self:_seq_supported(fn, self.bidirectional and "bidirectional" or lengths ~= nil and "lengths" or "resets")
    return self:_forward_seq(x, h0, c0, lengths, resets)
  end
  util.tensor(fn, "x", x, self.dtype)
  if x:dim() ~= 3 or x:size(3) ~= self.input or x:size(1) < 1 or x:size(2) < 1 then
    error(string.format("%s: x must be T x B x %d (T, B >= 1), got %s", fn, self.input, util.shape_str(x)), 2)
  end
  local T, B, L = x:size(1), x:size(2), self.layers
  local lstm = self.cell == "lstm"
  local carry = self.carry_state
  if carry and (h0 ~= nil or c0 ~= nil) then
    util.raise(fn .. ": h0 and c0 must be nil with carry_state (the carried state is used; set_state sets it)")
  end
  state_arg(fn, "h0", h0, self, B)
  if c0 ~= nil and not lstm then error(fn .. ": c0 is only for cell \"lstm\", this is \"" .. self.cell .. "\"", 2) end
  state_arg(fn, "c0", c0, self, B)
  local buf = self:_buffers(T, B, fn)
  if x:is_contiguous() then -- (a strided x is copied below)
    for k = 1, L do
      local s = self._st[k]
      check_alias(fn, "x", x, { s.y, s.drop or false, s.mask or false, s.cache or false }, "output and caches")
    end
    check_alias(fn, "x", x, { self._scratch, self._gx and self._gx[1] or false, self._gx and self._gx[2] or false },
      "backward buffers")
  end
  local sh0, sc0, shT, scT -- the states read and written
  if carry then
    self:_carry(B)
    sh0, sc0, shT, scT = self._sh, self._sc, self._sh2, self._sc2
  else
    -- h0 and c0 are copied: the caller may pass the hT of the previous call
    -- (truncated BPTT), which this call overwrites and backward needs.
    if h0 then self._h0:copy(h0) end
    if c0 then self._c0:copy(c0) end
    sh0, sc0, shT, scT = h0 and self._h0, c0 and self._c0, self._hT, self._cT
  end
  x = x:contiguous()
  local cell, P, train = self.cell, self.params, self.training and self.dropout > 0
  local inp = x
  for k = 1, L do
    local s, l = buf[k], k - 1
    s.x = inp
    core.rnn_forward(cell, P["weight_ih_l" .. l], P["weight_hh_l" .. l], P["bias_ih_l" .. l], P["bias_hh_l" .. l],
      inp, sh0 and sh0:select(1, k), sc0 and sc0:select(1, k), s.y, shT:select(1, k),
      lstm and scT:select(1, k) or nil, s.cache, nil, nil, nil, buf.k, buf.k > 0 and buf.scratch or nil)
    s.dropped = false
    if train and k < L then
      self:_uniform(s.mask, 2) -- T x B x H: the streams are dimension 2
      core.dropout_apply(s.y, s.mask, s.drop, self.dropout)
      s.dropped = true
      inp = s.drop
    else
      inp = s.y
    end
  end
  -- the state read stays as it is until the next forward: backward reads it
  if carry then self._sh, self._sh2, self._sc, self._sc2 = shT, sh0, scT, sc0 end
  self._fwd = { T = T, B = B, buf = buf, h0 = sh0 or nil, c0 = sc0 or nil }
  self.output = buf[L].y
  if lstm then return buf[L].y, shT, scT end
  return buf[L].y, shT
end

-- Input-gradient buffer j (1 or 2), flat, capT*B*width: buffer 1 takes the
-- dx of layers L, L-2, ..., buffer 2 those of L-1, L-3, ...  Made at the
-- first backward that needs it after the other buffers (re)grew; a failed
-- allocation raises before any gradient is touched.
local function input_grad_buffer(self, fn, j)
  local gx = self._gx or {}
  self._gx = gx
  if not gx[j] then
    local L, width = self.layers, 0
    for k = L - j + 1, 1, -2 do width = math.max(width, k == 1 and self.input or self.hidden) end
    local ok, t = pcall(core.zeros, self._capT * self._B * width, self.dtype)
    if not ok then
      local why = tostring(t):gsub("^[^:]*:%d+: ", "")
      util.raise(string.format("%s: cannot allocate the input gradients for T = %d, B = %d (%s)", fn, self._capT,
        self._B, why))
    end
    gx[j] = t
  end
  return gx[j]
end

local BACKWARD_OPTIONS = { reuse_dy = true }

--- dx, dh0 [, dc0] = rnn:backward(dy, dhT, dcT [, opts])
-- dy: T x B x hidden or nil; dhT, dcT: layers x B x hidden or nil.  Adds the
-- parameter gradients; may be called again after the same forward (the
-- gradients then add up).  opts.reuse_dy = true lends dy as scratch: once
-- the top layer has read it, the layers below may write their input
-- gradients over it (one T x B x max(input, hidden) buffer less); dy's
-- content is undefined afterwards.  (For a non-lstm layer, dcT is nil.)
function RNN:backward(dy, dhT, dcT, opts)
  local fn = "bptt.RNN:backward"
  local f = self._fwd
  if f == nil then util.raise(fn .. ": call forward first") end
  if f.seq then return self:_backward_seq(dy, dhT, dcT, opts) end
  local reuse = false
  if opts ~= nil then
    util.options(fn, opts, BACKWARD_OPTIONS)
    if opts.reuse_dy ~= nil and type(opts.reuse_dy) ~= "boolean" then
      util.raise(fn .. ": reuse_dy must be true or false, got " .. util.got(opts.reuse_dy))
    end
    reuse = opts.reuse_dy or false
  end
  local T, B, L, H = f.T, f.B, self.layers, self.hidden
  local lstm = self.cell == "lstm"
  if dy ~= nil then
    util.tensor(fn, "dy", dy, self.dtype)
    util.shape(fn, "dy", dy, { T, B, H })
    if not dy:is_contiguous() then dy, reuse = dy:contiguous(), false end
  end
  if dhT ~= nil then dhT = state_arg(fn, "dhT", dhT, self, B):contiguous() end
  if dcT ~= nil and not lstm then
    util.raise(fn .. ": dcT is only for cell \"lstm\", this is \"" .. self.cell .. "\"")
  end
  if dcT ~= nil then dcT = state_arg(fn, "dcT", dcT, self, B):contiguous() end
  local gx, lent = { input_grad_buffer(self, fn, 1), false }, false
  if L > 1 then
    local need = 0
    for k = L - 1, 1, -2 do need = math.max(need, T * B * (k == 1 and self.input or H)) end
    if reuse and dy ~= nil and dy:numel() >= need then
      gx[2], lent = dy:view(-1), true
    else
      gx[2] = input_grad_buffer(self, fn, 2)
    end
  end
  -- what the kernels write must not share memory with what they read (dy
  -- lent as buffer 2 is read by the top layer before the next one writes it)
  local written = { gx[1], self._scratch, self._dh0, self._dc0 or false, not lent and gx[2] }
  local what = "input, state or scratch gradients"
  if dy ~= nil then check_alias(fn, "dy", dy, written, what) end
  written[5] = gx[2]
  if dhT ~= nil then check_alias(fn, "dhT", dhT, written, what) end
  if dcT ~= nil then check_alias(fn, "dcT", dcT, written, what) end
  local cell, P, G = self.cell, self.params, self.grads
  local g = dy
  for k = L, 1, -1 do
    local s, l = f.buf[k], k - 1
    local I = k == 1 and self.input or H
    -- layer k reads g (layer k+1's dx) and writes over layer k+2's, now dead
    local dx = gx[(L - k) % 2 + 1]:narrow(1, 1, T * B * I):view(T, B, I)
    local fdh, fdc, fdW, fwork, fcol = self:_flow_args(fn, T, B, k)
    core.rnn_backward(cell, P["weight_ih_l" .. l], P["weight_hh_l" .. l], s.x,
      f.h0 and f.h0:select(1, k) or nil, f.c0 and f.c0:select(1, k) or nil, s.y, s.cache,
      g, dhT and dhT:select(1, k), dcT and dcT:select(1, k),
      dx, self._dh0:select(1, k), lstm and self._dc0:select(1, k) or nil,
      G["weight_ih_l" .. l], G["weight_hh_l" .. l], G["bias_ih_l" .. l], G["bias_hh_l" .. l], f.buf.scratch,
      nil, nil, nil, fdh, fdc, fdW, fwork, fcol, f.buf.k, P["bias_ih_l" .. l], P["bias_hh_l" .. l])
    -- layer k's parameter gradients are final: tell who asked (bptt.Trainer
    -- with dist starts their all-reduce while the layers below still run)
    if self.grad_ready then
      self.grad_ready(self, { G["weight_ih_l" .. l], G["weight_hh_l" .. l], G["bias_ih_l" .. l], G["bias_hh_l" .. l] })
    end
    g = dx
    if k > 1 and f.buf[k - 1].dropped then
      core.dropout_backward(g, f.buf[k - 1].mask, g) -- through the mask of the layer below
    end
  end
  if lstm then return g, self._dh0, self._dc0 end
  return g, self._dh0
end

-- ---- bidirectional layers, variable lengths, resets -----------------------
--
-- forward(x, h0, c0, lengths, resets) takes this path when the layer is
-- bidirectional or lengths or resets are given.  Per layer and direction
-- one C call over all T steps (c/core/rnn.h's bptt_rnn_seq): the reverse
-- direction runs t = T..1; with lengths the rows are sorted longest first
-- (one copy of x, h0, c0 in and of y, hT, cT out, none when the lengths are
-- already in that order), and at step t the recursion runs only the rows
-- still going (PyTorch's packed batch_sizes), so padding costs the
-- recursion nothing and the batched GEMMs T*B / sum(lengths) more work.
-- A bidirectional layer's output T x B x 2H is the two directions' y side
-- by side (one copy); backward splits its gradient (one copy) and adds the
-- two directions' dx.  States are (layers * directions) x B x H, PyTorch's
-- order: layer 0 forward, layer 0 reverse, layer 1 forward, ...

-- lengths (int32 tensor or Lua table of B lengths in 1..T) -> perm (int32,
-- 0-based, longest first, ties in batch order), batch_sizes (int32 T),
-- whether perm is the identity
local function lengths_arg(fn, lengths, T, B)
  local l = {}
  if core.is_tensor(lengths) then
    if lengths:numel() ~= B or lengths:dim() ~= 1 then
      util.raise(string.format("%s: lengths must hold B = %d lengths, got a tensor of shape %s", fn, B,
        util.shape_str(lengths)))
    end
    l = lengths:totable()
  elseif type(lengths) == "table" then
    if #lengths ~= B then util.raise(string.format("%s: lengths must hold B = %d lengths, got %d", fn, B, #lengths)) end
    for b = 1, B do l[b] = lengths[b] end
  else
    util.raise(fn .. ": lengths must be an int32 tensor or a table of B lengths, got " .. util.got(lengths))
  end
  for b = 1, B do
    local v = l[b]
    if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > T then
      util.raise(string.format("%s: lengths[%d] must be a whole number in 1..T = %d, got %s", fn, b, T, util.got(v)))
    end
  end
  local order = {}
  for b = 1, B do order[b] = b end
  table.sort(order, function(a, c) return l[a] > l[c] or (l[a] == l[c] and a < c) end)
  local p, identity = {}, true
  for i = 1, B do
    p[i] = order[i] - 1
    if order[i] ~= i then identity = false end
  end
  local count = {}
  for t = 1, T do count[t] = 0 end
  for b = 1, B do count[l[b]] = count[l[b]] + 1 end
  local bs, running = {}, B -- rows with length >= t
  for t = 1, T do
    bs[t] = running
    running = running - count[t]
  end
  return core.tensor(p, "int32"), core.tensor(bs, "int32"), identity
end

-- The buffers of this path for T steps of batch B (grown like _buffers).
function RNN:_seq_buffers(T, B, fn)
  local L, H, dt, ND = self.layers, self.hidden, self.dtype, self._nd
  local sq = self._sq
  if sq == nil or T > sq.capT or B ~= sq.B then
    local capT = math.max(T, sq and B == sq.B and sq.capT or 0)
    local lstm = self.cell == "lstm"
    local ok, new = pcall(function()
      local cache_n, scratch_n = core.rnn_sizes(self.cell, capT, B, self.input, H)
      local n = { capT = capT, B = B, st = {}, scratch = core.zeros(scratch_n, dt) }
      for k = 1, L do
        local s = { y = {}, cache = {} }
        for d = 1, ND do
          s.y[d] = core.zeros(capT, B, H, dt)
          s.cache[d] = cache_n > 0 and core.zeros(cache_n, dt) or nil
        end
        s.out = ND == 2 and core.zeros(capT, B, 2 * H, dt) or s.y[1]
        if self.dropout > 0 and k < L then
          s.mask = core.zeros(capT, B, ND * H, dt)
          s.drop = core.zeros(capT, B, ND * H, dt)
        end
        n.st[k] = s
      end
      local S = L * ND
      n.h0, n.hT, n.dh0 = core.zeros(S, B, H, dt), core.zeros(S, B, H, dt), core.zeros(S, B, H, dt)
      n.hTu, n.dh0u, n.dhT = core.zeros(S, B, H, dt), core.zeros(S, B, H, dt), core.zeros(S, B, H, dt)
      if lstm then
        n.c0, n.cT, n.dc0 = core.zeros(S, B, H, dt), core.zeros(S, B, H, dt), core.zeros(S, B, H, dt)
        n.cTu, n.dc0u, n.dcT = core.zeros(S, B, H, dt), core.zeros(S, B, H, dt), core.zeros(S, B, H, dt)
      end
      return n
    end)
    if not ok then
      local why = tostring(new):gsub("^[^:]*:%d+: ", "")
      util.raise(string.format("%s: cannot allocate the buffers for T = %d, B = %d (%s)", fn, T, B, why))
    end
    sq = new
    self._sq = sq
  end
  local cache_n, scratch_n = core.rnn_sizes(self.cell, T, B, self.input, H)
  local v = { scratch = sq.scratch:narrow(1, 1, scratch_n) }
  for k = 1, L do
    local s, w = sq.st[k], { y = {}, cache = {} }
    for d = 1, ND do
      w.y[d] = s.y[d]:narrow(1, 1, T)
      w.cache[d] = s.cache[d] and s.cache[d]:narrow(1, 1, cache_n)
    end
    w.out = s.out:narrow(1, 1, T)
    w.mask = s.mask and s.mask:narrow(1, 1, T)
    w.drop = s.drop and s.drop:narrow(1, 1, T)
    v[k] = w
  end
  return v
end

-- A flat buffer of the path, made at first use and when it must grow: name,
-- elements.
function RNN:_seq_flat(fn, name, n)
  local sq = self._sq
  if sq[name] == nil or sq[name]:numel() < n then
    local ok, t = pcall(core.zeros, n, self.dtype)
    if not ok then
      local why = tostring(t):gsub("^[^:]*:%d+: ", "")
      util.raise(string.format("%s: cannot allocate %d elements (%s)", fn, n, why))
    end
    sq[name] = t
  end
  return sq[name]:narrow(1, 1, n)
end

-- Not supported yet (the C core refuses them too): checkpoint or
-- record_flow together with what (bidirectional, lengths or resets).
function RNN:_seq_supported(fn, what)
  if self.checkpoint ~= nil then util.raise(fn .. ": checkpoint cannot be combined with " .. what .. " yet") end
  if self._record_flow then util.raise(fn .. ": record_flow cannot be combined with " .. what .. " yet") end
end

local function pname(kind, l, d) return kind .. "_l" .. l .. (d == 2 and "_reverse" or "") end

function RNN:_forward_seq(x, h0, c0, lengths, resets)
  local fn = "bptt.RNN:forward"
  util.tensor(fn, "x", x, self.dtype)
  if x:dim() ~= 3 or x:size(3) ~= self.input or x:size(1) < 1 or x:size(2) < 1 then
    error(string.format("%s: x must be T x B x %d (T, B >= 1), got %s", fn, self.input, util.shape_str(x)), 2)
  end
  local T, B, L, ND, H = x:size(1), x:size(2), self.layers, self._nd, self.hidden
  local S, lstm, carry = L * ND, self.cell == "lstm", self.carry_state
  if carry and (h0 ~= nil or c0 ~= nil) then
    util.raise(fn .. ": h0 and c0 must be nil with carry_state (the carried state is used; set_state sets it)")
  end
  if h0 ~= nil then
    util.tensor(fn, "h0", h0, self.dtype)
    util.shape(fn, "h0", h0, { S, B, H })
  end
  if c0 ~= nil and not lstm then error(fn .. ": c0 is only for cell \"lstm\", this is \"" .. self.cell .. "\"", 2) end
  if c0 ~= nil then
    util.tensor(fn, "c0", c0, self.dtype)
    util.shape(fn, "c0", c0, { S, B, H })
  end
  local perm, bs, permuted = nil, nil, false
  if lengths ~= nil then
    local identity
    perm, bs, identity = lengths_arg(fn, lengths, T, B)
    permuted = not identity
  end
  local rs
  if resets ~= nil then
    if self.bidirectional or lengths ~= nil then
      util.raise(fn .. ": resets are for one-directional layers over full-length batches (no lengths)")
    end
    util.tensor(fn, "resets", resets)
    util.shape(fn, "resets", resets, { T, B })
    rs = util.index_tensor(fn, "resets", resets)
  end
  local buf = self:_seq_buffers(T, B, fn)
  local sq = self._sq
  if x:is_contiguous() then
    for k = 1, L do
      local s = buf[k]
      check_alias(fn, "x", x, { s.y[1], s.y[2] or false, s.out, s.drop or false, s.cache[1] or false,
        s.cache[2] or false }, "output and caches")
    end
  end
  x = x:contiguous()
  -- the states read (sorted order) and written
  local sh0, sc0
  if carry then
    self:_carry(B)
    sh0, sc0 = self._sh, self._sc
  else
    sh0, sc0 = h0, c0
  end
  if sh0 ~= nil then
    if permuted then core.rnn_permute(sh0:contiguous(), sq.h0, perm, false) else sq.h0:copy(sh0) end
    sh0 = sq.h0
  end
  if sc0 ~= nil then
    if permuted then core.rnn_permute(sc0:contiguous(), sq.c0, perm, false) else sq.c0:copy(sc0) end
    sc0 = sq.c0
  end
  local inp = x
  if permuted then
    inp = self:_seq_flat(fn, "xs", T * B * self.input):view(T, B, self.input)
    core.rnn_permute(x, inp, perm, false)
  end
  local cell, P, train = self.cell, self.params, self.training and self.dropout > 0
  for k = 1, L do
    local s, l = buf[k], k - 1
    s.x = inp
    for d = 1, ND do
      local j = (k - 1) * ND + d
      core.rnn_forward(cell, P[pname("weight_ih", l, d)], P[pname("weight_hh", l, d)], P[pname("bias_ih", l, d)],
        P[pname("bias_hh", l, d)], inp, sh0 and sh0:select(1, j), sc0 and sc0:select(1, j), s.y[d],
        sq.hT:select(1, j), lstm and sq.cT:select(1, j) or nil, s.cache[d], d == 2, bs, rs)
    end
    if ND == 2 then core.rnn_join(s.y[1], s.y[2], s.out) end
    s.dropped = false
    if train and k < L then
      self:_uniform(s.mask, 2) -- T x B x H: the streams are dimension 2
      core.dropout_apply(s.out, s.mask, s.drop, self.dropout)
      s.dropped = true
      inp = s.drop
    else
      inp = s.out
    end
  end
  local y, hT, cT = buf[L].out, sq.hT, lstm and sq.cT or nil
  if carry then hT, cT = self._sh2, self._sc2 end
  if permuted then
    local yu = self:_seq_flat(fn, "yu", T * B * ND * H):view(T, B, ND * H)
    core.rnn_permute(y, yu, perm, true)
    y = yu
    if not carry then hT, cT = sq.hTu, lstm and sq.cTu or nil end
    core.rnn_permute(sq.hT, hT, perm, true)
    if lstm then core.rnn_permute(sq.cT, cT, perm, true) end
  elseif carry then
    hT:copy(sq.hT)
    if lstm then cT:copy(sq.cT) end
  end
  if carry then self._sh, self._sh2, self._sc, self._sc2 = self._sh2, self._sh, self._sc2, self._sc end
  local what = self.bidirectional and "bidirectional" or lengths ~= nil and "lengths" or "resets"
  self._fwd = { seq = what, T = T, B = B, buf = buf, h0 = sh0, c0 = sc0, perm = permuted and perm or nil, bs = bs,
    rs = rs }
  self.output = y
  if lstm then return y, hT, cT end
  return y, hT
end

function RNN:_backward_seq(dy, dhT, dcT, opts)
  local fn = "bptt.RNN:backward"
  if opts ~= nil then util.options(fn, opts, { reuse_dy = true }) end
  local f, sq = self._fwd, self._sq
  self:_seq_supported(fn, f.seq) -- record_flow may have been turned on since forward
  local T, B, L, ND, H = f.T, f.B, self.layers, self._nd, self.hidden
  local S, lstm, perm = L * ND, self.cell == "lstm", f.perm
  if dy ~= nil then
    util.tensor(fn, "dy", dy, self.dtype)
    util.shape(fn, "dy", dy, { T, B, ND * H })
    dy = dy:contiguous()
  end
  if dhT ~= nil then
    util.tensor(fn, "dhT", dhT, self.dtype)
    util.shape(fn, "dhT", dhT, { S, B, H })
    dhT = dhT:contiguous()
  end
  if dcT ~= nil and not lstm then
    util.raise(fn .. ": dcT is only for cell \"lstm\", this is \"" .. self.cell .. "\"")
  end
  if dcT ~= nil then
    util.tensor(fn, "dcT", dcT, self.dtype)
    util.shape(fn, "dcT", dcT, { S, B, H })
    dcT = dcT:contiguous()
  end
  local width = math.max(self.input, ND * H)
  local gx = { self:_seq_flat(fn, "gx1", T * B * width), self:_seq_flat(fn, "gx2", T * B * width) }
  for _, t in ipairs({ dy or false, dhT or false, dcT or false }) do
    if t then
      check_alias(fn, "the gradient", t, { gx[1], gx[2], sq.dh0, sq.dc0 or false, sq.dh0u, sq.dc0u or false },
        "input, state or scratch gradients")
    end
  end
  if perm then -- into the sorted order
    if dy ~= nil then
      local d = self:_seq_flat(fn, "dys", T * B * ND * H):view(T, B, ND * H)
      core.rnn_permute(dy, d, perm, false)
      dy = d
    end
    if dhT ~= nil then core.rnn_permute(dhT, sq.dhT, perm, false); dhT = sq.dhT end
    if dcT ~= nil then core.rnn_permute(dcT, sq.dcT, perm, false); dcT = sq.dcT end
  end
  local cell, P, G = self.cell, self.params, self.grads
  local g = dy
  for k = L, 1, -1 do
    local s, l = f.buf[k], k - 1
    local I = k == 1 and self.input or ND * H
    local dx = gx[(L - k) % 2 + 1]:narrow(1, 1, T * B * I):view(T, B, I)
    local gd = { g }
    if ND == 2 and g ~= nil then
      gd[1] = self:_seq_flat(fn, "gf", T * B * H):view(T, B, H)
      gd[2] = self:_seq_flat(fn, "gr", T * B * H):view(T, B, H)
      core.rnn_split(g, gd[1], gd[2])
    end
    for d = ND, 1, -1 do
      local j = (k - 1) * ND + d
      local dxd = d == 1 and dx or self:_seq_flat(fn, "dxr", T * B * I):view(T, B, I)
      core.rnn_backward(cell, P[pname("weight_ih", l, d)], P[pname("weight_hh", l, d)], s.x,
        f.h0 and f.h0:select(1, j) or nil, f.c0 and f.c0:select(1, j) or nil, s.y[d], s.cache[d],
        gd[d], dhT and dhT:select(1, j), dcT and dcT:select(1, j),
        dxd, sq.dh0:select(1, j), lstm and sq.dc0:select(1, j) or nil,
        G[pname("weight_ih", l, d)], G[pname("weight_hh", l, d)], G[pname("bias_ih", l, d)],
        G[pname("bias_hh", l, d)], f.buf.scratch, d == 2, f.bs, f.rs)
    end
    if ND == 2 then dx:add(self._sq.dxr:narrow(1, 1, T * B * I):view(T, B, I)) end
    g = dx
    if k > 1 and f.buf[k - 1].dropped then core.dropout_backward(g, f.buf[k - 1].mask, g) end
  end
  local dh0, dc0 = sq.dh0, lstm and sq.dc0 or nil
  if perm then -- back to the batch's order
    local gu = self:_seq_flat(fn, "dxu", T * B * self.input):view(T, B, self.input)
    core.rnn_permute(g, gu, perm, true)
    g = gu
    core.rnn_permute(sq.dh0, sq.dh0u, perm, true)
    dh0 = sq.dh0u
    if lstm then core.rnn_permute(sq.dc0, sq.dc0u, perm, true); dc0 = sq.dc0u end
  end
  if lstm then return g, dh0, dc0 end
  return g, dh0
end

--- Gradient-flow recording (off by default).  rnn:record_flow(true): every
-- backward also measures, for each step k and layer l, the norms of the
-- seed's sum, read by rnn:flow().  Off, backward runs exactly as before.
function RNN:record_flow(on)
  if type(on) ~= "boolean" then
    util.raise("bptt.RNN:record_flow: on must be true or false, got " .. util.got(on))
  end
  if on and self.bidirectional then
    util.raise("bptt.RNN:record_flow: record_flow cannot be combined with bidirectional yet")
  end
  self._record_flow = on
  if not on then self._flow_out, self._flow_work = nil, nil end
  return self
end

--- The norms the last backward recorded (record_flow(true)), or nil:
-- {dh = T x layers, dc = T x layers (lstm; nil otherwise), dW = T x layers},
-- float64 tensors (new at every backward: keep them as they are).
--   dh[k][l] = ||dL/dh_k|| of layer l's output, Frobenius over B x H: the
--              whole gradient reaching it (its own loss, the layer above,
--              and step k+1's, carried back; dhT at k = T)
--   dc[k][l] = the same for an lstm's cell state c_k
--   dW[k][l] = ||dG_k^T h_{k-1}||, dG_k = dL/d(W_hh h_{k-1} + b_hh): step k's
--              term of dL/dW_hh of layer l (h_0 the initial state)
function RNN:flow()
  return self._flow_out
end

-- The flow arguments of core.rnn_backward for layer k (nothing when off):
-- the result tensors are made at the top layer (the first one backward runs).
function RNN:_flow_args(fn, T, B, k)
  if not self._record_flow then return end
  local L = self.layers
  if k == L then
    local _, _, n = core.rnn_sizes(self.cell, T, B, self.input, self.hidden, 0, true)
    local ok, err = pcall(function()
      if not self._flow_work or self._flow_work:numel() < n then self._flow_work = core.zeros(n, "float64") end
      self._flow_out = { dh = core.zeros(T, L, "float64"), dW = core.zeros(T, L, "float64"),
        dc = self.cell == "lstm" and core.zeros(T, L, "float64") or nil }
    end)
    if not ok then
      util.raise(string.format("%s: cannot allocate the gradient-flow record for T = %d (%s)", fn, T,
        tostring(err):gsub("^[^:]*:%d+: ", "")))
    end
  end
  local o = self._flow_out
  local _, _, n = core.rnn_sizes(self.cell, T, B, self.input, self.hidden, 0, true)
  return o.dh, o.dc, o.dW, self._flow_work:narrow(1, 1, n), k
end

--- Zeroes the carried state (carry_state): every stream, or stream b (1-based).
function RNN:reset_state(b)
  local fn = "bptt.RNN:reset_state"
  if self._sh == nil then return self end
  if b == nil then
    self._sh:zero()
    if self._sc then self._sc:zero() end
  else
    local B = self._sh:size(2)
    if type(b) ~= "number" or b ~= math.floor(b) or b < 1 or b > B then
      util.raise(string.format("%s: b must be a stream in 1..%d, got %s", fn, B, util.got(b)))
    end
    self._sh:select(2, b):zero()
    if self._sc then self._sc:select(2, b):zero() end
  end
  return self
end

--- The carried state itself (live tensors, not copies): h, c (lstm), or nil
-- before the first forward with carry_state.  The next forward reads them.
function RNN:carried()
  return self._sh, self._sc
end

--- A copy of the carried state: {h = L x B x H, c = ... (lstm)} or nil.
function RNN:get_state()
  if self._sh == nil then return nil end
  return { h = self._sh:clone(), c = self._sc and self._sc:clone() or nil }
end

--- Restores a get_state() table (its B may differ: the state is remade);
-- nil forgets the state (zeros at the next forward).
function RNN:set_state(s)
  local fn = "bptt.RNN:set_state"
  if s == nil then
    self._sh, self._sh2, self._sc, self._sc2 = nil, nil, nil, nil
    return self
  end
  if type(s) ~= "table" then
    util.raise(fn .. ": s must be a table {h =, c =} from get_state() or nil, got " .. util.got(s))
  end
  util.tensor(fn, "s.h", s.h, self.dtype)
  util.shape(fn, "s.h", s.h, { self.layers * self._nd, "B", self.hidden })
  if self.cell == "lstm" then
    util.tensor(fn, "s.c", s.c, self.dtype)
    util.shape(fn, "s.c", s.c, s.h:shape())
  end
  self:_carry(s.h:size(2))
  self._sh:copy(s.h)
  if self._sc then self._sc:copy(s.c) end
  return self
end

function RNN:__tostring()
  return string.format('bptt.RNN{cell="%s", input=%d, hidden=%d, layers=%d, bias=%s, dropout=%g, dtype="%s"%s} '
    .. '(%d parameters)', self.cell, self.input, self.hidden, self.layers, tostring(self.bias), self.dropout,
    self.dtype, self.bidirectional and ", bidirectional=true" or "", self:num_parameters())
end

return RNN
