--- bptt.LanguageModel: Embedding -> RNN -> Linear, the char-rnn model.
--
--   local lm = bptt.LanguageModel{vocab = 65, cell = "lstm", hidden = 256, layers = 2}
--   local logits = lm:forward(x)          -- x: T x B token ids -> T x B x vocab
--   local loss = ce:forward(logits, y); lm:backward(ce:backward())
--   local ids = lm:sample{n = 200, prime = vocab:encode("ROMEO:"), temperature = 0.8}
--
-- Parameters: embed.weight, rnn.weight_ih_l0 ..., decoder.weight, decoder.bias
-- (one flat buffer, see bptt.Model).
--
-- Memory of a training step: the formula of the minimum is written out above
-- LanguageModel:memory_minimum, near the end of this file.
--
-- Truncated BPTT: forward starts from the hidden (and cell) state the previous
-- forward ended in, for each of the B streams, and backward stops at the
-- batch boundary (no gradient flows into the previous batch).  reset_state()
-- zeroes the carried state (all streams, or stream b); it is reset by itself
-- when B changes.  get_state()/set_state() save and restore it (checkpoints,
-- or validation in between).  lm.carry_state = false turns it off (every
-- forward from zeros).  The state lives in the RNN (its carry_state mode);
-- the model talks to its layers only through their public methods.
local core = require "bptt.core"
local util = require "bptt.util"
local Model = require "bptt.Model"
local RNN = require "bptt.RNN"
local Linear = require "bptt.Linear"
local Embedding = require "bptt.Embedding"

local LanguageModel = Model:extend("bptt.LanguageModel")

local OPTIONS = { vocab = true, embed = true, cell = true, hidden = true, layers = true, dropout = true, dtype = true,
  checkpoint = true }
local CELLS = { tanh = true, relu = true, lstm = true, gru = true }

function LanguageModel:__init(opts)
  local fn = "bptt.LanguageModel"
  Model.__init(self)
  util.options(fn, opts, OPTIONS)
  local vocab = util.count(fn, "vocab", opts.vocab, 1)
  local hidden = util.count(fn, "hidden", opts.hidden, 1)
  local embed = util.count(fn, "embed", opts.embed, 1, math.min(hidden, 64))
  local layers = util.count(fn, "layers", opts.layers, 1, 1)
  local dtype = util.dtype(fn, opts.dtype)
  local cell = opts.cell or "lstm"
  if not CELLS[cell] then
    util.raise(string.format('%s: cell must be "tanh", "relu", "lstm" or "gru", got %s', fn, tostring(opts.cell)))
  end
  local dropout = opts.dropout or 0
  if type(dropout) ~= "number" or not (dropout >= 0 and dropout < 1) then
    util.raise(fn .. ": dropout must be a number in [0, 1), got " .. util.got(opts.dropout))
  end
  self.config = {
    vocab = vocab, embed = embed, cell = cell, hidden = hidden, layers = layers, dropout = dropout, dtype = dtype,
    checkpoint = RNN._check_checkpoint(fn, opts.checkpoint), -- memory-bounded BPTT (bptt.RNN); nil: full
  }
  -- the parameters move into one flat buffer at the first use (bptt.Model)
  self:add("embed", Embedding{ vocab = vocab, dim = embed, dtype = dtype })
  self:add("rnn", RNN{ cell = cell, input = embed, hidden = hidden, layers = layers, dropout = dropout, dtype = dtype,
    checkpoint = self.config.checkpoint })
  self:add("decoder", Linear{ input = hidden, output = vocab, dtype = dtype })
  self.carry_state = true
  self.takes_starts = true -- forward(x, starts): bptt.Trainer passes a corpus's document starts
end

