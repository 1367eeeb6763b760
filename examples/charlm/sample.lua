-- Sample from (or score a text with) a model trained by train.lua.
--
--   luajit examples/charlm/sample.lua out/charlm/checkpoint.safetensors --prime "ROMEO:" --length 500 --temperature 0.8
--   luajit examples/charlm/sample.lua out/charlm/checkpoint.safetensors --score "To be, or not to be"
--
-- The program is bin/bptt-sample (installed with the rock as the command
-- `bptt-sample`); this runs it from any working directory.
local dir = (debug.getinfo(1, "S").source or ""):match("^@(.*)/[^/]*$") or "."
assert(loadfile(dir .. "/../../bin/bptt-sample"))({ prog = "sample.lua" })
