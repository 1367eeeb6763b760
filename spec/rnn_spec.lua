-- bptt.RNN: the contract of API.md "Layers" -- construction, PyTorch's
-- parameter names and layouts, forward/backward over whole sequences, exact
-- gradients for every cell, depth, initial state and output gradient,
-- accumulation, float32 vs float64, dropout, truncated BPTT, NaN, changing
-- T and B, errors, and state dicts.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local CELLS = { "tanh", "relu", "lstm", "gru" }
local GATES = { tanh = 1, relu = 1, lstm = 4, gru = 3 }
-- small sizes: gradcheck does two forward passes per parameter
local T, B, I, H = 4, 2, 3, 3

--- bptt.RNN{cell=cell, input=I, hidden=H, layers=1, dtype="float64"} with opts on top.
local function make(cell, opts)
  local o = { cell = cell, input = I, hidden = H, dtype = "float64" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return bptt.RNN(o)
end

--- A fresh layer with the same options and parameters as m.
local function twin(m, opts)
  local o = { cell = m.cell, input = m.input, hidden = m.hidden, layers = m.layers, bias = m.bias,
    dropout = m.dropout, dtype = m.dtype }
  for k, v in pairs(opts or {}) do o[k] = v end
  return bptt.RNN(o):load_state_dict(m:state_dict())
end

--- x (steps x batch x input) and, when `given`, h0 (and c0 for lstm).
local function inputs(m, steps, batch, given)
  local x = bptt.randn(steps, batch, m.input, m.dtype)
  if not given then return x end
  local h0 = bptt.randn(m.layers, batch, m.hidden, m.dtype)
  local c0 = m.cell == "lstm" and bptt.randn(m.layers, batch, m.hidden, m.dtype) or nil
  return x, h0, c0
end

--- Output gradients dy, dhT (, dcT) for the last forward of m.
local function out_grads(m, steps, batch)
  local dy = bptt.randn(steps, batch, m.hidden, m.dtype)
  local dhT = bptt.randn(m.layers, batch, m.hidden, m.dtype)
  local dcT = m.cell == "lstm" and bptt.randn(m.layers, batch, m.hidden, m.dtype) or nil
  return dy, dhT, dcT
end

--- Clones of every tensor among the arguments (nil stays nil), as a list.
local function clones(...)
  local out = { n = select("#", ...) }
  for k = 1, out.n do
    local v = select(k, ...)
    out[k] = v and v:clone()
  end
  return out
end

local function pack(...) return { n = select("#", ...), ... } end

describe("bptt.RNN construction", function()
  it("takes the documented options with their defaults", function()
    local m = bptt.RNN{ cell = "gru", input = 4, hidden = 6 }
    assert.are.equal("gru", m.cell)
    assert.are.equal(4, m.input)
    assert.are.equal(6, m.hidden)
    assert.are.equal(1, m.layers)
    assert.is_true(m.bias)
    assert.are.equal(0, m.dropout)
    assert.are.equal("float32", m.dtype)
    assert.is_true(m.training)
    local p = m:parameters()
    assert.are.equal("float32", p.weight_ih_l0:dtype())
    local d = bptt.RNN{ cell = "tanh", input = 2, hidden = 3, layers = 3, bias = false, dropout = 0.25,
      dtype = "float64" }
    assert.are.equal(3, d.layers)
    assert.is_false(d.bias)
    assert.are.equal(0.25, d.dropout)
    assert.are.equal("float64", d.dtype)
  end)

  it("rejects bad options with a message naming the option", function()
    local function new(o) return function() return bptt.RNN(o) end end
    N.error_with({ "bptt.RNN", "expected a table of options, got string" }, new("lstm"))
    N.error_with({ "bptt.RNN", 'cell must be "tanh", "relu", "lstm" or "gru", got lstmm' },
      new{ cell = "lstmm", input = 2, hidden = 3 })
    N.error_with({ "bptt.RNN", "cell must be" }, new{ input = 2, hidden = 3 })
    N.error_with({ "bptt.RNN", 'unknown option "hiden"' }, new{ cell = "tanh", input = 2, hiden = 3 })
    N.error_with({ "bptt.RNN", "hidden must be a whole number >= 1, got nil" }, new{ cell = "tanh", input = 2 })
    N.error_with({ "bptt.RNN", "input must be a whole number >= 1, got 0" },
      new{ cell = "tanh", input = 0, hidden = 3 })
    N.error_with({ "bptt.RNN", "hidden must be a whole number >= 1, got 2.5" },
      new{ cell = "tanh", input = 2, hidden = 2.5 })
    N.error_with({ "bptt.RNN", "layers must be a whole number >= 1, got 0" },
      new{ cell = "tanh", input = 2, hidden = 3, layers = 0 })
    N.error_with({ "bptt.RNN", "dropout must be a number in [0, 1), got 1" },
      new{ cell = "tanh", input = 2, hidden = 3, dropout = 1 })
    N.error_with({ "bptt.RNN", "dropout must be a number in [0, 1), got -0.1" },
      new{ cell = "tanh", input = 2, hidden = 3, dropout = -0.1 })
    N.error_with({ "bptt.RNN", "dropout must be a number in [0, 1), got nan" },
      new{ cell = "tanh", input = 2, hidden = 3, dropout = 0 / 0 })
    N.error_with({ "bptt.RNN", "bias must be true or false, got 1" },
      new{ cell = "tanh", input = 2, hidden = 3, bias = 1 })
    N.error_with({ "bptt.RNN", 'dtype must be "float32" or "float64", got int32' },
      new{ cell = "tanh", input = 2, hidden = 3, dtype = "int32" })
  end)

  for _, cell in ipairs(CELLS) do
    it(cell .. ": parameters have PyTorch's names, order and shapes (G = " .. GATES[cell] .. ")", function()
      local G, In, Hd = GATES[cell], 4, 5
      local m = bptt.RNN{ cell = cell, input = In, hidden = Hd, layers = 2 }
      assert.are.same({ "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1" }, m:parameter_names())
      local p, g = m:parameters()
      local want = {
        weight_ih_l0 = { G * Hd, In }, weight_hh_l0 = { G * Hd, Hd }, bias_ih_l0 = { G * Hd }, bias_hh_l0 = { G * Hd },
        weight_ih_l1 = { G * Hd, Hd }, weight_hh_l1 = { G * Hd, Hd }, bias_ih_l1 = { G * Hd }, bias_hh_l1 = { G * Hd },
      }
      local n, total = 0, 0
      for name, shape in pairs(want) do
        assert.are.same(shape, p[name]:shape(), name)
        assert.are.same(shape, g[name]:shape(), name .. " (gradient)")
        total = total + p[name]:numel()
      end
      for _ in pairs(p) do n = n + 1 end
      assert.are.equal(8, n)
      assert.are.equal(total, m:num_parameters())

      local nb = bptt.RNN{ cell = cell, input = In, hidden = Hd, layers = 2, bias = false }
      assert.are.same({ "weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1" }, nb:parameter_names())
      assert.is_nil((nb:parameters()).bias_ih_l0)
    end)

    it(cell .. ": default init is uniform(-1/sqrt(H), 1/sqrt(H)) in every parameter, seeded", function()
      bptt.manual_seed(7)
      local m = bptt.RNN{ cell = cell, input = 5, hidden = 16, layers = 2, dtype = "float64" }
      local k = 1 / math.sqrt(16)
      for name, t in pairs((m:parameters())) do
        assert.is_true(t:max() <= k and t:min() >= -k, name .. " outside the range")
        assert.is_true(t:max() - t:min() > k, name .. " is not spread over the range")
      end
      local flat = m:flat_parameters()
      assert.is_true(flat:max() > 0.9 * k and flat:min() < -0.9 * k)
      assert.is_true(math.abs(flat:mean()) < 0.05 * k)
      bptt.manual_seed(7)
      local again = bptt.RNN{ cell = cell, input = 5, hidden = 16, layers = 2, dtype = "float64" }
      N.assert_equal(again:flat_parameters(), flat, "same seed, same init")
      local other = bptt.RNN{ cell = cell, input = 5, hidden = 16, layers = 2, dtype = "float64" }
      assert.is_true(N.rel_err(other:flat_parameters(), flat) > 0.1, "the next init differs")
    end)
  end

  it("parameters() and the gradients are views: writing them changes the layer", function()
    -- with V = W = 0 and b_ih = b_hh = 0.25, every h_t = tanh(b_ih + b_hh) = tanh(0.5)
    local m = make("tanh", { layers = 1 })
    local p = m:parameters()
    p.weight_ih_l0:zero()
    p.weight_hh_l0:zero()
    p.bias_ih_l0:fill(0.25)
    p.bias_hh_l0:fill(0.25)
    local y = m:forward(bptt.randn(T, B, I, "float64"))
    N.assert_rel(y, bptt.zeros(T, B, H, "float64"):fill(math.tanh(0.5)), 1e-15, "y")
    local _, g = m:parameters()
    local _, flat_grad = m:flat_parameters()
    m:backward(bptt.ones(T, B, H, "float64"))
    assert.is_true(g.bias_hh_l0:norm() > 0, "backward wrote through the view")
    m:zero_grad()
    assert.are.equal(0, g.bias_hh_l0:norm(), "zero_grad reached the view")
    g.bias_hh_l0:fill(3)
    assert.are.equal(3 * H, flat_grad:sum(), "the view is part of the flat gradient")
  end)

  it("tostring names the layer and its options", function()
    local s = tostring(bptt.RNN{ cell = "lstm", input = 3, hidden = 4, layers = 2 })
    assert.truthy(s:find('bptt.RNN{cell="lstm", input=3, hidden=4, layers=2', 1, true), s)
  end)
end)

describe("bptt.RNN forward and backward", function()
  for _, cell in ipairs(CELLS) do
    local lstm = cell == "lstm"
    it(cell .. ": shapes; cT and dc0 only for lstm; y_T is the last layer's hT", function()
      bptt.manual_seed(1)
      local St, Sb, Si, Sh, Sl = 5, 3, 4, 6, 2
      local m = bptt.RNN{ cell = cell, input = Si, hidden = Sh, layers = Sl, dtype = "float64" }
      local x = bptt.randn(St, Sb, Si, "float64")
      local outs = pack(m:forward(x))
      assert.are.equal(lstm and 3 or 2, outs.n)
      local y, hT, cT = outs[1], outs[2], outs[3]
      assert.are.same({ St, Sb, Sh }, y:shape())
      assert.are.same({ Sl, Sb, Sh }, hT:shape())
      if lstm then assert.are.same({ Sl, Sb, Sh }, cT:shape()) end
      assert.are.equal("float64", y:dtype())
      N.assert_equal(y:select(1, St), hT:select(1, Sl), "y[T] = hT[L]")
      local gins = pack(m:backward(bptt.randn(St, Sb, Sh, "float64")))
      assert.are.equal(lstm and 3 or 2, gins.n)
      assert.are.same({ St, Sb, Si }, gins[1]:shape())
      assert.are.same({ Sl, Sb, Sh }, gins[2]:shape())
      if lstm then assert.are.same({ Sl, Sb, Sh }, gins[3]:shape()) end
    end)

    it(cell .. ": nil initial states mean zeros", function()
      bptt.manual_seed(2)
      local m = make(cell, { layers = 2 })
      local x = bptt.randn(T, B, I, "float64")
      local a = clones(m:forward(x))
      local z = bptt.zeros(2, B, H, "float64")
      local b = clones(m:forward(x, z, lstm and z or nil))
      for k = 1, a.n do N.assert_equal(b[k], a[k], "output " .. k) end
      local dy, dhT, dcT = out_grads(m, T, B)
      m:zero_grad()
      local gb = clones(m:backward(dy, dhT, dcT))
      local grads_b = N.snapshot(m, true)
      m:forward(x)
      m:zero_grad()
      local ga = clones(m:backward(dy, dhT, dcT))
      N.assert_rel(N.snapshot(m, true), grads_b, 1e-15, "parameter gradients")
      for k = 1, ga.n do N.assert_rel(ga[k], gb[k], 1e-15, "input gradient " .. k) end
    end)
  end
end)

describe("bptt.RNN gradients are exact (gradcheck, float64)", function()
  local seed = 100
  for _, cell in ipairs(CELLS) do
    local lstm = cell == "lstm"
    local modes = lstm and { { "y" }, { "hT" }, { "cT" }, { "y", "hT", "cT" } } or { { "y" }, { "hT" }, { "y", "hT" } }
    for layers = 1, 3 do
      for _, given in ipairs({ true, false }) do
        for _, mode in ipairs(modes) do
          seed = seed + 1
          local s = seed
          local what = string.format("%s, %d layer%s, initial state %s, gradient from %s", cell, layers,
            layers > 1 and "s" or "", given and "given" or "nil", "d" .. table.concat(mode, ", d"))
          it(what, function()
            bptt.manual_seed(s)
            local m = make(cell, { layers = layers })
            local x, h0, c0 = inputs(m, T, B, given)
            local report = bptt.gradcheck(N.Outputs(m, mode), { x, h0, c0, n = 3 }, N.gradcheck_opts)
            N.assert_gradcheck(report, N.tol.gradcheck, what)
            -- every parameter and every given input was checked
            for _, name in ipairs(m:parameter_names()) do assert.is_number(report.errors[name], name) end
            assert.is_number(report.errors["input 1"], "x")
            if given then
              assert.is_number(report.errors["input 2"], "h0")
              if lstm then assert.is_number(report.errors["input 3"], "c0") end
            end
          end)
        end
      end
    end
  end

  for _, cell in ipairs(CELLS) do
    it(cell .. ", bias = false, 2 layers: every gradient exact", function()
      bptt.manual_seed(31)
      local m = make(cell, { layers = 2, bias = false })
      local x, h0, c0 = inputs(m, T, B, true)
      N.assert_gradcheck(bptt.gradcheck(m, { x, h0, c0, n = 3 }, N.gradcheck_opts))
    end)
  end

  it("lstm with only h0 given, and with only c0 given: every gradient exact", function()
    bptt.manual_seed(32)
    local m = make("lstm", { layers = 2 })
    local x, h0, c0 = inputs(m, T, B, true)
    local r1 = N.assert_gradcheck(bptt.gradcheck(m, { x, h0, nil, n = 3 }, N.gradcheck_opts), nil, "h0 only")
    assert.is_number(r1.errors["input 2"])
    local r2 = N.assert_gradcheck(bptt.gradcheck(m, { x, nil, c0, n = 3 }, N.gradcheck_opts), nil, "c0 only")
    assert.is_number(r2.errors["input 3"])
  end)
end)

describe("bptt.RNN backward accumulates parameter gradients", function()
  for _, cell in ipairs(CELLS) do
    it(cell .. ": two backward passes give twice the gradients; input gradients do not add up", function()
      bptt.manual_seed(40)
      local m = make(cell, { layers = 2 })
      local x, h0, c0 = inputs(m, T, B, true)
      local dy, dhT, dcT = out_grads(m, T, B)
      m:forward(x, h0, c0)
      m:zero_grad()
      local first = clones(m:backward(dy, dhT, dcT))
      local g1 = N.snapshot(m, true)
      assert.is_true(g1:norm() > 0)
      local second = clones(m:backward(dy, dhT, dcT))
      -- (the second pass adds inside the GEMM, so 2g only up to rounding)
      N.assert_rel(N.snapshot(m, true), g1 * 2, 1e-15, "gradients after two backward passes")
      for k = 1, first.n do N.assert_equal(second[k], first[k], "input gradient " .. k) end
      m:zero_grad()
      assert.are.equal(0, N.snapshot(m, true):norm())
    end)

    it(cell .. ": gradients of two sequences add up", function()
      bptt.manual_seed(41)
      local m = make(cell, { layers = 2 })
      local x1, x2 = inputs(m, T, B), inputs(m, T + 2, B + 1)
      local d1, d2 = bptt.randn(T, B, H, "float64"), bptt.randn(T + 2, B + 1, H, "float64")
      local function grads_of(list)
        m:zero_grad()
        for _, p in ipairs(list) do
          m:forward(p[1])
          m:backward(p[2])
        end
        return N.snapshot(m, true)
      end
      local ga, gb = grads_of({ { x1, d1 } }), grads_of({ { x2, d2 } })
      N.assert_rel(grads_of({ { x1, d1 }, { x2, d2 } }), ga + gb, 1e-14, "sum of both")
    end)
  end
end)

describe("bptt.RNN float32 and float64 agree", function()
  for _, cell in ipairs(CELLS) do
    it(cell .. ": outputs and every gradient within 1e-5 of float64", function()
      bptt.manual_seed(50)
      local m64 = make(cell, { layers = 2 })
      local m32 = twin(m64, { dtype = "float32" })
      assert.are.equal("float32", m32.dtype)
      local x, h0, c0 = inputs(m64, 6, 3, true)
      local dy, dhT, dcT = out_grads(m64, 6, 3)
      local function f32(t) return t and t:to("float32") end
      local o64 = clones(m64:forward(x, h0, c0))
      local o32 = clones(m32:forward(f32(x), f32(h0), f32(c0)))
      assert.are.equal("float32", o32[1]:dtype())
      for k = 1, o64.n do N.assert_rel(o32[k], o64[k], 1e-5, "output " .. k) end
      local g64 = clones(m64:backward(dy, dhT, dcT))
      local g32 = clones(m32:backward(f32(dy), f32(dhT), f32(dcT)))
      for k = 1, g64.n do N.assert_rel(g32[k], g64[k], 1e-5, "input gradient " .. k) end
      local _, p64 = m64:parameters()
      local _, p32 = m32:parameters()
      for name, g in pairs(p64) do N.assert_rel(p32[name], g, 1e-5, name .. " gradient") end
    end)
  end
end)

describe("bptt.RNN on several threads (the units or the batch rows split between the team)", function()
  -- H >= 64 gives each of 2 or 3 threads a share of the units; 100 and 257
  -- split unevenly (the last share is short), 3 threads on 100 units leave
  -- the last one only 4.
  local before
  before_each(function() before = bptt.num_threads() end)
  after_each(function() bptt.set_num_threads(before) end)

  local function run(m, threads, x, h0, c0, dy, dhT, dcT)
    bptt.set_num_threads(threads)
    m:zero_grad()
    local out = clones(m:forward(x, h0, c0))
    local gin = clones(m:backward(dy, dhT, dcT))
    local _, grads = m:parameters()
    local g = {}
    for name, t in pairs(grads) do g[name] = t:clone() end
    return out, gin, g
  end

  for _, cell in ipairs(CELLS) do
    -- B = 3 splits the units; B >= 8 per thread splits the batch rows (17
    -- and 25: uneven shares)
    for _, case in ipairs({ { H = 64, B = 3, threads = 2, given = true, bias = true },
                            { H = 100, B = 3, threads = 3, given = false, bias = true },
                            { H = 257, B = 3, threads = 2, given = true, bias = false },
                            { H = 64, B = 17, threads = 2, given = true, bias = true },
                            { H = 100, B = 25, threads = 3, given = false, bias = false } }) do
      local what = string.format("%s, H = %d, B = %d, %d threads, state %s, bias %s: as on 1 thread (float64, 1e-12)",
        cell, case.H, case.B, case.threads, case.given and "given" or "nil", tostring(case.bias))
      it(what, function()
        bptt.manual_seed(case.H)
        local m = bptt.RNN{ cell = cell, input = 7, hidden = case.H, layers = 2, bias = case.bias, dtype = "float64" }
        local x, h0, c0 = inputs(m, 5, case.B, case.given)
        local dy, dhT, dcT = out_grads(m, 5, case.B)
        if not case.given then dy = nil end -- dhT (and dcT) alone
        local o1, i1, g1 = run(m, 1, x, h0, c0, dy, dhT, dcT)
        local on, i_n, gn = run(m, case.threads, x, h0, c0, dy, dhT, dcT)
        for k = 1, o1.n do N.assert_rel(on[k], o1[k], 1e-12, "output " .. k) end
        for k = 1, i1.n do N.assert_rel(i_n[k], i1[k], 1e-12, "input gradient " .. k) end
        for name, g in pairs(g1) do N.assert_rel(gn[name], g, 1e-12, name .. " gradient") end
      end)
    end
    it(cell .. ", H = 100 on 3 threads: gradcheck (float64, sampled entries)", function()
      bptt.set_num_threads(3)
      bptt.manual_seed(77)
      local m = bptt.RNN{ cell = cell, input = 4, hidden = 100, layers = 2, dtype = "float64" }
      local x, h0, c0 = inputs(m, 3, 2, true)
      N.assert_gradcheck(bptt.gradcheck(m, { x, h0, c0, n = 3 }, { max_per_tensor = 6 }))
    end)
  end
end)

describe("bptt.RNN float32 per-step kernel (packed weights, AVX-512)", function()
  local core = require "bptt.core"
  local before
  before_each(function() before = bptt.num_threads() end)
  after_each(function()
    bptt.set_num_threads(before)
    core.packed_gemm(true)
  end)

  -- B >= 4 and T >= 2 take the packed kernel where the CPU has AVX-512F;
  -- 5 and 9 rows leave partial 8-row tiles, H = 20 and 100 partial panels.
  local function run(m, x, h0, c0, dy)
    m:zero_grad()
    local y = m:forward(x, h0, c0):clone()
    local dx = m:backward(dy):clone()
    local _, grads = m:parameters()
    local g = {}
    for name, t in pairs(grads) do g[name] = t:clone():to("float64") end
    return y:to("float64"), dx:to("float64"), g
  end

  for _, cell in ipairs(CELLS) do
    it(cell .. ": float32 within 2e-6 of float64 and of the BLAS path, for partial tiles and panels, 1 and 2 threads",
      function()
        for _, case in ipairs({ { H = 20, B = 5 }, { H = 100, B = 9 }, { H = 64, B = 32 } }) do
          for _, threads in ipairs({ 1, 2 }) do
            bptt.set_num_threads(threads)
            bptt.manual_seed(case.H + case.B)
            local m64 = bptt.RNN{ cell = cell, input = 13, hidden = case.H, layers = 2, dtype = "float64" }
            local m32 = twin(m64, { dtype = "float32" })
            local x, h0, c0 = inputs(m64, 6, case.B, true)
            local dy = bptt.randn(6, case.B, case.H, "float64")
            local function f32(t) return t and t:to("float32") end
            local y64, dx64, g64 = run(m64, x, h0, c0, dy)
            core.packed_gemm(true)
            local y1, dx1, g1 = run(m32, f32(x), f32(h0), f32(c0), f32(dy))
            core.packed_gemm(false)
            local y2, dx2, g2 = run(m32, f32(x), f32(h0), f32(c0), f32(dy))
            local what = string.format("H = %d, B = %d, %d threads", case.H, case.B, threads)
            N.assert_rel(y1, y64, 2e-6, "y vs float64, " .. what)
            N.assert_rel(dx1, dx64, 2e-6, "dx vs float64, " .. what)
            N.assert_rel(y1, y2, 2e-6, "y vs BLAS, " .. what)
            N.assert_rel(dx1, dx2, 2e-6, "dx vs BLAS, " .. what)
            for name, g in pairs(g64) do
              N.assert_rel(g1[name], g, 2e-6, name .. " vs float64, " .. what)
              N.assert_rel(g1[name], g2[name], 2e-6, name .. " vs BLAS, " .. what)
            end
          end
        end
      end)
  end

  it("bptt.core.packed_gemm switches the kernel off and on, and says whether it runs", function()
    assert.is_false(core.packed_gemm(false))
    local on = core.packed_gemm(true)
    assert.is_boolean(on)
    assert.has_error(function() core.packed_gemm("yes") end,
      "bptt.core.packed_gemm: on must be true or false, got string")
  end)

  it("bptt.core.packed_matmul (the benchmarks' timing of the kernel): the product, and its seconds", function()
    bptt.manual_seed(3)
    local a = bptt.randn(37, 100)
    if not core.packed_gemm() then -- no AVX-512F here, or BPTT_ISA asked for less: an error that says so
      assert.has_error(function() core.packed_matmul(a, bptt.randn(100, 90), bptt.zeros(37, 90)) end,
        "bptt.core.packed_matmul: the packed kernel cannot run here (no AVX-512F, or off)")
    else
      for _, b in ipairs({ bptt.randn(100, 90), bptt.randn(90, 100):t() }) do
        for _, threads in ipairs({ 1, 2, 3 }) do
          bptt.set_num_threads(threads)
          local c = bptt.zeros(37, 90)
          local out, s = core.packed_matmul(a, b, c, 3)
          assert.are.equal(c, out)
          assert.is_true(s >= 0)
          local ref = bptt.matmul(a, b)
          assert.is_true((c - ref):norm() <= 1e-6 * ref:norm())
        end
      end
    end
    assert.has_error(function() core.packed_matmul(a, bptt.randn(99, 90), bptt.zeros(37, 90)) end)
  end)
end)

describe("bptt.RNN dropout", function()
  for _, cell in ipairs(CELLS) do
    it(cell .. ": the same seed gives the same outputs; another seed other outputs", function()
      bptt.manual_seed(60)
      local m = make(cell, { layers = 3, dropout = 0.5, hidden = 8 })
      local x = inputs(m, T, B)
      bptt.manual_seed(5)
      local a = clones(m:forward(x))
      bptt.manual_seed(5)
      local b = clones(m:forward(x))
      for k = 1, a.n do N.assert_equal(b[k], a[k], "output " .. k) end
      bptt.manual_seed(6)
      local c = m:forward(x)
      assert.is_true(N.rel_err(c, a[1]) > 1e-3, "a different seed must give other masks")
    end)

    it(cell .. ": evaluate() turns it off and train() back on", function()
      bptt.manual_seed(61)
      local m = make(cell, { layers = 2, dropout = 0.5, hidden = 8 })
      local plain = twin(m, { dropout = 0 })
      local x = inputs(m, T, B)
      local want = plain:forward(x)
      assert.are.equal(m, m:evaluate())
      assert.is_false(m.training)
      bptt.manual_seed(1)
      N.assert_equal(m:forward(x), want, "evaluation mode")
      bptt.manual_seed(2)
      N.assert_equal(m:forward(x), want, "evaluation mode, another seed")
      assert.are.equal(m, m:train())
      assert.is_true(m.training)
      assert.is_true(N.rel_err(m:forward(x), want) > 1e-3, "training mode drops")
    end)

    it(cell .. ": with one layer there is nothing to drop (PyTorch: between layers only)", function()
      bptt.manual_seed(62)
      local m = make(cell, { layers = 1, dropout = 0.5 })
      local plain = twin(m, { dropout = 0 })
      local x = inputs(m, T, B)
      N.assert_equal(m:forward(x), plain:forward(x), "y")
    end)
  end

  it("the mask is inverted dropout: each value is dropped (0) or scaled by 1/(1-p), about p dropped", function()
    -- relu, layer 1 passes x through (relu(x), W_hh = 0), layer 2 is the
    -- identity on its (dropped) input: y2 = mask * y1
    local p, St, Sb, Sh = 0.3, 50, 4, 8
    local m = bptt.RNN{ cell = "relu", input = Sh, hidden = Sh, layers = 2, dropout = p, dtype = "float64" }
    local P = m:parameters()
    for name, t in pairs(P) do
      t:zero()
      if name:find("^weight_ih") then
        for j = 1, Sh do t:set(j, j, 1) end
      end
    end
    bptt.manual_seed(63)
    local x = bptt.rand(St, Sb, Sh, "float64") + bptt.ones(St, Sb, Sh, "float64")   -- in [1, 2)
    local y = N.flat(m:forward(x))
    local xs = N.flat(x)
    local dropped = 0
    for k = 1, #xs do
      if y[k] == 0 then
        dropped = dropped + 1
      else
        assert.is_true(math.abs(y[k] - xs[k] / (1 - p)) <= 1e-14 * xs[k], "kept values are scaled by 1/(1-p)")
      end
    end
    local frac = dropped / #xs
    assert.is_true(frac > p - 0.05 and frac < p + 0.05, "dropped fraction " .. frac)
  end)

  for _, cell in ipairs(CELLS) do
    for layers = 2, 3 do
      it(string.format("%s, %d layers, dropout 0.4 in training mode: gradients exact through the mask", cell, layers),
        function()
          bptt.manual_seed(64 + layers)
          local m = make(cell, { layers = layers, dropout = 0.4 })
          local x, h0, c0 = inputs(m, T, B, true)
          N.assert_gradcheck(bptt.gradcheck(m, { x, h0, c0, n = 3 }, N.gradcheck_opts))
        end)
    end
  end
end)

describe("bptt.RNN truncated BPTT: hT passed back as h0", function()
  for _, cell in ipairs(CELLS) do
    local lstm = cell == "lstm"
    it(cell .. ": chunked forward equals the whole sequence; backward of the chunk is right", function()
      bptt.manual_seed(70)
      local m = make(cell, { layers = 2 })
      local x = inputs(m, 6, B)
      local whole = twin(m):forward(x):clone()
      local _, h, c = m:forward(x:narrow(1, 1, 3))
      local hc, cc = h:clone(), c and c:clone()
      -- the layer's own hT (and cT) buffers go straight back in
      local y2 = m:forward(x:narrow(1, 4, 3), h, c)
      N.assert_rel(y2, whole:narrow(1, 4, 3), 1e-14, "y of the second chunk")
      local dy, dhT, dcT = out_grads(m, 3, B)
      m:zero_grad()
      local got = clones(m:backward(dy, dhT, dcT))
      local ref = twin(m)
      ref:forward(x:narrow(1, 4, 3), hc, cc)
      local want = clones(ref:backward(dy, dhT, dcT))
      for k = 1, want.n do N.assert_rel(got[k], want[k], 1e-14, "input gradient " .. k) end
      N.assert_rel(N.snapshot(m, true), N.snapshot(ref, true), 1e-14, "parameter gradients")
      if lstm then assert.are.equal(3, got.n) end
    end)
  end
end)

describe("bptt.RNN with NaN in the input", function()
  for _, cell in ipairs(CELLS) do
    it(cell .. ": NaN propagates forward in its own sequence only, and backward does not crash", function()
      bptt.manual_seed(80)
      local m = make(cell, { layers = 2 })
      local x = inputs(m, T, B)
      x:set(2, 1, 1, 0 / 0)          -- step 2 of sequence 1
      local y, hT = m:forward(x)
      for t = 1, T do
        local y1, y2 = y:select(1, t):select(1, 1), y:select(1, t):select(1, 2)
        if t < 2 then assert.is_true(N.all_finite(y1), "before the NaN") end
        if t >= 2 then assert.is_true(N.has_nan(y1), "from the NaN on, step " .. t) end
        assert.is_true(N.all_finite(y2), "the other sequence, step " .. t)
      end
      assert.is_true(N.has_nan(hT:select(2, 1)))
      assert.is_true(N.all_finite(hT:select(2, 2)))
      local dy, dhT, dcT = out_grads(m, T, B)
      local dx = m:backward(dy, dhT, dcT)
      if cell == "relu" then
        -- relu' at NaN passes the gradient, as PyTorch's threshold_backward (NaN <= 0 is false)
        assert.is_true(N.all_finite(dx:select(2, 1)), "dx of the NaN sequence")
      else
        assert.is_true(N.has_nan(dx:select(2, 1)), "dx of the NaN sequence")
      end
      assert.is_true(N.all_finite(dx:select(2, 2)), "dx of the other sequence")
      assert.is_true(N.has_nan((select(2, m:parameters())).weight_ih_l0), "the weight gradient sums over both")
    end)
  end
end)

describe("bptt.RNN with huge inputs", function()
  for _, cell in ipairs({ "tanh", "lstm", "gru" }) do
    for _, dtype in ipairs({ "float32", "float64" }) do
      it(cell .. ", " .. dtype .. ": x ~ 1e30 saturates the cell: y in [-1, 1], every gradient finite", function()
        bptt.manual_seed(85)
        local m = make(cell, { layers = 2, dtype = dtype })
        local x = bptt.randn(T, B, I, dtype) * 1e30
        local outs = pack(m:forward(x))
        for k = 1, outs.n do assert.is_true(N.all_finite(outs[k]), "output " .. k) end
        assert.is_true(outs[1]:max() <= 1 and outs[1]:min() >= -1)
        local dy, dhT, dcT = out_grads(m, T, B)
        local gins = pack(m:backward(dy, dhT, dcT))
        for k = 1, gins.n do assert.is_true(N.all_finite(gins[k]), "input gradient " .. k) end
        local _, flat_grad = m:flat_parameters()
        assert.is_true(N.all_finite(flat_grad), "parameter gradients")
      end)
    end
  end
end)

describe("bptt.RNN when T and B change between calls", function()
  for _, cell in ipairs(CELLS) do
    it(cell .. ": buffers regrow and shrink; every result equals a fresh layer's", function()
      bptt.manual_seed(90)
      local m = make(cell, { layers = 2 })
      local sizes = { { 4, 2, true }, { 7, 2, false }, { 3, 2, true }, { 2, 2, false }, { 3, 4, true },
        { 6, 1, false }, { 5, 3, true }, { 4, 2, false } }
      for _, s in ipairs(sizes) do
        local St, Sb = s[1], s[2]
        local what = string.format("T = %d, B = %d", St, Sb)
        local x, h0, c0 = inputs(m, St, Sb, s[3])
        local dy, dhT, dcT = out_grads(m, St, Sb)
        local fresh = twin(m)
        local want = clones(fresh:forward(x, h0, c0))
        local wantg = clones(fresh:backward(dy, dhT, dcT))
        local got = clones(m:forward(x, h0, c0))
        m:zero_grad()
        local gotg = clones(m:backward(dy, dhT, dcT))
        assert.are.same({ St, Sb, H }, got[1]:shape(), what)
        for k = 1, want.n do N.assert_rel(got[k], want[k], 1e-14, what .. ", output " .. k) end
        for k = 1, wantg.n do N.assert_rel(gotg[k], wantg[k], 1e-14, what .. ", input gradient " .. k) end
        N.assert_rel(N.snapshot(m, true), N.snapshot(fresh, true), 1e-14, what .. ", parameter gradients")
      end
    end)
  end
end)

describe("bptt.RNN errors", function()
  it("backward before any forward", function()
    local m = make("lstm")
    N.error_with({ "bptt.RNN:backward: call forward first" }, m.backward, m, bptt.zeros(T, B, H, "float64"))
  end)

  it("forward: x of the wrong rank, size or dtype, or not a tensor", function()
    local m = make("gru", { input = 5, layers = 2 })
    N.error_with({ "bptt.RNN:forward: x must be T x B x 5 (T, B >= 1), got 7 x 3 x 4" },
      m.forward, m, bptt.zeros(7, 3, 4, "float64"))
    N.error_with({ "bptt.RNN:forward: x must be T x B x 5", "got 7 x 5" }, m.forward, m, bptt.zeros(7, 5, "float64"))
    N.error_with({ "bptt.RNN:forward: x must be T x B x 5", "got 2 x 7 x 3 x 5" },
      m.forward, m, bptt.zeros(2, 7, 3, 5, "float64"))
    N.error_with({ "bptt.RNN:forward: x must be float64 like the layer, got float32" },
      m.forward, m, bptt.zeros(7, 3, 5, "float32"))
    N.error_with({ "bptt.RNN:forward: x must be float64 like the layer, got int32" },
      m.forward, m, bptt.zeros(7, 3, 5, "int32"))
    N.error_with({ "bptt.RNN:forward: x must be a tensor, got table" }, m.forward, m, { { { 1, 2, 3, 4, 5 } } })
    N.error_with({ "bptt.RNN:forward: x must be a tensor, got nil" }, m.forward, m)
  end)

  it("forward: initial states of the wrong shape or dtype; c0 for a cell without one", function()
    local m = make("lstm", { layers = 2 })
    local x = bptt.zeros(T, B, I, "float64")
    N.error_with({ "bptt.RNN:forward: h0 must be 2 x 2 x 3, got 1 x 2 x 3" },
      m.forward, m, x, bptt.zeros(1, B, H, "float64"))
    N.error_with({ "bptt.RNN:forward: h0 must be 2 x 2 x 3, got 2 x 3" }, m.forward, m, x, bptt.zeros(B, H, "float64"))
    N.error_with({ "bptt.RNN:forward: c0 must be 2 x 2 x 3, got 2 x 3 x 3" },
      m.forward, m, x, nil, bptt.zeros(2, 3, H, "float64"))
    N.error_with({ "bptt.RNN:forward: h0 must be float64 like the layer, got float32" },
      m.forward, m, x, bptt.zeros(2, B, H, "float32"))
    local g = make("gru")
    N.error_with({ 'bptt.RNN:forward: c0 is only for cell "lstm", this is "gru"' },
      g.forward, g, x, nil, bptt.zeros(1, B, H, "float64"))
  end)

  it("backward: gradients of the wrong shape or dtype; dcT for a cell without one", function()
    local m = make("tanh", { layers = 2 })
    m:forward(bptt.zeros(T, B, I, "float64"))
    N.error_with({ "bptt.RNN:backward: dy must be 4 x 2 x 3, got 5 x 2 x 3" },
      m.backward, m, bptt.zeros(5, B, H, "float64"))
    N.error_with({ "bptt.RNN:backward: dy must be 4 x 2 x 3, got 4 x 2 x 4" },
      m.backward, m, bptt.zeros(T, B, 4, "float64"))
    N.error_with({ "bptt.RNN:backward: dy must be float64 like the layer, got float32" },
      m.backward, m, bptt.zeros(T, B, H, "float32"))
    N.error_with({ "bptt.RNN:backward: dhT must be 2 x 2 x 3, got 1 x 2 x 3" },
      m.backward, m, nil, bptt.zeros(1, B, H, "float64"))
    N.error_with({ 'bptt.RNN:backward: dcT is only for cell "lstm", this is "tanh"' },
      m.backward, m, nil, nil, bptt.zeros(2, B, H, "float64"))
    local l = make("lstm")
    l:forward(bptt.zeros(T, B, I, "float64"))
    N.error_with({ "bptt.RNN:backward: dcT must be 1 x 2 x 3, got 1 x 3 x 3" },
      l.backward, l, nil, nil, bptt.zeros(1, 3, H, "float64"))
  end)

  it("a failed call leaves the layer usable", function()
    bptt.manual_seed(95)
    local m = make("lstm", { layers = 2 })
    local x = inputs(m, T, B)
    local dy = bptt.randn(T, B, H, "float64")
    local want = m:forward(x):clone()
    m:zero_grad()
    local wantdx = m:backward(dy):clone()
    local wantg = N.snapshot(m, true)
    pcall(m.forward, m, bptt.zeros(T, B, I + 1, "float64"))
    pcall(m.backward, m, bptt.zeros(T + 1, B, H, "float64"))
    N.assert_equal(m:forward(x), want, "y")
    m:zero_grad()
    N.assert_equal(m:backward(dy), wantdx, "dx")
    N.assert_equal(N.snapshot(m, true), wantg, "gradients")
  end)
end)

describe("bptt.RNN state_dict", function()
  it("round trip: a layer loaded from another's state_dict computes the same", function()
    bptt.manual_seed(100)
    local a = make("lstm", { layers = 2 })
    local sd = a:state_dict()
    local names = {}
    for name, t in pairs(sd) do
      names[#names + 1] = name
      assert.is_true(bptt.is_tensor(t))
    end
    table.sort(names)
    local want = a:parameter_names()
    table.sort(want)
    assert.are.same(want, names)
    local b = make("lstm", { layers = 2 })
    assert.is_true(N.rel_err(b:flat_parameters(), a:flat_parameters()) > 0.1)
    assert.are.equal(b, b:load_state_dict(sd))
    N.assert_equal(b:flat_parameters(), a:flat_parameters(), "parameters")
    local x, h0, c0 = inputs(a, T, B, true)
    N.assert_equal(b:forward(x, h0, c0), a:forward(x, h0, c0), "y")
    -- a float32 layer takes the float64 state dict (and rounds it)
    local f = make("lstm", { layers = 2, dtype = "float32" }):load_state_dict(sd)
    N.assert_rel(f:flat_parameters(), a:flat_parameters(), 1e-7, "float32 copy")
  end)

  local function check_unchanged(m, before, f)
    local err = f()
    N.assert_equal(m:flat_parameters(), before, "parameters after the failed load")
    return err
  end

  it("missing, unexpected or wrongly shaped entries are errors that leave the layer unchanged", function()
    bptt.manual_seed(101)
    local m = make("gru", { layers = 2 })
    local before = m:flat_parameters():clone()
    local function fresh_sd()
      local sd = {}
      for name, t in pairs(make("gru", { layers = 2 }):state_dict()) do sd[name] = t:clone() end
      return sd
    end
    local load = function(sd) return function() return m:load_state_dict(sd) end end

    local sd = fresh_sd()
    sd.bias_hh_l1 = nil
    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", 'missing parameter "bias_hh_l1"' }, load(sd))
    end)

    sd = fresh_sd()
    sd.weight_hh_l2 = bptt.zeros(9, 3, "float64")
    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", 'unexpected parameter "weight_hh_l2"' }, load(sd))
    end)

    sd = fresh_sd()
    sd.bias_hh_l1 = bptt.zeros(3, "float64")          -- the last one: nothing before it may be written
    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", "bias_hh_l1 must be 9, got 3" }, load(sd))
    end)

    sd = fresh_sd()
    sd.weight_ih_l1 = bptt.zeros(9, 3, 1, "float64")
    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", "weight_ih_l1 must be 9 x 3, got 9 x 3 x 1" }, load(sd))
    end)

    sd = fresh_sd()
    sd.weight_hh_l1 = bptt.zeros(9, 3, "int32")
    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", "weight_hh_l1 must be float32 or float64, got int32" }, load(sd))
    end)

    sd = fresh_sd()
    sd.weight_hh_l1 = { { 1 } }
    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", "weight_hh_l1 must be a tensor, got table" }, load(sd))
    end)

    check_unchanged(m, before, function()
      N.error_with({ "bptt.RNN:load_state_dict", "expected a table of name -> tensor, got string" }, load("x"))
    end)
  end)
