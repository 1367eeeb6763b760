-- Bidirectional layers and variable-length batches against PyTorch: the
-- fixtures spec/fixtures/seq_*.lua made by spec/fixtures/make_seq_fixtures.py
-- (nn.RNN/LSTM/GRU with bidirectional = True and/or pack_padded_sequence with
-- enforce_sorted = False).  Outputs, final states and every gradient (x, h0,
-- c0, each parameter) within 1e-9 (float64) or 1e-4 (float32) relative.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local DIR = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "fixtures/"

local function load(name)
  local path = DIR .. name .. ".lua"
  local chunk, err = loadfile(path)
  assert(chunk, "fixture " .. path .. " missing or unreadable (run spec/fixtures/make_seq_fixtures.py): "
    .. tostring(err))
  return chunk()
end

describe("bptt.RNN bidirectional and with lengths, against PyTorch fixtures", function()
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    for _, case in ipairs({ "a", "b", "c" }) do
      for _, variant in ipairs({ "bi", "len", "bilen" }) do
        for _, dtype in ipairs({ "float64", "float32" }) do
          for _, lform in ipairs(variant == "bi" and { "none" } or { "table", "int32" }) do
            local name = string.format("seq_%s_%s_%s", cell, case, variant)
            it(string.format("%s in %s (lengths: %s): y, hT, cT and every gradient", name, dtype, lform), function()
              local fx = load(name)
              local tol = N.tol[dtype]
              local lstm = fx.cell == "lstm"
              local m = bptt.RNN{ cell = fx.cell, input = fx.input, hidden = fx.hidden, layers = fx.layers,
                bias = fx.bias, bidirectional = fx.bidirectional, dtype = dtype }
              assert.are.same(fx.param_names, m:parameter_names())
              local sd = {}
              for pname, t in pairs(fx.params) do sd[pname] = N.from_fixture(t) end
              m:load_state_dict(sd)
              local function T(key) return fx[key] and N.from_fixture(fx[key], dtype) end
              local lengths = fx.lengths
              if lform == "int32" then lengths = bptt.tensor(fx.lengths, "int32") end

              local y, hT, cT = m:forward(T("x"), T("h0"), T("c0"), lengths)
              N.assert_rel(y, fx.y, tol, "y")
              N.assert_rel(hT, fx.hT, tol, "hT")
              if lstm then N.assert_rel(cT, fx.cT, tol, "cT") end

              m:zero_grad()
              local dx, dh0, dc0 = m:backward(T("dy"), T("dhT"), T("dcT"))
              local inputs = { x = dx, h0 = dh0, c0 = dc0 }
              local _, grads = m:parameters()
              local n = 0
              for gname, want in pairs(fx.grads) do
                local got = inputs[gname] or grads[gname]
                assert(got, "no gradient " .. gname .. " in bptt")
                N.assert_rel(got, want, tol, "d" .. gname)
                n = n + 1
              end
              assert.are.equal(#fx.param_names + (lstm and 3 or 2), n)
            end)
          end
        end
      end
    end
  end
end)

-- One row alone (B = 1, cut to its length) against the same row in a
-- batch with lengths: outputs, final states, dx, dh0 and the parameter
-- gradients (summed over rows) agree.  Sizes that make the kernels split
-- the recursion over two threads by rows (B = 16) and by units (B = 3).
local function randn(dt, ...) return bptt.randn(...):to(dt) end

local function row_case(cell, bi, B, lengths, layers, dt)
  local H, I, T = 64, 5, 7
  local tol = dt == "float64" and 1e-12 or 1e-4
  local ND = bi and 2 or 1
  local m = bptt.RNN{ cell = cell, input = I, hidden = H, layers = layers, bidirectional = bi, dtype = dt }
  local lstm = cell == "lstm"
  local x, h0 = randn(dt, T, B, I), randn(dt, layers * ND, B, H)
  local c0 = lstm and randn(dt, layers * ND, B, H) or nil
  local dy, dhT = randn(dt, T, B, ND * H), randn(dt, layers * ND, B, H)
  local dcT = lstm and randn(dt, layers * ND, B, H) or nil
  m:zero_grad()
  local y, hT, cT = m:forward(x, h0, c0, lengths)
  y, hT, cT = y:clone(), hT:clone(), cT and cT:clone()
  local dx, dh0, dc0 = m:backward(dy, dhT, dcT)
  dx, dh0, dc0 = dx:clone(), dh0:clone(), dc0 and dc0:clone()
  local _, g = m:parameters()
  local gsum = {}
  for k, v in pairs(g) do gsum[k] = v:clone() end
  m:zero_grad()
  for b = 1, B do
    local n = lengths[b]
    local function row(t, len) return t:narrow(2, b, 1):narrow(1, 1, len or t:size(1)):clone() end
    local yb, hb, cb = m:forward(row(x, n), row(h0), c0 and row(c0))
    N.assert_rel(yb, row(y, n), tol, "y of row " .. b)
    N.assert_rel(hb, row(hT), tol, "hT of row " .. b)
    if lstm then N.assert_rel(cb, row(cT), tol, "cT of row " .. b) end
    if n < T then assert.are.equal(0, row(y):narrow(1, n + 1, T - n):norm(), "y past the length of row " .. b) end
    local dxb, dhb, dcb = m:backward(row(dy, n), row(dhT), dcT and row(dcT))
    N.assert_rel(dxb, row(dx, n), tol, "dx of row " .. b)
    if n < T then assert.are.equal(0, row(dx):narrow(1, n + 1, T - n):norm(), "dx past the length of row " .. b) end
    N.assert_rel(dhb, row(dh0), tol, "dh0 of row " .. b)
    if lstm then N.assert_rel(dcb, row(dc0), tol, "dc0 of row " .. b) end
  end
  for k, v in pairs(g) do N.assert_rel(v, gsum[k], tol * 10, "d" .. k) end
end

describe("bptt.RNN with lengths: each row as if alone, on two threads", function()
  local threads
  before_each(function() threads = bptt.num_threads(); bptt.set_num_threads(2) end)
  after_each(function() bptt.set_num_threads(threads) end)
  local LB16 = { 3, 7, 1, 5, 7, 2, 6, 4, 7, 3, 3, 1, 5, 6, 2, 7 }
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    for _, bi in ipairs({ false, true }) do
      it(string.format("%s%s, B = 16 (split by rows), 2 layers", cell, bi and " bidirectional" or ""), function()
        bptt.manual_seed(7)
        row_case(cell, bi, 16, LB16, 2, "float64")
      end)
      it(string.format("%s%s, B = 16, in float32 (the packed kernel)", cell, bi and " bidirectional" or ""), function()
        bptt.manual_seed(9)
        row_case(cell, bi, 16, LB16, 1, "float32")
      end)
      it(string.format("%s%s, B = 3 (split by units), 1 layer, longest < T", cell, bi and " bidirectional" or ""),
        function()
          bptt.manual_seed(8)
          row_case(cell, bi, 3, { 2, 5, 4 }, 1, "float64")
        end)
    end
  end
end)

-- Resets: forward(x, h0, c0, nil, resets) with resets T x B (1 = a new
-- document starts at this step of this stream).  Each stream cut at its
-- resets into segments, each segment run alone (the first from the stream's
-- h0, the others from zeros), must give the same outputs, and the same dx,
-- dh0 and parameter gradients (summed): no state and no gradient crosses a
-- boundary.
local function reset_case(cell, B, layers, rate, seed)
  local dt, H, I, T = "float64", 64, 3, 9
  bptt.manual_seed(seed)
  local m = bptt.RNN{ cell = cell, input = I, hidden = H, layers = layers, dtype = dt }
  local lstm = cell == "lstm"
  local x, h0 = bptt.randn(T, B, I):to(dt), bptt.randn(layers, B, H):to(dt)
  local c0 = lstm and bptt.randn(layers, B, H):to(dt) or nil
  local dy, dhT = bptt.randn(T, B, H):to(dt), bptt.randn(layers, B, H):to(dt)
  local dcT = lstm and bptt.randn(layers, B, H):to(dt) or nil
  local u = bptt.rand(T, B):totable()
  local flags, any = {}, false
  for t = 1, T do
    flags[t] = {}
    for b = 1, B do
      flags[t][b] = (u[t][b] < rate or (t == 1 and b == 1)) and 1 or 0
      any = any or flags[t][b] == 1
    end
  end
  assert.is_true(any)
  local resets = bptt.tensor(flags, "int32")
  m:zero_grad()
  local y, hT, cT = m:forward(x, h0, c0, nil, resets)
  y, hT, cT = y:clone(), hT:clone(), cT and cT:clone()
  local dx, dh0, dc0 = m:backward(dy, dhT, dcT)
  dx, dh0, dc0 = dx:clone(), dh0:clone(), dc0 and dc0:clone()
  local _, g = m:parameters()
  local gsum = {}
  for k, v in pairs(g) do gsum[k] = v:clone() end
  m:zero_grad()
  for b = 1, B do
    local starts = { 1 }
    for t = 2, T do if flags[t][b] == 1 then starts[#starts + 1] = t end end
    for s = 1, #starts do
      local t0, t1 = starts[s], (starts[s + 1] or T + 1) - 1
      local function seg(t) return t:narrow(2, b, 1):narrow(1, t0, t1 - t0 + 1):clone() end
      local function row(t) return t:narrow(2, b, 1):clone() end
      local first = s == 1 and flags[1][b] == 0
      local last = s == #starts
      local ys, hs, cs = m:forward(seg(x), first and row(h0) or nil, first and c0 and row(c0) or nil)
      N.assert_rel(ys, seg(y), 1e-12, string.format("y of stream %d, steps %d..%d", b, t0, t1))
      if last then
        N.assert_rel(hs, row(hT), 1e-12, "hT of stream " .. b)
        if lstm then N.assert_rel(cs, row(cT), 1e-12, "cT of stream " .. b) end
      end
      local dxs, dhs, dcs = m:backward(seg(dy), last and row(dhT) or nil, last and dcT and row(dcT) or nil)
      N.assert_rel(dxs, seg(dx), 1e-12, string.format("dx of stream %d, steps %d..%d", b, t0, t1))
      if s == 1 then
        if first then
          N.assert_rel(dhs, row(dh0), 1e-12, "dh0 of stream " .. b)
          if lstm then N.assert_rel(dcs, row(dc0), 1e-12, "dc0 of stream " .. b) end
        else -- reset at the first step: nothing reaches h0
          assert.are.equal(0, row(dh0):norm(), "dh0 of stream " .. b)
          if lstm then assert.are.equal(0, row(dc0):norm(), "dc0 of stream " .. b) end
        end
      end
    end
  end
  for k, v in pairs(g) do N.assert_rel(v, gsum[k], 1e-11, "d" .. k) end
end

describe("bptt.RNN resets: no state and no gradient crosses a document boundary", function()
  local threads
  before_each(function() threads = bptt.num_threads(); bptt.set_num_threads(2) end)
  after_each(function() bptt.set_num_threads(threads) end)
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    it(cell .. ", B = 16 (split by rows), 2 layers", function() reset_case(cell, 16, 2, 0.15, 11) end)
    it(cell .. ", B = 3 (split by units), 1 layer", function() reset_case(cell, 3, 1, 0.25, 12) end)
  end

  it("with carry_state: the carried state of a stream is zeroed where its flag is set", function()
    bptt.manual_seed(3)
    local m = bptt.RNN{ cell = "lstm", input = 2, hidden = 4, carry_state = true, dtype = "float64" }
    local x1, x2 = bptt.randn(3, 2, 2):to("float64"), bptt.randn(3, 2, 2):to("float64")
    m:forward(x1)
    local flags = bptt.tensor({ { 0, 1 }, { 0, 0 }, { 0, 0 } }, "int32")
    local y = m:forward(x2, nil, nil, nil, flags):clone()
    local fresh = bptt.RNN{ cell = "lstm", input = 2, hidden = 4, dtype = "float64" }
    fresh:load_state_dict(m:state_dict())
    local yb = fresh:forward(x2:narrow(2, 2, 1):clone())
    N.assert_rel(y:narrow(2, 2, 1), yb, 1e-15, "stream 2 after its reset")
    local ya = fresh:forward(x2:narrow(2, 1, 1):clone())
    assert.is_true(N.rel_err(y:narrow(2, 1, 1), ya) > 1e-3, "stream 1 kept its state")
  end)
end)

describe("bptt.RNN sequence arguments: misuse is an error naming the argument", function()
  local m = bptt.RNN{ cell = "gru", input = 2, hidden = 3, bidirectional = true }
  local x = bptt.randn(4, 3, 2)
  local cases = {
    { "lengths beyond T", function() m:forward(x, nil, nil, { 1, 5, 2 }) end,
      "lengths%[2%] must be a whole number in 1..T = 4" },
    { "a zero length", function() m:forward(x, nil, nil, { 1, 0, 2 }) end, "lengths%[2%]" },
    { "too few lengths", function() m:forward(x, nil, nil, { 1, 2 }) end, "lengths must hold B = 3" },
    { "lengths of a wrong type", function() m:forward(x, nil, nil, "3") end, "lengths must be an int32 tensor" },
    { "h0 of L x B x H for a bidirectional layer", function() m:forward(x, bptt.zeros(1, 3, 3)) end,
      "h0 must be 2 x 3 x 3" },
    { "dy of T x B x H for a bidirectional layer", function() m:forward(x); m:backward(bptt.zeros(4, 3, 3)) end,
      "dy must be 4 x 3 x 6" },
    { "resets on a bidirectional layer", function() m:forward(x, nil, nil, nil, bptt.zeros(4, 3, "int32")) end,
      "resets are for one%-directional" },
    { "bidirectional = 1", function() bptt.RNN{ cell = "gru", input = 2, hidden = 3, bidirectional = 1 } end,
      "bidirectional must be true or false" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local ok, err = pcall(c[2])
      assert.is_false(ok)
      assert.is_truthy(tostring(err):match(c[3]), tostring(err))
      assert.is_truthy(tostring(err):match("bptt%.RNN"), tostring(err))
    end)
  end
  it("resets of a wrong shape", function()
    local u = bptt.RNN{ cell = "tanh", input = 2, hidden = 3 }
    local ok, err = pcall(u.forward, u, x, nil, nil, nil, bptt.zeros(4, 2, "int32"))
    assert.is_false(ok)
    assert.is_truthy(tostring(err):match("resets must be 4 x 3"), tostring(err))
  end)
end)
