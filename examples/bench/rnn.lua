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
--
-- Settings as step.lua's: bptt without this machine's OPENBLAS_CORETYPE and
-- OPENBLAS_L2_SIZE (--blas-env inherit keeps them), PyTorch at its fastest
-- honest setting (the same variables removed for its process, --torch-malloc,
-- OMP_WAIT_POLICY=PASSIVE with 2 threads).  Agreement: PyTorch starts from
-- bptt's weights (a safetensors file; --no-check: not) and the "output
-- agreement" column is max |y - bptt's| / max |bptt's| of the forward pass.
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
parser:option("--blas-env", "bptt's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
parser:option("--torch-blas-env", "PyTorch's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: clean (removed) or inherit", "clean")
  :choices{ "clean", "inherit" }
parser:option("--torch-malloc", "PyTorch's allocator: default, keep, jemalloc, tcmalloc (torch_rnn.py)", "tcmalloc")
  :choices{ "default", "keep", "jemalloc", "tcmalloc" }
parser:flag("--no-check", "skip the output agreement check")
local args = parser:parse()
C.clean_blas_env(args.blas_env == "inherit")

local list = C.list

local function time_it(f) return C.timed(f, args.warmup, args.iters) end

local function bench_bptt(cell, H, threads, check_file)
  bptt.set_num_threads(threads)
  bptt.manual_seed(1)
  local T, B = args.seq, args.batch
  local rnn = bptt.RNN{cell = cell, input = H, hidden = H, layers = args.layers}
  local x, dy = bptt.randn(T, B, H), bptt.randn(T, B, H)
  if check_file then
    local tensors = rnn:state_dict()
    tensors.x, tensors.y = x, rnn:forward(x):clone()
    assert(bptt.save(check_file, tensors))
  end
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

local torch_info -- the string fields of PyTorch's first result (version, kernel, malloc)

local function bench_torch(cell, H, threads, check_file)
  if not have_torch then return nil end
  local q = C.quote
  local out = C.run(string.format("%s %s/examples/bench/torch_rnn.py --cell %s --layers %d --hidden %d --seq %d "
    .. "--batch %d --threads %d --iters %d --warmup %d --malloc %s --blas-env %s%s 2>/dev/null", q(args.python),
    q(root), cell, args.layers, H, args.seq, args.batch, threads, args.iters, args.warmup, args.torch_malloc,
    args.torch_blas_env, check_file and " --check " .. q(check_file) or ""))
  local f, fb = out:match('"fwd_tok_s":%s*([%d.e+-]+)'), out:match('"fwdbwd_tok_s":%s*([%d.e+-]+)')
  if not f then return nil end
  if not torch_info then
    torch_info = {}
    for k, v in out:gmatch('"([%w_]+)":%s*"([^"]*)"') do torch_info[k] = v end
  end
  return tonumber(f), tonumber(fb), tonumber(out:match('"check":%s*([%d.e+-]+)'))
end

local function fmt(v) return v and string.format("%9.0f", v) or "        -" end
local function ratio(a, b) return (a and b) and string.format("%5.2fx", a / b) or "    -" end

print(string.format("bptt.RNN benchmark: %d layers, T=%d, B=%d, float32, input = hidden; tokens/s, median of %d",
  args.layers, args.seq, args.batch, args.iters))
print("Machine: " .. C.machine())
print(C.bptt_blas_line())
local header = "| cell | H | threads | bptt fwd | torch fwd | ratio | bptt fwd+bwd | torch fwd+bwd | ratio "
  .. "| output agreement |"
print(header)
print("|---|---|---|---|---|---|---|---|---|---|")
io.stdout:flush()
for _, cell in ipairs(list(args.cells)) do
  for _, H in ipairs(list(args.hidden, tonumber)) do
    for _, th in ipairs(list(args.threads, tonumber)) do
      local check_file = have_torch and not args.no_check and os.tmpname() or nil
      local bf, bfb = bench_bptt(cell, H, th, check_file)
      local tf, tfb, chk = bench_torch(cell, H, th, check_file)
      if check_file then os.remove(check_file) end
      print(string.format("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |", cell, H, th, fmt(bf), fmt(tf),
        ratio(bf, tf), fmt(bfb), fmt(tfb), ratio(bfb, tfb), chk and string.format("%.0e", chk) or "-"))
      io.stdout:flush()
    end
  end
end
print(have_torch and C.torch_line(torch_info) or args.no_torch and "PyTorch: skipped (--no-torch)"
  or "PyTorch: not measured (python3-torch not importable)")
