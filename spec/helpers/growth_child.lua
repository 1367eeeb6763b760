-- The training steps of spec/resources_spec.lua's "no growth" check, as a
-- module (train) and as a child process of its own, run from the top of the
-- repository with LUA_PATH/LUA_CPATH set:
--
--   luajit spec/helpers/growth_child.lua <steps> <warm> <samples> clean|leak
--       prints "drss=<bytes> dheap=<bytes>": the largest growth of the
--       resident size and of the live Lua heap after step <warm>
--
-- A tiny char-LM trained step by step, as bptt.Trainer does; "leak" keeps
-- one 16-float tensor per step (the check must see that).
local bptt = require "bptt"
local rss = require("helpers.tensor_util").rss

local G = {}

function G.train(steps, warm, samples, leak)
  local before = bptt.num_threads()
  bptt.set_num_threads(1)
  bptt.manual_seed(5)
  local lm = bptt.LanguageModel{ vocab = 10, embed = 4, cell = "lstm", hidden = 8, layers = 2 }
  local ce = bptt.CrossEntropy()
  local opt = bptt.optim.adam(lm, { lr = 1e-3 })
  local x, y = bptt.zeros(4, 2, "int32"), bptt.zeros(4, 2, "int32")
  for t = 1, 4 do
    for b = 1, 2 do
      x:set(t, b, bptt.random(10))
      y:set(t, b, bptt.random(10))
    end
  end
  local kept = {} -- luacheck: ignore 241 (the planted leak: held, never read)
  local function step(i)
    opt:zero_grad()
    ce:forward(lm:forward(x), y)
    lm:backward(ce:backward())
    bptt.clip_grad_norm(lm, 5)
    opt:step()
    if leak then kept[i] = bptt.zeros(16) end
  end
  local function measure()
    collectgarbage()
    collectgarbage()
    return rss(), collectgarbage("count") * 1024
  end
  -- the same rhythm (a full collection every `every` steps) before and
  -- after the reference point, so that nothing settles only after it
  local every = (steps - warm) / samples
  local rss0, heap0
  local drss, dheap = 0, 0
  for i = 1, steps do
    step(i)
    if i % every == 0 or i == warm then
      local r, heap = measure()
      if i == warm then
        rss0, heap0 = r, heap
      elseif i > warm then
        drss, dheap = math.max(drss, r - rss0), math.max(dheap, heap - heap0)
      end
    end
  end
  local s = lm:forward(x):sum()
  assert(s == s, "the model went NaN")
  bptt.set_num_threads(before)
  return drss, dheap
end

if arg and arg[0] and arg[0]:match("growth_child%.lua$") then
  local steps, warm, samples = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
  local drss, dheap = G.train(steps, warm, samples, arg[4] == "leak")
  io.write(string.format("drss=%d dheap=%d\n", drss, dheap))
end

return G
