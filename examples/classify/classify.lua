-- A bidirectional GRU sequence classifier over variable-length sequences.
--
--   luajit examples/classify/classify.lua --out out/classify
--
-- The task (generated, seeded): k random character bigram models over an
-- alphabet of A letters, each a "language"; a string of 3..40 letters drawn
-- from one of them; the model says which.  Chance is 1/k.  The batch is
-- padded to its longest string and the layer gets each string's length:
-- the forward direction stops at the last letter, the reverse one starts
-- there, and the classifier reads both final states (hT).  --help lists the
-- options.  Uses only bptt's public API.
local common = dofile(((debug.getinfo(1, "S").source or ""):match("^@(.*)/[^/]*$") or ".") .. "/../common.lua")
local bptt = require "bptt"
local argparse = require "argparse"

local p = argparse("classify.lua", "Train a bidirectional GRU to tell k generated languages apart.")
p:option("--languages", "k, the number of languages", "8", tonumber)
p:option("--alphabet", "letters in the alphabet", "8", tonumber)
p:option("--min-len", "shortest string", "3", tonumber)
p:option("--max-len", "longest string", "40", tonumber)
p:option("--hidden", "GRU units per direction", "48", tonumber)
p:option("--layers", "GRU layers", "1", tonumber)
p:option("--batch", "strings per batch", "32", tonumber)
p:option("--iters", "training iterations", "500", tonumber)
p:option("--lr", "Adam learning rate", "0.005", tonumber)
p:option("--test", "held-out strings", "2000", tonumber)
p:option("--seed", "seed of the data and the weights", "1", tonumber)
p:option("--out", "folder for the plots", "out/classify")
p:option("--threads", "threads", nil, tonumber)
local a = p:parse()
if a.threads then bptt.set_num_threads(a.threads) end
os.execute("mkdir -p '" .. a.out:gsub("'", "'\\''") .. "'")

-- ---- the languages: a peaked random bigram table each ----------------------
local rand = common.generator(a.seed, 1) -- the data's own generator (examples/common.lua)
local K, A = a.languages, a.alphabet
local langs = {}
for k = 1, K do
  local m = {}
  for i = 1, A do
    local row, z = {}, 0
    for j = 1, A do row[j] = rand() ^ 2; z = z + row[j] end -- squared: somewhat peaked rows
    for j = 1, A do row[j] = row[j] / z end
    m[i] = row
  end
  langs[k] = m
end
local function draw(row)
  local u, c = rand(), 0
  for j = 1, #row do
    c = c + row[j]
    if u <= c then return j end
  end
  return #row
end
local function example()
  local k = math.floor(rand() * K) + 1
  local n = a.min_len + math.floor(rand() * (a.max_len - a.min_len + 1))
  local s = { math.floor(rand() * A) + 1 }
  for t = 2, n do s[t] = draw(langs[k][s[t - 1]]) end
  return s, k
end
-- a batch: ids T x B (padded with 1), lengths, labels
local function batch(B)
  local seqs, labels, lengths, T = {}, {}, {}, 0
  for b = 1, B do
    seqs[b], labels[b] = example()
    lengths[b] = #seqs[b]
    T = math.max(T, lengths[b])
  end
  local ids = {}
  for t = 1, T do
    ids[t] = {}
    for b = 1, B do ids[t][b] = seqs[b][t] or 1 end
  end
  return bptt.tensor(ids, "int32"), lengths, bptt.tensor(labels, "int32")
end

-- ---- the model: Embedding -> bidirectional GRU -> [hT forward | hT reverse] -> Linear
bptt.manual_seed(a.seed)
local H, L = a.hidden, a.layers
local emb = bptt.Embedding{ vocab = A, dim = 16 }
local rnn = bptt.RNN{ cell = "gru", input = 16, hidden = H, layers = L, bidirectional = true }
local lin = bptt.Linear{ input = 2 * H, output = K }
local ce = bptt.CrossEntropy{}
local opt = bptt.optim.adam({ emb, rnn, lin }, { lr = a.lr })

local function forward(ids, lengths)
  local _, hT = rnn:forward(emb:forward(ids), nil, nil, lengths)
  local B = ids:size(2)
  local feat = bptt.zeros(B, 2 * H)
  feat:narrow(2, 1, H):copy(hT:select(1, 2 * L - 1)) -- the last layer, forward
  feat:narrow(2, H + 1, H):copy(hT:select(1, 2 * L)) -- and reverse
  return lin:forward(feat)
end

local function accuracy(n)
  local right, done = 0, 0
  while done < n do
    local B = math.min(256, n - done)
    local ids, lengths, labels = batch(B)
    local pred = forward(ids, lengths):argmax(2):totable()
    local lt = labels:totable()
    for b = 1, B do
      local pb = type(pred[b]) == "table" and pred[b][1] or pred[b]
      if pb == lt[b] then right = right + 1 end
    end
    done = done + B
  end
  return right / n
end

local bar = bptt.progress.new{ total = a.iters, tokens = a.batch * (a.min_len + a.max_len) / 2 }
local losses, accs = {}, {}
for it = 1, a.iters do
  local ids, lengths, labels = batch(a.batch)
  opt:zero_grad()
  local logits = forward(ids, lengths)
  local loss = ce:forward(logits, labels)
  local dfeat = lin:backward(ce:backward())
  local dhT = bptt.zeros(2 * L, a.batch, H)
  dhT:select(1, 2 * L - 1):copy(dfeat:narrow(2, 1, H))
  dhT:select(1, 2 * L):copy(dfeat:narrow(2, H + 1, H))
  emb:backward(rnn:backward(nil, dhT))
  bptt.clip_grad_norm({ emb, rnn, lin }, 5)
  opt:step()
  losses[#losses + 1] = { it, loss }
  bar:update(it, loss)
  if it % 100 == 0 or it == a.iters then
    rnn:evaluate()
    local acc = accuracy(500)
    rnn:train()
    accs[#accs + 1] = { it, acc }
    bar:message(string.format("iteration %d: accuracy %.3f on 500 fresh strings", it, acc))
  end
end
bar:finish()
local acc = accuracy(a.test)
print(string.format("held-out accuracy %.4f on %d strings of %d..%d letters (chance %.4f, %d languages)", acc,
  a.test, a.min_len, a.max_len, 1 / K, K))
bptt.plot.svg(a.out .. "/loss.svg", { { name = "train", points = losses } },
  { title = "classify: cross-entropy", xlabel = "iteration", ylabel = "loss (nats)", integer_x = true })
bptt.plot.svg(a.out .. "/accuracy.svg", { { name = "accuracy", points = accs } },
  { title = "classify: accuracy on fresh strings", xlabel = "iteration", ylabel = "accuracy", integer_x = true })
print("plots: " .. a.out .. "/loss.svg, " .. a.out .. "/accuracy.svg")
