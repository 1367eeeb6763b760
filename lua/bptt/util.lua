--- Helpers the Lua layers share: classes, option tables, argument checks.
-- Messages read "<function>: <argument> <expected>, got <seen>".
local core = require "bptt.core"

local util = {}

-- The directory of the bptt Lua modules: frames running code from there are
-- the library's own, and an error's position skips them.
local LIBDIR = (debug.getinfo(1, "S").source or ""):match("^@(.*[/\\])")

--- Raises msg with the position of the first caller outside the library
-- (the user's line), however deep inside the library the check ran:
-- constructors reach these helpers through the class's __call, and some
-- layers through local helper functions.
function util.raise(msg)
  local level = 2
  while LIBDIR do
    local info = debug.getinfo(level, "S")
    if info == nil or info.source:sub(1, #LIBDIR + 1) ~= "@" .. LIBDIR then break end
    level = level + 1
  end
  error(msg, LIBDIR and level or 3)
end

-- True when v is an instance of cls or of a class derived from it (or, with
-- `classes`, cls or a class derived from it).
local function is_a(v, cls, classes)
  if type(v) ~= "table" then return false end
  local c = getmetatable(v)
  if classes and rawget(v, "__index") == v then c = v end
  for _ = 1, 64 do -- a class's parent is the __index of the class's metatable
    if c == cls then return true end
    if type(c) ~= "table" then return false end
    local meta = getmetatable(c)
    c = type(meta) == "table" and rawget(meta, "__index") or nil
  end
  return false
end

-- Methods called on the class rather than on an instance.
local CLASS_METHODS = { extend = true }

-- A public method (defined with a colon: its first parameter is `self`) that
-- checks its self first, so that `Class.method(x, ...)` with x not an
-- instance (nil, another object, a forgotten colon) raises an error naming
-- the method instead of "attempt to index local 'self'".  A tail call: the
-- method's own error levels still point at the caller.
local function checked_method(cls, k, f)
  local fn, classes = cls.__name .. ":" .. k, CLASS_METHODS[k]
  return function(self, ...)
    if not is_a(self, cls, classes) then
      local got = type(self) == "table" and type(self.__name) == "string" and self.__name or type(self)
      util.raise(string.format("%s: self must be a %s (call it with a colon), got %s", fn, cls.__name, got))
    end
    return f(self, ...)
  end
end

--- A class: `cls(...)` makes an instance and runs `cls.__init(self, ...)`.
-- Methods and metamethods (__tostring) are inherited from `parent`.  Public
-- methods defined on the class afterwards (`function cls:name(...)`) check
-- that self is an instance (checked_method).
function util.class(name, parent)
  local cls = { __name = name }
  cls.__index = cls
  if parent then
    for k, v in pairs(parent) do
      if type(k) == "string" and k:sub(1, 2) == "__" and k ~= "__index" and k ~= "__name" then cls[k] = v end
    end
  end
  return setmetatable(cls, {
    __index = parent,
    __call = function(c, ...)
      local o = setmetatable({}, c)
      o:__init(...)
      return o
    end,
    __newindex = function(c, k, v)
      if type(v) == "function" and type(k) == "string" and k:sub(1, 1) ~= "_" and debug.getlocal(v, 1) == "self" then
        v = checked_method(c, k, v)
      end
      rawset(c, k, v)
    end,
  })
end

--- "7 x 3 x 4" (or "a scalar").
function util.shape_str(t)
  local s = t:shape()
  if #s == 0 then return "a scalar" end
  return table.concat(s, " x ")
end

--- Checks that v is a tensor (of dtype, when given, which is that of `like`:
-- "the layer" unless said otherwise); returns it.
function util.tensor(fn, name, v, dtype, like)
  if not core.is_tensor(v) then
    util.raise(string.format("%s: %s must be a tensor, got %s", fn, name, type(v)))
  end
  if not pcall(v.dim, v) then util.raise(string.format("%s: %s was freed (t:free()) and cannot be used", fn, name)) end
  if dtype and v:dtype() ~= dtype then
    util.raise(string.format("%s: %s must be %s like %s, got %s", fn, name, dtype, like or "the layer", v:dtype()))
  end
  return v
end

--- Checks the tensor's shape against `want` (numbers; a string entry is a
-- name, e.g. "T", matching any size).  `names` describe the expected shape.
function util.shape(fn, name, t, want)
  local s = t:shape()
  local ok = #s == #want
  for i = 1, #want do
    if ok and type(want[i]) == "number" and s[i] ~= want[i] then ok = false end
  end
  if not ok then
    local w = {}
    for i = 1, #want do w[i] = tostring(want[i]) end
    util.raise(string.format("%s: %s must be %s, got %s", fn, name, table.concat(w, " x "), util.shape_str(t)))
  end
end

--- The option table of a constructor: errors on unknown keys (a typo such as
-- `hiden` must not pass silently).
function util.options(fn, opts, allowed)
  if type(opts) ~= "table" then
    util.raise(string.format("%s: expected a table of options, got %s", fn, type(opts)))
  end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for a in pairs(allowed) do names[#names + 1] = a end
      table.sort(names)
      util.raise(string.format("%s: unknown option %q (options: %s)", fn, tostring(k), table.concat(names, ", ")))
    end
  end
  return opts
end

--- How a message shows a value it did not expect: 5, string '5', nil, a table.
function util.got(v)
  local t = type(v)
  if t == "string" then return string.format("string '%s'", v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  return "a " .. t
end

function util.count(fn, name, v, min, default)
  if v == nil then v = default end
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > 2 ^ 31 then
    util.raise(string.format("%s: %s must be a whole number >= %d, got %s", fn, name, min, util.got(v)))
  end
  return v
end

function util.dtype(fn, v)
  v = v or "float32"
  if v ~= "float32" and v ~= "float64" then
    util.raise(string.format("%s: dtype must be \"float32\" or \"float64\", got %s", fn, tostring(v)))
  end
  return v
end

--- The shortest decimal that reads back as exactly x (for metadata strings).
function util.numstr(x)
  for digits = 15, 16 do
    local s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end

--- "[3][2]": the Lua indices of flat (1-based, row-major) position pos in shape.
function util.index_str(shape, pos)
  local idx, rest = {}, pos - 1
  for d = #shape, 1, -1 do
    idx[d] = rest % shape[d] + 1
    rest = math.floor(rest / shape[d])
  end
  local parts = {}
  for d = 1, #shape do parts[d] = "[" .. idx[d] .. "]" end
  return table.concat(parts)
end

--- ids (any shape, int32 or floats holding whole numbers) as a contiguous int32
-- tensor: the tensor itself when it already is one, else a copy into buf
-- (reused when the size matches).  Returns ids, buf.
function util.index_tensor(fn, name, ids, buf)
  if ids:dtype() == "int32" and ids:is_contiguous() then return ids, buf end
  local n = ids:numel()
  if buf == nil or buf:numel() ~= n then buf = core.zeros(n, "int32") end
  local bad = core.to_index(ids, buf)
  if bad then
    util.raise(string.format("%s: %s%s is %s, expected a whole number", fn, name,
      util.index_str(ids:shape(), bad), tostring(ids:contiguous():view(-1):get(bad))))
  end
  return buf:view(ids:shape()), buf
end

return util
