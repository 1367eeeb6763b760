-- Models, truncated BPTT, sampling, scoring, the training loop and exact resume.
local bptt = require "bptt"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'") == 0, "cannot make " .. d)
  return d
end

-- a small corpus of our own, as the demo makes it
local TEXT = (function()
  local parts = {}
  local words = { "river", "lantern", "mill", "heron", "bell", "stone", "rain", "lane" }
  local s = 7
  for i = 1, 600 do
    s = (s * 1103515245 + 12345) % 2147483648
    parts[i] = words[math.floor(s / 65536) % #words + 1]
  end
  return table.concat(parts, " ") .. "\n"
end)()

local function setup(opts)
  opts = opts or {}
  bptt.manual_seed(opts.seed or 42)
  local corpus = bptt.data.text{ text = TEXT }
  local train_t, val_t = bptt.data.split(corpus.tokens, { 0.9, 0.1 })
  local lm = bptt.LanguageModel{ vocab = corpus.vocab:size(), embed = 6, cell = opts.cell or "lstm", hidden = 8,
    layers = 2, dropout = opts.dropout or 0.2, dtype = opts.dtype }
  local opt = bptt.optim.adam(lm, { lr = 1e-2 })
  local sched = bptt.schedule.step(opt, { step_size = 5, gamma = opts.gamma or 0.5 })
  local trainer = bptt.Trainer{ model = lm, optimizer = opt, schedule = sched, clip = 1,
    train = bptt.data.Batches(train_t, { batch = 4, seq = 8 }), val = bptt.data.Batches(val_t, { batch = 2, seq = 8 }) }
  return trainer, lm, corpus
end

describe("bptt.Model", function()
  it("keeps every child's parameters in one flat buffer, with dotted names", function()
    local lm = bptt.LanguageModel{ vocab = 5, embed = 3, cell = "gru", hidden = 4, layers = 2 }
    local flat, grad = lm:flat_parameters()
    assert.equal(lm:num_parameters(), flat:numel())
    assert.equal(flat:numel(), grad:numel())
    local p, g = lm:parameters()
    local total = 0
    for name, t in pairs(p) do
      total = total + t:numel()
      assert.truthy(name:match("^embed%.") or name:match("^rnn%.") or name:match("^decoder%."), name)
      assert.same(t:shape(), g[name]:shape())
    end
    assert.equal(flat:numel(), total)
    -- writing the flat buffer changes the children's views
    flat:fill(0.5)
    assert.equal(0.5, lm.rnn.params.weight_hh_l1:get(2, 3))
    assert.equal(0.5, p["decoder.bias"]:get(1))
    -- and the children compute with them
    lm.carry_state = false
    local y = lm:forward(bptt.tensor({ { 1, 2 } }, "int32"))
    assert.same({ 1, 2, 5 }, y:shape())
  end)

  it("names parameters as PyTorch does and round-trips state_dict", function()
    local lm = bptt.LanguageModel{ vocab = 5, embed = 3, cell = "lstm", hidden = 4, layers = 1 }
    local names = lm:parameter_names()
    assert.same({ "embed.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
      "decoder.weight", "decoder.bias" }, names)
    local sd = {}
    for k, v in pairs(lm:state_dict()) do sd[k] = v:clone():mul(2) end
    local other = bptt.LanguageModel{ vocab = 5, embed = 3, cell = "lstm", hidden = 4, layers = 1 }
    other:load_state_dict(sd)
    for k, v in pairs(other:state_dict()) do assert.equal(0, (v - sd[k]):norm(), k) end
    sd["rnn.weight_hh_l0"] = bptt.zeros(3, 3)
    local before = other:flat_parameters():clone()
    assert.has_error(function() other:load_state_dict(sd) end)
    assert.equal(0, (other:flat_parameters() - before):norm())
  end)

  it("Sequential chains forward and backward", function()
    bptt.manual_seed(3)
    local s = bptt.Sequential{ bptt.Linear{ input = 3, output = 4, dtype = "float64" },
      bptt.Linear{ input = 4, output = 2, dtype = "float64" } }
    local r = bptt.gradcheck(s, { bptt.randn(5, 3, "float64") })
    assert.is_true(r.max_error < 1e-7, r.worst)
    local p = s:parameters()
    assert.is_not_nil(p["0.weight"])
    assert.is_not_nil(p["1.bias"])
  end)

  it("rejects children of another dtype and bad names", function()
    local M = bptt.Model:extend("M")
    local m = M()
    m:add("a", bptt.Linear{ input = 2, output = 2 })
    assert.has_error(function() m:add("b", bptt.Linear{ input = 2, output = 2, dtype = "float64" }) end)
    assert.has_error(function() m:add("a", bptt.Linear{ input = 2, output = 2 }) end)
    assert.has_error(function() m:add("forward", bptt.Linear{ input = 2, output = 2 }) end)
    assert.has_error(function() m:add("1x", bptt.Linear{ input = 2, output = 2 }) end)
  end)
end)

describe("bptt.LanguageModel truncated BPTT", function()
  it("carrying the state across two batches equals one long forward", function()
    bptt.manual_seed(5)
    local lm = bptt.LanguageModel{ vocab = 7, embed = 4, cell = "lstm", hidden = 5, layers = 2, dtype = "float64" }
    lm:evaluate()
    local ids = bptt.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 }, { 7, 1 }, { 2, 3 }, { 4, 5 } }, "int32")
    local whole = lm:forward(ids):clone()
    lm:reset_state()
    local a = lm:forward(ids:narrow(1, 1, 4)):clone()
    local b = lm:forward(ids:narrow(1, 5, 2)):clone()
    assert.is_true((whole:narrow(1, 1, 4) - a):norm() < 1e-12)
    assert.is_true((whole:narrow(1, 5, 2) - b):norm() < 1e-12)
    -- reset_state(b) restarts one stream only
    lm:reset_state()
    lm:forward(ids:narrow(1, 1, 4))
    lm:reset_state(2)
    local c = lm:forward(ids:narrow(1, 5, 2)):clone()
    lm:reset_state()
    local fresh = lm:forward(ids:narrow(1, 5, 2)):clone()
    assert.is_true((c:select(2, 1) - b:select(2, 1)):norm() < 1e-12)
    assert.is_true((c:select(2, 2) - fresh:select(2, 2)):norm() < 1e-12)
    assert.has_error(function() lm:reset_state(3) end)
  end)

  it("does not backpropagate into the previous batch", function()
    bptt.manual_seed(6)
    local lm = bptt.LanguageModel{ vocab = 5, embed = 3, cell = "gru", hidden = 4, layers = 1, dtype = "float64" }
    local ce = bptt.CrossEntropy{}
    local x = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "int32")
    local y = bptt.tensor({ { 2, 3 }, { 4, 5 } }, "int32")
    lm:forward(x) -- a previous batch sets the carried state
    local h = lm:get_state()
    -- the gradient of the second batch, with h as a constant input, by gradcheck
    local W = {}
    function W:forward() lm:set_state(h); return ce:forward(lm:forward(x), y) end
    function W:backward() lm:backward(ce:backward()) end
    function W:parameters() return lm:parameters() end
    function W:zero_grad() lm:zero_grad() end
    local r = bptt.gradcheck(W, {})
    assert.is_true(r.max_error < 1e-7, r.worst .. " " .. r.max_error)
  end)
