-- The generator contract (API.md, "Tensors"): bptt.manual_seed seeds every
-- draw; draws are reproducible and statistically sane; bptt.rng_state() and
-- bptt.set_rng_state(s) resume the exact stream, also between the two values
-- of a Box-Muller pair.
local bptt = require "bptt"
local U = require "helpers.tensor_util"

local N = U.light and 20000 or 200000

-- mean and (population) variance of a tensor, by the library's reductions
local function moments(t)
  local n = t:numel()
  local mean = t:sum() / n
  local var = (t - mean):norm() ^ 2 / n
  return mean, var
end

-- Pearson correlation of two same-shaped float64 tensors
local function corr(x, y)
  local mx, vx = moments(x)
  local my, vy = moments(y)
  local cov = (x - mx):cmul(y - my):sum() / x:numel()
  return cov / math.sqrt(vx * vy)
end

describe("bptt.manual_seed", function()
  it("makes every kind of draw reproducible", function()
    local function draws()
      return {
        bptt.randn(5, 3):totable(),
        bptt.rand(4, "float64"):totable(),
        bptt.zeros(3):uniform(-2, 2):totable(),
        bptt.zeros(3, "float64"):normal(1, 0.5):totable(),
        bptt.random(),
        bptt.random(1000),
        bptt.randn(1):totable(),
      }
    end
    bptt.manual_seed(1234)
    local a = draws()
    bptt.manual_seed(1234)
    local b = draws()
    assert.are.same(a, b)
    bptt.manual_seed(1235)
    assert.are_not.same(a, draws())
  end)

  it("gives different streams for different seeds, 0 and negative ones included", function()
    local seen = {}
    for _, seed in ipairs({ 0, 1, 2, -1, 42, 2 ^ 32, 2 ^ 53, -2 ^ 53 }) do
      bptt.manual_seed(seed)
      local key = table.concat(bptt.rand(4, "float64"):totable(), ",")
      assert.is_nil(seen[key], "seed " .. seed .. " repeats the stream of seed " .. tostring(seen[key]))
      seen[key] = seed
    end
  end)

  it("gives uncorrelated streams for neighbouring seeds", function()
    bptt.manual_seed(7)
    local x = bptt.randn(N, "float64")
    bptt.manual_seed(8)
    local y = bptt.randn(N, "float64")
    assert.is_true(math.abs(corr(x, y)) < 5 / math.sqrt(N))
  end)

  it("checks n", function()
    U.error_with({ "bptt.manual_seed", "n", "whole number", "string" }, bptt.manual_seed, "1")
    U.error_with({ "bptt.manual_seed", "n", "whole number", "no value" }, bptt.manual_seed)
    U.error_with({ "bptt.manual_seed", "n", "whole number", "1.5" }, bptt.manual_seed, 1.5)
    U.error_with({ "bptt.manual_seed", "n", "whole number" }, bptt.manual_seed, 0 / 0)
    U.error_with({ "bptt.manual_seed", "n", "9007199254740992", "1.8014398509482e+16" }, bptt.manual_seed, 2 ^ 54)
  end)
end)

describe("bptt.rand, t:uniform", function()
  it("draw uniformly from [0, 1): range, mean, variance, histogram", function()
    bptt.manual_seed(101)
    for _, dt in ipairs({ "float64", "float32" }) do
      local t = bptt.rand(N, dt)
      assert.is_true(t:min() >= 0)
      assert.is_true(t:max() < 1)
      local mean, var = moments(t:to("float64"))
      assert.is_true(math.abs(mean - 0.5) < 5 * math.sqrt(1 / 12 / N), dt .. " mean " .. mean)
      assert.is_true(math.abs(var - 1 / 12) < 5 * math.sqrt(1 / 180 / N), dt .. " variance " .. var)
      local bins = {}
      for i = 1, 10 do bins[i] = 0 end
      for _, v in ipairs(t:totable()) do
        local b = math.floor(v * 10) + 1
        bins[b] = bins[b] + 1
      end
      local chi2 = 0
      for i = 1, 10 do chi2 = chi2 + (bins[i] - N / 10) ^ 2 / (N / 10) end
      assert.is_true(chi2 < 35, dt .. " chi-square over 10 bins " .. chi2) -- 9 dof: p < 1e-4
    end
  end)

  it("draw consecutive values that are uncorrelated", function()
    bptt.manual_seed(102)
    local t = bptt.rand(N, "float64")
    local c = corr(t:narrow(1, 1, N - 1), t:narrow(1, 2, N - 1))
    assert.is_true(math.abs(c) < 5 / math.sqrt(N), "lag-1 correlation " .. c)
  end)

  it("t:uniform(a, b) draws from [a, b) and returns self", function()
    bptt.manual_seed(103)
    local t = bptt.zeros(N, "float64")
    assert.are.equal(t, t:uniform(-3, 5))
    assert.is_true(t:min() >= -3 and t:max() < 5)
    local mean, var = moments(t)
    assert.is_true(math.abs(mean - 1) < 5 * 8 * math.sqrt(1 / 12 / N))
    assert.is_true(math.abs(var - 64 / 12) < 0.05 * 64 / 12)
    local f = bptt.zeros(1000):uniform(1, 1 + 2 ^ -20)
    assert.is_true(f:min() >= 1 and f:max() < 1 + 2 ^ -20)
    assert.are.equal(2, bptt.zeros(3):uniform(2, 2):max())
  end)

  it("t:uniform refuses int32 and a bad range", function()
    local t = bptt.zeros(3)
    U.error_with({ "bptt.Tensor:uniform", "float32 or float64", "int32" }, bptt.zeros(3, "int32").uniform,
      bptt.zeros(3, "int32"))
    U.error_with({ "bptt.Tensor:uniform", "a <= b", "a = 2", "b = 1" }, t.uniform, t, 2, 1)
    U.error_with({ "bptt.Tensor:uniform", "finite" }, t.uniform, t, 0, 1 / 0)
    U.error_with({ "bptt.Tensor:uniform", "finite" }, t.uniform, t, 0 / 0, 1)
    U.error_with({ "bptt.Tensor:uniform", "a", "number", "string" }, t.uniform, t, "0", 1)
  end)
end)

