--- bptt.data: text corpora as token ids in C memory, and char-rnn's batches.
--
--     local data = require "bptt.data"
--     local corpus = assert(data.text("input.txt", { unit = "utf8" }))
--     local train, val = data.split(corpus.tokens, { 0.9, 0.1 })
--     local batches = data.Batches(train, { batch = 50, seq = 50 })
--     for i = 1, batches:count() do
--       local x, y, reset = batches:next()      -- x, y: seq x batch int32 ids
--       if reset then h = nil end                -- streams restart: drop the carried state
--       ...
--     end
--     metadata.vocab = corpus.vocab:serialize()  -- and Vocab.deserialize(s) to sample later
--
-- The text is read by C stdio in chunks and goes straight into an int32
-- tensor of ids (4 bytes a symbol); no Lua string per symbol, no copy of the
-- file in the Lua heap, so a corpus of gigabytes loads within LuaJIT's limits.
local core = require "bptt.core"
local util = require "bptt.util"

local data = {}

local unpack = unpack or table.unpack -- luacheck: ignore

local function errorf(level, fmt, ...) error(string.format(fmt, ...), level + 1) end

-------------------------------------------------------------------- Vocab

--- A vocabulary: symbols (bytes or Unicode code points) <-> ids 1..V.
-- Built by data.text from its text, the symbols in ascending order of byte
-- value / code point; rebuilt by Vocab.from_symbols or Vocab.deserialize with
-- the same ids.  `vocab.unit` is "byte" or "utf8".
local Vocab = { __name = "bptt.data.Vocab" }
Vocab.__index = Vocab
data.Vocab = Vocab

local function wrap(ud)
  local unit, size = core.vocab_info(ud)
  return setmetatable({ unit = unit, _ud = ud, _size = size }, Vocab)
end

local function check_self(fn, self)
  if getmetatable(self) ~= Vocab then
    errorf(3, "%s: self must be a bptt.data.Vocab (call it with a colon), got %s", fn, type(self))
  end
end

local WordVocab = { __name = "bptt.data.WordVocab" }
WordVocab.__index = WordVocab
data.WordVocab = WordVocab

--- True when v is a vocabulary (of symbols or of words).
function data.is_vocab(v) return getmetatable(v) == Vocab or getmetatable(v) == WordVocab end

--- V, the number of symbols.
function Vocab:size()
  check_self("bptt.data.Vocab:size", self)
  return self._size
end

--- The ids of a string's symbols as a 1-d int32 tensor.  A symbol not in the
-- vocabulary, or invalid UTF-8, is an error naming it and its position.
function Vocab:encode(text)
  check_self("bptt.data.Vocab:encode", self)
  return core.vocab_encode(self._ud, text)
end

--- The text of ids: an int32 tensor of any shape (read in row-major order),
-- a tensor of whole-number floats, or a Lua list of numbers.
function Vocab:decode(ids)
  local fn = "bptt.data.Vocab:decode"
  check_self(fn, self)
  if type(ids) == "table" then
    local ok, t = pcall(core.tensor, ids, "int32")
    if not ok then errorf(2, "%s: ids must be a list of whole numbers (%s)", fn, tostring(t)) end
    ids = t
  elseif core.is_tensor(ids) then
    ids = util.index_tensor(fn, "ids", ids)
  else
    errorf(2, "%s: ids must be a tensor or a list of numbers, got %s", fn, type(ids))
  end
  return core.vocab_decode(self._ud, ids)
end

--- The symbols as strings, in id order (symbols()[id] is the symbol of id):
-- one byte each for "byte", one code point's UTF-8 for "utf8".
function Vocab:symbols()
  check_self("bptt.data.Vocab:symbols", self)
  return core.vocab_symbols(self._ud)
end

--- How often each id occurs in the text the vocabulary was built from (zeros
-- for a vocabulary rebuilt from a list).
function Vocab:counts()
  check_self("bptt.data.Vocab:counts", self)
  return core.vocab_counts(self._ud)
end

--- One ASCII string holding the unit and the symbols in id order, for a
-- checkpoint's metadata: "bptt-vocab/1 utf8 3 a 41 e9" (V, then each symbol's
-- code point or byte value in hex).  Counts are not kept.
function Vocab:serialize()
  check_self("bptt.data.Vocab:serialize", self)
  return core.vocab_serialize(self._ud)
