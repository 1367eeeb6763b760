-- Sample from (or score a text with) a model trained by train.lua.
--
--   luajit examples/charlm/sample.lua out/charlm/checkpoint.safetensors --prime "ROMEO:" --length 500 --temperature 0.8
--   luajit examples/charlm/sample.lua out/charlm/checkpoint.safetensors --score "To be, or not to be"
--
-- Text streams out as it is made.  --greedy takes the most likely symbol;
-- --top-k / --top-p restrict the draw; --seed makes a sample repeatable.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local argparse = require "argparse"

local p = argparse("sample.lua", "Sample text from a bptt character-level language model.")
p:argument("checkpoint", "a checkpoint.safetensors written by train.lua")
p:option("--length", "symbols to generate", "500"):convert(tonumber)
p:option("--prime", "text to start from (its symbols must be in the vocabulary)")
p:option("--temperature", "softmax temperature (lower: more conservative)", "1"):convert(tonumber)
p:option("--top-k", "draw only from the k most likely symbols (0: all)", "0"):convert(tonumber)
p:option("--top-p", "draw only from the most likely symbols covering this probability", "1"):convert(tonumber)
p:flag("--greedy", "always take the most likely symbol")
p:option("--seed", "seed of the draws (default: from the clock)"):convert(tonumber)
p:option("--threads", "threads", "1"):convert(tonumber)
p:option("--score", "instead of sampling: per-symbol log-probability and perplexity of this text")
local args = p:parse()

local function fail(msg)
  io.stderr:write("sample.lua: ", msg, "\n")
  os.exit(1)
end

bptt.set_num_threads(args.threads)
local lm, meta = bptt.Trainer.load_model(args.checkpoint)
if not lm then fail(meta) end
if not meta.vocab then fail(args.checkpoint .. " holds no vocabulary") end
local vocab = assert(bptt.data.Vocab.deserialize(meta.vocab))

local function encode(text, what)
  local ok, ids = pcall(vocab.encode, vocab, text)
  if not ok then fail(what .. ": " .. tostring(ids)) end
  return ids
end

if args.score then
  local logp, ppl = lm:score(encode(args.score, "--score"))
  local syms = vocab:symbols()
  local ids = encode(args.score, "--score")
  for i = 1, logp:numel() do
    io.write(string.format("%-4s %9.4f\n", (syms[ids:get(i + 1)]:gsub("\n", "\\n")), logp:get(i)))
  end
  print(string.format("mean log-probability %.4f nats per symbol, perplexity %.3f (%d symbols after the first)",
    logp:mean(), ppl, logp:numel()))
  os.exit(0)
end

local prime = args.prime and encode(args.prime, "--prime")
if args.prime then io.write(args.prime) end
lm:sample{
  n = args.length, prime = prime, temperature = args.temperature, top_k = args.top_k, top_p = args.top_p,
  greedy = args.greedy, seed = args.seed or math.floor(bptt.clock() * 1e6) % 2 ^ 31,
  on_token = function(id)
    io.write(vocab:decode({ id }))
    io.stdout:flush()
  end,
}
io.write("\n")
