-- Train a character-level language model, char-rnn style.
--
--   luajit examples/charlm/train.lua --data input.txt --cell lstm --hidden 256 --layers 2 --out out/shakespeare
--   luajit examples/charlm/train.lua --resume out/shakespeare/checkpoint.safetensors --max-iters 4000
--
-- Writes into --out: checkpoint.safetensors (the newest, written atomically
-- after every evaluation), log.csv (iteration, train loss, val loss, lr,
-- tokens/s, seconds) and loss.svg (the curves).  On a terminal a progress bar
-- shows iteration, loss, tokens/s and ETA; otherwise plain log lines.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local argparse = require "argparse"

local p = argparse("train.lua", "Train a character-level RNN language model with bptt.")
p:option("--data", "training text (UTF-8 or bytes, see --unit)")
p:option("--unit", "symbols: utf8 (code points) or byte", "utf8"):choices({ "utf8", "byte" })
p:option("--cell", "tanh, relu, lstm or gru", "lstm"):choices({ "tanh", "relu", "lstm", "gru" })
p:option("--hidden", "hidden units per layer", "128"):convert(tonumber)
p:option("--layers", "stacked RNN layers", "2"):convert(tonumber)
p:option("--embed", "embedding size (default: min(hidden, 64))"):convert(tonumber)
p:option("--dropout", "dropout between RNN layers", "0"):convert(tonumber)
p:option("--batch", "parallel streams B", "32"):convert(tonumber)
p:option("--seq", "steps per batch T (truncated BPTT length)", "64"):convert(tonumber)
p:option("--optim", "adam, adamw, sgd, rmsprop or adagrad", "adam"):choices({ "adam", "adamw", "sgd", "rmsprop", "adagrad" })
p:option("--lr", "learning rate", "2e-3"):convert(tonumber)
p:option("--lr-decay", "multiply the lr by this every --lr-decay-every iterations", "1"):convert(tonumber)
p:option("--lr-decay-every", "iterations between lr decays", "1000"):convert(tonumber)
p:option("--clip", "clip the global gradient norm to this (0: no clipping)", "5"):convert(tonumber)
p:option("--max-iters", "stop after this many iterations in all", "2000"):convert(tonumber)
p:option("--eval-every", "evaluate, log and checkpoint every N iterations", "200"):convert(tonumber)
p:option("--eval-batches", "validation batches per evaluation (0: all)", "0"):convert(tonumber)
p:option("--val-frac", "fraction of the text held out for validation", "0.1"):convert(tonumber)
p:option("--out", "directory for checkpoint, log and plot", "out/charlm")
p:option("--resume", "continue from this checkpoint (its model and data settings win)")
p:option("--seed", "seed of every random draw", "1"):convert(tonumber)
p:option("--threads", "threads", tostring(bptt.num_threads())):convert(tonumber)
p:option("--sample-every", "print a sample every N iterations (0: never)", "0"):convert(tonumber)
p:option("--sample-length", "characters per sample", "200"):convert(tonumber)
p:flag("--skip-nonfinite", "drop steps whose loss or gradient is NaN/Inf instead of stopping")
p:flag("--quiet", "no progress bar or sample, only evaluation lines")
local args = p:parse()

local function fail(msg)
  io.stderr:write("train.lua: ", msg, "\n")
  os.exit(1)
end

bptt.set_num_threads(args.threads)

-- Settings that define the run: from the checkpoint when resuming.
local TRAIN_KEYS = { "data", "unit", "batch", "seq", "optim", "lr", "lr_decay", "lr_decay_every", "clip",
  "val_frac", "seed", "eval_every", "eval_batches" }
local meta0
if args.resume then
  local config, meta = bptt.Trainer.read_config(args.resume)
  if not config then fail("cannot resume: " .. tostring(meta)) end
  meta0 = meta
  for _, k in ipairs(TRAIN_KEYS) do
    local v = meta["train." .. k]
    if v ~= nil then args[k] = tonumber(v) or v end
  end
  args.cell, args.hidden, args.layers, args.embed, args.dropout =
    config.cell, config.hidden, config.layers, config.embed, config.dropout
end
if not args.data then fail("--data is required (a text file), or --resume") end

bptt.manual_seed(args.seed)
local vocab
if meta0 and meta0.vocab then vocab = assert(bptt.data.Vocab.deserialize(meta0.vocab)) end
local corpus, err = bptt.data.text(args.data, { unit = args.unit, vocab = vocab })
if not corpus then fail(err) end
vocab = corpus.vocab
local train_tokens, val_tokens = bptt.data.split(corpus.tokens, { 1 - args.val_frac, args.val_frac })
local ok, train = pcall(bptt.data.Batches, train_tokens, { batch = args.batch, seq = args.seq })
if not ok then fail("the training text is too short for --batch " .. args.batch .. " --seq " .. args.seq .. ": " .. train) end
local val
if args.val_frac > 0 then
  local vok, v = pcall(bptt.data.Batches, val_tokens, { batch = args.batch, seq = args.seq })
  if vok then val = v else io.stderr:write("train.lua: no validation (", v, ")\n") end
end

local lm = bptt.LanguageModel{
  vocab = vocab:size(), embed = args.embed, cell = args.cell, hidden = args.hidden,
  layers = args.layers, dropout = args.dropout,
}
local opt = bptt.optim[args.optim](lm, { lr = args.lr })
local sched = bptt.schedule.step(opt, { step_size = args.lr_decay_every, gamma = args.lr_decay })
local trainer = bptt.Trainer{
  model = lm, optimizer = opt, train = train, val = val, schedule = sched,
  clip = args.clip > 0 and args.clip or nil, skip_nonfinite = args.skip_nonfinite,
}
if args.resume then
  local meta, lerr = trainer:load(args.resume)
  if not meta then fail("cannot resume: " .. tostring(lerr)) end
