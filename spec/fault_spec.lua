-- Crashes: examples/charlm/train.lua killed with SIGKILL at random moments,
-- and right inside checkpoint writes, again and again.  After every kill the
-- newest complete checkpoint loads and `train.lua --resume` continues from
-- it; a half-written temporary is never taken for a checkpoint, and the next
-- run removes it.
--
-- BPTT_FAULT_ITERS (default 20) kills per loop; BPTT_FAULT_SEED fixes the
-- random delays; BPTT_FAULT_REPORT=1 prints how many kills landed mid-write.
local bptt = require "bptt"
local P = require "helpers.proc"
local U = require "helpers.tensor_util"

local ITERS = tonumber(os.getenv("BPTT_FAULT_ITERS") or "") or (U.light and 4 or 20)
local SEED = tonumber(os.getenv("BPTT_FAULT_SEED") or "") or os.time()
local REPORT = (os.getenv("BPTT_FAULT_REPORT") or "") ~= ""
local TRAIN = P.luajit .. " examples/charlm/train.lua"

-- names train.lua may leave in its --out directory
local function classify(name)
  if name == "checkpoint.safetensors" then return "checkpoint" end
  local pid = name:match("^checkpoint%.safetensors%.tmp%.(%d+)$")
    or name:match("^checkpoint%.safetensors%.tmp%.(%d+)%.%d+$")
  if pid then return "tmp", tonumber(pid) end
  if name == "train.lock" then return "lock" end
  if name == "log.csv" or name:match("^log%.csv%.tmp%.%d+$") or name == "loss.svg" or name:match("^loss%.svg%.tmp") then
    return "log"
  end
  return nil
end

local function all_finite(t)
  local s = t:sum()
  return s == s and s ~= math.huge and s ~= -math.huge
end

