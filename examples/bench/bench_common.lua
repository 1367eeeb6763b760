-- What the benchmark scripts share: list parsing, medians and timing, the
-- child-process protocol (one line of key=value pairs), /proc figures, and
-- the char-LM training step that step.lua times and memory.lua measures.
--
--   local C = require "bench_common"     -- the scripts put examples/bench/ on package.path
local bptt = require "bptt"

local C = {}

C.VOCAB, C.EMBED = 65, 64

--- "a,b,c" -> {"a", "b", "c"} (each item through conv when given).
function C.list(s, conv)
  local out = {}
  for item in s:gmatch("[^,]+") do out[#out + 1] = conv and conv(item) or item end
  return out
end

function C.median(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) / 2] or 0.5 * (xs[n / 2] + xs[n / 2 + 1])
end

--- Median seconds of f over iters calls, after warmup untimed ones.
function C.timed(f, warmup, iters)
  for _ = 1, warmup do f() end
  local ts = {}
  for i = 1, iters do
    local t0 = bptt.clock()
    f()
    ts[i] = bptt.clock() - t0
  end
  return C.median(ts)
end

--- Output of a shell command.
function C.run(cmd)
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  return out
end

--- The numbers of a "key=value key=value" line, as a table.
function C.kv(out)
  local t = {}
  for k, v in out:gmatch("([%w_]+)=([%d.e+-]+)") do t[k] = tonumber(v) end
  return t
end

--- kB of a /proc/self/status field (VmRSS, VmHWM); nil off Linux.
function C.status_kb(key)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(key .. ":%s*(%d+)"))
end

--- lm, step: char-rnn's training step on a fixed random batch: zero_grad;
-- Embedding(65 -> 64) -> RNN -> Linear(-> 65); cross-entropy; backward;
-- clip_grad_norm(5); Adam (lr 2e-3).
function C.charlm_step(cell, H, L, B, T)
  local V = C.VOCAB
  local lm = bptt.LanguageModel{ vocab = V, embed = C.EMBED, cell = cell, hidden = H, layers = L }
  local ce = bptt.CrossEntropy()
  local opt = bptt.optim.adam(lm, { lr = 2e-3 })
  local x, y = bptt.zeros(T, B, "int32"), bptt.zeros(T, B, "int32")
  for t = 1, T do
    for b = 1, B do
      x:set(t, b, bptt.random(V))
      y:set(t, b, bptt.random(V))
    end
  end
  local function step()
    opt:zero_grad()
    local logits = lm:forward(x)
    ce:forward(logits, y)
    lm:backward(ce:backward())
    bptt.clip_grad_norm(lm, 5)
    opt:step()
  end
  return lm, step
end

return C
