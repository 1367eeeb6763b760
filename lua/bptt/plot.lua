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

-- "nice" tick values covering [lo, hi]
local function ticks(lo, hi, n)
  local span = hi - lo
  if span <= 0 then span = math.abs(hi) > 0 and math.abs(hi) or 1 end
  local raw = span / n
  local mag = 10 ^ math.floor(math.log10(raw))
  local step = mag
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * mag >= raw then step = m * mag break end
  end
  local out = {}
  for v = math.ceil(lo / step) * step, hi + step * 1e-9, step do out[#out + 1] = v end
  return out
end

local function fmt(v)
  if math.abs(v) >= 1e4 or (math.abs(v) < 1e-2 and v ~= 0) then return string.format("%.1e", v) end
  return (string.format("%.3f", v):gsub("0+$", ""):gsub("%.$", ""))
end

--- Writes the SVG; returns true or nil, message.
function plot.svg(path, series, opts)
  opts = opts or {}
  local W, H, L, R, T, B = opts.width or 720, opts.height or 420, 70, 20, 40, 50
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for _, s in ipairs(series) do
    for _, p in ipairs(s.points) do
      local x, y = p[1], p[2]
      if y == y and y ~= math.huge and y ~= -math.huge then
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if xmax == xmin then xmax = xmin + 1 end
  if ymax == ymin then ymax = ymin + 1 end
  local pad = (ymax - ymin) * 0.05
  ymin, ymax = ymin - pad, ymax + pad
  local function px(x) return L + (x - xmin) / (xmax - xmin) * (W - L - R) end
  local function py(y) return H - B - (y - ymin) / (ymax - ymin) * (H - T - B) end
  local o = {}
  o[#o + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="sans-serif" font-size="12">', W, H, W, H)
  o[#o + 1] = string.format('<rect width="%d" height="%d" fill="white"/>', W, H)
  if opts.title then
    o[#o + 1] = string.format('<text x="%d" y="22" text-anchor="middle" font-size="15">%s</text>', W / 2, esc(opts.title))
  end
  for _, v in ipairs(ticks(ymin, ymax, 6)) do
    local y = py(v)
    o[#o + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', L, y, W - R, y)
    o[#o + 1] = string.format('<text x="%d" y="%.1f" text-anchor="end">%s</text>', L - 6, y + 4, fmt(v))
  end
  for _, v in ipairs(ticks(xmin, xmax, 8)) do
    local x = px(v)
    o[#o + 1] = string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>', x, T, x, H - B)
    o[#o + 1] = string.format('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', x, H - B + 16, fmt(v))
  end
  o[#o + 1] = string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>', L, T, W - L - R, H - T - B)
  if opts.xlabel then
    o[#o + 1] = string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>', (L + W - R) / 2, H - 12, esc(opts.xlabel))
  end
  if opts.ylabel then
    o[#o + 1] = string.format('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>',
      (T + H - B) / 2, (T + H - B) / 2, esc(opts.ylabel))
  end
  for i, s in ipairs(series) do
    local color = s.color or COLORS[(i - 1) % #COLORS + 1]
    local pts = {}
    for _, p in ipairs(s.points) do
      if p[2] == p[2] and p[2] ~= math.huge and p[2] ~= -math.huge then
        pts[#pts + 1] = string.format("%.1f,%.1f", px(p[1]), py(p[2]))
      end
    end
    if #pts > 0 then
      o[#o + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>', color, table.concat(pts, " "))
    end
    o[#o + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>',
      W - R - 110, T + 14 + 18 * (i - 1), W - R - 90, T + 14 + 18 * (i - 1), color)
    o[#o + 1] = string.format('<text x="%d" y="%d">%s</text>', W - R - 84, T + 18 + 18 * (i - 1), esc(s.name or ("series " .. i)))
  end
  o[#o + 1] = "</svg>\n"
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  f:write(table.concat(o, "\n"))
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then return nil, rerr end
  return true
end

return plot