end)

describe("bptt.RNN carry_state, reuse_dy and its own buffers", function()
  it("carry_state: two forwards equal passing hT by hand, and backward sees the state it started from", function()
    for _, cell in ipairs(CELLS) do
      bptt.manual_seed(11)
      local a = make(cell, { layers = 2 })
      local b = twin(a)
      b.carry_state = true
      local x1, x2 = inputs(a, 3, B), inputs(a, 2, B)
      local _, h1, c1 = a:forward(x1)
      h1, c1 = h1:clone(), c1 and c1:clone()
      local ya, ha, ca = a:forward(x2, h1, c1)
      b:forward(x1)
      local yb, hb, cb = b:forward(x2)
      N.assert_equal(yb, ya, cell .. " y")
      N.assert_equal(hb, ha, cell .. " hT")
      if cell == "lstm" then N.assert_equal(cb, ca, cell .. " cT") end
      local h, c = b:carried()
      assert.equal(hb, h, "hT is the carried state itself, not a copy")
      assert.equal(cb, c)
      local dy = bptt.randn(2, B, H, "float64")
      local dxa, dha = a:backward(dy)
      local dxb, dhb = b:backward(dy)
      N.assert_equal(dxb, dxa, cell .. " dx")
      N.assert_equal(dhb, dha, cell .. " dh0")
      N.assert_equal(select(2, b:flat_parameters()), select(2, a:flat_parameters()), cell .. " parameter gradients")
    end
  end)

  it("carry_state: reset_state, get_state, set_state; B changing restarts from zeros; h0 is refused", function()
    bptt.manual_seed(12)
    local m = make("lstm", { carry_state = true })
    local ref = twin(m)
    local x = inputs(m, 2, B)
    m:forward(x)
    local s = m:get_state()
    local y1 = m:forward(x):clone()
    m:set_state(s)
    N.assert_equal(m:forward(x), y1, "set_state restores")
    m:reset_state()
    N.assert_equal(m:forward(x), ref:forward(x), "reset_state: from zeros")
    m:reset_state(2)
    local h = m:carried()
    assert.equal(0, h:select(2, 2):norm())
    assert.is_true(h:select(2, 1):norm() > 0)
    local x1 = inputs(m, 2, 1)
    N.assert_equal(m:forward(x1), ref:forward(x1), "B changed: from zeros")
    N.error_with({ "bptt.RNN:forward: h0 and c0 must be nil with carry_state" }, m.forward, m, x,
      bptt.zeros(1, B, H, "float64"))
    N.error_with({ "bptt.RNN:reset_state: b must be a stream in 1..1, got 2" }, m.reset_state, m, 2)
    N.error_with({ "bptt.RNN:set_state: s.h must be 1 x B x 3" }, m.set_state, m, { h = bptt.zeros(2, 2, "float64") })
  end)

  it("reuse_dy: the same gradients with one buffer less; dy is scratch afterwards", function()
    for _, L in ipairs({ 1, 2, 3 }) do
      bptt.manual_seed(13)
      local a = make("gru", { layers = L })
      local b = twin(a)
      local x = inputs(a, T, B)
      a:forward(x)
      b:forward(x)
      local dy = bptt.randn(T, B, H, "float64")
      local dxa, dha = a:backward(dy)
      local dyb = dy:clone()
      local dxb, dhb = b:backward(dyb, nil, nil, { reuse_dy = true })
      N.assert_equal(dxb, dxa, "dx, " .. L .. " layers")
      N.assert_equal(dhb, dha, "dh0")
      N.assert_equal(select(2, b:flat_parameters()), select(2, a:flat_parameters()), "parameter gradients")
      if L > 1 then assert.is_nil(b._gx[2], "buffer 2 was made anyway") end
    end
    local m = make("tanh")
    m:forward(inputs(m, T, B))
    N.error_with({ "bptt.RNN:backward: unknown option \"reuse\"" }, m.backward, m, nil, nil, nil, { reuse = true })
  end)

  it("a layer fed its own output or gradient buffers: an error naming the argument", function()
    for _, L in ipairs({ 1, 2 }) do
      bptt.manual_seed(14)
      local m = make("lstm", { input = H, layers = L, dropout = L > 1 and 0.5 or 0 })
      local y = m:forward(inputs(m, T, B))
      assert.equal(y, m.output)
      N.error_with({ "bptt.RNN:forward: x shares memory with this layer's output and caches" }, m.forward, m, y)
      local dx = m:backward(bptt.randn(T, B, H, "float64"))
      N.error_with({ "bptt.RNN:backward: dy shares memory with this layer's input, state or scratch gradients" },
        m.backward, m, dx)
      N.error_with({ "bptt.RNN:forward: x shares memory with this layer's backward buffers" }, m.forward, m, dx)
      local _, dh0 = m:backward(nil, bptt.randn(L, B, H, "float64"))
      N.error_with({ "bptt.RNN:backward: dhT shares memory" }, m.backward, m, nil, dh0)
      -- through a copy, it is the computation of two layers
      local twin_m = twin(m)
      m:evaluate()
      twin_m:evaluate()
      local x = inputs(m, T, B)
      local want = twin_m:forward(twin_m:forward(x):clone())
      N.assert_equal(m:forward(m:forward(x):clone()), want, "forward of a clone")
    end
  end)
end)
