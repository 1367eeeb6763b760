-- An LSTM encoder-decoder (sequence to sequence) with teacher forcing and
-- greedy decoding.
--
--   luajit examples/seq2seq/seq2seq.lua --out out/seq2seq
--
-- The task (generated, seeded), --task add: two numbers of 1..--digits
-- digits as text, "123+45", and the answer "168"; --task reverse: a string of
-- --min-len..--max-len letters and the same letters backwards.  The encoder
-- reads the question (a batch padded to its longest; the layer gets the
-- lengths, so its final state is each question's own last step) and hands
-- its final h and c to the decoder.  Training feeds the decoder the right
-- answer shifted by one (teacher forcing: <go> a1 a2 ... -> a1 a2 ... <end>);
-- testing feeds it its own argmax, one step at a time, until <end> (greedy
-- decoding).  The figure is exact match on held-out questions (a tenth of
-- all questions, chosen by a hash, that training never draws): every
-- character and the end right.  Chance is that of a random guess of the
-- answer's characters given its length (10^-length for sums).  --help lists
-- the options.  Uses only bptt's public API.
local common = dofile(((debug.getinfo(1, "S").source or ""):match("^@(.*)/[^/]*$") or ".") .. "/../common.lua")
local bptt = require "bptt"
local argparse = require "argparse"

local p = argparse("seq2seq.lua", "Train an LSTM encoder-decoder to add numbers (or reverse strings) given as text.")
p:option("--task", "add or reverse", "add")
p:option("--digits", "add: most digits of a number", "3", tonumber)
p:option("--min-len", "reverse: shortest string", "3", tonumber)
p:option("--max-len", "reverse: longest string", "10", tonumber)
p:option("--letters", "reverse: letters in the alphabet", "10", tonumber)
p:option("--embed", "embedding size", "16", tonumber)
p:option("--hidden", "LSTM units (encoder and decoder)", "128", tonumber)
p:option("--layers", "LSTM layers (encoder and decoder)", "1", tonumber)
p:option("--batch", "questions per batch", "64", tonumber)
p:option("--iters", "training iterations", "8000", tonumber)
p:option("--lr", "Adam learning rate at first (decays linearly to a tenth)", "0.005", tonumber)
p:option("--test", "held-out questions", "2000", tonumber)
p:option("--seed", "seed of the data and the weights", "1", tonumber)
p:option("--out", "folder for the plots", "out/seq2seq")
p:option("--threads", "threads", nil, tonumber)
local a = p:parse()
if a.task ~= "add" and a.task ~= "reverse" then p:error("--task must be add or reverse") end
if a.threads then bptt.set_num_threads(a.threads) end
os.execute("mkdir -p '" .. a.out:gsub("'", "'\\''") .. "'")

-- ---- the data: characters and their ids -----------------------------------
local rand = common.generator(a.seed, 5) -- the data's own generator (examples/common.lua)
local chars = a.task == "add" and "0123456789+" or ("abcdefghijklmnopqrstuvwxyz"):sub(1, a.letters)
local id_of, char_of = {}, {}
for i = 1, #chars do
  local c = chars:sub(i, i)
  id_of[c], char_of[i] = i, c
end
local GO, END = #chars + 1, #chars + 2 -- the decoder's start and end tokens
local V = #chars + 2

local function question()
  if a.task == "add" then
    local function number()
      local d = 1 + math.floor(rand() * a.digits)
      return math.floor(rand() * 10 ^ d)
    end
    local x, y = number(), number()
    return string.format("%d+%d", x, y), tostring(x + y)
  end
  local n = a.min_len + math.floor(rand() * (a.max_len - a.min_len + 1))
  local s = {}
  for i = 1, n do s[i] = char_of[1 + math.floor(rand() * #chars)] end
  local q = table.concat(s)
  return q, q:reverse()
end

-- Held out for real: a question whose hash is 0 mod 10 is a test question
-- and never trained on (training draws again), so the figure is on
-- questions the model has not seen.
local function is_test(q)
  local M, h = 2147483647, 1 -- Park and Miller's multiplier as the mixing step: exact in doubles
  for i = 1, #q do h = ((h + q:byte(i)) * 48271) % M end
  for _ = 1, 3 do h = (h * 48271) % M end
  return h < 0.1 * M -- the high part: every digit of q moves it
end
local function draw(test)
  while true do
    local q, ans = question()
    if is_test(q) == test then return q, ans end
  end
end

-- a batch: encoder ids S x B (padded with id 1) and lengths; decoder input
-- T x B (<go> answer, padded with <end>) and targets T x B (answer <end>,
-- padded with 0: ignored); the answers as strings
local function batch(B, test)
  local qs, as, lengths, S, T = {}, {}, {}, 0, 0
  for b = 1, B do
    qs[b], as[b] = draw(test or false)
    lengths[b] = #qs[b]
    S, T = math.max(S, #qs[b]), math.max(T, #as[b] + 1)
  end
  local src, din, dout = {}, {}, {}
  for t = 1, S do
    src[t] = {}
    for b = 1, B do
      local c = qs[b]:sub(t, t)
      src[t][b] = c ~= "" and id_of[c] or 1
    end
  end
  for t = 1, T do
    din[t], dout[t] = {}, {}
    for b = 1, B do
      local ans = as[b]
      din[t][b] = t == 1 and GO or (t - 1 <= #ans and id_of[ans:sub(t - 1, t - 1)] or END)
      dout[t][b] = t <= #ans and id_of[ans:sub(t, t)] or (t == #ans + 1 and END or 0)
    end
  end
  return bptt.tensor(src, "int32"), lengths, bptt.tensor(din, "int32"), bptt.tensor(dout, "int32"), as, qs
end

-- ---- the model ------------------------------------------------------------
bptt.manual_seed(a.seed)
local H, L, E = a.hidden, a.layers, a.embed
local enc_emb = bptt.Embedding{ vocab = V, dim = E }
local enc = bptt.RNN{ cell = "lstm", input = E, hidden = H, layers = L }
local dec_emb = bptt.Embedding{ vocab = V, dim = E }
local dec = bptt.RNN{ cell = "lstm", input = E, hidden = H, layers = L }
local out = bptt.Linear{ input = H, output = V }
local parts = { enc_emb, enc, dec_emb, dec, out }
local ce = bptt.CrossEntropy{ ignore_index = 0 }
local opt = bptt.optim.adam(parts, { lr = a.lr })

-- the encoder's final state (copies: the layer's buffers are overwritten)
local function encode(src, lengths)
  local _, hT, cT = enc:forward(enc_emb:forward(src), nil, nil, lengths)
  return hT:clone(), cT:clone()
end

-- greedy decoding of a batch: the answers as strings
local function decode(src, lengths, maxlen)
  local B = src:size(2)
  local h, c = encode(src, lengths)
  local x = bptt.zeros(1, B, "int32"):fill(GO)
  local res, done = {}, {}
  for b = 1, B do res[b] = {} end
  for _ = 1, maxlen do
    local y, hT, cT = dec:forward(dec_emb:forward(x), h, c)
    h:copy(hT)
    c:copy(cT)
    local pred = out:forward(y):argmax(3):totable()
    for b = 1, B do
      local id = pred[1][b]
      if type(id) == "table" then id = id[1] end
      if not done[b] then
        if id == END then done[b] = true else res[b][#res[b] + 1] = char_of[id] or "?" end
      end
      x:set(1, b, id)
    end
  end
  for b = 1, B do res[b] = done[b] and table.concat(res[b]) or nil end -- no <end>: wrong
  return res
end

local function exact_match(n)
  local right, done, chance, shown = 0, 0, 0, {}
  local maxlen = (a.task == "add" and a.digits + 1 or a.max_len) + 1
  while done < n do
    local B = math.min(256, n - done)
    local src, lengths, _, _, answers, questions = batch(B, true)
    local got = decode(src, lengths, maxlen)
    for b = 1, B do
      if got[b] == answers[b] then right = right + 1 end
      chance = chance + (#chars - (a.task == "add" and 1 or 0)) ^ -#answers[b]
      if #shown < 5 then
        shown[#shown + 1] = string.format("%s -> %s (%s)", questions[b], tostring(got[b]), answers[b])
      end
    end
    done = done + B
  end
  return right / n, chance / n, shown
end

-- one training step: the decoder's input gradient goes to its embedding, its
-- dh0 and dc0 to the encoder's final states (backward's dhT, dcT)
local function train_step(src, lengths, din, dout)
  opt:zero_grad()
  local h, c = encode(src, lengths)
  local y = dec:forward(dec_emb:forward(din), h, c) -- teacher forcing: the right previous characters
  local loss = ce:forward(out:forward(y), dout)
  local dx, dh0, dc0 = dec:backward(out:backward(ce:backward()))
  dec_emb:backward(dx)
  enc_emb:backward(enc:backward(nil, dh0, dc0))
  bptt.clip_grad_norm(parts, 5)
  opt:step()
  return loss
end

local bar = bptt.progress.new{ total = a.iters, tokens = a.batch * (a.task == "add" and 2 * a.digits + 2 or a.max_len) }
local losses, accs = {}, {}
for it = 1, a.iters do
  local src, lengths, din, dout = batch(a.batch)
  opt.lr = a.lr * (1 - 0.9 * (it - 1) / a.iters) -- linear decay to a tenth
  local loss = train_step(src, lengths, din, dout)
  losses[#losses + 1] = { it, loss }
  bar:update(it, loss)
  if it % 250 == 0 or it == a.iters then
    local acc = exact_match(300)
    accs[#accs + 1] = { it, acc }
    bar:message(string.format("iteration %d: exact match %.3f on 300 fresh questions", it, acc))
  end
end
bar:finish()
local acc, chance, shown = exact_match(a.test)
for _, s in ipairs(shown) do print("  " .. s) end
print(string.format("held-out exact match %.4f on %d unseen questions (%s; chance %.2g: random characters of the right "
  .. "length)", acc, a.test, a.task == "add" and ("sums of numbers of 1.." .. a.digits .. " digits")
  or string.format("strings of %d..%d letters over %d", a.min_len, a.max_len, #chars), chance))
bptt.plot.svg(a.out .. "/loss.svg", { { name = "train", points = losses } },
  { title = "seq2seq: cross-entropy per answer character", xlabel = "iteration", ylabel = "loss (nats)",
    integer_x = true })
bptt.plot.svg(a.out .. "/accuracy.svg", { { name = "exact match", points = accs } },
  { title = "seq2seq: exact match on fresh questions", xlabel = "iteration", ylabel = "accuracy", integer_x = true })
print("plots: " .. a.out .. "/loss.svg, " .. a.out .. "/accuracy.svg")
