-- The classic long-range tasks, generated on the fly: the adding problem
-- (Hochreiter & Schmidhuber 1997, in the setup of Le, Jaitly & Hinton 2015)
-- and copy / delayed recall (Arjovsky, Shah & Bengio 2016), for a tanh RNN,
-- an IRNN (relu, W_hh = I: Le et al.), an LSTM and a GRU.
--
--   luajit examples/longrange/longrange.lua --task adding --cells tanh,irnn,lstm,gru --T 50,100,200
--   luajit examples/longrange/longrange.lua --task copy --T 50 --iters 3000 --out out/longrange
--
-- adding: x_t = (u_t, m_t), u_t ~ U[0, 1], m_t = 1 at two steps (one in each
--   half of the sequence), else 0; target u_a + u_b at the last step; MSE on
--   a linear read-out of h_T.  Predicting the constant 1 scores 1/6 = 0.167.
--   Solved: validation MSE < 0.01.
-- copy: 10 symbols drawn from 8, then T - 1 blanks, a delimiter, 10 blanks;
--   the target is blank for T + 10 steps, then the 10 symbols.  Cross-entropy
--   over all T + 20 steps.  Forgetting the symbols and guessing scores
--   10 ln 8 / (T + 20) (the baseline).  Solved: validation loss below half
--   the baseline (the model recalls symbols).
--
-- Writes into --out: longrange.csv (task, cell, T, iteration, train loss,
-- validation loss), longrange_<task>_T<T>.svg (validation curves, one per
-- cell) and flow_<task>_<cell>_T<T>.svg (bptt.plot.flow of the last
-- validation batch, trained model); prints the table of iterations to solve
-- (copy: also the first validation below the baseline, and the best loss
-- as a multiple of the baseline).
-- Adam, one layer, clip 1, float32; the validation batch is fixed (256
-- sequences); evaluation every --eval-every iterations.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local argparse = require "argparse"

local p = argparse("longrange.lua", "adding and copy tasks with tanh RNN, IRNN, LSTM and GRU")
p:option("--task", "adding or copy", "adding"):choices({ "adding", "copy" })
p:option("--cells", "comma separated: tanh, irnn, lstm, gru", "tanh,irnn,lstm,gru")
p:option("--T", "sequence lengths (adding) or delays (copy), comma separated", "50,100,200")
p:option("--hidden", "hidden units", "64"):convert(tonumber)
p:option("--batch", "sequences per iteration", "32"):convert(tonumber)
p:option("--iters", "iterations at most per run", "1500"):convert(tonumber)
p:option("--eval-every", "iterations between validations", "25"):convert(tonumber)
p:option("--lr", "Adam's learning rate (IRNN: a tenth of it)", "0.002"):convert(tonumber)
p:option("--seed", "seed", "1"):convert(tonumber)
p:option("--threads", "threads", tostring(bptt.num_threads())):convert(tonumber)
p:option("--out", "folder for the CSV and the pictures", "out/longrange")
p:flag("--quiet", "no progress bar")
local args = p:parse()
bptt.set_num_threads(args.threads)
os.execute("mkdir -p '" .. args.out .. "'")

