-- busted output handler for `make test`: a dot per test, the message of each
-- failure, error and skip, then exactly one closing line
-- "N passed, N failed, N skipped" (errors count as failures).
local io_write, io_flush = io.write, io.flush

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.base"()

  local function describe(item, kind)
    local where = item.trace and item.trace.short_src and
      (item.trace.short_src .. ":" .. tostring(item.trace.currentline)) or "?"
    local msg = item.message
    if type(msg) ~= "string" then msg = require("pl.pretty").write(msg) end
    local out = string.format("%s: %s\n  %s\n  %s", kind, item.name or "?", where, tostring(msg))
    if kind ~= "skipped" and options.verbose and item.trace and item.trace.traceback then
      out = out .. "\n" .. item.trace.traceback
    end
    return out
  end

  handler.testEnd = function(_element, _parent, status)
    local mark = { success = ".", pending = "s", failure = "F", error = "E" }
    io_write(mark[status] or "?")
    io_flush()
    return nil, true
  end

  handler.error = function()
    io_write("E")
    io_flush()
    return nil, true
  end

  handler.suiteEnd = function()
    io_write("\n")
    for _, p in ipairs(handler.pendings) do io_write("\n", describe(p, "skipped"), "\n") end
    for _, f in ipairs(handler.failures) do io_write("\n", describe(f, "FAILED"), "\n") end
    for _, e in ipairs(handler.errors) do io_write("\n", describe(e, "ERROR"), "\n") end
    io_write(string.format("\n%d passed, %d failed, %d skipped\n", handler.successesCount,
      handler.failuresCount + handler.errorsCount, handler.pendingsCount))
    io_flush()
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "error", "file" }, handler.error)
  busted.subscribe({ "failure", "file" }, handler.error)
  busted.subscribe({ "error", "describe" }, handler.error)
  busted.subscribe({ "failure", "describe" }, handler.error)
  return handler
end
