--- bptt.progress: a progress line for training loops.  On a terminal it
-- redraws one line (a bar, iteration, loss, tokens/s, elapsed time, ETA);
-- otherwise (a log file, CI) it prints a plain line every `every` iterations;
-- with quiet = true it prints no per-iteration line at all (messages still).
--
--   local bar = bptt.progress.new{ total = 2000, tokens = B * T }   -- tty = nil: ask isatty
--   bar:update(i, loss)            -- each iteration
--   bar:message("val loss 1.52")   -- a line of its own, above the bar
--   bar:finish()
local core = require "bptt.core"
local ffi = require "ffi"
pcall(ffi.cdef, "int isatty(int fd);")

local progress = {}
local Bar = {}
Bar.__index = Bar

--- True when stdout is a terminal.
function progress.isatty()
  return ffi.C.isatty(1) == 1
end

function progress.new(opts)
  local b = setmetatable({
    total = opts.total, tokens = opts.tokens or 1, every = opts.every or 100,
    quiet = opts.quiet or false, out = opts.out or io.stdout,
    start_iter = opts.start or 0, t0 = core.clock(), drawn = false,
  }, Bar)
  if opts.tty == nil then b.tty = not b.quiet and progress.isatty() else b.tty = opts.tty and not b.quiet end
  b.last_t, b.last_i, b.rate = b.t0, b.start_iter, nil
  return b
end

local function hms(s)
  if s ~= s or s == math.huge then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s / 3600, s % 3600 / 60, s % 60) end
  return string.format("%02d:%02d", s / 60, s % 60)
end

function Bar:_stats(i)
  local now = core.clock()
  local done = i - self.start_iter
  local per_it = done > 0 and (now - self.t0) / done or 0
  local tok_s = per_it > 0 and self.tokens / per_it or 0
  local eta = self.total and per_it * (self.total - i) or 0
  return tok_s, eta, now - self.t0
end

function Bar:update(i, loss)
  local tok_s, eta, elapsed = self:_stats(i)
  if self.quiet then
    return tok_s
  elseif self.tty then
    local width = 24
    local frac = self.total and math.min(1, i / self.total) or 0
    local fill = math.floor(frac * width + 0.5)
    self.out:write(string.format("\r[%s%s] %d/%s  loss %.4f  %.0f tok/s  elapsed %s  ETA %s \27[K",
      string.rep("#", fill), string.rep(".", width - fill), i, self.total and tostring(self.total) or "?", loss,
      tok_s, hms(elapsed), hms(eta)))
    self.out:flush()
    self.drawn = true
  elseif i % self.every == 0 or i == self.total then
    self.out:write(string.format("iter %d/%s  loss %.4f  %.0f tok/s  elapsed %s  ETA %s\n", i,
      self.total and tostring(self.total) or "?", loss, tok_s, hms(elapsed), hms(eta)))
    self.out:flush()
  end
  return tok_s
end

function Bar:message(s)
  if self.tty and self.drawn then self.out:write("\r\27[K") end
  self.out:write(s, "\n")
  self.out:flush()
end

function Bar:finish()
  if self.tty and self.drawn then self.out:write("\n") end
  self.out:flush()
end

return progress
