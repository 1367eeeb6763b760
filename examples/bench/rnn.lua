-- RNN layer benchmark: tokens/s of forward and forward+backward of bptt.RNN,
-- next to PyTorch (examples/bench/torch_rnn.py, when Debian's python3-torch is
-- installed) with the same configuration and thread count, in the same run.
--
--   luajit examples/bench/rnn.lua                      -- the default table
--   luajit examples/bench/rnn.lua --cells lstm --hidden 256 --threads 2
--
-- Medians of --iters timed iterations after --warmup untimed ones; a token is
-- one (step, sequence) pair, T*B per iteration.  forward+backward includes
-- zero_grad.  Input size = hidden, float32, time-major.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.path = "examples/bench/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local C = require "bench_common"
local argparse = require "argparse"

local parser = argparse("rnn.lua", "bptt.RNN vs PyTorch: tokens/s, forward and forward+backward")
parser:option("--cells", "cells, comma separated", "lstm,gru")
parser:option("--hidden", "hidden sizes, comma separated", "128,256,512")
parser:option("--threads", "thread counts, comma separated", "1,2")
parser:option("--layers", "stacked layers", "2"):convert(tonumber)
parser:option("--seq", "T, steps", "64"):convert(tonumber)
parser:option("--batch", "B, sequences", "32"):convert(tonumber)
parser:option("--iters", "timed iterations (median)", "10"):convert(tonumber)
parser:option("--warmup", "untimed iterations first", "3"):convert(tonumber)
parser:option("--python", "python with torch", "/usr/bin/python3")
parser:flag("--no-torch", "skip PyTorch")
local args = parser:parse()

local list = C.list

local function time_it(f) return C.timed(f, args.warmup, args.iters) end

local function bench_bptt(cell, H, threads)
  bptt.set_num_threads(threads)
  bptt.manual_seed(1)
  local T, B = args.seq, args.batch
  local rnn = bptt.RNN{cell = cell, input = H, hidden = H, layers = args.layers}
  local x, dy = bptt.randn(T, B, H), bptt.randn(T, B, H)
  local fwd = time_it(function() rnn:forward(x) end)
  local fb = time_it(function()
    rnn:zero_grad()
    rnn:forward(x)
    rnn:backward(dy)
  end)
  return T * B / fwd, T * B / fb
end

local have_torch = not args.no_torch and
  os.execute(args.python .. " -c 'import torch' >/dev/null 2>&1") == 0

local function bench_torch(cell, H, threads)
  if not have_torch then return nil end
  local cmd = string.format("%s examples/bench/torch_rnn.py --cell %s --layers %d --hidden %d --seq %d --batch %d "
    .. "--threads %d --iters %d 2>/dev/null", args.python, cell, args.layers, H, args.seq, args.batch, threads, args.iters)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local f, fb = out:match('"fwd_tok_s":%s*([%d.e+-]+)'), out:match('"fwdbwd_tok_s":%s*([%d.e+-]+)')
  if not f then return nil end
  return tonumber(f), tonumber(fb), out:match('"torch":%s*"([^"]+)"')
end

local function fmt(v) return v and string.format("%9.0f", v) or "        -" end
local function ratio(a, b) return (a and b) and string.format("%5.2fx", a / b) or "    -" end

print(string.format("bptt.RNN benchmark: %d layers, T=%d, B=%d, float32, input = hidden; tokens/s, median of %d",
  args.layers, args.seq, args.batch, args.iters))
print(string.format("BLAS: %s", bptt.blas_config()))
local header = "| cell | H | threads | bptt fwd | torch fwd | ratio | bptt fwd+bwd | torch fwd+bwd | ratio |"
print(header)
print("|---|---|---|---|---|---|---|---|---|")
local version
for _, cell in ipairs(list(args.cells)) do
  for _, H in ipairs(list(args.hidden, tonumber)) do
    for _, th in ipairs(list(args.threads, tonumber)) do
      local bf, bfb = bench_bptt(cell, H, th)
      local tf, tfb, v = bench_torch(cell, H, th)
      version = version or v
      print(string.format("| %s | %d | %d | %s | %s | %s | %s | %s | %s |", cell, H, th, fmt(bf), fmt(tf), ratio(bf, tf),
        fmt(bfb), fmt(tfb), ratio(bfb, tfb)))
      io.stdout:flush()
    end
  end
end
print(have_torch and ("PyTorch " .. tostring(version)) or "PyTorch: not measured (python3-torch not importable)")
