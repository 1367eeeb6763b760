-- A rank of spec/dist_spec.lua, run by mpirun:
--   mpirun -np N luajit spec/helpers/dist_child.lua MODE OUT [args...]
-- MODE says what to do; results go to OUT (rank 0 writes it, or every rank
-- OUT.<rank>) for the spec to read; any failure is an error (exit 1).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local bptt = require "bptt"
local data = require "bptt.data"
local dist = require "bptt.dist"

local mode, out = arg[1], arg[2]
bptt.set_num_threads(1)
local rank, size = dist.init()

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

local function check(cond, msg)
  if not cond then error(string.format("rank %d: %s", rank, msg), 2) end
end

local modes = {}

-- every call of the API, with the values every rank can predict
function modes.calls()
  local r2, n2 = dist.init() -- idempotent
  check(r2 == rank and n2 == size and dist.rank() == rank and dist.size() == size, "init/rank/size")
  check(dist.initialized(), "initialized")
  dist.barrier()
  local lines = {}
  for _, dt in ipairs { "float32", "float64", "int32" } do
    local t = bptt.tensor({ rank + 1, -(rank + 1), 2 * rank }, dt)
    dist.allreduce(t) -- sum
    local s = size * (size + 1) / 2
    check(t:get(1) == s and t:get(2) == -s and t:get(3) == size * (size - 1), dt .. " sum")
    t = bptt.tensor({ rank + 1, 7 - rank }, dt)
    dist.allreduce(t, "max")
    check(t:get(1) == size and t:get(2) == 7, dt .. " max")
    if dt ~= "int32" then
      t = bptt.tensor({ rank + 1, 3 }, dt)
      dist.allreduce(t, "mean")
      check(t:get(1) == (size + 1) / 2 and t:get(2) == 3, dt .. " mean")
    end
    -- a 2-d tensor and a contiguous view into a larger one
    local big = bptt.zeros(4, 3, dt)
    big:fill(rank)
    dist.allreduce(big:narrow(1, 2, 2))
    check(big:get(1, 1) == rank and big:get(2, 1) == size * (size - 1) / 2 and big:get(4, 3) == rank, dt .. " view")
    for root = 0, size - 1 do
      t = bptt.tensor({ rank * 10 + 1, rank * 10 + 2 }, dt)
      dist.broadcast(t, root)
      check(t:get(1) == root * 10 + 1 and t:get(2) == root * 10 + 2, dt .. " broadcast from " .. root)
    end
    lines[#lines + 1] = dt .. " ok"
  end
  -- non-blocking
  local t = bptt.tensor({ rank, 1 }, "float64")
  local req = dist.iallreduce(t, "mean")
  req:wait()
  req:wait() -- twice is fine
  check(t:get(1) == (size - 1) / 2 and t:get(2) == 1 and req:test() == true, "iallreduce")
  -- strings and checksums
  local all = dist.allgather("r" .. rank)
  check(#all == size and all[size] == "r" .. (size - 1), "allgather")
  check(dist.first_difference("same") == nil, "first_difference")
  local g = rank == 0 and bptt.zeros(size * 2, "int32") or nil
  dist.gather(bptt.tensor({ rank, -rank }, "int32"), g, 0)
  if rank == 0 then check(g:get(2 * size - 1) == size - 1 and g:get(2 * size) == 1 - size, "gather") end
  -- the errors, on every rank
  local function fails(pat, f, ...)
    local ok, err = pcall(f, ...)
    check(not ok and tostring(err):find(pat, 1, true), "expected an error with " .. pat .. ", got " .. tostring(err))
  end
  fails("t must be contiguous", dist.allreduce, bptt.zeros(3, 4):t())
  fails("t must be contiguous", dist.broadcast, bptt.zeros(3, 4):t(), 0)
  fails('op "mean" needs a float32 or float64', dist.allreduce, bptt.zeros(2, "int32"), "mean")
  fails('op must be "sum", "mean" or "max"', dist.allreduce, bptt.zeros(2), "min")
  fails("t must be a tensor", dist.allreduce, { 1, 2 })
  fails("root must be in 0.." .. (size - 1), dist.broadcast, bptt.zeros(2), size)
  lines[#lines + 1] = "size " .. size
  if rank == 0 then write(out, table.concat(lines, "\n") .. "\n") end
  dist.finalize()
  dist.finalize() -- twice is fine
  check(not dist.initialized(), "finalized")
  local ok, err = pcall(dist.init)
  check(not ok and tostring(err):find("cannot start again", 1, true), "init after finalize")
end

-- A tiny language model, trained by a Trainer with the given batches.
local function text()
  local s = {}
  for i = 1, 60 do s[i] = string.format("line %d: the quick brown fox %s. ", i, i % 3 == 0 and "sleeps" or "jumps") end
  return table.concat(s)
end

local function trainer_for(cell, B, shard, with_dist, extra)
  local corpus = data.text { text = text() }
  bptt.manual_seed(7)
  extra = extra or {}
  local lm = bptt.LanguageModel { vocab = corpus.vocab:size(), embed = 6, cell = cell, hidden = extra.hidden or 10,
    layers = 2, dropout = extra.dropout or 0, dtype = extra.dtype or "float64" }
  local opt = bptt.optim.adam(lm, { lr = 1e-2 })
  local train, val = data.split(corpus.tokens, 0.8)
  local tb = data.Batches(train, { batch = B, seq = 8, shard = shard })
  local vb = data.Batches(val, { batch = B, seq = 8, shard = shard })
  return bptt.Trainer { model = lm, optimizer = opt, train = tb, val = vb, clip = 0.5,
    dist = with_dist and dist or nil, check_every = with_dist and 10 or nil }, lm
end

-- equivalence: N ranks with batch B each against one process (rank 0, apart
-- from MPI) with batch N*B; then identical bits across ranks after 100 steps.
-- args: cell [dropout [dtype]]
function modes.equiv()
  local cell, B = arg[3], 2
  local extra = { dropout = tonumber(arg[4] or "0"), dtype = arg[5] or "float64" }
  local t, lm = trainer_for(cell, B, { rank, size }, true, extra)
  local losses = {}
  for i = 1, 10 do losses[i] = t:step() end
  local vl = t:evaluate()
  local mine = lm:flat_parameters():clone()
  local lines = {}
  if rank == 0 then
    local ref, reflm = trainer_for(cell, B * size, nil, false, extra)
    local worst = 0
    for i = 1, 10 do worst = math.max(worst, math.abs(ref:step() - losses[i])) end
    local rp = reflm:flat_parameters()
    local diff = mine - rp
    local d = math.max(diff:max(), -diff:min()) -- max |difference|
    lines[#lines + 1] = string.format("params %.3e", d)
    lines[#lines + 1] = string.format("loss %.3e", worst)
    lines[#lines + 1] = string.format("val %.3e", math.abs(ref:evaluate() - vl))
  end
  for _ = 11, 100 do t:step() end
  local sums = dist.allgather(string.format("%.0f", dist.checksum(lm:flat_parameters())))
  local same = true
  for r = 2, #sums do same = same and sums[r] == sums[1] end
  lines[#lines + 1] = "identical " .. tostring(same)
  lines[#lines + 1] = string.format("hidden %.3f", t.comm.hidden or -1)
  if rank == 0 then write(out, table.concat(lines, "\n") .. "\n") end
  dist.finalize()
end

-- exact resume across ranks: 3 steps, save, 3 more, against a new trainer
-- that loads the checkpoint and takes the same 3
function modes.resume()
  local ckpt = out .. ".ckpt"
  local t, lm = trainer_for("lstm", 2, { rank, size }, true)
  for _ = 1, 3 do t:step() end
  assert(t:save(ckpt))
  for _ = 1, 3 do t:step() end
  local a = lm:flat_parameters():clone()
  local t2, lm2 = trainer_for("lstm", 2, { rank, size }, true)
  assert(t2:load(ckpt))
  for _ = 1, 3 do t2:step() end
  local b = lm2:flat_parameters()
  local same = dist.checksum(a) == dist.checksum(b)
  local all = dist.allgather(tostring(same))
  if rank == 0 then write(out, "resume " .. table.concat(all, " ") .. "\n") end
  dist.finalize()
end

-- every rank builds its trainer; rank 1's model differs
function modes.mismatch()
  local ok, err = pcall(trainer_for, "gru", 2, { rank, size }, true, rank == 1 and { hidden = 12 } or nil)
  write(out .. "." .. rank, tostring(ok) .. " " .. tostring(err) .. "\n")
  dist.finalize()
end

-- rank 1 dies (SIGKILL, or a Lua error) while rank 0 waits in all-reduces
function modes.die()
  local how = arg[3]
  local t = bptt.zeros(16)
  dist.barrier()
  if rank == 1 then
    if how == "kill" then
      local ffi = require "ffi"
      pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")
      ffi.C.kill(ffi.C.getpid(), 9)
    else
      error("rank 1 fails on purpose")
    end
  end
  for _ = 1, 1e9 do dist.allreduce(t) end -- never ends by itself
end

assert(modes[mode], "unknown mode " .. tostring(mode))()
