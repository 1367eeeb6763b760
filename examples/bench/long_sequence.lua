-- Memory-bounded BPTT over one long sequence: a training step (forward,
-- backward, Adam) of a 1-layer bptt.RNN with checkpoint = k (default
-- "sqrt": k = ceil(sqrt(T))), its peak resident memory against what full
-- BPTT would need, and -- at a T where full BPTT fits -- the time of both.
--
--   luajit examples/bench/long_sequence.lua                  -- LSTM H 256 B 8, T = 100,000
--   luajit examples/bench/long_sequence.lua --cell gru --seq 1000000 --hidden 64
--
-- Each measurement runs in a child process of its own (peak RSS = the
-- child's VmHWM).  The loss is sum(y * r) for a fixed random r (dy = r):
-- the step's cost is the layer's, not a decoder's.  float32, input = --input.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.path = "examples/bench/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local C = require "bench_common"
local argparse = require "argparse"

local parser = argparse("long_sequence.lua", "checkpointed BPTT over one long sequence: memory and time")
parser:option("--cell", "cell", "lstm")
parser:option("--hidden", "H", "256"):convert(tonumber)
parser:option("--input", "input size", "64"):convert(tonumber)
parser:option("--batch", "B", "8"):convert(tonumber)
parser:option("--seq", "T of the long run", "100000"):convert(tonumber)
parser:option("--checkpoint", 'k, or "sqrt"', "sqrt")
parser:option("--compare", "T at which full BPTT and checkpointing are timed side by side (0: skip)", "10000")
  :convert(tonumber)
parser:option("--threads", "threads", "2"):convert(tonumber)
parser:option("--child", "internal: run one measurement: T,k (k = 0: full BPTT)")
local args = parser:parse()

local function ck(s)
  if s == "sqrt" or s == "0" then return s == "sqrt" and s or nil end
  return tonumber(s)
end

if args.child then
  local T, k = args.child:match("^(%d+),(.+)$")
  T, k = tonumber(T), ck(k)
  bptt.set_num_threads(args.threads)
  bptt.manual_seed(1)
  local B, H, I = args.batch, args.hidden, args.input
  local rnn = bptt.RNN{ cell = args.cell, input = I, hidden = H, checkpoint = k }
  local opt = bptt.optim.adam(rnn, { lr = 1e-3 })
  local x, r = bptt.randn(T, B, I), bptt.randn(T, B, H)
  local base = C.status_kb("VmRSS") -- the inputs, the parameters and the library
  local t0 = bptt.clock()
  rnn:zero_grad()
  rnn:forward(x) -- the loss is sum(y * r): dy = r
  local t1 = bptt.clock()
  rnn:backward(r, nil, nil, { reuse_dy = true })
  local gnorm = bptt.clip_grad_norm(rnn, 1e9)
  opt:step()
  local t2 = bptt.clock()
  io.write(string.format("fwd=%.3f bwd=%.3f hwm_kb=%d base_kb=%d k=%d gnorm=%.9g\n", t1 - t0, t2 - t1,
    C.status_kb("VmHWM"), base, rnn:checkpoint_steps(T), gnorm))
  os.exit(0)
end

local function child(T, k)
  local cmd = string.format("luajit %s --child %d,%s --cell %s --hidden %d --input %d --batch %d --threads %d 2>&1",
    arg[0], T, tostring(k or 0), args.cell, args.hidden, args.input, args.batch, args.threads)
  -- (the child's loss is sum(y * r) for a fixed r: dy = r)
  local out = C.run(cmd)
  local kv = C.kv(out)
  assert(kv.hwm_kb, "child failed: " .. out)
  return kv
end

-- bytes that full BPTT keeps (c/core/rnn.h): y, cache, scratch, plus x, dy, dx, the parameters (x4 with Adam)
local function full_bytes(T)
  local B, H, I = args.batch, args.hidden, args.input
  local c, s = bptt.core.rnn_sizes(args.cell, T, B, I, H)
  local G = ({ tanh = 1, relu = 1, lstm = 4, gru = 3 })[args.cell]
  local params = G * H * (I + H + 2)
  return 4 * (T * B * H + c + s + T * B * I + T * B * H + T * B * I + 4 * params)
end

local MB = 2 ^ 20
print(string.format("bptt.RNN %s, 1 layer, H %d, input %d, B %d, float32, %d threads; a step: forward, backward, Adam",
  args.cell, args.hidden, args.input, args.batch, args.threads))
if args.compare > 0 then
  local T = args.compare
  local f, c = child(T, nil), child(T, ck(args.checkpoint))
  print(string.format("T = %d: full BPTT %.2f s (peak RSS %.0f MB), checkpoint k = %d %.2f s (%.0f MB): time x %.2f, "
    .. "gradient norm %s", T, f.fwd + f.bwd, f.hwm_kb / 1024, c.k, c.fwd + c.bwd, c.hwm_kb / 1024,
    (c.fwd + c.bwd) / (f.fwd + f.bwd), f.gnorm == c.gnorm and "the same" or string.format("%.9g vs %.9g", f.gnorm,
    c.gnorm)))
end
local T = args.seq
local c = child(T, ck(args.checkpoint))
print(string.format("T = %d: checkpoint k = %d: forward %.1f s, backward + Adam %.1f s, peak RSS %.0f MB "
  .. "(of which %.0f MB before the step: inputs, parameters, library); full BPTT would keep %.0f MB",
  T, c.k, c.fwd, c.bwd, c.hwm_kb / 1024, c.base_kb / 1024, full_bytes(T) / MB))
