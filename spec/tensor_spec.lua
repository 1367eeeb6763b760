-- The tensor contract (API.md, "Tensors"): constructors, shape queries,
-- element access, copies, views sharing storage, arithmetic, reductions,
-- matmul, printing, freeing, threads.  Inputs come from a seeded plain-Lua
-- generator and results are checked against plain-Lua references.
local bptt = require "bptt"
local U = require "helpers.tensor_util"

local DTYPES = { "float32", "float64", "int32" }
local FLOATS = { "float32", "float64" }

-- random nested table of whole numbers (exact in every dtype)
local function whole_table(g, shape)
  return U.nested(shape, function() return g:int(-50, 50) end)
end

-- random nested table of doubles in [-2, 2)
local function real_table(g, shape)
  return U.nested(shape, function() return g:value() end)
end

local function shape_str(shape) return table.concat(shape, "x") end

describe("bptt.tensor", function()
  it("builds 0-d to 8-d tensors from nested tables, float32 by default", function()
    local g = U.gen(11)
    for nd = 0, 8 do
      local shape = {}
      for d = 1, nd do shape[d] = g:int(1, nd <= 4 and 4 or 2) end
      local tbl = whole_table(g, shape)
      local t = bptt.tensor(tbl)
      assert.are.equal("float32", t:dtype())
      assert.are.equal(nd, t:dim())
      assert.are.same(shape, t:shape())
      assert.are.same(tbl, t:totable())
    end
  end)

  it("takes the dtype float32, float64 or int32", function()
    for _, dt in ipairs(DTYPES) do
      local t = bptt.tensor({ { 1, -2 }, { 3, 2147483647 - (dt == "float32" and 127 or 0) } }, dt)
      assert.are.equal(dt, t:dtype())
      assert.are.equal(-2, t:get(1, 2))
    end
    assert.are.equal(2147483647, bptt.tensor({ 2147483647 }, "int32"):get(1))
    assert.are.equal(-2147483648, bptt.tensor({ -2147483648 }, "int32"):get(1))
  end)

  it("keeps float64 values exactly and rounds float32 values to float32", function()
    local x = 0.1
    assert.are.equal(x, bptt.tensor({ x }, "float64"):get(1))
    local f = bptt.tensor({ x }):get(1)
    assert.are_not.equal(x, f)
    assert.is_true(math.abs(f - x) < 1e-8)
    assert.are.equal(16777217, bptt.tensor({ 16777217 }, "float64"):get(1))
    assert.are.equal(16777216, bptt.tensor({ 16777217 }, "float32"):get(1))
  end)

  it("makes a 0-d tensor from a number and an empty one from {}", function()
    local s = bptt.tensor(3.5)
    assert.are.equal(0, s:dim())
    assert.are.same({}, s:shape())
    assert.are.equal(1, s:numel())
    assert.are.equal(3.5, s:get())
    assert.are.equal(3.5, s:totable())
    local e = bptt.tensor({})
    assert.are.same({ 0 }, e:shape())
    assert.are.equal(0, e:numel())
    assert.are.same({}, e:totable())
    local e2 = bptt.tensor({ {}, {} }, "float64")
    assert.are.same({ 2, 0 }, e2:shape())
    assert.are.same({ {}, {} }, e2:totable())
  end)

  it("rejects ragged tables, naming the element", function()
    U.error_with({ "bptt.tensor", "not rectangular", "[2]", "2 values" }, bptt.tensor, { { 1, 2 }, { 3 } })
    U.error_with({ "bptt.tensor", "[2]", "must be a number", "table" }, bptt.tensor, { 1, { 2 } })
    U.error_with({ "bptt.tensor", "[2]", "must be a table", "number" }, bptt.tensor, { { 1 }, 2 }, "float64")
    U.error_with({ "bptt.tensor", "[2][1]", "must be a number", "string" }, bptt.tensor, { { 1 }, { "x" } })
  end)

  it("rejects a non-table, a bad dtype and more than 8 dimensions", function()
    U.error_with({ "bptt.tensor", "tbl", "table", "string" }, bptt.tensor, "1,2")
    U.error_with({ "bptt.tensor", "tbl", "table", "no value" }, bptt.tensor)
    U.error_with({ "bptt.tensor", "dtype", "\"float16\"" }, bptt.tensor, { 1 }, "float16")
    U.error_with({ "bptt.tensor", "dtype", "number" }, bptt.tensor, { 1 }, 32)
    U.error_with({ "bptt.tensor", "8 dimensions" }, bptt.tensor, { { { { { { { { { 1 } } } } } } } } })
  end)

  it("accepts only whole numbers in int32 range for int32", function()
    U.error_with({ "bptt.tensor", "[1][2]", "whole number", "int32", "1.5" }, bptt.tensor, { { 1, 1.5 } }, "int32")
    U.error_with({ "bptt.tensor", "int32", "2147483648" }, bptt.tensor, { 2147483648 }, "int32")
    U.error_with({ "bptt.tensor", "int32" }, bptt.tensor, { -2147483649 }, "int32")
    U.error_with({ "bptt.tensor", "int32" }, bptt.tensor, { 0 / 0 }, "int32")
    U.error_with({ "bptt.tensor", "int32" }, bptt.tensor, { 1 / 0 }, "int32")
  end)
end)

