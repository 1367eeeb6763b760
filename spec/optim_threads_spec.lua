-- bptt.clip_grad_norm and Tensor:zero() / :fill() over buffers large enough
-- that the library splits them over its threads (c/core/optim.c, c/core/tensor.c): the
-- very same results, to the bit, on 1, 2 and 3 threads; the norm against a
-- compensated sum in plain Lua doubles; NaN and Inf as clip.lua promises
-- wherever they sit (first element, chunk edges, the second thread's half,
-- the last partial chunk); fills that write exactly the view's elements.
local bptt = require "bptt"
local core = require "bptt.core"
local clip = require "bptt.clip"
local U = require "helpers.tensor_util"

local THREADS = { 1, 2, 3 }
-- around the norm's chunk of 4096 elements, and far above it (split over threads)
local SIZES = { 1, 4095, 4096, 4097, U.light and 270001 or 300001 }
local NAN, INF = 0 / 0, math.huge

-- runs f() on n threads, then restores the count (even when f fails)
local function with_threads(n, f)
  local before = bptt.num_threads()
  bptt.set_num_threads(n)
  local ok, err = pcall(f)
  bptt.set_num_threads(before)
  if not ok then error(err, 0) end
end

-- runs f(threads) for each thread count of THREADS
local function on_threads(f)
  for _, th in ipairs(THREADS) do with_threads(th, function() f(th) end) end
end

-- a module whose flat gradient buffer is g
local function holder(g)
  local p = bptt.zeros(g:numel(), g:dtype())
  return { flat_parameters = function() return p, g end }
end

-- x and y are the same double to the bit (a NaN is a NaN; -0 is not +0)
local function same_bits(x, y)
  if x ~= x then return y ~= y end
  if x == 0 and y == 0 then return 1 / x == 1 / y end
  return x == y
end

