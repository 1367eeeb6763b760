--- bptt.gradcheck: checks a module's backward against central finite
-- differences, for every parameter and every real input.
--
--   local report = bptt.gradcheck(m, {x, h0}, {eps = 1e-6})
--   print(report.max_error)            -- worst over everything
--   for name, e in pairs(report.errors) do print(name, e) end   -- "weight_hh_l0", "input 1", ...
--
-- m follows the layer protocol (forward/backward/parameters), so this works
-- for a single layer and for a model a user composed.  The module and its
-- inputs must be float64 (float32 rounding swamps finite differences; a
-- float32 parameter or input is an error saying so).  A module that carries
-- state from one forward to the next (m:get_state / m:set_state, as
-- bptt.LanguageModel) is put back into the state it had before every
-- evaluation; afterwards m is as after one forward and backward from it.  tostring(report) lists the errors.
--
-- The scalar that is differentiated is L = sum_k <out_k, R_k> over the tensor
-- outputs of m:forward (R_k fixed random tensors, passed to m:backward as the
-- output gradients) plus every number m:forward returns (a loss).  The error
-- of one element is |analytic - numeric| / max(1, |analytic|, |numeric|); a
-- tensor's error is the worst of its elements.  Random draws inside forward
-- (dropout) are replayed identically: the generator state is restored before
-- every evaluation.
local core = require "bptt.core"

local OPTIONS = { eps = true, max_per_tensor = true, seed = true }

local function loss_of(outs, R)
  local L = 0
  for k, o in ipairs(outs) do
    if type(o) == "number" then
      L = L + o
    elseif core.is_tensor(o) and R[k] then
      local p = o:clone():to("float64")
      p:cmul(R[k]:to("float64"))
      L = L + p:sum()
    end
  end
  return L
end