describe("bptt.zeros, bptt.ones", function()
  it("make tensors of any shape up to 8-d, from sizes or a table of sizes", function()
    for nd = 0, 8 do
      local shape = {}
      for d = 1, nd do shape[d] = (d % 3) + 1 end
      for _, dt in ipairs(DTYPES) do
        local args = { unpack(shape) }
        args[#args + 1] = dt
        local z = bptt.zeros(unpack(args, 1, nd + 1))
        local o = bptt.ones(shape, dt)
        assert.are.same(shape, z:shape())
        assert.are.same(shape, o:shape())
        assert.are.equal(dt, z:dtype())
        assert.are.equal(dt, o:dtype())
        assert.are.equal(0, z:sum())
        assert.are.equal(U.prod(shape), o:sum())
      end
    end
    assert.are.equal("float32", bptt.zeros(2):dtype())
    assert.are.equal(0, bptt.ones():dim())
    assert.are.equal(1, bptt.ones():get())
  end)

  it("make empty tensors when a size is 0", function()
    local z = bptt.zeros(3, 0, 2)
    assert.are.same({ 3, 0, 2 }, z:shape())
    assert.are.equal(0, z:numel())
    assert.are.same({ {}, {}, {} }, z:totable())
  end)

  it("reject bad sizes and dtypes, naming the function", function()
    U.error_with({ "bptt.zeros", "size", "0..", "-1" }, bptt.zeros, 2, -1)
    U.error_with({ "bptt.ones", "size", "whole number", "2.5" }, bptt.ones, 2.5)
    U.error_with({ "bptt.zeros", "at most 8 dimensions" }, bptt.zeros, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    U.error_with({ "bptt.ones", "at most 8 dimensions" }, bptt.ones, { 1, 1, 1, 1, 1, 1, 1, 1, 1 })
    U.error_with({ "bptt.zeros", "size", "string" }, bptt.zeros, { 2, "3" })
    U.error_with({ "bptt.zeros", "dtype", "\"int64\"" }, bptt.zeros, 2, "int64")
    U.error_with({ "bptt.ones", "dtype", "table" }, bptt.ones, 2, {})
    U.error_with({ "bptt.zeros" }, bptt.zeros, 2, "float32", 3)
    U.error_with({ "bptt.zeros" }, bptt.zeros, 2, nil, 3)
  end)

  it("report a byte size that overflows 64 bits as an error, not a crash", function()
    U.error_with({ "bptt.zeros", "2147483648x2147483648", "float32", "overflow" }, bptt.zeros, 2 ^ 31, 2 ^ 31)
    U.error_with({ "bptt.ones", "overflow" }, bptt.ones, 2 ^ 62 / 2 ^ 31, 2 ^ 31, "float64")
    U.error_with({ "bptt.zeros", "overflow" }, bptt.zeros, 2 ^ 53, 2 ^ 53, 2 ^ 53)
    U.error_with({ "bptt.zeros", "overflow" }, bptt.zeros, 2 ^ 20, 2 ^ 20, 2 ^ 20, 2 ^ 20, 0 + 1)
    U.error_with({ "bptt.randn", "overflow" }, bptt.randn, 2 ^ 40, 2 ^ 40)
    -- a huge size that is not a representable whole number is refused before any arithmetic
    U.error_with({ "bptt.zeros", "size", "0..9007199254740992", "9.2233720368548e+18" }, bptt.zeros, 2 ^ 63)
  end)

  it("report a size too large to allocate as an error, not a crash", function()
    -- 2^62 bytes: no overflow, but no machine has it
    U.error_with({ "bptt.zeros", "1099511627776x1048576", "float32", "out of memory" }, bptt.zeros, 2 ^ 40, 2 ^ 20)
    U.error_with({ "bptt.ones", "int32", "out of memory" }, bptt.ones, 2 ^ 40, 2 ^ 20, "int32")
    U.error_with({ "bptt.randn", "out of memory" }, bptt.randn, 2 ^ 50, "float64")
  end)
end)

describe("bptt.randn, bptt.rand", function()
  it("make float32 or float64 tensors of the given shape", function()
    for _, f in ipairs({ bptt.randn, bptt.rand }) do
      assert.are.same({ 2, 3, 4 }, f(2, 3, 4):shape())
      assert.are.equal("float64", f({ 5 }, "float64"):dtype())
      assert.are.equal("float32", f(5):dtype())
      assert.are.equal(0, f():dim())
      assert.are.equal(0, f(0, 4):numel())
    end
  end)

  it("refuse int32 and bad sizes", function()
    U.error_with({ "bptt.randn", "dtype", "int32" }, bptt.randn, 3, "int32")
    U.error_with({ "bptt.rand", "dtype", "int32" }, bptt.rand, 3, "int32")
    U.error_with({ "bptt.rand", "size" }, bptt.rand, -3)
  end)
end)

describe("t:shape, t:size, t:dim, t:numel, t:dtype", function()
  it("describe the tensor", function()
    local t = bptt.zeros(2, 3, 5, "float64")
    assert.are.same({ 2, 3, 5 }, t:shape())
    assert.are.equal(2, t:size(1))
    assert.are.equal(3, t:size(2))
    assert.are.equal(5, t:size(3))
    assert.are.equal(3, t:dim())
    assert.are.equal(30, t:numel())
    assert.are.equal("float64", t:dtype())
  end)

  it("shape returns a fresh table each time", function()
    local t = bptt.zeros(2, 3)
    local s = t:shape()
    s[1] = 99
    assert.are.same({ 2, 3 }, t:shape())
  end)

  it("size checks k against the dimensions", function()
    local t = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor:size", "k", "1..2", "3" }, t.size, t, 3)
    U.error_with({ "bptt.Tensor:size", "k", "0" }, t.size, t, 0)
    U.error_with({ "bptt.Tensor:size", "k", "string" }, t.size, t, "1")
    U.error_with({ "bptt.Tensor:size", "scalar" }, bptt.tensor(1).size, bptt.tensor(1), 1)
  end)

  it("are methods of tensors only", function()
    local t = bptt.zeros(2)
    U.error_with({ "bptt.Tensor:shape", "self", "tensor", "table" }, t.shape, {})
    U.error_with({ "bptt.Tensor:numel", "self", "tensor", "no value" }, t.numel)
    U.error_with({ "bptt.Tensor:dtype", "self", "tensor", "number" }, t.dtype, 3)
  end)
end)

describe("t:get, t:set", function()
  it("read and write elements by 1-based indices in every dtype", function()
    local g = U.gen(5)
    for _, dt in ipairs(DTYPES) do
      local t = bptt.zeros(3, 4, 2, dt)
      local want = whole_table(g, { 3, 4, 2 })
      for i = 1, 3 do
        for j = 1, 4 do
          for k = 1, 2 do assert.are.equal(t, t:set(i, j, k, want[i][j][k])) end
        end
      end
      assert.are.same(want, t:totable())
      assert.are.equal(want[3][4][2], t:get(3, 4, 2))
      assert.are.equal(want[1][2][1], t:get(1, 2, 1))
    end
  end)

  it("take no index on a 0-d tensor", function()
    local s = bptt.tensor(2)
    s:set(7)
    assert.are.equal(7, s:get())
  end)

  it("check bounds, index count and value, naming the index", function()
    local t = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor:get", "index 2", "1..3", "4" }, t.get, t, 1, 4)
    U.error_with({ "bptt.Tensor:get", "index 1", "1..2", "0" }, t.get, t, 0, 1)
    U.error_with({ "bptt.Tensor:get", "index 1", "whole number", "1.5" }, t.get, t, 1.5, 1)
    U.error_with({ "bptt.Tensor:get", "expected 2 indices", "got 1" }, t.get, t, 1)
    U.error_with({ "bptt.Tensor:get", "expected 2 indices", "got 3" }, t.get, t, 1, 1, 1)
    U.error_with({ "bptt.Tensor:set", "index 2", "1..3", "-1" }, t.set, t, 1, -1, 5)
    U.error_with({ "bptt.Tensor:set", "2 indices and a value" }, t.set, t, 1, 5)
    U.error_with({ "bptt.Tensor:set", "value", "number", "string" }, t.set, t, 1, 1, "5")
    U.error_with({ "bptt.Tensor:get", "dimension 2 is empty" }, bptt.zeros(2, 0).get, bptt.zeros(2, 0), 1, 1)
  end)

  it("keep int32 whole and in range", function()
    local t = bptt.zeros(2, "int32")
    U.error_with({ "bptt.Tensor:set", "whole number", "int32", "0.5" }, t.set, t, 1, 0.5)
    U.error_with({ "bptt.Tensor:set", "int32", "2147483648" }, t.set, t, 1, 2 ^ 31)
    U.error_with({ "bptt.Tensor:set", "int32" }, t.set, t, 1, 0 / 0)
    assert.are.same({ 0, 0 }, t:totable())
    t:set(2, -2 ^ 31)
    assert.are.equal(-2 ^ 31, t:get(2))
  end)
end)

describe("t:totable", function()
  it("is the inverse of bptt.tensor for random shapes and dtypes", function()
    local g = U.gen(17)
    for _ = 1, 30 do
      local nd = g:int(1, 6)
      local shape = {}
      for d = 1, nd do shape[d] = g:int(1, 3) end
      for _, dt in ipairs(DTYPES) do
        local tbl = whole_table(g, shape)
        assert.are.same(tbl, bptt.tensor(tbl, dt):totable())
      end
      local reals = real_table(g, shape)
      assert.are.same(reals, bptt.tensor(reals, "float64"):totable())
    end
  end)

  it("reads views in their logical order", function()
    local t = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, t:t():totable())
    assert.are.same({ 2, 5 }, t:select(2, 2):totable())
    assert.are.same({ { 2, 3 }, { 5, 6 } }, t:narrow(2, 2, 2):totable())
  end)
end)

describe("t:clone", function()
  it("copies into new storage with the same dtype and values", function()
    for _, dt in ipairs(DTYPES) do
      local t = bptt.tensor({ { 1, 2 }, { 3, 4 } }, dt)
      local c = t:clone()
      assert.are.equal(dt, c:dtype())
      assert.are.same(t:totable(), c:totable())
      c:set(1, 1, 9)
      assert.are.equal(1, t:get(1, 1))
    end
  end)

  it("makes a view contiguous", function()
    local t = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    local c = t:t():clone()
    assert.are.same({ 3, 2 }, c:shape())
    assert.are.same({ 2, 1 }, c:stride())
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, c:totable())
    assert.are.same({ 1, 4 }, t:select(2, 1):clone():totable())
  end)
end)

describe("t:copy", function()
  it("copies values between tensors of one shape and returns self", function()
    local a = bptt.zeros(2, 3)
    local b = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.are.equal(a, a:copy(b))
    assert.are.same(b:totable(), a:totable())
    b:set(1, 1, 7)
    assert.are.equal(1, a:get(1, 1))
  end)

  it("converts between every pair of dtypes", function()
    local vals = { -3, 0, 2, 1000, -70000 }
    for _, from in ipairs(DTYPES) do
      for _, to in ipairs(DTYPES) do
        local dst = bptt.zeros(#vals, to)
        dst:copy(bptt.tensor(vals, from))
        assert.are.same(vals, dst:totable())
      end
    end
    -- float64 -> float32 rounds; float32 -> float64 is exact
    local d = bptt.tensor({ 0.1, 1 / 3 }, "float64")
    local f = bptt.zeros(2):copy(d)
    assert.are.equal(U.f32(0.1), f:get(1))
    assert.are.equal(U.f32(1 / 3), f:get(2))
    assert.are.same(f:totable(), bptt.zeros(2, "float64"):copy(f):totable())
  end)

  it("converts floats to int32 by truncation toward zero, and refuses values int32 cannot hold", function()
    local i = bptt.zeros(4, "int32"):copy(bptt.tensor({ 1.9, -1.9, 2.5, -0.5 }, "float64"))
    assert.are.same({ 1, -1, 2, 0 }, i:totable())
    local dst = bptt.zeros(3, "int32")
    U.error_with({ "bptt.Tensor:copy", "int32" }, dst.copy, dst, bptt.tensor({ 1, 0 / 0, 2 }))
    U.error_with({ "bptt.Tensor:copy", "int32" }, dst.copy, dst, bptt.tensor({ 1, 1 / 0, 2 }))
    U.error_with({ "bptt.Tensor:copy", "int32" }, dst.copy, dst, bptt.tensor({ 1, 3e9, 2 }, "float64"))
    assert.are.same({ 0, 0, 0 }, dst:totable())
  end)

  it("reads and writes strided views", function()
    local g = U.gen(23)
    local base = bptt.tensor(whole_table(g, { 4, 5 }), "float64")
    local dst = bptt.zeros(5, 4, "float32")
    dst:copy(base:t())
    assert.are.same(U.transpose(base:totable()), dst:totable())
    local col = bptt.zeros(4, 5)
    col:select(2, 3):copy(base:select(2, 1))
    assert.are.same(base:select(2, 1):totable(), col:select(2, 3):totable())
    assert.are.equal(0, col:select(2, 1):sum())
  end)

  it("gives the right answer when source and destination overlap in one storage", function()
    local t = bptt.tensor({ 1, 2, 3, 4, 5, 6 })
    t:narrow(1, 2, 5):copy(t:narrow(1, 1, 5))
    assert.are.same({ 1, 1, 2, 3, 4, 5 }, t:totable())
    t = bptt.tensor({ 1, 2, 3, 4, 5, 6 })
    t:narrow(1, 1, 5):copy(t:narrow(1, 2, 5))
    assert.are.same({ 2, 3, 4, 5, 6, 6 }, t:totable())
    local m = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } }, "int32")
    m:copy(m:t())
    assert.are.same({ { 1, 4, 7 }, { 2, 5, 8 }, { 3, 6, 9 } }, m:totable())
    m:copy(m)
    assert.are.same({ { 1, 4, 7 }, { 2, 5, 8 }, { 3, 6, 9 } }, m:totable())
  end)

  it("rejects another shape and a non-tensor", function()
    local a = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor:copy", "src", "shape 2x3", "got 3x2" }, a.copy, a, bptt.zeros(3, 2))
    U.error_with({ "bptt.Tensor:copy", "src", "2x3", "got 6" }, a.copy, a, bptt.zeros(6))
    U.error_with({ "bptt.Tensor:copy", "src", "tensor", "table" }, a.copy, a, { 1, 2, 3 })
  end)
