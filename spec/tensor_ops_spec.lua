-- The tensor operations of API.md "Tensor operations": broadcasting
-- arithmetic and comparisons, pointwise math, reductions along a dimension,
-- joining, indexing, ordering, shape views, slicing and bptt.info, each
-- against a plain-Lua loop over the same numbers, on contiguous and strided
-- inputs, with PyTorch's semantics (broadcast shapes with 0-d and size-1
-- dimensions, NaN in max and sort), and the errors.
local bptt = require "bptt"
local U = require "helpers.tensor_util"

local NAN = 0 / 0

------------------------------------------------------------------ helpers

-- flat row-major values of a tensor (any layout)
local function flat(t)
  if t:dim() == 0 then return { t:get() } end
  return t:contiguous():view(-1):totable()
end

local function strides_of(shape)
  local st, s = {}, 1
  for d = #shape, 1, -1 do
    st[d] = s
    s = s * shape[d]
  end
  return st
end

-- the multi-index (1-based) of flat position p (1-based) in shape
local function unravel(shape, p)
  local idx, rest = {}, p - 1
  for d = #shape, 1, -1 do
    idx[d] = rest % shape[d] + 1
    rest = math.floor(rest / shape[d])
  end
  return idx
end

-- A tensor of `shape` with values from g (whole numbers for int32); with
-- strided = true a non-contiguous view (every other element of a buffer)
-- holding the same values.  Returns it and the values, row-major.
local function make(g, shape, dtype, strided)
  local n = U.prod(shape)
  local vals = {}
  for i = 1, n do vals[i] = dtype == "int32" and g:int(-5, 5) or g:value() end
  local t
  if strided and #shape >= 1 then
    local s2 = {}
    for i = 1, #shape do s2[i] = shape[i] end
    s2[#shape + 1] = 2
    t = bptt.zeros(s2, dtype):select(#shape + 1, 2)
    assert(n <= 1 or not t:is_contiguous())
  else
    t = bptt.zeros(shape, dtype)
  end
  if n > 0 then
    if #shape == 0 then t:set(vals[1]) else t:copy(bptt.tensor(vals, "float64"):view(shape)) end
  end
  return t, flat(t) -- (the values as stored: float32 rounds)
end

-- position in an operand of shape `s` for output multi-index idx (broadcast)
local function bpos(s, idx)
  local off, st = 0, strides_of(s)
  local lead = #idx - #s
  for d = 1, #s do
    local i = s[d] == 1 and 1 or idx[d + lead]
    off = off + (i - 1) * st[d]
  end
  return off + 1
end

local function bshape(a, b)
  local n = math.max(#a, #b)
  local out = {}
  for d = 1, n do
    local x, y = a[d - (n - #a)] or 1, b[d - (n - #b)] or 1
    assert(x == y or x == 1 or y == 1)
    out[d] = x == 1 and y or x
  end
  return out
end

local unpack = unpack or table.unpack -- luacheck: ignore

------------------------------------------------------------------ broadcasting

describe("broadcasting a + b, a - b, a * b, a / b, bptt.cmul", function()
  local PAIRS = {
    { { 2, 3 }, { 3 } }, { { 2, 1 }, { 1, 3 } }, { {}, { 2, 3 } }, { { 4, 1, 3 }, { 2, 1 } }, { { 3 }, { 3 } },
    { { 2, 0 }, { 1 } }, { { 1 }, {} }, { { 5, 1, 1 }, { 1, 4, 2 } },
  }
  local OPS = {
    { "+", function(a, b) return a + b end }, { "-", function(a, b) return a - b end },
    { "*", function(a, b) return a * b end }, { "/", function(a, b) return a / b end },
  }
  for _, dt in ipairs { "float32", "float64" } do
    for _, strided in ipairs { false, true } do
      it(string.format("agree with plain-Lua loops for %s%s operands of broadcastable shapes", dt,
        strided and " strided" or ""), function()
        local g = U.gen(7)
        for _, pr in ipairs(PAIRS) do
          local a, av = make(g, pr[1], dt, strided)
          local b, bv = make(g, pr[2], dt, strided)
          local out = bshape(pr[1], pr[2])
          for _, op in ipairs(OPS) do
            local r = op[2](a, b)
            assert.are.same(out, r:shape())
            assert.are.equal(dt, r:dtype())
            local got = flat(r)
            for p = 1, U.prod(out) do
              local idx = unravel(out, p)
              local want = op[2](av[bpos(pr[1], idx)], bv[bpos(pr[2], idx)])
              if dt == "float32" then want = U.f32(want) end
              assert(got[p] == want, string.format("%s %s: [%d] got %.17g want %.17g", op[1],
                table.concat(out, "x"), p, got[p], want))
            end
          end
          local c = bptt.cmul(a, b)
          assert.are.same(flat(a * b), flat(c))
        end
      end)
    end
  end

  it("promote dtypes (float64 > float32 > int32); an int32 quotient is float64", function()
    local i = bptt.tensor({ 7, -3 }, "int32")
    local f = bptt.tensor({ { 2 }, { 4 } }, "float32")
    local d = bptt.tensor({ 0.5 }, "float64")
    assert.are.equal("float32", (i + f):dtype())
    assert.are.equal("float64", (f * d):dtype())
    assert.are.equal("int32", (i * i):dtype())
    assert.are.same({ 49, 9 }, (i * i):totable())
    local q = i / bptt.tensor({ 2 }, "int32")
    assert.are.equal("float64", q:dtype())
    assert.are.same({ 3.5, -1.5 }, q:totable())
    assert.are.same({ { 9, -1 }, { 11, 1 } }, (i + f):totable())
    assert.are.equal("float64", (2 / i):dtype())
    assert.are.same({ 2 / 7, -2 / 3 }, (2 / i):totable())
  end)

  it("a number keeps today's meaning: a * s, a / s, s - a", function()
    local a = bptt.tensor({ 1, 2, 3 }, "float64")
    assert.are.same({ 2, 4, 6 }, (a * 2):totable())
    assert.are.same({ 0.5, 1, 1.5 }, (a / 2):totable())
    assert.are.same({ 9, 8, 7 }, (10 - a):totable())
  end)

  it("refuse shapes that do not broadcast, naming both shapes", function()
    local a = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor.__add", "2x3", "got 2" }, function() return a + bptt.zeros(2) end)
    U.error_with({ "bptt.Tensor.__div", "2x3", "got 4x3" }, function() return a / bptt.zeros(4, 3) end)
    U.error_with({ "bptt.cmul", "2x3", "got 3x2" }, bptt.cmul, a, bptt.zeros(3, 2))
    U.error_with({ "bptt.cmul", "string" }, bptt.cmul, a, "x")
    local fr = bptt.zeros(2)
    fr:free()
    U.error_with({ "bptt.cmul", "freed" }, bptt.cmul, a, fr)
  end)
end)

describe("in-place t:add, t:sub, t:mul, t:cmul, t:div", function()
  it("broadcast u into t and return self", function()
    local t = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
    assert.are.equal(t, t:add(bptt.tensor({ 10, 20, 30 }, "float64")))
    assert.are.same({ { 11, 22, 33 }, { 14, 25, 36 } }, t:totable())
    t:sub(bptt.tensor({ { 1 }, { 2 } }, "float64"), 2)
    assert.are.same({ { 9, 20, 31 }, { 10, 21, 32 } }, t:totable())
    t:cmul(bptt.tensor({ 1, 0, -1 }, "float32"))
    assert.are.same({ { 9, 0, -31 }, { 10, 0, -32 } }, t:totable())
    t:mul(bptt.tensor(2, "float64"))
    assert.are.same({ { 18, 0, -62 }, { 20, 0, -64 } }, t:totable())
    t:div(bptt.tensor({ { 2 }, { 4 } }, "float64"))
    assert.are.same({ { 9, 0, -31 }, { 5, 0, -16 } }, t:totable())
    t:sub(1):div(2)
    assert.are.same({ { 4, -0.5, -16 }, { 2, -0.5, -8.5 } }, t:totable())
  end)

  it("read a broadcast operand that is part of t itself correctly (a row of t into t)", function()
    local t = bptt.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, "float64")
    t:add(t[1])
    assert.are.same({ { 2, 4 }, { 4, 6 }, { 6, 8 } }, t:totable())
  end)

  it("refuse a u that does not broadcast to t's own shape, and writing through an expanded view", function()
    local t = bptt.zeros(3)
    U.error_with({ "bptt.Tensor:add", "u", "shape 3", "got 2x3" }, t.add, t, bptt.zeros(2, 3))
    U.error_with({ "bptt.Tensor:cmul", "u", "shape 3", "got 2" }, t.cmul, t, bptt.zeros(2))
    local i = bptt.zeros(3, "int32")
    U.error_with({ "bptt.Tensor:add", "int32", "got float32" }, i.add, i, bptt.zeros(1))
    U.error_with({ "bptt.Tensor:div", "int32" }, i.div, i, bptt.ones(1, "int32"))
    local e = bptt.zeros(1):expand(4)
    U.error_with({ "bptt.Tensor:add", "expand" }, e.add, e, 1)
    U.error_with({ "bptt.Tensor:exp", "expand" }, e.exp, e)
  end)
end)

------------------------------------------------------------------ pointwise

describe("pointwise math", function()
  local function sigmoid(x) return 1 / (1 + math.exp(-x)) end
  local function sign(x) return x > 0 and 1 or x < 0 and -1 or x end
  local function relu(x) return (x > 0 or x ~= x) and x or 0 end
  local FUNCS = {
    exp = math.exp, log = math.log, tanh = math.tanh, sigmoid = sigmoid, sqrt = math.sqrt, abs = math.abs,
    sign = sign, relu = relu,
  }
  for name, ref in pairs(FUNCS) do
    it(name .. ": bptt." .. name .. "(t) is new, t:" .. name .. "() in place, both against math", function()
      for _, dt in ipairs { "float64", "float32" } do
        local g = U.gen(3)
        local t, vals = make(g, { 3, 4 }, dt, true)
        if name == "log" or name == "sqrt" then t:abs() for i = 1, #vals do vals[i] = math.abs(vals[i]) end end
        local before = flat(t)
        local r = bptt[name](t)
        assert.are.same(before, flat(t))
        local got = flat(r)
        for i = 1, #vals do
          local want = ref(vals[i])
          assert(U.close(got[i], want, dt == "float64" and 1e-15 or 3e-7, 1e-30),
            string.format("%s %s [%d]: %.17g vs %.17g", name, dt, i, got[i], want))
        end
        assert.are.equal(t, t[name](t))
        assert.are.same(got, flat(t))
      end
    end)
  end

  it("keep NaN and the sign of zero; handle infinities", function()
    local t = bptt.tensor({ NAN, -0.0, math.huge, -math.huge }, "float64")
    local function s(x) return tostring(x) end
    assert.are.same({ "nan", "-0", "inf", "-inf" }, { s(t:get(1)) == "-nan" and "nan" or s(t:get(1)),
      s(t:get(2)), s(t:get(3)), s(t:get(4)) })
    local r = bptt.relu(t)
    assert.is_true(r:get(1) ~= r:get(1))
    assert.are.same({ 0, math.huge, 0 }, { r:get(2), r:get(3), r:get(4) })
    local sg = bptt.sigmoid(t)
    assert.are.same({ 0.5, 1, 0 }, { sg:get(2), sg:get(3), sg:get(4) })
    local th = bptt.tanh(t:to("float32"))
    assert.are.same({ 0, 1, -1 }, { th:get(2), th:get(3), th:get(4) })
    assert.is_true(bptt.sign(t):get(1) ~= bptt.sign(t):get(1))
  end)

  it("int32 takes abs, sign, relu, clamp and whole powers; the float functions name the dtype", function()
    local i = bptt.tensor({ -3, 0, 4 }, "int32")
    assert.are.same({ 3, 0, 4 }, bptt.abs(i):totable())
    assert.are.same({ -1, 0, 1 }, bptt.sign(i):totable())
    assert.are.same({ 0, 0, 4 }, bptt.relu(i):totable())
    assert.are.same({ -2, 0, 2 }, i:clone():clamp(-2.5, 2.5):totable())
    assert.are.same({ -27, 0, 64 }, i:clone():pow(3):totable())
    U.error_with({ "bptt.exp", "float32 or float64", "int32" }, bptt.exp, i)
    U.error_with({ "bptt.Tensor:log", "int32" }, i.log, i)
    U.error_with({ "bptt.Tensor:pow", "whole number" }, i.pow, i, 0.5)
    U.error_with({ "bptt.tanh", "t", "tensor" }, bptt.tanh, 3)
  end)

  it("t:pow(p), t:clamp(lo, hi) (either bound may be nil; lo > hi gives hi, as PyTorch)", function()
    local t = bptt.tensor({ -2, -0.5, 0.5, 3 }, "float64")
    assert.are.same({ 4, 0.25, 0.25, 9 }, t:clone():pow(2):totable())
    assert.are.same({ -8, -0.125, 0.125, 27 }, t:clone():pow(3):totable())
    assert.are.same({ -1, -0.5, 0.5, 1 }, t:clone():clamp(-1, 1):totable())
    assert.are.same({ -2, -0.5, 0.5, 1 }, t:clone():clamp(nil, 1):totable())
    assert.are.same({ 0, 0, 0.5, 3 }, t:clone():clamp(0):totable())
    assert.are.same({ -1, -1, -1, -1 }, t:clone():clamp(2, -1):totable())
    local n = bptt.tensor({ NAN }, "float32"):clamp(0, 1)
    assert.is_true(n:get(1) ~= n:get(1))
    U.error_with({ "bptt.Tensor:clamp", "lo", "number" }, t.clamp, t, "0")
  end)
end)

------------------------------------------------------------------ reductions

describe("reductions along a dimension", function()
  local function ref_reduce(shape, vals, dim, f)
    local out = {}
    for d = 1, #shape do if d ~= dim then out[#out + 1] = shape[d] end end
    local res = {}
    local st = strides_of(shape)
    for p = 1, U.prod(out) do
      local idx = unravel(out, p)
      local line = {}
      for k = 1, shape[dim] do
        local off, j = 0, 1
        for d = 1, #shape do
          local i
          if d == dim then i = k else i = idx[j]; j = j + 1 end
          off = off + (i - 1) * st[d]
        end
        line[k] = vals[off + 1]
      end
      res[p] = { f(line) }
    end
    return out, res
  end
  local function sum(l) local s = 0 for _, v in ipairs(l) do s = s + v end return s end
  local function maxi(l)
    local b, at = l[1], 1
    for k = 2, #l do if b == b and (l[k] > b or l[k] ~= l[k]) then b, at = l[k], k end end
    return b, at
  end
  local function mini(l)
    local b, at = l[1], 1
    for k = 2, #l do if b == b and (l[k] < b or l[k] ~= l[k]) then b, at = l[k], k end end
    return b, at
  end
  local REFS = {
    sum = sum, mean = function(l) return sum(l) / #l end,
    norm = function(l) local s = 0 for _, v in ipairs(l) do s = s + v * v end return math.sqrt(s) end,
    logsumexp = function(l)
      local m = maxi(l)
      local s = 0
      for _, v in ipairs(l) do s = s + math.exp(v - m) end
      return m + math.log(s)
    end,
    max = maxi, min = mini,
  }
  for name, ref in pairs(REFS) do
    it(string.format("t:%s(dim) agrees with plain-Lua loops over every dim of a strided 3-d tensor", name), function()
      for _, dt in ipairs { "float64", "float32" } do
        local g = U.gen(11)
        local shape = { 3, 4, 5 }
        local t, vals = make(g, shape, dt, true)
        if dt == "float32" then for i = 1, #vals do vals[i] = U.f32(vals[i]) end end
        for dim = 1, 3 do
          local out, want = ref_reduce(shape, vals, dim, ref)
          local v, ix = t[name](t, dim)
          assert.are.same(out, v:shape())
          local got = flat(v)
          for p = 1, #want do
            local w = dt == "float32" and U.f32(want[p][1]) or want[p][1]
            assert(U.close(got[p], w, dt == "float64" and 1e-13 or 1e-6),
              string.format("%s dim %d [%d]: %.17g vs %.17g", name, dim, p, got[p], want[p][1]))
          end
          if name == "max" or name == "min" then
            assert.are.equal("int32", ix:dtype())
            local gi = flat(ix)
            for p = 1, #want do assert.are.equal(want[p][2], gi[p]) end
          end
          -- negative dims count from the end; keepdim keeps a size-1 dimension
          assert.are.same(got, flat(t[name](t, dim - 4)))
          local k = t[name](t, dim, true)
          local ks = { 3, 4, 5 }
          ks[dim] = 1
          assert.are.same(ks, k:shape())
        end
      end
    end)
  end

  it("the whole-tensor forms stay Lua numbers; argmax/argmin give a flat 1-based position", function()
    local t = bptt.tensor({ { 1, 5, 2 }, { 7, 0, 7 } }, "float64")
    assert.are.equal(22, t:sum())
    assert.are.equal(7, t:max())
    assert.are.equal(4, t:argmax())
    assert.are.equal(5, t:argmin())
    assert.are.same({ 2, 1, 2 }, t:argmax(1):totable())
    assert.are.same({ 1, 2 }, t:argmin(2):totable())
    assert.is_true(math.abs(t:logsumexp() - math.log(math.exp(1) + math.exp(5) + math.exp(2) + 2 * math.exp(7)
      + 1)) < 1e-12)
  end)

  it("max and min: NaN wins and is found first; ties give the first index (PyTorch)", function()
    local t = bptt.tensor({ { 1, NAN, 3, NAN }, { 2, 2, 1, 2 } }, "float32")
    local v, i = t:max(2)
    assert.is_true(v:get(1) ~= v:get(1))
    assert.are.same({ 2, 1 }, i:totable())
    assert.are.equal(2, v:get(2))
    local _, j = t:min(2)
    assert.are.same({ 2, 3 }, j:totable())
    assert.are.equal(2, t:argmax())
  end)

  it("int32 sums stay int32; mean, norm, logsumexp and softmax want floats; empty dims", function()
    local i = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "int32")
    assert.are.equal("int32", i:sum(1):dtype())
    assert.are.same({ 4, 6 }, i:sum(1):totable())
    assert.are.same({ 2, 4 }, (i:max(2)):totable())
    U.error_with({ "bptt.Tensor:mean", "int32" }, i.mean, i, 1)
    U.error_with({ "bptt.Tensor:softmax", "int32" }, i.softmax, i, 1)
    local e = bptt.zeros(2, 0, "float64")
    assert.are.same({ 0, 0 }, e:sum(2):totable())
    local m = e:mean(2)
    assert.is_true(m:get(1) ~= m:get(1))
    assert.are.equal(-math.huge, e:logsumexp(2):get(1))
    U.error_with({ "bptt.Tensor:max", "dimension 2 is empty" }, e.max, e, 2)
    U.error_with({ "bptt.Tensor:sum", "dim", "1..2", "got 3" }, e.sum, e, 3)
    U.error_with({ "bptt.Tensor:sum", "keepdim" }, e.sum, e, 1, 1)
    U.error_with({ "bptt.Tensor:sum", "scalar" }, bptt.tensor(1).sum, bptt.tensor(1), 1)
  end)

  it("softmax and log_softmax (dim default the last) against plain Lua; -inf and large values", function()
    local g = U.gen(5)
    for _, dt in ipairs { "float64", "float32" } do
      local t, vals = make(g, { 2, 3 }, dt, true)
      for dim = 1, 2 do
        local s, ls = t:softmax(dim), t:log_softmax(dim)
        for p = 1, 6 do
          local idx = unravel({ 2, 3 }, p)
          local m, z = -math.huge, 0
          for k = 1, (dim == 1 and 2 or 3) do
            local q = dim == 1 and (k - 1) * 3 + idx[2] or (idx[1] - 1) * 3 + k
            m = math.max(m, dt == "float32" and U.f32(vals[q]) or vals[q])
          end
          for k = 1, (dim == 1 and 2 or 3) do
            local q = dim == 1 and (k - 1) * 3 + idx[2] or (idx[1] - 1) * 3 + k
            z = z + math.exp((dt == "float32" and U.f32(vals[q]) or vals[q]) - m)
          end
          local x = dt == "float32" and U.f32(vals[p]) or vals[p]
          assert(U.close(flat(s)[p], math.exp(x - m) / z, dt == "float64" and 1e-14 or 1e-6))
          assert(U.close(flat(ls)[p], x - m - math.log(z), dt == "float64" and 1e-14 or 1e-6))
        end
      end
      assert.are.same(flat(t:softmax(2)), flat(t:softmax()))
    end
    local big = bptt.tensor({ 1000, 1000, -math.huge }, "float64")
    assert.are.same({ 0.5, 0.5, 0 }, big:softmax(1):totable())
    assert.are.equal(-math.huge, big:log_softmax(1):get(3))
  end)
end)

------------------------------------------------------------------ joining

describe("bptt.cat, bptt.stack", function()
  it("join along any dim (default: cat the last, stack a new first), views and mixed dtypes", function()
    local a = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "float32")
    local b = bptt.tensor({ { 5 }, { 6 } }, "float64")
    assert.are.same({ { 1, 2, 5 }, { 3, 4, 6 } }, bptt.cat({ a, b }, 2):totable())
    assert.are.equal("float64", bptt.cat({ a, b }, 2):dtype())
    assert.are.same({ { 1, 2, 5 }, { 3, 4, 6 } }, bptt.cat({ a, b }):totable())
    assert.are.same({ { 1, 3 }, { 2, 4 }, { 1, 2 } }, bptt.cat({ a:t(), a[1]:view(1, 2) }, 1):totable())
    assert.are.same({ { { 1, 2 }, { 3, 4 } }, { { 1, 3 }, { 2, 4 } } }, bptt.stack({ a, a:t() }):totable())
    local s = bptt.stack({ a, a:t() }, 3)
    assert.are.same({ 2, 2, 2 }, s:shape())
    assert.are.same({ { { 1, 1 }, { 2, 3 } }, { { 3, 2 }, { 4, 4 } } }, s:totable())
    assert.are.same({ { 1, 2 }, { 1, 2 } }, bptt.stack({ a[1], a[1] }):totable())
    assert.are.same({ 3 }, bptt.stack({ bptt.tensor(1), bptt.tensor(2), bptt.tensor(3) }):shape())
  end)

  it("refuse mismatched shapes naming both, empty lists, non-tensors", function()
    local a = bptt.zeros(2, 3)
    U.error_with({ "bptt.cat", "tensors[2]", "2x4", "2x3" }, bptt.cat, { a, bptt.zeros(2, 4) }, 1)
    U.error_with({ "bptt.stack", "tensors[2]", "3x2", "2x3" }, bptt.stack, { a, bptt.zeros(3, 2) })
    U.error_with({ "bptt.cat", "non-empty" }, bptt.cat, {}, 1)
    U.error_with({ "bptt.cat", "tensors[2]", "tensor", "number" }, bptt.cat, { a, 3 }, 1)
    U.error_with({ "bptt.cat", "dim", "got 3" }, bptt.cat, { a, a }, 3)
    U.error_with({ "bptt.cat", "scalar" }, bptt.cat, { bptt.tensor(1) })
  end)
end)

------------------------------------------------------------------ indexing

describe("index_select, gather, scatter_add, masked_fill", function()
  it("t:index_select(dim, ids) picks slices in order, repeats allowed; ids a list, int32 or whole floats", function()
    local t = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
    assert.are.same({ { 3, 1, 3 }, { 6, 4, 6 } }, t:index_select(2, { 3, 1, 3 }):totable())
    assert.are.same({ { 4, 5, 6 } }, t:index_select(1, bptt.tensor({ 2 }, "int32")):totable())
    assert.are.same({ { 2, 1 }, { 5, 4 } }, t:t():index_select(1, bptt.tensor({ 2, 1 }, "float32")):t():totable())
    assert.are.same({ 2, 0 }, t:index_select(2, {}):shape())
    U.error_with({ "bptt.Tensor:index_select", "out of range 1..3" }, t.index_select, t, 2, { 1, 4 })
    U.error_with({ "bptt.Tensor:index_select", "ids", "whole" }, t.index_select, t, 2, bptt.tensor({ 1.5 }))
    U.error_with({ "bptt.Tensor:index_select", "ids[2]", "whole number" }, t.index_select, t, 2, { 1, "x" })
    U.error_with({ "bptt.Tensor:index_select", "1-d" }, t.index_select, t, 2, bptt.ones(1, 1, "int32"))
  end)

  it("t:gather(dim, ids) and t:scatter_add(dim, ids, src) agree with plain-Lua loops (PyTorch semantics)", function()
    local g = U.gen(9)
    local t, tv = make(g, { 3, 4 }, "float64", true)
    local ids = bptt.zeros(2, 3, "int32")
    local iv = {}
    for p = 1, 6 do iv[p] = g:int(1, 3) end
    ids:view(-1):copy(bptt.tensor(iv, "float64"))
    local r = t:gather(1, ids)
    assert.are.same({ 2, 3 }, r:shape())
    for p = 1, 6 do
      local i, j = math.floor((p - 1) / 3) + 1, (p - 1) % 3 + 1
      assert.are.equal(tv[(iv[p] - 1) * 4 + j], flat(r)[p], "gather " .. i .. "," .. j)
    end
    local acc = bptt.zeros(3, 4, "float64")
    local src = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
    acc:scatter_add(1, ids, src)
    local want = {}
    for p = 1, 12 do want[p] = 0 end
    for p = 1, 6 do
      local j = (p - 1) % 3 + 1
      want[(iv[p] - 1) * 4 + j] = want[(iv[p] - 1) * 4 + j] + flat(src)[p]
    end
    assert.are.same(want, flat(acc))
    U.error_with({ "bptt.Tensor:gather", "out of range 1..3" }, t.gather, t, 1, bptt.tensor({ { 4 } }, "int32"))
    U.error_with({ "bptt.Tensor:gather", "ids", "1x5" }, t.gather, t, 1, bptt.ones(1, 5, "int32"))
    U.error_with({ "bptt.Tensor:scatter_add", "src", "2x3", "got 3" }, acc.scatter_add, acc, 1, ids, bptt.zeros(3))
    local before = flat(acc)
    U.error_with({ "bptt.Tensor:scatter_add", "out of range" }, acc.scatter_add, acc, 2,
      bptt.tensor({ { 1, 9 } }, "int32"), bptt.ones(1, 2, "float64"))
    assert.are.same(before, flat(acc))
  end)

  it("t:masked_fill(mask, v) with a broadcast int32 mask from a comparison", function()
    local t = bptt.tensor({ { 1, -2 }, { -3, 4 } }, "float32")
    assert.are.equal(t, t:masked_fill(bptt.lt(t, 0), 0))
    assert.are.same({ { 1, 0 }, { 0, 4 } }, t:totable())
    t:masked_fill(bptt.tensor({ 1, 0 }, "int32"), 9)
    assert.are.same({ { 9, 0 }, { 9, 4 } }, t:totable())
    U.error_with({ "bptt.Tensor:masked_fill", "mask", "3", "2x2" }, t.masked_fill, t, bptt.ones(3, "int32"), 1)
    local i = bptt.zeros(2, "int32")
    U.error_with({ "bptt.Tensor:masked_fill", "whole number" }, i.masked_fill, i, bptt.ones(2, "int32"), 0.5)
  end)
end)

describe("comparisons bptt.eq, ne, lt, le, gt, ge", function()
  it("give int32 masks, broadcasting, against numbers and tensors, NaN compares unequal", function()
    local a = bptt.tensor({ { 1, 2, NAN } }, "float64")
    local b = bptt.tensor({ { 2 }, { 1 } }, "float32")
    local F = {
      eq = function(x, y) return x == y end, ne = function(x, y) return x ~= y end,
      lt = function(x, y) return x < y end, le = function(x, y) return x <= y end,
      gt = function(x, y) return x > y end, ge = function(x, y) return x >= y end,
    }
    for name, f in pairs(F) do
      local m = bptt[name](a, b)
      assert.are.equal("int32", m:dtype())
      assert.are.same({ 2, 3 }, m:shape())
      local got = flat(m)
      for p = 1, 6 do
        local i, j = math.floor((p - 1) / 3) + 1, (p - 1) % 3 + 1
        assert.are.equal(f(a:get(1, j), b:get(i, 1)) and 1 or 0, got[p], name .. " " .. p)
      end
      assert.are.same(flat(bptt[name](a, bptt.tensor(2, "float64"))), flat(bptt[name](a, 2)))
    end
    assert.are.same({ 0, 1 }, bptt.gt(bptt.tensor({ 2, 3 }, "int32"), 2.5):totable())
    U.error_with({ "bptt.gt", "string" }, bptt.gt, a, "1")
    U.error_with({ "bptt.eq", "1x3", "got 4" }, bptt.eq, a, bptt.zeros(4))
  end)
end)

------------------------------------------------------------------ ordering

describe("t:sort, t:topk", function()
  it("sort along any dim, stably, NaN last (first descending), 1-based indices", function()
    local t = bptt.tensor({ 3, 1, NAN, 2, 1 }, "float64")
    local v, i = t:sort()
    assert.are.same({ 2, 5, 4, 1, 3 }, i:totable())
    assert.are.same({ 1, 1, 2, 3 }, { v:get(1), v:get(2), v:get(3), v:get(4) })
    assert.is_true(v:get(5) ~= v:get(5))
    local dv, di = t:sort(1, true)
    assert.are.same({ 3, 1, 4, 2, 5 }, di:totable())
    assert.is_true(dv:get(1) ~= dv:get(1))
    local m = bptt.tensor({ { 3, 1 }, { 1, 2 }, { 2, 0 } }, "int32"):t():t()
    local mv, mi = m:sort(1)
    assert.are.same({ { 1, 0 }, { 2, 1 }, { 3, 2 } }, mv:totable())
    assert.are.same({ { 2, 3 }, { 3, 1 }, { 1, 2 } }, mi:totable())
  end)

  it("sort agrees with table.sort on random strided data", function()
    local g = U.gen(21)
    local t, vals = make(g, { 4, 37 }, "float32", true)
    local v = t:sort(2)
    for r = 1, 4 do
      local row = {}
      for k = 1, 37 do row[k] = U.f32(vals[(r - 1) * 37 + k]) end
      table.sort(row)
      assert.are.same(row, v[r]:totable())
    end
  end)

  it("topk(k, dim, largest) gives the k largest (smallest) in order, with indices", function()
    local t = bptt.tensor({ { 5, 1, 4, 4 }, { 0, 9, 2, 7 } }, "float64")
    local v, i = t:topk(2)
    assert.are.same({ { 5, 4 }, { 9, 7 } }, v:totable())
    assert.are.same({ { 1, 3 }, { 2, 4 } }, i:totable())
    local sv, si = t:topk(1, 1, false)
    assert.are.same({ { 0, 1, 2, 4 } }, sv:totable())
    assert.are.same({ { 2, 1, 2, 1 } }, si:totable())
    assert.are.same({ 2, 0 }, t:topk(0):shape())
    U.error_with({ "bptt.Tensor:topk", "k", "0..4", "got 5" }, t.topk, t, 5)
    U.error_with({ "bptt.Tensor:sort", "descending", "true or false" }, t.sort, t, 1, 1)
  end)
end)

------------------------------------------------------------------ making and shaping

describe("bptt.arange, bptt.linspace", function()
  it("arange as PyTorch's (end excluded); int32 for whole arguments, else float32, or the dtype asked", function()
    assert.are.same({ 0, 1, 2, 3 }, bptt.arange(4):totable())
    assert.are.equal("int32", bptt.arange(4):dtype())
    assert.are.same({ 1, 3 }, bptt.arange(1, 5, 2):totable())
    assert.are.same({ 5, 4, 3 }, bptt.arange(5, 2, -1):totable())
    assert.are.same({ 0, 0.25, 0.5, 0.75 }, bptt.arange(0, 1, 0.25):totable())
    assert.are.equal("float32", bptt.arange(0, 1, 0.25):dtype())
    assert.are.equal("float64", bptt.arange(3, "float64"):dtype())
    assert.are.same({ 0 }, bptt.arange(0):shape())
    U.error_with({ "bptt.arange", "step" }, bptt.arange, 0, 1, 0)
    U.error_with({ "bptt.arange", "end", "number" }, bptt.arange, "3")
  end)

  it("linspace(start, end, steps) hits both ends exactly", function()
    local l = bptt.linspace(-1, 1, 5, "float64")
    assert.are.same({ -1, -0.5, 0, 0.5, 1 }, l:totable())
    local x = bptt.linspace(0, 0.3, 7, "float64"):totable()
    assert.are.equal(0.3, x[7])
    assert.are.same({ 2 }, bptt.linspace(2, 5, 1):totable())
    assert.are.same({ 0 }, bptt.linspace(2, 5, 0):shape())
    U.error_with({ "bptt.linspace", "steps" }, bptt.linspace, 0, 1, -1)
  end)
end)

describe("shape views: expand, squeeze, unsqueeze, permute, reshape, repeat_", function()
  it("expand stretches size-1 and new leading dimensions without copying (stride 0)", function()
    local c = bptt.tensor({ { 1 }, { 2 } }, "float64")
    local e = c:expand(3, 2, 4)
    assert.are.same({ 3, 2, 4 }, e:shape())
    assert.are.same({ 0, 1, 0 }, e:stride())
    assert.are.same({ { 1, 1, 1, 1 }, { 2, 2, 2, 2 } }, e[3]:totable())
    assert.are.same({ 2, 5 }, c:expand(-1, 5):shape())
    c:set(1, 1, 7)
    assert.are.equal(7, e:get(2, 1, 3))
    U.error_with({ "bptt.Tensor:expand", "2x1", "3x4" }, c.expand, c, 3, 4)
  end)

  it("squeeze drops size-1 dimensions (all, or the one named); unsqueeze adds one", function()
    local t = bptt.zeros(1, 3, 1, 2)
    assert.are.same({ 3, 2 }, t:squeeze():shape())
    assert.are.same({ 1, 3, 2 }, t:squeeze(3):shape())
    assert.are.same({ 1, 3, 1, 2 }, t:squeeze(2):shape())
    assert.are.same({ 3, 1, 2 }, t:squeeze(-4):shape())
    local v = bptt.tensor({ 1, 2, 3 })
    assert.are.same({ 1, 3 }, v:unsqueeze(1):shape())
    assert.are.same({ 3, 1 }, v:unsqueeze(2):shape())
    assert.are.same({ 3, 1 }, v:unsqueeze(-1):shape())
    assert.are.same({ 1 }, bptt.tensor(5):unsqueeze(1):shape())
    local u = v:unsqueeze(1)
    u:set(1, 2, 9)
    assert.are.equal(9, v:get(2))
    U.error_with({ "bptt.Tensor:unsqueeze", "dim", "1..2", "got 3" }, v.unsqueeze, v, 3)
  end)

  it("permute reorders dimensions as a view; reshape views when it can and copies when it must", function()
    local g = U.gen(4)
    local t, vals = make(g, { 2, 3, 4 }, "float64", false)
    local p = t:permute(3, 1, 2)
    assert.are.same({ 4, 2, 3 }, p:shape())
    for _, idx in ipairs { { 1, 1, 1 }, { 4, 2, 3 }, { 2, 1, 3 } } do
      assert.are.equal(t:get(idx[2], idx[3], idx[1]), p:get(idx[1], idx[2], idx[3]))
    end
    assert.are.same(p:shape(), t:permute { 3, 1, 2 }:shape())
    local r = t:reshape(6, -1)
    assert.are.same({ 6, 4 }, r:shape())
    r:set(1, 1, 42)
    assert.are.equal(42, t:get(1, 1, 1)) -- a view
    local q = p:reshape(-1)
    q:set(1, -1)
    assert.are.equal(42, t:get(1, 1, 1)) -- a copy
    assert.are.equal(p:get(1, 2, 1), q:get(4))
    assert.are.equal(vals[2], t:get(1, 1, 2))
    U.error_with({ "bptt.Tensor:permute", "twice" }, t.permute, t, 1, 1, 2)
    U.error_with({ "bptt.Tensor:permute", "3 dimensions", "got 2" }, t.permute, t, 1, 2)
    U.error_with({ "bptt.Tensor:reshape", "5", "2x3x4" }, t.reshape, t, 5)
  end)

  it("repeat_ tiles (Torch7's repeatTensor, PyTorch's repeat), extra counts add leading dimensions", function()
    local t = bptt.tensor({ { 1, 2 } }, "int32")
    assert.are.same({ { 1, 2, 1, 2 }, { 1, 2, 1, 2 } }, t:repeat_(2, 2):totable())
    assert.are.same({ 3, 1, 2 }, t:repeat_(3, 1, 1):shape())
    assert.are.same({ { 1, 1 }, { 2, 2 } }, t:t():repeat_(1, 2):totable())
    U.error_with({ "bptt.Tensor:repeat_", "at least 2" }, t.repeat_, t, 2)
  end)
end)

------------------------------------------------------------------ slicing

describe("slicing sugar t[i], t[{...}]", function()
  it("t[i] is a view of slice i of the first dimension; negative from the end; methods still work", function()
    local t = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
    assert.are.same({ 4, 5, 6 }, t[2]:totable())
    assert.are.same({ 4, 5, 6 }, t[-1]:totable())
    assert.are.equal(3, t[1][3]:get())
    assert.are.equal(0, t[1][3]:dim())
    t[1]:fill(0)
    assert.are.same({ 0, 0, 0 }, t[1]:totable())
    assert.are.equal("function", type(t.shape))
    assert.is_nil(t.no_such_method)
    assert.are.same({ 2, 3 }, t:shape())
  end)

  it("t[{i, {a, b}}] ranges as Torch7: a number selects, {a, b} narrows, {a} keeps, {} takes all", function()
    local t = bptt.arange(24, "float64"):view(2, 3, 4)
    assert.are.same({ 16, 17, 18 }, t[{ 2, 2, { 1, 3 } }]:totable())
    assert.are.same({ 2, 1, 4 }, t[{ {}, { 2 } }]:shape())
    assert.are.same({ { 3, 7, 11 }, { 15, 19, 23 } }, t[{ {}, {}, -1 }]:totable())
    assert.are.same({ 2, 0, 4 }, t[{ {}, { 3, 2 } }]:shape())
    assert.are.same({ 2, 3, 4 }, t[{}]:shape())
  end)

  it("assignment through views: t[i] = number, t[{...}] = tensor (broadcast, converted)", function()
    local t = bptt.zeros(3, 2, "float64")
    t[2] = 7
    assert.are.same({ { 0, 0 }, { 7, 7 }, { 0, 0 } }, t:totable())
    t[{ { 1, 2 } }] = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "float32")
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 0, 0 } }, t:totable())
    t[{ {}, 2 }] = bptt.tensor(9, "int32")
    assert.are.same({ { 1, 9 }, { 3, 9 }, { 0, 9 } }, t:totable())
    t[{ 3, {} }] = bptt.tensor({ 5, 6 })
    assert.are.same({ 5, 6 }, t[3]:totable())
  end)

  it("refuses indices out of range, bad items, bad values, with the dimension", function()
    local t = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor: index", "dimension 1", "size 2" }, function() return t[3] end)
    U.error_with({ "bptt.Tensor: index", "dimension 2" }, function() return t[{ 1, { 1, 4 } }] end)
    U.error_with({ "bptt.Tensor: index", "dimension 1", "string" }, function() return t[{ "a" }] end)
    U.error_with({ "bptt.Tensor: index", "3 items for a 2-d" }, function() return t[{ 1, 1, 1 }] end)
    U.error_with({ "bptt.Tensor: index", "0.5" }, function() return t[0.5] end)
    U.error_with({ "scalar" }, function() return bptt.tensor(1)[1] end)
    U.error_with({ "assignment", "value", "2", "slice's shape 3" }, function() t[1] = bptt.zeros(2) end)
    U.error_with({ "assignment", "slice keys" }, function() t.x = 1 end)
    U.error_with({ "assignment", "int32" }, function() bptt.zeros(2, "int32")[1] = 0.5 end)
  end)
