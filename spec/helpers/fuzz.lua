--- The machinery of spec/fuzz_spec.lua: a seeded generator of valid and
-- invalid arguments, and a runner that calls one entry point in pcall and
-- judges the outcome.
--
-- An outcome is good when the call works (and, for unmutated arguments, its
-- entry's check passes), or when it raises a string naming a bptt function
-- (and, for the function called, that function's name or one of its
-- entry's `names`), never a raw Lua error ("attempt to index ...") and never
-- a crash (which ends the process: under ASan, with a report).
local bptt = require "bptt"

local F = {}

local rnd = math.random

function F.pick(list) return list[rnd(#list)] end
function F.chance(p) return rnd() < p end

--- n values from ..., as a list that keeps nils ({n = , ...}).
function F.pack(...) return { n = select("#", ...), ... } end

------------------------------------------------------------------ tensors

F.DTYPES = { "float32", "float64", "int32" }
F.FLOATS = { "float32", "float64" }

--- A small tensor: shape, dtype and views as asked or random (dims 0..3,
-- sizes 0..4 unless nonempty).
function F.tensor(shape, dtype, opts)
  opts = opts or {}
  if shape == nil then
    shape = {}
    for i = 1, rnd(0, 3) do shape[i] = opts.nonempty and rnd(1, 4) or rnd(0, 4) end
  end
  dtype = dtype or F.pick(F.DTYPES)
  local t = bptt.zeros(shape, dtype)
  if t:numel() > 0 then
    if dtype == "int32" then
      t:fill(rnd(1, 3))
    else
      t:uniform(-2, 2)
    end
  end
  return t
end

--- A tensor of `shape` that may be a strided view of a larger one (the same
-- values as a fresh one would have): transposed, narrowed, selected, views
-- of views.
function F.viewed(shape, dtype)
  dtype = dtype or F.pick(F.DTYPES)
  local nd = #shape
  local r = rnd(4)
  if nd >= 2 and r == 1 then -- transpose of the transposed shape
    local s = {}
    for i = 1, nd do s[i] = shape[i] end
    s[1], s[2] = s[2], s[1]
    return F.tensor(s, dtype):transpose(1, 2)
  elseif r == 2 then -- narrowed along dim 1 of a longer tensor, maybe a view of that
    local s = {}
    for i = 1, nd do s[i] = shape[i] end
    if nd == 0 then return F.tensor({ 3 }, dtype):select(1, 2) end
    s[1] = s[1] + 2
    local base = F.tensor(s, dtype)
    if F.chance(0.5) and nd >= 2 then base = base:transpose(1, nd):transpose(1, nd) end
    return base:narrow(1, 2, shape[1])
  elseif r == 3 then -- a select of one more dimension
    local s = { 2 }
    for i = 1, nd do s[i + 1] = shape[i] end
    return F.tensor(s, dtype):select(1, 2)
  end
  return F.tensor(shape, dtype)
end

--- Tensors nobody should accept: freed, empty, 0-d, of odd shape or dtype,
-- holding NaN/Inf, big but empty.
function F.odd_tensor()
  local k = rnd(9)
  if k == 1 then
    local t = F.tensor()
    t:free()
    return t
  elseif k == 2 then
    local t = F.tensor({ 3, 2 })
    local v = t:narrow(1, 1, 2)
    t:free()
    return F.chance(0.5) and v or v:select(2, 1) -- a view of a freed tensor keeps its storage
  elseif k == 3 then
    local sizes = F.pick { { 0 }, { 0, 3 }, { 3, 0 }, { 1e12, 0 }, { 0, 2 ^ 40 }, { 2 ^ 20, 2 ^ 20, 0 } }
    return bptt.zeros(sizes, F.pick(F.DTYPES))
  elseif k == 4 then
    return bptt.tensor(rnd(-3, 3), F.pick(F.DTYPES)) -- 0-d
  elseif k == 5 then
    local t = F.tensor(nil, F.pick(F.FLOATS), { nonempty = true })
    if t:numel() > 0 then t:contiguous():view(-1):set(1, F.pick { 0 / 0, math.huge, -math.huge }) end
    return t
  elseif k == 6 then
    return F.tensor({ rnd(1, 3), rnd(1, 3), rnd(1, 3), rnd(1, 2) })
  elseif k == 7 then
    return F.viewed({ rnd(0, 3), rnd(0, 3) })
  end
  return F.tensor()
end

------------------------------------------------------------------ junk

local function thrower() error("a user function raised this") end

-- The strings among the junk: as a path, a call may create a file of that
-- name in the working directory (F.remove_new_files cleans up).
F.STRINGS = { "", "float32", "int32", "x" }

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Runs f(...) (in pcall) and removes any file named by a junk string that
-- the call created; returns what pcall returned, packed.
function F.pcall_clean(f, ...)
  local before = {}
  for i, s in ipairs(F.STRINGS) do before[i] = s == "" or exists(s) end
  local res = F.pack(pcall(f, ...))
  for i, s in ipairs(F.STRINGS) do
    if not before[i] and exists(s) then os.remove(s) end
  end
  return res
end

--- One value of any kind, most of them wrong for any argument.
function F.junk(objects)
  local k = rnd(30)
  if k <= 12 then
    return ({ nil, true, false, F.STRINGS[1], F.STRINGS[2], F.STRINGS[3], F.STRINGS[4], {}, { 1, 2, 3 },
      { { 1 }, { 2, 3 } }, function() end, -1 })[k]
  elseif k <= 24 then
    return ({ 0 / 0, math.huge, -math.huge, 0, 0.5, -0.5, 2 ^ 53, 2 ^ 63, -2 ^ 63, 1e12, 1e-310, 2 ^ 53 + 2 })[k - 12]
  elseif k == 25 then
    return coroutine.create(thrower)
  elseif k == 26 then
    return io.stdout -- a foreign userdata
  elseif k == 27 then
    return setmetatable({}, { __index = function() return nil end })
  elseif k == 28 and objects then
    return objects()
  end
  return F.odd_tensor()
end

--- A copy of a list of arguments, each wrong with some chance, or cut short,
-- or longer.  Returns args, what was done (nil when nothing).
function F.mutate(args, objects)
  local out = { n = args.n }
  for i = 1, args.n do out[i] = args[i] end
  local what = {}
  local k = rnd(10)
  if k <= 6 or out.n == 0 then
    local times = rnd(1, 2)
    for _ = 1, times do
      local i = rnd(math.max(out.n, 1))
      out[i] = F.junk(objects)
      if i > out.n then out.n = i end
      what[#what + 1] = "arg " .. i
    end
  elseif k <= 8 then -- a wrong field inside a table argument, or a bad self
    local tbls = {}
    for i = 1, out.n do if type(out[i]) == "table" and getmetatable(out[i]) == nil then tbls[#tbls + 1] = i end end
    if #tbls > 0 then
      local i = F.pick(tbls)
      local t = {}
      for kk, v in pairs(out[i]) do t[kk] = v end
      local keys = {}
      for kk in pairs(t) do keys[#keys + 1] = kk end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      if #keys > 0 and F.chance(0.8) then
        local key = F.pick(keys)
        t[key] = F.junk(objects)
        what[#what + 1] = "arg " .. i .. "." .. tostring(key)
      else
        t[F.pick { "bogus", 1, "hiden" }] = 1
        what[#what + 1] = "arg " .. i .. " unknown key"
      end
      out[i] = t
    else
      out[1] = F.junk(objects)
      what[#what + 1] = "arg 1"
    end
  elseif k == 9 then
    out.n = rnd(0, math.max(out.n - 1, 0))
    for i = out.n + 1, args.n do out[i] = nil end
    what[#what + 1] = "cut to " .. out.n
  else
    out.n = out.n + 1
    out[out.n] = F.junk(objects)
    what[#what + 1] = "extra arg"
  end
  return out, table.concat(what, ", ")
end

------------------------------------------------------------------ judging

-- Signatures of errors that the library did not raise itself.
local RAW = { "attempt to ", "bad argument", "stack overflow", "table index is nil", "invalid key to 'next'",
  "string expected", "number expected", "table expected", "a user function raised this", "(null)" }

--- nil when err is an acceptable error of entry `e`, else why not.
function F.judge_error(e, err)
  if type(err) ~= "string" then return "the error is a " .. type(err) .. ", not a string" end
  for _, r in ipairs(RAW) do
    if err:find(r, 1, true) then return "a raw Lua error" end
  end
  local names = { e.name }
  for _, n in ipairs(e.names or {}) do names[#names + 1] = n end
  for _, n in ipairs(names) do
    if err:find(n, 1, true) then return nil end
  end
  -- a method inherited from a base class names the base (bptt.Module:train)
  local method = e.name:match(":([%w_]+)$")
  if method and err:find("bptt%.[%w_.]+:" .. method .. ":") then return nil end
  if err:find("bptt.", 1, true) then return nil, "delegated" end -- names an inner function
  return "the message does not name " .. table.concat(names, " or ")
end

--- Tensors among vals: each must be usable (shape, print).
function F.usable(vals)
  for i = 1, vals.n do
    local v = vals[i]
    if bptt.is_tensor(v) then
      local s = tostring(v)
      assert(type(s) == "string")
      v:shape()
    end
  end
end

--- True when every element of tensor t is finite.
function F.finite(t)
  if t:numel() == 0 then return true end
  local x = t:to("float64")
  local s = x:clone():mul(0):sum() -- NaN for NaN or Inf anywhere
  return s == s
end

function F.same_shape(t, want)
  local s = t:shape()
  if #s ~= #want then return false end
  for i = 1, #want do if s[i] ~= want[i] then return false end end
  return true
end

--- Resident memory of this process in MB (Linux; 0 elsewhere).
function F.rss_mb()
  local f = io.open("/proc/self/statm")
  if not f then return 0 end
  local _, res = f:read("*n", "*n")
  f:close()
  return (res or 0) * 4096 / 2 ^ 20
end

return F
