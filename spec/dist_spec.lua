-- bptt.dist and data-parallel training (bptt.Trainer{..., dist = }): every
-- call on 1 to 4 ranks, N ranks with batch B against one process with batch
-- N*B (LSTM and GRU, float64, to 1e-12), identical weights on every rank
-- after 100 steps, exact resume, a configuration that differs between ranks,
-- and a rank that dies.  The ranks are spec/helpers/dist_child.lua run by
-- mpirun (as root it needs --allow-run-as-root, on few cores --oversubscribe);
-- without mpirun or the module those parts are pending.
local bptt = require "bptt"
local data = require "bptt.data"
local P = require "helpers.proc"

local function which(cmd) return P.run("command -v " .. cmd .. " >/dev/null") end
local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local HAVE_MPIRUN = which("mpirun")
-- the module under test: the build's, or an installed rock's (make rock-check)
local HAVE_MODULE = package.searchpath("bptt.dist_core", package.cpath) ~= nil
local WHY = not HAVE_MPIRUN and "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
  or not HAVE_MODULE and "bptt/dist_core.so was not built (Open MPI's headers were missing at make time)"
local MPIRUN = "mpirun --allow-run-as-root --oversubscribe"

describe("bptt.data.Batches shard", function()
  it("gives rank r the streams r*B+1..(r+1)*B of one process with batch N*B, in every batch", function()
    local t = bptt.zeros(700, "int32")
    for i = 1, 700 do t:set(i, i) end
    for _, N in ipairs { 1, 2, 3 } do
      local full = data.Batches(t, { batch = 2 * N, seq = 5 })
      local parts = {}
      for r = 0, N - 1 do parts[r] = data.Batches(t, { batch = 2, seq = 5, shard = { r, N } }) end
      assert.are.equal(full:count(), parts[0]:count())
      for _ = 1, full:count() + 2 do -- into the second epoch
        local x, y, reset = full:next()
        for r = 0, N - 1 do
          local xs, ys, rs = parts[r]:next()
          assert.are.equal(reset, rs)
          for s = 1, 5 do
            for b = 1, 2 do
              assert.are.equal(x:get(s, r * 2 + b), xs:get(s, b))
              assert.are.equal(y:get(s, r * 2 + b), ys:get(s, b))
            end
          end
        end
      end
    end
  end)

  it("records the number of shards, and refuses a state of another number", function()
    local t = bptt.zeros(500, "int32")
    local a = data.Batches(t, { batch = 2, seq = 4, shard = { 1, 3 } })
    a:next()
    assert.truthy(a:state():find(" shards=3$"))
    local b = data.Batches(t, { batch = 2, seq = 4, shard = { 0, 3 } })
    b:set_state(a:state()) -- every rank's position is the same
    assert.are.same({ a:position() }, { b:position() })
    local c = data.Batches(t, { batch = 2, seq = 4, shard = { 0, 2 } })
    assert.has_error(function() c:set_state(a:state()) end,
      "bptt.data.Batches:set_state: the state is of batches with shards (ranks) = 3, these have shards (ranks) = 2")
    local d = data.Batches(t, { batch = 2, seq = 4 })
    assert.has_error(function() d:set_state(a:state()) end)
  end)

  it("checks shard", function()
    local t = bptt.zeros(500, "int32")
    assert.has_error(function() data.Batches(t, { batch = 2, seq = 4, shard = 1 }) end,
      "bptt.data.Batches: shard must be {rank, size}, got number")
    assert.has_error(function() data.Batches(t, { batch = 2, seq = 4, shard = { 2, 2 } }) end,
      "bptt.data.Batches: shard rank must be in 0..1 (size 2), got 2")
    assert.has_error(function() data.Batches(t, { batch = 2, seq = 4, shard = { 0, 0 } }) end)
    assert.has_error(function() data.Batches(t, { batch = 50, seq = 4, shard = { 0, 3 } }) end,
      "bptt.data.Batches: 500 tokens are too few for one batch of 150 streams x 4 steps (need at least "
      .. "batch*seq + 1 = 601)")
  end)
end)