end)

------------------------------------------------------------------ printing

describe("printing: tostring(t:shape()), bptt.info", function()
  it("shapes print like the table constructor", function()
    assert.are.equal("{3, 4}", tostring(bptt.zeros(3, 4):shape()))
    assert.are.equal("{}", tostring(bptt.tensor(1):shape()))
    assert.are.equal("{2, 1}", tostring(bptt.zeros(2, 1):size()))
  end)

  it("bptt.info tells dtype, shape, strides, contiguity, storage bytes, min/max/mean of the non-NaNs, NaNs", function()
    local base = bptt.tensor({ { 1, NAN, 3 }, { -4, 5, 6 } }, "float64")
    local i = bptt.info(base:t())
    assert.are.equal("float64", i.dtype)
    assert.are.same({ 3, 2 }, i.shape)
    assert.are.same({ 1, 3 }, i.stride)
    assert.is_false(i.contiguous)
    assert.are.equal(48, i.storage_bytes)
    assert.are.equal(6, i.numel)
    assert.are.equal(-4, i.min)
    assert.are.equal(6, i.max)
    assert.are.equal(11 / 5, i.mean)
    assert.are.equal(1, i.nan)
    local s = tostring(i)
    for _, k in ipairs { "dtype", "float64", "shape", "{3, 2}", "stride", "contiguous", "storage_bytes", "nan" } do
      assert.truthy(s:find(k, 1, true), s)
    end
    -- an expand()ed view of 4e12 elements: printed and described from the elements it repeats
    local big = bptt.tensor({ { NAN, 2 } }, "float64"):expand(2e12, 2)
    assert.truthy(tostring(big):find("of size 2000000000000x2", 1, true))
    local bi = bptt.info(big)
    assert.are.same({ 2e12, 2e12, 2, 2 }, { bi.nan, bi.numel / 2, bi.min, bi.max })
    local e = bptt.info(bptt.zeros(0))
    assert.is_true(e.mean ~= e.mean)
    U.error_with({ "bptt.info", "t", "tensor" }, bptt.info, 1)
  end)
end)

------------------------------------------------------------------ threads

describe("the thread team", function()
  it("gives the same bits on 1 and 2 threads for large broadcasts, pointwise math and reductions", function()
    local threads = bptt.num_threads()
    finally(function() bptt.set_num_threads(threads) end)
    local function run()
      bptt.manual_seed(5)
      local a = bptt.randn(300, 257)
      local b = bptt.randn(257)
      local c = (a + b) * b
      local d = bptt.tanh(a):add(bptt.sigmoid(a)):exp()
      local s = a:sum(2)
      local m, mi = a:max(1)
      local sm = a:softmax(1)
      local sv = a:sort(2)
      return { c, d, s, m, mi, sm, sv }
    end
    bptt.set_num_threads(1)
    local one = run()
    bptt.set_num_threads(2)
    local two = run()
    for k = 1, #one do
      assert.is_true(bptt.eq(one[k], two[k]):min() == 1, "result " .. k)
    end
  end)
end)
