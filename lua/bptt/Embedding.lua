--- bptt.Embedding: token ids (1-based) -> vectors.  forward(ids) with ids of
-- any shape (T x B for sequences) gives ids' shape x dim.  Parameter weight
-- (vocab x dim), initialized N(0, 1) as in PyTorch.  ids are int32, or floats
-- holding whole numbers; an id outside 1..vocab is an error naming it and its
-- position.
local core = require "bptt.core"
local util = require "bptt.util"
local Module = require "bptt.Module"

local Embedding = util.class("bptt.Embedding", Module)

local OPTIONS = { vocab = true, dim = true, dtype = true }

function Embedding:__init(opts)
  local fn = "bptt.Embedding"
  Module.__init(self)
  util.options(fn, opts, OPTIONS)
  self.vocab = util.count(fn, "vocab", opts.vocab, 1)
  self.dim = util.count(fn, "dim", opts.dim, 1)
  self:_parameters_init(util.dtype(fn, opts.dtype), { { "weight", { self.vocab, self.dim } } })
  self:reset()
end

function Embedding:reset()
  self._flat:normal(0, 1)
  return self
end

local function check_ids(self, fn, ids)
  util.tensor(fn, "ids", ids)
  local flat
  flat, self._idbuf = util.index_tensor(fn, "ids", ids, self._idbuf)
  return flat:view(-1)
end

local function range_error(self, fn, ids, pos)
  error(string.format("%s: ids%s is %d, expected 1..%d", fn, util.index_str(ids:shape(), pos),
    ids:contiguous():view(-1):get(pos), self.vocab), 3)
end

--- y = emb:forward(ids): ids' shape x dim, also emb.output (a buffer reused
-- by the next call).
function Embedding:forward(ids)
  local fn = "bptt.Embedding:forward"
  local flat = check_ids(self, fn, ids)
  local N = flat:numel()
  if self._y == nil or self._y:size(1) ~= N then self._y = core.zeros(N, self.dim, self.dtype) end
  local bad = core.embedding_forward(flat, self.params.weight, self._y)
  if bad then range_error(self, fn, ids, bad) end
  self._ids, self._shape = flat, ids:shape()
  local out = ids:shape()
  out[#out + 1] = self.dim
  self.output = self._y:view(out)
  return self.output
end

--- emb:backward(dy): adds into the weight gradient (ids have no gradient).
function Embedding:backward(dy)
  local fn = "bptt.Embedding:backward"
  if self._ids == nil then error(fn .. ": call forward first", 2) end
  util.tensor(fn, "dy", dy, self.dtype)
  util.shape(fn, "dy", dy, self.output:shape())
  local bad = core.embedding_backward(self._ids, self.grads.weight, dy:contiguous():view(self._ids:numel(), self.dim))
  if bad then -- the ids were changed after forward (nothing was added)
    error(string.format("%s: ids%s is %d, expected 1..%d (the ids were changed after forward)", fn,
      util.index_str(self._shape, bad), self._ids:get(bad), self.vocab), 2)
  end
end

function Embedding:__tostring()
  return string.format('bptt.Embedding{vocab=%d, dim=%d, dtype="%s"} (%d parameters)',
    self.vocab, self.dim, self.dtype, self:num_parameters())
end

return Embedding