end)

describe("t:fill, t:zero", function()
  it("set every element and return self", function()
    for _, dt in ipairs(DTYPES) do
      local t = bptt.zeros(3, 2, dt)
      assert.are.equal(t, t:fill(7))
      assert.are.equal(42, t:sum())
      assert.are.equal(t, t:zero())
      assert.are.equal(0, t:sum())
      assert.are.equal(0, t:norm())
    end
  end)

  it("write through views only where the view reaches", function()
    local t = bptt.zeros(3, 4)
    t:select(2, 2):fill(1)
    t:narrow(1, 3, 1):fill(2)
    assert.are.same({ { 0, 1, 0, 0 }, { 0, 1, 0, 0 }, { 2, 2, 2, 2 } }, t:totable())
    t:t():select(1, 4):zero()
    assert.are.same({ { 0, 1, 0, 0 }, { 0, 1, 0, 0 }, { 2, 2, 2, 0 } }, t:totable())
  end)

  it("refuse a value an int32 tensor cannot hold, and a non-number", function()
    local t = bptt.zeros(2, "int32")
    U.error_with({ "bptt.Tensor:fill", "whole number", "int32", "0.5" }, t.fill, t, 0.5)
    U.error_with({ "bptt.Tensor:fill", "int32" }, t.fill, t, 2 ^ 40)
    U.error_with({ "bptt.Tensor:fill", "v", "number", "string" }, t.fill, t, "1")
    assert.are.same({ 0, 0 }, t:totable())
    local f = bptt.zeros(2)
    f:fill(0 / 0)
    assert.is_true(f:get(1) ~= f:get(1))
  end)
end)

describe("t:to", function()
  it("converts to a new tensor of another dtype", function()
    local t = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "int32")
    local d = t:to("float64")
    assert.are.equal("float64", d:dtype())
    assert.are.same(t:totable(), d:totable())
    d:set(1, 1, 5)
    assert.are.equal(1, t:get(1, 1))
    assert.are.same({ 1, 3 }, t:t():to("float32"):select(1, 1):totable())
    U.error_with({ "bptt.Tensor:to", "dtype" }, t.to, t)
    U.error_with({ "bptt.Tensor:to", "dtype", "\"double\"" }, t.to, t, "double")
    U.error_with({ "bptt.Tensor:to", "int32" }, bptt.tensor({ 1e10 }, "float64").to,
      bptt.tensor({ 1e10 }, "float64"), "int32")
  end)
end)

describe("t:view", function()
  it("reshapes a contiguous tensor and shares its storage", function()
    local t = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    local v = t:view(3, 2)
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, v:totable())
    v:set(3, 1, 50)
    assert.are.equal(50, t:get(2, 2))
    t:set(1, 1, 10)
    assert.are.equal(10, v:get(1, 1))
    assert.are.same({ 6 }, t:view(6):shape())
    assert.are.same({ 1, 2, 1, 3, 1 }, t:view({ 1, 2, 1, 3, 1 }):shape())
    assert.are.same({ 2, 3 }, t:view(6):view(2, 3):shape())
  end)

  it("infers one size given as -1", function()
    local t = bptt.zeros(4, 6)
    assert.are.same({ 3, 8 }, t:view(-1, 8):shape())
    assert.are.same({ 2, 3, 4 }, t:view(2, -1, 4):shape())
    assert.are.same({ 24 }, t:view(-1):shape())
  end)

  it("makes 0-d and empty views", function()
    local s = bptt.tensor({ 5 }):view()
    assert.are.equal(0, s:dim())
    assert.are.equal(5, s:get())
    assert.are.same({ 0, 7 }, bptt.zeros(0):view(0, 7):shape())
  end)

  it("refuses a different element count, two -1 and a non-contiguous self", function()
    local t = bptt.zeros(4, 6)
    U.error_with({ "bptt.Tensor:view", "5x5", "4x6" }, t.view, t, 5, 5)
    U.error_with({ "bptt.Tensor:view", "-1" }, t.view, t, -1, -1)
    U.error_with({ "bptt.Tensor:view", "-1", "24", "5" }, t.view, t, -1, 5)
    U.error_with({ "bptt.Tensor:view", "size", "-2" }, t.view, t, -2, -12)
    U.error_with({ "bptt.Tensor:view", "contiguous" }, t:t().view, t:t(), 24)
    U.error_with({ "bptt.Tensor:view", "contiguous" }, t:narrow(2, 1, 3).view, t:narrow(2, 1, 3), 12)
    U.error_with({ "bptt.Tensor:view", "8 dimensions" }, t.view, t, 1, 1, 1, 1, 1, 1, 1, 4, 6)
  end)
end)

describe("t:narrow", function()
  it("takes a block along any dimension, sharing storage", function()
    local g = U.gen(29)
    local shape = { 3, 4, 5, 2 }
    local tbl = whole_table(g, shape)
    for dim = 1, 4 do
      local t = bptt.tensor(tbl, "float64")
      local start = 2
      local len = shape[dim] - 1
      local n = t:narrow(dim, start, len)
      local want_shape = { unpack(shape) }
      want_shape[dim] = len
      assert.are.same(want_shape, n:shape())
      -- every element of the view is the parent's element at the shifted index
      local g2 = U.gen(dim)
      for _ = 1, 20 do
        local idx = {}
        for d = 1, 4 do idx[d] = g2:int(1, want_shape[d]) end
        local pidx = { unpack(idx) }
        pidx[dim] = pidx[dim] + start - 1
        assert.are.equal(t:get(unpack(pidx)), n:get(unpack(idx)))
        n:set(idx[1], idx[2], idx[3], idx[4], 1000)
        assert.are.equal(1000, t:get(unpack(pidx)))
      end
    end
  end)

  it("allows an empty block and a block at the end", function()
    local t = bptt.tensor({ 1, 2, 3 })
    assert.are.equal(0, t:narrow(1, 4, 0):numel())
    assert.are.same({ 3 }, t:narrow(1, 3, 1):totable())
    assert.are.same({ 1, 2, 3 }, t:narrow(1, 1, 3):totable())
  end)

  it("checks dim, start and len", function()
    local t = bptt.zeros(3, 4)
    U.error_with({ "bptt.Tensor:narrow", "dim", "1..2", "3" }, t.narrow, t, 3, 1, 1)
    U.error_with({ "bptt.Tensor:narrow", "start", "1..5", "0" }, t.narrow, t, 2, 0, 1)
    U.error_with({ "bptt.Tensor:narrow", "start", "6" }, t.narrow, t, 2, 6, 0)
    U.error_with({ "bptt.Tensor:narrow", "len", "0..2", "3" }, t.narrow, t, 2, 3, 3)
    U.error_with({ "bptt.Tensor:narrow", "len", "no value" }, t.narrow, t, 2, 3)
    U.error_with({ "bptt.Tensor:narrow", "scalar" }, bptt.tensor(1).narrow, bptt.tensor(1), 1, 1, 1)
  end)
end)

describe("t:select", function()
  it("drops a dimension at an index, on any dimension, sharing storage", function()
    local g = U.gen(31)
    local shape = { 2, 3, 4 }
    local t = bptt.tensor(whole_table(g, shape), "int32")
    for dim = 1, 3 do
      for i = 1, shape[dim] do
        local s = t:select(dim, i)
        assert.are.equal(2, s:dim())
        for a = 1, s:size(1) do
          for b = 1, s:size(2) do
            local idx = { a, b }
            table.insert(idx, dim, i)
            assert.are.equal(t:get(unpack(idx)), s:get(a, b))
          end
        end
      end
    end
    local row = t:select(1, 2):select(1, 3)
    row:fill(-9)
    assert.are.same({ -9, -9, -9, -9 }, t:totable()[2][3])
  end)

  it("of a column gives a strided vector", function()
    local m = bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } }, "float64")
    local c = m:select(2, 2)
    assert.are.same({ 3 }, c:stride())
    assert.is_false(c:is_contiguous())
    assert.are.same({ 2, 5, 8 }, c:totable())
    c:mul(10)
    assert.are.same({ { 1, 20, 3 }, { 4, 50, 6 }, { 7, 80, 9 } }, m:totable())
  end)

  it("of a vector gives a 0-d view", function()
    local v = bptt.tensor({ 4, 5 })
    local s = v:select(1, 2)
    assert.are.equal(0, s:dim())
    s:set(8)
    assert.are.equal(8, v:get(2))
  end)

  it("checks dim and i", function()
    local t = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor:select", "dim", "1..2", "0" }, t.select, t, 0, 1)
    U.error_with({ "bptt.Tensor:select", "i", "1..3", "4" }, t.select, t, 2, 4)
    U.error_with({ "bptt.Tensor:select", "dimension 2 is empty" }, bptt.zeros(2, 0).select, bptt.zeros(2, 0), 2, 1)
    U.error_with({ "bptt.Tensor:select", "scalar" }, bptt.tensor(1).select, bptt.tensor(1), 1, 1)
  end)
