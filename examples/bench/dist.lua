-- Data-parallel figures (bptt.dist over Open MPI), the README's "Scale-out":
--   luajit examples/bench/dist.lua [--ranks 1,2,4] [--hidden 256] [--batch 32] [--seq 64] [--steps 20]
-- runs, each under mpirun (one thread a rank):
--   1. all-reduce latency and bandwidth against message size on 2 ranks, and
--      the alpha-beta fit of the ring all-reduce, t(n) = 2(N-1) a + 2(N-1)/N n b;
--   2. the char-LM training step (LSTM, float32) at each rank count: step
--      time, tokens/s over all ranks, time waiting for the gradient
--      all-reduce and the share of it hidden behind backward;
--   3. a model of N nodes linked at 10/25/100 Gb/s: step time = compute +
--      the all-reduce of the gradient bytes not hidden, with the measured
--      compute time and a per-message latency a of 30 us (TCP over Ethernet).
-- Under mpirun it is one rank of a part: `dist.lua allreduce` or `dist.lua step`.
local dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = dir .. "/../../lua/?.lua;" .. dir .. "/../../lua/?/init.lua;" .. dir .. "/?.lua;" .. package.path
package.cpath = dir .. "/../../build/?.so;" .. package.cpath
local bptt = require "bptt"
local C = require "bench_common"

local MPIRUN = "mpirun --allow-run-as-root --oversubscribe"

local function opts(argv, from)
  local o = { ranks = "1,2,4", hidden = "256", batch = "32", seq = "64", steps = "20", layers = "2" }
  local i = from
  while argv[i] do
    local k = argv[i]:match("^%-%-(.+)$")
    assert(k and o[k] and argv[i + 1], "unknown option " .. tostring(argv[i]))
    o[k] = argv[i + 1]
    i = i + 2
  end
  return o
end

------------------------------------------------------------ the ranks' parts