end

os.execute("mkdir -p '" .. args.out:gsub("'", "'\\''") .. "'")
local ckpt = args.out .. "/checkpoint.safetensors"

-- A run killed while saving leaves its temporary behind
-- (checkpoint.safetensors.tmp.<pid>[.<k>], never taken for the checkpoint);
-- remove those of processes that are gone, or crash after crash fills the disk.
do
  local quoted = "'" .. args.out:gsub("'", "'\\''") .. "'"
  local ls = io.popen("ls -A " .. quoted .. " 2>/dev/null")
  for name in ls:lines() do
    local pid = name:match("^checkpoint%.safetensors%.tmp%.(%d+)$") or name:match("^checkpoint%.safetensors%.tmp%.(%d+)%.%d+$")
    local r = pid and os.execute("kill -0 " .. pid .. " 2>/dev/null")
    if pid and r ~= 0 and r ~= true then os.remove(args.out .. "/" .. name) end
  end
  ls:close()
end
-- the newest checkpoint known to be complete: what to resume from after a failure
local last_good = args.resume and { path = args.resume, iteration = trainer.iteration }
local csv_path, svg_path = args.out .. "/log.csv", args.out .. "/loss.svg"

-- the log: kept across resumes (rows past the resumed iteration are dropped)
local rows = {}
do
  local f = io.open(csv_path)
  if f and args.resume then
    for line in f:lines() do
      local it, tl, vl, lr, tps, secs = line:match("^(%d+),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$")
      if it and tonumber(it) <= trainer.iteration then
        rows[#rows + 1] = { tonumber(it), tonumber(tl), tonumber(vl), tonumber(lr), tonumber(tps), tonumber(secs) }
      end
    end
  end
  if f then f:close() end
end
local function write_log()
  local f = assert(io.open(csv_path .. ".tmp", "w"))
  f:write("iteration,train_loss,val_loss,lr,tokens_per_s,seconds\n")
  for _, r in ipairs(rows) do
    f:write(string.format("%d,%.6f,%s,%.6g,%.1f,%.1f\n", r[1], r[2], r[3] and string.format("%.6f", r[3]) or "",
      r[4], r[5], r[6]))
  end
  f:close()
  os.rename(csv_path .. ".tmp", csv_path)
  local tr, va = {}, {}
  for _, r in ipairs(rows) do
    tr[#tr + 1] = { r[1], r[2] }
    if r[3] then va[#va + 1] = { r[1], r[3] } end
  end
  bptt.plot.svg(svg_path, { { name = "train", points = tr }, { name = "val", points = va } },
    { title = string.format("%s %dx%d on %s", args.cell, args.layers, args.hidden, args.data:match("[^/]*$")),
      xlabel = "iteration", ylabel = "loss (nats per symbol)" })
end

print(lm)
print(string.format("data: %s, %d symbols (%s), vocabulary %d; %d training batches of %d x %d per epoch",
  args.data, corpus.tokens:numel(), args.unit, vocab:size(), train:count(), args.seq, args.batch))
if args.resume then print(string.format("resumed from %s at iteration %d", args.resume, trainer.iteration)) end

local bar = bptt.progress.new{ total = args.max_iters, tokens = args.batch * args.seq, start = trainer.iteration,
  tty = not args.quiet and nil or false, every = args.quiet and math.huge or 100 }
-- seconds in the log count the whole run, across resumes
local t_start, window, window_n = bptt.clock() - (rows[#rows] and rows[#rows][6] or 0), 0, 0
local extra = { vocab = vocab:serialize() }
for _, k in ipairs(TRAIN_KEYS) do extra["train." .. k] = tostring(args[k]) end

while trainer.iteration < args.max_iters do
  local skipped = trainer.skipped
  local sok, loss = pcall(trainer.step, trainer)
  if not sok then
    bar:finish()
    fail(tostring(loss) .. "\n" .. (last_good and string.format("the last good checkpoint is %s (iteration %d)",
      last_good.path, last_good.iteration) or "no checkpoint was written by this run"))
  end
  local i = trainer.iteration
  if trainer.skipped == skipped then -- a dropped step's NaN stays out of the mean
    window, window_n = window + loss, window_n + 1
  end
  local tok_s = bar:update(i, loss)
  if args.sample_every > 0 and i % args.sample_every == 0 and not args.quiet then
    local ids = lm:sample{ n = args.sample_length, temperature = 0.8 }
    bar:message("---- sample at iteration " .. i .. "\n" .. vocab:decode(ids) .. "\n----")
  end
  if i % args.eval_every == 0 or i == args.max_iters then
    local vl = val and trainer:evaluate(args.eval_batches > 0 and args.eval_batches or nil)
    rows[#rows + 1] = { i, window / window_n, vl, opt.lr, tok_s, bptt.clock() - t_start }
    window, window_n = 0, 0
    write_log()
    local saved, serr = trainer:save(ckpt, extra)
    if saved then last_good = { path = ckpt, iteration = i } end
    bar:message(string.format("iter %d: train loss %.4f, val loss %s, lr %.3g, %.0f tok/s%s", i, rows[#rows][2],
      vl and string.format("%.4f", vl) or "-", opt.lr, tok_s, saved and "" or ("; checkpoint NOT saved: " .. tostring(serr))))
  end
end
bar:finish()
print(string.format("done: %d iterations in %.1f s; checkpoint %s, log %s, plot %s", trainer.iteration,
  bptt.clock() - t_start, ckpt, csv_path, svg_path))