describe("bptt.randn, t:normal", function()
  it("draw standard normals: mean, variance, tails", function()
    bptt.manual_seed(201)
    for _, dt in ipairs({ "float64", "float32" }) do
      local t = bptt.randn(N, dt)
      local mean, var = moments(t:to("float64"))
      assert.is_true(math.abs(mean) < 5 / math.sqrt(N), dt .. " mean " .. mean)
      assert.is_true(math.abs(var - 1) < 5 * math.sqrt(2 / N), dt .. " variance " .. var)
      local in1, in2 = 0, 0
      for _, v in ipairs(t:totable()) do
        if math.abs(v) < 1 then in1 = in1 + 1 end
        if math.abs(v) < 2 then in2 = in2 + 1 end
      end
      assert.is_true(math.abs(in1 / N - 0.682689) < 5 * math.sqrt(0.2166 / N), dt .. " within 1 sd " .. in1 / N)
      assert.is_true(math.abs(in2 / N - 0.954500) < 5 * math.sqrt(0.0434 / N), dt .. " within 2 sd " .. in2 / N)
    end
  end)

  it("draw pairs that are uncorrelated (both halves of Box-Muller)", function()
    bptt.manual_seed(202)
    local t = bptt.randn(N / 2, 2, "float64")
    local c = corr(t:select(2, 1), t:select(2, 2))
    assert.is_true(math.abs(c) < 5 / math.sqrt(N / 2), "pair correlation " .. c)
    local c2 = corr(t:select(2, 2):narrow(1, 1, N / 2 - 1), t:select(2, 1):narrow(1, 2, N / 2 - 1))
    assert.is_true(math.abs(c2) < 5 / math.sqrt(N / 2), "across-pair correlation " .. c2)
  end)

  it("t:normal(mean, std) shifts and scales and returns self", function()
    bptt.manual_seed(203)
    local t = bptt.zeros(N, "float64")
    assert.are.equal(t, t:normal(3, 0.5))
    local mean, var = moments(t)
    assert.is_true(math.abs(mean - 3) < 5 * 0.5 / math.sqrt(N))
    assert.is_true(math.abs(var - 0.25) < 5 * 0.25 * math.sqrt(2 / N))
    local c = bptt.zeros(4):normal(-1, 0)
    assert.are.same({ -1, -1, -1, -1 }, c:totable())
  end)

  it("t:normal refuses int32, std < 0 and non-finite arguments", function()
    local t = bptt.zeros(3)
    U.error_with({ "bptt.Tensor:normal", "float32 or float64", "int32" }, bptt.zeros(3, "int32").normal,
      bptt.zeros(3, "int32"))
    U.error_with({ "bptt.Tensor:normal", "std >= 0", "std = -1" }, t.normal, t, 0, -1)
    U.error_with({ "bptt.Tensor:normal", "finite" }, t.normal, t, 1 / 0, 1)
    U.error_with({ "bptt.Tensor:normal", "std" }, t.normal, t, 0, 0 / 0)
  end)
end)

