-- GEMM kernel benchmark: the float32 products of the char-LM's backward pass
-- through OpenBLAS and through packed.h's AVX-512 kernel, GFLOP/s of each in
-- the same run, rounds interleaved (the median round is reported).
--
--   luajit examples/bench/gemm.lua                          -- every H, 2 threads
--   luajit examples/bench/gemm.lua --hs 256 --threads 1 --rounds 5
--
-- Both sides run as bptt.matmul runs them: the output split by rows over
-- the library's threads, each share a single-threaded call (gemm.h); the
-- "OpenBLAS" column with the packed kernel switched off
-- (bptt.core.packed_gemm(false)), so each share is OpenBLAS's cblas_sgemm;
-- the "bptt.matmul" column with it on, each share then going to the kernel
-- where gemm.c routes it (op(A) = A; op(A) = A^T at most 128 rows or
-- columns wide per share), else to OpenBLAS as well (a ratio near 1).
-- The shapes, for an LSTM (G = 4 gate blocks) of H units, the embedding
-- size D = 64 and K = T*B rows (T 64, B 32 by default):
--   dW_ih += dG^T x    GH x D x K    op(A) = A^T (dG is K x GH)
--   dW_hh += dG^T h    GH x H x K    op(A) = A^T
--   dW_dec += dY^T h   V x H x K     op(A) = A^T (the decoder, V = 65)
--   dx = dG W_ih       K x D x GH    op(A) = A (for comparison)
-- A GEMM M x N x K costs 2MNK FLOPs.
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

local p = argparse("gemm.lua", "GFLOP/s of OpenBLAS vs the packed AVX-512 kernel on the char-LM's backward GEMMs.")
p:option("--hs", "hidden sizes, comma separated", "128,256,512,1024")
p:option("--gates", "gate blocks G (4 lstm, 3 gru, 1 tanh)", "4"):convert(tonumber)
p:option("--rows", "K = T*B", "2048"):convert(tonumber)
p:option("--threads", "the library's threads", "2"):convert(tonumber)
p:option("--iters", "timed calls per figure (median)", "10"):convert(tonumber)
p:option("--rounds", "rounds, OpenBLAS and the kernel interleaved; the median round is reported", "3")
  :convert(tonumber)
p:option("--stat", "each figure from the calls' median or minimum time", "median"):choices{ "median", "min" }
p:option("--blas-env", "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
local args = p:parse()
C.clean_blas_env(args.blas_env == "inherit")

bptt.set_num_threads(args.threads)
if not core.packed_gemm() then
  print("the packed kernel cannot run here (no AVX-512F, or BPTT_ISA below avx512): OpenBLAS only")
  os.exit(0)
end
bptt.manual_seed(1)

local K, G, V, D = args.rows, args.gates, C.VOCAB, C.EMBED
local shapes = {}
for _, H in ipairs(C.list(args.hs, tonumber)) do
  local GH = G * H
  shapes[#shapes + 1] = { "dW_ih += dG^T x", GH, D, K, true }
  shapes[#shapes + 1] = { "dW_hh += dG^T h", GH, H, K, true }
  shapes[#shapes + 1] = { "dW_dec += dY^T h", V, H, K, true }
  shapes[#shapes + 1] = { "dx = dG W_ih", K, D, GH, false }
end

-- seconds of one product, the median of --iters
local function time_one(a, b, c, packed)
  core.packed_gemm(packed)
  local f = function() bptt.matmul(a, b, c) end
  local s
  if args.stat == "min" then
    f()
    s = math.huge
    for _ = 1, args.iters do
      local t0 = bptt.clock()
      f()
      s = math.min(s, bptt.clock() - t0)
    end
  else
    s = C.timed(f, 2, args.iters)
  end
  core.packed_gemm(true)
  return s
end

print(string.format("# %s", C.machine()))
print("# " .. C.bptt_blas_line())
print(string.format("# %d thread(s), K = T*B = %d, %s of %d calls, median of %d interleaved rounds; "
  .. "the machine may be shared: figures from one run compare, across runs they may not", args.threads, K,
  args.stat, args.iters, args.rounds))
print("| product | M x N x K | op(A) | OpenBLAS GFLOP/s | bptt.matmul (packed kernel where routed) GFLOP/s | ratio |")
print("|---|---|---|---:|---:|---:|")
local dedup = {}
for _, s in ipairs(shapes) do
  local name, M, N, Kk, ta = s[1], s[2], s[3], s[4], s[5]
  local key = table.concat({ M, N, Kk, tostring(ta) }, ",")
  if not dedup[key] then
    dedup[key] = true
    local a = ta and bptt.randn(Kk, M):t() or bptt.randn(M, Kk)
    local b, c = bptt.randn(Kk, N), bptt.zeros(M, N)
    local tb, tk = {}, {}
    for r = 1, args.rounds do
      if r % 2 == 1 then
        tb[r], tk[r] = time_one(a, b, c, false), time_one(a, b, c, true)
      else
        tk[r], tb[r] = time_one(a, b, c, true), time_one(a, b, c, false)
      end
    end
    local flops = 2 * M * N * Kk
    local gb, gk = flops / C.median(tb) / 1e9, flops / C.median(tk) / 1e9
    print(string.format("| %s | %d x %d x %d | %s | %.1f | %.1f | %.2f |", name, M, N, Kk, ta and "A^T" or "A",
      gb, gk, gk / gb))
  end
end
