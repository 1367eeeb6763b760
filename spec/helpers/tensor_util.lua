--- Shared helpers for the tensor specs: a seeded plain-Lua generator (so the
-- specs never depend on the library's own RNG to make their inputs), naive
-- references (matmul, sums) over plain tables, tolerant comparisons, error
-- matching and resident memory.
local U = {}

--- Tolerances: float64 results are exact to rounding, float32 to ~1e-5.
U.tol = { float64 = 1e-12, float32 = 1e-5, int32 = 0 }

--- True when the specs run under valgrind (make valgrind sets it): shrink work.
U.light = os.getenv("BPTT_SPEC_LIGHT") ~= nil and os.getenv("BPTT_SPEC_LIGHT") ~= ""

--- Which memory tool, if any, runs us (both work by LD_PRELOAD): their
-- allocators hold freed blocks back (ASan's quarantine, memcheck's freed queue).
U.memtool = (function()
  local pre = os.getenv("LD_PRELOAD") or ""
  if pre:find("vgpreload", 1, true) then return "valgrind" end
  if pre:find("libasan", 1, true) then return "asan" end
  return nil
end)()

--- A Park-Miller generator in doubles (exact: 48271 * 2^31 < 2^53).
-- g:uniform() in (0, 1), g:int(lo, hi) whole in lo..hi, g:normal().
function U.gen(seed)
  local x = (seed or 1) % 2147483646 + 1
  local g = {}
  function g:next()
    x = (x * 48271) % 2147483647
    return x
  end
  function g:uniform() return g:next() / 2147483647 end
  function g:int(lo, hi) return lo + (g:next() % (hi - lo + 1)) end
  function g:value() return g:uniform() * 4 - 2 end
  function g:normal()
    return math.sqrt(-2 * math.log(g:uniform())) * math.cos(2 * math.pi * g:uniform())
  end
  return g
end

--- Nested table of the given shape ({} gives a number), values from f().
function U.nested(shape, f, depth)
  depth = depth or 1
  if depth > #shape then return f() end
  local t = {}
  for i = 1, shape[depth] do t[i] = U.nested(shape, f, depth + 1) end
  return t
end

--- Flattens a nested table (or a number) in row-major order.
function U.flatten(t, out)
  out = out or {}
  if type(t) ~= "table" then
    out[#out + 1] = t
    return out
  end
  for i = 1, #t do U.flatten(t[i], out) end
  return out
end

--- Plain-Lua products and sums.
function U.prod(shape)
  local n = 1
  for i = 1, #shape do n = n * shape[i] end
  return n
end

--- Rounds x to the nearest float32 (via the library's own storage).
function U.f32(x)
  local bptt = require "bptt"
  return bptt.tensor({ x }, "float32"):get(1)
end

--- C (m x n) = A (m x k) B (k x n) over nested tables, by the textbook loop.
function U.naive_matmul(A, B)
  local m, k = #A, #B
  local n = k > 0 and #B[1] or 0
  local C = {}
  for i = 1, m do
    local row = {}
    for j = 1, n do
      local s = 0
      for p = 1, k do s = s + A[i][p] * B[p][j] end
      row[j] = s
    end
    C[i] = row
  end
  return C
end

--- The transpose of a 2-d nested table.
function U.transpose(A, ncols)
  local T = {}
  local n = #A > 0 and #A[1] or (ncols or 0)
  for j = 1, n do
    T[j] = {}
    for i = 1, #A do T[j][i] = A[i][j] end
  end
  return T
end

--- Is got within rel (relative to max(|want|, scale)) of want?
function U.close(got, want, rel, scale)
  if got ~= got or want ~= want then return got ~= got and want ~= want end
  local s = math.max(math.abs(want), scale or 1)
  return math.abs(got - want) <= rel * s
end

--- Asserts two nested tables have one shape and elementwise-close values;
-- the message says where the first difference is.
function U.assert_close(got, want, rel, scale, where)
  where = where or ""
  if type(want) ~= "table" then
    assert(type(got) == "number", where .. ": expected a number, got " .. type(got))
    assert(U.close(got, want, rel or 0, scale),
      string.format("%s: got %.17g, want %.17g (rel %g)", where, got, want, rel or 0))
    return
  end
  assert(type(got) == "table", where .. ": expected a table, got " .. type(got))
  assert(#got == #want, string.format("%s: length %d, want %d", where, #got, #want))
  for i = 1, #want do U.assert_close(got[i], want[i], rel, scale, where .. "[" .. i .. "]") end
end

--- Calls f(...) expecting an error whose message contains every string in
-- `needles` (plain find); returns the message.
function U.error_with(needles, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error containing " .. table.concat(needles, " | ") .. ", got success")
  err = tostring(err)
  for _, s in ipairs(needles) do
    assert(err:find(s, 1, true), "error message\n  " .. err .. "\ndoes not contain\n  " .. s)
  end
  return err
end

local PAGE = (function()
  local p = io.popen("getconf PAGESIZE 2>/dev/null")
  local v = p and tonumber(p:read("*l"))
  if p then p:close() end
  return v or 4096
end)()

--- Resident set size of this process in bytes (Linux: /proc/self/statm).
function U.rss()
  local f = assert(io.open("/proc/self/statm", "r"))
  local line = f:read("*l")
  f:close()
  local pages = tonumber(line:match("^%d+%s+(%d+)"))
  return pages * PAGE
end

return U