end

function Vocab:__tostring()
  return string.format("bptt.data.Vocab(%s, %d symbols)", self.unit, self._size)
end

--- A vocabulary with id i for list[i] (the order of the list is kept), unit
-- "utf8" (default) or "byte".  Repeats and strings that are not exactly one
-- symbol are errors.
function Vocab.from_symbols(list, unit)
  return wrap(core.vocab_from_symbols(list, unit or "utf8"))
end

--- The vocabulary of a string from Vocab:serialize() or WordVocab:serialize();
-- nil, message when the string is not one.
function Vocab.deserialize(s)
  if type(s) == "string" and s:sub(1, 12) == "bptt-words/1" then return WordVocab.deserialize(s) end
  local ud, msg = core.vocab_parse(s)
  if not ud then return nil, msg end
  return wrap(ud)
end

-------------------------------------------------------------------- WordVocab

--- A vocabulary of tokens that are byte strings: words (unit "word", made by
-- data.text{unit = "word"} and data.labelled) or characters of labelled
-- sequences (unit "utf8" or "byte").  Id 1 is "<unk>" in the vocabularies
-- the loaders build: the token of every word left out by max_vocab or not
-- seen when the vocabulary was made.  Then the tokens by count, most
-- frequent first (ties in byte order).
local function wrap_words(ud)
  local unit, size = core.words_info(ud)
  return setmetatable({ unit = unit, _ud = ud, _size = size }, WordVocab)
end

local function check_wself(fn, self)
  if getmetatable(self) ~= WordVocab then
    errorf(3, "%s: self must be a bptt.data.WordVocab (call it with a colon), got %s", fn, type(self))
  end
end

--- V, the number of tokens (<unk> included).
function WordVocab:size() check_wself("bptt.data.WordVocab:size", self); return self._size end

--- The ids of a string's tokens (words split at white space, or characters)
-- as a 1-d int32 tensor; a token not in the vocabulary is <unk>.
function WordVocab:encode(text)
  check_wself("bptt.data.WordVocab:encode", self)
  return core.words_encode(self._ud, text)
end

--- The text of ids (int32 tensor, or a Lua list): words joined by one space,
-- characters by nothing.
function WordVocab:decode(ids)
  local fn = "bptt.data.WordVocab:decode"
  check_wself(fn, self)
  if type(ids) == "table" then
    local ok, t = pcall(core.tensor, ids, "int32")
    if not ok then errorf(2, "%s: ids must be a list of whole numbers (%s)", fn, tostring(t)) end
    ids = t
  elseif core.is_tensor(ids) then
    ids = util.index_tensor(fn, "ids", ids):contiguous()
  else
    errorf(2, "%s: ids must be a tensor or a list of numbers, got %s", fn, type(ids))
  end
  return core.words_decode(self._ud, ids)
end

--- The tokens as strings in id order, and how often each occurred in the
-- text the vocabulary was made from (<unk>: every token left out).
function WordVocab:symbols() check_wself("bptt.data.WordVocab:symbols", self); return (core.words_symbols(self._ud)) end
function WordVocab:counts()
  check_wself("bptt.data.WordVocab:counts", self)
  local _, c = core.words_symbols(self._ud)
  return c
end

