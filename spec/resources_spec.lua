-- Resources: an allocation that fails is a Lua error naming the function,
-- and leaves every tensor, layer and model that existed intact (a child
-- process under `ulimit -v`, spec/helpers/oom_child.lua); and making and
-- dropping tensors, views and layer passes by the hundred thousand does not
-- make the process grow.  BPTT_SPEC_LIGHT (valgrind) shrinks the loops.
local bptt = require "bptt"
local U = require "helpers.tensor_util"
local P = require "helpers.proc"

local MB = 1024 * 1024

describe("allocation failure", function()
  -- Under ASan the address space cannot be limited (its shadow takes
  -- terabytes): its allocator refuses blocks above max_allocation_size_mb
  -- instead, and returns NULL as malloc would (allocator_may_return_null=1).
  local asan = U.memtool == "asan"
  local env = "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=" .. P.quote(package.cpath) .. " "
  local child = P.luajit .. " spec/helpers/oom_child.lua"
  local HUGE = 1024 * MB -- each failing request; the limit leaves 256 MB

  it("raises a Lua error naming the function; tensors, layers and models made before still work", function()
    local cmd
    if asan then
      cmd = string.format("ASAN_OPTIONS=%s %s %s test %d",
        P.quote((os.getenv("ASAN_OPTIONS") or "") .. ":allocator_may_return_null=1:max_allocation_size_mb=256"),
        env, child, HUGE)
    else
      -- the limit: what the child needs to load OpenBLAS, make its model and
      -- run it once (measured, as OpenBLAS reserves per thread), plus 256 MB
      local ok, out = P.run(env .. child .. " measure")
      assert(ok, out)
      local vsz = tonumber(out:match("VSZ (%d+)"))
      assert(vsz, out)
      local limit_kb = math.floor((vsz + 256 * MB) / 1024)
      cmd = string.format("ulimit -v %d && %s exec %s test %d", limit_kb, env, child, HUGE)
    end
    local ok, out = P.run(cmd)
    assert(ok and out:match("OK%s*$"), "the child said:\n" .. out)
  end)
end)

-- Resident memory growth over `rounds` calls of f after `warm` calls.
local function growth(f, warm, rounds)
  for i = 1, warm do f(i) end
  local base, peak = U.rss(), 0
  local step = math.max(1, math.floor(rounds / 20))
  for i = 1, rounds do
    f(i)
    if i % step == 0 then peak = math.max(peak, U.rss() - base) end
  end
  return peak / MB
end

describe("no growth over many create/drop cycles", function()
  local CYCLES = U.light and 2000 or 100000
  local PASSES = U.light and 50 or 1000
  -- what the allocators keep back: glibc's heap trims lazily; ASan's
  -- quarantine and memcheck's freed queue hold freed blocks by design
  local BOUND = U.memtool == "asan" and 300 or U.memtool == "valgrind" and 40 or 4

  it(CYCLES .. " small tensors made and dropped", function()
    local mb = growth(function(i)
      local t = bptt.zeros(4, 4)
      t:set(1, 1, i)
      local u = bptt.tensor({ { 1, 2 }, { 3, i } }, "float64")
      local w = bptt.randn(7) + bptt.ones(7)
      assert(u:get(2, 2) == i and w:numel() == 7)
    end, CYCLES / 10, CYCLES)
    assert.is_true(mb < BOUND, string.format("grew by %.1f MB", mb))
  end)

  it(CYCLES .. " views made and dropped (their storage outliving the tensor)", function()
    local base = bptt.randn(16, 16)
    local mb = growth(function(i)
      local t = bptt.ones(8, 8)
      local v = t:narrow(1, 2, 3):t()
      local s = t:select(2, 1)
      t = nil -- luacheck: ignore (the views hold the storage)
      local b = base:view(256):narrow(1, i % 200 + 1, 8)
      assert(v:sum() == 24 and s:numel() == 8 and b:numel() == 8)
    end, CYCLES / 10, CYCLES)
    assert.is_true(mb < BOUND, string.format("grew by %.1f MB", mb))
  end)

  it(PASSES .. " forward/backward passes of each layer and a training step", function()
    bptt.manual_seed(4)
    local layers = {
      { bptt.RNN{ cell = "lstm", input = 8, hidden = 16, layers = 2, dropout = 0.1 }, bptt.randn(10, 4, 8) },
      { bptt.RNN{ cell = "gru", input = 8, hidden = 16 }, bptt.randn(10, 4, 8) },
      { bptt.Linear{ input = 8, output = 5 }, bptt.randn(6, 8) },
      { bptt.Embedding{ vocab = 9, dim = 5 }, bptt.tensor({ 1, 2, 9, 4 }, "int32") },
    }
    local lm = bptt.LanguageModel{ vocab = 12, embed = 6, cell = "tanh", hidden = 10, layers = 2 }
    local opt = bptt.optim.adam(lm, { lr = 1e-3 })
    local ce = bptt.CrossEntropy()
    local ids = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 12 } }, "int32")
    local mb = growth(function(i)
      for _, l in ipairs(layers) do
        local y = l[1]:forward(l[2])
        l[1]:backward(y)
      end
      -- and a variable length, so that buffers regrow and shrink
      local rnn = layers[2][1]
      rnn:backward(rnn:forward(bptt.randn(i % 7 + 1, 4, 8)))
      opt:zero_grad()
      ce:forward(lm:forward(ids), ids)
      lm:backward(ce:backward())
      bptt.clip_grad_norm(lm, 1)
      opt:step()
    end, PASSES / 10, PASSES)
    assert.is_true(mb < BOUND, string.format("grew by %.1f MB", mb))
  end)
end)
