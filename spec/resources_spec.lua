-- Resources: an allocation that fails is a Lua error naming the function,
-- and leaves every tensor, layer and model that existed intact (a child
-- process under `ulimit -v`, spec/helpers/oom_child.lua); and making and
-- dropping tensors, views and layer passes by the hundred thousand does not
-- make the process grow.  BPTT_SPEC_LIGHT (valgrind) shrinks the loops.
local bptt = require "bptt"
local U = require "helpers.tensor_util"
local P = require "helpers.proc"
local G = require "helpers.growth_child"

local MB = 1024 * 1024

describe("allocation failure", function()
  -- Under ASan the address space cannot be limited (its shadow takes
  -- terabytes): its allocator refuses blocks above max_allocation_size_mb
  -- instead, and returns NULL as malloc would (allocator_may_return_null=1).
  local asan = U.memtool == "asan"
  local env = "LUA_PATH=" .. P.quote(package.path) .. " LUA_CPATH=" .. P.quote(package.cpath) .. " "
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

-- Resident memory growth over `rounds` calls of f after `warm` calls, read
-- after a full collection every `rounds`/20 calls, in the warm-up too: the
-- garbage between two collections is then the same few thousand cycles'
-- worth throughout, so the heap reaches its high-water mark in the warm-up
-- and what grows after it is what stayed live.  (Read without collecting,
-- the peak of garbage not yet swept moved with the collector's timing and
-- ASLR's hashing of addresses, and once reached 8.0 MB.)
local function growth(f, warm, rounds)
  local step = math.max(1, math.floor(rounds / 20))
  for i = 1, warm do
    f(i)
    if i % step == 0 then collectgarbage() end
  end
  collectgarbage()
  local base, peak = U.rss(), 0
  for i = 1, rounds do
    f(i)
    if i % step == 0 then
      collectgarbage()
      peak = math.max(peak, U.rss() - base)
    end
  end
  return peak / MB
end

describe("no growth over many create/drop cycles", function()
  local CYCLES = U.light and 2000 or 100000
  local PASSES = U.light and 50 or 1000
  -- what the allocators keep back: glibc's heap trims lazily; ASan's
  -- quarantine holds freed blocks by design.  8 MB: read after a full
  -- collection the growth is well under 1 MB, while a leak of even one
  -- tensor per cycle keeps 100,000 blocks of 64-byte-aligned storage plus
  -- their headers, well over 10 MB
  local BOUND = U.memtool == "asan" and 300 or 8
  -- memcheck holds every freed block back (its queue of 20 MB) and keeps
  -- the pages of blocks it lets go mapped, so that under valgrind resident
  -- memory grows with the allocations, not with what is live: 29-34 MB over
  -- the 50 passes below, before and after the same code, and one run over
  -- its old bound of 40 MB.  These loops are checked by the plain run
  -- (`make test`, 8 MB) and leaks under valgrind by its leak checker.
  local it_rss = U.memtool == "valgrind" and pending or it

  it_rss(CYCLES .. " small tensors made and dropped", function()
    local mb = growth(function(i)
      local t = bptt.zeros(4, 4)
      t:set(1, 1, i)
      local u = bptt.tensor({ { 1, 2 }, { 3, i } }, "float64")
      local w = bptt.randn(7) + bptt.ones(7)
      assert(u:get(2, 2) == i and w:numel() == 7)
    end, CYCLES / 10, CYCLES)
    assert.is_true(mb < BOUND, string.format("grew by %.1f MB", mb))
  end)

  it_rss(CYCLES .. " views made and dropped (their storage outliving the tensor)", function()
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

  it_rss(PASSES .. " forward/backward passes of each layer and a training step", function()
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

describe("no growth over 10,000 training steps", function()
  -- A tiny char-LM trained step by step, as bptt.Trainer does.  After a
  -- warm-up the resident size and the live Lua heap (both read after a full
  -- collection, so that garbage not yet swept does not count) must stay
  -- flat: a leak of one small tensor or one Lua table per step adds
  -- ~100 bytes x 9,000 steps, far above the bounds (the second test shows
  -- that this check does catch such a leak).
  local STEPS = U.light and 1000 or 10000
  local WARM = STEPS / 10
  local SAMPLES = 18
  local RSS_BOUND = U.memtool == "asan" and 300 * MB or U.memtool == "valgrind" and 40 * MB or 256 * 1024
  local HEAP_BOUND = 64 * 1024

  -- The steps run in a child process of their own (spec/helpers/
  -- growth_child.lua) where no memory tool runs us: in this process, memory
  -- that earlier spec files freed could absorb a leak unseen.  Memory tools
  -- do not follow children, so under them the steps run here (with the
  -- looser bounds above).
  local env = "LUA_PATH=" .. P.quote(package.path) .. " LUA_CPATH=" .. P.quote(package.cpath) .. " "
  local function train(leak)
    if U.memtool then return G.train(STEPS, WARM, SAMPLES, leak) end
    local ok, out = P.run(env .. P.luajit .. " spec/helpers/growth_child.lua " .. STEPS .. " " .. WARM .. " "
      .. SAMPLES .. " " .. (leak and "leak" or "clean"))
    local drss, dheap = out:match("drss=(%d+) dheap=(%-?%d+)")
    assert(ok and drss, "the child said:\n" .. out)
    return tonumber(drss), tonumber(dheap)
  end

  it(STEPS .. " steps of an LSTM char-LM: resident size and Lua heap flat after " .. WARM, function()
    local drss, dheap = train(false)
    assert.is_true(drss < RSS_BOUND, string.format("resident size grew by %.0f kB", drss / 1024))
    assert.is_true(dheap < HEAP_BOUND, string.format("Lua heap grew by %.1f kB", dheap / 1024))
  end)

  it("the same check catches one leaked 16-float tensor per step", function()
    if U.memtool or U.light then
      pending("not under the memory tools, whose allocators hold freed blocks back, nor with BPTT_SPEC_LIGHT's "
        .. "1,000 steps, whose leak is too small to see")
      return
    end
    local drss, dheap = train(true)
    assert.is_true(drss >= RSS_BOUND, string.format("a leak went unseen: resident size +%.0f kB", drss / 1024))
    assert.is_true(dheap >= HEAP_BOUND, string.format("a leak went unseen: Lua heap +%.1f kB", dheap / 1024))
  end)
end)

describe("LanguageModel:memory_minimum and memory_estimate", function()
  local function lm(o)
    return bptt.LanguageModel{ vocab = o.V or 5, embed = o.E or 3, cell = o.cell or "lstm", hidden = o.H or 4,
      layers = o.L or 2, dropout = o.dropout, dtype = o.dtype }
  end

  it("holds at least what every step must: parameters, gradients, Adam's moments, ids, logits and dlogits", function()
    for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
      for _, dtype in ipairs({ "float32", "float64" }) do
        local m, es = lm{ cell = cell, dtype = dtype, V = 7 }, dtype == "float64" and 8 or 4
        for _, tb in ipairs({ { 1, 1 }, { 2, 3 }, { 64, 32 } }) do
          local N = tb[1] * tb[2]
          local floor = 4 * m:num_parameters() * es + 2 * N * 4 + 2 * N * 7 * es
          -- and the layers' activations besides
          assert.is_true(m:memory_minimum(tb[1], tb[2]) > floor, cell .. " " .. dtype)
        end
      end
    end
  end)

  it("grows by the same amount for every further time step and every further sequence of the batch", function()
    for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
      local m = lm{ cell = cell }
      local per_t = m:memory_minimum(2, 3) - m:memory_minimum(1, 3)
      assert.is_true(per_t > 0)
      assert.equal(per_t, m:memory_minimum(3, 3) - m:memory_minimum(2, 3), cell)
      assert.equal(per_t, m:memory_minimum(9, 3) - m:memory_minimum(8, 3), cell)
      local per_b = m:memory_minimum(5, 2) - m:memory_minimum(5, 1)
      assert.equal(per_b, m:memory_minimum(5, 7) - m:memory_minimum(5, 6), cell)
    end
  end)

  it("float64 doubles all but the int32 ids and targets", function()
    for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
      local m32, m64 = lm{ cell = cell }, lm{ cell = cell, dtype = "float64" }
      local ids = 2 * 6 * 4 -- T = 2, B = 3
      assert.equal(2 * (m32:memory_minimum(2, 3) - ids), m64:memory_minimum(2, 3) - ids, cell)
    end
  end)

  it("more for what a cell saves and a deeper model holds; tanh and relu alike; dropout's masks", function()
    local function min(o) return lm(o):memory_minimum(8, 4) end
    assert.equal(min{ cell = "tanh" }, min{ cell = "relu" })
    assert.is_true(min{ cell = "lstm" } > min{ cell = "gru" })
    assert.is_true(min{ cell = "gru" } > min{ cell = "tanh" })
    for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
      assert.is_true(min{ cell = cell, L = 3 } > min{ cell = cell, L = 2 }, cell)
      assert.is_true(min{ cell = cell, H = 5 } > min{ cell = cell, H = 4 }, cell)
      assert.is_true(min{ cell = cell, dropout = 0.5 } > min{ cell = cell }, cell)
      assert.equal(min{ cell = cell, L = 1, dropout = 0.5 }, min{ cell = cell, L = 1 }) -- no mask with one layer
    end
  end)

  it("the estimate of what the layers allocate is never below the minimum", function()
    for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
      for _, c in ipairs({ { E = 3, H = 4, L = 1 }, { E = 3, H = 4, L = 3, dropout = 0.5 }, { E = 9, H = 4, L = 2 },
                           { E = 64, H = 128, L = 2, dtype = "float64" } }) do
        local m = lm{ V = 7, E = c.E, cell = cell, H = c.H, L = c.L, dropout = c.dropout, dtype = c.dtype }
        for _, tb in ipairs({ { 1, 1 }, { 5, 3 }, { 64, 32 } }) do
          local est, min = m:memory_estimate(tb[1], tb[2]), m:memory_minimum(tb[1], tb[2])
          assert.is_true(est >= min, string.format("%s E=%d H=%d L=%d T=%d B=%d: estimate %d < minimum %d", cell,
            c.E, c.H, c.L, tb[1], tb[2], est, min))
        end
      end
    end
  end)
end)
