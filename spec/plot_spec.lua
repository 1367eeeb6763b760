-- bptt.plot.svg: the legend clear of the curves, markers for short series,
-- "nice" ticks (1-2-5 steps, whole numbers for iterations, never "-0").
-- (The pictures themselves were looked at after rsvg-convert; these check
-- the properties that made the old ones wrong.)
local plot = require "bptt.plot"
local P = require "helpers.proc"

local function render(series, opts)
  local dir, cleanup = P.tempdir()
  local path = dir .. "/p.svg"
  assert(plot.svg(path, series, opts or { integer_x = true }))
  local f = assert(io.open(path))
  local svg = f:read("*a")
  f:close()
  local left = P.listdir(dir)
  cleanup()
  return svg, left
end

-- the tick labels under the x axis and left of the y axis
local function labels(svg, anchor)
  local out = {}
  local pattern = '<text x="[^"]*" y="[^"]*" text%-anchor="' .. anchor .. '">([^<]*)</text>'
  for s in svg:gmatch(pattern) do out[#out + 1] = s end
  return out
end

describe("bptt.plot.svg", function()
  it("draws a one-point series as a marker, with whole-number x ticks and no -0", function()
    local svg = render({ { name = "train", points = { { 1400, 3.9 } } }, { name = "val", points = {} } })
    assert.is_truthy(svg:find("<circle", 1, true))
    local xs = labels(svg, "middle")
    for _, s in ipairs(xs) do
      if s ~= "iteration" and not s:find("[a-z]") then assert.is_truthy(s:match("^%-?%d+$"), s) end
    end
    local one = render({ { name = "train", points = { { 1, 0 } } } })
    for _, s in ipairs(labels(one, "end")) do assert.is_not.equal("-0", s) end
    assert.is_truthy(one:find(">0<", 1, true))
  end)

  it("uses 1-2-5 steps and labels with the decimals the step needs", function()
    assert.equal(0.2, plot._nice_step(3.4, 4.4, 6))
    assert.equal(500, plot._nice_step(10, 2000, 8, true))
    assert.equal(1, plot._nice_step(1399, 1401, 8, true))
    assert.same({ -0.5, 0, 0.5 }, plot._ticks(-0.5, 0.5, 0.5))
    assert.equal("0.3", plot._fmt(3 * 0.1, 0.1))
    assert.equal("1400", plot._fmt(1400, 1))
    assert.equal("0", plot._fmt(-0.0, 0.5))
  end)

  it("keeps the legend above the plot area and marks short series only", function()
    local long = {}
    for i = 1, 200 do long[i] = { i * 10, 4 - i / 100 } end
    local svg = render({ { name = "train", points = long }, { name = "val", points = { { 100, 3.5 }, { 200, 3 } } } })
    local top = tonumber(svg:match('<rect x="%d+" y="(%d+)" width="%d+" height="%d+" fill="none"'))
    for y in svg:gmatch('<text x="%d+" y="(%d+)">[^<]*</text>') do assert.is_true(tonumber(y) < top) end
    local n = 0
    for _ in svg:gmatch("<circle") do n = n + 1 end
    assert.equal(2 + 1, n) -- the val points and val's legend entry, none for the 200-point series
  end)

  it("leaves no temporary file behind", function()
    local _, left = render({ { name = "train", points = { { 1, 2 }, { 2, 1 } } } })
    assert.same({ "p.svg" }, left)
  end)
end)
