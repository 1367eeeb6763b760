-- Gradient-flow recording's cost: forward+backward of bptt.RNN with
-- rnn:record_flow(false) and (true), the same layer and data, interleaved
-- (off, on, off, on, ...) so that a noisy neighbour hits both alike.
--
--   luajit examples/bench/flow.lua                       -- the default table
--   luajit examples/bench/flow.lua --cells lstm --hidden 256 --batch 32 --threads 2
--   luajit examples/bench/flow.lua --threads 1 --cpu     -- CPU time: steadier on a shared machine
--
-- Medians of --iters timed pairs after --warmup untimed ones; float32,
-- input size = hidden, time-major.  "extra" = on / off - 1.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.path = "examples/bench/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local C = require "bench_common"
local argparse = require "argparse"

local parser = argparse("flow.lua", "cost of rnn:record_flow(true) in forward+backward")
parser:option("--cells", "cells, comma separated", "tanh,lstm,gru")
parser:option("--hidden", "hidden sizes, comma separated", "128,512")
parser:option("--batch", "B, comma separated", "8,32")
parser:option("--threads", "thread count", "2"):convert(tonumber)
parser:option("--layers", "stacked layers", "2"):convert(tonumber)
parser:option("--seq", "T, steps", "64"):convert(tonumber)
parser:option("--iters", "timed pairs (median)", "15"):convert(tonumber)
parser:option("--warmup", "untimed pairs first", "3"):convert(tonumber)
parser:flag("--cpu", "time with the process's CPU time (os.clock) instead of the wall clock: steadier on a busy "
  .. "machine, meaningful with --threads 1")
local args = parser:parse()

bptt.set_num_threads(args.threads)
print(string.format("%d threads, T = %d, %d layers, float32; forward+backward, median of %d (%s time)",
  args.threads, args.seq, args.layers, args.iters, args.cpu and "CPU" or "wall"))
print(string.format("%-5s %5s %4s %12s %12s %8s", "cell", "H", "B", "off ms", "on ms", "extra"))
for _, cell in ipairs(C.list(args.cells)) do
  for _, H in ipairs(C.list(args.hidden, tonumber)) do
    for _, B in ipairs(C.list(args.batch, tonumber)) do
      bptt.manual_seed(1)
      local rnn = bptt.RNN{ cell = cell, input = H, hidden = H, layers = args.layers }
      local x, dy = bptt.randn(args.seq, B, H), bptt.randn(args.seq, B, H)
      local clock = args.cpu and os.clock or bptt.clock
      local function step(on)
        rnn:record_flow(on)
        local t0 = clock()
        rnn:zero_grad()
        rnn:forward(x)
        rnn:backward(dy)
        return clock() - t0
      end
      for _ = 1, args.warmup do step(false); step(true) end
      local off, on = {}, {}
      for i = 1, args.iters do off[i] = step(false); on[i] = step(true) end
      local a, b = C.median(off), C.median(on)
      print(string.format("%-5s %5d %4d %12.3f %12.3f %7.1f%%", cell, H, B, a * 1e3, b * 1e3, (b / a - 1) * 100))
    end
  end
end
