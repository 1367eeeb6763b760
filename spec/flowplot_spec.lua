-- Seeing the gradient flow: bptt.plot.flow (one SVG: heatmap layer x step, curves against
-- the lag on a log scale), bptt.plot.reach, and bptt-train --flow-every.
local bptt = require "bptt"
local P = require "helpers.proc"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

local function flow_of(cell, T, L)
  bptt.manual_seed(2)
  local m = bptt.RNN{ cell = cell, input = 2, hidden = 8, layers = L, dtype = "float64" }
  m:record_flow(true)
  m:forward(bptt.randn(T, 3, 2, "float64"))
  local dy = bptt.zeros(T, 3, 8, "float64")
  dy:narrow(1, T, 1):copy(bptt.randn(1, 3, 8, "float64")) -- the loss at the last step only
  m:backward(dy)
  return m:flow()
end

describe("bptt.plot.flow", function()
  local dir, cleanup
  setup(function() dir, cleanup = P.tempdir() end)
  teardown(function() cleanup() end)

  it("writes one SVG: a row per layer, the colour bar, log-scale curves with a legend", function()
    local path = dir .. "/flow.svg"
    assert.is_true(bptt.plot.flow(path, flow_of("tanh", 40, 3), { title = "tanh & co" }))
    local s = read(path)
    assert.truthy(s:match("^<svg"))
    assert.truthy(s:find("tanh &amp; co", 1, true))
    for l = 1, 3 do assert.truthy(s:find(">layer " .. l .. "<", 1, true)) end
    assert.truthy(s:find("lag T - k", 1, true))
    assert.truthy(s:find("(log scale)", 1, true))
    assert.truthy(s:find(">1e%-%d+<")) -- decades as 1e-n
    local _, polylines = s:gsub("<polyline", "")
    assert.are.equal(3, polylines)
    assert.is_nil(io.open(path .. ".tmp"))
  end)

  it("draws dc and dW too, and bins long sequences", function()
    local f = flow_of("lstm", 1000, 1)
    for _, what in ipairs({ "dc", "dW" }) do
      assert.is_true(bptt.plot.flow(dir .. "/" .. what .. ".svg", f, { what = what }))
    end
    local _, cells = read(dir .. "/dc.svg"):gsub('<rect class="c"', "")
    assert.are.equal(480 + 50, cells) -- 480 bins of one row, 50 colour-bar bands
    assert.has_error(function() bptt.plot.flow(dir .. "/x.svg", flow_of("gru", 5, 1), { what = "dc" }) end)
    local ok, err = bptt.plot.flow(dir .. "/no/such/dir/x.svg", f)
    assert.is_nil(ok)
    assert.is_string(err)
  end)

  it("reach: the lag where |dL/dh_k| falls below 1e-3 of its largest", function()
    local t = bptt.tensor({ { 1e-5 }, { 2e-4 }, { 0.5 }, { 1 } }, "float64")
    assert.are.equal(2, bptt.plot.reach({ dh = t })) -- lags 0, 1 are >= 1e-3; lag 2 (2e-4) is not
    assert.are.equal(1, bptt.plot.reach({ dh = t }, 0.6))
    assert.are.equal(4, bptt.plot.reach({ dh = t }, 1e-6)) -- never: the whole sequence
  end)
end)

describe("bptt-train --flow-every", function()
  it("writes flow.svg and the log's grad_reach column", function()
    local dir, cleanup = P.tempdir()
    local corpus = dir .. "/corpus.txt"
    assert(P.run(P.luajit .. " examples/charlm/make_corpus.lua " .. P.quote(corpus) .. " 20"))
    local ok, out = P.run(string.format("%s bin/bptt-train --data %s --cell tanh --hidden 16 --layers 2 --batch 4 "
      .. "--seq 12 --max-iters 6 --eval-every 3 --flow-every 2 --quiet --threads 1 --out %s", P.luajit,
      P.quote(corpus), P.quote(dir .. "/run")))
    assert.is_true(ok, out)
    assert.truthy(read(dir .. "/run/flow.svg"):find("gradient flow at iteration 6", 1, true))
    local log = read(dir .. "/run/log.csv")
    assert.truthy(log:match("^iteration,train_loss,val_loss,lr,tokens_per_s,seconds,grad_reach\n"), log)
    assert.truthy(log:match("\n3,[^\n]*,%d+\n"), log)
    local bad_ok, bad_out, status = P.run(string.format("%s bin/bptt-train --data %s --flow-every -1 --out %s",
      P.luajit, P.quote(corpus), P.quote(dir .. "/bad")))
    assert.is_false(bad_ok)
    assert.are.equal(2, status)
    assert.truthy(bad_out:find("--flow-every", 1, true), bad_out)
    cleanup()
  end)
end)
