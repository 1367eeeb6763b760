-- What the sequence examples (classify, tagger, seq2seq) share, loaded with
--   local common = dofile(<the script's folder> .. "/../common.lua")
-- Loading it puts the library on the paths: the checkout this file sits in,
-- unless LUA_PATH / LUA_CPATH find one (then the rock, or the build under
-- test).
local root = ((debug.getinfo(1, "S").source or ""):match("^@(.*)/[^/]*$") or ".") .. "/.."
if not (os.getenv("LUA_PATH") and package.searchpath("bptt", package.path)) then
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
end
if not (os.getenv("LUA_CPATH") and package.searchpath("bptt.core", package.cpath)) then
  package.cpath = root .. "/build/?.so;" .. package.cpath
end

local common = {}

--- The data's own generator, so that the data do not depend on bptt's
-- (which draws the weights): Park and Miller's minimal standard,
-- s <- 48271 s mod (2^31 - 1), exact in doubles (the product stays below
-- 2^47; a multiplier near 2^30 would lose low bits and cycle within a few
-- thousand draws).  Returns rand() -> uniform on [0, 1); `salt` keeps the
-- examples' streams apart for one seed.
function common.generator(seed, salt)
  local s = (seed * 7919 + salt) % 2147483646 + 1
  return function()
    s = (s * 48271) % 2147483647
    return (s - 1) / 2147483646
  end
end

return common
