-- The sequence examples run from one command each: a few iterations of
-- examples/tagger and examples/seq2seq (both tasks) print their held-out
-- figure and chance and write their two plots; a bad option exits with a
-- message.  (Their accuracies at the default settings are in the README.)
local P = require "helpers.proc"

local ROOT = assert(io.popen("pwd")):read("*l")
local function example(name) return P.luajit .. " " .. ROOT .. "/examples/" .. name .. ".lua" end
local function has(out, s) return out:find(s, 1, true) ~= nil end
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

describe("examples/tagger and examples/seq2seq", function()
  local dir, cleanup
  setup(function() dir, cleanup = P.tempdir() end)
  teardown(function() cleanup() end)

  it("tagger: trains, reports per-token accuracy against chance, writes its plots", function()
    local ok, out = P.run(example("tagger/tagger") .. " --iters 3 --test 16 --batch 4 --hidden 8 --threads 1 --out "
      .. P.quote(dir .. "/tagger"))
    assert(ok, out)
    assert.is_truthy(out:match("held%-out per%-token accuracy %d%.%d+ on 16 sequences .*%(chance 0%.%d+"), out)
    assert.is_true(exists(dir .. "/tagger/loss.svg") and exists(dir .. "/tagger/accuracy.svg"))
  end)

  it("seq2seq: trains and decodes greedily, both tasks, and reports exact match against chance", function()
    for _, task in ipairs { "add", "reverse" } do
      local ok, out = P.run(example("seq2seq/seq2seq") .. " --task " .. task .. " --iters 3 --test 16 --batch 4 "
        .. "--hidden 8 --threads 1 --out " .. P.quote(dir .. "/" .. task))
      assert(ok, out)
      assert.is_truthy(out:match("held%-out exact match %d%.%d+ on 16 unseen questions .*chance "), out)
      assert.is_true(exists(dir .. "/" .. task .. "/loss.svg") and exists(dir .. "/" .. task .. "/accuracy.svg"))
    end
    local ok, out = P.run(example("seq2seq/seq2seq") .. " --task sort --iters 1")
    assert.is_false(ok)
    assert.is_true(has(out, "--task must be add or reverse"), out)
  end)
end)
