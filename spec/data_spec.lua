-- The data contract (bptt.data): texts load as bytes or UTF-8 code points into
-- int32 ids held in C memory; vocabularies are sorted, 1-based, saved and
-- rebuilt exactly; bad input is named by position; batches follow char-rnn's
-- layout of B parallel streams of T steps, wrap at epochs, resume exactly from
-- a saved state and shuffle reproducibly by seed; a large corpus loads without
-- touching the Lua heap.
local bptt = require "bptt.core"
local data = require "bptt.data"

local light = (os.getenv("BPTT_SPEC_LIGHT") or "") ~= "" -- valgrind: smaller big files

local tmpdir = os.getenv("TMPDIR") or "/tmp"
local function tmpname(tag)
  return string.format("%s/bptt_data_spec_%s_%d_%d.txt", tmpdir, tag, os.time(), math.floor(os.clock() * 1e6))
end

local function write_file(path, ...)
  local f = assert(io.open(path, "wb"))
  for i = 1, select("#", ...) do assert(f:write((select(i, ...)))) end
  assert(f:close())
end

-- The code point of a one-symbol UTF-8 string (a reference decoder for the
-- checks, run on the few symbols of a vocabulary).
local function codepoint(s)
  local b = { s:byte(1, -1) }
  if #b == 1 then return b[1] end
  local cp = b[1] % (2 ^ (7 - #b))
  for i = 2, #b do cp = cp * 64 + b[i] % 64 end
  return cp
end

local function load_text(text, opts)
  opts = opts or {}
  opts.text = text
  return assert(data.text(nil, opts))
end

describe("bptt.data.text with unit = \"byte\"", function()
  it("maps each byte to a symbol and round-trips every byte value", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char((i * 97 + 13) % 256) end -- all 256, scrambled
    local text = table.concat(bytes) .. "tail"
    local c = load_text(text, { unit = "byte" })
    assert.are.equal("byte", c.unit)
    assert.are.equal("byte", c.vocab.unit)
    assert.are.equal(256, c.vocab:size())
    assert.are.equal(#text, c.tokens:numel())
    assert.are.equal("int32", c.tokens:dtype())
    assert.are.equal(text, c.vocab:decode(c.tokens))
    -- sorted by byte value: id = byte + 1
    for i = 1, #text do
      if i <= 260 then assert.are.equal(text:byte(i) + 1, c.tokens:get(i)) end
    end
    local syms = c.vocab:symbols()
    for id = 1, 256 do assert.are.equal(string.char(id - 1), syms[id]) end
  end)

  it("splits UTF-8 text into its bytes", function()
    local text = "né 😀"
    local c = load_text(text, { unit = "byte" })
    assert.are.equal(#text, c.tokens:numel())
    assert.are.equal(text, c.vocab:decode(c.tokens))
  end)
end)

describe("bptt.data.text with unit = \"utf8\" (the default)", function()
  local text = "Naïve café — 日本語のテキスト, Ελληνικά, Кириллица; emoji 😀🎉👩‍🚀; combining: e\u{301} a\u{308}\u{323}; " ..
    "BOM \u{FEFF}, NUL \0, U+10FFFF \u{10FFFF}, max 3-byte \u{FFFF}\n"

  it("round-trips multi-byte, 4-byte, combining and control characters", function()
    local c = load_text(text)
    assert.are.equal("utf8", c.unit)
    assert.are.equal(text, c.vocab:decode(c.tokens))
    assert.are.equal(text, c.vocab:decode(c.tokens:totable()))
    assert.are.equal(text, c.vocab:decode(c.tokens:to("float64")))
  end)

  it("makes one symbol of each code point: a 4-byte emoji is one, a combining mark is its own", function()
    local c = load_text("😀")
    assert.are.equal(1, c.tokens:numel())
    assert.are.same({ "😀" }, c.vocab:symbols())
    assert.are.equal(0x1F600, codepoint(c.vocab:symbols()[1]))
    c = load_text("e\u{301}")
    assert.are.equal(2, c.tokens:numel())
    assert.are.same({ "e", "\u{301}" }, c.vocab:symbols())
    -- a ZWJ sequence is its code points: woman, ZWJ, rocket
    assert.are.equal(3, load_text("👩‍🚀").tokens:numel())
  end)

  it("sorts the vocabulary by code point, ids 1..V, with counts", function()
    local c = load_text(text)
    local syms, counts = c.vocab:symbols(), c.vocab:counts()
    assert.are.equal(c.vocab:size(), #syms)
    for i = 2, #syms do assert.is_true(codepoint(syms[i - 1]) < codepoint(syms[i])) end
    assert.are.equal(1, c.tokens:min())
    assert.are.equal(c.vocab:size(), c.tokens:max())
    local total = 0
    for _, n in ipairs(counts) do
      assert.is_true(n >= 1)
      total = total + n
    end
    assert.are.equal(c.tokens:numel(), total)
    -- ids of a small text, by hand: " " < "a" < "b" < "é"
    local d = load_text("béa b")
    assert.are.same({ " ", "a", "b", "é" }, d.vocab:symbols())
    assert.are.same({ 3, 4, 2, 1, 3 }, d.tokens:totable())
    assert.are.same({ 1, 1, 2, 1 }, d.vocab:counts())
  end)

  it("takes the text as data.text{text = s} too", function()
    local c = assert(data.text { text = "ab", unit = "byte" })
    assert.are.same({ 1, 2 }, c.tokens:totable())
  end)

  it("loads an empty text as no tokens and an empty vocabulary", function()
    local c = load_text("")
    assert.are.equal(0, c.tokens:numel())
    assert.are.equal(0, c.vocab:size())
    assert.are.equal("", c.vocab:decode(c.tokens))
  end)

  it("rejects invalid UTF-8 with nil and a message naming the byte offset", function()
    local cases = {
      { "ab\xffcd", 2, "byte 0xff cannot start" },
      { "ab\x80", 2, "byte 0x80 cannot start" },            -- stray continuation byte
      { "x\xc0\xaf", 1, "byte 0xc0 cannot start" },          -- overlong "/"
      { "\xe0\x80\xaf", 0, "byte 0x80 at offset 1" },        -- overlong 3-byte form
      { "ok\xed\xa0\x80", 2, "byte 0xa0 at offset 3" },      -- surrogate D800
      { "\xf4\x90\x80\x80", 0, "byte 0x90 at offset 1" },    -- above 10FFFF
      { "\xf5\x80\x80\x80", 0, "byte 0xf5 cannot start" },
      { "abc\xe2\x82", 3, "ends inside a character" },       -- cut short by the end
      { "\xe2\x28\xa1", 0, "byte 0x28 at offset 1" },        -- cut short by ASCII
      { "é\xf0\x9f\x98", 2, "ends inside a character" },     -- a 4-byte emoji missing its last byte
    }
    for _, case in ipairs(cases) do
      local c, msg = data.text(nil, { text = case[1] })
      assert.is_nil(c)
      assert.matches("bptt.data.text: invalid UTF-8 at byte offset " .. case[2] .. ":", msg, 1, true)
      assert.matches(case[3], msg, 1, true)
    end
  end)

  it("replaces each maximal invalid subpart with U+FFFD when invalid = \"replace\"", function()
    local R = "\u{FFFD}"
    local cases = {
      { "a\xffb", "a" .. R .. "b" },
      { "a\xe2\x82b", "a" .. R .. "b" },       -- one subpart of two bytes
      { "\xf0\x80\x80", R .. R .. R },         -- F0 80 is no prefix of a valid form: three
      { "\xed\xa0\x80x", R .. R .. R .. "x" }, -- a surrogate
      { "ok\xf0\x9f\x98", "ok" .. R },         -- cut short by the end
      { "\xc3\xa9\xc3", "é" .. R },
    }
    for _, case in ipairs(cases) do
      local c = load_text(case[1], { invalid = "replace" })
      assert.are.equal(case[2], c.vocab:decode(c.tokens))
    end
  end)

  it("reads files in chunks: a character across a chunk boundary, offsets past the first chunk", function()
    local chunk = 2 ^ 20 -- BPTT_TEXT_CHUNK
    local path = tmpname("chunks")
    write_file(path, string.rep("a", chunk - 1), "é😀", "b")
    local c = assert(data.text(path))
    assert.are.equal(chunk - 1 + 3, c.tokens:numel())
    assert.are.equal("aé😀b", c.vocab:decode(c.tokens:narrow(1, chunk - 1, 4)))
    write_file(path, string.rep("a", chunk + 12345), "\xff")
    local none, msg = data.text(path)
    assert.is_nil(none)
    assert.matches(path .. ": invalid UTF-8 at byte offset " .. (chunk + 12345) .. ":", msg, 1, true)
    os.remove(path)
  end)
end)

describe("bptt.data.text's other arguments", function()
  it("returns nil and a message for a missing file or a directory", function()
    local c, msg = data.text("/nonexistent/bptt/corpus.txt")
    assert.is_nil(c)
    assert.are.equal("bptt.data.text: /nonexistent/bptt/corpus.txt: No such file or directory", msg)
    c, msg = data.text(tmpdir)
    assert.is_nil(c)
    assert.matches("Is a directory", msg, 1, true)
  end)

  it("encodes with a given vocabulary, and names a symbol not in it", function()
    local c = load_text("hello world")
    local d = load_text("low", { vocab = c.vocab })
    assert.are.equal(c.vocab, d.vocab)
    assert.are.same(c.vocab:encode("low"):totable(), d.tokens:totable())
    local none, msg = data.text(nil, { text = "hello\nwörld", vocab = c.vocab })
    assert.is_nil(none)
    assert.are.equal("bptt.data.text: \"\\n\" (U+000A) at character 6 (byte offset 5) is not in the vocabulary", msg)
    none, msg = data.text(nil, { text = "hello wörld", vocab = c.vocab })
    assert.is_nil(none)
    assert.are.equal("bptt.data.text: \"ö\" (U+00F6) at character 8 (byte offset 7) is not in the vocabulary", msg)
  end)

  it("raises on misuse", function()
    assert.has_error(function() data.text(nil, {}) end,
      "bptt.data.text: give either a path or text = a string, not neither")
    assert.has_error(function() data.text("x", { text = "y" }) end,
      "bptt.data.text: give either a path or text = a string, not both")
    assert.has_error(function() data.text(nil, { text = "x", unit = "char" }) end,
      "bptt.data.text: unit must be \"byte\", \"utf8\" or \"word\", got char")
    assert.has_error(function() data.text(nil, { text = "x", units = "byte" }) end)
    assert.has_error(function() data.text(nil, { text = "x", invalid = "skip" }) end)
    local v = load_text("x").vocab
    assert.has_error(function() data.text(nil, { text = "x", unit = "byte", vocab = v }) end,
      "bptt.data.text: unit is \"byte\" but the vocabulary's is \"utf8\"")
  end)
end)

describe("bptt.data.Vocab", function()
  local c = load_text("To be, or not to be: 😀 — é")

  it("encodes a prime text to a 1-d int32 tensor and decodes it back", function()
    local ids = c.vocab:encode("be not 😀")
    assert.are.equal("int32", ids:dtype())
    assert.are.equal(1, ids:dim())
    assert.are.equal(8, ids:numel())
    assert.are.equal("be not 😀", c.vocab:decode(ids))
    assert.are.equal(0, c.vocab:encode(""):numel())
  end)

  it("names an unknown character and its position when encoding", function()
    assert.has_error(function() c.vocab:encode("be ñot") end,
      "bptt.data.Vocab:encode: \"ñ\" (U+00F1) at character 4 (byte offset 3) is not in the vocabulary")
    assert.has_error(function() c.vocab:encode("ab\xff") end,
      "bptt.data.Vocab:encode: invalid UTF-8 at byte offset 2: byte 0xff cannot start a character")
    local b = load_text("abc", { unit = "byte" }).vocab
    assert.has_error(function() b:encode("abz") end,
      "bptt.data.Vocab:encode: \"z\" (byte 0x7a) at position 3 is not in the vocabulary")
  end)

  it("refuses ids outside 1..V when decoding", function()
    local V = c.vocab:size()
    assert.has_error(function() c.vocab:decode({ 1, V + 1 }) end,
      "bptt.data.Vocab:decode: ids[2] must be a token id in 1.." .. V .. ", got " .. (V + 1))
    assert.has_error(function() c.vocab:decode(bptt.tensor({ 0 }, "int32")) end)
    assert.has_error(function() c.vocab:decode({ 1.5 }) end)
    assert.has_error(function() c.vocab:decode("abc") end)
  end)

  it("rebuilds from its symbols, keeping the ids (and the order of any list)", function()
    local v = data.Vocab.from_symbols(c.vocab:symbols(), "utf8")
    assert.are.same(c.vocab:symbols(), v:symbols())
    assert.are.same(c.vocab:encode("not 😀"):totable(), v:encode("not 😀"):totable())
    local w = data.Vocab.from_symbols({ "b", "😀", "a" })
    assert.are.same({ 3, 1, 2 }, w:encode("ab😀"):totable())
    assert.are.equal("ab😀", w:decode({ 3, 1, 2 }))
    local bytes = data.Vocab.from_symbols({ "\xff", "a" }, "byte")
    assert.are.equal("a\xff", bytes:decode({ 2, 1 }))
  end)

  it("rejects lists that are not one symbol each, or repeat one", function()
    assert.has_error(function() data.Vocab.from_symbols({ "a", "bc" }) end,
      "bptt.data.Vocab.from_symbols: symbols[2] must be one UTF-8 encoded code point, got a string of 2 bytes")
    assert.has_error(function() data.Vocab.from_symbols({ "a", "\xff" }) end)
    assert.has_error(function() data.Vocab.from_symbols({ "é" }, "byte") end)
    assert.has_error(function() data.Vocab.from_symbols({ "a", "b", "a" }) end,
      "bptt.data.Vocab.from_symbols: symbols[3] (\"a\" (U+0061)) repeats an earlier symbol")
    assert.has_error(function() data.Vocab.from_symbols({ "a" }, "word") end)
  end)

  it("serializes to one ASCII string and back, byte and utf8", function()
    for _, unit in ipairs { "utf8", "byte" } do
      local v = load_text("To be, or not to be: 😀 — é\0\255", { unit = unit, invalid = "replace" }).vocab
      local s = v:serialize()
      assert.is_string(s)
      assert.is_nil(s:find("[^\32-\126]"), "serialize() must be printable ASCII")
      local w = assert(data.Vocab.deserialize(s))
      assert.are.equal(unit, w.unit)
      assert.are.same(v:symbols(), w:symbols())
      assert.are.equal(s, w:serialize())
    end
    assert.are.equal("bptt-vocab/1 utf8 3 61 e9 1f600", data.Vocab.from_symbols({ "a", "é", "😀" }):serialize())
  end)

  it("returns nil and a message for a string that is not a serialized vocabulary", function()
    for _, s in ipairs { "", "bptt-vocab/1 utf8 2 61", "bptt-vocab/1 utf8 1 61 62", "bptt-vocab/1 word 1 61",
      "bptt-vocab/1 utf8 2 61 61", "bptt-vocab/1 utf8 1 d800", "bptt-vocab/1 byte 1 100", "bptt-vocab/1 utf8 1 61 " } do
      local v, msg = data.Vocab.deserialize(s)
      assert.is_nil(v, s)
      assert.matches("bptt.data.Vocab.deserialize: s is not a vocabulary", msg, 1, true)
    end
  end)
end)

describe("bptt.data.split", function()
  it("cuts tokens into consecutive views of the same storage", function()
    local t = bptt.tensor({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, "int32")
    local train, val = data.split(t, 0.9)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, train:totable())
    assert.are.same({ 10 }, val:totable())
    local a, b, c = data.split({ tokens = t }, { 0.5, 0.25, 0.25 })
    assert.are.same({ 1, 2, 3, 4, 5 }, a:totable())
    assert.are.same({ 6, 7, 8 }, b:totable()) -- ends at round(10 * 0.75) = 8
    assert.are.same({ 9, 10 }, c:totable())
    a:set(1, 42)
    assert.are.equal(42, t:get(1))
    assert.has_error(function() data.split(t, { 0.5, 0.4 }) end)
    assert.has_error(function() data.split(t, { 1.5, -0.5 }) end)
    assert.has_error(function() data.split(bptt.zeros(3), 0.5) end)
  end)
end)

describe("bptt.data.Batches", function()
  -- "abcdefghijklmnopqrstuvw": 23 tokens with ids 1..23 (sorted letters)
  local letters = load_text("abcdefghijklmnopqrstuvw")

  it("lays out B contiguous stripes of T-step windows, x time-major and y = the next tokens", function()
    assert.are.same(letters.tokens:totable(), { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
      21, 22, 23 })
    -- N = 23, B = 2, T = 3: K = floor(22 / 6) = 3 batches, stripes of S = 9 (tokens 1..9 and 10..18)
    local b = data.Batches(letters.tokens, { batch = 2, seq = 3 })
    assert.are.equal(3, b:count())
    local x, y, reset, epoch, index = b:next()
    assert.are.same({ 3, 2 }, x:shape())
    assert.are.equal("int32", x:dtype())
    assert.are.same({ { 1, 10 }, { 2, 11 }, { 3, 12 } }, x:totable())
    assert.are.same({ { 2, 11 }, { 3, 12 }, { 4, 13 } }, y:totable())
    assert.are.same({ true, 1, 1 }, { reset, epoch, index })
    x, y, reset, epoch, index = b:next()
    assert.are.same({ { 4, 13 }, { 5, 14 }, { 6, 15 } }, x:totable())
    assert.are.same({ { 5, 14 }, { 6, 15 }, { 7, 16 } }, y:totable())
    assert.are.same({ false, 1, 2 }, { reset, epoch, index })
    x, y, reset, epoch, index = b:next()
    assert.are.same({ { 7, 16 }, { 8, 17 }, { 9, 18 } }, x:totable())
    assert.are.same({ { 8, 17 }, { 9, 18 }, { 10, 19 } }, y:totable())
    assert.are.same({ false, 1, 3 }, { reset, epoch, index })
    -- the epoch wraps: back to the first batch, and the trainer is told to reset
    local x2, y2
    x2, y2, reset, epoch, index = b:next()
    assert.are.equal(x, x2) -- the same tensors, refilled
    assert.are.equal(y, y2)
    assert.are.same({ { 1, 10 }, { 2, 11 }, { 3, 12 } }, x2:totable())
    assert.are.same({ true, 2, 1 }, { reset, epoch, index })
    assert.are.same({ 2, 1 }, { b:position() })
    -- the same layout through the decoded text
    assert.are.equal("bcd", letters.vocab:decode(y2:select(2, 1)))
    assert.are.equal("klm", letters.vocab:decode(y2:select(2, 2)))
  end)

  it("continues every stream from one batch to the next (truncated BPTT) and covers the stripes once", function()
    local c = load_text(string.rep("The quick brown fox jumps over the lazy dog. ", 40))
    local N, B, T = c.tokens:numel(), 5, 7
    local b = data.Batches(c.tokens, { batch = B, seq = T })
    local K = b:count()
    assert.are.equal(math.floor((N - 1) / (B * T)), K)
    local streams = {}
    for s = 1, B do streams[s] = {} end
    local prev_y
    for _ = 1, K do
      local x, y = b:next()
      local xt, yt = x:totable(), y:totable()
      for t = 1, T do
        for s = 1, B do
          streams[s][#streams[s] + 1] = xt[t][s]
          if t < T then assert.are.equal(xt[t + 1][s], yt[t][s]) end -- y is x shifted by one
        end
      end
      if prev_y then
        for s = 1, B do assert.are.equal(prev_y[T][s], xt[1][s]) end -- the stream continues
      end
      prev_y = yt
    end
    -- stream s, read across the epoch, is tokens (s-1)*K*T + 1 .. s*K*T
    local all = c.tokens:totable()
    for s = 1, B do
      for i = 1, K * T do assert.are.equal(all[(s - 1) * K * T + i], streams[s][i]) end
    end
  end)

  it("says clearly when the corpus is too short for one batch", function()
    local t = bptt.tensor({ 1, 2, 3, 4, 5, 6 }, "int32")
    assert.has_error(function() data.Batches(t, { batch = 2, seq = 3 }) end,
      "bptt.data.Batches: 6 tokens are too few for one batch of 2 streams x 3 steps (need at least batch*seq + 1 = 7)")
    assert.are.equal(1, data.Batches(bptt.tensor({ 1, 2, 3, 4, 5, 6, 7 }, "int32"), { batch = 2, seq = 3 }):count())
    assert.has_error(function() data.Batches(t, { batch = 0, seq = 3 }) end)
    assert.has_error(function() data.Batches(t, { batch = 1, seq = 2, shufle = true }) end)
    assert.has_error(function() data.Batches(bptt.zeros(10), { batch = 1, seq = 2 }) end)
  end)

  it("works on a view, such as the val part of a split", function()
    local _, val = data.split(letters.tokens, { 0.5, 0.5 }) -- tokens 13..23 (ids 13..23)
    local b = data.Batches(val, { batch = 2, seq = 2 })      -- K = floor(10 / 4) = 2, S = 4
    local x, y = b:next()
    assert.are.same({ { 13, 17 }, { 14, 18 } }, x:totable())
    assert.are.same({ { 14, 18 }, { 15, 19 } }, y:totable())
  end)

  -- the next n batches as tables, with their flags
  local function take(b, n)
    local out = {}
    for i = 1, n do
      local x, y, reset, epoch, index = b:next()
      out[i] = { x:totable(), y:totable(), reset, epoch, index }
    end
    return out
  end

  it("resumes exactly from state() / set_state(), across epoch boundaries", function()
    local c = load_text(string.rep("abcdefghij", 30))
    for _, shuffle in ipairs { false, true } do
      local opts = { batch = 3, seq = 4, shuffle = shuffle, seed = 99 }
      local b = data.Batches(c.tokens, opts)
      local K = b:count()
      take(b, K + 2) -- into the second epoch
      local s = b:state()
      assert.is_string(s)
      local expected = take(b, 2 * K + 1) -- through the third epoch into the fourth
      local fresh = data.Batches(c.tokens, { batch = 3, seq = 4, shuffle = shuffle, seed = 5 })
      fresh:set_state(s) -- the seed comes with the state
      assert.are.same(expected, take(fresh, 2 * K + 1))
      assert.are.equal(b:state(), fresh:state())
    end
    local b = data.Batches(c.tokens, { batch = 3, seq = 4 })
    assert.has_error(function() b:set_state("nonsense") end)
    assert.has_error(function() data.Batches(c.tokens, { batch = 2, seq = 4 }):set_state(b:state()) end,
      "bptt.data.Batches:set_state: the state is of batches with batch = 3, these have batch = 2")
  end)

  it("shuffles the batches of each epoch reproducibly by seed, and asks for a reset at each", function()
    local c = load_text(string.rep("0123456789", 100))
    local opts = { batch = 4, seq = 5, shuffle = true, seed = 1234 }
    local plain = data.Batches(c.tokens, { batch = 4, seq = 5 })
    local K = plain:count()
    local unshuffled = take(plain, K)
    local a, b = data.Batches(c.tokens, opts), data.Batches(c.tokens, opts)
    local order1 = a:order()
    assert.are.same(order1, b:order())
    -- a permutation of 1..K
    local sorted = {}
    for i, k in ipairs(order1) do sorted[i] = k end
    table.sort(sorted)
    for k = 1, K do assert.are.equal(k, sorted[k]) end
    assert.are_not.same(sorted, order1)
    -- batch i of the epoch is unshuffled batch order[i]; every batch asks for a reset
    local got = take(a, K)
    for i = 1, K do
      assert.are.same(unshuffled[order1[i]][1], got[i][1])
      assert.are.same(unshuffled[order1[i]][2], got[i][2])
      assert.is_true(got[i][3])
    end
    assert.are.same(got, take(b, K)) -- same seed, same batches
    -- a new order in the next epoch, the same for both
    take(a, 1)
    take(b, 1)
    assert.are.same(a:order(), b:order())
    assert.are_not.same(order1, a:order())
    -- another seed, another order
    assert.are_not.same(order1, data.Batches(c.tokens, { batch = 4, seq = 5, shuffle = true, seed = 1235 }):order())
  end)

  it("draws the shuffle seed from the library's generator when none is given", function()
    local c = load_text(string.rep("0123456789", 100))
    bptt.manual_seed(7)
    local a = data.Batches(c.tokens, { batch = 4, seq = 5, shuffle = true })
    bptt.manual_seed(7)
    local b = data.Batches(c.tokens, { batch = 4, seq = 5, shuffle = true })
    assert.are.same(a:order(), b:order())
    assert.are.same(take(a, 3), take(b, 3))
    -- without shuffling the generator is left alone
    local s = bptt.rng_state()
    data.Batches(c.tokens, { batch = 4, seq = 5 })
    assert.are.equal(s, bptt.rng_state())
  end)
end)

describe("a large corpus", function()
  it("loads into C memory while the Lua heap stays small", function()
    local mb = light and 8 or 200
    local path = tmpname("big")
    -- one line of 1-, 2-, 3- and 4-byte characters (2.3 bytes each), repeated to ~1 MB, written mb times
    local line = "日本語のテキストを読み込む、漢字とかなの文章 — Съешь же ещё — 😀🎉 e\u{301} fox\n"
    local block = string.rep(line, math.floor(2 ^ 20 / #line))
    local f = assert(io.open(path, "wb"))
    for _ = 1, mb do
      local ok, err = f:write(block)
      if not ok then
        f:close()
        os.remove(path)
        pending("not enough room in " .. tmpdir .. " for a " .. mb .. " MB file: " .. tostring(err))
        return
      end
    end
    local ok, err = f:close()
    if not ok then
      os.remove(path)
      pending("not enough room in " .. tmpdir .. " for a " .. mb .. " MB file: " .. tostring(err))
      return
    end
    local nline = load_text(line).tokens:numel()
    block = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local heap0 = collectgarbage("count")
    local t0 = bptt.clock()
    local c = assert(data.text(path))
    local seconds = bptt.clock() - t0
    local heap1 = collectgarbage("count")
    os.remove(path)
    assert.are.equal(mb * math.floor(2 ^ 20 / #line) * nline, c.tokens:numel())
    assert.are.equal(load_text(line).vocab:size(), c.vocab:size())
    assert.is_true(heap1 - heap0 < 256, string.format("the Lua heap grew by %.0f KB loading %d MB", heap1 - heap0, mb))
    assert.are.equal(line, c.vocab:decode(c.tokens:narrow(1, c.tokens:numel() - nline + 1, nline)))
    -- batches over it cost no Lua memory either
    local b = data.Batches(c.tokens, { batch = 64, seq = 128 })
    collectgarbage()
    local heap2 = collectgarbage("count")
    for _ = 1, 100 do b:next() end
    assert.is_true(collectgarbage("count") - heap2 < 256)
    local n = c.tokens:numel()
    c.tokens:free()
    if os.getenv("BPTT_SPEC_VERBOSE") then
      io.stderr:write(string.format("\n[data_spec] %d MB, %d tokens: loaded in %.2f s, Lua heap +%.1f KB\n", mb,
        n, seconds, heap1 - heap0))
    end
  end)
end)

describe("tinyshakespeare", function()
  it("has 65 symbols and 1115394 tokens", function()
    local src = debug.getinfo(1, "S").source:gsub("^@", "")
    local dir = src:match("^(.*)/[^/]*$") or "."
    local path = os.getenv("BPTT_TINYSHAKESPEARE") or (dir .. "/../../shared/data/tinyshakespeare.txt")
    local f = io.open(path, "rb")
    if not f then
      pending("tinyshakespeare.txt not present: looked for " .. path .. " (set BPTT_TINYSHAKESPEARE)")
      return
    end
    f:close()
    for _, unit in ipairs { "byte", "utf8" } do
      local c = assert(data.text(path, { unit = unit }))
      assert.are.equal(65, c.vocab:size())
      assert.are.equal(1115394, c.tokens:numel())
    end
    local c = assert(data.text(path))
    local train, val = data.split(c.tokens, 0.9)
    assert.are.equal(1115394, train:numel() + val:numel())
    local b = data.Batches(train, { batch = 50, seq = 50 })
    assert.are.equal(math.floor((train:numel() - 1) / 2500), b:count())
    local x = b:next()
    assert.are.equal("First Citizen:\nBefore we proceed any further, hear", c.vocab:decode(x:select(2, 1)))
  end)
end)
