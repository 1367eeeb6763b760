-- Combinations of the sequence options (bidirectional, lengths, resets) with
-- memory-bounded BPTT (checkpoint) and the gradient-flow record
-- (record_flow), and of TBPTT with dist or document starts: not supported
-- yet, so each is an error naming both, at the Lua layer and in the C core;
-- what does combine (checkpoint or flow on a plain layer after a call with
-- lengths on another) still works.
local bptt = require "bptt"
local core = require "bptt.core"

local function input(T, B, I)
  bptt.manual_seed(5)
  return bptt.randn(T, B, I, "float64")
end

describe("bptt.RNN: checkpoint with the sequence options", function()
  it("refuses checkpoint with bidirectional at construction", function()
    assert.has_error(function()
      bptt.RNN{ cell = "lstm", input = 3, hidden = 4, bidirectional = true, checkpoint = 2 }
    end, "bptt.RNN: checkpoint cannot be combined with bidirectional yet")
  end)

  it("refuses checkpoint with lengths or resets in forward", function()
    for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
      local rnn = bptt.RNN{ cell = cell, input = 3, hidden = 4, checkpoint = 2, dtype = "float64" }
      local x = input(5, 2, 3)
      assert.has_error(function() rnn:forward(x, nil, nil, { 5, 3 }) end,
        "bptt.RNN:forward: checkpoint cannot be combined with lengths yet")
      assert.has_error(function() rnn:forward(x, nil, nil, nil, bptt.zeros(5, 2, "int32")) end,
        "bptt.RNN:forward: checkpoint cannot be combined with resets yet")
      rnn:forward(x) -- the plain call still runs
    end
  end)

  it("refuses a LanguageModel with checkpoint fed document starts", function()
    local lm = bptt.LanguageModel{ vocab = 5, embed = 3, cell = "gru", hidden = 4, checkpoint = 2, dtype = "float64" }
    local x = bptt.tensor({ { 1, 2 }, { 3, 4 }, { 5, 1 } }, "int32")
    assert.has_error(function() lm:forward(x, bptt.zeros(3, 2, "int32")) end,
      "bptt.RNN:forward: checkpoint cannot be combined with resets yet")
  end)
end)

describe("bptt.RNN: record_flow with the sequence options", function()
  it("refuses record_flow on a bidirectional layer", function()
    local rnn = bptt.RNN{ cell = "gru", input = 3, hidden = 4, bidirectional = true }
    assert.has_error(function() rnn:record_flow(true) end,
      "bptt.RNN:record_flow: record_flow cannot be combined with bidirectional yet")
    rnn:record_flow(false)
  end)

  it("refuses lengths or resets in forward while recording", function()
    local rnn = bptt.RNN{ cell = "lstm", input = 3, hidden = 4, dtype = "float64" }:record_flow(true)
    local x = input(5, 2, 3)
    assert.has_error(function() rnn:forward(x, nil, nil, { 2, 5 }) end,
      "bptt.RNN:forward: record_flow cannot be combined with lengths yet")
    assert.has_error(function() rnn:forward(x, nil, nil, nil, bptt.zeros(5, 2, "int32")) end,
      "bptt.RNN:forward: record_flow cannot be combined with resets yet")
  end)

  it("refuses a backward after lengths when recording was turned on in between", function()
    local rnn = bptt.RNN{ cell = "tanh", input = 3, hidden = 4, dtype = "float64" }
    local x = input(5, 2, 3)
    local y = rnn:forward(x, nil, nil, { 2, 5 })
    rnn:record_flow(true)
    assert.has_error(function() rnn:backward(y:clone()) end,
      "bptt.RNN:backward: record_flow cannot be combined with lengths yet")
    -- without lengths, recording runs
    y = rnn:forward(x)
    rnn:backward(y:clone())
    assert.are.same({ 5, 1 }, rnn:flow().dh:shape())
  end)
end)

describe("bptt.jacobian_norms with the sequence options", function()
  it("refuses a bidirectional layer", function()
    local rnn = bptt.RNN{ cell = "tanh", input = 3, hidden = 4, bidirectional = true, dtype = "float64" }
    assert.has_error(function() bptt.jacobian_norms(rnn, input(5, 2, 3), nil, { lags = { 1 } }) end,
      "bptt.jacobian_norms: a bidirectional rnn is not supported yet")
  end)
end)

