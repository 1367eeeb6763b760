-- Char-LM training-step benchmark: bptt vs PyTorch (examples/bench/torch_step.py,
-- when Debian's python3-torch is installed), same configurations, same thread
-- count, same run.  One step is what a char-rnn training loop does per batch:
--
--   zero_grad; Embedding(65 -> 64) -> RNN (L x H) -> Linear(H -> 65);
--   CrossEntropy; backward; clip_grad_norm(5); Adam step
--
--   luajit examples/bench/step.lua                       -- the whole table (make bench)
--   luajit examples/bench/step.lua --cells lstm --configs 256x2 --threads 2
--   luajit examples/bench/step.lua --rounds 3            -- each figure the median of 3 rounds
--   luajit examples/bench/step.lua --torch-blas-env inherit --torch-malloc default
--                                  -- PyTorch as the README's earlier tables ran it
--
-- The setting of each side (the header of the table names it, with the
-- machine and the OpenBLAS kernel each side ran):
--   bptt     as a user's machine runs it: OPENBLAS_CORETYPE and
--            OPENBLAS_L2_SIZE removed from the environment when this machine
--            sets them (the script re-runs itself without them; --blas-env
--            inherit keeps them), so OpenBLAS picks its kernel for the CPU;
--   PyTorch  at its fastest honest setting (torch_rnn.py's start_torch):
--            the same two variables removed for its process only
--            (--torch-blas-env), the faster of 1 and --threads threads
--            (OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set before torch
--            loads, OMP_WAIT_POLICY=PASSIVE with more than one), and the
--            allocator --torch-malloc (the fastest one measured here; when
--            its library is not installed it falls back to glibc's and the
--            header says so).
-- Agreement: the bptt worker saves its initial weights and batch
-- (--no-check: not), PyTorch starts from them, and both sides report the
-- loss of their first and last step (the same --warmup + --iters steps of
-- Adam on one batch): the "loss agreement" column gives the relative
-- difference of each, a check that the two sides compute the same step
-- (float32 rounding: ~1e-7; both sides carry the state from step to step).
--
-- Columns: bptt and PyTorch tokens/s (T*B / median step time, --iters >= 10
-- timed steps after --warmup), their ratio, bptt's achieved GFLOP/s (the
-- FLOPs of the step's necessary GEMMs, below, over its step time), two
-- GEMM-only ceilings as % (the time those GEMMs take when each shape is
-- timed alone at the same thread count, over bptt's step time):
--   "% of SGEMM ceiling"   issue 5's: each shape at OpenBLAS's SGEMM speed,
--                          the faster of its own threads and the team's
--                          split of single-threaded OpenBLAS calls;
--   "% of kernel ceiling"  stricter: each shape at the speed of the fastest
--                          kernel bptt has for it -- also bptt.matmul with
--                          packed.h's AVX-512 kernel and, for the per-step
--                          GEMMs, that kernel against weights packed once,
--                          the packing not timed -- so it counts only what
--                          is not GEMM (elementwise passes, the loss, Adam,
--                          waits) against the step;
-- "% of FMA peak": bptt's GFLOP/s over the machine's float32 FMA peak at the
--                          same thread count, measured in this run
--                          (bptt.machine_peak: every thread of the team runs an
--                          FMA-throughput loop in the instruction set the
--                          kernels run, the best of a few runs), once, by the
--                          driver before the first configuration -- at
--                          --threads and, when the run also times bptt on 1
--                          thread, at 1 -- and printed in the header;
-- bptt's speed-up over itself on 1 thread (--threads > 1, H >= --scaling-from),
-- and the peak RSS of each side (each configuration runs in a process of its
-- own, so the peak is that configuration's).  PyTorch's figure is the faster
-- of its 1- and 2-thread settings when --threads is 2 (the issue's "faster of
-- PyTorch's thread settings").
--
-- The necessary GEMMs of one step, for a layer with G gate blocks, input size
-- D (64 for the first layer, H above), N = T*B rows, vocabulary V = 65:
--   forward   input projections       N x GH x D         once
--             recurrence              B x GH x H         T times (per step)
--   backward  dh_{t-1} = dG_t W_hh    B x H x GH         T-1 times
--             dW_ih += dG^T x         GH x D x N         once
--             dW_hh += dG^T h         GH x H x N         once
--             dx = dG W_ih            N x D x GH         once
--   decoder   logits, dW, dx          N x V x H, V x H x N, N x H x V
-- A GEMM M x N x K costs 2MNK FLOPs.  Embedding, cross-entropy, clipping and
-- Adam have no GEMM: their time, and the cells' elementwise work, is what
-- keeps the ratio below 100%.
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
local core = require "bptt.core"
local C = require "bench_common"
local argparse = require "argparse"

local p = argparse("step.lua",
  "Char-LM training step: bptt vs PyTorch, tokens/s, GFLOP/s, % of FMA peak, GEMM ceiling, peak RSS.")
p:option("--cells", "cells, comma separated", "lstm,gru,tanh")
p:option("--configs", "HxL[xBxT], comma separated (B, T default 32, 64)",
  "128x1,128x2,256x1,256x2,512x1x64x128,1024x1x64x128")
p:option("--threads", "thread count of both sides", "2"):convert(tonumber)
p:option("--iters", "timed steps (median)", "10"):convert(tonumber)
p:option("--warmup", "untimed steps first", "3"):convert(tonumber)
p:option("--rounds", "rounds of every measurement, interleaved; the median round is reported", "1"):convert(tonumber)
p:option("--scaling-from", "with --threads > 1, also time bptt on 1 thread from this H on", "256"):convert(tonumber)
p:option("--python", "python with torch", "/usr/bin/python3")
p:flag("--no-torch", "skip PyTorch")
p:option("--blas-env", "bptt's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
p:option("--torch-blas-env", "PyTorch's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
p:option("--torch-malloc", "PyTorch's allocator: default, keep, jemalloc, tcmalloc (torch_rnn.py)", "tcmalloc")
  :choices{ "default", "keep", "jemalloc", "tcmalloc" }
p:flag("--no-check", "skip the loss agreement check")
p:option("--worker", "internal: measure one configuration cell,H,L,B,T and print one line")
p:option("--check-file", "internal: with --worker, save the initial weights and batch there")
local args = p:parse()
C.clean_blas_env(args.blas_env == "inherit" or args.worker)

local V, E = C.VOCAB, C.EMBED

local timed, status_kb = C.timed, C.status_kb

local GATES = { lstm = 4, gru = 3, tanh = 1, relu = 1 }

-- The step's necessary GEMMs: {M, N, K, transa, transb, count}, as in the header.
local function gemm_list(cell, H, L, B, T)
  local N, GH, list = T * B, GATES[cell] * H, {}
  local function add(M, Nn, K, ta, tb, count) list[#list + 1] = { M, Nn, K, ta, tb, count, step = count > 1 } end
  for k = 1, L do
    local D = k == 1 and E or H
    add(N, GH, D, false, true, 1)      -- x W_ih^T
    add(B, GH, H, false, true, T)      -- h_{t-1} W_hh^T
    add(B, H, GH, false, false, T - 1) -- dG_t W_hh
    add(GH, D, N, true, false, 1)      -- dG^T x
    add(GH, H, N, true, false, 1)      -- dG^T h
    add(N, D, GH, false, false, 1)     -- dG W_ih
  end
  add(N, V, H, false, true, 1)
  add(V, H, N, true, false, 1)
  add(N, H, V, false, false, 1)
  return list
end

-- Returns the two ceilings' seconds (SGEMM, kernel) and the FLOPs.
local function gemm_ceiling(list, iters, threads)
  local sgemm_s, kernel_s, flops = 0, 0, 0
  local packed = core.packed_gemm()
  for _, g in ipairs(list) do
    local M, N, K, ta, tb, count = g[1], g[2], g[3], g[4], g[5], g[6]
    if count > 0 then
      local a = ta and bptt.randn(K, M):t() or bptt.randn(M, K)
      local b = tb and bptt.randn(N, K):t() or bptt.randn(K, N)
      local c = bptt.zeros(M, N)
      -- enough repetitions that one timing is well above the clock's resolution
      local reps = math.max(1, math.min(count, math.ceil(2e7 / (2 * M * N * K))))
      local function run() for _ = 1, reps do bptt.matmul(a, b, c) end end
      -- OpenBLAS's SGEMM: the team's split of single-threaded calls, and
      -- OpenBLAS's own threads
      if packed then core.packed_gemm(false) end
      local ts = timed(run, 2, iters) / reps
      if threads > 1 then
        bptt.set_num_threads(1)
        core.blas_set_num_threads(threads)
        ts = math.min(ts, timed(run, 2, iters) / reps)
        core.blas_set_num_threads(1)
        bptt.set_num_threads(threads)
      end
      if packed then core.packed_gemm(true) end
      -- the fastest kernel: bptt.matmul as it runs now (packed.h's kernel
      -- for the shapes it takes) and, for a per-step GEMM, the packed
      -- kernel as bptt runs it (packed_matmul's own timing of the products,
      -- its packing left out)
      local tk = ts
      if packed then
        tk = math.min(tk, timed(run, 2, iters) / reps)
        if g.step then
          local tp = {}
          for i = 1, 2 + iters do
            local _, sec = core.packed_matmul(a, b, c, reps)
            if i > 2 then tp[#tp + 1] = sec end
          end
          tk = math.min(tk, C.median(tp) / reps)
        end
      end
      sgemm_s = sgemm_s + ts * count
      kernel_s = kernel_s + tk * count
      flops = flops + 2 * M * N * K * count
    end
  end
  return sgemm_s, kernel_s, flops
end

local function worker(spec)
  local cell, H, L, B, T = spec:match("^(%a+),(%d+),(%d+),(%d+),(%d+)$")
  H, L, B, T = tonumber(H), tonumber(L), tonumber(B), tonumber(T)
  bptt.set_num_threads(args.threads)
  bptt.manual_seed(1)
  bptt.matmul(bptt.randn(64, 64), bptt.randn(64, 64)) -- OpenBLAS's buffers into the baseline
  collectgarbage()
  local base_kb = status_kb("VmRSS")
  local lm, step, data = C.charlm_step(cell, H, L, B, T)
  if args.check_file then
    local tensors = lm:state_dict()
    tensors.x, tensors.y = data.x, data.y
    assert(bptt.save(args.check_file, tensors))
  end
  -- timed(step, warmup, iters), keeping the first and last loss
  local losses, ts = {}, {}
  for _ = 1, args.warmup do losses[#losses + 1] = step() end
  for i = 1, args.iters do
    local t0 = bptt.clock()
    losses[#losses + 1] = step()
    ts[i] = bptt.clock() - t0
  end
  local sec = C.median(ts)
  local peak_kb = status_kb("VmHWM")
  local est = lm:memory_estimate(T, B)
  local sgemm_s, ceil_s, flops = gemm_ceiling(gemm_list(cell, H, L, B, T), args.iters, args.threads)
  io.write(string.format("tok_s=%.1f step_s=%.6f sgemm_s=%.6f ceil_s=%.6f flops=%.0f base_kb=%d peak_kb=%d est_b=%d "
    .. "loss1=%.9g lossN=%.9g\n", T * B / sec, sec, sgemm_s, ceil_s, flops, base_kb or 0, peak_kb or 0, est,
    losses[1], losses[#losses]))
end

if args.worker then
  worker(args.worker)
  os.exit(0)
end

--------------------------------------------------------------------------------
-- driver

local list, run, kv, q = C.list, C.run, C.kv, C.quote

local have_torch = not args.no_torch and os.execute(args.python .. " -c 'import torch' >/dev/null 2>&1") == 0
local luajit = arg[-1] or "luajit"

local torch_info -- the string fields of PyTorch's first result (version, kernel, malloc)

local function bench_torch(cell, H, L, B, T, threads, check_file)
  local cmd = string.format("%s %s/examples/bench/torch_step.py --cell %s --hidden %d --layers %d --batch %d "
    .. "--seq %d --threads %d --iters %d --warmup %d --malloc %s --blas-env %s%s 2>/dev/null", q(args.python),
    q(root), cell, H, L, B, T, threads, args.iters, args.warmup, args.torch_malloc, args.torch_blas_env,
    check_file and " --check " .. q(check_file) or "")
  local out = run(cmd)
  local r = kv(out)
  if not r.tok_s then return nil end
  r.threads = r.threads or threads
  torch_info = torch_info or C.kv_str(out)
  return r
end

local function fmt(v, f) return v and string.format(f, v) or "-" end

-- the round of median tokens/s (the lower middle one of an even count)
local function median_round(xs)
  if #xs == 0 then return nil end
  table.sort(xs, function(a, b) return a.tok_s < b.tok_s end)
  return xs[math.floor((#xs + 1) / 2)]
end

-- The FMA peak (see the header comment), measured before any configuration
-- runs, when the machine is as quiet as this run will have it.
local ISA_NAMES = { avx512 = "AVX-512", avx2 = "AVX2+FMA", generic = "plain C, no vector FMA" }
local peak, peak1 = nil, nil
if bptt.machine_peak then
  peak = bptt.machine_peak{ threads = args.threads, seconds = 0.5 }
  local scaling_any = false
  for _, c in ipairs(list(args.configs)) do
    if args.threads > 1 and (tonumber(c:match("^(%d+)")) or 0) >= args.scaling_from then scaling_any = true end
  end
  if scaling_any then peak1 = bptt.machine_peak{ threads = 1, seconds = 0.5 } end
end

print(string.format("Char-LM training step (Embedding %d->%d, RNN, Linear ->%d, CE, backward, clip 5, Adam), "
  .. "float32, %d thread(s); medians of %d steps%s", V, E, V, args.threads, args.iters,
  args.rounds > 1 and string.format(", the median of %d interleaved rounds", args.rounds) or ""))
print("Machine: " .. C.machine())
print(C.bptt_blas_line())
if peak then
  print(string.format("FMA peak (%s, measured now): %.0f GFLOP/s on %d thread%s%s", ISA_NAMES[bptt.cpu_config().isa]
    or bptt.cpu_config().isa, peak, args.threads, args.threads > 1 and "s" or "",
    peak1 and string.format(", %.0f on 1", peak1) or ""))
else
  print("FMA peak: not measured (this bptt has no bptt.machine_peak)")
end
print("| config | bptt tok/s | PyTorch tok/s (threads) | ratio | GFLOP/s | % of FMA peak | % of SGEMM ceiling "
  .. "| % of kernel ceiling | vs 1 thread | bptt peak RSS | PyTorch peak RSS | loss agreement |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
io.stdout:flush()
for _, cell in ipairs(list(args.cells)) do
  for _, c in ipairs(list(args.configs)) do
    local H, L, B, T = c:match("^(%d+)x(%d+)x?(%d*)x?(%d*)$")
    if not H then error("step.lua: --configs: bad item " .. c) end
    H, L, B, T = tonumber(H), tonumber(L), tonumber(B) or 32, tonumber(T) or 64
    local check_file = not args.no_check and have_torch and os.tmpname() or nil
    local function bptt_worker(threads, check)
      local r = kv(run(string.format("%s %s/examples/bench/step.lua --threads %d --iters %d --warmup %d "
        .. "--worker %s,%d,%d,%d,%d%s", q(luajit), q(root), threads, args.iters, args.warmup, cell, H, L, B, T,
        check and " --check-file " .. q(check) or "")))
      if not r.tok_s then error("step.lua: the bptt worker failed for " .. cell .. " " .. c) end
      return r
    end
    -- each measurement --rounds times, the sides interleaved (a busy spell
    -- of the machine then hits every side), the round of median tokens/s kept
    local rs, r1s, trs, t1s = {}, {}, {}, {}
    local scaling = args.threads > 1 and H >= args.scaling_from
    -- the loss agreement: the worst relative difference of the first and the
    -- last step's loss over every bptt run with the check file and every
    -- PyTorch run (all start from the same weights and batch)
    local agree = {}
    local function compare(a, b)
      for _, k in ipairs{ "loss1", "lossN" } do
        local d = C.rel(a[k], b[k])
        if d then agree[k] = math.max(agree[k] or 0, d) end
      end
    end
    for _ = 1, args.rounds do
      rs[#rs + 1] = bptt_worker(args.threads, check_file)
      if scaling then r1s[#r1s + 1] = bptt_worker(1) end
      if have_torch then
        trs[#trs + 1] = bench_torch(cell, H, L, B, T, args.threads, check_file)
        if args.threads > 1 then t1s[#t1s + 1] = bench_torch(cell, H, L, B, T, 1, check_file) end
      end
    end
    if check_file then
      for _, t in ipairs(trs) do compare(rs[1], t) end
      for _, t in ipairs(t1s) do compare(rs[1], t) end
      os.remove(check_file)
    end
    local r, r1 = median_round(rs), median_round(r1s)
    local tr, t1 = median_round(trs), median_round(t1s) -- (a failed PyTorch run adds nothing)
    if t1 and (not tr or t1.tok_s > tr.tok_s) then tr = t1 end
    local gflops = r.flops / r.step_s / 1e9
    print(string.format("| %s %dx%d B%d T%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", cell, H, L, B,
      T, fmt(r.tok_s, "%.0f"), tr and string.format("%.0f (%d)", tr.tok_s, tr.threads) or "-",
      tr and string.format("%.2fx", r.tok_s / tr.tok_s) or "-",
      fmt(gflops, "%.1f"), fmt(peak and 100 * gflops / peak, "%.0f%%"), fmt(100 * r.sgemm_s / r.step_s, "%.0f%%"),
      fmt(100 * r.ceil_s / r.step_s, "%.0f%%"),
      r1 and string.format("%.2fx", r.tok_s / r1.tok_s) or "-",
      fmt(r.peak_kb / 1024, "%.0f MB"), fmt(tr and tr.peak_kb and tr.peak_kb / 1024, "%.0f MB"),
      agree.loss1 and string.format("%.0e / %.0e", agree.loss1, agree.lossN) or "-"))
    io.stdout:flush()
  end
end
if have_torch then
  print(C.torch_line(torch_info) .. "; its figure is the faster of its 1- and " .. args.threads .. "-thread settings")
  print("loss agreement: the relative difference between bptt's and PyTorch's loss at the first / the last of "
    .. (args.warmup + args.iters) .. " Adam steps from the same weights and batch, the state carried from step to step "
    .. "(the worst over PyTorch's runs)")
end
if not have_torch then
  print(args.no_torch and "PyTorch: skipped (--no-torch)" or "PyTorch: not measured (python3-torch not importable)")
end
