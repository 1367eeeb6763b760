-- bptt against PyTorch: the reference fixtures of spec/fixtures/, made by
-- spec/fixtures/make_fixtures.py (format documented at its top).  Parameters
-- go in with load_state_dict under PyTorch's names; outputs, final states and
-- every gradient must agree within 1e-9 (float64) or 1e-4 (float32) relative
-- to the largest |value| of each quantity.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local DIR = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "fixtures/"

local function load(name)
  local path = DIR .. name .. ".lua"
  local chunk, err = loadfile(path)
  assert(chunk, "fixture " .. path .. " missing or unreadable (run spec/fixtures/make_fixtures.py): "
    .. tostring(err))
  return chunk()
end

local DTYPES = { "float64", "float32" }

describe("bptt.RNN against PyTorch fixtures", function()
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    for _, case in ipairs({ "a", "b", "c" }) do
      for _, dtype in ipairs(DTYPES) do
        local name = string.format("rnn_%s_%s", cell, case)
        it(name .. " in " .. dtype .. ": y, hT, cT and every gradient", function()
          local fx = load(name)
          local tol = N.tol[dtype]
          local lstm = fx.cell == "lstm"
          assert.are.equal(cell, fx.cell)
          local m = bptt.RNN{ cell = fx.cell, input = fx.input, hidden = fx.hidden, layers = fx.layers,
            bias = fx.bias, dtype = dtype }
          -- PyTorch's state_dict names, in its order
          assert.are.same(fx.param_names, m:parameter_names())
          local sd = {}
          for pname, t in pairs(fx.params) do sd[pname] = N.from_fixture(t) end
          m:load_state_dict(sd)            -- float64 tensors, rounded into a float32 layer
          local function T(key) return fx[key] and N.from_fixture(fx[key], dtype) end

          local y, hT, cT = m:forward(T("x"), T("h0"), T("c0"))
          N.assert_rel(y, fx.y, tol, "y")
          N.assert_rel(hT, fx.hT, tol, "hT")
          if lstm then N.assert_rel(cT, fx.cT, tol, "cT") else assert.is_nil(fx.cT) end

          m:zero_grad()
          local dx, dh0, dc0 = m:backward(T("dy"), T("dhT"), T("dcT"))
          local inputs = { x = dx, h0 = dh0, c0 = dc0 }
          local _, grads = m:parameters()
          local n = 0
          for gname, want in pairs(fx.grads) do
            local got = inputs[gname] or grads[gname]
            assert(got, "no gradient " .. gname .. " in bptt")
            N.assert_rel(got, want, tol, "d" .. gname)
            n = n + 1
          end
          -- every parameter, x, h0 (and c0) were compared
          assert.are.equal(#fx.param_names + (lstm and 3 or 2), n)
        end)
      end
    end
  end
end)

describe("a character language model against PyTorch (charlm fixture)", function()
  for _, dtype in ipairs(DTYPES) do
    it("Embedding -> RNN(lstm, 2 layers) -> Linear -> CrossEntropy(mean) in " .. dtype
      .. ": logits, loss and every gradient", function()
      local fx = load("charlm")
      local tol = N.tol[dtype]
      local parts = {
        embed = bptt.Embedding{ vocab = fx.vocab, dim = fx.dim, dtype = dtype },
        rnn = bptt.RNN{ cell = "lstm", input = fx.dim, hidden = fx.hidden, layers = fx.layers, dtype = dtype },
        decoder = bptt.Linear{ input = fx.hidden, output = fx.vocab, dtype = dtype },
      }
      local ce = bptt.CrossEntropy{ reduction = fx.reduction }
      -- "embed.weight" -> parts.embed, "weight"
      local sds = { embed = {}, rnn = {}, decoder = {} }
      for _, full in ipairs(fx.param_names) do
        local part, pname = full:match("^(%w+)%.(.+)$")
        assert(sds[part], "unknown module in " .. full)
        sds[part][pname] = N.from_fixture(fx.params[full])
      end
      for part, m in pairs(parts) do m:load_state_dict(sds[part]) end

      local ids = N.from_fixture(fx.ids, "int32")
      local targets = N.from_fixture(fx.targets, "int32")
      local logits = parts.decoder:forward(parts.rnn:forward(parts.embed:forward(ids)))
      N.assert_rel(logits, fx.logits, tol, "logits")
      local loss = ce:forward(logits, targets)
      assert.is_true(math.abs(loss - fx.loss) <= tol * math.abs(fx.loss),
        string.format("loss %.17g, PyTorch %.17g", loss, fx.loss))

      for _, m in pairs(parts) do m:zero_grad() end
      parts.embed:backward(parts.rnn:backward(parts.decoder:backward(ce:backward())))
      local n = 0
      for full, want in pairs(fx.grads) do
        local part, pname = full:match("^(%w+)%.(.+)$")
        local _, g = parts[part]:parameters()
        assert(g[pname], "no gradient " .. full .. " in bptt")
        N.assert_rel(g[pname], want, tol, "d" .. full)
        n = n + 1
      end
      assert.are.equal(#fx.param_names, n)
    end)
  end
end)
