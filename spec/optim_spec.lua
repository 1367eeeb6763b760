-- bptt.optim, bptt.clip_grad_norm / clip_grad_value and bptt.schedule: the
-- "Training" rows of API.md.  Every optimizer runs on a bptt.Linear (2 -> 2,
-- float64: 4 weights and 2 biases in one flat buffer) with gradients set by
-- hand, against the update rules of PyTorch 1.13's torch.optim written out
-- below in plain Lua doubles; then checkpoints, errors, clipping, schedules.
local bptt = require "bptt"
local optim = require "bptt.optim"
local clip = require "bptt.clip"
local schedule = require "bptt.schedule"
local U = require "helpers.tensor_util"

local P0 = { 0.5, -1.0, 0.25, 2.0, -0.75, 0.1 }
-- step s uses G[(s - 1) % 3 + 1]; one element is 0 at step 1 (no move for Adam)
local G = {
  { 0.1, -0.2, 0.3, 0.0, -1.5, 2.0 },
  { 0.05, 0.4, -0.3, 0.2, -1.0, 0.5 },
  { -0.2, 0.1, 0.3, -0.1, 0.5, -0.25 },
}
local function grad_at(s) return G[(s - 1) % #G + 1] end

local function model(dtype, p0)
  local m = bptt.Linear { input = 2, output = 2, dtype = dtype or "float64" }
  local flat = m:flat_parameters()
  p0 = p0 or P0
  for i = 1, #p0 do flat:set(i, p0[i]) end
  return m
end

local function set_grad(m, g)
  local _, flat_grad = m:flat_parameters()
  for i = 1, #g do flat_grad:set(i, g[i]) end
end

local function values(t)
  local out = {}
  for i = 1, t:numel() do out[i] = t:get(i) end
  return out
end

local function params(m) return values((m:flat_parameters())) end

local function copy(list)
  local out = {}
  for i = 1, #list do out[i] = list[i] end
  return out
end

------------------------------------------- the rules, in plain Lua doubles

local ref = {}

function ref.sgd(o)
  local lr, mom, damp, wd = o.lr, o.momentum or 0, o.dampening or 0, o.weight_decay or 0
  local buf
  return function(p, g)
    for i = 1, #p do
      local d = g[i] + wd * p[i]
      if mom ~= 0 then
        buf = buf or {}
        buf[i] = buf[i] == nil and d or mom * buf[i] + (1 - damp) * d
        d = o.nesterov and d + mom * buf[i] or buf[i]
      end
      p[i] = p[i] - lr * d
    end
  end
end

local function ref_adam(o, decoupled)
  local lr, b1, b2 = o.lr, (o.betas or { 0.9, 0.999 })[1], (o.betas or { 0.9, 0.999 })[2]
  local eps, wd = o.eps or 1e-8, o.weight_decay or (decoupled and 0.01 or 0)
  local m, v, vmax, t = {}, {}, {}, 0
  return function(p, g)
    t = t + 1
    for i = 1, #p do
      local d = g[i]
      if decoupled then p[i] = p[i] * (1 - lr * wd) else d = d + wd * p[i] end
      m[i] = b1 * (m[i] or 0) + (1 - b1) * d
      v[i] = b2 * (v[i] or 0) + (1 - b2) * d * d
      local vi = v[i]
      if o.amsgrad then
        vmax[i] = math.max(vmax[i] or 0, v[i])
        vi = vmax[i]
      end
      local denom = math.sqrt(vi) / math.sqrt(1 - b2 ^ t) + eps
      p[i] = p[i] - lr / (1 - b1 ^ t) * m[i] / denom
    end
  end
end
function ref.adam(o) return ref_adam(o, false) end
function ref.adamw(o) return ref_adam(o, true) end

function ref.adagrad(o)
  local lr, decay, wd, eps = o.lr, o.lr_decay or 0, o.weight_decay or 0, o.eps or 1e-10
  local sum, t = {}, 0
  return function(p, g)
    t = t + 1
    local clr = lr / (1 + (t - 1) * decay)
    for i = 1, #p do
      local d = g[i] + wd * p[i]
      sum[i] = (sum[i] or o.initial_accumulator_value or 0) + d * d
      p[i] = p[i] - clr * d / (math.sqrt(sum[i]) + eps)
    end
  end
end

function ref.rmsprop(o)
  local lr, a, eps, wd, mom = o.lr, o.alpha or 0.99, o.eps or 1e-8, o.weight_decay or 0, o.momentum or 0
  local sq, ga, buf = {}, {}, {}
  return function(p, g)
    for i = 1, #p do
      local d = g[i] + wd * p[i]
      sq[i] = a * (sq[i] or 0) + (1 - a) * d * d
      local avg
      if o.centered then
        ga[i] = a * (ga[i] or 0) + (1 - a) * d
        avg = math.sqrt(sq[i] - ga[i] * ga[i]) + eps
      else
        avg = math.sqrt(sq[i]) + eps
      end
      if mom > 0 then
        buf[i] = mom * (buf[i] or 0) + d / avg
        p[i] = p[i] - lr * buf[i]
      else
        p[i] = p[i] - lr * d / avg
      end
    end
  end
end

-- Runs `steps` steps of bptt.optim[kind] and of the reference; compares.
local function check_against_ref(kind, opts, steps, dtype)
  dtype = dtype or "float64"
  local m = model(dtype)
  local opt = optim[kind](m, opts)
  local rstep, p = ref[kind](opts), copy(P0)
  for s = 1, steps do
    set_grad(m, grad_at(s))
    opt:step()
    rstep(p, grad_at(s))
    U.assert_close(params(m), p, dtype == "float64" and 1e-14 or 2e-6, 1, kind .. " step " .. s)
  end
  assert.are.equal(steps, opt.steps)
  return m, opt
end

local CONFIGS = {
  { "sgd", { lr = 0.1 } },
  { "sgd", { lr = 0.1, momentum = 0.9 } },
  { "sgd", { lr = 0.1, momentum = 0.9, dampening = 0.3, weight_decay = 0.05 } },
  { "sgd", { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01 } },
  { "adam", { lr = 0.01 } },
  { "adam", { lr = 0.01, betas = { 0.8, 0.9 }, eps = 1e-6, weight_decay = 0.1 } },
  { "adam", { lr = 0.01, amsgrad = true } },
  { "adam", { lr = 0.01, amsgrad = true, betas = { 0.9, 0.5 } } },
  { "adamw", { lr = 0.01 } },
  { "adamw", { lr = 0.01, weight_decay = 0.1, amsgrad = true } },
  { "adagrad", { lr = 0.1 } },
  { "adagrad", { lr = 0.1, lr_decay = 0.5, weight_decay = 0.1, initial_accumulator_value = 0.2, eps = 1e-3 } },
  { "rmsprop", { lr = 0.01 } },
  { "rmsprop", { lr = 0.01, alpha = 0.9, momentum = 0.5 } },
  { "rmsprop", { lr = 0.01, centered = true, weight_decay = 0.1 } },
  { "rmsprop", { lr = 0.01, centered = true, momentum = 0.9, alpha = 0.8, eps = 1e-4 } },
}

local function config_name(c)
  local keys, parts = {}, {}
  for k in pairs(c[2]) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = c[2][k]
    parts[#parts + 1] = k .. "=" .. (type(v) == "table" and "{" .. table.concat(v, ",") .. "}" or tostring(v))
  end
  return c[1] .. "{" .. table.concat(parts, ", ") .. "}"
end

describe("bptt.optim first steps, worked by hand", function()
  it("sgd: p - lr g", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 0.1 })
    set_grad(m, grad_at(1))
    opt:step()
    U.assert_close(params(m), { 0.49, -0.98, 0.22, 2.0, -0.6, -0.1 }, 1e-15)
  end)

  it("sgd with momentum: the buffer starts as the first gradient, then momentum buf + g", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 0.1, momentum = 0.9 })
    set_grad(m, { 1, 0, 0, 0, 0, 0 })
    opt:step() -- buf = 1, p1 = 0.5 - 0.1
    assert.are.equal(0.4, params(m)[1])
    opt:step() -- buf = 0.9 + 1 = 1.9, p1 = 0.4 - 0.19
    U.assert_close(params(m)[1], 0.21, 1e-15)
    set_grad(m, { 0, 0, 0, 0, 0, 0 })
    opt:step() -- buf = 1.71, p1 = 0.21 - 0.171
    U.assert_close(params(m)[1], 0.039, 1e-14)
  end)

  it("sgd nesterov: p - lr (g + momentum buf)", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 0.1, momentum = 0.5, nesterov = true })
    set_grad(m, { 1, 0, 0, 0, 0, 0 })
    opt:step() -- buf = 1, d = 1 + 0.5 = 1.5
    U.assert_close(params(m)[1], 0.35, 1e-15)
    opt:step() -- buf = 1.5, d = 1 + 0.75
    U.assert_close(params(m)[1], 0.175, 1e-15)
  end)

  it("adam: the first step is lr sign(g) (bias correction), a zero gradient does not move", function()
    local m = model()
    local opt = optim.adam(m, { lr = 0.01 })
    set_grad(m, grad_at(1))
    opt:step()
    local p = params(m)
    for i, g in ipairs(grad_at(1)) do
      local want = g == 0 and P0[i] or P0[i] - 0.01 * g / (math.abs(g) + 1e-8)
      U.assert_close(p[i], want, 1e-15, 1, "p[" .. i .. "]")
    end
    assert.are.equal(2.0, p[4])
  end)

  it("adagrad: the first step is lr g / (|g| + eps); rmsprop's is lr g / (0.1 |g| + eps)", function()
    local m = model()
    local opt = optim.adagrad(m, { lr = 0.1 })
    set_grad(m, { 0.5, 0, 0, 0, 0, 0 })
    opt:step()
    U.assert_close(params(m)[1], 0.5 - 0.1 * 0.5 / (0.5 + 1e-10), 1e-15)
    local m2 = model()
    local opt2 = optim.rmsprop(m2, { lr = 0.01 })
    set_grad(m2, { 0.5, 0, 0, 0, 0, 0 })
    opt2:step() -- square_avg = 0.01 * 0.25, avg = 0.05
    U.assert_close(params(m2)[1], 0.5 - 0.01 * 0.5 / (0.05 + 1e-8), 1e-15)
  end)