-- The checks after a kill; returns the checkpoint's iteration (or nil when
-- there is none yet) and whether the kill left a temporary behind.
local function check_after_kill(dir, h, state, what)
  local out = dir .. "/out"
  local tmps, has_ckpt = {}, false
  for _, name in ipairs(P.listdir(out)) do
    local kind, pid = classify(name)
    assert(kind, what .. ": unexpected file " .. name)
    if kind == "tmp" then tmps[#tmps + 1] = { name = name, pid = pid } end
    if kind == "checkpoint" then has_ckpt = true end
  end
  -- temporaries are those of killed runs (each run removes the older ones
  -- when it starts, unless it is killed before it gets there)
  local mid_write = false
  for _, tmp in ipairs(tmps) do
    assert(state.killed[tmp.pid], what .. ": " .. tmp.name .. " is not a killed run's")
    if tmp.pid == h.pid then
      mid_write = true
      -- a cut-off temporary does not load; a whole one may (killed before the rename)
      if not bptt.load(out .. "/" .. tmp.name) then state.partial = state.partial + 1 end
    end
  end
  if not has_ckpt then
    assert(state.iteration == nil, what .. ": the checkpoint is gone")
    return nil, mid_write
  end
  local path = out .. "/checkpoint.safetensors"
  local tensors, meta = bptt.load(path)
  assert(tensors, what .. ": the checkpoint does not load: " .. tostring(meta))
  local config, meta2 = bptt.Trainer.read_config(path)
  assert(config, what .. ": " .. tostring(meta2))
  local it = tonumber(meta.iteration)
  assert(it and it >= 1, what .. ": iteration " .. tostring(meta.iteration))
  assert(state.iteration == nil or it >= state.iteration,
    string.format("%s: the checkpoint went back from iteration %d to %d", what, state.iteration or 0, it))
  local names = {}
  for name, t in pairs(tensors) do
    names[#names + 1] = name
    if name:match("^model%.") then assert(all_finite(t), what .. ": " .. name .. " is not finite") end
  end
  table.sort(names)
  names = table.concat(names, " ")
  state.names = state.names or names
  assert.equal(state.names, names, what .. ": the checkpoint's tensors changed")
  return it, mid_write
end

-- Resumes from the checkpoint for two iterations, into a scratch directory
-- or (in_place) into the killed runs' own.
local function check_resume(dir, it, what, in_place)
  local out_dir = in_place and dir .. "/out" or dir .. "/resumed"
  local ok, out = P.run(string.format("%s --resume %s --max-iters %d --out %s --quiet --threads 1", TRAIN,
    P.quote(dir .. "/out/checkpoint.safetensors"), it + 2, P.quote(out_dir)))
  assert(ok, what .. ": resume failed:\n" .. out)
  assert(out:find("resumed from .* at iteration " .. it), what .. ":\n" .. out)
  assert(out:find("done: " .. (it + 2) .. " iterations", 1, true), what .. ":\n" .. out)
  if not in_place then os.execute("rm -rf " .. P.quote(out_dir)) end
end

-- The kill loop.  opts.args: the model; opts.delay(g): ms to wait after the
-- start; opts.aim: instead, wait for the run's temporary to appear, then
-- opts.delay(g) ms more.  Resumes each run from the checkpoint of the last.
local function kill_loop(dir, corpus, opts)
  local g, t_start = U.gen(SEED), bptt.clock()
  local state = { partial = 0, killed = {} }
  local stats = { kills = 0, mid_write = 0, before_first = 0 }
  local ckpt = dir .. "/out/checkpoint.safetensors"
  for k = 1, ITERS do
    local what = string.format("%s, kill %d (BPTT_FAULT_SEED=%d)", opts.name, k, SEED)
    local from = state.iteration and ("--resume " .. P.quote(ckpt))
      or ("--data " .. P.quote(corpus) .. " " .. opts.args)
    local log = dir .. "/train.log"
    local h = P.spawn(string.format("%s %s --max-iters 1000000 --out %s --quiet --threads 1", TRAIN, from,
      P.quote(dir .. "/out")), log)
    if opts.aim then
      -- the first run writes one checkpoint whole; then wait for a save to begin
      local tmp, t0 = ckpt .. ".tmp." .. h.pid, bptt.clock()
      while not P.size(ckpt) and h:running() and bptt.clock() - t0 < 20 do P.sleep_ms(0.5) end
      while not P.size(tmp) and h:running() and bptt.clock() - t0 < 20 do P.sleep_ms(0.2) end
    end
    -- until a first checkpoint exists, stretch the delays: on a loaded
    -- machine starting luajit and loading the data alone can take longer
    -- than the random delays, and every kill would land before any save
    P.sleep_ms(opts.delay(g) * (state.iteration and 1 or math.min(2 ^ stats.before_first, 32)))
    local running = h:running()
    state.killed[h.pid] = true
    local status = h:kill()
    if not running or status ~= 128 + 9 then
      local f = io.open(log)
      error(what .. ": the run ended by itself (status " .. tostring(status) .. "):\n" .. (f and f:read("*a") or ""))
    end
    stats.kills = stats.kills + 1
    local it, mid_write = check_after_kill(dir, h, state, what)
    if mid_write then stats.mid_write = stats.mid_write + 1 end
    if it then
      -- aimed: the next run resumes from it anyway and must get to a save
      if not opts.aim then check_resume(dir, it, what) end
      state.iteration = it
    else
      stats.before_first = stats.before_first + 1
    end
  end
  -- a last run in place finishes and leaves no temporary behind
  if state.iteration then
    check_resume(dir, state.iteration, opts.name .. ", the last resume", true)
    for _, name in ipairs(P.listdir(dir .. "/out")) do
      assert(classify(name) ~= "tmp", opts.name .. ": " .. name .. " was left behind")
    end
  end
  stats.partial = state.partial
  stats.iteration = state.iteration
  if REPORT then
    io.stderr:write(string.format("\n%s: %.1f s, %d kills, %d mid-write (%d left a cut-off temporary), "
      .. "%d before the first checkpoint; reached iteration %s\n", opts.name, bptt.clock() - t_start, stats.kills,
      stats.mid_write, stats.partial, stats.before_first, tostring(stats.iteration)))
  end
  return stats
end

describe("train.lua killed with SIGKILL", function()
  local dir, cleanup, corpus

  setup(function()
    dir, cleanup = P.tempdir()
    corpus = dir .. "/corpus.txt"
    local ok, out = P.run(P.luajit .. " examples/charlm/make_corpus.lua " .. P.quote(corpus) .. " 20")
    assert(ok, out)
  end)
  teardown(function() cleanup() end)
  before_each(function() os.execute("rm -rf " .. P.quote(dir .. "/out")) end)

  it("at random moments: the newest checkpoint always loads and resumes", function()
    local stats = kill_loop(dir, corpus, {
      name = "random kills",
      args = "--cell lstm --hidden 32 --layers 2 --batch 4 --seq 16 --eval-every 2 --eval-batches 1",
      delay = function(g) return g:int(60, 400) end,
    })
    assert.equal(ITERS, stats.kills)
    assert.is_true(stats.iteration ~= nil, "no checkpoint was ever written")
  end)

  it("inside checkpoint writes of a 0.5M-parameter model: the previous checkpoint survives", function()
    -- 2 MB of weights and 4 MB of Adam state: each save writes 6 MB
    local stats = kill_loop(dir, corpus, {
      name = "aimed kills",
      args = "--cell lstm --hidden 192 --layers 2 --batch 2 --seq 8 --eval-every 1 --eval-batches 1",
      aim = true,
      delay = function(g) return g:int(0, 3) == 0 and g:int(0, 40) or 0 end,
    })
    assert.equal(ITERS, stats.kills)
    assert.is_true(stats.mid_write >= 1, "no kill landed inside a write")
  end)
end)
