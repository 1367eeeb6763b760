-- The seed note's Elman network, written out in plain Lua as an independent
-- oracle, against bptt.RNN + bptt.Linear + bptt.CrossEntropy{reduction="sum"}:
--
--   h_t = f(V x_t + W h_{t-1} + b_h)      f = tanh (the note) or relu
--   yhat_t = softmax(U h_t + b_y)         L = sum over t (and the batch) of -log yhat_t[target_t]
--
-- The oracle's gradients are the note's formulas computed literally:
--   dL_t/dU = dL_t/dyhat_t dyhat_t/dU                        (no BPTT)
--   dL_t/dW = dL_t/dh_t sum_{k=1..t} (prod_{i=k+1..t} dh_i/dh_{i-1}) dh_k/dW
-- with every Jacobian dh_i/dh_{i-1} = diag(f'(a_i)) W formed as a matrix, every
-- product of them multiplied out, and dh_k/dW formed as the H x (H x H) array
-- of immediate partial derivatives (h_{k-1} held fixed), likewise for V and
-- b_h.  bptt computes the same sums by Horner's rule in C; they must agree.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local I, H, C, T, B = 3, 4, 5, 5, 2

--- A seeded Park-Miller generator in doubles (exact), independent of the
-- library's RNG: r() is uniform in (-s, s).
local function gen(seed)
  local x = seed
  return function(s)
    x = (x * 48271) % 2147483647
    return (2 * x / 2147483647 - 1) * (s or 1)
  end
end

local function matrix(r, n, m, s)
  local A = {}
  for i = 1, n do
    A[i] = {}
    for j = 1, m do A[i][j] = r(s) end
  end
  return A
end

local function vector(r, n, s)
  local v = {}
  for i = 1, n do v[i] = r(s) end
  return v
end

local function zeros(n, m)
  local A = {}
  for i = 1, n do
    if m then
      A[i] = {}
      for j = 1, m do A[i][j] = 0 end
    else
      A[i] = 0
    end
  end
  return A
end

local function identity(n)
  local A = zeros(n, n)
  for i = 1, n do A[i][i] = 1 end
  return A
end

local function matmul(A, Bm)
  local Cm = zeros(#A, #Bm[1])
  for i = 1, #A do
    for j = 1, #Bm[1] do
      local s = 0
      for k = 1, #Bm do s = s + A[i][k] * Bm[k][j] end
      Cm[i][j] = s
    end
  end
  return Cm
end

local function matvec(A, v)
  local out = {}
  for i = 1, #A do
    local s = 0
    for j = 1, #v do s = s + A[i][j] * v[j] end
    out[i] = s
  end
  return out
end

--- row vector times matrix: (v A)_j = sum_i v_i A[i][j]
local function vecmat(v, A)
  local out = {}
  for j = 1, #A[1] do
    local s = 0
    for i = 1, #v do s = s + v[i] * A[i][j] end
    out[j] = s
  end
  return out
end

--- The oracle: loss, hidden states and every gradient of the Elman network
-- for one batch of sequences x[t][b] (vectors), h0[b] (or nil), targets[t][b].
local function elman(p, x, h0, targets, cell)
  local f = cell == "tanh" and math.tanh or function(a) return a > 0 and a or 0 end
  -- f'(a_t) read off h_t = f(a_t)
  local df = cell == "tanh" and function(h) return 1 - h * h end or function(h) return h > 0 and 1 or 0 end
  local bh = {}
  for j = 1, H do bh[j] = p.b1[j] + p.b2[j] end     -- b_h = bias_ih + bias_hh
  local out = { loss = 0, h = {}, dU = zeros(C, H), dby = zeros(C), dV = zeros(H, I), dW = zeros(H, H),
    dbh = zeros(H), dh0 = {} }
  for b = 1, B do
    -- forward: h[0..T]
    local h = { [0] = h0 and h0[b] or zeros(H) }
    for t = 1, T do
      local a = matvec(p.V, x[t][b])
      local wh = matvec(p.W, h[t - 1])
      h[t] = {}
      for j = 1, H do h[t][j] = f(a[j] + wh[j] + bh[j]) end
      out.h[t] = out.h[t] or {}
      out.h[t][b] = h[t]
    end
    -- Jacobians dh_i/dh_{i-1} = diag(f'(a_i)) W, i = 1..T
    local J = {}
    for i = 1, T do
      J[i] = zeros(H, H)
      for r = 1, H do
        for c = 1, H do J[i][r][c] = df(h[i][r]) * p.W[r][c] end
      end
    end
    out.dh0[b] = zeros(H)
    for t = 1, T do
      -- the output layer and the loss at step t
      local o = matvec(p.U, h[t])
      for c = 1, C do o[c] = o[c] + p.by[c] end
      local m = -math.huge
      for c = 1, C do if o[c] > m then m = o[c] end end
      local s = 0
      for c = 1, C do s = s + math.exp(o[c] - m) end
      local yhat = {}
      for c = 1, C do yhat[c] = math.exp(o[c] - m) / s end
      out.loss = out.loss - ((o[targets[t][b]] - m) - math.log(s))
      -- dL_t/do_t = yhat - onehot;  dL_t/dU = (yhat - onehot) h_t^T;  dL_t/db_y
      local e = {}
      for c = 1, C do e[c] = yhat[c] - (c == targets[t][b] and 1 or 0) end
      for c = 1, C do
        out.dby[c] = out.dby[c] + e[c]
        for j = 1, H do out.dU[c][j] = out.dU[c][j] + e[c] * h[t][j] end
      end
      -- dL_t/dh_t = e U  (a row vector)
      local delta = vecmat(e, p.U)
      -- BPTT: sum over k <= t of dL_t/dh_t (prod_{i=k+1..t} dh_i/dh_{i-1}) dh_k/d(W, V, b_h)
      for k = 1, t do
        local P = identity(H)
        for i = t, k + 1, -1 do P = matmul(P, J[i]) end   -- J_t J_{t-1} ... J_{k+1}
        local r = vecmat(delta, P)                         -- dL_t/dh_k
        -- dh_k/dW[p][q][s] = [p == q] f'(a_k[p]) h_{k-1}[s], the same with x_k for V, 1 for b_h
        for pp = 1, H do
          for q = 1, H do
            local dpq = pp == q and df(h[k][pp]) or 0
            for s2 = 1, H do out.dW[q][s2] = out.dW[q][s2] + r[pp] * dpq * h[k - 1][s2] end
            for s2 = 1, I do out.dV[q][s2] = out.dV[q][s2] + r[pp] * dpq * x[k][b][s2] end
            out.dbh[q] = out.dbh[q] + r[pp] * dpq
          end
        end
      end
      -- dL_t/dh_0 = dL_t/dh_t prod_{i=1..t} dh_i/dh_{i-1}
      local P = identity(H)
      for i = t, 1, -1 do P = matmul(P, J[i]) end
      local r0 = vecmat(delta, P)
      for j = 1, H do out.dh0[b][j] = out.dh0[b][j] + r0[j] end
    end
  end
  return out
end

--- Nested Lua tables (any depth) -> flat list, row-major.
local function flatten(t, acc)
  acc = acc or {}
  if type(t) == "number" then
    acc[#acc + 1] = t
  else
    for i = 1, #t do flatten(t[i], acc) end
  end
  return acc
end

local function tensor(nested, shape)
  return bptt.tensor(flatten(nested), "float64"):view(shape)
end

describe("the seed note's Elman network (plain-Lua oracle) against bptt", function()
  local case = 0
  for _, cell in ipairs({ "tanh", "relu" }) do
    for _, given in ipairs({ true, false }) do
      case = case + 1
      local seed = 1000 + case
      it(string.format("%s, h0 %s: loss, hidden states, dU, db_y, dV, dW, db_h, dh0 agree to 1e-10", cell,
        given and "given" or "nil (zeros)"), function()
        local r = gen(seed)
        local p = { V = matrix(r, H, I, 0.8), W = matrix(r, H, H, 0.8), b1 = vector(r, H, 0.3), b2 = vector(r, H, 0.3),
          U = matrix(r, C, H, 1), by = vector(r, C, 0.3) }
        local x, targets = {}, {}
        for t = 1, T do
          x[t], targets[t] = {}, {}
          for b = 1, B do
            x[t][b] = vector(r, I, 1.5)
            targets[t][b] = 1 + math.floor((r(1) + 1) / 2 * C) % C
          end
        end
        local h0 = given and { vector(r, H, 0.9), vector(r, H, 0.9) } or nil
        local want = elman(p, x, h0, targets, cell)

        local rnn = bptt.RNN{ cell = cell, input = I, hidden = H, dtype = "float64" }
        rnn:load_state_dict{ weight_ih_l0 = tensor(p.V, { H, I }), weight_hh_l0 = tensor(p.W, { H, H }),
          bias_ih_l0 = tensor(p.b1, { H }), bias_hh_l0 = tensor(p.b2, { H }) }
        local lin = bptt.Linear{ input = H, output = C, dtype = "float64" }
        lin:load_state_dict{ weight = tensor(p.U, { C, H }), bias = tensor(p.by, { C }) }
        local ce = bptt.CrossEntropy{ reduction = "sum" }

        local hx = h0 and tensor(h0, { 1, B, H }) or nil
        local y = rnn:forward(tensor(x, { T, B, I }), hx)
        local loss = ce:forward(lin:forward(y), bptt.tensor(targets, "int32"))
        rnn:zero_grad()
        lin:zero_grad()
        local _, dh0 = rnn:backward(lin:backward(ce:backward()))

        assert.is_true(math.abs(loss - want.loss) <= 1e-10 * math.abs(want.loss),
          string.format("loss %.17g, oracle %.17g", loss, want.loss))
        N.assert_rel(y, tensor(want.h, { T, B, H }), 1e-10, "h_1..h_T")
        local _, gl = lin:parameters()
        local _, gr = rnn:parameters()
        N.assert_rel(gl.weight, tensor(want.dU, { C, H }), 1e-10, "dU")
        N.assert_rel(gl.bias, tensor(want.dby, { C }), 1e-10, "db_y")
        N.assert_rel(gr.weight_ih_l0, tensor(want.dV, { H, I }), 1e-10, "dV")
        N.assert_rel(gr.weight_hh_l0, tensor(want.dW, { H, H }), 1e-10, "dW")
        -- b_h = bias_ih + bias_hh: both get dL/db_h
        N.assert_rel(gr.bias_ih_l0, tensor(want.dbh, { H }), 1e-10, "db_h (bias_ih_l0)")
        N.assert_rel(gr.bias_hh_l0, tensor(want.dbh, { H }), 1e-10, "db_h (bias_hh_l0)")
        N.assert_rel(dh0, tensor(want.dh0, { 1, B, H }), 1e-10, "dh0")
        -- the oracle is not degenerate: BPTT terms matter
        assert.is_true(gr.weight_hh_l0:norm() > 1e-3)
      end)
    end
  end
end)