-- 1-d tensors a and b hold the same values to the bit
local function assert_same(a, b, what)
  local x, y = a:totable(), b:totable()
  assert.are.equal(#y, #x, what)
  for i = 1, #x do
    if not same_bits(x[i], y[i]) then
      error(string.format("%s: element %d is %.17g, want %.17g", what, i, x[i], y[i]), 2)
    end
  end
end

-- sum_i (|g_i| / scale)^p by Neumaier's compensated summation (p = 2 default)
local function power_sum(g, p, scale)
  p, scale = p or 2, scale or 1
  local inv, s, c = 1 / scale, 0, 0
  for _, x in ipairs(g:totable()) do
    local y = (math.abs(x) * inv) ^ p
    local t = s + y
    if math.abs(s) >= y then c = c + ((s - t) + y) else c = c + ((y - t) + s) end
    s = t
  end
  return s + c
end

local function max_abs(g)
  local m = 0
  for _, x in ipairs(g:totable()) do m = math.max(m, math.abs(x)) end
  return m
end

local function rel_err(got, want) return math.abs(got - want) / math.abs(want) end

describe("bptt.clip_grad_norm over large gradients, split over the library's threads", function()
  it("gives the same norm and clipped gradients on 1, 2 and 3 threads, within 1e-12 of a plain double sum", function()
    for _, dtype in ipairs({ "float32", "float64" }) do
      for _, n in ipairs(SIZES) do
        bptt.manual_seed(n)
        local g0 = bptt.randn(n, dtype)
        local want = power_sum(g0) ^ 0.5
        local res = {}
        on_threads(function(th)
          local g = g0:clone()
          res[th] = { total = clip.clip_grad_norm(holder(g), 0.5 * want), g = g }
        end)
        local where = string.format("%s, %d elements", dtype, n)
        assert(rel_err(res[1].total, want) <= 1e-12, where .. string.format(": %.17g, want %.17g", res[1].total, want))
        for _, th in ipairs(THREADS) do
          assert(same_bits(res[th].total, res[1].total), where .. ": the norm on " .. th .. " threads")
          assert_same(res[th].g, res[1].g, where .. ", the gradients on " .. th .. " threads")
        end
        -- each element scaled alone, by max_norm / (total + 1e-6) in the buffer's type
        local k = 0.5 * want / (res[1].total + 1e-6)
        if dtype == "float32" then k = U.f32(k) end
        for i = 1, n, 997 do
          local v = g0:get(i) * k
          if dtype == "float32" then v = U.f32(v) end
          assert(same_bits(res[1].g:get(i), v), where .. ": scaled element " .. i)
        end
      end
    end
  end)

  it("gives the same results for norm_type 1, 3 and inf, over several buffers of both dtypes at once", function()
    bptt.manual_seed(7)
    local a0, b0 = bptt.randn(SIZES[#SIZES], "float32"), bptt.randn(70001, "float64")
    for _, p in ipairs({ 1, 3, "inf" }) do
      local want
      if p == "inf" then want = math.max(max_abs(a0), max_abs(b0))
      else want = (power_sum(a0, p) + power_sum(b0, p)) ^ (1 / p) end
      local res = {}
      on_threads(function(th)
        local a, b = a0:clone(), b0:clone()
        res[th] = { total = clip.clip_grad_norm({ holder(a), holder(b) }, 0.25 * want, p), a = a, b = b }
      end)
      local where = "norm_type " .. tostring(p)
      if p == "inf" then assert.are.equal(want, res[1].total, where)
      else assert(rel_err(res[1].total, want) <= 1e-12, where) end
      for _, th in ipairs(THREADS) do
        assert(same_bits(res[th].total, res[1].total), where .. ": the norm on " .. th .. " threads")
        assert_same(res[th].a, res[1].a, where .. ", float32 gradients on " .. th .. " threads")
        assert_same(res[th].b, res[1].b, where .. ", float64 gradients on " .. th .. " threads")
      end
    end
  end)

  it("adds every element once over several groups of chunks (2,097,157 elements), on every thread count", function()
    local n = 2 * 1048576 + 5
    -- 0.5 everywhere but at the groups' edges: the exact sum of squares is known
    local g = bptt.zeros(n, "float32"):fill(0.5)
    local special = { [1] = 3, [1048576] = 4, [1048577] = -5, [2097152] = 6, [2097153] = 7, [n] = -8 }
    local exact = 0.25 * n
    for i, v in pairs(special) do
      g:set(i, v)
      exact = exact + v * v - 0.25
    end
    local totals, random = {}, {}
    bptt.manual_seed(3)
    local r = bptt.randn(n, "float32")
    on_threads(function(th)
      totals[th] = core.optim_grad_norm(g, 2)
      random[th] = clip.clip_grad_norm(holder(r), INF)
    end)
    for _, th in ipairs(THREADS) do
      assert.are.equal(exact, totals[th])
      assert(same_bits(random[th], random[1]), "random gradients: the norm on " .. th .. " threads")
    end
  end)

  it("returns NaN or Inf and leaves the gradients alone, wherever the NaN or Inf is", function()
    local n = 70000 -- 18 chunks, the last one partial: split over threads
    for _, dtype in ipairs({ "float32", "float64" }) do
      bptt.manual_seed(11)
      local base = bptt.randn(n, dtype)
      for _, pos in ipairs({ 1, 4096, 4097, 40000, n }) do
        for _, bad in ipairs({ NAN, INF, -INF }) do
          local g0 = base:clone()
          g0:set(pos, bad)
          local where = string.format("%s, %s at %d", dtype, tostring(bad), pos)
          on_threads(function(th)
            local g = g0:clone()
            local total = clip.clip_grad_norm(holder(g), 1)
            local total_inf = clip.clip_grad_norm(holder(g), 1, "inf")
            local sum, amax = core.optim_grad_norm(g, 2)
            if bad ~= bad then
              assert(total ~= total and total_inf ~= total_inf and amax ~= amax and sum ~= sum, where)
            else
              assert(total == INF and total_inf == INF and amax == INF and sum == INF, where)
            end
            assert_same(g, g0, where .. ", " .. th .. " threads")
          end)
        end
      end
      -- a NaN wins over an Inf, in whichever order they come
      for _, order in ipairs({ { NAN, INF }, { INF, NAN } }) do
        local g = base:clone()
        g:set(100, order[1])
        g:set(60000, order[2])
        on_threads(function()
          local total = clip.clip_grad_norm(holder(g), 1)
          local _, amax = core.optim_grad_norm(g, 2)
          assert(total ~= total and amax ~= amax, dtype)
        end)
      end
    end
  end)

  it("returns the largest |g| exactly, and the overflowing 2-norm accurately, on every thread count", function()
    local n = SIZES[#SIZES]
    for _, dtype in ipairs({ "float32", "float64" }) do
      bptt.manual_seed(5)
      local g = bptt.randn(n, dtype)
      g:set(n, -1000) -- the largest, in the last partial chunk
      g:set(n - 1, 999)
      on_threads(function(th)
        local _, amax = core.optim_grad_norm(g, 2)
        assert.are.equal(1000, amax, dtype .. ", " .. th .. " threads")
      end)
    end
    -- squares beyond the doubles: clip.lua sums |g / max|^2 again
    bptt.manual_seed(6)
    local g0 = bptt.randn(n, "float64"):mul(1e200)
    local big = max_abs(g0)
    local want = big * power_sum(g0, 2, big) ^ 0.5
    local totals = {}
    on_threads(function(th) totals[th] = clip.clip_grad_norm(holder(g0:clone()), INF) end)
    assert(rel_err(totals[1], want) <= 1e-12, string.format("%.17g, want %.17g", totals[1], want))
    for _, th in ipairs(THREADS) do assert(same_bits(totals[th], totals[1]), th .. " threads") end
  end)
end)

describe("Tensor:zero and :fill over large tensors, split over the library's threads", function()
  it("write a large contiguous tensor, and nothing around it, on 1 and 2 threads", function()
    local n = 300003
    for _, dtype in ipairs({ "float32", "float64", "int32" }) do
      for _, th in ipairs({ 1, 2 }) do
        with_threads(th, function()
          local t = bptt.zeros(n, dtype):fill(7)
          local v = t:narrow(1, 3, n - 3) -- contiguous, from the third element
          for _, value in ipairs({ 0, 2, -0.0 }) do
            if same_bits(value, 0) then v:zero() else v:fill(value) end
            local where = string.format("%s, %s, %d threads", dtype, tostring(value), th)
            for i, x in ipairs(t:totable()) do
              local want = (i < 3 or i == n) and 7 or value
              if dtype == "int32" then
                if x ~= want then error(string.format("%s: element %d is %g", where, i, x)) end
              elseif not same_bits(x, want) then
                error(string.format("%s: element %d is %.17g", where, i, x))
              end
            end
          end
        end)
      end
    end
  end)

  it("zero exactly the elements of non-contiguous views (a transpose, a narrow) on 2 threads", function()
    local R, C = 600, 500
    for _, dtype in ipairs({ "float32", "float64" }) do
      with_threads(2, function()
        local m = bptt.zeros(R, C, dtype):fill(7)
        m:transpose(1, 2):zero()
        assert.are.equal(0, m:norm(), dtype .. ", transpose")
        assert.are.equal(0, m:t():max(), dtype .. ", transpose")
        local cases = {
          { m:narrow(2, 101, 200), function(_, j) return j >= 101 and j <= 300 end },
          { m:t():narrow(2, 11, 300), function(i) return i >= 11 and i <= 310 end },
          { m:narrow(1, 2, 500):narrow(2, 1, 499), function(i, j) return i >= 2 and i <= 501 and j <= 499 end },
        }
        for c, case in ipairs(cases) do
          m:fill(7)
          case[1]:zero()
          for i, row in ipairs(m:totable()) do
            for j, x in ipairs(row) do
              local want = case[2](i, j) and 0 or 7
              if x ~= want then
                error(string.format("%s, view %d: element (%d, %d) is %g, want %g", dtype, c, i, j, x, want))
              end
            end
          end
        end
      end)
    end
  end)
end)
