-- Nothing silently wrong (misuse and a hostile machine): ids changed between
-- an Embedding's forward and backward, logits with no distribution in them,
-- and `require "bptt"` under a tight address-space limit.
local bptt = require "bptt"
local P = require "helpers.proc"
local U = require "helpers.tensor_util"

describe("bptt.Embedding:backward", function()
  it("raises when the ids were changed after forward to one outside 1..vocab", function()
    bptt.manual_seed(1)
    local emb = bptt.Embedding{ vocab = 5, dim = 3 }
    local ids = bptt.tensor({ { 1, 2 }, { 3, 4 } }, "int32")
    emb:forward(ids)
    ids:set(2, 1, 9) -- the caller reuses its buffer too early
    emb:zero_grad()
    U.error_with({ "bptt.Embedding:backward: ids[2][1] is 9, expected 1..5 (the ids were changed after forward)" },
      emb.backward, emb, bptt.ones(2, 2, 3))
    local _, g = emb:flat_parameters()
    assert.equal(0, g:norm()) -- nothing was added
    ids:set(2, 1, 0)
    U.error_with({ "bptt.Embedding:backward: ids[2][1] is 0, expected 1..5" }, emb.backward, emb, bptt.ones(2, 2, 3))
    -- ids changed to other valid ones are the caller's business: backward uses what is there
    ids:set(2, 1, 5)
    emb:backward(bptt.ones(2, 2, 3))
    assert.equal(1, g:view(5, 3):get(5, 1))
  end)
end)

describe("bptt.sample", function()
  local ninf = -math.huge

  it("raises when every logit is -inf, as for NaN, greedy or not", function()
    for _, opts in ipairs({ {}, { greedy = true }, { top_k = 2 }, { top_p = 0.5 }, { temperature = 0.1 } }) do
      for _, dtype in ipairs({ "float32", "float64" }) do
        U.error_with({ "bptt.sample: every logit is -inf: there is no distribution to sample from" }, bptt.sample,
          bptt.tensor({ ninf, ninf, ninf }, dtype), opts)
      end
    end
    U.error_with({ "bptt.sample: logits contain NaN" }, bptt.sample, bptt.tensor({ 0 / 0, ninf }))
  end)

  it("still samples when some logits are -inf (never one of those), and takes the argmax when the temperature "
    .. "sends every finite logit to -inf", function()
    bptt.manual_seed(3)
    for _ = 1, 200 do
      local id = bptt.sample(bptt.tensor({ ninf, 0, ninf, 1 }, "float64"))
      assert(id == 2 or id == 4, id)
    end
    assert.equal(3, bptt.sample(bptt.tensor({ -1e300, -2e300, -0.5e300 }, "float64"), { temperature = 1e-300 }))
  end)
end)

describe("require \"bptt\" under ulimit -v", function()
  it("loads, or fails with a clear error, and never hangs (OpenBLAS's buffer cannot be had)", function()
    if (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      pending("under AddressSanitizer (make sanitize), whose shadow memory needs terabytes of address space")
      return
    end
    if not P.run("command -v timeout >/dev/null") then
      pending("no timeout(1) on this machine")
      return
    end
    local lua_path, cpath = package.path, package.cpath
    local prog = 'local ok, e = pcall(require, "bptt") '
      .. 'if ok then local b = e; local c = b.matmul(b.zeros(3, 3), b.ones(3, 3)) print("loaded", c:sum()) '
      .. 'else print("error: " .. tostring(e)) end'
    for _, kb in ipairs({ 150000, 120000, 400000 }) do
      local cmd = string.format("LUA_PATH=%s LUA_CPATH=%s timeout -s KILL 20 sh -c %s", P.quote(lua_path),
        P.quote(cpath), P.quote("ulimit -v " .. kb .. "; exec " .. P.luajit .. " -e " .. P.quote(prog)))
      local _, out, status = P.run(cmd)
      assert(status ~= 124 and status ~= 137, "ulimit -v " .. kb .. ": hung (killed after 20 s): " .. out)
      local loaded = out:match("^loaded%s+0") ~= nil
      local clear = out:find("error: [^\n]*bptt[^\n]*address space", 1) ~= nil
      assert(loaded or clear, "ulimit -v " .. kb .. ": neither loaded nor a clear error (status "
        .. tostring(status) .. "): " .. out)
      if kb == 400000 then assert(loaded, "ulimit -v 400000 leaves room enough: " .. out) end
    end
  end)
end)
