-- Linear, Embedding and CrossEntropy split their work over the library's
-- threads (c/core/generic/nn_layers.c): Linear's rows, dW's and db's columns, the
-- embedding's rows (forward; its backward stays on one thread), and
-- cross-entropy's blocks of rows.  Each sum of our own is added up in the
-- same order whatever the split, so 1, 2 and 3 threads give the very same
-- bits: db, the embedding, the loss and gradient of cross-entropy.
-- Linear's products are BLAS calls on each thread's share, and OpenBLAS's
-- float32 kernels round an element differently with its place in the call
-- (a row split at a multiple of 12 matches, at 1024 it does not): those
-- agree to rounding (float32 4e-6 of the largest element, float64 1e-12),
-- as the GEMMs of gemm.h always have.  The shapes are large enough to be
-- split (N = 2048 as in a char-LM step, N * D >= 32768 for the embedding
-- and cross-entropy), and odd ones (N = 1001, 65 outputs, D = 37) leave the
-- last thread a short share.
local bptt = require "bptt"
local ffi = require "ffi"
local N = require "helpers.nn_util"

local DTYPES = { "float32", "float64" }
local THREADS = { 1, 2, 3 }
local GEMM_TOL = { float32 = 4e-6, float64 = 1e-12 }

--- The same numbers in a and b: equal (and of the same sign when 0) or both
-- NaN, element by element.
local function assert_same(got, want, what)
  local g, w = N.flat(got), N.flat(want)
  assert.are.equal(#w, #g, what .. ": element count")
  for i = 1, #w do
    local a, b = g[i], w[i]
    if not ((a == b and (a ~= 0 or 1 / a == 1 / b)) or (a ~= a and b ~= b)) then
      error(string.format("%s: element %d is %.17g, want %.17g", what, i, a, b), 2)
    end
  end
end

--- A number as a one-element list, so that assert_same compares it too.
local function num(x) return { data = { x } } end

--- Calls f(threads) for each thread count; checks every result (a table of
-- tensors or numbers) has the bits of the one on 1 thread, or for the names
-- in tol, agrees with it to tol[name] (N.assert_rel).
local function same_on_all(what, f, tol)
  local first
  for _, threads in ipairs(THREADS) do
    bptt.set_num_threads(threads)
    local out = f(threads)
    if first == nil then
      first = out
    else
      for name, t in pairs(first) do
        local label = string.format("%s, %s on %d threads", what, name, threads)
        if tol and tol[name] then N.assert_rel(out[name], t, tol[name], label) else assert_same(out[name], t, label) end
      end
    end
  end
  return first
end

--- Element (i, j) of a contiguous 2-d float tensor set to a NaN of either
-- sign: LuaJIT's own NaN has the sign bit set, so a NaN with it clear is
-- written through the FFI.
local function set_nan(t, i, j, negative)
  local k = (i - 1) * t:size(2) + (j - 1)
  if t:dtype() == "float32" then
    ffi.cast("uint32_t *", t:pointer())[k] = negative and 0xffc00000 or 0x7fc00000
  else
    ffi.cast("uint64_t *", t:pointer())[k] = negative and 0xfff8000000000000ULL or 0x7ff8000000000000ULL
  end
end

--- An N-element int32 tensor of ids in 1..V, drawn from the library's generator.
local function random_ids(n, V)
  local ids = bptt.zeros(n, "int32")
  for i = 1, n do ids:set(i, bptt.random(V)) end
  return ids
end

local before
local function save_threads() before = bptt.num_threads() end
local function restore_threads() bptt.set_num_threads(before) end

describe("bptt.Linear on 1, 2 and 3 threads", function()
  before_each(save_threads)
  after_each(restore_threads)

  -- 2048 x 256 -> 65: the char-LM's output layer; 1001 x 129 -> 65 splits
  -- rows 336/336/329, dW's columns 48/48/33 and db's 32/32/1 on 3 threads
  for _, case in ipairs({ { N = 2048, input = 256, output = 65, bias = true },
                          { N = 1001, input = 129, output = 65, bias = true },
                          { N = 1001, input = 129, output = 65, bias = false } }) do
    for _, dt in ipairs(DTYPES) do
      it(string.format("%d x %d -> %d, bias %s, %s: the same bias gradient; output, input and weight gradients "
        .. "to rounding", case.N, case.input, case.output, tostring(case.bias), dt), function()
        bptt.manual_seed(case.N + case.input)
        local x = bptt.randn(case.N, case.input, dt)
        local dy = bptt.randn(case.N, case.output, dt)
        same_on_all("Linear", function()
          -- a new layer each time (same seed, same weights): no output buffer
          -- kept from the run before
          bptt.manual_seed(case.N)
          local m = bptt.Linear{ input = case.input, output = case.output, bias = case.bias, dtype = dt }
          local out = { y = m:forward(x):clone(), dx = m:backward(dy):clone() }
          m:backward(dy) -- gradients add up: the second backward adds onto the first
          local _, g = m:parameters()
          out.weight = g.weight:clone()
          if case.bias then out.bias = g.bias:clone() end
          return out
        end, { y = GEMM_TOL[dt], dx = GEMM_TOL[dt], weight = GEMM_TOL[dt] })
      end)
    end
  end

  it("the split output is the plain formula y = x W^T + b (float64, to 1e-12)", function()
    bptt.manual_seed(5)
    bptt.set_num_threads(3)
    local m = bptt.Linear{ input = 129, output = 65, dtype = "float64" }
    local x = bptt.randn(1001, 129, "float64")
    local y = m:forward(x)
    local p = m:parameters()
    assert.are.same({ 1001, 65 }, y:shape())
    -- rows from each of the three shares (1..336, 337..672, 673..1001)
    local W, b = N.flat(p.weight), N.flat(p.bias)
    local xs, ys = N.flat(x), N.flat(y)
    for _, i in ipairs({ 1, 336, 337, 673, 1001 }) do
      for o = 1, 65 do
        local s = b[o]
        for k = 1, 129 do s = s + xs[(i - 1) * 129 + k] * W[(o - 1) * 129 + k] end
        local got = ys[(i - 1) * 65 + o]
        assert.is_true(math.abs(got - s) <= 1e-12 * (1 + math.abs(s)), string.format("y[%d][%d]", i, o))
      end
    end
  end)
end)

describe("bptt.Embedding on 1, 2 and 3 threads", function()
  before_each(save_threads)
  after_each(restore_threads)

  -- 2048 ids into 65 x 64 (the char-LM's), 1001 into 50 x 37 (rows split
  -- 336/336/329 on 3 threads); both with many repeated ids
  for _, case in ipairs({ { N = 2048, V = 65, D = 64 }, { N = 1001, V = 50, D = 37 } }) do
    for _, dt in ipairs(DTYPES) do
      it(string.format("%d ids into %d x %d, %s: the same rows and the same accumulated weight gradient",
        case.N, case.V, case.D, dt), function()
        bptt.manual_seed(case.N + case.D)
        local ids = random_ids(case.N, case.V)
        local dy = bptt.randn(case.N, case.D, dt)
        local m
        local out = same_on_all("Embedding", function()
          bptt.manual_seed(case.N) -- a new layer each time, the same weights
          m = bptt.Embedding{ vocab = case.V, dim = case.D, dtype = dt }
          local y = m:forward(ids):clone()
          m:backward(dy)
          m:backward(dy)
          local _, g = m:parameters()
          return { y = y, weight = g.weight:clone() }
        end)
        -- the gather itself: row i of y is row ids[i] of the weight
        local W = m:parameters().weight
        for _, i in ipairs({ 1, 2, math.floor(case.N / 2), case.N }) do
          assert_same(out.y:select(1, i), W:select(1, ids:get(i)), "y row " .. i)
        end
      end)
    end
  end

  it("one id repeated 4096 times: its gradient row is dy's column sums, added in row order (float64, exactly)",
    function()
      for _, threads in ipairs(THREADS) do
        bptt.set_num_threads(threads)
        bptt.manual_seed(17)
        local m = bptt.Embedding{ vocab = 9, dim = 37, dtype = "float64" }
        local ids = bptt.zeros(4096, "int32"):fill(4)
        local dy = bptt.randn(4096, 37, "float64")
        m:zero_grad()
        m:forward(ids)
        m:backward(dy)
        local _, grads = m:parameters()
        local g = grads.weight
        local d = N.flat(dy)
        local want = {}
        for c = 1, 37 do
          local s = 0
          for i = 1, 4096 do s = s + d[(i - 1) * 37 + c] end
          want[c] = s
        end
        assert_same(g:select(1, 4), { data = want }, threads .. " threads, row 4")
        assert.are.equal(0, g:select(1, 3):norm())
        assert.are.equal(0, g:select(1, 5):norm())
      end
    end)
end)

describe("bptt.CrossEntropy on 1, 2 and 3 threads", function()
  before_each(save_threads)
  after_each(restore_threads)

  -- 2048 x 65 (the char-LM's), 1001 x 65: ignored rows (target 0) among them
  for _, case in ipairs({ { N = 2048, C = 65 }, { N = 1001, C = 65 }, { N = 600, C = 100 } }) do
    for _, dt in ipairs(DTYPES) do
      for _, reduction in ipairs({ "mean", "sum" }) do
        it(string.format("%d x %d, %s, %s, ignore_index: the same loss and gradient", case.N, case.C, dt, reduction),
          function()
            bptt.manual_seed(case.N + case.C)
            local logits = bptt.randn(case.N, case.C, dt):mul(4)
            local targets = bptt.zeros(case.N, "int32")
            for i = 1, case.N do targets:set(i, (i * 7) % (case.C + 1)) end -- 0 = ignored
            local out = same_on_all("CrossEntropy", function()
              local ce = bptt.CrossEntropy{ ignore_index = 0, reduction = reduction }
              return { loss = num(ce:forward(logits, targets)), grad = ce:backward(0.5):clone() }
            end)
            -- ignored rows: no gradient
            for i = 1, case.N do
              if targets:get(i) == 0 then
                assert.are.equal(0, out.grad:select(1, i):norm(), "row " .. i)
              end
            end
          end)
      end
    end
  end

  --- loss of one row, in plain Lua (log-sum-exp in double)
  local function row_loss(row, t)
    local m = -math.huge
    for _, v in ipairs(row) do if v > m then m = v end end
    local s = 0
    for _, v in ipairs(row) do s = s + math.exp(v - m) end
    return (m - row[t]) + math.log(s)
  end

  -- C below, at and above the 16 lanes of the row kernel, with and without a tail
  for _, C in ipairs({ 1, 15, 16, 17, 31, 32, 33, 65, 100 }) do
    it(string.format("C = %d: the loss is the plain log-softmax's (float64 to 1e-13, float32 to 1e-6), "
      .. "on 1 and 2 threads", C), function()
      for _, threads in ipairs({ 1, 2 }) do
        bptt.set_num_threads(threads)
        bptt.manual_seed(C)
        local n = math.max(8, math.ceil(40000 / C)) -- split when C is not tiny
        local logits = bptt.randn(n, C, "float64"):mul(5)
        local targets = bptt.zeros(n, "int32")
        for i = 1, n do targets:set(i, (i * 3) % C + 1) end
        local flat = N.flat(logits)
        local want = 0
        for i = 1, n do
          local row = {}
          for j = 1, C do row[j] = flat[(i - 1) * C + j] end
          want = want + row_loss(row, targets:get(i))
        end
        want = want / n
        for _, dt in ipairs(DTYPES) do
          local x = logits:to(dt)
          local loss = bptt.CrossEntropy():forward(x, targets)
          local tol = dt == "float64" and 1e-13 or 1e-6
          assert.is_true(math.abs(loss - want) <= tol * math.abs(want),
            string.format("%s: loss %.17g, want %.17g", dt, loss, want))
        end
      end
    end)
  end

  -- a shift other than the row's maximum is caught where e^(x - shift)
  -- overflows: one logit of 1000 among normal ones; -0.5 among (-1001, -1]
  for _, case in ipairs({ { big = 1000, what = "1000 among N(0, 1)" },
                          { big = -0.5, what = "-0.5 among uniform (-1001, -1]" } }) do
    it("the maximum in any of 65 columns is found: " .. case.what .. " gives the exact loss", function()
      for _, threads in ipairs({ 1, 2 }) do
        for _, dt in ipairs(DTYPES) do
          bptt.set_num_threads(threads)
          bptt.manual_seed(65)
          local n = 65 * 16
          local logits = case.big > 0 and bptt.randn(n, 65, dt) or bptt.rand(n, 65, dt) * -1000 - 1
          local targets = bptt.zeros(n, "int32")
          for i = 1, n do
            local col = (i - 1) % 65 + 1
            logits:set(i, col, case.big)
            targets:set(i, col % 65 + 1) -- another column
          end
          local flat = N.flat(logits)
          local want = 0
          for i = 1, n do
            local row = {}
            for j = 1, 65 do row[j] = flat[(i - 1) * 65 + j] end
            want = want + row_loss(row, targets:get(i))
          end
          local loss = bptt.CrossEntropy{ reduction = "sum" }:forward(logits, targets)
          assert.is_true(math.abs(loss - want) <= 1e-9 * want,
            string.format("%s, %d threads: loss %.17g, want %.17g", dt, threads, loss, want))
        end
      end
    end)
  end

  -- positions in a row of 65: the first, inside the whole blocks of 16,
  -- the last of them, the tail; a NaN of either sign (the row's maximum
  -- may take a NaN with the sign bit clear, and pass one with it set)
  for _, col in ipairs({ 1, 20, 50, 64, 65 }) do
    it("a NaN logit at column " .. col .. " of 65 makes the loss and its row's gradient NaN, the other rows finite",
      function()
        for _, threads in ipairs(THREADS) do
          for _, dt in ipairs(DTYPES) do
            for _, negative in ipairs({ false, true }) do
              bptt.set_num_threads(threads)
              bptt.manual_seed(col)
              local logits = bptt.randn(1024, 65, dt)
              set_nan(logits, 700, col, negative)
              local targets = random_ids(1024, 65)
              local ce = bptt.CrossEntropy()
              local loss = ce:forward(logits, targets)
              assert.is_true(loss ~= loss, string.format("%s, %d threads: loss %s", dt, threads, tostring(loss)))
              local d = ce:backward()
              local row = N.flat(d:select(1, 700))
              for j = 1, 65 do assert.is_true(row[j] ~= row[j], "gradient column " .. j) end
              local rest = d:narrow(1, 1, 699)
              assert.is_true(rest:max() == rest:max() and rest:max() < 1 and rest:min() > -1)
            end
          end
        end
      end)
  end

  it("+Inf in a row of 65 gives NaN (inf - inf); -Inf only gives that class probability 0", function()
    for _, threads in ipairs(THREADS) do
      for _, dt in ipairs(DTYPES) do
        bptt.set_num_threads(threads)
        bptt.manual_seed(3)
        local logits = bptt.randn(1024, 65, dt)
        local targets = random_ids(1024, 65)
        logits:set(10, 40, 1 / 0)
        local loss = bptt.CrossEntropy():forward(logits, targets)
        assert.is_true(loss ~= loss, dt .. ": +Inf")
        -- -Inf at the same place (not the target): the loss is that of the row without it
        logits:set(10, 40, -1 / 0)
        targets:set(10, 1)
        local ce = bptt.CrossEntropy{ reduction = "sum" }
        local with = ce:forward(logits:narrow(1, 10, 1), targets:narrow(1, 10, 1))
        local row = N.flat(logits:select(1, 10))
        table.remove(row, 40)
        local want = row_loss(row, 1)
        assert.is_true(math.abs(with - want) <= 1e-6 * math.abs(want), dt .. ": -Inf")
        assert.are.equal(0, ce:backward():get(1, 40))
      end
    end
  end)
end)
