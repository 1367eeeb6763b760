-- The command-line tools: bin/bptt-train and bin/bptt-sample, which
-- examples/charlm/train.lua and sample.lua run.  Option checks (exit 2, the
-- option named, no traceback), --resume rules, the run folder's lock,
-- signals, failed saves, the progress display, running from any folder.
local bptt = require "bptt"
local P = require "helpers.proc"
local ffi = require "ffi"
pcall(ffi.cdef, "int open(const char *path, int flags, ...);")
pcall(ffi.cdef, "int close(int fd);")
pcall(ffi.cdef, "int flock(int fd, int op);")
pcall(ffi.cdef, "int kill(int pid, int sig);")

local ROOT = assert(io.popen("pwd")):read("*l")
local TRAIN = P.luajit .. " " .. ROOT .. "/examples/charlm/train.lua"
local SAMPLE = P.luajit .. " " .. ROOT .. "/examples/charlm/sample.lua"
local TINY = "--cell gru --hidden 16 --layers 1 --batch 4 --seq 16 --threads 1"

local function has(out, s) return out:find(s, 1, true) ~= nil end

describe("bptt-train and bptt-sample", function()
  local dir, cleanup, corpus, ckpt
  setup(function()
    dir, cleanup = P.tempdir()
    corpus = dir .. "/corpus.txt"
    assert(P.run(P.luajit .. " examples/charlm/make_corpus.lua " .. P.quote(corpus) .. " 20"))
    -- a small run that later tests resume from
    local ok, out = P.run(string.format("%s --data %s %s --max-iters 20 --eval-every 10 --quiet --out %s", TRAIN,
      P.quote(corpus), TINY, P.quote(dir .. "/base")))
    assert(ok, out)
    ckpt = dir .. "/base/checkpoint.safetensors"
  end)
  teardown(function() cleanup() end)

  local function train(opts) return P.run(string.format("%s --data %s %s %s", TRAIN, P.quote(corpus), TINY, opts)) end
  -- a copy of the base run's folder to resume in
  local function copy_base(name)
    local d = dir .. "/" .. name
    assert(P.run("rm -rf " .. P.quote(d) .. " && cp -r " .. P.quote(dir .. "/base") .. " " .. P.quote(d)))
    return d
  end

  it("rejects bad option values naming the option, with status 2 and no traceback", function()
    local cases = {
      { "--hidden 0", "--hidden must be a whole number >= 1, got 0" },
      { "--embed 0", "--embed must be a whole number >= 1, got 0" },
      { "--dropout 1", "--dropout must be in [0, 1), got 1" },
      { "--lr-decay-every 0", "--lr-decay-every must be a whole number >= 1, got 0" },
      { "--seed 1.5", "--seed must be a whole number, got 1.5" },
      { "--threads 0", "--threads must be a whole number >= 1, got 0" },
      { "--lr 0", "--lr must be a number > 0, got 0" },
      { "--batch x", "--batch must be a number, got 'x'" },
      { "--clip -1", "--clip must be a number >= 0 (0: no clipping), got -1" },
      { "--clip=-1", "--clip must be a number >= 0 (0: no clipping), got -1" },
    }
    for _, c in ipairs(cases) do
      local ok, out, status = train(c[1] .. " --out " .. P.quote(dir .. "/never"))
      assert.is_false(ok, c[1])
      assert.equal(2, status, c[1] .. ": " .. out)
      assert.is_true(has(out, c[2]), c[1] .. ": " .. out)
      assert.is_false(has(out, "traceback"), c[1] .. ": " .. out)
    end
    assert.same({}, P.listdir(dir .. "/never"))
  end)

  it("sample.lua rejects bad option values naming the option, with status 2", function()
    local cases = {
      { "--temperature 0", "--temperature must be a number > 0" },
      { "--top-p 0", "--top-p must be in (0, 1], got 0" },
      { "--top-k 1.5", "--top-k must be a whole number >= 0" },
      { "--threads 0", "--threads must be a whole number >= 1, got 0" },
      { "--score A", "--score needs a text of 2 symbols or more" },
    }
    for _, c in ipairs(cases) do
      local ok, out, status = P.run(string.format("%s %s %s", SAMPLE, P.quote(ckpt), c[1]))
      assert.is_false(ok, c[1])
      assert.equal(2, status, c[1] .. ": " .. out)
      assert.is_true(has(out, c[2]), c[1] .. ": " .. out)
      assert.is_false(has(out, "traceback"), c[1] .. ": " .. out)
    end
    local ok, out = P.run(string.format("%s %s --score %s", SAMPLE, P.quote(ckpt), P.quote("AB")))
    assert.is_true(ok, out)
    assert.is_true(has(out, "perplexity"), out)
  end)

  it("--help says what --eval-every 0 means", function()
    local ok, out = P.run(TRAIN .. " --help")
    assert.is_true(ok, out)
    assert.is_true(has(out, "(0: never;"), out)
  end)

  it("runs from any working directory, as the examples and as bin/ commands", function()
    for _, cmd in ipairs({ TRAIN, P.luajit .. " " .. ROOT .. "/bin/bptt-train", ROOT .. "/bin/bptt-sample" }) do
      local ok, out = P.run("cd / && " .. cmd .. " --help")
      assert.is_true(ok, cmd .. ": " .. out)
      assert.is_true(has(out, "Usage:"), out)
    end
    local ok, out = P.run("cd / && " .. ROOT .. "/bin/bptt-sample " .. P.quote(ckpt) .. " --length 5 --seed 3")
    assert.is_true(ok, out)
  end)

  it("--max-iters 0 writes nothing and does not claim it did", function()
    local d = dir .. "/zero"
    local ok, out = train("--max-iters 0 --out " .. P.quote(d))
    assert.is_true(ok, out)
    assert.is_false(has(out, "done:"), out)
    assert.is_true(has(out, "no file was written"), out)
    assert.is_nil(P.size(d .. "/checkpoint.safetensors"))
    assert.is_nil(P.size(d .. "/log.csv"))
  end)

  it("--eval-every 0 evaluates never; the checkpoint and log are written at the end", function()
    local d = dir .. "/noeval"
    local ok, out = train("--max-iters 12 --eval-every 0 --quiet --out " .. P.quote(d))
    assert.is_true(ok, out)
    local f = assert(io.open(d .. "/log.csv"))
    local text = f:read("*a")
    f:close()
    assert.is_truthy(text:match("\n12,[%d.]+,,"), text) -- no val loss
  end)

  it("finds an --out that cannot be made before training", function()
    local ok, out, status = train("--out " .. P.quote(corpus .. "/sub"))
    assert.is_false(ok)
    assert.equal(1, status)
    assert.is_true(has(out, "--out " .. corpus .. "/sub: cannot create the folder"), out)
    assert.is_false(has(out, "bptt.LanguageModel{"), out) -- before any work
  end)

  it("suggests --unit byte for a file that is not UTF-8", function()
    local bad = dir .. "/bad.txt"
    local f = assert(io.open(bad, "wb"))
    f:write(string.rep("abc\255def\n", 100))
    f:close()
    local ok, out = P.run(string.format("%s --data %s --out %s", TRAIN, P.quote(bad), P.quote(dir .. "/bad")))
    assert.is_false(ok)
    assert.is_true(has(out, "--unit byte"), out)
  end)

  it("--resume without --out continues in the checkpoint's folder, keeping its log", function()
    local d = copy_base("resume_here")
    local ok, out = P.run(string.format("cd %s && %s --resume %s --max-iters 30 --eval-every 10 --quiet", P.quote(dir),
      TRAIN, P.quote(d .. "/checkpoint.safetensors")))
    assert.is_true(ok, out)
    assert.is_nil(P.size(dir .. "/out/charlm/checkpoint.safetensors"))
    local _, meta = bptt.load(d .. "/checkpoint.safetensors")
    assert.equal("30", meta.iteration)
    local f = assert(io.open(d .. "/log.csv"))
    local n = 0
    for line in f:lines() do
      if line:match("^%d") then n = n + 1 end
    end
    f:close()
    assert.equal(3, n)
  end)

  it("--resume takes a new lr, clip and interval (and says so), and refuses a new shape, batch or data", function()
    local d = copy_base("resume_opts")
    local path = d .. "/checkpoint.safetensors"
    local ok, out = P.run(string.format("%s --resume %s --max-iters 25 --lr 1e-5 --eval-every 5 --clip 1 --quiet",
      TRAIN, P.quote(path)))
    assert.is_true(ok, out)
    assert.is_true(has(out, "changed on resume: --lr 1e-05 (the checkpoint had 0.002)"), out)
    assert.is_true(has(out, "changed on resume: --clip 1 (the checkpoint had 5)"), out)
    local _, meta = bptt.load(path)
    assert.equal("25", meta.iteration)
    assert.equal("1e-05", meta["train.lr"])
    assert.equal(1e-5, tonumber(meta["optim.optim.lr"]))
    assert.equal("step=25 base_lr=1e-05", meta.schedule)
    assert.equal("5", meta["train.eval_every"])
    local cases = {
      { "--batch 8", "--batch 8 cannot change on --resume: the checkpoint has --batch 4" },
      { "--seq 32", "--seq 32 cannot change on --resume: the checkpoint has --seq 16" },
      { "--hidden 32", "--hidden 32 does not fit the checkpoint, whose model has --hidden 16" },
      { "--cell lstm", "--cell lstm does not fit the checkpoint, whose model has --cell gru" },
      { "--data " .. P.quote(dir .. "/other.txt"), "--data " .. dir .. "/other.txt cannot change on --resume" },
    }
    for _, c in ipairs(cases) do
      local cok, cout, status = P.run(string.format("%s --resume %s %s", TRAIN, P.quote(path), c[1]))
      assert.is_false(cok, c[1])
      assert.equal(2, status, c[1] .. ": " .. cout)
      assert.is_true(has(cout, c[2]), c[1] .. ": " .. cout)
    end
  end)

  it("stores the thread count and resumes with it unless --threads is given", function()
    local _, meta = bptt.load(ckpt)
    assert.equal("1", meta["train.threads"])
    local d = copy_base("threads")
    local ok, out = P.run(string.format("%s --resume %s --max-iters 22 --quiet", TRAIN,
      P.quote(d .. "/checkpoint.safetensors")))
    assert.is_true(ok, out)
    assert.is_true(has(out, "threads: 1, the checkpoint's"), out)
    ok, out = P.run(string.format("%s --resume %s --max-iters 24 --threads 2 --quiet", TRAIN,
      P.quote(d .. "/checkpoint.safetensors")))
    assert.is_true(ok, out)
    assert.is_true(has(out, "the checkpoint was trained with 1"), out)
  end)

  it("resuming a trainer:save checkpoint without --data asks for --data", function()
    local V = 5
    local lm = bptt.LanguageModel{ vocab = V, hidden = 4, cell = "gru" }
    local tokens = bptt.zeros(400, "int32")
    for i = 1, 400 do tokens:set(i, i % V + 1) end
    local trainer = bptt.Trainer{ model = lm, optimizer = bptt.optim.adam(lm, { lr = 1e-3 }),
      train = bptt.data.Batches(tokens, { batch = 2, seq = 4 }) }
    trainer:step()
    local path = dir .. "/api.safetensors"
    assert(trainer:save(path))
    local ok, out, status = P.run(string.format("%s --resume %s", TRAIN, P.quote(path)))
    assert.is_false(ok)
    assert.equal(2, status)
    assert.is_true(has(out, path .. " holds no data path"), out)
    assert.is_true(has(out, "give the training text with --data"), out)
  end)

  it("a failed save exits 1 naming the last good checkpoint, never 'done'", function()
    local d = dir .. "/dirckpt"
    assert(P.run("mkdir -p " .. P.quote(d .. "/checkpoint.safetensors")))
    local ok, out, status = train("--max-iters 20 --eval-every 10 --quiet --out " .. P.quote(d))
    assert.is_false(ok)
    assert.equal(1, status)
    assert.is_true(has(out, "iteration 10: the checkpoint could not be written"), out)
    assert.is_true(has(out, "no checkpoint was written by this run"), out)
    assert.is_false(has(out, "done:"), out)
    -- resumed elsewhere: the checkpoint it came from is the last good one
    ok, out, status = P.run(string.format("%s --resume %s --max-iters 30 --eval-every 5 --quiet --out %s", TRAIN,
      P.quote(ckpt), P.quote(d)))
    assert.is_false(ok)
    assert.equal(1, status)
    assert.is_true(has(out, "the last good checkpoint is " .. ckpt .. " (iteration 20)"), out)
    assert.is_false(has(out, "done:"), out)
  end)

  it("a second run on a locked folder names the pid holding it and exits non-zero", function()
    local d = copy_base("locked")
    local lock = d .. "/train.lock"
    local f = assert(io.open(lock, "w"))
    f:write("4242\n")
    f:close()
    local fd = ffi.C.open(lock, 2)
    assert(fd >= 0)
    assert.equal(0, ffi.C.flock(fd, 2 + 4))
    local ok, out, status = P.run(string.format("%s --resume %s --max-iters 30 --quiet", TRAIN,
      P.quote(d .. "/checkpoint.safetensors")))
    ffi.C.close(fd)
    assert.is_false(ok)
    assert.equal(1, status)
    assert.is_true(has(out, "is in use by another run (pid 4242 holds " .. lock .. ")"), out)
    local _, meta = bptt.load(d .. "/checkpoint.safetensors")
    assert.equal("20", meta.iteration) -- untouched
    -- once it is free, the folder is usable again
    ok, out = P.run(string.format("%s --resume %s --max-iters 22 --quiet", TRAIN,
      P.quote(d .. "/checkpoint.safetensors")))
    assert.is_true(ok, out)
  end)

  it("SIGTERM finishes the step, writes the checkpoint, says where and exits 143", function()
    local d = dir .. "/term"
    local log = dir .. "/term.log"
    local h = P.spawn(string.format("%s --data %s %s --max-iters 100000000 --eval-every 7 --quiet --out %s", TRAIN,
      P.quote(corpus), TINY, P.quote(d)), log)
    -- wait for the first evaluation line (a bound against a hung child only)
    local seen = false
    for _ = 1, 6000 do
      local f = io.open(log)
      local text = f and f:read("*a") or ""
      if f then f:close() end
      if text:find("iter 7:", 1, true) then seen = true break end
      if not h:running() then break end
      P.sleep_ms(10)
    end
    assert.is_true(seen, "the run did not start")
    ffi.C.kill(h.pid, 15)
    assert.equal(143, h:wait())
    local f = assert(io.open(log))
    local out = f:read("*a")
    f:close()
    local it = tonumber(out:match("stopped by SIGTERM at iteration (%d+); checkpoint written to "
      .. d:gsub("%p", "%%%0") .. "/checkpoint.safetensors"))
    assert.is_truthy(it, out)
    local _, meta = bptt.load(d .. "/checkpoint.safetensors")
    assert.equal(tostring(it), meta.iteration)
  end)

  it("shows a progress bar on a terminal, plain lines otherwise, nothing per iteration with --quiet", function()
    if not P.run("command -v script >/dev/null") then
      pending("script(1) is not installed: no terminal to test with")
      return
    end
    local function on_tty(opts)
      local _, out = P.run("script -qec " .. P.quote(string.format("%s --data %s %s --max-iters 12 --eval-every 0 %s",
        TRAIN, P.quote(corpus), TINY, opts)) .. " /dev/null")
      return out
    end
    local out = on_tty("--out " .. P.quote(dir .. "/tty1"))
    assert.is_true(has(out, "\r[####"), out)
    assert.is_true(has(out, "elapsed"), out)
    assert.is_true(has(out, "ETA"), out)
    out = on_tty("--quiet --out " .. P.quote(dir .. "/tty2"))
    assert.is_false(has(out, "\r["), out)
    assert.is_false(has(out, "12/12"), out)
    local ok, plain = train("--max-iters 12 --eval-every 0 --out " .. P.quote(dir .. "/tty3"))
    assert.is_true(ok, plain)
    assert.is_false(has(plain, "\r"), plain)
    assert.is_true(has(plain, "iter 12/12  loss"), plain)
    local _, quiet = train("--max-iters 12 --eval-every 0 --quiet --out " .. P.quote(dir .. "/tty4"))
    assert.is_false(has(quiet, "12/12"), quiet)
  end)
end)
