--- Shared helpers for the layer specs: tensors from fixture tables, relative
-- comparisons ("max |got - want| relative to the largest |want|"), parameter
-- snapshots, and Outputs, a wrapper that keeps some of an RNN's outputs so
-- that bptt.gradcheck differentiates only those.
local bptt = require "bptt"

local N = {}

--- Tolerances of the issue: gradcheck error in float64, and agreement with
-- the PyTorch fixtures relative to the largest |value| of each quantity.
N.tol = { gradcheck = 1e-7, float64 = 1e-9, float32 = 1e-4 }

--- Under valgrind (make valgrind sets BPTT_SPEC_LIGHT) gradcheck samples a
-- few elements of each tensor instead of all of them.
N.light = (os.getenv("BPTT_SPEC_LIGHT") or "") ~= ""
N.gradcheck_opts = N.light and { max_per_tensor = 3 } or nil

--- A tensor from a fixture table {shape = {...}, data = {...}} (row-major).
function N.from_fixture(f, dtype)
  assert(type(f) == "table" and f.shape and f.data, "not a fixture tensor {shape=, data=}")
  return bptt.tensor(f.data, dtype or "float64"):view(f.shape)
end

--- The elements of a tensor (any shape), or of a fixture table, as a flat
-- Lua list in row-major order.
function N.flat(t)
  if type(t) == "table" then return t.data end
  return t:contiguous():view(-1):totable()
end

local function shape_of(t)
  if type(t) == "table" then return t.shape end
  return t:shape()
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

--- max |got - want| / max(|want|) over all elements (NaN anywhere counts as
-- infinitely wrong, unless both are NaN at the same place).  Returns the
-- relative error, the absolute one and the scale.
function N.rel_err(got, want)
  local g, w = N.flat(got), N.flat(want)
  assert(#g == #w, string.format("%d elements, want %d", #g, #w))
  local diff, scale = 0, 0
  for i = 1, #w do
    local a, b = g[i], w[i]
    local d
    if a ~= a or b ~= b then
      d = (a ~= a and b ~= b) and 0 or math.huge
    else
      d = math.abs(a - b)
      if math.abs(b) > scale then scale = math.abs(b) end
    end
    if d > diff then diff = d end
  end
  if scale == 0 then return diff, diff, scale end
  return diff / scale, diff, scale
end

--- Asserts got (a tensor) has want's shape and is within rel of it, relative
-- to the largest |want|; `what` names the quantity in the message.
function N.assert_rel(got, want, rel, what)
  what = what or "value"
  local gs, ws = shape_of(got), shape_of(want)
  assert(same_shape(gs, ws), string.format("%s: shape %s, want %s", what, table.concat(gs, " x "),
    table.concat(ws, " x ")))
  local err, diff, scale = N.rel_err(got, want)
  assert(err <= rel, string.format("%s: relative error %.3g (max |diff| %.3g, max |want| %.3g) > %g",
    what, err, diff, scale, rel))
  return err
end

--- Asserts bit-for-bit equality (same shape, same numbers, NaN where NaN).
function N.assert_equal(got, want, what)
  return N.assert_rel(got, want, 0, what)
end

--- Asserts that a gradcheck report is below tol everywhere; returns it.
function N.assert_gradcheck(report, tol, what)
  tol = tol or N.tol.gradcheck
  local n = 0
  for _ in pairs(report.errors) do n = n + 1 end
  assert(n > 0, (what or "gradcheck") .. ": nothing was checked")
  assert(report.max_error < tol, string.format("%s: gradcheck error %.3g in %s (tolerance %g)",
    what or "gradcheck", report.max_error, tostring(report.worst), tol))
  return report
end

--- A copy of all of m's parameters (or gradients when grads is true), as
-- one flat float64 tensor.
function N.snapshot(m, grads)
  local p, g = m:flat_parameters()
  return (grads and g or p):to("float64")
end

--- name -> clone of every gradient of m.
function N.grads(m)
  local _, g = m:parameters()
  local out = {}
  for name, t in pairs(g) do out[name] = t:clone() end
  return out
end

--- Outputs(m, keep): a module around m (an RNN) whose forward returns only
-- the outputs named in keep, in this order: "y", "hT", "cT"; its backward
-- takes their gradients and passes nil for the others, so that gradcheck,
-- which differentiates L = sum_k <out_k, R_k>, checks BPTT driven by only
-- dy, only dhT, only dcT, or any mix.
local ORDER = { "y", "hT", "cT" }

function N.Outputs(m, keep)
  local want = {}
  for _, k in ipairs(keep) do
    assert(k == "y" or k == "hT" or k == "cT", "Outputs: unknown output " .. tostring(k))
    want[k] = true
  end
  local w = {}
  function w:forward(...)
    local outs = { m:forward(...) }
    local ret = {}
    for i, name in ipairs(ORDER) do
      if want[name] then
        assert(outs[i] ~= nil, "Outputs: the module has no output " .. name)
        ret[#ret + 1] = outs[i]
      end
    end
    return unpack(ret)
  end
  function w:backward(...)
    local g, j = {}, 0
    for _, name in ipairs(ORDER) do
      if want[name] then
        j = j + 1
        g[name] = select(j, ...)
      end
    end
    if m.cell == "lstm" then return m:backward(g.y, g.hT, g.cT) end
    return m:backward(g.y, g.hT)
  end
  function w:parameters() return m:parameters() end
  function w:zero_grad() m:zero_grad() return self end
  return w
end

--- error_with(needles, f, ...): see spec/helpers/tensor_util.lua
N.error_with = require("helpers.tensor_util").error_with

--- Has the (flat) tensor at least one NaN?  Are all its elements finite?
function N.has_nan(t)
  for _, v in ipairs(N.flat(t)) do if v ~= v then return true end end
  return false
end

function N.all_finite(t)
  for _, v in ipairs(N.flat(t)) do
    if v ~= v or v == math.huge or v == -math.huge then return false end
  end
  return true
end

return N
