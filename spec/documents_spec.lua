-- A corpus of documents (bptt.data): a separator token opens every document,
-- data.Batches{separator = id} flags where documents start, and the
-- LanguageModel and the Trainer pass the flags to the recurrent layer so
-- that, in truncated BPTT over many documents, neither the carried state nor
-- a gradient crosses from one document into the next: every position's
-- logits are those of its document run alone from a zero state, across batch
-- boundaries too, and a batch's gradients are the sum of its documents' run
-- alone.
local bptt = require "bptt"
local data = require "bptt.data"
local N = require "helpers.nn_util"

local tmpdir = os.getenv("TMPDIR") or "/tmp"
local function tmpfolder(tag)
  local d = string.format("%s/bptt_docs_spec_%s_%d_%d", tmpdir, tag, os.time(), math.floor(os.clock() * 1e6))
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end
local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end
local function rmtree(d) os.execute("rm -rf '" .. d .. "'") end

-- documents of random lengths over ids 2..V, each opened by id 1
local function doc_tokens(ndocs, V, seed)
  bptt.manual_seed(seed)
  local u = bptt.rand(ndocs * 40):totable()
  local ids, k = {}, 0
  local function r() k = k + 1; return u[k] end
  for _ = 1, ndocs do
    ids[#ids + 1] = 1
    for _ = 1, 1 + math.floor(r() * 9) do ids[#ids + 1] = 2 + math.floor(r() * (V - 1)) end
  end
  return ids
end

describe("bptt.data.Batches with a separator", function()
  it("flags the steps whose input is the separator, and nothing without one", function()
    local ids = doc_tokens(30, 6, 1)
    local tokens = bptt.tensor(ids, "int32")
    local b = data.Batches(tokens, { batch = 3, seq = 5, separator = 1 })
    assert.are.equal(1, b:separator())
    local seen = 0
    for _ = 1, 2 * b:count() do
      local x, _, _, _, _, starts = b:next()
      assert.are.same({ 5, 3 }, starts:shape())
      assert.are.equal("int32", starts:dtype())
      local xt, st = x:totable(), starts:totable()
      for t = 1, 5 do
        for s = 1, 3 do
          assert.are.equal(xt[t][s] == 1 and 1 or 0, st[t][s])
          seen = seen + st[t][s]
        end
      end
    end
    assert.is_true(seen > 0)
    local plain = data.Batches(tokens, { batch = 3, seq = 5 })
    assert.is_nil(plain:separator())
    assert.is_nil(select(6, plain:next()))
  end)

  it("checks the separator", function()
    local tokens = bptt.tensor(doc_tokens(10, 5, 2), "int32")
    assert.has_error(function() data.Batches(tokens, { batch = 2, seq = 3, separator = 0 }) end,
      "bptt.data.Batches: separator must be a whole number >= 1, got 0")
    assert.has_error(function() data.Batches(tokens, { batch = 2, seq = 3, separator = "a" }) end)
  end)
end)

describe("bptt.data.documents", function()
  it("reads one document a file, each opened by the separator, with one vocabulary", function()
    local d = tmpfolder("ok")
    write_file(d .. "/b.txt", "héllo")
    write_file(d .. "/a.txt", "ab")
    write_file(d .. "/c.txt", "")
    write_file(d .. "/.hidden", "zzz")
    assert(os.execute("mkdir -p '" .. d .. "/sub'"))
    local c = assert(data.documents(d))
    rmtree(d)
    assert.are.same({ "a.txt", "b.txt", "c.txt" }, c.documents)
    assert.are.equal("\30ab\30héllo\30", c.vocab:decode(c.tokens))
    assert.are.same({ "\30", "a", "b", "h", "l", "o", "é" }, c.vocab:symbols())
    assert.are.equal(1, c.separator)
    assert.are.same({ 1, 4, 10 }, c.offsets:totable())
    assert.are.equal("utf8", c.unit)
  end)

  it("takes another separator, and refuses one that a document holds (naming the file)", function()
    local d = tmpfolder("sep")
    write_file(d .. "/one", "a|b")
    write_file(d .. "/two", "ba")
    local c = assert(data.documents(d, { separator = "#", unit = "byte" }))
    assert.are.equal("#a|b#ba", c.vocab:decode(c.tokens))
    assert.are.equal(c.vocab:encode("#"):get(1), c.separator)
    local ok, msg = data.documents(d, { separator = "|" })
    assert.is_nil(ok)
    assert.are.equal("bptt.data.documents: " .. d .. "/one holds the separator \"|\"; give another with separator = ",
      msg)
    assert.has_error(function() data.documents(d, { separator = "ab" }) end,
      'bptt.data.documents: separator must be one utf8 symbol, got "ab"')
    rmtree(d)
  end)

  it("gives nil, message for a missing or empty folder and invalid UTF-8", function()
    local ok, msg, errno = data.documents(tmpdir .. "/bptt_no_such_folder_here")
    assert.is_nil(ok)
    assert.matches("bptt_no_such_folder_here: No such file or directory", msg, 1, true)
    assert.is_number(errno)
    local d = tmpfolder("empty")
    ok, msg = data.documents(d)
    assert.is_nil(ok)
    assert.matches("no documents", msg, 1, true)
    write_file(d .. "/bad", "a\255")
    ok, msg = data.documents(d)
    assert.is_nil(ok)
    assert.matches("/bad: invalid UTF-8 at byte offset 1", msg, 1, true)
    rmtree(d)
  end)
end)

describe("truncated BPTT over documents: state and gradients never cross", function()
  local V, T, B = 7, 6, 3
  local function model(seed)
    bptt.manual_seed(seed)
    return bptt.LanguageModel{ vocab = V, embed = 5, hidden = 8, layers = 2, cell = "lstm", dtype = "float64" }
  end

  -- The stripes of the batches: stream b's tokens, split at the separator
  -- into its documents (the first may be a document's tail), each run alone
  -- from zeros: logits (n x V) per position of the stripe.
  local function alone(lm, stripe)
    lm.carry_state = false
    local out, s = {}, 1
    while s <= #stripe do
      local e = s
      while e + 1 <= #stripe and stripe[e + 1] ~= 1 do e = e + 1 end
      local ids = {}
      for i = s, e do ids[#ids + 1] = { stripe[i] } end
      local logits = lm:forward(bptt.tensor(ids, "int32"))
      for i = s, e do out[i] = logits:select(1, i - s + 1):select(1, 1):clone() end
      s = e + 1
    end
    lm.carry_state = true
    return out
  end

  it("gives every position the logits of its document alone, across batch boundaries", function()
    local ids = doc_tokens(40, V, 3)
    local batches = data.Batches(bptt.tensor(ids, "int32"), { batch = B, seq = T, separator = 1 })
    local K = batches:count()
    local S = K * T
    local lm, ref = model(4), model(4)
    local expect = {}
    for b = 1, B do
      local stripe = {}
      for i = 1, S do stripe[i] = ids[(b - 1) * S + i] end
      expect[b] = alone(ref, stripe)
    end
    local crossed = false
    for k = 1, K do
      local x, _, reset, _, _, starts = batches:next()
      if reset then lm:reset_state() end
      local logits = lm:forward(x, starts)
      for t = 1, T do
        for b = 1, B do
          N.assert_rel(logits:select(1, t):select(1, b), expect[b][(k - 1) * T + t], 1e-12,
            string.format("logits of batch %d, step %d, stream %d", k, t, b))
        end
      end
      -- without the starts, the state runs on into the next document
      if k == 2 then
        local st = lm:get_state()
        local other = model(4)
        other:set_state(st)
        lm:set_state(st)
        local l2 = other:forward(x)
        crossed = (l2 - logits):norm() > 1e-6
      end
    end
    assert.is_true(crossed)
  end)

  it("gives a batch the parameter gradients of its documents alone, summed", function()
    local ids = doc_tokens(20, V, 5)
    local batches = data.Batches(bptt.tensor(ids, "int32"), { batch = B, seq = T, separator = 1 })
    local x, y, _, _, _, starts = batches:next()
    local lm, ref = model(6), model(6)
    local ce = bptt.CrossEntropy{ reduction = "sum" }
    lm:zero_grad()
    ce:forward(lm:forward(x, starts), y)
    lm:backward(ce:backward())
    local _, g = lm:flat_parameters()
    -- each (stream, document) segment of the batch alone, from zeros, its
    -- gradients added up
    ref:zero_grad()
    ref.carry_state = false
    local xt, yt = x:totable(), y:totable()
    local segments = 0
    for b = 1, B do
      local s = 1
      while s <= T do
        local e = s
        while e + 1 <= T and xt[e + 1][b] ~= 1 do e = e + 1 end
        local xs, ys = {}, {}
        for t = s, e do xs[#xs + 1], ys[#ys + 1] = { xt[t][b] }, { yt[t][b] } end
        ce:forward(ref:forward(bptt.tensor(xs, "int32")), bptt.tensor(ys, "int32"))
        ref:backward(ce:backward())
        segments = segments + 1
        s = e + 1
      end
    end
    assert.is_true(segments > B)
    local _, gref = ref:flat_parameters()
    N.assert_rel(g, gref, 1e-11, "the flat gradient")
  end)
end)

describe("bptt.Trainer over documents", function()
  local V = 7
  local function setup(seed, sep)
    bptt.manual_seed(seed)
    local lm = bptt.LanguageModel{ vocab = V, embed = 4, hidden = 6, dtype = "float64" }
    local tokens = bptt.tensor(doc_tokens(40, V, 7), "int32")
    local train = data.Batches(tokens, { batch = 2, seq = 8, separator = sep })
    local val = data.Batches(tokens, { batch = 2, seq = 8, separator = sep })
    return lm, train, val
  end

  it("passes the document starts to the model in step and evaluate", function()
    local lm, train, val = setup(8, 1)
    local tr = bptt.Trainer{ model = lm, optimizer = bptt.optim.sgd(lm, { lr = 0.1 }), train = train, val = val }
    local ref = setup(8, 1)
    local b2 = data.Batches(bptt.tensor(doc_tokens(40, V, 7), "int32"), { batch = 2, seq = 8, separator = 1 })
    local ce = bptt.CrossEntropy{}
    local expect_val = 0
    ref:reset_state()
    for _ = 1, b2:count() do
      local x, y, _, _, _, starts = b2:next()
      expect_val = expect_val + ce:forward(ref:forward(x, starts), y)
    end
    expect_val = expect_val / b2:count()
    assert.is_true(math.abs(tr:evaluate() - expect_val) < 1e-12)
    ref:reset_state()
    local x, y, _, _, _, starts = b2:next()
    local expect = ce:forward(ref:forward(x, starts), y)
    local other = ce:forward(ref:forward(x), y) -- the same batch, state run on
    assert.is_true(math.abs(tr:step() - expect) < 1e-12)
    assert.is_true(math.abs(other - expect) > 1e-9)
  end)

  it("refuses a model that does not take the starts", function()
    local lm, train = setup(9, 1)
    local plain = { -- a model of its own making: forward(x) only
      forward = function(_, x) return lm:forward(x) end,
      backward = function(_, d) return lm:backward(d) end,
      parameters = function() return lm:parameters() end,
    }
    assert.has_error(function()
      bptt.Trainer{ model = plain, optimizer = bptt.optim.sgd(lm, { lr = 0.1 }), train = train }
    end, "bptt.Trainer: train batches mark document starts (separator 1) but the model does not take them "
      .. "(forward(x, starts), model.takes_starts): its state would cross documents")
  end)
end)