describe("bptt.core.rnn_forward/rnn_backward: the core refuses the combinations too", function()
  local T, B, I, H = 4, 2, 3, 4
  local function args(cell)
    local G = ({ tanh = 1, lstm = 4, gru = 3 })[cell]
    bptt.manual_seed(9)
    local cache_n, scratch_n = core.rnn_sizes(cell, T, B, I, H)
    local _, ck_scratch = core.rnn_sizes(cell, T, B, I, H, 2)
    return {
      w_ih = bptt.randn(G * H, I, "float64"), w_hh = bptt.randn(G * H, H, "float64"),
      x = bptt.randn(T, B, I, "float64"), y = bptt.zeros(T, B, H, "float64"),
      cache = cache_n > 0 and bptt.zeros(cache_n, "float64") or nil,
      scratch = bptt.zeros(scratch_n, "float64"), ck_scratch = bptt.zeros(ck_scratch, "float64"),
      dw_ih = bptt.zeros(G * H, I, "float64"), dw_hh = bptt.zeros(G * H, H, "float64"),
      bs = bptt.tensor({ 2, 2, 1, 1 }, "int32"),
    }
  end

  it("checkpoint with batch_sizes, reverse or resets in forward", function()
    local a = args("gru")
    local rs = bptt.zeros(T, B, "int32")
    for _, seq in ipairs({ { false, a.bs, nil }, { true, nil, nil }, { false, nil, rs } }) do
      assert.has_error(function()
        core.rnn_forward("gru", a.w_ih, a.w_hh, nil, nil, a.x, nil, nil, a.y, nil, nil, a.cache, seq[1], seq[2], seq[3],
          2, a.ck_scratch)
      end, "bptt.core.rnn_forward: invalid argument")
    end
    -- each alone runs
    core.rnn_forward("gru", a.w_ih, a.w_hh, nil, nil, a.x, nil, nil, a.y, nil, nil, a.cache, false, a.bs, nil)
  end)

  it("flow recording with batch_sizes in backward", function()
    local a = args("tanh")
    core.rnn_forward("tanh", a.w_ih, a.w_hh, nil, nil, a.x, nil, nil, a.y, nil, nil, nil, false, a.bs, nil)
    local _, _, fw = core.rnn_sizes("tanh", T, B, I, H, 0, true)
    local dh, work = bptt.zeros(T, 1, "float64"), bptt.zeros(fw, "float64")
    assert.has_error(function()
      core.rnn_backward("tanh", a.w_ih, a.w_hh, a.x, nil, nil, a.y, nil, a.y, nil, nil, nil, nil, nil, a.dw_ih,
        a.dw_hh, nil, nil, a.scratch, false, a.bs, nil, dh, nil, nil, work, 1)
    end, "bptt.core.rnn_backward: invalid argument")
    core.rnn_backward("tanh", a.w_ih, a.w_hh, a.x, nil, nil, a.y, nil, a.y, nil, nil, nil, nil, nil, a.dw_ih,
      a.dw_hh, nil, nil, a.scratch, false, a.bs, nil)
  end)
end)

describe("bptt.Trainer: tbptt with dist or document starts", function()
  local function lm_and_opt()
    local lm = bptt.LanguageModel{ vocab = 4, embed = 3, cell = "gru", hidden = 4, dtype = "float64" }
    return lm, bptt.optim.sgd(lm, { lr = 0.1 })
  end
  local tokens = bptt.tensor({ 1, 2, 3, 4, 1, 3, 2, 4, 1, 2, 4, 3, 1, 4, 2, 3, 1, 2, 3, 4, 2, 1 }, "int32")

  it("refuses tbptt with dist", function()
    local lm, opt = lm_and_opt()
    assert.has_error(function()
      bptt.Trainer{ model = lm, optimizer = opt, train = bptt.data.Batches(tokens, { batch = 2, seq = 3 }),
        tbptt = { k1 = 3, k2 = 6 }, dist = {} }
    end, "bptt.Trainer: tbptt cannot be combined with dist yet")
  end)

  it("refuses tbptt over a corpus of documents (batches with starts)", function()
    local lm, opt = lm_and_opt()
    local t = bptt.Trainer{ model = lm, optimizer = opt, tbptt = { k1 = 3, k2 = 6 },
      train = bptt.data.Batches(tokens, { batch = 2, seq = 3, separator = 1 }) }
    assert.has_error(function() t:step() end,
      "bptt.Trainer:step: tbptt cannot be combined with document starts (a documents corpus) yet")
  end)
end)
