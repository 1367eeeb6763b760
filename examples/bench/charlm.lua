-- Convergence benchmark: a character-level LSTM language model trained by
-- bptt and by PyTorch (examples/bench/torch_charlm.py, when Debian's
-- python3-torch is installed) with the same configuration, data pipeline and
-- thread count, one after the other in the same run.
--
--   luajit examples/bench/charlm.lua          -- the issue's configuration (below)
--   luajit examples/bench/charlm.lua --max-iters 50 --eval-every 25 --no-torch
--
-- Defaults: tinyshakespeare (../shared/data/tinyshakespeare.txt beside the
-- repository; absent: a message and exit 0), LSTM 2 x 256 (embedding
-- min(hidden, 64)), B 32, T 64, Adam lr 2e-3, gradient norm clipped to 5,
-- 2000 iterations, validation every 500, 2 threads.
--
-- Our side is built as examples/charlm/train.lua builds it (bptt.data.text
-- in code points, data.split 0.9 / 0.1, data.Batches, LanguageModel, optim.adam,
-- Trainer).  Reported, for each framework: the validation loss (nats per
-- character, mean over all validation batches from a zero state) after the
-- last iteration; the final train loss (mean over the iterations since the
-- previous evaluation); wall seconds of the loop with and without the
-- evaluations; tokens/s = iterations * B * T / training seconds (evaluations
-- excluded); then both validation curves.  Progress goes to stderr, the
-- tables to stdout.
local root = (arg and arg[0] or ""):match("^(.*)/examples/bench/[^/]*$") or "."
-- the checkout's library, unless LUA_PATH / LUA_CPATH find one (an installed rock)
if not (os.getenv("LUA_PATH") and package.searchpath("bptt", package.path)) then
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
end
package.path = root .. "/examples/bench/?.lua;" .. package.path
if not (os.getenv("LUA_CPATH") and package.searchpath("bptt.core", package.cpath)) then
  package.cpath = root .. "/build/?.so;" .. package.cpath
end
local bptt = require "bptt"
local C = require "bench_common"
local argparse = require "argparse"

local p = argparse("charlm.lua", "Char-LM convergence: bptt vs PyTorch, same configuration, same session.")
p:option("--data", "training text (UTF-8)", (root == "." and "" or root .. "/") .. "../shared/data/tinyshakespeare.txt")
p:option("--hidden", "hidden units per layer", "256"):convert(tonumber)
p:option("--layers", "stacked LSTM layers", "2"):convert(tonumber)
p:option("--batch", "parallel streams B", "32"):convert(tonumber)
p:option("--seq", "steps per batch T", "64"):convert(tonumber)
p:option("--lr", "Adam's learning rate", "2e-3"):convert(tonumber)
p:option("--clip", "clip the global gradient norm to this (0: no clipping)", "5"):convert(tonumber)
p:option("--max-iters", "training iterations", "2000"):convert(tonumber)
p:option("--eval-every", "evaluate every N iterations (and at the last)", "500"):convert(tonumber)
p:option("--threads", "threads for both frameworks", "2"):convert(tonumber)
p:option("--seed", "seed of both runs (the generators differ)", "1"):convert(tonumber)
p:option("--malloc", "PyTorch's allocator: default, keep, jemalloc, tcmalloc (see torch_rnn.py)", "tcmalloc")
  :choices({ "default", "keep", "jemalloc", "tcmalloc" })