end)

describe("sampling and scoring", function()
  it("is reproducible by seed and streams tokens", function()
    bptt.manual_seed(9)
    local lm = bptt.LanguageModel{ vocab = 11, embed = 4, cell = "lstm", hidden = 6, layers = 2, dropout = 0.5 }
    local seen = {}
    local a = lm:sample{ n = 30, prime = { 1, 2, 3 }, temperature = 0.9, top_k = 5, seed = 17,
      on_token = function(id, i) seen[i] = id end }
    local b = lm:sample{ n = 30, prime = { 1, 2, 3 }, temperature = 0.9, top_k = 5, seed = 17 }
    assert.same(a:totable(), b:totable())
    assert.same(a:totable(), seen)
    assert.is_true(lm.training) -- dropout state restored
    local c = lm:sample{ n = 30, prime = { 1, 2, 3 }, temperature = 0.9, top_k = 5, seed = 18 }
    assert.are_not.same(a:totable(), c:totable())
    local g1 = lm:sample{ n = 10, prime = { 4 }, greedy = true }
    local g2 = lm:sample{ n = 10, prime = { 4 }, greedy = true }
    assert.same(g1:totable(), g2:totable())
    local stopped = lm:sample{ n = 10, on_token = function(_, i) return i < 3 end }
    assert.equal(3, stopped:numel())
    assert.has_error(function() lm:sample{ n = 3, prime = { 12 } } end)
    assert.has_error(function() lm:sample{ n = 3, temperature = 0 } end)
    assert.has_error(function() lm:sample{ n = 3, top_p = 1.5 } end)
    assert.has_error(function() lm:sample{ n = 3, tempreature = 1 } end)
  end)

  it("top_k = 1 and greedy agree, and bptt.sample draws by probability", function()
    bptt.manual_seed(10)
    local logits = bptt.tensor{ 0, math.log(3), -1e30 }
    local counts = { 0, 0, 0 }
    for _ = 1, 4000 do
      local id = bptt.sample(logits)
      counts[id] = counts[id] + 1
    end
    assert.equal(0, counts[3])
    assert.is_true(math.abs(counts[2] / 4000 - 0.75) < 0.03, counts[2])
    assert.equal(2, bptt.sample(logits, { greedy = true }))
    assert.equal(2, bptt.sample(logits, { top_k = 1 }))
    assert.equal(2, bptt.sample(logits, { top_p = 0.5 }))
    assert.has_error(function() bptt.sample(bptt.tensor{ 0, 0 / 0 }) end)
  end)

  it("score gives per-token log-probabilities that match the model's softmax", function()
    bptt.manual_seed(11)
    local lm = bptt.LanguageModel{ vocab = 6, embed = 3, cell = "tanh", hidden = 4, layers = 1, dtype = "float64" }
    local ids = bptt.tensor({ 1, 4, 2, 6 }, "int32")
    local logp, ppl = lm:score(ids)
    assert.equal(3, logp:numel())
    lm.carry_state = false
    local logits = lm:forward(ids:narrow(1, 1, 3):contiguous():view(3, 1))
    local ce = bptt.CrossEntropy{ reduction = "sum" }
    local nll = ce:forward(logits, ids:narrow(1, 2, 3):contiguous():view(3, 1))
    assert.is_true(math.abs(nll + logp:sum()) < 1e-12)
    assert.is_true(math.abs(ppl - math.exp(nll / 3)) < 1e-9)
  end)
end)