local function hex(w) return (w:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

--- One ASCII string, "bptt-words/1 <unit> V" then each token's bytes in hex,
-- in id order (counts are not kept); Vocab.deserialize reads it back.
function WordVocab:serialize()
  check_wself("bptt.data.WordVocab:serialize", self)
  local parts = { "bptt-words/1", self.unit, tostring(self._size) }
  for i, w in ipairs(self:symbols()) do parts[i + 3] = hex(w) end
  return table.concat(parts, " ")
end

function WordVocab:__tostring()
  return string.format("bptt.data.WordVocab(%s, %d tokens)", self.unit, self._size)
end

--- A vocabulary with id i for list[i] (strings, each once), unit "word"
-- (default), "utf8" or "byte".
function WordVocab.from_list(list, unit)
  return wrap_words(core.words_from_list(list, unit or "word"))
end

--- The vocabulary of a string from WordVocab:serialize(), or nil, message.
function WordVocab.deserialize(s)
  local fn = "bptt.data.WordVocab.deserialize"
  local bad = string.format("%s: s is not a vocabulary from WordVocab:serialize() (\"bptt-words/1 <unit> <V>\" "
    .. "then V tokens in hex)", fn)
  if type(s) ~= "string" then return nil, bad end
  local unit, V, rest = s:match("^bptt%-words/1 (%a%w*) (%d+)(.*)$")
  if not unit or (unit ~= "word" and unit ~= "utf8" and unit ~= "byte") then return nil, bad end
  local list = {}
  for h in rest:gmatch(" (%x*)") do
    if #h % 2 == 1 then return nil, bad end
    list[#list + 1] = h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)
  end
  if #list ~= tonumber(V) or rest:gsub(" %x*", "") ~= "" then return nil, bad end
  local ok, ud = pcall(core.words_from_list, list, unit)
  if not ok then return nil, bad end
  return wrap_words(ud)
end

-------------------------------------------------------------------- text

local UNITS = { byte = true, utf8 = true }
local INVALID = { error = false, replace = true }

--- Loads a text as token ids.
--   data.text(path [, opts]) or data.text{ text = s, ... }
-- opts: unit = "utf8" (default; symbols are Unicode code points) or "byte";
--   invalid = "error" (default: invalid UTF-8 fails, naming the byte offset)
--   or "replace" (each invalid sequence becomes U+FFFD);
--   vocab = a Vocab to encode with (its unit; a symbol not in it fails)
--   instead of building one from the text.
-- Returns a corpus { tokens = 1-d int32 tensor of ids, vocab = Vocab, unit = }
-- or nil, message when the file cannot be read, is not valid UTF-8, or holds
-- a symbol not in the given vocabulary (and the OS error number third when
-- the file could not be opened or read).
--
-- unit = "word": tokens are the runs of bytes between ASCII white space,
-- the vocabulary a WordVocab: "<unk>" (id 1), then the words by count, most
-- frequent first, at most max_vocab ids in all (max_vocab = 0 or nil: every
-- word); a word left out becomes <unk>.  eos = a string (e.g. "<eos>") adds
-- that token at the end of every line.  vocab = a WordVocab encodes with it
-- (unknown words are <unk>).
function data.text(path, opts)
  local fn = "bptt.data.text"
  if type(path) == "table" and opts == nil then path, opts = nil, path end -- data.text{text = s}
  opts = util.options(fn, opts or {}, { unit = true, text = true, vocab = true, invalid = true, max_vocab = true,
    eos = true })
  if path ~= nil and type(path) ~= "string" then
    errorf(2, "%s: path must be a string or nil, got %s", fn, type(path))
  end
  if (path == nil) == (opts.text == nil) then errorf(2, "%s: give either a path or text = a string, not %s", fn,
      path == nil and "neither" or "both") end
  if opts.text ~= nil and type(opts.text) ~= "string" then
    errorf(2, "%s: text must be a string, got %s", fn, type(opts.text))
  end
  if opts.unit == "word" or getmetatable(opts.vocab) == WordVocab then
    local vocab = opts.vocab
    if vocab ~= nil and (getmetatable(vocab) ~= WordVocab or vocab.unit ~= "word") then
      errorf(2, "%s: vocab must be a word vocabulary (bptt.data.WordVocab of unit \"word\"), got %s", fn,
        tostring(vocab))
    end
    if opts.unit ~= nil and opts.unit ~= "word" then
      errorf(2, "%s: unit is \"%s\" but the vocabulary's is \"word\"", fn, opts.unit)
    end
    if opts.invalid ~= nil then errorf(2, "%s: invalid is for units \"utf8\" and \"byte\", not \"word\"", fn) end
    local max = util.count(fn, "max_vocab", opts.max_vocab, 0, 0)
    if max == 1 then errorf(2, "%s: max_vocab must be 0 (no limit) or >= 2 (<unk> and a word), got 1", fn) end
    if opts.eos ~= nil and (type(opts.eos) ~= "string" or opts.eos == "" or opts.eos:find("%s")) then
      errorf(2, "%s: eos must be a non-empty string without white space, got %s", fn, util.got(opts.eos))
    end
    local ids, ud, errno = core.words_text(path, opts.text, "word", opts.eos, max, vocab and vocab._ud)
    if not ids then return nil, ud, errno end
    return { tokens = ids, vocab = vocab or wrap_words(ud), unit = "word" }
  end
  if opts.max_vocab ~= nil or opts.eos ~= nil then
    errorf(2, "%s: max_vocab and eos are for unit = \"word\"", fn)
  end
  local vocab = opts.vocab
  if vocab ~= nil and not data.is_vocab(vocab) then
    errorf(2, "%s: vocab must be a bptt.data.Vocab, got %s", fn, type(vocab))
  end
  local unit = opts.unit or (vocab and vocab.unit) or "utf8"
  if not UNITS[unit] then errorf(2, "%s: unit must be \"byte\", \"utf8\" or \"word\", got %s", fn, tostring(unit)) end
  if vocab and vocab.unit ~= unit then
    errorf(2, "%s: unit is \"%s\" but the vocabulary's is \"%s\"", fn, unit, vocab.unit)
  end
  local invalid = opts.invalid or "error"
  if INVALID[invalid] == nil then
    errorf(2, "%s: invalid must be \"error\" or \"replace\", got %s", fn, tostring(invalid))
  end
  local ids, ud, errno = core.text_load(path, opts.text, unit, INVALID[invalid], vocab and vocab._ud)
  if not ids then return nil, ud, errno end
  return { tokens = ids, vocab = vocab or wrap(ud), unit = unit }
end

--- A corpus of documents: every regular file of a folder (names in byte
-- order, hidden ones left out) is one document.
--   corpus = data.documents(folder [, {unit = "utf8", invalid = "error", separator = "\30"}])
-- The tokens are the documents one after the other, each opened by the
-- separator symbol (default U+001E, RECORD SEPARATOR), which must occur in
-- none of them; the vocabulary is the symbols of all of them and the
-- separator, in ascending order as data.text builds it.  Returns
-- { tokens =, vocab =, unit =, separator = its id, documents = {names},
--   offsets = int32 tensor: document k's separator is tokens[offsets[k]] }
-- for data.Batches(corpus, {..., separator = corpus.separator}); or nil,
-- message[, errno] (a missing folder or file, invalid UTF-8, no documents,
-- the separator inside a document).  Each file goes through data.text twice
-- (once for its symbols, once to encode it with the common vocabulary).
function data.documents(folder, opts)
  local fn = "bptt.data.documents"
  if type(folder) ~= "string" then errorf(2, "%s: folder must be a string, got %s", fn, type(folder)) end
  opts = util.options(fn, opts or {}, { unit = true, invalid = true, separator = true })
  local unit, sep = opts.unit or "utf8", opts.separator or "\30"
  if not UNITS[unit] then errorf(2, "%s: unit must be \"byte\" or \"utf8\", got %s", fn, tostring(unit)) end
  if type(sep) ~= "string" then errorf(2, "%s: separator must be a one-symbol string, got %s", fn, type(sep)) end
  local ok = pcall(Vocab.from_symbols, { sep }, unit)
  if not ok then errorf(2, "%s: separator must be one %s symbol, got %q", fn, unit, sep) end
  local names, msg, errno = core.text_listdir(folder)
  if not names then return nil, fn .. ": " .. msg, errno end
  table.sort(names)
  if #names == 0 then return nil, string.format("%s: %s: no documents (regular files) in the folder", fn, folder) end
  -- pass 1: the union of the documents' symbols (UTF-8 byte order is code point order)
  local seen, symbols = { [sep] = true }, { sep }
  for _, name in ipairs(names) do
    local c, m, en = data.text(folder .. "/" .. name, { unit = unit, invalid = opts.invalid })
    if not c then return nil, m, en end
    for _, s in ipairs(c.vocab:symbols()) do
      if s == sep then
        return nil, string.format("%s: %s/%s holds the separator %q; give another with separator = ", fn, folder,
          name, sep)
      end
      if not seen[s] then seen[s], symbols[#symbols + 1] = true, s end
    end
  end
  table.sort(symbols)
  local vocab = Vocab.from_symbols(symbols, unit)
  local sep_id = vocab:encode(sep):get(1)
  -- pass 2: each document with the common vocabulary, then one tensor
  local parts, n = {}, 0
  for k, name in ipairs(names) do
    local c, m, en = data.text(folder .. "/" .. name, { vocab = vocab, invalid = opts.invalid })
    if not c then return nil, m, en end -- the file changed between the passes
    parts[k] = c.tokens
    n = n + 1 + c.tokens:numel()
  end
  local tokens, offsets, at = core.zeros(n, "int32"), core.zeros(#names, "int32"), 0
  for k, t in ipairs(parts) do
    offsets:set(k, at + 1)
    tokens:set(at + 1, sep_id)
    if t:numel() > 0 then tokens:narrow(1, at + 2, t:numel()):copy(t) end
    at = at + 1 + t:numel()
  end
  return { tokens = tokens, vocab = vocab, unit = unit, separator = sep_id, documents = names, offsets = offsets }
end

--- Labelled sequences, one example a line: "label<TAB>text".
--   ds = data.labelled(path [, opts]) or data.labelled{text = s, ...}
-- The label is the bytes before the first TAB; the text the tokens after it
-- (unit = "word" (default): words split at white space; "utf8": characters;
-- "byte": bytes).  Blank lines are skipped; a '\r' before the '\n' is
-- dropped.  opts: max_vocab (as data.text's), vocab = a WordVocab of the
-- tokens and labels = a WordVocab of the labels (a test set encoded as its
-- training set was: unknown tokens are <unk>, an unknown label fails).
-- Returns { tokens = int32 ids of all examples one after another,
--   starts, lengths, labels = int32 tensors of n: example i is
--   tokens[starts[i] .. starts[i] + lengths[i] - 1] with label labels[i],
--   vocab =, label_vocab = (labels in byte order, ids 1..), n =, unit = }
-- or nil, message[, errno]: a missing file, or a malformed line named by its
-- number ("path:12: no TAB between the label and the text").  data.pad
-- makes batches of it.
function data.labelled(path, opts)
  local fn = "bptt.data.labelled"
  if type(path) == "table" and opts == nil then path, opts = nil, path end
  opts = util.options(fn, opts or {}, { unit = true, text = true, vocab = true, labels = true, max_vocab = true })
  if path ~= nil and type(path) ~= "string" then
    errorf(2, "%s: path must be a string or nil, got %s", fn, type(path))
  end
  if (path == nil) == (opts.text == nil) then
    errorf(2, "%s: give either a path or text = a string, not %s", fn, path == nil and "neither" or "both")
  end
  if opts.text ~= nil and type(opts.text) ~= "string" then
    errorf(2, "%s: text must be a string, got %s", fn, type(opts.text))
  end
  local unit = opts.unit or (opts.vocab and opts.vocab.unit) or "word"
  if unit ~= "word" and unit ~= "utf8" and unit ~= "byte" then
    errorf(2, "%s: unit must be \"word\", \"utf8\" or \"byte\", got %s", fn, tostring(unit))
  end
  for _, k in ipairs { "vocab", "labels" } do
    local v = opts[k]
    if v ~= nil and getmetatable(v) ~= WordVocab then
      errorf(2, "%s: %s must be a bptt.data.WordVocab (from an earlier data.labelled), got %s", fn, k, util.got(v))
    end
  end
  if opts.vocab and opts.vocab.unit ~= unit then
    errorf(2, "%s: unit is \"%s\" but the vocabulary's is \"%s\"", fn, unit, opts.vocab.unit)
  end
  local max = util.count(fn, "max_vocab", opts.max_vocab, 0, 0)
  if max == 1 then errorf(2, "%s: max_vocab must be 0 (no limit) or >= 2 (<unk> and a token), got 1", fn) end
  local tokens, starts, lengths, labels, vud, lud = core.words_labelled(path, opts.text, unit, max,
    opts.vocab and opts.vocab._ud, opts.labels and opts.labels._ud)
  if not tokens then return nil, starts, lengths end
  return { tokens = tokens, starts = starts, lengths = lengths, labels = labels, n = labels:numel(), unit = unit,
    vocab = opts.vocab or wrap_words(vud), label_vocab = opts.labels or wrap_words(lud) }
end

--- A batch of examples of data.labelled: x (T x B int32, time-major, each
-- example's tokens then `pad` (default 1) up to T = the longest), lengths
-- (int32, B), labels (int32, B), for rnn:forward(x, h0, c0, lengths).
--   x, lengths, labels = data.pad(ds, {3, 17, 5} [, pad])
function data.pad(ds, indices, pad)
  local fn = "bptt.data.pad"
  if type(ds) ~= "table" or not core.is_tensor(ds.starts) then
    errorf(2, "%s: ds must be a dataset from bptt.data.labelled, got %s", fn, type(ds))
  end
  if type(indices) ~= "table" or #indices == 0 then
    errorf(2, "%s: indices must be a non-empty list of example numbers, got %s", fn, type(indices))
  end
  pad = util.count(fn, "pad", pad, 1, 1)
  local B, T, lens, starts = #indices, 0, {}, {}
  for b, i in ipairs(indices) do
    if type(i) ~= "number" or i ~= math.floor(i) or i < 1 or i > ds.n then
      errorf(2, "%s: indices[%d] must be an example in 1..%d, got %s", fn, b, ds.n, tostring(i))
    end
    lens[b], starts[b] = ds.lengths:get(i), ds.starts:get(i)
    if lens[b] > T then T = lens[b] end
  end
  local x, labels = core.zeros(T, B, "int32"):fill(pad), core.zeros(B, "int32")
  for b, i in ipairs(indices) do
    x:select(2, b):narrow(1, 1, lens[b]):copy(ds.tokens:narrow(1, starts[b], lens[b]))
    labels:set(b, ds.labels:get(i))
  end
  return x, core.tensor(lens, "int32"), labels
end

-- A corpus (its tokens) or a 1-d int32 tensor.
local function tokens_arg(fn, t, level)
  if type(t) == "table" and core.is_tensor(t.tokens) then t = t.tokens end
  if not core.is_tensor(t) or t:dtype() ~= "int32" or t:dim() ~= 1 then
    errorf(level + 1, "%s: tokens must be a 1-d int32 tensor (or a corpus from bptt.data.text), got %s", fn,
      core.is_tensor(t) and (t:dim() .. "-d " .. t:dtype() .. " tensor") or type(t))
  end
  return t
end

--- Cuts tokens into consecutive parts, views of the same storage:
--   train, val = data.split(tokens, 0.9)               -- {0.9, 0.1}
--   train, val, test = data.split(tokens, {0.9, 0.05, 0.05})
-- Fractions are >= 0 and add up to 1; part k ends at token
-- round(N * (f1 + ... + fk)), the last part at N.
function data.split(tokens, fractions)
  local fn = "bptt.data.split"
  tokens = tokens_arg(fn, tokens, 2)
  if type(fractions) == "number" then fractions = { fractions, 1 - fractions } end
  if type(fractions) ~= "table" or #fractions == 0 then
    errorf(2, "%s: fractions must be a number or a list of numbers, got %s", fn, type(fractions))
  end
  local sum = 0
  for i, f in ipairs(fractions) do
    if type(f) ~= "number" or not (f >= 0 and f <= 1) then
      errorf(2, "%s: fractions[%d] must be a number in [0, 1], got %s", fn, i, tostring(f))
    end
    sum = sum + f
  end
  if math.abs(sum - 1) > 1e-9 then errorf(2, "%s: fractions must add up to 1, got %.17g", fn, sum) end
  local n, from, acc, parts = tokens:size(1), 0, 0, {}
  for i, f in ipairs(fractions) do
    acc = acc + f
    local to = i == #fractions and n or math.min(n, math.max(from, math.floor(n * acc + 0.5)))
    parts[i] = tokens:narrow(1, from + 1, to - from)
    from = to
  end
  return unpack(parts)
end

-------------------------------------------------------------------- Batches

--- char-rnn's minibatches: B parallel streams of T steps.
--   batches = data.Batches(tokens, { batch = B, seq = T [, shuffle = false, seed = n] })
-- With N tokens, each epoch has K = floor((N - 1) / (B*T)) batches.  The
-- first B*K*T + 1 tokens are cut into B contiguous stripes of S = K*T tokens
-- (stripe b starts at token b*S + 1), and batch k (1-based) is, time-major,
--   x[t][b] = tokens[(b-1)*S + (k-1)*T + t],   y[t][b] = that + 1 token
-- (x and y are T x B int32; y is the token after each x).  Stream b of batch
-- k + 1 continues stream b of batch k, so the hidden state carried from one
-- batch to the next is truncated BPTT over the whole stripe.
--
-- shuffle = true visits the K batches of each epoch in a random order, a
-- pure function of (seed, epoch): the same seed gives the same orders.  The
-- seed is drawn from the library's generator (bptt.manual_seed) unless given.
-- Consecutive batches then do not continue each other, so `reset` is true for
-- every batch: the trainer starts each one from a zero hidden state.
--
-- shard = {rank, size} (rank 0-based, as bptt.dist.rank()) takes this
-- rank's part of a data-parallel run: the size*B streams are laid out
-- exactly as one process with batch = size*B would lay them out (K from
-- size*B streams), and this rank serves streams rank*B + 1 .. (rank + 1)*B of
-- each batch.  Every rank must use the same seed when shuffling (the order
-- is a function of it); state() records the shard's size.
--
-- separator = id (a token id) marks a corpus of documents, each opened by
-- that token (data.documents makes one; a text of documents split by one
-- symbol is one too).  next() then also returns `starts`, T x B int32 flags,
-- 1 where x[t][b] is the separator: a new document starts there, and a model
-- given them (LanguageModel:forward(x, starts), RNN:forward's `resets`)
-- takes that stream's previous state as zeros at that step, so that neither
-- the carried state nor a gradient crosses from one document into the next.
-- The separator is the input of a document's first step and the target of
-- its last one: the model learns where documents end.
local Batches = util.class("bptt.data.Batches")
data.Batches = Batches

local MAXSEED = 2 ^ 53

function Batches:__init(tokens, opts)
  local fn = "bptt.data.Batches"
  tokens = tokens_arg(fn, tokens, 3)
  opts = util.options(fn, opts or {}, { batch = true, seq = true, shuffle = true, seed = true, shard = true,
    separator = true })
  local B = util.count(fn, "batch", opts.batch, 1)
  local T = util.count(fn, "seq", opts.seq, 1)
  local rank, size = 0, 1
  if opts.shard ~= nil then
    local sh = opts.shard
    if type(sh) ~= "table" then errorf(3, "%s: shard must be {rank, size}, got %s", fn, type(sh)) end
    size = util.count(fn, "shard[2] (size)", sh[2], 1)
    rank = util.count(fn, "shard[1] (rank)", sh[1], 0)
    if rank >= size then errorf(3, "%s: shard rank must be in 0..%d (size %d), got %d", fn, size - 1, size, rank) end
  end
  local N = tokens:size(1)
  local K = N > 0 and math.floor((N - 1) / (size * B * T)) or 0
  if K < 1 then
    errorf(3, "%s: %d tokens are too few for one batch of %d streams x %d steps (need at least batch*seq + 1 = %d)",
      fn, N, size * B, T, size * B * T + 1)
  end
  if K > 2 ^ 31 - 1 then errorf(3, "%s: %d batches per epoch are too many (at most 2^31 - 1)", fn, K) end
  self._n, self._B, self._T, self._K, self._S = N, B, T, K, K * T
  self._rank, self._size = rank, size
  -- this rank's B stripes of S tokens, and the token after them (y's last)
  self._tokens = size == 1 and tokens or tokens:narrow(1, rank * B * K * T + 1, B * K * T + 1)
  self._x, self._y = core.zeros(T, B, "int32"), core.zeros(T, B, "int32")
  self._shuffle = opts.shuffle and true or false
  self._seed = 0
  if opts.seed ~= nil then
    local s = opts.seed
    if type(s) ~= "number" or s ~= math.floor(s) or s < 0 or s > MAXSEED then
      errorf(3, "%s: seed must be a whole number in 0..2^53, got %s", fn, tostring(s))
    end
    self._seed = s
  elseif self._shuffle then
    self._seed = core.random(MAXSEED) - 1 -- one draw from the library's generator
  end
  if self._shuffle then self._perm = core.zeros(K, "int32") end
  if opts.separator ~= nil then
    self._sep = util.count(fn, "separator", opts.separator, 1)
    if self._sep > 2 ^ 31 - 1 then errorf(3, "%s: separator must be a token id, got %d", fn, self._sep) end
    self._starts = core.zeros(T, B, "int32")
  end
  self:_goto(1, 0)
end

-- Position: `index` batches of epoch `epoch` have been served.
function Batches:_goto(epoch, index)
  self._epoch, self._index = epoch, index
  if self._perm then core.text_permute(self._perm, self._seed, epoch) end
end

--- Batches per epoch (K).
function Batches:count() return self._K end

--- The next batch: x, y (T x B int32 tensors, the same two tensors at every
-- call: copy them to keep them), reset, epoch, index[, starts].  `reset` is
-- true when the hidden state carried over from the previous batch does not
-- continue these streams: at the first batch of every epoch, and at every
-- batch when shuffling.  `epoch` (1, 2, ...) and `index` (1..K) say which
-- batch it is.  With a separator, `starts` (T x B int32, the same tensor at
-- every call) flags the steps where a document starts (x is the separator).
function Batches:next()
  if self._index == self._K then self:_goto(self._epoch + 1, 0) end
  local i = self._index + 1
  self._index = i
  local k = self._perm and self._perm:get(i) or i
  core.text_batch(self._tokens, self._x, self._y, self._S, (k - 1) * self._T)
  if self._sep then core.text_starts(self._x, self._sep, self._starts) end
  return self._x, self._y, self._shuffle or i == 1, self._epoch, i, self._starts
end

--- The separator's token id, or nil for one long text.
function Batches:separator() return self._sep end

--- The epoch and index of the last batch served (epoch 1, index 0 at first).
function Batches:position() return self._epoch, self._index end

--- For shuffled batches, the order of this epoch: a list of batch numbers.
function Batches:order()
  if not self._perm then
    local o = {}
    for k = 1, self._K do o[k] = k end
    return o
  end
  return self._perm:totable()
end

local STATE_FMT = "bptt.data.Batches/1 epoch=%d index=%d seed=%.0f shuffle=%d batches=%d batch=%d seq=%d tokens=%.0f"

--- The position as a string (for a checkpoint's metadata); set_state resumes
-- from it exactly: the same batches follow, in the same order.  Sharded
-- batches add " shards=<size>" (every rank's position is the same).
function Batches:state()
  local s = string.format(STATE_FMT, self._epoch, self._index, self._seed, self._shuffle and 1 or 0, self._K, self._B,
    self._T, self._n)
  if self._size > 1 then s = s .. string.format(" shards=%d", self._size) end
  return s
end

--- Resumes from a string of state().  The batches must have the same layout
-- (batch, seq, shuffle and token count); the seed comes from the state.
function Batches:set_state(s)
  local fn = "bptt.data.Batches:set_state"
  if type(s) ~= "string" then errorf(2, "%s: s must be a string from Batches:state(), got %s", fn, type(s)) end
  local epoch, index, seed, shuffle, K, B, T, n, shards = s:match(
    "^bptt%.data%.Batches/1 epoch=(%d+) index=(%d+) seed=(%d+) shuffle=([01]) batches=(%d+) batch=(%d+) "
      .. "seq=(%d+) tokens=(%d+)(.*)$")
  if shards ~= "" then shards = shards:match("^ shards=(%d+)$") end
  if not epoch or not shards then errorf(2, "%s: s is not a state from Batches:state(), got %q", fn, s:sub(1, 200)) end
  epoch, index, seed, K, B, T, n = tonumber(epoch), tonumber(index), tonumber(seed), tonumber(K), tonumber(B),
    tonumber(T), tonumber(n)
  local mine = { batch = self._B, seq = self._T, tokens = self._n, shuffle = self._shuffle and 1 or 0,
    ["shards (ranks)"] = self._size }
  local theirs = { batch = B, seq = T, tokens = n, shuffle = tonumber(shuffle),
    ["shards (ranks)"] = tonumber(shards) or 1 }
  for _, k in ipairs { "shards (ranks)", "batch", "seq", "tokens", "shuffle" } do
    if mine[k] ~= theirs[k] then
      errorf(2, "%s: the state is of batches with %s = %.0f, these have %s = %.0f", fn, k, theirs[k], k, mine[k])
    end
  end
  if K ~= self._K or epoch < 1 or index > K or seed > MAXSEED then
    errorf(2, "%s: s is not a consistent state (epoch %.0f, index %.0f of %.0f batches)", fn, epoch, index, K)
  end
  self._seed = seed
  self:_goto(epoch, index)
end

function Batches:__tostring()
  return string.format("bptt.data.Batches(%d batches of %d x %d%s%s, epoch %d, index %d)", self._K, self._T, self._B,
    self._shuffle and ", shuffled" or "",
    self._size > 1 and string.format(", shard %d of %d", self._rank, self._size) or "", self._epoch, self._index)
end

--- The shard: rank (0-based) and size (0, 1 when not sharded).
function Batches:shard() return self._rank, self._size end

return data
