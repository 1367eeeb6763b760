-- bptt.machine_peak and bptt.read_bandwidth (c/core/peak.h): diagnostics that
-- measure the FMA throughput and the read bandwidth of the library's threads,
-- for the benchmarks' "% of peak" figures.  What is promised: a positive
-- finite figure under every instruction set, the team's thread count as it
-- was, and clear errors.  No figure is asserted (a shared or slow machine
-- may give any).
local bptt = require "bptt"
local P = require "helpers.proc"

local function figure(x)
  return type(x) == "number" and x > 0 and x < math.huge
end

local function errors(f, msg)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected an error: " .. msg)
  assert.truthy(tostring(err):find(msg, 1, true), "expected '" .. msg .. "', got: " .. tostring(err))
end

local S = 0.01 -- seconds per measurement: enough to run every loop, no more

describe("bptt.machine_peak", function()
  it("returns the GFLOP/s of the FMA loop on the team's threads or threads=n, and leaves the team as it was", function()
    local n = bptt.num_threads()
    assert.is_true(figure(bptt.machine_peak{ seconds = S }))
    assert.is_true(figure(bptt.machine_peak{ threads = 1, seconds = S }))
    assert.equal(n, bptt.num_threads())
    bptt.set_num_threads(1)
    assert.is_true(figure(bptt.machine_peak{ threads = 2, seconds = S })) -- more threads than the team has
    assert.equal(1, bptt.num_threads())
    bptt.set_num_threads(n)
  end)

  it("refuses bad options, naming the function and the option", function()
    errors(function() bptt.machine_peak(5) end, "bptt.machine_peak: opts must be a table, got number")
    errors(function() bptt.machine_peak{ threads = 0 } end, "bptt.machine_peak: threads must be in 1..64, got 0")
    errors(function() bptt.machine_peak{ threads = 1.5 } end, "bptt.machine_peak: threads must be a whole number")
    errors(function() bptt.machine_peak{ threads = "2" } end,
      "bptt.machine_peak: threads must be a whole number, got string")
    errors(function() bptt.machine_peak{ seconds = 0 } end, "bptt.machine_peak: seconds must be in (0, 60], got 0")
    errors(function() bptt.machine_peak{ seconds = 0 / 0 } end, "bptt.machine_peak: seconds must be in (0, 60]")
    errors(function() bptt.machine_peak{ seconds = 61 } end, "bptt.machine_peak: seconds must be in (0, 60], got 61")
    errors(function() bptt.machine_peak{ seconds = {} } end, "bptt.machine_peak: seconds must be a number")
    errors(function() bptt.machine_peak{ thread = 2 } end,
      "bptt.machine_peak: unknown option thread (the options are threads, seconds)")
    errors(function() bptt.machine_peak{ 2 } end, "bptt.machine_peak: unknown option number")
  end)
end)

describe("bptt.read_bandwidth", function()
  it("returns the GB/s of reading a buffer of the given size, from L1-sized to beyond the caches", function()
    local n = bptt.num_threads()
    for _, bytes in ipairs{ 64, 100, 4096 + 4, 2 ^ 20, 64 * 2 ^ 20 } do
      assert.is_true(figure(bptt.read_bandwidth{ bytes = bytes, seconds = S }), bytes)
      assert.is_true(figure(bptt.read_bandwidth{ bytes = bytes, threads = 1, seconds = S }), bytes)
      assert.is_true(figure(bptt.read_bandwidth{ bytes = bytes, threads = 3, seconds = S }), bytes)
    end
    assert.equal(n, bptt.num_threads())
  end)

  it("refuses bad options, and says so when the buffer cannot be allocated", function()
    errors(function() bptt.read_bandwidth() end, "bptt.read_bandwidth: bytes must be given (a whole number >= 64)")
    errors(function() bptt.read_bandwidth{ threads = 1 } end, "bptt.read_bandwidth: bytes must be given")
    errors(function() bptt.read_bandwidth{ bytes = 63 } end, "bptt.read_bandwidth: bytes must be in 64..")
    errors(function() bptt.read_bandwidth{ bytes = -1 } end, "bptt.read_bandwidth: bytes must be in 64..")
    errors(function() bptt.read_bandwidth{ bytes = "1e6" } end,
      "bptt.read_bandwidth: bytes must be a whole number, got string")
    errors(function() bptt.read_bandwidth{ bytes = 4096, threads = 65 } end,
      "bptt.read_bandwidth: threads must be in 1..64, got 65")
    errors(function() bptt.read_bandwidth{ bytes = 4096, seconds = -1 } end,
      "bptt.read_bandwidth: seconds must be in (0, 60], got -1")
    errors(function() bptt.read_bandwidth{ bytes = 4096, size = 1 } end,
      "bptt.read_bandwidth: unknown option size (the options are bytes, threads, seconds)")
    -- a petabyte: more than the address space of today's x86-64 and ARM64
    local n = bptt.num_threads()
    errors(function() bptt.read_bandwidth{ bytes = 2 ^ 50, seconds = S } end,
      "bptt.read_bandwidth: cannot allocate a buffer of 1125899906842624 bytes")
    assert.equal(n, bptt.num_threads())
  end)
end)

describe("the loops of every instruction set", function()
  it("give a figure under BPTT_ISA=avx512, avx2 and generic (AVX-512, AVX2 + FMA, plain C)", function()
    local env = "LUA_PATH=" .. P.quote(package.path) .. " LUA_CPATH=" .. P.quote(package.cpath) .. " "
    local code = "local b = require 'bptt' print(b.cpu_config().isa, b.machine_peak{seconds = 0.01}, "
      .. "b.read_bandwidth{bytes = 65536, seconds = 0.01})"
    for _, isa in ipairs{ "avx512", "avx2", "generic" } do
      local ok, out = P.run(string.format("BPTT_ISA=%s %s%s -e %s", isa, env, P.luajit, P.quote(code)))
      assert.is_true(ok, out)
      local used, peak, bw = out:match("^(%S+)\t(%S+)\t(%S+)")
      assert.truthy(used, out)
      assert.is_true(figure(tonumber(peak)) and figure(tonumber(bw)), out)
    end
  end)
end)
