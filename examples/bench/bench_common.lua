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

--- The machine, for the tables: "CPU model, N cores (flags), M GiB".
function C.machine()
  local f = io.open("/proc/cpuinfo")
  if not f then return "unknown machine (no /proc/cpuinfo)" end
  local s = f:read("*a")
  f:close()
  local model = s:match("model name%s*:%s*([^\n]+)") or "unknown CPU"
  local n = 0
  for _ in s:gmatch("\nprocessor%s*:") do n = n + 1 end
  if s:match("^processor%s*:") then n = n + 1 end
  local flags, have = s:match("\nflags%s*:%s*([^\n]+)") or "", {}
  for w in flags:gmatch("%S+") do have[w] = true end
  local shown = {}
  for _, w in ipairs{ "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16" } do
    if have[w] then shown[#shown + 1] = w end
  end
  local mem = C.run("cat /proc/meminfo 2>/dev/null"):match("MemTotal:%s*(%d+)")
  return string.format("%s, %d logical cores (%s)%s", model, n, #shown > 0 and table.concat(shown, " ") or "no AVX2",
    mem and string.format(", %.0f GiB", tonumber(mem) / 2 ^ 20) or "")
end

-- The OpenBLAS variables a machine-wide setting may force (these build
-- machines set OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512; users' machines
-- usually set neither, and OpenBLAS then picks its kernel for the CPU).
C.BLAS_VARS = { "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE" }

--- "VAR=value ..." of the BLAS_VARS set in this process's environment, or nil.
function C.blas_vars_set()
  local set = {}
  for _, k in ipairs(C.BLAS_VARS) do
    local v = os.getenv(k)
    if v then set[#set + 1] = k .. "=" .. v end
  end
  return #set > 0 and table.concat(set, " ") or nil
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
C.quote = q

--- Unless inherit, runs this script again with BLAS_VARS removed from the
-- environment (OpenBLAS reads them once, when loaded: before this script's
-- first line, so a re-run is the only way) and exits with its status; returns
-- when there is nothing to remove, or inherit.  The re-run's output says what
-- was removed (BPTT_BENCH_BLAS_REMOVED).
function C.clean_blas_env(inherit)
  local set = C.blas_vars_set()
  if inherit or not set then return end
  local cmd = { "env" }
  for _, k in ipairs(C.BLAS_VARS) do cmd[#cmd + 1] = "-u " .. k end
  cmd[#cmd + 1] = "BPTT_BENCH_BLAS_REMOVED=" .. q(set)
  cmd[#cmd + 1] = q(arg[-1] or "luajit")
  for i = 0, #arg do cmd[#cmd + 1] = q(arg[i]) end
  io.stdout:flush()
  local ok, _, code = os.execute(table.concat(cmd, " "))
  if type(ok) == "number" then code = ok / 256 end -- Lua 5.1 / LuaJIT without 5.2 compat
  os.exit(code or (ok and 0 or 1))
end

--- The line naming bptt's OpenBLAS: its config (version, kernel) and where the
-- kernel choice came from.
function C.bptt_blas_line()
  local removed = os.getenv("BPTT_BENCH_BLAS_REMOVED")
  local set = C.blas_vars_set()
  return string.format("bptt's OpenBLAS: %s (%s)", bptt.blas_config(),
    removed and ("this machine's " .. removed .. " removed, as on a user's machine")
      or set and ("the inherited " .. set .. ", --blas-env inherit")
      or "no OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE set: the kernel OpenBLAS picks for this CPU")
end

--- The line naming PyTorch's setting, from one of its output lines' fields.
function C.torch_line(r)
  if not r then return "PyTorch: no result" end
  return string.format("PyTorch %s: its OpenBLAS runs the %s kernel (OPENBLAS_CORETYPE/L2_SIZE %s), malloc %s, "
    .. "OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = its thread count and OMP_WAIT_POLICY=PASSIVE on more than one "
    .. "thread, set before torch loads", r.torch or "?", r.blas or "?",
    r.blas_env == "inherit" and "inherited" or "removed", r.malloc or "?")
end

--- The fields of a "key=value" line, numbers and words alike, as strings.
function C.kv_str(out)
  local t = {}
  for k, v in out:gmatch("([%w_]+)=(%S+)") do t[k] = v end
  return t
end

--- Relative difference |a - b| / max(|a|, |b|, tiny).
function C.rel(a, b)
  if not (a and b) then return nil end
  return math.abs(a - b) / math.max(math.abs(a), math.abs(b), 1e-30)
end

--- lm, step, data: char-rnn's training step on a fixed random batch: zero_grad;
-- Embedding(65 -> 64) -> RNN -> Linear(-> 65); cross-entropy; backward;
-- clip_grad_norm(5); Adam (lr 2e-3).  step() returns the loss; data = {x, y}
-- (T x B int32 ids, 1-based).
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
    local loss = ce:forward(logits, y)
    lm:backward(ce:backward())
    bptt.clip_grad_norm(lm, 5)
    opt:step()
    return loss
  end
  return lm, step, { x = x, y = y }
end

return C