end)

describe("bptt.optim against the PyTorch 1.13 rules", function()
  for _, c in ipairs(CONFIGS) do
    it(config_name(c) .. ", float64, 4 steps", function() check_against_ref(c[1], c[2], 4) end)
  end

  it("float32 follows the same rules to float32 precision", function()
    for _, c in ipairs(CONFIGS) do check_against_ref(c[1], c[2], 3, "float32") end
  end)

  it("amsgrad differs from adam once the second moment falls", function()
    local a = check_against_ref("adam", { lr = 0.01, betas = { 0.9, 0.5 } }, 3)
    local b = check_against_ref("adam", { lr = 0.01, betas = { 0.9, 0.5 }, amsgrad = true }, 3)
    assert.are_not.same(params(a), params(b))
  end)

  it("adamw decays the weights apart from the gradient, unlike adam's L2 term", function()
    local a = check_against_ref("adam", { lr = 0.01, weight_decay = 0.1 }, 2)
    local w = check_against_ref("adamw", { lr = 0.01, weight_decay = 0.1 }, 2)
    assert.are_not.same(params(a), params(w))
    -- a zero gradient: adamw only shrinks p by (1 - lr wd) per step
    local m = model()
    local opt = optim.adamw(m, { lr = 0.01, weight_decay = 0.1 })
    set_grad(m, { 0, 0, 0, 0, 0, 0 })
    opt:step()
    opt:step()
    U.assert_close(params(m), { 0.5 * 0.999 ^ 2, -0.999 ^ 2, 0.25 * 0.999 ^ 2, 2 * 0.999 ^ 2,
      -0.75 * 0.999 ^ 2, 0.1 * 0.999 ^ 2 }, 1e-15)
  end)

  it("takes gradients written through m:parameters() views", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 1 })
    local _, grads = m:parameters()
    grads.weight:set(2, 1, 0.5) -- flat position 3
    grads.bias:set(2, -1)       -- flat position 6
    opt:step()
    U.assert_close(params(m), { 0.5, -1.0, -0.25, 2.0, -0.75, 1.1 }, 1e-15)
  end)

  it("reads opt.lr (and every option) at each step", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 0.1 })
    set_grad(m, { 1, 0, 0, 0, 0, 0 })
    opt:step()
    opt.lr = 0.01
    opt:step()
    U.assert_close(params(m)[1], 0.5 - 0.1 - 0.01, 1e-15)
    opt.momentum = 0.5 -- turned on later: the buffer starts as the current gradient
    opt:step()
    U.assert_close(params(m)[1], 0.39 - 0.01, 1e-15)
    opt:step()
    U.assert_close(params(m)[1], 0.38 - 0.015, 1e-15)
  end)

  it("takes a list of modules, float32 and float64 mixed, one state per buffer", function()
    local a, b = model("float64"), model("float32")
    local opt = optim.adam({ a, b }, { lr = 0.01 })
    local ra, rb = ref.adam { lr = 0.01 }, ref.adam { lr = 0.01 }
    local pa, pb = copy(P0), copy(P0)
    for s = 1, 3 do
      set_grad(a, grad_at(s))
      set_grad(b, grad_at(s))
      opt:step()
      ra(pa, grad_at(s))
      rb(pb, grad_at(s))
    end
    U.assert_close(params(a), pa, 1e-14)
    U.assert_close(params(b), pb, 2e-6)
    local tensors = opt:state_dict()
    assert.are.equal("float64", tensors["exp_avg.1"]:dtype())
    assert.are.equal("float32", tensors["exp_avg.2"]:dtype())
  end)

  it("zero_grad zeroes every gradient buffer", function()
    local a, b = model(), model("float32")
    local opt = optim.sgd({ a, b }, { lr = 0.1 })
    set_grad(a, grad_at(1))
    set_grad(b, grad_at(2))
    opt:zero_grad()
    assert.are.same({ 0, 0, 0, 0, 0, 0 }, values(select(2, a:flat_parameters())))
    assert.are.same({ 0, 0, 0, 0, 0, 0 }, values(select(2, b:flat_parameters())))
  end)

  it("keeps stepping the live parameters once a module's parameters were moved into a container", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 0.1 })
    local s = bptt.Sequential{ bptt.Linear{ input = 2, output = 2, dtype = "float64" }, m }
    local flat, grad = s:flat_parameters() -- moves m's parameters into s's buffers
    set_grad(m, grad_at(1))
    opt:step()
    local want = {}
    for i = 1, 6 do want[i] = P0[i] - 0.1 * grad_at(1)[i] end
    U.assert_close(values(flat:narrow(1, 7, 6)), want, 1e-15)
    assert.are.same(values(grad:narrow(1, 7, 6)), grad_at(1))
  end)
