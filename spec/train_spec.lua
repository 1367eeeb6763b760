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

  -- LanguageModel:sample runs its tokens through core.lm_generator, a C
  -- loop over the same kernels: it must give the layers' own logits to the
  -- bit, and so the same draws.
  local core = require "bptt.core"
  -- The layers' own forward a token at a time, the loop lm:sample ran
  -- before: primes a zero state with prime (or none) and returns the
  -- prime's last logits (nil without one) and feed(id) -> the logits after id
  local function layers(lm, prime)
    lm:evaluate()
    lm.rnn.carry_state = false
    local V, h, cc, logits = lm.config.vocab
    if prime then
      local y
      y, h, cc = lm.rnn:forward(lm.embed:forward(prime:view(prime:numel(), 1)))
      h, cc = h:clone(), cc and cc:clone()
      logits = lm.decoder:forward(y:narrow(1, prime:numel(), 1)):view(V)
    end
    local x = bptt.zeros(1, 1, "int32")
    local function feed(id)
      x:set(1, 1, id)
      local y, hT, cT = lm.rnn:forward(lm.embed:forward(x), h, cc)
      h = h or hT:clone()
      h:copy(hT)
      if cT then
        cc = cc or cT:clone()
        cc:copy(cT)
      end
      return lm.decoder:forward(y):view(V)
    end
    return logits, feed
  end

  -- the logits (clones) after each of ids, and the ids a draw from each gives
  local function reference(lm, prime, ids, sopts)
    local _, feed = layers(lm, prime)
    local out, drawn = {}, {}
    for i = 1, #ids do
      local logits = feed(ids[i])
      out[i] = logits:clone()
      drawn[i] = bptt.sample(logits, sopts)
    end
    return out, drawn
  end

  local function generator(lm, logits, sopts, h, cc)
    local P, D, w_ih, w_hh, b_ih, b_hh = lm.rnn.params, lm.decoder.params, {}, {}, {}, {}
    for k = 1, lm.config.layers do
      w_ih[k], w_hh[k] = P["weight_ih_l" .. (k - 1)], P["weight_hh_l" .. (k - 1)]
      b_ih[k], b_hh[k] = P["bias_ih_l" .. (k - 1)], P["bias_hh_l" .. (k - 1)]
    end
    return core.lm_generator(lm.config.cell, lm.embed.params.weight, w_ih, w_hh, b_ih, b_hh, D.weight, D.bias,
      logits, sopts, h, cc)
  end

  it("draws through core.lm_generator the layers' own logits to the bit, on 1 and 2 threads", function()
    local threads = bptt.num_threads()
    local cases = 0
    for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
      for _, dtype in ipairs({ "float32", "float64" }) do
        for _, shape in ipairs({ { H = 20, E = 7, L = 1 }, { H = 96, E = 64, L = 3 } }) do
          for _, nt in ipairs({ 1, 2 }) do
            bptt.set_num_threads(nt)
            bptt.manual_seed(cases + 1)
            local lm = bptt.LanguageModel{ vocab = 13, embed = shape.E, cell = cell, hidden = shape.H,
              layers = shape.L, dtype = dtype }
            for _, w in ipairs(lm:parameters()) do w:normal(0, 0.4) end -- saturating units too
            local ids = {}
            for i = 1, 12 do ids[i] = (i * 5) % 13 + 1 end
            for _, primed in ipairs({ false, true }) do
              local prime = primed and bptt.tensor({ 3, 1, 13 }, "int32") or nil
              local sopts = { temperature = 0.8 }
              bptt.manual_seed(50)
              local want, drawn = reference(lm, prime, ids, sopts)
              local h, cc
              if prime then
                local _
                _, h, cc = lm.rnn:forward(lm.embed:forward(prime:view(3, 1)))
              end
              local lg = bptt.zeros(13, dtype)
              local gen = generator(lm, lg, sopts, h, cc)
              bptt.manual_seed(50)
              local what = string.format("%s %s H=%d L=%d, %d threads, %s", cell, dtype, shape.H, shape.L, nt,
                primed and "primed" or "from zeros")
              for i = 1, #ids do
                local id = gen:next(ids[i])
                assert.equal(0, (lg - want[i]):abs():max(), what .. ", token " .. i)
                assert.equal(drawn[i], id, what .. ", draw " .. i)
              end
              cases = cases + 1
            end
          end
        end
      end
    end
    bptt.set_num_threads(threads)
    assert.equal(64, cases)
  end)

  it("samples as the layers' loop did: the same ids for a seed, with and without a prime", function()
    -- LanguageModel:sample's loop before core.lm_generator, in Lua
    local function layers_sample(lm, n, prime, sopts, seed)
      bptt.manual_seed(seed)
      local logits, feed = layers(lm, prime)
      local out = {}
      local id = not prime and bptt.random(lm.config.vocab) or nil
      for i = 1, n do
        if logits then id = bptt.sample(logits, sopts) end
        out[i] = id
        logits = feed(id)
      end
      return out
    end
    for _, cell in ipairs({ "lstm", "gru", "tanh" }) do
      for _, dtype in ipairs({ "float32", "float64" }) do
        bptt.manual_seed(21)
        local lm = bptt.LanguageModel{ vocab = 9, embed = 5, cell = cell, hidden = 24, layers = 2, dtype = dtype }
        for _, primed in ipairs({ false, true }) do
          local p = primed and bptt.tensor({ 2, 7 }, "int32") or nil
          local got = lm:sample{ n = 60, prime = p, temperature = 0.7, top_k = 6, seed = 5 }
          local want = layers_sample(lm, 60, p, { temperature = 0.7, top_k = 6 }, 5)
          assert.same(want, got:totable(), cell .. " " .. dtype .. (primed and " primed" or ""))
          -- n = 0 after a prime draws nothing: the generator stays where it was
          local state = bptt.rng_state()
          assert.equal(0, lm:sample{ n = 0, prime = p or { 1 } }:numel())
          assert.equal(state, bptt.rng_state())
        end
      end
    end
  end)

  it("gives clear errors from its C loop: an id out of range, a freed weight, NaN logits", function()
    bptt.manual_seed(22)
    local lm = bptt.LanguageModel{ vocab = 6, embed = 3, cell = "lstm", hidden = 8, layers = 2 }
    local gen = generator(lm, bptt.zeros(6), {})
    assert.has_error(function() gen:next(0) end)
    assert.has_error(function() gen:next(7) end)
    assert.is_number(gen:next(6))
    lm.rnn.params.bias_hh_l1:fill(0 / 0)
    local ok, err = pcall(lm.sample, lm, { n = 5 })
    assert.is_false(ok)
    assert.matches("bptt.LanguageModel:sample: the logits contain NaN", err, 1, true)
    local lm2 = bptt.LanguageModel{ vocab = 6, embed = 3, cell = "gru", hidden = 8, layers = 1 }
    ok, err = pcall(lm2.sample, lm2, { n = 5, on_token = function() lm2.decoder.params.weight:free() end })
    assert.is_false(ok)
    assert.matches("a tensor of the model was freed", err, 1, true)
    assert.has_error(function() core.lm_generator("lstm", bptt.zeros(6, 3), {}, {}, nil, nil, bptt.zeros(6, 8),
      nil, bptt.zeros(6), {}) end)
    assert.has_error(function() generator(lm, bptt.zeros(5), {}) end) -- logits of the wrong size
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

describe("bptt.Model: parameters flattened once, a module in one model", function()
  local N = require "helpers.nn_util"
  local function linear(dtype) return bptt.Linear{ input = 2, output = 2, dtype = dtype or "float64" } end

  it("views and optimizers taken from a child before it joins a model follow its parameters", function()
    local a, b = linear(), linear()
    local w = b:parameters().weight
    local _, gw = b:parameters()
    local flat_b = b:flat_parameters()
    local opt = bptt.optim.sgd(b, { lr = 1 })
    local s = bptt.Sequential{ a, b }
    local flat, grad = s:flat_parameters()
    assert.equal(12, flat:numel())
    flat:fill(0.5)
    assert.equal(0.5, w:get(2, 1), "the weight view taken before")
    assert.equal(0.5, flat_b:get(6), "the flat buffer taken before")
    gw["weight"]:fill(0.25)
    assert.equal(0.25, grad:get(7), "the gradient view taken before")
    opt:step() -- over b, made before b joined s
    assert.equal(0.25, flat:get(7), "the optimizer made for the child moves the model's buffer")
    assert.equal(0.5, flat:get(1), "and nothing of the other child")
  end)

  it("add() does not move parameters; adding after the first use is an error naming the model", function()
    local M = bptt.Model:extend("MyModel")
    local m = M()
    local a = m:add("a", linear())
    local pa = a:flat_parameters():pointer()
    m:add("b", linear())
    assert.equal(pa, a:flat_parameters():pointer(), "add moved a's parameters")
    m:parameters()
    N.error_with({ "MyModel:add", "MyModel's parameters are already in use" }, m.add, m, "c", linear())
    assert.is_nil(m.c)
    assert.equal(2, #m:children())
  end)

  it("refuses a module listed twice, in two models, or inside itself, naming it", function()
    local l = linear()
    N.error_with({ "bptt.Sequential: element 2 (bptt.Linear) is element 1 already" }, bptt.Sequential, { l, l })
    local s = bptt.Sequential{ l } -- the failed one above left l free
    N.error_with({ "bptt.Sequential", "bptt.Linear (child 0 of bptt.Sequential) is already in a model" },
      bptt.Sequential, { l })
    local M = bptt.Model:extend("M2")
    local m = M()
    N.error_with({ "M2:add", "bptt.Linear (child 0 of bptt.Sequential) is already in a model" }, m.add, m, "l", l)
    N.error_with({ "M2:add", "bptt.Sequential", "is already in a model" }, m.add, m, "s",
      bptt.Sequential{ bptt.Sequential{ linear() } }:children()[1].module)
    N.error_with({ "M2:add: M2 would contain itself" }, m.add, m, "me", m)
    local outer = M()
    outer:add("inner", m)
    N.error_with({ "M2:add: M2 would contain itself" }, m.add, m, "outer", outer)
    -- an optimizer over the one model still trains it (no hidden second slot)
    assert.equal(6, s:num_parameters())
  end)

  it("a LanguageModel made from its parts has one flat buffer and no stale copies", function()
    local lm = bptt.LanguageModel{ vocab = 5, embed = 3, cell = "lstm", hidden = 4, layers = 2 }
    local w = lm.rnn:parameters().weight_hh_l1 -- taken before the model's first use
    local flat = lm:flat_parameters()
    flat:fill(0.125)
    assert.equal(0.125, w:get(1, 1))
    local e, d = lm.embed:flat_parameters(), lm.decoder:flat_parameters()
    assert.equal(e:numel() + lm.rnn:num_parameters() + d:numel(), flat:numel())
    e:fill(2)
    assert.equal(2, flat:get(1))
    d:fill(3)
    assert.equal(3, flat:get(flat:numel()))
  end)
end)

describe("bptt.Trainer checks its parts when it is made", function()
  local N = require "helpers.nn_util"
  local function parts()
    bptt.manual_seed(1)
    local corpus = bptt.data.text{ text = TEXT }
    local lm = bptt.LanguageModel{ vocab = corpus.vocab:size(), embed = 4, hidden = 6 }
    return lm, bptt.optim.adam(lm, { lr = 1e-2 }), bptt.data.Batches(corpus.tokens, { batch = 2, seq = 4 })
  end

  it("names the field: optimizer, train, val, model, loss, schedule", function()
    local lm, opt, batches = parts()
    N.error_with({ "bptt.Trainer: optimizer must be an optimizer", "got string 'adam'" }, bptt.Trainer,
      { model = lm, optimizer = "adam", train = {} })
    N.error_with({ "bptt.Trainer: train must be batches (with :next())", "got an empty table" }, bptt.Trainer,
      { model = lm, optimizer = opt, train = {} })
    N.error_with({ "bptt.Trainer: val must be batches" }, bptt.Trainer,
      { model = lm, optimizer = opt, train = batches, val = { next = function() end } })
    N.error_with({ "bptt.Trainer: model must be a module", "got an empty table" }, bptt.Trainer,
      { model = {}, optimizer = opt, train = batches })
    N.error_with({ "bptt.Trainer: loss must be a criterion" }, bptt.Trainer,
      { model = lm, optimizer = opt, train = batches, loss = 5 })
    N.error_with({ "bptt.Trainer: schedule must be a schedule" }, bptt.Trainer,
      { model = lm, optimizer = opt, train = batches, schedule = {} })
    N.error_with({ "bptt.Trainer: clip must be a number > 0", "got string '5'" }, bptt.Trainer,
      { model = lm, optimizer = opt, train = batches, clip = "5" })
  end)

  it("refuses an optimizer made for another model", function()
    local lm, _, batches = parts()
    local other = bptt.LanguageModel{ vocab = lm.config.vocab, embed = 4, hidden = 6 }
    N.error_with({ "bptt.Trainer: optimizer updates none of the model's parameters" }, bptt.Trainer,
      { model = lm, optimizer = bptt.optim.adam(other, { lr = 1e-2 }), train = batches })
    -- one over part of the model (fine-tuning the decoder only) is fine
    bptt.Trainer{ model = lm, optimizer = bptt.optim.sgd(lm.decoder, { lr = 0.1 }), train = batches }
  end)

  it("trains any model with forward, backward, parameters and a loss", function()
    bptt.manual_seed(2)
    local m = bptt.Sequential{ bptt.Linear{ input = 3, output = 8, dtype = "float64" },
      bptt.Linear{ input = 8, output = 1, dtype = "float64" } }
    local x = bptt.randn(16, 3, "float64")
    local w = bptt.tensor({ { 0.5 }, { -1 }, { 2 } }, "float64")
    local y = bptt.matmul(x, w)
    local batches = { next = function() return x, y, false end }
    local trainer = bptt.Trainer{ model = m, optimizer = bptt.optim.adam(m, { lr = 0.05 }), train = batches,
      loss = bptt.MSE{} }
    local first = trainer:step()
    local last
    for _ = 1, 200 do last = trainer:step() end
    assert.is_true(last < first / 100, string.format("loss %g -> %g", first, last))
  end)
end)

describe("errors name the function the user called", function()
  local N = require "helpers.nn_util"
  it("LanguageModel's options and sample's", function()
    N.error_with({ "bptt.LanguageModel: cell must be" }, bptt.LanguageModel, { vocab = 5, hidden = 4, cell = "lstmx" })
    N.error_with({ "bptt.LanguageModel: dropout must be" }, bptt.LanguageModel, { vocab = 5, hidden = 4, dropout = 1 })
    N.error_with({ "bptt.LanguageModel: layers must be a whole number >= 1, got 0" }, bptt.LanguageModel,
      { vocab = 5, hidden = 4, layers = 0 })
    N.error_with({ "bptt.LanguageModel: hidden must be a whole number >= 1, got string '5'" }, bptt.LanguageModel,
      { vocab = 5, hidden = "5" })
    local lm = bptt.LanguageModel{ vocab = 5, hidden = 4 }
    N.error_with({ "bptt.LanguageModel:sample: temperature must be a number > 0, got 0" }, lm.sample, lm,
      { temperature = 0 })
    N.error_with({ "bptt.LanguageModel:sample: top_p must be a number in (0, 1], got string '0.5'" }, lm.sample, lm,
      { top_p = "0.5" })
    N.error_with({ "bptt.LanguageModel:sample: top_k must be a whole number >= 0, got -1" }, lm.sample, lm,
      { top_k = -1 })
  end)

  it("bptt.clip does not need bptt.optim", function()
    local saved_clip, saved_optim = package.loaded["bptt.clip"], package.loaded["bptt.optim"]
    package.loaded["bptt.clip"], package.loaded["bptt.optim"] = nil, nil
    local ok, c = pcall(require, "bptt.clip")
    local loaded = package.loaded["bptt.optim"]
    package.loaded["bptt.clip"], package.loaded["bptt.optim"] = saved_clip, saved_optim
    assert.is_true(ok, tostring(c))
    assert.is_nil(loaded, "requiring bptt.clip loaded bptt.optim")
    local l = bptt.Linear{ input = 2, output = 2, dtype = "float64" }
    l.grads.weight:fill(3)
    assert.equal(6, c.clip_grad_norm(l, 1))
  end)
end)