end)

describe("t:transpose, t:t", function()
  it("swap any two dimensions, sharing storage", function()
    local g = U.gen(37)
    local shape = { 2, 3, 4, 2, 3, 2 }
    local t = bptt.tensor(whole_table(g, shape), "float64")
    for d1 = 1, 6 do
      for d2 = 1, 6 do
        local v = t:transpose(d1, d2)
        local s = { unpack(shape) }
        s[d1], s[d2] = s[d2], s[d1]
        assert.are.same(s, v:shape())
        local g2 = U.gen(d1 * 7 + d2)
        for _ = 1, 10 do
          local idx = {}
          for d = 1, 6 do idx[d] = g2:int(1, s[d]) end
          local pidx = { unpack(idx) }
          pidx[d1], pidx[d2] = pidx[d2], pidx[d1]
          assert.are.equal(t:get(unpack(pidx)), v:get(unpack(idx)))
        end
      end
    end
    local v = t:transpose(2, 5)
    v:set(1, 3, 1, 1, 2, 1, 77)
    assert.are.equal(77, t:get(1, 2, 1, 1, 3, 1))
  end)

  it("t is the 2-d transpose and only for 2-d", function()
    local m = bptt.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
    assert.are.same({ { 1, 3, 5 }, { 2, 4, 6 } }, m:t():totable())
    assert.are.same(m:totable(), m:t():t():totable())
    U.error_with({ "bptt.Tensor:t", "2-d", "3-d" }, bptt.zeros(1, 2, 3).t, bptt.zeros(1, 2, 3))
    U.error_with({ "bptt.Tensor:transpose", "dim", "1..2", "3" }, m.transpose, m, 1, 3)
  end)
end)

