--- The seed corpus of spec/fuzz/safetensors_fuzz.c: small valid files (written by
-- bptt.save, so with a checksum, and by hand, without) and hand-made broken ones,
-- one case per file, a few KB in all.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     luajit spec/fuzz/make_corpus.lua [dir]          (dir: spec/fuzz/corpus)
--
-- The files are made the same on every run (fixed seed, sorted names), so the
-- committed corpus only changes when this script does.
local bptt = require "bptt"

local dir = arg[1] or "spec/fuzz/corpus"

local function readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function writefile(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
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

local function file(header, data, n) return u64le(n or #header) .. header .. (data or "") end

local function saved(tensors, meta)
  local tmp = os.tmpname()
  assert(bptt.save(tmp, tensors, meta))
  local s = readfile(tmp)
  os.remove(tmp)
  return s
end

local cases = {}
local function add(name, bytes) cases[#cases + 1] = { name, bytes } end

-- valid, from bptt.save (with the checksum)
bptt.manual_seed(1)
local mixed = saved({
  w = bptt.randn(3, 4),
  b = bptt.randn({ 4 }, "float64"),
  ids = bptt.tensor({ 1, -2, 3 }, "int32"),
  s = bptt.tensor(2.5, "float64"),
  e = bptt.zeros({ 0, 3 }),
  ["w\195\169ights \240\159\142\137"] = bptt.ones(1),
}, { k = "v", quote = 'say "hi"\n', [""] = "" })
add("ok_mixed", mixed)
add("ok_empty", saved({}))
add("ok_scalar", saved({ x = bptt.tensor(1, "int32") }))

-- a training checkpoint of a tiny model (bptt.Trainer:save)
do
  local lm = bptt.LanguageModel{ vocab = 4, embed = 2, cell = "lstm", hidden = 3, layers = 1 }
  local ids = bptt.tensor({ 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1 }, "int32")
  local trainer = bptt.Trainer{ model = lm, optimizer = bptt.optim.adam(lm, { lr = 1e-2 }),
    train = bptt.data.Batches(ids, { batch = 2, seq = 3 }) }
  trainer:step()
  local tmp = os.tmpname()
  assert(trainer:save(tmp, { vocab = "abcd" }))
  add("ok_checkpoint", readfile(tmp))
  os.remove(tmp)
end

-- valid, by hand (no checksum, as other writers)
local OK = '"dtype":"F32","shape":[2],"data_offsets":[0,8]'
local F8 = "\0\0\128\63\0\0\0\64"
add("ok_nosum", file('{"a":{' .. OK .. '}}', F8))
add("ok_whitespace", file('{"__metadata__" : null, "a" : {"shape":[2], '
  .. '"x":[1,-2.5e3,true,false,null,"\\u00e9\\ud83c\\udf89"],\r\n\t"data_offsets":[0,8], "dtype":"I32"}}   ', F8))
add("ok_zero_dim", file('{"a":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}}'))

-- broken: sizes and offsets
add("bad_header_size", file("{}", "", 9999999))
add("bad_header_size_max", string.rep("\255", 8) .. "{}")
add("bad_short", "\1\2\3")
add("bad_offsets_past_end", file('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', F8))
add("bad_overlap", file('{"a":{' .. OK .. '},"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}}', F8))
add("bad_gap", file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', F8))
add("bad_shape_overflow", file('{"a":{"dtype":"F64","shape":[4611686018427387904,4611686018427387904],'
  .. '"data_offsets":[0,8]}}', F8))
add("bad_huge_shape", file('{"a":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}', F8))
add("bad_big_number", file('{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}', F8))
add("bad_9_dims", file('{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]}}', F8))
add("bad_truncated", mixed:sub(1, #mixed - 5))
-- broken: JSON and UTF-8
add("bad_json", file('{"a":{"dtype":"F32" "shape":[2]}}'))
add("bad_utf8", file('{"__metadata__":{"k":"\255\192\175\237\160\128"}}'))
add("bad_surrogate", file('{"__metadata__":{"k":"\\ud83c","l":"\\udf89"}}'))
add("bad_nesting", file('{"a":{' .. OK .. ',"x":' .. string.rep("[", 100) .. string.rep("]", 100) .. "}}", F8))
add("bad_duplicate", file('{"__metadata__":{"k":"1","\\u006b":"2"}}'))
-- broken: the checksum
local at = mixed:find("crc32:", 1, true) + 6
local function reheader(s, from, to) -- the header of s with from replaced by to
  local n = 0
  for k = 8, 1, -1 do n = n * 256 + s:byte(k) end
  local h = s:sub(9, 8 + n):gsub(from, to)
  return file(h, s:sub(9 + n))
end
add("bad_sum_flipped_data", mixed:sub(1, -2) .. string.char((mixed:byte(-1) + 1) % 256))
add("bad_sum_digit", mixed:sub(1, at - 1) .. (mixed:sub(at, at) == "0" and "1" or "0") .. mixed:sub(at + 1))
add("bad_sum_form", mixed:sub(1, at - 7) .. "md5:00" .. mixed:sub(at))
add("bad_sum_escaped", reheader(mixed, '"crc32:', '"\\u0063rc32:')) -- as JSON allows, but not where the sum says
add("bad_sum_upper", reheader(mixed, '"crc32:(%x+)', function(h) return '"crc32:' .. h:upper() end))
add("bad_sum_twice", file('{"__metadata__":{"bptt.checksum":"crc32:00000000","bptt.checksum":"crc32:00000000"}}'))

os.execute("mkdir -p '" .. dir .. "'")
local total = 0
for _, c in ipairs(cases) do
  writefile(dir .. "/" .. c[1], c[2])
  total = total + #c[2]
end
print(string.format("%d files, %d bytes, in %s", #cases, total, dir))
