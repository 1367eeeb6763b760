-- TBPTT(k1, k2) in the Trainer (Williams & Peng 1990): k1 new steps per update, the loss of
-- those steps backpropagated through the last k2.  k1 = k2 is the plain step, bit for bit.
local bptt = require "bptt"

local TEXT = (function()
  local parts, s = {}, 3
  local words = { "owl", "fen", "reed", "moth", "dusk", "pond" }
  for i = 1, 400 do
    s = (s * 1103515245 + 12345) % 2147483648
    parts[i] = words[math.floor(s / 65536) % #words + 1]
  end
  return table.concat(parts, " ") .. "\n"
end)()

local function setup(tbptt, seq, dropout)
  bptt.manual_seed(21)
  local corpus = bptt.data.text{ text = TEXT }
  local lm = bptt.LanguageModel{ vocab = corpus.vocab:size(), embed = 5, cell = "gru", hidden = 7, layers = 2,
    dropout = dropout or 0, dtype = "float64" }
  local opt = bptt.optim.sgd(lm, { lr = 0.1 })
  local batches = bptt.data.Batches(corpus.tokens, { batch = 3, seq = seq })
  return bptt.Trainer{ model = lm, optimizer = opt, clip = 5, train = batches, tbptt = tbptt }, lm, corpus
end

local function same_bits(a, b, what)
  local x, y = a:view(-1), b:view(-1)
  assert.are.equal(x:numel(), y:numel())
  for i = 1, x:numel() do assert(x:get(i) == y:get(i), string.format("%s[%d]: %.17g ~= %.17g", what, i, x:get(i),
    y:get(i))) end
end

describe("bptt.Trainer{tbptt = {k1 =, k2 =}}", function()
  it("with k1 = k2 = seq is the plain step, bit for bit (dropout included)", function()
    local function run(tbptt) -- one after the other: dropout draws from the one generator
      local t, lm = setup(tbptt, 6, 0.3)
      local losses = {}
      for i = 1, 8 do losses[i] = t:step() end
      return losses, lm:flat_parameters():clone()
    end
    local la, wa = run(nil)
    local lb, wb = run({ k1 = 6, k2 = 6 })
    for i = 1, 8 do assert(la[i] == lb[i], string.format("step %d: loss %.17g vs %.17g", i, la[i], lb[i])) end
    same_bits(wb, wa, "weights")
  end)

  it("backpropagates the k1 new steps' loss through the last k2 steps (a reference by hand)", function()
    local k1, k2 = 3, 8
    local trainer, lm = setup({ k1 = k1, k2 = k2 }, k1)
    local _, ref_lm = setup(nil, k1)
    local ce = bptt.CrossEntropy{}
    ref_lm:flat_parameters():copy(lm:flat_parameters())
    local ref_opt = bptt.optim.sgd(ref_lm, { lr = 0.1 })
    local batches = bptt.data.Batches(bptt.data.text{ text = TEXT }.tokens, { batch = 3, seq = k1 })
    local win, state = nil, nil -- the kept steps and the state before them, by hand
    for step = 1, 7 do
      local x, y = batches:next()
      local kept = win and win:size(1) or 0
      local n = kept + k1
      local wx = bptt.zeros(n, 3, "int32")
      if win then wx:narrow(1, 1, kept):copy(win) end
      wx:narrow(1, kept + 1, k1):copy(x)
      ref_lm:set_state(state)
      ref_opt:zero_grad()
      local out = ref_lm:forward(wx)
      local loss = ce:forward(out:narrow(1, kept + 1, k1), y)
      local d = bptt.zeros(n, 3, out:size(3), "float64")
      d:narrow(1, kept + 1, k1):copy(ce:backward())
      ref_lm:backward(d)
      local keep = math.min(n, k2 - k1)
      if n > keep then
        ref_lm:set_state(state)
        ref_lm:forward(wx:narrow(1, 1, n - keep))
        state = ref_lm:get_state()
      end
      win = wx:narrow(1, n - keep + 1, keep):clone()
      bptt.clip_grad_norm(ref_lm, 5)
      ref_opt:step()
      local got = trainer:step()
      assert(got == loss, string.format("step %d: loss %.17g, by hand %.17g", step, got, loss))
    end
    same_bits(lm:flat_parameters(), ref_lm:flat_parameters(), "weights")
  end)

  it("reaches further back than k1: the gradient differs from TBPTT(k1, k1)", function()
    local a, lma = setup({ k1 = 3, k2 = 9 }, 3)
    local b, lmb = setup({ k1 = 3, k2 = 3 }, 3)
    for _ = 1, 3 do a:step(); b:step() end
    assert.is_true((lma:flat_parameters() - lmb:flat_parameters()):norm() > 0)
  end)

  it("resumes exactly from a checkpoint, the window included", function()
    local dir = os.tmpname()
    os.remove(dir)
    local path = dir .. ".safetensors"
    local t1, lm1 = setup({ k1 = 2, k2 = 7 }, 2)
    for _ = 1, 5 do t1:step() end
    assert(t1:save(path))
    for _ = 1, 4 do t1:step() end
    local t2, lm2 = setup({ k1 = 2, k2 = 7 }, 2)
    assert(t2:load(path))
    for _ = 1, 4 do t2:step() end
    os.remove(path)
    same_bits(lm2:flat_parameters(), lm1:flat_parameters(), "weights after resume")
  end)

  it("rejects bad settings, naming them", function()
    assert.has_error(function() setup({ k1 = 4, k2 = 3 }, 4) end,
      "bptt.Trainer: tbptt.k2 must be >= tbptt.k1 = 4, got 3")
    assert.has_error(function() setup(5, 4) end, "bptt.Trainer: tbptt must be a table {k1 =, k2 =}, got 5")
    assert.has_error(function() setup({ k1 = 0, k2 = 3 }, 4) end)
    local t = setup({ k1 = 3, k2 = 6 }, 4)
    assert.has_error(function() t:step() end,
      "bptt.Trainer:step: tbptt.k1 = 3, but the batch has 4 steps (make the batches with seq = k1)")
  end)
end)
