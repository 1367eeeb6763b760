--- Child processes for the fault and resource specs: run a command and get
-- its output and status, start one in the background and kill it with
-- SIGKILL, sleep, and shell quoting.  POSIX only (kill, usleep by the FFI).
local ffi = require "ffi"

-- busted loads this once per spec file, and a cdef cannot be repeated
pcall(ffi.cdef, [[
int kill(int pid, int sig);
int usleep(unsigned int usec);
]])

local P = {}

--- The interpreter that runs the specs runs the children too.
P.luajit = os.getenv("LUAJIT") or "luajit"

--- 's' quoted for sh.
function P.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Sleeps ms milliseconds (fractions allowed).
function P.sleep_ms(ms) ffi.C.usleep(math.floor(ms * 1000)) end

--- Runs cmd through sh, stderr with stdout; returns ok (exit status 0),
-- the output, and the status.
function P.run(cmd)
  local p = assert(io.popen("( " .. cmd .. " ) 2>&1; echo \"<exit $?>\""))
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("<exit (%d+)>%s*$"))
  out = out:gsub("<exit %d+>%s*$", "")
  return status == 0, out, status
end

--- Starts cmd, a simple command (so that the shell's child execs it and the
-- pid is the program's), in the background with its output into the file
-- log, under a shell that waits for it so that it never lingers as a zombie.
-- Returns a handle: h.pid, h:kill() (SIGKILL, then waits until it is gone),
-- h:wait() -> exit status, h:running().
function P.spawn(cmd, log)
  local p = assert(io.popen("exec 2>/dev/null; " .. cmd .. " >" .. P.quote(log)
    .. " 2>&1 & echo $!; wait $!; echo \"<exit $?>\""))
  local pid = tonumber(p:read("*l"))
  assert(pid, "could not start: " .. cmd)
  local h = { pid = pid }
  --- Waits for the end; returns the exit status (128 + signal when killed).
  function h:wait()
    if self.status == nil then
      local rest = p:read("*a")
      p:close()
      self.status = tonumber(rest:match("<exit (%d+)>")) or -1
    end
    return self.status
  end
  function h:kill()
    if self.status == nil then ffi.C.kill(pid, 9) end
    return self:wait()
  end
  --- Is it still running?  (Only a guess once it has ended and been reaped.)
  function h:running()
    if self.status ~= nil then return false end
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local state = f:read("*l"):match("%) (%a)")
    f:close()
    return state ~= "Z"
  end
  return h
end

--- The names in a directory, sorted ({} when it does not exist).
function P.listdir(dir)
  local p = assert(io.popen("ls -A " .. P.quote(dir) .. " 2>/dev/null"))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

--- A fresh directory under /tmp and a function that removes it.
function P.tempdir()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir " .. P.quote(name)) == 0 or true)
  return name, function()
    assert(name:match("^/tmp/"), "refusing to remove " .. name)
    os.execute("rm -rf " .. P.quote(name))
  end
end

--- The file's size in bytes, or nil when it does not exist.
function P.size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

return P
