-- bptt.save / bptt.load (API.md, "Training"): safetensors files.
--
-- Round trips (every dtype, 0-d to 6-d, empty tensors, strided views), metadata,
-- files written by Python (spec/fixtures/make_safetensors.py) read back value by value,
-- files written by bptt decoded here in plain Lua (so the format is not only checked
-- against ourselves), the atomic write, argument errors, and corrupt files, each of which
-- must give nil and a message naming the problem, never a crash or a partial result.
-- The checksum bptt.save writes (c/core/safetensors.h: CRC-32 of the file but its own 8
-- digits, under "bptt.checksum"): recomputed here in plain Lua, any flipped bit caught,
-- files without one (Python's) still read, and the key never shown in the metadata.
-- spec/fuzz/ has the fuzzer of the reader.
local bptt = require "bptt"
local U = require "helpers.tensor_util"

local DTYPES = { "float32", "float64", "int32" }
local ELSIZE = { F32 = 4, F64 = 8, I32 = 4 }
local ST = { float32 = "F32", float64 = "F64", int32 = "I32" }

-- ------------------------------------------------------------ file helpers

local function readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function writefile(path, bytes)
  os.remove(path) -- a new file: rewriting one in place is slow on ext4 (auto_da_alloc)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

-- names in a directory, sorted
local function listdir(dir)
  local p = assert(io.popen("ls -A '" .. dir .. "'"))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

-- a fresh directory from os.tmpname(), removed by the returned function
local function tempdir()
  local name = os.tmpname()
  os.remove(name)
  assert(sh("mkdir '" .. name .. "'"), "cannot make " .. name)
  return name, function()
    assert(name:match("^/tmp/") or name:match("lua_"), "refusing to remove " .. name)
    sh("rm -rf '" .. name .. "'")
  end
end

-- 8-byte little-endian unsigned (n < 2^53)
local function u64le(n)
  local b = {}
  for i = 1, 8 do
    b[i] = n % 256
    n = (n - b[i]) / 256
  end
  return string.char(unpack(b))
end

local function u64at(s, i)
  local n = 0
  for k = 7, 0, -1 do n = n * 256 + s:byte(i + k) end
  return n
end

-- ------------------------------------------- plain-Lua format decoding

-- IEEE 754 from little-endian bytes, by hand
local function f32at(s, i)
  local b1, b2, b3, b4 = s:byte(i, i + 3)
  local bits = b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
  local sign = bits >= 2 ^ 31 and -1 or 1
  local e = math.floor(bits / 2 ^ 23) % 256
  local m = bits % 2 ^ 23
  if e == 255 then return m == 0 and sign * math.huge or 0 / 0 end
  if e == 0 then return sign * m * 2 ^ -149 end
  return sign * (1 + m / 2 ^ 23) * 2 ^ (e - 127)
end

local function f64at(s, i)
  local lo = s:byte(i) + s:byte(i + 1) * 256 + s:byte(i + 2) * 65536 + s:byte(i + 3) * 16777216
  local hi = s:byte(i + 4) + s:byte(i + 5) * 256 + s:byte(i + 6) * 65536 + s:byte(i + 7) * 16777216
  local sign = hi >= 2 ^ 31 and -1 or 1
  local e = math.floor(hi / 2 ^ 20) % 2048
  local m = (hi % 2 ^ 20) * 2 ^ 32 + lo
  if e == 2047 then return m == 0 and sign * math.huge or 0 / 0 end
  if e == 0 then return sign * m * 2 ^ -1074 end
  return sign * (1 + m / 2 ^ 52) * 2 ^ (e - 1023)
end

local function i32at(s, i)
  local b1, b2, b3, b4 = s:byte(i, i + 3)
  local u = b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
  return u >= 2 ^ 31 and u - 2 ^ 32 or u
end

local READ = { F32 = f32at, F64 = f64at, I32 = i32at }

-- CRC-32 (zlib's: reflected 0xEDB88320), bit by bit, as a check of c/crc32.c
local bit = require "bit"
local function crc32(s)
  local crc = 0xFFFFFFFF
  for i = 1, #s do
    crc = bit.bxor(crc, s:byte(i))
    for _ = 1, 8 do
      crc = bit.band(crc, 1) ~= 0 and bit.bxor(bit.rshift(crc, 1), 0xEDB88320) or bit.rshift(crc, 1)
    end
  end
  return bit.tohex(bit.bnot(crc))
end

-- The checksum of a file by the format's definition: the 8 digits after
-- "crc32:" left out of the sum.  Returns the digits written and the sum, or nil.
local function file_checksum(bytes)
  local at = bytes:find('"bptt.checksum":"crc32:', 1, true)
  if not at then return nil end
  at = at + #'"bptt.checksum":"crc32:'
  return bytes:sub(at, at + 7), crc32(bytes:sub(1, at - 1) .. bytes:sub(at + 8))
end

local function utf8char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- A small JSON reader (objects, arrays, strings, numbers), strict enough for
-- a check: raw control characters and duplicate keys fail.
local function json_decode(s)
  local pos = 1
  local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    assert(s:sub(pos, pos) == '"', "string expected at " .. pos)
    pos = pos + 1
    local out = {}
    while true do
      local c = s:sub(pos, pos)
      assert(c ~= "", "unterminated string")
      if c == '"' then
        pos = pos + 1
        return table.concat(out)
      elseif c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16)
          pos = pos + 6
          if cp >= 0xD800 and cp < 0xDC00 then
            assert(s:sub(pos, pos + 1) == "\\u", "lone surrogate")
            cp = 0x10000 + (cp - 0xD800) * 1024 + (tonumber(s:sub(pos + 2, pos + 5), 16) - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8char(cp)
        else
          out[#out + 1] = assert(ESC[e], "bad escape")
          pos = pos + 2
        end
      else
        assert(c:byte() >= 32, "raw control character in a string")
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local obj = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then
        pos = pos + 1
        return obj
      end
      while true do
        ws()
        local k = str()
        ws()
        assert(s:sub(pos, pos) == ":", "':' expected")
        pos = pos + 1
        assert(obj[k] == nil, "duplicate key " .. k)
        obj[k] = value()
        ws()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return obj end
        assert(c == ",", "',' expected")
      end
    elseif c == "[" then
      local arr = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then
        pos = pos + 1
        return arr
      end
      while true do
        arr[#arr + 1] = value()
        ws()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return arr end
        assert(c == ",", "',' expected")
      end
    elseif c == '"' then
      return str()
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      assert(num, "value expected at " .. pos)
      pos = pos + #num
      return tonumber(num)
    end
  end
  local v = value()
  ws()
  assert(pos == #s + 1, "trailing bytes after the JSON")
  return v
end

-- Decodes a safetensors file in plain Lua: header (checked for layout), and
-- every tensor as {dtype =, shape =, data = flat list}; a checksum in the
-- metadata is checked and taken out of it (returned fourth).
local function decode_file(bytes)
  assert(#bytes >= 8, "shorter than 8 bytes")
  local n = u64at(bytes, 1)
  assert(8 + n <= #bytes, "header size past the end")
  local text = bytes:sub(9, 8 + n)
  local header = json_decode(text)
  local buf = bytes:sub(9 + n)
  local out, regions = {}, {}
  for name, info in pairs(header) do
    if name ~= "__metadata__" then
      local es = assert(ELSIZE[info.dtype], "dtype " .. tostring(info.dtype))
      local numel = 1
      for _, d in ipairs(info.shape) do numel = numel * d end
      local b, e = info.data_offsets[1], info.data_offsets[2]
      assert(e - b == numel * es, name .. ": offsets do not match the shape")
      regions[#regions + 1] = { b, e }
      local data = {}
      for k = 0, numel - 1 do data[k + 1] = READ[info.dtype](buf, b + 1 + k * es) end
      out[name] = { dtype = info.dtype, shape = info.shape, data = data, begin = b }
    end
  end
  table.sort(regions, function(x, y) return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2]) end)
  local at = 0
  for _, r in ipairs(regions) do
    assert(r[1] == at, "regions do not tile the buffer")
    at = r[2]
  end
  assert(at == #buf, "buffer size is not the sum of the regions")
  local meta = header.__metadata__ or {}
  local sum = meta["bptt.checksum"]
  if sum then
    local written, want = file_checksum(bytes)
    assert(sum == "crc32:" .. written, "the checksum is not where it should be")
    assert(written == want, "checksum " .. written .. ", the bytes give " .. want)
    meta["bptt.checksum"] = nil
  end
  return out, meta, text, sum
end

-- ------------------------------------------------------------ values

local function flat(t)
  local v = t:totable()
  if type(v) == "number" then return { v } end
  return U.flatten(v)
end

local function random_tensor(g, shape, dt)
  if U.prod(shape) == 0 then return bptt.zeros(shape, dt) end
  return bptt.tensor(U.nested(shape, function()
    if dt == "int32" then return g:int(0, 1) == 0 and g:next() or -1 - g:next() end
    return g:normal() * 10 ^ g:int(-3, 3)
  end), dt)
end

local function assert_same_tensor(got, want, where)
  assert(got ~= nil, where .. ": missing")
  assert.are.equal(want:dtype(), got:dtype(), where)
  assert.are.same(want:shape(), got:shape(), where)
  assert.is_true(got:is_contiguous(), where)
  local a, b = flat(got), flat(want)
  assert.are.equal(#b, #a, where)
  for i = 1, #b do
    if a[i] ~= b[i] and not (a[i] ~= a[i] and b[i] ~= b[i]) then
      error(string.format("%s: element %d is %.17g, want %.17g", where, i, a[i], b[i]))
    end
  end
end

local function count(tbl)
  local n = 0
  for _ in pairs(tbl) do n = n + 1 end
  return n
end

-- =================================================================== specs

describe("bptt.save and bptt.load", function()
  local dir, cleanup
  before_each(function() dir, cleanup = tempdir() end)
  after_each(function() cleanup() end)

  it("round-trip every dtype from 0-d to 6-d exactly", function()
    local g = U.gen(7)
    local tensors = {}
    for _, dt in ipairs(DTYPES) do
      for nd = 0, 6 do
        local shape = {}
        for d = 1, nd do shape[d] = g:int(1, nd <= 3 and 5 or 3) end
        tensors[dt .. "_" .. nd .. "d"] = random_tensor(g, shape, dt)
      end
    end
    local path = dir .. "/all.safetensors"
    assert.are.equal(true, bptt.save(path, tensors))
    local got, meta = bptt.load(path)
    assert.are.same({}, meta)
    assert.are.equal(count(tensors), count(got))
    for name, t in pairs(tensors) do assert_same_tensor(got[name], t, name) end
  end)

  it("keep special values: infinities, NaN, -0, extremes of int32", function()
    local path = dir .. "/special.safetensors"
    local f = bptt.tensor({ 1 / 0, -1 / 0, 0, 3.4028234663852886e38, 1e-45 }, "float32")
    local d = bptt.tensor({ 1 / 0, -1 / 0, 0, 1.7976931348623157e308, 5e-324 }, "float64")
    local i = bptt.tensor({ -2147483648, 2147483647, 0, -1 }, "int32")
    local nan = bptt.tensor({ 0 / 0 }, "float64")
    assert.is_true(bptt.save(path, { f = f, d = d, i = i, nan = nan }))
    local got = bptt.load(path)
    assert_same_tensor(got.f, f, "f")
    assert_same_tensor(got.d, d, "d")
    assert_same_tensor(got.i, i, "i")
    assert.is_true(got.nan:get(1) ~= got.nan:get(1))
  end)

  it("round-trip empty tensors (a 0 in the shape) of every dtype", function()
    local tensors = {}
    for _, dt in ipairs(DTYPES) do
      tensors[dt .. "_0"] = bptt.zeros({ 0 }, dt)
      tensors[dt .. "_0x4"] = bptt.zeros({ 0, 4 }, dt)
      tensors[dt .. "_3x0x2"] = bptt.zeros({ 3, 0, 2 }, dt)
    end
    tensors.between = bptt.ones(2) -- real data around the empty ones
    local path = dir .. "/empty.safetensors"
    assert.is_true(bptt.save(path, tensors))
    local got = bptt.load(path)
    for name, t in pairs(tensors) do assert_same_tensor(got[name], t, name) end
    assert.are.equal(0, got.int32_3x0x2:numel())
  end)

  it("write the logical row-major data of views (transposed, narrowed, selected)", function()
    local g = U.gen(3)
    local a = random_tensor(g, { 4, 5 }, "float64")
    local b = random_tensor(g, { 3, 4, 5 }, "int32")
    local c = random_tensor(g, { 6, 7 }, "float32")
    local views = {
      at = a:t(),
      a_narrow = a:narrow(2, 2, 3),
      b_select = b:select(2, 3),
      b_t13 = b:transpose(1, 3),
      c_both = c:t():narrow(1, 2, 4):narrow(2, 3, 3),
      c_col = c:select(2, 7),
      c_elem = c:select(1, 2):select(1, 3), -- a 0-d view
    }
    for name, v in pairs(views) do
      assert(name == "c_elem" or not v:is_contiguous(), name .. " should be a strided view")
    end
    local path = dir .. "/views.safetensors"
    assert.is_true(bptt.save(path, views))
    local got = bptt.load(path)
    for name, v in pairs(views) do assert_same_tensor(got[name], v, name) end
    -- the sources are untouched
    assert.are.same({ 4, 5 }, a:shape())
  end)

  it("write strided views larger than the write buffer", function()
    local n = U.light and 300 or 700 -- 700 x 700 float32 = 1.9 MB
    local g = U.gen(5)
    local base = bptt.zeros(n, n)
    base:copy(bptt.tensor(U.nested({ n, n }, function() return g:int(-1000, 1000) end)))
    local v = base:t()
    local path = dir .. "/big.safetensors"
    assert.is_true(bptt.save(path, { v = v, w = base }))
    local got = bptt.load(path)
    assert_same_tensor(got.v, v, "v")
    assert_same_tensor(got.w, base, "w")
  end)

  it("round-trip metadata: unicode, quotes, backslashes, every control character", function()
    local ctrl = {}
    for c = 1, 31 do ctrl[#ctrl + 1] = string.char(c) end
    ctrl = table.concat(ctrl) .. "\127"
    local meta = {
      format = "pt",
      unicode = "h\195\169llo \226\156\147 \240\159\142\137 \228\184\173\230\150\135",
      quotes = 'say "hi" \'there\'',
      backslashes = "C:\\path\\to\\n \\u0041 \\\\",
      control = ctrl,
      nul = "a\0b",
      empty = "",
      [""] = "empty key",
      ["k\"e\\y\n\240\159\142\137"] = "odd key",
      json = '{"not": ["parsed"]}',
    }
    local path = dir .. "/meta.safetensors"
    assert.is_true(bptt.save(path, { x = bptt.ones(2) }, meta))
    local got, gmeta = bptt.load(path)
    assert.are.same(meta, gmeta)
    assert_same_tensor(got.x, bptt.ones(2), "x")
    -- and the file's header says the same to an independent reader
    local _, fmeta = decode_file(readfile(path))
    assert.are.same(meta, fmeta)
  end)

  it("give an empty metadata table when there is none, and save an empty table", function()
    local path = dir .. "/nothing.safetensors"
    assert.is_true(bptt.save(path, {}))
    local t, m = bptt.load(path)
    assert.are.same({}, t)
    assert.are.same({}, m)
    assert.is_true(bptt.save(path, {}, {}))
    t, m = bptt.load(path)
    assert.are.same({}, t)
    assert.are.same({}, m)
  end)

  it("keep tensor names with any characters", function()
    local names = { "rnn.weight_ih_l0", "w\195\169ights.\195\188 \240\159\142\137", 'q"u\\o\te', "", "a\0b",
      "\1\31", "__metadata", "x.__metadata__" }
    local tensors = {}
    for i, name in ipairs(names) do tensors[name] = bptt.tensor({ i }, "int32") end
    local path = dir .. "/names.safetensors"
    assert.is_true(bptt.save(path, tensors))
    local got = bptt.load(path)
    assert.are.equal(#names, count(got))
    for i, name in ipairs(names) do assert.are.equal(i, got[name]:get(1)) end
  end)

  it("return the loaded tensors as new, independent, contiguous tensors", function()
    local path = dir .. "/indep.safetensors"
    local x = bptt.tensor({ { 1, 2 }, { 3, 4 } })
    bptt.save(path, { x = x })
    local a = bptt.load(path)
    local b = bptt.load(path)
    a.x:fill(9)
    assert.are.same({ { 1, 2 }, { 3, 4 } }, b.x:totable())
    assert.are.same({ { 1, 2 }, { 3, 4 } }, x:totable())
  end)
end)

describe("bptt.load of files written by Python (spec/fixtures/make_safetensors.py)", function()
  local NAME = "w\195\169ights.\195\188 \240\159\142\137"
  local META = {
    format = "pt",
    note = "h\195\169llo w\195\182rld \226\156\147 \240\159\142\137",
    quote = 'say "hi"\\n',
    ctrl = "tab\tnl\ncr\r\1",
  }

  for _, file in ipairs({ "python.safetensors", "python_ascii.safetensors" }) do
    it("reads every value of " .. file, function()
      local t, meta = bptt.load("spec/fixtures/" .. file)
      assert(t, meta)
      assert.are.same(META, meta)
      assert.are.equal(6, count(t))
      assert.are.equal("float32", t.f32:dtype())
      assert.are.same({ { 1.5, -2.25, 3.0 }, { 0.125, 1024.5, 3.4028234663852886e38 } }, t.f32:totable())
      assert.are.equal("float64", t.f64:dtype())
      assert.are.same({ 0.1, -1e300, 3.141592653589793 }, t.f64:totable())
      assert.are.equal("int32", t.i32:dtype())
      assert.are.same({ { { 1, -2 }, { 2147483647, -2147483648 } }, { { 0, 7 }, { -7, 100000 } } }, t.i32:totable())
      assert.are.equal("float64", t.scalar:dtype())
      assert.are.equal(0, t.scalar:dim())
      assert.are.equal(42.5, t.scalar:get())
      assert.are.equal("float32", t.empty:dtype())
      assert.are.same({ 0, 4 }, t.empty:shape())
      assert.are.same({ { -0.5 } }, t[NAME]:totable())
    end)
  end

  it("saves them back so that a plain reader sees the same values", function()
    local dir, cleanup = tempdir()
    local t, meta = bptt.load("spec/fixtures/python.safetensors")
    local path = dir .. "/again.safetensors"
    assert.is_true(bptt.save(path, t, meta))
    local dec, dmeta = decode_file(readfile(path))
    assert.are.same(META, dmeta)
    assert.are.same({ 1.5, -2.25, 3.0, 0.125, 1024.5, 3.4028234663852886e38 }, dec.f32.data)
    assert.are.same({ 0.1, -1e300, 3.141592653589793 }, dec.f64.data)
    assert.are.same({ 1, -2, 2147483647, -2147483648, 0, 7, -7, 100000 }, dec.i32.data)
    assert.are.same({}, dec.scalar.shape)
    assert.are.same({ 42.5 }, dec.scalar.data)
    assert.are.same({ 0, 4 }, dec.empty.shape)
    assert.are.same({ -0.5 }, dec[NAME].data)
    cleanup()
  end)
end)

describe("files written by bptt.save, decoded in plain Lua", function()
  it("follow the format: header size, JSON header padded to 8 bytes, aligned little-endian data", function()
    local dir, cleanup = tempdir()
    local g = U.gen(21)
    local tensors = {
      a = random_tensor(g, { 2, 3 }, "float32"),
      b = random_tensor(g, { 5 }, "float64"),
      c = random_tensor(g, { 2, 2, 2 }, "int32"),
      s = random_tensor(g, {}, "float64"),
      e = bptt.zeros({ 0, 3 }, "float32"),
      ["odd \"name\"\n"] = random_tensor(g, { 1 }, "float32"),
      v = random_tensor(g, { 3, 4 }, "float64"):t(),
    }
    local path = dir .. "/fmt.safetensors"
    assert.is_true(bptt.save(path, tensors, { who = "bptt", ["\226\156\147"] = "ok" }))
    local bytes = readfile(path)
    local n = u64at(bytes, 1)
    assert.are.equal(0, (8 + n) % 8, "data must start at a multiple of 8")
    assert.are.equal("{", bytes:sub(9, 9))
    local dec, meta, text, sum = decode_file(bytes)
    assert.is_truthy(sum and sum:match("^crc32:%x%x%x%x%x%x%x%x$"), "a checksum in the metadata")
    assert.is_truthy(text:match("}( *)$"), "only spaces may follow the JSON")
    assert.are.same({ who = "bptt", ["\226\156\147"] = "ok" }, meta)
    assert.are.equal(count(tensors), count(dec))
    for name, t in pairs(tensors) do
      local d = dec[name]
      assert(d, name)
      assert.are.equal(ST[t:dtype()], d.dtype, name)
      assert.are.same(t:shape(), d.shape, name)
      assert.are.same(flat(t), d.data, name)
      assert.are.equal(0, d.begin % ELSIZE[d.dtype], name .. " is aligned to its element size")
    end
    cleanup()
  end)
end)

describe("the checksum (bptt.checksum in the metadata)", function()
  local dir, cleanup
  setup(function() dir, cleanup = tempdir() end)
  teardown(function() cleanup() end)

  local function small(path)
    local g = U.gen(31)
    local tensors = { a = random_tensor(g, { 2, 3 }, "float32"), b = random_tensor(g, { 2 }, "float64"),
      c = random_tensor(g, { 3 }, "int32") }
    assert.is_true(bptt.save(path, tensors, { k = "v" }))
    return tensors, readfile(path)
  end

  local function mismatch(path, bytes, what)
    writefile(path, bytes)
    local t, msg = bptt.load(path)
    assert(t == nil, what .. " was not caught")
    assert(msg:find("bptt.load: " .. path .. ": checksum mismatch (file corrupt)", 1, true), msg)
  end

  local function flip(s, i, b) -- s with bit b (0..7) of byte i flipped
    return s:sub(1, i - 1) .. string.char(bit.bxor(s:byte(i), bit.lshift(1, b))) .. s:sub(i + 1)
  end

  it("is written by every save, recomputed the same in plain Lua, and not shown by load", function()
    local path = dir .. "/sum.safetensors"
    local tensors, bytes = small(path)
    local written, want = file_checksum(bytes)
    assert.are.equal(want, written)
    local got, meta = bptt.load(path)
    assert.are.same({ k = "v" }, meta)
    for name, t in pairs(tensors) do assert_same_tensor(got[name], t, name) end
    -- saving what was loaded gives the same file again
    os.remove(path)
    assert.is_true(bptt.save(path, got, meta))
    assert.are.equal(bytes, readfile(path))
  end)

  it("catches any flipped bit in the data region", function()
    local path = dir .. "/flip.safetensors"
    local _, bytes = small(path)
    local start = 8 + u64at(bytes, 1)
    local bad = dir .. "/bad.safetensors"
    for i = start + 1, #bytes do
      for b = 0, 7 do mismatch(bad, flip(bytes, i, b), "bit " .. b .. " of byte " .. i) end
    end
  end)

  it("catches changes to the header that leave it a valid file", function()
    local path = dir .. "/hdr.safetensors"
    local _, bytes = small(path)
    local bad = dir .. "/bad.safetensors"
    local function swap(from, to)
      local i = assert(bytes:find(from, 1, true), from)
      assert.are.equal(#from, #to)
      return bytes:sub(1, i - 1) .. to .. bytes:sub(i + #from)
    end
    mismatch(bad, swap('"shape":[2,3]', '"shape":[3,2]'), "a transposed shape")
    mismatch(bad, swap('"c":{"dtype":"I32"', '"c":{"dtype":"F32"'), "another dtype")
    mismatch(bad, swap('"a":{', '"x":{'), "another name")
    mismatch(bad, swap('"k":"v"', '"k":"w"'), "another metadata value")
    local written = file_checksum(bytes)
    local other = (written:sub(1, 1) == "0" and "1" or "0") .. written:sub(2)
    mismatch(bad, swap("crc32:" .. written, "crc32:" .. other), "another checksum")
  end)

  it("is not required: files from Python (without one) load", function()
    for _, file in ipairs({ "python.safetensors", "python_ascii.safetensors" }) do
      local bytes = readfile("spec/fixtures/" .. file)
      assert.is_nil(bytes:find("bptt.checksum", 1, true))
      local t, meta = bptt.load("spec/fixtures/" .. file)
      assert(t, meta)
      assert.are.equal(6, count(t))
      assert.are.equal("pt", meta.format)
    end
  end)

  it("must be one this version knows", function()
    local path = dir .. "/form.safetensors"
    local _, bytes = small(path)
    local written = file_checksum(bytes)
    local bad = dir .. "/bad.safetensors"
    for _, v in ipairs({ "crc32:" .. written:upper(), "crc64:" .. written, "xxh:000" .. written }) do
      writefile(bad, (bytes:gsub("crc32:" .. written, v)))
      local t, msg = bptt.load(bad)
      assert.is_nil(t)
      assert.is_truthy(msg:find("metadata bptt.checksum '" .. v .. "' is not a checksum this version knows", 1, true),
        msg)
    end
  end)

  it("covers training checkpoints (bptt.Trainer:save)", function()
    bptt.manual_seed(3)
    local lm = bptt.LanguageModel{ vocab = 4, embed = 2, cell = "gru", hidden = 3, layers = 1 }
    local ids = bptt.tensor({ 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1 }, "int32")
    local trainer = bptt.Trainer{ model = lm, optimizer = bptt.optim.adam(lm, { lr = 1e-2 }),
      train = bptt.data.Batches(ids, { batch = 2, seq = 3 }) }
    trainer:step()
    local path = dir .. "/ckpt.safetensors"
    assert.is_true(trainer:save(path, { vocab = "abcd" }))
    local bytes = readfile(path)
    local _, meta = decode_file(bytes) -- checks the sum
    assert.are.equal("abcd", meta.vocab)
    local config, lmeta = bptt.Trainer.read_config(path)
    assert.are.equal(3, config.hidden)
    assert.is_nil(lmeta["bptt.checksum"])
    local before = lm:flat_parameters():clone()
    writefile(path, flip(bytes, #bytes - 5, 3)) -- a bit of the last tensor
    local ok, msg = trainer:load(path)
    assert.is_nil(ok)
    assert.is_truthy(msg:find("checksum mismatch (file corrupt)", 1, true), msg)
    assert.are.equal(0, (lm:flat_parameters() - before):norm())
  end)
end)

describe("bptt.save is atomic", function()
  local dir, cleanup
  before_each(function() dir, cleanup = tempdir() end)
  after_each(function() cleanup() end)

  it("replaces a previous file and leaves no temporary file behind", function()
    local path = dir .. "/m.safetensors"
    assert.is_true(bptt.save(path, { a = bptt.ones(3) }))
    assert.is_true(bptt.save(path, { b = bptt.zeros(2, 2) }))
    local t = bptt.load(path)
    assert.is_nil(t.a)
    assert.are.same({ 2, 2 }, t.b:shape())
    assert.are.same({ "m.safetensors" }, listdir(dir))
  end)

  it("returns nil, message for a directory that is not there", function()
    local ok, msg = bptt.save(dir .. "/missing/m.safetensors", { a = bptt.ones(3) })
    assert.is_nil(ok)
    assert.is_truthy(msg:find("bptt.save: ", 1, true))
    assert.is_truthy(msg:find("No such file or directory", 1, true), msg)
    assert.are.same({}, listdir(dir))
  end)

  it("returns nil, message when the path is a directory, and leaves no temporary file", function()
    local path = dir .. "/adir"
    assert(sh("mkdir '" .. path .. "'"))
    local ok, msg = bptt.save(path, { a = bptt.ones(3) })
    assert.is_nil(ok)
    assert.is_truthy(msg:find("it is a directory, not a regular file: not replaced", 1, true), msg)
    assert.are.same({ "adir" }, listdir(dir))
    assert.are.same({}, listdir(path))
  end)

  -- A write that fails halfway: the file size limit (RLIMIT_FSIZE, with
  -- SIGXFSZ ignored) makes write() fail with EFBIG after 4 KB.
  local ffi_ok, ffi = pcall(require, "ffi")
  local linux = ffi_ok and jit and jit.os == "Linux" and (jit.arch == "x64" or jit.arch == "arm64"
    or jit.arch == "x86" or jit.arch == "arm")
  if linux then
    pcall(ffi.cdef, [[
      typedef struct { unsigned long cur, max; } bptt_spec_rlimit;
      typedef void (*bptt_spec_sighandler)(int);
      int getrlimit(int resource, bptt_spec_rlimit *rl);
      int setrlimit(int resource, const bptt_spec_rlimit *rl);
      bptt_spec_sighandler signal(int sig, bptt_spec_sighandler h);
      int getpid(void);
    ]])
  end
  local RLIMIT_FSIZE, SIGXFSZ = 1, 25

  local function with_file_limit(bytes, f)
    local C = ffi.C
    local rl = ffi.new("bptt_spec_rlimit")
    assert(C.getrlimit(RLIMIT_FSIZE, rl) == 0)
    local saved = rl.cur
    local old = C.signal(SIGXFSZ, ffi.cast("bptt_spec_sighandler", 1)) -- SIG_IGN
    rl.cur = bytes
    assert(C.setrlimit(RLIMIT_FSIZE, rl) == 0)
    local ok, a, b = pcall(f)
    rl.cur = saved
    C.setrlimit(RLIMIT_FSIZE, rl)
    C.signal(SIGXFSZ, old)
    if not ok then error(a, 0) end
    return a, b
  end

  local linux_it = linux and it or pending
  linux_it("keeps the previous file intact when a write fails halfway", function()
    local path = dir .. "/m.safetensors"
    local old = bptt.tensor({ 1, 2, 3 }, "int32")
    assert.is_true(bptt.save(path, { old = old }, { v = "1" }))
    local before = readfile(path)
    local ok, msg = with_file_limit(4096, function()
      return bptt.save(path, { big = bptt.ones(100000) }, { v = "2" })
    end)
    assert.is_nil(ok)
    assert.is_truthy(msg:find("File too large", 1, true), msg)
    assert.are.equal(before, readfile(path))
    assert.are.same({ "m.safetensors" }, listdir(dir))
    local t, m = bptt.load(path)
    assert.are.same({ 1, 2, 3 }, t.old:totable())
    assert.are.same({ v = "1" }, m)
  end)

  linux_it("does not touch a temporary-looking file someone else left", function()
    local path = dir .. "/m.safetensors"
    local stale = path .. ".tmp." .. ffi.C.getpid()
    writefile(stale, "not mine")
    assert.is_true(bptt.save(path, { a = bptt.ones(2) }))
    assert.are.equal("not mine", readfile(stale))
    assert.are.same({ "m.safetensors", "m.safetensors.tmp." .. ffi.C.getpid() }, listdir(dir))
    assert.are.same({ 1, 1 }, bptt.load(path).a:totable())
  end)
end)

describe("bptt.save and bptt.load argument errors", function()
  local x = bptt.ones(2)

  it("raise for programming mistakes", function()
    U.error_with({ "bptt.save: path must be a string, got nil" }, bptt.save, nil, { x = x })
    U.error_with({ "bptt.save: path must not contain a zero byte" }, bptt.save, "a\0b", { x = x })
    U.error_with({ "bptt.save: tensors must be a table of name -> tensor, got no value" }, bptt.save, "p")
    U.error_with({ "bptt.save: tensors must be a table", "got userdata" }, bptt.save, "p", x)
    U.error_with({ 'bptt.save: tensors["w"] must be a tensor, got number' }, bptt.save, "p", { w = 1 })
    U.error_with({ 'bptt.save: tensors["w"] must be a tensor, got table' }, bptt.save, "p", { w = { 1, 2 } })
    U.error_with({ "bptt.save: tensors must map string names to tensors, got a number key" }, bptt.save, "p", { x })
    U.error_with({ 'bptt.save: "__metadata__" is reserved' }, bptt.save, "p", { __metadata__ = x })
    U.error_with({ "bptt.save: tensor name", "is not valid UTF-8" }, bptt.save, "p", { ["\255"] = x })
    U.error_with({ "bptt.save: metadata must be a table of string -> string, got string" }, bptt.save, "p",
      { x = x }, "meta")
    U.error_with({ 'bptt.save: metadata["n"] must be a string, got number' }, bptt.save, "p", { x = x }, { n = 1 })
    U.error_with({ "bptt.save: metadata must map strings to strings, got a number key" }, bptt.save, "p",
      { x = x }, { "a" })
    U.error_with({ 'bptt.save: metadata["k"] is not valid UTF-8' }, bptt.save, "p", { x = x }, { k = "\192\128" })
    U.error_with({ 'bptt.save: metadata key "bptt.checksum" is reserved' }, bptt.save, "p", { x = x },
      { ["bptt.checksum"] = "crc32:00000000" })
    local freed = bptt.ones(2)
    freed:free()
    U.error_with({ 'bptt.save: tensors["f"] was freed' }, bptt.save, "p", { f = freed })
    U.error_with({ "bptt.load: path must be a string, got table" }, bptt.load, {})
    assert.is_false(exists("p"))
  end)
end)

describe("bptt.load of missing, truncated or corrupt files", function()
  local dir, cleanup -- one directory for these many small cases
  setup(function() dir, cleanup = tempdir() end)
  teardown(function() cleanup() end)

  local function fails(path, needle)
    local t, msg = bptt.load(path)
    assert(t == nil, "expected nil for " .. needle .. ", got a result")
    assert.are.equal("string", type(msg))
    assert(msg:find("bptt.load: " .. path .. ": ", 1, true), msg)
    assert(msg:find(needle, 1, true), "message\n  " .. msg .. "\ndoes not contain\n  " .. needle)
    return msg
  end

  -- a file from a header text and data bytes (header size = #header unless given)
  local function file(header, data, n)
    return u64le(n or #header) .. header .. (data or "")
  end

  local function one(fields, data)
    return file('{"a":{' .. fields .. "}}", data)
  end

  local F8 = string.rep("\0", 8)
  local OK = '"dtype":"F32","shape":[2],"data_offsets":[0,8]'

  it("give nil, message for a missing file, an empty file, a directory", function()
    fails(dir .. "/nope.safetensors", "cannot open: No such file or directory")
    writefile(dir .. "/empty", "")
    fails(dir .. "/empty", "file is empty")
    writefile(dir .. "/short", "\1\2\3\4\5")
    fails(dir .. "/short", "file is 5 bytes, too short")
    fails(dir, "not a regular file")
  end)

  local CASES = {
    { "header size > file", file("{}", "", 9999999), "header size 9999999 exceeds file size 10" },
    { "header size 2^64 - 1", string.rep("\255", 8) .. "{}", "header size 18446744073709551615 exceeds file size 10" },
    { "empty header", file(""), "header is not a JSON object" },
    { "header not JSON", file("hello, world"), "header is not a JSON object" },
    { "header an array", file("[1, 2]"), "header is not a JSON object" },
    { "header cut short", file('{"a":{"dtype":'), "header is not valid JSON" },
    { "trailing garbage", file('{} x'), "trailing garbage after the JSON object at byte 3" },
    { "two objects", file('{}{}'), "trailing garbage" },
    { "missing comma", file('{"a":{"dtype":"F32" "shape":[2]}}'), "expected ',' or '}'" },
    { "trailing comma", file('{"a":{' .. OK .. ',}}', F8), "expected a string" },
    { "single quotes", file("{'a':1}"), "expected a string" },
    { "bad dtype BF16", one('"dtype":"BF16","shape":[2],"data_offsets":[0,4]', "\0\0\0\0"),
      "tensor 'a': dtype BF16 is not supported (F32, F64, I32)" },
    { "bad dtype F16", one('"dtype":"F16","shape":[2],"data_offsets":[0,4]', "\0\0\0\0"),
      "dtype F16 is not supported (F32, F64, I32)" },
    { "dtype not a string", one('"dtype":4,"shape":[2],"data_offsets":[0,8]', F8), "dtype must be a string" },
    { "no dtype", one('"shape":[2],"data_offsets":[0,8]', F8), "tensor 'a' has no dtype" },
    { "no shape", one('"dtype":"F32","data_offsets":[0,8]', F8), "tensor 'a' has no shape" },
    { "no offsets", one('"dtype":"F32","shape":[2]', F8), "tensor 'a' has no data_offsets" },
    { "tensor not an object", file('{"a":[1]}'), "tensor 'a' must be an object" },
    { "shape/offset mismatch", one('"dtype":"F32","shape":[3],"data_offsets":[0,8]', F8),
      "tensor 'a': data_offsets [0, 8] hold 8 bytes, but its F32 shape needs 12" },
    { "F64 counted as F32", one('"dtype":"F64","shape":[2],"data_offsets":[0,8]', F8), "F64 shape needs 16" },
    { "overlapping offsets",
      file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        .. '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
        string.rep("\0", 12)), "tensors 'a' and 'b' overlap (data_offsets [0, 8] and [4, 12])" },
    { "same region twice",
      file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        .. '"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}',
        F8), "overlap" },
    { "gap between tensors",
      file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        .. '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
        string.rep("\0", 12)), "data has a gap at bytes [4, 8) before tensor 'b'" },
    { "bytes after the last tensor", one(OK, F8 .. "junk"), "data has 4 bytes after the last tensor" },
    { "offsets past the end", one('"dtype":"F32","shape":[4],"data_offsets":[0,16]', F8),
      "data_offsets [0, 16] run past the end of the data (8 bytes" },
    { "offsets reversed", one('"dtype":"F32","shape":[0],"data_offsets":[8,0]', F8), "end before they begin" },
    { "three offsets", one('"dtype":"F32","shape":[2],"data_offsets":[0,8,8]', F8),
      "data_offsets must be [begin, end]" },
    { "a lying huge shape", one('"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]', F8),
      "run past the end of the data" },
    { "shape overflow", one('"dtype":"F64","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]', F8),
      "tensor 'a': shape overflows" },
    { "shape times element size overflows", one('"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]', F8),
      "shape overflows" },
    { "number past 2^63", one('"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]', F8),
      "tensor 'a': shape[1] is too large" },
    { "negative size", one('"dtype":"F32","shape":[-2],"data_offsets":[0,8]', F8),
      "tensor 'a': shape[1] must be a non-negative integer" },
    { "fractional size", one('"dtype":"F32","shape":[2.0],"data_offsets":[0,8]', F8),
      "must be a non-negative integer" },
    { "exponent size", one('"dtype":"F32","shape":[2e0],"data_offsets":[0,8]', F8), "must be a non-negative integer" },
    { "leading zero", one('"dtype":"F32","shape":[02],"data_offsets":[0,8]', F8), "must be a non-negative integer" },
    { "size as a string", one('"dtype":"F32","shape":["2"],"data_offsets":[0,8]', F8),
      "must be a non-negative integer" },
    { "shape not a list", one('"dtype":"F32","shape":2,"data_offsets":[0,8]', F8),
      "shape must be a list of non-negative integers" },
    { "9 dimensions", one('"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]', F8),
      "shape has more than 8 dimensions" },
    { "duplicate tensor", file('{"a":{' .. OK .. '},"a":{' .. OK .. "}}", F8), "the key 'a' twice in the header" },
    { "duplicate field", one('"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]', F8),
      "the key 'dtype' twice in a tensor" },
    { "duplicate metadata key", file('{"__metadata__":{"k":"1","k":"2"}}'), "the key 'k' twice in __metadata__" },
    { "duplicate __metadata__", file('{"__metadata__":{},"__metadata__":{}}'), "the key '__metadata__' twice" },
    { "duplicate after escapes", file('{"__metadata__":{"k":"1","\\u006b":"2"}}'), "the key 'k' twice" },
    { "duplicate in an unknown field", one(OK .. ',"x":{"y":1,"y":2}', F8), "the key 'y' twice in an object" },
    { "metadata value not a string", file('{"__metadata__":{"k":1}}'), "__metadata__ values must be strings" },
    { "metadata not an object", file('{"__metadata__":"k"}'), "__metadata__ must be an object" },
    { "bad escape", file('{"__metadata__":{"k":"a\\xb"}}'), "invalid escape" },
    { "short \\u", file('{"__metadata__":{"k":"\\u12"}}'), "\\u must be followed by 4 hex digits" },
    { "lone high surrogate", file('{"__metadata__":{"k":"\\ud83c"}}'), "high surrogate \\uD83C without a low one" },
    { "lone low surrogate", file('{"__metadata__":{"k":"\\udf89x"}}'), "lone low surrogate" },
    { "raw control character", file('{"__metadata__":{"k":"a\nb"}}'), "control character 0x0a in a string" },
    { "invalid UTF-8", file('{"__metadata__":{"k":"\255"}}'), "header is not valid UTF-8 at byte 22" },
    { "overlong UTF-8", file('{"__metadata__":{"k":"\192\175"}}'), "not valid UTF-8" },
    { "UTF-8 surrogate", file('{"__metadata__":{"k":"\237\160\128"}}'), "not valid UTF-8" },
    { "unterminated string", file('{"__metadata__":{"k":"abc'), "unterminated string" },
    { "deep nesting", one(OK .. ',"x":' .. string.rep("[", 100) .. string.rep("]", 100), F8),
      "header nests deeper than 64 levels" },
    { "bad literal", one(OK .. ',"x":tru', F8), "expected a value" },
    { "bad number", one(OK .. ',"x":-', F8), "expected a value" },
    { "bad fraction", one(OK .. ',"x":1.', F8), "expected a digit" },
  }

  for _, case in ipairs(CASES) do
    it("reject " .. case[1], function()
      local path = dir .. "/bad.safetensors"
      writefile(path, case[2])
      fails(path, case[3])
    end)
  end

  it("reject a header larger than 100 MB without reading it", function()
    local path = dir .. "/sparse.safetensors"
    local f = assert(io.open(path, "wb"))
    f:write(u64le(100000001))
    f:seek("set", 100000100)
    f:write("x")
    f:close()
    fails(path, "header size 100000001 exceeds the limit of 100000000 bytes")
  end)

  it("reject a truncated file, at every length", function()
    local path = dir .. "/t.safetensors"
    assert.is_true(bptt.save(path, { a = bptt.ones(3, 5), b = bptt.zeros(4, "float64") }, { k = "v" }))
    local whole = readfile(path)
    local cut = dir .. "/cut.safetensors"
    for len = 0, #whole - 1 do
      writefile(cut, whole:sub(1, len))
      local t, msg = bptt.load(cut)
      assert(t == nil and type(msg) == "string", "length " .. len .. " was accepted")
    end
    writefile(cut, whole:sub(1, #whole - 3))
    fails(cut, "run past the end of the data")
  end)

  it("accept what the format allows: whitespace, unknown fields, null metadata", function()
    local path = dir .. "/ok.safetensors"
    local hdr = ' { "a" : {\t"shape" : [ 2 ] ,\r\n"extra":{"n":[1,-2.5e3,true,false,null,"s"]},'
      .. '"data_offsets":[0,8],"dtype":"I32"}, "__metadata__" : null }   '
    hdr = hdr:sub(2) -- must start with '{'
    writefile(path, file(hdr, "\1\0\0\0\255\255\255\255"))
    local t, m = bptt.load(path)
    assert(t, m)
    assert.are.same({ 1, -1 }, t.a:totable())
    assert.are.same({}, m)
  end)

  it("survive random damage: every result is a whole load or nil, message", function()
    local path = dir .. "/f.safetensors"
    local g = U.gen(99)
    assert.is_true(bptt.save(path, {
      a = random_tensor(g, { 2, 3 }, "float32"),
      b = random_tensor(g, { 4 }, "float64"),
      c = bptt.zeros({ 0 }, "int32"),
      d = random_tensor(g, {}, "int32"),
    }, { k = "v\226\156\147", ["\\"] = '"' }))
    local whole = readfile(path)
    local n = u64at(whole, 1)
    local bad = dir .. "/bad.safetensors"
    local rounds = U.light and 300 or 3000
    local accepted = 0
    for _ = 1, rounds do
      local s = whole
      local op = g:int(1, 4)
      local at = g:int(1, op == 1 and #s or 8 + n)
      if op <= 2 then -- change a byte (anywhere, or in the header)
        s = s:sub(1, at - 1) .. string.char(g:int(0, 255)) .. s:sub(at + 1)
      elseif op == 3 then -- drop a byte
        s = s:sub(1, at - 1) .. s:sub(at + 1)
      else -- put in a JSON-ish character
        local c = ('{}[]",:0 9\\u-e.'):sub(g:int(1, 15))
        s = s:sub(1, at - 1) .. c:sub(1, 1) .. s:sub(at)
      end
      writefile(bad, s)
      local t, m = bptt.load(bad)
      if t == nil then
        assert(type(m) == "string" and m:find("bptt.load: ", 1, true), tostring(m))
      else
        -- with the checksum, only damage to its key goes unnoticed, and then the
        -- key shows (or the byte was changed to itself)
        accepted = accepted + 1
        assert(type(t) == "table" and type(m) == "table")
        assert(s == whole or count(m) ~= 2 or m.k ~= "v\226\156\147" or m["\\"] ~= '"',
          "damage was not noticed")
      end
    end
    assert(accepted < rounds, "damage was never noticed")
  end)
end)
