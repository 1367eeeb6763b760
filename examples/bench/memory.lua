-- Char-LM training-step memory: the peak resident memory of one training step
-- (examples/bench/step.lua's loop: zero_grad; Embedding(65 -> 64) -> RNN ->
-- Linear(H -> 65); CrossEntropy; backward; clip_grad_norm(5); Adam step)
-- next to the analytic minimum (LanguageModel:memory_minimum, whose formula
-- is written out in lua/bptt/LanguageModel.lua) and the model's own estimate
-- (LanguageModel:memory_estimate).
--
--   luajit examples/bench/memory.lua                      -- the whole table
--   luajit examples/bench/memory.lua --cells lstm --configs 256x2
--   luajit examples/bench/memory.lua --iters 10000        -- no growth over 10,000 steps
--
-- Each configuration runs in a process of its own.  The child loads bptt,
-- runs one small matmul and a training step of a tiny model (the thread
-- team, the code pages), collects garbage, takes its resident size
-- as the baseline and resets the peak (clear_refs 5); then it builds the
-- model and runs --steps training steps.  "measured" is the peak (VmHWM)
-- minus the baseline minus the pages of OpenBLAS's work buffers touched
-- meanwhile: the model, the optimizer, every buffer, the Lua objects made
-- on the way and what the allocator keeps back.  OpenBLAS maps its buffers
-- (tens of MB per thread) when it loads and its packing touches their pages
-- as the GEMMs grow, up to a few MB per thread whatever the model; they are
-- the BLAS's, not the step's, and are shown apart (found in /proc/self/smaps
-- as the anonymous mappings of 16 MB or more, less than half resident).
-- MB are 2^20 bytes.
--
-- --iters N (the issue's "no growth over 10,000 iterations") runs N steps of
-- one small model (--growth, default lstm H=64 L=2 B=16 T=32) and prints the
-- resident size and the Lua heap (as the collector left it, then after a
-- full collection) at steps 100, 1000, 5000 and N.
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

local p = argparse("memory.lua", "Char-LM training step: peak memory vs the analytic minimum; growth over many steps.")
p:option("--cells", "cells, comma separated", "lstm,gru,tanh")
p:option("--configs", "HxL[xBxT], comma separated (B, T default 32, 64)",
  "128x1,128x2,256x1,256x2,512x1x64x128,1024x1x64x128")
p:option("--threads", "thread count", "2"):convert(tonumber)
p:option("--steps", "training steps per configuration", "3"):convert(tonumber)
p:option("--iters", "instead of the table: run this many steps of one model and show the growth"):convert(tonumber)
p:option("--growth", "the --iters model: cell,H,L,B,T", "lstm,64,2,16,32")
p:option("--worker", "internal: measure one configuration cell,H,L,B,T and print one line")
local args = p:parse()

local V, E = C.VOCAB, C.EMBED

local status_kb = C.status_kb

-- Resets VmHWM to the current resident size (Linux >= 4.0); false if it cannot.
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  f:close()
  return ok ~= nil
end

-- OpenBLAS's work buffers: the anonymous mappings of 16 MB or more that are
-- less than half resident (it maps tens of MB per thread and its packing
-- touches a few; a tensor that large is written whole), range -> resident kB.
local function blas_buffers()
  local out = {}
  local f = io.open("/proc/self/smaps")
  if not f then return out end
  local range, anon, size
  for line in f:lines() do
    local r, rest = line:match("^(%x+%-%x+) (.*)$")
    if r then
      range, anon, size = r, rest:match("^%S+ %x+ %S+ 0%s*$") ~= nil, nil
    else
      size = tonumber(line:match("^Size:%s*(%d+) kB")) or size
      local rss = tonumber(line:match("^Rss:%s*(%d+) kB"))
      if rss and anon and size and size >= 16384 and rss < size / 2 then out[range] = rss end
    end
  end
  f:close()
  return out
end

-- Gives the allocator's free pages back (glibc's malloc_trim), so that the
-- baseline holds no freed memory the model would then reuse unseen.
local function trim()
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int malloc_trim(size_t pad);")
    pcall(function() return ffi.C.malloc_trim(0) end)
  end
end

local function parse_spec(spec)
  local cell, H, L, B, T = spec:match("^(%a+),(%d+),(%d+),(%d+),(%d+)$")
  if not cell then error("memory.lua: expected cell,H,L,B,T, got " .. spec) end
  return cell, tonumber(H), tonumber(L), tonumber(B), tonumber(T)
end

local setup = C.charlm_step