local function part_allreduce()
  local dist = require "bptt.dist"
  local rank, N = dist.init()
  bptt.set_num_threads(1)
  local rows = {}
  local bytes = 8
  while bytes <= 16 * 2 ^ 20 do
    local t = bptt.zeros(bytes / 4, "float32")
    local reps = math.max(3, math.min(200, math.floor(2 ^ 22 / bytes)))
    for _ = 1, 3 do dist.allreduce(t) end
    local ts = {}
    for i = 1, reps do
      dist.barrier()
      local t0 = dist.wtime()
      dist.allreduce(t)
      ts[i] = dist.wtime() - t0
    end
    -- the slowest rank's median
    local m = bptt.tensor({ C.median(ts) }, "float64")
    dist.allreduce(m, "max")
    rows[#rows + 1] = string.format("n=%d t=%.9g", bytes, m:get(1))
    bytes = bytes * 4
  end
  if rank == 0 then print("ranks=" .. N .. " " .. table.concat(rows, " ")) end
  dist.finalize()
end

local function part_step(o)
  local dist = require "bptt.dist"
  local rank, N = dist.init()
  bptt.set_num_threads(1)
  bptt.manual_seed(1)
  local B, T, H, L = tonumber(o.batch), tonumber(o.seq), tonumber(o.hidden), tonumber(o.layers)
  -- random ids 1..V (uniform floats truncated)
  local tokens = bptt.zeros(N * B * T * (tonumber(o.steps) + 8) + 1):uniform(1, C.VOCAB + 0.999):to("int32")
  local lm = bptt.LanguageModel { vocab = C.VOCAB, embed = C.EMBED, cell = "lstm", hidden = H, layers = L }
  local opt = bptt.optim.adam(lm, { lr = 1e-3 })
  local batches = bptt.data.Batches(tokens, { batch = B, seq = T, shard = { rank, N } })
  local trainer = bptt.Trainer { model = lm, optimizer = opt, train = batches, clip = 5, dist = dist,
    check_every = 5 }
  for _ = 1, 3 do trainer:step() end
  dist.barrier()
  local steps = tonumber(o.steps)
  local w0, s0 = trainer.comm.wait, trainer.comm.steps
  local t0 = dist.wtime()
  for _ = 1, steps do trainer:step() end
  dist.barrier()
  local dt = (dist.wtime() - t0) / steps
  local wait = (trainer.comm.wait - w0) / math.max(1, trainer.comm.steps - s0)
  local blocking = trainer.comm.measured > 0 and trainer.comm.blocking / trainer.comm.measured or 0
  if rank == 0 then
    print(string.format("ranks=%d step=%.6g tok_s=%.1f wait=%.6g blocking=%.6g hidden=%.4g params=%d", N, dt,
      N * B * T / dt, wait, blocking, trainer.comm.hidden or 0, lm:num_parameters()))
  end
  dist.finalize()
end

if arg[1] == "allreduce" then return part_allreduce() end
if arg[1] == "step" then return part_step(opts(arg, 2)) end

------------------------------------------------------------ the driver

local o = opts(arg, 1)
local function kv(line)
  local t = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end
local function rank_run(N, part, extra)
  local cmd = string.format("%s -np %d luajit %s/dist.lua %s %s 2>&1", MPIRUN, N, dir, part, extra or "")
  local out = C.run(cmd)
  local line = out:match("(ranks=[^\n]*)")
  assert(line, "failed: " .. cmd .. "\n" .. out)
  return line
end

print(string.format("bptt.dist benchmark on %s, %d cores, Open MPI (%s)", C.run("uname -n"):gsub("%s+$", ""),
  tonumber((C.run("nproc"):gsub("%s+$", ""))), (C.run("mpirun --version 2>&1"):match("[%d.]+") or "?")))

-- 1. all-reduce
local ar = rank_run(2, "allreduce")
print("\nall-reduce of float32 on 2 ranks (in place, the slowest rank's median):")
print(string.format("%12s %12s %12s", "bytes", "time (us)", "GB/s (bus)"))
local pts = {}
for n, t in ar:gmatch("n=(%d+) t=(%S+)") do
  n, t = tonumber(n), tonumber(t)
  pts[#pts + 1] = { n, t }
  print(string.format("%12d %12.1f %12.3f", n, t * 1e6, n / t / 1e9)) -- 2(N-1)/N = 1 at N = 2
end
-- alpha from the smallest message, beta the median over messages of 128 KB
-- and more (N = 2: t = 2a + n b)
local alpha = pts[1][2] / 2
local bs = {}
for _, p in ipairs(pts) do if p[1] >= 2 ^ 17 then bs[#bs + 1] = (p[2] - 2 * alpha) / p[1] end end
local beta = C.median(bs)
print(string.format("fit: a = %.2f us per message step, b = %.3f ns per byte (%.2f GB/s)", alpha * 1e6, beta * 1e9,
  1 / beta / 1e9))

-- 2. the training step
print(string.format("\nchar-LM step, LSTM %dx%d, float32, batch %d per rank, seq %d, 1 thread a rank:",
  tonumber(o.layers), tonumber(o.hidden), tonumber(o.batch), tonumber(o.seq)))
print(string.format("%6s %12s %14s %14s %14s %8s", "ranks", "step (ms)", "tokens/s", "wait (ms)", "blocking (ms)",
  "hidden"))
local steps, params = {}, 0
for _, N in ipairs(C.list(o.ranks, tonumber)) do
  local r = kv(rank_run(N, "step", string.format("--hidden %s --batch %s --seq %s --steps %s --layers %s", o.hidden,
    o.batch, o.seq, o.steps, o.layers)))
  steps[N], params = r, r.params
  print(string.format("%6d %12.1f %14.0f %14.2f %14.2f %7.0f%%", N, r.step * 1e3, r.tok_s, r.wait * 1e3,
    r.blocking * 1e3, 100 * r.hidden))
end

-- 3. the model
local one = steps[1] or steps[next(steps)]
local compute = one.step - (one.wait or 0)
local G = params * 4
local tokens = tonumber(o.batch) * tonumber(o.seq)
local hidden = 0 -- conservative: the shares measured on an oversubscribed machine are mostly noise
print(string.format("\nmodel: N nodes of one such process each; compute %.1f ms a step (1 rank, measured); gradient "
  .. "%.2f MB; ring all-reduce t = 2(N-1) a + 2(N-1)/N G / link, a = 30 us; none of it hidden (conservative)",
  compute * 1e3, G / 2 ^ 20))
print(string.format("%6s %16s %16s %16s", "nodes", "10 Gb/s", "25 Gb/s", "100 Gb/s"))
for _, N in ipairs { 2, 4, 8, 16, 32, 64 } do
  local cols = {}
  for i, gbps in ipairs { 10, 25, 100 } do
    local t_ar = 2 * (N - 1) * 30e-6 + 2 * (N - 1) / N * G / (gbps * 1e9 / 8)
    local t = compute + (1 - hidden) * t_ar
    cols[i] = string.format("%9.0f (%3.0f%%)", N * tokens / t, 100 * compute / t)
  end
  print(string.format("%6d %16s %16s %16s", N, cols[1], cols[2], cols[3]))
end
print("(tokens/s over all nodes, and in parentheses the share of the step spent computing)")
