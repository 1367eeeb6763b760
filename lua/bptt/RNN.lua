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
-- Buffers grow to the largest T seen and are reused: no allocation per call
-- in steady state.  The returned tensors are these buffers, overwritten by
-- the next call: clone() what you keep.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local RNN = util.class("bptt.RNN", Module)

local GATES = { tanh = 1, relu = 1, lstm = 4, gru = 3 }
local OPTIONS = { cell = true, input = true, hidden = true, layers = true, bias = true, dropout = true, dtype = true,
  carry_state = true, checkpoint = true }

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
  self.checkpoint = RNN._check_checkpoint(fn, opts.checkpoint)
  local G, H = GATES[self.cell], self.hidden
  local specs = {}
  for k = 0, self.layers - 1 do
    local I = k == 0 and self.input or H
    specs[#specs + 1] = { "weight_ih_l" .. k, { G * H, I } }
    specs[#specs + 1] = { "weight_hh_l" .. k, { G * H, H } }
    if self.bias then
      specs[#specs + 1] = { "bias_ih_l" .. k, { G * H } }
      specs[#specs + 1] = { "bias_hh_l" .. k, { G * H } }
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
    local L, H, dt, lstm = self.layers, self.hidden, self.dtype, self.cell == "lstm"
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
function RNN:forward(x, h0, c0)
  local fn = "bptt.RNN:forward"
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
      lstm and scT:select(1, k) or nil, s.cache, buf.k, buf.k > 0 and buf.scratch or nil)
    s.dropped = false
    if train and k < L then
      s.mask:uniform()
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
  if dcT ~= nil and not lstm then util.raise(fn .. ": dcT is only for cell \"lstm\", this is \"" .. self.cell .. "\"") end
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
      fdh, fdc, fdW, fwork, fcol, f.buf.k, P["bias_ih_l" .. l], P["bias_hh_l" .. l])
    g = dx
    if k > 1 and f.buf[k - 1].dropped then
      core.dropout_backward(g, f.buf[k - 1].mask, g) -- through the mask of the layer below
    end
  end
  if lstm then return g, self._dh0, self._dc0 end
  return g, self._dh0
end

--- Gradient-flow recording (off by default).  rnn:record_flow(true): every
-- backward also measures, for each step k and layer l, the norms of the
-- seed's sum, read by rnn:flow().  Off, backward runs exactly as before.
function RNN:record_flow(on)
  if type(on) ~= "boolean" then
    util.raise("bptt.RNN:record_flow: on must be true or false, got " .. util.got(on))
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
  util.shape(fn, "s.h", s.h, { self.layers, "B", self.hidden })
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
  return string.format('bptt.RNN{cell="%s", input=%d, hidden=%d, layers=%d, bias=%s, dropout=%g, dtype="%s"} (%d parameters)',
    self.cell, self.input, self.hidden, self.layers, tostring(self.bias), self.dropout, self.dtype, self:num_parameters())
end

return RNN