describe("require \"bptt.dist\" without MPI", function()
  it("is an error saying what to install, not a crash", function()
    local dir, cleanup = P.tempdir()
    -- a module path with the core but no dist_core
    local core = assert(package.searchpath("bptt.core", package.cpath))
    if core:sub(1, 1) ~= "/" then core = assert(io.popen("pwd")):read("*l") .. "/" .. core end
    assert(P.run("mkdir -p " .. dir .. "/bptt && ln -s " .. P.quote(core) .. " " .. dir .. "/bptt/core.so"))
    local ok, out = P.run(string.format("LUA_PATH=%s LUA_CPATH='%s/?.so' %s -e 'require \"bptt.dist\"'",
      P.quote(package.path), dir, P.luajit))
    cleanup()
    assert.is_false(ok)
    assert.truthy(out:find("bptt.dist: bptt was built without Open MPI", 1, true), out)
    assert.truthy(out:find("apt-get install libopenmpi-dev openmpi-bin", 1, true), out)
  end)
end)

describe("bptt.dist under mpirun", function()
  local dir, cleanup
  setup(function() dir, cleanup = P.tempdir() end)
  teardown(function() cleanup() end)

  -- runs N ranks of the child; a hang fails (timeout) instead of hanging
  local function ranks(N, args, env)
    return P.run(string.format("%s timeout 120 %s -np %d %s spec/helpers/dist_child.lua %s", env or "", MPIRUN, N,
      P.luajit, args))
  end

  for _, N in ipairs { 1, 2, 3, 4 } do
    it("runs every call on " .. N .. " rank(s)", function()
      if WHY then return pending(WHY) end
      local out = dir .. "/calls" .. N
      local ok, log = ranks(N, "calls " .. out)
      assert(ok, log)
      assert.are.equal("float32 ok\nfloat64 ok\nint32 ok\nsize " .. N .. "\n", read(out))
    end)
  end

  -- { cell, ranks, dropout, dtype, tolerance }: float64 to 1e-12; float32 to
  -- its rounding (the all-reduce sums in another order: a few ulps of the
  -- weights after 10 steps of Adam; 3.4e-7 measured)
  for _, c in ipairs { { "lstm", 2, 0, "float64", 1e-12 }, { "gru", 2, 0, "float64", 1e-12 },
    { "lstm", 3, 0, "float64", 1e-12 }, { "lstm", 2, 0.3, "float64", 1e-12 }, { "gru", 3, 0.3, "float64", 1e-12 },
    { "lstm", 2, 0.3, "float32", 2e-6 }, { "gru", 2, 0, "float32", 2e-6 } } do
    local cell, N, p, dt, tol = c[1], c[2], c[3], c[4], c[5]
    it(string.format("%s%s: %d ranks of batch 2 equal one process of batch %d (%s, %g); the weights stay "
      .. "the same bits on every rank for 100 steps", cell, p > 0 and ", dropout " .. p or "", N, 2 * N, dt, tol),
      function()
      if WHY then return pending(WHY) end
      local out = string.format("%s/equiv%s%d%g%s", dir, cell, N, p, dt)
      local ok, log = ranks(N, string.format("equiv %s %s %g %s", out, cell, p, dt))
      assert(ok, log)
      local res = read(out)
      for _, k in ipairs { "params", "loss", "val" } do
        local v = tonumber(res:match(k .. " (%S+)"))
        assert.is_true(v ~= nil and v <= tol, k .. ": " .. res)
      end
      assert.truthy(res:find("identical true", 1, true), res)
    end)
  end

  it("resumes exactly on the same number of ranks", function()
    if WHY then return pending(WHY) end
    local out = dir .. "/resume"
    local ok, log = ranks(2, "resume " .. out)
    assert(ok, log)
    assert.are.equal("resume true true\n", read(out))
  end)

  it("stops every rank with an error naming what differs between them", function()
    if WHY then return pending(WHY) end
    local out = dir .. "/mismatch"
    local ok, log = ranks(2, "mismatch " .. out)
    assert(ok, log)
    local want = "false bptt.Trainer: the ranks' configurations differ: model config.hidden is 10 on rank 0 but 12 "
      .. "on rank 1\n"
    assert.are.equal(want, read(out .. ".0"))
    assert.are.equal(want, read(out .. ".1"))
  end)

  it("ends the job when a rank is killed", function()
    if WHY then return pending(WHY) end
    local ok, log, status = ranks(2, "die " .. dir .. "/die kill")
    assert.is_false(ok)
    assert.are_not.equal(124, status, "mpirun hung: " .. log) -- timeout's status
    assert.truthy(log:find("signal 9", 1, true), log)
  end)

  it("ends the job when a rank fails with an error while the others wait", function()
    if WHY then return pending(WHY) end
    local ok, log, status = ranks(2, "die " .. dir .. "/die error", "BPTT_DIST_EXIT_TIMEOUT=1")
    assert.is_false(ok)
    assert.are_not.equal(124, status, "mpirun hung: " .. log)
    assert.truthy(log:find("rank 1 fails on purpose", 1, true), log)
    assert.truthy(log:find("bptt.dist: rank 1 is ending while other ranks are still running", 1, true), log)
  end)

  describe("the command line", function()
    local TRAIN = P.luajit .. " examples/charlm/train.lua"
    local OPTS = "--cell gru --hidden 12 --layers 2 --dropout 0.2 --seq 12 --threads 1 --max-iters 20 --eval-every 10 "
      .. "--quiet"
    local corpus
    setup(function()
      corpus = dir .. "/corpus.txt"
      assert(P.run(P.luajit .. " examples/charlm/make_corpus.lua " .. P.quote(corpus) .. " 10"))
    end)
    local function losses(path)
      local out = {}
      for line in assert(io.open(path)):lines() do
        local it, tl, vl = line:match("^(%d+),([^,]*),([^,]*),")
        if it then out[#out + 1] = it .. " " .. tl .. " " .. vl end
      end
      return table.concat(out, "\n")
    end

    it("trains on 2 ranks of --batch 3 to the loss curve of one process with --batch 6; rank 0 alone writes",
      function()
      if WHY then return pending(WHY) end
      local ok, log = P.run(string.format("timeout 120 %s -np 2 %s --data %s %s --batch 3 --out %s", MPIRUN, TRAIN,
        P.quote(corpus), OPTS, P.quote(dir .. "/two")))
      assert(ok, log)
      assert.truthy(log:find("data parallel: 2 ranks of 3 streams each (6 in all)", 1, true), log)
      local _, n = log:gsub("iter 20: train loss", "")
      assert.are.equal(1, n, log) -- one rank speaks
      ok, log = P.run(string.format("%s --data %s %s --batch 6 --out %s", TRAIN, P.quote(corpus), OPTS,
        P.quote(dir .. "/one")))
      assert(ok, log)
      assert.are.equal(losses(dir .. "/one/log.csv"), losses(dir .. "/two/log.csv"))
    end)

    it("stops every rank, naming the option that differs between them (exit 2)", function()
      if WHY then return pending(WHY) end
      local ok, log = P.run(string.format("timeout 120 %s -np 2 sh -c %s", MPIRUN, P.quote(string.format(
        "exec %s --data %s %s --batch 3 --out %s --seq $((12 + OMPI_COMM_WORLD_RANK))", TRAIN, corpus, OPTS:gsub(
          "%-%-seq 12 ", ""), dir .. "/mismatch"))))
      assert.is_false(ok)
      for r = 0, 1 do
        assert.truthy(log:find("rank " .. r .. ": train.lua: the ranks' configurations differ: --seq is 12 on rank 0 "
          .. "but 13 on rank 1", 1, true), log)
      end
    end)
  end)
end)

