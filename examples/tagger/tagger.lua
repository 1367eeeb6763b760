-- A bidirectional LSTM tagger over variable-length sequences.
--
--   luajit examples/tagger/tagger.lua --out out/tagger
--
-- The task (generated, seeded): sequences of 4..20 tokens drawn uniformly
-- from a vocabulary of V words; tag each token "repeated" when the same word
-- occurs anywhere else in the sequence, before or after it, else "single".
-- A token's tag depends on both sides, which is what the two directions of
-- the layer give: the forward one has seen the words before, the reverse
-- one the words after.  Each batch is padded to its longest sequence; the
-- layer gets the lengths (the reverse direction starts at each sequence's own
-- end) and the loss ignores the padding (targets 0, ignore_index = 0).
-- Chance is the share of the more frequent tag (always guessing it).
-- --help lists the options.  Uses only bptt's public API.
local common = dofile(((debug.getinfo(1, "S").source or ""):match("^@(.*)/[^/]*$") or ".") .. "/../common.lua")
local bptt = require "bptt"
local argparse = require "argparse"

local p = argparse("tagger.lua", "Train a bidirectional LSTM to tag the repeated words of generated sequences.")
p:option("--vocab", "V, words in the vocabulary", "16", tonumber)
p:option("--min-len", "shortest sequence", "4", tonumber)
p:option("--max-len", "longest sequence", "20", tonumber)
p:option("--embed", "embedding size", "32", tonumber)
p:option("--hidden", "LSTM units per direction", "64", tonumber)
p:option("--layers", "LSTM layers", "1", tonumber)
p:option("--batch", "sequences per batch", "32", tonumber)
p:option("--iters", "training iterations", "2000", tonumber)
p:option("--lr", "Adam learning rate", "0.005", tonumber)
p:option("--test", "held-out sequences", "2000", tonumber)
p:option("--seed", "seed of the data and the weights", "1", tonumber)
p:option("--out", "folder for the plots", "out/tagger")
p:option("--threads", "threads", nil, tonumber)
local a = p:parse()
if a.threads then bptt.set_num_threads(a.threads) end
os.execute("mkdir -p '" .. a.out:gsub("'", "'\\''") .. "'")

-- ---- the data -----------------------------------------------------------
local rand = common.generator(a.seed, 3) -- the data's own generator (examples/common.lua)
local V, SINGLE, REPEATED = a.vocab, 1, 2
local function example()
  local n = a.min_len + math.floor(rand() * (a.max_len - a.min_len + 1))
  local words, count, tags = {}, {}, {}
  for t = 1, n do
    words[t] = math.floor(rand() * V) + 1
    count[words[t]] = (count[words[t]] or 0) + 1
  end
  for t = 1, n do tags[t] = count[words[t]] > 1 and REPEATED or SINGLE end
  return words, tags
end
-- a batch: ids T x B (padded with word 1), targets T x B (padded with 0), lengths
local function batch(B)
  local seqs, tags, lengths, T = {}, {}, {}, 0
  for b = 1, B do
    seqs[b], tags[b] = example()
    lengths[b] = #seqs[b]
    T = math.max(T, lengths[b])
  end
  local ids, tg = {}, {}
  for t = 1, T do
    ids[t], tg[t] = {}, {}
    for b = 1, B do ids[t][b], tg[t][b] = seqs[b][t] or 1, tags[b][t] or 0 end
  end
  return bptt.tensor(ids, "int32"), bptt.tensor(tg, "int32"), lengths
end

-- ---- the model: Embedding -> bidirectional LSTM -> Linear(2H -> 2) at every step
bptt.manual_seed(a.seed)
local H = a.hidden
local emb = bptt.Embedding{ vocab = V, dim = a.embed }
local rnn = bptt.RNN{ cell = "lstm", input = a.embed, hidden = H, layers = a.layers, bidirectional = true }
local lin = bptt.Linear{ input = 2 * H, output = 2 }
local ce = bptt.CrossEntropy{ ignore_index = 0 }
local opt = bptt.optim.adam({ emb, rnn, lin }, { lr = a.lr })

local function forward(ids, lengths)
  local y = rnn:forward(emb:forward(ids), nil, nil, lengths) -- T x B x 2H, zero past each length
  return lin:forward(y)                                       -- T x B x 2
end

-- per-token accuracy over n fresh sequences, and the share of the larger tag
local function accuracy(n)
  local right, total, repeated, done = 0, 0, 0, 0
  while done < n do
    local B = math.min(256, n - done)
    local ids, targets, lengths = batch(B)
    local pred = forward(ids, lengths):argmax(3):totable()
    local tg = targets:totable()
    for t = 1, #tg do
      for b = 1, B do
        local want = tg[t][b]
        if want ~= 0 then
          local pb = pred[t][b]
          if type(pb) == "table" then pb = pb[1] end
          total = total + 1
          if pb == want then right = right + 1 end
          if want == REPEATED then repeated = repeated + 1 end
        end
      end
    end
    done = done + B
  end
  return right / total, math.max(repeated, total - repeated) / total, total
end

local bar = bptt.progress.new{ total = a.iters, tokens = a.batch * (a.min_len + a.max_len) / 2 }
local losses, accs = {}, {}
for it = 1, a.iters do
  local ids, targets, lengths = batch(a.batch)
  opt:zero_grad()
  local loss = ce:forward(forward(ids, lengths), targets)
  emb:backward(rnn:backward(lin:backward(ce:backward())))
  bptt.clip_grad_norm({ emb, rnn, lin }, 5)
  opt:step()
  losses[#losses + 1] = { it, loss }
  bar:update(it, loss)
  if it % 100 == 0 or it == a.iters then
    rnn:evaluate()
    local acc = accuracy(300)
    rnn:train()
    accs[#accs + 1] = { it, acc }
    bar:message(string.format("iteration %d: per-token accuracy %.3f on 300 fresh sequences", it, acc))
  end
end
bar:finish()
rnn:evaluate()
local acc, chance, tokens = accuracy(a.test)
print(string.format("held-out per-token accuracy %.4f on %d sequences (%d tokens) of %d..%d words over %d "
  .. "(chance %.4f: always the more frequent tag)", acc, a.test, tokens, a.min_len, a.max_len, V, chance))
bptt.plot.svg(a.out .. "/loss.svg", { { name = "train", points = losses } },
  { title = "tagger: cross-entropy per token", xlabel = "iteration", ylabel = "loss (nats)", integer_x = true })
bptt.plot.svg(a.out .. "/accuracy.svg", { { name = "per-token accuracy", points = accs } },
  { title = "tagger: accuracy on fresh sequences", xlabel = "iteration", ylabel = "accuracy", integer_x = true })
print("plots: " .. a.out .. "/loss.svg, " .. a.out .. "/accuracy.svg")
