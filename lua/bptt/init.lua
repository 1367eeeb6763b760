--- bptt: recurrent neural networks for LuaJIT.
-- `local bptt = require "bptt"` gives one table: the native tensor core
-- (bptt.core, registered into this table) and the Lua modules built on it.
local core = require "bptt.core"

local bptt = {}
for k, v in pairs(core) do bptt[k] = v end
bptt.core = core
bptt.version = "scm"

return bptt