describe("random fills", function()
  it("draw in row-major element order whatever the layout", function()
    bptt.manual_seed(301)
    local a = bptt.randn(3, 4, "float64")
    local b = bptt.rand(3, 4)
    bptt.manual_seed(301)
    local ta = bptt.zeros(4, 3, "float64"):t():normal()
    local tb = bptt.zeros(4, 3):t():uniform()
    assert.are.same(a:totable(), ta:totable())
    assert.are.same(b:totable(), tb:totable())
  end)

  it("write only the view they fill", function()
    local t = bptt.zeros(4, 5, "float64")
    t:select(2, 3):normal(10, 1)
    t:narrow(1, 4, 1):uniform(-1, 0)
    for i = 1, 3 do
      for j = 1, 5 do
        if j == 3 then
          assert.is_true(t:get(i, j) > 0)
        else
          assert.are.equal(0, t:get(i, j))
        end
      end
    end
    assert.is_true(t:narrow(1, 4, 1):max() < 0)
  end)
end)

describe("bptt.random", function()
  it("draws uniforms in [0, 1) and whole numbers in 1..n", function()
    bptt.manual_seed(401)
    local hits = {}
    for _ = 1, 2000 do
      local u = bptt.random()
      assert.is_true(u >= 0 and u < 1)
      local k = bptt.random(5)
      assert.is_true(k >= 1 and k <= 5 and k == math.floor(k))
      hits[k] = (hits[k] or 0) + 1
    end
    for k = 1, 5 do assert.is_true(hits[k] > 300 and hits[k] < 500, "value " .. k .. ": " .. tostring(hits[k])) end
    assert.are.equal(1, bptt.random(1))
    local big = bptt.random(2 ^ 53)
    assert.is_true(big >= 1 and big <= 2 ^ 53)
  end)

  it("checks n", function()
    U.error_with({ "bptt.random", "n", "1..", "0" }, bptt.random, 0)
    U.error_with({ "bptt.random", "n", "whole number", "2.5" }, bptt.random, 2.5)
    U.error_with({ "bptt.random", "n", "string" }, bptt.random, "3")
  end)
end)

describe("bptt.rng_state, bptt.set_rng_state", function()
  local function draws()
    return { bptt.randn(7, "float64"):totable(), bptt.rand(3):totable(), bptt.random(100), bptt.random() }
  end

  it("describe the generator as a string", function()
    bptt.manual_seed(1)
    local s = bptt.rng_state()
    assert.are.equal("string", type(s))
    assert.is_truthy(s:match("^xoshiro256%*%*:" .. string.rep("%x", 64) .. ":%-$"), s)
    bptt.manual_seed(1)
    assert.are.equal(s, bptt.rng_state())
    bptt.manual_seed(2)
    assert.are_not.equal(s, bptt.rng_state())
  end)

  it("resume the exact stream", function()
    bptt.manual_seed(501)
    draws()
    local s = bptt.rng_state()
    local a = draws()
    bptt.manual_seed(999)
    draws()
    bptt.set_rng_state(s)
    assert.are.same(a, draws())
    bptt.set_rng_state(s)
    assert.are.same(a, draws())
  end)

  it("resume between the two normals of a Box-Muller pair", function()
    bptt.manual_seed(502)
    bptt.randn(3, "float64") -- an odd count leaves the second value of a pair waiting
    local s = bptt.rng_state()
    assert.is_truthy(s:match(":" .. string.rep("%x", 16) .. "$"), s)
    local a = bptt.randn(5, "float64"):totable()
    bptt.set_rng_state(s)
    assert.are.same(a, bptt.randn(5, "float64"):totable())
    -- one draw at a time, saving after each: the same stream as one big draw
    bptt.manual_seed(503)
    local whole = bptt.randn(9, "float64"):totable()
    bptt.manual_seed(503)
    for i = 1, 9 do
      local st = bptt.rng_state()
      bptt.manual_seed(i) -- disturb the generator, then put it back
      bptt.randn(1)
      bptt.set_rng_state(st)
      assert.are.equal(whole[i], bptt.randn(1, "float64"):get(1))
    end
  end)

  it("a resumed stream equals the uninterrupted one", function()
    bptt.manual_seed(504)
    local first = bptt.randn(11, "float64"):totable()
    local second = draws()
    bptt.manual_seed(504)
    assert.are.same(first, bptt.randn(11, "float64"):totable())
    local s = bptt.rng_state()
    bptt.rand(100)
    bptt.set_rng_state(s)
    assert.are.same(second, draws())
  end)

  it("refuses what rng_state() cannot have made, and leaves the generator alone", function()
    bptt.manual_seed(505)
    local good = bptt.rng_state()
    bptt.randn(1) -- a spare normal is now waiting
    local with_spare = bptt.rng_state()
    local hex64 = good:sub(14, 77)
    local bad = {
      "",
      "xoshiro256**",
      good:sub(1, -2),
      good .. "0",
      good:gsub("^xoshiro256", "xoshiro128"),
      "xoshiro256**:" .. hex64:sub(1, 63) .. "g:-",
      "xoshiro256**:" .. hex64:upper():gsub("%d", "A") .. ":-",
      "xoshiro256**:" .. hex64 .. "-:",
      "xoshiro256**:" .. hex64 .. ":" .. string.rep("0", 15),
      "xoshiro256**:" .. hex64 .. ":" .. string.rep("x", 16),
      "xoshiro256**:" .. string.rep("0", 64) .. ":-", -- the one state xoshiro cannot leave
      with_spare .. "\0",
    }
    bptt.set_rng_state(with_spare)
    local want = bptt.randn(4, "float64"):totable()
    for _, s in ipairs(bad) do
      bptt.set_rng_state(with_spare)
      U.error_with({ "bptt.set_rng_state", "s", "rng_state()" }, bptt.set_rng_state, s)
      assert.are.same(want, bptt.randn(4, "float64"):totable(), "state changed by " .. s)
    end
    U.error_with({ "bptt.set_rng_state", "s", "string", "number" }, bptt.set_rng_state, 42)
    U.error_with({ "bptt.set_rng_state", "s", "string", "no value" }, bptt.set_rng_state)
    U.error_with({ "bptt.set_rng_state", "s", "string", "table" }, bptt.set_rng_state, {})
  end)
end)

