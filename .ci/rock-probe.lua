-- The rock check's probe: a short char-LM training run on generated text
-- (Embedding, 2-layer LSTM 128, Linear, cross-entropy, clip 5, Adam; B 32,
-- T 64, 2 threads), printing the final loss to the bit and the median step
-- time.  Run once against the `make` build and once against the installed
-- rock: the two must print the same loss.
--   luajit .ci/rock-probe.lua [steps]
local bptt = require "bptt"
local steps = tonumber(arg[1]) or 40

bptt.manual_seed(7)
bptt.set_num_threads(2)
-- a corpus of 64 symbols with some structure (a fixed pseudo-random walk)
local n, ids, s = 200000, {}, 1
for i = 1, n do
  s = (s * 1103515245 + 12345) % 2147483648
  ids[i] = (i % 7 == 0) and 1 + (ids[i - 1] % 64) or 1 + math.floor(s / 65536) % 64
end
local tokens = bptt.tensor(ids, "int32")
local lm = bptt.LanguageModel{vocab = 64, embed = 64, cell = "lstm", hidden = 128, layers = 2}
local opt = bptt.optim.adam(lm, {lr = 2e-3})
local trainer = bptt.Trainer{model = lm, optimizer = opt, clip = 5,
  train = bptt.data.Batches(tokens, {batch = 32, seq = 64})}

local times, loss = {}, nil
for i = 1, steps do
  local t0 = bptt.clock()
  loss = trainer:step()
  times[i] = bptt.clock() - t0
end
local warm = {}
for i = 6, steps do warm[#warm + 1] = times[i] end
table.sort(warm)
print(string.format("loss %a (%.17g)", loss, loss))
print(string.format("step %.6f s", warm[math.ceil(#warm / 2)]))
print("module " .. package.searchpath("bptt.core", package.cpath))
