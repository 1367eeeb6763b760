-- Bidirectional layers and variable-length batches against PyTorch: the
-- fixtures spec/fixtures/seq_*.lua made by spec/fixtures/make_seq_fixtures.py
-- (nn.RNN/LSTM/GRU with bidirectional = True and/or pack_padded_sequence with
-- enforce_sorted = False).  Outputs, final states and every gradient (x, h0,
-- c0, each parameter) within 1e-9 (float64) or 1e-4 (float32) relative.
local bptt = require "bptt"
local N = require "helpers.nn_util"

local DIR = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "fixtures/"

local function load(name)
  local path = DIR .. name .. ".lua"
  local chunk, err = loadfile(path)
  assert(chunk, "fixture " .. path .. " missing or unreadable (run spec/fixtures/make_seq_fixtures.py): "
    .. tostring(err))
  return chunk()
end

describe("bptt.RNN bidirectional and with lengths, against PyTorch fixtures", function()
  for _, cell in ipairs({ "tanh", "relu", "lstm", "gru" }) do
    for _, case in ipairs({ "a", "b", "c" }) do
      for _, variant in ipairs({ "bi", "len", "bilen" }) do
        for _, dtype in ipairs({ "float64", "float32" }) do
          for _, lform in ipairs(variant == "bi" and { "none" } or { "table", "int32" }) do
            local name = string.format("seq_%s_%s_%s", cell, case, variant)
            it(string.format("%s in %s (lengths: %s): y, hT, cT and every gradient", name, dtype, lform), function()
              local fx = load(name)
              local tol = N.tol[dtype]
              local lstm = fx.cell == "lstm"
              local m = bptt.RNN{ cell = fx.cell, input = fx.input, hidden = fx.hidden, layers = fx.layers,
                bias = fx.bias, bidirectional = fx.bidirectional, dtype = dtype }
              assert.are.same(fx.param_names, m:parameter_names())
              local sd = {}
              for pname, t in pairs(fx.params) do sd[pname] = N.from_fixture(t) end
              m:load_state_dict(sd)
              local function T(key) return fx[key] and N.from_fixture(fx[key], dtype) end
              local lengths = fx.lengths
              if lform == "int32" then lengths = bptt.tensor(fx.lengths, "int32") end

              local y, hT, cT = m:forward(T("x"), T("h0"), T("c0"), lengths)
              N.assert_rel(y, fx.y, tol, "y")
              N.assert_rel(hT, fx.hT, tol, "hT")
              if lstm then N.assert_rel(cT, fx.cT, tol, "cT") end

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
              assert.are.equal(#fx.param_names + (lstm and 3 or 2), n)
            end)
          end
        end
      end
    end
  end
end)
