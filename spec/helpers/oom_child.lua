-- The child process of spec/resources_spec.lua, run from the top of the
-- repository with LUA_PATH/LUA_CPATH set:
--
--   luajit spec/helpers/oom_child.lua measure
--       makes the model and tensors, runs them once, prints "VSZ <bytes>"
--   luajit spec/helpers/oom_child.lua test <bytes>
--       the same, then asks for allocations of about <bytes> each (more than
--       the address-space limit the spec set, or than the allocator allows),
--       checks each is a Lua error naming the function and saying it cannot
--       allocate, and that what existed before still holds its values and
--       still runs; prints "OK" at the end, or the first failure.
local bptt = require "bptt"

local mode, huge = arg[1], tonumber(arg[2] or "")

local function vsz()
  local f = assert(io.open("/proc/self/statm"))
  local pages = tonumber(f:read("*l"):match("^(%d+)"))
  f:close()
  return pages * 4096
end

bptt.set_num_threads(1)
bptt.manual_seed(3)
local a = bptt.randn(100, 100)
local a_view = a:narrow(1, 11, 20):t()
local lm = bptt.LanguageModel{ vocab = 20, embed = 8, cell = "lstm", hidden = 16, layers = 2 }
lm.carry_state = false
local opt = bptt.optim.adam(lm, { lr = 1e-2 })
local ce = bptt.CrossEntropy()
local ids = bptt.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10, 11, 12 } }, "int32") -- T = 3, B = 4
local rnn = bptt.RNN{ cell = "gru", input = 4, hidden = 8 }
local x = bptt.randn(5, 2, 4)

local function run_model()
  opt:zero_grad()
  local loss = ce:forward(lm:forward(ids), ids)
  lm:backward(ce:backward())
  return loss
end
local a_sum, a_view_sum = a:sum(), a_view:sum()
local loss0 = run_model()
local flat0 = lm:flat_parameters():clone()
local y0 = rnn:forward(x):clone()

if mode == "measure" then
  print(string.format("VSZ %d", vsz()))
  os.exit(0)
end
assert(mode == "test" and huge, "usage: oom_child.lua measure | test <bytes>")

local function fails(what, needle, f, ...)
  local ok, err = pcall(f, ...)
  if ok then error(what .. ": succeeded, an allocation failure was expected", 0) end
  err = tostring(err)
  local oom = err:find("cannot allocate", 1, true) or err:find("out of memory", 1, true)
  if not err:find(needle, 1, true) or not oom then
    error(what .. ": unexpected message: " .. err, 0)
  end
end

local elems = math.floor(huge / 4) -- float32
local side = math.ceil(math.sqrt(elems))
local ok, err = pcall(function()
  fails("zeros", "bptt.zeros", bptt.zeros, elems)
  fails("ones (2-d)", "bptt.ones", bptt.ones, side, side)
  fails("randn", "bptt.randn", bptt.randn, elems)
  fails("zeros float64", "bptt.zeros", bptt.zeros, elems, "float64")
  -- a small product with a huge result
  fails("matmul", "bptt.matmul", bptt.matmul, bptt.ones(side, 1), bptt.ones(1, side))
  -- (first, while nothing else holds memory) a tanh layer whose output
  -- buffer fits but whose scratch, as large, does not: the layer must keep
  -- its old buffers, not half of the new ones
  -- (Under ASan, which limits each block rather than the total, it cannot be
  -- arranged.)
  if not (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true) then
    local rnn2 = bptt.RNN{ cell = "tanh", input = 1, hidden = 8 }
    rnn2:forward(bptt.ones(3, 2, 1))
    local T2 = math.floor(huge * 5 / 32 / (2 * 8 * 4)) -- y: 5/32 of huge, x and dx 1/8 of that
    fails("RNN:forward (scratch)", "bptt.RNN:forward", rnn2.forward, rnn2, bptt.zeros(T2, 2, 1))
    local y3 = rnn2:forward(bptt.ones(10, 2, 1)) -- longer than before the failure
    rnn2:backward(y3)
  end
  -- a layer whose buffers for a long input do not fit: x itself is small
  local T = math.floor(elems / (2 * 8) / 2)
  local long = bptt.zeros(T, 2, 1)
  local rnn1 = bptt.RNN{ cell = "lstm", input = 1, hidden = 8 }
  local y1 = rnn1:forward(bptt.ones(3, 2, 1)):clone()
  fails("RNN:forward", "bptt.RNN:forward", rnn1.forward, rnn1, long)
  -- the layer is as it was: same buffers, same results, backward works
  local y2 = rnn1:forward(bptt.ones(3, 2, 1))
  assert((y2 - y1):norm() == 0, "RNN:forward after the failure differs")
  rnn1:backward(y2)
  -- a model too big to make
  fails("LanguageModel", "cannot allocate", function()
    return bptt.LanguageModel{ vocab = 10, embed = 8, cell = "gru", hidden = side, layers = 1 }
  end)
  -- a batch of ids too big for the model's buffers
  local wide = math.floor(elems / 20)
  fails("LanguageModel:forward", "bptt.", lm.forward, lm, bptt.ones(1, wide, "int32"))
end)
if not ok then
  print("FAILED: " .. tostring(err))
  os.exit(1)
end

-- everything made before is intact and still works
local function check(cond, what) if not cond then print("FAILED: " .. what) os.exit(1) end end
check(a:sum() == a_sum and a_view:sum() == a_view_sum, "a tensor changed")
check((lm:flat_parameters() - flat0):norm() == 0, "the model's weights changed")
check(run_model() == loss0, "the model computes something else")
opt:step()
check((lm:flat_parameters() - flat0):norm() > 0, "the optimizer does not step")
check((rnn:forward(x) - y0):norm() == 0, "the RNN computes something else")
local fresh = bptt.ones(1000)
check(fresh:sum() == 1000, "a new tensor")
print("OK")
