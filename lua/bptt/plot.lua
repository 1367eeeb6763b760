--- bptt.plot: loss curves as a standalone SVG file (no dependencies).
--
--   bptt.plot.svg("loss.svg", {
--     { name = "train", points = {{1, 4.2}, {2, 3.9}, ...} },
--     { name = "val",   points = {{100, 3.1}, ...} },
--   }, { title = "char-lm", xlabel = "iteration", ylabel = "loss (nats/char)" })
local plot = {}

local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e" }

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;"))
end

-- "Nice" ticks: a step of 1, 2 or 5 times a power of ten giving about n
-- intervals over [lo, hi] (at least 1 when integer), and the tick values in
-- it, each k * step for a whole k (no accumulated rounding, no -0).
local function nice_step(lo, hi, n, integer)
  local raw = (hi - lo) / n
  if not (raw > 0) then raw = 1 end
  local mag = 10 ^ math.floor(math.log10(raw))
  local step = 10 * mag
  for _, m in ipairs({ 1, 2, 5 }) do
    if m * mag >= raw * (1 - 1e-9) then step = m * mag break end
  end
  if integer and step < 1 then step = 1 end
  return step
end

local function ticks(lo, hi, step)
  local out = {}
  for k = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) do
    local v = k * step
    if v == 0 then v = 0 end -- -0 reads as "-0"
    out[#out + 1] = v
  end
  return out
end

-- A tick label with as many decimals as the step needs.
local function fmt(v, step)
  if v == 0 then return "0" end
  if math.abs(v) >= 1e7 or math.abs(v) < 1e-4 then return (string.format("%.3g", v)) end
  local decimals = math.ceil(-math.log10(step) - 1e-9)
  if not (decimals > 0) then decimals = 0 end -- also -0
  return string.format(string.format("%%.%df", decimals), v)
end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- the temporary file's name: unique per process and call
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
local serial = 0

--- Writes the SVG; returns true or nil, message.  opts: title, xlabel,
-- ylabel, width, height, integer_x (x is a count, e.g. iterations: ticks
-- are whole numbers).  A series of up to 30 points gets a marker at each
-- point (a single point is drawn as one); points with a non-finite x or y
-- are skipped.  The legend sits above the plot area, clear of the curves.
function plot.svg(path, series, opts)
  opts = opts or {}
  local W, H = opts.width or 720, opts.height or 420
  local L, R, T, B = 70, 20, 58, 50
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for _, s in ipairs(series) do
    for _, p in ipairs(s.points) do
      local x, y = p[1], p[2]
      if finite(x) and finite(y) then
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if xmax == xmin then -- one x: centre it
    local d = opts.integer_x and 1 or (xmin ~= 0 and math.abs(xmin) * 0.1 or 1)
    xmin, xmax = xmin - d, xmax + d
  end
  if ymax == ymin then
    local d = ymin ~= 0 and math.abs(ymin) * 0.1 or 1
    ymin, ymax = ymin - d, ymax + d
  end
  -- the y axis runs from tick to tick around the data (plus a margin)
  local pad = (ymax - ymin) * 0.04
  local ystep = nice_step(ymin - pad, ymax + pad, 6)
  ymin, ymax = math.floor((ymin - pad) / ystep) * ystep, math.ceil((ymax + pad) / ystep) * ystep
  local xstep = nice_step(xmin, xmax, 8, opts.integer_x)
  local function px(x) return L + (x - xmin) / (xmax - xmin) * (W - L - R) end
  local function py(y) return H - B - (y - ymin) / (ymax - ymin) * (H - T - B) end
  local o = {}
  o[#o + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="sans-serif" font-size="12">', W, H, W, H)
  o[#o + 1] = string.format('<rect width="%d" height="%d" fill="white"/>', W, H)
  if opts.title then
    o[#o + 1] =
      string.format('<text x="%d" y="22" text-anchor="middle" font-size="15">%s</text>', W / 2, esc(opts.title))
  end
  for _, v in ipairs(ticks(ymin, ymax, ystep)) do
    local y = py(v)
    o[#o + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', L, y, W - R, y)
    o[#o + 1] = string.format('<text x="%d" y="%.1f" text-anchor="end">%s</text>', L - 6, y + 4, fmt(v, ystep))
  end
  for _, v in ipairs(ticks(xmin, xmax, xstep)) do
    local x = px(v)
    o[#o + 1] = string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>', x, T, x, H - B)
    o[#o + 1] = string.format('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', x, H - B + 16, fmt(v, xstep))
  end
  o[#o + 1] =
    string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>', L, T, W - L - R, H - T - B)
  if opts.xlabel then
    o[#o + 1] =
      string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>', (L + W - R) / 2, H - 12, esc(opts.xlabel))
  end
  if opts.ylabel then
    o[#o + 1] = string.format('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>',
      (T + H - B) / 2, (T + H - B) / 2, esc(opts.ylabel))
  end
  -- the legend: one row above the plot area, right-aligned
  local names, widths, total = {}, {}, 0
  for i, s in ipairs(series) do
    names[i] = s.name or ("series " .. i)
    widths[i] = 34 + 7 * #names[i] + 16
    total = total + widths[i]
  end
  local lx = W - R - total
  for i, s in ipairs(series) do
    local color = s.color or COLORS[(i - 1) % #COLORS + 1]
    local pts, n = {}, 0
    for _, p in ipairs(s.points) do
      if finite(p[1]) and finite(p[2]) then
        n = n + 1
        pts[n] = { px(p[1]), py(p[2]) }
      end
    end
    if n > 1 then
      local xy = {}
      for k = 1, n do xy[k] = string.format("%.1f,%.1f", pts[k][1], pts[k][2]) end
      o[#o + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>', color,
        table.concat(xy, " "))
    end
    local markers = n <= 30
    if markers then
      for k = 1, n do
        o[#o + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3.2" fill="%s"/>', pts[k][1], pts[k][2], color)
      end
    end
    local ly = T - 12
    o[#o + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"/>',
      lx, ly, lx + 24, ly, color)
    if markers then
      o[#o + 1] = string.format('<circle cx="%d" cy="%d" r="3.2" fill="%s"/>', lx + 12, ly, color)
    end
    o[#o + 1] = string.format('<text x="%d" y="%d">%s</text>', lx + 30, ly + 4, esc(names[i]))
    lx = lx + widths[i]
  end
  o[#o + 1] = "</svg>\n"
  serial = serial + 1
  local tmp = string.format("%s.tmp.%d.%d", path, ffi.C.getpid(), serial)
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  local wok, werr = f:write(table.concat(o, "\n"))
  local cok, cerr = f:close()
  if not wok or not cok then
    os.remove(tmp)
    return nil, tmp .. ": " .. tostring(werr or cerr)
  end
  local ok, rerr = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

plot._nice_step, plot._ticks, plot._fmt = nice_step, ticks, fmt

return plot