end)

describe("bptt.optim over many parameters, split over the library's threads", function()
  it("adam and adamw give the very same parameters and moments on 1 and 2 threads (100,000 parameters)", function()
    local before = bptt.num_threads()
    for _, kind in ipairs({ "adam", "adamw" }) do
      local res = {}
      for _, threads in ipairs({ 1, 2 }) do
        bptt.set_num_threads(threads)
        bptt.manual_seed(4)
        local m = bptt.Linear{ input = 1000, output = 100 }
        local opt = optim[kind](m, { lr = 1e-2, weight_decay = 0.1 })
        local _, grads = m:parameters()
        for _ = 1, 3 do
          for _, g in pairs(grads) do g:copy(bptt.randn(unpack(g:shape()))) end
          opt:step()
        end
        res[threads] = m.params.weight:clone()
      end
      bptt.set_num_threads(before)
      assert.are.equal(0, (res[1] - res[2]):norm(), kind)
    end
  end)
end)

describe("bptt.optim checkpoints", function()
  local function run(_kind, _opts, steps, m, opt, first)
    for s = first or 1, steps do
      set_grad(m, grad_at(s))
      opt:step()
    end
  end

  local function snapshot(tensors)
    local out = {}
    for k, t in pairs(tensors) do out[k] = t:clone() end
    return out
  end

  for _, c in ipairs(CONFIGS) do
    it("N steps, state_dict, a new optimizer, load_state_dict, M steps == N + M steps: " .. config_name(c), function()
      local kind, opts = c[1], c[2]
      local a = model()
      local oa = optim[kind](a, opts)
      run(kind, opts, 5, a, oa)

      local b = model()
      local ob = optim[kind](b, opts)
      run(kind, opts, 3, b, ob)
      local tensors, meta = ob:state_dict()
      tensors = snapshot(tensors)
      for k, v in pairs(meta) do assert.are.equal("string", type(v), k) end

      local c2 = model("float64", params(b))
      local oc = optim[kind](c2, { lr = 123 }) -- load restores every option, lr included
      oc:load_state_dict(tensors, meta)
      assert.are.equal(3, oc.steps)
      assert.are.equal(opts.lr, oc.lr)
      run(kind, opts, 5, c2, oc, 4)
      assert.are.same(params(a), params(c2)) -- bit for bit
    end)
  end

  it("goes through a safetensors file with a prefix, next to the model's tensors", function()
    local a, b = model(), model("float32")
    local opt = optim.adam({ a, b }, { lr = 0.01, amsgrad = true, betas = { 0.8, 0.95 } })
    for s = 1, 2 do
      set_grad(a, grad_at(s))
      set_grad(b, grad_at(s))
      opt:step()
    end
    local tensors, meta = opt:state_dict("optim.")
    assert.are.equal("exp_avg,exp_avg_sq,max_exp_avg_sq", meta["optim.buffers"])
    assert.are.equal("0.8,0.95", meta["optim.betas"])
    assert.are.equal("2", meta["optim.step"])
    tensors["weight"] = a.params.weight
    meta.epoch = "7"
    local path = os.tmpname()
    assert(bptt.save(path, tensors, meta))
    local t2, m2 = bptt.load(path)
    os.remove(path)
    assert(t2, m2)

    local a2, b2 = model("float64", params(a)), model("float32", params(b))
    local opt2 = optim.adam({ a2, b2 }, { lr = 0.5 })
    opt2:load_state_dict(t2, m2, "optim.")
    assert.are.same({ 0.8, 0.95 }, opt2.betas)
    assert.is_true(opt2.amsgrad)
    for _, pair in ipairs({ { a, b, opt }, { a2, b2, opt2 } }) do
      set_grad(pair[1], grad_at(3))
      set_grad(pair[2], grad_at(3))
      pair[3]:step()
    end
    assert.are.same(params(a), params(a2))
    assert.are.same(params(b), params(b2))
  end)

  it("a state at step 0 has no buffers and loads into a fresh optimizer", function()
    local opt = optim.adam(model(), { lr = 0.01 })
    local tensors, meta = opt:state_dict()
    assert.is_nil(next(tensors))
    assert.are.equal("", meta.buffers)
    optim.adam(model(), { lr = 0.01 }):load_state_dict(tensors, meta)
  end)

  it("checks everything first: a bad state leaves the optimizer as it was", function()
    local m = model()
    local opt = optim.adam(m, { lr = 0.01 })
    for s = 1, 3 do
      set_grad(m, grad_at(s))
      opt:step()
    end
    local good_t, good_m = opt:state_dict()
    good_t = (function()
      local out = {}
      for k, t in pairs(good_t) do out[k] = t:clone() end
      return out
    end)()
    local function with(tchange, mchange)
      local t, mm = {}, {}
      for k, v in pairs(good_t) do t[k] = v end
      for k, v in pairs(good_m) do mm[k] = v end
      for k, v in pairs(tchange or {}) do t[k] = v ~= false and v or nil end
      for k, v in pairs(mchange or {}) do mm[k] = v ~= false and v or nil end
      return t, mm
    end
    local fn = "bptt.optim.adam:load_state_dict"
    -- a target whose own state differs, to see that nothing is written
    local target = model()
    local o = optim.adam(target, { lr = 0.02 })
    set_grad(target, grad_at(2))
    o:step()
    local before_t = values(o:state_dict()["exp_avg.1"])
    local cases = {
      { { "state is for \"sgd\"" }, with(nil, { optimizer = "sgd" }) },
      { { "exp_avg.1 must be float64, got float32" }, with({ ["exp_avg.1"] = good_t["exp_avg.1"]:to("float32") }) },
      { { "exp_avg_sq.1 must be 6, got 5" }, with({ ["exp_avg_sq.1"] = bptt.zeros(5, "float64") }) },
      { { "exp_avg.1 must be 6, got 2 x 3" }, with({ ["exp_avg.1"] = bptt.zeros(2, 3, "float64") }) },
      { { "missing tensor \"exp_avg_sq.1\"" }, with({ ["exp_avg_sq.1"] = false }) },
      { { "unexpected tensor \"foo\"" }, with({ foo = bptt.zeros(6, "float64") }) },
      { { "exp_avg.1 must be a tensor" }, with({ ["exp_avg.1"] = "x" }) },
      { { "meta[\"step\"] must be a whole number >= 0, got \"x\"" }, with(nil, { step = "x" }) },
      { { "lr must be a number >= 0, got -1" }, with(nil, { lr = "-1" }) },
      { { "meta[\"betas\"] must be a table {beta1, beta2}" }, with(nil, { betas = "0.9" }) },
      { { "meta[\"amsgrad\"] must be a string, got nil" }, with(nil, { amsgrad = false }) },
      { { "unknown or repeated buffer \"momentum_buffer\"" }, with(nil, { buffers = "exp_avg,momentum_buffer" }) },
      { { "has \"2\" parameter buffers, this optimizer 1" }, with(nil, { pairs = "2" }) },
    }
    for _, case in ipairs(cases) do
      local needles = { fn }
      for _, s in ipairs(case[1]) do needles[#needles + 1] = s end
      U.error_with(needles, o.load_state_dict, o, case[2], case[3])
      assert.are.equal(1, o.steps)
      assert.are.equal(0.02, o.lr)
      assert.are.same(before_t, values(o:state_dict()["exp_avg.1"]))
    end
    U.error_with({ fn, "tensors must be a table" }, o.load_state_dict, o, nil, good_m)
    U.error_with({ fn, "meta must be a table" }, o.load_state_dict, o, good_t, nil)
    -- and the good one loads
    o:load_state_dict(good_t, good_m)
    assert.are.equal(3, o.steps)
  end)
end)

describe("bptt.optim errors", function()
  it("names the function, the option and what was seen", function()
    local m = model()
    U.error_with({ "bptt.optim.adam: lr must be a number >= 0, got nil" }, optim.adam, m, {})
    U.error_with({ "bptt.optim.adam: lr must be a number >= 0, got nil" }, optim.adam, m)
    U.error_with({ "bptt.optim.sgd: lr must be a number >= 0, got -0.1" }, optim.sgd, m, { lr = -0.1 })
    U.error_with({ "bptt.optim.sgd: lr must be a number >= 0, got inf" }, optim.sgd, m, { lr = math.huge })
    U.error_with({ "bptt.optim.sgd: lr must be a number >= 0, got nan" }, optim.sgd, m, { lr = 0 / 0 })
    U.error_with({ "bptt.optim.rmsprop: lr must be a number >= 0, got \"0.1\"" }, optim.rmsprop, m, { lr = "0.1" })
    U.error_with({ "bptt.optim.adam: unknown option \"beta\"" }, optim.adam, m, { lr = 1, beta = 0.9 })
    U.error_with({ "bptt.optim.adamw: betas must be a table {beta1, beta2} of numbers in [0, 1), got {0.9, 1}" },
      optim.adamw, m, { lr = 1, betas = { 0.9, 1 } })
    U.error_with({ "bptt.optim.adam: amsgrad must be true or false, got 1" }, optim.adam, m, { lr = 1, amsgrad = 1 })
    U.error_with({ "bptt.optim.sgd: nesterov needs momentum > 0 and dampening = 0" }, optim.sgd, m,
      { lr = 1, nesterov = true })
    U.error_with({ "bptt.optim.sgd: dampening must be a number in [0, 1], got 2" }, optim.sgd, m,
      { lr = 1, dampening = 2 })
    U.error_with({ "bptt.optim.rmsprop: alpha must be a number in [0, 1], got 1.5" }, optim.rmsprop, m,
      { lr = 1, alpha = 1.5 })
    U.error_with({ "bptt.optim.adagrad: initial_accumulator_value must be a number >= 0, got -1" }, optim.adagrad, m,
      { lr = 1, initial_accumulator_value = -1 })
    U.error_with({ "bptt.optim.sgd: expected a table of options, got number" }, optim.sgd, m, 0.1)
  end)

  it("rejects what has no parameters, and parameters listed twice", function()
    U.error_with({ "bptt.optim.sgd: m must be a module" }, optim.sgd, 42, { lr = 1 })
    U.error_with({ "bptt.optim.sgd: m must be a module", "an empty table" }, optim.sgd, {}, { lr = 1 })
    U.error_with({ "bptt.optim.sgd: m[2] must be a module" }, optim.sgd, { model(), "x" }, { lr = 1 })
    U.error_with({ "bptt.optim.sgd: m has no parameters" }, optim.sgd, bptt.MSE {}, { lr = 1 })
    local m = model()
    U.error_with({ "bptt.optim.sgd: m lists some parameters twice" }, optim.sgd, { m, m }, { lr = 1 })
  end)

  it("checks the options again at each step", function()
    local m = model()
    local opt = optim.adam(m, { lr = 0.1 })
    opt.lr = nil
    U.error_with({ "bptt.optim.adam:step: lr must be a number >= 0, got nil" }, opt.step, opt)
    opt.lr = 0.1
    opt.betas[2] = 1
    U.error_with({ "bptt.optim.adam:step: betas must be" }, opt.step, opt)
    assert.are.equal(0, opt.steps)
    assert.are.same(P0, params(m))
  end)
end)

describe("bptt.clip_grad_norm", function()
  local function norm(list, p)
    local s = 0
    for _, g in ipairs(list) do
      for i = 1, #g do s = s + math.abs(g[i]) ^ p end
    end
    return s ^ (1 / p)
  end

  it("returns the 2-norm of all gradients and scales them by max_norm / (total + 1e-6)", function()
    local a, b = model(), model()
    set_grad(a, grad_at(1))
    set_grad(b, grad_at(2))
    local want = norm({ grad_at(1), grad_at(2) }, 2)
    local total = clip.clip_grad_norm({ a, b }, 1)
    U.assert_close(total, want, 1e-15)
    local k = 1 / (want + 1e-6)
    local ga, gb = values(select(2, a:flat_parameters())), values(select(2, b:flat_parameters()))
    for i = 1, 6 do
      U.assert_close(ga[i], grad_at(1)[i] * k, 1e-15, 1)
      U.assert_close(gb[i], grad_at(2)[i] * k, 1e-15, 1)
    end
    U.assert_close(norm({ ga, gb }, 2), 1, 1e-5)
  end)

  it("leaves gradients alone below max_norm", function()
    local m = model()
    set_grad(m, grad_at(1))
    local total = clip.clip_grad_norm(m, 10)
    U.assert_close(total, norm({ grad_at(1) }, 2), 1e-15)
    assert.are.same(grad_at(1), values(select(2, m:flat_parameters())))
  end)

  it("takes norm_type: 1, 3, math.huge or \"inf\", over float32 and float64 together", function()
    for _, p in ipairs({ 1, 3, math.huge, "inf" }) do
      local a, b = model(), model("float32")
      set_grad(a, grad_at(1))
      set_grad(b, { 4, 0, 0, 0, 0, 0.5 })
      local want
      if p == 1 or p == 3 then want = norm({ grad_at(1), { 4, 0, 0, 0, 0, 0.5 } }, p) else want = 4 end
      U.assert_close(clip.clip_grad_norm({ a, b }, 0.5, p), want, 1e-14)
      U.assert_close(values(select(2, b:flat_parameters()))[1], 4 * 0.5 / (want + 1e-6), 1e-6)
    end
  end)

  it("is accurate where squares overflow a double", function()
    local m = model()
    set_grad(m, { 3e200, 4e200, 0, 0, 0, 0 })
    U.assert_close(clip.clip_grad_norm(m, 1), 5e200, 1e-15)
  end)

  it("returns a NaN or Inf total and leaves the gradients alone", function()
    local m = model()
    set_grad(m, { 1, 0 / 0, 2, 0, 0, 0 })
    local total = clip.clip_grad_norm(m, 1)
    assert.is_true(total ~= total)
    assert.are.equal(1, values(select(2, m:flat_parameters()))[1])
    set_grad(m, { 1, math.huge, 2, 0, 0, 0 })
    assert.are.equal(math.huge, clip.clip_grad_norm(m, 1))
    assert.are.equal(2, values(select(2, m:flat_parameters()))[3])
  end)

  it("takes an optimizer for m, and checks its arguments", function()
    local m = model()
    local opt = optim.sgd(m, { lr = 1 })
    set_grad(m, { 3, 4, 0, 0, 0, 0 })
    U.assert_close(clip.clip_grad_norm(opt, 1), 5, 1e-15)
    U.error_with({ "bptt.clip_grad_norm: max_norm must be a number >= 0, got nil" }, clip.clip_grad_norm, m)
    U.error_with({ "bptt.clip_grad_norm: norm_type must be a number > 0 or \"inf\", got 0" },
      clip.clip_grad_norm, m, 1, 0)
    U.error_with({ "bptt.clip_grad_norm: m must be a module" }, clip.clip_grad_norm, nil, 1)
  end)
end)

describe("bptt.clip_grad_value", function()
  it("clamps every gradient element into [-v, v]", function()
    local a, b = model(), model("float32")
    set_grad(a, grad_at(1))
    set_grad(b, { 4, -4, 0.5, 0, 0, 0 })
    clip.clip_grad_value({ a, b }, 0.25)
    assert.are.same({ 0.1, -0.2, 0.25, 0, -0.25, 0.25 }, values(select(2, a:flat_parameters())))
    assert.are.same({ 0.25, -0.25, 0.25, 0, 0, 0 }, values(select(2, b:flat_parameters())))
    U.error_with({ "bptt.clip_grad_value: v must be a number >= 0, got -1" }, clip.clip_grad_value, a, -1)
  end)
end)

describe("bptt.schedule", function()
  -- opt.lr after making the schedule and after each of n steps
  local function sequence(make, n)
    local opt = optim.sgd(model(), { lr = 0.1 })
    local s = make(opt)
    local out = { opt.lr }
    for _ = 1, n do out[#out + 1] = s:step() end
    for i = 1, #out do assert.are.equal(s:lr_at(i - 1), out[i]) end
    return out, s, opt
  end

  it("step: base gamma^floor(k / step_size)", function()
    local lrs = sequence(function(o) return schedule.step(o, { step_size = 2, gamma = 0.5 }) end, 5)
    U.assert_close(lrs, { 0.1, 0.1, 0.05, 0.05, 0.025, 0.025 }, 1e-15)
    lrs = sequence(function(o) return schedule.step(o, { step_size = 1 }) end, 2)
    U.assert_close(lrs, { 0.1, 0.01, 0.001 }, 1e-15)
  end)

  it("exponential: base gamma^k", function()
    local lrs = sequence(function(o) return schedule.exponential(o, { gamma = 0.9 }) end, 3)
    U.assert_close(lrs, { 0.1, 0.09, 0.081, 0.0729 }, 1e-15)
  end)

  it("cosine: eta_min + (base - eta_min)(1 + cos(pi k / t_max)) / 2, climbing back after t_max as PyTorch", function()
    local lrs = sequence(function(o) return schedule.cosine(o, { t_max = 4, eta_min = 0.01 }) end, 8)
    local c = math.cos(math.pi / 4)
    local lo, hi = 0.01 + 0.09 * (1 - c) / 2, 0.01 + 0.09 * (1 + c) / 2
    -- torch.optim.lr_scheduler.CosineAnnealingLR(T_max=4, eta_min=0.01), base 0.1: its closed form
    U.assert_close(lrs, { 0.1, hi, 0.055, lo, 0.01, lo, 0.055, hi, 0.1 }, 1e-15)
  end)

  it("cosine with hold = true stays at eta_min from t_max on", function()
    local lrs = sequence(function(o) return schedule.cosine(o, { t_max = 4, eta_min = 0.01, hold = true }) end, 6)
    local c = math.cos(math.pi / 4)
    U.assert_close(lrs, { 0.1, 0.01 + 0.09 * (1 + c) / 2, 0.055, 0.01 + 0.09 * (1 - c) / 2, 0.01, 0.01, 0.01 }, 1e-15)
    U.error_with({ "bptt.schedule.cosine: hold must be true or false, got 1" }, schedule.cosine,
      optim.sgd(model(), { lr = 0.1 }), { t_max = 2, hold = 1 })
  end)

  it("warmup: linear from start_factor (1/3 by default) to 1 over steps, then the base lr", function()
    local lrs = sequence(function(o) return schedule.warmup(o, { steps = 4, start_factor = 0.2 }) end, 5)
    U.assert_close(lrs, { 0.02, 0.04, 0.06, 0.08, 0.1, 0.1 }, 1e-15)
    lrs = sequence(function(o) return schedule.warmup(o, { steps = 2 }) end, 2)
    U.assert_close(lrs, { 0.1 / 3, 0.2 / 3, 0.1 }, 1e-15)
  end)

  it("chain: warmup, then cosine from its own k = 0, both from the optimizer's base lr", function()
    local lrs, s, opt = sequence(function(o)
      return schedule.chain { schedule.warmup(o, { steps = 2, start_factor = 0.5 }), schedule.cosine(o, { t_max = 2 }) }
    end, 5)
    U.assert_close(lrs, { 0.05, 0.075, 0.1, 0.05, 0, 0.05 }, 1e-15, 0.1) -- the last cosine climbs back past t_max
    assert.are.equal(0.1, opt.initial_lr)
    assert.are.equal(4, s.length)
  end)

  it("state / set_state resume the sequence exactly, whatever opt.lr was", function()
    local function make(o)
      return schedule.chain { schedule.warmup(o, { steps = 3 }), schedule.cosine(o, { t_max = 7, eta_min = 1e-4 }),
        schedule.exponential(o, { gamma = 0.7 }) }
    end
    local full = sequence(make, 14)
    local _, s = sequence(make, 6)
    local saved = s:state()
    assert.are.equal("step=6 base_lr=0.1", saved)
    local opt2 = optim.sgd(model(), { lr = 0.1 })
    local s2 = make(opt2)
    opt2.lr = 42 -- e.g. the optimizer's own state was loaded first
    s2:set_state(saved)
    assert.are.equal(full[7], opt2.lr)
    for k = 7, 14 do assert.are.equal(full[k + 1], s2:step()) end
    U.error_with({ "bptt.schedule.chain:set_state: s must be a string \"step=<k> base_lr=<lr>\"" }, s2.set_state, s2, 3)
  end)

  it("errors name the schedule and the option", function()
    local opt = optim.sgd(model(), { lr = 0.1 })
    U.error_with({ "bptt.schedule.step: step_size must be a whole number >= 1, got nil" }, schedule.step, opt, {})
    U.error_with({ "bptt.schedule.cosine: unknown option \"T_max\"" }, schedule.cosine, opt, { T_max = 3 })
    U.error_with({ "bptt.schedule.exponential: gamma must be a number >= 0, got nil" }, schedule.exponential, opt, {})
    U.error_with({ "bptt.schedule.warmup: start_factor must be a number in [0, 1], got 2" }, schedule.warmup, opt,
      { steps = 2, start_factor = 2 })
    U.error_with({ "bptt.schedule.warmup: opt must be an optimizer" }, schedule.warmup, nil, { steps = 2 })
    U.error_with({ "bptt.schedule.chain: [1] (bptt.schedule.exponential) has no length, so it can only come last" },
      schedule.chain, { schedule.exponential(opt, { gamma = 0.5 }), schedule.cosine(opt, { t_max = 2 }) })
    local other = optim.sgd(model(), { lr = 0.1 })
    U.error_with({ "bptt.schedule.chain: [2] schedules another optimizer than [1]" }, schedule.chain,
      { schedule.warmup(opt, { steps = 2 }), schedule.cosine(other, { t_max = 2 }) })
  end)
end)