-- What the process holds before the model: OpenBLAS's buffers, the thread
-- team (started by a layer of 64 units or more), the code of a step.  The
-- objects are returned, to be kept: freed, their memory would be resident
-- in the baseline and then reused by the model, which would not count it.
local function baseline(cell)
  local a, b = bptt.randn(64, 64), bptt.randn(64, 64)
  local lm, step = setup(cell, 64, 1, 2, 3)
  step()
  return { a, b, bptt.matmul(a, b), lm, step }
end

local function worker(spec)
  local cell, H, L, B, T = parse_spec(spec)
  bptt.set_num_threads(args.threads)
  bptt.manual_seed(1)
  local keep = baseline(cell)
  collectgarbage()
  collectgarbage()
  trim()
  local base_kb = status_kb("VmRSS")
  local blas0 = blas_buffers()
  local reset = reset_peak()
  local heap0 = collectgarbage("count")
  local lm, step = setup(cell, H, L, B, T)
  for _ = 1, args.steps do step() end
  local peak_kb = status_kb("VmHWM")
  -- the pages of OpenBLAS's buffers touched since (never given back, so they
  -- are in the peak)
  local blas_kb = 0
  for range, rss in pairs(blas_buffers()) do blas_kb = blas_kb + math.max(0, rss - (blas0[range] or 0)) end
  io.write(string.format("base_kb=%d peak_kb=%d blas_kb=%d reset=%d heap_kb=%.0f params=%d min_b=%d est_b=%d\n",
    base_kb or 0, peak_kb or 0, blas_kb, reset and 1 or 0, collectgarbage("count") - heap0, lm:num_parameters(),
    lm:memory_minimum(T, B), lm:memory_estimate(T, B)))
  return keep
end

local function growth(spec, iters)
  local cell, H, L, B, T = parse_spec(spec)
  bptt.set_num_threads(args.threads)
  bptt.manual_seed(1)
  local _, step = setup(cell, H, L, B, T)
  print(string.format("%d training steps of %s H=%d L=%d B=%d T=%d, %d thread(s)", iters, cell, H, L, B, T,
    args.threads))
  print("| step | RSS (kB) | Lua heap (kB) | Lua heap after a full collection (kB) |")
  print("|---|---|---|---|")
  local marks = { [100] = true, [1000] = true, [5000] = true, [iters] = true }
  for i = 1, iters do
    step()
    if marks[i] then
      local rss, heap = status_kb("VmRSS") or 0, collectgarbage("count")
      collectgarbage()
      print(string.format("| %d | %d | %.0f | %.0f |", i, rss, heap, collectgarbage("count")))
      io.stdout:flush()
    end
  end
end

if args.worker then
  worker(args.worker)
  os.exit(0)
end
if args.iters then
  growth(args.growth, args.iters)
  os.exit(0)
end

--------------------------------------------------------------------------------
-- driver

local list, kv = C.list, C.kv

local luajit = arg[-1] or "luajit"
local MB = 2 ^ 20

print(string.format("Char-LM training step memory (Embedding %d->%d, RNN, Linear ->%d, CE, clip, Adam), float32, "
  .. "%d thread(s), peak over %d steps", V, E, V, args.threads, args.steps))
print("| config | parameters | measured | minimum | estimate | measured / minimum | (OpenBLAS buffers, not counted) |")
print("|---|---|---|---|---|---|---|")
for _, cell in ipairs(list(args.cells)) do
  for _, c in ipairs(list(args.configs)) do
    local H, L, B, T = c:match("^(%d+)x(%d+)x?(%d*)x?(%d*)$")
    if not H then error("memory.lua: --configs: bad item " .. c) end
    H, L, B, T = tonumber(H), tonumber(L), tonumber(B) or 32, tonumber(T) or 64
    local f = io.popen(string.format("%s %s/examples/bench/memory.lua --threads %d --steps %d --worker %s,%d,%d,%d,%d",
      luajit, root, args.threads, args.steps, cell, H, L, B, T))
    local r = kv(f:read("*a"))
    f:close()
    if not r.peak_kb then error("memory.lua: the worker failed for " .. cell .. " " .. c) end
    if r.reset == 0 then io.stderr:write("memory.lua: cannot reset the peak (clear_refs); the peak may be early\n") end
    local used = (r.peak_kb - r.base_kb - r.blas_kb) * 1024
    print(string.format("| %s %dx%d B%d T%d | %d | %.2f MB | %.2f MB | %.2f MB | %.3f | %.2f MB |", cell, H, L, B, T,
      r.params, used / MB, r.min_b / MB, r.est_b / MB, used / r.min_b, r.blas_kb / 1024))
    io.stdout:flush()
  end
end