describe("t:uniform_shard and m:shard (data-parallel draws)", function()
  it("gives each part what its slice of one fill of the whole gets, and leaves the generator as that fill", function()
    for _, dt in ipairs { "float32", "float64" } do
      for _, dim in ipairs { 1, 2, 3 } do
        local size = { 3, 4, 5 }
        bptt.manual_seed(11)
        local big = { 3, 4, 5 }
        big[dim] = big[dim] * 3
        local whole = bptt.zeros(big, dt):uniform(-2, 2)
        local after = bptt.random()
        for r = 0, 2 do
          bptt.manual_seed(11)
          local part = bptt.zeros(size, dt):uniform_shard(dim, r, 3, -2, 2)
          local ref = whole:narrow(dim, r * size[dim] + 1, size[dim])
          assert.are.equal(0, (part - ref):abs():max(), dt .. " dim " .. dim .. " rank " .. r)
          assert.are.equal(after, bptt.random())
        end
      end
    end
  end)

  it("checks its arguments", function()
    local t = bptt.zeros(2, 3)
    assert.has_error(function() t:uniform_shard(3, 0, 2) end, "bptt.Tensor:uniform_shard: dim must be in 1..2, got 3")
    assert.has_error(function() t:uniform_shard(1, 2, 2) end, "bptt.Tensor:uniform_shard: rank must be in 0..1, got 2")
    assert.has_error(function() t:uniform_shard(1, 0, 0) end,
      "bptt.Tensor:uniform_shard: size must be in 1..2147483647, got 0")
    assert.has_error(function() bptt.zeros(2, "int32"):uniform_shard(1, 0, 2) end,
      "bptt.Tensor:uniform_shard: self must be float32 or float64, got int32")
    assert.has_error(function() bptt.LanguageModel { vocab = 5, hidden = 4 }:shard(2, 2) end,
      "bptt.Module:shard: rank must be a whole number in 0..1, got 2")
  end)

  -- one process with all the streams against two "ranks" taking half each
  it("makes two ranks of an RNN with dropout (and a Dropout layer) draw one process's masks", function()
    local rnn = bptt.RNN { cell = "gru", input = 3, hidden = 4, layers = 3, dropout = 0.5, dtype = "float64" }
    local drop = bptt.Dropout { p = 0.4 }
    bptt.manual_seed(5)
    local x = bptt.randn(6, 4, 3):to("float64")
    bptt.manual_seed(9)
    local y = rnn:forward(x):clone()
    local z = drop:forward(bptt.ones(6, 4, 3)):clone() -- T x B x F: the streams are dimension 2
    local w = drop:forward(bptt.ones(4, 3)):clone() -- B x F: dimension 1
    local after = bptt.random()
    for r = 0, 1 do
      bptt.manual_seed(9)
      rnn:shard(r, 2)
      drop:shard(r, 2)
      local yr = rnn:forward(x:narrow(2, 2 * r + 1, 2))
      assert.are.equal(0, (yr - y:narrow(2, 2 * r + 1, 2)):abs():max())
      local zr = drop:forward(bptt.ones(6, 2, 3))
      assert.are.equal(0, (zr - z:narrow(2, 2 * r + 1, 2)):abs():max())
      local wr = drop:forward(bptt.ones(2, 3))
      assert.are.equal(0, (wr - w:narrow(1, 2 * r + 1, 2)):abs():max())
      assert.are.equal(after, bptt.random())
    end
    rnn:shard(0, 1) -- off again: its own masks
    bptt.manual_seed(9)
    assert.are_not.equal(0, (rnn:forward(x:narrow(2, 1, 2)) - y:narrow(2, 1, 2)):abs():max())
  end)
end)