--- logits = lm:forward(x [, starts]): x T x B token ids (1..vocab) -> T x B
-- x vocab, also lm.output.  starts (T x B flags, as data.Batches gives them
-- for a corpus of documents): where starts[t][b] is 1 stream b's state is
-- taken as zeros at step t (the carried state too), so that neither state
-- nor gradient crosses into a new document (bptt.RNN's resets).
function LanguageModel:forward(x, starts)
  local fn = "bptt.LanguageModel:forward"
  util.tensor(fn, "x", x)
  if x:dim() ~= 2 then error(fn .. ": x must be T x B token ids, got " .. util.shape_str(x), 2) end
  local rnn = self.rnn
  rnn.carry_state = self.carry_state and true or false
  local y = rnn:forward(self.embed:forward(x), nil, nil, nil, starts)
  self.output = self.decoder:forward(y)
  return self.output
end

--- lm:backward(dlogits): dlogits T x B x vocab; adds into every gradient.
function LanguageModel:backward(dlogits)
  local fn = "bptt.LanguageModel:backward"
  if self.output == nil then util.raise(fn .. ": call forward first") end
  util.tensor(fn, "dlogits", dlogits, self.config.dtype, "the model")
  util.shape(fn, "dlogits", dlogits, self.output:shape())
  local dy = self.decoder:backward(dlogits)
  -- dy is the decoder's buffer, dead once the top layer has read it: the
  -- layers below may write their input gradients over it (one buffer less)
  local dx = self.rnn:backward(dy, nil, nil, { reuse_dy = true })
  self.embed:backward(dx)
end

--- Zeroes the carried state: every stream, or stream b (1-based).
function LanguageModel:reset_state(b)
  local h = self.rnn:carried()
  if h == nil then return self end
  if b ~= nil then
    local B = h:size(2)
    if type(b) ~= "number" or b ~= math.floor(b) or b < 1 or b > B then
      util.raise(string.format("bptt.LanguageModel:reset_state: b must be a stream in 1..%d, got %s", B, util.got(b)))
    end
  end
  self.rnn:reset_state(b)
  return self
end

--- A copy of the carried state: {h = L x B x H, c = ... (lstm)} or nil.
function LanguageModel:get_state()
  return self.rnn:get_state()
end

--- Restores a get_state() table; nil forgets the state (zeros next).
function LanguageModel:set_state(s)
  local fn = "bptt.LanguageModel:set_state"
  if s ~= nil then
    local c = self.config
    if type(s) ~= "table" then
      util.raise(fn .. ": s must be a table {h =, c =} from get_state() or nil, got " .. util.got(s))
    end
    util.tensor(fn, "s.h", s.h, c.dtype)
    util.shape(fn, "s.h", s.h, { c.layers, "B", c.hidden })
    if c.cell == "lstm" then
      util.tensor(fn, "s.c", s.c, c.dtype)
      util.shape(fn, "s.c", s.c, s.h:shape())
    end
  end
  self.rnn:set_state(s)
  return self
end

local function ids_of(fn, name, v, vocab)
  if type(v) == "table" then
    if #v == 0 then return nil end
    v = core.tensor(v, "int32")
  end
  util.tensor(fn, name, v)
  if v:dim() ~= 1 then error(fn .. ": " .. name .. " must be a 1-d list of token ids, got " .. util.shape_str(v), 3) end
  if v:numel() == 0 then return nil end
  local ids = util.index_tensor(fn, name, v)
  if ids:min() < 1 or ids:max() > vocab then
    error(string.format("%s: %s must hold ids in 1..%d, got %d..%d", fn, name, vocab, ids:min(), ids:max()), 3)
  end
  return ids
end

local SAMPLE_OPTIONS = { n = true, prime = true, temperature = true, top_k = true, top_p = true, greedy = true,
  seed = true, on_token = true }

--- ids = lm:sample{n=, prime=, temperature=1, top_k=, top_p=, greedy=false, seed=, on_token=}
-- Generates n tokens after the prime (ids: int32 tensor or Lua list; none:
-- a zero state and a uniformly drawn first token).  on_token(id, i) is called for each
-- new token as it is made (streaming); returning false stops early.  seed
-- reseeds the library generator first.  Dropout is off while sampling; the
-- training state carried for the batch is left alone.  Returns the new ids
-- (int32, 1-d).
function LanguageModel:sample(opts)
  local fn = "bptt.LanguageModel:sample"
  util.options(fn, opts or {}, SAMPLE_OPTIONS)
  opts = opts or {}
  local c = self.config
  local n = util.count(fn, "n", opts.n, 0, 100)
  if opts.on_token ~= nil and type(opts.on_token) ~= "function" then
    util.raise(fn .. ": on_token must be a function, got " .. util.got(opts.on_token))
  end
  local prime = opts.prime and ids_of(fn, "prime", opts.prime, c.vocab)
  if opts.seed ~= nil then core.manual_seed(opts.seed) end
  local t, k, p = opts.temperature, opts.top_k, opts.top_p
  if t ~= nil and (type(t) ~= "number" or not (t > 0 and t <= 1e300)) then
    util.raise(fn .. ": temperature must be a number > 0, got " .. util.got(t))
  end
  if k ~= nil then util.count(fn, "top_k", k, 0) end
  if p ~= nil and (type(p) ~= "number" or not (p > 0 and p <= 1)) then
    util.raise(fn .. ": top_p must be a number in (0, 1], got " .. util.got(p))
  end
  if opts.greedy ~= nil and type(opts.greedy) ~= "boolean" then
    util.raise(fn .. ": greedy must be true or false, got " .. util.got(opts.greedy))
  end
  local sopts = { temperature = t, top_k = k, top_p = p, greedy = opts.greedy }
  local was_training, carry = self.training, self.rnn.carry_state
  self:evaluate()
  self.rnn.carry_state = false -- the training state carried for the batch is left alone
  local out = core.zeros(n, "int32")
  local ok, err = pcall(function()
    local h, cc, logits
    if prime then -- the prime in one forward pass of the layers
      local x = prime:view(prime:numel(), 1)
      local y
      y, h, cc = self.rnn:forward(self.embed:forward(x))
      logits = self.decoder:forward(y:narrow(1, prime:numel(), 1))
    end
    -- then a token at a time in C (core.lm_generator: the same kernels on the
    -- same sizes as the layers' forward at T = B = 1, so the same bits)
    local P, D = self.rnn.params, self.decoder.params
    local w_ih, w_hh, b_ih, b_hh = {}, {}, {}, {}
    for l = 1, c.layers do
      w_ih[l], w_hh[l] = P["weight_ih_l" .. (l - 1)], P["weight_hh_l" .. (l - 1)]
      b_ih[l], b_hh[l] = P["bias_ih_l" .. (l - 1)], P["bias_hh_l" .. (l - 1)]
    end
    if #b_ih == 0 then b_ih, b_hh = nil, nil end
    local gen = core.lm_generator(c.cell, self.embed.params.weight, w_ih, w_hh, b_ih, b_hh, D.weight, D.bias,
      core.zeros(c.vocab, c.dtype), sopts, h, cc)
    -- no prime: a random first token, as char-rnn; after one, the first is
    -- drawn from its logits (only when a token is asked for: n = 0 draws none)
    local id = not prime and core.random(c.vocab) or nil
    for i = 1, n do
      id = id or core.sample(logits:view(c.vocab), sopts)
      out:set(i, id)
      if opts.on_token and opts.on_token(id, i) == false then
        out = out:narrow(1, 1, i)
        break
      end
      if i < n then id = gen:next(id) end
    end
  end)
  self.rnn.carry_state = carry
  if was_training then self:train() end
  if not ok then error(err, 0) end
  return out
end

--- logp, perplexity = lm:score(ids): log-probability of each token given the
-- ones before it (ids[2..n], float64 tensor of n-1), from a zero state, and
-- the perplexity exp(-mean logp).
function LanguageModel:score(ids)
  local fn = "bptt.LanguageModel:score"
  ids = ids_of(fn, "ids", ids, self.config.vocab)
  if ids == nil or ids:numel() < 2 then error(fn .. ": ids must hold at least 2 tokens", 2) end
  local n = ids:numel()
  local was_training, carry = self.training, self.rnn.carry_state
  self:evaluate()
  self.rnn.carry_state = false
  local ok, res = pcall(function()
    local x = ids:narrow(1, 1, n - 1):contiguous():view(n - 1, 1)
    local y = self.rnn:forward(self.embed:forward(x))
    local logits = self.decoder:forward(y)
    return core.log_prob(logits:view(n - 1, self.config.vocab), ids:narrow(1, 2, n - 1):contiguous())
  end)
  self.rnn.carry_state = carry
  if was_training then self:train() end
  if not ok then error(res, 0) end
  return res, math.exp(-res:mean())
end

-- Memory of one training step, char-rnn's loop at T x B with Adam:
--
--   opt:zero_grad(); ce:forward(lm:forward(x), y); lm:backward(ce:backward());
--   bptt.clip_grad_norm(lm, 5); opt:step()
--
-- N = T*B tokens, V vocab, E embed, H hidden, L layers, I_k the input size of
-- layer k (E, then H), P parameters; elements of the dtype, ids int32.
--
-- The analytic minimum (lm:memory_minimum) is what the math must hold at the
-- step's peak, the top of backward, when everything forward made is still
-- needed and backward's own buffers are in use:
--
--   4P                  parameters, gradients, Adam's exp_avg and exp_avg_sq
--   2N (int32)          ids x and targets y
--   N*E                 the embedding output (layer 1's dW_ih reads it)
--   L*(N*H + C*N*H)     every layer's outputs h_1..h_T (the next layer's input,
--                       the recurrence's h_{t-1}) and its cell's saved values:
--                       C = 5 lstm (4 gates, c_t), 4 gru (3 gates and
--                       W_hn h + b_hn), 0 tanh and relu (f' is read off h)
--   S*L*B*H             the carried state h_0 (S = 1; 2 with lstm's c_0),
--                       read by backward at t = 1
--   (L-1)*N*H           with dropout, the masks of all layers but the last
--   N*V                 the logits (CE's backward reads them)
--   N*V                 dlogits, lm:backward's argument
--   N*H + D*N*H + R*B*H + N*max_k I_k
--                       the largest transient of backward, that of the layer
--                       with the widest input: its incoming gradient dy; the
--                       gate gradients dG of all T steps (D = 4 lstm; 4 gru,
--                       3 gates and the n gate's input side; 1 tanh, relu);
--                       the running dh (and dc: R = 2 lstm, 1 otherwise);
--                       its dx
--
-- Why backward's buffers do not overwrite forward's: backward may be called
-- again after one forward (the gradients then add up, as in nn), so the
-- logits, dlogits and every cache outlive it (a single-use backward could
-- write dlogits over the logits and dG over the saved gates: N*V + D*N*H
-- less).  Why dG of all T steps: the weight gradients dW_ih += dG^T x and
-- dW_hh += dG^T h are one GEMM each after the recursion (GEMMs as large as
-- the math allows), so dG is held until then; it is dead when the layer's
-- backward returns, so one dG buffer serves every layer.  Why dy and dx
-- both: they are distinct arrays in c/core/rnn.h's contract (the kernel writes dx
-- with one GEMM after the recursion, so one that allowed dx over dy would
-- save N*min(H, I_k) more); the layer below then writes over dy.
--
-- lm:memory_estimate adds what the layers keep besides (c/core/rnn.h's scratch
-- for gru, the layers' copies of the states, CE's per-row cache, dropout's
-- dropped outputs) and examples/bench/memory.lua measures the peak: within
-- 2-5% of the minimum for the configurations of issue 5.
local SAVED = { tanh = 0, relu = 0, lstm = 5, gru = 4 }  -- C
local DGATES = { tanh = 1, relu = 1, lstm = 4, gru = 4 } -- D
local RUNNING = { tanh = 1, relu = 1, lstm = 2, gru = 1 } -- R

--- Bytes of the analytic minimum of one training step at T x B with Adam
-- (the formula above).
function LanguageModel:memory_minimum(T, B)
  local c = self.config
  local es = c.dtype == "float64" and 8 or 4
  local N, H, V, E, L = T * B, c.hidden, c.vocab, c.embed, c.layers
  local n = 4 * self:num_parameters()
  n = n + N * E
  n = n + L * (N * H + SAVED[c.cell] * N * H)
  n = n + (c.cell == "lstm" and 2 or 1) * L * B * H
  if c.dropout > 0 then n = n + (L - 1) * N * H end
  n = n + 2 * N * V
  n = n + N * H + DGATES[c.cell] * N * H + RUNNING[c.cell] * B * H + N * (L > 1 and math.max(E, H) or E)
  return n * es + 2 * N * 4
end

--- Estimated bytes of one training step at T x B with Adam: parameters,
-- gradients, two Adam moments, the ids and targets, and every buffer the
-- layers keep (what they allocate, as the files of Embedding, RNN, Linear
-- and CrossEntropy say), besides the allocator's and the Lua objects' own.
function LanguageModel:memory_estimate(T, B)
  local c = self.config
  local es = c.dtype == "float64" and 8 or 4
  local N, H, V, E, L = T * B, c.hidden, c.vocab, c.embed, c.layers
  local lstm = c.cell == "lstm"
  local n = 4 * self:num_parameters()
  n = n + N * E -- embedding output
  -- with checkpoint = k (bptt.RNN): the saved states and a scratch over k + 2 blocks of steps
  local cache, scratch = core.rnn_sizes(c.cell, T, B, E, H, self.rnn:checkpoint_steps(T))
  n = n + L * (N * H + cache) + scratch -- outputs and caches; one scratch
  if c.dropout > 0 then n = n + 2 * (L - 1) * N * H end -- masks, dropped outputs
  -- input gradients: buffer 1 holds layers L, L-2, ...; the decoder's dx
  -- (N*H) stands in for buffer 2 (layers L-1, L-3, ...) unless E > H
  local w1, w2 = 0, 0
  for k = L, 1, -2 do w1 = math.max(w1, k == 1 and E or H) end
  for k = L - 1, 1, -2 do w2 = math.max(w2, k == 1 and E or H) end
  n = n + N * w1 + (w2 > H and N * w2 or 0)
  -- h0, hT, dh0 and the carried h's two turns (and c0, cT, dc0, c's two)
  n = n + (lstm and 10 or 5) * L * B * H
  n = n + 2 * N * V + N * H + 2 * N -- logits, dlogits, the decoder's dx, CE's cache
  return n * es + 2 * N * 4 -- and the ids and targets, int32
end

function LanguageModel:__tostring()
  local c = self.config
  local lines = {
    string.format('bptt.LanguageModel{vocab=%d, embed=%d, cell="%s", hidden=%d, layers=%d, dropout=%g, dtype="%s"}',
      c.vocab, c.embed, c.cell, c.hidden, c.layers, c.dropout, c.dtype),
  }
  for _, ch in ipairs(self:children()) do -- (without flattening: printing is not a use)
    local p = ch.module:parameters()
    for _, name in ipairs(ch.module:parameter_names()) do
      lines[#lines + 1] = string.format("  %-24s %s", ch.name .. "." .. name, util.shape_str(p[name]))
    end
  end
  lines[#lines + 1] = string.format("  parameters: %d", self:num_parameters())
  lines[#lines + 1] = string.format("  training memory (T=64, B=32, Adam): %.1f MB",
    self:memory_estimate(64, 32) / 2 ^ 20)
  return table.concat(lines, "\n")
end

return LanguageModel