-- tostring(report): "bptt.gradcheck: max_error 2.1e-09 (weight_hh_l0)" and
-- one line per checked tensor
local Report = {}
Report.__index = Report
function Report.__tostring(r)
  local names = {}
  for name in pairs(r.errors) do names[#names + 1] = name end
  table.sort(names)
  local worst = r.worst and (" (" .. r.worst .. ")") or ""
  local lines = { string.format("bptt.gradcheck: max_error %.3g%s", r.max_error, worst) }
  for _, name in ipairs(names) do lines[#lines + 1] = string.format("  %-24s %.3g", name, r.errors[name]) end
  return table.concat(lines, "\n")
end

local function pack(...) return { n = select("#", ...), ... } end

-- Positions (flat, 1-based) to check in a tensor of n elements: all, or an
-- evenly spread sample of at most `most`.
local function positions(n, most)
  local out = {}
  if n <= most then
    for i = 1, n do out[i] = i end
  else
    for i = 1, most do out[i] = math.floor((i - 1) * (n - 1) / (most - 1)) + 1 end
  end
  return out
end

local function gradcheck(m, inputs, opts)
  local fn = "bptt.gradcheck"
  if type(m) ~= "table" or type(m.forward) ~= "function" or type(m.backward) ~= "function" then
    error(fn .. ": m must be a module with forward and backward", 2)
  end
  inputs = inputs or {}
  if type(inputs) ~= "table" then error(fn .. ": inputs must be a list (table), got " .. type(inputs), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error(fn .. ": opts must be a table of options, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(fn .. ": unknown option " .. tostring(k) .. " (eps, max_per_tensor, seed)", 2) end
  end
  local eps = opts.eps or 1e-6
  if type(eps) ~= "number" or not (eps > 0 and eps < math.huge) then
    error(fn .. ": eps must be a number > 0, got " .. tostring(opts.eps), 2)
  end
  local most = opts.max_per_tensor or 1e9
  if type(most) ~= "number" or most ~= math.floor(most) or most < 2 then
    error(fn .. ": max_per_tensor must be a whole number >= 2, got " .. tostring(opts.max_per_tensor), 2)
  end
  local seed = opts.seed
  if seed ~= nil and (type(seed) ~= "number" or seed ~= math.floor(seed) or math.abs(seed) > 2 ^ 53) then
    error(fn .. ": seed must be a whole number, got " .. tostring(opts.seed), 2)
  end
  local ninputs = inputs.n or #inputs
  local params0 = m.parameters and m:parameters() or {}
  local function need64(what, t)
    if t:dtype() == "float32" then
      error(string.format("%s: %s is float32: finite differences need float64 (make the module and its inputs "
        .. "with dtype = \"float64\")", fn, what), 3)
    end
  end
  local names = {}
  for name in pairs(params0) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do need64("parameter " .. name, params0[name]) end
  for i = 1, ninputs do
    if core.is_tensor(inputs[i]) then need64("input " .. i, inputs[i]) end
  end

  local state = core.rng_state()
  -- carried state (a LanguageModel's h, c): every evaluation starts from it
  local carried = m.get_state and m.set_state and m:get_state()
  local function run()
    core.set_rng_state(state)
    if carried ~= nil or (m.get_state and m.set_state) then
      m:set_state(carried and { h = carried.h and carried.h:clone(), c = carried.c and carried.c:clone() } or nil)
    end
    return pack(m:forward(unpack(inputs, 1, ninputs)))
  end

  -- analytic gradients
  local outs = run()
  local R, gouts = {}, {}
  local saved = core.rng_state()
  core.manual_seed(opts.seed or 1234)
  for k = 1, outs.n do
    local o = outs[k]
    if core.is_tensor(o) then
      R[k] = core.randn(o:shape(), o:dtype() == "int32" and "float64" or o:dtype())
      gouts[#gouts + 1] = R[k]
    end
  end
  core.set_rng_state(saved)
  local params, grads = {}, {}
  if m.parameters then params, grads = m:parameters() end
  if m.zero_grad then m:zero_grad() end
  local gins = pack(m:backward(unpack(gouts)))
  local analytic = {}
  for name, g in pairs(grads) do analytic[name] = g:clone() end
  for i = 1, ninputs do
    if core.is_tensor(inputs[i]) and inputs[i]:dtype() ~= "int32" and core.is_tensor(gins[i]) then
      analytic["input " .. i] = gins[i]:clone()
    end
  end

  -- numeric gradients, element by element (a debugging tool: per-element
  -- access from Lua is fine here)
  local targets = {}
  for name, p in pairs(params) do targets[name] = p end
  for i = 1, ninputs do
    if analytic["input " .. i] then targets["input " .. i] = inputs[i] end
  end
  local report = setmetatable({ errors = {}, max_error = 0, worst = nil }, Report)
  for name, t in pairs(targets) do
    local a = analytic[name]:contiguous():view(-1)
    local shape = t:shape()
    local worst = 0
    for _, pos in ipairs(positions(t:numel(), most)) do
      local idx, rest = {}, pos - 1
      for d = #shape, 1, -1 do
        idx[d] = rest % shape[d] + 1
        rest = math.floor(rest / shape[d])
      end
      local v = t:get(unpack(idx))
      idx[#shape + 1] = v + eps
      t:set(unpack(idx))
      local lp = loss_of(run(), R)
      idx[#shape + 1] = v - eps
      t:set(unpack(idx))
      local lm = loss_of(run(), R)
      idx[#shape + 1] = v
      t:set(unpack(idx))
      local num = (lp - lm) / (2 * eps)
      local ana = a:get(pos)
      local err = math.abs(ana - num) / math.max(1, math.abs(ana), math.abs(num))
      if err ~= err then err = math.huge end
      if err > worst then worst = err end
    end
    report.errors[name] = worst
    if report.worst == nil or worst > report.max_error then report.max_error, report.worst = worst, name end
  end
  core.set_rng_state(state)
  -- leave m as the analytic pass left it: gradients of one backward
  if m.zero_grad then m:zero_grad() end
  run()
  m:backward(unpack(gouts))
  return report
end

return gradcheck
