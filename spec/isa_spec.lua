-- BPTT_ISA: the instruction set of the hot kernels (c/core/isa.h), chosen when the
-- module loads.  The same computation runs in a child process per setting
-- (spec/helpers/isa_child.lua); what the README's Guarantees promise of it:
-- the AVX-512, AVX2 and baseline copies of the kernels give the same bits,
-- and only the packed GEMM kernel (AVX-512 only) rounds differently from
-- OpenBLAS.
local bptt = require "bptt"
local P = require "helpers.proc"

local ISAS = { "generic", "avx2", "avx512" }
local LEVEL = { generic = 1, avx2 = 2, avx512 = 3 }
local env = "LUA_PATH=" .. P.quote(package.path) .. " LUA_CPATH=" .. P.quote(package.cpath) .. " "

local dir, cleanup
setup(function() dir, cleanup = P.tempdir() end)
teardown(function() cleanup() end)

-- runs the child; returns its cpu_config line's fields and the file it wrote
local function child(isa, mode)
  local path = string.format("%s/%s_%s.safetensors", dir, isa, mode)
  local ok, out = P.run(string.format("BPTT_ISA=%s %s%s spec/helpers/isa_child.lua %s %s", isa, env, P.luajit,
    P.quote(path), mode))
  assert(ok, out)
  local used, cpu, packed = out:match("isa=(%S+) cpu=(%S+) packed=(%S+)")
  assert(used, out)
  return { isa = used, cpu = cpu, packed = packed == "true", path = path }
end

local function bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("BPTT_ISA", function()
  it("picks the kernels' instruction set, capped at the CPU's; bptt.cpu_config() tells", function()
    local cfg = bptt.cpu_config()
    assert.truthy(LEVEL[cfg.isa] and LEVEL[cfg.cpu], cfg.isa .. " " .. cfg.cpu)
    assert.is_true(LEVEL[cfg.isa] <= LEVEL[cfg.cpu])
    assert.is_boolean(cfg.packed_gemm)
    for _, isa in ipairs(ISAS) do
      local r = child(isa, "packed")
      assert.equal(cfg.cpu, r.cpu)
      assert.equal(LEVEL[isa] <= LEVEL[r.cpu] and isa or r.cpu, r.isa)
      assert.equal(r.isa == "avx512", r.packed, "the packed kernel runs at avx512 only")
    end
  end)

  it("an unknown value stops the module from loading, saying what it accepts; an empty one is unset", function()
    local ok, out = P.run(string.format("BPTT_ISA=sse9 %s%s -e 'require \"bptt\"'", env, P.luajit))
    assert.is_false(ok, out)
    assert.truthy(out:find("bptt: BPTT_ISA must be avx512, avx2 or generic (or unset), got 'sse9'", 1, true), out)
    ok, out = P.run(string.format("BPTT_ISA= %s%s -e 'print(require(\"bptt\").cpu_config().isa)'", env, P.luajit))
    assert.is_true(ok, out)
    assert.equal(bptt.cpu_config().cpu, out:match("%S+"))
  end)

  it("every instruction set gives the same bits: RNN forward and backward of every cell, a char-LM step", function()
    local runs = {}
    for _, isa in ipairs(ISAS) do runs[isa] = child(isa, "blas") end
    local ref = bytes(runs.generic.path)
    for _, isa in ipairs(ISAS) do
      assert.is_true(ref == bytes(runs[isa].path), isa .. " (ran " .. runs[isa].isa .. ") differs from generic")
    end
  end)

  it("with the packed kernel (avx512 only), float32 agrees with OpenBLAS's rounding; float64 to the bit", function()
    local fast, plain = child("avx512", "packed"), child("generic", "packed")
    local a, b = assert(bptt.load(fast.path)), assert(bptt.load(plain.path))
    for name, t in pairs(b) do
      local u = a[name]
      assert.truthy(u, name)
      local d = (u:to("float64") - t:to("float64")):norm()
      if name:find("float64", 1, true) or not fast.packed then
        assert.equal(0, d, name)
      else
        assert.is_true(d <= 1e-5 * math.max(t:to("float64"):norm(), 1), string.format("%s: %g", name, d))
      end
    end
  end)
end)
