-- Tokens other than characters (bptt.data): data.text{unit = "word"} with a
-- vocabulary limit and <unk>, and data.labelled's "label<TAB>text" lines.
-- Vocabularies put <unk> first and the words by count; files read in chunks
-- give what the same text in memory gives, lines across chunk boundaries
-- included; malformed lines are named by number.
local bptt = require "bptt"
local data = require "bptt.data"

local tmpdir = os.getenv("TMPDIR") or "/tmp"
local function tmpname(tag)
  return string.format("%s/bptt_words_spec_%s_%d_%d.txt", tmpdir, tag, os.time(), math.floor(os.clock() * 1e6))
end
local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

describe("bptt.data.text with unit = \"word\"", function()
  it("keeps the max_vocab - 1 most frequent words after <unk>, ties in byte order", function()
    local c = assert(data.text{ text = "the cat sat on the mat\nthe dog\n", unit = "word", max_vocab = 4,
      eos = "<eos>" })
    assert.are.equal("word", c.unit)
    assert.are.same({ "<unk>", "the", "<eos>", "cat" }, c.vocab:symbols())
    assert.are.same({ 4, 3, 2, 1 }, c.vocab:counts())
    assert.are.same({ 2, 4, 1, 1, 2, 1, 3, 2, 1, 3 }, c.tokens:totable())
    assert.are.equal("the cat <unk> <unk> the <unk> <eos> the <unk> <eos>", c.vocab:decode(c.tokens))
  end)

  it("keeps every word without a limit, splits at any white space, and encodes with a given vocabulary", function()
    local c = assert(data.text{ text = " b\ta  b\r\nc\f\n", unit = "word" })
    assert.are.same({ "<unk>", "b", "a", "c" }, c.vocab:symbols())
    assert.are.same({ 2, 3, 2, 4 }, c.tokens:totable())
    local d = assert(data.text{ text = "c z b", vocab = c.vocab })
    assert.are.same({ 4, 1, 2 }, d.tokens:totable())
    assert.are.same({ 3, 1 }, c.vocab:encode("a q"):totable())
  end)

  it("reads a file in chunks as the same text in memory, lines across chunk boundaries too", function()
    local parts, words = {}, { "alpha", "beta", "gamma", "délta", "ε" }
    bptt.manual_seed(3)
    local u = bptt.rand(300000):totable()
    for i = 1, #u do
      parts[i] = words[1 + math.floor(u[i] * #words)] .. (i % 997 == 0 and "\n" or " ")
    end
    local s = table.concat(parts) -- about 1.9 MB: two chunks, one long line across
    local path = tmpname("big")
    write_file(path, s)
    local a = assert(data.text(path, { unit = "word", eos = "<eos>" }))
    local b = assert(data.text{ text = s, unit = "word", eos = "<eos>" })
    os.remove(path)
    assert.are.same(b.vocab:symbols(), a.vocab:symbols())
    assert.are.equal(300000 + math.floor(300000 / 997) + 1, a.tokens:numel())
    assert.are.equal(0, (a.tokens - b.tokens):norm())
  end)

  it("round-trips the vocabulary through serialize", function()
    local c = assert(data.text{ text = "x yy zzz yy é", unit = "word" })
    local s = c.vocab:serialize()
    assert.are.equal("bptt-words/1 word 5 3c756e6b3e 7979 78 7a7a7a c3a9", s)
    local v = assert(data.Vocab.deserialize(s))
    assert.are.same(c.vocab:symbols(), v:symbols())
    assert.is_true(data.is_vocab(v))
    assert.is_nil((data.Vocab.deserialize("bptt-words/1 word 3 61 62")))
    assert.is_nil((data.Vocab.deserialize("bptt-words/1 word 1 6")))
  end)

  it("checks its options and gives nil, message for a missing file", function()
    assert.has_error(function() data.text{ text = "a", unit = "word", max_vocab = 1 } end,
      "bptt.data.text: max_vocab must be 0 (no limit) or >= 2 (<unk> and a word), got 1")
    assert.has_error(function() data.text{ text = "a", unit = "utf8", max_vocab = 10 } end,
      "bptt.data.text: max_vocab and eos are for unit = \"word\"")
    assert.has_error(function() data.text{ text = "a", unit = "word", eos = "a b" } end)
    local ok, msg, errno = data.text(tmpdir .. "/bptt_no_such_words_file", { unit = "word" })
    assert.is_nil(ok)
    assert.matches("bptt_no_such_words_file: No such file or directory", msg, 1, true)
    assert.is_number(errno)
  end)
end)

describe("bptt.data.labelled", function()
  it("reads label<TAB>text lines into ids, starts, lengths and labels", function()
    local ds = assert(data.labelled{ text = "pos\tgood film\nneg\tbad bad film\r\n\n  \npos\tfine\n" })
    assert.are.equal(3, ds.n)
    assert.are.same({ "neg", "pos" }, ds.label_vocab:symbols())
    assert.are.same({ "<unk>", "bad", "film", "fine", "good" }, ds.vocab:symbols())
    assert.are.same({ 5, 3, 2, 2, 3, 4 }, ds.tokens:totable())
    assert.are.same({ 1, 3, 6 }, ds.starts:totable())
    assert.are.same({ 2, 3, 1 }, ds.lengths:totable())
    assert.are.same({ 2, 1, 2 }, ds.labels:totable())
    local x, lengths, labels = data.pad(ds, { 2, 3, 1 })
    assert.are.same({ { 2, 4, 5 }, { 2, 1, 3 }, { 3, 1, 1 } }, x:totable())
    assert.are.same({ 3, 1, 2 }, lengths:totable())
    assert.are.same({ 1, 2, 2 }, labels:totable())
  end)

  it("reads characters with unit = \"utf8\", and a test set with the training set's vocabularies", function()
    local tr = assert(data.labelled{ text = "a\tabé\nb\tba\n", unit = "utf8" })
    assert.are.same({ "<unk>", "a", "b", "é" }, tr.vocab:symbols())
    assert.are.equal("abé", tr.vocab:decode(tr.tokens:narrow(1, 1, 3)))
    local te = assert(data.labelled{ text = "b\tazb\n", vocab = tr.vocab, labels = tr.label_vocab })
    assert.are.same({ 2, 1, 3 }, te.tokens:totable())
    assert.are.same({ 2 }, te.labels:totable())
    local ok, msg = data.labelled{ text = "a\tab\nc\tb\n", vocab = tr.vocab, labels = tr.label_vocab }
    assert.is_nil(ok)
    assert.are.equal("bptt.data.labelled: line 2: a label not among the given labels", msg)
  end)

  it("names the line of a malformed example (file and line)", function()
    local cases = {
      { "pos\tgood\nnegbad\n", "line 2: no TAB between the label and the text" },
      { "pos\tgood\n\tbad\n", "line 2: an empty label before the TAB" },
      { "pos\t  \n", "line 1: no token after the TAB" },
    }
    for _, c in ipairs(cases) do
      local ok, msg = data.labelled{ text = c[1] }
      assert.is_nil(ok)
      assert.are.equal("bptt.data.labelled: " .. c[2], msg)
    end
    local ok, msg = data.labelled{ text = "p\tok\np\tgo\255od\n", unit = "utf8" }
    assert.is_nil(ok)
    assert.are.equal("bptt.data.labelled: line 2: invalid UTF-8 at byte 5 of the line", msg)
    local path = tmpname("bad")
    write_file(path, "x\ty\n\nz\n")
    ok, msg = data.labelled(path)
    os.remove(path)
    assert.is_nil(ok)
    assert.are.equal("bptt.data.labelled: " .. path .. ":3: no TAB between the label and the text", msg)
    local errno
    ok, msg, errno = data.labelled(tmpdir .. "/bptt_no_such_labelled_file")
    assert.is_nil(ok)
    assert.matches("No such file or directory", msg, 1, true)
    assert.is_number(errno)
  end)

  it("checks its arguments", function()
    assert.has_error(function() data.labelled{ text = "a\tb", unit = "chars" } end,
      'bptt.data.labelled: unit must be "word", "utf8" or "byte", got chars')
    local ds = assert(data.labelled{ text = "a\tb c\n" })
    assert.has_error(function() data.pad(ds, { 2 }) end, "bptt.data.pad: indices[1] must be an example in 1..1, got 2")
    assert.has_error(function() data.pad(ds, {}) end)
  end)
end)