describe("views", function()
  it("keep their storage alive after the parent is dropped", function()
    local v
    do
      local t = bptt.tensor({ { 1, 2 }, { 3, 4 } })
      v = t:select(2, 2)
    end
    collectgarbage()
    collectgarbage()
    assert.are.same({ 2, 4 }, v:totable())
  end)

  it("of views compose (narrow of transpose of select)", function()
    local g = U.gen(41)
    local tbl = whole_table(g, { 3, 4, 5 })
    local t = bptt.tensor(tbl)
    local v = t:select(1, 2):t():narrow(1, 2, 3) -- (3 x 4): rows 2..4 of the 5x4 transpose
    for i = 1, 3 do
      for j = 1, 4 do assert.are.equal(tbl[2][j][i + 1], v:get(i, j)) end
    end
    v:fill(0)
    assert.are.equal(0, t:select(1, 2):narrow(2, 2, 3):sum())
    assert.are.equal(12, #U.flatten(v:totable()))
  end)
end)

describe("ops on strided views", function()
  -- a random 1-d..6-d view: a select, then transposes and narrows, of a
  -- random whole-valued tensor; returns the base and the view
  local function random_view(g, dt)
    local nd = g:int(1, 6)
    local shape = {}
    for d = 1, nd + 1 do shape[d] = g:int(1, 4) end
    local base = bptt.tensor(whole_table(g, shape), dt)
    local sd = g:int(1, nd + 1)
    local v = base:select(sd, g:int(1, shape[sd]))
    for _ = 1, 3 do
      v = v:transpose(g:int(1, nd), g:int(1, nd))
      local d = g:int(1, nd)
      local start = g:int(1, v:size(d))
      v = v:narrow(d, start, g:int(1, v:size(d) - start + 1))
    end
    return base, v
  end

  -- a tensor of the given shape whose strides run backwards (never contiguous
  -- beyond 1-d): the transpose of a contiguous tensor of the reversed shape
  local function reversed(g, shape, dt)
    local rev = {}
    for i = #shape, 1, -1 do rev[#rev + 1] = shape[i] end
    local w = bptt.tensor(whole_table(g, rev), dt)
    for i = 1, math.floor(#shape / 2) do w = w:transpose(i, #shape + 1 - i) end
    return w
  end

  local function map2(a, b, f)
    local r = {}
    for i = 1, #a do r[i] = f(a[i], b and b[i]) end
    return r
  end

  local function flat(t) return U.flatten(t:totable()) end

  it("write only the view's elements and give the elementwise answer", function()
    local g = U.gen(73)
    for case = 1, U.light and 20 or 150 do
      local dt = DTYPES[case % 3 + 1]
      local base, v = random_view(g, dt)
      local w = reversed(g, v:shape(), dt)
      local x, y = flat(v), flat(w)
      local where = dt .. " view " .. shape_str(v:shape()) .. " strides " .. table.concat(v:stride(), ",")
      -- every op changes the base by exactly what it changes the view by
      local function check(op, want)
        local before_base, before_view = base:sum(), v:sum()
        op()
        assert.are.same(want, flat(v), where)
        assert.are.equal(before_base - before_view + v:sum(), base:sum(), where)
        x = want
      end
      check(function() v:add(w, 3) end, map2(x, y, function(p, q) return p + 3 * q end))
      check(function() v:mul(-2) end, map2(x, nil, function(p) return -2 * p end))
      check(function() v:add(5) end, map2(x, nil, function(p) return p + 5 end))
      check(function() v:cmul(w) end, map2(x, y, function(p, q) return p * q end))
      check(function() v:copy(w) end, y)
      check(function() v:fill(7) end, map2(x, nil, function() return 7 end))
      check(function() v:copy(w):add(v) end, map2(y, nil, function(p) return 2 * p end))
      -- new tensors from views
      assert.are.same(map2(x, y, function(p, q) return p + q end), flat(v + w), where)
      assert.are.same(map2(x, y, function(p, q) return p - q end), flat(v - w), where)
      assert.are.same(map2(x, nil, function(p) return 3 * p end), flat(v * 3), where)
      assert.are.same(x, flat(v:clone()), where)
      assert.are.same(x, flat(v:contiguous()), where)
      assert.are.same(x, flat(v:to("float64")), where)
      assert.is_true(v:contiguous():is_contiguous())
      -- reductions see exactly the view's elements
      local s, mx, mn = 0, -math.huge, math.huge
      for _, e in ipairs(y) do
        s = s + e
        mx, mn = math.max(mx, e), math.min(mn, e)
      end
      assert.are.equal(s, w:sum(), where)
      assert.are.equal(mx, w:max(), where)
      assert.are.equal(mn, w:min(), where)
    end
  end)
end)

describe("t:stride, t:is_contiguous, t:contiguous", function()
  it("describe and fix the layout", function()
    local t = bptt.zeros(2, 3, 4)
    assert.are.same({ 12, 4, 1 }, t:stride())
    assert.is_true(t:is_contiguous())
    assert.are.same({ 1, 4, 12 }, t:transpose(1, 3):stride())
    assert.is_false(t:transpose(1, 3):is_contiguous())
    assert.is_true(t:narrow(1, 2, 1):is_contiguous())
    assert.is_false(t:narrow(3, 2, 2):is_contiguous())
    assert.are.equal(t, t:contiguous())
    local c = t:transpose(1, 2):contiguous()
    assert.are.same({ 3, 2, 4 }, c:shape())
    assert.are.same({ 8, 4, 1 }, c:stride())
    assert.is_true(bptt.tensor(1):is_contiguous())
  end)
end)

describe("t:cmul", function()
  it("multiplies elementwise in place and returns self", function()
    local t = bptt.tensor({ 1, 2, 3 }, "float64")
    assert.are.equal(t, t:cmul(bptt.tensor({ 2, 0.5, -1 }, "float32")))
    assert.are.same({ 2, 1, -3 }, t:totable())
    U.error_with({ "bptt.Tensor:cmul", "u", "shape 3", "got 2" }, t.cmul, t, bptt.zeros(2))
    local i = bptt.zeros(3, "int32")
    U.error_with({ "bptt.Tensor:cmul", "u", "int32", "got float32" }, i.cmul, i, bptt.zeros(3))
  end)
end)

describe("bptt.is_tensor, t:pointer", function()
  it("tell tensors from other values and expose the data address", function()
    assert.is_true(bptt.is_tensor(bptt.zeros(1)))
    assert.is_false(bptt.is_tensor({}))
    assert.is_false(bptt.is_tensor(io.stdout))
    assert.is_false(bptt.is_tensor(nil))
    local t = bptt.zeros(4, 4)
    assert.are.equal("userdata", type(t:pointer()))
    assert.are_not.equal(t:pointer(), t:narrow(1, 2, 1):pointer())
    assert.are.equal(t:pointer(), t:view(16):pointer())
  end)
end)

describe("t:add", function()
  it("adds alpha * u in place and returns self", function()
    local g = U.gen(43)
    for _, dt in ipairs(FLOATS) do
      local a, b = real_table(g, { 3, 4 }), real_table(g, { 3, 4 })
      local t = bptt.tensor(a, dt)
      assert.are.equal(t, t:add(bptt.tensor(b, dt), -2.5))
      local want = {}
      for i = 1, 3 do
        want[i] = {}
        for j = 1, 4 do want[i][j] = a[i][j] - 2.5 * b[i][j] end
      end
      U.assert_close(t:totable(), want, U.tol[dt] * 10)
    end
    local i = bptt.tensor({ 1, 2, 3 }, "int32")
    i:add(bptt.tensor({ 10, 20, 30 }, "int32"), 2)
    assert.are.same({ 21, 42, 63 }, i:totable())
  end)

  it("adds a number to every element", function()
    local t = bptt.tensor({ 1, 2 }, "float64")
    assert.are.equal(t, t:add(0.5))
    assert.are.same({ 1.5, 2.5 }, t:totable())
    local i = bptt.tensor({ 1, 2 }, "int32"):add(3)
    assert.are.same({ 4, 5 }, i:totable())
  end)

  it("mixes dtypes into a float self", function()
    local t = bptt.tensor({ 1, 2 }, "float32")
    t:add(bptt.tensor({ 0.25, 1 }, "float64"))
    t:add(bptt.tensor({ 1, 1 }, "int32"), 2)
    assert.are.same({ 3.25, 5 }, t:totable())
  end)

  it("works on strided views and aliased operands", function()
    local g = U.gen(47)
    local a = whole_table(g, { 4, 4 })
    local t = bptt.tensor(a, "float64")
    t:add(t:t())
    local want = {}
    for i = 1, 4 do
      want[i] = {}
      for j = 1, 4 do want[i][j] = a[i][j] + a[j][i] end
    end
    assert.are.same(want, t:totable())
    t:select(2, 1):add(t:select(2, 2), -1)
    for i = 1, 4 do want[i][1] = want[i][1] - want[i][2] end
    assert.are.same(want, t:totable())
    t:add(t, 1)
    for i = 1, 4 do for j = 1, 4 do want[i][j] = 2 * want[i][j] end end
    assert.are.same(want, t:totable())
    -- overlapping shifted blocks of one vector
    local v = bptt.tensor({ 1, 2, 3, 4, 5 })
    v:narrow(1, 2, 4):add(v:narrow(1, 1, 4))
    assert.are.same({ 1, 3, 5, 7, 9 }, v:totable())
  end)

  it("refuses another shape, naming both shapes", function()
    local t = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor:add", "u", "shape 2x3", "got 3x2" }, t.add, t, bptt.zeros(3, 2))
    U.error_with({ "bptt.Tensor:add", "u", "got 6" }, t.add, t, bptt.zeros(6))
    U.error_with({ "bptt.Tensor:add", "u", "tensor", "string" }, t.add, t, "x")
    U.error_with({ "bptt.Tensor:add", "alpha", "number", "string" }, t.add, t, bptt.zeros(2, 3), "2")
  end)

  it("into int32 takes only int32 operands and whole numbers in int32 range", function()
    local t = bptt.zeros(2, "int32")
    U.error_with({ "bptt.Tensor:add", "u", "int32", "got float32" }, t.add, t, bptt.zeros(2))
    U.error_with({ "bptt.Tensor:add", "v", "whole number in int32 range", "got 0.5" }, t.add, t, 0.5)
    U.error_with({ "bptt.Tensor:add", "v", "int32 range", "got 4294967296" }, t.add, t, 2 ^ 32)
    U.error_with({ "bptt.Tensor:add", "alpha", "whole number", "got 0.5" }, t.add, t, bptt.zeros(2, "int32"), 0.5)
    assert.are.same({ 0, 0 }, t:totable())
  end)
end)

describe("t:mul", function()
  it("scales in place and returns self", function()
    local t = bptt.tensor({ { 1, -2 }, { 3, 4 } }, "float64")
    assert.are.equal(t, t:mul(-1.5))
    assert.are.same({ { -1.5, 3 }, { -4.5, -6 } }, t:totable())
    local i = bptt.tensor({ 1, -2 }, "int32"):mul(3)
    assert.are.same({ 3, -6 }, i:totable())
  end)

  it("checks s", function()
    local t = bptt.zeros(2, "int32")
    U.error_with({ "bptt.Tensor:mul", "s", "whole number in int32 range", "got 0.5" }, t.mul, t, 0.5)
    U.error_with({ "bptt.Tensor:mul", "s", "number", "no value" }, t.mul, t)
    U.error_with({ "bptt.Tensor:mul", "s", "number", "string" }, t.mul, t, "2")
    U.error_with({ "bptt.Tensor:mul", "u", "int32", "got float32" }, t.mul, t, bptt.zeros(2))
  end)
end)

describe("a + b, a - b, a * s, a / s, -a", function()
  it("return new tensors and leave the operands alone", function()
    local a = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "float64")
    local b = bptt.tensor({ { 10, 20 }, { 30, 40 } }, "float64")
    local s, d, m, q, n = a + b, b - a, a * 3, a / 2, -a
    assert.are.same({ { 11, 22 }, { 33, 44 } }, s:totable())
    assert.are.same({ { 9, 18 }, { 27, 36 } }, d:totable())
    assert.are.same({ { 3, 6 }, { 9, 12 } }, m:totable())
    assert.are.same({ { 0.5, 1 }, { 1.5, 2 } }, q:totable())
    assert.are.same({ { -1, -2 }, { -3, -4 } }, n:totable())
    assert.are.same({ { 3, 6 }, { 9, 12 } }, (3 * a):totable())
    assert.are.same({ { 2, 3 }, { 4, 5 } }, (a + 1):totable())
    assert.are.same({ { 2, 3 }, { 4, 5 } }, (1 + a):totable())
    assert.are.same({ { 0, -1 }, { -2, -3 } }, (1 - a):totable())
    assert.are.same({ { 0, 1 }, { 2, 3 } }, (a - 1):totable())
    assert.are.same({ { 1, 2 }, { 3, 4 } }, a:totable())
    assert.are.same({ { 10, 20 }, { 30, 40 } }, b:totable())
    s:set(1, 1, 0)
    assert.are.equal(1, a:get(1, 1))
  end)

  it("work on views", function()
    local m = bptt.tensor({ { 1, 2 }, { 3, 4 } })
    assert.are.same({ { 2, 5 }, { 5, 8 } }, (m + m:t()):totable())
    assert.are.same({ 4, 8 }, (m:select(2, 1) + m:select(2, 2) * 1 + 1):totable())
  end)

  it("promote dtypes: float64 over float32 over int32", function()
    local i = bptt.tensor({ 1, 2 }, "int32")
    local f = bptt.tensor({ 1, 2 }, "float32")
    local d = bptt.tensor({ 1, 2 }, "float64")
    assert.are.equal("float64", (f + d):dtype())
    assert.are.equal("float64", (i - d):dtype())
    assert.are.equal("float32", (i + f):dtype())
    assert.are.equal("float32", (f - i):dtype())
    assert.are.equal("int32", (i + i):dtype())
    assert.are.equal("int32", (i * 2):dtype())
    assert.are.equal("float32", (f * 2):dtype())
    assert.are.same({ 1.5, 2.5 }, (i + 0.5):totable())
    assert.are.same({ 0.5, 1 }, (i / 2):totable())
    assert.are.same({ 2.5, 5 }, (i * 2.5):totable())
  end)

  it("divide exactly: t / s is the correctly rounded quotient, not t * (1 / s)", function()
    local g = U.gen(79)
    local xs = {}
    for i = 1, 200 do xs[i] = g:value() * 1000 end
    for _, s in ipairs({ 3, 7, 10, 0.1, -49 }) do
      local q64 = bptt.tensor(xs, "float64") / s
      local f = bptt.tensor(xs, "float32")
      local q32 = f / s
      for i = 1, #xs do
        assert.are.equal(xs[i] / s, q64:get(i))
        assert.are.equal(U.f32(f:get(i) / s), q32:get(i))
      end
    end
    assert.are.equal(5 / 3, (bptt.tensor({ 5 }, "int32") / 3):get(1))
  end)

  it("refuse mismatched shapes and other operand types, naming the operator", function()
    local a = bptt.zeros(2, 3)
    U.error_with({ "__add", "shape 2x3", "got 3x2" }, function() return a + bptt.zeros(3, 2) end)
    U.error_with({ "__sub", "shape 2x3", "got 2" }, function() return a - bptt.zeros(2) end)
    U.error_with({ "__add", "string" }, function() return a + "1" end)
    U.error_with({ "__mul", "bptt.matmul" }, function() return a * bptt.zeros(3, 2) end)
    U.error_with({ "__div", "string" }, function() return "1" / a end)
    U.error_with({ "__mul", "boolean" }, function() return a * true end)
    local i = bptt.zeros(2, "int32")
    U.error_with({ "__add", "right operand", "int32 range", "2147483648" }, function() return i + 2 ^ 31 end)
    U.error_with({ "__sub", "left operand", "int32 range" }, function() return 2 ^ 40 - i end)
    U.error_with({ "__mul", "left operand", "int32 range" }, function() return 1 / 0 * i end)
  end)
end)

describe("t:sum, t:mean, t:max, t:min, t:norm", function()
  local function lua_stats(flat)
    local s, sq, mx, mn = 0, 0, -math.huge, math.huge
    for _, v in ipairs(flat) do
      s, sq = s + v, sq + v * v
      if v > mx then mx = v end
      if v < mn then mn = v end
    end
    return s, s / #flat, mx, mn, math.sqrt(sq)
  end

  it("agree with plain-Lua sums on random data, for every dtype and many shapes", function()
    local g = U.gen(53)
    for _ = 1, 40 do
      local nd = g:int(1, 5)
      local shape = {}
      for d = 1, nd do shape[d] = g:int(1, 6) end
      for _, dt in ipairs(DTYPES) do
        local tbl = dt == "int32" and whole_table(g, shape) or real_table(g, shape)
        local t = bptt.tensor(tbl, dt)
        local flat = U.flatten(t:totable()) -- the stored (rounded) values
        local s, mean, mx, mn, nrm = lua_stats(flat)
        local rel = dt == "float32" and 1e-6 or 1e-12
        assert.is_true(U.close(t:sum(), s, rel), dt .. " sum " .. shape_str(shape))
        assert.is_true(U.close(t:mean(), mean, rel), dt .. " mean")
        assert.are.equal(mx, t:max())
        assert.are.equal(mn, t:min())
        assert.is_true(U.close(t:norm(), nrm, rel), dt .. " norm")
      end
    end
  end)

  it("reduce only the elements of a strided view", function()
    local g = U.gen(59)
    local tbl = real_table(g, { 5, 6, 4 })
    local t = bptt.tensor(tbl, "float64")
    local v = t:transpose(1, 3):narrow(2, 2, 4):select(3, 3) -- 4 x 4, strided both ways
    local flat = {}
    for i = 1, 4 do
      for j = 1, 4 do flat[#flat + 1] = tbl[3][j + 1][i] end
    end
    local s, mean, mx, mn, nrm = lua_stats(flat)
    assert.is_true(U.close(v:sum(), s, 1e-12))
    assert.is_true(U.close(v:mean(), mean, 1e-12))
    assert.are.equal(mx, v:max())
    assert.are.equal(mn, v:min())
    assert.is_true(U.close(v:norm(), nrm, 1e-12))
  end)

  it("accumulate float32 in double precision", function()
    local t = bptt.ones(1000000)
    assert.are.equal(1000000, t:sum())
    t:fill(0.1)
    assert.is_true(math.abs(t:sum() - 1000000 * U.f32(0.1)) < 1e-6)
  end)

  it("handle 0-d and empty tensors", function()
    local s = bptt.tensor(-3)
    assert.are.equal(-3, s:sum())
    assert.are.equal(-3, s:mean())
    assert.are.equal(-3, s:max())
    assert.are.equal(-3, s:min())
    assert.are.equal(3, s:norm())
    local e = bptt.zeros(0, 3)
    assert.are.equal(0, e:sum())
    assert.are.equal(0, e:norm())
    U.error_with({ "bptt.Tensor:mean", "empty" }, e.mean, e)
    U.error_with({ "bptt.Tensor:max", "empty" }, e.max, e)
    U.error_with({ "bptt.Tensor:min", "empty" }, e.min, e)
  end)

  it("propagate NaN through max and min", function()
    local t = bptt.tensor({ 1, 0 / 0, 3 })
    assert.is_true(t:max() ~= t:max())
    assert.is_true(t:min() ~= t:min())
    assert.is_true(t:sum() ~= t:sum())
    assert.are.equal(-math.huge, bptt.tensor({ -1 / 0, -1 / 0 }):max())
  end)
end)

describe("t:argmax", function()
  it("gives int32 1-based indices with the dimension removed", function()
    local g = U.gen(61)
    local shape = { 3, 4, 5 }
    local tbl = real_table(g, shape)
    local t = bptt.tensor(tbl, "float64")
    for dim = 1, 3 do
      local a = t:argmax(dim)
      assert.are.equal("int32", a:dtype())
      local want_shape = { unpack(shape) }
      table.remove(want_shape, dim)
      assert.are.same(want_shape, a:shape())
      for i = 1, want_shape[1] do
        for j = 1, want_shape[2] do
          local best, bi = -math.huge, nil
          for k = 1, shape[dim] do
            local idx = { i, j }
            table.insert(idx, dim, k)
            local v = tbl[idx[1]][idx[2]][idx[3]]
            if v > best then best, bi = v, k end
          end
          assert.are.equal(bi, a:get(i, j))
        end
      end
    end
  end)

  it("of a vector is a 0-d tensor; ties give the first index; NaN counts as the maximum", function()
    local a = bptt.tensor({ 3, 9, 1, 9 }, "int32"):argmax(1)
    assert.are.equal(0, a:dim())
    assert.are.equal(2, a:get())
    assert.are.equal(3, bptt.tensor({ 1, 5, 0 / 0, 7 }):argmax(1):get())
    assert.are.equal(1, bptt.tensor({ -1 / 0 }):argmax(1):get())
  end)

  it("reads strided views", function()
    local m = bptt.tensor({ { 1, 8, 3 }, { 7, 2, 9 } })
    assert.are.same({ 2, 1, 2 }, m:t():argmax(2):totable())
    assert.are.same({ 2, 3 }, m:argmax(2):totable())
    assert.are.equal(2, m:select(2, 1):argmax(1):get())
  end)

  it("checks dim", function()
    local m = bptt.zeros(2, 3)
    U.error_with({ "bptt.Tensor:argmax", "dim", "1..2", "3" }, m.argmax, m, 3)
    U.error_with({ "bptt.Tensor:argmax", "dim", "whole number", "string" }, m.argmax, m, "1")
    U.error_with({ "bptt.Tensor:argmax", "empty" }, bptt.zeros(2, 0).argmax, bptt.zeros(2, 0), 2)
    U.error_with({ "bptt.Tensor:argmax", "scalar" }, bptt.tensor(1).argmax, bptt.tensor(1), 1)
  end)
end)

describe("bptt.matmul", function()
  -- a random m x n matrix as a tensor in one of several layouts, all holding
  -- the same logical values (returned as a nested table too)
  local function operand(g, m, n, dt, layout)
    local tbl = real_table(g, { m, n })
    if layout == "contiguous" then
      return bptt.tensor(tbl, dt), tbl, layout
    elseif layout == "transposed" then -- an n x m tensor seen through :t()
      return bptt.tensor(U.transpose(tbl, m), dt):t(), tbl, layout
    elseif layout == "narrowed" then -- a block inside a larger matrix
      local big = bptt.zeros(m + 3, n + 2, dt):fill(1e6)
      local v = big:narrow(1, 2, m):narrow(2, 3, n)
      v:copy(bptt.tensor(tbl, "float64"):view(m, n))
      return v, tbl, layout
    elseif layout == "narrowed-transposed" then
      local big = bptt.zeros(n + 2, m + 3, dt):fill(1e6)
      local v = big:narrow(1, 2, n):narrow(2, 2, m)
      v:copy(bptt.tensor(U.transpose(tbl, m), "float64"):view(n, m))
      return v:t(), tbl, layout
    else -- "strided": every other element in both dimensions (BLAS cannot read it)
      local big = bptt.zeros(2 * m, 2 * n, dt):fill(1e6)
      local v = big:view(m, 2, n, 2):select(2, 2):select(3, 1) -- strides (4n, 2)
      assert(v:stride()[1] == 4 * n and v:stride()[2] == 2)
      v:copy(bptt.tensor(tbl, "float64"):view(m, n))
      return v, tbl, layout
    end
  end
  local LAYOUTS = { "contiguous", "transposed", "narrowed", "narrowed-transposed", "strided" }

  it("agrees with the textbook loop for many random shapes and layouts", function()
    local g = U.gen(67)
    local cases = U.light and 30 or 300
    for case = 1, cases do
      local dt = FLOATS[case % 2 + 1]
      local m, k, n = g:int(1, 9), g:int(1, 9), g:int(1, 9)
      if case % 10 == 0 then m, k, n = g:int(20, 70), g:int(20, 70), g:int(20, 70) end
      local la, lb = LAYOUTS[g:int(1, #LAYOUTS)], LAYOUTS[g:int(1, #LAYOUTS)]
      local a = operand(g, m, k, dt, la)
      local b = operand(g, k, n, dt, lb)
      -- the reference uses the values as stored (rounded to float32 if so)
      local at, bt = a:totable(), b:totable()
      local c = bptt.matmul(a, b)
      assert.are.equal(dt, c:dtype())
      assert.are.same({ m, n }, c:shape())
      U.assert_close(c:totable(), U.naive_matmul(at, bt), U.tol[dt], math.sqrt(k),
        string.format("%s %dx%d (%s) * %dx%d (%s)", dt, m, k, la, k, n, lb))
    end
  end)

  it("takes vectors: matrix-vector, vector-matrix and the dot product", function()
    local g = U.gen(71)
    for case = 1, U.light and 10 or 60 do
      local dt = FLOATS[case % 2 + 1]
      local m, k = g:int(1, 12), g:int(1, 12)
      local A = bptt.tensor(real_table(g, { m, k }), dt)
      local base = bptt.tensor(real_table(g, { k, 3 }), dt)
      local x = case % 3 == 0 and base:select(2, 2) or base:select(2, 2):clone() -- strided or not
      local y = bptt.tensor(real_table(g, { m }), dt)
      local At, xt, yt = A:totable(), x:totable(), y:totable()
      local Ax = bptt.matmul(A, x)
      assert.are.same({ m }, Ax:shape())
      local want = U.naive_matmul(At, U.transpose({ xt }))
      U.assert_close(Ax:totable(), U.flatten(want), U.tol[dt], math.sqrt(k), "A x")
      local yA = bptt.matmul(y, A)
      assert.are.same({ k }, yA:shape())
      U.assert_close(yA:totable(), U.naive_matmul({ yt }, At)[1], U.tol[dt], math.sqrt(m), "y A")
      local xtA = bptt.matmul(x, A:t())
      U.assert_close(xtA:totable(), U.flatten(want), U.tol[dt], math.sqrt(k), "x A^T")
      local dot = bptt.matmul(x, x)
      assert.are.equal(0, dot:dim())
      local s = 0
      for i = 1, k do s = s + xt[i] * xt[i] end
      assert.is_true(U.close(dot:get(), s, U.tol[dt], k), "dot")
    end
  end)

  it("multiplies a view by itself and leaves its operands alone", function()
    local a = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "float64")
    assert.are.same({ { 5, 11 }, { 11, 25 } }, bptt.matmul(a, a:t()):totable())
    assert.are.same({ { 10, 14 }, { 14, 20 } }, bptt.matmul(a:t(), a):totable())
    assert.are.same({ { 1, 2 }, { 3, 4 } }, a:totable())
  end)

  it("writes into out when given, with operands of any layout, and returns out", function()
    for _, dt in ipairs({ "float32", "float64" }) do
      local a = bptt.randn(5, 4, dt)
      local b = bptt.randn(6, 4, dt):t()                       -- a transposed view
      local s = bptt.randn(4, 12, dt):narrow(2, 3, 6)          -- a strided view
      for _, bb in ipairs({ b, s }) do
        local out = bptt.zeros(5, 6, dt):fill(7)
        local r = bptt.matmul(a, bb, out)
        assert.are.equal(out, r)
        local want = bptt.matmul(a, bb)
        assert.are.same(want:totable(), out:totable())
      end
      local v = bptt.zeros(5, dt)
      bptt.matmul(a, bptt.ones(4, dt), v)
      for i = 1, 5 do assert.is_true(U.close(v:get(i), a:select(1, i):sum(), U.tol[dt], 4)) end
    end
  end)

  it("refuses an out of the wrong shape, dtype or layout, or sharing an operand's storage", function()
    local a, b = bptt.randn(3, 4), bptt.randn(4, 5)
    U.error_with({ "bptt.matmul", "out", "3x5", "3x4" }, bptt.matmul, a, b, bptt.zeros(3, 4))
    U.error_with({ "bptt.matmul", "out", "float32", "float64" }, bptt.matmul, a, b, bptt.zeros(3, 5, "float64"))
    U.error_with({ "bptt.matmul", "out", "contiguous" }, bptt.matmul, a, b, bptt.zeros(5, 3):t())
    local big = bptt.randn(4, 5)
    U.error_with({ "bptt.matmul", "out", "share" }, bptt.matmul, big:narrow(1, 1, 3):narrow(2, 1, 4), big,
      big:view(20):narrow(1, 1, 15):view(3, 5))
    U.error_with({ "bptt.matmul", "out", "tensor" }, bptt.matmul, a, b, "x")
  end)

  -- float32 products of at least 16 rows and 1 MFLOP go through packed.h's
  -- kernel where the CPU has AVX-512F (gemm.c): row blocks of 256, k blocks
  -- of 256, panels of 16 columns, so the shapes below cross each edge.
  it("float32 products large enough for the packed kernel: every edge, layout and thread count", function()
    local core = require "bptt.core"
    local shapes = { -- m, k, n
      { 300, 300, 37 }, { 19, 600, 70 }, { 513, 64, 65 }, { 40, 257, 33 }, { 1000, 16, 17 },
      { 700, 1, 1000 }, { 1000, 500, 1 }, { 16, 300, 300 }, { 257, 512, 48 },
      -- a last column group of 1 or 2 (dot products when b is transposed),
      -- and short sums, whose row blocks are 65536 / k rows
      -- (b is transposed at the 11th, 13th and 15th)
      { 40, 300, 66 }, { 1100, 64, 65 }, { 1030, 65, 34 }, { 1100, 64, 33 }, { 64, 70, 40 }, { 300, 65, 34 },
      -- one row (sampling's products): a GEMV, packed.h's when b is transposed
      { 1, 700, 300 }, { 1, 37, 1000 }, { 1, 2000, 65 }, { 1, 300, 700 },
    }
    local g = U.gen(83)
    local before = bptt.num_threads()
    for i, sh in ipairs(shapes) do
      local m, k, n = sh[1], sh[2], sh[3]
      local la, lb = LAYOUTS[(i - 1) % 4 + 1], LAYOUTS[i % 4 + 1] -- not "strided": it is copied first
      local a = operand(g, m, k, "float32", la)
      local b = operand(g, k, n, "float32", lb)
      local where = string.format("%dx%d (%s) * %dx%d (%s)", m, k, la, k, n, lb)
      -- the exact product of the float32 values, in float64
      local want = bptt.matmul(a:to("float64"), b:to("float64"))
      local got = {}
      for _, th in ipairs({ 1, 2, 3 }) do
        bptt.set_num_threads(th)
        got[th] = bptt.matmul(a, b)
      end
      bptt.set_num_threads(before)
      local err = got[1]:to("float64"):add(want, -1)
      local scale = math.max(want:max(), -want:min(), 1)
      assert(math.max(err:max(), -err:min()) <= 1e-6 * math.sqrt(k) * scale, where)
      -- with the kernel, each element is one sum in a fixed order, whichever
      -- thread computes it (OpenBLAS's rounding depends on the split: no
      -- such promise without it, e.g. under valgrind, which hides AVX-512)
      if core.packed_gemm() then
        for _, th in ipairs({ 2, 3 }) do
          local diff = got[th]:to("float64"):add(got[1]:to("float64"), -1):norm()
          assert.are.equal(0, diff, where .. ", " .. th .. " threads")
        end
      else
        for _, th in ipairs({ 2, 3 }) do
          local d = got[th]:to("float64"):add(got[1]:to("float64"), -1)
          assert(math.max(d:max(), -d:min()) <= 2e-6 * math.sqrt(k) * scale, where .. ", " .. th .. " threads")
        end
      end
      -- and the BLAS path, with the kernel off, agrees to float32 rounding
      if core.packed_gemm() then
        core.packed_gemm(false)
        local ok, blas = pcall(bptt.matmul, a, b)
        core.packed_gemm(true)
        assert(ok, blas)
        local d = blas:to("float64"):add(got[1]:to("float64"), -1)
        assert(math.max(d:max(), -d:min()) <= 2e-6 * math.sqrt(k) * scale, where .. ": BLAS")
      end
    end
  end)

  it("handles empty inner and outer sizes", function()
    local c = bptt.matmul(bptt.zeros(3, 0), bptt.zeros(0, 2))
    assert.are.same({ { 0, 0 }, { 0, 0 }, { 0, 0 } }, c:totable())
    assert.are.same({ 0, 4 }, bptt.matmul(bptt.zeros(0, 2), bptt.zeros(2, 4)):shape())
    assert.are.same({ 3, 0 }, bptt.matmul(bptt.zeros(3, 2), bptt.zeros(2, 0)):shape())
    assert.are.equal(0, bptt.matmul(bptt.zeros(0), bptt.zeros(0)):get())
  end)

  it("refuses mismatched sizes, dtypes and dimensions, naming a and b", function()
    U.error_with({ "bptt.matmul", "b", "3 rows", "2x3", "got 4x2" }, bptt.matmul, bptt.zeros(2, 3), bptt.zeros(4, 2))
    U.error_with({ "bptt.matmul", "3 rows", "got 4" }, bptt.matmul, bptt.zeros(2, 3), bptt.zeros(4))
    U.error_with({ "bptt.matmul", "dtype", "float32", "float64" }, bptt.matmul, bptt.zeros(2, 2),
      bptt.zeros(2, 2, "float64"))
    U.error_with({ "bptt.matmul", "int32" }, bptt.matmul, bptt.zeros(2, 2, "int32"), bptt.zeros(2, 2, "int32"))
    U.error_with({ "bptt.matmul", "1-d or 2-d", "2x2x2" }, bptt.matmul, bptt.zeros(2, 2, 2), bptt.zeros(2, 2))
    U.error_with({ "bptt.matmul", "1-d or 2-d", "scalar" }, bptt.matmul, bptt.zeros(2), bptt.tensor(1))
    U.error_with({ "bptt.matmul", "a", "tensor", "table" }, bptt.matmul, { 1 }, bptt.zeros(1))
    U.error_with({ "bptt.matmul", "b", "tensor", "no value" }, bptt.matmul, bptt.zeros(1))
  end)
end)

describe("bptt.matmul, float32 with a transposed first operand (weight gradients dG^T x)", function()
  -- a^T for a (k x m): as the transpose of a contiguous k x m matrix, or of
  -- a block inside a larger one (leading dimension k x m + 5)
  local function transposed_a(g, m, k, layout)
    local tbl = real_table(g, { k, m })
    if layout == "transposed" then return bptt.tensor(tbl, "float32"):t() end
    local big = bptt.zeros(k + 1, m + 5, "float32"):fill(1e6)
    local v = big:narrow(1, 2, k):narrow(2, 3, m)
    v:copy(bptt.tensor(tbl, "float64"):view(k, m))
    return v:t()
  end

  it("float32 products large enough for the packed kernel, A transposed: every block edge and thread count",
    function()
      local core = require "bptt.core"
      -- m, k, n: k across the kernel's blocks of 256 steps (255, 256, 257,
      -- 1000, 2048), m across its row tiles of 8 and blocks of 256 rows, n
      -- across its panels of 16 and 32 columns; narrow in m or n (<= 128),
      -- as the kernel takes them: split by rows, by columns, on one thread
      local shapes = {
        { 300, 1000, 37 }, { 65, 2048, 200 }, { 513, 257, 17 }, { 40, 600, 100 }, { 128, 512, 129 },
        { 257, 256, 64 }, { 1030, 255, 33 }, { 100, 1024, 1 },
      }
      local g = U.gen(89)
      local before = bptt.num_threads()
      for i, sh in ipairs(shapes) do
        local m, k, n = sh[1], sh[2], sh[3]
        local la = i % 2 == 1 and "transposed" or "narrowed-transposed"
        local a = transposed_a(g, m, k, la)
        local b = bptt.tensor(real_table(g, { k, n }), "float32")
        local where = string.format("(%dx%d, %s) * %dx%d", m, k, la, k, n)
        local want = bptt.matmul(a:to("float64"), b:to("float64"))
        local scale = math.max(want:max(), -want:min(), 1)
        local got = {}
        for _, th in ipairs({ 1, 2, 3 }) do
          bptt.set_num_threads(th)
          got[th] = bptt.matmul(a, b)
          local err = got[th]:to("float64"):add(want, -1)
          assert(math.max(err:max(), -err:min()) <= 1e-6 * math.sqrt(k) * scale, where .. ", " .. th .. " threads")
        end
        bptt.set_num_threads(before)
        if core.packed_gemm() then
          -- one sum per element in fixed blocks of k: the same bits on any split
          for _, th in ipairs({ 2, 3 }) do
            assert.are.equal(0, got[th]:to("float64"):add(got[1]:to("float64"), -1):norm(),
              where .. ", " .. th .. " threads")
          end
          -- and OpenBLAS, with the kernel off, agrees to float32 rounding
          core.packed_gemm(false)
          local ok, blas = pcall(bptt.matmul, a, b)
          core.packed_gemm(true)
          assert(ok, blas)
          local d = blas:to("float64"):add(got[1]:to("float64"), -1)
          assert(math.max(d:max(), -d:min()) <= 2e-6 * math.sqrt(k) * scale, where .. ": BLAS")
        end
      end
    end)
end)

describe("0-d and empty tensors", function()
  it("0-d tensors take part in every operation", function()
    local s = bptt.tensor(2, "float64")
    assert.are.equal(5, (s + bptt.tensor(3, "float64")):get())
    assert.are.equal(-1, (s - 3):get())
    assert.are.equal(1, (s / 2):get())
    assert.are.equal(6, s:clone():mul(3):get())
    assert.are.equal(7, s:clone():copy(bptt.tensor(7)):get())
    assert.are.same({ { 2 } }, s:view(1, 1):totable())
    assert.are.equal(2, bptt.tensor({ { 2 } }):view():get())
    assert.are.equal(0, s:clone():zero():get())
    assert.is_truthy(tostring(s):find("2", 1, true))
    U.error_with({ "bptt.Tensor:copy", "src", "shape scalar", "got 1" }, s.copy, s, bptt.tensor({ 1 }))
    U.error_with({ "bptt.Tensor:transpose", "scalar" }, s.transpose, s, 1, 1)
    U.error_with({ "bptt.Tensor:argmax", "scalar" }, s.argmax, s, 1)
  end)

  it("empty tensors and empty views go through every operation unchanged", function()
    local e = bptt.zeros(0, 3, "float64")
    for _, v in ipairs({ e, e:t(), bptt.zeros(3, 4):narrow(2, 2, 0), bptt.zeros(3, 4):t():narrow(1, 4, 0) }) do
      assert.are.equal(0, v:numel())
      assert.are.equal(v, v:add(v))
      assert.are.equal(v, v:add(1))
      assert.are.equal(v, v:mul(2))
      assert.are.equal(v, v:fill(3))
      assert.are.equal(v, v:copy(v:clone()))
      assert.are.same(v:shape(), (v + v):shape())
      assert.are.same(v:shape(), (v * 2):shape())
      assert.are.same(v:shape(), v:to("int32"):shape())
      assert.are.equal(0, v:sum())
      assert.are.equal(0, v:norm())
    end
    assert.are.same({ 3, 0, 5 }, e:view(3, 0, 5):shape())
    assert.are.same({ 0 }, e:view(-1):shape())
    assert.are.same({ 0 }, e:argmax(2):shape())
    U.error_with({ "bptt.Tensor:argmax", "dimension 1 is empty" }, e.argmax, e, 1)
    U.error_with({ "bptt.Tensor:view", "-1" }, e.view, e, -1, 0)
  end)
end)

describe("tostring", function()
  it("shows values, dtype and shape", function()
    local s = tostring(bptt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "int32"))
    for _, want in ipairs({ "1", "2", "3", "4", "5", "6", "int32", "2x3" }) do
      assert.is_truthy(s:find(want, 1, true), s)
    end
    s = tostring(bptt.tensor({ 0.25, -1.5 }, "float64"))
    assert.is_truthy(s:find("0.25", 1, true), s)
    assert.is_truthy(s:find("-1.5", 1, true), s)
    assert.is_truthy(s:find("float64", 1, true), s)
    assert.is_falsy(s:find("...", 1, true), s)
  end)

  it("prints every dimension of a 4-d tensor, 0-d and empty tensors", function()
    local s = tostring(bptt.tensor(U.nested({ 2, 2, 2, 2 }, function() return 7 end)))
    assert.is_truthy(s:find("(2,2,.,.)", 1, true), s)
    assert.is_truthy(s:find("2x2x2x2", 1, true), s)
    local _, sevens = s:gsub("7", "")
    assert.are.equal(16, sevens)
    s = tostring(bptt.tensor(42))
    assert.is_truthy(s:find("42", 1, true), s)
    s = tostring(bptt.zeros(3, 0))
    assert.is_truthy(s:find("3x0", 1, true), s)
  end)

  it("shows int32 values exactly, however large", function()
    local s = tostring(bptt.tensor({ -2147483648, 2147483647, 0 }, "int32"))
    assert.is_truthy(s:find("-2147483648", 1, true), s)
    assert.is_truthy(s:find("2147483647", 1, true), s)
  end)

  it("shows NaN and infinities", function()
    local s = tostring(bptt.tensor({ 0 / 0, 1 / 0, -1 / 0, 0.5 }))
    assert.is_truthy(s:find("nan", 1, true), s)
    assert.is_truthy(s:find("-inf", 1, true), s)
  end)

  it("elides the middle of a large tensor", function()
    local t = bptt.zeros(100, 200)
    t:set(1, 1, 11)
    t:set(100, 200, 99)
    t:set(50, 100, 55)
    local s = tostring(t)
    assert.is_truthy(s:find("...", 1, true), s)
    assert.is_truthy(s:find("11", 1, true), s)
    assert.is_truthy(s:find("99", 1, true), s)
    assert.is_falsy(s:find("55", 1, true), s)
    assert.is_truthy(#s < 2000, "printed " .. #s .. " characters")
    assert.is_truthy(s:find("100x200", 1, true), s)
    local big = tostring(bptt.zeros(20, 20, 20, 20))
    assert.is_truthy(#big < 20000, "printed " .. #big .. " characters")
  end)
end)

describe("t:free", function()
  it("releases storage; using the tensor afterwards is a clear error", function()
    local t = bptt.zeros(3, 3)
    t:free()
    U.error_with({ "bptt.Tensor:sum", "self", "freed" }, t.sum, t)
    U.error_with({ "bptt.Tensor:get", "freed" }, t.get, t, 1, 1)
    U.error_with({ "bptt.Tensor:shape", "freed" }, t.shape, t)
    U.error_with({ "bptt.Tensor:view", "freed" }, t.view, t, 9)
    U.error_with({ "bptt.matmul", "a", "freed" }, bptt.matmul, t, bptt.zeros(3, 3))
    U.error_with({ "bptt.Tensor:copy", "src", "freed" }, bptt.zeros(3, 3).copy, bptt.zeros(3, 3), t)
    U.error_with({ "freed" }, function() return t + t end)
    U.error_with({ "freed" }, function() return t * 2 end)
    U.error_with({ "freed" }, function() return -t end)
    assert.is_truthy(tostring(t):find("freed", 1, true))
  end)

  it("is safe twice and leaves views working", function()
    local t = bptt.tensor({ 1, 2, 3 })
    local v = t:narrow(1, 2, 2)
    t:free()
    t:free()
    assert.are.same({ 2, 3 }, v:totable())
    v:free()
    U.error_with({ "freed" }, v.totable, v)
  end)
end)

describe("bptt.set_num_threads, bptt.num_threads", function()
  it("round-trip", function()
    local before = bptt.num_threads()
    assert.is_true(before >= 1)
    bptt.set_num_threads(1)
    assert.are.equal(1, bptt.num_threads())
    bptt.set_num_threads(2)
    assert.are.equal(2, bptt.num_threads())
    local c = bptt.matmul(bptt.ones(64, 64, "float64"), bptt.ones(64, 64, "float64"))
    assert.are.equal(64 * 64 * 64, c:sum())
    bptt.set_num_threads(before)
    assert.are.equal(before, bptt.num_threads())
  end)

  it("OpenBLAS's own pool, stopped at load, starts again on demand and stops again (bptt.core.blas_set_num_threads)",
    function()
      local core = require "bptt.core"
      local before = bptt.num_threads()
      local a, b = bptt.ones(256, 300, "float64"), bptt.ones(300, 200, "float64")
      for _, n in ipairs({ 2, 1, 2, 1 }) do
        bptt.set_num_threads(1)
        core.blas_set_num_threads(n)
        local c = bptt.matmul(a, b)
        assert.are.equal(256 * 200 * 300, c:sum())
      end
      bptt.set_num_threads(before)
    end)

  it("report the BLAS in use", function()
    assert.is_truthy(bptt.blas_config():find("OpenBLAS", 1, true))
  end)

  it("checks n", function()
    U.error_with({ "bptt.set_num_threads", "n", "1..", "0" }, bptt.set_num_threads, 0)
    U.error_with({ "bptt.set_num_threads", "n", "whole number" }, bptt.set_num_threads, 1.5)
    U.error_with({ "bptt.set_num_threads", "n", "no value" }, bptt.set_num_threads)
  end)
end)
