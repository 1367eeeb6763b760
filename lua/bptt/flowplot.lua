--- bptt.plot.flow: the gradient-flow record (bptt.RNN:flow()) as one SVG file,
-- and the "gradient reach" it shows.
--
--   rnn:record_flow(true); ...forward, backward...
--   bptt.plot.flow("flow.svg", rnn:flow(), {title = "tanh RNN, adding problem"})
--   bptt.plot.reach(rnn:flow())        -- the lag where |dL/dh_k| falls below 1e-3 of its largest
--
-- Two panels: above, a heatmap of log10 |dL/dh_k| with a row per layer (the
-- top layer on top) and a column per step k (bins of steps when T > 480:
-- each bin shows its largest value), with its colour bar; below, the same
-- norms against the lag T - k, one curve per layer, on a log scale.
-- opts: title, what ("dh", default, or "dc", "dW": the record's other
-- norms), width.  Returns true or nil, message (plot.svg's protocol).
local M = {}

local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b" }
-- viridis, five stops
local STOPS = { { 68, 1, 84 }, { 59, 82, 139 }, { 33, 145, 140 }, { 94, 201, 98 }, { 253, 231, 37 } }

local function color(u) -- u in [0, 1]
  u = math.max(0, math.min(1, u)) * (#STOPS - 1)
  local i = math.min(math.floor(u), #STOPS - 2)
  local f = u - i
  local a, b = STOPS[i + 1], STOPS[i + 2]
  return string.format("#%02x%02x%02x", a[1] + (b[1] - a[1]) * f + 0.5, a[2] + (b[2] - a[2]) * f + 0.5,
    a[3] + (b[3] - a[3]) * f + 0.5)
end

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

local function finite_pos(v) return v == v and v > 0 and v < math.huge end

-- the decade label 10^e
local function decade(e)
  if e == 0 then return "1" end
  if e == 1 then return "10" end
  return "1e" .. e
end

local NAMES = { dh = "‖∂L/∂h_k‖", dc = "‖∂L/∂c_k‖", dW = "‖dG_kᵀ h_(k-1)‖" }

local function write(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, tostring(werr or cerr)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

function M.flow(path, flow, opts)
  local fn = "bptt.plot.flow"
  opts = opts or {}
  if type(path) ~= "string" then error(fn .. ": path must be a string, got " .. type(path), 2) end
  if type(flow) ~= "table" then error(fn .. ": flow must be the table of rnn:flow(), got " .. type(flow), 2) end
  local what = opts.what or "dh"
  local t = flow[what]
  if t == nil or type(t) ~= "userdata" and type(t) ~= "table" then
    error(string.format('%s: flow.%s is missing (what = "dh", "dc" for an lstm, or "dW")', fn, tostring(what)), 2)
  end
  local T, L = t:size(1), t:size(2)
  local v = t:totable()
  local lo, hi = math.huge, -math.huge
  for k = 1, T do
    for l = 1, L do
      local x = v[k][l]
      if finite_pos(x) then lo, hi = math.min(lo, x), math.max(hi, x) end
    end
  end
  if lo > hi then lo, hi = 1, 10 end
  local elo, ehi = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
  if ehi == elo then ehi = elo + 1 end
  local W = opts.width or 760
  local ML, MR = 78, 90
  local pw = W - ML - MR
  local top = 40
  local rowh = math.max(math.ceil(80 / L), math.min(40, math.floor(160 / L)))
  local hh = rowh * L
  local cy0 = top + hh + 70 -- the curves' panel
  local ch = 300
  local H = cy0 + ch + 50
  local o = {}
  local function add(...) o[#o + 1] = string.format(...) end
  add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="sans-serif" font-size="12">', W, H, W, H)
  add('<style>rect.c { shape-rendering: crispEdges }</style>')
  add('<rect width="%d" height="%d" fill="white"/>', W, H)
  add('<text x="%d" y="22" text-anchor="middle" font-size="15">%s</text>', W / 2,
    esc(opts.title or ("gradient flow through time: " .. NAMES[what] or what)))
  -- heatmap: bins of steps
  local nb = math.min(T, 480)
  local function u(x) return (math.log10(x) - elo) / (ehi - elo) end
  for l = 1, L do
    local y = top + (L - l) * rowh
    for b = 1, nb do
      local k0, k1 = math.floor((b - 1) * T / nb) + 1, math.floor(b * T / nb)
      local m = -math.huge
      for k = k0, k1 do if finite_pos(v[k][l]) then m = math.max(m, v[k][l]) end end
      local x0 = ML + (k0 - 1) / T * pw
      local x1 = ML + k1 / T * pw
      add('<rect class="c" x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"/>', x0, y, x1 - x0 + 0.5, rowh,
        m > 0 and color(u(m)) or "#ffffff")
    end
    add('<text x="%d" y="%.1f" text-anchor="end">layer %d</text>', ML - 6, y + rowh / 2 + 4, l)
  end
  add('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>', ML, top, pw, hh)
  -- step ticks
  local function steps_ticks(n)
    local raw = n / 8
    local mag = 10 ^ math.floor(math.log10(math.max(raw, 1)))
    local step = mag
    for _, m in ipairs({ 1, 2, 5, 10 }) do if m * mag >= raw then step = m * mag break end end
    return math.max(1, step)
  end
  local st = steps_ticks(T)
  for k = st, T, st do
    local x = ML + (k - 0.5) / T * pw
    add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#444"/>', x, top + hh, x, top + hh + 4)
    add('<text x="%.1f" y="%d" text-anchor="middle">%d</text>', x, top + hh + 17, k)
  end
  add('<text x="%d" y="%d" text-anchor="middle">step k (the sequence ends at T = %d)</text>', ML + pw / 2,
    top + hh + 34, T)
  -- colour bar
  local bx, bw = W - MR + 18, 14
  for i = 0, 49 do
    add('<rect class="c" x="%d" y="%.2f" width="%d" height="%.2f" fill="%s"/>', bx, top + hh - (i + 1) * hh / 50, bw,
      hh / 50 + 0.3, color((i + 0.5) / 50))
  end
  add('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>', bx, top, bw, hh)
  local estep = math.max(1, math.ceil((ehi - elo) / math.min(5, math.floor(hh / 16)))) -- labels 16 px apart
  for e = elo, ehi do
    local y = top + hh - (e - elo) / (ehi - elo) * hh
    if e % estep ~= 0 then goto next_e end
    add('<text x="%d" y="%.1f">%s</text>', bx + bw + 4, y + 4, decade(e))
    ::next_e::
  end
  add('<text x="%d" y="%d" text-anchor="middle" font-size="11">%s</text>', bx + bw / 2, top - 12, esc(NAMES[what]))
  -- curves: the norm against the lag T - k, log scale
  local cx0, cw = ML, pw
  local function px(lag) return cx0 + lag / math.max(T - 1, 1) * cw end
  local function py(x) return cy0 + ch - (math.log10(x) - elo) / (ehi - elo) * ch end
  for e = elo, ehi do
    local y = py(10 ^ e)
    add('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', cx0, y, cx0 + cw, y)
    if e % estep == 0 then
      add('<text x="%d" y="%.1f" text-anchor="end">%s</text>', cx0 - 6, y + 4, decade(e))
    end
    if ehi - elo <= 2 and e < ehi then -- few decades: 2 and 5 times each, too
      for _, mul in ipairs({ 2, 5 }) do
        local ym = py(mul * 10 ^ e)
        add('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>', cx0, ym, cx0 + cw, ym)
        add('<text x="%d" y="%.1f" text-anchor="end" fill="#555">%se%d</text>', cx0 - 6, ym + 4, mul, e)
      end
    end
  end
  local lt = steps_ticks(T - 1)
  for lag = 0, T - 1, lt do
    local x = px(lag)
    add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>', x, cy0, x, cy0 + ch)
    add('<text x="%.1f" y="%d" text-anchor="middle">%d</text>', x, cy0 + ch + 16, lag)
  end
  add('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>', cx0, cy0, cw, ch)
  add('<text x="%d" y="%d" text-anchor="middle">lag T - k (steps back from the end)</text>', cx0 + cw / 2,
    cy0 + ch + 34)
  add('<text x="18" y="%d" text-anchor="middle" transform="rotate(-90 18 %d)">%s (log scale)</text>',
    cy0 + ch / 2, cy0 + ch / 2, esc(NAMES[what]))
  for l = 1, L do
    local pts = {}
    for k = T, 1, -1 do
      local x = v[k][l]
      if finite_pos(x) then pts[#pts + 1] = string.format("%.1f,%.1f", px(T - k), py(x)) end
    end
    local c = COLORS[(l - 1) % #COLORS + 1]
    if #pts > 1 then
      add('<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>', c, table.concat(pts, " "))
    end
    local ly = cy0 - 12
    local lx = cx0 + cw - 90 * (L - l + 1)
    add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"/>', lx, ly, lx + 24, ly, c)
    add('<text x="%d" y="%d">layer %d</text>', lx + 30, ly + 4, l)
  end
  o[#o + 1] = "</svg>\n"
  return write(path, table.concat(o, "\n"))
end

--- The gradient's reach: the smallest lag T - k at which |dL/dh_k| of layer
-- `layer` (default 1, the one nearest the inputs) falls below `ratio`
-- (default 1e-3) times its largest value over the steps; T when it never
-- does (the gradient reaches the sequence's start).
function M.reach(flow, ratio, layer)
  ratio, layer = ratio or 1e-3, layer or 1
  local t = flow.dh
  local T = t:size(1)
  local big = 0
  for k = 1, T do big = math.max(big, t:get(k, layer)) end
  for lag = 0, T - 1 do
    if t:get(T - lag, layer) < ratio * big then return lag end
  end
  return T
end

return M
