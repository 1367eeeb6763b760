-- Sampling benchmark: tokens/s of generating text one token at a time (B = 1)
-- from a prime, bptt.LanguageModel:sample vs the same loop in PyTorch
-- (examples/bench/torch_sample.py, when Debian's python3-torch is installed),
-- same model shape, same thread count, same run.
--
--   luajit examples/bench/sample.lua                 -- 2-layer LSTM H=512, 1 and 2 threads
--   luajit examples/bench/sample.lua --cells lstm,gru --hidden 256,512 --threads 1
--
-- One run: feed a --prime-long random prime, then draw --tokens tokens with
-- temperature 1 (softmax, a multinomial draw, the token fed back).  tokens/s =
-- tokens / median time of --iters runs after one untimed run.  Vocabulary 65,
-- embedding 64, float32, random weights (the speed does not depend on them).
-- With B = 1 every layer's GEMMs are GEMVs: the time is reading the weights
-- (about 13 MB per token for LSTM 2 x 512), so it shows what a B = 1 path is
-- worth: bptt's kernels call GEMV there and split the units over its threads.
--
-- Settings as step.lua's: bptt without this machine's OPENBLAS_CORETYPE and
-- OPENBLAS_L2_SIZE (--blas-env inherit keeps them), PyTorch at its fastest
-- honest setting (the same variables removed for its process, --torch-malloc,
-- OMP_WAIT_POLICY=PASSIVE with 2 threads).  Agreement: PyTorch starts from
-- bptt's weights (a safetensors file bptt writes; --no-check: not) and the
-- "logits agreement" column is max |logits - bptt's| / max |bptt's| of the
-- logits after the prime.
--
-- The memory-bandwidth bound, per row: at B = 1 each token reads every weight
-- matrix once, so
--   "weight MB/token"  bytes of all layers' weight_ih and weight_hh and the
--                      decoder's weight (float32; biases and the embedding
--                      row, a few kB, left out), in 1e6 bytes;
--   "read GB/s"        bptt.read_bandwidth for a buffer of that size on the
--                      row's thread count, measured in this run just before
--                      bptt's timing: the team's threads each reading their
--                      share of it over and over (the cache level or memory
--                      that holds that many bytes), the best of a few runs;
--   "bound tok/s"      the most tokens per second any B = 1 loop that reads
--                      the weights once per token can draw here: a timed run's
--                      least bytes over read GB/s.  A run reads, besides every
--                      weight once for each token after the first (the first
--                      comes from the prime's logits), each layer's weight_hh
--                      once per prime step (its recursion), and each
--                      weight_ih and the decoder's weight once for the prime
--                      (its input projections can take all its steps at once);
--   "% of bound"       bptt's tok/s over that bound.
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

local p = argparse("sample.lua", "Sampling at B = 1: bptt vs PyTorch, tokens/s.")
p:option("--cells", "cells, comma separated", "lstm")
p:option("--hidden", "hidden sizes, comma separated", "512")
p:option("--layers", "stacked layers", "2"):convert(tonumber)
p:option("--threads", "thread counts, comma separated", "1,2")
p:option("--prime", "prime length", "50"):convert(tonumber)
p:option("--tokens", "tokens drawn per run", "200"):convert(tonumber)
p:option("--iters", "timed runs (median)", "10"):convert(tonumber)
p:option("--python", "python with torch", "/usr/bin/python3")
p:flag("--no-torch", "skip PyTorch")
p:option("--blas-env", "bptt's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
p:option("--torch-blas-env", "PyTorch's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
p:option("--torch-malloc", "PyTorch's allocator: default, keep, jemalloc, tcmalloc (torch_rnn.py)", "tcmalloc")
  :choices{ "default", "keep", "jemalloc", "tcmalloc" }
p:flag("--no-check", "skip the logits agreement check")
local args = p:parse()
C.clean_blas_env(args.blas_env == "inherit")

local V, E = C.VOCAB, C.EMBED

local list, median = C.list, C.median

-- bytes of the weight matrices one token reads, and of those a prime step
-- must read again (weight_hh: the recursion) (the header comment)
local function weight_bytes(lm)
  local n, hh = 0, 0
  for name, t in pairs(lm:state_dict()) do
    if name:match("weight_[ih]h") or name == "decoder.weight" then
      local b = t:numel() * (t:dtype() == "float64" and 8 or 4)
      n = n + b
      if name:match("weight_hh") then hh = hh + b end
    end
  end
  return n, hh
end

-- tok/s, the weight bytes per token, the least bytes a timed run reads, and
-- the read GB/s for the bytes of a token
local function bench_bptt(cell, H, threads, check_file)
  bptt.set_num_threads(threads)
  bptt.manual_seed(1)
  local lm = bptt.LanguageModel{ vocab = V, embed = E, cell = cell, hidden = H, layers = args.layers }
  local prime = {}
  for i = 1, args.prime do prime[i] = bptt.random(V) end
  if check_file then
    -- the weights, the prime and the logits after it, for PyTorch to compare
    local x = bptt.zeros(args.prime, 1, "int32")
    for i = 1, args.prime do x:set(i, 1, prime[i]) end
    local tensors = lm:state_dict()
    tensors.prime = x
    tensors.logits = lm:forward(x):select(1, args.prime):select(1, 1):clone()
    lm:reset_state()
    assert(bptt.save(check_file, tensors))
  end
  -- the read bandwidth for the weights' bytes, just before the timing
  local wb, hh = weight_bytes(lm)
  local run_bytes = (args.tokens - 1) * wb + args.prime * hh + (wb - hh)
  local gbs = bptt.read_bandwidth and bptt.read_bandwidth{ bytes = wb, threads = threads, seconds = 0.5 }
  local function run() lm:sample{ n = args.tokens, prime = prime, temperature = 1 } end
  run()
  local ts = {}
  for i = 1, args.iters do
    local t0 = bptt.clock()
    run()
    ts[i] = bptt.clock() - t0
  end
  return args.tokens / median(ts), wb, gbs, run_bytes
end

local have_torch = not args.no_torch and os.execute(args.python .. " -c 'import torch' >/dev/null 2>&1") == 0

local torch_info -- the string fields of PyTorch's first result (version, kernel, malloc)

local function bench_torch(cell, H, threads, check_file)
  if not have_torch then return nil end
  local q = C.quote
  local out = C.run(string.format("%s %s/examples/bench/torch_sample.py --cell %s --hidden %d --layers %d "
    .. "--threads %d --prime %d --tokens %d --iters %d --malloc %s --blas-env %s%s 2>/dev/null", q(args.python),
    q(root), cell, H, args.layers, threads, args.prime, args.tokens, args.iters, args.torch_malloc,
    args.torch_blas_env, check_file and " --check " .. q(check_file) or ""))
  local r = C.kv(out)
  if not r.tok_s then return nil end
  torch_info = torch_info or C.kv_str(out)
  return r
end

print(string.format("Sampling at B = 1 (prime %d, then %d tokens, temperature 1), %d layers, vocabulary %d, "
  .. "float32; tokens/s, median of %d runs", args.prime, args.tokens, args.layers, V, args.iters))
print("Machine: " .. C.machine())
print(C.bptt_blas_line())
print("| cell | H | threads | bptt tok/s | PyTorch tok/s | ratio | weight MB/token | read GB/s | bound tok/s "
  .. "| % of bound | logits agreement |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
io.stdout:flush()
for _, cell in ipairs(list(args.cells)) do
  for _, H in ipairs(list(args.hidden, tonumber)) do
    for _, th in ipairs(list(args.threads, tonumber)) do
      local check_file = have_torch and not args.no_check and os.tmpname() or nil
      local b, wb, gbs, run_bytes = bench_bptt(cell, H, th, check_file)
      local t = bench_torch(cell, H, th, check_file)
      if check_file then os.remove(check_file) end
      local bound = gbs and args.tokens * gbs * 1e9 / run_bytes
      print(string.format("| %s | %d | %d | %.0f | %s | %s | %.2f | %s | %s | %s | %s |", cell, H, th, b,
        t and string.format("%.0f", t.tok_s) or "-", t and string.format("%.2fx", b / t.tok_s) or "-", wb / 1e6,
        gbs and string.format("%.0f", gbs) or "-", bound and string.format("%.0f", bound) or "-",
        bound and string.format("%.0f%%", 100 * b / bound) or "-",
        t and t.check and string.format("%.0e", t.check) or "-"))
      io.stdout:flush()
    end
  end
end
if not bptt.read_bandwidth then print("read GB/s: not measured (this bptt has no bptt.read_bandwidth)") end
print(have_torch and C.torch_line(torch_info) or args.no_torch and "PyTorch: skipped (--no-torch)"
  or "PyTorch: not measured (python3-torch not importable)")