describe("bptt.Trainer", function()
  it("lowers the loss", function()
    local trainer = setup{ dropout = 0, gamma = 1 }
    local first = trainer:evaluate()
    for _ = 1, 60 do trainer:step() end
    local last = trainer:evaluate()
    assert.is_true(last < first - 0.5, first .. " -> " .. last)
  end)

  it("resumes exactly: N, save, load, M == N + M (bit for bit)", function()
    local dir = tmpdir()
    local path = dir .. "/ckpt.safetensors"
    local a = setup()
    for _ = 1, 7 do a:step() end
    a:evaluate() -- evaluation between must not disturb anything
    assert.is_true(a:save(path, { vocab = "v" }))
    for _ = 1, 6 do a:step() end
    local want = a.model:flat_parameters():clone()
    local lr = a.optimizer.lr

    bptt.manual_seed(999) -- a different generator state, which load must replace
    local b = setup{ seed = 1 }
    local meta = assert(b:load(path))
    assert.equal("v", meta.vocab)
    assert.equal(7, b.iteration)
    for _ = 1, 6 do b:step() end
    assert.equal(13, b.iteration)
    local got = b.model:flat_parameters()
    assert.equal(0, (got - want):norm())
    assert.equal(lr, b.optimizer.lr)
    os.remove(path)
    os.remove(dir)
  end)

  it("reads the config of a checkpoint and refuses one that does not fit", function()
    local dir = tmpdir()
    local path = dir .. "/ckpt.safetensors"
    local a = setup()
    a:step()
    assert.is_true(a:save(path))
    local config = bptt.Trainer.read_config(path)
    assert.equal(8, config.hidden)
    assert.equal("lstm", config.cell)
    local lm2, meta2 = bptt.Trainer.load_model(path)
    assert.equal(0, (lm2:flat_parameters() - a.model:flat_parameters()):norm())
    assert.equal("1", meta2.iteration)
    local other = setup{ cell = "gru" }
    local before = other.model:flat_parameters():clone()
    assert.has_error(function() other:load(path) end)
    assert.equal(0, (other.model:flat_parameters() - before):norm())
    -- missing and corrupt files: nil, message
    local ok, msg = other:load(dir .. "/missing.safetensors")
    assert.is_nil(ok)
    assert.truthy(msg:find("missing.safetensors", 1, true))
    local f = assert(io.open(path, "r+b"))
    f:write("garbage!")
    f:close()
    ok, msg = other:load(path)
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.equal(0, (other.model:flat_parameters() - before):norm())
    os.remove(path)
    os.remove(dir)
  end)

  it("stops on a non-finite loss naming the iteration, or skips the step when asked", function()
    local trainer, lm = setup{ dropout = 0 }
    trainer:step()
    local p = lm:parameters()
    p["decoder.bias"]:set(1, 0 / 0)
    local w_before = p["rnn.weight_hh_l0"]:clone()
    local ok, err = pcall(trainer.step, trainer)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("iteration 2", 1, true), err)
    assert.equal(0, (p["rnn.weight_hh_l0"] - w_before):norm()) -- not updated
    trainer.skip_nonfinite = true
    trainer:step()
    assert.equal(1, trainer.skipped)
    assert.equal(0, (p["rnn.weight_hh_l0"] - w_before):norm())
    assert.equal(0, lm.grads["rnn.weight_hh_l0"]:norm()) -- gradients of the dropped step cleared
  end)
end)