p:option("--blas-env", "bptt's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices({ "clean", "inherit" })
p:option("--torch-blas-env", "PyTorch's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices({ "clean", "inherit" })
p:option("--python", "python with torch", "/usr/bin/python3")
p:flag("--no-torch", "skip PyTorch")
local args = p:parse()
C.clean_blas_env(args.blas_env == "inherit") -- as step.lua: bptt as on a user's machine

local VAL_FRAC = 0.1

local function fail(msg)
  io.stderr:write("charlm.lua: ", msg, "\n")
  os.exit(1)
end
for _, k in ipairs({ "hidden", "layers", "batch", "seq", "max_iters", "eval_every", "threads" }) do
  local v = args[k]
  if not v or v < 1 or v ~= math.floor(v) then fail("--" .. k:gsub("_", "-") .. " must be a whole number >= 1") end
end
if not (args.lr and args.lr > 0) then fail("--lr must be > 0") end
if not (args.clip and args.clip >= 0) then fail("--clip must be >= 0") end

do
  local f = io.open(args.data, "rb")
  if not f then
    print(string.format("charlm.lua: no data file at %s: nothing to measure.\n"
      .. "Get tinyshakespeare.txt there, or pass --data FILE.", args.data))
    os.exit(0)
  end
  f:close()
end

local B, T = args.batch, args.seq

-------------------------------------------------------------------- bptt

local function run_bptt()
  bptt.set_num_threads(args.threads)
  bptt.manual_seed(args.seed)
  local corpus, err = bptt.data.text(args.data, { unit = "utf8" })
  if not corpus then fail(err) end
  local train_tokens, val_tokens = bptt.data.split(corpus.tokens, { 1 - VAL_FRAC, VAL_FRAC })
  local ok, train = pcall(bptt.data.Batches, train_tokens, { batch = B, seq = T })
  if not ok then fail("the training text is too short: " .. train) end
  local vok, val = pcall(bptt.data.Batches, val_tokens, { batch = B, seq = T })
  if not vok then fail("the validation text is too short: " .. val) end
  local lm = bptt.LanguageModel{ vocab = corpus.vocab:size(), cell = "lstm", hidden = args.hidden,
    layers = args.layers }
  local opt = bptt.optim.adam(lm, { lr = args.lr })
  local trainer = bptt.Trainer{ model = lm, optimizer = opt, train = train, val = val,
    clip = args.clip > 0 and args.clip or nil }
  local r = {
    vocab = corpus.vocab:size(), tokens = corpus.tokens:numel(), train_batches = train:count(),
    val_batches = val:count(), params = lm:num_parameters(), embed = lm.config.embed,
    val_curve = {}, train_curve = {},
  }
  io.stderr:write(string.format("bptt: %d symbols, vocabulary %d, %d parameters; %d training batches of %d x %d "
    .. "per epoch, %d validation batches\n", r.tokens, r.vocab, r.params, r.train_batches, T, B, r.val_batches))
  local window, window_n, eval_s = 0, 0, 0
  local t_start = bptt.clock()
  for i = 1, args.max_iters do
    local loss = trainer:step()
    window, window_n = window + loss, window_n + 1
    if i % args.eval_every == 0 or i == args.max_iters then
      local t0 = bptt.clock()
      local vl = trainer:evaluate()
      local t1 = bptt.clock()
      eval_s = eval_s + (t1 - t0)
      r.train_curve[#r.train_curve + 1] = { i, window / window_n }
      r.val_curve[#r.val_curve + 1] = { i, vl }
      io.stderr:write(string.format("bptt iter %d: train loss %.4f, val loss %.4f, %.0f tok/s, %.1f s\n", i,
        window / window_n, vl, i * B * T / (t1 - t_start - eval_s), t1 - t_start))
      window, window_n = 0, 0
    end
  end
  r.seconds = bptt.clock() - t_start
  r.train_seconds = r.seconds - eval_s
  r.tok_s = args.max_iters * B * T / r.train_seconds
  r.val_loss = r.val_curve[#r.val_curve][2]
  r.train_loss_last = r.train_curve[#r.train_curve][2]
  return r
end

-------------------------------------------------------------------- PyTorch

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The numbers of torch_charlm.py's JSON line (flat keys and the [[i, v], ...]
-- curves), without a JSON library.
local function parse(line)
  local r = {}
  for key in pairs({ val_loss = 1, train_loss_last = 1, seconds = 1, train_seconds = 1, tok_s = 1, vocab = 1,
    tokens = 1, train_batches = 1, val_batches = 1, params = 1, embed = 1 }) do
    r[key] = tonumber(line:match('"' .. key .. '":%s*([^,}%s]+)'))
  end
  r.version = line:match('"torch":%s*"([^"]*)"')
  r.info = {}
  for k, v in line:gmatch('"([%w_]+)":%s*"([^"]*)"') do r.info[k] = v end
  for _, key in ipairs({ "val_curve", "train_curve" }) do
    local list = line:match('"' .. key .. '":%s*(%b[])') or "[]"
    r[key] = {}
    for i, v in list:gmatch("%[%s*(%d+)%s*,%s*([^%],%s]+)%s*%]") do
      r[key][#r[key] + 1] = { tonumber(i), tonumber(v) }
    end
  end
  return r
end

local function run_torch()
  local cmd = string.format("%s %s --data %s --hidden %d --layers %d --batch %d --seq %d --lr %.17g --clip %.17g "
    .. "--max-iters %d --eval-every %d --threads %d --seed %d --malloc %s --blas-env %s", q(args.python),
    q(root .. "/examples/bench/torch_charlm.py"), q(args.data), args.hidden, args.layers, B, T, args.lr, args.clip,
    args.max_iters, args.eval_every, args.threads, args.seed, args.malloc, args.torch_blas_env)
  local f = io.popen(cmd) -- stderr (its progress) goes to ours
  local out = f:read("*a")
  f:close()
  local line
  for l in out:gmatch("[^\n]+") do
    if l:match("^%s*{") then line = l end
  end
  if not line then return nil end
  return parse(line)
end

-------------------------------------------------------------------- run and report

local have_torch = not args.no_torch and os.execute(q(args.python) .. " -c 'import torch' >/dev/null 2>&1") == 0
local ours = run_bptt()
local theirs = have_torch and run_torch() or nil

local function f4(v) return v and string.format("%.4f", v) or "-" end
local function f1(v) return v and string.format("%.1f", v) or "-" end
local function f0(v) return v and string.format("%.0f", v) or "-" end

print(string.format("char-LM convergence: LSTM %d x %d, embedding %d, B %d, T %d, Adam lr %g, clip %g, "
  .. "%d iterations, %d threads", args.layers, args.hidden, ours.embed, B, T, args.lr, args.clip, args.max_iters,
  args.threads))
print(string.format("data: %s, %d symbols, vocabulary %d; %d training batches per epoch, %d validation batches",
  args.data, ours.tokens, ours.vocab, ours.train_batches, ours.val_batches))
print("Machine: " .. C.machine())
print(C.bptt_blas_line())
if theirs then print(C.torch_line(theirs.info)) end
print("")
print("| framework | val loss (nats/char) | final train loss | wall s | train s | tokens/s | tokens/s ratio |")
print("|---|---|---|---|---|---|---|")
local function row(name, r, ratio)
  print(string.format("| %s | %s | %s | %s | %s | %s | %s |", name, f4(r.val_loss), f4(r.train_loss_last),
    f1(r.seconds), f1(r.train_seconds), f0(r.tok_s), ratio))
end
row("bptt", ours, (theirs and theirs.tok_s) and string.format("%.2fx", ours.tok_s / theirs.tok_s) or "-")
if theirs then
  row("PyTorch " .. tostring(theirs.version) .. " (malloc " .. tostring(theirs.info.malloc) .. ")", theirs, "1.00x")
end
print("")
print("final train loss: the mean over the iterations since the previous evaluation; wall s: the training loop "
  .. "with its evaluations; tokens/s: iterations * B * T / train s (evaluations excluded); ratio: bptt / PyTorch.")
if have_torch and not theirs then
  print("PyTorch: the run failed (its messages are above)")
elseif not have_torch then
  print(args.no_torch and "PyTorch: skipped (--no-torch)"
    or ("PyTorch: not measured (" .. args.python .. " cannot import torch)"))
end

-- the same data, the same model size?
if theirs then
  for _, k in ipairs({ "tokens", "vocab", "train_batches", "val_batches", "params", "embed" }) do
    if theirs[k] ~= ours[k] then
      print(string.format("WARNING: %s differs: bptt %s, PyTorch %s", k, tostring(ours[k]), tostring(theirs[k])))
    end
  end
end

print("")
print("| iteration | bptt val | PyTorch val | bptt train | PyTorch train |")
print("|---|---|---|---|---|")
local tv, tt = {}, {}
for _, pt in ipairs(theirs and theirs.val_curve or {}) do tv[pt[1]] = pt[2] end
for _, pt in ipairs(theirs and theirs.train_curve or {}) do tt[pt[1]] = pt[2] end
for j, pt in ipairs(ours.val_curve) do
  local i = pt[1]
  print(string.format("| %d | %s | %s | %s | %s |", i, f4(pt[2]), f4(tv[i]), f4(ours.train_curve[j][2]), f4(tt[i])))
end
