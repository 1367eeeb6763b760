-- Train a character-level language model, char-rnn style.
--
--   luajit examples/charlm/train.lua --data input.txt --cell lstm --hidden 256 --layers 2 --out out/shakespeare
--   luajit examples/charlm/train.lua --resume out/shakespeare/checkpoint.safetensors --max-iters 4000
--
-- The program is bin/bptt-train (installed with the rock as the command
-- `bptt-train`); this runs it from any working directory.  --help lists the
-- options.
local dir = (debug.getinfo(1, "S").source or ""):match("^@(.*)/[^/]*$") or "."
assert(loadfile(dir .. "/../../bin/bptt-train"))({ prog = "train.lua" })