local function list(s, conv)
  local t = {}
  for item in s:gmatch("[^,]+") do t[#t + 1] = conv and conv(item) or item end
  return t
end

-- ---------------------------------------------------------------- the data
local function adding_batch(T, B)
  local x = bptt.zeros(T, B, 2)
  x:narrow(3, 1, 1):copy(bptt.rand(T, B, 1))
  local y = bptt.zeros(B, 1)
  local half = math.floor(T / 2)
  for b = 1, B do
    local a = math.floor(bptt.random() * half) + 1            -- first half
    local c = half + math.floor(bptt.random() * (T - half)) + 1 -- second half
    x:set(a, b, 2, 1)
    x:set(c, b, 2, 1)
    y:set(b, 1, x:get(a, b, 1) + x:get(c, b, 1))
  end
  return x, y
end

local SYMBOLS, BLANK, DELIM = 8, 9, 10 -- inputs: one-hot of 10; targets: 1..9
local function copy_batch(T, B)
  local n = T + 20
  local x = bptt.zeros(n, B, 10)
  local y = bptt.zeros(n, B, "int32")
  y:fill(BLANK)
  for b = 1, B do
    for i = 1, 10 do
      local s = math.floor(bptt.random() * SYMBOLS) + 1
      x:set(i, b, s, 1)
      y:set(T + 10 + i, b, s)
    end
    for i = 11, n do x:set(i, b, i == T + 10 and DELIM or BLANK, 1) end
  end
  return x, y
end

-- ---------------------------------------------------------------- a model
local function make_model(cell, input, output)
  local rnn = bptt.RNN{ cell = cell == "irnn" and "relu" or cell, input = input, hidden = args.hidden }
  if cell == "irnn" then -- Le et al.: W_hh = I, biases 0, W_ih ~ N(0, 0.001^2)
    local P = rnn.params
    P.weight_hh_l0:zero()
    for j = 1, args.hidden do P.weight_hh_l0:set(j, j, 1) end
    P.bias_ih_l0:zero()
    P.bias_hh_l0:zero()
    P.weight_ih_l0:copy(bptt.randn(args.hidden, input) * 0.001)
  end
  local head = bptt.Linear{ input = args.hidden, output = output }
  return rnn, head
end

-- loss (and, with train, the gradients) of one batch
local function run_batch(task, rnn, head, x, y, train)
  local T, B, H = x:size(1), x:size(2), args.hidden
  local out = rnn:forward(x)
  if task == "adding" then
    local last = out:select(1, T)                 -- h_T (B x H)
    local crit = bptt.MSE{}
    local loss = crit:forward(head:forward(last), y)
    if train then
      local dlast = head:backward(crit:backward())
      rnn:backward(nil, dlast:view(1, B, H))      -- the loss reaches h_T only: dhT
    end
    return loss
  end
  local crit = bptt.CrossEntropy{}
  local loss = crit:forward(head:forward(out), y)
  if train then rnn:backward(head:backward(crit:backward())) end
  return loss
end

local function baseline(task, T)
  if task == "adding" then return 1 / 6 end
  return 10 * math.log(SYMBOLS) / (T + 20)
end

local function solved(task, T, v)
  if task == "adding" then return v < 0.01 end
  return v < 0.5 * baseline(task, T)
end

-- ---------------------------------------------------------------- runs
local csv = assert(io.open(args.out .. "/longrange.csv", "a"))
local f = io.open(args.out .. "/longrange.csv")
if f and f:read("*a") == "" then csv:write("task,cell,T,iteration,train_loss,val_loss\n") end
if f then f:close() end

local cells, Ts = list(args.cells), list(args.T, tonumber)
local table_rows = {}
for _, T in ipairs(Ts) do
  local curves = {}
  for _, cell in ipairs(cells) do
    bptt.manual_seed(args.seed)
    local input, output = args.task == "adding" and 2 or 10, args.task == "adding" and 1 or 9
    local rnn, head = make_model(cell, input, output)
    local model = { rnn, head }
    local opt = bptt.optim.adam(model, { lr = cell == "irnn" and args.lr / 10 or args.lr })
    local make = args.task == "adding" and adding_batch or copy_batch
    local vx, vy = make(T, 256)
    local bar = bptt.progress.new{ total = args.iters, tokens = args.batch * T, every = 250, quiet = args.quiet }
    local points, solved_at, best, beat_at = {}, nil, math.huge, nil
    for i = 1, args.iters do
      local x, y = make(T, args.batch)
      rnn:zero_grad(); head:zero_grad()
      local loss = run_batch(args.task, rnn, head, x, y, true)
      bptt.clip_grad_norm(model, 1)
      opt:step()
      bar:update(i, loss)
      if i % args.eval_every == 0 then
        local v = run_batch(args.task, rnn, head, vx, vy, false)
        best = math.min(best, v)
        if v < baseline(args.task, T) and not beat_at then beat_at = i end
        points[#points + 1] = { i, v }
        csv:write(string.format("%s,%s,%d,%d,%.6f,%.6f\n", args.task, cell, T, i, loss, v))
        csv:flush()
        if solved(args.task, T, v) then solved_at = i break end
      end
    end
    bar:finish()
    -- the gradient flow of the trained model on the validation batch
    rnn:record_flow(true)
    rnn:zero_grad(); head:zero_grad()
    run_batch(args.task, rnn, head, vx, vy, true)
    local flow = rnn:flow()
    rnn:record_flow(false)
    local fpath = string.format("%s/flow_%s_%s_T%d.svg", args.out, args.task, cell, T)
    assert(bptt.plot.flow(fpath, flow, { title = string.format("%s, %s, T = %d: %s", cell, args.task, T,
      solved_at and ("solved at iteration " .. solved_at) or "not solved") }))
    print(string.format("%s %s T = %d: %s; best validation %.4f (baseline %.4f); gradient reach %d steps; %s",
      args.task, cell, T, solved_at and ("solved at iteration " .. solved_at) or ("not solved in " .. args.iters), best,
      baseline(args.task, T), bptt.plot.reach(flow), fpath))
    table_rows[#table_rows + 1] = { T = T, cell = cell, solved = solved_at, best = best, beat = beat_at }
    curves[#curves + 1] = { name = cell, points = points }
  end
  curves[#curves + 1] = { name = "baseline", points = { { args.eval_every, baseline(args.task, T) },
    { args.iters, baseline(args.task, T) } }, color = "#888888" }
  assert(bptt.plot.svg(string.format("%s/longrange_%s_T%d.svg", args.out, args.task, T), curves, {
    title = string.format("%s, T = %d: validation %s", args.task, T, args.task == "adding" and "MSE" or "loss"),
    xlabel = "iteration", ylabel = args.task == "adding" and "MSE" or "cross-entropy (nats)", integer_x = true }))
end
csv:close()

-- the table: iterations to solve, per cell (columns) and T (rows)
print()
print(string.format("| %s, H %d, B %d, Adam lr %g | %s |", args.task, args.hidden, args.batch, args.lr,
  table.concat(cells, " | ")))
print("|---" .. string.rep("|---", #cells) .. "|")
for _, T in ipairs(Ts) do
  local cols = {}
  for _, r in ipairs(table_rows) do
    if r.T == T then
      local c = r.solved and tostring(r.solved) or string.format("> %d (best %.3g)", args.iters, r.best)
      if args.task == "copy" then -- and when it first beat the baseline, and its best against it
        c = string.format("%s; below the baseline at %s, best %.2f x it", c, r.beat or "never",
          r.best / baseline(args.task, T))
      end
      cols[#cols + 1] = c
    end
  end
  print(string.format("| T = %d | %s |", T, table.concat(cols, " | ")))
end
